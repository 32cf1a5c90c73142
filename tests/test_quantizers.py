"""Tests of export.quantizers against hand computations (numpy) of docs/algorithms.md (LSQ,
ASQ, POT and POST)."""

import math

import numpy as np
import pytest
import torch

from export.quantizers import (
    AdapterNet, AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer, grad_scale, round_pass,
)
from core.numerics import nearest_code, split_code, weight_levels, weight_value

EXPONENT_QUANTIZERS = {"post": PostQuantizer, "pot": PotQuantizer}
BASES = {"post": math.sqrt(2.0), "pot": 2.0}


def set_scale(quantizer, value):
    """Mark ``quantizer`` initialised with its scale (step or alpha) set to ``value``."""
    scale = getattr(quantizer, quantizer.SCALE)
    with torch.no_grad():
        scale.copy_(torch.as_tensor(value, dtype=torch.float32))
        quantizer.initialized.fill_(True)
    return quantizer


def np64(t):
    return t.detach().double().numpy()


def mixed(shape, scale, seed):
    """Values of both signs, many beyond ``scale`` (clipped), none on a tie or a bound."""
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(shape, generator=g) * 2 - 1) * scale).to(torch.float32)


# --- straight-through helpers ------------------------------------------------------------------

def test_round_pass_value_and_gradient():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 1.2999], requires_grad=True)
    y = round_pass(x)
    assert y.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 1.0]  # half to even
    y.sum().backward()
    assert x.grad.tolist() == [1.0] * 6


def test_grad_scale_value_and_gradient():
    x = torch.tensor([0.3, 7.1], requires_grad=True)
    y = grad_scale(x, 0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0])).sum().backward()
    assert x.grad.tolist() == [0.25, 0.5]


# --- LSQ -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits, signed, qn, qp", [
    (1, False, 0, 1), (4, False, 0, 15), (8, False, 0, 255),
    (2, True, -2, 1), (4, True, -8, 7), (8, True, -128, 127),
])
def test_lsq_init(bits, signed, qn, qp):
    q = LsqQuantizer(bits=bits, signed=signed)
    assert (q.bits, q.signed, q.qn, q.qp, q.per_channel) == (bits, signed, qn, qp, None)
    assert q.step.shape == () and not q.initialized
    assert LsqQuantizer(bits=bits, signed=signed, per_channel=5).step.shape == (5,)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(bits=9, signed=False), ValueError, "Unsigned bits must be from 1 to 8, not 9"),
    (dict(bits=0, signed=False), ValueError, "Unsigned bits must be from 1 to 8, not 0"),
    (dict(bits=1, signed=True), ValueError, "Signed bits must be from 2 to 8, not 1"),
    (dict(bits=9, signed=True), ValueError, "Signed bits must be from 2 to 8, not 9"),
    (dict(bits=4.0, signed=True), TypeError, "Signed bits must be an integer, not 4.0"),
    (dict(bits="4", signed=False), TypeError, "Unsigned bits must be an integer, not '4'"),
    (dict(bits=4, signed=1), TypeError, "Signed must be a bool, not 1"),
    (dict(bits=4, signed=True, per_channel=0), ValueError,
     "Channel count must be at least 1, not 0"),
    (dict(bits=4, signed=True, per_channel=2.0), TypeError,
     "Channel count must be an integer, not 2.0"),
])
def test_lsq_refuses(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        LsqQuantizer(**kwargs)


def test_lsq_codes_round_half_to_even():
    q = set_scale(LsqQuantizer(bits=4, signed=True), 0.5)
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, -0.25, -0.75, -1.25, 100.0, -100.0])
    assert q.codes(x).tolist() == [0, 2, 2, 4, 0, -2, -2, 7, -8]
    assert q.codes(x).dtype == torch.int64


@pytest.mark.parametrize("per_channel", [None, 3])
def test_lsq_initialises_from_first_training_batch(per_channel):
    q = LsqQuantizer(bits=4, signed=False, per_channel=per_channel)
    x = mixed((3, 5, 2), 2.0, seed=1)
    q.train()
    q(x)
    axis = None if per_channel is None else 1
    expected = 2 * np.abs(np64(x).reshape(3, -1)).mean(axis=axis) / math.sqrt(15)
    np.testing.assert_allclose(np64(q.step), expected, rtol=1e-6)
    assert q.initialized
    q(x * 10)  # only the first batch initialises
    np.testing.assert_allclose(np64(q.step), expected, rtol=1e-6)


@pytest.mark.parametrize("make, x", [
    (lambda: LsqQuantizer(bits=4, signed=False), torch.ones(2, 3)),
    (lambda: AsqQuantizer(bits=4, channels=3, kind="linear"), torch.ones(2, 3)),
    (lambda: PostQuantizer(bits=4, channels=2), torch.ones(2, 3)),
    (lambda: PotQuantizer(bits=4, channels=2), torch.ones(2, 3)),
])
def test_uninitialised_quantizer_refuses(make, x):
    quantizer = make()
    message = f"^{type(quantizer).__name__} is not initialised: run one forward pass in training"
    quantizer.eval()
    with pytest.raises(RuntimeError, match=message):
        quantizer(x)
    quantizer.train()
    with pytest.raises(RuntimeError, match=message):
        quantizer.codes(x)
    quantizer(x)
    quantizer.eval()
    quantizer.codes(x)


def lsq_reference(x, s, qn, qp, r):
    """dL/dx and dL/ds (before the gradient scale) for L = sum(x_hat * r), per
    docs/algorithms.md, 'LSQ'."""
    v = x / s
    inside = (qn <= v) & (v <= qp)
    dxhat_ds = np.where(v < qn, qn, np.where(v > qp, qp, np.round(v) - v))
    return r * inside, r * dxhat_ds


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("per_channel", [None, 2])
def test_lsq_gradients(signed, per_channel):
    q = LsqQuantizer(bits=3, signed=signed, per_channel=per_channel)
    s = [0.3] if per_channel is None else [0.3, 0.17]
    set_scale(q, s if per_channel else s[0])
    x = mixed((2, 4, 3), 4.0, seed=2).requires_grad_()
    r = mixed((2, 4, 3), 1.0, seed=3)
    (q(x) * r).sum().backward()

    s_np = np.array(s).reshape(-1, 1, 1)
    dx, ds = lsq_reference(np64(x), s_np, q.qn, q.qp, np64(r))
    assert 0 < (dx == 0).sum() < dx.size  # both paths are exercised
    n = x.numel() if per_channel is None else x.numel() // 2
    g = 1 / math.sqrt(n * q.qp)
    expected_ds = g * (ds.sum() if per_channel is None else ds.sum(axis=(1, 2)))
    np.testing.assert_allclose(np64(x.grad), dx, rtol=1e-6)
    np.testing.assert_allclose(np64(q.step.grad), expected_ds, rtol=1e-5)


def test_lsq_gradient_on_the_bound_counts_as_inside():
    q = set_scale(LsqQuantizer(bits=2, signed=False), 0.5)
    x = torch.tensor([1.5, 0.0], requires_grad=True)  # x/s = Qp = 3 and Qn = 0 exactly
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]
    assert q.step.grad.item() == 0.0


@pytest.mark.parametrize("signed, per_channel", [(False, None), (True, 3)])
def test_lsq_forward_is_codes_times_step(signed, per_channel):
    q = LsqQuantizer(bits=4, signed=signed, per_channel=per_channel)
    x = mixed((3, 8, 5), 3.0, seed=4)
    q.train()
    y = q(x)
    step = q.step if per_channel is None else q.step.view(3, 1, 1)
    assert torch.equal(y, q.codes(x).to(torch.float32) * step)


def test_lsq_refuses_wrong_channel_count():
    q = LsqQuantizer(bits=4, signed=True, per_channel=3)
    with pytest.raises(ValueError, match=r"^LsqQuantizer expects a tensor with 3 channels in "
                                         r"dimension 0, not shape \(2, 4\)$"):
        q(torch.ones(2, 4))


# --- ASQ: the adapter ----------------------------------------------------------------------------

@pytest.mark.parametrize("channels, reduction, hidden, out_in", [
    (16, 4, 4, 4), (8, 4, 2, 2), (7, 4, None, 7), (1, 4, None, 1), (6, 3, 2, 2), (5, 3, None, 5),
])
def test_adapter_shapes(channels, reduction, hidden, out_in):
    a = AdapterNet(channels=channels, reduction=reduction)
    if hidden is None:
        assert a.hidden is None
    else:
        assert (a.hidden.in_features, a.hidden.out_features) == (channels, hidden)
    assert (a.output.in_features, a.output.out_features) == (out_in, 1)
    assert torch.all(a.output.bias == 1.0)


def test_adapter_last_layer_init_statistics():
    torch.manual_seed(0)
    w = AdapterNet(channels=4096, reduction=1).output.weight
    assert abs(w.mean().item()) < 1e-3 and 0.0095 < w.std().item() < 0.0105


@pytest.mark.parametrize("channels, kind, shape", [
    (16, "conv", (32, 16, 6, 6)), (4, "conv", (32, 4, 6, 6)),
    (64, "linear", (32, 64)), (5, "linear", (32, 5)),
])
def test_beta_starts_near_one(channels, kind, shape):
    torch.manual_seed(5)
    q = AsqQuantizer(bits=4, channels=channels, kind=kind)
    assert (q.adapter.hidden is None) == (channels < 8)
    for x in (torch.rand(shape), torch.randn(shape)):
        deviation = (q.beta(x) - 1).abs()
        assert deviation.shape == (32,)
        assert deviation.mean() < 0.03 and deviation.max() < 0.1


def test_beta_is_clamped_positive():
    q = AsqQuantizer(bits=4, channels=2, kind="linear")
    with torch.no_grad():
        q.adapter.output.bias.fill_(-1.0)
    assert torch.all(q.beta(torch.rand(3, 2)) == 1e-8)


# --- ASQ: the quantizer --------------------------------------------------------------------------

def test_asq_init():
    q = AsqQuantizer(bits=3, channels=12, reduction=3, kind="linear")
    assert (q.bits, q.channels, q.reduction, q.kind, q.qp) == (3, 12, 3, "linear", 7)
    assert q.adapter.hidden.out_features == 4
    x = torch.rand(6, 12)
    q.train()
    q(x)
    assert math.isclose(q.step.item(), 2 * np.abs(np64(x)).mean() / math.sqrt(7), rel_tol=1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(bits=9, channels=4), ValueError, "Activation bits must be from 1 to 8, not 9"),
    (dict(bits=4, channels=0), ValueError, "Channel count must be at least 1, not 0"),
    (dict(bits=4, channels=4, reduction=0), ValueError, "Reduction must be at least 1, not 0"),
    (dict(bits=4, channels=4, kind="pool"), ValueError,
     "Kind must be one of conv, linear, not 'pool'"),
])
def test_asq_refuses(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        AsqQuantizer(**kwargs)


@pytest.mark.parametrize("kind, shape", [("conv", (2, 3, 4)), ("conv", (2, 4, 3, 3)),
                                         ("linear", (2, 3, 1, 1))])
def test_asq_refuses_wrong_input(kind, shape):
    q = AsqQuantizer(bits=4, channels=3, kind=kind)
    ndim = 4 if kind == "conv" else 2
    with pytest.raises(ValueError, match=rf"^AsqQuantizer expects a {ndim}-dimensional tensor "
                                         rf"with 3 channels in dimension 1, not shape"):
        q(torch.ones(shape))


@pytest.mark.parametrize("bits, kind, shape", [(4, "conv", (5, 16, 4, 4)), (2, "linear", (5, 6))])
def test_asq_codes(bits, kind, shape):
    torch.manual_seed(6)
    q = AsqQuantizer(bits=bits, channels=shape[1], kind=kind)
    x = torch.randn(shape)
    x.view(-1)[::7] *= 10  # some beyond the top code
    q.train()
    y = q(x)
    codes = q.codes(x)
    assert codes.dtype == torch.int64
    assert codes.min() == 0 and codes.max() == 2 ** bits - 1
    s_a = np64(q.step) * np64(q.beta(x)).reshape((-1,) + (1,) * (x.dim() - 1))
    expected = np.round(np.clip(np64(x) / s_a, 0, 2 ** bits - 1))
    assert np.array_equal(codes.numpy(), expected)
    s_a = (q.step * q.beta(x)).view((-1,) + (1,) * (x.dim() - 1))
    assert torch.equal(y, codes.to(torch.float32) * s_a)


@pytest.mark.parametrize("channels", [4, 16])
def test_asq_gradients(channels):
    torch.manual_seed(7)
    q = set_scale(AsqQuantizer(bits=3, channels=channels, kind="conv"), 0.4)
    with torch.no_grad():  # a spread of beta, all positive
        q.adapter.output.weight.normal_(0.0, 0.1)
    x = mixed((3, channels, 4, 4), 4.0, seed=8).add(1.0).requires_grad_()
    r = mixed((3, channels, 4, 4), 1.0, seed=9)
    (q(x) * r).sum().backward()

    s = 0.4
    pooled = np64(x).mean(axis=(2, 3))
    if channels < 8:
        w = np64(q.adapter.output.weight)[0]
        pre = pooled @ w + np64(q.adapter.output.bias)[0]
        features = pooled
    else:
        hidden = np.maximum(pooled @ np64(q.adapter.hidden.weight).T
                            + np64(q.adapter.hidden.bias), 0)
        pre = hidden @ np64(q.adapter.output.weight)[0] + np64(q.adapter.output.bias)[0]
        features = hidden
    assert np.all(pre > 1e-8)
    beta = pre
    assert beta.std() > 0.02
    dx_ste, dxhat = lsq_reference(np64(x), s * beta.reshape(-1, 1, 1, 1), 0, 7, np64(r))
    big_g = dxhat.sum(axis=(1, 2, 3))  # G: one value per sample
    g = 1 / math.sqrt(x.numel() * 7)
    np.testing.assert_allclose(np64(q.step.grad), g * (big_g * beta).sum(), rtol=1e-5)
    dbeta = big_g * s
    np.testing.assert_allclose(np64(q.adapter.output.bias.grad), [dbeta.sum()], rtol=1e-5)
    np.testing.assert_allclose(np64(q.adapter.output.weight.grad)[0], dbeta @ features,
                               rtol=1e-5)
    if channels < 8:  # STE plus the adapter's path: beta depends on the mean of x over H, W
        dx = dx_ste + dbeta.reshape(-1, 1, 1, 1) * w.reshape(1, -1, 1, 1) / 16
        np.testing.assert_allclose(np64(x.grad), dx, rtol=1e-5, atol=1e-7)


# --- POT and POST --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["post", "pot"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_exponent_levels(fmt, bits):
    q = EXPONENT_QUANTIZERS[fmt](bits=bits, channels=1)
    assert (q.fmt, q.bits, q.channels) == (fmt, bits, 1)
    assert q.levels.tolist() == weight_levels(fmt, bits)
    levels = q.levels.numpy()
    assert len(levels) == len(set(levels.tolist())) == 2 ** bits - 1
    assert np.all(np.diff(levels) > 0)
    magnitudes = BASES[fmt] ** -np.arange(2 ** (bits - 1) - 1)  # n = 0 .. 2**(b-1) - 2
    positive = levels[levels > 0]
    assert len(positive) == 2 ** (bits - 1) - 1
    np.testing.assert_allclose(positive, np.sort(magnitudes), rtol=1e-14)
    np.testing.assert_array_equal(levels[levels < 0], -positive[::-1])
    assert 0.0 in levels


@pytest.mark.parametrize("fmt", ["post", "pot"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_exponent_codes_round_trip(fmt, bits):
    q = set_scale(EXPONENT_QUANTIZERS[fmt](bits=bits, channels=1), [1.0])
    codes = list(range(2 ** bits))
    values = torch.tensor([[weight_value(fmt, bits, c) for c in codes]], dtype=torch.float32)
    canonical = [0 if split_code(bits, c)[1] == 0 else c for c in codes]
    assert q.codes(values)[0].tolist() == canonical
    assert torch.equal(q(values), values)


@pytest.mark.parametrize("fmt", ["post", "pot"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_exponent_forward_is_value_of_codes_times_alpha(fmt, bits):
    q = EXPONENT_QUANTIZERS[fmt](bits=bits, channels=4)
    w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(bits)) * 0.2
    q.train()
    y = q(w)
    codes = q.codes(w)
    assert codes.min() >= 0 and codes.max() < 2 ** bits
    values = torch.tensor([weight_value(fmt, bits, c) for c in codes.flatten().tolist()],
                          dtype=torch.float32).view(w.shape)
    assert torch.equal(y, values * q.alpha.view(4, 1, 1, 1))
    assert (w.abs() > q.alpha.view(4, 1, 1, 1)).any()  # the clipped path is exercised


def test_exponent_alpha_init_is_quantile():
    w = torch.randn(3, 200, generator=torch.Generator().manual_seed(10))
    q = PostQuantizer(bits=4, channels=3)
    q.train()
    q(w)
    np.testing.assert_allclose(np64(q.alpha), np.quantile(np.abs(np64(w)), 0.99, axis=1),
                               rtol=1e-5)


@pytest.mark.parametrize("fmt", ["post", "pot"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_exponent_ties_and_near_ties_match_nearest_code(fmt, bits):
    magnitudes = np.sort(np.append(BASES[fmt] ** -np.arange(2 ** (bits - 1) - 1), 0.0))
    up = down = ((magnitudes[1:] + magnitudes[:-1]) / 2).astype(np.float32)
    probes = [up]
    for _ in range(3):  # the nearest float32 values on either side of each midpoint
        up, down = np.nextafter(up, np.float32(2)), np.nextafter(down, np.float32(-2))
        probes += [up, down]
    v = np.concatenate(probes)
    v = np.concatenate([v, -v])
    q = set_scale(EXPONENT_QUANTIZERS[fmt](bits=bits, channels=1), [1.0])
    got = q.codes(torch.from_numpy(v).view(1, -1))[0].tolist()
    assert got == [nearest_code(fmt, bits, float(x)) for x in v]


@pytest.mark.parametrize("fmt, bits, v, code", [
    ("pot", 4, 0.75, 2), ("pot", 4, -0.75, 0b1010), ("pot", 4, 0.375, 3),
    ("pot", 4, 2 ** -7, 0), ("pot", 4, -(2 ** -7), 0), ("pot", 4, 2 ** -7 * 1.001, 7),
    ("post", 4, 2 ** -4, 0), ("post", 4, -(2 ** -4), 0), ("post", 4, 2 ** -4 * 1.001, 7),
    ("post", 3, 0.25, 0), ("post", 3, -0.2501, 0b111),
    ("post", 2, 0.5, 0), ("post", 2, -0.5001, 0b11),
])
def test_exponent_exact_ties_go_to_smaller_magnitude(fmt, bits, v, code):
    q = set_scale(EXPONENT_QUANTIZERS[fmt](bits=bits, channels=1), [1.0])
    assert q.codes(torch.tensor([[v]]))[0, 0].item() == code


def post_reference(w, alpha, levels, r):
    """dL/dw and dL/dalpha (before the gradient scale) for L = sum(w_hat * r),
    docs/algorithms.md, 'POT and POST weights'."""
    v = w / alpha
    inside = np.abs(v) <= 1
    nearest = levels[np.abs(v[..., None] - levels).argmin(axis=-1)]
    return r * inside, r * np.where(inside, nearest - v, np.sign(v))


@pytest.mark.parametrize("fmt", ["post", "pot"])
def test_exponent_gradients(fmt):
    q = set_scale(EXPONENT_QUANTIZERS[fmt](bits=4, channels=2), [0.8, 0.3])
    w = mixed((2, 3, 3, 3), 1.2, seed=11).requires_grad_()
    r = mixed((2, 3, 3, 3), 1.0, seed=12)
    (q(w) * r).sum().backward()
    positive = BASES[fmt] ** -np.arange(7)
    levels = np.concatenate([-positive, [0.0], positive])
    dw, dalpha = post_reference(np64(w), np.array([0.8, 0.3]).reshape(2, 1, 1, 1), levels,
                                np64(r))
    assert 0 < (dw == 0).sum() < dw.size
    np.testing.assert_allclose(np64(w.grad), dw, rtol=1e-6)
    np.testing.assert_allclose(np64(q.alpha.grad), dalpha.sum(axis=(1, 2, 3)) / math.sqrt(27),
                               rtol=1e-5)


@pytest.mark.parametrize("cls, kwargs, error, message", [
    (PostQuantizer, dict(bits=9, channels=2), ValueError,
     "Weight bits must be from 2 to 8, not 9"),
    (PostQuantizer, dict(bits=1, channels=2), ValueError,
     "Weight bits must be from 2 to 8, not 1"),
    (PotQuantizer, dict(bits=9, channels=2), ValueError,
     "Weight bits must be from 2 to 8, not 9"),
    (PostQuantizer, dict(bits=True, channels=2), TypeError,
     "Weight bits must be an integer, not True"),
    (PostQuantizer, dict(bits=4, channels=0), ValueError,
     "Channel count must be at least 1, not 0"),
])
def test_exponent_refuses(cls, kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        cls(**kwargs)


def test_exponent_refuses_wrong_channel_count():
    with pytest.raises(ValueError, match=r"^PostQuantizer expects a tensor with 2 channels in "
                                         r"dimension 0, not shape \(3, 4\)$"):
        PostQuantizer(bits=4, channels=2)(torch.ones(3, 4))


def test_state_dict_carries_initialisation():
    source = PostQuantizer(bits=4, channels=2)
    w = torch.randn(2, 9)
    source.train()
    source(w)
    target = PostQuantizer(bits=4, channels=2)
    target.load_state_dict(source.state_dict())
    assert sorted(source.state_dict()) == ["alpha", "initialized"]
    target.eval()
    assert torch.equal(target.codes(w), source.codes(w))


def test_scale_is_kept_positive():
    q = set_scale(LsqQuantizer(bits=4, signed=False), -0.5)
    q.codes(torch.ones(2))
    assert q.step.item() == torch.finfo(torch.float32).eps
