"""The register map's widths are the engine's own: derived from its channels and adapter
units, 12 index bits at least (the default engine's map), refused past the ceiling."""

import pytest

from core import regmap
from core.bundle import load
from core.config import ArrayConfig
from core.sizing import config_for_bundle
from export.digits_bundle import DEFAULT_BUNDLE

from .bundles import random_bundle


@pytest.mark.parametrize("channels, hidden, bits", [
    (1, 1, 12), (64, 16, 12), (64, 64, 12), (256, 16, 12), (160, 40, 13), (256, 64, 14),
    (4096, 1, 12), (4097, 1, 13), (512, 128, 16), (1024, 1024, 20)])
def test_index_bits_cover_the_largest_region(channels, hidden, bits):
    assert regmap.index_bits_for(channels, hidden) == bits
    assert channels * hidden <= 1 << bits and channels <= 1 << bits


def test_past_the_ceiling_is_refused():
    with pytest.raises(ValueError, match=r"^max_channels x max_hidden = 1050624 register "
                                         r"entries is more than the register map's 1048576 "
                                         r"\(20 index bits\)$"):
        regmap.index_bits_for(1026, 1024)


def test_the_default_engine_keeps_its_map():
    cfg = config_for_bundle(load(DEFAULT_BUNDLE))
    assert cfg.index_bits == regmap.MIN_INDEX_BITS == 12
    m = regmap.manifest(cfg.index_bits)
    assert (m["address_bits"], m["index_bits"]) == (16, 12)


def test_config_and_manifest_follow_the_sizes():
    cfg = ArrayConfig(max_channels=256, max_hidden=64)
    assert cfg.index_bits == 14
    assert regmap.manifest(cfg.index_bits)["address_bits"] == 18


def test_addresses_follow_the_width():
    assert regmap.address(regmap.Region.w1, 5, 12) == 3 << 12 | 5
    assert regmap.address(regmap.Region.w1, 5000, 14) == 3 << 14 | 5000
    with pytest.raises(ValueError, match=r"^register index 5000 does not fit 12 bits$"):
        regmap.address(regmap.Region.w1, 5000, 12)


def test_encode_puts_the_region_above_the_engines_index():
    layer = random_bundle(c1=8).layers[0]           # a two-layer adapter
    c, h, w = layer.conv_shape
    kwargs = dict(channels=c, height=h, width=w, pool=layer.pool, relu=layer.relu,
                  max_channels=64)
    narrow = regmap.encode(layer.fixed, index_bits=12, **kwargs)
    wide = regmap.encode(layer.fixed, index_bits=14, **kwargs)
    assert [v for _, v in narrow] == [v for _, v in wide]
    assert [(a >> 12, a & 0xFFF) for a, _ in narrow] == [(a >> 14, a & 0x3FFF) for a, _ in wide]


OLD_CONTROL = ("channels", "height", "width", "pool", "relu", "final", "adapter", "hidden",
               "sh1", "shb", "bb", "m_s", "sh_req", "max_code", "residual")


def _control(words, index_bits=12):
    """``{name: value}`` of the control registers among ``words``."""
    return {regmap.CONTROL[a & ((1 << index_bits) - 1)]: v for a, v in words
            if a >> index_bits == regmap.Region.control}


def test_format_3_registers_come_after_the_older_ones():
    """The older control registers keep their indices; a layer of an older bundle writes the
    four new ones as 0 (plain ReLU, max pooling, u out), so that they never keep what the
    layer before set."""
    assert regmap.CONTROL[:len(OLD_CONTROL)] == OLD_CONTROL
    assert regmap.CONTROL[len(OLD_CONTROL):] == ("clip", "clip_q", "pool_mode", "global_pool",
                                                 "next_signed", "res_signed")
    layer = random_bundle(c1=8).layers[1]
    c, h, w = layer.conv_shape
    words = regmap.encode(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                          relu=layer.relu, max_channels=64, index_bits=12)
    control = _control(words)
    assert list(control) == list(regmap.CONTROL)
    assert [control[k] for k in regmap.CONTROL[len(OLD_CONTROL):]] == [0] * 6


def test_format_3_registers_say_the_layers_operations():
    from .bundles import ops_bundle

    bundle = ops_bundle(c1=4, c2=8)
    want = {"conv1": (1, 1 << 16, 0, 0), "conv2": (0, 0, 1, 0), "conv4": (1, 1 << 15, 0, 0),
            "conv6": (0, 0, 0, 1), "fc": (0, 0, 0, 0)}
    for layer in bundle.layers:
        if layer.name not in want:
            continue
        c, h, w = (layer.out_channels, 1, 1) if layer.kind == "linear" else layer.conv_shape
        words = regmap.encode(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                              relu=layer.relu, max_channels=64, index_bits=12,
                              pool_mode=layer.pool_mode, global_pool=layer.global_pool)
        control = _control(words)
        assert tuple(control[k] for k in ("clip", "clip_q", "pool_mode", "global_pool")) == \
            want[layer.name], layer.name


def test_format_3_registers_refuse_what_the_unit_cannot_do():
    layer = random_bundle(c1=8).layers[1]
    c, h, w = layer.conv_shape
    kwargs = dict(channels=c, height=h, width=w, pool=layer.pool, relu=layer.relu,
                  max_channels=64, index_bits=12)
    with pytest.raises(ValueError, match=r"^pool_mode must be one of max, avg, not 'min'$"):
        regmap.encode(layer.fixed, pool_mode="min", **kwargs)
    last = random_bundle(c1=8).layers[2]
    with pytest.raises(ValueError, match=r"^the last layer cannot end in a global pooling$"):
        regmap.encode(last.fixed, **dict(kwargs, channels=last.out_channels, height=1,
                                         width=1), global_pool=True)


def test_signed_registers_say_which_codes_are_signed():
    """A linear bottleneck's layers (``tests.test_ops.bottleneck_bundle``): ``next_signed`` on
    the layers whose codes are signed (``max_code`` then ``2**(b-1) - 1``, the unit making
    ``min_code = -(max_code + 1)``), ``res_signed`` on the layer whose identity shortcut reads
    them; 0 elsewhere, the last layer included."""
    from .test_ops import bottleneck_bundle

    bundle = bottleneck_bundle()
    got = {}
    for i, layer in enumerate(bundle.layers):
        kind, k = bundle.residual_kind(i)
        c, h, w = (layer.out_channels, 1, 1) if layer.kind == "linear" else layer.conv_shape
        words = regmap.encode(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                              relu=layer.relu, max_channels=64, index_bits=12, residual=kind,
                              shortcut=layer.shortcut_fixed,
                              res_signed=kind == "identity" and bundle.layers[k].next_signed)
        control = _control(words)
        got[layer.name] = (control["next_signed"], control["res_signed"], control["max_code"])
    assert got == {"stem": (0, 0, 15), "neck": (1, 0, 7), "expand": (0, 0, 15),
                   "dw": (0, 0, 15), "project": (1, 1, 7), "fc": (0, 0, 0)}
    with pytest.raises(ValueError, match=r"^res_signed needs an identity shortcut$"):
        regmap.encode(bundle.layers[1].fixed, channels=4, height=6, width=6, pool=0,
                      relu=False, max_channels=64, index_bits=12, res_signed=True)
