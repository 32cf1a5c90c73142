"""The host side of the matmul engine: passes for any ``K`` and ``N``, and 8-bit ``int``
weights as bit planes on a ``post`` array; running them on Verilator.

``passes_for(config, A, W, w_format)``: for each block of ``cols`` columns of ``W``, for each
block of ``rows`` rows of ``K``, (for ``int`` weights on a ``post`` or ``pot`` array, for each
bit plane), one pass; the first pass of a column block starts the sums, the last one sends
them out. Weights of the array's own format and width run as they are, 8-bit or narrower
``int`` weights as bit planes on a ``post`` or ``pot`` array; anything else is refused, as are
``K > max_k`` and ``M > max_m``.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.verilog import write_verilog
from hw.matmul_engine import MatmulEngine
from sim.golden import check_codes

from . import verilator
from .array_sim import ShapeError

__all__ = ["pass_plan", "passes_for", "EngineSim", "EngineRun", "bit_planes"]

TOP = "asq_engine"


def bit_planes(W, bits, array_w_bits):
    """``[(plane codes, shift)]`` of two's-complement ``W`` codes: plane ``i`` holds bit ``i``
    as the ``post``/``pot`` code of +1 (the sign plane: of -1) or 0."""
    signed = np.where(W >= 2 ** (bits - 1), W - 2 ** bits, W)
    plus, minus = 1, 2 ** (array_w_bits - 1) + 1        # magnitude code 1: exponent 0
    planes = []
    for i in range(bits):
        bit = (signed >> i) & 1
        planes.append((np.where(bit == 1, minus if i == bits - 1 else plus, 0), i))
    return planes


def pass_plan(config, m, W, w_format, w_bits=None):
    """The passes of ``A x W`` for an ``A`` of ``m`` rows, without the activations: a list of
    ``(k0, weights, shift, drop, first, final)``, ``weights`` the ``rows x cols`` weight block
    and ``A[:, k0:k0 + rows]`` (zero-padded) the activations of the pass."""
    w_bits = config.w_bits if w_bits is None else w_bits
    W = check_codes("W", W, w_bits)
    k, n = W.shape
    if not 1 <= k <= config.max_k:
        raise ShapeError(f"K={k} must be from 1 to max_k={config.max_k}")
    if not 1 <= m <= config.max_m:
        raise ShapeError(f"M={m} must be from 1 to max_m={config.max_m}")
    if w_format == config.w_format and w_bits == config.w_bits:
        planes, drop = [(W, 0)], 0
    elif w_format == "int" and config.w_format in ("post", "pot") and w_bits <= 8:
        planes, drop = bit_planes(W, w_bits, config.w_bits), 1
    else:
        raise ShapeError(f"{w_bits}-bit {w_format} weights cannot run on a {config.w_bits}-bit "
                         f"{config.w_format} array")
    r, c = config.rows, config.cols
    plan = []
    for n0 in range(0, n, c):
        steps = [(k0, plane, shift) for k0 in range(0, k, r) for plane, shift in planes]
        for j, (k0, plane, shift) in enumerate(steps):
            block = np.zeros((r, c), dtype=np.int64)
            wpart = plane[k0:k0 + r, n0:n0 + c]
            block[:wpart.shape[0], :wpart.shape[1]] = wpart
            plan.append((k0, block, shift, drop, int(j == 0), int(j == len(steps) - 1)))
    return plan


def passes_for(config, A, W, w_format, w_bits=None):
    """The passes of ``A x W`` (see the module docstring), as dicts for the bench."""
    A = check_codes("A", A, config.a_bits)
    (m, k), (k2, n) = A.shape, np.shape(W)
    if k != k2:
        raise ShapeError(f"A is {m}x{k} but W is {k2}x{n}: the inner dimensions differ")
    passes = []
    for k0, block, shift, drop, first, final in pass_plan(config, m, W, w_format, w_bits):
        acts = np.zeros((m, config.rows), dtype=np.int64)
        part = A[:, k0:k0 + config.rows]
        acts[:, :part.shape[1]] = part
        passes.append({"weights": block.tolist(), "acts": acts.tolist(), "shift": shift,
                       "drop": drop, "first": first, "final": final})
    return passes


@dataclass
class EngineRun:
    results: list
    cycles: int
    lasts_ok: bool


class EngineSim:
    """The matmul engine of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        self.dir = Path(root) / f"engine_{config.key()}_k{config.max_k}_m{config.max_m}"
        path, _ = write_verilog(MatmulEngine(config=config), self.dir / "rtl", TOP, clocked=True)
        self._runner = verilator.build(path, TOP, self.dir / "build")

    def run(self, products, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """Run every ``(A, W, w_format, w_bits)`` of ``products`` in one simulation."""
        cfg = self.config
        plans = [passes_for(cfg, A, W, fmt, bits) for A, W, fmt, bits in products]
        job = {"rows": cfg.rows, "cols": cfg.cols, "a_bits": cfg.a_bits, "w_bits": cfg.w_bits,
               "buffer_bits": cfg.buffer_bits, "passes": [p for plan in plans for p in plan],
               "seed": seed, "stall": stall, "backpressure": backpressure}
        out = verilator.run_bench(self._runner, top=TOP, bench="sim.benches.engine_bench",
                                  job=job, work_dir=self.dir / name)
        results, i = [], 0
        for (A, W, _, _), plan in zip(products, plans):
            blocks = sum(p["final"] for p in plan)
            results.append(np.hstack([np.array(s, dtype=np.int64)
                                      for s in out["sums"][i:i + blocks]])[:, :np.shape(W)[1]])
            i += blocks
        return EngineRun(results=results, cycles=out["cycles"], lasts_ok=out["lasts_ok"])
