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
