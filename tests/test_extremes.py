# amaranth: UnusedElaboratable=no
"""Numbers at the edges: for every configuration the generator accepts, the largest sums
(every activation maximal, every weight at its largest magnitude with one sign, the largest
``K``) are exact in the golden model and fit the widths the generator derives; on the RTL, the
matmul engine's buffer at its largest ``K`` with the array's own format (the int8 case is in
``test_engine_rtl``, the array's in ``test_array_rtl``)."""

import numpy as np
import pytest

from core.config import ArrayConfig
from core.numerics import WEIGHT_BITS, WEIGHT_FORMATS, product, signed_bits
from sim.engine_sim import EngineSim
from sim.golden import matmul
from sim.selfcheck import selfcheck_products

from .test_engine_rtl import CFG


def _accepted(**kw):
    try:
        return ArrayConfig(**kw)
    except ValueError:
        return None


def _largest_max_k(base):
    """The largest ``max_k`` that the generator accepts for ``base`` (bisection)."""
    lo, hi = 1, 1 << 20
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _accepted(**{**base, "max_k": mid}):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _extreme_weights(cfg):
    """The codes of the largest positive and the largest negative weight."""
    cfg_products = selfcheck_products(cfg, np.random.default_rng(0))
    named = {name: W for name, _, W in cfg_products}
    return int(named["largest positive sums"][0, 0]), int(named["largest negative sums"][0, 0])


CONFIGS = [(fmt, w, a) for fmt in WEIGHT_FORMATS for w in WEIGHT_BITS for a in (1, 4, 8)]


def _largest(fmt, w_bits, a_bits):
    """The accepted configuration with the most rows (up to 64) and the largest ``max_k``, or
    ``None`` when the generator accepts none."""
    base = dict(rows=64, cols=2, a_bits=a_bits, w_bits=w_bits, w_format=fmt, max_k=1)
    rows = [r for r in (64, 32, 16, 8, 4, 2, 1) if _accepted(**{**base, "rows": r})]
    if not rows:
        return None
    base["rows"] = rows[0]
    return ArrayConfig(**{**base, "max_k": _largest_max_k(base)})


def _check_extremes(cfg, terms, width):
    """The golden sums of ``terms`` extreme products equal the exact integers and fit
    ``width`` bits."""
    fmt = cfg.product_format
    pos, neg = _extreme_weights(cfg)
    A = np.full((1, terms), 2 ** cfg.a_bits - 1)
    W = np.tile([pos, neg], (terms, 1))
    a_max = 2 ** cfg.a_bits - 1
    single = [int(product(fmt.w_format, fmt.w_bits, fmt.frac_bits, a_max, c)) for c in (pos, neg)]
    assert max(map(abs, single)) == fmt.bound                # one of them is the largest
    exact = [terms * p for p in single]                      # Python ints: no wrap
    assert matmul(A, W, fmt).tolist() == [exact]
    assert max(signed_bits(abs(x)) for x in exact) <= width <= 64


@pytest.mark.parametrize("fmt, w_bits, a_bits", CONFIGS)
def test_largest_sums_fit_every_width(fmt, w_bits, a_bits):
    cfg = _largest(fmt, w_bits, a_bits)
    if cfg is None:                 # the generator refuses it: the sums would not fit 64 bits
        with pytest.raises(ValueError, match=r"^acc_bits would be \d+, more than 64"):
            ArrayConfig(rows=1, a_bits=a_bits, w_bits=w_bits, w_format=fmt, max_k=1)
        return
    _check_extremes(cfg, cfg.rows, cfg.acc_bits)              # one array pass
    fmt_ = cfg.product_format
    assert signed_bits(cfg.max_k * fmt_.bound) <= cfg.buffer_bits <= 64   # the buffer


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS)
def test_golden_at_the_largest_k(fmt):
    """The widest accepted configuration of each format, over the largest ``K`` accepted."""
    cfg = max((c for c in (_largest(fmt, w, 8) for w in WEIGHT_BITS) if c is not None),
              key=lambda c: (c.max_k * c.product_format.bound).bit_length())
    _check_extremes(cfg, cfg.max_k, cfg.buffer_bits)


def test_engine_buffer_at_the_largest_k_with_post_weights(build_root):
    engine = EngineSim(CFG, build_root)            # the build of test_engine_rtl, shared
    pos, neg = _extreme_weights(CFG)
    A = np.full((3, CFG.max_k), 255)
    W = np.tile([pos, neg, pos], (CFG.max_k, 1))
    run = engine.run([(A, W, "post", CFG.w_bits)], seed=2, stall=0.2, backpressure=0.2,
                     name="extreme_post")
    fmt = CFG.product_format
    p, n = (CFG.max_k * int(product("post", CFG.w_bits, fmt.frac_bits, 255, c)) for c in (pos, neg))
    assert run.lasts_ok and max(abs(p), abs(n)) == CFG.max_k * fmt.bound
    assert run.results[0].tolist() == [[p, n, p]] * 3
