# amaranth: UnusedElaboratable=no
"""Users' own models, end to end: wrap, train briefly, export with test data, then
``asqgen compare`` and ``asqgen sim`` (RTL on a few inputs) with nothing assumed from the
default digits network; and the mapping rules' refusals, with their exact messages, at wrap,
export and in the CLI."""

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_wine
from torch import nn

from export.digits_bundle import DEFAULT_MODEL
from export.layers import quantized_conv2d, quantized_linear
from export.model import float_model as digits_float_model
from export.to_bundle import export_bundle, fingerprint
from export.wrap import quantize_model
from core import bundle as B
from asqgen.cli import main
from core.rules import MappingError
from core.sizing import array_for_bundle

from .bundles import random_bundle
from .cli import asqgen
from .conftest import ROOT

torch.set_num_threads(1)


def _digits(size=8):
    """Digits in [0, 1] as ``(N, 1, size, size)`` (16: each pixel repeated 2x2), split."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    if size == 16:
        x = x.repeat(2, axis=2).repeat(2, axis=3)
    return x[:1400], d.target[:1400], x[1400:1460], d.target[1400:1460]


def _wine():
    """Wine's 13 features min-max scaled to [0, 1] (non-negative: the inputs are unsigned)."""
    d = load_wine()
    x = d.data.astype(np.float32)
    x = (x - x.min(0)) / (x.max(0) - x.min(0))
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], d.target[order]
    return x[:140], y[:140], x[140:], y[140:]


def _k5_stride2():
    """1x16x16 input; kernel 5 without padding; stride 2; 2-bit POST, 2-bit ASQ."""
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(),                       # 12x12
        nn.Conv2d(6, 10, 3, stride=2, padding=1), nn.BatchNorm2d(10), nn.ReLU(),  # 6x6
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(90, 10))
    return model, dict(bits=2, weight_method="post", act_method="asq"), _digits(16), (1, 16, 16)


def _deeper_pot():
    """Three convs and two linear layers; 4-bit POT; ASQ on the convs' inputs, LSQ on the
    linear one's (a callable per layer)."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),                         # 2x2
        nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    acts = lambda name, module: "asq" if isinstance(module, nn.Conv2d) else "lsq"
    return model, dict(bits=4, weight_method="pot", act_method=acts), _digits(8), (1, 8, 8)


def _wide_asq(channels):
    """A conv of ``channels`` outputs feeding an ASQ input: its adapter (``channels / 4``
    hidden units) needs more than the 4,096 weights of the default register map, so the
    engine's map grows (``core.regmap.index_bits_for``)."""
    def make():
        model = nn.Sequential(
            nn.Conv2d(1, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(),       # 6x6
            nn.Conv2d(channels, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),              # 4x4
            nn.Flatten(), nn.Linear(128, 10))
        return model, dict(bits=4, weight_method="post", act_method="asq"), _digits(8), (1, 8, 8)
    make.__name__ = f"_wide_asq_{channels}"
    return make


def _wine_mlp():
    """A linear-only network on a feature vector; 3-bit POST, LSQ activations."""
    model = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    return model, dict(bits=3, weight_method="post", act_method="lsq"), _wine(), (13,)


def _train(model, x, y, epochs=2):
    torch.manual_seed(0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def _export(make, folder):
    torch.manual_seed(0)
    float_model, kwargs, (x, y, xt, yt), shape = make()
    model = _train(quantize_model(float_model, **kwargs), x, y)
    bundle = export_bundle(model, input_shape=shape, reference_inputs=xt, reference_labels=yt)
    return model, B.save(bundle, folder)


def _compute_names(model):
    return [n for n, m in model.named_modules() if type(m).__name__ in ("QConv2d", "QLinear")]


@pytest.mark.parametrize("make", [_k5_stride2, _deeper_pot, _wine_mlp, _wide_asq(160),
                                  _wide_asq(256)],
                         ids=["k5_stride2", "deeper_pot", "wine_mlp", "asq_160", "asq_256"])
def test_own_model_through_compare_and_sim(make, tmp_path, build_root, capsys):
    model, folder = _export(make, tmp_path / "bundle")
    names = _compute_names(model)
    out = tmp_path / "compare.json"
    assert main(["compare", "--bundle", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == len(B.load(folder).reference["labels"])
    assert [la["layer"] for la in report["layers"]] == names[1:]      # the user's names
    assert all(la["identical"] >= 0.97 for la in report["layers"]), report["layers"]
    assert report["top1_agreement"] >= 0.95 and report["torch_accuracy"] is not None
    out = tmp_path / "sim.json"
    code = main(["sim", "--bundle", str(folder), "--images", "2", "--rows", "4", "--cols", "4",
                 "--out", str(build_root), "--json", str(out)])
    sim = json.loads(out.read_text())
    assert code == 0 and sim["identical"] and sim["images"] == 2
    assert [la["layer"] for la in sim["layers"]] == names
    assert (sim["config"]["rows"], sim["config"]["cols"]) == (4, 4)
    assert sim["accuracy"]["rtl"] == sim["accuracy"]["golden"]
    for la in sim["layers"]:          # the cycle model holds for a user's network too
        assert abs(la["cycles_per_image"] - la["model_cycles_per_image"]) <= \
            0.02 * la["cycles_per_image"], la
    assert capsys.readouterr().out.rstrip().endswith("PASS: every layer of the RTL equals the "
                                                     "golden model")


def test_the_example_runs(tmp_path, build_root, capsys):
    spec = importlib.util.spec_from_file_location("own_model", ROOT / "examples" / "own_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    folder = example.main(["--epochs", "1", "--out", str(tmp_path)])
    bundle = B.load(folder)
    assert [la.name for la in bundle.layers] == ["0", "3", "7", "12"]
    assert [la.out_channels for la in bundle.layers] == [8, 24, 12, 10]
    assert bundle.reference["images"].shape == (360, 1, 8, 8)
    assert main(["compare", "--bundle", str(folder)]) == 0
    assert main(["sim", "--bundle", str(folder), "--images", "3", "--rows", "4", "--cols", "4",
                 "--out", str(build_root)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS: every layer of the RTL equals the "
                                                     "golden model")


# The rules, before training ------------------------------------------------------------------
PREFIX = "cannot be mapped to the accelerator: "


@pytest.mark.parametrize("model, kwargs, message", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                   nn.Linear(4, 2)), {},
     "layer '2' (MaxPool2d) " + PREFIX + "the hardware pools 2x2 only, not 4x4; use "
     "MaxPool2d(2) (2 times for 4x4)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 8), nn.ReLU(),
                   nn.Linear(8, 2)), {},
     "layer '3' (Linear) " + PREFIX + "ASQ on the input of a linear layer is not supported by "
     "the hardware (its adapter reads the whole vector); use act_method 'lsq' for this layer"),
    (nn.Sequential(nn.Conv2d(1, 2304, 3), nn.ReLU(), nn.Conv2d(2304, 8, 3), nn.ReLU(),
                   nn.Flatten(), nn.Linear(128, 2)), {},
     "layer '2' (Conv2d) " + PREFIX + "the ASQ adapter on its 2304 input channels has 576 "
     "hidden units, and 576 x 2304 channels of the widest layer (layer '0') is more than the "
     "1048576 adapter weights of the largest rescale unit the generator makes (20 index "
     "bits); use act_method 'lsq' for this layer, or fewer channels"),
    (digits_float_model(), dict(bits=8),
     "layer '3' (Conv2d) " + PREFIX + "144 products of 8-bit activations and 8-bit post weights "
     "are too wide for the rescale (even one is); use post or pot weights of at most 4 bits, "
     "or lsq weights"),
    (digits_float_model(), dict(act_method={"3": "asq"}),
     "act_method has no entry for layer '7' (give one for every middle layer: '3', '7')"),
    (digits_float_model(), dict(act_method={"0": "asq", "3": "asq", "7": "lsq"}),
     "act_method names '0', which is not a middle Conv2d or Linear layer of the model (those "
     "are '3', '7'; the first and the last layer take LSQ)"),
    (digits_float_model(), dict(act_method=lambda name, module: "pact"),
     "act_method of layer '3' must be one of lsq, asq, not 'pact'"),
])
def test_wrap_refuses_what_the_hardware_cannot_run(model, kwargs, message):
    args = dict(bits=4, weight_method="post", act_method="asq") | kwargs
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        quantize_model(model, **args)


def test_per_layer_act_methods():
    model = quantize_model(digits_float_model(), bits=4, weight_method="post",
                           act_method={"3": "asq", "7": "lsq"})
    kinds = [type(model[i].act_quantizer).__name__ for i in (0, 3, 7, 12)]
    assert kinds == ["LsqQuantizer", "AsqQuantizer", "LsqQuantizer", "LsqQuantizer"]


def test_train_refuses_8_bit_post_before_training():
    result = asqgen("train", "--bits", "8", "--out", "/nonexistent/never")
    assert result.returncode == 2
    assert result.stderr == ("asqgen: error: layer '3' (Conv2d) " + PREFIX + "144 products of "
                             "8-bit activations and 8-bit post weights are too wide for the "
                             "rescale (even one is); use post or pot weights of at most 4 bits, "
                             "or lsq weights\n")


# Negative inputs ------------------------------------------------------------------------------
def test_negative_inputs_warn_in_training_and_are_refused_at_export():
    model = quantize_model(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), bits=4,
                           weight_method="post", act_method="lsq")
    x = torch.tensor([[0.5, -1.5, 0.2], [0.1, 0.2, 0.3]])
    message = ("layer '0' (QLinear) " + PREFIX + "the inputs hold negative values (down to "
               "-1.5), which the unsigned input quantizer clamps to 0; shift and scale the "
               "inputs to be non-negative (for example min-max scaling to [0, 1])")
    with pytest.warns(UserWarning, match="^" + re.escape(message.replace("QLinear", "QLinear"))
                      + "$"):
        model.train()(x)
    with pytest.raises(MappingError, match="^" + re.escape(message) + "$"):
        export_bundle(model, input_shape=(3,), reference_inputs=x)


# The CLI on users' bundles ------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine_bundle(tmp_path_factory):
    return _export(_wine_mlp, tmp_path_factory.mktemp("wine") / "bundle")[1]


def test_compare_refuses_a_checkpoint_the_bundle_was_not_exported_from(wine_bundle):
    result = asqgen("compare", "--checkpoint", str(DEFAULT_MODEL), "--bundle", str(wine_bundle))
    assert result.returncode == 4    # a checkpoint error
    assert result.stderr == (
        f"asqgen: error: the bundle {wine_bundle} was not exported from the checkpoint "
        f"{DEFAULT_MODEL} (their fingerprints differ): export it again (asqgen export "
        f"--checkpoint {DEFAULT_MODEL} --out BUNDLE) or compare without --checkpoint\n")


def test_the_default_bundle_carries_its_checkpoints_fingerprint():
    from export.train import load_checkpoint

    model, _ = load_checkpoint(DEFAULT_MODEL)
    assert B.load(DEFAULT_MODEL / "bundle").meta["fingerprint"] == fingerprint(model)


def test_a_bundle_without_test_data_is_refused_with_the_way_to_add_it(tmp_path, wine_bundle):
    bundle = B.load(wine_bundle)
    bundle.reference = {}
    folder = B.save(bundle, tmp_path / "bare")
    for command in ("compare", "sim"):
        result = asqgen(command, "--bundle", str(folder))
        assert result.returncode == 3    # a bundle error
        assert result.stderr == (
            f"asqgen: error: the bundle {folder} has no reference inputs with PyTorch's "
            f"outputs: export it with export_bundle(model, input_shape=..., "
            f"reference_inputs=..., reference_labels=...) (see docs/guide.md, 'Use your own "
            f"model')\n")


def test_labels_are_optional(tmp_path, wine_bundle, capsys):
    bundle = B.load(wine_bundle)
    del bundle.reference["labels"]
    folder = B.save(bundle, tmp_path / "unlabelled")
    assert main(["compare", "--bundle", str(folder)]) == 0
    assert "over 38 inputs; no labels; largest logit difference" in capsys.readouterr().out


def test_the_cli_refuses_a_bundle_the_hardware_cannot_run(tmp_path):
    """An ASQ adapter on a linear layer's input (built without quantize_model, which would
    refuse it): the golden model runs it, verilog, compare and sim refuse it by the same
    rule and name the linear layer."""
    torch.manual_seed(0)
    model = nn.Sequential(
        quantized_conv2d(1, 4, 3, padding=1, weight_method="lsq", act_method="lsq", bits=8),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        quantized_linear(64, 8, weight_method="post", act_method="asq", bits=4), nn.ReLU(),
        quantized_linear(8, 3, weight_method="lsq", act_method="lsq", bits=8)).train()
    x = torch.rand(4, 1, 8, 8)
    model(x)
    folder = B.save(export_bundle(model, input_shape=(1, 8, 8), reference_inputs=x), tmp_path)
    message = ("asqgen: error: layer '4' (Linear) " + PREFIX + "ASQ on the input of a linear "
               "layer is not supported by the hardware (its adapter reads the whole vector); "
               "use act_method 'lsq' for this layer\n")
    for args in (["verilog", "--out", str(tmp_path / "v")], ["compare"], ["sim"]):
        result = asqgen(*args, "--bundle", str(folder))
        assert (result.returncode, result.stderr) == (3, message), args


def test_verilog_picks_an_array_that_fits():
    bundle = random_bundle(c1=2, c2=4, classes=3)          # K up to 18, at most 4 channels
    assert array_for_bundle(bundle) == (8, 4)
    assert array_for_bundle(bundle, rows=2) == (2, 4)


def test_export_refuses_asq_on_the_first_input():
    model = nn.Sequential(
        quantized_conv2d(1, 4, 3, weight_method="lsq", act_method="asq", bits=8), nn.ReLU(),
        nn.Flatten(), quantized_linear(144, 3, weight_method="lsq", act_method="lsq", bits=8))
    model.train()(torch.rand(2, 1, 8, 8))
    with pytest.raises(MappingError, match="^" + re.escape(
            "layer '0' (QConv2d) " + PREFIX + "the first layer's input must be LSQ (the host "
            "quantizes the input with one fixed step), not ASQ; use act_method 'lsq' for this "
            "layer") + "$"):
        export_bundle(model, input_shape=(1, 8, 8))
