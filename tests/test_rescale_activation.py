"""``hw.rescale_activation.Activation`` against ``core.rescale`` in Amaranth's simulator:
``affine``, the shortcut's operand (``shortcut_operand`` of an identity shortcut's codes, or
a projection's ``z``), ``residual_add``, the ReLU and the bounded ReLU's clip
(``core.rescale._after_z``), two lanes at once, a new slice every clock; seeded random
operands over the ranges that ``core.rescale.fixed_point`` allows, every shift from the
largest left to the largest right; the clip's comparison exhaustively around its edges."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from core import regmap, rescale
from hw.rescale_activation import Activation
from hw.rescale_stages import Affine, Rounder

ACC_BITS, LANES, CASES = 16, 2, 200


def _shifts(rng, n):
    edges = [-rescale.MAX_LEFT_SHIFT, -1, 0, 1, rescale.MAX_RIGHT_SHIFT]
    return np.array(edges + rng.integers(-rescale.MAX_LEFT_SHIFT, 40, n - len(edges)).tolist())


def _layer(m, sh, bias):
    """A one-channel ``LayerRescale`` whose ``z_shift`` is ``sh``."""
    return rescale.LayerRescale(m=np.array([m]), e=np.array([sh + rescale.Z - rescale.BETA_FRAC]),
                                bias_q=np.array([bias]))


def _golden(acc, beta, m, sh, bias, res, res_beta, res_m, res_sh, kind, relu, clip_q=None):
    z = int(rescale.affine(np.array([[acc]]), np.array([beta]), _layer(m, sh, bias))[0, 0])
    if kind == "identity":
        operand = int(rescale.shortcut_operand(np.array([[res]]), np.array([res_beta]),
                                               _layer(res_m, res_sh, 0))[0, 0])
    else:
        operand = res if kind == "projection" else 0
    u = rescale.residual_add(np.array([[z]]), np.array([[operand]]))
    r = rescale.LayerRescale(m=np.zeros(1), e=np.zeros(1), bias_q=np.zeros(1), clip_q=clip_q,
                             next_bits=8, m_s=1, e_s=0)
    return int(rescale._after_z(u, r, relu=relu, pool=0)[0][0, 0])


@pytest.mark.parametrize("kind", ["none", "identity", "projection", "signed identity"])
@pytest.mark.parametrize("relu, clip", [(False, False), (True, False), (True, True),
                                        (False, True)])
def test_activation_equals_the_golden_affine_residual_and_relu(kind, relu, clip):
    """``"signed identity"``: the shortcut's codes are signed (``res_signed``; a linear
    bottleneck's, ``-128 .. 127``), half of them sent as ``o_out`` gives them (two's
    complement in their 8 bits, 0 above), half sign-extended to 64 bits."""
    res_signed = kind == "signed identity"
    kind = "identity" if res_signed else kind
    rng = np.random.default_rng(10 + 4 * list(regmap.RESIDUAL_KINDS).index(kind) + relu
                                + 2 * clip + 50 * res_signed)
    # ReLU6 at the units of z (6 << Z), a random one, 0 and the largest clip_q.
    clip_q = int(rng.choice([6 << rescale.Z, int(rng.integers(1, 1 << 31)), 0, (1 << 31) - 1]))
    n = CASES * LANES
    lim = 1 << (ACC_BITS - 1)
    acc = np.concatenate([[-lim, lim - 1], rng.integers(-lim, lim, n - 2)])
    m = np.concatenate([[-(1 << 15), 1 << 15], rng.integers(-(1 << 15), (1 << 15) + 1, n - 2)])
    sh, res_sh = _shifts(rng, n), _shifts(rng, n)[::-1]
    bias = rng.integers(-(1 << 31), 1 << 31, n)
    res_m = rng.integers(-(1 << 15), (1 << 15) + 1, n)
    res = (rng.integers(-(1 << 7), 1 << 7, n) if res_signed
           else rng.integers(0, 1 << 8, n) if kind == "identity"
           else rng.integers(-(1 << 40), 1 << 40, n))
    sent = res.copy()
    if res_signed:
        res[:4] = [-128, -1, 0, 127]
        sent = np.where(np.arange(n) % 2, res, res & 0xFF)
    beta = np.concatenate([[1, rescale.BETA_MAX], rng.integers(1, rescale.BETA_MAX + 1,
                                                                CASES - 2)])
    res_beta = rng.integers(1, rescale.BETA_MAX + 1, CASES)
    if clip:        # about half of the z near the clip, the rest as they come
        bias[::2] = np.clip(clip_q + rng.integers(-(1 << 20), 1 << 20, len(bias[::2])),
                            -(1 << 31), (1 << 31) - 1)
    dut = Activation(lanes=LANES, acc_bits=ACC_BITS)
    assert dut.LATENCY == Activation.latency(ACC_BITS) == Affine.latency(ACC_BITS) + 2
    got = []

    async def bench(ctx):
        ctx.set(dut.residual, regmap.RESIDUAL_KINDS[kind])
        ctx.set(dut.res_signed, res_signed)
        ctx.set(dut.relu, relu)
        ctx.set(dut.clip, clip)
        ctx.set(dut.clip_q, clip_q)
        for clock in range(CASES + dut.LATENCY):
            i = min(clock, CASES - 1)
            ctx.set(dut.beta, {"beta": int(beta[i]), "res": int(res_beta[i])})
            for lane in range(LANES):
                k = i * LANES + lane
                for port, values in (("acc", acc), ("m", m), ("sh", sh), ("bias", bias),
                                     ("res", sent), ("res_m", res_m), ("res_sh", res_sh)):
                    ctx.set(getattr(dut, port)[lane], int(values[k]))
            await ctx.tick()
            if clock + 1 >= dut.LATENCY and len(got) < CASES * LANES:
                got.extend(ctx.get(dut.u[lane]) for lane in range(LANES))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for k in range(n):
        want = _golden(int(acc[k]), int(beta[k // LANES]), int(m[k]), int(sh[k]), int(bias[k]),
                       int(res[k]), int(res_beta[k // LANES]), int(res_m[k]), int(res_sh[k]),
                       kind, relu, clip_q if clip else None)
        assert got[k] == want, k


def test_lane_0_rounder_serves_the_adapter():
    """With ``bypass`` high, ``y = rshift(x, n) + addend`` ``Rounder.LATENCY`` clocks later."""
    rng = np.random.default_rng(16)
    x = rng.integers(-(1 << 61), 1 << 61, CASES)
    n = _shifts(rng, CASES)
    addend = rng.integers(-(1 << 31), 1 << 31, CASES)
    dut = Activation(lanes=LANES, acc_bits=ACC_BITS, residual=False)
    got = []

    async def bench(ctx):
        ctx.set(dut.bypass, 1)
        for clock in range(CASES + Rounder.LATENCY):
            i = min(clock, CASES - 1)
            ctx.set(dut.x, int(x[i]))
            ctx.set(dut.n, int(n[i]))
            ctx.set(dut.addend, int(addend[i]))
            await ctx.tick()
            if clock + 1 >= Rounder.LATENCY and len(got) < CASES:
                got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for i in range(CASES):
        assert got[i] == int(rescale.rshift(np.int64(x[i]), int(n[i]))) + int(addend[i]), i


def test_the_clip_compares_exactly_around_its_edges():
    """Every ``z`` within 3 of 0, of ReLU6's clip, of the largest clip and of each power of
    two from 2**30 to 2**62, and their negatives, against clips around the same edges, with
    and without the ReLU."""
    edges = [0, 1 << 16, 6 << rescale.Z, (1 << 31) - 1] + [1 << k for k in range(30, 63)]
    zs = sorted({s * e + d for e in edges for d in range(-3, 4) for s in (1, -1)
                 if -(1 << 63) <= s * e + d < 1 << 63})
    clips = [0, 1, 6 << rescale.Z, (1 << 30) - 1, 1 << 30, (1 << 31) - 2, (1 << 31) - 1]
    # ``z`` through the projection's operand (``bias`` is 32 bits; ``acc`` and ``m`` are 0);
    # the clip and the ReLU are a layer's registers: each pair of them its own run.
    dut = Activation(lanes=1, acc_bits=ACC_BITS, residual=True)
    cases, got = [], []

    async def bench(ctx):
        ctx.set(dut.clip, 1)
        ctx.set(dut.residual, regmap.RESIDUAL_KINDS["projection"])
        ctx.set(dut.beta, {"beta": 1, "res": 1})
        ctx.set(dut.acc[0], 0)
        ctx.set(dut.m[0], 0)
        ctx.set(dut.bias[0], 0)
        for c in clips:
            for relu in (0, 1):
                ctx.set(dut.clip_q, c)
                ctx.set(dut.relu, relu)
                for clock in range(len(zs) + dut.LATENCY):
                    ctx.set(dut.res[0], zs[min(clock, len(zs) - 1)])
                    await ctx.tick()
                    if clock + 1 >= dut.LATENCY and clock + 1 - dut.LATENCY < len(zs):
                        z = zs[clock + 1 - dut.LATENCY]
                        cases.append((z, c, relu))
                        got.append(ctx.get(dut.u[0]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(clips) * 2 * len(zs)
    for (z, c, relu), u in zip(cases, got):
        want = min(max(z, 0) if relu else z, c)
        assert u == want, (z, c, relu, u)
