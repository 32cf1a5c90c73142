# amaranth: UnusedElaboratable=no
"""``hw.rescale_drain.Drain`` in Amaranth's simulator: a batch's accumulators ``(N, C, H, W)``
(the shape that ``core.rescale.affine`` takes) sent as the accumulator buffer sends them
(blocks of ``cols`` channels, then samples, rows, columns), with ``beta_in`` and shortcut
vectors, at random gaps; every slice must come out once, in order, with its sample's sums,
``beta_in`` and operand, and the places in the ``u`` and ``S`` memories and the parameter
entry that the rescale unit's layout gives it (below: ``_expected``)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.rescale_drain import Drain

COLS, ACC_BITS, MAX_C, MAX_P, MAX_B = 4, 16, 8, 16, 3


def _expected(acc, res, betas, lanes, pooled):
    """Each slice as the unit lays it out: ``(a fields, acc, res, beta, paddr)``."""
    n, c, h, w = acc.shape
    steps = COLS // lanes
    out_h, out_w = (h // 2, w // 2) if pooled else (h, w)
    out = []
    for b in range(-(-c // COLS)):
        for s in range(n):
            for r in range(h):
                for col in range(w):
                    pos = (r // 2) * out_w + col // 2 if pooled else r * w + col
                    for j in range(steps):
                        chans = range(b * COLS + j * lanes, b * COLS + (j + 1) * lanes)
                        place = {"uaddr": b * MAX_P * steps + (s * out_h * out_w + pos) * steps
                                 + j, "saddr": (b * MAX_B + s) * steps + j,
                                 "h_first": int(pooled and col % 2 == 0),
                                 "v_second": int(pooled and r % 2 == 1),
                                 "sample_end": int(r == h - 1 and col == w - 1)}
                        out.append((place, [int(acc[s, k, r, col]) if k < c else 0
                                            for k in chans],
                                    [int(res[s, k, r, col]) if k < c else 0 for k in chans],
                                    tuple(betas[s]), b * steps + j))
    return out


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("channels, h, w, pooled, batch", [
    (8, 4, 4, True, 1), (6, 2, 4, True, 3), (3, 3, 1, False, 2), (5, 1, 1, False, 3)])
@pytest.mark.parametrize("gaps", [0.0, 0.4])
def test_drain_gives_every_slice_in_place(lanes, channels, h, w, pooled, batch, gaps):
    steps = COLS // lanes
    rng = np.random.default_rng(lanes * 1000 + channels * 100 + h * 10 + w + int(gaps * 10))
    acc = rng.integers(-(1 << 15), 1 << 15, (batch, channels, h, w))
    res = rng.integers(-(1 << 40), 1 << 40, (batch, channels, h, w))
    betas = rng.integers(1, 1 << 20, (batch, 2))
    blocks = -(-channels // COLS)
    vectors = []                        # (data, last, res) in the accumulator buffer's order
    for b in range(blocks):
        for s in range(batch):
            for r in range(h):
                for col in range(w):
                    chans = range(b * COLS, (b + 1) * COLS)
                    vectors.append(([int(acc[s, k, r, col]) if k < channels else 0
                                     for k in chans],
                                    int(s == batch - 1 and r == h - 1 and col == w - 1),
                                    [int(res[s, k, r, col]) if k < channels else 0
                                     for k in chans]))
    dut = Drain(cols=COLS, lanes=lanes, acc_bits=ACC_BITS, max_channels=MAX_C,
                max_positions=MAX_P, max_batch=MAX_B, residual=True)
    got, seen = [], {}

    async def bench(ctx):
        for name, value in (("pooled", pooled), ("height", h), ("width", w),
                            ("channels", channels), ("need_res", 1)):
            ctx.set(getattr(dut, name), value)
        await ctx.tick().repeat(2)
        ctx.set(dut.clear, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.start, 0)
        sent = {"acc": 0, "beta": 0, "res": 0}
        totals = {"acc": len(vectors), "beta": batch, "res": len(vectors)}
        offered = dict.fromkeys(sent, False)
        paddr, clocks = None, 0
        while len(got) < len(vectors) * steps:
            clocks += 1
            assert clocks < 20 * len(vectors) * steps + 100
            for k, port in (("acc", dut.i_acc), ("beta", dut.i_beta), ("res", dut.i_res)):
                # A word once offered stays until taken; gaps only between words.
                offered[k] = sent[k] < totals[k] and (offered[k] or rng.random() >= gaps)
                ctx.set(port.valid, offered[k])
                i = min(sent[k], totals[k] - 1)
                if k == "acc":
                    for lane, v in enumerate(vectors[i][0]):
                        ctx.set(port.payload.data[lane], v)
                    ctx.set(port.payload.last, vectors[i][1])
                elif k == "res":
                    for lane, v in enumerate(vectors[i][2]):
                        ctx.set(port.payload.data[lane], v)
                else:
                    ctx.set(port.payload, {"beta": int(betas[i, 0]), "res": int(betas[i, 1])})
            taken = {k: offered[k] and ctx.get(port.ready) for k, port in
                     (("acc", dut.i_acc), ("beta", dut.i_beta), ("res", dut.i_res))}
            await ctx.tick()
            for k in sent:
                if taken[k]:
                    sent[k] += 1
                    offered[k] = False
            a = dut.a
            if ctx.get(a.valid):
                place = {f: ctx.get(getattr(a, f)) for f in
                         ("uaddr", "saddr", "h_first", "v_second", "sample_end")}
                got.append((place, [ctx.get(dut.a_acc[i]) for i in range(lanes)],
                            [ctx.get(dut.a_res[i]) for i in range(lanes)],
                            (ctx.get(dut.a_beta.beta), ctx.get(dut.a_beta.res)), paddr))
            paddr = ctx.get(dut.paddr)
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.a.valid) and not ctx.get(dut.busy)
        seen.update(draining=ctx.get(dut.draining), nsamp=ctx.get(dut.nsamp),
                    out_slices=ctx.get(dut.out_slices), out_last=ctx.get(dut.out_last),
                    sent=sent)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = _expected(acc, res, [tuple(int(x) for x in b) for b in betas], lanes, pooled)
    assert len(got) == len(want)
    for i, (g, e) in enumerate(zip(got, want)):
        assert g == e, i
    out_h, out_w = (h // 2, w // 2) if pooled else (h, w)
    assert seen == {"draining": 0, "nsamp": batch, "out_slices": out_h * out_w * steps,
                    "out_last": out_h * out_w * steps - 1,
                    "sent": {"acc": len(vectors), "beta": batch, "res": len(vectors)}}


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        Drain(cols=COLS, lanes=3, acc_bits=ACC_BITS, max_channels=MAX_C, max_positions=MAX_P,
              max_batch=MAX_B, residual=True)
