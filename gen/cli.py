"""``asqgen``: the command line, one subcommand per step of the flow.

Every error a user can cause ends with one line ``asqgen: error: ...`` on standard error and an
exit status that tells its class (``gen.errors``); never a traceback, unless ``--debug`` is
given (then the traceback, the line and the same status). Any other exception is a bug in
asqgen and shows its traceback.

Exit statuses:
  0    success (for ``selfcheck`` and ``sim``: the RTL equals the golden model)
  1    the RTL differs from the golden model (or a bench's check caught it: a hang, a flag)
  2    a bad option or combination of options (usage)
  3    a bad bundle (missing, unreadable, or failing a check of ``gen.bundle``)
  4    a bad checkpoint (``export.train.load_checkpoint``), or a bundle from another one
  5    a tool missing or failing (Verilator, the C++ compiler)
  6    an output that cannot be written
  130  interrupted (Ctrl-C)
"""

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import (INTERRUPTED, AsqgenError, BundleError, CheckpointError, ToolError,
                     UsageError)

__all__ = ["main", "build_parser", "DEFAULT_MODEL"]

# The default model's folder, found without importing ``export`` (which imports PyTorch).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "export" / "default_model"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``asqgen: error: [verb: ]...`` and status 2 (the
    usage is in ``--help``)."""

    def error(self, message):
        verb = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(UsageError.exit_status, f"asqgen: error: {verb}{message}\n")


def _add_size_options(g):
    """``--rows``/``--cols``, the same for ``verilog``, ``selfcheck`` and ``sim``."""
    from .config import ArrayConfig

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


def _add_array_options(p):
    from . import numerics
    from .config import ArrayConfig

    d = ArrayConfig()
    g = p.add_argument_group("array")
    _add_size_options(g)
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


def _config(args):
    """The configuration of the options; unset ones take ``ArrayConfig``'s defaults."""
    from .config import ArrayConfig

    given = {k: getattr(args, k) for k in _SIZED + ("rows", "cols", "rescale_lanes")
             if getattr(args, k, None) is not None}
    try:
        return ArrayConfig(**given)
    except (ValueError, TypeError) as e:          # the options' values, checked by the config
        raise UsageError(str(e)) from None


def _bundle_config(args, bundle):
    """Sized for ``bundle`` (``gen.sizing``: an array that fits it unless ``--rows/--cols``
    are given); options given explicitly must still fit it."""
    from .sizing import array_for_bundle, check_fits, config_for_bundle

    rows, cols = array_for_bundle(bundle, rows=args.rows, cols=args.cols)
    config = config_for_bundle(bundle, rows=rows, cols=cols)
    given = {k: getattr(args, k) for k in _SIZED if getattr(args, k, None) is not None}
    if getattr(args, "rescale_lanes", None) is not None:
        try:
            config = config.replace(rescale_lanes=args.rescale_lanes)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
    if given:
        try:
            config = config.replace(**given)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
        check_fits(bundle, config)
    return config


def _describe(cfg):
    table = (f", table with {cfg.table_frac_bits} fractional bits"
             if cfg.table_frac_bits is not None else
             ", split even and odd sums" if cfg.split else "")
    return (f"{cfg.rows}x{cfg.cols} {cfg.w_format} array, {cfg.w_bits}-bit weights, "
            f"{cfg.a_bits}-bit activations, F={cfg.frac_bits}{table}, "
            f"{cfg.acc_bits}-bit accumulators")


def _cmd_verilog(args):
    from .verilog import generate_accelerator, generate_array

    if args.bundle:
        from .bundle import load

        bundle = load(args.bundle)
        cfg = _bundle_config(args, bundle)
        manifest = generate_accelerator(cfg, args.out, bundle=bundle)
        print(f"asqgen verilog: the layer engine for {args.bundle}: {_describe(cfg)}, "
              f"K up to {cfg.max_k}, {cfg.max_m} positions a pass, {cfg.max_channels} "
              f"channels, batches of up to {cfg.max_batch} images")
        print(f"  wrote {args.out}/{manifest['verilog']} and {args.out}/manifest.json "
              f"({len(manifest['ports'])} ports)")
        return 0
    cfg = _config(args)
    manifest = generate_array(cfg, args.out)
    print(f"asqgen verilog: {_describe(cfg)}")
    print(f"  wrote {args.out}/{manifest['verilog']} and {args.out}/manifest.json "
          f"({len(manifest['ports'])} ports, latency {cfg.latency} clocks)")
    return 0


def _cmd_selfcheck(args):
    from sim.selfcheck import selfcheck

    return selfcheck(_config(args), out=args.out, seed=args.seed, stall=args.stall)


def _cmd_train(args):
    import time

    import torch

    from export.train import Recipe, save_checkpoint, train
    from gen.rules import MappingError

    torch.set_num_threads(1)
    model_name = args.model or ("resnet8" if args.data == "fashion-mnist" else "cnn")
    if (args.data == "fashion-mnist") != (model_name == "resnet8"):
        raise UsageError(f"--model {model_name} does not train on --data {args.data} (the "
                         f"digits take the cnn, Fashion-MNIST the resnet8)")
    if args.data == "fashion-mnist":
        return _train_resnet(args)
    if args.train_images is not None:
        raise UsageError("--train-images is for --data fashion-mnist")
    try:
        recipe = Recipe(bits=args.bits, weight_method=args.weights, act_method=args.acts,
                        seed=args.seed, float_epochs=_given(args.float_epochs, 15),
                        epochs=_given(args.epochs, 15)).check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"asqgen train: {recipe.describe()}, seed {recipe.seed}, {recipe.float_epochs} float "
          f"+ {recipe.epochs} QAT epochs", flush=True)
    start = time.perf_counter()
    try:
        model, info = train(recipe, log=lambda line: print("  " + line, flush=True),
                            progress=True)
    except MappingError as e:                  # the recipe asks for what the hardware refuses
        raise UsageError(str(e)) from None
    npz, js = save_checkpoint(model, info, args.out)
    bundle = _save_bundle(model, info, Path(args.out) / "bundle")
    print(f"  test accuracy {100 * info['test_accuracy']:.2f}% (float "
          f"{100 * info['float_test_accuracy']:.2f}%) in {time.perf_counter() - start:.1f} s; "
          f"wrote {npz}, {js} and {bundle}")
    return 0


def _given(value, default):
    return default if value is None else value


def _train_resnet(args):
    """``asqgen train --data fashion-mnist``: the ResNet-8 (``export.resnet``), its checkpoint,
    its bundle (the first ``REFERENCE_IMAGES`` test images as reference inputs) and the golden
    model against PyTorch on the whole test set."""
    import time

    from export.resnet import (REFERENCE_IMAGES, ResnetRecipe, fashion_data, golden_agreement,
                               resnet_bundle, train_resnet)
    from export.train import save_checkpoint
    from gen.bundle import save
    from gen.rules import MappingError

    d = ResnetRecipe()
    try:
        recipe = ResnetRecipe(bits=args.bits, weight_method=args.weights, act_method=args.acts,
                              seed=args.seed, float_epochs=_given(args.float_epochs,
                                                                  d.float_epochs),
                              epochs=_given(args.epochs, d.epochs),
                              train_images=args.train_images).check()
    except (ValueError, MappingError) as e:
        raise UsageError(str(e)) from None
    from export.fashion_mnist import DataError

    try:
        data = fashion_data(recipe.train_images, recipe.size)
    except DataError as e:                          # the data set is missing or corrupt
        raise ToolError(str(e)) from None
    print(f"asqgen train: Fashion-MNIST {recipe.size}x{recipe.size}, {recipe.describe()}, seed "
          f"{recipe.seed}, {recipe.float_epochs} float + {recipe.epochs} QAT epochs on "
          f"{len(data[0])} training images", flush=True)
    start = time.perf_counter()
    model, info = train_resnet(recipe, data=data,
                               log=lambda line: print("  " + line, flush=True), progress=True)
    print(f"  test accuracy {100 * info['test_accuracy']:.2f}% (float "
          f"{100 * info['float_test_accuracy']:.2f}%) on {len(data[4])} test images in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    bundle = resnet_bundle(model, info, data[4], data[5])
    folder = save(bundle, Path(args.out) / "bundle")
    golden = golden_agreement(model, bundle, data[4], data[5])
    info["golden"] = golden
    npz, js = save_checkpoint(model, info, args.out)
    print(f"  golden model vs PyTorch on all {golden['images']} test images: top-1 agreement "
          f"{100 * golden['top1_agreement']:.2f}%, accuracy golden "
          f"{100 * golden['golden_accuracy']:.2f}%, PyTorch {100 * golden['torch_accuracy']:.2f}%"
          f", largest logit difference {golden['logits_max_difference']:.4f} (golden model "
          f"{golden['seconds']:.0f} s)")
    print(f"  wrote {npz}, {js} and {folder} ({REFERENCE_IMAGES} reference test images)")
    return 0


def _save_bundle(model, info, folder):
    """The checkpoint's bundle in ``folder``; its meta holds the model's fingerprint
    (``export.to_bundle.fingerprint``), which ``compare`` checks against a checkpoint."""
    from export.digits_bundle import digits_bundle
    from gen.bundle import save

    return save(digits_bundle(model, info), folder)


def _cmd_export(args):
    from export.train import load_checkpoint

    model, info = load_checkpoint(args.checkpoint)
    folder = _save_bundle(model, info, args.out)
    print(f"asqgen export: {args.checkpoint} -> {folder}")
    return 0


def _write_json(path, obj):
    import json

    from .files import write_text

    if path:
        write_text(path, json.dumps(obj, indent=2) + "\n")
        print(f"  wrote {path}")


def _reference(bundle, folder):
    """The bundle's reference data, or a one-line error saying how to attach it."""
    ref = bundle.reference
    need = ["images", "logits", "codes"] + [f"layer{i}.codes" for i in
                                            range(1, len(bundle.layers))]
    if any(k not in ref for k in need):
        raise BundleError(f"the bundle {folder} has no reference inputs with PyTorch's outputs: "
                         f"export it with export_bundle(model, input_shape=..., "
                         f"reference_inputs=..., reference_labels=...) (see the README, "
                         f"'Use your own model')")
    return ref


def _cmd_compare(args):
    import numpy as np

    from gen import rules
    from gen.bundle import load
    from sim.compare import compare, format_report

    model = None
    if args.checkpoint:
        import torch

        from export.to_bundle import fingerprint, torch_trace
        from export.train import load_checkpoint

        torch.set_num_threads(1)
        model, _ = load_checkpoint(args.checkpoint)
    folder = args.bundle or (Path(args.checkpoint) / "bundle" if args.checkpoint
                             else DEFAULT_MODEL / "bundle")
    bundle = load(folder)
    rules.check_bundle(bundle)
    rules.check_residual(bundle)
    ref = _reference(bundle, folder)
    if model is not None:
        if fingerprint(model) != bundle.meta.get("fingerprint"):
            raise CheckpointError(f"the bundle {folder} was not exported from the checkpoint "
                                  f"{args.checkpoint} (their fingerprints differ): export it "
                                  f"again (asqgen export --checkpoint {args.checkpoint} --out "
                                  f"BUNDLE) or compare without --checkpoint")
        trace = torch_trace(model, ref["images"])
        codes, logits, source = trace["codes"], trace["logits"], f"{args.checkpoint}"
    else:
        codes = [ref["codes"]] + [ref[f"layer{i}.codes"].astype(np.int64)
                                  for i in range(1, len(bundle.layers))]
        logits, source = ref["logits"], "the outputs stored in the bundle"
    report = compare(bundle, codes, logits, ref.get("labels"))
    print(f"asqgen compare: golden model vs PyTorch ({source}) on the {report['images']} "
          f"reference inputs of {folder}")
    for line in format_report(report):
        print("  " + line)
    _write_json(args.json, report)
    return 0


def _cmd_sim(args):
    from gen import rules
    from gen.bundle import load
    from sim.progress import ProgressLine
    from sim.report import format_sim_report, simulate

    bundle = load(args.bundle)
    rules.check_bundle(bundle)
    _reference(bundle, args.bundle)
    config = _bundle_config(args, bundle)
    images = args.images or min(100, len(bundle.reference["images"]))
    print(f"asqgen sim: {args.bundle}, {images} reference inputs on Verilator", flush=True)
    progress = None if args.quiet else ProgressLine.for_stream(
        sys.stderr, [layer.name for layer in bundle.layers])
    try:
        report = simulate(bundle, images=images, config=config, root=args.out, seed=args.seed,
                          stall=args.stall, progress=progress)
    finally:
        if progress:
            progress.close()
    lines = format_sim_report(report)
    for line in lines[:-1]:
        print(line)
    _write_json(args.json, report)
    print(lines[-1])                                   # the verdict comes last
    return 0 if report["identical"] else 1


# ``asqgen methods`` defaults per data set: bits, seeds, float epochs, QAT epochs, training
# images (``None``: all). Fashion-MNIST's are a budget for a 2-core machine (README).
_METHODS_DEFAULTS = {"digits": ((4, 3), 10, 15, 15, None),
                     "fashion-mnist": ((4, 3, 2), 2, 5, 3, 20000)}


def _cmd_methods(args):
    import torch

    from export.methods import compare, markdown, plot, write

    bits, n_seeds, float_epochs, epochs, train_images = _METHODS_DEFAULTS[args.data]
    bits = args.bits or list(bits)
    n_seeds = _given(args.seeds, n_seeds)
    float_epochs, epochs = _given(args.float_epochs, float_epochs), _given(args.epochs, epochs)
    if args.data == "fashion-mnist":
        train_images = _given(args.train_images, train_images)
    elif args.train_images is not None:
        raise UsageError("--train-images is for --data fashion-mnist")
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401  (checked before hours of training)
        except ImportError:
            raise ToolError("the plot needs matplotlib: ./dev pip install -e '.[plot]' (or "
                            "give --no-plot)") from None
    torch.set_num_threads(1)
    seeds = list(range(args.seed, args.seed + n_seeds))
    subset = f" on {train_images} training images" if train_images else ""
    print(f"asqgen methods: {args.data}, {len(seeds)} seeds, "
          f"{' and '.join(map(str, bits))} bits, {float_epochs} float + {epochs} QAT "
          f"epochs{subset}, {args.jobs} worker(s)", flush=True)
    from export.fashion_mnist import DataError

    try:
        result = compare(seeds=seeds, bits=bits, float_epochs=float_epochs, epochs=epochs,
                         jobs=args.jobs, log=lambda line: print("  " + line, flush=True),
                         data=args.data, train_images=train_images)
    except DataError as e:
        raise ToolError(str(e)) from None
    md, js = write(result, args.out)
    png = None if args.no_plot else plot(result, Path(args.out) / "methods.png")
    print()
    print(markdown(result))
    print(f"asqgen methods: {result['seconds']:.0f} s; wrote {md}, {js}"
          + (f" and {png}" if png else ""))
    return 0


def _probability(text):
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"must be at least 0 and less than 1, not {text}")
    return value


def _folder(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, not an empty string")
    return text


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _count(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def build_parser():
    from . import rules

    parser = _Parser(prog="asqgen", description=__doc__.split("\n")[0],
                     epilog=__doc__[__doc__.index("Exit statuses:"):],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"asqgen {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also after the subcommand)")
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: _add_parser(*a, parents=[debug], **k)

    p = sub.add_parser("verilog", help="generate the Verilog and the manifest of an array, or "
                                       "of the layer engine for a bundle")
    _add_array_options(p)
    p.add_argument("--bundle", default=None,
                   help="size the layer engine (array, accumulator buffer, rescale unit) for "
                        "this bundle; without it, the bare systolic array")
    p.add_argument("--out", default="out/verilog", type=_folder, help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("selfcheck", help="generate an array, run random products through it on "
                                         "Verilator and compare them with the golden model")
    _add_array_options(p)
    p.add_argument("--out", default="out/selfcheck", type=_folder,
                   help="output folder (%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")
    p.add_argument("--stall", type=_probability, default=0.3,
                   help="probability of an idle clock on each input and output (%(default)s)")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("train", help="quantization-aware training of the digits network (or "
                                     "of a ResNet-8 on Fashion-MNIST); writes a checkpoint "
                                     "(model.npz + model.json) and its bundle")
    p.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits",
                   help="data set (%(default)s); fashion-mnist needs Debian's "
                        "dataset-fashion-mnist")
    p.add_argument("--model", choices=("cnn", "resnet8"), default=None,
                   help="network: cnn (the digits' CNN) or resnet8 (Fashion-MNIST 14x14) "
                        "(default: the data set's)")
    p.add_argument("--train-images", type=_positive, default=None,
                   help="fashion-mnist: train on this many of the 55,000 training images "
                        "(default all)")
    p.add_argument("--bits", type=int, choices=rules.RECIPE_BITS, default=4,
                   help="weight and activation bits of the middle layers (%(default)s)")
    p.add_argument("--weights", choices=rules.WEIGHT_METHODS, default="post",
                   help="weight method of the middle layers (%(default)s)")
    p.add_argument("--acts", choices=rules.ACT_METHODS, default="asq",
                   help="activation method of the middle layers (%(default)s)")
    p.add_argument("--epochs", type=_count, default=None,
                   help="QAT epochs (default 15 for the digits, 5 for fashion-mnist)")
    p.add_argument("--float-epochs", type=_count, default=None,
                   help="float pretraining epochs (default 15 for the digits, 8 for "
                        "fashion-mnist)")
    p.add_argument("--seed", type=_count, default=1, help="random seed (%(default)s)")
    p.add_argument("--out", default="out/train", type=_folder, help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("methods", help="compare float, LSQ, LSQ+POT, LSQ+POST, ASQ and ASQ+POST "
                                       "on the digits (or a ResNet-8 on Fashion-MNIST) over "
                                       "several seeds")
    p.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits",
                   help="data set and network: the digits' CNN or Fashion-MNIST's ResNet-8 "
                        "(%(default)s)")
    p.add_argument("--bits", type=int, choices=rules.RECIPE_BITS, nargs="+", default=None,
                   help="widths to compare (default 4 3 for the digits, 4 3 2 for "
                        "fashion-mnist)")
    p.add_argument("--seeds", type=_positive, default=None,
                   help="number of seeds (default 10 for the digits, 2 for fashion-mnist)")
    p.add_argument("--seed", type=_count, default=1, help="first seed (%(default)s)")
    p.add_argument("--epochs", type=_count, default=None,
                   help="QAT epochs (default 15 for the digits, 3 for fashion-mnist)")
    p.add_argument("--float-epochs", type=_count, default=None,
                   help="float pretraining epochs (default 15 for the digits, 5 for "
                        "fashion-mnist)")
    p.add_argument("--train-images", type=_positive, default=None,
                   help="fashion-mnist: training images (default 20000 of the 55,000)")
    p.add_argument("--no-plot", action="store_true",
                   help="no methods.png (which needs matplotlib: ./dev pip install -e "
                        "'.[plot]')")
    p.add_argument("--jobs", type=_positive, default=2,
                   help="worker processes, one torch thread each (%(default)s)")
    p.add_argument("--out", default="out/methods", type=_folder, help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_methods)

    default_model = DEFAULT_MODEL
    p = sub.add_parser("export", help="write the bundle of a trained checkpoint")
    p.add_argument("--checkpoint", default=str(default_model),
                   help="checkpoint folder (model.npz + model.json) (%(default)s)")
    p.add_argument("--out", default="out/bundle", type=_folder, help="bundle folder (%(default)s)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("compare", help="the golden model against PyTorch's fake-quantized "
                                       "model on the bundle's reference inputs, layer by layer")
    p.add_argument("--bundle", default=None,
                   help=f"bundle folder (default: the checkpoint's, or {default_model}/bundle)")
    p.add_argument("--checkpoint", default=None,
                   help="a digits checkpoint folder (asqgen train) to run PyTorch again; it must "
                        "be the one the bundle was exported from (default: compare with the "
                        "PyTorch outputs stored in the bundle)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("sim", help="run a bundle on the generated hardware in Verilator and "
                                   "compare every layer with the golden model and PyTorch")
    p.add_argument("--bundle", default=str(default_model / "bundle"),
                   help="bundle folder (%(default)s)")
    p.add_argument("--images", type=_positive, default=None,
                   help="reference inputs to run (default 100, or all the bundle has if fewer)")
    _add_size_options(p.add_argument_group("array"))
    p.add_argument("--stall", type=_probability, default=0.0,
                   help="probability of an idle clock on every input and output (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stalls (%(default)s)")
    p.add_argument("--out", default="out/sim", type=_folder, help="build folder (%(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true",
                   help="no progress line on standard error (it is shown on a terminal only)")
    p.set_defaults(func=_cmd_sim)
    return parser


def main(argv=None):
    """Run ``asqgen`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    import warnings

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        # Warnings (numpy's RuntimeWarnings) are held back: an error is one line, and a
        # successful run shows them at its end.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            args = build_parser().parse_args(argv)
            debug = args.debug
            status = args.func(args)
        for w in caught:
            print(f"asqgen: warning: {w.message}", file=sys.stderr)
        return status
    except AsqgenError as e:
        if debug:
            import traceback

            traceback.print_exc()
        message = " ".join(str(e).split("\n"))
        print(f"asqgen: error: {message}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        if debug:
            import traceback

            traceback.print_exc()
        print("asqgen: interrupted", file=sys.stderr)
        return INTERRUPTED


def _script():
    """The ``asqgen`` console script: ``main``, and a Ctrl-C at any moment one line and 130."""
    try:
        status = main()
    except KeyboardInterrupt:            # between main's own handlers, or at interpreter exit
        print("asqgen: interrupted", file=sys.stderr)
        status = INTERRUPTED
    sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    _script()
