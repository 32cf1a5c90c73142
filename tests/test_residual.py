"""Residual networks in the software half: the residual add of ``core.rescale``, bundle format 2
and its checks, ``export.graph`` behind ``quantize_model`` and ``export_bundle``, the golden
model against PyTorch.

The network is ``export.resnet``'s ResNet-8 made small (widths 8, 8, 16 at 8x8: an identity
block and two blocks with strided 1x1 projections), trained for a few epochs on the digits, so
that the suite needs no Fashion-MNIST. Integers are compared exactly; floats within the
tolerances stated at each test.
"""

import inspect
import json

import numpy as np
import pytest
import torch
from torch import nn

from export.graph import BLOCK, analyse
from export.resnet import build_resnet, resnet8
from export.to_bundle import export_bundle, torch_trace
from export.train import _fit
from export.wrap import quantize_model
from core import bundle as B
from core import rescale
from core.errors import BundleError
from core.rules import MappingError
from sim.golden import run_network

from .cli import asqgen

SMALL = dict(widths=(8, 8, 16), size=8)
NAMES = ["stem.0", "layer1.conv1", "layer1.conv2", "layer2.conv1", "layer2.shortcut.0",
         "layer2.conv2", "layer3.conv1", "layer3.shortcut.0", "layer3.conv2", "fc"]


# The residual add of core.rescale, without PyTorch ------------------------------------------

def _exact_rshift(x, n):
    """``floor((x + 2**(n-1)) / 2**n)`` with Python integers (no int64, no numpy)."""
    return (x + (1 << (n - 1))) >> n if n > 0 else x << -n


@pytest.mark.parametrize("step, bits", [(0.0731, 4), (1.5, 2), (2.0 ** -9, 8), (3.3, 3)])
def test_shortcut_operand_is_the_stated_integer_formula(step, bits):
    r = rescale.shortcut_fixed_point(step=step, channels=3, bits=bits)
    ones = np.ones(3)
    same = rescale.fixed_point(bn_scale=ones, bn_bias=np.zeros(3), s_in=step, alpha=ones,
                               frac_bits=0, acc_bound=2 ** bits - 1)
    for key, value in same.arrays().items():
        assert np.array_equal(r.arrays()[key], value)
    assert len(set(r.m.tolist())) == 1 and not r.bias_q.any()
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2 ** bits, size=(5, 3, 2, 2))
    beta = rng.integers(1, rescale.BETA_MAX + 1, size=5)
    ours = rescale.shortcut_operand(codes, beta, r)
    for idx in np.ndindex(codes.shape):
        c = idx[1]
        want = _exact_rshift(int(codes[idx]) * int(beta[idx[0]]) * int(r.m[c]),
                             int(r.z_shift[c]))
        assert int(ours[idx]) == want
    # Against the real value code * step * beta: the rounding of the shift (half a unit of
    # 2**-Z) plus the 16-bit mantissa of the step (relative 2**-15).
    real = codes * step * (beta / rescale.BETA_ONE).reshape(-1, 1, 1, 1) * 2.0 ** rescale.Z
    assert np.all(np.abs(ours - real) <= 0.5 + np.abs(real) * 2.0 ** -15 + 1e-9)


def test_residual_add_is_exact_and_checked():
    z = np.array([[-5, 7], [2 ** 40, 0]], dtype=np.int64)
    o = np.array([[5, -8], [2 ** 40, 3]], dtype=np.int64)
    assert rescale.residual_add(z, o).tolist() == [[0, -1], [2 ** 41, 3]]
    with pytest.raises(ValueError, match=r"^the residual operands have shapes \(2, 2\) and "
                                         r"\(2,\)$"):
        rescale.residual_add(z, o[0])
    with pytest.raises(ValueError, match="^the residual sum would exceed 62 bits$"):
        rescale.residual_add(z, np.full((2, 2), 2 ** 61, dtype=np.int64))


def test_rescale_residual_adds_before_the_relu():
    rng = np.random.default_rng(3)
    r = rescale.fixed_point(bn_scale=rng.uniform(0.5, 2, 4), bn_bias=rng.normal(0, 1, 4),
                            s_in=0.05, alpha=rng.uniform(0.1, 1, 4), frac_bits=10,
                            acc_bound=2 ** 20, next_step=0.1, next_bits=4)
    acc = rng.integers(-2 ** 16, 2 ** 16, size=(3, 4, 4, 4))
    beta = np.array([rescale.BETA_ONE, 9000, 30000])
    o = rng.integers(-2 ** 18, 2 ** 18, size=acc.shape)
    u, b, codes = rescale.rescale_residual(acc, beta, r, o, relu=True, pool=2)
    z = rescale.affine(acc, beta, r)
    want = rescale.pool2d(np.maximum(z + o, 0), 2)
    assert np.array_equal(u, want)
    assert np.array_equal(codes, rescale.requantize(want, b, r))
    # A zero operand is the plain rescale, bit for bit.
    plain = rescale.rescale_layer(acc, beta, r, relu=True, pool=2)
    for ours, theirs in zip(rescale.rescale_residual(acc, beta, r, np.zeros_like(acc),
                                                     relu=True, pool=2), plain):
        assert np.array_equal(ours, theirs)


# A small trained ResNet -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """``(model, bundle)``: the small ResNet, 2 float + 3 QAT epochs of 4-bit ASQ+POST on the
    digits (about 10 s), exported with the 360 test images."""
    from export import digits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    source = resnet8(**SMALL)
    _fit(source, epochs=2, lr=0.05, seed=0, phase="float", log=None, progress=False)
    torch.manual_seed(1)
    model = build_resnet(bits=4, weight_method="post", act_method="asq", source=source)
    _fit(model, epochs=3, lr=0.01, seed=1, phase="qat", log=None, progress=False)
    x, y = digits.tensors("test")
    bundle = export_bundle(model.eval(), input_shape=(1, 8, 8), reference_inputs=x.numpy(),
                           reference_labels=y.numpy())
    return model, bundle


@pytest.fixture
def saved(trained, tmp_path):
    return B.save(trained[1], tmp_path / "resnet")


def test_the_graph_is_read_from_forward():
    layers = analyse(resnet8(**SMALL))
    assert [la.path for la in layers] == NAMES
    names = lambda i: None if i is None else NAMES[i]
    assert [names(la.source) for la in layers] == [
        None, "stem.0", "layer1.conv1", "layer1.conv2", "layer1.conv2", "layer2.conv1",
        "layer2.conv2", "layer2.conv2", "layer3.conv1", "layer3.conv2"]
    assert {NAMES[i]: names(la.shortcut) for i, la in enumerate(layers) if la.shortcut
            is not None} == {"layer1.conv2": "stem.0", "layer2.conv2": "layer2.shortcut.0",
                             "layer3.conv2": "layer3.shortcut.0"}
    assert [la.path for la in layers if la.projection] == ["layer2.shortcut.0",
                                                          "layer3.shortcut.0"]


def test_readers_of_one_value_share_its_quantizer_and_the_shortcut_adds_it():
    torch.manual_seed(0)
    model = build_resnet(bits=4, weight_method="post", act_method="asq",
                         source=resnet8(**SMALL))
    get = model.get_submodule
    assert get("layer2.shortcut.0").act_quantizer is get("layer2.conv1").act_quantizer
    assert get("layer3.shortcut.0").act_quantizer is get("layer3.conv1").act_quantizer
    assert get("layer2.conv1").act_quantizer is not get("layer1.conv1").act_quantizer
    # The identity shortcut of layer1 adds the quantized block input, not the float one.
    x = torch.rand(4, 1, 8, 8)
    model.train()(x)
    model.eval()
    seen = {}

    def keep(name):
        def hook(module, args, out):            # returns None: the output is left as it is
            seen[name] = (args[0], out)
        return hook

    hooks = [get(n).register_forward_hook(keep(n))
             for n in ("stem.2", "layer1.bn2", "layer1.relu2")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    block_in = get("layer1.conv1").act_quantizer(seen["stem.2"][1])
    assert torch.equal(seen["layer1.relu2"][1],
                       torch.relu(seen["layer1.bn2"][1] + block_in))
    assert not torch.equal(block_in, seen["stem.2"][1])


def test_the_bundle_is_format_2_and_loads_with_the_same_golden_results(trained, saved):
    _, bundle = trained
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == 2
    entries = {e["name"]: e for e in manifest["layers"]}
    assert [e["name"] for e in manifest["layers"]] == NAMES
    assert entries["layer1.conv2"]["shortcut"] == "stem.0"
    assert entries["layer2.conv2"]["shortcut"] == "layer2.shortcut.0"
    assert entries["layer2.shortcut.0"]["projection"] is True
    assert entries["layer2.shortcut.0"]["next_step"] is None
    assert entries["stem.0"]["source"] is None
    loaded = B.load(saved)
    codes = bundle.reference["codes"]
    a, b = run_network(bundle, codes), run_network(loaded, codes)
    assert np.array_equal(a.logits, b.logits)
    for x, y in zip(a.layers, b.layers):
        for key in ("acc", "u", "beta", "codes"):
            ours, theirs = getattr(x, key), getattr(y, key)
            assert (ours is None and theirs is None) or np.array_equal(ours, theirs)
    for name in ("m", "e", "bias_q"):
        assert np.array_equal(loaded.layers[2].shortcut_fixed.arrays()[name],
                              bundle.layers[2].shortcut_fixed.arrays()[name])


def test_golden_model_against_pytorch(trained):
    """Tolerances: at the input of every layer at least 99% of the 4-bit codes equal
    PyTorch's and none differs by more than 2 (for the 8-bit codes of the last layer, whose
    steps are 16 times finer: 95% and 4); top-1 agreement at least 98% over the 360 test images; where
    every earlier layer agrees, a residual layer's value (after the add and the ReLU) is
    within 2**-10 of PyTorch's float value relative to the layer's largest value (the
    roundings of z and of the shortcut operand, half a unit of 2**-Z each, and the 16-bit
    constants)."""
    model, bundle = trained
    ref = bundle.reference
    trace = run_network(bundle, ref["codes"])
    for i in range(1, len(bundle.layers)):
        ours = trace.layers[bundle.source_index(i)].codes.reshape(len(ref["codes"]), -1)
        theirs = ref[f"layer{i}.codes"].astype(np.int64).reshape(ours.shape)
        share = 0.99 if bundle.layers[i].a_bits <= 4 else 0.95
        assert (ours == theirs).mean() >= share, bundle.layers[i].name
        assert np.abs(ours - theirs).max() <= (2 if bundle.layers[i].a_bits <= 4 else 4), \
            bundle.layers[i].name
    agree = (trace.logits.argmax(1) == ref["logits"].argmax(1)).mean()
    assert agree >= 0.98
    # The residual layers' values against the float model.
    outputs = {}

    def keep(k):
        def hook(module, args, out):            # returns None: the output is left as it is
            outputs[k] = out.numpy()
        return hook

    hooks = [model.get_submodule(f"layer{k}.relu2").register_forward_hook(keep(k))
             for k in (1, 2, 3)]
    try:
        torch_trace(model, ref["images"])
    finally:
        for h in hooks:
            h.remove()
    same = np.ones(len(ref["codes"]), dtype=bool)
    for i in range(1, len(bundle.layers)):
        ours = trace.layers[bundle.source_index(i)].codes.reshape(len(same), -1)
        same &= (ours == ref[f"layer{i}.codes"].reshape(ours.shape)).all(axis=1)
        name = bundle.layers[i].name
        if name.endswith("conv2"):
            k = int(name[5])
            ours_u = trace.layers[i].u * 2.0 ** -rescale.Z
            theirs_u = outputs[k]
            if theirs_u.shape != ours_u.shape:          # pooled in the bundle's layer
                theirs_u = rescale.pool2d(theirs_u, 2)
            worst = np.abs(ours_u - theirs_u)[same].max()
            assert same.sum() >= len(same) // 2
            assert worst <= 2.0 ** -10 * np.abs(theirs_u).max(), (name, worst)


def test_integer_properties_of_the_residual_trace(trained):
    _, bundle = trained
    trace = run_network(bundle, bundle.reference["codes"][:20])
    for i, (layer, t) in enumerate(zip(bundle.layers, trace.layers)):
        if layer.projection:
            j = bundle.source_index(i)
            assert t.codes is None and t.beta is None
            assert np.array_equal(t.u, rescale.affine(t.acc, trace.layers[j].beta,
                                                      layer.fixed))
        elif layer.next_step is not None:
            assert t.codes.min() >= 0 and t.codes.max() <= 2 ** layer.next_bits - 1
            assert t.u.min() >= 0                          # after the ReLU
        if layer.shortcut is not None:
            k = bundle.shortcut_index(i)
            j = bundle.source_index(i)
            z = rescale.affine(t.acc, trace.layers[j].beta, layer.fixed)
            other = trace.layers[k]
            o = other.u if bundle.layers[k].projection else rescale.shortcut_operand(
                other.codes, other.beta, layer.shortcut_fixed)
            u = np.maximum(z + o, 0)
            assert np.array_equal(t.u, rescale.pool2d(u, layer.pool) if layer.pool > 1 else u)


def test_compare_reports_every_layer_of_a_residual_bundle(trained, saved, tmp_path):
    """``asqgen compare`` on a residual bundle: one row per layer input (a layer's source's
    codes, shared by a block's conv1 and its projection), and a corrupted reference for one
    layer shows in that layer's row only."""
    _, bundle = trained
    ref = bundle.reference
    trace = run_network(bundle, ref["codes"])
    done = asqgen("compare", "--bundle", str(saved), "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["layer"] for r in report["layers"]] == NAMES[1:]
    for i, row in enumerate(report["layers"], start=1):
        j = bundle.source_index(i)
        ours = trace.layers[j].codes
        theirs = ref[f"layer{i}.codes"].reshape(ours.shape)
        assert row["identical"] == pytest.approx((ours == theirs).mean(), abs=0)
        assert row["identical"] > 0.95
    golden = trace.logits.argmax(1)
    assert report["top1_agreement"] == pytest.approx((golden == ref["logits"].argmax(1)).mean())
    assert report["golden_accuracy"] == pytest.approx((golden == ref["labels"]).mean())

    path = saved / "arrays.npz"                   # PyTorch's codes of one layer, all changed
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    victim = NAMES.index("layer2.conv2")
    codes = arrays[f"reference.layer{victim}.codes"]
    arrays[f"reference.layer{victim}.codes"] = np.where(codes > 0, codes - 1, 1)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    done = asqgen("compare", "--bundle", str(saved), "--json", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "s.json").read_text())["layers"]
    assert [r["identical"] < 0.05 for r in rows] == [n == "layer2.conv2" for n in NAMES[1:]]


# Bundle format 2: the schema's checks ------------------------------------------------------

def _edit(folder, edit):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit({e["name"]: e for e in m["layers"]}, m)
    path.write_text(json.dumps(m))


def _set(name, key, value):
    return lambda layers, m: layers[name].__setitem__(key, value)


def _drop_shortcut_array(folder):
    path = folder / "arrays.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["layer2.shortcut.m"] = arrays["layer2.shortcut.m"] + 1
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("edit, message", [
    (_set("layer1.conv1", "source", "nowhere"),
     r"layer 'layer1\.conv1'\.source names an unknown layer 'nowhere'"),
    (_set("layer1.conv1", "source", "layer1.conv2"),
     r"layer 'layer1\.conv1'\.source names 'layer1\.conv2', which comes later \(a forward "
     r"reference: the list is the execution order\)"),
    (_set("layer1.conv1", "source", "layer1.conv1"),
     r"layer 'layer1\.conv1'\.source names the layer itself \(a cycle\)"),
    (_set("stem.0", "source", "fc"),
     r"layer 'stem\.0'\.source must be null: the first layer reads the network input"),
    (_set("layer1.conv1", "source", None),
     r"layer 'layer1\.conv1'\.source is missing \(only the first layer reads the network "
     r"input\)"),
    (_set("layer1.conv1", "source", 3), r"layers\[1\]\.source must be str, not int"),
    (_set("layer2.conv2", "shortcut", "layer1.conv2"),
     r"layer 'layer2\.conv2' adds the output of 'layer1\.conv2' of shape \(8, 8, 8\) to its "
     r"output of shape \(8, 4, 4\)"),
    (_set("layer2.conv2", "shortcut", "layer3.shortcut.0"),
     r"layer 'layer2\.conv2'\.shortcut names 'layer3\.shortcut\.0', which comes later"),
    (_set("layer3.conv2", "shortcut", "layer2.shortcut.0"),
     r"layer 'layer3\.conv2' adds the projection 'layer2\.shortcut\.0' of shape \(8, 4, 4\) "
     r"to its output of shape \(16, 2, 2\)"),
    (_set("layer2.conv2", "shortcut", None),
     r"the projection 'layer2\.shortcut\.0' must be the shortcut of exactly one layer and the "
     r"source of none"),
    (_set("layer2.shortcut.0", "projection", False),
     r"layer 'layer2\.shortcut\.0' has no next_step"),
    (_set("layer3.conv1", "source", "layer1.conv2"),
     r"layer 'layer3\.conv1' takes \(8, 4, 4\), but its source gives \(8, 8, 8\)"),
    (_set("layer2.conv1", "source", "layer1.conv1"),
     r"layer 'layer2\.conv1'\.s_in is [0-9.e-]+, but its input is quantized with the step "
     r"[0-9.e-]+$"),
    (_set("fc", "shortcut", "layer3.conv1"),
     r"layer 'fc': only a conv layer that is neither the last one nor a projection may have "
     r"a shortcut"),
    (_set("layer1.conv1", "name", "stem.0"), r"two layers are named 'stem\.0'"),
    (lambda layers, m: m.__setitem__("format", 4),
     r"format 4 is not supported \(this asqgen reads formats 1, 2 and 3\)"),
])
def test_bad_graphs_are_refused_with_one_line(saved, edit, message):
    _edit(saved, edit)
    with pytest.raises(BundleError, match=message) as info:
        B.load(saved)
    assert "\n" not in str(info.value)


def test_a_changed_shortcut_fixed_point_is_refused(saved):
    _drop_shortcut_array(saved)
    with pytest.raises(BundleError, match=r"arrays\.npz: layer2\.shortcut\.m differs from the "
                                          r"fixed point computed from the step of 'stem\.0'$"):
        B.load(saved)


def test_an_unused_output_is_refused(trained, tmp_path):
    import copy

    bundle = copy.deepcopy(trained[1])
    by_name = {la.name: la for la in bundle.layers}
    for name in ("layer3.conv1", "layer3.shortcut.0"):     # both read layer2.conv1 instead
        by_name[name].source = "layer2.conv1"
        by_name[name].s_in = by_name["layer2.conv1"].next_step
    bundle.reference = {}
    with pytest.raises(BundleError, match=r"^manifest\.json: the output of layer 'layer2\.conv2' "
                                          r"is not used$"):
        B.save(bundle, tmp_path / "dead")


def test_a_chain_bundle_is_still_format_1(tmp_path):
    from .bundles import random_bundle

    folder = B.save(random_bundle(1), tmp_path / "chain")
    assert json.loads((folder / "manifest.json").read_text())["format"] == 1
    assert not B.load(folder).is_graph


# quantize_model's refusals for residual models --------------------------------------------

class _AddAfterRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x)) + x


class _AddInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + x


class _AddInput4(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x) + x)


def _at(cls):
    """``file:line (code)`` of the last line of ``cls.forward`` (where it adds)."""
    lines, first = inspect.getsourcelines(cls.forward)
    return f"test_residual.py:{first + len(lines) - 1} ({lines[-1].strip()})"


def _net(block, cin=4):
    return nn.Sequential(nn.Conv2d(1, cin, 3, padding=1), nn.ReLU(), block, nn.Flatten(),
                         nn.Linear(cin * 64, 3))


@pytest.mark.parametrize("model, message", [
    (_net(_AddAfterRelu()), "layer '2' (_AddAfterRelu) cannot be mapped to the accelerator: "
     f"its addition 'add' at {_at(_AddAfterRelu)} must add a Conv2d's output (after its batch norm, before its ReLU) "
     f"and a shortcut; {BLOCK}"),
    (nn.Sequential(_AddInput(), nn.Flatten(), nn.Linear(64, 3)),
     f"layer '0' (_AddInput) cannot be mapped to the accelerator: its addition 'add' at "
     f"{_at(_AddInput)} adds the "
     f"model's input: start the network with a Conv2d; {BLOCK}"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), _AddInput4(), nn.GELU(),
                   nn.Flatten(), nn.Linear(256, 3)),
     "layer '3' (GELU) cannot be mapped to the accelerator: supported are Conv2d, Linear, "
     "BatchNorm2d, BatchNorm1d, ReLU, ReLU6, Hardtanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, "
     "Flatten, Dropout, Identity in nn.Sequential containers"),
])
def test_unmappable_residual_models_are_refused_naming_the_layer(model, message):
    with pytest.raises(MappingError) as info:
        quantize_model(model, bits=4, weight_method="post", act_method="asq")
    assert str(info.value) == message


def test_readers_of_one_value_must_quantize_it_alike():
    methods = {n: "asq" for n in NAMES[1:-1]}
    methods["layer2.shortcut.0"] = "lsq"
    with pytest.raises(MappingError) as info:
        quantize_model(resnet8(**SMALL), bits=4, weight_method="post", act_method=methods)
    assert str(info.value) == (
        "layer 'layer2.shortcut.0' (QConv2d) cannot be mapped to the accelerator: it reads the "
        "output that 'layer2.conv1' reads, and one value has one quantizer, but it would "
        "quantize it differently (lsq 4-bit, not asq 4-bit); give both the same method "
        "(act_method)")


# The commands' one-line refusals (the suite has no Fashion-MNIST) -------------------------

def _run(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "asqgen", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, status, message", [
    (["train", "--data", "digits", "--model", "resnet8"], 2,
     "asqgen: error: --model resnet8 does not train on --data digits (the digits take the cnn, "
     "Fashion-MNIST the resnet8, the resnet20 or the mobilenetv2)"),
    (["train", "--data", "digits", "--model", "resnet20"], 2,
     "asqgen: error: --model resnet20 does not train on --data digits (the digits take the cnn, "
     "Fashion-MNIST the resnet8, the resnet20 or the mobilenetv2)"),
    (["train", "--data", "fashion-mnist", "--model", "cnn"], 2,
     "asqgen: error: --model cnn does not train on --data fashion-mnist (the digits take the "
     "cnn, Fashion-MNIST the resnet8, the resnet20 or the mobilenetv2)"),
    (["train", "--train-images", "10"], 2,
     "asqgen: error: --train-images is for --data fashion-mnist"),
    (["methods", "--train-images", "10", "--no-plot"], 2,
     "asqgen: error: --train-images is for --data fashion-mnist"),
    (["train", "--data", "fashion-mnist"], 5, "asqgen: error: {none}/train-images-idx3-ubyte.gz: "
     "Fashion-MNIST not found; install Debian's package dataset-fashion-mnist (apt-get install "
     "dataset-fashion-mnist) or set ASQGEN_FASHION_MNIST"),
    (["methods", "--data", "fashion-mnist", "--no-plot"], 5,
     "asqgen: error: {none}/train-images-idx3-ubyte.gz: Fashion-MNIST not found; install "
     "Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set "
     "ASQGEN_FASHION_MNIST"),
])
def test_fashion_commands_refuse_in_one_line(args, status, message, tmp_path):
    none = tmp_path / "none"
    done = _run(*args, "--out", str(tmp_path / "out"), env={"ASQGEN_FASHION_MNIST": str(none)})
    assert done.returncode == status, done.stderr
    assert done.stderr.startswith(message.format(none=none)) and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


# The residual network on the hardware ----------------------------------------------------

def test_a_residual_bundle_needs_the_residual_add(trained):
    from core.sizing import check_fits, config_for_bundle

    _, bundle = trained
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    assert cfg.residual is True
    with pytest.raises(ValueError, match=r"^the bundle has residual blocks; the engine is "
                                         r"built without the residual add \(residual=False\)$"):
        check_fits(bundle, cfg.replace(residual=False))


def test_residual_network_on_the_rtl(trained, build_root):
    """The small ResNet on the layer engine (4x4 array): the identity shortcut's codes and the
    projections' z as the rescale unit's second operand, with 30 % stalls and backpressure on
    every stream: every layer (the projections' z too), every beta and the outputs identical
    to the golden model. Then without stalls: every layer within 2 % of the cycle model."""
    from gen.cycles import network_cycles
    from core.sizing import config_for_bundle
    from sim.network_sim import NetworkSim

    _, bundle = trained
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    sim = NetworkSim(cfg, build_root)
    codes = bundle.reference["codes"][:6]
    golden = run_network(bundle, codes)
    calm = sim.run(bundle, codes, name="resnet_calm")
    busy = sim.run(bundle, codes, seed=2, stall=0.3, backpressure=0.3, name="resnet_busy")
    model = network_cycles(bundle, cfg, len(codes))
    for run in (calm, busy):
        for i, layer in enumerate(bundle.layers[:-1]):
            trace = golden.layers[i]
            want = trace.u if layer.projection else trace.codes
            np.testing.assert_array_equal(run.outputs[i], want, err_msg=layer.name)
            if not layer.projection:
                np.testing.assert_array_equal(run.betas[i], trace.beta, err_msg=layer.name)
        np.testing.assert_array_equal(run.outputs[-1], golden.logits)
    assert any(layer.projection for layer in bundle.layers)
    for i, layer in enumerate(bundle.layers):
        got, want = calm.layer_clocks[i], model[layer.name].clocks
        assert abs(got - want) <= 0.02 * got, (layer.name, got, want)
