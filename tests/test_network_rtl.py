# amaranth: UnusedElaboratable=no
"""Whole networks on the layer engine in Verilator: every layer's codes, every beta and the
last layer's outputs identical to the golden model, with random stalls and backpressure on
every stream."""

import numpy as np
import pytest

from gen.cycles import network_cycles
from core.sizing import check_fits, config_for_bundle
from hw.dsp import Ecp5Target
from sim.golden import run_network
from sim.network_sim import NetworkSim

from .bundles import random_bundle


def _assert_identical(bundle, codes, run):
    golden = run_network(bundle, codes)
    for i, layer in enumerate(golden.layers[:-1]):
        np.testing.assert_array_equal(run.outputs[i], layer.codes, err_msg=layer.name)
        np.testing.assert_array_equal(run.betas[i], layer.beta, err_msg=layer.name)
    np.testing.assert_array_equal(run.outputs[-1], golden.logits)


NETWORKS = {
    "post4 8-12 channels on 4x4": (dict(seed=0, c1=8, c2=12), 4, 4, 0.25),
    "post3 4-6 channels on 3x5": (dict(seed=1, c1=4, c2=6, w_bits=3, a_bits=3, classes=7),
                                  3, 5, 0.4),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_identical_to_golden(name, build_root):
    kwargs, rows, cols, stall = NETWORKS[name]
    bundle = random_bundle(**kwargs)
    sim = NetworkSim(config_for_bundle(bundle, rows=rows, cols=cols), build_root)
    codes = np.random.default_rng(kwargs["seed"]).integers(0, 256, (5, 1, 8, 8))
    run = sim.run(bundle, codes, seed=kwargs["seed"], stall=stall, backpressure=stall)
    _assert_identical(bundle, codes, run)
    assert_counters(bundle, sim.config, run, len(codes))


def assert_counters(bundle, config, run, samples):
    """Every clock is counted once; the MAC clocks are exactly the activation vectors sent
    (the cycle model's count)."""
    model = network_cycles(bundle, config, samples)
    for i, layer in enumerate(bundle.layers):
        c = run.counters[i]
        assert c["mac"] + c["weight"] + c["stall"] + c["idle"] == run.layer_clocks[i]
        assert c["mac"] == model[layer.name].mac, layer.name


def test_network_on_the_engine_built_for_an_ecp5(build_root):
    """The engine as the board build makes it: its multipliers DSP blocks with their own
    registers (``hw.dsp``), the copies of its reset ``FD1S3AX`` flip-flops
    (``hw.local_reset``), simulated with ``sim/vendor``'s models; stalls on every stream."""
    kwargs, rows, cols, stall = NETWORKS["post4 8-12 channels on 4x4"]
    bundle = random_bundle(**kwargs)
    sim = NetworkSim(config_for_bundle(bundle, rows=rows, cols=cols), build_root,
                     platform=Ecp5Target())
    text = sim.verilog.read_text()
    assert "MULT18X18D #" in text and "FD1S3AX #" in text
    codes = np.random.default_rng(3).integers(0, 256, (3, 1, 8, 8))
    run = sim.run(bundle, codes, seed=3, stall=stall, backpressure=stall, name="ecp5")
    _assert_identical(bundle, codes, run)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_cycle_model_matches_the_rtl(name, build_root):
    """Without stalls, the cycle model (``gen.cycles``) predicts every layer's clocks within
    2 %: seven samples, so that the layers with few positions run a full batch and a smaller
    one (the build of ``test_network_identical_to_golden``)."""
    kwargs, rows, cols, _ = NETWORKS[name]
    bundle = random_bundle(**kwargs)
    cfg = config_for_bundle(bundle, rows=rows, cols=cols)
    sim = NetworkSim(cfg, build_root)
    codes = np.random.default_rng(7).integers(0, 256, (7, 1, 8, 8))
    run = sim.run(bundle, codes, name="model")
    _assert_identical(bundle, codes, run)
    model = network_cycles(bundle, cfg, len(codes))
    assert sorted({cfg.batch_for(layer.positions) for layer in bundle.layers}) != [1]
    for i, layer in enumerate(bundle.layers):
        got, want = run.layer_clocks[i], model[layer.name].clocks
        assert abs(got - want) <= 0.02 * got, (layer.name, got, want)


def test_sizing_follows_the_bundle():
    bundle = random_bundle(c1=8, c2=12)
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    assert (cfg.w_format, cfg.w_bits, cfg.frac_bits, cfg.a_bits) == ("post", 4, 10, 8)
    assert (cfg.max_k, cfg.max_m, cfg.max_channels, cfg.max_hidden) == (192, 64, 12, 2)


def test_a_bundle_without_shortcuts_gets_no_residual_add():
    """No ``i_res`` and no shortcut ``Affine``: ``tests.test_residual`` has the other side."""
    from hw.accelerator import Accelerator

    plain = config_for_bundle(random_bundle(c1=8, c2=12), rows=4, cols=4)
    assert plain.residual is False
    assert "i_res" not in Accelerator(config=plain).signature.members
    assert "i_res" in Accelerator(config=plain.replace(residual=True)).signature.members


def test_a_bundle_that_does_not_fit_is_refused():
    bundle = random_bundle(c1=8, c2=12)
    small = config_for_bundle(bundle).replace(max_channels=8)
    with pytest.raises(ValueError, match=r"^the bundle needs max_channels=12, the array has "
                                         r"max_channels=8$"):
        check_fits(bundle, small)
    other = config_for_bundle(bundle).replace(w_bits=3)
    with pytest.raises(ValueError, match=r"^layer 'conv2' has 4-bit post weights with "
                                         r"frac_bits=10; the array is built for 3-bit post "
                                         r"with frac_bits=10$"):
        check_fits(bundle, other)


def test_pooling_other_than_2x2_is_refused():
    bundle = random_bundle(c1=8, c2=12)
    bundle.layers[1].pool = 4
    with pytest.raises(ValueError, match=r"^layer 'conv2' \(Conv2d \+ MaxPool2d\) cannot be "
                                         r"mapped to the accelerator: the hardware pools 2x2 "
                                         r"only, not 4x4; use MaxPool2d\(2\) \(2 times for "
                                         r"4x4\)$"):
        check_fits(bundle, config_for_bundle(random_bundle(c1=8, c2=12)))
