"""The accumulator buffer: adds the passes of a layer tile by tile, with a shift per pass.

A product ``A (M x K) x W (K x N)`` larger than the array runs as *passes*: one per block of
``cols`` output columns, per block of ``rows`` of ``K``, and, for 8-bit ``int`` weights on a
``post`` array, per bit plane (``architecture.md`` §3: plane ``i`` holds the weights' bit ``i``
as weights in {0, +1}, the sign plane in {0, -1}, each a ``post`` code of exponent 0, so that
the array computes ``(A x plane) << F``). Each pass is one array tile of ``M`` result vectors.
The buffer keeps ``M`` vectors of ``cols`` accumulators; for every result vector of a pass it
does ``acc[m] = (first ? 0 : acc[m]) + ((result >> drop) << shift)`` and, on a ``final`` pass,
sends the sum out instead of storing it. ``drop`` removes the ``F`` fractional bits of a
bit-plane pass, which are zero, so that an ``int`` layer's accumulators are exactly ``A x W``.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gen.errors import UsageError

__all__ = ["check_engine_array", "pass_layout", "accumulator_layout", "AccumulatorBuffer",
           "MAX_PLANE_SHIFT"]

MAX_PLANE_SHIFT = 7


def check_engine_array(config):
    """Refuse an array that the layer engine cannot take (one sum per column for now)."""
    if config.split:
        raise UsageError("the layer engine takes post arrays with odd='table'; an array "
                         "with odd='split' runs as a bare array (asqgen verilog, selfcheck)")


def pass_layout():
    """One pass: ``shift`` (0..7), ``drop`` the ``F`` fractional bits, ``first``, ``final``."""
    return data.StructLayout({"shift": 3, "drop": 1, "first": 1, "final": 1})


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
    config : gen.config.ArrayConfig
        ``cols``, ``acc_bits`` (the array's results), ``frac_bits`` (``drop``),
        ``buffer_bits`` (the sums) and ``max_m`` (the depth).

    Members
    -------
    i_pass : In(stream.Signature(pass_layout()))
        One descriptor per pass, taken with the pass's last result.
    i_r : In(stream.Signature(result_layout(config)))
        The array's results; ``last`` ends a pass (at most ``max_m`` vectors).
    o_acc : Out(stream.Signature(accumulator_layout(config)))
        The sums of a ``final`` pass, in order, ``last`` on the pass's last vector.

    The memory is read asynchronously (LUT RAM) so that a read-add-write takes one clock:
    one result per clock. ``i_r.ready`` depends on ``o_acc.ready`` during a final pass.
    """

    def __init__(self, *, config):
        from .systolic_array import result_layout

        check_engine_array(config)
        self._config = config
        super().__init__({
            "i_pass": In(stream.Signature(pass_layout())),
            "i_r": In(stream.Signature(result_layout(config))),
            "o_acc": Out(stream.Signature(accumulator_layout(config))),
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        width = cfg.buffer_bits
        m.submodules.mem = mem = memory.Memory(
            shape=data.ArrayLayout(signed(width), cfg.cols), depth=max(cfg.max_m, 2), init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        addr = Signal(range(max(cfg.max_m, 2)))
        desc = self.i_pass.payload
        m.d.comb += [rd.addr.eq(addr), wr.addr.eq(addr)]

        for c in range(cfg.cols):
            r = self.i_r.payload.data[c]
            dropped = r >> cfg.frac_bits                       # exact: those bits are zero
            term = Signal(signed(width), name=f"term_{c}")
            with m.Switch(desc.shift):
                for s in range(MAX_PLANE_SHIFT + 1):
                    with m.Case(s):
                        m.d.comb += term.eq(Mux(desc.drop, dropped, r) << s)
            total = Signal(signed(width), name=f"total_{c}")
            m.d.comb += total.eq(Mux(desc.first, 0, rd.data[c]) + term)
            m.d.comb += [wr.data[c].eq(total), self.o_acc.payload.data[c].eq(total)]

        # A result moves when its pass is known and, on a final pass, the output takes it.
        go = self.i_pass.valid & self.i_r.valid & (~desc.final | self.o_acc.ready)
        m.d.comb += [
            self.i_r.ready.eq(self.i_pass.valid & (~desc.final | self.o_acc.ready)),
            self.o_acc.valid.eq(self.i_pass.valid & self.i_r.valid & desc.final),
            self.o_acc.payload.last.eq(self.i_r.payload.last),
            wr.en.eq(go & ~desc.final),
            self.i_pass.ready.eq(go & self.i_r.payload.last),
        ]
        with m.If(go):
            m.d.sync += addr.eq(addr + 1)
            with m.If(self.i_r.payload.last):
                m.d.sync += addr.eq(0)
        return m

