"""The rescale unit's adapter: a sample's ``beta`` from its channel sums."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from core import regmap, rescale

from .rescale_layouts import check_lanes, memory_ports, slice_layout
from .rescale_stages import BETA_BITS, MANT_BITS, SHIFT_BITS, WIDE_BITS, Product, Rounder

__all__ = ["AdapterStage"]


class AdapterStage(wiring.Component):
    """``beta = core.rescale.adapter_beta`` of one sample, from its channel sums ``S``:
    ``h[j] = max(rshift(w1[j] . S, sh1) + b1[j], 0)`` for each hidden unit of a two-layer
    adapter, then ``beta = clamp(rshift(wb . x, shb) + bb, 1, BETA_MAX)`` with ``x`` the
    hidden units (two layers) or ``S`` (one).

    Each dot product takes one term per clock: the operands read from the memories (``S`` at
    ``s_addr``, a slice of ``lanes`` sums, of which the stage picks one; ``w1``, ``wb``, ``b1``,
    the ``core.regmap`` regions; the hidden units in a memory of the stage's own), registered,
    multiplied (``Product``), added. The rounding is a ``Rounder``'s outside the stage (the
    rescale unit lends lane 0's, ``hw.rescale_activation.Activation``): ``x``, ``n`` and
    ``addend`` out, ``y`` back ``Rounder.LATENCY`` clocks later.

    ``load`` (one clock, while the stage is idle) sets ``beta`` to ``BETA_ONE`` (no adapter)
    and rewinds the terms to the sample whose sums start at ``sample_base``; ``start`` in the
    same clock runs the adapter (``two``: two layers, else one); ``done`` is high on the
    clock that ``beta`` takes its value, after which the stage is idle again. The time taken
    depends on the sizes (``channels``, ``hidden``), so the stage has no ``LATENCY``.
    """

    def __init__(self, *, cols, lanes, max_channels, max_hidden, max_batch, s_depth,
                 value_bits=WIDE_BITS, mac_latency=None):
        check_lanes(cols, lanes)
        self._value = value_bits
        self._mac_latency = mac_latency
        self._cols, self._lanes = cols, lanes
        self._max_c, self._max_h, self._max_b = max_channels, max_hidden, max_batch
        self._s_depth = s_depth
        wide = signed(WIDE_BITS)
        super().__init__({
            "load": In(1), "start": In(1), "two": In(1),
            "channels": In(range(max_channels + 1)), "hidden": In(range(max_hidden + 1)),
            "sh1": In(signed(SHIFT_BITS)), "shb": In(signed(SHIFT_BITS)),
            "bb": In(signed(regmap.VALUE_BITS)), "sample_base": In(range(max(2, s_depth))),
            "s_addr": Out(range(max(2, s_depth))),
            "s_data": In(slice_layout(lanes, value_bits)),
            "w1_addr": Out(range(max(2, max_channels * max_hidden))),
            "w1_data": In(signed(MANT_BITS)),
            "b1_addr": Out(range(max(2, max_hidden))), "b1_data": In(signed(regmap.VALUE_BITS)),
            "wb_addr": Out(range(max(2, max_channels, max_hidden))),
            "wb_data": In(signed(MANT_BITS)),
            "x": Out(wide), "n": Out(signed(SHIFT_BITS)), "addend": Out(wide), "y": In(wide),
            "beta": Out(unsigned(BETA_BITS)), "done": Out(1),
            **({"mac": Out(1), "mac_a": Out(signed(value_bits)), "mac_b": Out(signed(MANT_BITS)),
                "mac_p": In(wide)} if mac_latency is not None else {}),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, steps = self._lanes, self._cols // self._lanes
        max_c, max_h, max_b = self._max_c, self._max_h, self._max_b
        wide = signed(WIDE_BITS)
        s_addr = range(max(2, self._s_depth))
        h_rd, h_wr = memory_ports(m, "mem_h", signed(self._value), max_h,   # hidden units
                                  block=True)
        beta = Signal(BETA_BITS)
        total = Signal(wide)
        two = self.two

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
        if self._mac_latency is None:            # a multiplier of its own
            m.submodules.mac = mac = Product(signed(self._value), signed(MANT_BITS))
            mac_a, mac_b, mac_p, mac_latency = mac.a, mac.b, mac.p, mac.LATENCY
        else:                                     # one lent (``mac``: while not idle)
            mac_a, mac_b, mac_p, mac_latency = (self.mac_a, self.mac_b, self.mac_p,
                                                self._mac_latency)
        pend = [Signal(name=f"pending_{i}") for i in range(2 + mac_latency)]
        lane_read = Signal.like(i_lane)
        x_term = Signal(signed(self._value), reset_less=True)   # S, or a hidden unit
        w_term = Signal(signed(MANT_BITS), reset_less=True)
        m.d.sync += [pend[0].eq(reading), lane_read.eq(i_lane)]
        m.d.sync += [pend[i].eq(pend[i - 1]) for i in range(1, len(pend))]
        s_lane = self.s_data[0]
        for lane in range(1, lanes):
            s_lane = Mux(lane_read == lane, self.s_data[lane], s_lane)
        in_beta = Signal()                           # the terms are beta's (else hidden j's)
        m.d.sync += [x_term.eq(Mux(in_beta & two, h_rd.data, s_lane)),
                     w_term.eq(Mux(in_beta, self.wb_data, self.w1_data))]
        m.d.comb += [mac_a.eq(x_term), mac_b.eq(w_term),
                     self.s_addr.eq(i_blk + self.sample_base + i_j), h_rd.addr.eq(issue),
                     self.w1_addr.eq(w1_base + issue), self.wb_addr.eq(issue),
                     self.b1_addr.eq(j)]
        with m.If(pend[-1]):
            m.d.sync += total.eq(total + mac_p)
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

        # The rounder's shift and addend: registers, a clock behind ``in_beta`` and ``j``
        # (which change at least ``mac_latency`` clocks before the sum is complete).
        adapter_n = Signal(signed(SHIFT_BITS), reset_less=True)
        adapter_addend = Signal(wide, reset_less=True)
        m.d.sync += [adapter_n.eq(Mux(in_beta, self.shb, self.sh1)),
                     adapter_addend.eq(Mux(in_beta, self.bb, self.b1_data))]
        m.d.comb += [self.x.eq(total), self.n.eq(adapter_n), self.addend.eq(adapter_addend),
                     self.beta.eq(beta)]
        wait = Signal(range(Rounder.LATENCY + 2))
        y = self.y
        below, above, y_low = Signal(), Signal(), Signal(BETA_BITS)   # the clamp's compares
        m.d.sync += [below.eq(y < 1), above.eq(y > rescale.BETA_MAX), y_low.eq(y)]
        beta_clamped = Mux(below, 1, Mux(above, rescale.BETA_MAX, y_low))

        with m.FSM(init="idle") as fsm:
            with m.State("idle"):
                with m.If(self.load):
                    restart_terms(self.channels, ~two)
                    m.d.sync += [j.eq(0), w1_base.eq(0), beta.eq(rescale.BETA_ONE)]
                with m.If(self.start):
                    with m.If(two):
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
                    with m.If(j == self.hidden - 1):
                        restart_terms(self.hidden, 1)
                        m.next = "beta"
                    with m.Else():
                        restart_terms(self.channels, 0)
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
                    m.d.comb += self.done.eq(1)
                    m.next = "idle"
        if self._mac_latency is not None:
            m.d.comb += self.mac.eq(~fsm.ongoing("idle"))
        return m
