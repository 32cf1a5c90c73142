"""The accumulator buffer: adds the passes of a layer tile by tile, in two banks.

A product ``A (M x K) x W (K x N)`` larger than the array runs as *passes*: one per block of
``cols`` output columns, per block of ``rows`` of ``K`` (and, for 8-bit ``int`` weights on a
``post`` array, per signed-digit term, ``sim.engine_sim.pass_plan``). Each pass is one array
tile of ``M`` result vectors and one descriptor. For every result vector of a pass the buffer
does ``acc[m] = (first ? 0 : acc[m]) + ((result >> drop) << shift)``; ``drop`` removes low bits
that are zero (the fractional bits of a digit pass), so that the sums are exact integers.
The buffer relies on those ``drop`` low bits being zero and computes the term with one shifter,
``(result << 7) >> (7 - shift + drop)``: the same value then. They are zero for every pass of
``sim.engine_sim.pass_plan``: ``drop`` is 0 except on a digit pass, whose weight codes are 0 or
``+-2**-e`` with ``e <= width - 1``, so that every product ``+-a << (F - e)`` and every sum of
them is a multiple of ``2**drop``, ``drop = F - (width - 1)`` (``tests/test_engine_rtl.py``
checks every code of every digit pass). On a result whose ``drop`` low bits were not zero,
the term would differ from ``(result >> drop) << shift``.

Two banks, each ``max_m`` vectors of ``cols`` sums: the passes of one block of columns
accumulate in one bank; its ``final`` pass completes the bank, which is then read out on
``o_acc`` (in order, ``last`` on the ``M``-th vector) while the next block of columns
accumulates in the other bank. The array waits only when the bank it needs is still being read
out. The two banks are the two halves of one memory (the bank is the address's top bit, so
that a bank holds ``max_m`` rounded up to a power of two) with two synchronous read ports, the
writer's and the reader's, and one write port (block RAM): a read-add-write takes three
pipeline stages (read, the read data registered, add and write), with the sum forwarded when
the same entry comes back two clocks later (a 1x1 array, or short passes that waited in the
array's result queue).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from core.errors import UsageError

from .skid import SkidBuffer

__all__ = ["check_engine_array", "pass_layout", "accumulator_layout", "AccumulatorBuffer"]


def check_engine_array(config):
    """Refuse an array that the layer engine cannot take (one sum per column for now)."""
    if config.split:
        raise UsageError("the layer engine takes post arrays with odd='table'; an array "
                         "with odd='split' runs as a bare array (asqgen verilog, selfcheck)")


def pass_layout(config):
    """One pass: ``shift`` (0..7), ``drop`` (0..``F`` low bits; one bit at least: a 0-bit
    field becomes an illegal ``[-1:0]`` in Verilog), ``first``, ``final``."""
    return data.StructLayout({"shift": 3, "drop": range(max(config.frac_bits, 1) + 1),
                              "first": 1, "final": 1})


def accumulator_layout(config):
    """One output vector: ``cols`` accumulators of ``config.buffer_bits`` and ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(config.buffer_bits), config.cols),
        "last": 1,
    })


class AccumulatorBuffer(wiring.Component):
    """Accumulates array results over passes (see the module docstring).

    Parameters
    ----------
    config : core.config.ArrayConfig
        ``cols``, ``acc_bits`` (the array's results), ``frac_bits`` (``drop``),
        ``buffer_bits`` (the sums) and ``max_m`` (the depth of a bank).

    Members
    -------
    i_pass : In(stream.Signature(pass_layout(config)))
        One descriptor per pass, through a two-word skid buffer (the next pass's can wait
        there while a pass runs); it leaves the buffer with the pass's last result.
    i_r : In(stream.Signature(result_layout(config)))
        The array's results; ``last`` ends a pass (at most ``max_m`` vectors).
    o_acc : Out(stream.Signature(accumulator_layout(config)))
        The sums of each block of columns, in order, ``last`` on the block's last vector.
    wait_bank : Out(1)
        A result is offered but its bank is still being read out (for the cycle counters).

    ``i_r.ready`` does not depend on ``o_acc.ready``.
    """

    def __init__(self, *, config):
        from .systolic_array import result_layout

        check_engine_array(config)
        self._config = config
        super().__init__({
            "i_pass": In(stream.Signature(pass_layout(config))),
            "i_r": In(stream.Signature(result_layout(config))),
            "o_acc": Out(stream.Signature(accumulator_layout(config))),
            "wait_bank": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        width, depth = cfg.buffer_bits, max(cfg.max_m, 2)
        shape = data.ArrayLayout(signed(width), cfg.cols)
        abits = (depth - 1).bit_length()                 # an entry's address in its bank
        # Both banks in one memory, the bank the address's top bit.
        m.submodules.banks = mem = memory.Memory(shape=shape, depth=2 << abits, init=[])
        wr_rd, out_rd, wr = mem.read_port(), mem.read_port(), mem.write_port()

        full = [Signal(name=f"full{b}") for b in range(2)]       # complete, being read out
        # closed: the bank's final vector is taken (set then, three clocks before ``full``,
        # so that the next block but one does not take the bank meanwhile), until read out.
        closed = [Signal(name=f"closed{b}") for b in range(2)]
        count = [Signal(range(depth + 1), name=f"count{b}") for b in range(2)]

        # The descriptor through a skid buffer, with its shift amount: ``(r >> drop) <<
        # shift`` is ``(r << 7) >> amount``, ``amount = 7 - shift + drop`` (the drop low bits
        # of r are zero), shifted in two steps, by ``amount``'s two low bits into ``term1``
        # and by the rest into ``term2``: each step is two or three levels of selects after
        # an amount register that drives every column (placed across the part's block RAM).
        d = self.i_pass.payload
        amount_shape = range(7 + 2 ** len(d.drop))
        m.submodules.pass_skid = pass_skid = SkidBuffer(data.StructLayout({
            "amount": amount_shape, "first": 1, "final": 1}))
        m.d.comb += [pass_skid.i.valid.eq(self.i_pass.valid),
                     self.i_pass.ready.eq(pass_skid.i.ready),
                     pass_skid.i.payload.amount.eq(d.drop + (d.shift ^ 7)),
                     pass_skid.i.payload.first.eq(d.first),
                     pass_skid.i.payload.final.eq(d.final)]
        desc = pass_skid.o.payload

        # Writer, stage 0: take a result, read its entry. -----------------------------------
        wbank = Signal()
        waddr = Signal(range(depth))
        free = Mux(wbank, ~closed[1], ~closed[0])
        # A vector for the entry that the vector in stage 1 writes a clock later waits a
        # clock (then its sum is forwarded, below): one-vector passes that waited in the
        # array's result queue arrive a clock apart. That is the case exactly when the vector
        # taken last clock was a whole pass (``last`` at entry 0) that was not its block's
        # final one (which moves to the other bank): ``clash``, a register.
        clash = Signal()
        take = pass_skid.o.valid & self.i_r.valid & free & ~clash
        m.d.comb += [self.i_r.ready.eq(pass_skid.o.valid & free & ~clash),
                     pass_skid.o.ready.eq(take & self.i_r.payload.last),
                     self.wait_bank.eq(pass_skid.o.valid & self.i_r.valid & ~free)]
        m.d.sync += clash.eq(take & self.i_r.payload.last & (waddr == 0) & ~desc.final)
        with m.If(take):
            m.d.sync += waddr.eq(Mux(self.i_r.payload.last, 0, waddr + 1))
            with m.If(self.i_r.payload.last & desc.final):
                m.d.sync += wbank.eq(~wbank)
                for b in range(2):
                    with m.If(wbank == b):
                        m.d.sync += closed[b].eq(1)

        # Stage 1: the entry's old sums, registered (a block RAM's output is slow).
        # Stage 2: add and write back. A read misses the write of the vector two clocks ahead
        # of it, whose sum is forwarded (one clock ahead does not happen: see ``clash``). The
        # same entry comes back after a whole pass: a 1x1 array's passes of one or two vectors,
        # or passes that waited in the array's result queue.
        meta = data.StructLayout({"valid": 1, "bank": 1, "addr": range(depth), "last": 1,
                                  "first": 1, "final": 1})
        s1, s2, s3 = Signal(meta), Signal(meta), Signal(meta)
        # The data registers have no reset (their validity travels in s1, s2, s3).
        term1 = Signal(data.ArrayLayout(signed(cfg.acc_bits + 7), cfg.cols), reset_less=True)
        amount_hi = Signal(len(desc.amount) - 2, reset_less=True)
        term2, stored = Signal(shape, reset_less=True), Signal(shape, reset_less=True)
        fwd2 = Signal()
        total, previous, previous2 = (Signal(shape, reset_less=True) for _ in range(3))
        same = lambda a, b: a.valid & (a.bank == b.bank) & (a.addr == b.addr)
        m.d.sync += [s1.valid.eq(take), s1.bank.eq(wbank), s1.addr.eq(waddr),
                     s1.last.eq(self.i_r.payload.last), s1.first.eq(desc.first),
                     s1.final.eq(desc.final),
                     s2.eq(s1), s3.eq(s2), amount_hi.eq(desc.amount[2:]),
                     stored.eq(wr_rd.data),
                     fwd2.eq(same(s3, s1)),
                     previous.eq(total), previous2.eq(previous)]
        for c in range(cfg.cols):
            r = self.i_r.payload.data[c]
            m.d.sync += [term1[c].eq((r << 7) >> desc.amount[:2]),
                         term2[c].eq(term1[c] >> (amount_hi << 2))]
            old = Mux(fwd2, previous2[c], stored[c])
            m.d.comb += total[c].eq(Mux(s2.first, 0, old) + term2[c])
        m.d.comb += [wr_rd.addr.eq(Cat(waddr, wbank)), wr_rd.en.eq(take),
                     wr.addr.eq(Cat(s2.addr, s2.bank)), wr.data.eq(total), wr.en.eq(s2.valid)]
        with m.If(s2.valid & s2.last & s2.final):
            for b in range(2):
                with m.If(s2.bank == b):
                    m.d.sync += [full[b].eq(1), count[b].eq(s2.addr + 1)]

        # Reader: a complete bank out on o_acc, one vector per clock. -------------------------
        # The read port's output (a block RAM's: 5.8 ns after the clock on an ECP5) is
        # registered before any logic: stage Q is the read (``q_valid``, ``q_last``, the port's
        # data), then ``o_acc`` a register loaded from it.
        rbank = Signal()
        raddr = Signal(range(depth))
        q_valid, q_last, q_bank = Signal(), Signal(), Signal()
        out_free = ~self.o_acc.valid | self.o_acc.ready
        advance = ~q_valid | out_free
        reading = Mux(rbank, full[1], full[0])
        rcount = Mux(rbank, count[1], count[0])
        rlast = raddr + 1 == rcount
        m.d.comb += [out_rd.addr.eq(Cat(raddr, rbank)), out_rd.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [q_valid.eq(reading), q_last.eq(rlast), q_bank.eq(rbank)]
            with m.If(reading):
                m.d.sync += raddr.eq(raddr + 1)
                with m.If(rlast):
                    m.d.sync += [raddr.eq(0), rbank.eq(~rbank)]
        with m.If(out_free):
            m.d.sync += [self.o_acc.valid.eq(q_valid), self.o_acc.payload.last.eq(q_last),
                         self.o_acc.payload.data.eq(out_rd.data)]
        # The bank is free once its last vector has left the read port for ``o_acc``.
        with m.If(q_valid & out_free & q_last):
            for b in range(2):
                with m.If(q_bank == b):
                    m.d.sync += [full[b].eq(0), closed[b].eq(0)]
        return m
