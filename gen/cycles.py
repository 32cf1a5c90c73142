"""The cycle model: every layer's clocks on the layer engine from its shape, the batch and the
array configuration, with no simulation of the hardware.

It follows the engine's schedule pass by pass (``hw.systolic_array``, ``hw.accumulator``,
``hw.rescale_unit``), as a recurrence of start times, for a run without stalls:

* the array starts a tile when its weights are in the shadow registers and the previous tile's
  ``M`` vectors have entered: ``rows`` clocks of weights before the first tile, then
  ``max(M, rows + cols)`` clocks a tile (a tile's weights start loading ``cols`` clocks after
  the previous tile started);
* a tile's results leave the array ``latency = rows + cols + 4`` clocks after its vectors
  (the pipeline and its result queue); a block of columns is complete in its accumulator bank
  four clocks after its last result (the skid buffer before the bank, read, add and write),
  and the first pass of a block waits when it finds its bank still being read (the bank of
  the block before the previous one): counted as if the array started it so that its first
  result arrives as the bank frees (the array's queue lets it run a few vectors ahead, which
  this ignores);
* the rescale unit reads a complete bank one vector every ``cols / rescale_lanes`` clocks
  (a slice of ``rescale_lanes`` values a clock), the first bank of a batch once its parameters
  are in; after the last block of a batch its pipeline empties (``Affine``'s latency and a few
  stages) and it works through the batch's samples one by one: the adapter's hidden layer
  (``hidden x (channels + pipeline)``), its ``beta`` (``inputs + pipeline``), the reciprocal
  (``DIV_BITS`` and a few clocks) and the outputs (one slice a clock, then the
  ``Requantizer``'s latency; a layer that ends in a global pooling sends one position a sample,
  its sums ``S``); the next batch's first bank waits for it. The clip and average pooling
  (bundle format 3) take no clock of their own. The latencies are the
  hardware's own (``hw.rescale_stages``).

``tests/test_network_rtl.py`` (``test_cycle_model_matches_the_rtl``) and
``tests/test_residual.py`` hold the model to the RTL's counters: within 2 % on every layer of
every network in the suite (``sim.report`` prints both).
"""

import math
from dataclasses import dataclass

from core import regmap
from core.rescale import MANTISSA_BITS, RECIP_BITS
from core.signed_digits import digit_rows
from core.tiles import depthwise_rows, live_tiles
from hw.rescale_activation import Activation
from hw.rescale_stages import Product, Requantizer, Rounder

__all__ = ["LayerShape", "LayerCycles", "layer_cycles", "network_cycles", "layer_shape"]

DIV_BITS = MANTISSA_BITS + RECIP_BITS      # the reciprocal's quotient bits (hw.rescale_stages)


@dataclass(frozen=True)
class LayerShape:
    """What the model needs of a layer: ``positions`` (rows of ``A`` per sample), ``k``, ``n``
    (channels), the weights' format and bits, outputs per sample (``out_positions`` per
    channel), the adapter (``"none"``, ``"one"``, ``"two"``), its ``hidden`` units, whether it
    is the last layer, and its parameter words."""

    positions: int
    k: int
    n: int
    w_format: str
    w_bits: int
    out_positions: int
    adapter: str = "none"
    hidden: int = 0
    final: bool = False
    param_words: int = 0
    groups: int = 1        # a depthwise conv's channels: ``k`` rows of ``A`` per channel


@dataclass
class LayerCycles:
    """A layer's clocks for ``samples`` samples: ``clocks`` in all (the model), ``mac`` (clocks
    with an activation vector entering the array), ``ideal`` (``M K N / (rows cols)``, ``K``
    the products of one output: ``k * k`` for a depthwise conv, whose ideal is then
    ``M k k C / (rows cols)``, not that of its zero-padded matrix)."""

    clocks: int
    mac: int
    ideal: float
    samples: int

    @property
    def per_sample(self):
        return self.clocks / self.samples

    @property
    def utilisation(self):
        return self.ideal / self.clocks


def layer_shape(bundle, i, config):
    """The ``LayerShape`` of layer ``i`` of ``bundle`` (``core.bundle.Bundle``)."""
    layer = bundle.layers[i]
    channels, height, width = ((layer.out_channels, 1, 1) if layer.kind == "linear"
                               else layer.conv_shape)
    fixed = layer.fixed
    residual, _ = bundle.residual_kind(i)
    words = regmap.encode(fixed, channels=channels, height=height, width=width,
                          pool=layer.pool, relu=layer.relu, max_channels=config.max_channels,
                          index_bits=config.index_bits, residual=residual,
                          shortcut=layer.shortcut_fixed if residual == "identity" else None,
                          pool_mode=layer.pool_mode, global_pool=layer.global_pool)
    hidden = fixed.w1_q.shape[0] if fixed.adapter == "two" else 0
    return LayerShape(positions=layer.positions, k=layer.k, n=channels, groups=layer.groups,
                      w_format=layer.w_format, w_bits=layer.w_bits,
                      out_positions=math.prod(tuple(layer.out_shape)[1:]),
                      adapter=fixed.adapter, hidden=hidden, final=fixed.next_bits is None,
                      param_words=len(words))


def _passes_per_block(config, shape, block=0):
    """Passes of block ``block`` of columns: blocks of ``rows`` of ``K`` (stacked digit terms
    for ``int`` weights on a ``post``/``pot`` array, each window a pass of its own); for a
    depthwise conv only those that meet the block's own channels' rows (``core.tiles``, as
    ``sim.engine_sim.pass_plan`` sends them)."""
    rows = config.rows
    same = shape.w_format == config.w_format and shape.w_bits == config.w_bits
    windows, terms = (1, 1) if same else digit_rows(config, shape.w_bits)
    if shape.groups > 1:
        length = shape.k * shape.n
        lo, hi = depthwise_rows(shape.k, block * config.cols, config.cols, shape.n)
        return windows * len(live_tiles(length, rows, lo, hi, terms))
    return windows * -(-shape.k * terms // rows)


def _latencies(config):
    """The rescale unit's pipeline latencies (``hw.rescale_stages``): the affine map, the
    adapter's multiply-accumulate and its rounding, the requantizer."""
    w = config.widths
    acc = min(config.buffer_bits, w.acc)
    affine = Activation.latency(acc, w, config.residual) - 2
    mac = Product.plan(*Requantizer.shapes(w.value, w.recip))[2]       # lane 0's, lent
    return affine, mac + Rounder.LATENCY, Requantizer.latency(w.value, w.recip)


def _tail(config, shape):
    """Clocks of the rescale unit's work on one sample after its batch's last block (its
    state machine, ``hw.rescale_unit``, clock by clock)."""
    _, mac, requantizer = _latencies(config)
    steps = config.cols // config.rescale_lanes
    blocks = -(-shape.n // config.cols)
    out = blocks * shape.out_positions * steps + requantizer + 4   # slices, the last leaving
    if shape.final:
        return 1 + out
    work = 1 + DIV_BITS + 2 + out                           # sample, divide, outputs
    if shape.adapter == "two":                              # each dot product, then beta's
        work += shape.hidden * (shape.n + mac + 4) + shape.hidden + mac + 5
    elif shape.adapter == "one":
        work += shape.n + mac + 5
    return work


def _run(config, shape, batches, size):
    """Clocks of one harness run: ``batches`` batches of ``size`` samples each."""
    rows, cols = config.rows, config.cols
    latency = config.latency
    steps = cols // config.rescale_lanes
    affine, _, _ = _latencies(config)
    m = size * shape.positions
    blocks = -(-shape.n // cols)
    tail = _tail(config, shape)

    start = None            # the current tile's start
    free = [0, 0]           # when each accumulator bank is free again
    unit = shape.param_words + 2     # when the rescale unit can take the next bank
    block_no = 0
    last_out = 0
    for _ in range(batches):
        for b in range(blocks):
            bank = block_no % 2
            for p in range(_passes_per_block(config, shape, b)):
                if start is None:
                    begin = rows
                else:
                    begin = start + max(m, rows + cols)
                if p == 0:   # the first result waits for its bank
                    begin = max(begin, free[bank] - latency)
                start = begin
            complete = start + m - 1 + latency + 4     # the bank holds the block
            first_batch_block = b == 0
            take = max(complete + 1, unit + (1 if first_batch_block else 0))
            free[bank] = take + (m - 1) * steps + 1
            unit = take + m * steps                 # a vector every ``steps`` clocks
            block_no += 1
        # The pipeline empties, then the batch's samples, one after another.
        unit += affine + 9 + size * tail
        last_out = unit
    return last_out


def layer_cycles(config, shape, samples):
    """The ``LayerCycles`` of ``samples`` samples of ``shape`` (runs as ``sim.cosim``
    packs them: batches of ``config.batch_for(positions)``, a last smaller batch)."""
    size = config.batch_for(shape.positions)
    full, rest = divmod(samples, size)
    clocks = 0
    if full:
        clocks += _run(config, shape, full, size)
    if rest:
        clocks += _run(config, shape, 1, rest)
    passes = sum(_passes_per_block(config, shape, b) for b in range(-(-shape.n // config.cols)))
    mac = samples * shape.positions * passes
    ideal = samples * shape.positions * shape.k * shape.n / (config.rows * config.cols)
    return LayerCycles(clocks=clocks, mac=mac, ideal=ideal, samples=samples)


def network_cycles(bundle, config, samples):
    """``{layer name: LayerCycles}`` of a bundle for ``samples`` samples."""
    return {layer.name: layer_cycles(config, layer_shape(bundle, i, config), samples)
            for i, layer in enumerate(bundle.layers)}
