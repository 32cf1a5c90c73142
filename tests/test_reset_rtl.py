# amaranth: UnusedElaboratable=no
"""A reset in the middle of a layer, then a complete run, on the 4x4 matmul engine (Verilator):
the results equal the golden model (no stale partial sums in the accumulator buffer) and every
stream finishes (no stuck handshake)."""

import numpy as np
import pytest

from sim import verilator
from sim.engine_sim import TOP, EngineSim, passes_for
from sim.golden import matmul

from .test_engine_rtl import CFG, _fmt


@pytest.fixture(scope="module")
def engine(build_root):
    return EngineSim(CFG, build_root)          # the build of test_engine_rtl, shared


@pytest.mark.parametrize("abort_after, stall", [(3, 0.0), (40, 0.3), (150, 0.0)])
def test_reset_mid_layer_then_a_complete_run(engine, abort_after, stall):
    rng = np.random.default_rng(abort_after)
    # The aborted layer: large values, so that stale partial sums would show.
    aborted = passes_for(CFG, np.full((20, 12), 255), np.full((12, 6), 1), "post")
    A, W = rng.integers(0, 256, (9, 10)), rng.integers(0, 16, (10, 6))
    job = {"rows": CFG.rows, "cols": CFG.cols, "a_bits": CFG.a_bits, "w_bits": CFG.w_bits,
           "buffer_bits": CFG.buffer_bits, "aborted": aborted,
           "passes": passes_for(CFG, A, W, "post"), "abort_after": abort_after,
           "reset_clocks": 3, "seed": abort_after, "stall": stall, "backpressure": stall}
    out = verilator.run_bench(engine._runner, top=TOP, bench="sim.benches.reset_bench", job=job,
                              work_dir=engine.dir / "reset")
    assert out["lasts_ok"]
    got = np.hstack([np.array(s, dtype=np.int64) for s in out["sums"]])[:, :W.shape[1]]
    np.testing.assert_array_equal(got, matmul(A, W, _fmt("post", 4)))


def test_the_watchdog_names_the_stuck_streams(engine, tmp_path):
    """A pass without its weights: the engine waits for them forever; the bench fails in bounded
    time, naming every stream with transfers left."""
    passes = passes_for(CFG, np.ones((3, 4), int), np.ones((4, 4), int), "post")
    passes[-1]["weights"] = []
    job = {"rows": CFG.rows, "cols": CFG.cols, "a_bits": CFG.a_bits, "w_bits": CFG.w_bits,
           "buffer_bits": CFG.buffer_bits, "passes": passes, "seed": 1, "stall": 0.0,
           "backpressure": 0.0}
    with pytest.raises(verilator.BuildError, match=r"\(AssertionError: matmul "
                       r"engine: no result after 1220 clocks; stuck: i_a \(0 of 3\), i_pass "
                       r"\(0 of 1\), o_acc \(0 of 3\)\); see .*/sim\.log$"):
        verilator.run_bench(engine._runner, top=TOP, bench="sim.benches.engine_bench", job=job,
                            work_dir=tmp_path)


@pytest.mark.parametrize("key, value", [("stall", 1.0), ("backpressure", -0.1),
                                        ("stall", float("nan"))])
def test_probabilities_are_checked_before_a_run(engine, key, value, tmp_path):
    job = {"stall": 0.0, "backpressure": 0.0, key: value}
    with pytest.raises(verilator.UsageError, match=rf"^{key} must be at least 0 and less than "
                                                   rf"1, not {value!r}$"):
        verilator.run_bench(engine._runner, top=TOP, bench="sim.benches.engine_bench", job=job,
                            work_dir=tmp_path)
    assert not any(tmp_path.iterdir())
