# amaranth: UnusedElaboratable=no
"""``hw.rescale_adapter.AdapterStage`` against ``core.rescale.adapter_beta`` in Amaranth's
simulator: seeded random one- and two-layer adapters and activations, the channel sums in
the ``S`` memory as the rescale unit lays them out (block, sample, slice), the weights in
``core.regmap``'s regions, a ``Rounder`` lent to the stage as the unit lends lane 0's; shifts
chosen so that ``beta`` falls below 1, inside and above ``BETA_MAX`` (the clamp)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from core import rescale
from hw.rescale_adapter import AdapterStage
from hw.rescale_layouts import slice_layout
from hw.rescale_stages import MANT_BITS, Rounder

COLS, LANES, MAX_C, MAX_H, MAX_B, CASES = 4, 2, 8, 3, 2, 30
STEPS = COLS // LANES
BLOCKS = -(-MAX_C // COLS)


def _layer(rng, kind, channels):
    """A random adapter of ``kind`` for ``channels`` channels (the other fields unused)."""
    fields = dict(m=np.zeros(channels, np.int64), e=np.zeros(channels, np.int64),
                  bias_q=np.zeros(channels, np.int64), next_bits=4, m_s=1 << 14, e_s=0,
                  adapter=kind, adapter_input="channels")
    w = lambda *shape: rng.integers(-(1 << 15), (1 << 15) + 1, shape)
    if kind == "two":
        hidden = int(rng.integers(1, MAX_H + 1))
        fields.update(w1_q=w(hidden, channels), e1=int(rng.integers(16, 28)),
                      b1_q=rng.integers(-(1 << 20), 1 << 20, hidden), w2_q=w(1, hidden),
                      e2=int(rng.integers(12, 30)), b2_q=rng.integers(-(1 << 16), 1 << 16, 1))
    else:
        fields.update(w1_q=w(1, channels), e1=int(rng.integers(16, 34)),
                      b1_q=rng.integers(-(1 << 16), 1 << 16, 1))
    return rescale.LayerRescale(**fields)


@pytest.mark.parametrize("kind", ["one", "two"])
def test_adapter_equals_the_golden_adapter_beta(kind):
    rng = np.random.default_rng(30 + (kind == "two"))
    s_depth = BLOCKS * MAX_B * STEPS
    m = Module()
    m.submodules.adapter = dut = AdapterStage(cols=COLS, lanes=LANES, max_channels=MAX_C,
                                         max_hidden=MAX_H, max_batch=MAX_B, s_depth=s_depth)
    m.submodules.rounder = rounder = Rounder()
    mems = {"s": memory.Memory(shape=slice_layout(LANES), depth=s_depth, init=[]),
            "w1": memory.Memory(shape=MANT_BITS, depth=MAX_C * MAX_H, init=[]),
            "b1": memory.Memory(shape=32, depth=MAX_H, init=[]),
            "wb": memory.Memory(shape=MANT_BITS, depth=MAX_C, init=[])}
    for name, mem in mems.items():
        m.submodules[f"mem_{name}"] = mem
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(getattr(dut, f"{name}_addr")),
                     getattr(dut, f"{name}_data").eq(rd.data)]
    m.d.comb += [rounder.x.eq(dut.x), rounder.n.eq(dut.n), rounder.addend.eq(dut.addend),
                 dut.y.eq(rounder.y)]
    cases, got = [], []

    async def bench(ctx):
        for _ in range(CASES):
            channels = int(rng.integers(1, MAX_C + 1))
            r = _layer(rng, kind, channels)
            u = rng.integers(0, 1 << 20, (1, channels, 4))
            sums = u.sum(axis=2)[0]
            sample = int(rng.integers(MAX_B))
            for c in range(channels):
                b, j, lane = c // COLS, c % COLS // LANES, c % LANES
                ctx.set(mems["s"].data[b * MAX_B * STEPS + sample * STEPS + j][lane],
                        int(sums[c]))
            if kind == "two":
                for j, row in enumerate(r.w1_q):
                    for c, v in enumerate(row):
                        ctx.set(mems["w1"].data[j * MAX_C + c], int(v))
                    ctx.set(mems["b1"].data[j], int(r.b1_q[j]))
            for i, v in enumerate(r.beta_weights):
                ctx.set(mems["wb"].data[i], int(v))
            regs = {"two": kind == "two", "channels": channels, "hidden": len(r.b1_q),
                    "sh1": r.hidden_shift or 0, "shb": r.beta_shift, "bb": r.beta_bias,
                    "sample_base": sample * STEPS}
            for name, value in regs.items():
                ctx.set(getattr(dut, name), int(value))
            ctx.set(dut.load, 1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.start, 0)
            while not ctx.get(dut.done):
                await ctx.tick()
            await ctx.tick()
            got.append(ctx.get(dut.beta))
            cases.append((u, r))
        # ``load`` alone (no adapter): beta is BETA_ONE.
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.append(ctx.get(dut.beta))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    clamped = 0
    for (u, r), beta in zip(cases, got):
        want = int(rescale.adapter_beta(u, r)[0])
        assert beta == want
        clamped += want in (1, rescale.BETA_MAX)
    assert 0 < clamped < CASES                  # both the clamp and the values inside it
    assert got[-1] == rescale.BETA_ONE


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        AdapterStage(cols=COLS, lanes=3, max_channels=MAX_C, max_hidden=MAX_H,
                max_batch=MAX_B, s_depth=8)
