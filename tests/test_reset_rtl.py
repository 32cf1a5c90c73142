# amaranth: UnusedElaboratable=no
"""A reset in the middle of a layer, then a complete run, on the 4x4 matmul engine (Verilator):
the results equal the golden model (no stale partial sums in the accumulator buffer) and every
stream finishes (no stuck handshake); a hung design fails in bounded time, naming its stuck
streams."""

import numpy as np
import pytest

from core.errors import RtlError
from sim import verilator
from sim.engine_sim import EngineSim, passes_for
from sim.golden import matmul

from .test_engine_rtl import CFG, _fmt


@pytest.fixture(scope="module")
def engine(build_root):
    return EngineSim(CFG, build_root)          # the build of test_engine_rtl, shared


@pytest.mark.parametrize("abort_after, stall", [(3, 0.0), (40, 0.3), (150, 0.0)])
def test_reset_mid_layer_then_a_complete_run(engine, abort_after, stall):
    rng = np.random.default_rng(abort_after)
    # The aborted layer: large values, so that stale partial sums would show.
    aborted = [(np.full((20, 12), 255), np.full((12, 6), 1), "post", 4)]
    A, W = rng.integers(0, 256, (9, 10)), rng.integers(0, 16, (10, 6))
    run = engine.run([(A, W, "post", 4)], seed=abort_after, stall=stall, backpressure=stall,
                     name="reset", reset_during=(aborted, abort_after))
    assert run.lasts_ok
    np.testing.assert_array_equal(run.results[0], matmul(A, W, _fmt("post", 4)))


def test_the_watchdog_names_the_stuck_streams(engine):
    """A pass without its weights: the engine waits for them forever; the bench fails in bounded
    time, naming every stream with transfers left (the pass's descriptor is taken: it waits in
    the accumulator's skid buffer)."""
    passes = passes_for(CFG, np.ones((3, 4), int), np.ones((4, 4), int), "post")
    passes[-1]["weights"] = []
    with pytest.raises(RtlError, match=r"\(AssertionError: step 0: no result after "
                       r"2280 clocks; stuck: i_a \(0 of 3\), o_acc \(0 of 3\)\); see "
                       r".*/sim\.log$"):
        engine.run_streams([engine.step(passes)], sources=("i_w", "i_a", "i_pass"),
                           sinks=("o_acc",), name="stuck")


@pytest.mark.parametrize("key, value", [("stall", 1.0), ("backpressure", -0.1),
                                        ("stall", float("nan"))])
def test_probabilities_are_checked_before_a_run(engine, key, value, tmp_path):
    with pytest.raises(verilator.UsageError, match=rf"^{key} must be at least 0 and less than "
                                                   rf"1, not {value!r}$"):
        engine.run([(np.ones((2, 2), int), np.ones((2, 2), int), "post", 4)],
                   **{key: value}, name=str(tmp_path.name))
