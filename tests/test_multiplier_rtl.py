# amaranth: UnusedElaboratable=no
"""Every multiplier on Verilator, exhaustively: every activation code x every weight code
(signed activation codes in sign-magnitude too)."""

import re

import numpy as np
import pytest
from amaranth.back import verilog

from core.numerics import ProductFormat, default_frac_bits
from hw.multiplier import PostMultiplier, StandaloneMultiplier, make_multiplier
from sim.array_sim import MultiplierSim
from sim.golden import product_table

FORMATS = [ProductFormat(w_format=f, a_bits=a, w_bits=w, frac_bits=default_frac_bits(f, w))
           for f in ("post", "pot") for w in (3, 4) for a in (4, 8)]
SPLIT = [ProductFormat(w_format="post", a_bits=a, w_bits=w,
                       frac_bits=default_frac_bits("post", w, "split"), odd="split")
         for w in (3, 4) for a in (4, 8)]
FORMATS.append(ProductFormat(w_format="int", a_bits=4, w_bits=4, frac_bits=0))
SIGNED = [ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10, a_signed=True),
          ProductFormat(w_format="int", a_bits=4, w_bits=4, frac_bits=0, a_signed=True),
          ProductFormat(w_format="post", a_bits=4, w_bits=3, odd="split", a_signed=True,
                        frac_bits=default_frac_bits("post", 3, "split"))]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f.w_format}{f.w_bits}_a{f.a_bits}")
def test_exhaustive(fmt, build_root):
    pairs = [(a, w) for a in range(2 ** fmt.a_bits) for w in range(2 ** fmt.w_bits)]
    got = MultiplierSim(fmt, build_root).products(pairs)
    want = product_table(fmt)
    assert got == [int(want[a, w]) for a, w in pairs]


@pytest.mark.parametrize("fmt", SIGNED,
                         ids=lambda f: f"{f.w_format}{f.w_bits}_{f.odd}_as{f.a_bits}")
def test_exhaustive_signed(fmt, build_root):
    """Every sign and ``a_bits``-bit magnitude (a signed layer's two's-complement codes and an
    unsigned layer's codes; the host gives the array magnitude and sign) x every weight code:
    ``sign(a) * product(|a|, w)``, the golden model's table."""
    lo, hi = fmt.a_range
    pairs = [(a, w) for a in range(lo, hi + 1) for w in range(2 ** fmt.w_bits)]
    got = MultiplierSim(fmt, build_root).products(pairs)
    table = product_table(fmt)          # row a is activation a (negative indices too)
    if fmt.split:           # a zero product's sum does not matter
        want = [(1, int(table[1, a, w])) if table[1, a, w] else (0, int(table[0, a, w]))
                for a, w in pairs]
        assert [(s if p else 0, p) for s, p in got] == [(s if p else 0, p) for s, p in want]
    else:
        assert got == [int(table[a, w]) for a, w in pairs]
    assert max(abs(p if not fmt.split else p[1]) for p in got) == fmt.bound


@pytest.mark.parametrize("fmt", SPLIT, ids=lambda f: f"post{f.w_bits}_split_a{f.a_bits}")
def test_exhaustive_split(fmt, build_root):
    """Which sum, and the exact shift, for every activation x weight code."""
    pairs = [(a, w) for a in range(2 ** fmt.a_bits) for w in range(2 ** fmt.w_bits)]
    got = MultiplierSim(fmt, build_root).products(pairs)
    table = product_table(fmt)
    want = [(1, int(table[1, a, w])) if table[1, a, w] else (0, int(table[0, a, w]))
            for a, w in pairs]
    # A zero product's sum does not matter (it adds 0 to either).
    assert [(s if p else 0, p) for s, p in got] == [(s if p else 0, p) for s, p in want]


def _operators(component):
    text = verilog.convert(component, name="top", emit_src=False)
    text = re.sub(r"\(\*.*?\*\)", "", text)          # attributes: (* ... *)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return text.replace("@*", "")                     # always @*


@pytest.mark.parametrize("fmt", FORMATS[:-1] + SPLIT,
                         ids=lambda f: f"{f.w_format}{f.w_bits}_{f.odd}_a{f.a_bits}")
def test_exponent_multipliers_use_no_multiply(fmt):
    assert "*" not in _operators(StandaloneMultiplier(fmt=fmt))


def test_int_multiplier_does_multiply():
    assert "*" in _operators(StandaloneMultiplier(fmt=FORMATS[-1]))


def test_interface():
    fmt = ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10)
    mul = make_multiplier(fmt)
    assert isinstance(mul, PostMultiplier) and mul.fmt is fmt
    # The stored weight: sign, non-zero, source, sum, and a shift of 0..3 above the source's
    # smallest (a << 7..10, T[a] << 0..2).
    assert list(mul.weight_shape.members) == ["neg", "present", "use_t", "odd", "shift"]
    assert mul.weight_shape.size == 6 and len(mul.neg) == 1 and len(mul.mag) == 18
    assert len(mul.x.a) == 8 and len(mul.x.t) == (255 * 181).bit_length()
    pot = make_multiplier(ProductFormat(w_format="pot", a_bits=8, w_bits=4, frac_bits=6))
    assert not hasattr(pot.x, "t")
    assert make_multiplier(FORMATS[-1]).weight_shape == 4        # int: the code itself


def test_wrong_format_refused():
    with pytest.raises(ValueError, match=r"^PostMultiplier multiplies post weights, not pot$"):
        PostMultiplier(fmt=ProductFormat(w_format="pot", a_bits=8, w_bits=4, frac_bits=6))
