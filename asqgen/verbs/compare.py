"""``asqgen compare``: the golden model against PyTorch on a bundle's reference inputs, layer
by layer."""

from pathlib import Path

import numpy as np

from core import rules
from core.bundle import load
from core.errors import CheckpointError
from sim.compare import compare, format_report

from ..options import default_model, reference, shown, write_json


def _checkpoint(path):
    """The model of ``--checkpoint``, read before the bundle (a bad checkpoint is named first).
    (PyTorch is imported here: a compare with the outputs stored in the bundle needs none.)"""
    import torch

    from export.train import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(path)
    return model


def _torch_outputs(model, args, bundle, folder, ref):
    """PyTorch run again from the checkpoint's model, which must be the bundle's own."""
    from export.to_bundle import fingerprint, torch_trace

    if fingerprint(model) != bundle.meta.get("fingerprint"):
        raise CheckpointError(f"the bundle {folder} was not exported from the checkpoint "
                              f"{args.checkpoint} (their fingerprints differ): export it "
                              f"again (asqgen export --checkpoint {args.checkpoint} --out "
                              f"BUNDLE) or compare without --checkpoint")
    trace = torch_trace(model, ref["images"])
    return trace["codes"], trace["logits"], f"{args.checkpoint}"


def run(args):
    model = _checkpoint(args.checkpoint) if args.checkpoint else None
    folder = args.bundle or shown(Path(args.checkpoint) / "bundle" if args.checkpoint
                                  else default_model() / "bundle")
    bundle = load(folder)
    rules.check_bundle(bundle)
    ref = reference(bundle, folder)
    if model is not None:
        codes, logits, source = _torch_outputs(model, args, bundle, folder, ref)
    else:
        codes = [ref["codes"]] + [ref[f"layer{i}.codes"].astype(np.int64)
                                  for i in range(1, len(bundle.layers))]
        logits, source = ref["logits"], "the outputs stored in the bundle"
    report = compare(bundle, codes, logits, ref.get("labels"))
    # A bundle from ``asqgen import`` holds qonnx's execution where PyTorch's would be.
    other = ("qonnx's execution of the imported model" if bundle.meta.get("source") == "qonnx"
             else "PyTorch")
    print(f"asqgen compare: golden model vs {other} ({source}) on the {report['images']} "
          f"reference inputs of {folder}")
    for line in format_report(report):
        print("  " + line)
    write_json(args.json, report)
    return 0
