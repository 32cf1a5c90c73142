"""The rescale unit: ``core.rescale`` in hardware, ``lanes`` values per clock.

It reads the accumulator buffer's output (``hw.accumulator``): for each block of ``cols``
channels, the ``M`` sums of a pass, which are the positions of up to ``max_batch`` samples one
after the other (the host stacks the samples of a batch in ``M``). A vector of ``cols`` sums
goes through the datapath as ``steps = cols // lanes`` slices of ``lanes`` channels, one slice
per clock, so the unit takes a vector every ``steps`` clocks; ``lanes`` (``ArrayConfig.
rescale_lanes``) trades the unit's multipliers against the rate at which it drains a block.
For each slice, in a pipeline that never stalls once a vector is taken, every lane at once:

1. ``Affine`` (``z``) with the channel's parameters and the sample's ``beta_in``, plus the
   second operand of a layer with a shortcut (below), the ReLU and the bounded ReLU's clip
   (``clip``, ``clip_q``);
2. pooling, the window's maximum or (``pool_mode``, average pooling) its sum: the horizontal
   pair through a register of ``cols`` values, the vertical pair through the ``u`` memory; the
   pooled ``u`` is written to the ``u`` memory;
3. the channel sums ``S`` of the sample, in a register of ``cols`` values, written to the ``S``
   memory at the sample's last position.

When the last block of a batch has gone through, for each sample of the batch in turn: the
adapter's hidden layer and ``beta`` from the sums ``S`` (one pipelined multiply-accumulate per
clock), ``Reciprocal`` for ``R = (m_s << RECIP_BITS) // beta``, and the sample's outputs, one
slice per clock through ``Requantizer`` (the last layer streams out ``z``), gathered into
vectors of ``cols`` values that wait for the host in a queue of a few vectors (a pipeline that
never stalls: a vector is started only when the queue will have room for it). A layer that
ends in a global pooling (``global_pool``) requantizes the sample's sums ``S`` instead of its
``u``: the outputs are read from the ``S`` memory, one position per sample. The
accumulator buffer's second bank lets the array go on with the next block of columns meanwhile
(``hw.accumulator``). Every rounding and width is that of ``core.rescale``, bit for bit; every
stage has at most one 64-bit adder or comparison (``hw.rescale_stages``), and no address needs
a multiplier (they are counted).

The unit is a pipeline of stage components, each with its own test against ``core.rescale``
(``tests/test_rescale_<stage>.py``):
``hw.rescale_drain.Drain`` (stages G and A: the vectors taken, their slices and places),
``hw.rescale_activation.Activation`` (the affine map, the shortcut and the ReLU),
``hw.rescale_pool.Pool`` (stages H1, H2, V1, V2), ``hw.rescale_sums.ChannelSums`` (stage W),
``hw.rescale_adapter.AdapterStage``, ``hw.rescale_stages.Reciprocal`` and
``hw.rescale_output.Output``; ``RescaleUnit`` holds the register file, the ``u`` and ``S``
memories, and the state machine that runs a layer: drain, flush, then sample by sample the
adapter, the reciprocal and the outputs.

Parameters are written on ``i_param`` (``core.regmap``; ``last`` on the layer's final word) while
the unit is idle, before the layer's first pass; each sample's ``beta_in`` comes on ``i_beta``,
in sample order, taken with the sample's first vector. A layer with a shortcut (a residual
block's second conv, ``core.rescale.rescale_residual``) takes a second operand on ``i_res``,
a vector with every vector of ``i_acc``: an identity shortcut's codes, rescaled by the same
affine map with the shortcut's ``res_m``, ``res_sh`` and ``beta`` (``i_beta``'s ``res``), or a
projection layer's ``z``, added to ``z`` as it is; the ReLU follows the sum. Signed codes
(``core.regmap``'s ``next_signed`` and ``res_signed``: a linear bottleneck's output and the
identity shortcut that reads it) are clamped to the signed range by ``Requantizer`` and leave as
two's complement in ``Requantizer.CODE_BITS`` bits; a signed shortcut's codes are sign-extended
from as many bits. The host writes a
layer's parameters only after every output of the previous layer has left. All memories have
synchronous read ports and no reset (block RAM or LUT RAM).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from core import regmap, rescale
from core.regmap import CONTROL, Region

from .rescale_activation import CLIP_BITS, Activation
from .rescale_adapter import AdapterStage
from .rescale_drain import Drain
from .rescale_layouts import (RESIDUAL_CODE_BITS, acc_layout, beta_layout, check_lanes,
                              memory_ports, output_layout, param_layout, residual_layout,
                              slice_layout)
from .rescale_output import Output
from .rescale_pool import Pool
from .rescale_stages import MANT_BITS, SHIFT_BITS, Product, Reciprocal, Requantizer, delay_line
from .rescale_sums import ChannelSums

__all__ = ["RescaleUnit", "param_layout", "output_layout", "acc_layout", "beta_layout",
           "residual_layout", "RESIDUAL_CODE_BITS"]


#: Widths of the registers: the per-channel regions and the adapter's, by ``core.regmap``'s
#: ``FIELD_BITS``; the control registers below.
def _control_shapes(max_c, max_p, max_h):
    return {"channels": range(max_c + 1), "height": range(max_p + 1), "width": range(max_p + 1),
            "pool": range(8), "relu": 1, "final": 1, "adapter": 2, "hidden": range(max_h + 1),
            "sh1": signed(SHIFT_BITS), "shb": signed(SHIFT_BITS),
            "bb": signed(regmap.VALUE_BITS), "m_s": unsigned(MANT_BITS - 1),
            "sh_req": signed(SHIFT_BITS), "max_code": unsigned(regmap.VALUE_BITS - 1),
            "residual": 2, "clip": 1, "clip_q": unsigned(CLIP_BITS), "pool_mode": 1,
            "global_pool": 1, "next_signed": 1, "res_signed": 1}


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
    i_param : In(stream.Signature(param_layout(index_bits)))
        Accepted only while idle. ``index_bits`` (an attribute too) is the register map's index
        width for these sizes, ``core.regmap.index_bits_for(max_channels, max_hidden)``.
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
                 max_batch=1, lanes=None, residual=True, widths=None):
        from core.widths import full
        lanes = cols if lanes is None else lanes
        check_lanes(cols, lanes)
        self.index_bits = regmap.index_bits_for(max_channels, max(max_hidden, 1))
        self._cols, self._lanes, self._acc_bits = cols, lanes, acc_bits
        self._steps = cols // lanes
        self._max_c, self._max_p, self._max_h = max_channels, max_positions, max(max_hidden, 1)
        self._max_b = max(1, min(max_batch, max_positions))
        self._blocks = -(-max_channels // cols)
        self._residual = residual
        self._widths = widths or full(acc_bits)
        super().__init__({
            "i_param": In(stream.Signature(param_layout(self.index_bits))),
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
                   residual=config.residual, widths=config.widths)

    def _register_file(self, m):
        """The parameters of ``core.regmap``: the per-channel regions as one memory per lane
        (entry ``c // lanes`` of lane ``c % lanes``), the adapter's regions, the control
        registers; written from ``i_param`` through a register. Returns the read ports and the
        registers."""
        lanes, max_c, max_h = self._lanes, self._max_c, self._max_h
        p = self.i_param.payload
        bits = self.index_bits
        w = Signal(data.StructLayout({"en": 1, "region": regmap.REGION_BITS,
                                      "lane": range(max(lanes, 2)), "entry": bits,
                                      "index": bits, "value": signed(regmap.VALUE_BITS)}))
        index = p.addr[:bits]
        m.d.sync += [w.en.eq(self.i_param.valid & self.i_param.ready),
                     w.region.eq(p.addr[bits:]), w.index.eq(index),
                     w.lane.eq(index % lanes), w.entry.eq(index // lanes), w.value.eq(p.value)]
        ports = {}
        lane_regions = (Region.m, Region.sh, Region.bias) + \
            ((Region.res_m, Region.res_sh) if self._residual else ())
        for r in lane_regions:
            shape = signed(regmap.FIELD_BITS.get(r.name, regmap.VALUE_BITS))
            ports[r] = []
            for lane in range(lanes):
                rd, wr = memory_ports(m, f"mem_{r.name}_{lane}", shape,
                                      self._blocks * self._steps, block=True)
                m.d.comb += [wr.addr.eq(w.entry), wr.data.eq(w.value),
                             wr.en.eq(w.en & (w.region == r) & (w.lane == lane))]
                ports[r].append(rd)
        depth = {Region.w1: max_c * max_h, Region.b1: max_h, Region.wb: max(max_c, max_h)}
        for r, d in depth.items():
            shape = signed(regmap.FIELD_BITS.get(r.name, regmap.VALUE_BITS))
            rd, wr = memory_ports(m, f"mem_{r.name}", shape, d, block=True)
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
        has_res = self._residual
        widths = self._widths
        value, keep = widths.value, min(self._acc_bits, widths.acc)
        ports, reg, writing = self._register_file(m)
        pooled = reg["pool"] > 1
        final = reg["final"]
        none = reg["adapter"] == regmap.ADAPTER_KINDS["none"]
        armed = Signal()               # the layer's parameters are complete
        with m.If(self.i_param.valid & self.i_param.ready):
            m.d.sync += armed.eq(self.i_param.payload.last)

        # The intake: vectors in, slices out with their places (stages G and A).
        m.submodules.drain = drain = Drain(cols=cols, lanes=lanes, acc_bits=self._acc_bits,
                                           max_channels=max_c, max_positions=max_p,
                                           max_batch=max_b, residual=has_res, keep_bits=keep,
                                           value_bits=value)
        u_depth, s_depth = drain.u_depth, drain.s_depth
        slice_ = slice_layout(lanes, value)
        u_rd, u_wr = memory_ports(m, "mem_u", slice_, u_depth)      # u: block, position, slice
        s_rd, s_wr = memory_ports(m, "mem_s", slice_, s_depth)      # S: block, sample, slice
        wiring.connect(m, wiring.flipped(self.i_acc), drain.i_acc)
        wiring.connect(m, wiring.flipped(self.i_beta), drain.i_beta)
        m.d.comb += [drain.pooled.eq(pooled), drain.height.eq(reg["height"]),
                     drain.width.eq(reg["width"]), drain.channels.eq(reg["channels"])]
        if has_res:
            wiring.connect(m, wiring.flipped(self.i_res), drain.i_res)
            m.d.comb += drain.need_res.eq(reg["residual"] != regmap.RESIDUAL_KINDS["none"])

        # The activations: the slice's channel parameters, read at G, arrive with it at A.
        m.submodules.activation = act = Activation(lanes=lanes, acc_bits=keep,
                                                   residual=has_res, widths=widths)
        m.d.comb += [act.acc.eq(drain.a_acc), act.beta.eq(drain.a_beta),
                     act.relu.eq(reg["relu"]), act.clip.eq(reg["clip"]),
                     act.clip_q.eq(reg["clip_q"])]
        lane_ports = {Region.m: act.m, Region.sh: act.sh, Region.bias: act.bias}
        if has_res:
            lane_ports.update({Region.res_m: act.res_m, Region.res_sh: act.res_sh})
            m.d.comb += [act.res.eq(drain.a_res), act.residual.eq(reg["residual"]),
                         act.res_signed.eq(reg["res_signed"])]
        for r, port in lane_ports.items():
            for lane in range(lanes):
                m.d.comb += [ports[r][lane].addr.eq(drain.paddr),
                             port[lane].eq(ports[r][lane].data)]
        meta = delay_line(m, drain.a, act.LATENCY, name="meta")      # the slice's place

        # Pooling through the u memory, then the channel sums into the S memory. The u and S
        # memories' outputs are registered before the choice between them (``u_data``: a
        # block RAM's output comes 5.8 ns after the clock on an ECP5).
        m.submodules.pool = pool = Pool(cols=cols, lanes=lanes, u_depth=u_depth,
                                        s_depth=s_depth, width=value)
        m.submodules.sums = sums = ChannelSums(cols=cols, lanes=lanes, u_depth=u_depth,
                                               s_depth=s_depth, width=value)
        # ``read_s``, a register, high while a layer that ends in a global pooling sends its
        # outputs (from the end of the flush): they are read from the S memory.
        u_q, s_q = Signal(slice_, reset_less=True), Signal(slice_, reset_less=True)
        read_s, read_s_q = Signal(), Signal()
        gap = reg["global_pool"]
        m.d.sync += [u_q.eq(u_rd.data), s_q.eq(s_rd.data), read_s_q.eq(read_s)]
        u_data = Mux(read_s_q, s_q, u_q)
        m.d.comb += [pool.pooled.eq(pooled), pool.avg.eq(reg["pool_mode"]),
                     pool.i.eq(meta[-1]), pool.u.eq(act.u),
                     pool.below.eq(u_data), u_rd.addr.eq(meta[-1].uaddr), u_rd.en.eq(1),
                     u_wr.addr.eq(pool.w_addr), u_wr.data.eq(pool.w_data),
                     u_wr.en.eq(pool.w_en),
                     sums.i.eq(pool.o), sums.window.eq(pool.window), sums.done.eq(pool.done),
                     s_wr.addr.eq(sums.w_addr), s_wr.data.eq(sums.w_data),
                     s_wr.en.eq(sums.w_en)]
        in_flight = Cat(drain.busy, drain.a.valid, *(x.valid for x in meta), pool.busy).any()

        # The tail, sample by sample: the adapter (lane 0's rounder lent to it while
        # ``bypass``, a register high from the end of the flush until the next layer's drain
        # begins, as it selects 136 bits), the reciprocal, the outputs.
        t = Signal(range(max_b + 1))                 # the sample
        t_s = Signal(range(max(2, s_depth)))         # its sums: t * steps
        t_u = Signal(range(max(2, u_depth)))         # its outputs: t * out_slices
        bypass = Signal()
        # The adapter's multiply-accumulate borrows lane 0's requantizer product (``Output``'s
        # ``mac``): the outputs never run while the adapter does.
        mac_latency = Product.plan(*Requantizer.shapes(value, widths.recip))[2]
        m.submodules.adapter = adapter = AdapterStage(cols=cols, lanes=lanes, max_channels=max_c,
                                                 max_hidden=max_h, max_batch=max_b,
                                                 s_depth=s_depth, value_bits=value,
                                                 mac_latency=mac_latency)
        w1_rd, b1_rd, wb_rd = ports[Region.w1], ports[Region.b1], ports[Region.wb]
        m.d.comb += [act.bypass.eq(bypass), act.x.eq(adapter.x), act.n.eq(adapter.n),
                     act.addend.eq(adapter.addend), adapter.y.eq(act.y),
                     adapter.two.eq(reg["adapter"] == regmap.ADAPTER_KINDS["two"]),
                     adapter.channels.eq(reg["channels"]), adapter.hidden.eq(reg["hidden"]),
                     adapter.sh1.eq(reg["sh1"]), adapter.shb.eq(reg["shb"]),
                     adapter.bb.eq(reg["bb"]), adapter.sample_base.eq(t_s),
                     s_rd.addr.eq(adapter.s_addr), adapter.s_data.eq(s_rd.data),
                     w1_rd.addr.eq(adapter.w1_addr), adapter.w1_data.eq(w1_rd.data),
                     b1_rd.addr.eq(adapter.b1_addr), adapter.b1_data.eq(b1_rd.data),
                     wb_rd.addr.eq(adapter.wb_addr), adapter.wb_data.eq(wb_rd.data)]
        m.submodules.reciprocal = divider = Reciprocal()
        m.d.comb += [divider.numerator.eq(reg["m_s"] << rescale.RECIP_BITS),
                     divider.divisor.eq(adapter.beta)]
        m.submodules.outputs = output = Output(cols=cols, lanes=lanes, max_channels=max_c,
                                              max_positions=max_p, u_depth=u_depth,
                                              max_batch=max_b, widths=widths)
        assert output.mac_latency == mac_latency
        wiring.connect(m, output.o_out, wiring.flipped(self.o_out))
        m.d.comb += [output.mac.eq(adapter.mac), output.mac_a.eq(adapter.mac_a),
                     output.mac_b.eq(adapter.mac_b), adapter.mac_p.eq(output.mac_p)]
        m.d.comb += [output.recip.eq(divider.quotient), output.sh_req.eq(reg["sh_req"]),
                     output.max_code.eq(reg["max_code"]), output.final.eq(final),
                     output.channels.eq(reg["channels"]), output.beta.eq(adapter.beta),
                     output.sums.eq(gap), output.signed.eq(reg["next_signed"]),
                     output.sample_base.eq(Mux(gap, t_s, t_u)),
                     output.out_last.eq(Mux(gap, steps - 1, drain.out_last)),
                     output.u_data.eq(u_data)]

        with m.FSM(init="idle"):
            with m.State("idle"):
                m.d.comb += [self.i_param.ready.eq(1), drain.clear.eq(1)]
                m.d.sync += [t.eq(0), t_s.eq(0), t_u.eq(0)]
                with m.If(self.i_acc.valid & armed & ~self.i_param.valid & ~writing):
                    m.d.comb += drain.start.eq(1)
                    m.d.sync += [bypass.eq(0), read_s.eq(0)]
                    m.next = "drain"

            with m.State("drain"):
                with m.If(~drain.draining):
                    m.next = "flush"

            with m.State("flush"):                    # the pipeline empties
                with m.If(~in_flight):
                    m.d.sync += [bypass.eq(1), read_s.eq(gap)]
                    m.next = "sample"

            with m.State("sample"):                   # the tail of sample t begins
                m.d.comb += [adapter.load.eq(1), output.load.eq(1),
                             adapter.start.eq(~final & ~none)]
                with m.If(final):
                    m.next = "output"
                with m.Elif(none):
                    m.next = "divide"
                with m.Else():
                    m.next = "adapter"

            with m.State("adapter"):                  # beta from the sums
                with m.If(adapter.done):
                    m.next = "divide"

            with m.State("divide"):                   # R = (m_s << RECIP_BITS) // beta
                m.d.comb += divider.run.eq(1)
                with m.If(divider.done):
                    m.next = "output"

            with m.State("output"):                   # u (block, position, slice) -> o_out
                m.d.comb += [u_rd.addr.eq(output.u_addr), s_rd.addr.eq(output.u_addr),
                             output.run.eq(1)]                 # or S (block, sample, slice)
                with m.If(output.issued_last):
                    m.next = "output_end"

            with m.State("output_end"):              # the sample's last vector leaves
                with m.If(output.sample_out):
                    m.d.sync += [t.eq(t + 1), t_s.eq(t_s + steps),
                                 t_u.eq(t_u + drain.out_slices)]
                    m.next = "sample"
                    with m.If(t + 1 == drain.nsamp):
                        m.next = "idle"
        return m
