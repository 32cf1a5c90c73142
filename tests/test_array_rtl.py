# amaranth: UnusedElaboratable=no
"""The systolic array on Verilator against the golden model: several array sizes and weight
formats, unsigned and signed activations, several ``M, K, N`` (short ``K``, ``N`` not a multiple
of the columns), seeded random inputs, random stalls on both inputs and random backpressure on
the output."""

import numpy as np
import pytest

from core.config import ArrayConfig
from sim.array_sim import ArraySim, ShapeError, tiles_for
from sim.golden import matmul, product_table
from sim.selfcheck import selfcheck_products

CONFIGS = {
    "4x4_post4_a8": ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, w_format="post"),
    "8x8_post4_a8": ArrayConfig(rows=8, cols=8, a_bits=8, w_bits=4, w_format="post"),
    "3x5_post3_a4": ArrayConfig(rows=3, cols=5, a_bits=4, w_bits=3, w_format="post"),
    "4x4_pot4_a8": ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, w_format="pot"),
    "4x4_int4_a8": ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, w_format="int"),
    "1x1_post2_a1": ArrayConfig(rows=1, cols=1, a_bits=1, w_bits=2, w_format="post"),
    "4x4_post4_split_a8": ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, odd="split"),
    "3x5_post3_split_a4": ArrayConfig(rows=3, cols=5, a_bits=4, w_bits=3, odd="split"),
    "4x4_post4_as8": ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, signed_acts=True),
    "3x5_post3_split_as4": ArrayConfig(rows=3, cols=5, a_bits=4, w_bits=3, odd="split",
                                       signed_acts=True),
}


def _acts(cfg, rng, shape):
    lo, hi = cfg.product_format.a_range
    return rng.integers(lo, hi + 1, shape)


def _shapes(cfg):
    r, c = cfg.rows, cfg.cols
    return [(1, 1, 1), (7, r, c), (16, r, 2 * c), (5, max(1, r - 1), c + 1),
            (3, max(1, r // 2), max(1, c - 1)), (33, r, 3 * c - 1)]


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def array(request, build_root):
    return ArraySim(CONFIGS[request.param], build_root)


@pytest.mark.parametrize("seed, stall", [(1, 0.0), (2, 0.25), (3, 0.6)])
def test_random_products(array, seed, stall):
    cfg = array.config
    rng = np.random.default_rng(seed)
    products = [(_acts(cfg, rng, (m, k)), rng.integers(0, 2 ** cfg.w_bits, (k, n)))
                for m, k, n in _shapes(cfg)]
    run = array.run(products, seed=seed, stall=stall, backpressure=stall, name=f"random{seed}")
    assert run.lasts_ok
    for (A, W), got in zip(products, run.results):
        assert got.shape == (2,) * cfg.split + (A.shape[0], W.shape[1])
        np.testing.assert_array_equal(got, matmul(A, W, cfg.product_format))


def test_extreme_sums(array):
    """Every product at its largest magnitude, both signs: the accumulator width is enough."""
    cfg = array.config
    products = [(A, W) for _, A, W in selfcheck_products(cfg, np.random.default_rng(0))]
    run = array.run(products, seed=5, stall=0.3, backpressure=0.3, name="extremes")
    for (A, W), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, cfg.product_format))
    if cfg.signed_acts:     # -2**(a_bits-1) times -1 and +1: +-rows * bound
        table = product_table(cfg.product_format)
        assert run.results[-2].max() == cfg.rows * table.max() == cfg.rows * cfg.product_bound
        assert run.results[-1].min() == cfg.rows * table.min() == -cfg.rows * cfg.product_bound
        return
    a_max = 2 ** cfg.a_bits - 1
    w_max = 2 ** (cfg.w_bits - 1) - 1 if cfg.w_format == "int" else 2 ** cfg.frac_bits
    assert run.results[-2].max() == cfg.rows * a_max * w_max
    assert run.results[-1].min() == -cfg.rows * cfg.product_bound


def test_cycle_model(array):
    """Without stalls the array takes exactly ``config.cycles(M, tiles)`` clocks."""
    cfg = array.config
    rng = np.random.default_rng(9)
    for m, n in [(1, cfg.cols), (6, 2 * cfg.cols), (11, 3 * cfg.cols)]:
        A = _acts(cfg, rng, (m, cfg.rows))
        W = rng.integers(0, 2 ** cfg.w_bits, (cfg.rows, n))
        run = array.run([(A, W)], name="cycles")
        assert run.cycles == cfg.cycles(m, tiles=n // cfg.cols)


def test_k_larger_than_rows_is_refused():
    cfg = CONFIGS["4x4_post4_a8"]
    with pytest.raises(ShapeError, match=r"^K=5 does not fit the 4-row array: this array has no "
                                         r"accumulator buffer to add K tiles, so K must be at most "
                                         r"rows$"):
        tiles_for(cfg, np.zeros((2, 5), int), np.zeros((5, 3), int))


def test_tiles_pad_with_zero_codes():
    cfg = CONFIGS["3x5_post3_a4"]
    A = np.arange(4).reshape(2, 2) + 1
    W = np.ones((2, 7), int)
    tiles = tiles_for(cfg, A, W)
    assert len(tiles) == 2
    assert tiles[0]["acts"] == [[1, 2, 0], [3, 4, 0]]
    assert tiles[1]["weights"] == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
