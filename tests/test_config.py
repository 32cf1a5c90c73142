"""The array configuration: derived values and the refusal of bad combinations."""

import pytest

from core.config import ArrayConfig


def test_init():
    c = ArrayConfig(rows=4, cols=3, a_bits=8, w_bits=4, w_format="post")
    assert (c.rows, c.cols, c.a_bits, c.w_bits, c.w_format) == (4, 3, 8, 4, "post")
    assert c.frac_bits == 10            # n_max = 6: k_odd = 2, table with 8 fractional bits
    assert c.table_frac_bits == 8
    assert c.product_bound == 255 * 2 ** 10
    assert c.magnitude_bits == 18
    # Row r sums r + 1 products of at most 255 * 2**10: 18 bits + sign, growing with log2.
    assert [c.psum_bits(r) for r in range(4)] == [19, 20, 21, 21]
    assert c.acc_bits == c.min_acc_bits == 21
    # Skew, product register and sum, de-skew (hw.pe), then the result queue's three clocks
    # (its block RAM's output registered).
    assert c.latency == 4 + 3 + 4
    assert c.cycles(10) == 4 + 10 + 11
    assert c.cycles(10, tiles=3) == 4 + 2 * 10 + 10 + 11
    assert c.cycles(3, tiles=3) == 4 + 2 * (4 + 3) + 3 + 11     # weights load behind a tile
    # 4096 products of up to 255 * 2**10, or 8-bit int bit planes: 18 + 12 bits + sign.
    assert (c.max_k, c.max_m, c.buffer_bits) == (4096, 64, 31)


def test_defaults():
    c = ArrayConfig()
    assert (c.rows, c.cols, c.a_bits, c.w_bits, c.w_format) == (8, 8, 8, 4, "post")


@pytest.mark.parametrize("fmt, bits, frac, table", [("pot", 4, 6, None), ("int", 8, 0, None),
                                                    ("post", 3, 8, 8), ("post", 2, 0, None)])
def test_derived_frac_bits(fmt, bits, frac, table):
    c = ArrayConfig(w_format=fmt, w_bits=bits)
    assert c.frac_bits == frac and c.table_frac_bits == table


def test_split_sums_need_no_table_bits():
    c = ArrayConfig(rows=4, odd="split")
    assert (c.frac_bits, c.table_frac_bits, c.split) == (3, None, True)
    assert c.acc_bits == c.psum_bits(3) and c.acc_bits < ArrayConfig(rows=4).acc_bits
    assert "split" in c.key() and c.key() != ArrayConfig(rows=4, frac_bits=3).key()


def test_replace_derives_again_unless_given():
    c = ArrayConfig(rows=4)
    bigger = c.replace(rows=16, w_bits=3)
    assert bigger.frac_bits == 8 and bigger.acc_bits == bigger.min_acc_bits
    explicit = ArrayConfig(rows=4, acc_bits=30).replace(rows=5)
    assert explicit.acc_bits == 30


def test_explicit_wider_accumulator_is_kept():
    assert ArrayConfig(rows=4, acc_bits=32).acc_bits == 32


def test_frozen():
    with pytest.raises(AttributeError):
        ArrayConfig().rows = 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0), r"^rows must be from 1 to 64, not 0$"),
    (dict(cols=65), r"^cols must be from 1 to 64, not 65$"),
    (dict(w_bits=1), r"^w_bits must be from 2 to 8 for post weights, not 1$"),
    (dict(a_bits=0), r"^a_bits must be from 1 to 8, not 0$"),
    (dict(w_format="fp4"), r"^w_format must be one of post, pot, int, not 'fp4'$"),
    (dict(frac_bits=2), r"^frac_bits must be at least 3 for 4-bit post weights"),
    (dict(rows=4, acc_bits=20), r"^acc_bits must be at least 21 for 4 rows of 8-bit x 4-bit "
                                r"post products with frac_bits=10, not 20$"),
    (dict(w_bits=8), r"^acc_bits would be \d+, more than 64: use fewer w_bits or frac_bits$"),
    (dict(max_k=0), r"^max_k must be from 1 to 1048576, not 0$"),
    (dict(w_format="pot", odd="split"), r"^odd='split' is for post arrays, not pot$"),
    (dict(odd="none"), r"^odd must be one of table, split, not 'none'$"),
    (dict(w_bits=6, frac_bits=40, max_k=2 ** 20), r"^buffer_bits would be 69, more than 64: use a "
                                                  r"smaller max_k$"),
])
def test_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArrayConfig(**kwargs)


def test_type_refusal():
    with pytest.raises(TypeError, match=r"^rows must be an integer, not 4.0$"):
        ArrayConfig(rows=4.0)
