# amaranth: UnusedElaboratable=no
"""The matmul engine (array + accumulator buffer) on Verilator against the golden model: ``K``
and ``N`` larger than the array and not multiples of it, 8-bit ``int`` weights as signed-digit
terms, random stalls and backpressure."""

import numpy as np
import pytest

from core.config import ArrayConfig
from core.numerics import ProductFormat, int_value, product, weight_value
from sim.array_sim import ShapeError
from sim.engine_sim import EngineSim, digit_shape, digit_terms, digit_window, passes_for
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
              (2, 9, 3, "int", 4), (1, 37, 9, "post", 4), (1, 20, 3, "int", 8)]
    products = [(rng.integers(0, 256, (m, k)), rng.integers(0, 2 ** b, (k, n)), f, b)
                for m, k, n, f, b in shapes]
    run = engine.run(products, seed=seed, stall=stall, backpressure=stall, name=f"tiled{seed}")
    assert run.lasts_ok
    for (A, W, f, b), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, _fmt(f, b)))


def test_one_by_one_array(build_root):
    """A 1x1 array: a pass of one or two vectors comes back to its accumulator entries two
    clocks later, while their sums are still being written (forwarded)."""
    cfg = ArrayConfig(rows=1, cols=1, a_bits=8, w_bits=4, w_format="post", max_k=16, max_m=4)
    rng = np.random.default_rng(7)
    products = [(rng.integers(0, 256, (m, k)), rng.integers(0, 16, (k, n)), "post", 4)
                for m, k, n in [(1, 5, 1), (2, 7, 2), (3, 4, 1), (1, 9, 3)]]
    run = EngineSim(cfg, build_root).run(products, name="one_by_one")
    assert run.lasts_ok
    for (A, W, f, b), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, _fmt(f, b)))


def test_extreme_int8_sums(engine):
    """All-maximal activations with -128 and +127 weights over the largest K."""
    A = np.full((2, CFG.max_k), 255)
    W = np.concatenate([np.full((CFG.max_k, 1), 128), np.full((CFG.max_k, 1), 127)], axis=1)
    run = engine.run([(A, W, "int", 8)], name="extreme")
    assert run.results[0].tolist() == [[-255 * 128 * 600, 255 * 127 * 600]] * 2


@pytest.mark.parametrize("w_format, w_bits", [("post", 4), ("post", 2), ("post", 3),
                                             ("pot", 4), ("post", 5)])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_digit_terms_sum_to_the_weights(w_format, w_bits, bits):
    """Every code of every term, read as the array reads it (``core.numerics.weight_value``),
    times ``2**(shift + width - 1)``, adds up to the signed weight, for every weight."""
    cfg = ArrayConfig(w_format=w_format, w_bits=w_bits)
    W = np.arange(2 ** bits).reshape(-1, 2)
    windows, drop, terms = digit_terms(W, bits, cfg)
    width = digit_window(cfg, bits)
    assert drop == cfg.frac_bits - (width - 1) >= 0
    value = np.vectorize(lambda code: weight_value(w_format, w_bits, int(code)))
    total = sum(value(codes).reshape((terms,) + W.shape).sum(axis=0) * 2.0 ** (shift + width - 1)
                for codes, shift in windows)
    assert np.array_equal(total, np.where(W >= 2 ** (bits - 1), W - 2 ** bits, W))


@pytest.mark.parametrize("w_format, w_bits", [("post", b) for b in range(2, 8)] +
                                            [("pot", b) for b in range(2, 7)])
def test_digit_passes_leave_the_dropped_bits_zero(w_format, w_bits):
    """The accumulator buffer shifts a result by ``shift - drop`` in one step, which is
    ``(result >> drop) << shift`` only when the ``drop`` low bits are zero: on every array that
    takes digit passes (wider weights need more than 64 accumulator bits), every code of every
    digit pass of 2- to 8-bit weights, times every activation, is a multiple of ``2**drop``,
    and so is any sum of such products (passes of the array's own weights have ``drop = 0``)."""
    cfg = ArrayConfig(w_format=w_format, w_bits=w_bits)
    a = np.arange(2 ** cfg.a_bits)
    for bits in range(2, 9):
        W = np.arange(2 ** bits).reshape(-1, 1)
        windows, drop, _ = digit_terms(W, bits, cfg)
        codes = {int(c) for plane, _ in windows for c in np.ravel(plane)}
        for code in codes:
            products = [product(w_format, w_bits, cfg.frac_bits, int(x), code) for x in a]
            assert all(p % 2 ** drop == 0 for p in products), (bits, code, drop)


def test_digit_shape_of_int8_on_post4():
    """8-bit weights on a 4-bit post array: two windows of four positions (shifts 0 and 4),
    at most two non-zero NAF digits in each (e.g. 119 = 128 - 8 - 1)."""
    cfg = ArrayConfig()
    assert digit_window(cfg) == 4 and digit_shape(8, 4) == (2, 2)
    windows, _, terms = digit_terms(np.array([[119]]), 8, cfg)
    assert [shift for _, shift in windows] == [0, 4] and terms == 2


def test_pass_plan():
    A = np.zeros((3, 10), int)
    passes = passes_for(CFG, A, np.zeros((10, 6), int), "post")
    # N = 6: two column blocks; K = 10: three row blocks each.
    assert [(p["first"], p["final"]) for p in passes] == [(1, 0), (0, 0), (0, 1)] * 2
    digits = passes_for(CFG, A, np.zeros((10, 6), int), "int", 8)
    # Two windows of K x 2 stacked rows (20: five blocks of 4 rows), for each column block.
    assert len(digits) == 2 * 2 * 5
    assert {p["drop"] for p in digits} == {CFG.frac_bits - 3}
    assert [p["shift"] for p in digits[:10]] == [0] * 5 + [4] * 5


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


@pytest.mark.parametrize("seed", [11, 12])
def test_one_vector_passes_after_a_full_bank(engine, seed):
    """Passes of one vector (``M = 1``), one to three a block, while ``o_acc`` is mostly
    stalled: both banks fill, the array's results wait in its queue and then reach the
    accumulator a clock apart, the same entry each time (its sum not yet written when the
    next one reads it), or the final vectors of three blocks on three clocks (the third's
    bank is taken before the first's is marked full)."""
    rng = np.random.default_rng(seed)
    products = [(rng.integers(0, 256, (1, k)), rng.integers(0, 16, (k, n)), "post", 4)
                for k, n in [(8, 40), (12, 24), (7, 30), (4, 40), (3, 17)]]
    run = engine.run(products, seed=seed, backpressure=0.97, name=f"one_vector{seed}")
    assert run.lasts_ok
    for (A, W, f, b), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, _fmt(f, b)))


CFG_SIGNED = CFG.replace(signed_acts=True)


@pytest.fixture(scope="module")
def signed_engine(build_root):
    return EngineSim(CFG_SIGNED, build_root)


def _signed_fmt(w_format, w_bits):
    return ProductFormat(w_format=w_format, a_bits=8, w_bits=w_bits, a_signed=True,
                         frac_bits=CFG.frac_bits if w_format == "post" else 0)


@pytest.mark.parametrize("seed, stall", [(21, 0.0), (22, 0.35)])
def test_signed_activations(signed_engine, seed, stall):
    """A signed layer's two's-complement codes (-128..127), an unsigned layer's (0..255) and any
    sign and magnitude (-255..255) on one engine (the host sends magnitude and sign), on the
    ``post`` array and as the activations of 8- and 4-bit ``int`` weights run as signed-digit
    terms, with stalls and backpressure: identical to the golden model, and the digit terms to
    the exact integer product ``A x W``."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1, "post", 4), (9, 13, 6, "post", 4), (40, 37, 9, "post", 4),
              (5, 10, 7, "int", 8), (16, 4, 4, "int", 8), (2, 9, 3, "int", 4),
              (3, 144, 5, "post", 4), (1, 20, 3, "int", 8), (7, 30, 5, "post", 4),
              (6, 12, 5, "int", 8)]
    lows = [-128, 0, -255]                       # to 127, 255, 255
    products = [(rng.integers(lows[i % 3], 128 if i % 3 == 0 else 256, (m, k)),
                 rng.integers(0, 2 ** b, (k, n)), f, b)
                for i, (m, k, n, f, b) in enumerate(shapes)]
    products[2][0][0, :] = -128
    run = signed_engine.run(products, seed=seed, stall=stall, backpressure=stall,
                            name=f"signed{seed}")
    assert run.lasts_ok
    for (A, W, f, b), got in zip(products, run.results):
        np.testing.assert_array_equal(got, matmul(A, W, _signed_fmt(f, b)))
        if f == "int":
            np.testing.assert_array_equal(got, A @ int_value(b, W))


def test_signed_extreme_sums(signed_engine):
    """``-255``, ``-128`` (a signed layer's extreme) and ``255`` (an unsigned layer's) over the
    largest ``K``: with ``-128`` and ``+127`` int8 weights (the largest sums of either sign, the
    buffer's width) and with ``post`` weights ``-1`` and ``+1`` (``+-bound`` per product)."""
    A = np.array([[-255] * CFG.max_k, [-128] * CFG.max_k, [255] * CFG.max_k])
    W = np.concatenate([np.full((CFG.max_k, 1), 128), np.full((CFG.max_k, 1), 127)], axis=1)
    Wp = np.tile(np.array([[9, 1]]), (CFG.max_k, 1))             # -1 and +1
    run = signed_engine.run([(A, W, "int", 8), (A, Wp, "post", 4)], name="signed_extreme")
    assert run.results[0].tolist() == [[a * -128 * 600, a * 127 * 600] for a in (-255, -128, 255)]
    bound = CFG_SIGNED.product_bound
    assert bound == 255 << CFG.frac_bits
    assert run.results[1].tolist() == [[600 * bound, -600 * bound],
                                       [600 * 128 << CFG.frac_bits, -600 * 128 << CFG.frac_bits],
                                       [-600 * bound, 600 * bound]]
