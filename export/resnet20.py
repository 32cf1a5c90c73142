"""ResNet-20 for Fashion-MNIST, written as a user would write it with standard torch modules.

The network is the CIFAR ResNet-20 of He et al. (2016, section 4.2), in the form of the widely
used implementation akamaster/pytorch_resnet_cifar10: a 3x3 stem conv, three stages of three
``BasicBlock``s with 16, 32 and 64 channels (the first block of the second and third stages
strided), **option-A shortcuts** (the identity, subsampled by 2 and padded with zero channels
where the shape changes, through a ``LambdaLayer``), global average pooling and a linear
classifier: 1 + 18 + 1 = 20 weight layers, no projection. ``export.wrap.quantize_model`` maps
it through ``torch.fx`` (``export.graph``) as it is; nothing here is written for the
accelerator. For ``(1, 14, 14)`` inputs (``export.fashion_mnist`` at 14x14)::

    conv1   conv 1 -> 16, 3x3, padding 1 + BatchNorm2d + F.relu                14x14
    layer1  3 x BasicBlock 16 -> 16                                             14x14
    layer2  BasicBlock 16 -> 32, stride 2 (option A: x[:, :, ::2, ::2], 8 + 8
            zero channels), 2 x BasicBlock 32 -> 32                             7x7
    layer3  BasicBlock 32 -> 64, stride 2 (option A, 16 + 16), 2 x 64 -> 64     4x4
    pool    AdaptiveAvgPool2d(1), torch.flatten(x, 1)                          64
    linear  Linear 64 -> 10

Resolution: 14x14, as the ResNet-8 (``export.resnet``), for the same reasons (the loader's
default, a quarter of 28x28's positions so that RTL runs stay short) and one more: the stages
are then 14, 7 and 4, so the global average pooling divides by 16, a power of two, which the
requantization folds without any rounding (``core.rescale``; a 7x7 map, from 28x28 inputs,
would divide by 49). A 7x7 map subsampled by ``::2`` gives the 4x4 of the strided conv
(``ceil(7 / 2)``), as the bundle requires.

The QAT recipe is ``export.resnet``'s (``ResnetRecipe(model="resnet20")``): the first and the
last layer 8-bit LSQ, every other layer ``bits``-bit weights and inputs of the methods; a block's
input is quantized once, and its option-A shortcut adds that quantized value, subsampled and
padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LambdaLayer", "BasicBlock", "ResNet20", "resnet20"]


class LambdaLayer(nn.Module):
    """A module that applies a function (as in akamaster/pytorch_resnet_cifar10)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the shortcut is the identity, or option A where the
    shape changes (``planes == 2 * in_planes``, stride 2)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet20(nn.Module):
    """See the module docstring; ``widths`` are the three stages' channels (each twice the
    last), ``blocks`` the blocks of a stage."""

    def __init__(self, widths=(16, 32, 64), blocks=3, classes=10, channels=1):
        super().__init__()
        a = widths[0]
        self.conv1 = nn.Conv2d(channels, a, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(a)
        stages, cin = [], a
        for i, w in enumerate(widths):
            layers = []
            for j in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[-1], classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(self.pool(out), 1)
        return self.linear(out)


def resnet20(widths=(16, 32, 64), blocks=3, classes=10):
    """The float ResNet-20 (PyTorch's default initialisation: seed ``torch`` first)."""
    return ResNet20(widths, blocks, classes)
