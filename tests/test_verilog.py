# amaranth: UnusedElaboratable=no
"""The generated Verilog: lint-clean under ``verilator -Wall`` (with the documented waivers
only), and a manifest whose ports are the module's ports."""

import json
import re

import pytest

from core.config import ArrayConfig
from gen.verilog import generate_array, generate_multiplier
from core.numerics import ProductFormat
from sim import verilator

LINT_CONFIGS = [
    ArrayConfig(rows=4, cols=4),
    ArrayConfig(rows=2, cols=3, a_bits=4, w_bits=3, w_format="post"),
    ArrayConfig(rows=1, cols=1, a_bits=1, w_bits=2, w_format="post"),
    ArrayConfig(rows=3, cols=2, w_format="pot", w_bits=3),
    ArrayConfig(rows=2, cols=2, w_format="int", w_bits=8),
]


@pytest.mark.parametrize("cfg", LINT_CONFIGS, ids=lambda c: c.key())
def test_array_lint_clean(cfg, tmp_path):
    manifest = generate_array(cfg, tmp_path)
    assert verilator.lint(tmp_path / manifest["verilog"], manifest["top"]) == []


def test_multiplier_lint_clean(tmp_path):
    fmt = ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10)
    path = generate_multiplier(fmt, tmp_path, name="mul")
    assert verilator.lint(path, "mul") == []


def test_lint_reports_a_real_warning(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire [3:0] a, output wire [3:0] y);\n"
                   "  wire unused_but_driven = a[0];\n"
                   "  assign y = a;\n"
                   "  always @* begin end\n"
                   "  reg [1:0] r; always @(posedge a[0]) r <= r + 1'b1;\n"
                   "  wire b; assign b = b;\n"
                   "endmodule\n")
    assert verilator.lint(bad, "bad") != []


def test_manifest_ports_match_the_module(tmp_path):
    cfg = ArrayConfig(rows=3, cols=2)
    manifest = generate_array(cfg, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    text = (tmp_path / "asq_array.v").read_text()
    header = re.search(r"module asq_array\((.*?)\);", text, re.S).group(1)
    module_ports = {p.strip() for p in header.split(",")}
    assert {p["name"] for p in manifest["ports"]} == module_ports
    widths = {p["name"]: p["width"] for p in manifest["ports"]}
    assert widths["i_w__payload"] == 2 * cfg.w_bits
    assert widths["i_a__payload"] == 3 * cfg.a_bits + 1
    assert widths["o_r__payload"] == 2 * cfg.acc_bits + 1
    for name, width in widths.items():
        decl = re.search(rf"(input|output)\s+(?:wire\s+|reg\s+)?(\[(\d+):0\]\s+)?{name};", text)
        assert decl, name
        assert (int(decl.group(3)) + 1 if decl.group(3) else 1) == width
    assert manifest["config"] == cfg.as_dict()
    assert manifest["derived"]["latency"] == cfg.latency
    assert manifest["format"] == 1
