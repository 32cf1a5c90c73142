"""The whole network on the layer engine (``hw.accelerator``) in Verilator.

The host side is here: for every layer and sample it sends the rescale parameters and the
sample's ``beta_in`` (``gen.regmap``), then the passes of its matrix product
(``sim.engine_sim.pass_plan`` through ``sim.cosim.CosimPlan``, over the ``im2col`` rows that
the golden model uses too), and collects the next layer's codes
and ``beta``. The stimulus goes into the co-simulation harness's memories (``sim.cosim``);
one simulation runs the whole network, layer after layer, each layer for all samples, and
the codes a layer returns are the next layer's input.
"""

from dataclasses import dataclass, field

import numpy as np

from gen import regmap
from gen.rescale import BETA_ONE
from gen.sizing import check_fits

from .cosim import CosimSim, thresholds
from .golden import check_codes, im2col

__all__ = ["NetworkSim", "NetworkRun", "check_network", "drive", "layer_params", "layer_rows"]


@dataclass
class NetworkRun:
    """Per layer: the output codes (``(N,) + out_shape``; the last layer's ``z`` values,
    units ``2**-Z``), ``beta`` (``(N,)``) and the clocks of every sample (counted in HDL);
    ``clocks`` in all; ``seconds``: the bench's time loading memories, simulating, reading
    back, and in all."""

    outputs: list = field(default_factory=list)
    betas: list = field(default_factory=list)
    cycles: list = field(default_factory=list)
    clocks: int = 0
    seconds: dict = field(default_factory=dict)


def layer_params(layer, beta_in, max_channels):
    """The ``i_param`` words of ``layer`` for a sample with ``beta_in`` (``gen.regmap``)."""
    if layer.kind == "linear":
        c, h, w = layer.out_channels, 1, 1
    else:
        c, h, w = layer.conv_shape
    words = regmap.encode(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                          relu=layer.relu, max_channels=max_channels)
    words.append(regmap.beta_in_word(beta_in))
    return words


def layer_rows(layer, codes):
    """Each sample's ``A``: its ``im2col`` rows (a linear layer: one row)."""
    if layer.kind == "linear":
        return [x.reshape(1, -1) for x in codes]
    return list(im2col(codes, layer.kernel, layer.stride, layer.padding)
                .reshape(len(codes), -1, layer.k))


def check_network(plan, bundle):
    """Refuse (``UsageError``) a network with a layer whose words per sample do not fit the
    harness's memories (``sim.cosim.CosimPlan.check``), before anything is built."""
    for layer in bundle.layers:
        plan.check_layer(layer.name, m=layer.positions, W=layer.weight_matrix,
                         w_format=layer.w_format, w_bits=layer.w_bits,
                         outputs=int(np.prod(layer.out_shape)),
                         params=len(layer_params(layer, BETA_ONE, plan.config.max_channels)))


def drive(plan, bundle, codes, *, seed=0, stall=0.0, backpressure=0.0, serial=True):
    """The host's sequencing of a network, as a generator: for each layer it yields
    ``(index, runs, settings)`` (``sim.cosim.CosimPlan`` runs) and is sent the bench's results
    of those runs; it returns the ``NetworkRun``. Runs in the cocotb process, so that a whole
    network is one simulation."""
    betas = np.full(len(codes), BETA_ONE, dtype=np.int64)
    run = NetworkRun()
    for i, layer in enumerate(bundle.layers):
        runs = plan.layer_runs(
            W=layer.weight_matrix, w_format=layer.w_format, w_bits=layer.w_bits,
            samples_rows=layer_rows(layer, codes),
            param_words=[layer_params(layer, b, plan.config.max_channels) for b in betas],
            outputs=int(np.prod(layer.out_shape)), stall=stall, backpressure=backpressure,
            name=layer.name)
        results = yield i, runs, thresholds(seed + i, stall, backpressure, serial)
        out = plan.collect(runs, results)
        if not out.lasts_ok:
            raise AssertionError(f"layer {layer.name!r}: o_out's last flag is not on the "
                                 f"final word of every sample")
        codes = out.values.reshape((len(codes),) + tuple(layer.out_shape))
        betas = out.betas
        run.outputs.append(codes)
        run.betas.append(betas)
        run.cycles.append(out.cycles.tolist())
        run.clocks += out.clocks
    return run


class NetworkSim:
    """The accelerator of ``config`` inside the co-simulation harness (``sim.cosim``), built
    for Verilator under ``root`` once per configuration; a whole network runs in one cocotb
    run, layer after layer, each layer's samples in as few batches as the memories allow."""

    def __init__(self, config, root, *, depths=None):
        self.config = config
        self._cosim = CosimSim(config, root, depths=depths)
        self.dir = self._cosim.dir
        self.verilog = self._cosim.verilog

    def run(self, bundle, input_codes, *, seed=0, stall=0.0, backpressure=0.0, serial=True,
            progress=None, name="network"):
        """Run ``bundle`` on ``input_codes``; see ``NetworkRun``. ``progress(state)`` gets the
        bench's reports (``sim.benches.cosim_bench``: ``layer``, ``layers``, ``steps_done``,
        ``steps``, ``clocks``, ``seconds``) while it runs."""
        check_fits(bundle, self.config)
        codes = check_codes("input codes", input_codes, bundle.input_bits,
                            ndim=1 + len(bundle.input_shape))
        job = {"mode": "network", "config": self.config, "depths": self._cosim.depths,
               "bundle": bundle, "codes": np.asarray(codes), "seed": seed, "stall": stall,
               "backpressure": backpressure, "serial": serial}
        out = self._cosim.run(job, name=name, progress=progress)
        net = out["network"]
        return NetworkRun(
            outputs=[np.array(o, dtype=np.int64).reshape((len(codes),) + tuple(l.out_shape))
                     for o, l in zip(net["outputs"], bundle.layers)],
            betas=[np.array(b, dtype=np.int64) for b in net["betas"]],
            cycles=net["cycles"], clocks=net["clocks"], seconds=out["seconds"])
