"""The rescale unit: ``gen.rescale`` in hardware, one sample at a time.

For each sample it takes the layer's accumulators, computes ``z = rshift(acc * beta_in * m_c,
sh_c) + bias_c``, the ReLU and the max pooling into a buffer, then (with an adapter) the sums
per channel, the adapter's hidden layer, ``beta`` and, with a sequential divider, the
reciprocal ``R = (m_s << RECIP_BITS) // beta``, and finally streams out the next layer's codes
``clamp(rshift(u * R, sh_req), 0, max_code)``; the last layer streams out ``z`` itself.
Every rounding and width is that of ``gen.rescale`` (the golden model), bit for bit.

Parameters are written at run time on ``i_param`` (address, value) before a layer, and
``beta_in`` before each sample; ``param_words`` gives the words for a ``LayerRescale``.
Address map: the top four bits select a memory, the low twelve the entry:

====== ==========================================================
region contents
====== ==========================================================
0      ``m[c]``: the mantissas of the folded batch-norm scale
1      ``sh[c] = e_c + BETA_FRAC - Z`` (signed)
2      ``bias[c]``
3      ``w1[j * max_channels + c]`` (two-layer adapter)
4      ``b1[j]``
5      ``wb[i]``: the weights of the layer that makes ``beta``
6      control registers, ``CONTROL`` order
====== ==========================================================

The datapath is one element per clock and not pipelined (a simulation model first: its clock
is not a target yet). Phases and clocks per sample: accept ``vectors x lanes``, sums
``C x P_out``, hidden ``H x C``, beta ``H`` (or ``C``), divide 32, output ``C x P_out``.
"""

from amaranth.hdl import Cat, Mux, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gen import rescale

__all__ = ["CONTROL", "RescaleUnit", "param_words", "param_layout", "output_layout",
           "acc_layout"]

CONTROL = ("channels", "height", "width", "pool", "relu", "final", "adapter", "hidden", "sh1",
           "shb", "bb", "m_s", "sh_req", "max_code", "beta_in")
VALUE_BITS = 64              # z, u and the adapter's sums: the golden model's int64
BETA_BITS = rescale.BETA_MAX.bit_length()
DIV_BITS = 32                # the numerator m_s << RECIP_BITS is at most 2**31
MAX_SHIFT_LEFT = 8           # fixed_point refuses sh_c below -8


def param_layout():
    return data.StructLayout({"addr": 16, "value": signed(32)})


def acc_layout(lanes, acc_bits):
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), lanes), "last": 1})


def output_layout():
    return data.StructLayout({"value": signed(VALUE_BITS), "beta": unsigned(BETA_BITS),
                              "last": 1})


def param_words(r, *, channels, height, width, pool, relu, max_channels):
    """The ``(address, value)`` words of a layer's ``LayerRescale`` ``r`` (``beta_in`` apart).

    ``height`` and ``width`` are the accumulators' spatial size (1 and 1 for a linear layer).
    """
    words = []
    final = r.next_bits is None
    for c in range(channels):
        words += [(0 << 12 | c, int(r.m[c])),
                  (1 << 12 | c, int(r.e[c]) + rescale.BETA_FRAC - rescale.Z),
                  (2 << 12 | c, int(r.bias_q[c]))]
    kind = {"none": 0, "one": 1, "two": 2}[r.adapter]
    hidden = 0
    sh1 = shb = bb = 0
    if kind == 2:
        hidden = r.w1_q.shape[0]
        for j in range(hidden):
            words += [(3 << 12 | j * max_channels + c, int(r.w1_q[j, c]))
                      for c in range(channels)]
            words += [(4 << 12 | j, int(r.b1_q[j])), (5 << 12 | j, int(r.w2_q[0, j]))]
        sh1, shb, bb = r.e1, r.e2 + rescale.Z - rescale.BETA_FRAC, int(r.b2_q[0])
    elif kind == 1:
        words += [(5 << 12 | c, int(r.w1_q[0, c])) for c in range(channels)]
        shb, bb = r.e1 + rescale.Z - rescale.BETA_FRAC, int(r.b1_q[0])
    control = {
        "channels": channels, "height": height, "width": width, "pool": pool, "relu": int(relu),
        "final": int(final), "adapter": kind, "hidden": hidden, "sh1": sh1, "shb": shb, "bb": bb,
        "m_s": 0 if final else r.m_s,
        "sh_req": 0 if final else r.e_s + rescale.RECIP_BITS + rescale.Z - rescale.BETA_FRAC,
        "max_code": 0 if final else 2 ** r.next_bits - 1,
    }
    words += [(6 << 12 | CONTROL.index(k), int(v)) for k, v in control.items()]
    return words


def _rshift(m, x, n, name):
    """``gen.rescale.rshift``: round half up for ``n > 0``, a left shift for ``n <= 0``."""
    right = ((x >> (n - 1).as_unsigned()[:7]) + 1) >> 1
    left = x << (-n).as_unsigned()[:4]
    out = Signal(signed(max(len(right), len(left))), name=name)
    m.d.comb += out.eq(Mux(n > 0, right, left))
    return out


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
        if max_channels * max(max_hidden, 1) > 4096 or max_channels > 4096:
            raise ValueError("max_channels x max_hidden must be at most 4096 (12 address bits)")
        self._lanes, self._acc_bits = lanes, acc_bits
        self._max_c, self._max_p, self._max_h = max_channels, max_positions, max(max_hidden, 1)
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_acc": In(stream.Signature(acc_layout(lanes, acc_bits))),
            "o_out": Out(stream.Signature(output_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, max_c, max_p, max_h = self._lanes, self._max_c, self._max_p, self._max_h

        def mem(name, shape, depth):
            # Two entries at least: one entry has a 0-bit address, an illegal [-1:0] in Verilog.
            m.submodules[name] = mm = memory.Memory(shape=shape, depth=max(depth, 2), init=[])
            return mm.read_port(domain="comb"), mm.write_port()

        m_rd, m_wr = mem("mem_m", signed(32), max_c)
        sh_rd, sh_wr = mem("mem_sh", signed(32), max_c)
        bias_rd, bias_wr = mem("mem_bias", signed(32), max_c)
        w1_rd, w1_wr = mem("mem_w1", signed(32), max_c * max_h)
        b1_rd, b1_wr = mem("mem_b1", signed(32), max_h)
        wb_rd, wb_wr = mem("mem_wb", signed(32), max(max_c, max_h))
        u_rd, u_wr = mem("mem_u", signed(VALUE_BITS), max_c * max_p)
        s_rd, s_wr = mem("mem_s", signed(VALUE_BITS), max_c)
        h_rd, h_wr = mem("mem_h", signed(VALUE_BITS), max_h)

        reg = {name: Signal(signed(32), name=f"reg_{name}") for name in CONTROL}

        # Parameter writes --------------------------------------------------------------
        p = self.i_param.payload
        region, index = p.addr[12:16], p.addr[0:12]
        writing = self.i_param.valid & self.i_param.ready
        for port, r in ((m_wr, 0), (sh_wr, 1), (bias_wr, 2), (w1_wr, 3), (b1_wr, 4), (wb_wr, 5)):
            m.d.comb += [port.addr.eq(index), port.data.eq(p.value),
                         port.en.eq(writing & (region == r))]
        with m.If(writing & (region == 6)):
            with m.Switch(index):
                for i, name in enumerate(CONTROL):
                    with m.Case(i):
                        m.d.sync += reg[name].eq(p.value)

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
        total = Signal(signed(VALUE_BITS + 32 + 13))          # the adapter's dot products
        beta = Signal(BETA_BITS)
        recip = Signal(DIV_BITS)
        remainder = Signal(DIV_BITS + 1)
        step = Signal(range(DIV_BITS + 1))

        # Accept: z, ReLU, pooling ---------------------------------------------------------
        channel = Signal(range(max_c + lanes + 1))
        m.d.comb += channel.eq(block_base + lane)
        acc_lane = Signal(signed(self._acc_bits))
        with m.Switch(lane):
            for i in range(lanes):
                with m.Case(i):
                    m.d.comb += acc_lane.eq(self.i_acc.payload.data[i])
        scaled = Signal(signed(self._acc_bits + 32 + BETA_BITS + 1))
        m.d.comb += scaled.eq(acc_lane * m_rd.data * reg["beta_in"].as_unsigned()[:BETA_BITS])
        z = Signal(signed(VALUE_BITS))
        m.d.comb += z.eq(_rshift(m, scaled, sh_rd.data, "z_shifted") + bias_rd.data)
        u_new = Signal(signed(VALUE_BITS))
        m.d.comb += u_new.eq(Mux(reg["relu"].bool() & (z < 0), 0, z))
        q_accept = Signal(range(max_p + 1))
        m.d.comb += q_accept.eq(Mux(pooled, (row >> 1) * out_w + (col >> 1), row * out_w + col))
        window_start = ~pooled | ((row[0] == 0) & (col[0] == 0))

        # Output: requantization ------------------------------------------------------------
        product = Signal(signed(VALUE_BITS + DIV_BITS + 1))
        m.d.comb += product.eq(u_rd.data * recip)
        code = _rshift(m, product, reg["sh_req"], "code_shifted")
        clamped = Signal(signed(VALUE_BITS))
        m.d.comb += clamped.eq(Mux(code < 0, 0, Mux(code > reg["max_code"], reg["max_code"],
                                                    code)))
        m.d.comb += [
            self.o_out.payload.value.eq(Mux(reg["final"].bool(), u_rd.data, clamped)),
            self.o_out.payload.beta.eq(beta),
            self.o_out.payload.last.eq((c_idx == reg["channels"] - 1) & (q_idx == out_p - 1)),
        ]

        # Adapter datapath -------------------------------------------------------------------
        hidden_value = _rshift(m, total, reg["sh1"], "hidden_shifted") + b1_rd.data
        beta_raw = _rshift(m, total, reg["shb"], "beta_shifted") + reg["bb"]
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
                                                 j_idx.eq(0), beta.eq(rescale.BETA_ONE),
                                                 recip.eq(0), remainder.eq(0), step.eq(0)]
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
                numerator = Signal(DIV_BITS)
                m.d.comb += numerator.eq(reg["m_s"].as_unsigned() << rescale.RECIP_BITS)
                with m.If(step == DIV_BITS):
                    m.d.sync += [c_idx.eq(0), q_idx.eq(0)]
                    m.next = "output"
                with m.Else():
                    bit = numerator.bit_select((DIV_BITS - 1 - step).as_unsigned()[:6], 1)
                    trial = Cat(bit, remainder)                # (remainder << 1) | bit
                    fits = trial >= beta
                    m.d.sync += [
                        remainder.eq(Mux(fits, trial - beta, trial)),
                        recip.eq(Cat(fits, recip)),
                        step.eq(step + 1),
                    ]

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
