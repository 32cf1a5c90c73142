"""Signed-digit terms: how 8-bit (or narrower) ``int`` weights run on a ``post``/``pot`` array.

A weight is written in non-adjacent form (NAF: signed binary digits in {-1, 0, 1}, no two
adjacent ones non-zero, ``sum(d_i * 2**i) == w``) and its digits are cut into windows of
``width`` positions; a ``post`` code of an even exponent (or any ``pot`` code) holds one digit
of a window exactly, as ``+-2**(p - w*width - (width-1))``. A window has at most ``terms``
non-zero digits, so that ``terms`` weight codes per weight cover it: the host stacks them along
``K`` (``sim.engine_sim.digit_terms``) and the accumulator buffer adds each window shifted by
``w * width`` (``hw.accumulator``). For 8-bit weights on a 4-bit ``post`` array: two windows of
four positions, two terms each, so ``4 K`` rows where bit planes needed ``8 K``.
"""

import functools

import numpy as np

from .numerics import max_exponent

__all__ = ["naf", "digit_shape", "digit_window", "digit_rows"]


def naf(values):
    """The non-adjacent form of integers: ``[d_0, d_1, ...]``, arrays of digits in {-1, 0, 1}
    with ``sum(d_i * 2**i) == values`` and no two adjacent non-zero digits."""
    v = np.array(values, dtype=np.int64)
    digits = []
    while (v != 0).any():
        d = np.where(v & 1, 2 - (v & 3), 0)
        digits.append(d)
        v = (v - d) >> 1
    return digits


@functools.lru_cache(maxsize=None)
def digit_shape(bits, width):
    """``(windows, terms)`` for every ``bits``-bit two's-complement weight: its NAF digits in
    windows of ``width`` positions, at most ``terms`` non-zero digits in any window."""
    digits = naf(np.arange(-2 ** (bits - 1), 2 ** (bits - 1)))
    windows = -(-len(digits) // width)
    terms = max(int(sum(np.abs(d) for d in digits[w * width:(w + 1) * width]).max())
                for w in range(windows))
    return windows, terms


def digit_window(config, bits=8):
    """Bit positions that one window of ``bits``-bit ``int`` weights covers on a
    ``post``/``pot`` array. Its codes hold the powers of two ``2**0 .. 2**-(width-1)`` exactly
    (``post``: the even exponents; ``pot``: all; as far as ``F`` fractional bits go); of the
    widths up to that, the one with the fewest stacked rows (``windows x terms``), then the
    fewest windows."""
    n_max = max_exponent(config.w_bits)
    widest = min(n_max // 2 + 1 if config.w_format == "post" else n_max + 1,
                 config.frac_bits + 1)

    def cost(width):
        windows, terms = digit_shape(bits, width)
        return windows * terms, windows

    return min(range(1, widest + 1), key=cost)


def digit_rows(config, bits=8):
    """``(windows, terms)`` of ``bits``-bit ``int`` weights on ``config``'s array."""
    return digit_shape(bits, digit_window(config, bits))
