"""The fixed-point rescale against its real-valued definition."""

from dataclasses import replace

import numpy as np
import pytest

from core import rescale
from core.adapter import Adapter
from core.rescale import BETA_FRAC, BETA_MAX, BETA_ONE, Z

RNG = np.random.default_rng(3)


def test_rshift_rounds_half_up_and_shifts_left_for_negative_amounts():
    x = np.array([5, 6, 7, -5, -6, -7, 4])
    assert rescale.rshift(x, 1).tolist() == [3, 3, 4, -2, -3, -3, 2]   # 2.5 -> 3, -2.5 -> -2
    assert rescale.rshift(x, 0).tolist() == x.tolist()
    assert rescale.rshift(x, -2).tolist() == (x * 4).tolist()
    assert rescale.rshift(np.array([10, 10]), np.array([2, -1])).tolist() == [3, 20]


@pytest.mark.parametrize("shared", [False, True])
def test_mantissa_precision(shared):
    v = RNG.normal(0, 1, 50) * 10.0 ** RNG.integers(-8, 4, 50)
    m, e = rescale.mantissa(v, shared=shared)
    assert np.abs(m).max() < 2 ** 15
    back = m * np.exp2(-np.asarray(e, dtype=float))
    if shared:
        assert np.abs(back - v).max() <= np.abs(v).max() * 2.0 ** -14
    else:
        np.testing.assert_allclose(back, v, rtol=2.0 ** -14)
    assert rescale.mantissa([0.0, 1.0])[0][0] == 0


def test_mantissa_refuses_non_finite():
    with pytest.raises(ValueError, match=r"^a parameter is not finite \(NaN or infinity\)$"):
        rescale.mantissa([1.0, np.nan])


def _params(c=6, adapter="two"):
    p = dict(bn_scale=RNG.uniform(0.5, 2, c), bn_bias=RNG.normal(0, 0.5, c), s_in=0.07,
             alpha=RNG.uniform(0.05, 0.3, c), frac_bits=10, acc_bound=2 ** 22, next_step=0.11,
             next_bits=4, positions=16)
    if adapter == "two":
        p["adapter"] = Adapter(w1=RNG.normal(0, 0.5, (2, c)), b1=RNG.normal(0, 0.2, 2),
                               w2=RNG.normal(0, 0.3, (1, 2)), b2=np.array([1.0]))
    elif adapter == "one":
        p["adapter"] = Adapter(w1=RNG.normal(0, 0.1, (1, c)), b1=np.array([0.9]))
    return p


def test_affine_matches_the_real_value():
    p = _params()
    r = rescale.fixed_point(**p)
    acc = RNG.integers(-2 ** 20, 2 ** 20, (5, 6, 4, 4))
    beta = RNG.integers(BETA_ONE // 4, 4 * BETA_ONE, 5)
    z = rescale.affine(acc, beta, r) * 2.0 ** -Z
    M = (p["bn_scale"] * p["s_in"] * p["alpha"] * 2.0 ** -10)[None, :, None, None]
    real = M * (beta / BETA_ONE)[:, None, None, None] * acc + p["bn_bias"][None, :, None, None]
    assert np.abs(z - real).max() <= np.abs(real).max() * 2.0 ** -14 + 2.0 ** -Z


@pytest.mark.parametrize("kind", ["two", "one"])
def test_adapter_matches_the_real_adapter(kind):
    p = _params(adapter=kind)
    r = rescale.fixed_point(**p)
    u = np.maximum(RNG.normal(0.5, 1, (7, 6, 4, 4)), 0)
    u_q = np.round(u * 2 ** Z).astype(np.int64)
    beta = rescale.adapter_beta(u_q, r) / BETA_ONE
    g = (u_q * 2.0 ** -Z).mean(axis=(2, 3))
    a = p["adapter"]
    if kind == "two":
        real = np.maximum(np.maximum(g @ a.w1.T + a.b1, 0) @ a.w2.T + a.b2, 0)[:, 0]
    else:
        real = np.maximum(g @ a.w1.T + a.b1, 0)[:, 0]
    np.testing.assert_allclose(beta, np.maximum(real, 2.0 ** -BETA_FRAC), atol=2e-4)


def test_no_adapter_gives_beta_one():
    r = rescale.fixed_point(**_params(adapter=None))
    assert rescale.adapter_beta(np.ones((3, 6, 2, 2), np.int64), r).tolist() == [BETA_ONE] * 3


def test_beta_is_floored_and_capped():
    p = _params(adapter="one")
    p["adapter"] = replace(p["adapter"], b1=np.array([-5.0]))  # relu(negative) = 0 -> floor
    r = rescale.fixed_point(**p)
    assert rescale.adapter_beta(np.zeros((2, 6, 4, 4), np.int64), r).tolist() == [1, 1]
    p["adapter"] = replace(p["adapter"], b1=np.array([1000.0]))  # far above the cap
    r = rescale.fixed_point(**p)
    assert rescale.adapter_beta(np.zeros((2, 6, 4, 4), np.int64), r).tolist() == [BETA_MAX] * 2


@pytest.mark.parametrize("beta", [1, BETA_ONE // 1000, BETA_ONE, 37 * BETA_ONE, BETA_MAX])
def test_requantize_matches_round_of_the_quotient(beta):
    p = _params(adapter=None)
    r = rescale.fixed_point(**p)
    u_q = RNG.integers(0, 2 ** (Z + 4), (4, 6, 3, 3))
    codes = rescale.requantize(u_q, np.full(4, beta), r)
    real = (u_q * 2.0 ** -Z) / (p["next_step"] * beta / BETA_ONE)
    want = np.clip(np.round(real), 0, 15)
    away = np.abs(real - np.floor(real) - 0.5) > 1e-3       # not within reach of a tie
    assert np.array_equal(codes[away], want[away])
    assert codes.min() >= 0 and codes.max() <= 15


def test_requantize_all_zero_and_all_maximal():
    r = rescale.fixed_point(**_params(adapter=None))
    beta = np.full(2, BETA_ONE)
    assert not rescale.requantize(np.zeros((2, 6, 2, 2), np.int64), beta, r).any()
    assert (rescale.requantize(np.full((2, 6, 2, 2), 2 ** 30), beta, r) == 15).all()


def test_pool2d():
    u = np.arange(16).reshape(1, 1, 4, 4)
    assert rescale.pool2d(u, 2).tolist() == [[[[5, 7], [13, 15]]]]
    with pytest.raises(ValueError, match=r"^a 4x4 map cannot be pooled by 3$"):
        rescale.pool2d(u, 3)


@pytest.mark.parametrize("change, message", [
    (dict(s_in=0.0), r"^steps and weight scales must be positive$"),
    (dict(next_step=-1.0), r"^the next layer's step must be positive$"),
    (dict(acc_bound=2 ** 40), r"^accumulators up to \d+ are too wide for the rescale$"),
    (dict(bn_scale=np.full(6, np.inf)), r"^a parameter is not finite"),
])
def test_fixed_point_refusals(change, message):
    with pytest.raises(ValueError, match=message):
        rescale.fixed_point(**{**_params(), **change})


def test_overflow_is_refused_not_wrapped():
    r = rescale.fixed_point(**_params(adapter=None))
    with pytest.raises(ValueError, match=r"^the fixed-point requantization product would "):
        rescale.requantize(np.full((1, 6, 1, 1), 2 ** 60), np.array([1]), r)


def test_a_collapsed_batch_norm_channel_contributes_nothing():
    """A scale far below the fixed point's reach: the channel's z is its bias, never -1."""
    p = _params(c=2, adapter=None)
    p["bn_scale"] = np.array([1e-12, 1.0])
    r = rescale.fixed_point(**p)
    assert r.m[0] == 0 and r.z_shift[0] == rescale.MAX_RIGHT_SHIFT
    z = rescale.affine(np.array([[-300, 7]]), np.array([BETA_ONE]), r)
    assert z[0, 0] == r.bias_q[0]


def test_rshift_at_its_largest_shift():
    assert rescale.rshift(np.array([2 ** 54, -(2 ** 54), 5, -5, 0]), 62).tolist() == [0] * 5
    assert rescale.rshift(np.array([2 ** 61, -(2 ** 61)]), 62).tolist() == [1, 0]   # half up


def test_large_biases_are_refused():
    p = _params(adapter=None)
    p["bn_bias"] = np.full(6, 40000.0)
    with pytest.raises(ValueError, match=r"^a bias is too large for the rescale's 32-bit "
                                         r"parameters \(bias_q\)$"):
        rescale.fixed_point(**p)
