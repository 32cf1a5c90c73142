"""Tests of export.layers: the layers compute the float op on tensors rebuilt from the codes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export.layers import (
    QConv2d, QLinear, act_quantizer, quantized_conv2d, quantized_linear, weight_quantizer,
)
from export.quantizers import AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer
from core.numerics import weight_value


def dequantized_weight(quantizer, weight):
    """The weight rebuilt from its codes: ``core.numerics`` values (or LSQ integers) x scale."""
    if quantizer is None:
        return weight
    codes = quantizer.codes(weight)
    view = (-1,) + (1,) * (weight.dim() - 1)
    if isinstance(quantizer, LsqQuantizer):
        return codes.to(torch.float32) * quantizer.step.view(view)
    values = [weight_value(quantizer.fmt, quantizer.bits, c) for c in codes.flatten().tolist()]
    return torch.tensor(values, dtype=torch.float32).view(weight.shape) * quantizer.alpha.view(view)


def dequantized_input(quantizer, x):
    """The input rebuilt from its codes: codes x step (x beta for ASQ)."""
    if quantizer is None:
        return x
    codes = quantizer.codes(x).to(torch.float32)
    if isinstance(quantizer, AsqQuantizer):
        return codes * (quantizer.step * quantizer.beta(x)).view((-1,) + (1,) * (x.dim() - 1))
    return codes * quantizer.step


METHODS = [("post", "asq"), ("pot", "asq"), ("lsq", "lsq"), ("post", "lsq"), (None, "asq"),
           ("lsq", None), (None, None)]


@pytest.mark.parametrize("weight_method, act_method", METHODS)
def test_qconv2d_is_conv2d_of_dequantized_tensors(weight_method, act_method):
    torch.manual_seed(0)
    layer = quantized_conv2d(8, 6, 3, weight_method=weight_method, act_method=act_method, bits=4,
                             stride=2, padding=1)
    x = torch.randn(3, 8, 9, 9).abs()
    layer.train()
    y = layer(x)
    with torch.no_grad():
        expected = F.conv2d(dequantized_input(layer.act_quantizer, x),
                            dequantized_weight(layer.weight_quantizer, layer.weight),
                            layer.bias, stride=2, padding=1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    if weight_method or act_method:
        assert not torch.allclose(y, F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1),
                                  atol=1e-3)
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("weight_method, act_method", METHODS)
def test_qlinear_is_linear_of_dequantized_tensors(weight_method, act_method):
    torch.manual_seed(1)
    layer = quantized_linear(12, 5, weight_method=weight_method, act_method=act_method, bits=3)
    x = torch.randn(4, 12).abs()
    layer.train()
    layer(x)  # initialise
    layer.eval()
    y = layer(x)
    expected = F.linear(dequantized_input(layer.act_quantizer, x),
                        dequantized_weight(layer.weight_quantizer, layer.weight), layer.bias)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_signed_first_layer():
    torch.manual_seed(2)
    layer = quantized_conv2d(1, 4, 3, weight_method="lsq", act_method="lsq", bits=8,
                             signed_input=True, bias=False)
    q = layer.act_quantizer
    assert (q.signed, q.qn, q.qp, q.per_channel) == (True, -128, 127, None)
    x = torch.randn(2, 1, 8, 8)
    layer.train()
    layer(x)
    assert q.codes(x).min() < 0


def test_builders_init():
    conv = quantized_conv2d(16, 8, 3, weight_method="post", act_method="asq", bits=4, padding=1)
    assert isinstance(conv, QConv2d) and isinstance(conv, nn.Conv2d)
    assert conv.padding == (1, 1) and conv.weight.shape == (8, 16, 3, 3)
    w, a = conv.weight_quantizer, conv.act_quantizer
    assert isinstance(w, PostQuantizer) and (w.bits, w.channels) == (4, 8)
    assert isinstance(a, AsqQuantizer) and (a.bits, a.channels, a.kind) == (4, 16, "conv")
    linear = quantized_linear(32, 10, weight_method="lsq", act_method="lsq", bits=8, bias=False)
    assert isinstance(linear, QLinear) and isinstance(linear, nn.Linear) and linear.bias is None
    w, a = linear.weight_quantizer, linear.act_quantizer
    assert isinstance(w, LsqQuantizer) and (w.bits, w.signed, w.per_channel) == (8, True, 10)
    assert isinstance(a, LsqQuantizer) and (a.bits, a.signed, a.per_channel) == (8, False, None)
    assert isinstance(weight_quantizer("pot", bits=3, channels=2), PotQuantizer)
    assert act_quantizer("asq", bits=2, channels=5, kind="linear").kind == "linear"
    assert weight_quantizer(None, bits=4, channels=2) is None
    assert act_quantizer(None, bits=4, channels=2, kind="conv") is None


def test_float_layers_match_torch():
    torch.manual_seed(3)
    layer = QConv2d(3, 4, 3)
    reference = nn.Conv2d(3, 4, 3)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(layer(x), reference(x))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(weight_method="post", act_method="asq", bits=9), ValueError,
     "Weight bits must be from 2 to 8, not 9"),
    (dict(weight_method=None, act_method="asq", bits=9), ValueError,
     "Activation bits must be from 1 to 8, not 9"),
    (dict(weight_method="lsq", act_method=None, bits=1), ValueError,
     "Signed bits must be from 2 to 8, not 1"),
    (dict(weight_method="pot", act_method=None, bits=4.5), TypeError,
     "Weight bits must be an integer, not 4.5"),
    (dict(weight_method="int", act_method=None, bits=4), ValueError,
     "Weight method must be one of 'lsq', 'pot', 'post', None, not 'int'"),
    (dict(weight_method=None, act_method="pact", bits=4), ValueError,
     "Activation method must be one of 'lsq', 'asq', None, not 'pact'"),
    (dict(weight_method=None, act_method="asq", bits=4, signed_input=True), ValueError,
     "Signed input needs activation method 'lsq', not 'asq'"),
    (dict(weight_method=None, act_method=None, bits=4, signed_input=True), ValueError,
     "Signed input needs activation method 'lsq', not None"),
    (dict(weight_method=None, act_method="lsq", bits=4, signed_input=1), TypeError,
     "Signed input must be a bool, not 1"),
])
def test_builders_refuse(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        quantized_conv2d(4, 4, 3, **kwargs)


@pytest.mark.parametrize("cls, args", [(QConv2d, (2, 2, 1)), (QLinear, (2, 2))])
def test_layers_refuse_non_module_quantizers(cls, args):
    with pytest.raises(TypeError, match=r"^Weight quantizer must be an nn.Module or None, "
                                        r"not 'post'$"):
        cls(*args, weight_quantizer="post")
    with pytest.raises(TypeError, match=r"^Activation quantizer must be an nn.Module or None, "
                                        r"not <function"):
        cls(*args, act_quantizer=lambda x: x)
