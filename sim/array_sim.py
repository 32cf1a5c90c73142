"""The host side of the systolic array: tiling, and running matrix products on Verilator.

``ArraySim(config, root)`` generates the Verilog for ``config``, lints nothing and builds it
once (cached under ``root/<config key>``); ``run([(A, W), ...])`` splits every product into
array tiles, runs all of them in one simulation and returns each product's accumulators.

Tiling: ``W`` (``K x N``) is cut into column blocks of ``cols``; ``K`` must not exceed ``rows``
(accumulating over ``K`` tiles needs the accumulator buffer, which this array does not have);
a short ``K`` or a short last block is padded with zero codes, whose products are 0.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.verilog import generate_array, generate_multiplier
from sim.golden import check_codes

from . import verilator

__all__ = ["ArraySim", "MultiplierSim", "Run", "ShapeError", "tiles_for"]

TOP = "asq_array"


class ShapeError(ValueError):
    """A product that the array cannot run."""


@dataclass
class Run:
    """The outcome of ``ArraySim.run``: one accumulator matrix per product, and clocks."""

    results: list
    cycles: int
    lasts_ok: bool


def tiles_for(config, A, W):
    """The array tiles of ``A x W``, in order: dicts with ``weights`` (``rows x cols``) and
    ``acts`` (``M x rows``)."""
    A = check_codes("A", A, config.a_bits)
    W = check_codes("W", W, config.w_bits)
    (m, k), (k2, n) = A.shape, W.shape
    if k != k2:
        raise ShapeError(f"A is {m}x{k} but W is {k2}x{n}: the inner dimensions differ")
    if m < 1 or n < 1 or k < 1:
        raise ShapeError(f"A x W must have M, K, N >= 1, not {m}, {k}, {n}")
    if k > config.rows:
        raise ShapeError(f"K={k} does not fit the {config.rows}-row array: this array has no "
                         f"accumulator buffer to add K tiles, so K must be at most rows")
    acts = np.zeros((m, config.rows), dtype=np.int64)
    acts[:, :k] = A
    tiles = []
    for n0 in range(0, n, config.cols):
        block = np.zeros((config.rows, config.cols), dtype=np.int64)
        part = W[:, n0:n0 + config.cols]
        block[:k, :part.shape[1]] = part
        tiles.append({"weights": block.tolist(), "acts": acts.tolist()})
    return tiles


class ArraySim:
    """The array of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        self.dir = Path(root) / config.key()
        self.manifest = generate_array(config, self.dir / "rtl", name=TOP)
        self._runner = verilator.build(self.dir / "rtl" / f"{TOP}.v", TOP, self.dir / "build")

    def run(self, products, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """Run every ``(A, W)`` of ``products`` in one simulation; see ``Run``."""
        cfg = self.config
        plans = [tiles_for(cfg, A, W) for A, W in products]
        job = {"rows": cfg.rows, "cols": cfg.cols, "a_bits": cfg.a_bits, "w_bits": cfg.w_bits,
               "acc_bits": cfg.acc_bits, "tiles": [t for plan in plans for t in plan],
               "seed": seed, "stall": stall, "backpressure": backpressure}
        out = verilator.run_bench(self._runner, top=TOP, bench="sim.benches.array_bench",
                                  job=job, work_dir=self.dir / name)
        results, i = [], 0
        for (A, W), plan in zip(products, plans):
            blocks = [np.array(r, dtype=np.int64) for r in out["results"][i:i + len(plan)]]
            i += len(plan)
            results.append(np.hstack(blocks)[:, :np.shape(W)[1]])
        return Run(results=results, cycles=out["cycles"], lasts_ok=out["lasts_ok"])


class MultiplierSim:
    """A lone multiplier of ``numerics.ProductFormat`` ``fmt`` built for Verilator."""

    TOP = "asq_multiplier"

    def __init__(self, fmt, root):
        self.fmt = fmt
        self.dir = (Path(root) /
                    f"mul_{fmt.w_format}{fmt.w_bits}_a{fmt.a_bits}_f{fmt.frac_bits}")
        path = generate_multiplier(fmt, self.dir / "rtl", name=self.TOP)
        self._runner = verilator.build(path, self.TOP, self.dir / "build")

    def products(self, pairs):
        out = verilator.run_bench(self._runner, top=self.TOP,
                                  bench="sim.benches.multiplier_bench",
                                  job={"pairs": [list(map(int, p)) for p in pairs]},
                                  work_dir=self.dir / "run")
        return out["products"]
