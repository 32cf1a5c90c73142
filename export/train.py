"""Quantization-aware training of the digits network, and its pickle-free checkpoint.

The recipe
----------
1. **Float pretraining**: ``float_model()`` trained for ``float_epochs`` epochs.
2. **QAT**: ``build_model(source=<the trained float network>)``, that is
   ``export.wrap.quantize_model`` copying the float weights and batch-norm statistics; the
   quantizer scales initialise on the first training batch; trained for ``epochs`` epochs.

Both phases: SGD with Nesterov momentum 0.9, batch 64, cosine schedule to zero over the phase
(per step), weight decay ``WEIGHT_DECAY`` = 1e-4 on conv / linear weights only (not on batch
norm, biases, quantizer scales or adapters), cross-entropy loss, no data augmentation. Learning
rate ``FLOAT_LR`` for pretraining, ``QAT_LR`` for QAT. This is the paper's optimiser and schedule
(SGD, cosine, weight decay 1e-4) scaled down to a 1437-image training set.

Reproducibility: the split is fixed (``export.digits``); ``seed`` seeds numpy, torch's global
generator (the float initialisation, then again before QAT for the adapters) and the generator
that shuffles the batches; ``torch.use_deterministic_algorithms(True)`` is on while training.
The same command on the same machine with the same thread count gives the same numbers.
``asqgen train`` and every worker of ``asqgen methods`` use one torch thread: on this tiny
network two threads are about five times slower than one (measured on 2 cores).

The checkpoint
--------------
A folder with two files and no pickle:

``model.npz``
    The ``state_dict`` as numpy arrays (``np.savez``), read back with ``allow_pickle=False``.
``model.json``
    The recipe (``format``, ``version``, ``bits``, ``weight_method``, ``act_method``,
    ``first_bits``, ``last_bits``, ``seed``, ``float_epochs``, ``epochs``), the results
    (``test_accuracy``, ``float_test_accuracy``, ``history``), the ``split`` description and
    the ``optimizer`` description.

``load_checkpoint`` rebuilds the network from the recipe and refuses, with a one-line
``ValueError`` naming the problem, a missing file, invalid JSON, a bad recipe value, a missing
or unexpected tensor, a tensor of the wrong shape or dtype, non-finite values, or a quantizer
that was never initialised.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import CheckpointError
from core.files import read_npz, write_npz, write_text
from core import rules

from . import digits
from .model import BITS, FIRST_BITS, LAST_BITS, build_model, float_model
from .quantizers import _Learned
from .wrap import check_mappable

__all__ = ["Recipe", "OPTIMIZER", "train", "train_float", "train_qat", "evaluate",
           "save_checkpoint", "load_checkpoint", "FORMAT", "VERSION"]

FORMAT = "asqgen-checkpoint"
VERSION = 1
BATCH = 64
FLOAT_LR = 0.05
QAT_LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
OPTIMIZER = (f"SGD nesterov momentum {MOMENTUM}, batch {BATCH}, cosine per step to 0, "
             f"lr {FLOAT_LR} float / {QAT_LR} QAT, weight decay {WEIGHT_DECAY} on conv/linear "
             f"weights only, cross-entropy, no augmentation")


def check_recipe(recipe, float_network):
    """The checks every training recipe shares: ``bits``, the methods (both given or both
    ``None``), non-negative ``seed`` and epoch counts, and the hardware's rules on a throw-away
    ``float_network()`` built without touching the global random state. ``ValueError``."""
    bits = recipe.bits
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, not {bits!r}")
    rules.check_weight_method(recipe.weight_method, none="null")
    rules.check_act_method(recipe.act_method, none="null")
    if (recipe.weight_method is None) != (recipe.act_method is None):
        raise ValueError("weight_method and act_method must both be null (the float "
                         "network) or neither")
    for name in ("seed", "float_epochs", "epochs"):
        v = getattr(recipe, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
    if recipe.weight_method is not None:
        with torch.random.fork_rng():
            check_mappable(float_network(), bits=bits, weight_method=recipe.weight_method,
                           act_method=recipe.act_method, first_bits=FIRST_BITS,
                           last_bits=LAST_BITS)


@dataclass(frozen=True)
class Recipe:
    """What ``asqgen train`` trains. ``weight_method=act_method=None`` is the float network."""

    bits: int = 4
    weight_method: str | None = "post"
    act_method: str | None = "asq"
    seed: int = 1
    float_epochs: int = 15
    epochs: int = 15

    def check(self):
        check_recipe(self, float_model)
        return self

    def describe(self):
        if self.weight_method is None:
            return "float network"
        return (f"{self.bits}-bit {self.weight_method} weights, {self.bits}-bit "
                f"{self.act_method} activations (first and last layers 8-bit lsq)")


# --------------------------------------------------------------------------- training loop

@contextlib.contextmanager
def _deterministic():
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old)


class _Bar:
    """A one-line progress bar on standard error, drawn only when it is a terminal."""

    def __init__(self, label, total, enabled):
        self.label, self.total = label, total
        self.enabled = enabled and sys.stderr.isatty()
        self.done = 0

    def step(self):
        self.done += 1
        if self.enabled:
            n = 30 * self.done // self.total
            sys.stderr.write(f"\r  {self.label} [{'#' * n}{'.' * (30 - n)}] "
                             f"{self.done}/{self.total}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * (len(self.label) + 50) + "\r")
            sys.stderr.flush()


def _param_groups(model):
    """Weight decay on conv / linear weights; not on quantizers (adapters included), biases,
    batch norm."""
    inside = {id(p) for m in model.modules() if isinstance(m, _Learned) for p in m.parameters()}
    decay = [m.weight for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m.weight) not in inside]
    chosen = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0}]


@torch.no_grad()
def evaluate(model, images, labels, batch=512):
    """``(loss, accuracy)`` of ``model`` in evaluation mode (the mode is restored)."""
    was = model.training
    model.eval()
    try:
        loss, correct = 0.0, 0
        for i in range(0, len(images), batch):
            out = model(images[i:i + batch])
            loss += F.cross_entropy(out, labels[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == labels[i:i + batch]).sum().item()
    finally:
        model.train(was)
    return loss / len(images), correct / len(images)


def _fit(model, *, epochs, lr, seed, phase, log, progress, data=None, batch=BATCH,
         monitor="test"):
    """Train ``model`` in place; returns the per-epoch history. ``data``: ``(train_x,
    train_y, test_x, test_y)`` tensors (default the digits' split); the "test" accuracy of
    each epoch is measured on ``test_x``."""
    train_x, train_y, test_x, test_y = data or (*digits.tensors("train"),
                                                *digits.tensors("test"))
    BATCH = batch                                   # noqa: N806  (the digits' constant)
    steps = math.ceil(len(train_x) / BATCH)
    opt = torch.optim.SGD(_param_groups(model), lr=lr, momentum=MOMENTUM, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, epochs * steps) /
                                           max(1, epochs * steps))))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        bar = _Bar(f"{phase} epoch {epoch}/{epochs}", steps, progress)
        order = torch.randperm(len(train_x), generator=gen)
        total, correct = 0.0, 0
        for k in range(steps):
            idx = order[k * BATCH:(k + 1) * BATCH]
            out = model(train_x[idx])
            loss = F.cross_entropy(out, train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == train_y[idx]).sum().item()
            bar.step()
        bar.close()
        train_loss = total / len(train_x)
        if not math.isfinite(train_loss):
            raise RuntimeError(f"{phase} training diverged in epoch {epoch} (loss {train_loss})")
        _, test_acc = evaluate(model, test_x, test_y)
        row = {"phase": phase, "epoch": epoch, "loss": train_loss,
               "train_accuracy": correct / len(train_x), "test_accuracy": test_acc}
        history.append(row)
        if log is not None:
            log(f"{phase:5s} epoch {epoch:3d}/{epochs}  loss {train_loss:.4f}  "
                f"train {100 * row['train_accuracy']:5.1f}%  {monitor} {100 * test_acc:5.1f}%")
    return history


def train_float(*, seed, epochs, log=None, progress=False):
    """``(model, history)``: the float network trained for ``epochs`` epochs."""
    with _deterministic():
        np.random.seed(seed)
        torch.manual_seed(seed)
        model = float_model()
        history = _fit(model, epochs=epochs, lr=FLOAT_LR, seed=seed, phase="float", log=log,
                       progress=progress)
    return model, history


def train_qat(source, *, bits, weight_method, act_method, seed, epochs, log=None,
              progress=False):
    """``(model, history)``: QAT of ``build_model(source=source)`` (``source`` is unchanged)."""
    with _deterministic():
        np.random.seed(seed)
        torch.manual_seed(seed + 1_000_003)
        model = build_model(bits=bits, weight_method=weight_method, act_method=act_method,
                            source=source)
        history = _fit(model, epochs=epochs, lr=QAT_LR, seed=seed + 1, phase="qat", log=log,
                       progress=progress)
    return model, history


def train(recipe=Recipe(), *, log=None, progress=False):
    """Run ``recipe``; returns ``(model, info)`` where ``info`` is what ``model.json`` holds."""
    recipe.check()
    start = time.perf_counter()
    source, history = train_float(seed=recipe.seed, epochs=recipe.float_epochs, log=log,
                                  progress=progress)
    test_x, test_y = digits.tensors("test")
    float_acc = evaluate(source, test_x, test_y)[1]
    if recipe.weight_method is None:
        model = build_model(bits=recipe.bits, weight_method=None, act_method=None, source=source)
    else:
        model, more = train_qat(source, bits=recipe.bits, weight_method=recipe.weight_method,
                                act_method=recipe.act_method, seed=recipe.seed,
                                epochs=recipe.epochs, log=log, progress=progress)
        history += more
    model.eval()
    info = {"format": FORMAT, "version": VERSION, **asdict(recipe),
            "first_bits": FIRST_BITS, "last_bits": LAST_BITS,
            "test_accuracy": evaluate(model, test_x, test_y)[1],
            "float_test_accuracy": float_acc,
            "train_seconds": round(time.perf_counter() - start, 2),
            "split": digits.SPLIT, "optimizer": OPTIMIZER, "history": history}
    return model, info


# --------------------------------------------------------------------------- checkpoint

def save_checkpoint(model, info, folder):
    """Write ``model.npz`` (the state dict) and ``model.json`` (``info``) into ``folder``."""
    folder = Path(folder)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    # Each file through a temporary file and a rename: a killed run leaves the old file or the
    # new one. model.json goes last, and a bundle made from the checkpoint records the model's
    # fingerprint (``export.to_bundle.fingerprint``), so a stale pair is detected.
    write_npz(folder / "model.npz", arrays)
    write_text(folder / "model.json", json.dumps(info, indent=1) + "\n")
    return folder / "model.npz", folder / "model.json"


def _recipe_from(info, where):
    """The recipe of a checkpoint's ``model.json``: a ``Recipe`` (the digits CNN, format
    ``FORMAT``) or an ``export.resnet.ResnetRecipe`` (a Fashion-MNIST network, format
    ``export.resnet.FORMAT``)."""
    from . import resnet

    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: expected a JSON object, not {type(info).__name__}")
    kind = Recipe
    if info.get("format") == resnet.FORMAT:
        kind, fmt = resnet.ResnetRecipe, resnet.FORMAT
    else:
        fmt = FORMAT
    for key, value in (("format", fmt), ("version", VERSION), ("first_bits", FIRST_BITS),
                       ("last_bits", LAST_BITS)):
        if key not in info:
            raise CheckpointError(f"{where}: missing field {key!r}")
        if info[key] != value or type(info[key]) is not type(value):
            raise CheckpointError(f"{where}: {key} must be {value!r}, not {info[key]!r}")
    fields = kind.__dataclass_fields__
    missing = [k for k in fields if k not in info]
    if missing:
        raise CheckpointError(f"{where}: missing field {missing[0]!r}")
    try:
        return kind(**{k: info[k] for k in fields}).check()
    except (ValueError, rules.MappingError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def _empty_model(recipe):
    """The untrained network of ``recipe``, to load a state dict into (the global RNG is
    left as it was)."""
    from . import resnet

    if isinstance(recipe, resnet.ResnetRecipe):
        with torch.random.fork_rng():
            source = resnet.network(recipe.model)()
        return resnet.build_resnet(bits=recipe.bits, weight_method=recipe.weight_method,
                                   act_method=recipe.act_method, source=source)
    return build_model(bits=recipe.bits, weight_method=recipe.weight_method,
                       act_method=recipe.act_method)


class _NpzError(CheckpointError):
    """``read_npz``'s errors, worded as the checkpoint reader's."""

    def __init__(self, message):
        path, _, rest = message.partition(": ")
        super().__init__(f"{path}: not a readable npz file ({rest})")


def load_checkpoint(folder):
    """``(model, info)`` from a checkpoint folder of ``asqgen train``: the digits CNN or a
    Fashion-MNIST network (ResNet-8, ResNet-20, MobileNet-V2); the model is in evaluation mode.

    Raises ``CheckpointError`` (one line, naming the file and the problem) for anything but a
    complete, consistent checkpoint.
    """
    folder = Path(folder)
    json_path, npz_path = folder / "model.json", folder / "model.npz"
    for path in (json_path, npz_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        info = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise CheckpointError(f"{json_path}: not valid JSON ({msg})") from None
    except RecursionError:
        raise CheckpointError(f"{json_path}: not valid JSON (nested too deeply)") from None
    recipe = _recipe_from(info, json_path)
    model = _empty_model(recipe)
    expected = model.state_dict()
    arrays = read_npz(npz_path, _NpzError)
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise CheckpointError(f"{npz_path}: missing tensor {missing[0]!r}"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                         + f" for {recipe.describe()}")
    extra = [k for k in arrays if k not in expected]
    if extra:
        raise CheckpointError(f"{npz_path}: unexpected tensor {extra[0]!r}"
                         + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
                         + f" for {recipe.describe()}")
    state = {}
    for k, ref in expected.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(ref.shape):
            raise CheckpointError(f"{npz_path}: tensor {k!r} has shape {tuple(a.shape)}, expected "
                             f"{tuple(ref.shape)}")
        want = ref.numpy().dtype
        if a.dtype != want:
            raise CheckpointError(f"{npz_path}: tensor {k!r} has dtype {a.dtype}, expected {want}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{npz_path}: tensor {k!r} has non-finite values")
        state[k] = torch.from_numpy(a.copy())
    model.load_state_dict(state)
    for name, module in model.named_modules():
        if isinstance(module, _Learned) and not bool(module.initialized):
            raise CheckpointError(f"{npz_path}: quantizer {name!r} was never initialised "
                             f"(its 'initialized' flag is false)")
    model.eval()
    return model, info
