"""Make the QONNX fixtures of ``tests/fixtures/qonnx/`` with Brevitas (run by hand).

Trains small Brevitas networks on scikit-learn's 8x8 digits (``export/digits.py``'s split, no
download) for a few epochs and writes each one with Brevitas's ``export_qonnx`` (TorchScript
exporter, ``dynamo=False``: the dynamo exporter is reported to fail on residual adds,
Brevitas issue 1608),
plus 64 test images and their labels as ``.npy``. The suite reads these files with ``qonnx``
alone; it never needs Brevitas, or PyTorch's exporter.

Needs PyTorch, ``brevitas``, ``onnxoptimizer``, ``qonnx`` and scikit-learn, e.g. a venv made
with ``python3 -m venv out/bv && out/bv/bin/pip install -e '.[onnx]' brevitas onnxoptimizer``::

    out/bv/bin/python bench/make_qonnx_fixtures.py [--out tests/fixtures/qonnx] [--epochs 20]

``cnn4`` is also exported with the dynamo exporter (``dynamo=True``, torch's default), which
writes ``cnn4_dynamo.onnx`` and its weights in ``cnn4_dynamo.onnx.data`` beside it (external
data); here it exported ``res4`` too, but the fixtures keep the TorchScript files.

Fixtures (every activation quantizer unsigned, per-tensor; weights signed, narrow range):

``cnn4``
    input: 8-bit unsigned ``QuantIdentity``; conv 1->8 3x3 (8-bit weights, per channel),
    batch norm, 4-bit ``QuantReLU``, 2x2 max pooling; conv 8->16 3x3 (4-bit weights, per
    channel), batch norm, 4-bit ``QuantReLU``, 2x2 max pooling; flatten; linear 64->10 (8-bit
    weights, per tensor, float bias).
``mlp3``
    input: 8-bit unsigned; flatten; linear 64->64 (3-bit weights), batch norm, 4-bit
    ``QuantReLU``; linear 64->32 (3-bit), batch norm, 4-bit ``QuantReLU``; linear 32->10
    (3-bit, float bias).
``cnn2gap``
    2-bit weights and activations inside: conv 1->16 (8-bit weights), batch norm, 2-bit
    ``QuantReLU``; conv 16->32 (2-bit weights), batch norm, a float ``ReLU``, global average
    pooling (``AdaptiveAvgPool2d(1)``, a ``GlobalAveragePool`` node) and a 4-bit
    ``QuantIdentity`` after it (the accelerator averages before it quantizes: a quantizer
    before the pooling is refused); linear 32->10 (8-bit weights).
``res4``
    a small ResNet: conv 1->8 (8-bit weights), batch norm, 4-bit ``QuantReLU``; a residual
    block 8->8 with the identity shortcut (the block input's codes added before the last
    ``QuantReLU``); a block 8->16 with stride 2 and a 1x1 projection with batch norm; 2x2 max
    pooling; linear 64->10 (8-bit weights). 4-bit weights and activations in the blocks.
``dw4``
    a depthwise-separable CNN: conv 1->8 (8-bit weights), batch norm, 4-bit ``QuantReLU``; a
    depthwise 3x3 conv (groups 8, 4-bit weights), batch norm, 4-bit ``QuantReLU``, 2x2 max
    pooling; a 1x1 conv 8->16 (4-bit), batch norm, 4-bit ``QuantReLU``, 2x2 max pooling;
    linear 64->10 (8-bit weights).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brevitas import nn as qnn  # noqa: E402
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.quant import (Int8WeightPerChannelFloat, Int8WeightPerTensorFloat,  # noqa: E402
                            Uint8ActPerTensorFloat)

from export import digits  # noqa: E402

IMAGES = 64
DYNAMO = ("cnn4",)          # also exported with dynamo=True: cnn4_dynamo.onnx + .onnx.data


def _input():
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)


def cnn4():
    return nn.Sequential(
        _input(),
        qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=8),
        nn.BatchNorm2d(8), qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=4),
        nn.BatchNorm2d(16), qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
        nn.Flatten(),
        qnn.QuantLinear(64, 10, bias=True, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=8))


def mlp3():
    w = dict(weight_quant=Int8WeightPerTensorFloat, weight_bit_width=3)
    return nn.Sequential(
        _input(), nn.Flatten(),
        qnn.QuantLinear(64, 64, bias=False, **w), nn.BatchNorm1d(64), qnn.QuantReLU(bit_width=4),
        qnn.QuantLinear(64, 32, bias=False, **w), nn.BatchNorm1d(32), qnn.QuantReLU(bit_width=4),
        qnn.QuantLinear(32, 10, bias=True, **w))


def cnn2gap():
    return nn.Sequential(
        _input(),
        qnn.QuantConv2d(1, 16, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=8),
        nn.BatchNorm2d(16), qnn.QuantReLU(bit_width=2),
        qnn.QuantConv2d(16, 32, 3, padding=1, bias=False,
                        weight_quant=Int8WeightPerChannelFloat, weight_bit_width=2),
        nn.BatchNorm2d(32), nn.ReLU(),       # a float ReLU: the pooling averages before the
        nn.AdaptiveAvgPool2d(1),             # quantizer, as the accelerator does
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4),
        nn.Flatten(),
        qnn.QuantLinear(32, 10, bias=True, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=8))


class _Block(nn.Module):
    """A residual block: two 3x3 convs with batch norm, the shortcut (the input's codes, or a
    strided 1x1 projection with batch norm) added before the last ``QuantReLU``."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        w = dict(bias=False, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4)
        self.conv1 = qnn.QuantConv2d(cin, cout, 3, stride=stride, padding=1, **w)
        self.bn1, self.relu1 = nn.BatchNorm2d(cout), qnn.QuantReLU(bit_width=4)
        self.conv2 = qnn.QuantConv2d(cout, cout, 3, padding=1, **w)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), qnn.QuantReLU(bit_width=4)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(qnn.QuantConv2d(cin, cout, 1, stride=stride, **w),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        shortcut = x if self.proj is None else self.proj(x)
        return self.relu2(self.bn2(self.conv2(y)) + shortcut)


def res4():
    return nn.Sequential(
        _input(),
        qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=8),
        nn.BatchNorm2d(8), qnn.QuantReLU(bit_width=4),
        _Block(8, 8, 1), _Block(8, 16, 2), nn.MaxPool2d(2), nn.Flatten(),
        qnn.QuantLinear(64, 10, bias=True, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=8))


def dw4():
    w = dict(bias=False, weight_quant=Int8WeightPerChannelFloat)
    return nn.Sequential(
        _input(),
        qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=8, **w),
        nn.BatchNorm2d(8), qnn.QuantReLU(bit_width=4),
        qnn.QuantConv2d(8, 8, 3, padding=1, groups=8, weight_bit_width=4, **w),
        nn.BatchNorm2d(8), qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 1, weight_bit_width=4, **w),
        nn.BatchNorm2d(16), qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
        nn.Flatten(),
        qnn.QuantLinear(64, 10, bias=True, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=8))


MODELS = {"cnn4": cnn4, "mlp3": mlp3, "cnn2gap": cnn2gap, "res4": res4, "dw4": dw4}


def train(model, epochs, seed):
    torch.manual_seed(seed)
    x, y = digits.tensors("train")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            b = order[i:i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
        sched.step()
    model.eval()
    xt, yt = digits.tensors("test")
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/qonnx")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    xt, yt = digits.tensors("test")
    np.save(out / "images.npy", xt[:IMAGES].numpy())
    np.save(out / "labels.npy", yt[:IMAGES].numpy())
    for name in args.models:
        torch.manual_seed(args.seed)
        model = MODELS[name]()
        acc = train(model, args.epochs, args.seed)
        path = out / f"{name}.onnx"
        export_qonnx(model, torch.zeros(1, 1, 8, 8), export_path=str(path), dynamo=False)
        print(f"{name}: test accuracy {acc:.4f} (brevitas, 360 images) -> {path} "
              f"({path.stat().st_size} bytes)")
        if name in DYNAMO:
            # The same model through the dynamo exporter (torch's default), which writes the
            # weights to an external data file beside the .onnx.
            path = out / f"{name}_dynamo.onnx"
            export_qonnx(model, torch.zeros(1, 1, 8, 8), export_path=str(path), dynamo=True)
            data = path.with_name(path.name + ".data")
            print(f"{name}: dynamo exporter -> {path} ({path.stat().st_size} bytes) and {data} "
                  f"({data.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
