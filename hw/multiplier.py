"""Activation x weight multipliers, one per weight format, behind one interface.

Every multiplier is combinational and returns the product as a sign and a magnitude,
``product = -mag if neg else mag`` in units of ``2**-frac_bits``, exactly as
``core.numerics.product`` defines it. The sign is left apart so that a processing element can
fold it into its adder (``acc + (mag ^ neg) + neg``) instead of muxing an add and a subtract.

For split ``post`` sums (``fmt.split``, see ``core.numerics.split_product``) the multiplier also
says which sum the product belongs to (``odd``), and every product is a shift of ``a``.

A signed activation (``fmt.a_signed``) comes as a magnitude ``x.a`` and a sign ``x.neg``
(``hw.operand``): every multiplier computes the magnitude's product as for an unsigned one and
XORs ``x.neg`` into ``neg``, which is ``core.numerics``'s sign-magnitude product.

The ``post`` and ``pot`` multipliers contain no ``*``: a ``post`` product is the activation or
its table entry ``T[a]`` (which arrives with the activation, see ``hw.operand``) shifted left
by a constant that the magnitude code selects; a ``pot`` product is a shifted activation.
``int`` is a plain multiplier, the baseline for area figures.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from core import numerics

from .operand import OperandEncoder, code_layout, operand_layout

__all__ = ["Multiplier", "PostMultiplier", "PotMultiplier", "IntMultiplier", "make_multiplier",
           "StandaloneMultiplier"]


class Multiplier(wiring.Component):
    """The common interface: activation operand and weight code in, sign and magnitude out.

    Parameters
    ----------
    fmt : core.numerics.ProductFormat
        The format; its ``w_format`` must be the class's.

    Members
    -------
    x : In(operand_layout(fmt))
        The activation code ``x.a`` and its table entry ``x.t`` (``post`` only); for signed
        activations ``x.a`` is the magnitude and ``x.neg`` the sign.
    w : In(weight_shape)
        The weight as a PE stores it: ``store(code)`` of the weight code (the unsigned bit
        pattern of ``core.numerics``); the code itself for ``int``, a decoded form for ``post``
        and ``pot`` (the weight is stationary, so its decoding is done once, before the PE's
        weight register, not on every product).
    neg : Out(1)
        The sign of the product (the weight's, XOR the activation's ``x.neg`` when signed). It
        may be set with ``mag = 0`` (a zero activation times a negative weight, or a signed
        zero): the sign-folded sum ``acc + (~0 + 1)`` is then ``acc``, as it must be.
    mag : Out(fmt.bound.bit_length())
        The product's magnitude in units of ``2**-frac_bits``.
    odd : Out(1)
        The product goes into the odd sum (split ``post`` sums only; 0 otherwise).

    Latency: 0 (combinational).
    """

    w_format = None

    def __init__(self, *, fmt):
        if fmt.w_format != self.w_format:
            raise ValueError(f"{type(self).__name__} multiplies {self.w_format} weights, "
                             f"not {fmt.w_format}")
        self._fmt = fmt
        super().__init__({
            "x": In(operand_layout(fmt)),
            "w": In(self.weight_shape),
            "neg": Out(1),
            "mag": Out(fmt.bound.bit_length()),
            "odd": Out(1),
        })

    fmt = property(lambda self: self._fmt)

    @property
    def weight_shape(self):
        """The shape of the stored weight ``w``."""
        return self._fmt.w_bits

    def store(self, code):
        """The stored weight (a value of ``weight_shape``) of the weight code ``code``."""
        return code

    def _sign(self, w_neg):
        """The product's sign: the weight's, XOR the activation's for signed activations."""
        return w_neg ^ self.x.neg if self._fmt.a_signed else w_neg


class _ExponentMultiplier(Multiplier):
    """``post`` and ``pot``: sign bit and magnitude code ``m``; ``m = 0`` is zero.

    Every product is a source (``x.a``, or the table entry ``x.t``) shifted left by a constant
    that the code selects (``_term``). Instead of one wide multiplexer per magnitude bit over
    every (source, shift) pair, the stored weight (``store``) holds the code decoded into the
    source, its presence and a small shift ``s``: ``mag = (source << base) << s``, ``base``
    the source's smallest shift: a 2-input select and a barrel shifter of ``log2`` of the
    shifts' span (2 levels for ``post4``).
    """

    def _term(self, n):
        """``(source, shift)`` of exponent ``n``: the magnitude is ``source << shift``."""
        raise NotImplementedError

    def _plan(self):
        """``{magnitude code: (source, shift)}``, each source's smallest shift, the span."""
        terms = {mc: self._term(mc - 1) for mc in range(1, 2 ** (self._fmt.w_bits - 1))}
        base = {src: min(sh for s_, sh in terms.values() if s_ == src)
                for src in {src for src, _ in terms.values()}}
        return terms, base, max(sh - base[src] for src, sh in terms.values())

    @property
    def weight_shape(self):
        span = self._plan()[2]
        # One bit at least: a 0-bit field becomes an illegal ``[-1:0]`` in Verilog.
        return data.StructLayout({"neg": 1, "present": 1, "use_t": 1, "odd": 1,
                                  "shift": range(max(span + 1, 2))})

    def store(self, code):
        """The sign (none for a zero), whether the product is non-zero, its source, its sum
        (split sums) and its shift above the source's base: a lookup of the magnitude code."""
        terms, base, _ = self._plan()
        layout = self.weight_shape
        bits = self._fmt.w_bits
        words = [0] * 2 ** (bits - 1)
        for mc, (src, sh) in terms.items():
            words[mc] = layout.const({"present": 1, "use_t": src == "t",
                                      "odd": self._fmt.split and (mc - 1) % 2 == 1,
                                      "shift": sh - base[src]}).as_value().value
        code = Value.cast(code)
        mc = code[:bits - 1]
        word = Array(Const(w, layout.size) for w in words)[mc]
        return Cat(code[bits - 1] & (mc != 0), word[1:])

    def elaborate(self, platform):
        m = Module()
        _, base, _ = self._plan()
        w = self.w
        source = self.x.a << base["a"] if "a" in base else 0
        if "t" in base:
            source = Mux(w.use_t, self.x.t << base["t"], source)
        m.d.comb += [self.mag.eq(Mux(w.present, source, 0) << w.shift),
                     self.neg.eq(self._sign(w.neg)), self.odd.eq(w.odd)]
        return m


class PostMultiplier(_ExponentMultiplier):
    """``(sqrt 2)**-n``: even ``n = 2k`` is ``a << (F - k)``; odd ``n = 2k + 1`` is
    ``T[a] << (k_odd - k)``, or ``a << (F - k)`` into the odd sum for split sums."""

    w_format = "post"

    def _term(self, n):
        f = self._fmt
        if n % 2 == 0 or f.split:
            return "a", f.frac_bits - n // 2
        k_odd = (numerics.max_exponent(f.w_bits) - 1) // 2
        return "t", k_odd - n // 2


class PotMultiplier(_ExponentMultiplier):
    """``2**-n``: ``a << (F - n)``."""

    w_format = "pot"

    def _term(self, n):
        return "a", self._fmt.frac_bits - n


class IntMultiplier(Multiplier):
    """Two's-complement weights: ``mag = a * |w|``, ``neg = w < 0`` (XOR ``x.neg``)."""

    w_format = "int"

    def elaborate(self, platform):
        m = Module()
        w = self.w.as_signed()
        m.d.comb += [self.mag.eq(self.x.a * abs(w)), self.neg.eq(self._sign(w[-1]))]
        return m


_MULTIPLIERS = {cls.w_format: cls for cls in (PostMultiplier, PotMultiplier, IntMultiplier)}


def make_multiplier(fmt):
    """The multiplier component for ``fmt.w_format``."""
    return _MULTIPLIERS[fmt.w_format](fmt=fmt)


class StandaloneMultiplier(wiring.Component):
    """A multiplier with its own operand encoder (table): activation code in, product out.

    The array shares one encoder per row; this is the same pair of components, for testing a
    multiplier alone. Members: ``a: In(code_layout(fmt))`` (the code, or for signed
    activations its magnitude and sign), ``w``, ``neg``, ``mag``, ``odd`` as in ``Multiplier``.
    """

    def __init__(self, *, fmt):
        self._fmt = fmt
        super().__init__({"a": In(code_layout(fmt)), "w": In(fmt.w_bits), "neg": Out(1),
                          "mag": Out(fmt.bound.bit_length()), "odd": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = enc = OperandEncoder(fmt=self._fmt)
        m.submodules.mul = mul = make_multiplier(self._fmt)
        m.d.comb += [enc.a.eq(self.a), mul.x.eq(enc.x), mul.w.eq(mul.store(self.w)),
                     self.neg.eq(mul.neg), self.mag.eq(mul.mag), self.odd.eq(mul.odd)]
        return m
