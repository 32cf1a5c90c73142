"""The whole network on the layer engine (``hw.accelerator``) in Verilator.

The host side is here: for every layer and sample it sends the rescale parameters and the
sample's ``beta_in``, then the passes of its matrix product (``sim.engine_sim.passes_for``
over the ``im2col`` rows that the golden model uses too), and collects the next layer's codes
and ``beta``. One simulation runs one layer for all samples; the codes it returns are the next
layer's input.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gen.rescale import BETA_ONE
from gen.sizing import check_fits
from gen.verilog import write_verilog
from hw.accelerator import Accelerator
from hw.rescale_unit import CONTROL, param_words

from . import verilator
from .engine_sim import passes_for
from .golden import check_codes, im2col

__all__ = ["NetworkSim", "NetworkRun", "TOP"]

TOP = "asq_accel"


@dataclass
class NetworkRun:
    """Per layer: the output codes (``(N,) + out_shape``; the last layer's ``z`` values,
    units ``2**-Z``), ``beta`` (``(N,)``) and the clocks of every sample."""

    outputs: list = field(default_factory=list)
    betas: list = field(default_factory=list)
    cycles: list = field(default_factory=list)


class NetworkSim:
    """The accelerator of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        self.dir = Path(root) / (f"accel_{config.key()}_k{config.max_k}_m{config.max_m}"
                                 f"_c{config.max_channels}_h{config.max_hidden}")
        path, self.ports = write_verilog(Accelerator(config=config), self.dir / "rtl", TOP,
                                         clocked=True)
        self.verilog = path
        self._runner = verilator.build(path, TOP, self.dir / "build")

    def _step(self, layer, codes, beta_in):
        cfg = self.config
        if layer.kind == "linear":
            rows, (c, h, w) = codes.reshape(1, -1), (layer.out_channels, 1, 1)
        else:
            rows = im2col(codes[None], layer.kernel, layer.stride, layer.padding)
            c, h, w = layer.conv_shape
        words = param_words(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                            relu=layer.relu, max_channels=cfg.max_channels)
        words.append((6 << 12 | CONTROL.index("beta_in"), int(beta_in)))
        return {"params": words,
                "passes": passes_for(cfg, rows, layer.weight_matrix, layer.w_format,
                                     layer.w_bits),
                "outputs": int(np.prod(layer.out_shape))}

    def run(self, bundle, input_codes, *, seed=0, stall=0.0, backpressure=0.0):
        """Run ``bundle`` on ``input_codes``; see ``NetworkRun``."""
        check_fits(bundle, self.config)
        codes = check_codes("input codes", input_codes, bundle.input_bits,
                            ndim=1 + len(bundle.input_shape))
        betas = np.full(len(codes), BETA_ONE, dtype=np.int64)
        run = NetworkRun()
        cfg = self.config
        for i, layer in enumerate(bundle.layers):
            job = {"rows": cfg.rows, "cols": cfg.cols, "a_bits": cfg.a_bits,
                   "w_bits": cfg.w_bits, "seed": seed + i, "stall": stall,
                   "backpressure": backpressure,
                   "steps": [self._step(layer, x, b) for x, b in zip(codes, betas)]}
            out = verilator.run_bench(self._runner, top=TOP, bench="sim.benches.network_bench",
                                      job=job, work_dir=self.dir / f"layer{i}")
            steps = out["steps"]
            codes = np.array([s["values"] for s in steps], dtype=np.int64).reshape(
                (len(steps),) + tuple(layer.out_shape))
            betas = np.array([s["betas"][0] for s in steps], dtype=np.int64)
            run.outputs.append(codes)
            run.betas.append(betas)
            run.cycles.append([s["cycles"] for s in steps])
        return run
