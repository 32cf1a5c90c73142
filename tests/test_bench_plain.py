# amaranth: UnusedElaboratable=no
"""The plain C++ harness of ``bench/cosim_speed.py`` (``bench/plain_main.cpp``) and the
co-simulation harness share one definition of a run's fields (``sim.benches.cosim_fields``):
the C++ field list is generated from it, a run line names every field, and a field missing,
unknown or a run over its clock budget stops the harness with a message, not a hang."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import cosim_speed  # noqa: E402

from core.config import ArrayConfig  # noqa: E402
from sim.harness import COUNTS, CosimHarness, Depths  # noqa: E402

SMALL = ArrayConfig(rows=2, cols=2, max_k=8, max_m=4, max_channels=2, max_hidden=1)
DEPTHS = Depths(param=64, beta=16, res=16, w=16, a=16, program=16, out=16, marks=16)


def test_run_fields_are_counts_then_settings():
    assert cosim_speed.run_fields() == (*COUNTS, "seed", "stall", "backpressure")
    header = cosim_speed.run_fields_header()
    listed = [line for line in header.splitlines() if line.startswith("#define RUN_FIELDS(X)")]
    assert listed == ["#define RUN_FIELDS(X) " + " ".join(f"X({f})"
                                                          for f in cosim_speed.run_fields())]


def test_every_field_is_a_port_of_the_harness():
    members = CosimHarness(config=SMALL, depths=DEPTHS).signature.members
    assert all(name in members for name in cosim_speed.run_fields())


def test_the_cocotb_bench_shares_the_names():
    from sim import harness
    from sim.benches import cosim_bench

    assert cosim_bench.COUNTS is harness.COUNTS
    assert cosim_bench.STREAMS is harness.STREAMS
    assert cosim_bench.MEMORIES is harness.MEMORIES


def test_a_run_line_names_every_field():
    run = {name: i for i, name in enumerate(COUNTS)}
    line = cosim_speed.run_line(run, {"seed": 7, "stall": 0, "backpressure": 0}, 1234)
    words = line.split()
    assert words[0] == "run" and words[-1] == "budget=1234"
    assert [w.split("=")[0] for w in words[1:-1]] == list(cosim_speed.run_fields())


@pytest.fixture(scope="module")
def plain(build_root):
    """The plain harness of a 2x2 engine with small memories."""
    from core.files import write_text
    from gen.verilog import verilog_text
    from sim.cosim import _CONTROL_FILE, TOP
    from sim.harness import rewrite

    rtl = build_root / "plain-small" / "rtl"
    verilog = write_text(rtl / f"{TOP}.v", rewrite(verilog_text(
        CosimHarness(config=SMALL, depths=DEPTHS), TOP), period_ns=10))
    write_text(rtl / f"{TOP}.vlt", _CONTROL_FILE)
    return cosim_speed.build_plain(SimpleNamespace(verilog=verilog), build_root / "plain-small")


def _run(exe, tmp_path, line):
    stim = tmp_path / "stim.txt"
    stim.write_text(line + "go\n")
    return subprocess.run([str(exe), str(stim), str(tmp_path / "out.txt")],
                          capture_output=True, text=True, timeout=60)


def _line(**change):
    fields = dict.fromkeys(cosim_speed.run_fields(), 0)
    fields.update(change)
    return "run " + " ".join(f"{k}={v}" for k, v in fields.items()) + " budget=1000\n"


def test_an_empty_run_finishes(plain, tmp_path):
    done = _run(plain, tmp_path, _line())
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text().startswith("clocks 0 ")


def test_a_field_unknown_to_the_harness_fails(plain, tmp_path):
    """What a field added on the Python side only would do (the header is generated, so
    this takes a hand-written line)."""
    done = _run(plain, tmp_path, _line(n_new=3))
    assert done.returncode == 3
    assert "plain: run 0: unknown field n_new (run_fields.h: sim.harness.COUNTS" in done.stderr


def test_a_missing_field_fails(plain, tmp_path):
    done = _run(plain, tmp_path, _line().replace(" n_res=0", ""))
    assert done.returncode == 3
    assert "plain: run 0: field n_res missing" in done.stderr


def test_a_run_over_its_budget_fails_fast(plain, tmp_path):
    done = _run(plain, tmp_path, _line(n_out=1))          # no output ever comes
    assert done.returncode == 3
    assert done.stderr.startswith("plain: run 0 is not done after its budget of 1000 clocks; "
                                  "words moved: i_param 0 ")
