# amaranth: UnusedElaboratable=no
"""The matmul engine (array + accumulator buffer) on Verilator against the golden model: ``K``
and ``N`` larger than the array and not multiples of it, 8-bit ``int`` weights as bit planes,
random stalls and backpressure."""

import numpy as np
import pytest

from gen.config import ArrayConfig
from gen.numerics import ProductFormat, weight_value
from sim.array_sim import ShapeError
from sim.engine_sim import EngineSim, bit_planes, passes_for
from sim.golden import matmul

CFG = ArrayConfig(rows=4, cols=4, a_bits=8, w_bits=4, w_format="post", max_k=600, max_m=40)


@pytest.fixture(scope="module")
def engine(build_root):
    return EngineSim(CFG, build_root)


def _fmt(w_format, w_bits):
    return ProductFormat(w_format=w_format, a_bits=8, w_bits=w_bits,
                         frac_bits=CFG.frac_bits if w_format == "post" else 0)


@pytest.mark.parametrize("seed, stall", [(1, 0.0), (2, 0.3)])
def test_tiled_products(engine, seed, stall):
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1, "post", 4), (9, 13, 6, "post", 4), (40, 37, 9, "post", 4),
              (5, 10, 7, "int", 8), (16, 4, 4, "int", 8), (3, 144, 5, "post", 4),
              (2, 9, 3, "int", 4)]
    products = [(rng.integers(0, 256, (m, k)), rng.integers(0, 2 ** b, (k, n)), f, b)
                for m, k, n, f, b in shapes]
    run = engine.run(products, seed=seed, stall=stall, backpressure=stall, name=f"tiled{seed}")
    assert run.lasts_ok
    for (A, W, f, b), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, _fmt(f, b)))


def test_extreme_int8_sums(engine):
    """All-maximal activations with -128 and +127 weights over the largest K."""
    A = np.full((2, CFG.max_k), 255)
    W = np.concatenate([np.full((CFG.max_k, 1), 128), np.full((CFG.max_k, 1), 127)], axis=1)
    run = engine.run([(A, W, "int", 8)], name="extreme")
    assert run.results[0].tolist() == [[-255 * 128 * 600, 255 * 127 * 600]] * 2


def test_bit_planes_sum_to_the_weights():
    """Every plane's codes, read as the array reads them (``gen.numerics.weight_value`` of a
    4-bit post code), times ``2**shift`` add up to the signed weights."""
    rng = np.random.default_rng(0)
    W = np.concatenate([rng.integers(0, 256, (5, 3)), [[0, 127, 128]]])
    signed = np.where(W >= 128, W - 256, W)
    value = np.vectorize(lambda code: weight_value("post", 4, int(code)))
    total = sum(value(p) * 2.0 ** s for p, s in bit_planes(W, 8, 4))
    assert np.array_equal(total, signed)


def test_pass_plan():
    A = np.zeros((3, 10), int)
    passes = passes_for(CFG, A, np.zeros((10, 6), int), "post")
    # N = 6: two column blocks; K = 10: three row blocks each.
    assert [(p["first"], p["final"]) for p in passes] == [(1, 0), (0, 0), (0, 1)] * 2
    planes = passes_for(CFG, A, np.zeros((10, 6), int), "int", 8)
    assert len(planes) == 2 * 3 * 8 and {p["drop"] for p in planes} == {1}


@pytest.mark.parametrize("args, message", [
    ((np.zeros((41, 2), int), np.zeros((2, 2), int), "post"), r"^M=41 must be from 1 to "
                                                              r"max_m=40$"),
    ((np.zeros((2, 601), int), np.zeros((601, 2), int), "post"), r"^K=601 must be from 1 to "
                                                                 r"max_k=600$"),
    ((np.zeros((2, 2), int), np.zeros((2, 2), int), "pot"), r"^4-bit pot weights cannot run on "
                                                            r"a 4-bit post array$"),
])
def test_refusals(args, message):
    with pytest.raises(ShapeError, match=message):
        passes_for(CFG, *args)


def test_the_engine_refuses_a_split_array():
    from hw.matmul_engine import MatmulEngine

    with pytest.raises(ValueError, match=r"^the layer engine takes post arrays with "
                                         r"odd='table'; an array with odd='split' runs as a "
                                         r"bare array \(asqgen verilog, selfcheck\)$"):
        MatmulEngine(config=CFG.replace(odd="split"))
