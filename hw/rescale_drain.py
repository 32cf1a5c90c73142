"""The rescale unit's intake: vectors of sums in, slices with their places out."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .rescale_layouts import (acc_layout, beta_layout, check_lanes, memory_ports, meta_layout,
                              narrowed, residual_layout, rotate, slice_layout)
from .rescale_stages import WIDE_BITS

__all__ = ["Drain"]


def _times(x, k):
    """``x * k`` for a constant ``k >= 0`` as shifts and adds (no multiplier)."""
    terms = [x << i for i in range(k.bit_length()) if k >> i & 1]
    total = terms[0] if terms else 0
    for t in terms[1:]:
        total = total + t
    return total


def _low(value, lanes, width):
    """The bottom ``lanes`` elements of an array of ``width``-bit elements."""
    return value.as_value()[:lanes * width]


class Drain(wiring.Component):
    """Takes the accumulator buffer's vectors and gives them out one slice per clock, each
    with its place in the layer (``meta_layout``) and its sample's ``beta_in``.

    A layer's sums come as blocks of ``cols`` channels; within a block, the batch's positions
    sample by sample, row by row (``height`` x ``width`` each), ``last`` on the block's last
    vector. A vector is taken (stage G) with its ``i_beta`` word when it is a sample's first
    of block 0 (the word is kept in a memory for the later blocks) and with an ``i_res``
    vector when ``need_res``; then its ``steps = cols // lanes`` slices leave, one per clock,
    through stage A: ``a``, ``a_acc``, ``a_res`` and ``a_beta`` hold slice ``j`` of a vector
    taken at clock ``t`` at clock ``t + LATENCY + j``. ``paddr``, the slice's channel
    parameters' entry, is given a clock earlier (at G), for memories with a synchronous read.

    ``clear`` (high while the unit is idle) returns the counters to the layer's start;
    ``start`` begins the drain (``draining`` high until the layer's last vector is taken).
    The slice's places: ``uaddr`` the pooled position's entry (two positions of a horizontal
    pair and two rows of a vertical one share it when ``pooled``), ``saddr`` the sample's
    sums. ``nsamp`` is the batch's sample count, known after block 0; ``out_slices``, the
    slices of one sample's block of (pooled) outputs, and ``out_last = out_slices - 1`` after
    the first sample of block 0. The next vector is taken only once G has started the last
    slice of the one before (``busy`` high while G emits).
    """

    LATENCY = 2

    def __init__(self, *, cols, lanes, acc_bits, max_channels, max_positions, max_batch,
                 residual, keep_bits=None, value_bits=WIDE_BITS):
        check_lanes(cols, lanes)
        self._cols, self._lanes, self._acc_bits = cols, lanes, acc_bits
        # The low bits of each sum and shortcut operand that the datapath takes (exact: the
        # bundle's values fit them, ``core.widths``).
        self._keep = keep = min(acc_bits, keep_bits or acc_bits)
        self._value = value_bits
        self._steps = steps = cols // lanes
        self._max_c, self._max_p, self._max_b = max_channels, max_positions, max_batch
        self._blocks = blocks = -(-max_channels // cols)
        self._residual = residual
        self.u_depth, self.s_depth = blocks * max_positions * steps, blocks * max_batch * steps
        u_addr = range(max(2, self.u_depth))
        super().__init__({
            "i_acc": In(stream.Signature(acc_layout(cols, acc_bits))),
            "i_beta": In(stream.Signature(beta_layout())),
            **({"i_res": In(stream.Signature(residual_layout(cols)))} if residual else {}),
            "pooled": In(1), "height": In(range(max_positions + 1)),
            "width": In(range(max_positions + 1)), "channels": In(range(max_channels + 1)),
            "need_res": In(1), "clear": In(1), "start": In(1),
            "draining": Out(1), "busy": Out(1),
            "paddr": Out(range(max(2, blocks * steps + 1))),
            "a": Out(meta_layout(self.u_depth, self.s_depth)),
            "a_acc": Out(data.ArrayLayout(signed(keep), lanes)),
            "a_res": Out(slice_layout(lanes, value_bits)), "a_beta": Out(beta_layout()),
            "nsamp": Out(range(max_batch + 1)), "out_slices": Out(u_addr),
            "out_last": Out(u_addr),
        })

    def elaborate(self, platform):
        m = Module()
        cols, lanes, steps, acc_bits = self._cols, self._lanes, self._steps, self._keep
        value = self._value
        max_c, max_p, max_b = self._max_c, self._max_p, self._max_b
        u_addr, s_addr = range(max(2, self.u_depth)), range(max(2, self.s_depth))
        p_addr = range(max(2, self._blocks * steps + 1))
        beta_rd, beta_wr = memory_ports(m, "mem_beta_in", beta_layout(), max_b, block=True)
        pooled = self.pooled
        out_w = Mux(pooled, self.width >> 1, self.width)
        row_stride = Signal(u_addr)                 # slices of one output row
        m.d.sync += row_stride.eq(_times(out_w, steps))
        need_res = self.need_res if self._residual else 0
        res_valid = self.i_res.valid if self._residual else 0

        row, col = Signal(range(max_p + 1)), Signal(range(max_p + 1))
        smp = Signal(range(max_b + 1))
        nsamp = Signal(range(max_b + 1))
        blk_chan = Signal(range(max_c + cols + 1))     # the block's first channel
        first_block = Signal()
        u_blk, u_row, u_col = Signal(u_addr), Signal(u_addr), Signal(u_addr)
        s_blk, s_smp = Signal(s_addr), Signal(s_addr)
        p_blk = Signal(p_addr)
        out_slices = Signal(u_addr)
        out_last = Signal(u_addr)
        draining = Signal()            # a register: set by ``start``, cleared on the layer's
                                       # last vector
        need_beta = Signal()           # the next vector is a sample's first (of block 0)
        last_block = Signal()          # the block being taken is the layer's last
        take = Signal()
        m.d.comb += [self.draining.eq(draining), self.nsamp.eq(nsamp),
                     self.out_slices.eq(out_slices), self.out_last.eq(out_last)]

        # Stage G: the vector taken, emitted one slice per clock.
        g = Signal(data.StructLayout({
            "busy": 1, "j": range(max(steps, 2)), "beta_new": 1, "uaddr": u_addr,
            "saddr": s_addr, "paddr": p_addr, "h_first": 1, "v_second": 1, "sample_end": 1}))
        g_acc = Signal(data.ArrayLayout(signed(acc_bits), cols), reset_less=True)
        g_res = Signal(slice_layout(cols, value), reset_less=True)
        g_beta = Signal(beta_layout())
        g_last = Signal()              # G emits its vector's last slice
        free = ~g.busy | g_last
        m.d.comb += [
            self.i_acc.ready.eq(draining & free & (~need_beta | self.i_beta.valid)
                                & (~need_res | res_valid)),
            self.i_beta.ready.eq(draining & free & self.i_acc.valid & need_beta
                                 & (~need_res | res_valid)),
            take.eq(self.i_acc.valid & self.i_acc.ready),
            self.busy.eq(g.busy), self.paddr.eq(g.paddr),
        ]
        if self._residual:
            m.d.comb += self.i_res.ready.eq(draining & free & self.i_acc.valid & need_res
                                            & (~need_beta | self.i_beta.valid))
        last_row, last_col = Signal.like(row), Signal.like(col)       # height - 1, width - 1
        m.d.sync += [last_row.eq(self.height - 1), last_col.eq(self.width - 1)]
        row_done = col == last_col
        sample_end = (row == last_row) & row_done
        m.d.comb += [beta_wr.addr.eq(smp), beta_wr.data.eq(self.i_beta.payload),
                     beta_wr.en.eq(take & need_beta), beta_rd.addr.eq(smp),
                     beta_rd.en.eq(take)]
        with m.If(take):
            m.d.sync += [
                g.busy.eq(1), g.j.eq(0), g_last.eq(steps == 1), g.beta_new.eq(need_beta),
                g_beta.eq(self.i_beta.payload), need_beta.eq(0),
                g.uaddr.eq(u_blk + u_row + u_col), g.saddr.eq(s_blk + s_smp), g.paddr.eq(p_blk),
                g.h_first.eq(pooled & ~col[0]), g.v_second.eq(pooled & row[0]),
                g.sample_end.eq(sample_end),
                col.eq(col + 1),
            ]
            with m.If(~pooled | col[0]):
                m.d.sync += u_col.eq(u_col + steps)
            with m.If(row_done):
                m.d.sync += [col.eq(0), row.eq(row + 1), u_col.eq(0)]
                with m.If(~pooled | row[0]):
                    m.d.sync += u_row.eq(u_row + row_stride)
                with m.If(sample_end):
                    m.d.sync += [row.eq(0), smp.eq(smp + 1), s_smp.eq(s_smp + steps),
                                 need_beta.eq(first_block)]
                    with m.If(first_block & (smp == 0)):
                        m.d.sync += [out_slices.eq(u_row + row_stride),
                                     out_last.eq(u_row + row_stride - 1)]
            with m.If(self.i_acc.payload.last):
                m.d.sync += draining.eq(~last_block)
                m.d.sync += [row.eq(0), col.eq(0), smp.eq(0), u_row.eq(0), u_col.eq(0),
                             s_smp.eq(0), first_block.eq(0), blk_chan.eq(blk_chan + cols),
                             need_beta.eq(0),
                             last_block.eq(blk_chan + 2 * cols >= self.channels),
                             u_blk.eq(u_blk + max_p * steps), s_blk.eq(s_blk + max_b * steps),
                             p_blk.eq(p_blk + steps)]
                with m.If(first_block):
                    m.d.sync += nsamp.eq(smp + 1)
        with m.Elif(g.busy):
            m.d.sync += [g.j.eq(g.j + 1), g_last.eq(g.j == steps - 2), g.uaddr.eq(g.uaddr + 1),
                         g.saddr.eq(g.saddr + 1), g.paddr.eq(g.paddr + 1)]
            with m.If(g.j == steps - 1):
                m.d.sync += g.busy.eq(0)
        # The vector's data: loaded whenever G is free, taken or not (G's busy says whether it
        # is a vector), rotated by a slice while G emits; so the take (a valid from another
        # unit, through the ready's logic) enables none of its hundreds of registers.
        def load_or_rotate(reg, incoming, width):
            return reg.eq(Mux(free, incoming, rotate(reg, lanes, width, _low(reg, lanes, width))))
        m.d.sync += load_or_rotate(g_acc, narrowed(self.i_acc.payload.data, cols, acc_bits),
                                   acc_bits)
        if self._residual:
            m.d.sync += load_or_rotate(g_res, narrowed(self.i_res.payload.data, cols, value),
                                       value)

        # Stage A: the slice with its beta (the parameters, read at G, arrive with it).
        a = Signal(meta_layout(self.u_depth, self.s_depth))
        a_acc = Signal(data.ArrayLayout(signed(acc_bits), lanes), reset_less=True)
        a_res = Signal(slice_layout(lanes, value), reset_less=True)
        a_beta = Signal(beta_layout())
        m.d.sync += [a.valid.eq(g.busy), a.uaddr.eq(g.uaddr), a.saddr.eq(g.saddr),
                     a.h_first.eq(g.h_first), a.v_second.eq(g.v_second),
                     a.sample_end.eq(g.sample_end),
                     a_acc.eq(_low(g_acc, lanes, acc_bits)),
                     a_res.eq(_low(g_res, lanes, value)),
                     a_beta.eq(Mux(g.beta_new, g_beta, beta_rd.data))]
        m.d.comb += [self.a.eq(a), self.a_acc.eq(a_acc), self.a_res.eq(a_res),
                     self.a_beta.eq(a_beta)]

        # The layer's start (``clear`` after ``start``: the two come together).
        with m.If(self.clear):
            m.d.sync += [row.eq(0), col.eq(0), smp.eq(0), blk_chan.eq(0), first_block.eq(1),
                         need_beta.eq(1), last_block.eq(cols >= self.channels),
                         u_blk.eq(0), u_row.eq(0), u_col.eq(0), s_blk.eq(0), s_smp.eq(0),
                         p_blk.eq(0)]
        with m.If(self.start):
            m.d.sync += draining.eq(1)
        return m
