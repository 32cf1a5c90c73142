"""Global and windowed average pooling, ReLU6 and ResNet's option-A shortcut from a user's float
model to the golden model (issue 24, the export half): ``quantize_model`` maps each spelling
(modules and functional calls, the chain path and the ``torch.fx`` graph path), a couple of
training steps on random data, ``export_bundle``, a save and load of the bundle, and the golden
model against PyTorch's fake-quantized model; then the one-line refusals.

Tolerances (``_agree``): at the input of every layer at least 97% of the codes equal PyTorch's
and none differs by more than 2 (4-bit codes) or 4 (8-bit ones, whose steps are 16 times
finer); the top-1 agreement is at least 90% of the 48 random inputs (a barely trained network
has close logits; the real ResNet-20 measures its agreement on the whole Fashion-MNIST test
set, docs/guide.md); the golden logits (times ``2**-Z``) are within 5% of PyTorch's largest
logit plus 0.05 of PyTorch's (a flipped code upstream moves them by a step or so). Each test also checks that the operation reached the bundle (the clip, the
pooling mode, the global pooling, the shortcut's stride and channel) and, where it matters,
that it changes the result, so that a mapping that dropped it would fail.
"""

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import bundle as B
from core import rescale
from core.rules import SUPPORTED, MappingError
from export.resnet20 import LambdaLayer, resnet20
from export.to_bundle import export_bundle
from export.wrap import quantize_model
from sim.golden import run_network

SHAPE = (1, 8, 8)


def _bn(c, gain=1.0, shift=0.0):
    bn = nn.BatchNorm2d(c)
    nn.init.constant_(bn.weight, gain)
    nn.init.constant_(bn.bias, shift)
    return bn


def _trained(model, steps=2, count=48, seed=0, **methods):
    """``quantize_model`` (4-bit POST weights, ASQ inputs unless ``methods`` say otherwise),
    ``steps`` SGD steps on random data, ``export_bundle`` with ``count`` random reference
    inputs."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    q = quantize_model(model, **{**dict(bits=4, weight_method="post", act_method="asq"),
                                 **methods})
    x, y = torch.rand(64, *SHAPE), torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(q.parameters(), lr=0.01, momentum=0.9)
    q.train()
    for _ in range(steps):
        loss = F.cross_entropy(q(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref = torch.rand(count, *SHAPE)
    bundle = export_bundle(q.eval(), input_shape=SHAPE, reference_inputs=ref.numpy())
    return q, bundle


def layer_codes(loaded, trace):
    """Per layer after the first: ``(layer, ours, theirs)``, the golden model's input codes
    of the layer and PyTorch's (the bundle's reference), one row a sample."""
    ref = loaded.reference
    n = len(ref["codes"])
    for i in range(1, len(loaded.layers)):
        ours = trace.layers[loaded.source_index(i)].codes.reshape(n, -1)
        yield loaded.layers[i], ours, ref[f"layer{i}.codes"].astype(np.int64).reshape(ours.shape)


def _agree(bundle, tmp_path):
    """The golden model of the saved and loaded bundle against PyTorch (module docstring);
    returns the trace."""
    loaded = B.load(B.save(bundle, tmp_path / "bundle"))
    ref = loaded.reference
    trace = run_network(loaded, ref["codes"])
    for layer, ours, theirs in layer_codes(loaded, trace):
        small = layer.a_bits <= 4
        assert (ours == theirs).mean() >= 0.97, layer.name
        assert np.abs(ours - theirs).max() <= (2 if small else 4), layer.name
    assert (trace.logits.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.9
    g = trace.logits * 2.0 ** -rescale.Z
    assert np.abs(g - ref["logits"]).max() <= 0.05 * np.abs(ref["logits"]).max() + 0.05
    return loaded, trace


def _layer(bundle, name):
    return next(la for la in bundle.layers if la.name == name)


# Global average pooling ------------------------------------------------------------------

class _MeanNet(nn.Module):
    """Functional ReLU and a global average pooling spelled as ``spelling``."""

    def __init__(self, spelling):
        super().__init__()
        self.spelling = spelling
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        if self.spelling == "mean":
            out = out.mean((2, 3))
        elif self.spelling == "torch.mean keepdim":
            out = torch.mean(out, dim=[2, 3], keepdim=True)
            out = out.view(out.size(0), -1)
        elif self.spelling == "adaptive":
            out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        elif self.spelling == "avg_pool2d size":
            out = F.avg_pool2d(out, out.size()[3])
            out = out.reshape(out.shape[0], -1)
        return self.fc(out)


def _gap_sequential():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(8, 10))


def _gap_window():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("make, name", [
    (_gap_sequential, "3"),
    (_gap_window, "3"),
    (lambda: _MeanNet("mean"), "conv2"),
    (lambda: _MeanNet("torch.mean keepdim"), "conv2"),
    (lambda: _MeanNet("adaptive"), "conv2"),
    (lambda: _MeanNet("avg_pool2d size"), "conv2"),
], ids=["AdaptiveAvgPool2d", "AvgPool2d-whole-map", "mean", "torch.mean-keepdim",
        "F.adaptive_avg_pool2d", "F.avg_pool2d-size"])
def test_global_average_pooling(make, name, tmp_path):
    _, bundle = _trained(make())
    loaded, trace = _agree(bundle, tmp_path)
    layer = _layer(loaded, name)
    assert layer.global_pool and layer.out_shape == (8, 1, 1) and loaded.format == 3
    assert loaded.layers[-1].in_shape == (8,)
    # The pooled value is the mean: the sums over the map divided by its positions.
    i = loaded.layers.index(layer)
    assert trace.layers[i].u.shape == (48, 8, 1, 1)
    assert layer.divisor == (16 if make is _gap_window else 64)


# ReLU6 -------------------------------------------------------------------------------------

class _ClipNet(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8, 5.0, 5.5)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8)
        self.fc = nn.Linear(8 * 16, 10)
        self.act = nn.ReLU6() if how == "module" else nn.Hardtanh(0.0, 6.0)

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        if self.how in ("module", "hardtanh module"):
            out = self.act(out)
        elif self.how == "F.relu6":
            out = F.relu6(out)
        else:
            out = F.hardtanh(out, 0.0, 6.0)
        out = F.relu(self.bn2(self.conv2(out)))
        return self.fc(torch.flatten(F.avg_pool2d(out, 2), 1))


@pytest.mark.parametrize("how", ["module", "hardtanh module", "F.relu6", "F.hardtanh"])
def test_relu6(how, tmp_path):
    _, bundle = _trained(_ClipNet(how))
    loaded, trace = _agree(bundle, tmp_path)
    layer = loaded.layers[0]
    assert layer.relu and layer.clip == 6.0
    # The batch norm's gain of 5 and shift of 5.5 drive many values past 6: the clip is exercised.
    u = trace.layers[0].u
    assert (u == 6 << rescale.Z).mean() > 0.05 and u.max() == 6 << rescale.Z


def test_relu6_in_a_sequential(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8, 5.0, 5.5), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10))
    _, bundle = _trained(model)
    loaded, trace = _agree(bundle, tmp_path)
    assert loaded.layers[0].clip == 6.0 and loaded.layers[1].clip is None
    assert (trace.layers[0].u == 6 << rescale.Z).mean() > 0.05


# Windowed average pooling ------------------------------------------------------------------

def _avg_sequential():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.AvgPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU(),
                         nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
                         nn.Linear(32, 10))


class _AvgNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), _bn(8)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        out = F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.avg_pool2d(F.relu(self.bn2(self.conv2(out))), kernel_size=2)
        return self.fc(out.flatten(1))


@pytest.mark.parametrize("make", [_avg_sequential, _AvgNet], ids=["AvgPool2d", "F.avg_pool2d"])
def test_average_pooling_2x2(make, tmp_path):
    _, bundle = _trained(make())
    loaded, trace = _agree(bundle, tmp_path)
    for layer in loaded.layers[:2]:
        assert (layer.pool, layer.pool_mode, layer.global_pool) == (2, "avg", False)
    assert loaded.layers[1].in_shape == (8, 4, 4)
    # u holds the window sums (the division by 4 is folded), not the maxima.
    z = np.maximum(rescale.affine(trace.layers[0].acc, np.full(48, rescale.BETA_ONE),
                                  loaded.layers[0].fixed), 0)
    assert np.array_equal(trace.layers[0].u, rescale.pool2d(z, 2, "avg"))
    assert not np.array_equal(trace.layers[0].u, rescale.pool2d(z, 2, "max"))


# Option-A shortcuts -----------------------------------------------------------------------

class _BlockA(nn.Module):
    """A block whose shape changes (stride 2, twice the channels) with an option-A shortcut,
    through akamaster's ``LambdaLayer`` or inline in ``forward``."""

    def __init__(self, cin, cout, inline):
        super().__init__()
        self.inline = inline
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False), _bn(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout)
        self.pad = cout // 4
        self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2],
                                                    (0, 0, 0, 0, cout // 4, cout // 4),
                                                    "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.inline:
            out = out + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        else:
            out += self.shortcut(x)
        return F.relu(out)


class _NetA(nn.Module):
    def __init__(self, inline):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), _bn(4), nn.ReLU())
        self.block = _BlockA(4, 8, inline)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


@pytest.mark.parametrize("inline", [False, True], ids=["LambdaLayer", "inline"])
def test_option_a_shortcut(inline, tmp_path):
    q, bundle = _trained(_NetA(inline))
    assert [la.name for la in bundle.layers] == ["stem.0", "block.conv1", "block.conv2", "fc"]
    loaded, trace = _agree(bundle, tmp_path)
    layer = _layer(loaded, "block.conv2")
    assert (layer.shortcut, layer.shortcut_stride, layer.shortcut_pad) == ("stem.0", 2, 2)
    assert layer.global_pool and not any(la.projection for la in loaded.layers)
    # The shortcut adds the quantized block input (the quantizer conv1 reads), subsampled.
    code = q.code
    assert "block_conv1_act_quantizer = self.block.conv1.act_quantizer(" in code
    assert code.index("block_conv1_act_quantizer =") < code.index("pad(")
    # The golden operand is the stem's codes at channels 2..5, zeros elsewhere.
    codes = trace.layers[0].codes
    operand = rescale.shortcut_codes(codes, stride=2, pad=2, channels=8)
    assert np.array_equal(operand[:, 2:6], codes[:, :, ::2, ::2]) and not operand[:, :2].any()
    assert codes[:, :, ::2, ::2].any()


def test_tiny_resnet20(tmp_path):
    """``export.resnet20`` with one block a stage and widths 4, 8, 16 on 8x8 inputs: stages 8,
    4, 2 and a global pooling over 2x2."""
    model = resnet20(widths=(4, 8, 16), blocks=1)
    _, bundle = _trained(model, steps=3)
    loaded, _ = _agree(bundle, tmp_path)
    assert [la.name for la in loaded.layers] == [
        "conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
        "layer3.0.conv1", "layer3.0.conv2", "linear"]
    shortcuts = {la.name: (la.shortcut, la.shortcut_stride, la.shortcut_pad)
                 for la in loaded.layers if la.shortcut}
    assert shortcuts == {"layer1.0.conv2": ("conv1", 1, 0),
                         "layer2.0.conv2": ("layer1.0.conv2", 2, 2),
                         "layer3.0.conv2": ("layer2.0.conv2", 2, 4)}
    assert _layer(loaded, "layer3.0.conv2").global_pool
    assert _layer(loaded, "layer3.0.conv2").out_shape == (16, 1, 1)


def test_full_resnet20_is_mapped():
    """The real ResNet-20: 20 layers, two option-A shortcuts, the global pooling on the last
    block, before any training."""
    from export.graph import analyse

    layers = analyse(resnet20())
    assert len(layers) == 20 and not any(la.projection for la in layers)
    assert [(la.path, la.shortcut_stride, la.shortcut_pad) for la in layers
            if la.shortcut_stride != 1] == [("layer2.0.conv2", 2, 8), ("layer3.0.conv2", 2, 16)]
    assert [la.path for la in layers if la.windows] == []
    assert any(type(m) is nn.AdaptiveAvgPool2d for _, m in layers[-2].following)


# Refusals ---------------------------------------------------------------------------------

def _line(cls, marker):
    """``file:line (code)`` of the line of ``cls.forward`` that holds ``marker``."""
    lines, start = inspect.getsourcelines(cls.forward)
    k = next(i for i, text in enumerate(lines) if marker in text)
    return f"test_export_ops.py:{start + k} ({lines[k].strip()})"


class _Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        out = torch.sigmoid(self.conv(x))
        return self.fc(out.flatten(1))


class _Pad(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(324, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        out = self.conv(x) + F.pad(x, (1, 1, 1, 1))
        return self.fc(out.flatten(1))


class _Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        out = F.hardtanh(self.conv(x), -1.0, 1.0)
        return self.fc(out.flatten(1))


class _MeanChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        out = F.relu(self.conv(x)).mean(1)
        return self.fc(out.flatten(1))


def _seq(*layers):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), *layers, nn.Flatten(),
                         nn.Linear(16, 10))


@pytest.mark.parametrize("model, message", [
    (_seq(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2)),
     "layer '1' (Conv2d) cannot be mapped to the accelerator: groups=2 with 4 input and 4 "
     "output channels (a grouped convolution: the accelerator runs groups=1, or a depthwise "
     "conv with groups = in_channels = out_channels); use groups=1, or groups=in_channels with "
     "out_channels=in_channels"),
    (_seq(nn.ReLU(), nn.AvgPool2d(2, stride=1)),
     "layer '2' (AvgPool2d) cannot be mapped to the accelerator: only average pooling with a "
     "square window of 2 or more equal to its stride, no padding, ceil_mode or "
     "divisor_override; use AvgPool2d(2), or a window that covers the whole map (a global "
     "average pooling)"),
    (_seq(nn.ReLU(), nn.AdaptiveAvgPool2d(2)),
     "layer '2' (AdaptiveAvgPool2d) cannot be mapped to the accelerator: only "
     "AdaptiveAvgPool2d(1) (a global average pooling), not output_size=2; use "
     "AdaptiveAvgPool2d(1), or AvgPool2d(2)"),
    (_seq(nn.Hardtanh(-1.0, 1.0)),
     "layer '1' (Hardtanh) cannot be mapped to the accelerator: only Hardtanh(0, t) with t > 0 "
     "(a ReLU clipped at t), not Hardtanh(-1, 1); use ReLU, ReLU6 or Hardtanh(0, t)"),
    (_Sigmoid(),
     f"the model (_Sigmoid) cannot be mapped to the accelerator: its forward calls sigmoid "
     f"(sigmoid) at {_line(_Sigmoid, 'sigmoid')}, which has no counterpart in the accelerator; "
     f"supported are {SUPPORTED}"),
    (_Leaky(),
     f"the model (_Leaky) cannot be mapped to the accelerator: its forward calls hardtanh "
     f"(hardtanh) at {_line(_Leaky, 'hardtanh')}: only Hardtanh(0, t) with t > 0 (a ReLU "
     f"clipped at t), not Hardtanh(-1, 1); use ReLU, ReLU6 or Hardtanh(0, t)"),
    (_Pad(),
     f"the model (_Pad) cannot be mapped to the accelerator: its padding 'pad' at "
     f"{_line(_Pad, 'F.pad')} is not an option-A shortcut (x[:, :, ::s, ::s], then F.pad(x, "
     f"(0, 0, 0, 0, a, b)) with zeros); a residual block returns relu(bn2(conv2(...)) + "
     f"shortcut), or the sum with no ReLU after it (MobileNet-V2's x + self.conv(x)), the "
     f"shortcut being its input or a projection conv with batch norm "
     f"(export/resnet.py's BasicBlock)"),
    (_MeanChannels(),
     f"the model (_MeanChannels) cannot be mapped to the accelerator: its forward calls mean "
     f"(mean) at {_line(_MeanChannels, 'mean')} with arguments that the accelerator cannot run; "
     f"supported are {SUPPORTED}"),
], ids=["grouped", "avgpool-stride", "adaptive-2", "hardtanh", "sigmoid",
        "F.hardtanh", "pad", "mean-channels"])
def test_unmappable_operations_are_refused_in_one_line(model, message):
    with pytest.raises(MappingError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


class _WindowNet(nn.Module):
    """An ``F.avg_pool2d(x, 3)`` on a 4x4 map: neither 2x2 nor the whole map."""

    def __init__(self, functional):
        super().__init__()
        self.functional = functional
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        out = F.relu(self.conv(x))
        out = F.avg_pool2d(out, 3) if self.functional else self.pool(out)
        return self.fc(torch.flatten(out, 1))


@pytest.mark.parametrize("model, name", [
    (_WindowNet(True), f"the model (_WindowNet) cannot be mapped to the accelerator: its "
                       f"forward calls avg_pool2d (avg_pool2d) at "
                       f"{_line(_WindowNet, 'F.avg_pool2d')}:"),
    (_WindowNet(False), "layer 'pool' (AvgPool2d) cannot be mapped to the accelerator:"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(3),
                   nn.Flatten(), nn.Linear(4, 10)),
     "layer '2' (AvgPool2d) cannot be mapped to the accelerator:"),
], ids=["functional", "module-graph", "module-sequential"])
def test_a_window_that_does_not_cover_the_map_is_refused_at_the_first_forward(model, name):
    q = quantize_model(model, bits=4, weight_method="post", act_method="asq")
    with pytest.raises(MappingError) as info:
        q.train()(torch.rand(2, *SHAPE))
    assert str(info.value) == (
        f"{name} its 3x3 window does not cover the 4x4 "
        f"map it pools, and the accelerator average-pools 2x2 windows or the whole map; use "
        f"AvgPool2d(2), or AdaptiveAvgPool2d(1) for a global average pooling")


def test_compare_runs_a_format_3_chain(tmp_path):
    """A chain with the new operations is format 3, whose layers name their sources: it is
    still a chain, which ``asqgen compare`` runs (a residual bundle it refuses)."""
    from .cli import asqgen

    _, bundle = _trained(_ClipNet("F.relu6"))
    folder = B.save(bundle, tmp_path / "clip")
    assert B.load(folder).format == 3
    done = asqgen("compare", "--bundle", str(folder))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].split()[0] == "conv2" and lines[3].split()[0] == "fc"
    assert lines[-1].startswith("  output: top-1 agreement ")


@pytest.mark.parametrize("model, message", [
    (_seq(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.MaxPool2d(2)),
     "layer '3' (MaxPool2d) cannot be mapped to the accelerator: it cannot follow what follows "
     "'0': the order must be batch norm, shortcut addition, ReLU (or ReLU6), 2x2 pooling, "
     f"global average pooling, flatten, each optional; supported are {SUPPORTED}"),
    (nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10)),
     "layer '0' (BatchNorm2d) cannot be mapped to the accelerator: it comes before the first "
     f"Conv2d or Linear; supported are {SUPPORTED}"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 16), nn.ReLU6(),
                   nn.AvgPool2d(2), nn.Linear(16, 10)),
     "layer '4' (AvgPool2d) cannot be mapped to the accelerator: it pools the output of the "
     f"Linear '2': only a Conv2d's map is pooled; supported are {SUPPORTED}"),
], ids=["order", "before-first", "pool-after-linear"])
def test_a_sequential_in_the_wrong_order_is_refused_before_training(model, message):
    with pytest.raises(MappingError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == message


class _Index(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 2, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        out = self.conv(x) + x[:, :2]
        return self.fc(out.flatten(1))


def test_other_indexing_is_refused_naming_the_line():
    with pytest.raises(MappingError) as info:
        quantize_model(_Index(), bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == (
        f"the model (_Index) cannot be mapped to the accelerator: its indexing 'getitem' at "
        f"{_line(_Index, 'x[:, :2]')} is not an option-A shortcut (x[:, :, ::s, ::s], then "
        f"F.pad(x, (0, 0, 0, 0, a, b)) with zeros); a residual block returns "
        f"relu(bn2(conv2(...)) + shortcut), or the sum with no ReLU after it (MobileNet-V2's "
        f"x + self.conv(x)), the shortcut being its input or a projection conv with batch norm "
        f"(export/resnet.py's BasicBlock)")
