"""The digits network's bundle: ``export_bundle`` with the test split as reference data, and
the default model that ships in the repository (``export/default_model``: a checkpoint and its
bundle, recreated by ``asqgen train --out export/default_model``)."""

from pathlib import Path

from . import digits
from .to_bundle import export_bundle

__all__ = ["DEFAULT_MODEL", "DEFAULT_BUNDLE", "digits_bundle"]

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"
DEFAULT_BUNDLE = DEFAULT_MODEL / "bundle"
_META_KEYS = ("bits", "weight_method", "act_method", "seed", "epochs", "float_epochs",
              "test_accuracy", "float_test_accuracy", "split")


def digits_bundle(model, info):
    """The bundle of a trained digits ``model`` (``info``: its checkpoint's ``model.json``),
    with the whole test split, its labels and PyTorch's logits as reference data."""
    images, labels = digits.tensors("test")
    return export_bundle(model, input_shape=(1, 8, 8), reference_inputs=images,
                         reference_labels=labels.numpy(),
                         meta={k: info[k] for k in _META_KEYS if k in info})
