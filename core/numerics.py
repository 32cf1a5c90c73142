"""The number formats of the accelerator: weight codes, their values, and the exact integer product.

This module is the single definition of what a weight code means and what the hardware computes
for ``activation code x weight code``. The PyTorch quantizers (``export/``), the golden model
(``sim/golden``) and the Amaranth generator (``hw/``, ``gen/``) all import it; it depends on
nothing but the standard library.

Weight codes
------------
Every weight code is the unsigned ``b``-bit pattern that the hardware stores (``0 .. 2**b - 1``).

``post``
    Sign bit (the most significant bit) and a ``(b-1)``-bit magnitude code ``m``. ``m = 0`` is
    zero (with either sign); ``m >= 1`` is ``(sqrt 2) ** -(m - 1)``. The exponent
    ``n = m - 1`` runs from 0 to ``n_max = 2**(b-1) - 2``.
``pot``
    The same code, with ``2 ** -(m - 1)``.
``int``
    Two's complement: ``code - 2**b`` when the sign bit is set, ``code`` otherwise.

Activation codes
----------------
A layer's activations are ``a_bits``-bit codes ``a``: unsigned (``0 .. 2**a_bits - 1``, after a
ReLU) or, for layers whose input can be negative (a MobileNet-V2 block's expand conv, after a
linear bottleneck plus identity), two's complement (``-2**(a_bits-1) .. 2**(a_bits-1) - 1``,
``act_range(bits, signed=True)``). A negative code is multiplied in sign-magnitude:
``product(a, w) = sign(a) * product(|a|, w)``, so that the table below stays indexed by a
magnitude and no rounding is added: ``sqrt 2`` is irrational, no entry is a tie, so
``round(-x) = -round(x)`` and this is also the table of the signed values.

A product format with ``a_signed`` takes both kinds of code, since one array runs both kinds of
layer: its activation is a sign and an ``a_bits``-bit magnitude, any value in
``-(2**a_bits - 1) .. 2**a_bits - 1`` (``ProductFormat.a_range``), of which a signed layer's
codes and an unsigned layer's codes are subsets. So its table and its bounds are the unsigned
format's (``|a| <= 2**a_bits - 1``); a signed layer alone has ``|a| <= 2**(a_bits-1)``
(``act_magnitude_max``), reached by the code ``-2**(a_bits-1)`` alone.

The product
-----------
The product is a signed integer in units of ``2 ** -F`` (``F`` = ``frac_bits``, the
accumulator's fractional bits), written as a sign and a magnitude so that the hardware can fold
the sign into its adder (for a signed activation the sign is the XOR of both operands'); for an
activation magnitude ``a``:

* ``post``, even exponent ``n = 2k``: ``a << (F - k)``, exact;
* ``post``, odd exponent ``n = 2k + 1``: ``T[a] << (k_odd - k)``, where
  ``T[a] = round(a * sqrt(2)/2 * 2**t)`` is the table, ``t = F - k_odd`` its fractional bits and
  ``k_odd`` the largest ``k`` of an odd exponent. Only left shifts occur, so the table's rounding
  is the only inexact step: at most half a table unit, ``2 ** (k_odd - k - 1)`` units of
  ``2 ** -F``. ``sqrt 2`` is irrational, so no entry is a tie; the table is computed with
  integers (``math.isqrt``), never with floats;
* ``pot``: ``a << (F - n)``, exact;
* ``int``: ``a * w``, exact; ``F`` must be 0.

Split ``post`` sums (``odd="split"``)
------------------------------------
An array may instead keep two sums per output, one of the even and one of the odd exponents,
and apply ``sqrt(2)/2`` once per output after the array: then every product is a shift,
``a << (F - k)`` for ``n = 2k`` and for ``n = 2k + 1`` alike, with no table and no rounding
(``split_product``). The value of a pair of sums ``(E, O)`` is ``E + O * sqrt(2)/2`` units of
``2**-F``; ``F`` needs only ``min_frac_bits`` (no table bits).

``F`` must be large enough that every shift is a left shift (``min_frac_bits``); the default
(``default_frac_bits``) gives the table 8 fractional bits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

__all__ = [
    "WEIGHT_FORMATS", "WEIGHT_BITS", "ACT_BITS",
    "check_weight_format", "check_weight_bits", "check_act_bits", "check_act_signed",
    "act_range", "act_magnitude_max",
    "max_exponent", "split_code", "join_code", "int_code", "int_value", "weight_value",
    "weight_levels", "nearest_code", "zero_code",
    "min_frac_bits", "default_frac_bits", "check_frac_bits",
    "odd_table", "table_frac_bits", "product", "product_magnitude_bound", "signed_bits",
    "sum_bits", "ODD_MODES", "split_product", "ProductFormat",
]

WEIGHT_FORMATS = ("post", "pot", "int")
ODD_MODES = ("table", "split")
WEIGHT_BITS = range(2, 9)
ACT_BITS = range(1, 9)
DEFAULT_TABLE_FRAC_BITS = 8


def check_weight_format(fmt):
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"w_format must be one of {', '.join(WEIGHT_FORMATS)}, not {fmt!r}")


def check_weight_bits(fmt, bits):
    check_weight_format(fmt)
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise TypeError(f"w_bits must be an integer, not {bits!r}")
    if bits not in WEIGHT_BITS:
        raise ValueError(f"w_bits must be from {WEIGHT_BITS.start} to {WEIGHT_BITS.stop - 1} "
                         f"for {fmt} weights, not {bits}")


def check_act_bits(bits):
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise TypeError(f"a_bits must be an integer, not {bits!r}")
    if bits not in ACT_BITS:
        raise ValueError(f"a_bits must be from {ACT_BITS.start} to {ACT_BITS.stop - 1}, "
                         f"not {bits}")


def check_act_signed(signed):
    if not isinstance(signed, bool):
        raise TypeError(f"a_signed must be True or False, not {signed!r}")


def act_range(bits, signed=False):
    """``(lo, hi)``: the smallest and the largest ``bits``-bit activation code of a layer (two's
    complement when ``signed``)."""
    return (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def act_magnitude_max(bits, signed=False):
    """The largest ``|a|`` of a layer's ``bits``-bit activation code: ``2**(bits-1)`` signed (the
    code ``-2**(bits-1)``), ``2**bits - 1`` unsigned. It fits ``bits`` unsigned bits either way."""
    return 2 ** (bits - 1) if signed else 2 ** bits - 1


def max_exponent(bits):
    """``n_max = 2**(bits-1) - 2``: the largest exponent of a ``post`` or ``pot`` code."""
    return 2 ** (bits - 1) - 2


def split_code(bits, code):
    """``(sign, magnitude)`` of ``bits``-bit ``post``/``pot`` codes: the sign bit (the most
    significant) and the ``(bits-1)``-bit magnitude code. Works on Python ints and on integer
    numpy arrays or torch tensors alike (operators only)."""
    return code >> (bits - 1), code & (2 ** (bits - 1) - 1)


def join_code(bits, sign, magnitude):
    """The ``bits``-bit ``post``/``pot`` code of a sign (0 or 1) and a magnitude code; the
    inverse of ``split_code``. Ints, numpy arrays or torch tensors."""
    return magnitude | (sign << (bits - 1))


def int_code(bits, value):
    """The ``bits``-bit two's-complement pattern (``int`` code) of a signed integer value.
    Ints, numpy arrays or torch tensors."""
    return value & (2 ** bits - 1)


def int_value(bits, code):
    """The signed value of a ``bits``-bit two's-complement ``int`` code; the inverse of
    ``int_code``. Ints or integer arrays."""
    return code - ((code >> (bits - 1)) << bits)


def _split(bits, code):
    if not 0 <= code < 2 ** bits:
        raise ValueError(f"Weight code {code} does not fit {bits} bits")
    return split_code(bits, code)


def weight_value(fmt, bits, code):
    """The real value of a weight code (with the weight scale ``alpha = 1``)."""
    check_weight_bits(fmt, bits)
    if fmt == "int":
        return float(code - 2 ** bits if code >> (bits - 1) else code)
    sign, m = _split(bits, code)
    if m == 0:
        return 0.0
    n = m - 1
    if fmt == "post":  # 2**-(n/2) exactly for even n, one rounding (of sqrt(1/2)) for odd n
        mag = 2.0 ** -(n // 2) * (math.sqrt(0.5) if n % 2 else 1.0)
    else:
        mag = 2.0 ** -n
    return -mag if sign else mag


def weight_levels(fmt, bits):
    """The sorted distinct values that ``bits``-bit codes of ``fmt`` can stand for."""
    return sorted({weight_value(fmt, bits, c) for c in range(2 ** bits)})


def zero_code():
    """The canonical code of zero (all formats): the all-zero pattern."""
    return 0


def nearest_code(fmt, bits, value):
    """The code whose value is nearest to ``value`` (ties go to the smaller magnitude).

    Values outside the level range saturate. Zero is always the canonical code 0.
    """
    check_weight_bits(fmt, bits)
    best = min(range(2 ** bits),
               key=lambda c: (abs(weight_value(fmt, bits, c) - value),
                              abs(weight_value(fmt, bits, c)), c))
    return best


def _max_k(bits, parity):
    ks = [n // 2 for n in range(max_exponent(bits) + 1) if n % 2 == parity]
    return max(ks) if ks else None


def min_frac_bits(fmt, bits):
    """The smallest ``F`` for which every product shift of ``fmt`` is a left shift."""
    check_weight_bits(fmt, bits)
    if fmt == "int":
        return 0
    if fmt == "pot":
        return max_exponent(bits)
    return max(k for k in (_max_k(bits, 0), _max_k(bits, 1)) if k is not None)


def default_frac_bits(fmt, bits, odd="table"):
    """``F`` for which the ``post`` table has 8 fractional bits (the minimum for the others, and
    for split ``post`` sums, which have no table)."""
    check_weight_bits(fmt, bits)
    if fmt == "post" and odd == "table" and _max_k(bits, 1) is not None:
        return max(min_frac_bits(fmt, bits), _max_k(bits, 1) + DEFAULT_TABLE_FRAC_BITS)
    return min_frac_bits(fmt, bits)


def check_frac_bits(fmt, bits, frac_bits):
    if not isinstance(frac_bits, int) or isinstance(frac_bits, bool):
        raise TypeError(f"frac_bits must be an integer, not {frac_bits!r}")
    if fmt == "int":
        if frac_bits != 0:
            raise ValueError(f"frac_bits must be 0 for int weights, not {frac_bits}")
        return
    lo = min_frac_bits(fmt, bits)
    if frac_bits < lo:
        raise ValueError(f"frac_bits must be at least {lo} for {bits}-bit {fmt} weights "
                         f"(every shift a left shift), not {frac_bits}")


def table_frac_bits(bits, frac_bits):
    """``t``: the fractional bits of the ``post`` table, or ``None`` without odd exponents."""
    k_odd = _max_k(bits, 1)
    return None if k_odd is None else frac_bits - k_odd


def odd_table(a_bits, t):
    """``T[a] = round(a * sqrt(2)/2 * 2**t)`` for every activation magnitude ``a``, exactly.

    ``round(x) = floor(x + 1/2) = (floor(2x) + 1) // 2``, and
    ``floor(2x) = isqrt(a**2 * 2**(2t + 1))``; ``x`` is never a tie for ``a > 0``.
    """
    if t < 0:
        raise ValueError(f"Table fractional bits must be at least 0, not {t}")
    return [_table_entry(a, t) for a in range(2 ** a_bits)]


def _table_entry(a, t):
    return (math.isqrt(a * a * 2 ** (2 * t + 1)) + 1) // 2


def product(fmt, w_bits, frac_bits, a, code, *, table=None):
    """The exact signed product of activation ``a`` and weight ``code``, in ``2**-F`` units.

    ``a`` is the activation's value, a signed code's too: a negative ``a`` is multiplied in
    sign-magnitude, ``-product(-a, code)`` (see the module docstring). ``table`` may pass a
    precomputed ``odd_table``, indexed by ``|a|`` (it is computed when needed otherwise).
    """
    if a < 0:
        return -product(fmt, w_bits, frac_bits, -a, code, table=table)
    if fmt == "int":
        return a * (code - 2 ** w_bits if code >> (w_bits - 1) else code)
    sign, m = _split(w_bits, code)
    if m == 0:
        return 0
    n = m - 1
    if fmt == "pot":
        mag = a << (frac_bits - n)
    elif n % 2 == 0:
        mag = a << (frac_bits - n // 2)
    else:
        k_odd = _max_k(w_bits, 1)
        t = frac_bits - k_odd
        entry = _table_entry(a, t) if table is None else table[a]
        mag = entry << (k_odd - n // 2)
    return -mag if sign else mag


def split_product(w_bits, frac_bits, a, code):
    """``(s, p)``: the ``post`` product of ``a`` and ``code`` as split sums keep it: ``p`` goes
    into sum ``s`` (0 even, 1 odd exponents), ``p = +-a << (F - n // 2)``, exact. A zero
    weight is ``(0, 0)``; a negative ``a`` is ``-split_product(-a)`` in sign-magnitude."""
    if a < 0:
        s, p = split_product(w_bits, frac_bits, -a, code)
        return s, -p
    sign, m = _split(w_bits, code)
    if m == 0:
        return 0, 0
    n = m - 1
    mag = a << (frac_bits - n // 2)
    return n % 2, -mag if sign else mag


def product_magnitude_bound(fmt, a_bits, w_bits, frac_bits):
    """The largest ``|product|`` over all codes (``a_max * 2**F``; ``a_max * 2**(b-1)`` for int),
    ``a_max = 2**a_bits - 1`` the largest magnitude (a sign-magnitude operand's too)."""
    a_max = 2 ** a_bits - 1
    if fmt == "int":
        return a_max * 2 ** (w_bits - 1)
    return a_max << frac_bits


def signed_bits(bound):
    """Bits of a two's-complement number that holds every integer in ``[-bound, bound]``."""
    return bound.bit_length() + 1


def sum_bits(fmt, a_bits, w_bits, frac_bits, terms):
    """Bits of a signed accumulator that holds any sum of ``terms`` products without overflow."""
    return signed_bits(terms * product_magnitude_bound(fmt, a_bits, w_bits, frac_bits))


@dataclass(frozen=True)
class ProductFormat:
    """The operands of one product: ``a_bits``-bit activations times ``w_bits``-bit
    ``w_format`` weights, in units of ``2**-frac_bits``; ``odd`` is ``"split"`` for ``post``
    products kept as split sums (``split_product``). ``a_signed``: the activation is a sign and
    an ``a_bits``-bit magnitude (``-(2**a_bits - 1) .. 2**a_bits - 1``: the codes of signed and
    of unsigned layers alike, see the module docstring); the table and the bounds do not change.
    Validated on construction."""

    w_format: str
    a_bits: int
    w_bits: int
    frac_bits: int
    odd: str = "table"
    a_signed: bool = False

    def __post_init__(self):
        check_act_bits(self.a_bits)
        check_act_signed(self.a_signed)
        check_weight_bits(self.w_format, self.w_bits)
        check_frac_bits(self.w_format, self.w_bits, self.frac_bits)
        if self.odd not in ODD_MODES:
            raise ValueError(f"odd must be one of {', '.join(ODD_MODES)}, not {self.odd!r}")
        if self.odd == "split" and self.w_format != "post":
            raise ValueError(f"odd='split' is for post weights, not {self.w_format}")

    @property
    def split(self):
        """Whether products go into two sums (``split_product``)."""
        return self.odd == "split"

    @property
    def a_max(self):
        """The largest activation magnitude ``|a|``: ``2**a_bits - 1``."""
        return 2 ** self.a_bits - 1

    @property
    def a_range(self):
        """``(lo, hi)``: the activations the format takes, ``(0, a_max)``, or ``(-a_max, a_max)``
        with ``a_signed``."""
        return (-self.a_max if self.a_signed else 0), self.a_max

    @property
    def bound(self):
        """The largest ``|product|``."""
        return product_magnitude_bound(self.w_format, self.a_bits, self.w_bits, self.frac_bits)

    def sum_bits(self, terms):
        """Bits of a signed accumulator that no sum of ``terms`` products can overflow."""
        return signed_bits(terms * self.bound)

    @functools.cached_property
    def table(self):
        """The ``post`` table ``T[|a|]`` for ``|a|`` from 0 to ``a_max`` (an empty list for
        formats or widths without one, and for split sums)."""
        t = (table_frac_bits(self.w_bits, self.frac_bits)
             if self.w_format == "post" and not self.split else None)
        return [] if t is None else odd_table(self.a_bits, t)

    def product(self, a, code):
        """``product(...)`` of the activation ``a`` (a value in ``a_range``) and the weight
        ``code``; ``(s, p)`` of ``split_product`` for split sums."""
        lo, hi = self.a_range
        if not lo <= a <= hi:
            kind = "sign-magnitude" if self.a_signed else "unsigned"
            raise ValueError(f"Activation {a} is outside the {self.a_bits}-bit {kind} range "
                             f"{lo}..{hi}")
        if self.split:
            return split_product(self.w_bits, self.frac_bits, a, code)
        return product(self.w_format, self.w_bits, self.frac_bits, a, code,
                       table=self.table or None)
