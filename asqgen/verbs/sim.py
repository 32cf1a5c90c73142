"""``asqgen sim``: a bundle on the generated hardware in Verilator, every layer against the
golden model and the outputs against PyTorch."""

import sys

from core import rules
from core.bundle import load
from sim.progress import ProgressLine
from sim.report import format_sim_report, simulate

from ..options import bundle_config, reference, write_json


def run(args):
    bundle = load(args.bundle)
    rules.check_bundle(bundle)
    reference(bundle, args.bundle)
    config = bundle_config(args, bundle)
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
    write_json(args.json, report)
    print(lines[-1])                                   # the verdict comes last
    return 0 if report["identical"] else 1
