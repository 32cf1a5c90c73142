"""``asqgen methods``: float, LSQ, LSQ+POT, LSQ+POST, ASQ and ASQ+POST compared over seeds."""

import sys
from pathlib import Path

import torch

from core.errors import ToolError, UsageError
from export.jobs import JobProgress, Store, check_engine, where
from export.methods import compare_methods, markdown, plot, write

from ..options import given

# Defaults per data set: bits, seeds, float epochs, QAT epochs, training images (``None``: all).
# Fashion-MNIST's are a budget for a 2-core machine (docs/results.md).
DEFAULTS = {"digits": ((4, 3), 10, 15, 15, None),
            "fashion-mnist": ((4, 3, 2), 2, 5, 3, 20000)}


def _check_plot(args):
    if args.no_plot:
        return
    try:
        import matplotlib  # noqa: F401  (checked before hours of training)
    except ImportError:
        raise ToolError("the plot needs matplotlib: ./dev pip install -e '.[plot]' (or "
                        "give --no-plot)") from None


def run(args):
    bits, n_seeds, float_epochs, epochs, train_images = DEFAULTS[args.data]
    bits = args.bits or list(bits)
    n_seeds = given(args.seeds, n_seeds)
    float_epochs, epochs = given(args.float_epochs, float_epochs), given(args.epochs, epochs)
    if args.data == "fashion-mnist":
        train_images = given(args.train_images, train_images)
    elif args.train_images is not None:
        raise UsageError("--train-images is for --data fashion-mnist")
    _check_plot(args)
    check_engine()
    torch.set_num_threads(1)
    seeds = list(range(args.seed, args.seed + n_seeds))
    subset = f" on {train_images} training images" if train_images else ""
    print(f"asqgen methods: {args.data}, {len(seeds)} seeds, "
          f"{' and '.join(map(str, bits))} bits, {float_epochs} float + {epochs} QAT "
          f"epochs{subset}, {where(args.workers, args.cluster)}", flush=True)
    store = Store(args.store or Path(args.out) / "jobs")
    result = compare_methods(seeds=seeds, bits=bits, float_epochs=float_epochs, epochs=epochs,
                             workers=args.workers, cluster=args.cluster, store=store,
                             log=lambda line: print("  " + line, flush=True),
                             progress=None if args.quiet else JobProgress.for_stream(sys.stderr),
                             data=args.data, train_images=train_images)
    counts = result["job_counts"]
    md, js = write(result, args.out)
    png = None if args.no_plot else plot(result, Path(args.out) / "methods.png")
    print()
    print(markdown(result))
    print(f"asqgen methods: {counts['jobs']} jobs: {counts['run']} run, {counts['reused']} "
          f"reused from {store.folder}, {counts['retried']} retried; {result['seconds']:.0f} s "
          f"({result['job_seconds']:.0f} s in the jobs, the reused ones included)")
    print(f"  wrote {md}, {js}" + (f" and {png}" if png else ""))
    return 0
