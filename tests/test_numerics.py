"""The number formats: levels, codes, the table and the exact product, checked against
independent computations (high-precision decimals and numpy), not against the module itself."""

from decimal import Decimal, getcontext

import numpy as np
import pytest

from core import numerics
from core.numerics import ProductFormat

getcontext().prec = 60
SQRT_HALF = Decimal(2).sqrt() / 2


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("fmt, base", [("post", np.sqrt(2.0)), ("pot", 2.0)])
def test_levels(fmt, base, bits):
    mags = base ** -np.arange(0, 2 ** (bits - 1) - 1)          # n = 0 .. 2**(b-1) - 2
    want = np.sort(np.concatenate([-mags, [0.0], mags]))
    got = np.array(numerics.weight_levels(fmt, bits))
    assert len(got) == 2 ** bits - 1
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)  # numpy powers drift


def test_post4_levels_match_the_spec():
    # docs/algorithms.md, 'POST levels': magnitudes 1, 0.707, 0.5, 0.354, 0.25, 0.177, 0.125
    # and zero.
    pos = [v for v in numerics.weight_levels("post", 4) if v > 0]
    assert [round(v, 3) for v in sorted(pos, reverse=True)] == \
        [1.0, 0.707, 0.5, 0.354, 0.25, 0.177, 0.125]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("fmt", ["post", "pot", "int"])
def test_codes_round_trip(fmt, bits):
    for code in range(2 ** bits):
        value = numerics.weight_value(fmt, bits, code)
        back = numerics.nearest_code(fmt, bits, value)
        if value == 0:
            assert back == numerics.zero_code()
        else:
            assert back == code


def test_int_codes_are_twos_complement():
    assert [numerics.weight_value("int", 3, c) for c in range(8)] == [0, 1, 2, 3, -4, -3, -2, -1]


def test_nearest_code_saturates_and_breaks_ties_to_the_smaller_magnitude():
    assert numerics.weight_value("post", 4, numerics.nearest_code("post", 4, 7.0)) == 1.0
    assert numerics.weight_value("post", 4, numerics.nearest_code("post", 4, -7.0)) == -1.0
    # 0.0625 lies exactly halfway between 0 and 0.125.
    assert numerics.nearest_code("post", 4, 0.0625) == 0
    assert numerics.weight_value("pot", 4, numerics.nearest_code("pot", 4, 0.75)) == 0.5


@pytest.mark.parametrize("t", [0, 1, 5, 8, 12])
def test_odd_table_is_correctly_rounded(t):
    table = numerics.odd_table(8, t)
    for a, entry in enumerate(table):
        exact = a * SQRT_HALF * 2 ** t
        assert abs(Decimal(entry) - exact) < Decimal("0.5")


@pytest.mark.parametrize("fmt, bits", [("post", 2), ("post", 3), ("post", 4), ("post", 5),
                                       ("pot", 3), ("pot", 4), ("int", 4), ("int", 8)])
def test_product_against_real_values(fmt, bits):
    f = numerics.default_frac_bits(fmt, bits)
    pf = ProductFormat(w_format=fmt, a_bits=6, w_bits=bits, frac_bits=f)
    t = numerics.table_frac_bits(bits, f)
    for code in range(2 ** bits):
        w = Decimal(numerics.weight_value(fmt, bits, code)) if fmt != "post" else None
        sign, m = numerics.split_code(bits, code)
        n = m - 1
        for a in range(0, 64, 3):
            got = pf.product(a, code)
            if fmt == "post":
                if m == 0:
                    assert got == 0
                    continue
                exact = a * (SQRT_HALF ** n) * 2 ** f * (-1 if sign else 1)
                if n % 2 == 0:
                    assert Decimal(got) == exact.to_integral_value()
                else:   # only the table rounds: half a table unit, shifted
                    shift = (numerics.max_exponent(bits) - 1) // 2 - n // 2
                    assert abs(Decimal(got) - exact) < Decimal(2) ** (shift - 1) + Decimal(1e-30)
                    assert shift >= 0 and t is not None
            else:
                assert got == int(a * w * 2 ** f)


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_split_products_are_exact_shifts(bits):
    """Split sums: even exponents in sum 0, odd ones in sum 1, each ``+-a * 2**(F - n // 2)``
    exactly, so that ``E + O * sqrt(2)/2`` is the real product (to 60 digits)."""
    f = numerics.default_frac_bits("post", bits, "split")
    assert f == numerics.min_frac_bits("post", bits)
    pf = ProductFormat(w_format="post", a_bits=6, w_bits=bits, frac_bits=f, odd="split")
    assert pf.table == [] and pf.bound == 63 << f
    for code in range(2 ** bits):
        sign, m = code >> (bits - 1), code & (2 ** (bits - 1) - 1)
        for a in range(0, 64, 5):
            s, p = pf.product(a, code)
            if m == 0:
                assert (s, p) == (0, 0)
                continue
            n = m - 1
            assert s == n % 2 and p == (-1) ** sign * a * 2 ** (f - n // 2)
            exact = a * SQRT_HALF ** n * 2 ** f * (-1) ** sign
            assert abs(Decimal(p) * (SQRT_HALF if s else 1) - exact) < Decimal(1e-40)


def test_split_sums_are_for_post_only():
    with pytest.raises(ValueError, match=r"^odd='split' is for post weights, not pot$"):
        ProductFormat(w_format="pot", a_bits=4, w_bits=4, frac_bits=6, odd="split")
    with pytest.raises(ValueError, match=r"^odd must be one of table, split, not 'both'$"):
        ProductFormat(w_format="post", a_bits=4, w_bits=4, frac_bits=6, odd="both")


def test_product_bound_is_tight():
    pf = ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10)
    largest = max(abs(pf.product(a, c)) for a in range(256) for c in range(16))
    assert largest == pf.bound == 255 * 2 ** 10
    pi = ProductFormat(w_format="int", a_bits=4, w_bits=4, frac_bits=0)
    assert max(abs(pi.product(a, c)) for a in range(16) for c in range(16)) == pi.bound == 120


def test_sum_bits_holds_the_extremes_and_no_fewer():
    pf = ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10)
    bits = pf.sum_bits(8)
    extreme = 8 * pf.bound
    assert -(2 ** (bits - 1)) <= -extreme and extreme <= 2 ** (bits - 1) - 1
    assert extreme > 2 ** (bits - 2) - 1     # one bit fewer would overflow


@pytest.mark.parametrize("fmt, bits, lowest", [("post", 2, 0), ("post", 3, 1), ("post", 4, 3),
                                               ("post", 5, 7), ("pot", 4, 6), ("int", 4, 0)])
def test_min_frac_bits(fmt, bits, lowest):
    assert numerics.min_frac_bits(fmt, bits) == lowest


@pytest.mark.parametrize("call, message", [
    (lambda: numerics.check_weight_bits("post", 1),
     r"^w_bits must be from 2 to 8 for post weights, not 1$"),
    (lambda: numerics.check_weight_format("fp8"),
     r"^w_format must be one of post, pot, int, not 'fp8'$"),
    (lambda: numerics.check_act_bits(9), r"^a_bits must be from 1 to 8, not 9$"),
    (lambda: numerics.check_frac_bits("post", 4, 2),
     r"^frac_bits must be at least 3 for 4-bit post weights \(every shift a left shift\), "
     r"not 2$"),
    (lambda: numerics.check_frac_bits("int", 4, 2), r"^frac_bits must be 0 for int weights, "
                                                    r"not 2$"),
])
def test_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_type_refusal():
    with pytest.raises(TypeError, match=r"^w_bits must be an integer, not '4'$"):
        numerics.check_weight_bits("post", "4")


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_code_layout_helpers(bits):
    """split_code/join_code: the sign is the top bit, the magnitude the rest; int_code: two's
    complement; the same on ints, numpy arrays and torch-like operators."""
    codes = np.arange(2 ** bits)
    sign, m = numerics.split_code(bits, codes)
    assert (sign == codes // 2 ** (bits - 1)).all() and (m == codes % 2 ** (bits - 1)).all()
    assert (numerics.join_code(bits, sign, m) == codes).all()
    assert numerics.split_code(bits, 2 ** bits - 1) == (1, 2 ** (bits - 1) - 1)
    values = np.arange(-2 ** (bits - 1), 2 ** (bits - 1))
    patterns = numerics.int_code(bits, values)
    assert patterns.min() == 0 and patterns.max() == 2 ** bits - 1
    assert [numerics.weight_value("int", bits, int(p)) for p in patterns] == values.tolist()
    assert (numerics.int_value(bits, patterns) == values).all()
    assert numerics.int_value(bits, 2 ** (bits - 1)) == -2 ** (bits - 1)
