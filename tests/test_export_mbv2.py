"""MobileNet-V2 from a user's float model to the golden model (the export half): depthwise
convs, the linear bottleneck's signed codes and the inverted residual's identity add with no
ReLU after it, through ``quantize_model``, three training steps on random data,
``export_bundle``, a save and load of the bundle, and the golden model against PyTorch's
fake-quantized model; then the one-line refusals.

Tolerances (``_agree``): each layer run alone on PyTorch's own input codes (``_isolated``)
gives PyTorch's output codes at 99% of the positions or more, never more than 1 apart (the
golden model rounds half up and its constants have 16 significant bits, PyTorch rounds half to
even in float32). Run end to end, at the input of every layer at least 97% of the codes equal
PyTorch's (90% for the 8-bit input of the classifier, whose steps are 16 times finer) and
none differs by more than 6 (a code that flips upstream moves the next layer's sums, and the
bottleneck's 1x1 convs over 4 channels and the depthwise conv's nine products move by several
steps per flip, where a wide conv averages it out); the top-1 agreement is at least 90% of the
48 random inputs; the golden logits (times ``2**-Z``) are within 5% of PyTorch's largest logit
plus 0.05 of PyTorch's. The
batch norms keep the last batch's statistics (``momentum=1``), so that three steps leave an
evaluation-mode network whose values span the codes (with the default momentum its outputs
shrink and most codes are 0, which would hide a wrong mapping). Each test also checks that
the operation reached the bundle (``groups``, ``next_signed``/``a_signed``, the shortcut,
``relu``) and that its codes take both signs where they are signed.
"""

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import bundle as B
from core import rescale
from core.rules import MappingError
from export.graph import analyse
from export.mobilenetv2 import InvertedResidual, mobilenetv2
from export.quantizers import AsqQuantizer, LsqQuantizer
from export.to_bundle import export_bundle
from export.wrap import quantize_model
from sim.golden import run_network
from sim.golden.network import layer_accumulators

from .test_export_ops import _trained as trained
from .test_export_ops import layer_codes

SHAPE = (1, 8, 8)


def _momentum_one(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    return model


def _trained(model, steps=3, count=48, seed=0, **methods):
    """``tests.test_export_ops._trained`` of ``model`` with every batch norm's momentum 1 (so
    that three steps already move the running statistics)."""
    return trained(_momentum_one(model), steps=steps, count=count, seed=seed, **methods)


def _agree(bundle, tmp_path):
    """The golden model of the saved and loaded bundle against PyTorch (module docstring);
    returns the loaded bundle and the trace."""
    loaded = B.load(B.save(bundle, tmp_path / "bundle"))
    assert loaded.format == B.OPS_FORMAT
    ref = loaded.reference
    trace = run_network(loaded, ref["codes"])
    for layer, ours, theirs in layer_codes(loaded, trace):
        small = layer.a_bits <= 4
        assert (ours == theirs).mean() >= (0.97 if small else 0.9), layer.name
        assert np.abs(ours - theirs).max() <= 6, layer.name
    _isolated(loaded, trace)
    assert (trace.logits.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.9
    g = trace.logits * 2.0 ** -rescale.Z
    assert np.abs(g - ref["logits"]).max() <= 0.05 * np.abs(ref["logits"]).max() + 0.05
    return loaded, trace


def _torch_codes(bundle, j):
    """PyTorch's output codes of layer ``j``: the input codes of a layer that reads it."""
    k = next(k for k in range(len(bundle.layers)) if bundle.source_index(k) == j)
    return bundle.reference[f"layer{k}.codes"].astype(np.int64)


def _isolated(bundle, trace):
    """Each layer of the golden model run on PyTorch's own codes (its input, and its identity
    shortcut's), with the golden model's ``beta`` of its source: its output codes equal
    PyTorch's at 99% of the positions or more and never differ by more than 1 (a tie that
    PyTorch rounds to even and the golden model up, or a constant's rounding next to one)."""
    ref, n = bundle.reference, len(bundle.reference["codes"])
    one = np.full(n, rescale.BETA_ONE, dtype=np.int64)
    for i, la in enumerate(bundle.layers[:-1]):
        if la.projection:
            continue
        j = bundle.source_index(i)
        codes = ref["codes"] if j is None else _torch_codes(bundle, j)
        beta = one if j is None else trace.layers[j].beta
        acc = layer_accumulators(la, codes.reshape((n,) + tuple(la.in_shape)))
        post = dict(relu=la.relu, pool=la.pool, pool_mode=la.pool_mode,
                    global_pool=la.global_pool)
        k = bundle.shortcut_index(i)
        if k is None:
            _, _, ours = rescale.rescale_layer(acc, beta, la.fixed, **post)
        else:
            assert not bundle.layers[k].projection
            other = _torch_codes(bundle, k).reshape((n,) + bundle.layers[k].out_shape)
            other = rescale.shortcut_codes(other, stride=la.shortcut_stride,
                                           pad=la.shortcut_pad, channels=la.out_channels)
            o = rescale.shortcut_operand(other, trace.layers[k].beta, la.shortcut_fixed)
            _, _, ours = rescale.rescale_residual(acc, beta, la.fixed, o, **post)
        theirs = _torch_codes(bundle, i).reshape(ours.shape)
        assert (ours == theirs).mean() >= 0.99, la.name
        assert np.abs(ours - theirs).max() <= 1, la.name


def _layer(bundle, name):
    return next(la for la in bundle.layers if la.name == name)


def _input_codes(bundle, name):
    i = next(i for i, la in enumerate(bundle.layers) if la.name == name)
    return bundle.reference[f"layer{i}.codes"]


# Depthwise conv ----------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
def test_a_depthwise_conv_with_relu6(stride, tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, stride=stride, padding=1, groups=8, bias=False),
                          nn.BatchNorm2d(8), nn.ReLU6(), nn.Flatten(),
                          nn.Linear(8 * (8 // stride) ** 2, 10))
    q, bundle = _trained(model)
    assert q[3].groups == 8 and isinstance(q[3].act_quantizer, AsqQuantizer)
    loaded, trace = _agree(bundle, tmp_path)
    dw = _layer(loaded, "3")
    assert (dw.groups, dw.stride, dw.clip, dw.relu) == (8, stride, 6.0, True)
    assert dw.weight.shape == (8, 1, 3, 3) and dw.k == 9
    assert dw.conv_shape == (8, 8 // stride, 8 // stride)
    assert not dw.a_signed and not dw.next_signed
    # The golden accumulators are the per-channel convolution of the codes (exact integers:
    # post weights times 2**frac_bits are integers here), so a dense mapping would fail.
    from core import numerics
    w = np.vectorize(lambda c: numerics.weight_value(dw.w_format, dw.w_bits, int(c)))(dw.weight)
    codes = torch.as_tensor(trace.layers[0].codes, dtype=torch.float64)
    want = F.conv2d(codes, torch.as_tensor(w * 2.0 ** dw.frac_bits), stride=stride, padding=1,
                    groups=8).numpy()
    from sim.golden.matmul import table_error
    assert np.abs(trace.layers[1].acc - want).max() <= 9 * table_error(dw.product_format)[0]


# Linear bottleneck: signed codes ------------------------------------------------------------

def test_a_linear_bottleneck_feeds_a_conv_with_signed_codes(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU6(),
                          nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4),     # no activation
                          nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Flatten(), nn.Linear(8 * 64, 10))
    q, bundle = _trained(model)
    aq = q[5].act_quantizer                       # act_method "asq", but the input is signed
    assert isinstance(aq, LsqQuantizer) and aq.signed and (aq.qn, aq.qp) == (-8, 7)
    assert isinstance(q[3].act_quantizer, AsqQuantizer)       # after a ReLU6: ASQ stays
    loaded, trace = _agree(bundle, tmp_path)
    neck, expand = _layer(loaded, "3"), _layer(loaded, "5")
    assert neck.next_signed and not neck.relu and expand.a_signed
    assert not _layer(loaded, "0").next_signed and not _layer(loaded, "9").a_signed
    assert _input_codes(bundle, "5").dtype == np.int8         # as exported (two's complement)
    assert _input_codes(bundle, "3").dtype == np.uint8
    theirs = _input_codes(loaded, "5")
    assert theirs.min() < 0 < theirs.max()
    assert theirs.min() >= -8 and theirs.max() <= 7
    ours = trace.layers[1].codes
    assert ours.min() < 0 < ours.max()


# Inverted residual block: the identity add, no ReLU after it -------------------------------

class _OneBlock(nn.Module):
    """stem (ReLU6), a linear bottleneck 8 -> 4, torchvision's inverted residual 4 -> 4 (expand
    2, stride 1: the identity added, no ReLU), head 1x1 (ReLU6), global pooling, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU6(inplace=True))
        self.neck = nn.Sequential(nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.block = InvertedResidual(4, 4, 1, 2)
        self.head = nn.Sequential(nn.Conv2d(4, 16, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU6(inplace=True))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.head(self.block(self.neck(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_an_inverted_residual_block_adds_the_signed_identity_with_no_relu(tmp_path):
    q, bundle = _trained(_OneBlock())
    loaded, trace = _agree(bundle, tmp_path)
    assert [la.name for la in loaded.layers] == ["stem.0", "neck.0", "block.conv.0",
                                                 "block.conv.3", "block.conv.6", "head.0", "fc"]
    project = _layer(loaded, "block.conv.6")
    assert project.shortcut == "neck.0" and not project.relu and project.next_signed
    assert (project.shortcut_stride, project.shortcut_pad) == (1, 0)
    assert _layer(loaded, "block.conv.0").a_signed and _layer(loaded, "head.0").a_signed
    assert _layer(loaded, "block.conv.3").groups == 8
    assert _layer(loaded, "head.0").global_pool and _layer(loaded, "head.0").relu
    # The sum's codes take both signs, and the golden model added the signed identity.
    i = [la.name for la in loaded.layers].index("block.conv.6")
    t, neck = trace.layers[i], trace.layers[1]
    assert t.codes.min() < 0 < t.codes.max() and t.u.min() < 0
    o = rescale.shortcut_operand(neck.codes, neck.beta, project.shortcut_fixed)
    z = rescale.affine(t.acc, trace.layers[i - 1].beta, project.fixed)
    assert (o < 0).any() and np.array_equal(t.u, z + o)
    # PyTorch adds the quantized identity: the block input's codes, read by the expansion.
    assert q.get_submodule("block.conv.0").act_quantizer.signed
    (add,) = [n for n in q.graph.nodes if n.op == "call_function" and n.target is operator.add]
    assert [a.target for a in add.args if a.op == "call_module"] == [
        "block.conv.0.act_quantizer", "block.conv.7"]


# A tiny MobileNet-V2 end to end ------------------------------------------------------------

def test_tiny_mobilenetv2(tmp_path):
    """``export.mobilenetv2``'s class with settings (1, 4, 1, 1), (2, 8, 2, 2), stem 8, head 16
    on 8x8 inputs: blocks at 8, 4 and 4 (the last with the identity add), the global pooling
    over 4x4."""
    model = mobilenetv2(settings=((1, 4, 1, 1), (2, 8, 2, 2)), stem=8, head=16)
    _, bundle = _trained(model)
    loaded, trace = _agree(bundle, tmp_path)
    names = [la.name for la in loaded.layers]
    assert names == ["features.0", "features.3.conv.0", "features.3.conv.3",
                     "features.4.conv.0", "features.4.conv.3", "features.4.conv.6",
                     "features.5.conv.0", "features.5.conv.3", "features.5.conv.6",
                     "features.6", "classifier.1"]
    assert [la.groups for la in loaded.layers] == [1, 8, 1, 1, 8, 1, 1, 16, 1, 1, 1]
    assert [la.next_signed for la in loaded.layers[:-1]] == [
        False, False, True, False, False, True, False, False, True, False]
    assert {la.name: la.shortcut for la in loaded.layers if la.shortcut} == {
        "features.5.conv.6": "features.4.conv.6"}
    assert [la.stride for la in loaded.layers if la.groups > 1] == [1, 2, 1]
    assert _layer(loaded, "features.6").global_pool
    assert _layer(loaded, "features.6").a_signed          # the head reads the block's sum
    for name in ("features.4.conv.0", "features.5.conv.0", "features.6"):
        assert _input_codes(loaded, name).min() < 0, name


def test_a_residual_sum_feeds_the_next_block_and_its_add(tmp_path):
    """Two inverted residuals 4 -> 4 in a row: the second adds the first one's sum (signed
    codes with no ReLU before them), which its expansion reads too."""
    model = mobilenetv2(settings=((1, 4, 1, 1), (2, 4, 2, 1)), stem=8, head=16)
    _, bundle = _trained(model)
    loaded, trace = _agree(bundle, tmp_path)
    assert {la.name: la.shortcut for la in loaded.layers if la.shortcut} == {
        "features.4.conv.6": "features.3.conv.3", "features.5.conv.6": "features.4.conv.6"}
    for name in ("features.4.conv.6", "features.5.conv.6"):
        la = _layer(loaded, name)
        assert la.next_signed and not la.relu
        i = [x.name for x in loaded.layers].index(name)
        assert trace.layers[i].codes.min() < 0 < trace.layers[i].codes.max()
    assert _layer(loaded, "features.5.conv.0").a_signed


def test_the_full_mobilenetv2_is_mapped_before_training():
    """The real network: 20 compute layers, six depthwise convs, two identity adds with no
    ReLU after them; its signed layers take LSQ, the others ASQ."""
    model = mobilenetv2()
    layers = analyse(model)
    assert len(layers) == 20
    assert sum(la.module.groups > 1 for la in layers if isinstance(la.module, nn.Conv2d)) == 6
    assert [(la.path, layers[la.shortcut].path) for la in layers if la.shortcut is not None] == [
        ("features.5.conv.6", "features.4.conv.6"), ("features.7.conv.6", "features.6.conv.6")]
    q = quantize_model(model, bits=4, weight_method="post", act_method="asq")
    signed = sorted(n for n, m in q.named_modules() if isinstance(m, LsqQuantizer) and m.signed
                    and n.endswith("act_quantizer"))
    assert signed == ["features.4.conv.0.act_quantizer", "features.5.conv.0.act_quantizer",
                      "features.6.conv.0.act_quantizer", "features.7.conv.0.act_quantizer",
                      "features.8.conv.0.act_quantizer", "features.9.act_quantizer"]


def test_a_depthwise_conv_may_take_its_own_weight_method(tmp_path):
    """``weight_method`` as a callable: LSQ (int) weights on the depthwise convs, POST on the
    others."""
    model = mobilenetv2(settings=((1, 4, 1, 1), (2, 8, 2, 2)), stem=8, head=16)
    pick = lambda name, m: "lsq" if isinstance(m, nn.Conv2d) and m.groups > 1 else "post"
    _, bundle = _trained(model, weight_method=pick)
    loaded, _ = _agree(bundle, tmp_path)
    formats = {la.name: la.w_format for la in loaded.layers[1:-1]}
    assert {n for n, f in formats.items() if f == "int"} == {
        "features.3.conv.0", "features.4.conv.3", "features.5.conv.3"}
    assert {f for n, f in formats.items() if n not in ("features.3.conv.0",
                                                      "features.4.conv.3",
                                                      "features.5.conv.3")} == {"post"}


# Refusals ------------------------------------------------------------------------------------

def _dw_seq(conv):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), conv, nn.ReLU(),
                         nn.Flatten(), nn.Linear(conv.out_channels * 64, 10))


@pytest.mark.parametrize("model, message", [
    (_dw_seq(nn.Conv2d(4, 4, 3, padding=1, groups=2)),
     "layer '2' (Conv2d) cannot be mapped to the accelerator: groups=2 with 4 input and 4 "
     "output channels (a grouped convolution: the accelerator runs groups=1, or a depthwise "
     "conv with groups = in_channels = out_channels); use groups=1, or groups=in_channels with "
     "out_channels=in_channels"),
    (_dw_seq(nn.Conv2d(4, 8, 3, padding=1, groups=4)),
     "layer '2' (Conv2d) cannot be mapped to the accelerator: groups=4 with 4 input and 8 "
     "output channels (a depthwise convolution with a channel multiplier of 2: the accelerator "
     "runs groups=1, or a depthwise conv with groups = in_channels = out_channels); use "
     "groups=1, or groups=in_channels with out_channels=in_channels"),
], ids=["grouped", "multiplier-2"])
def test_other_grouped_convs_are_refused_in_one_line(model, message):
    with pytest.raises(MappingError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == message and "\n" not in message


def test_asq_asked_for_a_signed_input_is_refused():
    model = mobilenetv2(settings=((1, 4, 1, 1), (2, 8, 2, 2)), stem=8, head=16)
    with pytest.raises(MappingError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method=lambda name, m: "asq")
    assert str(info.value) == (
        "layer 'features.4.conv.0' (Conv2d) cannot be mapped to the accelerator: its input, the "
        "output of 'features.3.conv.3', is signed (no ReLU after that layer: a linear "
        "bottleneck or a residual sum), and ASQ quantizes non-negative activations; use "
        "act_method 'lsq' for this layer")


def test_pot_and_post_weights_do_not_mix():
    model = mobilenetv2(settings=((1, 4, 1, 1), (2, 8, 2, 2)), stem=8, head=16)
    pick = lambda name, m: "pot" if isinstance(m, nn.Conv2d) and m.groups > 1 else "post"
    with pytest.raises(ValueError, match=r"^weight_method gives pot weights to layer "
                                         r"'features.3.conv.0' and post weights to layer "
                                         r"'features.3.conv.3': one bundle holds one post/pot "
                                         r"format \(lsq weights mix with either\)$"):
        quantize_model(model, bits=4, weight_method=pick, act_method="asq")
