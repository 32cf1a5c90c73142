# amaranth: UnusedElaboratable=no
"""``hw.rescale_sums.ChannelSums`` against the channel sums of ``core.rescale.adapter_beta``
(``u_q.reshape(N, C, -1).sum(2)``) in Amaranth's simulator: a batch of samples of seeded
random pooled activations, slice by slice with random gaps, between them slices that are not
``done`` (the first row of a vertical pair), which add nothing."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from hw.rescale_layouts import slice_layout
from hw.rescale_sums import ChannelSums

COLS, BATCH = 4, 3


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("positions", [1, 5])
def test_sums_equal_the_golden_channel_sums(lanes, positions):
    steps = COLS // lanes
    rng = np.random.default_rng(lanes * 10 + positions)
    u = rng.integers(0, 1 << 40, (BATCH, COLS, positions))
    depth = BATCH * steps
    m = Module()
    m.submodules.sums = dut = ChannelSums(cols=COLS, lanes=lanes, u_depth=2, s_depth=depth)
    m.submodules.mem_s = mem = memory.Memory(shape=slice_layout(lanes), depth=depth, init=[])
    wr = mem.write_port()
    m.d.comb += [wr.addr.eq(dut.w_addr), wr.data.eq(dut.w_data), wr.en.eq(dut.w_en)]

    async def slice_(ctx, place, values, done):
        ctx.set(dut.i, place)
        ctx.set(dut.done, done)
        for lane, v in enumerate(values):
            ctx.set(dut.window[lane], v)
        await ctx.tick()

    async def bench(ctx):
        for n in range(BATCH):
            for p in range(positions):
                # A slice that is not done (its values anything) for every other position.
                rows = [0, 1] if p % 2 else [1]
                for done in rows:
                    for j in range(steps):
                        while rng.random() < 0.3:
                            await slice_(ctx, {"valid": 0}, [0] * lanes, 0)
                        values = [int(v) for v in u[n, j * lanes:(j + 1) * lanes, p]] if done \
                            else rng.integers(0, 1 << 40, lanes).tolist()
                        await slice_(ctx, {"valid": 1, "saddr": n * steps + j,
                                           "sample_end": int(done and p == positions - 1)},
                                     values, done)
        await slice_(ctx, {"valid": 0}, [0] * lanes, 0)
        for n in range(BATCH):
            for j in range(steps):
                row = ctx.get(mem.data[n * steps + j])
                for lane in range(lanes):
                    got[n, j * lanes + lane] = row[lane]

    got = np.zeros((BATCH, COLS), dtype=np.int64)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert (got == u.reshape(BATCH, COLS, -1).sum(axis=2)).all()


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        ChannelSums(cols=COLS, lanes=3, u_depth=2, s_depth=8)
