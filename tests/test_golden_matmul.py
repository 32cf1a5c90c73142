"""The golden matrix product against independent references: exact for pot and int, within the
table's stated bound for post."""

import numpy as np
import pytest

from core.numerics import ProductFormat, max_exponent
from sim.golden import matmul, matmul_exact, product_table, table_error

RNG = np.random.default_rng(7)


def _rand(fmt, m, k, n):
    return (RNG.integers(0, 2 ** fmt.a_bits, (m, k)), RNG.integers(0, 2 ** fmt.w_bits, (k, n)))


@pytest.mark.parametrize("fmt", [ProductFormat(w_format="pot", a_bits=8, w_bits=4, frac_bits=6),
                                 ProductFormat(w_format="int", a_bits=8, w_bits=8, frac_bits=0)])
def test_exact_formats_equal_the_real_product(fmt):
    A, W = _rand(fmt, 13, 9, 7)
    exact = matmul_exact(A, W, fmt)
    assert np.array_equal(matmul(A, W, fmt), exact.astype(np.int64))
    assert np.array_equal(exact, np.round(exact))


def test_int_matches_numpy_matmul():
    fmt = ProductFormat(w_format="int", a_bits=4, w_bits=4, frac_bits=0)
    A, W = _rand(fmt, 6, 5, 4)
    signed = np.where(W >= 8, W - 16, W)
    assert np.array_equal(matmul(A, W, fmt), A @ signed)


@pytest.mark.parametrize("w_bits, frac_bits", [(3, 8), (4, 10), (4, 3), (5, 14)])
def test_post_error_is_within_the_table_bound(w_bits, frac_bits):
    fmt = ProductFormat(w_format="post", a_bits=8, w_bits=w_bits, frac_bits=frac_bits)
    A, W = _rand(fmt, 20, 16, 8)
    err = np.abs(matmul(A, W, fmt) - matmul_exact(A, W, fmt))
    # Each odd product errs by at most half a table unit, 2**(k_odd - 1) units of 2**-F.
    k_odd = (max_exponent(w_bits) - 1) // 2
    assert err.max() <= 16 * 2.0 ** (k_odd - 1)
    abs_err, rel_err = table_error(fmt)
    assert 0 < abs_err <= 2.0 ** (k_odd - 1)
    assert rel_err < 2.0 ** -(frac_bits - k_odd)


def test_post_even_exponents_are_exact():
    fmt = ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10)
    even_codes = [c for c in range(16) if (c & 7) == 0 or ((c & 7) - 1) % 2 == 0]
    A = RNG.integers(0, 256, (10, 6))
    W = RNG.choice(even_codes, (6, 5))
    assert np.array_equal(matmul(A, W, fmt), matmul_exact(A, W, fmt).astype(np.int64))


def test_product_table_shape_and_zero_row():
    fmt = ProductFormat(w_format="post", a_bits=4, w_bits=3, frac_bits=8)
    table = product_table(fmt)
    assert table.shape == (16, 8) and table.dtype == np.int64
    assert not table[0].any() and not table[:, 0].any() and not table[:, 4].any()


@pytest.mark.parametrize("A, W, message", [
    (np.zeros((2, 3), int), np.zeros((4, 2), int), r"^A is 2x3 but W is 4x2: the inner "),
    (np.full((2, 3), 16), np.zeros((3, 2), int), r"^A holds the code 16, outside the 4-bit "),
    (np.zeros((2, 3), int), np.full((3, 2), -1), r"^W holds the code -1, outside the 3-bit "),
    (np.zeros(3, int), np.zeros((3, 2), int), r"^A must have 2 dimensions, not 1$"),
    (np.zeros((2, 3)) + 0.5, np.zeros((3, 2), int), r"^A must hold integer codes, not float64$"),
])
def test_refusals(A, W, message):
    fmt = ProductFormat(w_format="post", a_bits=4, w_bits=3, frac_bits=8)
    with pytest.raises(ValueError, match=message):
        matmul(A, W, fmt)
