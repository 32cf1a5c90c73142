"""Generation and Verilator build time, and simulation speed, of POST arrays by size.

    ./dev python bench/array_build.py [--sizes 4 8 16]

Each size is generated and built from scratch in a temporary folder (no cache), then runs a
full-throughput product (no stalls) to measure simulated clocks per second through cocotb.
Ratios are against the first size.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import ArrayConfig
from gen.verilog import generate_array
from sim import verilator
from sim.array_sim import ArraySim


def measure(n, root):
    cfg = ArrayConfig(rows=n, cols=n)
    t0 = time.monotonic()
    manifest = generate_array(cfg, root / "gen_only")
    gen_s = time.monotonic() - t0
    lines = len((root / "gen_only" / manifest["verilog"]).read_text().splitlines())
    t0 = time.monotonic()
    sim = ArraySim(cfg, root)
    build_s = time.monotonic() - t0 - gen_s
    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (2000, n))
    W = rng.integers(0, 16, (n, 4 * n))
    t0 = time.monotonic()
    run = sim.run([(A, W)])
    sim_s = time.monotonic() - t0
    return {"size": f"{n}x{n}", "lines": lines, "gen": gen_s, "build": build_s,
            "cycles": run.cycles, "rate": run.cycles / sim_s}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    args = p.parse_args()
    verilator.use_packaged_verilator()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows.append(measure(n, Path(tmp) / str(n)))
    base = rows[0]
    print(f"{'array':>7} {'Verilog lines':>14} {'generate s':>11} {'build s':>8} "
          f"{'x':>5} {'sim clocks':>10} {'clocks/s':>9} {'x':>5}")
    for r in rows:
        print(f"{r['size']:>7} {r['lines']:>14} {r['gen']:>11.1f} {r['build']:>8.1f} "
              f"{r['build'] / base['build']:>5.2f} {r['cycles']:>10} {r['rate']:>9.0f} "
              f"{r['rate'] / base['rate']:>5.2f}")


if __name__ == "__main__":
    main()
