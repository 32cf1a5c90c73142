"""The activation operand: the code ``a`` and, for ``post`` weights, its table entry ``T[a]``.

Every PE of an array row multiplies the same activation by a different weight, so the ``post``
table ``T[a] = round(a * sqrt(2)/2 * 2**t)`` is looked up once per row, where the activation
enters the array, and travels along the row beside ``a``: one table per row instead of one per
PE (``2**a_bits`` entries each: 256 for 8-bit activations).
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["operand_layout", "OperandEncoder"]


def operand_layout(fmt):
    """``{"a": a_bits, "t": bits of the largest table entry}``; only ``{"a": a_bits}`` for formats
    without a table (``pot``, ``int``, and ``post`` with no odd exponent, at 2 bits)."""
    if not fmt.table:
        return data.StructLayout({"a": fmt.a_bits})
    return data.StructLayout({"a": fmt.a_bits, "t": max(fmt.table).bit_length()})


class OperandEncoder(wiring.Component):
    """Looks up ``T[a]``: a ``2**a_bits``-entry ROM written as a case statement.

    Members
    -------
    a : In(a_bits)
    x : Out(operand_layout(fmt))

    Latency: 0 (combinational).
    """

    def __init__(self, *, fmt):
        self._fmt = fmt
        super().__init__({"a": In(fmt.a_bits), "x": Out(operand_layout(fmt))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.x.a.eq(self.a)
        if self._fmt.table:
            with m.Switch(self.a):
                for a, entry in enumerate(self._fmt.table):
                    with m.Case(a):
                        m.d.comb += self.x.t.eq(entry)
        return m
