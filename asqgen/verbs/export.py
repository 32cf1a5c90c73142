"""``asqgen export``: the bundle of a trained digits checkpoint."""

from core.bundle import save
from export.digits_bundle import digits_bundle
from export.train import load_checkpoint


def save_bundle(model, info, folder):
    """The checkpoint's bundle in ``folder``; its meta holds the model's fingerprint
    (``export.to_bundle.fingerprint``), which ``compare`` checks against a checkpoint."""
    return save(digits_bundle(model, info), folder)


def run(args):
    model, info = load_checkpoint(args.checkpoint)
    folder = save_bundle(model, info, args.out)
    print(f"asqgen export: {args.checkpoint} -> {folder}")
    return 0
