"""The synthesis benches' own logic, without running the tools: a missing optional extra is one
line and exit status 5 (``ToolError``), a bad option status 2, nextpnr's report is read right
(a real log's lines), and the board top's clock and baud rate are checked."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
INSTALL = "./dev pip install -e '.[synth]'"
sys.path.insert(0, str(BENCH))

import board  # noqa: E402
import synth  # noqa: E402

from core.errors import ToolError  # noqa: E402


def _run(script, *args, block=None):
    """Run ``bench/<script>`` with the module ``block`` made unimportable."""
    prelude = f"sys.modules[{block!r}] = None; " if block else ""
    code = (f"import sys; {prelude}import runpy; "
            f"sys.argv = [{str(BENCH / script)!r}, *{list(args)!r}]; "
            f"sys.path.insert(0, {str(BENCH)!r}); runpy.run_path(sys.argv[0], "
            f"run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_a_missing_tool_is_one_line():
    with pytest.raises(ToolError, match=r"^yowasp-nothing is not installed \(the optional "
                                        r"extra 'synth'\): \./dev pip install -e '\.\[synth\]'$"):
        synth._tool("yowasp-nothing")


@pytest.mark.parametrize("script, args, block, line", [
    ("board.py", [], "amaranth_boards",
     f"board.py: error: amaranth-boards is not installed (the optional extra 'synth'): "
     f"{INSTALL}"),
    ("synth.py", [], "amaranth_boards",
     f"synth.py: error: amaranth-boards is not installed (the optional extra 'synth'): "
     f"{INSTALL}"),
    ("parts.py", [], "amaranth_boards",
     f"parts.py: error: amaranth-boards is not installed (the optional extra 'synth'): "
     f"{INSTALL}"),
    ("plots.py", ["--levels-only"], "matplotlib",
     f"plots.py: error: matplotlib is not installed (the optional extra 'synth'): {INSTALL}"),
])
def test_a_missing_extra_is_one_line_and_status_5(script, args, block, line):
    done = _run(script, *args, block=block)
    assert done.stderr.splitlines() == [line]
    assert done.returncode == 5


def test_bad_options_are_status_2():
    done = _run("board.py", "--board", "ulx3s-12f")
    assert done.returncode == 2
    assert "invalid choice: 'ulx3s-12f'" in done.stderr.splitlines()[-1]
    done = _run("board.py", "--bundle", "none", "--max-m", "0")
    assert done.stderr.splitlines() == ["board.py: error: max_m must be from 1 to 65536, not 0"]
    assert done.returncode == 2
    done = _run("board.py", "--max-m", "16")          # a bundle sizes its engine itself
    assert done.stderr.splitlines() == ["board.py: error: --max-m sizes an engine by hand, "
                                        "with --bundle none; a bundle sizes its engine itself"]
    assert done.returncode == 2
    done = _run("board.py", "--rescale-lanes", "3")
    assert done.stderr.splitlines() == ["board.py: error: rescale_lanes must divide cols (8), "
                                        "not 3"]
    assert done.returncode == 2
    done = _run("fit.py", "--designs", "int9")
    assert done.stderr.splitlines() == [
        "fit.py: error: --designs must name some of int8, int8-logic, post4-table, "
        "post4-split, not 'int9'"]
    assert done.returncode == 2


NEXTPNR_LOG = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:       7/    197     3%
Info: \t              DP16KD:       1/     56     1%
Info: \t          MULT18X18D:      19/     28    67%
Info: \t          TRELLIS_FF:    1790/  24288     7%
Info: \t        TRELLIS_COMB:   12345/  24288    50%
Info: \t        TRELLIS_RAMW:      95/   3036     3%

Info: Max frequency for clock '$glbnet$clk': 20.00 MHz (FAIL at 25.00 MHz)
Info: Routing..
Info: Max frequency for clock '$glbnet$clk': 31.25 MHz (PASS at 25.00 MHz)
"""


def test_report_reads_yosys_and_nextpnr(tmp_path):
    (tmp_path / "stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {
        "LUT4": 9434, "CCU2C": 1165, "DP16KD": 1, "MULT18X18D": 19, "TRELLIS_DPR16X4": 379,
        "TRELLIS_FF": 1700, "TRELLIS_FF$x": 90}}}))
    (tmp_path / "top.tim").write_text(NEXTPNR_LOG)
    r = board.report(tmp_path, "top")
    assert (r["lut4"], r["ccu2c"], r["ebr"], r["dsp"], r["dpram"], r["ff"]) == (
        9434, 1165, 1, 19, 379, 1790)
    assert r["fmax"] == [{"clock": "$glbnet$clk", "fmax": 31.25, "target": 25.0, "pass": True}]
    assert r["utilisation"]["TRELLIS_COMB"] == (12345, 24288)
    assert r["utilisation"]["MULT18X18D"] == (19, 28)
    assert len(r["utilisation"]) == 6


def test_board_top_refuses_a_bad_baud_rate():
    from hw.board_top import BoardTop
    from tests.test_host_bridge import Adder

    with pytest.raises(ValueError, match=r"^25e\+06 Hz cannot make|^2\.5e\+07 Hz cannot make"):
        BoardTop(Adder(), clk_freq=25e6, baud=3_000_000)
    top = BoardTop(Adder(), clk_freq=25e6)
    assert [c.name for c in top.bridge.write_channels] == ["i_a", "i_b", "i_c", "i_slow"]


def test_board_engine_for_a_bundle():
    import argparse

    args = argparse.Namespace(bundle=str(ROOT / "export" / "default_model" / "bundle"),
                              rows=None, cols=None, rescale_lanes=None)
    assert board.describe(board.engine_config(args)) == (
        "8x8 post4 engine, 8-bit activations, max_k 288, max_m 64, max_channels 32, "
        "max_hidden 8, 1 rescale lane")
    args.rescale_lanes = 8
    assert board.describe(board.engine_config(args)).endswith("8 rescale lanes")


def test_board_with_a_missing_bundle_is_status_3(tmp_path):
    done = _run("board.py", "--bundle", str(tmp_path / "nothing"))
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"board.py: error: {tmp_path / 'nothing'}")
    assert done.returncode == 3
