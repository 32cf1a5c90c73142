"""The rescale unit's outputs: a sample's activations requantized, in vectors, to the host."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from core import regmap

from .block_fifo import BlockFIFO
from .rescale_layouts import check_lanes, output_layout, rotate, slice_layout
from .rescale_stages import (BETA_BITS, DIV_BITS, MANT_BITS, SHIFT_BITS, WIDE_BITS, Product,
                             Requantizer, delay)

__all__ = ["Output"]


class Output(wiring.Component):
    """A sample's outputs on ``o_out``: ``core.rescale.requantize`` of its activations ``u``
    (``Requantizer`` a lane, with the sample's ``recip``), or ``u`` as it is for the last
    layer (``final``: ``core.rescale.logits_q``), gathered into vectors of ``cols`` values.
    With ``signed`` (the layer's ``next_signed``) the codes are clamped to the signed range
    and each value is the code's two's complement in its low ``Requantizer.CODE_BITS`` bits,
    0 above (the host sign-extends it); unsigned codes are the codes.

    The activations are read from the ``u`` memory, whose read port is the unit's: ``u_addr``
    (for as long as ``run`` is high), the data registered once more and given on ``u_data``
    two clocks later. ``load`` (one clock, before ``run``) rewinds to the sample's first
    block of ``channels`` in ``cols``; ``sample_base`` is the sample's first entry, and
    ``out_last`` the entry of a block's last slice within the sample, the blocks
    ``max_positions * steps`` entries apart. ``issued_last`` is high on the clock the
    sample's last slice is read; ``sample_out`` when its last vector leaves.

    With ``sums`` high (a layer that ends in a global pooling, ``core.rescale._after_z``) the
    values are the sample's channel sums ``S`` instead, from the ``S`` memory as the unit
    lays it out (block, sample, slice: the blocks ``max_batch * steps`` entries apart): the
    unit points ``u_addr`` at that memory's read port and its data at ``u_data``, with
    ``sample_base`` the sample's first slice and ``out_last = steps - 1`` (one position).

    The path never stalls (no enable reaches its registers, the memory's or the
    requantizers'): a vector's first slice is read only when the queue will have an entry
    for it, ``room`` counting the entries neither full nor promised to a vector on its way.
    ``LATENCY`` clocks from a slice's read to its vector's entry in the queue.
    """

    def __init__(self, *, cols, lanes, max_channels, max_positions, u_depth, max_batch=1,
                 widths=None):
        from core.widths import full
        check_lanes(cols, lanes)
        self._cols, self._lanes = cols, lanes
        self._widths = widths = widths or full(WIDE_BITS)
        self._value = value = widths.value
        self._rq = (value, widths.recip)
        self.LATENCY = 2 + Requantizer.latency(value, widths.recip)
        #: The clocks from ``mac_a``, ``mac_b`` to ``mac_p`` (lane 0's product, lent).
        self.mac_latency = Product.plan(*Requantizer.shapes(value, widths.recip))[2]
        self._max_c, self._max_p, self._max_b = max_channels, max_positions, max_batch
        u_addr = range(max(2, u_depth))
        super().__init__({
            "o_out": Out(stream.Signature(output_layout(cols))),
            "load": In(1), "run": In(1), "final": In(1), "sums": In(1), "signed": In(1),
            "channels": In(range(max_channels + 1)), "recip": In(unsigned(DIV_BITS)),
            "sh_req": In(signed(SHIFT_BITS)), "max_code": In(unsigned(regmap.VALUE_BITS - 1)),
            "beta": In(unsigned(BETA_BITS)),
            "sample_base": In(u_addr), "out_last": In(u_addr),
            "u_addr": Out(u_addr), "u_data": In(slice_layout(lanes, value)),
            "issued_last": Out(1), "sample_out": Out(1),
            "mac": In(1), "mac_a": In(signed(value)), "mac_b": In(signed(MANT_BITS)),
            "mac_p": Out(signed(WIDE_BITS)),
        })
        self._u_addr = u_addr

    def elaborate(self, platform):
        m = Module()
        cols, lanes, steps = self._cols, self._lanes, self._cols // self._lanes
        max_c, max_p, u_addr = self._max_c, self._max_p, self._u_addr
        o_issue = Signal()
        o_k = Signal(u_addr)                         # the slice within the sample's block
        o_j = Signal(range(max(steps, 2)))           # the slice within its vector
        o_blk = Signal(u_addr)
        o_chan = Signal(range(max_c + cols + 1))
        value = self._value
        asm = Signal(slice_layout(cols, value), reset_less=True)
        asm_n = Signal(range(max(steps, 2)))         # slices of the vector in asm
        o_last_block = Signal()                      # o_chan + cols >= channels
        o_block_end = o_k == self.out_last
        o_end = o_block_end & o_last_block
        o_valid = [Signal(name=f"o_valid_{i}") for i in range(self.LATENCY)]
        o_last = [Signal(name=f"o_last_{i}") for i in range(self.LATENCY)]
        m.d.sync += [o_valid[0].eq(o_issue), o_last[0].eq(o_issue & o_end)]
        m.d.sync += [o_valid[i].eq(o_valid[i - 1]) for i in range(1, len(o_valid))]
        m.d.sync += [o_last[i].eq(o_last[i - 1]) for i in range(1, len(o_last))]
        codes = Signal(slice_layout(lanes, value))
        for lane in range(lanes):
            m.submodules[f"requantizer_{lane}"] = rq = Requantizer(
                *self._rq, lend=lane == 0, shifts=self._widths.req_shifts)
            m.d.comb += [rq.u.eq(self.u_data[lane]), rq.recip.eq(self.recip),
                         rq.sh_req.eq(self.sh_req), rq.max_code.eq(self.max_code),
                         rq.signed.eq(self.signed)]
            if lane == 0:
                m.d.comb += [rq.mac.eq(self.mac), rq.mac_a.eq(self.mac_a),
                             rq.mac_b.eq(self.mac_b), self.mac_p.eq(rq.mac_p)]
            z_out = delay(m, self.u_data[lane], rq.LATENCY, name=f"z_out_{lane}",
                          reset_less=True)
            m.d.comb += codes[lane].eq(Mux(self.final, z_out, rq.code))
        vector = rotate(asm, lanes, value, codes.as_value())
        # ``depth`` vectors cover the loop from a read to the entry freed (3 at least: a queue
        # of 2 has a 1-entry memory, a 0-bit address, ``[-1:0]`` in Verilog).
        depth = max(3, 1 + -(-(len(o_valid) + 3) // steps))
        # Registered (``BlockFIFO``'s ``registered``): the block RAM's output (5.8 ns from the
        # clock on an ECP5) fed the host bridge's chunk select. ``room`` still counts ``depth``.
        m.submodules.queue = queue = BlockFIFO(width=len(vector) + 1, depth=depth,
                                               registered=True)
        with m.If(o_valid[-1]):
            m.d.sync += [asm.eq(vector), asm_n.eq(Mux(asm_n == steps - 1, 0, asm_n + 1))]
        m.d.comb += [queue.w_data.eq(Cat(vector, o_last[-1])),
                     queue.w_en.eq(o_valid[-1] & (asm_n == steps - 1)),
                     self.o_out.valid.eq(queue.r_rdy), queue.r_en.eq(self.o_out.ready),
                     self.o_out.payload.last.eq(queue.r_data[-1]),
                     self.o_out.payload.beta.eq(self.beta)]
        for i in range(cols):                        # sign-extended to the port's 64 bits
            m.d.comb += self.o_out.payload.value[i].eq(
                queue.r_data[i * value:(i + 1) * value].as_signed())
        room = Signal(range(depth + 1), init=depth)
        start = o_issue & (o_j == 0)
        taken = self.o_out.valid & self.o_out.ready
        m.d.sync += room.eq(room - start + taken)
        m.d.comb += [self.sample_out.eq(taken & self.o_out.payload.last),
                     self.u_addr.eq(o_blk + self.sample_base + o_k),
                     self.issued_last.eq(o_issue & o_end)]

        with m.If(self.load):
            m.d.sync += [o_k.eq(0), o_blk.eq(0), o_chan.eq(0),
                         o_last_block.eq(cols >= self.channels)]
        with m.If(self.run):
            m.d.comb += o_issue.eq((o_j != 0) | (room != 0))
            with m.If(o_issue):
                m.d.sync += [o_k.eq(o_k + 1), o_j.eq(Mux(o_j == steps - 1, 0, o_j + 1))]
                with m.If(o_block_end):
                    stride = Mux(self.sums, self._max_b * steps, max_p * steps)
                    m.d.sync += [o_k.eq(0), o_blk.eq(o_blk + stride),
                                 o_chan.eq(o_chan + cols),
                                 o_last_block.eq(o_chan + 2 * cols >= self.channels)]
        return m
