"""The activation operand: the code ``a`` and, for ``post`` weights, its table entry ``T[a]``.

Every PE of an array row multiplies the same activation by a different weight, so the ``post``
table ``T[a] = round(a * sqrt(2)/2 * 2**t)`` is looked up once per row, where the activation
enters the array, and travels along the row beside ``a``: one table per row instead of one per
PE (``2**a_bits`` entries each: 256 for 8-bit activations).
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["operand_layout", "OperandEncoder"]


def operand_layout(fmt):
    """``{"a": a_bits, "t": bits of the largest table entry}``; only ``{"a": a_bits}`` for formats
    without a table (``pot``, ``int``, and ``post`` with no odd exponent, at 2 bits)."""
    if not fmt.table:
        return data.StructLayout({"a": fmt.a_bits})
    return data.StructLayout({"a": fmt.a_bits, "t": max(fmt.table).bit_length()})


class OperandEncoder(wiring.Component):
    """Looks up ``T[a]``: a ``2**a_bits``-entry ROM, a memory with an asynchronous read port
    marked ``rom_style = "logic"``.

    The array registers the lookup (``hw.systolic_array``); a ROM followed by a register is
    what Yosys maps to block RAM (on the ECP5 a ``DP16KD`` whose data come 5.6 ns after the
    clock, more than the lookup in LUTs takes), so the attribute keeps the table in LUTs.

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
            m.submodules.table = table = Memory(
                shape=len(self.x.t), depth=len(self._fmt.table), init=self._fmt.table,
                attrs={"rom_style": "logic"})
            read = table.read_port(domain="comb")
            m.d.comb += [read.addr.eq(self.a), self.x.t.eq(read.data)]
        return m
