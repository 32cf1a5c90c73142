"""The rescale unit: ``gen.rescale`` in hardware, one sample at a time.

For each sample it takes the layer's accumulators through ``Affine`` (``z``, ReLU) and the max
pooling into a buffer, then (with an adapter) forms the sums per channel, the adapter's hidden
layer and ``beta``, runs ``Reciprocal`` for ``R = (m_s << RECIP_BITS) // beta`` and finally
streams out the next layer's codes through ``Requantizer``; the last layer streams out ``z``
itself. The stages are in ``hw.rescale_stages``; every rounding and width is that of
``gen.rescale`` (the golden model), bit for bit.

Parameters are written at run time on ``i_param`` before a layer, and ``beta_in`` before each
sample, as the register map ``gen.regmap`` defines them (``gen.regmap.encode`` makes the
words, this unit decodes ``Region`` and ``CONTROL`` by name).

The datapath is one element per clock and not pipelined (a simulation model first: its clock
is not a target yet). Phases and clocks per sample: accept ``vectors x lanes``, sums
``C x P_out``, hidden ``H x C``, beta ``H`` (or ``C``), divide ``Reciprocal.LATENCY + 1``,
output ``C x P_out``.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gen import regmap, rescale
from gen.regmap import CONTROL, Region

from .rescale_stages import BETA_BITS, WIDE_BITS, Affine, Reciprocal, Requantizer, rshift

__all__ = ["RescaleUnit", "param_layout", "output_layout", "acc_layout"]


def param_layout():
    """One register write: ``gen.regmap``'s address and signed value."""
    return data.StructLayout({"addr": regmap.ADDR_BITS, "value": signed(regmap.VALUE_BITS)})


def acc_layout(lanes, acc_bits):
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), lanes), "last": 1})


def output_layout():
    return data.StructLayout({"value": signed(WIDE_BITS), "beta": unsigned(BETA_BITS),
                              "last": 1})


def _memory(m, name, shape, depth):
    """A memory with a combinational read port and a write port; two entries at least (one
    entry has a 0-bit address, an illegal ``[-1:0]`` in Verilog)."""
    m.submodules[name] = mem = memory.Memory(shape=shape, depth=max(depth, 2), init=[])
    return mem.read_port(domain="comb"), mem.write_port()


class RescaleUnit(wiring.Component):
    """See the module docstring.

    Parameters
    ----------
    lanes : int
        Accumulators per input vector (the array's columns).
    acc_bits : int
        Width of the accumulators.
    max_channels, max_positions, max_hidden : int
        The largest channel count, positions per sample (before pooling) and adapter width.

    Members
    -------
    i_param : In(stream.Signature(param_layout()))
        Accepted only between samples.
    i_acc : In(stream.Signature(acc_layout(lanes, acc_bits)))
        A sample's accumulators: for each block of ``lanes`` channels, for each position (row
        by row), one vector (``last`` is not used; the counts come from the registers).
    o_out : Out(stream.Signature(output_layout()))
        Codes (or ``z`` for the last layer), channel by channel, positions row by row, with
        the sample's ``beta`` and ``last`` on the final value.
    """

    def __init__(self, *, lanes, acc_bits, max_channels, max_positions, max_hidden):
        entries = 1 << regmap.INDEX_BITS
        if max_channels * max(max_hidden, 1) > entries or max_channels > entries:
            raise ValueError(f"max_channels x max_hidden must be at most {entries} "
                             f"({regmap.INDEX_BITS} address bits)")
        self._lanes, self._acc_bits = lanes, acc_bits
        self._max_c, self._max_p, self._max_h = max_channels, max_positions, max(max_hidden, 1)
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_acc": In(stream.Signature(acc_layout(lanes, acc_bits))),
            "o_out": Out(stream.Signature(output_layout())),
        })

    def _register_file(self, m):
        """The parameters of ``gen.regmap``: a memory per region (its read and write ports)
        and the control registers, written from ``i_param``."""
        max_c, max_h = self._max_c, self._max_h
        param = signed(regmap.VALUE_BITS)
        depth = {Region.m: max_c, Region.sh: max_c, Region.bias: max_c, Region.w1: max_c * max_h,
                 Region.b1: max_h, Region.wb: max(max_c, max_h)}
        ports = {r: _memory(m, f"mem_{r.name}", param, d) for r, d in depth.items()}
        reg = {name: Signal(param, name=f"reg_{name}") for name in CONTROL}
        p = self.i_param.payload
        region, index = p.addr[regmap.INDEX_BITS:], p.addr[:regmap.INDEX_BITS]
        writing = self.i_param.valid & self.i_param.ready
        for r, (_, port) in ports.items():
            m.d.comb += [port.addr.eq(index), port.data.eq(p.value),
                         port.en.eq(writing & (region == r))]
        with m.If(writing & (region == Region.control)):
            with m.Switch(index):
                for i, name in enumerate(CONTROL):
                    with m.Case(i):
                        m.d.sync += reg[name].eq(p.value)
        return ports, reg

    def elaborate(self, platform):
        m = Module()
        lanes, max_c, max_p, max_h = self._lanes, self._max_c, self._max_p, self._max_h

        ports, reg = self._register_file(m)
        (m_rd, _), (sh_rd, _), (bias_rd, _), (w1_rd, _), (b1_rd, _), (wb_rd, _) = (
            ports[r] for r in (Region.m, Region.sh, Region.bias, Region.w1, Region.b1,
                               Region.wb))
        u_rd, u_wr = _memory(m, "mem_u", signed(WIDE_BITS), max_c * max_p)     # u per position
        s_rd, s_wr = _memory(m, "mem_s", signed(WIDE_BITS), max_c)             # S per channel
        h_rd, h_wr = _memory(m, "mem_h", signed(WIDE_BITS), max_h)             # h per unit

        # Counters ------------------------------------------------------------------------
        pooled = reg["pool"] > 1
        out_h = Mux(pooled, reg["height"] >> 1, reg["height"])
        out_w = Mux(pooled, reg["width"] >> 1, reg["width"])
        out_p = Signal(range(max_p + 1))
        m.d.comb += out_p.eq(out_h * out_w)
        lane = Signal(range(max(lanes, 2)))
        block_base = Signal(range(max_c + lanes + 1))          # first channel of the block
        row = Signal(range(max_p + 1))
        col = Signal(range(max_p + 1))
        c_idx = Signal(range(max_c + lanes + 1))
        q_idx = Signal(range(max_p + 1))
        j_idx = Signal(range(max(max_c, max_h) + 1))       # hidden units, or channels
        # The adapter's dot products: up to max(channels, hidden) terms of a value times a
        # parameter.
        total = Signal(signed(WIDE_BITS + regmap.VALUE_BITS + regmap.INDEX_BITS + 1))
        beta = Signal(BETA_BITS)
        m.submodules.affine = affine = Affine(self._acc_bits)
        m.submodules.reciprocal = divider = Reciprocal()
        m.submodules.requantizer = requantizer = Requantizer()

        # Accept: z, ReLU, pooling ---------------------------------------------------------
        channel = Signal(range(max_c + lanes + 1))
        m.d.comb += channel.eq(block_base + lane)
        acc_lane = Signal(signed(self._acc_bits))
        with m.Switch(lane):
            for i in range(lanes):
                with m.Case(i):
                    m.d.comb += acc_lane.eq(self.i_acc.payload.data[i])
        m.d.comb += [affine.acc.eq(acc_lane), affine.beta_in.eq(reg["beta_in"]),
                     affine.m.eq(m_rd.data), affine.sh.eq(sh_rd.data),
                     affine.bias.eq(bias_rd.data), affine.relu.eq(reg["relu"].bool())]
        u_new = affine.u
        q_accept = Signal(range(max_p + 1))
        m.d.comb += q_accept.eq(Mux(pooled, (row >> 1) * out_w + (col >> 1), row * out_w + col))
        window_start = ~pooled | ((row[0] == 0) & (col[0] == 0))

        # Output: requantization ------------------------------------------------------------
        m.d.comb += [requantizer.u.eq(u_rd.data), requantizer.recip.eq(divider.quotient),
                     requantizer.sh_req.eq(reg["sh_req"]),
                     requantizer.max_code.eq(reg["max_code"]),
                     divider.numerator.eq(reg["m_s"].as_unsigned() << rescale.RECIP_BITS),
                     divider.divisor.eq(beta)]
        m.d.comb += [
            self.o_out.payload.value.eq(Mux(reg["final"].bool(), u_rd.data, requantizer.code)),
            self.o_out.payload.beta.eq(beta),
            self.o_out.payload.last.eq((c_idx == reg["channels"] - 1) & (q_idx == out_p - 1)),
        ]

        # Adapter datapath -------------------------------------------------------------------
        hidden_value = rshift(m, total, reg["sh1"], "hidden_shifted") + b1_rd.data
        beta_raw = rshift(m, total, reg["shb"], "beta_shifted") + reg["bb"]
        beta_clamped = Mux(beta_raw < 1, 1, Mux(beta_raw > rescale.BETA_MAX, rescale.BETA_MAX,
                                                beta_raw))

        with m.FSM(init="idle"):
            with m.State("idle"):
                m.d.comb += self.i_param.ready.eq(1)
                m.d.sync += [lane.eq(0), block_base.eq(0), row.eq(0), col.eq(0)]
                with m.If(self.i_acc.valid & ~self.i_param.valid):
                    m.next = "accept"

            with m.State("accept"):
                m.d.comb += [m_rd.addr.eq(channel), sh_rd.addr.eq(channel),
                             bias_rd.addr.eq(channel),
                             u_rd.addr.eq(channel * out_p + q_accept),
                             u_wr.addr.eq(channel * out_p + q_accept),
                             u_wr.data.eq(Mux(window_start | (u_new > u_rd.data), u_new,
                                              u_rd.data)),
                             u_wr.en.eq(self.i_acc.valid & (channel < reg["channels"]))]
                with m.If(self.i_acc.valid):
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == lanes - 1):
                        m.d.comb += self.i_acc.ready.eq(1)
                        m.d.sync += [lane.eq(0), col.eq(col + 1)]
                        with m.If(col == reg["width"] - 1):
                            m.d.sync += [col.eq(0), row.eq(row + 1)]
                            with m.If(row == reg["height"] - 1):
                                m.d.sync += [row.eq(0), block_base.eq(block_base + lanes)]
                                with m.If(block_base + lanes >= reg["channels"]):
                                    m.d.sync += [c_idx.eq(0), q_idx.eq(0), total.eq(0),
                                                 j_idx.eq(0), beta.eq(rescale.BETA_ONE)]
                                    with m.If(reg["final"].bool()):
                                        m.next = "output"
                                    with m.Elif(reg["adapter"] == 0):
                                        m.next = "divide"
                                    with m.Else():
                                        m.next = "sums"

            with m.State("sums"):                      # S[c] = sum over q of u[c, q]
                m.d.comb += u_rd.addr.eq(c_idx * out_p + q_idx)
                m.d.sync += [total.eq(total + u_rd.data), q_idx.eq(q_idx + 1)]
                with m.If(q_idx == out_p - 1):
                    m.d.comb += [s_wr.addr.eq(c_idx), s_wr.data.eq(total + u_rd.data),
                                 s_wr.en.eq(1)]
                    m.d.sync += [q_idx.eq(0), total.eq(0), c_idx.eq(c_idx + 1)]
                    with m.If(c_idx == reg["channels"] - 1):
                        m.d.sync += c_idx.eq(0)
                        m.next = "hidden_or_beta"

            with m.State("hidden_or_beta"):
                m.next = "beta"
                with m.If(reg["adapter"] == 2):
                    m.next = "hidden"

            with m.State("hidden"):                    # h[j] = relu(rshift(w1[j] . S, sh1) + b1)
                m.d.comb += [s_rd.addr.eq(c_idx), w1_rd.addr.eq(j_idx * max_c + c_idx),
                             b1_rd.addr.eq(j_idx)]
                with m.If(c_idx == reg["channels"]):
                    m.d.comb += [h_wr.addr.eq(j_idx), h_wr.en.eq(1),
                                 h_wr.data.eq(Mux(hidden_value < 0, 0, hidden_value))]
                    m.d.sync += [c_idx.eq(0), total.eq(0), j_idx.eq(j_idx + 1)]
                    with m.If(j_idx == reg["hidden"] - 1):
                        m.d.sync += j_idx.eq(0)
                        m.next = "beta"
                with m.Else():
                    m.d.sync += [total.eq(total + s_rd.data * w1_rd.data), c_idx.eq(c_idx + 1)]

            with m.State("beta"):                      # beta = clamp(rshift(wb . x, shb) + bb)
                inputs = Mux(reg["adapter"] == 2, reg["hidden"], reg["channels"])
                x = Mux(reg["adapter"] == 2, h_rd.data, s_rd.data)
                m.d.comb += [h_rd.addr.eq(j_idx), s_rd.addr.eq(j_idx), wb_rd.addr.eq(j_idx)]
                with m.If(j_idx == inputs):
                    m.d.sync += [beta.eq(beta_clamped), j_idx.eq(0), total.eq(0)]
                    m.next = "divide"
                with m.Else():
                    m.d.sync += [total.eq(total + x * wb_rd.data), j_idx.eq(j_idx + 1)]

            with m.State("divide"):                    # R = (m_s << RECIP_BITS) // beta
                m.d.comb += divider.run.eq(1)
                with m.If(divider.done):
                    m.d.sync += [c_idx.eq(0), q_idx.eq(0)]
                    m.next = "output"

            with m.State("output"):
                m.d.comb += [u_rd.addr.eq(c_idx * out_p + q_idx), self.o_out.valid.eq(1)]
                with m.If(self.o_out.ready):
                    m.d.sync += q_idx.eq(q_idx + 1)
                    with m.If(q_idx == out_p - 1):
                        m.d.sync += [q_idx.eq(0), c_idx.eq(c_idx + 1)]
                        with m.If(c_idx == reg["channels"] - 1):
                            m.d.sync += c_idx.eq(0)
                            m.next = "idle"
        return m
