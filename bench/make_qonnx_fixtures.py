"""Make the QONNX fixtures of ``tests/fixtures/qonnx/`` with Brevitas (run by hand).

Trains small Brevitas networks on scikit-learn's 8x8 digits (``export/digits.py``'s split, no
download) for a few epochs and writes each one with Brevitas's ``export_qonnx`` (TorchScript
exporter, ``dynamo=False``: the dynamo exporter fails on residual adds, Brevitas issue 1608),
plus 64 test images and their labels as ``.npy``. The suite reads these files with ``qonnx``
alone; it never needs Brevitas, or PyTorch's exporter.

Needs PyTorch, ``brevitas``, ``onnxoptimizer``, ``qonnx`` and scikit-learn, e.g. the venv
``/work/bv``::

    /work/bv/bin/python bench/make_qonnx_fixtures.py [--out tests/fixtures/qonnx] [--epochs 12]

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


MODELS = {"cnn4": cnn4, "mlp3": mlp3, "cnn2gap": cnn2gap}


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
    ap.add_argument("--epochs", type=int, default=12)
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


if __name__ == "__main__":
    main()
