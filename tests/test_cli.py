"""The command line as a user meets it: one-line errors, non-zero exits, no tracebacks."""

import json

import pytest

from asqgen.cli import main

from .cli import asqgen


@pytest.mark.parametrize("args, message", [
    (["verilog", "--w-bits", "1"], "asqgen: error: w_bits must be from 2 to 8 for post weights, "
                                   "not 1"),
    (["verilog", "--rows", "0"], "asqgen: error: rows must be from 1 to 64, not 0"),
    (["verilog", "--rows", "four"], "asqgen: error: verilog: argument --rows: invalid int value: "
                                    "'four'"),
    (["verilog", "--w-format", "fp8"], "asqgen: error: verilog: argument --w-format: invalid "
                                       "choice: 'fp8' (choose from 'post', 'pot', 'int')"),
    (["verilog", "--acc-bits", "12"], "asqgen: error: acc_bits must be at least 22 for 8 rows of "
                                      "8-bit x 4-bit post products with frac_bits=10, not 12"),
    (["verilog", "--w-format", "int", "--frac-bits", "3"],
     "asqgen: error: frac_bits must be 0 for int weights, not 3"),
    (["verilog", "--bogus"], "asqgen: error: unrecognized arguments: --bogus"),
    ([], "asqgen: error: the following arguments are required: command"),
])
def test_bad_options_give_one_line(args, message, tmp_path):
    result = asqgen(*args, "--out", str(tmp_path)) if args else asqgen()
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    assert result.stdout == ""
    assert not any(tmp_path.iterdir())


def test_verilog_writes_the_design_and_manifest(tmp_path, capsys):
    assert main(["verilog", "--rows", "2", "--cols", "3", "--w-bits", "3", "--out",
                 str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["rows"] == 2 and manifest["config"]["w_bits"] == 3
    assert (tmp_path / "asq_array.v").read_text().count("module asq_array(") == 1
    out = capsys.readouterr().out
    assert out.startswith("asqgen verilog: 2x3 post array, 3-bit weights, 8-bit activations, F=8")


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = asqgen("verilog", "--out", str(blocker / "sub"))
    assert result.returncode == 6
    assert result.stderr.startswith("asqgen: error: ") and result.stderr.count("\n") == 1


def test_selfcheck_passes_on_a_small_array(tmp_path, build_root, capsys):
    assert main(["selfcheck", "--rows", "2", "--cols", "3", "--out", str(build_root)]) == 0
    out = capsys.readouterr().out
    assert "lint -Wall: clean" in out
    assert out.rstrip().endswith("PASS: the RTL equals the golden model bit for bit")
    assert out.count("identical") == 6
