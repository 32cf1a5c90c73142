"""Verilator options against simulation speed: the plain C++ harness of ``cosim_speed.py``
(the default bundle's 8x8 layer engine in the co-simulation harness, every layer of the first
``--images`` test images) built with each set of options; clocks per second of each and the
ratio to the first. The co-simulation (``sim.cosim.SPEED_ARGS``) uses the fastest.

    ./dev python bench/verilator_options.py [--images 10] [--out build/bench]
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cosim_speed import build_plain, run_plain                      # noqa: E402
from gen.bundle import load                                          # noqa: E402
from gen.sizing import config_for_bundle                             # noqa: E402
from sim.golden import run_network                                   # noqa: E402
from sim.network_sim import NetworkSim                               # noqa: E402

FAST = ("--x-assign", "fast", "--x-initial", "fast")
VARIANTS = [
    ("Verilator defaults", (), None),
    ("-O3, x fast", ("-O3", *FAST), None),
    ("-O3, x fast, C++ -O3", ("-O3", *FAST), "-O3"),
    ("-O3, x fast, --threads 2", ("-O3", *FAST, "--threads", "2"), None),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    args = parser.parse_args()
    bundle = load(ROOT / "export" / "default_model" / "bundle")
    codes = bundle.quantize_input(bundle.reference["images"][:args.images])
    golden = run_network(bundle, codes)
    net = NetworkSim(config_for_bundle(bundle), args.out)
    rows = []
    for i, (name, options, opt_fast) in enumerate(VARIANTS):
        folder = Path(args.out) / f"options{i}"
        t0 = time.monotonic()
        exe = build_plain(net._cosim, folder, options, opt_fast)
        build_s = time.monotonic() - t0
        clocks, seconds = run_plain(exe, net, bundle, codes, golden, folder)
        rows.append((name, build_s, clocks, seconds))
    print(f"plain C++ harness, default bundle, {args.images} images; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  {'options':<28} {'build s':>8} {'clocks':>9} {'seconds':>8} {'clocks/s':>10} "
          f"{'x':>6}")
    base = rows[0][2] / rows[0][3]
    for name, build_s, clocks, seconds in rows:
        rate = clocks / seconds
        print(f"  {name:<28} {build_s:>8.1f} {clocks:>9} {seconds:>8.2f} {rate:>10.0f} "
              f"{rate / base:>6.2f}")


if __name__ == "__main__":
    main()
