"""The method comparison on the digits (the CNN) or on Fashion-MNIST (the ResNet-8): float,
LSQ, LSQ+POT, LSQ+POST, ASQ, ASQ+POST.

Each seed trains one float network (``export.train.train_float``); every quantized method at
every width starts QAT from that same float network (``export.train.train_qat``), so the
methods differ only in their quantizers. The accuracy is the test accuracy after the last
epoch (no selection of an epoch on the test set). Runs are independent and seeded, so each is
a job on Dask ``distributed`` (``export.jobs``): worker processes, one torch thread each, on
this machine or on a cluster, with the same numbers as a one-worker run; each result is
stored under a key of its inputs, so a comparison stopped half-way resumes where it stopped.

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

import time
from pathlib import Path

import numpy as np
import torch

from core.errors import ToolError
from core.files import write_report
from core import rules

__all__ = ["METHODS", "PAPER", "DATA", "compare_methods", "method_jobs", "markdown", "write",
           "plot"]

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
    return _float_result(acc, model, start)


def _float_result(acc, model, start):
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return {"accuracy": float(acc), "seconds": round(time.perf_counter() - start, 2),
            "arrays": state}


def _state(result):
    return {k: torch.from_numpy(v) for k, v in result["arrays"].items()}


def _qat_job(seed, float_result, bits, weight_method, act_method, epochs):
    torch.set_num_threads(1)
    from . import digits
    from .model import float_model
    from .train import evaluate, train_qat

    start = time.perf_counter()
    source = float_model()
    source.load_state_dict(_state(float_result))
    model, _ = train_qat(source, bits=bits, weight_method=weight_method, act_method=act_method,
                         seed=seed, epochs=epochs)
    return {"accuracy": float(evaluate(model, *digits.tensors("test"))[1]),
            "seconds": round(time.perf_counter() - start, 2)}


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
    return _float_result(info["test_accuracy"], model, start)


def _fm_qat_job(seed, float_result, bits, weight_method, act_method, epochs, train_images):
    torch.set_num_threads(1)
    from .resnet import ResnetRecipe, resnet8, train_resnet

    start = time.perf_counter()
    data = _fashion(train_images)
    source = resnet8()
    source.load_state_dict(_state(float_result))
    recipe = ResnetRecipe(bits=bits, weight_method=weight_method, act_method=act_method,
                          seed=seed, float_epochs=0, epochs=epochs, train_images=train_images)
    _, info = train_resnet(recipe, data=data, source=source)
    return {"accuracy": float(info["test_accuracy"]),
            "seconds": round(time.perf_counter() - start, 2)}


def _stats(values):
    a = np.asarray(values, dtype=np.float64) * 100
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "runs": [float(v) for v in a]}


def method_jobs(*, seeds, bits, float_epochs, epochs, data="digits", train_images=None):
    """The jobs of a comparison (``export.jobs.Job``): one float run per seed, then one QAT
    run per (method, bits, seed) from its seed's float network; returns ``(jobs, floats,
    runs)`` with ``floats[seed]`` and ``runs[name, bits, seed]`` the jobs' keys.

    A key holds the data set, the recipe, the seed, the versions of torch, numpy and Python
    and the fingerprint of the training code (``core`` and ``export`` but the job engine and
    the sweep): a result is reused only where all of them are the same."""
    from .jobs import Job, Ref, job_key

    fashion = data == "fashion-mnist"
    tools = {"torch": torch.__version__}
    packages = ("core", "export")
    exclude = ("export/jobs.py", "export/sweep.py")
    jobs, floats, runs = [], {}, {}
    for s in seeds:
        key = job_key("methods-float", {"data": data, "seed": s, "float_epochs": float_epochs,
                                        "train_images": train_images},
                      packages=packages, exclude=exclude, tools=tools)
        args = (s, float_epochs, train_images) if fashion else (s, float_epochs)
        jobs.append(Job(key, _fm_float_job if fashion else _float_job, args,
                        f"float           seed {s}"))
        floats[s] = key
    for b in bits:
        for name, wm, am in METHODS:
            if wm is None:
                continue
            for s in seeds:
                key = job_key("methods-qat", {"float": floats[s], "bits": b, "weights": wm,
                                              "activations": am, "epochs": epochs},
                              packages=packages, exclude=exclude, tools=tools)
                args = (s, Ref(floats[s]), b, wm, am, epochs)
                jobs.append(Job(key, _fm_qat_job if fashion else _qat_job,
                                args + ((train_images,) if fashion else ()),
                                f"{name:8s} {b}-bit  seed {s}"))
                runs[name, b, s] = key
    return jobs, floats, runs


def compare_methods(*, seeds=tuple(range(1, 11)), bits=(4, 3), float_epochs=15, epochs=15,
                    workers=2, cluster=None, store=None, log=None, progress=None,
                    data="digits", train_images=None, jobs=None):
    """Train every method at every width for every seed; returns a JSON-ready dict.

    Every run is a job on Dask (``export.jobs.run_jobs``): ``workers`` local worker
    processes, or the scheduler at ``cluster``; results are kept in ``store`` (an
    ``export.jobs.Store``; ``None``: a temporary one), so a run stopped half-way resumes.
    ``jobs`` is the old name of ``workers``.

    ``rows``: one entry per (method, bits) with the test accuracies in percent (``runs``, in
    seed order), ``mean``, ``std`` (sample standard deviation), ``min``, ``max`` and the paper's
    number where it reports one. ``job_counts``: the jobs run, reused from the store, retried
    after a worker died.
    """
    import tempfile

    from .jobs import Store, run_jobs

    if jobs is not None:
        workers = jobs
    seeds, bits = tuple(seeds), tuple(bits)
    if not seeds:
        raise ValueError("at least one seed is needed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, not {seeds}")
    for b in bits:
        rules.check_bits("bits", b, rules.RECIPE_BITS)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    if data not in DATA:
        raise ValueError(f"data must be one of {', '.join(DATA)}, not {data!r}")
    fashion = data == "fashion-mnist"
    if fashion:
        _fashion(train_images)                  # a missing data set fails before training
    say = log or (lambda line: None)
    start = time.perf_counter()
    all_jobs, floats, runs = method_jobs(seeds=seeds, bits=bits, float_epochs=float_epochs,
                                         epochs=epochs, data=data, train_images=train_images)

    def done(job, value, error):
        if error is not None:
            say(f"{job.label}: failed: {error}")
        else:
            say(f"{job.label}: {100 * value['accuracy']:5.1f}%  ({value['seconds']:.1f} s)")

    with tempfile.TemporaryDirectory(prefix="asqgen-methods-") as tmp:
        outcome = run_jobs(all_jobs, store if store is not None else Store(tmp),
                           workers=workers, cluster=cluster, log=done, progress=progress)
    if outcome.failed:
        label = {j.key: j.label for j in all_jobs}
        key, error = next(iter(outcome.failed.items()))
        raise ToolError(f"{len(outcome.failed)} of {len(all_jobs)} training jobs failed (the "
                        f"finished ones are stored; run again to retry them); "
                        f"{' '.join(label[key].split())}: {error}")
    acc = {k: outcome.results[key]["accuracy"] for k, key in runs.items()}
    float_acc = {s: outcome.results[key]["accuracy"] for s, key in floats.items()}
    quantized = [(name, wm, am, b) for b in bits for name, wm, am in METHODS if wm is not None]
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
    job_seconds = sum(outcome.results[j.key]["seconds"] for j in all_jobs)
    return {"data": data, "network": "resnet8" if fashion else "cnn", "seeds": list(seeds),
            "bits": list(bits), "float_epochs": float_epochs, "epochs": epochs,
            "train_images": len(_fashion(train_images)[0]) if fashion else None,
            "test_images": test_images, "split": split,
            "optimizer": OPTIMIZER, "seconds": round(time.perf_counter() - start, 1),
            "job_seconds": round(job_seconds, 1),
            "job_counts": {"jobs": len(all_jobs), "run": len(outcome.ran),
                           "reused": len(outcome.reused), "retried": len(outcome.retried)},
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
    return write_report(folder, "methods", markdown(result), result)


def plot(result, path):
    """The table as a PNG: mean test accuracy with the standard deviation as an error bar,
    per method and width, the float network as a line. Needs matplotlib (the extra
    ``plot``); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.files import write_figure

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
    return write_figure(path, fig)
