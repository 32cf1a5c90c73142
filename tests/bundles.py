"""Small random bundles for tests, built without PyTorch (``core.bundle`` objects directly)."""

import numpy as np

from core.adapter import Adapter
from core.bundle import Bundle, Layer
from core.numerics import default_frac_bits


def _adapter(rng, channels, two):
    if two:
        h = channels // 4
        return Adapter(w1=rng.normal(0, 0.3, (h, channels)), b1=rng.normal(0, 0.1, h),
                       w2=rng.normal(0, 0.05, (1, h)), b2=np.array([1.0]), input="channels")
    return Adapter(w1=rng.normal(0, 0.05, (1, channels)), b1=np.array([1.0]), input="channels")


def random_bundle(seed=0, *, c1=4, c2=8, w_format="post", w_bits=4, a_bits=4, classes=5):
    """conv (int8, 8-bit input) -> conv (w_format, ASQ input, pool 2) -> linear (int8)."""
    rng = np.random.default_rng(seed)

    def conv(name, cin, cout, fmt, wb, ab, in_shape, pool, s_in, adapter_in):
        return Layer(name=name, kind="conv2d", in_shape=in_shape, out_channels=cout, kernel=3,
                     stride=1, padding=1, a_bits=ab, w_format=fmt, w_bits=wb,
                     frac_bits=default_frac_bits(fmt, wb), relu=True, pool=pool,
                     weight=rng.integers(0, 2 ** wb, (cout, cin, 3, 3)),
                     alpha=rng.uniform(0.02, 0.2, cout), bn_scale=rng.uniform(0.5, 2, cout),
                     bn_bias=rng.normal(0, 0.3, cout), s_in=s_in, input_adapter=adapter_in)

    l1 = conv("conv1", 1, c1, "int", 8, 8, (1, 8, 8), 0, 1 / 255, False)
    l2 = conv("conv2", c1, c2, w_format, w_bits, a_bits, (c1, 8, 8), 2, 0.1, True)
    l1.next_step, l1.next_bits, l1.adapter = 0.1, a_bits, _adapter(rng, c1, c1 >= 8)
    l2.next_step, l2.next_bits = 0.05, 8
    l3 = Layer(name="fc", kind="linear", in_shape=(c2 * 16,), out_channels=classes, kernel=1,
               stride=1, padding=0, a_bits=8, w_format="int", w_bits=8, frac_bits=0,
               relu=False, pool=0, weight=rng.integers(0, 256, (classes, c2 * 16)),
               alpha=rng.uniform(0.001, 0.01, classes), bn_scale=np.ones(classes),
               bn_bias=rng.normal(0, 0.1, classes), s_in=0.05)
    layers = [l1, l2, l3]
    for layer in layers:
        layer.fixed = layer.compute_fixed()
    return Bundle(input_shape=(1, 8, 8), input_bits=8, input_step=1 / 255, layers=layers,
                  meta={"test": True},
                  reference={"codes": rng.integers(0, 256, (3, 1, 8, 8))})


def ops_bundle(seed=0, *, c1=4, c2=8, classes=5, w_format="post", w_bits=4, a_bits=4):
    """A small format-3 network (``core.bundle``'s clips, average and global pooling and
    option-A shortcuts) on 8x8 inputs:

    ======  ======================================================  ===========
    conv1   int8, 1 -> c1, clip 1.0, ASQ adapter                      (c1, 8, 8)
    conv2   c1 -> c1, ReLU, average pooling 2, ASQ adapter           (c1, 4, 4)
    conv3   c1 -> c2, stride 2, ReLU                                 (c2, 2, 2)
    conv4   c2 -> c2, + conv2 (option A: stride 2, channel pad), clip 0.5, adapter
    conv5   c2 -> c2, ReLU                                           (c2, 2, 2)
    conv6   c2 -> c2, + conv4 (identity), ReLU, global pooling        (c2, 1, 1)
    fc      linear int8, c2 -> classes
    ======  ======================================================  ===========
    """
    rng = np.random.default_rng(seed)
    steps = {"conv1": 0.1, "conv2": 0.12, "conv3": 0.15, "conv4": 0.2, "conv5": 0.15,
             "conv6": 0.05}

    def conv(name, cin, cout, shape, *, stride=1, s_in, fmt=w_format, wb=w_bits, ab=a_bits,
             **ops):
        return Layer(name=name, kind="conv2d", in_shape=shape, out_channels=cout, kernel=3,
                     stride=stride, padding=1, a_bits=ab, w_format=fmt, w_bits=wb,
                     frac_bits=default_frac_bits(fmt, wb), relu=True, pool=ops.pop("pool", 0),
                     weight=rng.integers(0, 2 ** wb, (cout, cin, 3, 3)),
                     alpha=rng.uniform(0.02, 0.2, cout), bn_scale=rng.uniform(0.5, 2, cout),
                     bn_bias=rng.normal(0, 0.3, cout), s_in=s_in,
                     input_adapter=ops.pop("input_adapter", False),
                     next_step=steps[name], next_bits=8 if name == "conv6" else a_bits, **ops)

    l1 = conv("conv1", 1, c1, (1, 8, 8), s_in=1 / 255, fmt="int", wb=8, ab=8, clip=1.0)
    l2 = conv("conv2", c1, c1, (c1, 8, 8), s_in=steps["conv1"], input_adapter=True, pool=2,
              pool_mode="avg")
    l3 = conv("conv3", c1, c2, (c1, 4, 4), stride=2, s_in=steps["conv2"], input_adapter=True)
    l4 = conv("conv4", c2, c2, (c2, 2, 2), s_in=steps["conv3"], shortcut="conv2",
              shortcut_stride=2, shortcut_pad=(c2 - c1) // 2, clip=0.5)
    l5 = conv("conv5", c2, c2, (c2, 2, 2), s_in=steps["conv4"], input_adapter=True)
    l6 = conv("conv6", c2, c2, (c2, 2, 2), s_in=steps["conv5"], shortcut="conv4",
              global_pool=True)
    l1.adapter = _adapter(rng, c1, c1 >= 8)
    l2.adapter = _adapter(rng, c1, c1 >= 8)
    l4.adapter = _adapter(rng, c2, c2 >= 8)
    fc = Layer(name="fc", kind="linear", in_shape=(c2,), out_channels=classes, kernel=1,
               stride=1, padding=0, a_bits=8, w_format="int", w_bits=8, frac_bits=0,
               relu=False, pool=0, weight=rng.integers(0, 256, (classes, c2)),
               alpha=rng.uniform(0.001, 0.01, classes), bn_scale=np.ones(classes),
               bn_bias=rng.normal(0, 0.1, classes), s_in=steps["conv6"])
    layers = [l1, l2, l3, l4, l5, l6, fc]
    bundle = Bundle(input_shape=(1, 8, 8), input_bits=8, input_step=1 / 255, layers=layers,
                    meta={"test": True},
                    reference={"codes": rng.integers(0, 256, (3, 1, 8, 8))})
    for i, layer in enumerate(layers):
        layer.fixed = layer.compute_fixed()
        layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    return bundle


def with_reference(bundle, images=4, seed=0):
    """``bundle`` with the reference data ``asqgen sim`` needs, made by the golden model
    (its logits stand in for PyTorch's): ``images`` random inputs in ``[0, 1]``, their codes,
    each layer's input codes, the logits and labels (the golden model's own classes)."""
    from core.rescale import Z
    from sim.golden import run_network

    x = np.random.default_rng(seed).uniform(0, 1, (images,) + tuple(bundle.input_shape))
    codes = bundle.quantize_input(x)
    trace = run_network(bundle, codes)
    reference = {"images": x.astype(np.float32), "codes": codes,
                 "logits": (trace.logits * 2.0 ** -Z).astype(np.float32),
                 "labels": trace.logits.argmax(1)}
    for i, layer in enumerate(bundle.layers[1:], start=1):
        j = bundle.source_index(i)
        reference[f"layer{i}.codes"] = trace.layers[j].codes.reshape(
            (images,) + tuple(layer.in_shape))
    bundle.reference = reference
    return bundle
