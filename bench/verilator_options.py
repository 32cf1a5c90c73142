"""Verilator options against simulation speed: the plain C++ harness of ``cosim_speed.py``
(the default bundle's 8x8 layer engine in the co-simulation harness, every layer of the first
``--images`` test images) built with each set of options; clocks per second of each and the
ratio to the first. The co-simulation (``sim.cosim.SPEED_ARGS``) uses the fastest.

    ./dev python bench/verilator_options.py [--images 10] [--out build/bench] [--threads]
        [--variants 0,1,2] [--rows 8] [--cols 8]
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cosim_speed import add_size_options, build_plain, run_plain    # noqa: E402
from core.bundle import load                                          # noqa: E402
from core.sizing import config_for_bundle                             # noqa: E402
from sim.golden import run_network                                   # noqa: E402
from sim.network_sim import NetworkSim                               # noqa: E402

FAST = ("--x-assign", "fast", "--x-initial", "fast")
VARIANTS = [
    ("Verilator defaults", (), None),
    ("-O3, x fast", ("-O3", *FAST), None),
    ("-O3, x fast, C++ -O3", ("-O3", *FAST), "-O3"),
]
THREADS = ("-O3, x fast, --threads 2", ("-O3", *FAST, "--threads", "2"), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the fastest kept")
    parser.add_argument("--threads", action="store_true",
                        help="also --threads 2 (minutes on a busy 2-core machine)")
    add_size_options(parser)
    parser.add_argument("--variants", help="comma-separated numbers of the variants to build, "
                                           f"from 0 to {len(VARIANTS) - 1} (all)")
    args = parser.parse_args()
    chosen = range(len(VARIANTS))
    if args.variants:
        try:
            chosen = [int(v) for v in args.variants.split(",")]
            if any(not 0 <= v < len(VARIANTS) for v in chosen) or not chosen:
                raise ValueError
        except ValueError:
            parser.error(f"--variants must be numbers from 0 to {len(VARIANTS) - 1}, not "
                         f"{args.variants!r}")
    bundle = load(ROOT / "export" / "default_model" / "bundle")
    codes = bundle.quantize_input(bundle.reference["images"][:args.images])
    golden = run_network(bundle, codes)
    net = NetworkSim(config_for_bundle(bundle, rows=args.rows, cols=args.cols), args.out)
    variants = [VARIANTS[i] for i in chosen] + [THREADS] * args.threads
    builds = []
    for name, options, opt_fast in variants:
        t0 = time.monotonic()
        exe = build_plain(net._cosim, args.out, options, opt_fast)
        builds.append((exe.parent.parent, exe, time.monotonic() - t0))
    # Interleaved repeats, the fastest of each kept: other jobs on the machine only slow a
    # run down, so the fastest run is the best estimate of each build's own speed.
    best = [None] * len(variants)
    for _ in range(args.repeat):
        for i, (folder, exe, _) in enumerate(builds):
            clocks, seconds = run_plain(exe, net, bundle, codes, golden, folder)
            if best[i] is None or seconds < best[i][1]:
                best[i] = (clocks, seconds)
    rows = [(name, build_s, *best[i])
            for i, ((name, _, _), (_, _, build_s)) in enumerate(zip(variants, builds))]
    print(f"plain C++ harness, default bundle, {args.images} images, fastest of "
          f"{args.repeat}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'options':<28} {'build s':>8} {'clocks':>9} {'seconds':>8} {'clocks/s':>10} "
          f"{'x':>6}")
    base = rows[0][2] / rows[0][3]
    for name, build_s, clocks, seconds in rows:
        rate = clocks / seconds
        print(f"  {name:<28} {build_s:>8.1f} {clocks:>9} {seconds:>8.2f} {rate:>10.0f} "
              f"{rate / base:>6.2f}")


if __name__ == "__main__":
    main()
