"""The layer engine: the matmul engine (systolic array + accumulator buffer) feeding the
rescale unit. The host sends, per layer and sample, the rescale parameters and ``beta_in``
(``i_param``), then the passes (``i_w``, ``i_a``, ``i_pass``), and receives the next layer's
codes with the sample's ``beta`` (``o_out``); it does im2col and sequences the layers."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import check_engine_array, pass_layout
from .matmul_engine import MatmulEngine
from .rescale_unit import RescaleUnit, output_layout, param_layout
from .systolic_array import activation_layout, weight_layout

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """``MatmulEngine`` -> ``RescaleUnit``, sized by ``config`` (``gen.config.ArrayConfig``:
    ``max_m`` positions and ``max_channels`` channels per sample, ``max_hidden`` adapter units).
    """

    def __init__(self, *, config):
        check_engine_array(config)
        self._config = config
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_w": In(stream.Signature(weight_layout(config))),
            "i_a": In(stream.Signature(activation_layout(config))),
            "i_pass": In(stream.Signature(pass_layout())),
            "o_out": Out(stream.Signature(output_layout())),
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.engine = engine = MatmulEngine(config=cfg)
        m.submodules.rescale = unit = RescaleUnit(
            lanes=cfg.cols, acc_bits=cfg.buffer_bits, max_channels=cfg.max_channels,
            max_positions=cfg.max_m, max_hidden=cfg.max_hidden)
        for name in ("i_w", "i_a", "i_pass"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(engine, name))
        wiring.connect(m, wiring.flipped(self.i_param), unit.i_param)
        m.d.comb += [
            unit.i_acc.valid.eq(engine.o_acc.valid),
            engine.o_acc.ready.eq(unit.i_acc.ready),
            unit.i_acc.payload.data.eq(engine.o_acc.payload.data),
            unit.i_acc.payload.last.eq(engine.o_acc.payload.last),
        ]
        wiring.connect(m, unit.o_out, wiring.flipped(self.o_out))
        return m
