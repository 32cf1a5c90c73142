"""A reduced-width MobileNet-V2 for Fashion-MNIST, written as torchvision writes the network.

For ``(1, 14, 14)`` inputs (``export.fashion_mnist`` at 14x14, as the ResNets)::

    stem      conv 1 -> 16, 3x3, padding 1 + BatchNorm2d + ReLU6                 14x14
    blocks    InvertedResidual (t, c, n, s) = (1, 8, 1, 1), (6, 16, 2, 2),
              (6, 24, 2, 2), (6, 32, 1, 1)                                       14, 7, 4, 4
    head      conv 1x1 32 -> 128 + BatchNorm2d + ReLU6                           4x4
    pool      global average pooling (``F.adaptive_avg_pool2d(x, 1)``), flatten
    fc        Dropout, Linear 128 -> 10

``InvertedResidual`` (torchvision's): a 1x1 expansion by ``t`` with batch norm and ReLU6
(none when ``t = 1``), a 3x3 depthwise conv (``groups`` = its channels, stride ``s``) with
batch norm and ReLU6, and a 1x1 projection with batch norm and no activation (the *linear
bottleneck*); when the stride is 1 and the channels do not change, the block's input is added
to it, with no ReLU after. The block's output is therefore signed.

The width (16 to 144 channels, the paper's network has 16 to 960) and the strides are cut to
Fashion-MNIST's 14x14 images, so that a run on the RTL stays short; the structure is the
paper's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

__all__ = ["INPUT_SHAPE", "SETTINGS", "InvertedResidual", "MobileNetV2", "mobilenetv2"]

INPUT_SHAPE = (1, 14, 14)
SETTINGS = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 1, 1))


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6), depthwise (3x3, ReLU6), project (1x1, linear); the identity added
    when the stride is 1 and the channels stay."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = _conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, act=False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """See the module docstring."""

    def __init__(self, settings=SETTINGS, stem=16, head=128, classes=10, dropout=0.2):
        super().__init__()
        layers = _conv_bn(1, stem, 3)
        cin = stem
        for t, c, n, s in settings:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += _conv_bn(cin, head, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = x.flatten(1)
        return self.classifier(x)


def mobilenetv2(settings=SETTINGS, stem=16, head=128, classes=10):
    """The float network (PyTorch's default initialisation: seed ``torch`` first)."""
    return MobileNetV2(settings, stem, head, classes)
