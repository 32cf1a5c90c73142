"""Each stage of the rescale unit (``hw.rescale_stages``) against the golden functions of
``gen.rescale``, in Amaranth's simulator: seeded random operands over the whole range that
``fixed_point`` allows, and the edges (largest accumulators, every shift from the largest left
to the largest right, ``beta`` from 1 to ``BETA_MAX``)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gen import rescale
from hw.rescale_stages import DIV_BITS, Affine, Reciprocal, Requantizer

ACC_BITS = 16          # with beta and m at their largest and a left shift of 8: 59 bits
CASES = 300


def _simulate(dut, bench, clocked=False):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _shifts(rng, n):
    """Shifts from -MAX_LEFT_SHIFT to MAX_RIGHT_SHIFT, each edge included."""
    edges = [-rescale.MAX_LEFT_SHIFT, -1, 0, 1, rescale.MAX_RIGHT_SHIFT]
    return edges + rng.integers(-rescale.MAX_LEFT_SHIFT, 40, n - len(edges)).tolist()


def test_affine_equals_the_golden_affine():
    """``u = relu(rshift(acc * beta_in * m, sh) + bias)`` for one channel at a time."""
    rng = np.random.default_rng(1)
    lim = 1 << (ACC_BITS - 1)
    acc = [-lim, lim - 1] + rng.integers(-lim, lim, CASES - 2).tolist()
    m = rng.integers(-(1 << 15), (1 << 15) + 1, CASES).tolist()
    beta = [1, rescale.BETA_MAX] + rng.integers(1, rescale.BETA_MAX + 1, CASES - 2).tolist()
    sh = _shifts(rng, CASES)
    bias = rng.integers(-(1 << 31), 1 << 31, CASES).tolist()
    relu = rng.integers(0, 2, CASES).tolist()
    dut = Affine(ACC_BITS)
    got = []

    async def bench(ctx):
        for values in zip(acc, m, beta, sh, bias, relu):
            for port, v in zip((dut.acc, dut.m, dut.beta_in, dut.sh, dut.bias, dut.relu),
                               values):
                ctx.set(port, v)
            got.append(ctx.get(dut.u))

    _simulate(dut, bench)
    for i, (a, mm, b, s, bb, r) in enumerate(zip(acc, m, beta, sh, bias, relu)):
        # The golden affine, channel by channel: e chosen so that z_shift is s.
        fixed = rescale.LayerRescale(m=np.array([mm]), e=np.array([s + rescale.Z -
                                                                   rescale.BETA_FRAC]),
                                     bias_q=np.array([bb]))
        assert fixed.z_shift[0] == s
        want = int(rescale.affine(np.array([[a]]), np.array([b]), fixed)[0, 0])
        assert got[i] == (max(want, 0) if r else want), (a, mm, b, s, bb, r)


def test_requantizer_equals_the_golden_requantize():
    rng = np.random.default_rng(2)
    u = [0, 1 << 26] + rng.integers(-(1 << 20), 1 << 26, CASES - 2).tolist()
    recip = [0, (1 << DIV_BITS) - 1] + rng.integers(0, 1 << DIV_BITS, CASES - 2).tolist()
    sh = _shifts(rng, CASES)
    bits = rng.integers(1, 9, CASES).tolist()
    dut = Requantizer()
    got = []

    async def bench(ctx):
        for values in zip(u, recip, sh, bits):
            ctx.set(dut.u, values[0])
            ctx.set(dut.recip, values[1])
            ctx.set(dut.sh_req, values[2])
            ctx.set(dut.max_code, 2 ** values[3] - 1)
            got.append(ctx.get(dut.code))

    _simulate(dut, bench)
    checked = 0
    for i, (uu, r, s, b) in enumerate(zip(u, recip, sh, bits)):
        if abs(uu * r) << max(0, -s) >= 1 << rescale.INT64_HEADROOM:
            continue                                # the golden model refuses these
        want = min(max(int(rescale.rshift(np.int64(uu) * r, s)), 0), 2 ** b - 1)
        assert got[i] == want, (uu, r, s, b)
        checked += 1
    assert checked > CASES // 2


@pytest.mark.parametrize("numerator, divisor", [
    (1 << 31, 1), ((1 << 31) - 1, rescale.BETA_MAX), (12345 << 16, rescale.BETA_ONE),
    (0, 7), (1 << 16, (1 << 16) + 1), (3 << 20, 3)])
def test_reciprocal_divides_in_latency_clocks(numerator, divisor):
    """``done`` rises ``LATENCY`` clocks after ``run``, with the floored quotient, and the
    quotient stays while ``run`` is high and after it falls."""
    dut = Reciprocal()
    seen = {}

    async def bench(ctx):
        ctx.set(dut.numerator, numerator)
        ctx.set(dut.divisor, divisor)
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.done)
        ctx.set(dut.run, 1)
        clocks = 0
        while not ctx.get(dut.done):
            await ctx.tick()
            clocks += 1
            assert clocks <= Reciprocal.LATENCY + 1
        seen["clocks"], seen["quotient"] = clocks, ctx.get(dut.quotient)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.done) and ctx.get(dut.quotient) == seen["quotient"]
        ctx.set(dut.run, 0)
        await ctx.tick()
        assert not ctx.get(dut.done) and ctx.get(dut.quotient) == seen["quotient"]

    _simulate(dut, bench, clocked=True)
    assert seen["clocks"] == Reciprocal.LATENCY
    assert seen["quotient"] == numerator // divisor


def test_reciprocal_equals_the_golden_reciprocal():
    """``LayerRescale.reciprocal`` for random ``m_s`` and ``beta``, back to back."""
    rng = np.random.default_rng(3)
    m_s = rng.integers(1 << 14, (1 << 15) + 1, 20).tolist()
    beta = [1, rescale.BETA_MAX] + rng.integers(1, rescale.BETA_MAX + 1, 18).tolist()
    dut = Reciprocal()
    got = []

    async def bench(ctx):
        for ms, b in zip(m_s, beta):
            ctx.set(dut.numerator, ms << rescale.RECIP_BITS)
            ctx.set(dut.divisor, b)
            ctx.set(dut.run, 1)
            await ctx.tick().until(dut.done)
            got.append(ctx.get(dut.quotient))
            ctx.set(dut.run, 0)
            await ctx.tick()

    _simulate(dut, bench, clocked=True)
    for ms, b, q in zip(m_s, beta, got):
        fixed = rescale.LayerRescale(m=np.zeros(1), e=np.zeros(1), bias_q=np.zeros(1), m_s=ms)
        assert q == int(fixed.reciprocal(np.array([b]))[0])
