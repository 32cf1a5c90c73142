"""The systolic array with its accumulator buffer: any ``K`` (passes over blocks of ``rows``),
any ``N`` (passes over blocks of ``cols``), and 8-bit ``int`` weights as signed-digit terms
(``core.signed_digits``)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import (AccumulatorBuffer, accumulator_layout, check_engine_array,
                          pass_layout)
from .skid import SkidBuffer
from .systolic_array import SystolicArray, activation_layout, result_layout, weight_layout

__all__ = ["MatmulEngine"]


class MatmulEngine(wiring.Component):
    """``SystolicArray`` -> ``AccumulatorBuffer``.

    The accumulator's ``ready`` (a bank still being read out, a late descriptor) reaches only
    the array's result queue, through a skid buffer (``hw.skid``: its ``ready`` a register,
    so no combinational path runs between the two, which on a part lie apart, the array
    among the logic and the buffer by its block RAM): the array stops taking activations when
    the queue would fill.

    Each pass is an array tile (``rows`` weight rows on ``i_w``, ``M`` activation vectors on
    ``i_a``) and one descriptor on ``i_pass``; a ``final`` pass sends its ``M`` sums out on
    ``o_acc``. See ``hw.systolic_array`` and ``hw.accumulator`` for the streams;
    ``wait_weights`` is the array's (a tile's first activation waits for its weights).
    """

    def __init__(self, *, config):
        check_engine_array(config)
        self._config = config
        super().__init__({
            "i_w": In(stream.Signature(weight_layout(config))),
            "i_a": In(stream.Signature(activation_layout(config))),
            "i_pass": In(stream.Signature(pass_layout(config))),
            "o_acc": Out(stream.Signature(accumulator_layout(config))),
            "wait_weights": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = SystolicArray(config=self._config)
        m.submodules.buffer = buffer = AccumulatorBuffer(config=self._config)
        wiring.connect(m, wiring.flipped(self.i_w), array.i_w)
        wiring.connect(m, wiring.flipped(self.i_a), array.i_a)
        wiring.connect(m, wiring.flipped(self.i_pass), buffer.i_pass)
        m.submodules.skid = skid = SkidBuffer(result_layout(self._config))
        wiring.connect(m, array.o_r, skid.i)
        wiring.connect(m, skid.o, buffer.i_r)
        wiring.connect(m, buffer.o_acc, wiring.flipped(self.o_acc))
        m.d.comb += self.wait_weights.eq(array.wait_weights)
        return m
