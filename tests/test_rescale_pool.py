# amaranth: UnusedElaboratable=no
"""``hw.rescale_pool.Pool`` against ``core.rescale.pool2d`` in Amaranth's simulator: the slices
of a map of seeded random activations (ties included) in the intake's order, with the ``u``
memory and its registered read as in the rescale unit, and random gaps between slices (so
that a write is forwarded to the read of its vertical partner two to four clocks behind);
the memory then holds the pooled map (or the map as it is when ``pooled`` is low): each
window's maximum, or in ``avg`` mode its sum (exact up to the 62 bits ``core.rescale``
allows)."""

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


def _run(u, lanes, pooled, gaps, seed, avg=False):
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
                 wr.data.eq(pool.w_data), wr.en.eq(pool.w_en), pool.pooled.eq(pooled),
                 pool.avg.eq(avg)]
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


@pytest.mark.parametrize("mode", rescale.POOL_MODES)
@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("h, w", [(4, 4), (2, 2), (6, 2), (4, 8)])
@pytest.mark.parametrize("gaps", [0.0, 0.5])
def test_pool_equals_the_golden_pool2d(lanes, h, w, gaps, mode):
    seed = lanes * 100 + h * 10 + w + int(gaps * 10) + 1000 * rescale.POOL_MODES.index(mode)
    rng = np.random.default_rng(seed)
    # Small values make ties; a few wide ones, both signs, reach the comparisons' top half
    # (and a sum's carries across it).
    u = rng.integers(-3, 4, (COLS, h, w)) << rng.choice([0, 40], (COLS, h, w))
    got = _run(u, lanes, True, gaps, seed, avg=mode == "avg")
    assert (got == rescale.pool2d(u[None], 2, mode)[0]).all()


@pytest.mark.parametrize("lanes", [1, 2])
def test_average_pooling_sums_are_exact_to_62_bits(lanes):
    """Windows whose sums reach just below ``2**62`` (the largest ``core.rescale`` allows)
    and far below 0, with gaps: no bit lost to the 64-bit datapath."""
    rng = np.random.default_rng(40 + lanes)
    top = (1 << 60) - 1                     # four of these: below 2**62
    u = rng.choice([top, -top, top - 1, 1, -1, 0], (COLS, 4, 6))
    got = _run(u, lanes, True, 0.4, lanes, avg=True)
    want = rescale.pool2d(u[None], 2, "avg")[0]
    assert np.abs(want).max() > 1 << 61
    assert (got == want).all()


@pytest.mark.parametrize("avg", [False, True])
@pytest.mark.parametrize("lanes", [1, 4])
def test_unpooled_map_is_written_as_it_is(lanes, avg):
    rng = np.random.default_rng(7 + lanes)
    u = rng.integers(-(1 << 62), 1 << 62, (COLS, 3, 5))
    assert (_run(u, lanes, False, 0.3, lanes, avg=avg) == u).all()


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        Pool(cols=COLS, lanes=3, u_depth=8, s_depth=2)
