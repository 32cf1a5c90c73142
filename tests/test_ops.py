"""The paper networks' operations in the golden model (``core.rescale``, ``core.bundle`` format
3, ``sim.golden``): a bounded ReLU (ReLU6), average pooling, global average pooling and
ResNet's option-A shortcut, each against its real-valued definition in float64 or exact
rational arithmetic, and the bundle's checks of their fields. The RTL is held to these in
the hardware tests."""

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from core import bundle as B
from core import rescale
from core.adapter import Adapter
from core.bundle import Layer
from core.rescale import BETA_ONE, Z
from sim.golden import run_network

from .bundles import random_bundle

RNG = np.random.default_rng(11)


def _params(c=6, **extra):
    p = dict(bn_scale=RNG.uniform(0.5, 2, c), bn_bias=RNG.normal(0, 0.5, c), s_in=0.07,
             alpha=RNG.uniform(0.05, 0.3, c), frac_bits=10, acc_bound=2 ** 22, next_step=0.11,
             next_bits=8)
    p.update(extra)
    return p


def _real_z(p, acc, beta):
    """The real ``z`` of the module docstring of ``core.rescale``, in float64."""
    m = (p["bn_scale"] * p["s_in"] * p["alpha"] * 2.0 ** -p["frac_bits"])[None, :, None, None]
    return m * (beta / BETA_ONE)[:, None, None, None] * acc + p["bn_bias"][None, :, None, None]


def _near_tie(real, eps):
    return np.abs(real - np.floor(real) - 0.5) <= eps


@pytest.mark.parametrize("pool_mode,global_pool", [("max", False), ("avg", False),
                                                   ("max", True), ("avg", True)])
def test_clip_pooling_and_global_pooling_against_float64(pool_mode, global_pool):
    """ReLU6, then 2x2 max or average pooling, then optionally the global mean: the codes
    equal ``round(u / s_next)`` of the float computation wherever that is not next to a tie
    (the constants have 16 significant bits)."""
    h = 8
    window = 4 if pool_mode == "avg" else 1
    spread = (h // 2) ** 2 if global_pool else 1
    p = _params(clip=6.0, divisor=window * spread, next_step=6.0 / 255)
    r = rescale.fixed_point(**p)
    assert r.clip_q == 6 << Z
    acc = RNG.integers(-2 ** 20, 2 ** 20, (5, 6, h, h))
    beta = np.full(5, BETA_ONE)
    u_q, _, codes = rescale.rescale_layer(acc, beta, r, relu=True, pool=2, pool_mode=pool_mode,
                                          global_pool=global_pool)
    u = np.clip(_real_z(p, acc, beta), 0, 6)
    u = u.reshape(5, 6, h // 2, 2, h // 2, 2)
    u = u.max(axis=(3, 5)) if pool_mode == "max" else u.mean(axis=(3, 5))
    if global_pool:
        u = u.mean(axis=(2, 3), keepdims=True)
    real = u / p["next_step"]
    assert codes.shape == real.shape
    away = ~_near_tie(real, 0.02)           # (clipped values averaged can be exact ties)
    assert away.mean() > 0.8
    assert np.array_equal(codes[away], np.clip(np.round(real), 0, 255)[away])
    if global_pool:                                # u is then the channel sums S
        assert u_q.shape == (5, 6, 1, 1)
    else:
        assert codes.max() == 255                  # the clip reaches the top code


def test_a_global_mean_over_49_positions_is_off_by_one_code_at_most_and_only_at_a_tie():
    """The division by 49 is folded into ``m_s`` (16 significant bits): against exact rational
    arithmetic, the code before rounding is within ``(max_code + 1) * 2**-14`` of
    ``S / (49 * s_next)``, so a code differs from the exact rounding only next to a tie."""
    step = 0.0371
    r = rescale.fixed_point(**_params(c=3, divisor=49, next_step=step))
    s_q = RNG.integers(0, 255 * 49 * int(step * 2 ** Z), (4000, 3, 1, 1))
    codes = rescale.requantize(s_q, np.full(4000, BETA_ONE), r).ravel()
    bound = Fraction(256, 2 ** 14)
    exact_step = Fraction(step)
    differ = 0
    for s, code in zip(s_q.ravel().tolist(), codes.tolist()):
        real = Fraction(s, 2 ** Z) / (49 * exact_step)
        before = Fraction(s * int(r.reciprocal(BETA_ONE)), 2 ** r.req_shift)
        assert abs(before - real) < bound
        want = min(int(real + Fraction(1, 2)), 255)
        if code != want:
            differ += 1
            assert abs(code - want) == 1 and abs(real - int(real) - Fraction(1, 2)) < bound
    assert differ < 40                              # next to a tie only: rare


def test_average_pooling_sums_and_max_pooling_takes_the_maximum():
    u = np.arange(16).reshape(1, 1, 4, 4)
    assert rescale.pool2d(u, 2, "avg").tolist() == [[[[10, 18], [42, 50]]]]
    assert rescale.pool2d(u, 2).tolist() == [[[[5, 7], [13, 15]]]]


def test_clip_is_refused_unless_positive():
    with pytest.raises(ValueError, match="clip must be positive"):
        rescale.fixed_point(**_params(clip=0.0))


def test_option_a_shortcut_codes():
    codes = RNG.integers(1, 16, (2, 3, 5, 5))
    out = rescale.shortcut_codes(codes, stride=2, pad=2, channels=8)
    assert out.shape == (2, 8, 3, 3)
    assert (out[:, :2] == 0).all() and (out[:, 5:] == 0).all()
    assert np.array_equal(out[:, 2:5], codes[:, :, ::2, ::2])
    assert np.array_equal(rescale.shortcut_codes(codes), codes)
    with pytest.raises(ValueError, match="do not fit"):
        rescale.shortcut_codes(codes, pad=6, channels=8)


# Bundles with the operations -----------------------------------------------------------------

def _conv(name, cin, cout, in_shape, rng, *, stride=1, **fields):
    layer = Layer(name=name, kind="conv2d", in_shape=in_shape, out_channels=cout, kernel=3,
                  stride=stride, padding=1, a_bits=4, w_format="post", w_bits=4, frac_bits=10,
                  relu=True, pool=0, weight=rng.integers(0, 16, (cout, cin, 3, 3)),
                  alpha=rng.uniform(0.05, 0.2, cout), bn_scale=rng.uniform(0.5, 2, cout),
                  bn_bias=rng.normal(0, 0.3, cout), s_in=0.1, next_step=0.1, next_bits=4)
    for k, v in fields.items():
        setattr(layer, k, v)
    return layer


def ops_bundle(seed=0, adapter=True):
    """conv 4 (ReLU6) -> conv 4 (avg pool 2) -> a block: conv 8 stride 2, conv 8 with the
    option-A shortcut of the block's input and a global average pooling -> linear 5.
    Inputs ``(1, 8, 8)``, 4-bit codes."""
    rng = np.random.default_rng(seed)
    stem = _conv("stem", 1, 4, (1, 8, 8), rng, clip=6.0)
    stem.s_in = 0.1
    pooled = _conv("pooled", 4, 4, (4, 8, 8), rng, pool=2, pool_mode="avg", source="stem")
    down = _conv("down", 4, 8, (4, 4, 4), rng, stride=2, source="pooled")
    top = _conv("top", 8, 8, (8, 2, 2), rng, source="down", shortcut="pooled",
                shortcut_stride=2, shortcut_pad=2, global_pool=True)
    if adapter:
        top.adapter = Adapter(w1=rng.normal(0, 0.3, (2, 8)), b1=rng.normal(0, 0.1, 2),
                              w2=rng.normal(0, 0.05, (1, 2)), b2=np.array([1.0]))
        pooled.adapter = Adapter(w1=rng.normal(0, 0.05, (1, 4)), b1=np.array([1.0]))
    fc = Layer(name="fc", kind="linear", in_shape=(8,), out_channels=5, kernel=1, stride=1,
               padding=0, a_bits=4, w_format="int", w_bits=8, frac_bits=0, relu=False, pool=0,
               weight=rng.integers(0, 256, (5, 8)), alpha=rng.uniform(0.01, 0.05, 5),
               bn_scale=np.ones(5), bn_bias=rng.normal(0, 0.1, 5), s_in=0.1, source="top")
    layers = [stem, pooled, down, top, fc]
    for prev, layer in zip(layers, layers[1:]):
        layer.input_adapter = prev.adapter is not None and layer.source == prev.name
    down.input_adapter = pooled.adapter is not None
    bundle = B.Bundle(input_shape=(1, 8, 8), input_bits=4, input_step=0.1, layers=layers,
                    meta={"test": True}, reference={"codes": rng.integers(0, 16, (6, 1, 8, 8))})
    for i, layer in enumerate(layers):
        layer.fixed = layer.compute_fixed()
        layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    return bundle


def test_an_ops_bundle_is_format_3_and_round_trips(tmp_path):
    bundle = ops_bundle()
    assert bundle.format == B.OPS_FORMAT
    back = B.load(B.save(bundle, tmp_path / "ops"))
    for ours, theirs in zip(bundle.layers, back.layers):
        for key in ("clip", "pool_mode", "global_pool", "shortcut_stride", "shortcut_pad"):
            assert getattr(ours, key) == getattr(theirs, key), (ours.name, key)
    assert back.layers[3].out_shape == (8, 1, 1)
    a, b = run_network(bundle, bundle.reference["codes"]), run_network(back,
                                                                      back.reference["codes"])
    assert np.array_equal(a.logits, b.logits)


def test_bundles_without_the_operations_keep_their_formats():
    assert random_bundle().format == B.BUNDLE_FORMAT


def test_the_golden_network_runs_the_operations_as_defined():
    """Each layer of the ops bundle, recomputed from ``core.rescale``'s pieces in order."""
    bundle = ops_bundle()
    trace = run_network(bundle, bundle.reference["codes"])
    stem, pooled, down, top = trace.layers[:4]
    z = rescale.affine(stem.acc, np.full(6, BETA_ONE), bundle.layers[0].fixed)
    assert np.array_equal(stem.u, np.clip(z, 0, 6 << Z))
    z = rescale.affine(pooled.acc, stem.beta, bundle.layers[1].fixed)
    assert np.array_equal(pooled.u, rescale.pool2d(np.maximum(z, 0), 2, "avg"))
    z = rescale.affine(top.acc, down.beta, bundle.layers[3].fixed)
    o = rescale.shortcut_operand(
        rescale.shortcut_codes(pooled.codes, stride=2, pad=2, channels=8), pooled.beta,
        bundle.layers[3].shortcut_fixed)
    assert (o[:, :2] == 0).all() and (o[:, 6:] == 0).all() and o[:, 2:6].any()
    assert np.array_equal(top.u, np.maximum(z + o, 0).sum(axis=(2, 3), keepdims=True))
    assert top.codes.shape == (6, 8, 1, 1)
    assert np.array_equal(top.codes, rescale.requantize(top.u, top.beta,
                                                        bundle.layers[3].fixed))


def _saved(tmp_path):
    return B.save(ops_bundle(), tmp_path / "ops")


def _edit(folder, name, key, value):
    import json
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    next(e for e in m["layers"] if e["name"] == name)[key] = value
    path.write_text(json.dumps(m))


@pytest.mark.parametrize("name,key,value,message", [
    ("pooled", "clip", 6.0, r"arrays\.npz: layer1\.fixed\.clip_q is missing"),
    ("pooled", "pool_mode", "median", r"pool_mode must be max or avg, not 'median'"),
    ("stem", "pool_mode", "avg", r"average pooling needs a window \(pool\) of 2 or more"),
    ("down", "global_pool", True, r"layer 'down'.derived is"),
    ("down", "shortcut_pad", 1, r"shortcut_stride and shortcut_pad need a shortcut"),
    ("top", "shortcut_pad", 5, r"adds the output of 'pooled' of shape \(4, 4, 4\) "
                               r"\(subsampled by 2, at channel 5\) to its output of shape "
                               r"\(8, 2, 2\)"),
    ("top", "shortcut_stride", 1, r"adds the output of 'pooled'"),
    ("fc", "global_pool", True, r"layer 'fc'.derived is|only a conv layer"),
])
def test_bad_operation_fields_are_refused_with_one_line(tmp_path, name, key, value, message):
    folder = _saved(tmp_path)
    _edit(folder, name, key, value)
    with pytest.raises(B.BundleError, match=message) as e:
        B.load(folder)
    assert "\n" not in str(e.value)


def test_the_last_layer_takes_no_relu_clip_or_pooling(tmp_path):
    """The last layer's outputs are its ``z`` values, which the golden model and the engine
    both give as they are: a ReLU, a clip or a pooling there is refused, not ignored."""
    bundle = random_bundle()
    bundle.layers[-1].relu = True
    with pytest.raises(B.BundleError, match=r"layer 'fc' is last: its outputs are its z values "
                                            r"\(the logits\), with no ReLU, clip or pooling"):
        B.save(bundle, tmp_path / "last")


def test_a_clip_without_relu_is_refused(tmp_path):
    folder = _saved(tmp_path)
    _edit(folder, "stem", "relu", False)
    with pytest.raises(B.BundleError, match=r"layer 'stem'\.clip needs a ReLU"):
        B.load(folder)


def test_a_global_pool_needs_a_channels_adapter(tmp_path):
    bundle = ops_bundle()
    top = bundle.layers[3]
    top.adapter = replace(top.adapter, input="vector")
    with pytest.raises(B.BundleError, match=r"the adapter after a global pooling reads"):
        B.save(bundle, tmp_path / "ops")


# Depthwise convolutions ------------------------------------------------------------------------

def dw_bundle(seed=0, stride=1):
    """conv 1 -> 6 (ReLU6) -> depthwise 3x3 over 6 channels (``stride``, ReLU6, max pooling
    2x2) -> linear 5."""
    rng = np.random.default_rng(seed)
    stem = _conv("stem", 1, 6, (1, 8, 8), rng, clip=6.0)
    dw = _conv("dw", 6, 6, (6, 8, 8), rng, stride=stride, clip=6.0, groups=6, pool=2)
    dw.weight = rng.integers(0, 16, (6, 1, 3, 3))
    side = 8 // stride // 2
    fc = Layer(name="fc", kind="linear", in_shape=(6 * side * side,), out_channels=5, kernel=1,
               stride=1, padding=0, a_bits=4, w_format="int", w_bits=8, frac_bits=0,
               relu=False, pool=0, weight=rng.integers(0, 256, (5, 6 * side * side)),
               alpha=rng.uniform(0.01, 0.05, 5), bn_scale=np.ones(5),
               bn_bias=rng.normal(0, 0.1, 5), s_in=0.1)
    layers = [stem, dw, fc]
    for layer in layers:
        layer.fixed = layer.compute_fixed()
    return B.Bundle(input_shape=(1, 8, 8), input_bits=4, input_step=0.1, layers=layers,
                    meta={"test": True}, reference={"codes": rng.integers(0, 16, (4, 1, 8, 8))})


@pytest.mark.parametrize("stride", [1, 2])
def test_a_depthwise_conv_against_a_float_convolution(stride):
    """Each channel by its own filter: the golden accumulators against a float64 depthwise
    convolution of the real weight values (the root-2 table's error apart), and exactly the
    product of the im2col rows with the block-diagonal ``weight_matrix`` that the array runs."""
    import torch
    from core import numerics
    from sim.golden import im2col, matmul
    from sim.golden.matmul import table_error
    from sim.golden.network import layer_accumulators

    bundle = dw_bundle(stride=stride)
    dw = bundle.layers[1]
    assert dw.k == 9 and dw.product_k == 54 and dw.weight_matrix.shape == (54, 6)
    codes = RNG.integers(0, 16, (3, 6, 8, 8))
    acc = layer_accumulators(dw, codes)
    assert acc.shape == (3,) + dw.conv_shape
    fmt = dw.product_format
    real_w = np.vectorize(lambda c: numerics.weight_value("post", 4, int(c)))(dw.weight)
    want = torch.nn.functional.conv2d(torch.tensor(codes, dtype=torch.float64),
                                      torch.tensor(real_w), stride=stride, padding=1,
                                      groups=6).numpy() * 2.0 ** fmt.frac_bits
    absolute, _ = table_error(fmt)
    assert np.abs(acc - want).max() <= 9 * absolute
    assert np.abs(acc - want).max() > 0            # the table's rounding is there
    dense = matmul(im2col(codes, 3, stride, 1), dw.weight_matrix, fmt)
    ho = dw.conv_shape[1]
    assert np.array_equal(acc, dense.reshape(3, ho, ho, 6).transpose(0, 3, 1, 2))


def test_a_depthwise_bundle_round_trips_and_bad_groups_are_refused(tmp_path):
    bundle = dw_bundle()
    assert bundle.format == B.OPS_FORMAT
    folder = B.save(bundle, tmp_path / "dw")
    back = B.load(folder)
    assert back.layers[1].groups == 6 and back.layers[1].weight.shape == (6, 1, 3, 3)
    assert np.array_equal(run_network(back, back.reference["codes"]).logits,
                          run_network(bundle, bundle.reference["codes"]).logits)
    _edit(folder, "dw", "groups", 3)
    with pytest.raises(B.BundleError, match=r"layer 'dw'\.groups must be 1 or, for a depthwise "
                                            r"conv with as many outputs as inputs, 6, not 3"):
        B.load(folder)


def test_the_engine_skips_the_depthwise_zero_tiles_and_keeps_the_product():
    """A depthwise layer's block-diagonal matrix on an 8x8 array: each block of 8 channels
    keeps the 9 passes of its own 72 rows (54 in all, not 6 * 54), and the passes' products
    add up to ``A x W`` exactly; the cycle model counts the same passes."""
    from core.config import ArrayConfig
    from sim.engine_sim import pass_plan, passes_for
    from sim.golden import matmul

    rng = np.random.default_rng(5)
    c = 48
    layer = dw_bundle().layers[1]
    layer.weight = rng.integers(1, 16, (c, 1, 3, 3))
    layer.out_channels, layer.in_shape, layer.groups = c, (c, 8, 8), c
    W = layer.weight_matrix
    config = ArrayConfig(rows=8, cols=8, w_format="post", w_bits=4, a_bits=4, max_k=1024)
    assert len(pass_plan(config, 10, W, "post")) == (c // 8) * (9 * c // 8)
    plan = pass_plan(config, 10, W, "post", depthwise=9)
    assert len(plan) == (c // 8) * 9
    A = rng.integers(0, 16, (10, 9 * c))
    fmt = layer.product_format
    acc = np.zeros((10, c), dtype=np.int64)
    for n0, p in zip([n0 for n0 in range(0, c, 8) for _ in range(9)], passes_for(
            config, A, W, "post", depthwise=9)):
        assert p["shift"] == 0 and p["drop"] == 0
        acc[:, n0:n0 + 8] += matmul(np.array(p["acts"]), np.array(p["weights"]), fmt)
    assert np.array_equal(acc, matmul(A, W, fmt))


@pytest.mark.parametrize("w_format,w_bits,channels", [("post", 4, 6), ("post", 4, 13),
                                                      ("int", 8, 6), ("int", 8, 13)])
def test_no_depthwise_tile_with_a_weight_is_skipped(w_format, w_bits, channels):
    """For post weights and for 8-bit int weights (signed-digit terms on the post array), on a
    3x4 array: every tile of the plan's matrices that holds a non-zero weight is among the
    passes the host sends (and only the zero ones are left out), and the cycle model's pass
    count is the plan's."""
    from core.config import ArrayConfig
    from gen.cycles import LayerShape, _passes_per_block
    from sim.engine_sim import pass_plan

    rng = np.random.default_rng(channels)
    layer = dw_bundle().layers[1]
    layer.w_format, layer.w_bits = w_format, w_bits
    layer.weight = rng.integers(1, 2 ** w_bits, (channels, 1, 3, 3))
    layer.out_channels, layer.in_shape, layer.groups = channels, (channels, 8, 8), channels
    W = layer.weight_matrix
    config = ArrayConfig(rows=3, cols=4, w_format="post", w_bits=4, a_bits=4, max_k=1024)
    plan = pass_plan(config, 5, W, w_format, w_bits, depthwise=9)
    full = pass_plan(config, 5, W, w_format, w_bits)
    sent = {(k0, shift, blk.tobytes()) for k0, blk, shift, *_ in plan.passes}
    for k0, blk, shift, *_ in full.passes:
        if blk.any():
            assert (k0, shift, blk.tobytes()) in sent
    shape = LayerShape(positions=64, k=9, n=channels, w_format=w_format, w_bits=w_bits,
                       out_positions=64, groups=channels)
    assert len(plan) == sum(_passes_per_block(config, shape, b)
                            for b in range(-(-channels // 4)))
    assert len(plan) < len(full)


# Signed activations: the linear bottleneck ----------------------------------------------------

def bottleneck_bundle(seed=0):
    """stem conv 1 -> 4 (ReLU6) -> 1x1 4 -> 4 with no ReLU (signed codes) -> an inverted
    residual block: expand 1x1 4 -> 8 (signed input, ReLU6), depthwise 3x3 (ReLU6), project
    1x1 8 -> 4 plus the signed identity, no ReLU -> linear 5 on signed codes."""
    rng = np.random.default_rng(seed)

    def one(name, cin, cout, in_shape, **fields):
        layer = _conv(name, cin, cout, in_shape, rng, **fields)
        layer.kernel, layer.padding = 1, 0
        layer.weight = rng.integers(0, 16, (cout, cin, 1, 1))
        return layer

    stem = _conv("stem", 1, 4, (1, 6, 6), rng, clip=6.0)
    neck = one("neck", 4, 4, (4, 6, 6), relu=False, next_signed=True, source="stem")
    expand = one("expand", 4, 8, (4, 6, 6), a_signed=True, clip=6.0, source="neck")
    dw = _conv("dw", 8, 8, (8, 6, 6), rng, clip=6.0, groups=8, source="expand")
    dw.weight = rng.integers(0, 16, (8, 1, 3, 3))
    project = one("project", 8, 4, (8, 6, 6), relu=False, next_signed=True, source="dw",
                  shortcut="neck")
    project.bn_bias = rng.normal(0.5, 0.3, 4)       # so that the sum takes both signs
    fc = Layer(name="fc", kind="linear", in_shape=(4 * 36,), out_channels=5, kernel=1,
               stride=1, padding=0, a_bits=4, w_format="int", w_bits=8, frac_bits=0,
               relu=False, pool=0, weight=rng.integers(0, 256, (5, 4 * 36)),
               alpha=rng.uniform(0.01, 0.05, 5), bn_scale=np.ones(5),
               bn_bias=rng.normal(0, 0.1, 5), s_in=0.1, source="project", a_signed=True)
    layers = [stem, neck, expand, dw, project, fc]
    bundle = B.Bundle(input_shape=(1, 6, 6), input_bits=4, input_step=0.1, layers=layers,
                      meta={"test": True},
                      reference={"codes": rng.integers(0, 16, (8, 1, 6, 6))})
    for i, layer in enumerate(layers):
        layer.fixed = layer.compute_fixed()
        layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    return bundle


def test_a_linear_bottleneck_gives_signed_codes_and_the_next_layers_read_them(tmp_path):
    bundle = bottleneck_bundle()
    back = B.load(B.save(bundle, tmp_path / "neck"))
    assert [la.a_signed for la in back.layers] == [False, False, True, False, False, True]
    trace = run_network(back, back.reference["codes"])
    neck, project = trace.layers[1], trace.layers[4]
    for t in (neck, project):                      # both signs, in the 4-bit signed range
        assert t.codes.min() < 0 < t.codes.max()
        assert t.codes.min() >= -8 and t.codes.max() <= 7
    # The linear bottleneck: codes = clamp(round(z / s)) of the real z, signed, no ReLU.
    layer = back.layers[1]
    z = rescale.affine(neck.acc, trace.layers[0].beta, layer.fixed) * 2.0 ** -Z
    real = z / layer.next_step
    away = ~_near_tie(real, 0.01)
    assert np.array_equal(neck.codes[away], np.clip(np.round(real), -8, 7)[away])
    # The expansion reads the signed codes: against float64 of the real weights.
    from core import numerics
    from sim.golden.matmul import table_error
    expand = back.layers[2]
    real_w = np.vectorize(lambda c: numerics.weight_value("post", 4, int(c)))(expand.weight)
    want = np.einsum("nchw,oc->nohw", neck.codes.astype(float), real_w[:, :, 0, 0])
    want *= 2.0 ** expand.frac_bits
    assert np.abs(trace.layers[2].acc - want).max() <= 4 * table_error(
        expand.product_format)[0]
    # The block's output: z + the signed identity, no ReLU after the add.
    top = back.layers[4]
    z = rescale.affine(project.acc, trace.layers[3].beta, top.fixed)
    o = rescale.shortcut_operand(neck.codes, neck.beta, top.shortcut_fixed)
    assert (o < 0).any()
    assert np.array_equal(project.u, z + o)


def test_signed_fields_must_agree_with_the_source(tmp_path):
    folder = B.save(bottleneck_bundle(), tmp_path / "neck")
    _edit(folder, "expand", "a_signed", False)
    with pytest.raises(B.BundleError, match=r"layer 'expand'\.a_signed disagrees with the "
                                            r"next_signed of 'neck'"):
        B.load(folder)
