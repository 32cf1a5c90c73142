"""The method comparison on the digits (the CNN) or on Fashion-MNIST (the ResNet-8): float,
LSQ, LSQ+POT, LSQ+POST, ASQ, ASQ+POST.

Each seed trains one float network (``export.train.train_float``); every quantized method at
every width starts QAT from that same float network (``export.train.train_qat``), so the
methods differ only in their quantizers. The accuracy is the test accuracy after the last
epoch (no selection of an epoch on the test set). Runs are independent and seeded, so they may
run in parallel worker processes (``jobs``), one torch thread each, with the same numbers as a
sequential run.

Rows (weights + activations of the middle layers; the first and the last layer are always
8-bit LSQ):

=========  ==========  ===========
row        weights     activations
=========  ==========  ===========
float      float       float
LSQ        lsq (int)   lsq
LSQ+POT    pot         lsq
LSQ+POST   post        lsq
ASQ        lsq (int)   asq
ASQ+POST   post        asq
=========  ==========  ===========

On Fashion-MNIST (``data="fashion-mnist"``) the network is ``export.resnet``'s ResNet-8 at
14x14, trained by ``export.resnet.train_resnet`` on ``train_images`` of the training split
(``None``: all 55,000), and every accuracy is on the whole official test set (10,000 images).
``plot`` draws the table as a PNG (matplotlib, the optional extra ``plot``).

``PAPER`` holds the paper's CIFAR-10 ResNet-20 top-1 (docs/algorithms.md, 'Reported accuracy
of the paper'), printed next to ours for the ordering only: the data sets and networks differ.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from core.files import write_text
from core import rules

__all__ = ["METHODS", "PAPER", "DATA", "compare_methods", "markdown", "write", "plot"]

DATA = ("digits", "fashion-mnist")

METHODS = (("float", None, None), ("LSQ", "lsq", "lsq"), ("LSQ+POT", "pot", "lsq"),
           ("LSQ+POST", "post", "lsq"), ("ASQ", "lsq", "asq"), ("ASQ+POST", "post", "asq"))
PAPER = {("float", None): 92.6, ("LSQ", 4): 92.4, ("LSQ+POT", 4): 92.5, ("LSQ+POST", 4): 92.7,
         ("ASQ", 4): 92.8, ("ASQ+POST", 4): 93.0, ("ASQ+POST", 3): 92.3}


def _float_job(seed, float_epochs):
    torch.set_num_threads(1)
    from . import digits
    from .train import evaluate, train_float

    start = time.perf_counter()
    model, _ = train_float(seed=seed, epochs=float_epochs)
    acc = evaluate(model, *digits.tensors("test"))[1]
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return acc, state, time.perf_counter() - start


def _qat_job(seed, state, bits, weight_method, act_method, epochs):
    torch.set_num_threads(1)
    from . import digits
    from .model import float_model
    from .train import evaluate, train_qat

    start = time.perf_counter()
    source = float_model()
    source.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model, _ = train_qat(source, bits=bits, weight_method=weight_method, act_method=act_method,
                         seed=seed, epochs=epochs)
    return evaluate(model, *digits.tensors("test"))[1], time.perf_counter() - start


_FASHION = {}


def _fashion(train_images):
    """The Fashion-MNIST tensors, loaded once per worker process."""
    from .resnet import fashion_data

    if train_images not in _FASHION:
        _FASHION[train_images] = fashion_data(train_images)
    return _FASHION[train_images]


def _fm_float_job(seed, float_epochs, train_images):
    torch.set_num_threads(1)
    from .resnet import ResnetRecipe, train_resnet

    start = time.perf_counter()
    data = _fashion(train_images)
    recipe = ResnetRecipe(weight_method=None, act_method=None, seed=seed,
                          float_epochs=float_epochs, epochs=0, train_images=train_images)
    model, info = train_resnet(recipe, data=data)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return info["test_accuracy"], state, time.perf_counter() - start


def _fm_qat_job(seed, state, bits, weight_method, act_method, epochs, train_images):
    torch.set_num_threads(1)
    from .resnet import ResnetRecipe, resnet8, train_resnet

    start = time.perf_counter()
    data = _fashion(train_images)
    source = resnet8()
    source.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    recipe = ResnetRecipe(bits=bits, weight_method=weight_method, act_method=act_method,
                          seed=seed, float_epochs=0, epochs=epochs, train_images=train_images)
    _, info = train_resnet(recipe, data=data, source=source)
    return info["test_accuracy"], time.perf_counter() - start


class _Serial:
    """A stand-in for a process pool that runs each job when it is submitted."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future


def _pool(jobs):
    if jobs == 1:
        return _Serial()
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def _stats(values):
    a = np.asarray(values, dtype=np.float64) * 100
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "runs": [float(v) for v in a]}


def compare_methods(*, seeds=tuple(range(1, 11)), bits=(4, 3), float_epochs=15, epochs=15, jobs=2,
            log=None, data="digits", train_images=None):
    """Train every method at every width for every seed; returns a JSON-ready dict.

    ``rows``: one entry per (method, bits) with the test accuracies in percent (``runs``, in
    seed order), ``mean``, ``std`` (sample standard deviation), ``min``, ``max`` and the paper's
    number where it reports one.
    """
    seeds, bits = tuple(seeds), tuple(bits)
    if not seeds:
        raise ValueError("at least one seed is needed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, not {seeds}")
    for b in bits:
        rules.check_bits("bits", b, rules.RECIPE_BITS)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if data not in DATA:
        raise ValueError(f"data must be one of {', '.join(DATA)}, not {data!r}")
    fashion = data == "fashion-mnist"
    if fashion:
        _fashion(train_images)                  # a missing data set fails before training
    float_job = (lambda s: (_fm_float_job, s, float_epochs, train_images)) if fashion else (
        lambda s: (_float_job, s, float_epochs))
    qat_job = (lambda s, b, wm, am: (_fm_qat_job, s, states[s], b, wm, am, epochs,
                                     train_images)) if fashion else (
        lambda s, b, wm, am: (_qat_job, s, states[s], b, wm, am, epochs))
    say = log or (lambda line: None)
    start = time.perf_counter()
    quantized = [(name, wm, am, b) for b in bits for name, wm, am in METHODS if wm is not None]
    with _pool(jobs) as pool:
        floats = {s: pool.submit(*float_job(s)) for s in seeds}
        float_acc, states = {}, {}
        for s in seeds:
            float_acc[s], states[s], seconds = floats[s].result()
            say(f"float           seed {s}: {100 * float_acc[s]:5.1f}%  ({seconds:.1f} s)")
        runs = {(name, b, s): pool.submit(*qat_job(s, b, wm, am))
                for name, wm, am, b in quantized for s in seeds}
        acc = {}
        for (name, b, s), future in runs.items():
            acc[name, b, s], seconds = future.result()
            say(f"{name:8s} {b}-bit  seed {s}: {100 * acc[name, b, s]:5.1f}%  ({seconds:.1f} s)")
    rows = [{"method": "float", "weights": None, "activations": None, "bits": None,
             **_stats([float_acc[s] for s in seeds]), "paper": PAPER.get(("float", None))}]
    for name, wm, am, b in quantized:
        rows.append({"method": name, "weights": wm, "activations": am, "bits": b,
                     **_stats([acc[name, b, s] for s in seeds]), "paper": PAPER.get((name, b))})
    from . import digits
    from .train import OPTIMIZER

    if fashion:
        test_images, split = len(_fashion(train_images)[4]), (
            f"Fashion-MNIST 14x14: {len(_fashion(train_images)[0])} training images of the "
            f"55,000-image training split, the official 10,000 test images")
    else:
        test_images, split = digits.TEST_SIZE, digits.SPLIT
    return {"data": data, "network": "resnet8" if fashion else "cnn", "seeds": list(seeds),
            "bits": list(bits), "float_epochs": float_epochs, "epochs": epochs,
            "train_images": len(_fashion(train_images)[0]) if fashion else None,
            "test_images": test_images, "split": split,
            "optimizer": OPTIMIZER, "seconds": round(time.perf_counter() - start, 1),
            "rows": rows}


def markdown(result):
    """The comparison as a Markdown table, with the orderings by mean, one per width."""
    n = len(result["seeds"])
    fashion = result.get("data") == "fashion-mnist"
    what = (f"Fashion-MNIST ResNet-8 (14x14, {result['train_images']} training images)"
            if fashion else "Digits")
    lines = [f"{what} test accuracy (%), {result['test_images']} test images (one image = "
             f"{100 / result['test_images']:.2f} points), {n} seeds "
             f"({', '.join(map(str, result['seeds']))}); {result['float_epochs']} float epochs, "
             f"then {result['epochs']} QAT epochs from the same float network per seed. "
             f"First and last layers 8-bit LSQ. Paper: CIFAR-10 ResNet-20, for the ordering "
             f"only.",
             "",
             "| method | bits | weights | activations | mean ± std | min – max | runs | paper |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        paper = f"{r['paper']:.1f}" if r["paper"] is not None else ""
        lines.append(
            f"| {r['method']} | {r['bits'] if r['bits'] is not None else '32 (float)'} | "
            f"{r['weights'] or 'float'} | {r['activations'] or 'float'} | "
            f"{r['mean']:.2f} ± {r['std']:.2f} | {r['min']:.1f} – {r['max']:.1f} | "
            f"{' '.join(f'{v:.1f}' for v in r['runs'])} | {paper} |")
    lines.append("")
    for b in result["bits"]:
        ranked = sorted((r for r in result["rows"] if r["bits"] == b),
                        key=lambda r: -r["mean"])
        lines.append(f"Ordering at {b} bits by mean: "
                     + " > ".join(f"{r['method']} {r['mean']:.2f}" for r in ranked)
                     + f" (float {result['rows'][0]['mean']:.2f}).")
    return "\n".join(lines) + "\n"


def write(result, folder):
    """Write ``methods.md`` and ``methods.json`` into ``folder``; returns their paths."""
    folder = Path(folder)
    md, js = folder / "methods.md", folder / "methods.json"
    write_text(md, markdown(result))
    write_text(js, json.dumps(result, indent=1) + "\n")
    return md, js


def plot(result, path):
    """The table as a PNG: mean test accuracy with the standard deviation as an error bar,
    per method and width, the float network as a line. Needs matplotlib (the extra
    ``plot``); returns ``path``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.files import write_bytes

    names = [name for name, wm, _ in METHODS if wm is not None]
    bits = result["bits"]
    rows = {(r["method"], r["bits"]): r for r in result["rows"]}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.8 / len(bits)
    for k, b in enumerate(bits):
        xs = [i + (k - (len(bits) - 1) / 2) * width for i in range(len(names))]
        means = [rows[n, b]["mean"] for n in names]
        stds = [rows[n, b]["std"] for n in names]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=f"{b} bits")
    f = rows["float", None]
    ax.axhline(f["mean"], color="black", linestyle="--", linewidth=1,
               label=f"float {f['mean']:.2f}")
    lows = [r["mean"] - r["std"] for r in result["rows"]]
    ax.set_ylim(max(0.0, min(lows) - 2), min(100.0, max(r["mean"] + r["std"]
                                                           for r in result["rows"]) + 1))
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test accuracy (%)")
    fashion = result.get("data") == "fashion-mnist"
    ax.set_title(f"{'Fashion-MNIST ResNet-8' if fashion else 'Digits CNN'}: mean ± std over "
                 f"{len(result['seeds'])} seeds, {result['test_images']} test images")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(Path(path), buffer.getvalue())
    return Path(path)
