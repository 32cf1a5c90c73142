"""The rescale unit's 2 x 2 pooling (the window's maximum, or its sum for average pooling),
through a row register and the ``u`` memory."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .rescale_layouts import check_lanes, meta_layout, rotate, slice_layout
from .rescale_stages import WIDE_BITS, greater, halves, joined

__all__ = ["Pool"]


class Pool(wiring.Component):
    """``core.rescale.pool2d(u, 2, mode)`` on a stream of slices, the result written to the
    ``u`` memory; with ``pooled`` low, every slice written as it is. With ``avg`` high (the
    ``"avg"`` mode) the window's sum instead of its maximum: exact, as in ``int64``
    (``core.rescale.pool2d`` refuses values whose sum of four could reach ``2**62``).

    A slice comes on ``u`` with its place ``i`` (``meta_layout``: ``uaddr``, ``h_first``,
    ``v_second``), in the order of ``hw.rescale_drain.Drain``: positions row by row, each
    vector in ``cols // lanes`` slices. Stages H1, H2 take the larger of a horizontal pair:
    the first of the pair waits in ``hold``, a register of ``cols`` values that rotates by a
    slice with every slice of a pooled layer. Stages V1, V2 take the larger of the vertical
    pair: the first row's pooled value, written to the ``u`` memory at ``uaddr``, read back
    for the second. The memory's read port is the unit's (it also feeds the outputs): read at
    ``i.uaddr`` when the slice arrives here, its data registered once more and given on
    ``below`` two clocks later. A write by a slice in H2, V1 or V2 when the reader reads (its
    vertical partner, two to four clocks ahead: a pooled map of two slices a row, or four, or
    gaps in the input) is not in what it reads: it is forwarded, the latest first. In
    ``avg`` mode H1 adds the horizontal pair beside its comparison and V2 adds the vertical
    pair instead of selecting: one 64-bit adder in each of the two stages, none in series
    with a comparison.

    ``LATENCY = 4``: ``o`` and ``window`` (the value written, at ``w_addr`` when ``w_en``)
    come four clocks after the slice; ``done`` says that ``window`` is a complete pooled
    value (it was written and, for a pooled layer, is the second row's). ``busy`` is high
    while a slice is in the stage.
    """

    LATENCY = 4

    def __init__(self, *, cols, lanes, u_depth, s_depth, width=WIDE_BITS):
        check_lanes(cols, lanes)
        self._cols, self._lanes, self._width = cols, lanes, width
        meta = meta_layout(u_depth, s_depth)
        super().__init__({
            "pooled": In(1), "avg": In(1), "i": In(meta), "u": In(slice_layout(lanes, width)),
            "below": In(slice_layout(lanes, width)),
            "o": Out(meta), "window": Out(slice_layout(lanes, width)), "done": Out(1),
            "w_addr": Out(range(max(2, u_depth))), "w_data": Out(slice_layout(lanes, width)),
            "w_en": Out(1), "busy": Out(1),
        })
        self._meta = meta

    def elaborate(self, platform):
        m = Module()
        cols, lanes, steps = self._cols, self._lanes, self._cols // self._lanes
        width = self._width
        meta, slice_ = self._meta, slice_layout(lanes, width)
        pooled, z2, z2_u, u_data = self.pooled, self.i, self.u, self.below

        # Stages H1, H2: the horizontal pair (compare, then select), through ``hold``.
        # ``hold_low``, a copy of its bottom slice, is what the comparison reads (near it, not
        # across the unit).
        hold = Signal(slice_layout(cols, width), reset_less=True)
        hold_low = Signal(slice_, reset_less=True)
        h1, h2 = Signal(meta), Signal(meta)
        h1_u, h1_hold, h1_sum, h2_pair = (Signal(slice_, reset_less=True) for _ in range(4))
        # H1 compares the halves (``halves``), H2 combines them in the select.
        h1_cmp = [Signal(3, name=f"h1_cmp_{lane}", reset_less=True) for lane in range(lanes)]
        m.d.sync += [h1.eq(z2), h2.eq(h1), h1_u.eq(z2_u), h1_hold.eq(hold_low)]
        avg = self.avg
        for lane in range(lanes):
            # In avg mode the pair's sum, made in H1 beside the comparison, is the pair.
            second = pooled & ~h1.h_first
            m.d.sync += [h1_cmp[lane].eq(Cat(*halves(hold_low[lane], z2_u[lane]))),
                         h1_sum[lane].eq(hold_low[lane] + z2_u[lane]),
                         h2_pair[lane].eq(Mux(second & avg, h1_sum[lane],
                                              Mux(second & joined(*h1_cmp[lane]),
                                                  h1_hold[lane], h1_u[lane])))]
        with m.If(z2.valid & pooled):
            incoming = Mux(z2.h_first, z2_u.as_value(), hold_low.as_value())
            nxt = hold.as_value()[lanes * width:2 * lanes * width] if steps > 1 \
                else incoming
            m.d.sync += [hold.eq(rotate(hold, lanes, width, incoming)),
                         hold_low.eq(nxt)]

        # Stages V1, V2: the vertical pair (compare, then select).
        v1, v2 = Signal(meta), Signal(meta)
        v1_pair, v1_below, v2_window = (Signal(slice_, reset_less=True) for _ in range(3))
        v1_gts = [Signal(4, name=f"v1_gts_{lane}", reset_less=True) for lane in range(lanes)]
        v1_hits = Signal(3, reset_less=True)
        v2_done = Signal()
        writes = lambda x: x.valid & ~x.h_first
        hits = []                          # the slice in H2, V1 or V2 writes what Z2 reads
        for x, name in ((h2, "h2"), (v1, "v1"), (v2, "v2")):
            hit = [Signal(name=f"hit_{name}_{i}") for i in range(2)]
            m.d.sync += [hit[0].eq(writes(x) & (x.uaddr == z2.uaddr)), hit[1].eq(hit[0])]
            hits.append(hit[1])
        wd1, wd2 = Signal(slice_, reset_less=True), Signal(slice_, reset_less=True)
        m.d.sync += [wd1.eq(v2_window), wd2.eq(wd1)]
        m.d.sync += [v1.eq(h2), v2.eq(v1), v1_pair.eq(h2_pair),
                     v2_done.eq(writes(v1) & (~pooled | v1.v_second))]
        m.d.sync += v1_hits.eq(Cat(*hits))
        pick = lambda sel, xs: Mux(sel[0], xs[0], Mux(sel[1], xs[1], Mux(sel[2], xs[2], xs[3])))
        for lane in range(lanes):
            # Each candidate compared with the pair in parallel in V1; the hits pick the
            # candidate in V1 and its comparison in V2.
            cands = [v2_window[lane], wd1[lane], wd2[lane], u_data[lane]]
            m.d.sync += [v1_gts[lane].eq(Cat(*(greater(c, h2_pair[lane]) for c in cands))),
                         v1_below[lane].eq(pick(hits, cands))]
            gt = pick(v1_hits, v1_gts[lane])
            # The second row: the larger of the pair and the first row's, or their sum.
            m.d.sync += v2_window[lane].eq(
                Mux(v1.v_second & (avg | gt),
                    Mux(avg, v1_below[lane] + v1_pair[lane], v1_below[lane]), v1_pair[lane]))
        m.d.comb += [self.w_addr.eq(v2.uaddr), self.w_data.eq(v2_window),
                     self.w_en.eq(writes(v2)), self.o.eq(v2), self.window.eq(v2_window),
                     self.done.eq(v2_done),
                     self.busy.eq(Cat(h1.valid, h2.valid, v1.valid, v2.valid).any())]
        return m
