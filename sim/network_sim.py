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
from hw.rescale_unit import CONTROL, param_words

from .cosim import CosimSim
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
    clocks: int = 0
    load_seconds: float = 0.0


class NetworkSim:
    """The accelerator of ``config`` inside the co-simulation harness (``sim.cosim``), built
    for Verilator under ``root`` once per configuration."""

    def __init__(self, config, root, *, depths=None):
        self.config = config
        self._cosim = CosimSim(config, root, depths=depths)
        self.dir = self._cosim.dir
        self.verilog = self._cosim.verilog

    def _params(self, layer, beta_in):
        """The ``i_param`` words of ``layer`` for a sample with ``beta_in`` (the only place
        that knows the rescale unit's register map on this path)."""
        if layer.kind == "linear":
            c, h, w = layer.out_channels, 1, 1
        else:
            c, h, w = layer.conv_shape
        words = param_words(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                            relu=layer.relu, max_channels=self.config.max_channels)
        words.append((6 << 12 | CONTROL.index("beta_in"), int(beta_in)))
        return words

    def run(self, bundle, input_codes, *, seed=0, stall=0.0, backpressure=0.0, progress=None):
        """Run ``bundle`` on ``input_codes``; see ``NetworkRun``. ``progress(layer index,
        samples done, clocks)`` is called as batches finish."""
        check_fits(bundle, self.config)
        codes = check_codes("input codes", input_codes, bundle.input_bits,
                            ndim=1 + len(bundle.input_shape))
        betas = np.full(len(codes), BETA_ONE, dtype=np.int64)
        run = NetworkRun()
        for i, layer in enumerate(bundle.layers):
            if layer.kind == "linear":
                rows = [x.reshape(1, -1) for x in codes]
            else:
                rows = list(im2col(codes, layer.kernel, layer.stride, layer.padding)
                            .reshape(len(codes), -1, layer.k))
            out = self._cosim.run_layer(
                W=layer.weight_matrix, w_format=layer.w_format, w_bits=layer.w_bits,
                samples_rows=rows, param_words=[self._params(layer, b) for b in betas],
                outputs=int(np.prod(layer.out_shape)), seed=seed + i, stall=stall,
                backpressure=backpressure, name=f"layer{i}",
                progress=None if progress is None else
                (lambda samples, clocks, i=i: progress(i, samples, clocks)))
            if not out.lasts_ok:
                raise AssertionError(f"layer {layer.name!r}: o_out's last flag is not on the "
                                     f"final word of every sample")
            codes = out.values.reshape((len(codes),) + tuple(layer.out_shape))
            betas = out.betas
            run.outputs.append(codes)
            run.betas.append(betas)
            run.cycles.append(out.cycles.tolist())
            run.clocks += out.clocks
            run.load_seconds += out.load_seconds
        return run
