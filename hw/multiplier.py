"""Activation x weight multipliers, one per weight format, behind one interface.

Every multiplier is combinational and returns the product as a sign and a magnitude,
``product = -mag if neg else mag`` in units of ``2**-frac_bits``, exactly as
``gen.numerics.product`` defines it. The sign is left apart so that a processing element can
fold it into its adder (``acc + (mag ^ neg) + neg``) instead of muxing an add and a subtract.

The ``post`` and ``pot`` multipliers contain no ``*``: a ``post`` product is the activation or
its table entry ``T[a]`` shifted left by a constant chosen by the magnitude code, a ``pot``
product a shifted activation. ``int`` is a plain multiplier, the baseline for area figures.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen import numerics

__all__ = ["Multiplier", "PostMultiplier", "PotMultiplier", "IntMultiplier", "make_multiplier"]


class Multiplier(wiring.Component):
    """The common interface: activation code and weight code in, sign and magnitude out.

    Parameters
    ----------
    a_bits, w_bits, frac_bits:
        As in ``gen.config.ArrayConfig``.

    Members
    -------
    a : In(a_bits)
        Unsigned activation code.
    w : In(w_bits)
        Weight code (the unsigned bit pattern of ``gen.numerics``).
    neg : Out(1)
        The sign of the product. It may be set with ``mag = 0`` (a zero activation times a
        negative weight): the sign-folded sum ``acc + (~0 + 1)`` is then ``acc``, as it must be.
    mag : Out(magnitude_bits)
        The product's magnitude in units of ``2**-frac_bits``.

    Latency: 0 (combinational).
    """

    w_format = None

    def __init__(self, *, a_bits, w_bits, frac_bits):
        numerics.check_act_bits(a_bits)
        numerics.check_weight_bits(self.w_format, w_bits)
        numerics.check_frac_bits(self.w_format, w_bits, frac_bits)
        self._a_bits, self._w_bits, self._frac_bits = a_bits, w_bits, frac_bits
        bound = numerics.product_magnitude_bound(self.w_format, a_bits, w_bits, frac_bits)
        super().__init__({
            "a": In(a_bits),
            "w": In(w_bits),
            "neg": Out(1),
            "mag": Out(bound.bit_length()),
        })

    a_bits = property(lambda self: self._a_bits)
    w_bits = property(lambda self: self._w_bits)
    frac_bits = property(lambda self: self._frac_bits)


class _ExponentMultiplier(Multiplier):
    """``post`` and ``pot``: sign bit and magnitude code ``m``; ``m = 0`` is zero."""

    def _elaborate_shifts(self, m, shifted):
        """Drive ``mag`` with ``shifted(n)`` for the exponent ``n = m - 1`` of the code."""
        code = self.w[:-1]
        with m.Switch(code):
            for mc in range(1, 2 ** (self.w_bits - 1)):
                with m.Case(mc):
                    m.d.comb += self.mag.eq(shifted(mc - 1))
            with m.Default():
                m.d.comb += self.mag.eq(0)
        m.d.comb += self.neg.eq(self.w[-1] & (code != 0))


class PostMultiplier(_ExponentMultiplier):
    """``(sqrt 2)**-n``: even ``n = 2k`` is ``a << (F - k)``; odd ``n = 2k + 1`` is
    ``T[a] << (k_odd - k)``, with the table ``T`` a ``2**a_bits``-entry ROM (a case statement)."""

    w_format = "post"

    def elaborate(self, platform):
        m = Module()
        k_odd = (numerics.max_exponent(self.w_bits) - 1) // 2
        table = None
        if k_odd >= 0:
            entries = numerics.odd_table(self.a_bits, self.frac_bits - k_odd)
            table = Signal(max(max(entries).bit_length(), 1))
            with m.Switch(self.a):
                for a, entry in enumerate(entries):
                    with m.Case(a):
                        m.d.comb += table.eq(entry)

        def shifted(n):
            if n % 2 == 0:
                return self.a << (self.frac_bits - n // 2)
            return table << (k_odd - n // 2)

        self._elaborate_shifts(m, shifted)
        return m


class PotMultiplier(_ExponentMultiplier):
    """``2**-n``: ``a << (F - n)``."""

    w_format = "pot"

    def elaborate(self, platform):
        m = Module()
        self._elaborate_shifts(m, lambda n: self.a << (self.frac_bits - n))
        return m


class IntMultiplier(Multiplier):
    """Two's-complement weights: ``mag = a * |w|``, ``neg = w < 0``."""

    w_format = "int"

    def elaborate(self, platform):
        m = Module()
        w = self.w.as_signed()
        m.d.comb += [
            self.mag.eq(self.a * abs(w)),
            self.neg.eq(w[-1]),
        ]
        return m


_MULTIPLIERS = {cls.w_format: cls for cls in (PostMultiplier, PotMultiplier, IntMultiplier)}


def make_multiplier(*, w_format, a_bits, w_bits, frac_bits):
    """The multiplier component for ``w_format``."""
    numerics.check_weight_format(w_format)
    return _MULTIPLIERS[w_format](a_bits=a_bits, w_bits=w_bits, frac_bits=frac_bits)
