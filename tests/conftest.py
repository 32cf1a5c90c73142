# amaranth: UnusedElaboratable=no
"""Shared fixtures. Verilator builds go to ``build/tests`` (outside git), one folder per
configuration, reused by every test and every later session while the Verilog is unchanged
(``sim.verilator.build``). Nothing here skips: a missing tool fails the test that needs it."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_root():
    path = ROOT / "build" / "tests"
    path.mkdir(parents=True, exist_ok=True)
    return path
