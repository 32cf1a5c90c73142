"""The rescale unit's channel sums, the adapter's input."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .rescale_layouts import check_lanes, meta_layout, rotate, slice_layout
from .rescale_stages import WIDE_BITS

__all__ = ["ChannelSums"]


class ChannelSums(wiring.Component):
    """Each channel's sum of a sample's pooled activations, ``u_q.reshape(N, C, -1).sum(2)``
    of ``core.rescale.adapter_beta``, written to the ``S`` memory (stage W).

    The slices come as ``hw.rescale_pool.Pool`` gives them (``i``, ``window``, ``done``): a
    slice adds to its lanes' sums when ``done``; the sums, a register of ``cols`` values,
    rotate by a slice with every valid slice. On a sample's last position (``sample_end``)
    each slice's sums, its own value included, go to the memory at ``saddr`` (``w_*``, in
    the same clock: ``LATENCY = 0``) and start again from 0.
    """

    LATENCY = 0

    def __init__(self, *, cols, lanes, u_depth, s_depth, width=WIDE_BITS):
        check_lanes(cols, lanes)
        self._cols, self._lanes, self._width = cols, lanes, width
        super().__init__({
            "i": In(meta_layout(u_depth, s_depth)), "window": In(slice_layout(lanes, width)),
            "done": In(1),
            "w_addr": Out(range(max(2, s_depth))), "w_data": Out(slice_layout(lanes, width)),
            "w_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        partial = Signal(slice_layout(self._cols, self._width))     # the sums so far
        total = Signal(slice_layout(lanes, self._width))
        for lane in range(lanes):
            m.d.comb += total[lane].eq(partial[lane] + Mux(self.done, self.window[lane], 0))
        with m.If(self.i.valid):
            m.d.sync += partial.eq(rotate(partial, lanes, self._width,
                                          Mux(self.i.sample_end, 0, total.as_value())))
        m.d.comb += [self.w_addr.eq(self.i.saddr), self.w_data.eq(total),
                     self.w_en.eq(self.i.valid & self.i.sample_end)]
        return m
