"""The rescale unit: ``gen.rescale`` in hardware, a whole result vector per clock.

It reads the accumulator buffer's output (``hw.accumulator``): for each block of ``lanes``
channels, the ``M`` sums of a pass, which are the positions of up to ``max_batch`` samples one
after the other (the host stacks the samples of a batch in ``M``). For each vector, in a
pipeline that never stalls once a vector is taken, every lane at once:

1. ``Affine`` (``z``) with the lane's channel parameters and the sample's ``beta_in``, plus the
   second operand of a layer with a shortcut (below), and the ReLU;
2. max pooling (the horizontal pair in a register, the vertical pair through the ``u``
   memory), the pooled ``u`` written to the ``u`` memory and added to the channel's sum ``S``.

When the last block of a batch has gone through, for each sample of the batch in turn: the
adapter's hidden layer and ``beta`` from the sums ``S`` (one multiply-accumulate per clock),
``Reciprocal`` for ``R = (m_s << RECIP_BITS) // beta``, and the sample's outputs, one vector of
``lanes`` values per clock through ``Requantizer`` (the last layer streams out ``z``). The
accumulator buffer's second bank lets the array go on with the next block of columns meanwhile
(``hw.accumulator``). Every rounding and width is that of ``gen.rescale``, bit for bit.

Parameters are written on ``i_param`` (``gen.regmap``; ``last`` on the layer's final word) while
the unit is idle, before the layer's first pass; each sample's ``beta_in`` comes on ``i_beta``,
in sample order, taken with the sample's first vector. A layer with a shortcut (a residual
block's second conv, ``gen.rescale.rescale_residual``) takes a second operand on ``i_res``,
a vector with every vector of ``i_acc``: an identity shortcut's codes, rescaled in stage 1 by
the same affine map with the shortcut's ``res_m``, ``res_sh`` and ``beta`` (``i_beta``'s
``res``), or a projection layer's ``z``, added to ``z`` as it is; the ReLU follows the sum. The host writes a layer's parameters
only after every output of the previous layer has left. All memories have synchronous read
ports (block RAM or LUT RAM).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gen import regmap, rescale
from gen.regmap import CONTROL, Region

from .rescale_stages import BETA_BITS, WIDE_BITS, Affine, Reciprocal, Requantizer, rshift

__all__ = ["RescaleUnit", "param_layout", "output_layout", "acc_layout", "beta_layout",
           "residual_layout", "RESIDUAL_CODE_BITS"]

#: An identity shortcut's operands are codes of at most this many bits (unsigned).
RESIDUAL_CODE_BITS = 8


def param_layout():
    """One register write: ``gen.regmap``'s address and signed value; ``last`` on the final
    word of a layer's parameters."""
    return data.StructLayout({"addr": regmap.ADDR_BITS, "value": signed(regmap.VALUE_BITS),
                              "last": 1})


def acc_layout(lanes, acc_bits):
    """One vector of sums; ``last`` on the last vector of a block of channels."""
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), lanes), "last": 1})


def beta_layout():
    """A sample's ``beta_in`` and, for a layer with an identity shortcut, the ``beta`` of the
    shortcut's codes (``res``; anything otherwise)."""
    return data.StructLayout({"beta": unsigned(BETA_BITS), "res": unsigned(BETA_BITS)})


def residual_layout(lanes):
    """One vector of the second operand of a layer with a shortcut: an identity shortcut's
    codes, or a projection's ``z``, for ``lanes`` channels of one position."""
    return data.StructLayout({"data": data.ArrayLayout(signed(WIDE_BITS), lanes)})


def output_layout(lanes):
    """One output vector: ``lanes`` values (codes, or ``z`` for the last layer) of one
    position, the sample's ``beta`` and ``last`` on the sample's final vector."""
    return data.StructLayout({"value": data.ArrayLayout(signed(WIDE_BITS), lanes),
                              "beta": unsigned(BETA_BITS), "last": 1})


def _memory(m, name, shape, depth):
    """A memory with a synchronous read port and a write port; two entries at least (one
    entry has a 0-bit address, an illegal ``[-1:0]`` in Verilog)."""
    m.submodules[name] = mem = memory.Memory(shape=shape, depth=max(depth, 2), init=[])
    return mem.read_port(), mem.write_port()


class RescaleUnit(wiring.Component):
    """See the module docstring.

    Parameters
    ----------
    lanes : int
        Accumulators per input vector (the array's columns).
    acc_bits : int
        Width of the accumulators.
    max_channels, max_positions, max_hidden, max_batch : int
        The largest channel count, positions in a pass (before pooling: samples x positions
        per sample), adapter width and samples in a batch.

    Members
    -------
    i_param : In(stream.Signature(param_layout()))
        Accepted only while idle.
    i_beta : In(stream.Signature(beta_layout()))
        Each sample's ``beta_in`` (and its shortcut's ``beta``), in sample order.
    i_res : In(stream.Signature(residual_layout(lanes)))
        For a layer with a shortcut (``residual`` register), the second operand: one vector
        with each vector of ``i_acc``, in the same order.
    i_acc : In(stream.Signature(acc_layout(lanes, acc_bits)))
        For each block of ``lanes`` channels, the batch's positions (sample by sample, row by
        row), one vector each, ``last`` on the block's last vector.
    o_out : Out(stream.Signature(output_layout(lanes)))
        Per sample, for each block of channels, for each (pooled) position row by row, one
        vector; ``last`` on the sample's final vector.
    """

    def __init__(self, *, lanes, acc_bits, max_channels, max_positions, max_hidden,
                 max_batch=1):
        entries = 1 << regmap.INDEX_BITS
        if max_channels * max(max_hidden, 1) > entries or max_channels > entries:
            raise ValueError(f"max_channels x max_hidden must be at most {entries} "
                             f"({regmap.INDEX_BITS} address bits)")
        self._lanes, self._acc_bits = lanes, acc_bits
        self._max_c, self._max_p, self._max_h = max_channels, max_positions, max(max_hidden, 1)
        self._max_b = max(1, min(max_batch, max_positions))
        self._blocks = -(-max_channels // lanes)
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_beta": In(stream.Signature(beta_layout())),
            "i_res": In(stream.Signature(residual_layout(lanes))),
            "i_acc": In(stream.Signature(acc_layout(lanes, acc_bits))),
            "o_out": Out(stream.Signature(output_layout(lanes))),
        })

    def _register_file(self, m):
        """The parameters of ``gen.regmap``: the per-channel regions as one memory per lane
        (entry ``c // lanes`` of lane ``c % lanes``), the adapter's regions, the control
        registers; written from ``i_param``. Returns the read ports and the registers."""
        lanes, max_c, max_h = self._lanes, self._max_c, self._max_h
        param = signed(regmap.VALUE_BITS)
        p = self.i_param.payload
        region, index = p.addr[regmap.INDEX_BITS:], p.addr[:regmap.INDEX_BITS]
        writing = self.i_param.valid & self.i_param.ready
        lane_of, block_of = index % lanes, index // lanes
        ports = {}
        for r in (Region.m, Region.sh, Region.bias, Region.res_m, Region.res_sh):
            ports[r] = []
            for lane in range(lanes):
                rd, wr = _memory(m, f"mem_{r.name}_{lane}", param, self._blocks)
                m.d.comb += [wr.addr.eq(block_of), wr.data.eq(p.value),
                             wr.en.eq(writing & (region == r) & (lane_of == lane))]
                ports[r].append(rd)
        depth = {Region.w1: max_c * max_h, Region.b1: max_h, Region.wb: max(max_c, max_h)}
        for r, d in depth.items():
            rd, wr = _memory(m, f"mem_{r.name}", param, d)
            m.d.comb += [wr.addr.eq(index), wr.data.eq(p.value),
                         wr.en.eq(writing & (region == r))]
            ports[r] = rd
        reg = {name: Signal(param, name=f"reg_{name}") for name in CONTROL}
        with m.If(writing & (region == Region.control)):
            with m.Switch(index):
                for i, name in enumerate(CONTROL):
                    with m.Case(i):
                        m.d.sync += reg[name].eq(p.value)
        return ports, reg

    def elaborate(self, platform):
        m = Module()
        lanes, max_c, max_p, max_h, max_b = (self._lanes, self._max_c, self._max_p,
                                             self._max_h, self._max_b)
        blocks_max = self._blocks
        ports, reg = self._register_file(m)
        wide = signed(WIDE_BITS)
        vector = data.ArrayLayout(wide, lanes)
        u_rd, u_wr = _memory(m, "mem_u", vector, blocks_max * max_p)      # u: block, position
        s_rd, s_wr = _memory(m, "mem_s", vector, blocks_max * max_b)      # S: block, sample
        beta_rd, beta_wr = _memory(m, "mem_beta_in", beta_layout(), max_b)
        h_rd, h_wr = _memory(m, "mem_h", wide, max_h)                      # hidden units
        w1_rd, b1_rd, wb_rd = ports[Region.w1], ports[Region.b1], ports[Region.wb]

        # The layer's shape ------------------------------------------------------------------
        pooled = reg["pool"] > 1
        out_w = Mux(pooled, reg["width"] >> 1, reg["width"])
        out_p = Signal(range(max_p + 1))
        m.d.comb += out_p.eq(Mux(pooled, reg["height"] >> 1, reg["height"]) * out_w)
        final = reg["final"].bool()

        armed = Signal()               # the layer's parameters are complete
        with m.If(self.i_param.valid & self.i_param.ready):
            m.d.sync += armed.eq(self.i_param.payload.last)

        # Drain, stage 0: take a vector ----------------------------------------------------
        blk = Signal(range(blocks_max + 1))
        block_base = Signal(range(max_c + lanes + 1))
        row, col = Signal(range(max_p + 1)), Signal(range(max_p + 1))
        smp = Signal(range(max_b + 1))
        nsamp = Signal(range(max_b + 1))
        draining = Signal()
        need_beta = (blk == 0) & (row == 0) & (col == 0)
        residual = reg["residual"][:2]
        need_res = residual != regmap.RESIDUAL_KINDS["none"]
        take = Signal()
        m.d.comb += [
            self.i_acc.ready.eq(draining & (~need_beta | self.i_beta.valid)
                                & (~need_res | self.i_res.valid)),
            self.i_beta.ready.eq(draining & self.i_acc.valid & need_beta
                                 & (~need_res | self.i_res.valid)),
            self.i_res.ready.eq(draining & self.i_acc.valid & need_res
                                & (~need_beta | self.i_beta.valid)),
            take.eq(self.i_acc.valid & self.i_acc.ready),
        ]
        q_in = Mux(pooled, (row >> 1) * out_w + (col >> 1), row * reg["width"] + col)
        last_block = block_base + lanes >= reg["channels"]
        sample_end = (row == reg["height"] - 1) & (col == reg["width"] - 1)
        m.d.comb += [beta_wr.addr.eq(smp), beta_wr.data.eq(self.i_beta.payload),
                     beta_wr.en.eq(take & need_beta), beta_rd.addr.eq(smp)]
        for lane in range(lanes):
            for r in (Region.m, Region.sh, Region.bias, Region.res_m, Region.res_sh):
                m.d.comb += ports[r][lane].addr.eq(blk)
        with m.If(take):
            m.d.sync += col.eq(col + 1)
            with m.If(col == reg["width"] - 1):
                m.d.sync += [col.eq(0), row.eq(row + 1)]
                with m.If(row == reg["height"] - 1):
                    m.d.sync += [row.eq(0), smp.eq(smp + 1)]
            with m.If(self.i_acc.payload.last):
                m.d.sync += [row.eq(0), col.eq(0), smp.eq(0), blk.eq(blk + 1),
                             block_base.eq(block_base + lanes)]
                with m.If(blk == 0):
                    m.d.sync += nsamp.eq(smp + 1)

        s1 = Signal(data.StructLayout({
            "valid": 1, "acc": data.ArrayLayout(signed(self._acc_bits), lanes),
            "res": data.ArrayLayout(signed(WIDE_BITS), lanes),
            "beta_new": 1, "beta": beta_layout(), "uaddr": range(max(2, blocks_max * max_p)),
            "saddr": range(max(2, blocks_max * max_b)), "h_first": 1, "v_second": 1,
            "sample_end": 1}))
        m.d.sync += [
            s1.valid.eq(take), s1.acc.eq(self.i_acc.payload.data),
            s1.res.eq(self.i_res.payload.data),
            s1.beta_new.eq(need_beta), s1.beta.eq(self.i_beta.payload),
            s1.uaddr.eq(blk * max_p + smp * out_p + q_in),
            s1.saddr.eq(blk * max_b + smp),
            s1.h_first.eq(pooled & ~col[0]), s1.v_second.eq(pooled & row[0]),
            s1.sample_end.eq(sample_end),
        ]

        # Stage 1: the affine map and the shortcut, every lane -----------------------------
        betas = Signal(beta_layout())
        m.d.comb += betas.eq(Mux(s1.beta_new, s1.beta, beta_rd.data))
        s2 = Signal(data.StructLayout({
            "valid": 1, "u": vector, "uaddr": range(max(2, blocks_max * max_p)),
            "saddr": range(max(2, blocks_max * max_b)), "h_first": 1, "v_second": 1,
            "sample_end": 1}))
        m.d.sync += [s2.valid.eq(s1.valid), s2.uaddr.eq(s1.uaddr), s2.saddr.eq(s1.saddr),
                     s2.h_first.eq(s1.h_first), s2.v_second.eq(s1.v_second),
                     s2.sample_end.eq(s1.sample_end)]
        for lane in range(lanes):
            m.submodules[f"affine_{lane}"] = affine = Affine(self._acc_bits)
            m.d.comb += [affine.acc.eq(s1.acc[lane]), affine.beta_in.eq(betas.beta),
                         affine.m.eq(ports[Region.m][lane].data),
                         affine.sh.eq(ports[Region.sh][lane].data),
                         affine.bias.eq(ports[Region.bias][lane].data), affine.relu.eq(0)]
            # The shortcut's operand (gen.rescale.shortcut_operand: the same affine map, no
            # bias), or a projection's z as it is; added before the ReLU.
            m.submodules[f"shortcut_{lane}"] = shortcut = Affine(RESIDUAL_CODE_BITS + 1)
            m.d.comb += [shortcut.acc.eq(s1.res[lane]), shortcut.beta_in.eq(betas.res),
                         shortcut.m.eq(ports[Region.res_m][lane].data),
                         shortcut.sh.eq(ports[Region.res_sh][lane].data),
                         shortcut.bias.eq(0), shortcut.relu.eq(0)]
            operand = Mux(residual == regmap.RESIDUAL_KINDS["identity"], shortcut.u,
                          Mux(residual == regmap.RESIDUAL_KINDS["projection"], s1.res[lane],
                              0))
            z = Signal(wide, name=f"z_{lane}")
            m.d.comb += z.eq(affine.u + operand)
            m.d.sync += s2.u[lane].eq(Mux(reg["relu"].bool() & (z < 0), 0, z))

        # Stage 2: pooling, the u memory and the channel sums -------------------------------
        hold = Signal(vector)
        sums = Signal(vector)
        window = Signal(vector)                 # the value that ends a window
        done = Signal()
        m.d.comb += [u_wr.addr.eq(s2.uaddr), u_wr.data.eq(window),
                     u_wr.en.eq(s2.valid & ~s2.h_first),
                     done.eq(s2.valid & ~s2.h_first & (~pooled | s2.v_second)),
                     s_wr.addr.eq(s2.saddr), s_wr.en.eq(s2.valid & s2.sample_end)]
        for lane in range(lanes):
            u = s2.u[lane]
            pair = Mux(pooled & (hold[lane] > u), hold[lane], u)
            below = u_rd.data[lane]
            m.d.comb += window[lane].eq(Mux(s2.v_second & (below > pair), below, pair))
            with m.If(s2.valid & s2.h_first):
                m.d.sync += hold[lane].eq(u)
            total = Mux(done, sums[lane] + window[lane], sums[lane])
            m.d.comb += s_wr.data[lane].eq(total)
            with m.If(s2.valid):
                m.d.sync += sums[lane].eq(Mux(s2.sample_end, 0, total))

        # Tail: adapter, beta, reciprocal and outputs, sample by sample --------------------
        t = Signal(range(max_b + 1))                 # the sample
        total = Signal(signed(WIDE_BITS + regmap.VALUE_BITS + regmap.INDEX_BITS + 1))
        beta = Signal(BETA_BITS)
        issue = Signal(range(max(max_c, max_h) + 1))  # the term being read
        iblk = Signal(range(blocks_max + 1))
        ilane = Signal(range(max(lanes, 2)))
        pending = Signal()                          # a term read last clock, to add now
        plane = Signal(range(max(lanes, 2)))
        j = Signal(range(max_h + 1))
        m.submodules.reciprocal = divider = Reciprocal()
        hidden_value = rshift(m, total, reg["sh1"], "hidden_shifted") + b1_rd.data
        beta_raw = rshift(m, total, reg["shb"], "beta_shifted") + reg["bb"]
        beta_clamped = Mux(beta_raw < 1, 1, Mux(beta_raw > rescale.BETA_MAX, rescale.BETA_MAX,
                                                beta_raw))
        two = reg["adapter"] == regmap.ADAPTER_KINDS["two"]
        s_term = Signal(wide)
        m.d.comb += s_term.eq(s_rd.data[0])
        with m.Switch(plane):
            for lane in range(1, lanes):
                with m.Case(lane):
                    m.d.comb += s_term.eq(s_rd.data[lane])

        def term_reads(count):
            """Read term ``issue`` (channel ``iblk * lanes + ilane``) while ``issue < count``;
            the caller adds last clock's term ``x * weight`` into ``total``; returns whether
            every term has been added."""
            more = issue < count
            m.d.sync += [pending.eq(more), plane.eq(ilane)]
            with m.If(more):
                m.d.sync += [issue.eq(issue + 1), ilane.eq(ilane + 1)]
                with m.If(ilane == lanes - 1):
                    m.d.sync += [ilane.eq(0), iblk.eq(iblk + 1)]
            return ~more & ~pending

        def restart_terms():
            m.d.sync += [issue.eq(0), iblk.eq(0), ilane.eq(0), total.eq(0), pending.eq(0)]

        # Outputs: the u memory read ahead of o_out's register.
        oblk, oq = Signal(range(blocks_max + 1)), Signal(range(max_p + 1))
        advance = ~self.o_out.valid | self.o_out.ready
        for lane in range(lanes):
            m.submodules[f"requantizer_{lane}"] = rq = Requantizer()
            m.d.comb += [rq.u.eq(u_rd.data[lane]), rq.recip.eq(divider.quotient),
                         rq.sh_req.eq(reg["sh_req"]), rq.max_code.eq(reg["max_code"])]
            m.d.comb += self.o_out.payload.value[lane].eq(Mux(final, u_rd.data[lane], rq.code))
        m.d.comb += [self.o_out.payload.beta.eq(beta),
                     divider.numerator.eq(reg["m_s"].as_unsigned() << rescale.RECIP_BITS),
                     divider.divisor.eq(beta)]

        with m.FSM(init="idle"):
            with m.State("idle"):
                m.d.comb += self.i_param.ready.eq(1)
                m.d.sync += [blk.eq(0), block_base.eq(0), row.eq(0), col.eq(0), smp.eq(0),
                             t.eq(0)]
                with m.If(self.i_acc.valid & armed & ~self.i_param.valid):
                    m.next = "drain"

            with m.State("drain"):
                m.d.comb += [draining.eq(1), u_rd.addr.eq(s1.uaddr)]
                with m.If(take & self.i_acc.payload.last & last_block):
                    m.next = "flush"

            with m.State("flush"):                    # the pipeline empties
                m.d.comb += u_rd.addr.eq(s1.uaddr)
                with m.If(~s1.valid & ~s2.valid):
                    m.next = "sample"

            with m.State("sample"):                   # the tail of sample t begins
                restart_terms()
                m.d.sync += [j.eq(0), beta.eq(rescale.BETA_ONE), oblk.eq(0), oq.eq(0)]
                with m.If(final):
                    m.next = "output"
                with m.Elif(reg["adapter"] == regmap.ADAPTER_KINDS["none"]):
                    m.next = "divide"
                with m.Elif(two):
                    m.next = "hidden"
                with m.Else():
                    m.next = "beta"

            with m.State("hidden"):                   # h[j] = relu(rshift(w1[j] . S, sh1) + b1)
                m.d.comb += [s_rd.addr.eq(iblk * max_b + t), w1_rd.addr.eq(j * max_c + issue),
                             b1_rd.addr.eq(j)]
                with m.If(pending):
                    m.d.sync += total.eq(total + s_term * w1_rd.data)
                finished = term_reads(reg["channels"])
                with m.If(finished):
                    m.d.comb += [h_wr.addr.eq(j), h_wr.en.eq(1),
                                 h_wr.data.eq(Mux(hidden_value < 0, 0, hidden_value))]
                    restart_terms()
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == reg["hidden"] - 1):
                        m.next = "beta"

            with m.State("beta"):                     # beta = clamp(rshift(wb . x, shb) + bb)
                m.d.comb += [s_rd.addr.eq(iblk * max_b + t), h_rd.addr.eq(issue),
                             wb_rd.addr.eq(issue)]
                with m.If(pending):
                    m.d.sync += total.eq(total + Mux(two, h_rd.data, s_term) * wb_rd.data)
                finished = term_reads(Mux(two, reg["hidden"], reg["channels"]))
                with m.If(finished):
                    m.d.sync += beta.eq(beta_clamped)
                    m.next = "divide"

            with m.State("divide"):                   # R = (m_s << RECIP_BITS) // beta
                m.d.comb += divider.run.eq(1)
                with m.If(divider.done):
                    m.next = "output"

            with m.State("output"):                   # u (block, position) -> o_out
                m.d.comb += [u_rd.addr.eq(oblk * max_p + t * out_p + oq), u_rd.en.eq(advance)]
                end = (oq == out_p - 1) & (oblk * lanes + lanes >= reg["channels"])
                with m.If(advance):
                    m.d.sync += [self.o_out.valid.eq(1), self.o_out.payload.last.eq(end),
                                 oq.eq(oq + 1)]
                    with m.If(oq == out_p - 1):
                        m.d.sync += [oq.eq(0), oblk.eq(oblk + 1)]
                    with m.If(end):
                        m.next = "output_end"

            with m.State("output_end"):              # the sample's last vector leaves
                m.d.comb += u_rd.en.eq(0)
                with m.If(self.o_out.ready):
                    m.d.sync += [self.o_out.valid.eq(0), t.eq(t + 1)]
                    m.next = "sample"
                    with m.If(t + 1 == nsamp):
                        m.next = "idle"
        return m
