"""The golden model against PyTorch's fake-quantized model, layer by layer.

``compare(bundle, torch_codes, torch_logits, labels)`` takes PyTorch's side as plain arrays
(``export.to_bundle.torch_trace``), so this module needs no PyTorch.
"""

import numpy as np

from core.rescale import Z

from .golden import run_network

__all__ = ["compare", "first_difference", "format_report"]


def first_difference(a, b):
    """``(sample, channel, position...)`` of the first element where ``a`` and ``b`` differ
    (C order), or ``None``."""
    where = np.argwhere(a != b)
    return None if len(where) == 0 else tuple(int(i) for i in where[0])


def compare(bundle, torch_codes, torch_logits, labels):
    """Figures of the golden model against PyTorch on the same inputs.

    ``torch_codes[i]`` are the input codes of compute layer ``i`` (``[0]`` the image codes;
    in a residual network, the codes of the layer's source, which several layers may share),
    ``torch_logits`` PyTorch's outputs, ``labels`` the true classes or ``None`` (then the
    accuracies are ``None``). Every shape comes from the bundle. Returns a dict:
    ``layers`` (per layer input: share of identical codes, largest difference, first
    difference), ``top1_agreement``, ``golden_accuracy``, ``torch_accuracy``, ``images``.
    """
    if len(torch_codes) != len(bundle.layers):
        raise ValueError(f"PyTorch gives the input codes of {len(torch_codes)} layers, the "
                         f"bundle has {len(bundle.layers)}")
    trace = run_network(bundle, np.asarray(torch_codes[0]).reshape(
        (-1,) + tuple(bundle.input_shape)))
    n = trace.input_codes.shape[0]
    layers = []
    for i, layer in enumerate(bundle.layers[1:], start=1):
        j = bundle.source_index(i)
        ours = trace.input_codes if j is None else trace.layers[j].codes
        theirs = np.asarray(torch_codes[i], dtype=np.int64)
        if theirs.size != ours.size:
            raise ValueError(f"PyTorch's input codes of layer {layer.name!r} have shape "
                             f"{theirs.shape}, the bundle's layer takes {ours.shape}")
        theirs = theirs.reshape(ours.shape)
        diff = np.abs(ours - theirs)
        where = first_difference(ours, theirs)
        layers.append({
            "layer": layer.name, "codes": int(ours.size),
            "identical": float((diff == 0).mean()), "max_difference": int(diff.max()),
            "first_difference": None if where is None else {
                "index": list(where), "golden": int(ours[where]), "torch": int(theirs[where])},
        })
    logits = trace.logits * 2.0 ** -Z
    ours, theirs = logits.argmax(1), np.asarray(torch_logits).argmax(1)
    accuracy = (lambda pred: None if labels is None else
                float((pred == np.asarray(labels)).mean()))
    return {
        "images": int(n),
        "layers": layers,
        "logits_max_difference": float(np.abs(logits - torch_logits).max()),
        "top1_agreement": float((ours == theirs).mean()),
        "golden_accuracy": accuracy(ours),
        "torch_accuracy": accuracy(theirs),
    }


def format_report(report):
    """The report as text lines (a table per layer, then the output figures)."""
    lines = [f"{'input of layer':<16} {'codes':>8} {'identical':>10} {'max diff':>9}  "
             f"first difference (sample, channel, row, col): golden vs torch"]
    for r in report["layers"]:
        first = r["first_difference"]
        where = "-" if first is None else f"{tuple(first['index'])}: {first['golden']} vs " \
                                          f"{first['torch']}"
        lines.append(f"{r['layer']:<16} {r['codes']:>8} {r['identical']:>10.4%} "
                     f"{r['max_difference']:>9}  {where}")
    accuracy = ("no labels" if report["golden_accuracy"] is None else
                f"accuracy golden {report['golden_accuracy']:.2%}, PyTorch "
                f"{report['torch_accuracy']:.2%}")
    lines.append(f"output: top-1 agreement {report['top1_agreement']:.2%} over "
                 f"{report['images']} inputs; {accuracy}; largest logit difference "
                 f"{report['logits_max_difference']:.4f}")
    return lines
