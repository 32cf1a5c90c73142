"""The activation operand: the code ``a`` and, for ``post`` weights, its table entry ``T[a]``.

Every PE of an array row multiplies the same activation by a different weight, so the ``post``
table ``T[a] = round(a * sqrt(2)/2 * 2**t)`` is looked up once per row, where the activation
enters the array, and travels along the row beside ``a``: one table per row instead of one per
PE (``2**a_bits`` entries each: 256 for 8-bit activations).

Signed activations (``fmt.a_signed``, ``core.numerics``) arrive in sign-magnitude: the
magnitude ``a = |code|`` (``a_bits`` bits: a signed layer's ``|-2**(a_bits-1)|`` fits, and so
does an unsigned layer's code, which has ``neg = 0``: one array runs both kinds of layer) and a
``neg`` bit (``code_layout``). The table is indexed by the magnitude, as for unsigned codes, and
``neg`` travels along the row with ``a`` and ``T[a]``; each multiplier XORs it into the
product's sign (``hw.multiplier``).

Where the two's-complement code becomes sign-magnitude: at the host, before ``i_a``, not in
this encoder. The encoder's lookup is in the clock that ends at a row's last skew register, and
for row 0 that clock starts at ``i_a``'s payload: a negation there (an ``a_bits``-bit
increment, a carry chain) would sit in series with the table's LUT levels in every row. At the
host the conversion costs nothing in hardware (the co-simulation host is software; a rescale
unit producing signed codes converts one code per lane, not one per row), and in the array
only the ``neg`` bit in the skew registers before the encoders, ``rows * (rows - 1) / 2``
flip-flops, where an encoder-side conversion would cost ``rows`` incrementers. After the
encoder the operand is one bit wider (``neg``), in every PE's operand register.
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["code_layout", "operand_layout", "OperandEncoder"]


def code_layout(fmt):
    """One activation as the array takes it on ``i_a``: ``unsigned(a_bits)``, the code; for
    signed activations ``{"a": a_bits, "neg": 1}``, its magnitude and sign (the host's
    conversion, see the module docstring; ``a = 0`` with ``neg = 1`` is a zero as well)."""
    if not fmt.a_signed:
        return unsigned(fmt.a_bits)
    return data.StructLayout({"a": fmt.a_bits, "neg": 1})


def operand_layout(fmt):
    """``{"a": a_bits, "t": bits of the largest table entry}``; only ``{"a": a_bits}`` for formats
    without a table (``pot``, ``int``, and ``post`` with no odd exponent, at 2 bits). Signed
    activations add ``"neg": 1`` (``a`` is then the magnitude)."""
    fields = {"a": fmt.a_bits}
    if fmt.table:
        fields["t"] = max(fmt.table).bit_length()
    if fmt.a_signed:
        fields["neg"] = 1
    return data.StructLayout(fields)


class OperandEncoder(wiring.Component):
    """Looks up ``T[a]``: a ``2**a_bits``-entry ROM (indexed by the magnitude for signed
    activations), a memory with an asynchronous read port marked ``rom_style = "logic"``;
    passes ``neg`` on for signed activations.

    The array registers the lookup (``hw.systolic_array``); a ROM followed by a register is
    what Yosys maps to block RAM (on the ECP5 a ``DP16KD`` whose data come 5.6 ns after the
    clock, more than the lookup in LUTs takes), so the attribute keeps the table in LUTs.

    Members
    -------
    a : In(code_layout(fmt))
    x : Out(operand_layout(fmt))

    Latency: 0 (combinational).
    """

    def __init__(self, *, fmt):
        self._fmt = fmt
        super().__init__({"a": In(code_layout(fmt)), "x": Out(operand_layout(fmt))})

    def elaborate(self, platform):
        m = Module()
        mag = self.a.a if self._fmt.a_signed else self.a
        m.d.comb += self.x.a.eq(mag)
        if self._fmt.a_signed:
            m.d.comb += self.x.neg.eq(self.a.neg)
        if self._fmt.table:
            m.submodules.table = table = Memory(
                shape=len(self.x.t), depth=len(self._fmt.table), init=self._fmt.table,
                attrs={"rom_style": "logic"})
            read = table.read_port(domain="comb")
            m.d.comb += [read.addr.eq(mag), self.x.t.eq(read.data)]
        return m
