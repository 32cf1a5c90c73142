"""The whole network on the layer engine (``hw.accelerator``) in Verilator.

The host side is here: for every layer and sample it sends the rescale parameters and the
sample's ``beta_in``, then the passes of its matrix product (``sim.engine_sim.passes_for``
over the ``im2col`` rows that the golden model uses too), and collects the next layer's codes
and ``beta``. One simulation runs one layer for all samples; the codes it returns are the next
layer's input.
"""

from dataclasses import dataclass, field

import numpy as np

from gen import regmap
from gen.rescale import BETA_ONE
from gen.sizing import check_fits
from hw.accelerator import Accelerator
from hw.rescale_unit import output_layout, param_layout

from .design import Design
from .engine_sim import PassWords, passes_for
from .golden import check_codes, im2col
from .payload import Payload

__all__ = ["NetworkSim", "NetworkRun", "TOP"]

TOP = "asq_accel"


@dataclass
class NetworkRun:
    """Per layer: the output codes (``(N,) + out_shape``; the last layer's ``z`` values,
    units ``2**-Z``), ``beta`` (``(N,)``) and the clocks of every sample."""

    outputs: list = field(default_factory=list)
    betas: list = field(default_factory=list)
    cycles: list = field(default_factory=list)


class NetworkSim(Design):
    """The accelerator of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        super().__init__(Accelerator(config=config), root, TOP)
        self._passes = PassWords(config)
        self._param = Payload(param_layout())
        self._out = Payload(output_layout())

    def step_words(self, layer, codes, beta_in):
        """The stream words of one sample of ``layer``: parameters, then passes."""
        cfg = self.config
        if layer.kind == "linear":
            rows, (c, h, w) = codes.reshape(1, -1), (layer.out_channels, 1, 1)
        else:
            rows = im2col(codes[None], layer.kernel, layer.stride, layer.padding)
            c, h, w = layer.conv_shape
        words = regmap.encode(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                              relu=layer.relu, max_channels=cfg.max_channels)
        words.append(regmap.beta_in_word(beta_in))
        passes = passes_for(cfg, rows, layer.weight_matrix, layer.w_format, layer.w_bits)
        return {"first": {"i_param": [self._param.pack({"addr": a, "value": v})
                                      for a, v in words]},
                "send": self._passes.streams(passes),
                "receive": {"o_out": int(np.prod(layer.out_shape))}}

    def run(self, bundle, input_codes, *, seed=0, stall=0.0, backpressure=0.0):
        """Run ``bundle`` on ``input_codes``; see ``NetworkRun``."""
        check_fits(bundle, self.config)
        codes = check_codes("input codes", input_codes, bundle.input_bits,
                            ndim=1 + len(bundle.input_shape))
        betas = np.full(len(codes), BETA_ONE, dtype=np.int64)
        run = NetworkRun()
        for i, layer in enumerate(bundle.layers):
            steps = self.run_streams(
                [self.step_words(layer, x, b) for x, b in zip(codes, betas)],
                sources=("i_param", "i_w", "i_a", "i_pass"), sinks=("o_out",), seed=seed + i,
                stall=stall, backpressure=backpressure, name=f"layer{i}")
            outs = [[self._out.unpack(w) for w in received["o_out"]] for received, _ in steps]
            codes = np.array([[o["value"] for o in out] for out in outs], dtype=np.int64)
            codes = codes.reshape((len(steps),) + tuple(layer.out_shape))
            betas = np.array([out[0]["beta"] for out in outs], dtype=np.int64)
            run.outputs.append(codes)
            run.betas.append(betas)
            run.cycles.append([cycles for _, cycles in steps])
        return run
