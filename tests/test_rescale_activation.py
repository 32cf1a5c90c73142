"""``hw.rescale_activation.Activation`` against ``core.rescale`` in Amaranth's simulator:
``affine``, the shortcut's operand (``shortcut_operand`` of an identity shortcut's codes, or
a projection's ``z``), ``residual_add`` and the ReLU, two lanes at once, a new slice every
clock; seeded random operands over the ranges that ``core.rescale.fixed_point`` allows, every
shift from the largest left to the largest right."""

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


def _golden(acc, beta, m, sh, bias, res, res_beta, res_m, res_sh, kind, relu):
    z = int(rescale.affine(np.array([[acc]]), np.array([beta]), _layer(m, sh, bias))[0, 0])
    if kind == "identity":
        operand = int(rescale.shortcut_operand(np.array([[res]]), np.array([res_beta]),
                                               _layer(res_m, res_sh, 0))[0, 0])
    else:
        operand = res if kind == "projection" else 0
    u = int(rescale.residual_add(np.array([z]), np.array([operand]))[0])
    return max(u, 0) if relu else u


@pytest.mark.parametrize("kind", ["none", "identity", "projection"])
@pytest.mark.parametrize("relu", [False, True])
def test_activation_equals_the_golden_affine_residual_and_relu(kind, relu):
    rng = np.random.default_rng(10 + 2 * list(regmap.RESIDUAL_KINDS).index(kind) + relu)
    n = CASES * LANES
    lim = 1 << (ACC_BITS - 1)
    acc = np.concatenate([[-lim, lim - 1], rng.integers(-lim, lim, n - 2)])
    m = np.concatenate([[-(1 << 15), 1 << 15], rng.integers(-(1 << 15), (1 << 15) + 1, n - 2)])
    sh, res_sh = _shifts(rng, n), _shifts(rng, n)[::-1]
    bias = rng.integers(-(1 << 31), 1 << 31, n)
    res_m = rng.integers(-(1 << 15), (1 << 15) + 1, n)
    res = (rng.integers(0, 1 << 8, n) if kind == "identity"
           else rng.integers(-(1 << 40), 1 << 40, n))
    beta = np.concatenate([[1, rescale.BETA_MAX], rng.integers(1, rescale.BETA_MAX + 1,
                                                                CASES - 2)])
    res_beta = rng.integers(1, rescale.BETA_MAX + 1, CASES)
    dut = Activation(lanes=LANES, acc_bits=ACC_BITS)
    assert dut.LATENCY == Affine.latency(ACC_BITS) + 2
    got = []

    async def bench(ctx):
        ctx.set(dut.residual, regmap.RESIDUAL_KINDS[kind])
        ctx.set(dut.relu, relu)
        for clock in range(CASES + dut.LATENCY):
            i = min(clock, CASES - 1)
            ctx.set(dut.beta, {"beta": int(beta[i]), "res": int(res_beta[i])})
            for lane in range(LANES):
                k = i * LANES + lane
                for port, values in (("acc", acc), ("m", m), ("sh", sh), ("bias", bias),
                                     ("res", res), ("res_m", res_m), ("res_sh", res_sh)):
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
                       kind, relu)
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
