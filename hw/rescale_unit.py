"""The rescale unit: ``core.rescale`` in hardware, ``lanes`` values per clock.

It reads the accumulator buffer's output (``hw.accumulator``): for each block of ``cols``
channels, the ``M`` sums of a pass, which are the positions of up to ``max_batch`` samples one
after the other (the host stacks the samples of a batch in ``M``). A vector of ``cols`` sums
goes through the datapath as ``steps = cols // lanes`` slices of ``lanes`` channels, one slice
per clock, so the unit takes a vector every ``steps`` clocks; ``lanes`` (``ArrayConfig.
rescale_lanes``) trades the unit's multipliers against the rate at which it drains a block.
For each slice, in a pipeline that never stalls once a vector is taken, every lane at once:

1. ``Affine`` (``z``) with the channel's parameters and the sample's ``beta_in``, plus the
   second operand of a layer with a shortcut (below), and the ReLU;
2. max pooling: the horizontal pair through a register of ``cols`` values, the vertical pair
   through the ``u`` memory; the pooled ``u`` is written to the ``u`` memory;
3. the channel sums ``S`` of the sample, in a register of ``cols`` values, written to the ``S``
   memory at the sample's last position.

When the last block of a batch has gone through, for each sample of the batch in turn: the
adapter's hidden layer and ``beta`` from the sums ``S`` (one pipelined multiply-accumulate per
clock), ``Reciprocal`` for ``R = (m_s << RECIP_BITS) // beta``, and the sample's outputs, one
slice per clock through ``Requantizer`` (the last layer streams out ``z``), gathered into
vectors of ``cols`` values that wait for the host in a queue of a few vectors (a pipeline that
never stalls: a vector is started only when the queue will have room for it). The
accumulator buffer's second bank lets the array go on with the next block of columns meanwhile
(``hw.accumulator``). Every rounding and width is that of
``core.rescale``, bit for bit; every stage has at most one 64-bit adder or comparison
(``hw.rescale_stages``), and no address needs a multiplier (they are counted).

Parameters are written on ``i_param`` (``core.regmap``; ``last`` on the layer's final word) while
the unit is idle, before the layer's first pass; each sample's ``beta_in`` comes on ``i_beta``,
in sample order, taken with the sample's first vector. A layer with a shortcut (a residual
block's second conv, ``core.rescale.rescale_residual``) takes a second operand on ``i_res``,
a vector with every vector of ``i_acc``: an identity shortcut's codes, rescaled by the same
affine map with the shortcut's ``res_m``, ``res_sh`` and ``beta`` (``i_beta``'s ``res``), or a
projection layer's ``z``, added to ``z`` as it is; the ReLU follows the sum. The host writes a
layer's parameters only after every output of the previous layer has left. All memories have
synchronous read ports and no reset (block RAM or LUT RAM).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from core import regmap, rescale
from core.regmap import CONTROL, Region

from .rescale_stages import (BETA_BITS, MANT_BITS, SHIFT_BITS, WIDE_BITS, Affine,
                             Product, Reciprocal, Requantizer, Rounder, delay, delay_line,
                             greater, halves, joined)

__all__ = ["RescaleUnit", "param_layout", "output_layout", "acc_layout", "beta_layout",
           "residual_layout", "RESIDUAL_CODE_BITS"]

#: An identity shortcut's operands are codes of at most this many bits (unsigned).
RESIDUAL_CODE_BITS = 8


def param_layout():
    """One register write: ``core.regmap``'s address and signed value; ``last`` on the final
    word of a layer's parameters."""
    return data.StructLayout({"addr": regmap.ADDR_BITS, "value": signed(regmap.VALUE_BITS),
                              "last": 1})


def acc_layout(cols, acc_bits):
    """One vector of sums; ``last`` on the last vector of a block of channels."""
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), cols), "last": 1})


def beta_layout():
    """A sample's ``beta_in`` and, for a layer with an identity shortcut, the ``beta`` of the
    shortcut's codes (``res``; anything otherwise)."""
    return data.StructLayout({"beta": unsigned(BETA_BITS), "res": unsigned(BETA_BITS)})


def residual_layout(cols):
    """One vector of the second operand of a layer with a shortcut: an identity shortcut's
    codes, or a projection's ``z``, for ``cols`` channels of one position."""
    return data.StructLayout({"data": data.ArrayLayout(signed(WIDE_BITS), cols)})


def output_layout(cols):
    """One output vector: ``cols`` values (codes, or ``z`` for the last layer) of one
    position, the sample's ``beta`` and ``last`` on the sample's final vector."""
    return data.StructLayout({"value": data.ArrayLayout(signed(WIDE_BITS), cols),
                              "beta": unsigned(BETA_BITS), "last": 1})


def _memory(m, name, shape, depth):
    """A memory with a synchronous read port and a write port; two entries at least (one
    entry has a 0-bit address, an illegal ``[-1:0]`` in Verilog)."""
    m.submodules[name] = mem = memory.Memory(shape=shape, depth=max(depth, 2), init=[])
    return mem.read_port(), mem.write_port()


def _times(x, k):
    """``x * k`` for a constant ``k >= 0`` as shifts and adds (no multiplier)."""
    terms = [x << i for i in range(k.bit_length()) if k >> i & 1]
    total = terms[0] if terms else 0
    for t in terms[1:]:
        total = total + t
    return total


def _rotate(value, lanes, width, incoming):
    """``value`` (an array of ``len // width`` elements) moved down by ``lanes`` elements, with
    ``incoming`` (``lanes`` elements) on top."""
    return Cat(value.as_value()[lanes * width:], incoming)


def _low(value, lanes, width):
    """The bottom ``lanes`` elements of an array of ``width``-bit elements."""
    return value.as_value()[:lanes * width]


#: Widths of the registers: the per-channel regions and the adapter's, by ``core.regmap``'s
#: ``FIELD_BITS``; the control registers below.
def _control_shapes(max_c, max_p, max_h):
    return {"channels": range(max_c + 1), "height": range(max_p + 1), "width": range(max_p + 1),
            "pool": range(8), "relu": 1, "final": 1, "adapter": 2, "hidden": range(max_h + 1),
            "sh1": signed(SHIFT_BITS), "shb": signed(SHIFT_BITS),
            "bb": signed(regmap.VALUE_BITS), "m_s": unsigned(MANT_BITS - 1),
            "sh_req": signed(SHIFT_BITS), "max_code": unsigned(regmap.VALUE_BITS - 1),
            "residual": 2}


class RescaleUnit(wiring.Component):
    """See the module docstring.

    Parameters
    ----------
    cols : int
        Accumulators per input vector (the array's columns).
    lanes : int
        Values per clock through the datapath; divides ``cols`` (default: ``cols``).
    acc_bits : int
        Width of the accumulators.
    max_channels, max_positions, max_hidden, max_batch : int
        The largest channel count, positions in a pass (before pooling: samples x positions
        per sample), adapter width and samples in a batch.
    residual : bool
        With the residual add (``i_res``, the shortcut's ``Affine`` a lane); without it, the
        unit has no ``i_res`` and adds nothing to ``z`` whatever its ``residual`` register
        says (the host refuses such a layer: ``core.sizing.check_fits``).

    Members
    -------
    i_param : In(stream.Signature(param_layout()))
        Accepted only while idle.
    i_beta : In(stream.Signature(beta_layout()))
        Each sample's ``beta_in`` (and its shortcut's ``beta``), in sample order.
    i_res : In(stream.Signature(residual_layout(cols)))
        With ``residual``, for a layer with a shortcut (``residual`` register), the second
        operand: one vector with each vector of ``i_acc``, in the same order.
    i_acc : In(stream.Signature(acc_layout(cols, acc_bits)))
        For each block of ``cols`` channels, the batch's positions (sample by sample, row by
        row), one vector each, ``last`` on the block's last vector.
    o_out : Out(stream.Signature(output_layout(cols)))
        Per sample, for each block of channels, for each (pooled) position row by row, one
        vector; ``last`` on the sample's final vector.
    """

    def __init__(self, *, cols, acc_bits, max_channels, max_positions, max_hidden,
                 max_batch=1, lanes=None, residual=True):
        lanes = cols if lanes is None else lanes
        if not 1 <= lanes <= cols or cols % lanes:
            raise ValueError(f"lanes must divide cols ({cols}), not {lanes}")
        entries = 1 << regmap.INDEX_BITS
        if max_channels * max(max_hidden, 1) > entries or max_channels > entries:
            raise ValueError(f"max_channels x max_hidden must be at most {entries} "
                             f"({regmap.INDEX_BITS} address bits)")
        self._cols, self._lanes, self._acc_bits = cols, lanes, acc_bits
        self._steps = cols // lanes
        self._max_c, self._max_p, self._max_h = max_channels, max_positions, max(max_hidden, 1)
        self._max_b = max(1, min(max_batch, max_positions))
        self._blocks = -(-max_channels // cols)
        self._residual = residual
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_beta": In(stream.Signature(beta_layout())),
            **({"i_res": In(stream.Signature(residual_layout(cols)))} if residual else {}),
            "i_acc": In(stream.Signature(acc_layout(cols, acc_bits))),
            "o_out": Out(stream.Signature(output_layout(cols))),
        })

    @classmethod
    def for_config(cls, config):
        """The unit of a layer engine sized by ``config`` (``core.config.ArrayConfig``)."""
        return cls(cols=config.cols, lanes=config.rescale_lanes, acc_bits=config.buffer_bits,
                   max_channels=config.max_channels, max_positions=config.max_m,
                   max_hidden=config.max_hidden, max_batch=config.max_batch,
                   residual=config.residual)

    def _register_file(self, m):
        """The parameters of ``core.regmap``: the per-channel regions as one memory per lane
        (entry ``c // lanes`` of lane ``c % lanes``), the adapter's regions, the control
        registers; written from ``i_param`` through a register. Returns the read ports and the
        registers."""
        lanes, max_c, max_h = self._lanes, self._max_c, self._max_h
        p = self.i_param.payload
        w = Signal(data.StructLayout({"en": 1, "region": regmap.REGION_BITS,
                                      "lane": range(max(lanes, 2)),
                                      "entry": regmap.INDEX_BITS, "index": regmap.INDEX_BITS,
                                      "value": signed(regmap.VALUE_BITS)}))
        index = p.addr[:regmap.INDEX_BITS]
        m.d.sync += [w.en.eq(self.i_param.valid & self.i_param.ready),
                     w.region.eq(p.addr[regmap.INDEX_BITS:]), w.index.eq(index),
                     w.lane.eq(index % lanes), w.entry.eq(index // lanes), w.value.eq(p.value)]
        ports = {}
        lane_regions = (Region.m, Region.sh, Region.bias) + \
            ((Region.res_m, Region.res_sh) if self._residual else ())
        for r in lane_regions:
            shape = signed(regmap.FIELD_BITS.get(r.name, regmap.VALUE_BITS))
            ports[r] = []
            for lane in range(lanes):
                rd, wr = _memory(m, f"mem_{r.name}_{lane}", shape, self._blocks * self._steps)
                m.d.comb += [wr.addr.eq(w.entry), wr.data.eq(w.value),
                             wr.en.eq(w.en & (w.region == r) & (w.lane == lane))]
                ports[r].append(rd)
        depth = {Region.w1: max_c * max_h, Region.b1: max_h, Region.wb: max(max_c, max_h)}
        for r, d in depth.items():
            shape = signed(regmap.FIELD_BITS.get(r.name, regmap.VALUE_BITS))
            rd, wr = _memory(m, f"mem_{r.name}", shape, d)
            m.d.comb += [wr.addr.eq(w.index), wr.data.eq(w.value),
                         wr.en.eq(w.en & (w.region == r))]
            ports[r] = rd
        shapes = _control_shapes(max_c, self._max_p, max_h)
        reg = {name: Signal(shapes[name], name=f"reg_{name}") for name in CONTROL}
        with m.If(w.en & (w.region == Region.control)):
            with m.Switch(w.index):
                for i, name in enumerate(CONTROL):
                    with m.Case(i):
                        m.d.sync += reg[name].eq(w.value)
        return ports, reg, w.en

    def elaborate(self, platform):
        m = Module()
        cols, lanes, steps = self._cols, self._lanes, self._steps
        max_c, max_p, max_h, max_b = self._max_c, self._max_p, self._max_h, self._max_b
        blocks_max = self._blocks
        ports, reg, writing = self._register_file(m)
        wide = signed(WIDE_BITS)
        slice_ = data.ArrayLayout(wide, lanes)
        u_depth, s_depth = blocks_max * max_p * steps, blocks_max * max_b * steps
        u_rd, u_wr = _memory(m, "mem_u", slice_, u_depth)      # u: block, position, slice
        s_rd, s_wr = _memory(m, "mem_s", slice_, s_depth)      # S: block, sample, slice
        beta_rd, beta_wr = _memory(m, "mem_beta_in", beta_layout(), max_b)
        h_rd, h_wr = _memory(m, "mem_h", wide, max_h)                    # hidden units
        w1_rd, b1_rd, wb_rd = ports[Region.w1], ports[Region.b1], ports[Region.wb]
        u_addr = range(max(2, u_depth))
        s_addr = range(max(2, s_depth))

        # The layer's shape ------------------------------------------------------------------
        pooled = reg["pool"] > 1
        out_w = Mux(pooled, reg["width"] >> 1, reg["width"])
        row_stride = Signal(u_addr)                 # slices of one output row
        m.d.sync += row_stride.eq(_times(out_w, steps))
        final = reg["final"]
        residual = reg["residual"]
        has_res = self._residual
        need_res = (residual != regmap.RESIDUAL_KINDS["none"]) if has_res else 0
        res_valid = self.i_res.valid if has_res else 0

        armed = Signal()               # the layer's parameters are complete
        with m.If(self.i_param.valid & self.i_param.ready):
            m.d.sync += armed.eq(self.i_param.payload.last)

        # Drain, the take: a vector and its place -------------------------------------------
        row, col = Signal(range(max_p + 1)), Signal(range(max_p + 1))
        smp = Signal(range(max_b + 1))
        nsamp = Signal(range(max_b + 1))
        blk_chan = Signal(range(max_c + cols + 1))     # the block's first channel
        first_block = Signal()
        u_blk, u_row, u_col = Signal(u_addr), Signal(u_addr), Signal(u_addr)
        s_blk, s_smp = Signal(s_addr), Signal(s_addr)
        p_blk = Signal(range(max(2, blocks_max * steps + 1)))
        out_slices = Signal(u_addr)                    # slices of a sample's block of outputs
        out_last = Signal(u_addr)                      # out_slices - 1
        draining = Signal()            # a register: set entering the drain, cleared on the
                                       # layer's last vector
        need_beta = Signal()           # the next vector is a sample's first (of block 0)
        last_block = Signal()          # the block being taken is the layer's last
        take = Signal()

        # Stage G: the vector taken, emitted one slice per clock.
        g = Signal(data.StructLayout({
            "busy": 1, "j": range(max(steps, 2)), "beta_new": 1, "uaddr": u_addr,
            "saddr": s_addr, "paddr": range(max(2, blocks_max * steps + 1)), "h_first": 1,
            "v_second": 1, "sample_end": 1}))
        g_acc = Signal(data.ArrayLayout(signed(self._acc_bits), cols), reset_less=True)
        g_res = Signal(data.ArrayLayout(wide, cols), reset_less=True)
        g_beta = Signal(beta_layout())
        g_last = Signal()              # G emits its vector's last slice
        free = ~g.busy | g_last
        m.d.comb += [
            self.i_acc.ready.eq(draining & free & (~need_beta | self.i_beta.valid)
                                & (~need_res | res_valid)),
            self.i_beta.ready.eq(draining & free & self.i_acc.valid & need_beta
                                 & (~need_res | res_valid)),
            take.eq(self.i_acc.valid & self.i_acc.ready),
        ]
        if has_res:
            m.d.comb += self.i_res.ready.eq(draining & free & self.i_acc.valid & need_res
                                            & (~need_beta | self.i_beta.valid))
        last_row, last_col = Signal.like(row), Signal.like(col)       # height - 1, width - 1
        m.d.sync += [last_row.eq(reg["height"] - 1), last_col.eq(reg["width"] - 1)]
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
                             last_block.eq(blk_chan + 2 * cols >= reg["channels"]),
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
            return reg.eq(Mux(free, incoming, _rotate(reg, lanes, width, _low(reg, lanes, width))))
        m.d.sync += load_or_rotate(g_acc, self.i_acc.payload.data, self._acc_bits)
        if has_res:
            m.d.sync += load_or_rotate(g_res, self.i_res.payload.data, WIDE_BITS)

        # Stage A: the slice with its parameters (read at G) and betas.
        for lane in range(lanes):
            for r in (Region.m, Region.sh, Region.bias) + \
                    ((Region.res_m, Region.res_sh) if has_res else ()):
                m.d.comb += ports[r][lane].addr.eq(g.paddr)
        meta = data.StructLayout({"valid": 1, "uaddr": u_addr, "saddr": s_addr, "h_first": 1,
                                  "v_second": 1, "sample_end": 1})
        a = Signal(meta)
        a_acc = Signal(data.ArrayLayout(signed(self._acc_bits), lanes), reset_less=True)
        a_res = Signal(slice_, reset_less=True)
        a_beta = Signal(beta_layout())
        m.d.sync += [a.valid.eq(g.busy), a.uaddr.eq(g.uaddr), a.saddr.eq(g.saddr),
                     a.h_first.eq(g.h_first), a.v_second.eq(g.v_second),
                     a.sample_end.eq(g.sample_end),
                     a_acc.eq(_low(g_acc, lanes, self._acc_bits)),
                     a_res.eq(_low(g_res, lanes, WIDE_BITS)),
                     a_beta.eq(Mux(g.beta_new, g_beta, beta_rd.data))]

        # The affine map and the shortcut, every lane (Affine's latency); stage Z1 adds the
        # shortcut's operand, Z2 applies the ReLU.
        main_latency = Affine.latency(self._acc_bits)
        meta_line = delay_line(m, a, main_latency, name="meta")
        z1, z2 = Signal(meta), Signal(meta)
        z1_sum, z2_u = Signal(slice_, reset_less=True), Signal(slice_, reset_less=True)
        m.d.sync += [z1.eq(meta_line[-1]), z2.eq(z1)]
        affines = []
        for lane in range(lanes):
            m.submodules[f"affine_{lane}"] = affine = Affine(self._acc_bits)
            affines.append(affine)
            m.d.comb += [affine.acc.eq(a_acc[lane]), affine.beta_in.eq(a_beta.beta),
                         affine.m.eq(ports[Region.m][lane].data),
                         affine.sh.eq(ports[Region.sh][lane].data),
                         affine.bias.eq(ports[Region.bias][lane].data)]
            # The shortcut's operand (core.rescale.shortcut_operand: the same affine map, no
            # bias), or a projection's z as it is; added before the ReLU.
            operand = 0
            if has_res:
                m.submodules[f"shortcut_{lane}"] = shortcut = Affine(RESIDUAL_CODE_BITS + 1,
                                                                     latency=main_latency)
                m.d.comb += [shortcut.acc.eq(a_res[lane]), shortcut.beta_in.eq(a_beta.res),
                             shortcut.m.eq(ports[Region.res_m][lane].data),
                             shortcut.sh.eq(ports[Region.res_sh][lane].data),
                             shortcut.bias.eq(0)]
                projection = delay(m, a_res[lane], main_latency, name=f"projection_{lane}",
                                   reset_less=True)
                operand = Mux(residual == regmap.RESIDUAL_KINDS["identity"], shortcut.u,
                              Mux(residual == regmap.RESIDUAL_KINDS["projection"], projection,
                                  0))
            m.d.sync += [z1_sum[lane].eq(affine.u + operand),
                         z2_u[lane].eq(Mux(reg["relu"] & (z1_sum[lane] < 0), 0, z1_sum[lane]))]

        # Stages H1, H2: the horizontal pair (compare, then select), through ``hold``.
        # ``hold`` rotates by a slice with every slice of a pooled layer; ``hold_low``, a copy
        # of its bottom slice, is what the comparison reads (near it, not across the unit).
        hold = Signal(data.ArrayLayout(wide, cols), reset_less=True)
        hold_low = Signal(slice_, reset_less=True)
        h1, h2 = Signal(meta), Signal(meta)
        h1_u, h1_hold, h2_pair = (Signal(slice_, reset_less=True) for _ in range(3))
        # H1 compares the halves (``halves``), H2 combines them in the select.
        h1_cmp = [Signal(3, name=f"h1_cmp_{lane}", reset_less=True) for lane in range(lanes)]
        m.d.sync += [h1.eq(z2), h2.eq(h1), h1_u.eq(z2_u), h1_hold.eq(hold_low)]
        for lane in range(lanes):
            m.d.sync += [h1_cmp[lane].eq(Cat(*halves(hold_low[lane], z2_u[lane]))),
                         h2_pair[lane].eq(Mux(pooled & ~h1.h_first & joined(*h1_cmp[lane]),
                                              h1_hold[lane], h1_u[lane]))]
        with m.If(z2.valid & pooled):
            incoming = Mux(z2.h_first, z2_u.as_value(), hold_low.as_value())
            nxt = hold.as_value()[lanes * WIDE_BITS:2 * lanes * WIDE_BITS] if steps > 1 \
                else incoming
            m.d.sync += [hold.eq(_rotate(hold, lanes, WIDE_BITS, incoming)),
                         hold_low.eq(nxt)]

        # Stages V1, V2: the vertical pair (compare, then select) through the u memory, which
        # V2 writes. The memory is read when the slice is in Z2, and its output registered
        # (``u_data``: a block RAM's output is slow). A write by the slice in H2, V1 or V2 when
        # the reader reads (its vertical partner, two to four clocks ahead: a pooled map of
        # two slices a row, or four, or gaps in the input) is not in what it reads: it is
        # forwarded, the latest first.
        u_data = Signal(slice_, reset_less=True)
        m.d.sync += u_data.eq(u_rd.data)
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
            m.d.sync += v2_window[lane].eq(Mux(v1.v_second & gt, v1_below[lane], v1_pair[lane]))
        m.d.comb += [u_wr.addr.eq(v2.uaddr), u_wr.data.eq(v2_window), u_wr.en.eq(writes(v2))]

        # Stage W: the channel sums.
        sums = Signal(data.ArrayLayout(wide, cols))
        s_total = Signal(slice_)
        for lane in range(lanes):
            m.d.comb += s_total[lane].eq(sums[lane] + Mux(v2_done, v2_window[lane], 0))
        with m.If(v2.valid):
            m.d.sync += sums.eq(_rotate(sums, lanes, WIDE_BITS,
                                        Mux(v2.sample_end, 0, s_total.as_value())))
        m.d.comb += [s_wr.addr.eq(v2.saddr), s_wr.data.eq(s_total),
                     s_wr.en.eq(v2.valid & v2.sample_end)]
        in_flight = Cat(g.busy, a.valid, *(x.valid for x in meta_line),
                        *(x.valid for x in (z1, z2, h1, h2, v1, v2))).any()


        # Tail: adapter, beta, reciprocal and outputs, sample by sample --------------------
        t = Signal(range(max_b + 1))                 # the sample
        t_s = Signal(s_addr)                         # its sums: t * steps
        t_u = Signal(u_addr)                         # its outputs: t * out_slices
        beta = Signal(BETA_BITS)
        total = Signal(wide)
        two = reg["adapter"] == regmap.ADAPTER_KINDS["two"]

        # The terms of a dot product: read (addresses from the counters), select the lane,
        # multiply, add. ``issue`` counts the terms read.
        issue = Signal(range(max(max_c, max_h) + 1))
        i_lane = Signal(range(max(lanes, 2)))
        i_j = Signal(range(max(steps, 2)))
        i_blk = Signal(s_addr)
        w1_base = Signal(range(max(2, max_c * max_h + 1)))
        j = Signal(range(max_h + 1))
        count = Signal(range(max(max_c, max_h) + 1))
        reading = Signal()
        m.submodules.mac = mac = Product(wide, signed(MANT_BITS), WIDE_BITS)
        pend = [Signal(name=f"pending_{i}") for i in range(2 + mac.LATENCY)]
        lane_read = Signal.like(i_lane)
        x_term = Signal(wide, reset_less=True)
        w_term = Signal(signed(MANT_BITS), reset_less=True)
        m.d.sync += [pend[0].eq(reading), lane_read.eq(i_lane)]
        m.d.sync += [pend[i].eq(pend[i - 1]) for i in range(1, len(pend))]
        s_lane = s_rd.data[0]
        for lane in range(1, lanes):
            s_lane = Mux(lane_read == lane, s_rd.data[lane], s_lane)
        in_beta = Signal()                           # the terms are beta's (else hidden j's)
        m.d.sync += [x_term.eq(Mux(in_beta & two, h_rd.data, s_lane)),
                     w_term.eq(Mux(in_beta, wb_rd.data, w1_rd.data))]
        m.d.comb += [mac.a.eq(x_term), mac.b.eq(w_term),
                     s_rd.addr.eq(i_blk + t_s + i_j), h_rd.addr.eq(issue),
                     w1_rd.addr.eq(w1_base + issue), wb_rd.addr.eq(issue), b1_rd.addr.eq(j)]
        with m.If(pend[-1]):
            m.d.sync += total.eq(total + mac.p)
        with m.If(reading):
            m.d.sync += [issue.eq(issue + 1), i_lane.eq(i_lane + 1)]
            with m.If(i_lane == lanes - 1):
                m.d.sync += [i_lane.eq(0), i_j.eq(i_j + 1)]
                with m.If(i_j == steps - 1):
                    m.d.sync += [i_j.eq(0), i_blk.eq(i_blk + max_b * steps)]
        m.d.comb += reading.eq(0)
        terms_done = (issue == count) & ~Cat(*pend).any()

        def restart_terms(n, beta_terms):
            m.d.sync += [issue.eq(0), i_lane.eq(0), i_j.eq(0), i_blk.eq(0), total.eq(0),
                         count.eq(n), in_beta.eq(beta_terms)]

        # The sums are rounded by lane 0's ``Affine``, its rounder bypassed (``bypass``, high
        # from the end of the flush, when every sum is rescaled, until the next layer's drain
        # begins: a register, not a decode of the state, as it selects 136 bits).
        bypass = Signal()
        # The rounder's shift and addend: registers, a clock behind ``in_beta`` and ``j``
        # (which change at least ``mac.LATENCY`` clocks before the sum is complete).
        adapter_n = Signal(signed(SHIFT_BITS), reset_less=True)
        adapter_addend = Signal(signed(WIDE_BITS), reset_less=True)
        m.d.sync += [adapter_n.eq(Mux(in_beta, reg["shb"], reg["sh1"])),
                     adapter_addend.eq(Mux(in_beta, reg["bb"], b1_rd.data))]
        m.d.comb += [affines[0].bypass.eq(bypass), affines[0].x.eq(total),
                     affines[0].n.eq(adapter_n), affines[0].addend.eq(adapter_addend)]
        wait = Signal(range(Rounder.LATENCY + 2))
        y = affines[0].y
        below, above, y_low = Signal(), Signal(), Signal(BETA_BITS)   # the clamp's compares
        m.d.sync += [below.eq(y < 1), above.eq(y > rescale.BETA_MAX), y_low.eq(y)]
        beta_clamped = Mux(below, 1, Mux(above, rescale.BETA_MAX, y_low))

        m.submodules.reciprocal = divider = Reciprocal()
        m.d.comb += [divider.numerator.eq(reg["m_s"] << rescale.RECIP_BITS),
                     divider.divisor.eq(beta)]

        # Outputs: slice reads from the u memory -> Requantizer -> vectors of cols -> ``queue``
        # -> o_out. The path never stalls (no enable reaches its registers, the u memory's or
        # the requantizers'): a vector's first slice is read only when the queue will have an
        # entry for it, ``room`` counting the entries neither full nor promised to a vector
        # on its way. ``depth`` vectors cover the loop from a read to the entry freed (3 at
        # least: a queue of 2 has a 1-entry memory, a 0-bit address, ``[-1:0]`` in Verilog).
        o_issue = Signal()
        o_k = Signal(u_addr)                         # the slice within the sample's block
        o_j = Signal(range(max(steps, 2)))           # the slice within its vector
        o_blk = Signal(u_addr)
        o_chan = Signal(range(max_c + cols + 1))
        asm = Signal(data.ArrayLayout(wide, cols), reset_less=True)
        asm_n = Signal(range(max(steps, 2)))         # slices of the vector in asm
        o_last_block = Signal()                      # o_chan + cols >= channels
        o_block_end = o_k == out_last
        o_end = o_block_end & o_last_block
        rq_latency = Requantizer.LATENCY
        o_valid = [Signal(name=f"o_valid_{i}") for i in range(2 + rq_latency)]
        o_last = [Signal(name=f"o_last_{i}") for i in range(2 + rq_latency)]
        m.d.sync += [o_valid[0].eq(o_issue), o_last[0].eq(o_issue & o_end)]
        m.d.sync += [o_valid[i].eq(o_valid[i - 1]) for i in range(1, len(o_valid))]
        m.d.sync += [o_last[i].eq(o_last[i - 1]) for i in range(1, len(o_last))]
        codes = Signal(slice_)
        for lane in range(lanes):
            m.submodules[f"requantizer_{lane}"] = rq = Requantizer()
            m.d.comb += [rq.u.eq(u_data[lane]), rq.recip.eq(divider.quotient),
                         rq.sh_req.eq(reg["sh_req"]), rq.max_code.eq(reg["max_code"])]
            z_out = delay(m, u_data[lane], rq_latency, name=f"z_out_{lane}", reset_less=True)
            m.d.comb += codes[lane].eq(Mux(final, z_out, rq.code))
        vector = _rotate(asm, lanes, WIDE_BITS, codes.as_value())
        depth = max(3, 1 + -(-(len(o_valid) + 3) // steps))     # 3 at least, see the queue
        m.submodules.queue = queue = SyncFIFOBuffered(width=len(vector) + 1, depth=depth)
        with m.If(o_valid[-1]):
            m.d.sync += [asm.eq(vector), asm_n.eq(Mux(asm_n == steps - 1, 0, asm_n + 1))]
        m.d.comb += [queue.w_data.eq(Cat(vector, o_last[-1])),
                     queue.w_en.eq(o_valid[-1] & (asm_n == steps - 1)),
                     self.o_out.valid.eq(queue.r_rdy), queue.r_en.eq(self.o_out.ready),
                     self.o_out.payload.value.eq(queue.r_data[:-1]),
                     self.o_out.payload.last.eq(queue.r_data[-1]),
                     self.o_out.payload.beta.eq(beta)]
        room = Signal(range(depth + 1), init=depth)
        start = o_issue & (o_j == 0)
        taken = self.o_out.valid & self.o_out.ready
        m.d.sync += room.eq(room - start + taken)
        sample_out = taken & self.o_out.payload.last

        m.d.comb += u_rd.addr.eq(z2.uaddr)
        m.d.comb += u_rd.en.eq(1)
        with m.FSM(init="idle"):
            with m.State("idle"):
                m.d.comb += self.i_param.ready.eq(1)
                m.d.sync += [row.eq(0), col.eq(0), smp.eq(0), blk_chan.eq(0), first_block.eq(1),
                             need_beta.eq(1), last_block.eq(cols >= reg["channels"]),
                             u_blk.eq(0), u_row.eq(0), u_col.eq(0), s_blk.eq(0), s_smp.eq(0),
                             p_blk.eq(0), t.eq(0), t_s.eq(0), t_u.eq(0)]
                with m.If(self.i_acc.valid & armed & ~self.i_param.valid & ~writing):
                    m.d.sync += [draining.eq(1), bypass.eq(0)]
                    m.next = "drain"

            with m.State("drain"):
                with m.If(~draining):
                    m.next = "flush"

            with m.State("flush"):                    # the pipeline empties
                with m.If(~in_flight):
                    m.d.sync += bypass.eq(1)
                    m.next = "sample"

            with m.State("sample"):                   # the tail of sample t begins
                restart_terms(reg["channels"], ~two)
                m.d.sync += [j.eq(0), w1_base.eq(0), beta.eq(rescale.BETA_ONE), o_k.eq(0),
                             o_blk.eq(0), o_chan.eq(0), o_last_block.eq(cols >= reg["channels"])]
                with m.If(final):
                    m.next = "output"
                with m.Elif(reg["adapter"] == regmap.ADAPTER_KINDS["none"]):
                    m.next = "divide"
                with m.Elif(two):
                    m.next = "hidden"
                with m.Else():
                    m.next = "beta"

            with m.State("hidden"):                   # h[j] = relu(rshift(w1[j] . S, sh1) + b1)
                m.d.comb += reading.eq(issue != count)
                with m.If(terms_done):
                    m.d.sync += wait.eq(0)
                    m.next = "hidden_round"

            with m.State("hidden_round"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == Rounder.LATENCY):
                    m.d.comb += [h_wr.addr.eq(j), h_wr.en.eq(1), h_wr.data.eq(Mux(y < 0, 0, y))]
                    m.d.sync += [j.eq(j + 1), w1_base.eq(w1_base + max_c)]
                    with m.If(j == reg["hidden"] - 1):
                        restart_terms(reg["hidden"], 1)
                        m.next = "beta"
                    with m.Else():
                        restart_terms(reg["channels"], 0)
                        m.next = "hidden"

            with m.State("beta"):                     # beta = clamp(rshift(wb . x, shb) + bb)
                m.d.comb += reading.eq(issue != count)
                with m.If(terms_done):
                    m.d.sync += wait.eq(0)
                    m.next = "beta_round"

            with m.State("beta_round"):               # the rounder, then the clamp
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == Rounder.LATENCY + 1):
                    m.d.sync += beta.eq(beta_clamped)
                    m.next = "divide"

            with m.State("divide"):                   # R = (m_s << RECIP_BITS) // beta
                m.d.comb += divider.run.eq(1)
                with m.If(divider.done):
                    m.next = "output"

            with m.State("output"):                   # u (block, position, slice) -> o_out
                m.d.comb += [u_rd.addr.eq(o_blk + t_u + o_k),
                             o_issue.eq((o_j != 0) | (room != 0))]
                with m.If(o_issue):
                    m.d.sync += [o_k.eq(o_k + 1), o_j.eq(Mux(o_j == steps - 1, 0, o_j + 1))]
                    with m.If(o_block_end):
                        m.d.sync += [o_k.eq(0), o_blk.eq(o_blk + max_p * steps),
                                     o_chan.eq(o_chan + cols),
                                     o_last_block.eq(o_chan + 2 * cols >= reg["channels"])]
                    with m.If(o_end):
                        m.next = "output_end"

            with m.State("output_end"):              # the sample's last vector leaves
                with m.If(sample_out):
                    m.d.sync += [t.eq(t + 1), t_s.eq(t_s + steps), t_u.eq(t_u + out_slices)]
                    m.next = "sample"
                    with m.If(t + 1 == nsamp):
                        m.next = "idle"
        return m
