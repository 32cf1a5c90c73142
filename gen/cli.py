"""``asqgen``: the command line, one subcommand per step of the flow.

Every error a user can cause (a bad option, a configuration the generator refuses, a failed
build) ends with one line ``asqgen: error: ...`` on standard error and exit status 2 (1 when a
self-check finds a mismatch); never a traceback.
"""

import argparse
import json
import sys
from pathlib import Path

from . import __version__, numerics
from .config import ArrayConfig

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is in ``--help``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_array_options(p):
    d = ArrayConfig()
    g = p.add_argument_group("array")
    g.add_argument("--rows", type=int, default=d.rows, help="PE rows (K per tile) (%(default)s)")
    g.add_argument("--cols", type=int, default=d.cols, help="PE columns (N per tile) "
                   "(%(default)s)")
    g.add_argument("--a-bits", type=int, default=None,
                   help=f"activation code width (default {d.a_bits})")
    g.add_argument("--w-bits", type=int, default=None,
                   help=f"weight code width (default {d.w_bits})")
    g.add_argument("--w-format", choices=numerics.WEIGHT_FORMATS, default=None,
                   help=f"weight format (default {d.w_format})")
    g.add_argument("--frac-bits", type=int, default=None,
                   help="fractional bits F of products and accumulators (default: a post table "
                        "with 8 fractional bits; the exact minimum for pot and int)")
    g.add_argument("--acc-bits", type=int, default=None,
                   help="accumulator width (default: the smallest that cannot overflow)")


_SIZED = ("a_bits", "w_bits", "w_format", "frac_bits", "acc_bits")


def _config(args):
    """The configuration of the options; unset ones take ``ArrayConfig``'s defaults."""
    given = {k: getattr(args, k) for k in _SIZED if getattr(args, k) is not None}
    return ArrayConfig(rows=args.rows, cols=args.cols, **given)


def _bundle_config(args, bundle):
    """Sized for ``bundle``; options given explicitly must still fit it."""
    from .sizing import check_fits, config_for_bundle

    config = config_for_bundle(bundle, rows=args.rows, cols=args.cols)
    given = {k: getattr(args, k) for k in _SIZED if getattr(args, k) is not None}
    if given:
        config = config.replace(**given)
        check_fits(bundle, config)
    return config


def _describe(cfg):
    table = (f", table with {cfg.table_frac_bits} fractional bits"
             if cfg.table_frac_bits is not None else "")
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
              f"K up to {cfg.max_k}, {cfg.max_m} positions and {cfg.max_channels} channels "
              f"per sample")
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

    torch.set_num_threads(1)
    recipe = Recipe(bits=args.bits, weight_method=args.weights, act_method=args.acts,
                    seed=args.seed, float_epochs=args.float_epochs, epochs=args.epochs).check()
    print(f"asqgen train: {recipe.describe()}, seed {recipe.seed}, {recipe.float_epochs} float "
          f"+ {recipe.epochs} QAT epochs", flush=True)
    start = time.perf_counter()
    model, info = train(recipe, log=lambda line: print("  " + line, flush=True), progress=True)
    npz, js = save_checkpoint(model, info, args.out)
    bundle = _save_bundle(model, info, Path(args.out) / "bundle")
    print(f"  test accuracy {100 * info['test_accuracy']:.2f}% (float "
          f"{100 * info['float_test_accuracy']:.2f}%) in {time.perf_counter() - start:.1f} s; "
          f"wrote {npz}, {js} and {bundle}")
    return 0


def _save_bundle(model, info, folder):
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
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=2) + "\n")
        print(f"  wrote {path}")


def _cmd_compare(args):
    import torch

    from export import digits
    from export.to_bundle import torch_trace
    from export.train import load_checkpoint
    from gen.bundle import load
    from sim.compare import compare, format_report

    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    bundle = load(args.bundle or Path(args.checkpoint) / "bundle")
    images, labels = digits.tensors("test")
    trace = torch_trace(model, images)
    report = compare(bundle, trace["codes"], trace["logits"], labels.numpy())
    print(f"asqgen compare: golden model vs PyTorch on the {report['images']} test images")
    for line in format_report(report):
        print("  " + line)
    _write_json(args.json, report)
    return 0


def _cmd_sim(args):
    from gen.bundle import load
    from gen.sizing import config_for_bundle
    from sim.progress import ProgressLine
    from sim.report import format_sim_report, simulate

    bundle = load(args.bundle)
    config = config_for_bundle(bundle, rows=args.rows, cols=args.cols)
    print(f"asqgen sim: {args.bundle}, {args.images} test images on Verilator", flush=True)
    progress = None if args.quiet else ProgressLine.for_stream(
        sys.stderr, [layer.name for layer in bundle.layers])
    try:
        report = simulate(bundle, images=args.images, config=config, root=args.out,
                          seed=args.seed, stall=args.stall, progress=progress)
    finally:
        if progress:
            progress.close()
    lines = format_sim_report(report)
    for line in lines[:-1]:
        print(line)
    _write_json(args.json, report)
    print(lines[-1])                                   # the verdict comes last
    return 0 if report["identical"] else 1


def _cmd_methods(args):
    import torch

    from export.methods import compare, markdown, write

    torch.set_num_threads(1)
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"asqgen methods: {len(seeds)} seeds, {' and '.join(map(str, args.bits))} bits, "
          f"{args.float_epochs} float + {args.epochs} QAT epochs, {args.jobs} worker(s)",
          flush=True)
    result = compare(seeds=seeds, bits=args.bits, float_epochs=args.float_epochs,
                     epochs=args.epochs, jobs=args.jobs,
                     log=lambda line: print("  " + line, flush=True))
    md, js = write(result, args.out)
    print()
    print(markdown(result))
    print(f"asqgen methods: {result['seconds']:.0f} s; wrote {md} and {js}")
    return 0


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


def _default_model():
    from export.digits_bundle import DEFAULT_MODEL

    return DEFAULT_MODEL


def build_parser():
    parser = _Parser(prog="asqgen", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"asqgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("verilog", help="generate the Verilog and the manifest of an array, or "
                                       "of the layer engine for a bundle")
    _add_array_options(p)
    p.add_argument("--bundle", default=None,
                   help="size the layer engine (array, accumulator buffer, rescale unit) for "
                        "this bundle; without it, the bare systolic array")
    p.add_argument("--out", default="out/verilog", help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("selfcheck", help="generate an array, run random products through it on "
                                         "Verilator and compare them with the golden model")
    _add_array_options(p)
    p.add_argument("--out", default="out/selfcheck", help="output folder (%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")
    p.add_argument("--stall", type=float, default=0.3,
                   help="probability of an idle clock on each input and output (%(default)s)")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("train", help="quantization-aware training of the digits network; "
                                     "writes a checkpoint (model.npz + model.json)")
    p.add_argument("--bits", type=int, choices=(2, 3, 4, 8), default=4,
                   help="weight and activation bits of the middle layers (%(default)s)")
    p.add_argument("--weights", choices=("lsq", "pot", "post"), default="post",
                   help="weight method of the middle layers (%(default)s)")
    p.add_argument("--acts", choices=("lsq", "asq"), default="asq",
                   help="activation method of the middle layers (%(default)s)")
    p.add_argument("--epochs", type=_count, default=15, help="QAT epochs (%(default)s)")
    p.add_argument("--float-epochs", type=_count, default=15,
                   help="float pretraining epochs (%(default)s)")
    p.add_argument("--seed", type=_count, default=1, help="random seed (%(default)s)")
    p.add_argument("--out", default="out/train", help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("methods", help="compare float, LSQ, LSQ+POT, LSQ+POST, ASQ and ASQ+POST "
                                       "on the digits over several seeds")
    p.add_argument("--bits", type=int, choices=(2, 3, 4, 8), nargs="+", default=[4, 3],
                   help="widths to compare (%(default)s)")
    p.add_argument("--seeds", type=_positive, default=10, help="number of seeds (%(default)s)")
    p.add_argument("--seed", type=_count, default=1, help="first seed (%(default)s)")
    p.add_argument("--epochs", type=_count, default=15, help="QAT epochs (%(default)s)")
    p.add_argument("--float-epochs", type=_count, default=15,
                   help="float pretraining epochs (%(default)s)")
    p.add_argument("--jobs", type=_positive, default=2,
                   help="worker processes, one torch thread each (%(default)s)")
    p.add_argument("--out", default="out/methods", help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_methods)

    default_model = _default_model()
    p = sub.add_parser("export", help="write the bundle of a trained checkpoint")
    p.add_argument("--checkpoint", default=str(default_model),
                   help="checkpoint folder (model.npz + model.json) (%(default)s)")
    p.add_argument("--out", default="out/bundle", help="bundle folder (%(default)s)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("compare", help="the golden model against PyTorch's fake-quantized "
                                       "model on the test split, layer by layer")
    p.add_argument("--checkpoint", default=str(default_model),
                   help="checkpoint folder (%(default)s)")
    p.add_argument("--bundle", default=None, help="bundle folder (default: the checkpoint's)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("sim", help="run a bundle on the generated hardware in Verilator and "
                                   "compare every layer with the golden model and PyTorch")
    p.add_argument("--bundle", default=str(default_model / "bundle"),
                   help="bundle folder (%(default)s)")
    p.add_argument("--images", type=_positive, default=100,
                   help="test images to run (%(default)s)")
    p.add_argument("--rows", type=int, default=8, help="PE rows (%(default)s)")
    p.add_argument("--cols", type=int, default=8, help="PE columns (%(default)s)")
    p.add_argument("--stall", type=float, default=0.0,
                   help="probability of an idle clock on every input and output (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stalls (%(default)s)")
    p.add_argument("--out", default="out/sim", help="build folder (%(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true",
                   help="no progress line on standard error (it is shown on a terminal only)")
    p.set_defaults(func=_cmd_sim)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"asqgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asqgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
