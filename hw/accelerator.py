"""The layer engine: the matmul engine (systolic array + accumulator buffer) feeding the
rescale unit. The host sends, per layer, the rescale parameters (``i_param``), then per batch
of samples each sample's ``beta_in`` (``i_beta``), the passes (``i_w``, ``i_a``, ``i_pass``)
and, for a layer with a shortcut, its second operand (``i_res``, ``hw.rescale_unit``; an
engine built with ``config.residual`` false has no ``i_res``), and receives the next layer's
codes with each sample's ``beta`` (``o_out``); it does im2col and sequences the layers.

Cycle counters: while ``count_en`` is high, every clock is counted once, by what the array's
activation input does: ``count_mac`` (an activation vector enters: a MAC on every PE),
``count_weight`` (a tile's first vector waits for its weights), ``count_stall`` (a vector
waits because the array's results are not taken: the accumulator bank is still being read
by the rescale unit, or the pass descriptor is late) and ``count_idle`` (no vector offered:
a gap in the host's stream, or the end of the layer). They clear while ``count_en`` is low.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import check_engine_array, pass_layout
from .local_reset import gate, live, local_domain
from .matmul_engine import MatmulEngine
from .rescale_unit import (RescaleUnit, beta_layout, output_layout, param_layout,
                           residual_layout)
from .systolic_array import activation_layout, weight_layout

__all__ = ["Accelerator", "COUNTERS", "COUNTER_BITS"]

COUNTERS = ("mac", "weight", "stall", "idle")
COUNTER_BITS = 32


class Accelerator(wiring.Component):
    """``MatmulEngine`` -> ``RescaleUnit``, sized by ``config`` (``core.config.ArrayConfig``:
    ``max_m`` positions in a pass, ``max_channels`` channels, ``max_hidden`` adapter units and
    ``max_batch`` samples in a batch).
    """

    def __init__(self, *, config):
        check_engine_array(config)
        self._config = config
        super().__init__({
            "i_param": In(stream.Signature(param_layout(config.index_bits))),
            "i_beta": In(stream.Signature(beta_layout())),
            **({"i_res": In(stream.Signature(residual_layout(config.cols)))}
               if config.residual else {}),
            "i_w": In(stream.Signature(weight_layout(config))),
            "i_a": In(stream.Signature(activation_layout(config))),
            "i_pass": In(stream.Signature(pass_layout(config))),
            "o_out": Out(stream.Signature(output_layout(config.cols))),
            "count_en": In(1),
            **{f"count_{name}": Out(COUNTER_BITS) for name in COUNTERS},
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        # Each half in a domain with its own copy of the reset (``hw.local_reset``), the
        # streams to and from the ports gated while the halves are still in reset.
        engine, unit = MatmulEngine(config=cfg), RescaleUnit.for_config(cfg)
        local_domain(m, platform, "engine", engine)
        local_domain(m, platform, "rescale", unit)
        up = live(m)
        for name in ("i_w", "i_a", "i_pass"):
            gate(m, getattr(self, name), getattr(engine, name), up)
        for name in ("i_param", "i_beta") + (("i_res",) if cfg.residual else ()):
            gate(m, getattr(self, name), getattr(unit, name), up)
        m.d.comb += [
            unit.i_acc.valid.eq(engine.o_acc.valid),
            engine.o_acc.ready.eq(unit.i_acc.ready),
            unit.i_acc.payload.data.eq(engine.o_acc.payload.data),
            unit.i_acc.payload.last.eq(engine.o_acc.payload.last),
        ]
        gate(m, unit.o_out, self.o_out, up)

        a = self.i_a
        cause = {"mac": a.valid & a.ready, "weight": a.valid & engine.wait_weights,
                 "stall": a.valid & ~a.ready & ~engine.wait_weights, "idle": ~a.valid}
        for name, now in cause.items():
            counter = getattr(self, f"count_{name}")
            with m.If(~self.count_en):
                m.d.sync += counter.eq(0)
            with m.Elif(now):
                m.d.sync += counter.eq(counter + 1)
        return m
