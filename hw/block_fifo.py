"""A first-in first-out queue whose entries are kept in block RAM, however few."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BlockFIFO"]


class BlockFIFO(wiring.Component):
    """``amaranth.lib.fifo.SyncFIFOBuffered``'s ports and behaviour (``w_data``, ``w_en``,
    ``w_rdy``; ``r_data``, ``r_en``, ``r_rdy``, ``depth`` entries, ``r_data`` registered),
    with its memory marked ``ram_style = "block"``: a wide, shallow queue (the rescale unit's
    output vectors, ``cols`` values each) goes into a block RAM (an ECP5 ``DP16KD``) instead of
    distributed RAM, whose LUTs the datapath needs. ``r_data`` is the block RAM's output:
    on an ECP5 it comes 5.8 ns after the clock, so no logic may follow it before a register.

    ``registered``: ``r_data`` is a register of the fabric loaded from the block RAM's output
    (its clock enable the only logic on the way), one clock later than without; the queue
    holds ``depth + 1`` entries. Its reader may then put logic after it (a multiplexer, the
    host bridge's chunk select)."""

    def __init__(self, *, width, depth, registered=False):
        if depth < 3:
            raise ValueError(f"depth must be at least 3, not {depth}")
        self.width, self.depth, self.registered = width, depth, registered
        super().__init__({"w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
                          "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        if self.registered:
            m.submodules.fifo = fifo = BlockFIFO(width=self.width, depth=self.depth)
            held = Signal(self.width, reset_less=True)
            free = ~self.r_rdy | self.r_en
            with m.If(free):
                m.d.sync += [held.eq(fifo.r_data), self.r_rdy.eq(fifo.r_rdy)]
            m.d.comb += [fifo.w_data.eq(self.w_data), fifo.w_en.eq(self.w_en),
                         self.w_rdy.eq(fifo.w_rdy), fifo.r_en.eq(free),
                         self.r_data.eq(held)]
            return m
        inner = self.depth - 1
        level = Signal(range(inner + 1))
        inner_rdy = Signal()
        m.d.comb += [self.w_rdy.eq(level != inner), inner_rdy.eq(level != 0)]
        do_write = self.w_rdy & self.w_en
        do_read = inner_rdy & (~self.r_rdy | self.r_en)
        m.submodules.storage = storage = memory.Memory(
            shape=self.width, depth=inner, init=[], attrs={"ram_style": "block"})
        w_port, r_port = storage.write_port(), storage.read_port(domain="sync")
        produce, consume = Signal(range(inner)), Signal(range(inner))
        step = lambda x: Mux(x == inner - 1, 0, x + 1)
        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data),
                     w_port.en.eq(do_write),
                     r_port.addr.eq(consume), r_port.en.eq(do_read),
                     self.r_data.eq(r_port.data)]
        with m.If(do_write):
            m.d.sync += produce.eq(step(produce))
        with m.If(do_read):
            m.d.sync += [consume.eq(step(consume)), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        with m.If(do_write & ~do_read):
            m.d.sync += level.eq(level + 1)
        with m.If(do_read & ~do_write):
            m.d.sync += level.eq(level - 1)
        return m
