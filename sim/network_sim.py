"""The whole network on the layer engine (``hw.accelerator``) in Verilator.

The host side is here: for every layer it sends the rescale parameters (``core.regmap``), then
per batch of samples (``ArrayConfig.batch_for``: the samples whose positions share a pass)
each sample's ``beta_in`` and the passes of the batch's matrix product
(``sim.engine_sim.pass_plan`` through ``sim.cosim.CosimPlan``, over the ``im2col`` rows that
the golden model uses too), and collects the next layer's codes and ``beta``. The stimulus goes into the co-simulation harness's memories (``sim.cosim``);
one simulation runs the whole network, layer after layer, each layer for all samples, and
the codes a layer returns are the next layer's input.
"""

from dataclasses import dataclass, field

import numpy as np

from core.rescale import BETA_ONE, shortcut_codes
from core.sizing import check_fits

from .cosim import CosimSim, thresholds
from .golden import check_codes, im2col
from .rescale_sim import as_sent, param_words

__all__ = ["NetworkSim", "NetworkRun", "check_network", "drive", "layer_params", "layer_rows",
           "accumulator_shape"]


@dataclass
class NetworkRun:
    """Per layer: the output codes (``(N,) + out_shape``; the last layer's ``z`` values,
    units ``2**-Z``), ``beta`` (``(N,)``), the clocks between the ends of successive samples,
    the layer's clocks in all (``layer_clocks``) and the engine's cycle counters
    (``counters``, ``sim.cosim.LayerResult``); ``clocks`` in all; ``seconds``: the bench's time
    loading memories, simulating, reading back, and in all."""

    outputs: list = field(default_factory=list)
    betas: list = field(default_factory=list)
    cycles: list = field(default_factory=list)
    layer_clocks: list = field(default_factory=list)
    counters: list = field(default_factory=list)
    clocks: int = 0
    seconds: dict = field(default_factory=dict)


def accumulator_shape(layer):
    """``(channels, height, width)`` of a layer's accumulators (1 x 1 for a linear layer)."""
    if layer.kind == "linear":
        return layer.out_channels, 1, 1
    return layer.conv_shape


def layer_params(layer, config, residual="none", res_signed=False):
    """The layer's ``i_param`` words, ``(address, value, last)`` (``core.regmap``), for the
    engine of ``config``; ``res_signed``: an identity shortcut's codes are signed."""
    c, h, w = accumulator_shape(layer)
    return param_words(layer.fixed, channels=c, height=h, width=w, pool=layer.pool,
                       relu=layer.relu, max_channels=config.max_channels,
                       index_bits=config.index_bits, residual=residual,
                       shortcut=layer.shortcut_fixed if residual == "identity" else None,
                       pool_mode=layer.pool_mode, global_pool=layer.global_pool,
                       res_signed=res_signed)


def _signed_shortcut(bundle, i):
    """Whether layer ``i``'s identity shortcut reads signed codes (its layer's
    ``next_signed``)."""
    kind, k = bundle.residual_kind(i)
    return kind == "identity" and bool(bundle.layers[k].next_signed)


def layer_rows(layer, codes):
    """Each sample's ``A``: its ``im2col`` rows (a linear layer: one row)."""
    if layer.kind == "linear":
        return [x.reshape(1, -1) for x in codes]
    return list(im2col(codes, layer.kernel, layer.stride, layer.padding)
                .reshape(len(codes), -1, layer.product_k))


def _outputs(layer):
    """``(channels, positions)`` of a layer's outputs per sample."""
    shape = tuple(layer.out_shape)
    return shape[0], int(np.prod(shape[1:], dtype=np.int64))


def check_network(plan, bundle):
    """Refuse (``UsageError``) a network with a layer whose words per batch do not fit the
    harness's memories (``sim.cosim.CosimPlan.check``), before anything is built."""
    for i, layer in enumerate(bundle.layers):
        channels, positions = _outputs(layer)
        plan.check_layer(layer.name, positions=layer.positions, W=layer.weight_matrix,
                         w_format=layer.w_format, w_bits=layer.w_bits, channels=channels,
                         out_positions=positions, depthwise=layer.k if layer.depthwise else None,
                         params=len(layer_params(layer, plan.config, bundle.residual_kind(i)[0],
                                                 _signed_shortcut(bundle, i))))


def drive(plan, bundle, codes, *, seed=0, stall=0.0, backpressure=0.0):
    """The host's sequencing of a network, as a generator: for each layer it yields
    ``(index, runs, settings)`` (``sim.cosim.CosimPlan`` runs) and is sent the bench's results
    of those runs; it returns the ``NetworkRun``. Runs in the cocotb process, so that a whole
    network is one simulation.

    A residual network (``core.bundle`` format 2) runs in the bundle's order: each layer reads
    the codes and ``beta`` of its source layer; a projection runs as a last layer does (its
    ``z`` comes back), and a layer with a shortcut gets the shortcut's codes (and ``beta``) or
    the projection's ``z`` as its second operand (``i_res``). An option-A shortcut's codes
    are subsampled and placed among zero channels here, on the host
    (``core.rescale.shortcut_codes``, format 3), as im2col is; a layer that ends in a global
    pooling returns one vector of codes per block of channels and sample. Signed codes (a
    layer's ``next_signed``) come back as two's complement in their low bits and are read as
    such; a signed shortcut's codes go to ``i_res`` as they came (``res_signed``: the unit
    sign-extends them), and a layer that reads signed codes has them checked first."""
    ones = np.full(len(codes), BETA_ONE, dtype=np.int64)
    run = NetworkRun()
    for i, layer in enumerate(bundle.layers):
        j = bundle.source_index(i)
        inputs, betas = (codes, ones) if j is None else (run.outputs[j], run.betas[j])
        if layer.a_signed:                # two's-complement codes in the layer's range
            check_codes(f"layer {layer.name!r}'s input codes", inputs, layer.a_bits,
                        ndim=inputs.ndim, signed=True)
        channels, positions = _outputs(layer)
        kind, k = bundle.residual_kind(i)
        res_signed = _signed_shortcut(bundle, i)
        extra = {}
        if kind == "identity":
            operand = shortcut_codes(run.outputs[k], stride=layer.shortcut_stride,
                                     pad=layer.shortcut_pad, channels=layer.out_channels)
            extra = dict(residual=list(as_sent(operand, res_signed)),
                         residual_betas=run.betas[k])
        elif kind == "projection":
            extra = dict(residual=list(run.outputs[k]), residual_betas=ones)
        runs = plan.layer_runs(
            W=layer.weight_matrix, w_format=layer.w_format, w_bits=layer.w_bits,
            samples_rows=layer_rows(layer, inputs), betas=betas,
            param_words=layer_params(layer, plan.config, kind, res_signed), channels=channels,
            out_positions=positions, stall=stall, backpressure=backpressure, name=layer.name,
            depthwise=layer.k if layer.depthwise else None, **extra)
        results = yield i, runs, thresholds(seed + i, stall, backpressure)
        out = plan.collect(runs, results, signed=bool(layer.fixed.next_signed))
        if not out.lasts_ok:
            raise AssertionError(f"layer {layer.name!r}: o_out's last flag is not on the "
                                 f"final word of every sample")
        run.outputs.append(out.values.reshape((len(codes),) + tuple(layer.out_shape)))
        run.betas.append(out.betas)
        run.cycles.append(out.cycles.tolist())
        run.layer_clocks.append(out.clocks)
        run.counters.append(out.counters)
        run.clocks += out.clocks
    return run


class NetworkSim:
    """The accelerator of ``config`` inside the co-simulation harness (``sim.cosim``), built
    for Verilator under ``root`` once per configuration; a whole network runs in one cocotb
    run, layer after layer, each layer's samples in as few batches as the memories allow.
    ``platform``: what the engine is built for (``sim.design.Design``)."""

    def __init__(self, config, root, *, depths=None, platform=None):
        self.config = config
        self._cosim = CosimSim(config, root, depths=depths, platform=platform)
        self.dir = self._cosim.dir
        self.verilog = self._cosim.verilog

    def run(self, bundle, input_codes, *, seed=0, stall=0.0, backpressure=0.0,
            progress=None, name="network"):
        """Run ``bundle`` on ``input_codes``; see ``NetworkRun``. ``progress(state)`` gets the
        bench's reports (``sim.benches.cosim_bench``: ``layer``, ``layers``, ``steps_done``,
        ``steps``, ``clocks``, ``seconds``) while it runs."""
        check_fits(bundle, self.config)
        codes = check_codes("input codes", input_codes, bundle.input_bits,
                            ndim=1 + len(bundle.input_shape))
        job = {"mode": "network", "config": self.config, "depths": self._cosim.depths,
               "bundle": bundle, "codes": np.asarray(codes), "seed": seed, "stall": stall,
               "backpressure": backpressure}
        out = self._cosim.run(job, name=name, progress=progress)
        net = out["network"]
        return NetworkRun(
            outputs=[np.array(o, dtype=np.int64).reshape((len(codes),) + tuple(l.out_shape))
                     for o, l in zip(net["outputs"], bundle.layers)],
            betas=[np.array(b, dtype=np.int64) for b in net["betas"]],
            cycles=net["cycles"], layer_clocks=net["layer_clocks"], counters=net["counters"],
            clocks=net["clocks"], seconds=out["seconds"])
