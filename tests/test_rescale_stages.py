"""Each stage of the rescale unit (``hw.rescale_stages``) against the golden functions of
``core.rescale``, in Amaranth's simulator: seeded random operands over the whole range that
``fixed_point`` allows, and the edges (largest accumulators, every shift from the largest left
to the largest right, ``beta`` from 1 to ``BETA_MAX``). The pipelined stages take a new input
on every clock and are stalled at random (``en`` low on about a third of the clocks)."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from core import rescale
from hw.rescale_stages import (DIV_BITS, MANT_BITS, Affine, Product, Reciprocal, Requantizer,
                               Rounder, greater)

ACC_BITS = 16          # with beta and m at their largest and a left shift of 8: 59 bits
CASES = 300


def _simulate(dut, bench, clocked=False):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _pipeline(dut, inputs, output, latency, seed):
    """Feed ``inputs`` (dicts of port -> value) one per enabled clock, with ``en`` low on
    about a third of the clocks; the output of each input, ``latency`` enabled clocks later."""
    rng = np.random.default_rng(seed)
    got = []

    async def bench(ctx):
        pushed = 0
        while len(got) < len(inputs):
            en = bool(rng.random() > 0.33)
            ctx.set(dut.en, en)
            for port, value in inputs[min(pushed, len(inputs) - 1)].items():
                ctx.set(getattr(dut, port), value)
            await ctx.tick()
            if en:
                pushed += 1
                if pushed >= latency:
                    got.append(ctx.get(output))

    _simulate(dut, bench, clocked=True)     # the last input repeats until its output is out
    return got


def _shifts(rng, n):
    """Shifts from -MAX_LEFT_SHIFT to MAX_RIGHT_SHIFT, each edge included."""
    edges = [-rescale.MAX_LEFT_SHIFT, -1, 0, 1, rescale.MAX_RIGHT_SHIFT]
    return edges + rng.integers(-rescale.MAX_LEFT_SHIFT, 40, n - len(edges)).tolist()


def _wrap(x, bits=64):
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def test_greater_by_halves_is_the_signed_comparison():
    """Every pair of 6-bit signed values (4,096): equal, and different, in either half."""
    a, b = Signal(signed(6)), Signal(signed(6))
    gt = Signal()
    m = Module()
    m.d.comb += gt.eq(greater(a, b))
    wrong = []

    async def bench(ctx):
        for x in range(-32, 32):
            for y in range(-32, 32):
                ctx.set(a, x)
                ctx.set(b, y)
                if ctx.get(gt) != (x > y):
                    wrong.append((x, y))

    _simulate(m, bench)
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("a_shape, b_shape, out_bits", [
    (signed(28), signed(38), 64), (signed(64), unsigned(32), 64), (signed(64), signed(17), 64),
    (signed(17), unsigned(21), None), (unsigned(5), unsigned(3), None),
    (signed(40), signed(40), 48), (signed(9), signed(38), 64),
    # the default bundle's narrow products (core.widths): m * beta, acc * (m * beta), u * R
    (signed(16), unsigned(21), 36), (signed(22), signed(36), 57), (signed(33), signed(32), 64)])
def test_product_is_the_product_modulo_the_width(a_shape, b_shape, out_bits):
    """``Product`` against Python's integers, the low ``out_bits`` bits, every edge of both
    operands included."""
    rng = np.random.default_rng(a_shape.width * 100 + b_shape.width)

    def values(shape):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        edges = [lo, hi, 0, 1, lo + 1, hi - 1]
        return edges + [int(rng.integers(lo, hi, endpoint=True, dtype=np.int64)
                            if shape.width < 64 else
                            int.from_bytes(rng.bytes(8), "little", signed=True))
                        for _ in range(60 - len(edges))]

    a, b = values(a_shape), values(b_shape)
    a, b = a + a[::-1], b + b[::-1]                         # edge pairs both ways
    dut = Product(a_shape, b_shape, out_bits)
    width = len(dut.p)
    got = _pipeline(dut, [{"a": x, "b": y} for x, y in zip(a, b)], dut.p, dut.LATENCY, 1)
    for x, y, p in zip(a, b, got):
        want = _wrap(x * y, width) if dut.p.shape().signed else x * y % (1 << width)
        assert p == want, (x, y)


@pytest.mark.parametrize("stage", ["rounder", "affine bypassed"])
def test_rounder_is_the_golden_rshift_plus_an_addend(stage):
    """``Rounder``, and the one inside ``Affine`` that the adapter borrows (``bypass``)."""
    rng = np.random.default_rng(4)
    x = [-(1 << 61), (1 << 61) - 1] + [int(v) for v in rng.integers(-(1 << 61), 1 << 61,
                                                                     CASES - 2)]
    n = _shifts(rng, CASES)
    addend = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, CASES)]
    dut, extra = (Rounder(), {}) if stage == "rounder" else (Affine(ACC_BITS), {"bypass": 1})
    got = _pipeline(dut, [{"x": a, "n": b, "addend": c, **extra}
                          for a, b, c in zip(x, n, addend)], dut.y, Rounder.LATENCY, 2)
    for a, b, c, y in zip(x, n, addend, got):
        want = int(rescale.rshift(np.int64(a), b)) + c
        assert y == _wrap(want), (a, b, c)


def test_affine_equals_the_golden_affine():
    """``u = rshift(acc * beta_in * m, sh) + bias`` for one channel at a time."""
    rng = np.random.default_rng(1)
    lim = 1 << (ACC_BITS - 1)
    acc = [-lim, lim - 1] + rng.integers(-lim, lim, CASES - 2).tolist()
    m = [-(1 << 15), 1 << 15] + rng.integers(-(1 << 15), (1 << 15) + 1, CASES - 2).tolist()
    beta = [1, rescale.BETA_MAX] + rng.integers(1, rescale.BETA_MAX + 1, CASES - 2).tolist()
    sh = _shifts(rng, CASES)
    bias = rng.integers(-(1 << 31), 1 << 31, CASES).tolist()
    dut = Affine(ACC_BITS)
    inputs = [{"acc": a, "m": mm, "beta_in": b, "sh": s, "bias": bb}
              for a, mm, b, s, bb in zip(acc, m, beta, sh, bias)]
    got = _pipeline(dut, inputs, dut.u, dut.LATENCY, 3)
    for i, (a, mm, b, s, bb) in enumerate(zip(acc, m, beta, sh, bias)):
        # The golden affine, channel by channel: e chosen so that z_shift is s.
        fixed = rescale.LayerRescale(m=np.array([mm]), e=np.array([s + rescale.Z -
                                                                   rescale.BETA_FRAC]),
                                     bias_q=np.array([bb]))
        assert fixed.z_shift[0] == s
        want = int(rescale.affine(np.array([[a]]), np.array([b]), fixed)[0, 0])
        assert got[i] == want, (a, mm, b, s, bb)
    assert MANT_BITS == 17


def _range(bits, signed):
    """``(min_code, max_code)`` of ``core.rescale.LayerRescale`` for ``bits``-bit codes."""
    r = rescale.LayerRescale(m=np.zeros(1), e=np.zeros(1), bias_q=np.zeros(1), next_bits=bits,
                             m_s=1, e_s=0, next_signed=signed)
    return r.min_code, r.max_code


def _code(value, signed):
    """A ``Requantizer.code`` as the host reads it: sign-extended from ``CODE_BITS`` when
    signed."""
    return _wrap(value, Requantizer.CODE_BITS) if signed else value


@pytest.mark.parametrize("signed", [False, True])
def test_requantizer_equals_the_golden_requantize(signed):
    rng = np.random.default_rng(2 + 10 * signed)
    low = -(1 << 26) if signed else -(1 << 20)
    u = [0, 1 << 26, -(1 << 26)] + rng.integers(low, 1 << 26, CASES - 3).tolist()
    recip = [0, (1 << DIV_BITS) - 1, (1 << DIV_BITS) - 1] + rng.integers(
        0, 1 << DIV_BITS, CASES - 3).tolist()
    sh = _shifts(rng, CASES)
    for i in range(5, CASES, 3):           # a third of the values within the codes' range
        sh[i] = int(min(rescale.MAX_RIGHT_SHIFT,
                        max(1, abs(u[i] * recip[i]).bit_length() - int(rng.integers(0, 8)))))
    bits = rng.integers(1, 9, CASES).tolist()
    dut = Requantizer()
    inputs = [{"u": a, "recip": r, "sh_req": s, "max_code": _range(b, signed)[1],
               "signed": signed} for a, r, s, b in zip(u, recip, sh, bits)]
    got = _pipeline(dut, inputs, dut.code, dut.LATENCY, 4)
    checked, clamped = 0, set()
    for i, (uu, r, s, b) in enumerate(zip(u, recip, sh, bits)):
        if abs(uu * r) << max(0, -s) >= 1 << rescale.INT64_HEADROOM:
            continue                                # the golden model refuses these
        lo, hi = _range(b, signed)
        value = int(rescale.rshift(np.int64(uu) * r, s))
        want = min(max(value, lo), hi)
        assert _code(got[i], signed) == want, (uu, r, s, b)
        clamped |= {"low" if value < lo else "high" if value > hi else
                    "in, negative" if value < 0 else "in"}
        checked += 1
    assert checked > CASES // 2
    assert clamped == {"low", "in", "high"} | ({"in, negative"} if signed else set())


def _edge_values(s):
    """The rounded values at the clamp's edges for shift ``s`` (``_edge_cases``)."""
    top_bit = Requantizer.CODE_BITS + 1
    ys = [0, 1, 2, 6, 7, 8, 9, 14, 15, 16, 126, 127, 128, 129, 254, 255, 256, 257,
          (1 << top_bit) - 1, 1 << top_bit, (1 << top_bit) + 1, (1 << (top_bit + 1)) - 1,
          1 << (top_bit + 1), (1 << (top_bit + 1)) + 1, (1 << max(0, 61 - s)) - 1]
    return sorted({sign * y for y in ys for sign in (1, -1)})


@pytest.mark.parametrize("signed", [False, True])
def test_requantizer_at_the_edges_of_its_narrow_datapath(signed):
    """Products whose rounded value lies at the clamp's edges, at every shift: around 0, the
    signed and unsigned ``min_code`` and ``max_code`` of 4 and 8 bits, ``2**(CODE_BITS + 1)``
    and ``2**(CODE_BITS + 2)`` (where ``Requantizer`` stops looking at the low bits of the
    product and looks at their OR, or whether they all equal the sign), and their negatives,
    each plus the rounding's half and one less, with ``recip = 1`` so that the product is
    ``u``."""
    inputs, want = [], []
    for s in range(-rescale.MAX_LEFT_SHIFT, rescale.MAX_RIGHT_SHIFT + 1):
        for y in _edge_values(s):
            for frac in ((0, -1, 1) if s <= 0 else (0, -1, 1, (1 << (s - 1)) - 1, 1 << (s - 1),
                                                    -(1 << (s - 1)), -(1 << (s - 1)) - 1)):
                u = (y << s if s >= 0 else y) + frac
                if abs(u) << max(0, -s) >= 1 << rescale.INT64_HEADROOM:
                    continue
                for b in (4, 8):
                    lo, hi = _range(b, signed)
                    inputs.append({"u": u, "recip": 1, "sh_req": s, "max_code": hi,
                                   "signed": signed})
                    want.append(min(max(int(rescale.rshift(np.int64(u), s)), lo), hi))
    dut = Requantizer()
    got = _pipeline(dut, inputs, dut.code, dut.LATENCY, 5)
    assert len(got) == len(inputs) > 10_000
    for x, g, w in zip(inputs, got, want):
        assert _code(g, signed) == w, x


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


@pytest.mark.parametrize("lo, hi", [(19, 28), (30, 31), (-3, 2)])
def test_narrow_shift_ranges(lo, hi):
    """A ``Rounder`` and a ``Requantizer`` built for the shifts from ``lo`` to ``hi`` only
    (``core.widths``: a shifter as deep as that range) equal the golden ones on every shift of
    it, the requantizer with its values around the clamp's edges."""
    rng = np.random.default_rng(lo + 100)
    sh = [lo, hi] + rng.integers(lo, hi + 1, CASES - 2).tolist()
    x = rng.integers(-(1 << 50), 1 << 50, CASES).tolist()
    addend = rng.integers(-(1 << 31), 1 << 31, CASES).tolist()
    dut = Rounder(signed(52), signed(32), out_bits=44, shifts=(lo, hi))
    got = _pipeline(dut, [{"x": a, "n": n, "addend": c} for a, n, c in zip(x, sh, addend)],
                    dut.y, Rounder.LATENCY, 6)
    for a, n, c, y in zip(x, sh, addend, got):
        want = int(rescale.rshift(np.int64(a), n)) + c
        assert y == _wrap(want, 44), (a, n, c)
    u = rng.integers(-(1 << 30), 1 << 30, CASES).tolist()
    recip = rng.integers(0, 1 << 31, CASES).tolist()
    for i in range(0, CASES, 2):                    # half of them near the codes' range
        recip[i] = int(rng.integers(1, 1 << max(1, min(sh[i], 31))))
        u[i] = int(rng.integers(-(1 << 9), 1 << 9)) * max(1, (1 << max(sh[i], 0)) // recip[i])
    dut = Requantizer(33, 31, shifts=(lo, hi))
    inputs = [{"u": a, "recip": r, "sh_req": s, "max_code": 255, "signed": 0}
              for a, r, s in zip(u, recip, sh)]
    got = _pipeline(dut, inputs, dut.code, dut.LATENCY, 7)
    inside = 0
    for uu, r, s, code in zip(u, recip, sh, got):
        if abs(uu * r) << max(0, -s) >= 1 << rescale.INT64_HEADROOM:
            continue
        value = int(rescale.rshift(np.int64(uu) * r, s))
        assert code == min(max(value, 0), 255), (uu, r, s)
        inside += 0 < value < 255
    assert inside > CASES // 20
