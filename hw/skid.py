"""A skid buffer: a stream register whose ``ready`` is a register too, so that a stall
downstream reaches upstream one clock later instead of through a combinational path."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes ``i`` to ``o`` with one clock of latency and no loss of throughput.

    ``o`` is a register; when ``o`` is stalled, the word that arrives meanwhile waits in a
    second register (the *skid*), and ``i.ready`` (``skid`` empty) drops for as long as it is
    full. Neither ``o.valid`` nor ``i.ready`` depends on any input in the same clock.

    Parameters
    ----------
    shape : the payload's shape or layout
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.i.payload, name="held")
        skid_valid = Signal(name="held_valid")
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):          # the output register frees
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):            # stalled: the new word waits
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
