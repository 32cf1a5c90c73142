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
second operand of a layer with a shortcut (identity or projection: a vector per block of
channels and position), and reads the output vectors; each word is ``ceil(width / 8)``
bytes, each command two bytes and its ``ACK`` one, cut as ``hw.host_bridge.HostLink`` cuts
them. ``bench/link.py`` counts the same words from the host's code (equal to these) and
measures the bridge's clocks a byte in simulation: the line's ``10 * clk / baud``, within 1 %
(the bridge sends its bits in whole clocks: 33 at 3 Mbaud and 100 MHz, not 33.3).
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


FIFO_DEPTH = 512      # the bridge's receive FIFO on the board (hw.board_top.BoardTop)


def _command_bytes(words, word_bytes, write=True):
    """A transfer of ``words`` words: their bytes, and two bytes and an ``ACK`` a command, as
    ``hw.host_bridge.HostLink`` cuts it: a READ at most 256 words, a WRITE at most
    ``FIFO_DEPTH - 2`` bytes of words."""
    per = min(256, max(1, (FIFO_DEPTH - 2) // max(word_bytes, 1))) if write else 256
    return words * word_bytes + 3 * -(-words // per) if words else 0


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
    if bundle.residual_kind(i)[0] != "none":
        # the second operand (an identity shortcut's codes or a projection's z): a vector of
        # a block of channels per position, before any pooling (sim.cosim.CosimPlan)
        send += _command_bytes(blocks * size * shape.positions,
                               _word_bytes(residual_layout(config.cols)))
    receive = blocks * _command_bytes(size * shape.out_positions,
                                      _word_bytes(output_layout(config.cols)), write=False)
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


def _default_baud(b, hz):
    try:
        return b.uart_baud(hz)
    except ValueError as e:
        raise UsageError(f"no host link at {hz / 1e6:g} MHz: {e}; give --baud") from None


def estimate(bundle, config, *, board="ulx3s-25f", clock_mhz=100.0, baud=None, table=None):
    """The figures of ``bundle`` on ``config`` at ``clock_mhz`` on ``board`` (a name of
    ``gen.boards.BOARDS``): a dictionary (``asqgen estimate --json`` writes it). ``baud``:
    the host link's; by default the board's at that clock (``Board.uart_baud``)."""
    b = board_of(board)
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise UsageError(f"the clock must be a frequency in MHz above 0, not {clock_mhz!r}")
    hz = clock_mhz * 1e6
    if baud:
        from hw.uart import divisor
        try:
            divisor(hz, baud)
        except (ValueError, TypeError) as e:
            raise UsageError(f"the host link: {e}") from None
    baud = baud or _default_baud(b, hz)
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


def _choices(sized, max_m, lanes):
    """``sized`` with each number of rescale lanes that divides its columns (``lanes`` only,
    when given) and passes of one, two and four times ``max_m`` positions, the smallest
    first."""
    for n in [d for d in ((1, 2, 3, 4, 6, 8) if lanes is None else (lanes,))
              if sized.cols % d == 0]:
        for scale in (1, 2, 4):
            m = min(MAX_POSITIONS, max_m * scale)
            if scale > 1 and m == max_m:
                continue
            try:
                yield sized.replace(rescale_lanes=n, max_m=m)
            except (ValueError, TypeError):
                continue


def propose(bundle, *, board="ulx3s-25f", clock_mhz=100.0, table=None, sizes=SIZES,
            lanes=None, baud=None):
    """The configuration of ``bundle`` with the most engine images/s (the smaller logic breaks
    ties) whose estimated resources fit ``board``: ``(config, estimate)``,
    or ``(None, None)`` when none of the sizes fits. It tries ``rows x cols`` of ``sizes``,
    rescale lanes that divide ``cols`` (up to 8), and passes of one to four times the bundle's
    largest layer's positions (larger batches for the smaller layers)."""
    b = board_of(board)
    base = config_for_bundle(bundle, rows=8, cols=8)
    widths = base.rescale_widths                    # the bundle's, whatever the array
    macs = sum(s.positions * s.k * s.n for s in
               (layer_shape(bundle, i, base) for i in range(len(bundle.layers))))
    best = None
    hz = clock_mhz * 1e6
    # The largest arrays first; an array that cannot beat the best so far even at 100 %
    # utilisation (``macs / (rows cols)`` clocks) is not modelled, nor are more lanes or
    # longer passes of one whose smallest choice does not fit (they only add resources).
    arrays = sorted(((r, c) for r in sizes for c in sizes if r <= MAX_DIM and c <= MAX_DIM),
                    key=lambda rc: -rc[0] * rc[1])
    for rows, cols in arrays:
        if best is not None and hz * rows * cols / macs < best[0][0]:
            continue
        try:
            sized = config_for_bundle(bundle, rows=rows, cols=cols, widths=widths)
        except (ValueError, TypeError):
            continue
        for i, config in enumerate(_choices(sized, base.max_m, lanes)):
            res = estimate_resources(config, b, table=table)
            if not res["fits"]:
                if i == 0:
                    break
                continue
            cycles = sum(layer_cycles(config, layer_shape(bundle, j, config), SAMPLES).per_sample
                         for j in range(len(bundle.layers)))
            score = (hz / cycles, -res["logic"])
            if best is None or score > best[0]:
                best = (score, config)
    if best is None:
        return None, None
    config = best[1]
    return config, estimate(bundle, config, board=board, clock_mhz=clock_mhz, table=table,
                            baud=baud)
