"""The host side of the rescale unit: a layer's parameter words, its samples' ``beta_in`` and
accumulator vectors (the samples of a batch stacked, as the accumulator buffer sends them), the
output vectors back in the golden model's order; running batches on Verilator."""

from dataclasses import dataclass

import numpy as np

from core import regmap
from hw.rescale_unit import (RescaleUnit, acc_layout, beta_layout, output_layout,
                             param_layout, residual_layout)

from hw.rescale_stages import Requantizer

from .design import Design
from .payload import Payload

__all__ = ["RescaleSim", "Sample", "acc_vectors", "param_words", "output_order", "signed_codes",
           "as_sent"]

TOP = "asq_rescale"


@dataclass
class Sample:
    """One sample of one layer: its accumulators ``acc`` (``(C, H, W)``, or ``(C,)``), the
    ``beta_in`` of its input, and the layer's ``LayerRescale``, ReLU and pooling; for a layer
    with a shortcut, ``residual`` (``"identity"`` or ``"projection"``, ``core.regmap``), the
    operand (the shape of ``acc``: codes, or a projection's ``z``), the identity shortcut's
    ``LayerRescale`` and its ``beta``; ``pool_mode`` (``"max"`` or ``"avg"``: the window's
    sum) and ``global_pool`` (the outputs are the channel sums requantized, one position). The
    clip is ``fixed.clip_q``'s, signed output codes ``fixed.next_signed``'s; ``res_signed``: the
    identity shortcut's codes are signed."""

    acc: np.ndarray
    beta_in: int
    fixed: object
    relu: bool
    pool: int
    residual: str = "none"
    operand: np.ndarray | None = None
    shortcut: object = None
    res_beta: int = 1
    pool_mode: str = "max"
    global_pool: bool = False
    res_signed: bool = False


def signed_codes(values):
    """Signed output codes as the host reads them from ``o_out``: each value's low
    ``Requantizer.CODE_BITS`` bits, two's complement (``hw.rescale_output.Output``)."""
    bits = Requantizer.CODE_BITS
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    return v - ((v >> (bits - 1)) << bits)


def as_sent(codes, signed):
    """An identity shortcut's codes as the host sends them on ``i_res``: as ``o_out`` gave
    them (signed codes in their low ``CODE_BITS`` bits; the unit sign-extends them)."""
    codes = np.asarray(codes, dtype=np.int64)
    return codes & ((1 << Requantizer.CODE_BITS) - 1) if signed else codes


def acc_vectors(accs, lanes):
    """The vectors of a batch's accumulators (``(B, C, H, W)``) in the unit's order: for each
    block of ``lanes`` channels, for each sample, for each position row by row; channels past
    ``C`` are 0. Returns ``(vectors, lasts)``: ``last`` on each block's final vector."""
    b, c = accs.shape[:2]
    flat = accs.reshape(b, c, -1)
    blocks = -(-c // lanes)
    padded = np.zeros((b, blocks * lanes, flat.shape[2]), dtype=np.int64)
    padded[:, :c] = flat
    # (blocks, B, P, lanes)
    vectors = padded.reshape(b, blocks, lanes, -1).transpose(1, 0, 3, 2)
    per_block = b * flat.shape[2]
    lasts = np.zeros(blocks * per_block, dtype=np.int64)
    lasts[per_block - 1::per_block] = 1
    return vectors.reshape(-1, lanes), lasts


def output_order(values, channels, positions, lanes):
    """One sample's output vectors (``(blocks * positions, lanes)``: block by block, position
    by position) as the golden model's flat ``(channels * positions)`` order."""
    blocks = -(-channels // lanes)
    v = np.asarray(values, dtype=np.int64).reshape(blocks, positions, lanes)
    return v.transpose(0, 2, 1).reshape(blocks * lanes, positions)[:channels].reshape(-1)


def param_words(fixed, *, channels, height, width, pool, relu, max_channels, index_bits,
                residual="none", shortcut=None, pool_mode="max", global_pool=False,
                res_signed=False):
    """A layer's ``i_param`` words as ``(address, value, last)``: ``core.regmap.encode``'s, the
    final one marked ``last``."""
    words = regmap.encode(fixed, channels=channels, height=height, width=width, pool=pool,
                          relu=relu, max_channels=max_channels, index_bits=index_bits,
                          residual=residual, shortcut=shortcut, pool_mode=pool_mode,
                          global_pool=global_pool, res_signed=res_signed)
    return [(a, v, int(i == len(words) - 1)) for i, (a, v) in enumerate(words)]


class RescaleSim(Design):
    """A rescale unit built for Verilator under ``root`` (for ``platform``: see ``Design``)."""

    def __init__(self, root, *, cols, acc_bits, max_channels, max_positions, max_hidden,
                 max_batch=1, lanes=None, platform=None):
        self.cols, self.acc_bits, self.max_channels = cols, acc_bits, max_channels
        unit = RescaleUnit(cols=cols, lanes=lanes, acc_bits=acc_bits, max_channels=max_channels,
                           max_positions=max_positions, max_hidden=max_hidden,
                           max_batch=max_batch)
        super().__init__(unit, root, TOP, platform=platform)
        self.index_bits = unit.index_bits
        self._param = Payload(param_layout(unit.index_bits))
        self._beta = Payload(beta_layout())
        self._res = Payload(residual_layout(cols))
        self._acc = Payload(acc_layout(cols, acc_bits))
        self._out = Payload(output_layout(cols))

    @staticmethod
    def _shape(s):
        acc = s.acc.reshape(s.acc.shape[0], 1, 1) if s.acc.ndim == 1 else s.acc
        c, h, w = acc.shape
        if s.global_pool:
            return acc, c, h, w, 1
        return acc, c, h, w, (h // s.pool) * (w // s.pool) if s.pool > 1 else h * w

    def step(self, batch):
        """The stream words of ``batch`` (samples of one layer: same parameters and shape): the
        layer's parameters first, then the samples' ``beta_in`` and accumulators."""
        first = batch[0]
        acc, c, h, w, outputs = self._shape(first)
        words = param_words(first.fixed, channels=c, height=h, width=w, pool=first.pool,
                            relu=first.relu, max_channels=self.max_channels,
                            index_bits=self.index_bits, residual=first.residual,
                            shortcut=first.shortcut, pool_mode=first.pool_mode,
                            global_pool=first.global_pool, res_signed=first.res_signed)
        vectors, lasts = acc_vectors(np.stack([self._shape(s)[0] for s in batch]), self.cols)
        blocks = -(-c // self.cols)
        send = {"i_beta": [self._beta.pack({"beta": regmap.check_beta(s.beta_in),
                                            "res": regmap.check_beta(s.res_beta)})
                           for s in batch],
                "i_acc": [self._acc.pack({"data": v, "last": x})
                          for v, x in zip(vectors.tolist(), lasts.tolist())]}
        if first.residual != "none":
            operands, _ = acc_vectors(np.stack([
                as_sent(s.operand, s.res_signed).reshape(self._shape(s)[0].shape)
                for s in batch]), self.cols)
            send["i_res"] = [self._res.pack({"data": v}) for v in operands.tolist()]
        return {"first": {"i_param": [self._param.pack({"addr": a, "value": v, "last": x})
                                      for a, v, x in words]},
                "send": send, "receive": {"o_out": len(batch) * blocks * outputs}}

    def run(self, batches, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """Run ``batches`` (lists of ``Sample``); per sample ``{"values", "betas", "lasts"}``
        (values in the golden model's order, ``betas`` and ``lasts`` per output vector), and
        the clocks of the whole run."""
        steps = self.run_streams([self.step(b) for b in batches],
                                 sources=("i_param", "i_beta", "i_res", "i_acc"),
                                 sinks=("o_out",),
                                 seed=seed, stall=stall, backpressure=backpressure, name=name)
        results = []
        for batch, (received, _) in zip(batches, steps):
            out = [self._out.unpack(w) for w in received["o_out"]]
            _, c, _, _, positions = self._shape(batch[0])
            per = len(out) // len(batch)
            signed = bool(batch[0].fixed.next_signed) and batch[0].fixed.next_bits is not None
            for i in range(len(batch)):
                mine = out[i * per:(i + 1) * per]
                values = output_order([o["value"] for o in mine], c, positions, self.cols)
                results.append({
                    "values": (signed_codes(values) if signed else values).tolist(),
                    "betas": [o["beta"] for o in mine], "lasts": [o["last"] for o in mine]})
        return results, sum(cycles for _, cycles in steps)
