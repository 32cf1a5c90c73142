# amaranth: UnusedElaboratable=no
"""``hw.rescale_pool.Pool`` against ``core.rescale.pool2d`` in Amaranth's simulator: the slices
of a map of seeded random activations (ties included) in the intake's order, with the ``u``
memory and its registered read as in the rescale unit, and random gaps between slices (so
that a write is forwarded to the read of its vertical partner two to four clocks behind);
the memory then holds the pooled map (or the map as it is when ``pooled`` is low)."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from core import rescale
from hw.rescale_layouts import slice_layout
from hw.rescale_pool import Pool

COLS = 4


def _slices(u, lanes, pooled):
    """``(place, values)`` of each slice of one sample's map ``u`` (``(C, H, W)``, ``C ==
    COLS``) in the order of ``hw.rescale_drain.Drain``."""
    _, h, w = u.shape
    steps = COLS // lanes
    out_w = w // 2 if pooled else w
    for r in range(h):
        for c in range(w):
            pos = (r // 2) * out_w + c // 2 if pooled else r * w + c
            for j in range(steps):
                place = {"valid": 1, "uaddr": pos * steps + j, "saddr": 0,
                         "h_first": int(pooled and c % 2 == 0),
                         "v_second": int(pooled and r % 2 == 1),
                         "sample_end": int(r == h - 1 and c == w - 1)}
                yield place, [int(v) for v in u[j * lanes:(j + 1) * lanes, r, c]]


def _run(u, lanes, pooled, gaps, seed):
    """The ``u`` memory's entries after the map went through, as ``(C, H', W')``."""
    steps = COLS // lanes
    _, h, w = u.shape
    out_h, out_w = (h // 2, w // 2) if pooled else (h, w)
    depth = h * w * steps
    m = Module()
    m.submodules.pool = pool = Pool(cols=COLS, lanes=lanes, u_depth=depth, s_depth=2)
    m.submodules.mem_u = mem = memory.Memory(shape=slice_layout(lanes), depth=depth, init=[])
    rd, wr = mem.read_port(), mem.write_port()
    below = Signal(slice_layout(lanes))
    m.d.sync += below.eq(rd.data)
    m.d.comb += [rd.addr.eq(pool.i.uaddr), pool.below.eq(below), wr.addr.eq(pool.w_addr),
                 wr.data.eq(pool.w_data), wr.en.eq(pool.w_en), pool.pooled.eq(pooled)]
    rng = np.random.default_rng(seed)
    got = np.zeros((COLS, out_h, out_w), dtype=np.int64)

    async def bench(ctx):
        for place, values in _slices(u, lanes, pooled):
            while rng.random() < gaps:
                ctx.set(pool.i, {"valid": 0, "uaddr": int(rng.integers(depth))})
                await ctx.tick()
            ctx.set(pool.i, place)
            for lane, v in enumerate(values):
                ctx.set(pool.u[lane], v)
            await ctx.tick()
        ctx.set(pool.i, {"valid": 0})
        await ctx.tick().repeat(Pool.LATENCY + 2)
        for pos in range(out_h * out_w):
            for j in range(steps):
                for lane in range(lanes):
                    got[j * lanes + lane, pos // out_w, pos % out_w] = \
                        ctx.get(mem.data[pos * steps + j])[lane]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("h, w", [(4, 4), (2, 2), (6, 2), (4, 8)])
@pytest.mark.parametrize("gaps", [0.0, 0.5])
def test_pool_equals_the_golden_pool2d(lanes, h, w, gaps):
    seed = lanes * 100 + h * 10 + w + int(gaps * 10)
    rng = np.random.default_rng(seed)
    # Small values make ties; a few wide ones, both signs, reach the comparisons' top half.
    u = rng.integers(-3, 4, (COLS, h, w)) << rng.choice([0, 40], (COLS, h, w))
    got = _run(u, lanes, True, gaps, seed)
    assert (got == rescale.pool2d(u[None], 2)[0]).all()


@pytest.mark.parametrize("lanes", [1, 4])
def test_unpooled_map_is_written_as_it_is(lanes):
    rng = np.random.default_rng(7 + lanes)
    u = rng.integers(-(1 << 62), 1 << 62, (COLS, 3, 5))
    assert (_run(u, lanes, False, 0.3, lanes) == u).all()


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        Pool(cols=COLS, lanes=3, u_depth=8, s_depth=2)
