"""The host side of the rescale unit: its parameter words and accumulator vectors for a
sample, and running samples on Verilator."""

from dataclasses import dataclass

import numpy as np

from gen import regmap
from hw.rescale_unit import RescaleUnit, acc_layout, output_layout, param_layout

from .design import Design
from .payload import Payload

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


class RescaleSim(Design):
    """A rescale unit built for Verilator under ``root``."""

    def __init__(self, root, *, lanes, acc_bits, max_channels, max_positions, max_hidden):
        self.lanes, self.acc_bits, self.max_channels = lanes, acc_bits, max_channels
        unit = RescaleUnit(lanes=lanes, acc_bits=acc_bits, max_channels=max_channels,
                           max_positions=max_positions, max_hidden=max_hidden)
        super().__init__(unit, root, TOP)
        self._param = Payload(param_layout())
        self._acc = Payload(acc_layout(lanes, acc_bits))
        self._out = Payload(output_layout())

    def step(self, s: Sample):
        """The stream words of sample ``s``: its parameters first, then its accumulators."""
        acc = s.acc.reshape(s.acc.shape[0], 1, 1) if s.acc.ndim == 1 else s.acc
        c, h, w = acc.shape
        words = regmap.encode(s.fixed, channels=c, height=h, width=w, pool=s.pool, relu=s.relu,
                              max_channels=self.max_channels)
        words.append(regmap.beta_in_word(s.beta_in))
        outputs = c * (h // s.pool) * (w // s.pool) if s.pool > 1 else c * h * w
        return {"first": {"i_param": [self._param.pack({"addr": a, "value": v})
                                      for a, v in words]},
                "send": {"i_acc": [self._acc.pack({"data": v, "last": 0})
                                   for v in acc_vectors(acc, self.lanes)]},
                "receive": {"o_out": outputs}}

    def outputs(self, words):
        """``o_out`` words as ``{"values", "betas", "lasts"}``."""
        out = [self._out.unpack(w) for w in words]
        return {"values": [o["value"] for o in out], "betas": [o["beta"] for o in out],
                "lasts": [o["last"] for o in out]}

    def run(self, samples, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """``[{"values", "betas", "lasts"}]`` per sample, and the clocks of the whole run."""
        steps = self.run_streams([self.step(s) for s in samples], sources=("i_param", "i_acc"),
                                 sinks=("o_out",), seed=seed, stall=stall,
                                 backpressure=backpressure, name=name)
        return ([self.outputs(received["o_out"]) for received, _ in steps],
                sum(cycles for _, cycles in steps))
