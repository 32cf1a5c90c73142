# amaranth: UnusedElaboratable=no
"""Bundle format 3's operations on the layer engine in Verilator: the bounded ReLU's clip,
average pooling, the option-A shortcut (the host's ``core.rescale.shortcut_codes`` on
``i_res``) and global pooling followed by a linear layer (``tests.bundles.ops_bundle``),
every layer's codes, every beta and the logits identical to the golden model with 20 %
stalls and backpressure on every stream; without stalls, every layer within 2 % of the cycle
model (``gen.cycles``). One build (one ``ArrayConfig``) serves every test here."""

import functools

import numpy as np
import pytest

from core.sizing import config_for_bundle
from gen.cycles import network_cycles
from sim.golden import run_network
from sim.network_sim import NetworkSim

from .bundles import ops_bundle
from .test_network_rtl import assert_counters

#: Two networks: 4 -> 8 channels (pad 2; two blocks of columns at the global pooling) and
#: 8 -> 12 (pad 2; three blocks; two-layer adapters).
BUNDLES = {"4-8": dict(seed=0, c1=4, c2=8), "8-12": dict(seed=1, c1=8, c2=12, classes=7)}


@functools.cache
def _config():
    """The engine for both networks: a 4x4 array sized for the larger one."""
    return config_for_bundle(ops_bundle(**BUNDLES["8-12"]), rows=4, cols=4)


def _assert_identical(bundle, codes, run):
    golden = run_network(bundle, codes)
    for i, layer in enumerate(golden.layers[:-1]):
        np.testing.assert_array_equal(run.outputs[i], layer.codes, err_msg=layer.name)
        np.testing.assert_array_equal(run.betas[i], layer.beta, err_msg=layer.name)
    np.testing.assert_array_equal(run.outputs[-1], golden.logits)
    return golden


def test_the_networks_use_every_operation():
    for kwargs in BUNDLES.values():
        bundle = ops_bundle(**kwargs)
        assert bundle.format == 3
        layers = {layer.name: layer for layer in bundle.layers}
        assert layers["conv1"].clip is not None and layers["conv4"].clip is not None
        assert layers["conv2"].pool_mode == "avg" and layers["conv2"].pool == 2
        assert (layers["conv4"].shortcut_stride, layers["conv4"].shortcut_pad) == (2, 2)
        assert layers["conv6"].global_pool and layers["conv6"].shortcut == "conv4"
        assert layers["conv6"].out_shape == (kwargs["c2"], 1, 1)
        # The clips bite: some u of each clipped layer is at its clip.
        trace = run_network(bundle, np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8)))
        for i, layer in enumerate(bundle.layers):
            if layer.clip is not None:
                assert (trace.layers[i].u == layer.fixed.clip_q).any(), layer.name


@pytest.mark.parametrize("name", list(BUNDLES))
def test_ops_network_identical_to_golden(name, build_root):
    """17 samples: the 2x2 layers run a batch of 16 and one of 1 (the global pooling's sums
    of 16 samples in the S memory)."""
    kwargs = BUNDLES[name]
    bundle = ops_bundle(**kwargs)
    sim = NetworkSim(_config(), build_root)
    codes = np.random.default_rng(kwargs["seed"] + 10).integers(0, 256, (17, 1, 8, 8))
    run = sim.run(bundle, codes, seed=kwargs["seed"], stall=0.2, backpressure=0.2,
                  name=f"ops_{name}")
    _assert_identical(bundle, codes, run)
    assert run.outputs[5].shape == (17, kwargs["c2"], 1, 1)
    assert_counters(bundle, sim.config, run, len(codes))


def test_ops_cycle_model_matches_the_rtl(build_root):
    """Without stalls, every layer (the clipped, the average-pooled, the option-A residual and
    the globally pooled one) within 2 % of ``gen.cycles``: 19 samples, a full batch and a
    smaller one on the 2x2 layers."""
    kwargs = BUNDLES["8-12"]
    bundle = ops_bundle(**kwargs)
    cfg = _config()
    sim = NetworkSim(cfg, build_root)
    codes = np.random.default_rng(7).integers(0, 256, (19, 1, 8, 8))
    run = sim.run(bundle, codes, name="ops_model")
    _assert_identical(bundle, codes, run)
    model = network_cycles(bundle, cfg, len(codes))
    assert sorted({cfg.batch_for(layer.positions) for layer in bundle.layers}) == [1, 16]
    for i, layer in enumerate(bundle.layers):
        got, want = run.layer_clocks[i], model[layer.name].clocks
        print(f"{layer.name}: RTL {got}, model {want}, {(want - got) / got:+.2%}")
        assert abs(got - want) <= 0.02 * got, (layer.name, got, want)


def test_asqgen_sizes_and_simulates_a_format_3_bundle(tmp_path, build_root, capsys):
    """``asqgen verilog --bundle`` sizes the engine for the network (its largest layer, the
    residual add) and ``asqgen sim`` runs it on the 4x4 array of the tests above (the same
    build), every layer identical to the golden model."""
    import json

    from asqgen.cli import main
    from core.bundle import save

    from .bundles import with_reference

    folder = save(with_reference(ops_bundle(**BUNDLES["8-12"])), tmp_path / "ops")
    assert json.loads((folder / "manifest.json").read_text())["format"] == 3
    assert main(["verilog", "--bundle", str(folder), "--rows", "4", "--cols", "4", "--out",
                 str(tmp_path / "v")]) == 0
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    want = _config().as_dict()
    assert {k: manifest["config"][k] for k in want} == want
    assert manifest["config"]["residual"] is True and manifest["config"]["max_channels"] == 12
    assert [layer["out_shape"] for layer in manifest["layers"]][-2:] == [[12, 1, 1], [7]]
    assert manifest["rescale_registers"]["control"][-6:] == ["clip", "clip_q", "pool_mode",
                                                             "global_pool", "next_signed",
                                                             "res_signed"]
    capsys.readouterr()
    out = tmp_path / "sim.json"
    assert main(["sim", "--bundle", str(folder), "--images", "4", "--rows", "4", "--cols", "4",
                 "--stall", "0.2", "--out", str(build_root), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["identical"] and [x["identical"] for x in report["layers"]] == [True] * 7
    assert report["top1_agreement_rtl_pytorch"] == 1.0
    assert capsys.readouterr().out.rstrip().endswith("PASS: every layer of the RTL equals the "
                                                     "golden model")


def test_average_pooling_other_than_2x2_is_refused():
    from core.rules import MappingError, check_bundle

    bundle = ops_bundle(**BUNDLES["4-8"])
    bundle.layers[1].pool = 4
    with pytest.raises(MappingError, match=r"^layer 'conv2' \(Conv2d \+ AvgPool2d\) cannot be "
                                           r"mapped to the accelerator: the hardware pools 2x2 "
                                           r"only, not 4x4; use AvgPool2d\(2\) \(2 times for "
                                           r"4x4\)$"):
        check_bundle(bundle)


@pytest.mark.parametrize("stride,w_format", [(1, "post"), (2, "post"), (1, "int")])
def test_depthwise_network_identical_to_golden_and_the_cycle_model(stride, w_format,
                                                                   build_root):
    """A depthwise 3x3 conv of 6 channels (``tests.test_ops.dw_bundle``) on the 4x4 array: the
    host sends its block-diagonal matrix without the all-zero tiles (9 passes for the first
    block of 4 channels, 5 for the second of 2). With 20 % stalls every layer equals the golden
    model; without, every layer is within 2 % of ``gen.cycles``, whose depthwise ideal is
    ``M * 9 * C / (rows * cols)``."""
    from .test_ops import dw_bundle

    bundle = dw_bundle(stride=stride)
    dw = bundle.layers[1]
    if w_format == "int":              # 8-bit int weights: signed-digit terms on the post array
        dw.w_format, dw.w_bits, dw.frac_bits = "int", 8, 0
        dw.weight = np.random.default_rng(4).integers(0, 256, (6, 1, 3, 3))
        dw.alpha = dw.alpha / 16
        dw.fixed = dw.compute_fixed()
    cfg = _config()
    sim = NetworkSim(cfg, build_root)
    codes = np.random.default_rng(3).integers(0, 16, (5, 1, 8, 8))
    run = sim.run(bundle, codes, seed=stride, stall=0.2, backpressure=0.2,
                  name=f"dw_stalls_{stride}_{w_format}")
    _assert_identical(bundle, codes, run)
    model = network_cycles(bundle, cfg, len(codes))
    dw = model["dw"]
    assert run.counters[1]["mac"] == dw.mac
    if w_format == "post":
        assert dw.mac == len(codes) * bundle.layers[1].positions * 14
    assert dw.ideal == len(codes) * bundle.layers[1].positions * 9 * 6 / 16
    run = sim.run(bundle, codes, name=f"dw_model_{stride}_{w_format}")
    _assert_identical(bundle, codes, run)
    for i, layer in enumerate(bundle.layers):
        got, want = run.layer_clocks[i], model[layer.name].clocks
        assert abs(got - want) <= 0.02 * got, (layer.name, got, want)


# Signed codes: MobileNet-V2's linear bottleneck ----------------------------------------------

def _bottleneck(seed, adapters):
    """``tests.test_ops.bottleneck_bundle`` (stem, a 1x1 with no ReLU and signed codes, an
    inverted residual block: expand 1x1 reading signed codes, depthwise 3x3, project 1x1 plus
    the signed identity with no ReLU and signed codes, a linear layer on signed codes), the
    signed layers' steps smaller so that their codes reach both ends of the range; with
    ``adapters``, ASQ adapters on the linear bottleneck (two layers: its ``beta`` from channel
    sums of values of both signs) and the expansion (one layer; the layers after them read
    with ``input_adapter``; the linear layer's input has none, ``core.rules``)."""
    from core.adapter import Adapter

    from .test_ops import bottleneck_bundle

    bundle = bottleneck_bundle(seed)
    layers = {layer.name: layer for layer in bundle.layers}
    layers["stem"].next_step = layers["neck"].s_in = 0.05
    layers["neck"].next_step = layers["expand"].s_in = 0.03
    layers["project"].next_step = layers["fc"].s_in = 0.02
    project = layers["project"]
    project.bn_bias = project.bn_bias - project.bn_bias.mean()     # both signs after the add
    if adapters:
        rng = np.random.default_rng(seed + 100)
        layers["neck"].adapter = Adapter(w1=rng.normal(0, 0.3, (2, 4)),
                                         b1=rng.normal(0, 0.1, 2),
                                         w2=rng.normal(0, 0.3, (1, 2)), b2=np.array([1.0]))
        layers["expand"].adapter = Adapter(w1=rng.normal(0, 0.05, (1, 8)), b1=np.array([1.0]))
        layers["expand"].input_adapter = layers["dw"].input_adapter = True
    for i, layer in enumerate(bundle.layers):
        layer.fixed = layer.compute_fixed()
        layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    return bundle


@functools.cache
def _signed_config():
    """The engine of both bottleneck networks (4x4, signed activations)."""
    return config_for_bundle(_bottleneck(0, True), rows=4, cols=4)


def _assert_signed_codes(bundle, run):
    """The signed layers' codes take both signs, and all together reach both clamps of the
    4-bit signed range and codes of either sign between them."""
    seen = set()
    for i, layer in enumerate(bundle.layers):
        if layer.next_signed:
            codes = run.outputs[i]
            assert codes.min() < 0 < codes.max(), layer.name
            seen |= set(codes.ravel().tolist())
    assert {-8, 7} <= seen and seen & set(range(-7, 0)) and seen & set(range(1, 7))


def test_a_bottleneck_network_sizes_a_signed_engine():
    """``core.sizing`` turns ``signed_acts`` on for a bundle with a layer reading signed codes
    and refuses an unsigned engine for it."""
    from core.errors import UsageError
    from core.sizing import check_fits

    bundle = _bottleneck(0, False)
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    assert cfg.signed_acts and cfg.residual
    assert not config_for_bundle(ops_bundle(**BUNDLES["4-8"]), rows=4, cols=4).signed_acts
    with pytest.raises(UsageError, match=r"^layer 'expand' reads signed codes; the array is "
                                         r"built for unsigned activations \(signed_acts=False\)$"):
        check_fits(bundle, cfg.replace(signed_acts=False))


@pytest.mark.parametrize("adapters", [False, True], ids=["plain", "adapters"])
def test_bottleneck_network_identical_to_golden(adapters, build_root):
    """Signed codes end to end with 20 % stalls and backpressure on every stream: the linear
    bottleneck's codes (two's complement from ``o_out``), the expansion and the linear layer
    reading them (``i_a`` in sign and magnitude), the signed identity on ``i_res``; every
    layer's codes and betas and the logits identical to the golden model."""
    bundle = _bottleneck(1 if adapters else 0, adapters)
    sim = NetworkSim(_signed_config(), build_root)
    codes = np.random.default_rng(20 + adapters).integers(0, 16, (9, 1, 6, 6))
    run = sim.run(bundle, codes, seed=3 + adapters, stall=0.2, backpressure=0.2,
                  name=f"bottleneck_{adapters}")
    golden = _assert_identical(bundle, codes, run)
    _assert_signed_codes(bundle, run)
    if adapters:                                   # the adapters' beta differ by sample
        assert len(set(golden.layers[1].beta.tolist())) > 1
        assert len(set(golden.layers[2].beta.tolist())) > 1


def test_bottleneck_cycle_model_matches_the_rtl(build_root):
    """Without stalls, every layer of the bottleneck network within 2 % of ``gen.cycles``."""
    bundle = _bottleneck(1, True)
    cfg = _signed_config()
    sim = NetworkSim(cfg, build_root)
    codes = np.random.default_rng(8).integers(0, 16, (7, 1, 6, 6))
    run = sim.run(bundle, codes, name="bottleneck_model")
    _assert_identical(bundle, codes, run)
    model = network_cycles(bundle, cfg, len(codes))
    for i, layer in enumerate(bundle.layers):
        got, want = run.layer_clocks[i], model[layer.name].clocks
        print(f"{layer.name}: RTL {got}, model {want}, {(want - got) / got:+.2%}")
        assert abs(got - want) <= 0.02 * got, (layer.name, got, want)


def test_asqgen_sizes_and_simulates_a_signed_bundle(tmp_path, build_root, capsys):
    """``asqgen verilog --bundle`` builds a signed engine for the bottleneck network (its
    manifest says ``signed_acts``) and ``asqgen sim`` runs it, every layer identical to the
    golden model."""
    import json

    from asqgen.cli import main
    from core.bundle import save

    from .bundles import with_reference

    folder = save(with_reference(_bottleneck(1, True)), tmp_path / "neck")
    assert main(["verilog", "--bundle", str(folder), "--rows", "4", "--cols", "4", "--out",
                 str(tmp_path / "v")]) == 0
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    # The engine of the tests above but for its rescale widths, which ``core.sizing`` derives
    # from this bundle's own constants (``core.widths``: 26-bit values for seed 1, where
    # ``_signed_config``'s seed 0 needs 28).
    want = config_for_bundle(_bottleneck(1, True), rows=4, cols=4).as_dict()
    assert {k: manifest["config"][k] for k in want} == want
    shared = {k: v for k, v in _signed_config().as_dict().items() if k != "rescale_widths"}
    assert {k: manifest["config"][k] for k in shared} == shared
    assert manifest["config"]["signed_acts"] is True
    capsys.readouterr()
    out = tmp_path / "sim.json"
    assert main(["sim", "--bundle", str(folder), "--images", "4", "--rows", "4", "--cols", "4",
                 "--stall", "0.2", "--out", str(build_root), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["identical"] and [x["identical"] for x in report["layers"]] == [True] * 6
