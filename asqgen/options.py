"""The options' types, the array options shared by several verbs, and what they configure.

Nothing here imports PyTorch: the parser and ``--help`` are built from this module alone.
"""

import argparse
import importlib.resources
import json
import math
from pathlib import Path

from core import numerics
from core.config import ArrayConfig
from core.errors import BundleError, UsageError
from core.files import write_text
from core.sizing import array_for_bundle, check_fits, config_for_bundle

__all__ = ["default_model", "shown", "probability", "folder", "positive", "count",
           "add_size_options", "add_array_options", "array_config", "bundle_config",
           "describe", "given", "write_json", "reference"]


def default_model():
    """The default model's folder: package data of ``export`` (``export/__init__`` is empty,
    so finding it imports no PyTorch)."""
    return Path(str(importlib.resources.files("export") / "default_model"))


def shown(path):
    """``path`` as a user reads it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# Types --------------------------------------------------------------------------------------
def probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"must be at least 0 and less than 1, not {text}")
    return value


def folder(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, not an empty string")
    return text


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def count(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


# The array options --------------------------------------------------------------------------
def add_size_options(g):
    """``--rows``/``--cols``/``--rescale-lanes``, the same for ``verilog``, ``selfcheck`` and
    ``sim``."""
    d = ArrayConfig()
    g.add_argument("--rows", type=int, default=None,
                   help=f"PE rows (K per tile) (default {d.rows}; for a bundle, fewer when no "
                        f"layer has as many inputs)")
    g.add_argument("--cols", type=int, default=None,
                   help=f"PE columns (N per tile) (default {d.cols}; for a bundle, fewer when no "
                        f"layer has as many outputs)")
    g.add_argument("--rescale-lanes", type=int, default=None,
                   help=f"values per clock through the layer engine's rescale unit, a divisor "
                        f"of --cols (default {d.rescale_lanes}: the smallest unit; --cols: a "
                        f"vector per clock)")


def add_array_options(p):
    d = ArrayConfig()
    g = p.add_argument_group("array")
    add_size_options(g)
    g.add_argument("--a-bits", type=int, default=None,
                   help=f"activation code width (default {d.a_bits})")
    g.add_argument("--w-bits", type=int, default=None,
                   help=f"weight code width (default {d.w_bits})")
    g.add_argument("--w-format", choices=numerics.WEIGHT_FORMATS, default=None,
                   help=f"weight format (default {d.w_format})")
    g.add_argument("--odd", choices=numerics.ODD_MODES, default=None,
                   help="post arrays: the odd exponents through a table per row (table, the "
                        "default) or as a second sum per column with every product a shift "
                        "(split; a bare array only)")
    g.add_argument("--frac-bits", type=int, default=None,
                   help="fractional bits F of products and accumulators (default: a post table "
                        "with 8 fractional bits; the exact minimum for pot and int)")
    g.add_argument("--acc-bits", type=int, default=None,
                   help="accumulator width (default: the smallest that cannot overflow)")


_SIZED = ("a_bits", "w_bits", "w_format", "odd", "frac_bits", "acc_bits")


def _replaced(config, **given):
    try:
        return config.replace(**given) if given else config
    except (ValueError, TypeError) as e:          # the options' values, checked by the config
        raise UsageError(str(e)) from None


def array_config(args):
    """The configuration of the options; unset ones take ``ArrayConfig``'s defaults."""
    given = {k: getattr(args, k) for k in _SIZED + ("rows", "cols", "rescale_lanes")
             if getattr(args, k, None) is not None}
    try:
        return ArrayConfig(**given)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def bundle_config(args, bundle):
    """Sized for ``bundle`` (``core.sizing``: an array that fits it unless ``--rows/--cols``
    are given); options given explicitly must still fit it."""
    rows, cols = array_for_bundle(bundle, rows=args.rows, cols=args.cols)
    config = config_for_bundle(bundle, rows=rows, cols=cols)
    if getattr(args, "rescale_lanes", None) is not None:
        config = _replaced(config, rescale_lanes=args.rescale_lanes)
    given = {k: getattr(args, k) for k in _SIZED if getattr(args, k, None) is not None}
    if given:
        config = _replaced(config, **given)
        check_fits(bundle, config)
    return config


def describe(cfg):
    table = (f", table with {cfg.table_frac_bits} fractional bits"
             if cfg.table_frac_bits is not None else
             ", split even and odd sums" if cfg.split else "")
    return (f"{cfg.rows}x{cfg.cols} {cfg.w_format} array, {cfg.w_bits}-bit weights, "
            f"{cfg.a_bits}-bit {'signed ' if cfg.signed_acts else ''}activations, "
            f"F={cfg.frac_bits}{table}, "
            f"{cfg.acc_bits}-bit accumulators")


def given(value, default):
    return default if value is None else value


# Outputs shared by the verbs ----------------------------------------------------------------
def write_json(path, obj):
    if path:
        write_text(path, json.dumps(obj, indent=2) + "\n")
        print(f"  wrote {path}")


def reference(bundle, where):
    """The bundle's reference data, or a one-line error saying how to attach it."""
    ref = bundle.reference
    need = ["images", "logits", "codes"] + [f"layer{i}.codes" for i in
                                            range(1, len(bundle.layers))]
    if any(k not in ref for k in need):
        raise BundleError(f"the bundle {where} has no reference inputs with PyTorch's outputs: "
                          f"export it with export_bundle(model, input_shape=..., "
                          f"reference_inputs=..., reference_labels=...) (see docs/guide.md, "
                          f"'Use your own model')")
    return ref
