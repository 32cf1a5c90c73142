"""An 18 x 18 signed multiplier with its operands and its product registered: on an ECP5 one
``MULT18X18D`` DSP block with its own input and output registers, elsewhere the same two
registers around a ``*`` in logic.

On an ECP5 Yosys maps a ``*`` to a combinational ``MULT18X18D`` (about 4 ns inside the block)
and leaves the registers before and after it in the fabric; the blocks lie in a few rows of
the die, so the routes into and out of a block add about 7 ns to a path of 11 ns. With the
block's own registers (``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK`` on
``CLK0``) the multiply is a path of its own, inside the block, and a route in or out is all
that a fabric path holds. Yosys does not pack registers into ECP5 DSP blocks, so the block is
instantiated here, when the platform's ``family`` is ``"ecp5"`` (an ``amaranth-boards`` ECP5
board, or ``bench/parts.py``'s out-of-context build).

Yosys ships only a black box of ``MULT18X18D``: ``sim/vendor/MULT18X18D.v`` is this project's
model of the part of it used here, with which the rescale unit built for an ECP5 runs on
Verilator against the golden model (``tests/test_dsp.py``).
"""

from amaranth.hdl import ClockSignal, Instance, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Mult18", "Ecp5Target", "is_ecp5"]

WIDTH = 18


def is_ecp5(platform):
    """Whether ``platform`` is an ECP5's (``amaranth.vendor.LatticePlatform``, family ecp5)."""
    return getattr(platform, "family", None) == "ecp5"


class Ecp5Target:
    """A stand-in platform for a design converted on its own for an ECP5 (its DSP blocks
    instantiated): a test's Verilator build with ``sim/vendor``'s model. (``bench/parts.py``
    passes the board's own platform.)"""

    family = "ecp5"


class Mult18(wiring.Component):
    """``p = a * b`` (exact) two clocks after ``a`` and ``b``, advancing while ``en`` is high
    (``LATENCY = 2``): ``a`` and ``b`` are registered, then the product. Each operand is 18
    bits, signed (``a_signed``, ``b_signed``: the default) or unsigned (the block's
    ``SIGNEDA``/``SIGNEDB`` tied low), so that the low chunks of a wide operand take all 18
    bits; ``p`` is signed unless both are unsigned."""

    LATENCY = 2

    def __init__(self, a_signed=True, b_signed=True):
        self._signs = (bool(a_signed), bool(b_signed))
        shape = lambda s: signed(WIDTH) if s else unsigned(WIDTH)
        out = signed(2 * WIDTH) if a_signed or b_signed else unsigned(2 * WIDTH)
        super().__init__({"a": In(shape(a_signed)), "b": In(shape(b_signed)),
                          "en": In(1, init=1), "p": Out(out)})

    def elaborate(self, platform):
        m = Module()
        if is_ecp5(platform):
            ports = {f"i_A{i}": self.a[i] for i in range(WIDTH)}
            ports.update({f"i_B{i}": self.b[i] for i in range(WIDTH)})
            ports.update({f"i_C{i}": 0 for i in range(WIDTH)})
            ports.update({f"o_P{i}": self.p[i] for i in range(2 * WIDTH)})
            m.submodules.block = Instance(
                "MULT18X18D",
                p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
                i_CLK0=ClockSignal(), i_CE0=self.en, i_RST0=0,
                i_SIGNEDA=int(self._signs[0]), i_SIGNEDB=int(self._signs[1]),
                i_SOURCEA=0, i_SOURCEB=0, **ports)
            return m
        a = Signal.like(self.a, reset_less=True)
        b = Signal.like(self.b, reset_less=True)
        p = Signal.like(self.p, reset_less=True)
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(a * b)]
        m.d.comb += self.p.eq(p)
        return m
