"""The host side of the rescale unit: its parameter words and accumulator vectors for a
sample, and running samples on Verilator."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.verilog import write_verilog
from hw.rescale_unit import CONTROL, RescaleUnit, param_words

from . import verilator

__all__ = ["RescaleSim", "Sample", "acc_vectors"]

TOP = "asq_rescale"


@dataclass
class Sample:
    """One sample of one layer: its accumulators ``acc`` (``(C, H, W)``, or ``(C,)``), the
    ``beta_in`` of its input, and the layer's ``LayerRescale``, ReLU and pooling."""

    acc: np.ndarray
    beta_in: int
    fixed: object
    relu: bool
    pool: int


def acc_vectors(acc, lanes):
    """The vectors of ``acc`` (``(C, H, W)``) in the unit's order: for each block of ``lanes``
    channels, for each position row by row; channels past ``C`` are 0."""
    c = acc.shape[0]
    flat = acc.reshape(c, -1)
    blocks = -(-c // lanes)
    padded = np.zeros((blocks * lanes, flat.shape[1]), dtype=np.int64)
    padded[:c] = flat
    return [padded[b * lanes:(b + 1) * lanes, p].tolist()
            for b in range(blocks) for p in range(flat.shape[1])]


class RescaleSim:
    """A rescale unit built for Verilator under ``root``."""

    def __init__(self, root, *, lanes, acc_bits, max_channels, max_positions, max_hidden):
        self.lanes, self.acc_bits, self.max_channels = lanes, acc_bits, max_channels
        self.dir = Path(root) / (f"rescale_l{lanes}_a{acc_bits}_c{max_channels}"
                                 f"_p{max_positions}_h{max_hidden}")
        unit = RescaleUnit(lanes=lanes, acc_bits=acc_bits, max_channels=max_channels,
                           max_positions=max_positions, max_hidden=max_hidden)
        path, _ = write_verilog(unit, self.dir / "rtl", TOP, clocked=True)
        self._runner = verilator.build(path, TOP, self.dir / "build")

    def job_sample(self, s: Sample):
        acc = s.acc.reshape(s.acc.shape[0], 1, 1) if s.acc.ndim == 1 else s.acc
        c, h, w = acc.shape
        words = param_words(s.fixed, channels=c, height=h, width=w, pool=s.pool, relu=s.relu,
                            max_channels=self.max_channels)
        words.append((6 << 12 | CONTROL.index("beta_in"), int(s.beta_in)))
        outputs = c * (h // s.pool) * (w // s.pool) if s.pool > 1 else c * h * w
        return {"params": words, "vectors": acc_vectors(acc, self.lanes), "outputs": outputs}

    def run(self, samples, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """``[(values, betas, lasts)]`` per sample, and the clocks of the whole run."""
        job = {"lanes": self.lanes, "acc_bits": self.acc_bits,
               "samples": [self.job_sample(s) for s in samples], "seed": seed, "stall": stall,
               "backpressure": backpressure}
        out = verilator.run_bench(self._runner, top=TOP, bench="sim.benches.rescale_bench",
                                  job=job, work_dir=self.dir / name)
        return out["samples"], out["cycles"]
