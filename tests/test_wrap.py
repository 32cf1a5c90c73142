"""export.wrap.quantize_model: the recipe per layer, copied weights, refused layers."""

import inspect
from collections import OrderedDict

import pytest
import torch
from torch import nn

from export.layers import QConv2d, QLinear
from export.model import build_model, float_model
from export.quantizers import AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer
from export.wrap import SUPPORTED, quantize_model

torch.set_num_threads(1)


def _describe(q):
    """A quantizer as a comparable tuple."""
    if q is None:
        return None
    if isinstance(q, LsqQuantizer):
        return ("lsq", q.bits, q.signed, q.per_channel)
    if isinstance(q, AsqQuantizer):
        return ("asq", q.bits, q.channels, q.kind)
    return (q.fmt, q.bits, q.channels)


def test_digits_network_gets_the_recipe():
    source = float_model()
    model = quantize_model(source, bits=4, weight_method="post", act_method="asq")
    layers = {i: m for i, m in enumerate(model) if isinstance(m, (QConv2d, QLinear))}
    assert sorted(layers) == [0, 3, 7, 12]
    assert [type(m).__name__ for m in model] == [
        "QConv2d", "BatchNorm2d", "ReLU", "QConv2d", "BatchNorm2d", "ReLU", "MaxPool2d",
        "QConv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "QLinear"]
    got = {i: (_describe(m.weight_quantizer), _describe(m.act_quantizer))
           for i, m in layers.items()}
    assert got == {
        0: (("lsq", 8, True, 16), ("lsq", 8, False, None)),        # unsigned first input
        3: (("post", 4, 32), ("asq", 4, 16, "conv")),
        7: (("post", 4, 32), ("asq", 4, 32, "conv")),
        12: (("lsq", 8, True, 10), ("lsq", 8, False, None)),       # no adapter
    }
    assert isinstance(model[3].weight_quantizer, PostQuantizer)
    for i in layers:                                               # weights copied, not shared
        assert torch.equal(model[i].weight, source[i].weight)
        assert model[i].weight.data_ptr() != source[i].weight.data_ptr()
    assert model[0].bias is None and torch.equal(model[12].bias, source[12].bias)
    assert (model[0].padding, model[3].kernel_size) == ((1, 1), (3, 3))
    assert type(source[0]) is nn.Conv2d                            # the source is unchanged


@pytest.mark.parametrize("wm, am, types", [
    ("lsq", "lsq", (LsqQuantizer, LsqQuantizer)),
    ("pot", "lsq", (PotQuantizer, LsqQuantizer)),
    ("post", "lsq", (PostQuantizer, LsqQuantizer)),
    ("lsq", "asq", (LsqQuantizer, AsqQuantizer)),
])
def test_middle_layers_follow_the_methods(wm, am, types):
    model = build_model(bits=3, weight_method=wm, act_method=am)
    for i in (3, 7):
        assert type(model[i].weight_quantizer) is types[0] and model[i].weight_quantizer.bits == 3
        assert type(model[i].act_quantizer) is types[1] and model[i].act_quantizer.bits == 3
    for i in (0, 12):
        assert type(model[i].weight_quantizer) is LsqQuantizer
        assert model[i].weight_quantizer.bits == 8


def test_float_variant_computes_the_float_network():
    torch.manual_seed(0)
    source = float_model().eval()
    for m in source.modules():                                     # non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    model = quantize_model(source, bits=4, weight_method=None, act_method=None).eval()
    assert all(m.weight_quantizer is None and m.act_quantizer is None
               for m in model if isinstance(m, (QConv2d, QLinear)))
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.flat = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.classifier(self.flat(self.features(x)))


def test_plain_chain_container_is_accepted():
    model = quantize_model(_Chain(), bits=2, weight_method="post", act_method="lsq")
    assert isinstance(model.features[0], QConv2d) and model.features[0].weight_quantizer.bits == 8
    assert _describe(model.classifier[0].weight_quantizer) == ("post", 2, 8)
    assert _describe(model.classifier[2].weight_quantizer) == ("lsq", 8, True, 3)
    assert model.train()(torch.rand(2, 1, 8, 8)).shape == (2, 3)


class _Residual(_Chain):
    def forward(self, x):
        y = self.features(x)
        return self.classifier(self.flat(y + y))


class _TorchFlatten(_Chain):
    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_a_forward_with_torch_flatten_is_read_from_its_graph():
    # Not a plain chain of children, but torch.fx reads it (export.graph): a chain after all.
    model = quantize_model(_TorchFlatten(), bits=4, weight_method="lsq", act_method="lsq")
    assert isinstance(model.get_submodule("features.0"), QConv2d)
    assert model.train()(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def _seq(*layers):
    return nn.Sequential(OrderedDict([("features", nn.Sequential(*layers)),
                                      ("head", nn.Linear(4, 2))]))


def test_unsupported_layer_message_is_exact():
    model = _seq(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.GELU())
    with pytest.raises(ValueError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == (
        "layer 'features.3' (GELU) cannot be mapped to the accelerator: supported are Conv2d, "
        "Linear, BatchNorm2d, BatchNorm1d, ReLU, ReLU6, Hardtanh, MaxPool2d, AvgPool2d, "
        "AdaptiveAvgPool2d, Flatten, Dropout, Identity in nn.Sequential containers")
    assert SUPPORTED in str(info.value)


@pytest.mark.parametrize("model, start, detail", [
    (_seq(nn.LSTM(4, 4)), "layer 'features.0' (LSTM)", ""),
    (_seq(nn.Conv1d(1, 4, 3)), "layer 'features.0' (Conv1d)", ""),
    (_seq(nn.Conv2d(1, 4, 3), nn.AdaptiveMaxPool2d(1)), "layer 'features.1' (AdaptiveMaxPool2d)",
     ""),
    (_seq(nn.Conv2d(1, 4, 3, dilation=2)), "layer 'features.0' (Conv2d)", "dilation=(2, 2); "),
    (_seq(nn.Conv2d(1, 4, (3, 1))), "layer 'features.0' (Conv2d)",
     "kernel_size=(3, 1) is not square; "),
    (_seq(nn.Conv2d(1, 4, 3, padding="same")), "layer 'features.0' (Conv2d)",
     "padding='same' (give the padding as a number); "),
    (_seq(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")), "layer 'features.0' (Conv2d)",
     "padding_mode='reflect'; "),
    (_seq(nn.Conv2d(1, 4, 3), nn.MaxPool2d(3, stride=2)), "layer 'features.1' (MaxPool2d)",
     "only max pooling with a square kernel equal to its stride, no padding, dilation, "
     "ceil_mode or indices; "),
    (_seq(nn.Conv2d(1, 4, 3), nn.Flatten(0)), "layer 'features.1' (Flatten)",
     "only Flatten(1, -1), not Flatten(0, -1); "),
    (_seq(QConv2d(1, 4, 3)), "layer 'features.0' (QConv2d)", "the layer is already quantized; "),
    (_seq(nn.Conv2d(1, 4, 3), nn.ModuleList([nn.ReLU()])), "layer 'features.1' (ModuleList)", ""),
])
def test_unmappable_layers_are_refused(model, start, detail):
    with pytest.raises(ValueError) as info:
        quantize_model(model, bits=4, weight_method="lsq", act_method="lsq")
    assert str(info.value) == (f"{start} cannot be mapped to the accelerator: {detail}"
                               f"supported are {SUPPORTED}")


@pytest.mark.parametrize("model, start", [
    (_Residual(), "the model (_Residual)"),
    (nn.Sequential(OrderedDict([("body", _Residual())])), "layer 'body' (_Residual)"),
])
def test_an_addition_that_is_not_a_residual_block_is_refused(model, start):
    # y + y after ReLU and pooling: neither operand is a conv's output before its ReLU
    # (residual blocks are mapped: tests/test_residual.py).
    from export.graph import BLOCK

    with pytest.raises(ValueError) as info:
        quantize_model(model, bits=4, weight_method="lsq", act_method="lsq")
    lines, first = inspect.getsourcelines(_Residual.forward)
    at = f"test_wrap.py:{first + 2} ({lines[2].strip()})"        # the line that adds
    assert str(info.value) == (f"{start} cannot be mapped to the accelerator: its addition "
                               f"'add' at {at} must add a Conv2d's output (after its batch norm, before "
                               f"its ReLU) and a shortcut; {BLOCK}")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(bits=5, weight_method="lsq"), None, None),
    (dict(bits=5), ValueError, r"^layer '7' \(Conv2d\) cannot be mapped to the accelerator: 288 "
     r"products of 5-bit activations and 5-bit post weights are too wide for the rescale \(at "
     r"most 264 for these widths\); use post or pot weights of at most 4 bits, or lsq "
     r"weights$"),
    (dict(bits=1), ValueError, "bits must be from 2 to 8, not 1"),
    (dict(bits=True), TypeError, "bits must be an integer, not True"),
    (dict(first_bits=9), ValueError, "first_bits must be from 2 to 8, not 9"),
    (dict(weight_method="int"), ValueError, "weight_method must be one of"),
    (dict(act_method="pact"), ValueError, "act_method must be one of"),
])
def test_bad_arguments(kwargs, error, message):
    args = dict(bits=4, weight_method="post", act_method="asq") | kwargs
    if error is None:
        quantize_model(float_model(), **args)                      # lsq: any width 2..8
        return
    with pytest.raises(error, match=message):
        quantize_model(float_model(), **args)


def test_model_without_compute_layers_is_refused():
    with pytest.raises(ValueError, match="^the model has no Conv2d or Linear layer$"):
        quantize_model(nn.Sequential(nn.ReLU()), bits=4, weight_method="post", act_method="asq")
    with pytest.raises(ValueError, match="^the model must be a container of layers"):
        quantize_model(nn.Conv2d(1, 2, 3), bits=4, weight_method="post", act_method="asq")
