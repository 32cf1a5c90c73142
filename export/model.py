"""The digits network: a small CNN for 8x8 images, float and quantization-aware.

The shape is fixed (the hardware team depends on it); ``nn.Sequential`` indices in brackets::

    input (B, 1, 8, 8), pixels / 16 in [0, 1]
    [0]  conv1  1 -> 16, 3x3, padding 1, no bias      8-bit LSQ weights per output channel,
                                                        8-bit unsigned LSQ input
    [1]  BatchNorm2d(16)   [2]  ReLU
    [3]  conv2 16 -> 32, 3x3, padding 1, no bias      b-bit weights (lsq / pot / post),
                                                        b-bit unsigned input (lsq / asq)
    [4]  BatchNorm2d(32)   [5]  ReLU   [6]  MaxPool2d(2) -> 4x4
    [7]  conv3 32 -> 32, 3x3, padding 1, no bias      as conv2
    [8]  BatchNorm2d(32)   [9]  ReLU   [10] MaxPool2d(2) -> 2x2
    [11] Flatten -> 128
    [12] linear 128 -> 10, with bias                   8-bit LSQ weights per output channel,
                                                        8-bit unsigned LSQ input, no adapter

The first input quantizer is **unsigned** (codes 0 .. 255 for pixels in [0, 1]): this departs
from the reference recipe (docs/algorithms.md, 'Which tensors are quantized'), which quantizes
the first input signed; the images are non-negative and every activation code of the hardware
is unsigned.

``float_model()`` builds the float network from ``nn.Conv2d`` / ``nn.Linear``;
``build_model()`` passes it through ``export.wrap.quantize_model``, the same API a user calls
on their own network, so the QAT network is always that function's output.
"""

from __future__ import annotations

from torch import nn

from core.rules import ACT_METHODS, RECIPE_BITS as BITS, WEIGHT_METHODS

from .wrap import quantize_model

__all__ = ["BITS", "WEIGHT_METHODS", "ACT_METHODS", "INPUT_SHAPE", "float_model", "build_model"]

INPUT_SHAPE = (1, 8, 8)
FIRST_BITS = 8
LAST_BITS = 8


def float_model():
    """The float network (PyTorch's default initialisation: seed ``torch`` first)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def build_model(*, bits, weight_method, act_method, source=None):
    """The QAT network: ``quantize_model`` of ``source`` (default: a fresh ``float_model()``).

    ``weight_method=None, act_method=None`` gives the float variant made of ``QConv2d`` /
    ``QLinear`` without quantizers. The ASQ adapters draw their initial weights from ``torch``'s
    global generator.
    """
    return quantize_model(float_model() if source is None else source, bits=bits,
                          weight_method=weight_method, act_method=act_method,
                          first_bits=FIRST_BITS, last_bits=LAST_BITS)
