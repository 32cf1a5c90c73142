"""``asqgen estimate``'s library: a bundle's speed on an engine configuration, from the cycle
model (``gen.cycles``), the host link's bytes, and the engine's resources on a board's part
(``gen.resources``), with no tool run; and the configuration that runs a bundle fastest on a
board.

Per layer it gives the clocks per image (the cycle model, which the suite holds to the RTL
within 2 %), the array's utilisation, and the bottleneck, the largest of three times per
image: the array's (the clocks in which an activation vector enters it, and the weights'
loads between tiles), the rescale unit's (it drains a vector of ``cols`` sums in ``cols /
rescale_lanes`` clocks, and its per-sample work), and the host link's (the layer's words over
the UART, ``link_bytes``).

The host link is the board's: ``hw.host_bridge`` over ``hw.uart`` (8N1, ten bits a byte), one
command at a time, so the bytes in and out add up. For each layer the host sends its
parameters (once a batch here: an upper bound), each sample's ``beta``, per pass the weight
rows, the pass descriptor and the activation vectors (the host does the im2col), the
residual operand of a layer with an identity shortcut, and reads the output vectors; each word
is ``ceil(width / 8)`` bytes, each command of up to 256 words two bytes and its ``ACK`` one.
"""

import math
from dataclasses import dataclass

from amaranth.lib import data

from core.config import MAX_DIM
from core.errors import UsageError
from core.rules import MAX_POSITIONS
from core.sizing import config_for_bundle

from .boards import board as board_of
from .cycles import _passes_per_block, layer_cycles, layer_shape
from .resources import estimate_resources

__all__ = ["LayerEstimate", "link_bytes", "estimate", "propose", "SAMPLES"]

SAMPLES = 64          # images the cycle model runs per layer (steady state, several batches)
BITS_PER_BYTE = 10    # 8N1


@dataclass
class LayerEstimate:
    name: str
    cycles: float          # clocks per image (the cycle model)
    utilisation: float
    array: float           # clocks per image in the array
    rescale: float         # clocks per image in the rescale unit
    link_in: float         # bytes per image to the engine
    link_out: float        # bytes per image from it
    batch: int
    macs: float            # multiply-accumulates per image

    def link_clocks(self, clock_hz, baud):
        return (self.link_in + self.link_out) * BITS_PER_BYTE / baud * clock_hz

    def bottleneck(self, clock_hz=None, baud=None):
        """``"array"``, ``"rescale lanes"`` or (given the clock and baud) ``"host link"``."""
        times = {"array": self.array, "rescale lanes": self.rescale}
        if clock_hz and baud:
            times["host link"] = self.link_clocks(clock_hz, baud)
        return max(times, key=times.get)


def _width(layout):
    return data.Layout.cast(layout).size if not isinstance(layout, int) else layout


def _word_bytes(layout):
    return -(-_width(layout) // 8)


def _command_bytes(words, word_bytes):
    """A transfer of ``words`` words: their bytes, two bytes and an ``ACK`` per 256."""
    return words * word_bytes + 3 * -(-words // 256) if words else 0


def link_bytes(bundle, i, config, size):
    """``(in, out)``: the host link's bytes for a batch of ``size`` samples of layer ``i``."""
    from hw.accumulator import pass_layout
    from hw.rescale_layouts import beta_layout, output_layout, param_layout, residual_layout
    from hw.systolic_array import activation_layout, weight_layout

    shape = layer_shape(bundle, i, config)
    blocks = -(-shape.n // config.cols)
    passes = sum(_passes_per_block(config, shape, b) for b in range(blocks))
    m = size * shape.positions
    send = (_command_bytes(shape.param_words, _word_bytes(param_layout(config.index_bits)))
            + _command_bytes(size, _word_bytes(beta_layout()))
            + passes * (_command_bytes(config.rows, _word_bytes(weight_layout(config)))
                        + _command_bytes(1, _word_bytes(pass_layout(config)))
                        + _command_bytes(m, _word_bytes(activation_layout(config)))))
    if bundle.residual_kind(i)[0] == "identity":
        send += blocks * _command_bytes(size * shape.out_positions,
                                        _word_bytes(residual_layout(config.cols)))
    receive = blocks * _command_bytes(size * shape.out_positions,
                                      _word_bytes(output_layout(config.cols)))
    return send, receive


def _layers(bundle, config, samples=SAMPLES):
    out = []
    steps = config.cols // config.rescale_lanes
    for i, layer in enumerate(bundle.layers):
        shape = layer_shape(bundle, i, config)
        c = layer_cycles(config, shape, samples)
        size = config.batch_for(shape.positions)
        blocks = -(-shape.n // config.cols)
        passes = sum(_passes_per_block(config, shape, b) for b in range(blocks))
        # the array: its vectors, and a tile's weights when its vectors are fewer than the
        # array's fill (max(M, rows + cols) a tile, gen.cycles)
        m = size * shape.positions
        array = passes * max(m, config.rows + config.cols) / size
        rescale = blocks * shape.positions * steps
        link_in, link_out = link_bytes(bundle, i, config, size)
        out.append(LayerEstimate(
            name=layer.name, cycles=c.per_sample, utilisation=c.utilisation, array=array,
            rescale=rescale, link_in=link_in / size, link_out=link_out / size, batch=size,
            macs=c.ideal * config.rows * config.cols / samples))
    return out


def estimate(bundle, config, *, board="ulx3s-25f", clock_mhz=100.0, baud=None, table=None):
    """The figures of ``bundle`` on ``config`` at ``clock_mhz`` on ``board`` (a name of
    ``gen.boards.BOARDS``): a dictionary (``asqgen estimate --json`` writes it)."""
    b = board_of(board)
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise UsageError(f"the clock must be a frequency in MHz above 0, not {clock_mhz!r}")
    baud = baud or b.uart_baud
    hz = clock_mhz * 1e6
    layers = _layers(bundle, config)
    cycles = sum(l.cycles for l in layers)
    link = sum(l.link_clocks(hz, baud) for l in layers)
    macs = sum(l.macs for l in layers)
    engine_ips = hz / cycles
    # On the board the host's link and the engine take turns in this model (the host writes a
    # layer's inputs, then reads its outputs), so their times add.
    board_ips = hz / (cycles + link)
    res = estimate_resources(config, b, table=table)
    return {
        "board": b.name, "device": b.device, "clock_mhz": clock_mhz, "baud": baud,
        "config": {k: v for k, v in config.as_dict().items()},
        "layers": [{"name": l.name, "cycles_per_image": round(l.cycles, 3),
                    "utilisation": round(l.utilisation, 4), "batch": l.batch,
                    "array_cycles": round(l.array, 1), "rescale_cycles": round(l.rescale, 1),
                    "link_cycles": round(l.link_clocks(hz, baud), 1),
                    "link_bytes_in": round(l.link_in, 1), "link_bytes_out": round(l.link_out, 1),
                    "bottleneck_engine": l.bottleneck(),
                    "bottleneck_board": l.bottleneck(hz, baud),
                    "macs": round(l.macs)} for l in layers],
        "cycles_per_image": round(cycles, 3),
        "macs_per_image": round(macs),
        "engine": {"images_per_s": round(engine_ips, 2),
                   "gops": round(2 * macs * engine_ips / 1e9, 4),
                   "gops_per_klut": round(2 * macs * engine_ips / 1e9 / (res["comb"] / 1e3), 4)},
        "board_link": {"images_per_s": round(board_ips, 4),
                       "gops": round(2 * macs * board_ips / 1e9, 6),
                       "link_bytes_per_image": round(sum(l.link_in + l.link_out
                                                         for l in layers))},
        "resources": res,
    }


SIZES = (2, 4, 8, 12, 16, 24, 32)


def propose(bundle, *, board="ulx3s-25f", clock_mhz=100.0, table=None, sizes=SIZES,
            lanes=None, baud=None):
    """The configuration of ``bundle`` with the most engine images/s (the smaller logic breaks
    ties) whose estimated resources fit ``board``: ``(config, estimate)``,
    or ``(None, None)`` when none of the sizes fits. It tries ``rows x cols`` of ``sizes``,
    rescale lanes that divide ``cols`` (up to 8), and passes of one to four times the bundle's
    largest layer's positions (larger batches for the smaller layers)."""
    b = board_of(board)
    base = config_for_bundle(bundle, rows=8, cols=8)
    best = None
    hz = clock_mhz * 1e6
    for rows in sizes:
        for cols in sizes:
            if rows > MAX_DIM or cols > MAX_DIM:
                continue
            try:
                sized = config_for_bundle(bundle, rows=rows, cols=cols)
            except (ValueError, TypeError):
                continue
            choices = (1, 2, 3, 4, 6, 8) if lanes is None else (lanes,)
            for n in [d for d in choices if cols % d == 0]:
                for scale in (1, 2, 4):
                    max_m = min(MAX_POSITIONS, base.max_m * scale)
                    if scale > 1 and max_m == base.max_m:
                        continue
                    try:
                        config = sized.replace(rescale_lanes=n, max_m=max_m)
                    except (ValueError, TypeError):
                        continue
                    res = estimate_resources(config, b, table=table)
                    if not res["fits"]:
                        continue
                    cycles = sum(layer_cycles(config, layer_shape(bundle, i, config),
                                              SAMPLES).per_sample
                                 for i in range(len(bundle.layers)))
                    score = (hz / cycles, -res["logic"])
                    if best is None or score > best[0]:
                        best = (score, config)
    if best is None:
        return None, None
    config = best[1]
    return config, estimate(bundle, config, board=board, clock_mhz=clock_mhz, table=table,
                            baud=baud)
