"""The rescale unit's widths derived from a bundle (``core.widths``): minimal, safe at the edge
(values at the top of each derived width pass through the RTL bit-exactly), refused when a
bundle needs more than an engine has, and the full 64-bit widths without a bundle."""

import numpy as np
import pytest

from core import numerics, rescale, widths
from core.bundle import Bundle, Layer
from core.config import ArrayConfig
from core.errors import UsageError
from core.sizing import check_fits, config_for_bundle
from hw.dsp import Ecp5Target
from sim.golden import run_network
from sim.network_sim import NetworkSim

from .bundles import random_bundle

INT8_MAX, INT8_MIN = 127, 128          # int8 weight codes: +127 and -128 (two's complement)


def edge_bundle():
    """conv (int8 weights, 8-bit input, no padding, ReLU, no adapter) -> linear (int8): every
    weight of a channel at one extreme, so that inputs of 255 take the accumulators, the
    products and the values to their bounds (the linear layer's class 1 to the negative
    one)."""
    conv_w = np.full((2, 1, 3, 3), INT8_MAX)
    conv = Layer(name="conv", kind="conv2d", in_shape=(1, 8, 8), out_channels=2, kernel=3,
                 stride=1, padding=0, a_bits=8, w_format="int", w_bits=8, frac_bits=0,
                 relu=True, pool=0, weight=conv_w, alpha=np.array([0.01, 0.007]),
                 bn_scale=np.array([1.3, 0.9]), bn_bias=np.array([0.2, 0.0]), s_in=1 / 255)
    conv.next_step, conv.next_bits = 0.01, 8            # saturates at 255 for inputs of 255
    fc_w = np.stack([np.full(72, INT8_MAX), np.full(72, INT8_MIN), np.full(72, INT8_MAX)])
    fc = Layer(name="fc", kind="linear", in_shape=(72,), out_channels=3, kernel=1, stride=1,
               padding=0, a_bits=8, w_format="int", w_bits=8, frac_bits=0, relu=False, pool=0,
               weight=fc_w, alpha=np.array([0.003, 0.004, 0.002]),
               bn_scale=np.array([1.0, 1.0, -1.5]), bn_bias=np.array([0.0, 0.0, 0.1]),
               s_in=conv.next_step)
    for layer in (conv, fc):
        layer.fixed = layer.compute_fixed()
    return Bundle(input_shape=(1, 8, 8), input_bits=8, input_step=1 / 255, layers=[conv, fc])


def _peaks(bundle, codes):
    """The largest magnitudes the golden model reaches: accumulators, ``acc * beta * m``,
    and the values (``u`` and the logits), over every layer."""
    trace = run_network(bundle, codes)
    acc = max(int(np.abs(t.acc).max()) for t in trace.layers)
    product = max(int(np.abs(t.acc * np.abs(layer.fixed.m).reshape((1, -1) + (1,) *
                                                                   (t.acc.ndim - 2))).max())
                  * rescale.BETA_ONE for t, layer in zip(trace.layers, bundle.layers))
    values = [int(np.abs(t.u).max()) for t in trace.layers if t.u is not None]
    return acc, product, max(values + [int(np.abs(trace.logits).max())]), trace


def test_edge_bundle_widths_are_reached():
    """At inputs of 255 every derived width's top bit is used: one bit less would not hold
    the values (the widths are minimal), and no bundle value is left out (safe)."""
    bundle = edge_bundle()
    w = config_for_bundle(bundle, rows=4, cols=4).widths
    acc, product, value, trace = _peaks(bundle, np.full((1, 1, 8, 8), 255))
    assert acc == 72 * 255 * 128                        # the linear layer's class 1, exactly
    assert numerics.signed_bits(acc) == w.acc
    assert numerics.signed_bits(product) == w.product   # beta_in = BETA_ONE: no adapters
    assert numerics.signed_bits(value) == w.value
    assert w.beta == rescale.BETA_ONE.bit_length()
    assert w.mant == numerics.signed_bits(max(int(np.abs(la.fixed.m).max())
                                              for la in bundle.layers))
    assert w.recip == ((bundle.layers[0].fixed.m_s << rescale.RECIP_BITS)
                       // rescale.BETA_ONE).bit_length()
    assert (trace.layers[0].codes == 255).all()         # the conv saturates its codes
    assert w.value < 64 and w.product < 64


def test_edge_bundle_identical_to_golden_at_the_top_of_its_widths(build_root):
    """The engine built to the derived widths, for an ECP5 (DSP blocks with unsigned chunks,
    partial products in logic, ``sim/vendor``'s model), on inputs at the top (every value at
    its bound), at 0 and at random: every layer identical to the golden model."""
    bundle = edge_bundle()
    config = config_for_bundle(bundle, rows=4, cols=4).replace(rescale_lanes=2)
    sim = NetworkSim(config, build_root, platform=Ecp5Target())
    rng = np.random.default_rng(7)
    codes = np.concatenate([np.full((2, 1, 8, 8), 255), np.zeros((1, 1, 8, 8), np.int64),
                            rng.integers(0, 256, (2, 1, 8, 8))])
    run = sim.run(bundle, codes, seed=7, stall=0.2, backpressure=0.2, name="edge")
    golden = run_network(bundle, codes)
    np.testing.assert_array_equal(run.outputs[0], golden.layers[0].codes)
    np.testing.assert_array_equal(run.outputs[-1], golden.logits)


def test_a_narrower_engine_is_refused_in_one_line():
    bundle = edge_bundle()
    config = config_for_bundle(bundle, rows=4, cols=4)
    for field in ("acc", "product", "value", "recip"):
        narrow = config.replace(rescale_widths={**config.widths.as_dict(),
                                                field: getattr(config.widths, field) - 1})
        with pytest.raises(UsageError, match=f"rescale unit's {field} width") as e:
            check_fits(bundle, narrow)
        assert "\n" not in str(e.value)
    check_fits(bundle, config.replace(rescale_widths=None))        # the full widths run it


def test_widths_follow_the_adapters():
    """After a layer with an adapter ``beta_in`` reaches ``BETA_MAX`` and ``R`` the
    reciprocal of ``beta = 1``: the widths grow to hold them."""
    bundle = random_bundle(seed=0, c1=8, c2=12)
    w = widths.bundle_widths(bundle)
    assert w.beta == rescale.BETA_MAX.bit_length()
    m_s = max(la.fixed.m_s for la in bundle.layers if la.fixed.m_s is not None
              and la.adapter is not None)
    assert w.recip >= (m_s << rescale.RECIP_BITS).bit_length()


def test_a_configuration_by_hand_has_the_full_widths():
    config = ArrayConfig()
    assert config.rescale_widths is None
    assert config.widths == widths.full(config.buffer_bits)
    assert (config.widths.value, config.widths.product) == (64, 64)
    derived = config_for_bundle(edge_bundle(), rows=4, cols=4)
    assert ArrayConfig(**derived.as_dict()) == derived            # the manifest's round trip
    assert derived.as_dict()["rescale_widths"] == derived.widths.as_dict()
    with pytest.raises(UsageError, match="value must be from 2 to 64"):
        config.replace(rescale_widths={**config.widths.as_dict(), "value": 65})
