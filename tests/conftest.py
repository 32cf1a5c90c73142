# amaranth: UnusedElaboratable=no
"""Shared fixtures. Verilator builds go to ``build/tests`` (outside git), one folder per
configuration, reused by every test and every later session while the Verilog is unchanged
(``sim.verilator.build``), at C++ ``-O1``. Nothing here skips: a missing tool fails the test
that needs it."""

import os
from pathlib import Path

import pytest

from sim.verilator import CXX_OPT

# Verilator builds at C++ -O1 (``sim.verilator.CXX_OPT``): half the build time of an array;
# the benches and the subprocesses the tests start inherit it.
os.environ.setdefault(CXX_OPT, "-O1")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_root():
    path = ROOT / "build" / "tests"
    path.mkdir(parents=True, exist_ok=True)
    return path
