"""ResNet-8 for Fashion-MNIST: the float network, its QAT recipe, training and bundle (the
recipe, training and bundle serve ``export.resnet20``'s ResNet-20 and ``export.mobilenetv2``'s
MobileNet-V2 too: ``ResnetRecipe.model``; the names say "resnet" for history).

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
reads the max-pooled map instead of a global average (the ResNet-8 was defined before the
bundle had average pooling; ``export.resnet20``'s ResNet-20 has it).

The QAT recipe is the digits one (``export.model``): the first and the last layer 8-bit LSQ,
every other layer ``bits``-bit weights of the weight method and ``bits``-bit inputs of the
activation method; a block's input is quantized once, by the quantizer its ``conv1``, its
projection and its identity shortcut share. In the MobileNet-V2, a layer that reads a signed
value (a linear bottleneck or a residual sum with no ReLU after it) takes a ``bits``-bit signed
LSQ input quantizer instead of ASQ (``export.wrap``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


from .train import check_recipe
from .wrap import quantize_model

__all__ = ["INPUT_SHAPE", "FIRST_BITS", "LAST_BITS", "REFERENCE_IMAGES", "BasicBlock",
           "resnet8", "MODELS", "network", "build_resnet", "ResnetRecipe", "fashion_data",
           "train_resnet",
           "resnet_bundle", "golden_agreement"]

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


MODELS = ("resnet8", "resnet20", "mobilenetv2")
NAMES = {"resnet8": "ResNet-8", "resnet20": "ResNet-20", "mobilenetv2": "MobileNet-V2"}


def network(name):
    """The function that builds the float network ``name`` (one of ``MODELS``):
    ``resnet8`` here, ``resnet20`` in ``export.resnet20``, ``mobilenetv2`` in
    ``export.mobilenetv2``."""
    if name == "resnet20":
        from .resnet20 import resnet20

        return resnet20
    if name == "mobilenetv2":
        from .mobilenetv2 import mobilenetv2

        return mobilenetv2
    if name == "resnet8":
        return resnet8
    raise ValueError(f"model must be one of {', '.join(MODELS)}, not {name!r}")


def build_resnet(*, bits, weight_method, act_method, source=None, widths=(16, 32, 64)):
    """``quantize_model`` of ``source`` (default a fresh ``resnet8(widths)``) with the recipe's
    first and last widths; ``weight_method=act_method=None`` gives the float variant."""
    return quantize_model(resnet8(widths) if source is None else source, bits=bits,
                          weight_method=weight_method, act_method=act_method,
                          first_bits=FIRST_BITS, last_bits=LAST_BITS)


# --------------------------------------------------------------------------- training

REFERENCE_IMAGES = 1000         # test images stored in the bundle (the first of the test set)
MONITOR_IMAGES = 1000           # validation images measured after every epoch
FORMAT = "asqgen-resnet-checkpoint"


@dataclass(frozen=True)
class ResnetRecipe:
    """What ``asqgen train --data fashion-mnist --model resnet8`` (``resnet20``,
    ``mobilenetv2``) trains.

    The optimiser and schedule are the digits' (``export.train``: SGD with Nesterov momentum
    0.9, cosine to zero per step, weight decay 1e-4 on conv / linear weights, batch 64, float
    learning rate 0.05, QAT 0.01). ``train_images``: the first ``train_images`` of a fixed
    permutation (``numpy.random.default_rng(0)``) of the 55,000-image training split, all of
    it when ``None``. Every accuracy is on the official 10,000 test images; the accuracy
    printed after each epoch is on the first ``MONITOR_IMAGES`` validation images.
    """

    bits: int = 4
    weight_method: str | None = "post"
    act_method: str | None = "asq"
    seed: int = 1
    float_epochs: int = 8
    epochs: int = 5
    train_images: int | None = None
    size: int = 14
    model: str = "resnet8"

    def check(self):
        build = network(self.model)
        check_recipe(self, build)
        if self.train_images is not None and not (isinstance(self.train_images, int) and
                                                  self.train_images >= 1):
            raise ValueError(f"train_images must be a positive integer, not "
                             f"{self.train_images!r}")
        if self.size != 14:
            raise ValueError(f"size must be 14 (the {NAMES[self.model]}'s input), not "
                             f"{self.size!r}")
        return self

    def describe(self):
        if self.weight_method is None:
            return f"float {NAMES[self.model]}"
        signed = (f", signed inputs {self.bits}-bit lsq" if self.model == "mobilenetv2" and
                  self.act_method != "lsq" else "")
        return (f"{NAMES[self.model]}, {self.bits}-bit {self.weight_method} weights, {self.bits}-bit "
                f"{self.act_method} activations (first and last layers 8-bit lsq{signed})")


def fashion_data(train_images=None, size=14, base=None, checked=True):
    """``(train_x, train_y, monitor_x, monitor_y, test_x, test_y)`` torch tensors of
    Fashion-MNIST (``export.fashion_mnist``), the training subset as ``ResnetRecipe`` says."""
    from . import fashion_mnist

    tx, ty = fashion_mnist.arrays("train", size=size, base=base, checked=checked)
    if train_images is not None and train_images < len(tx):
        keep = np.sort(np.random.default_rng(0).permutation(len(tx))[:train_images])
        tx, ty = tx[keep], ty[keep]
    vx, vy = fashion_mnist.arrays("val", size=size, base=base, checked=checked)
    sx, sy = fashion_mnist.arrays("test", size=size, base=base, checked=checked)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return (t(tx), t(ty), t(vx[:MONITOR_IMAGES]), t(vy[:MONITOR_IMAGES]), t(sx), t(sy))


def _train_float(recipe, data, log, progress):
    from .train import FLOAT_LR, _deterministic, _fit

    with _deterministic():
        np.random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        model = network(recipe.model)()
        history = _fit(model, epochs=recipe.float_epochs, lr=FLOAT_LR, seed=recipe.seed,
                       phase="float", log=log, progress=progress, data=data[:4],
                       monitor="val")
    return model, history


def _train_qat(recipe, source, data, log, progress):
    from .train import QAT_LR, _deterministic, _fit

    with _deterministic():
        np.random.seed(recipe.seed)
        torch.manual_seed(recipe.seed + 1_000_003)
        model = build_resnet(bits=recipe.bits, weight_method=recipe.weight_method,
                             act_method=recipe.act_method, source=source)
        history = _fit(model, epochs=recipe.epochs, lr=QAT_LR, seed=recipe.seed + 1,
                       phase="qat", log=log, progress=progress, data=data[:4],
                       monitor="val")
    return model, history


def train_resnet(recipe=ResnetRecipe(), *, data=None, log=None, progress=False, source=None):
    """Run ``recipe``: ``(model, info)``. ``data``: ``fashion_data(...)``'s tuple (loaded if
    ``None``); ``source``: a trained float network of ``recipe.model`` to start QAT from (then
    no float training)."""
    from .train import OPTIMIZER, evaluate

    recipe.check()
    start = time.perf_counter()
    data = data or fashion_data(recipe.train_images, recipe.size)
    history = []
    if source is None:
        source, history = _train_float(recipe, data, log, progress)
    float_acc = evaluate(source, data[4], data[5])[1]
    if recipe.weight_method is None:
        model = source
    else:
        model, more = _train_qat(recipe, source, data, log, progress)
        history += more
    model.eval()
    info = {"format": FORMAT, "version": 1, "data": "fashion-mnist", "model": recipe.model,
            **asdict(recipe), "first_bits": FIRST_BITS, "last_bits": LAST_BITS,
            "train_count": len(data[0]), "test_accuracy": evaluate(model, data[4], data[5])[1],
            "float_test_accuracy": float_acc,
            "train_seconds": round(time.perf_counter() - start, 2), "optimizer": OPTIMIZER,
            "history": history}
    return model, info


def resnet_bundle(model, info, test_x, test_y, count=REFERENCE_IMAGES):
    """The bundle of a trained quantized ResNet (``info["model"]``) with the first ``count``
    test images as its reference inputs."""
    from .to_bundle import export_bundle

    meta = {k: info[k] for k in ("data", "model", "bits", "weight_method", "act_method",
                                 "seed", "test_accuracy")}
    return export_bundle(model, input_shape=INPUT_SHAPE, reference_inputs=test_x[:count],
                         reference_labels=test_y[:count], meta=meta)


@torch.no_grad()
def golden_agreement(model, bundle, images, labels, batch=500):
    """The golden model (``sim.golden``) against PyTorch on ``images``: a dict with
    ``images``, ``top1_agreement``, ``golden_accuracy``, ``torch_accuracy``,
    ``logits_max_difference`` and ``seconds`` (the golden model's, in batches of
    ``batch``)."""
    from core.rescale import Z
    from sim.golden import run_network

    model.eval()
    ours, theirs, worst = [], [], 0.0
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        logits = model(x).numpy()
        trace = run_network(bundle, bundle.quantize_input(x.numpy()))
        g = trace.logits * 2.0 ** -Z
        worst = max(worst, float(np.abs(g - logits).max()))
        ours.append(g.argmax(1))
        theirs.append(logits.argmax(1))
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    labels = np.asarray(labels)
    return {"images": int(len(ours)), "top1_agreement": float((ours == theirs).mean()),
            "golden_accuracy": float((ours == labels).mean()),
            "torch_accuracy": float((theirs == labels).mean()),
            "logits_max_difference": worst,
            "seconds": round(time.perf_counter() - start, 1)}
