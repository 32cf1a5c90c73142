"""ResNet-8 for Fashion-MNIST: the float network, its QAT recipe, training and bundle.

The network (``resnet8()``), for ``(1, 14, 14)`` inputs (``export.fashion_mnist`` at 14x14)::

    stem    conv 1 -> 16, 3x3, padding 1 + BatchNorm2d + ReLU              14x14
    layer1  BasicBlock 16 -> 16, stride 1 (identity shortcut)              14x14
    layer2  BasicBlock 16 -> 32, stride 2 (1x1 strided projection + BN)    7x7
    layer3  BasicBlock 32 -> 64, stride 2 (1x1 strided projection + BN)    4x4
    pool    MaxPool2d(2)                                                   2x2
    flatten, fc  Linear 256 -> 10

``BasicBlock``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, written as an
``nn.Module`` with an addition in ``forward``, which ``export.wrap.quantize_model`` maps
through ``torch.fx`` (``export.graph``). Eight weight layers: the stem, six block convs and the
classifier (the two projections are counted apart, as in the ResNet papers). The classifier
reads the max-pooled map instead of a global average (the accelerator has no average
pooling).

The QAT recipe is the digits one (``export.model``): the first and the last layer 8-bit LSQ,
every other layer ``bits``-bit weights of the weight method and ``bits``-bit inputs of the
activation method; a block's input is quantized once, by the quantizer its ``conv1``, its
projection and its identity shortcut share.
"""

from __future__ import annotations

from torch import nn

from .wrap import quantize_model

__all__ = ["INPUT_SHAPE", "FIRST_BITS", "LAST_BITS", "BasicBlock", "resnet8", "build_resnet"]

INPUT_SHAPE = (1, 14, 14)
FIRST_BITS = 8
LAST_BITS = 8


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and a shortcut: the identity, or a 1x1 conv (stride
    ``stride``) with batch norm when the shape changes."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + shortcut)


class ResNet8(nn.Module):
    """See the module docstring; ``widths`` are the three stages' channels."""

    def __init__(self, widths=(16, 32, 64), classes=10, size=14):
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(nn.Conv2d(1, a, 3, padding=1, bias=False), nn.BatchNorm2d(a),
                                  nn.ReLU())
        self.layer1 = BasicBlock(a, a, 1)
        self.layer2 = BasicBlock(a, b, 2)
        self.layer3 = BasicBlock(b, c, 2)
        side = size
        for _ in range(2):
            side = (side - 1) // 2 + 1
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c * (side // 2) ** 2, classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def resnet8(widths=(16, 32, 64), classes=10, size=14):
    """The float ResNet-8 (PyTorch's default initialisation: seed ``torch`` first)."""
    return ResNet8(widths, classes, size)


def build_resnet(*, bits, weight_method, act_method, source=None, widths=(16, 32, 64)):
    """``quantize_model`` of ``source`` (default a fresh ``resnet8(widths)``) with the recipe's
    first and last widths; ``weight_method=act_method=None`` gives the float variant."""
    return quantize_model(resnet8(widths) if source is None else source, bits=bits,
                          weight_method=weight_method, act_method=act_method,
                          first_bits=FIRST_BITS, last_bits=LAST_BITS)
