# amaranth: UnusedElaboratable=no
"""The board's host link, measured: the UART bridge's clocks per command in Amaranth's
simulator, the words a host sends and reads per image, and the board's images/s end to end
beside the engine's.

    ./dev python bench/link.py                          # both bundles, 115200 and 3 Mbaud
    ./dev python bench/link.py --bauds 3000000 --bundles export/models/resnet8

(a) Measured: ``hw.host_bridge.HostBridge`` (its UART, receive FIFO, skid buffers) in
Amaranth's simulator, in front of a target that takes and offers a word on every clock, so the
bridge and the serial line are all that is timed. A host at exactly the baud rate (``clk /
baud`` clocks a bit, a fraction at 3 Mbaud: 33.3 at 100 MHz against the bridge's 33) sends
each command as soon as the previous answer's last stop bit ends, with no gap between its
bytes; a command's clocks run from its first start bit to the end of its answer's ``ACK``.
WRITE and READ commands of 1, 3 and 5 words of a one-byte channel give the clocks of a
command as a line in its bytes on the line (the two of the command, the words', the ``ACK``;
the middle size is checked on the line); with ``--check`` (3 Mbaud by default: 115,200 baud
is 26 times longer to simulate) every stream of the engine (``hw.accelerator.Accelerator``'s
names and payload widths for the bundle's configuration, 1 and 2 words each) is timed too and
compared with that line.

(b) Counted: the words of every channel per batch, from the host's own code: the passes of
``sim.engine_sim.pass_plan`` (through ``sim.cosim.CosimPlan.program``: the weight rows, one
descriptor and ``m`` activation vectors a pass; on the board the host sends each pass's
vectors, where the co-simulation harness replays them from its memory), each sample's
``beta``, the residual operand's vectors (``CosimPlan.layer_runs``' count), the rescale
parameters (``sim.network_sim.layer_params``, once a batch as ``gen.estimate`` counts them:
an upper bound) and the output vectors (``CosimPlan.out_words``); cut into commands as
``hw.host_bridge.HostLink`` cuts them (a WRITE at most ``fifo_depth - 2`` bytes of words, a
READ at most 256 words, read a block of channels at a time). Bytes per image are those
commands' bytes (``ceil(width / 8)`` a word, two a command, one ``ACK``) over the batch's
samples, compared with ``gen.estimate.link_bytes``.

(c) Computed: the link's clocks per image (the counted commands on the measured line),
the engine's (``gen.estimate``: the cycle model), and the board's images/s with the two
taking turns (``clock / (link + engine)``, as ``gen.estimate`` assumes). Not counted there:
the host's own time between an answer and its next command (a USB round trip: the FT231X
holds a short answer such as an ``ACK`` until its latency timer runs out, 16 ms by default,
1 ms at its lowest); the last column adds ``--turnaround`` ms a command. Also computed: what
packing the output vectors to codes, or sending each activation vector once a batch, would
save.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amaranth.hdl import Module, Signal  # noqa: E402
from amaranth.lib import stream, wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from hw.host_bridge import ACK, MAX_WORDS, HostBridge, encode_read, encode_write  # noqa: E402
from hw.uart import divisor  # noqa: E402
from tests.serial_line import frame_bits  # noqa: E402

BUNDLES = (ROOT / "export" / "default_model" / "bundle", ROOT / "export" / "models" / "resnet8")
FIFO_DEPTH = 512          # hw.board_top.BoardTop's


class Ready(wiring.Component):
    """Streams named and sized as ``channels`` (``(name, width, is_write)``), every write
    stream always taking, every read stream always offering a word (not ``always_ready`` /
    ``always_valid`` in the signature: the bridge treats them as it treats the engine's)."""

    def __init__(self, channels):
        self._channels = channels
        super().__init__({name: (In if write else Out)(stream.Signature(width))
                          for name, width, write in channels})

    def elaborate(self, platform):
        m = Module()
        for name, width, write in self._channels:
            port = getattr(self, name)
            if write:
                m.d.comb += port.ready.eq(1)
            else:
                m.d.comb += [port.valid.eq(1), port.payload.eq((1 << width) - 1 & 0xA5A5A5A5)]
        return m


def measure(channels, commands, *, clk, baud):
    """The clocks of each of ``commands`` (``(kind, name, n)``, kind ``"write"`` or
    ``"read"``) through a bridge in front of ``Ready(channels)``, run one after the other;
    checks every answer."""
    bridge = HostBridge(Ready(channels), clk_freq=clk, baud=baud, fifo_depth=FIFO_DEPTH)
    div = divisor(clk, baud)
    host_bit = clk / baud
    write = {ch.name: ch for ch in bridge.write_channels}
    read = {ch.name: ch for ch in bridge.read_channels}
    received = []             # (clock at the end of its stop bit, byte)
    results = []
    m = Module()
    m.submodules.bridge = bridge
    clock = Signal(48)        # the clocks since the start, for the time stamps
    m.d.sync += clock.eq(clock + 1)

    async def receiver(ctx):
        while True:
            await ctx.negedge(bridge.tx)
            start = ctx.get(clock)
            await ctx.tick().repeat(div // 2)
            if ctx.get(bridge.tx):
                continue                                 # a glitch
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(div)
                byte |= ctx.get(bridge.tx) << i
            await ctx.tick().repeat(div)
            if ctx.get(bridge.tx):
                received.append((start + 10 * div, byte))

    async def host(ctx):
        for kind, name, n in commands:
            if kind == "write":
                ch = write[name]
                data = encode_write(ch, [(1 << ch.width) - 1 & (0x5A5A5A5A * (i + 1))
                                         for i in range(n)])
                answer = 1
            else:
                ch = read[name]
                data = encode_read(ch, n)
                answer = n * ch.nbytes + 1
            start, t, done = ctx.get(clock), 0.0, 0
            for byte in data:
                for bit in frame_bits(byte):
                    ctx.set(bridge.rx, bit)
                    t += host_bit
                    k = round(t) - done
                    await ctx.tick().repeat(k)
                    done += k
            while len(received) < answer:
                await ctx.tick().repeat(div)
            got = received[:answer]
            del received[:answer]
            if got[-1][1] != ACK:
                raise RuntimeError(f"{kind} {name} x{n}: the bridge answered "
                                   f"{got[-1][1]:#04x}, not ACK")
            results.append(got[-1][0] - start)
            now = ctx.get(clock)
            if now < got[-1][0]:              # the host starts after the ACK's stop bit
                await ctx.tick().repeat(got[-1][0] - now)

    sim = Simulator(m)
    sim.add_clock(1 / clk)
    sim.add_testbench(host)
    sim.add_testbench(receiver, background=True)
    sim.run()
    return results


def engine_channels(config):
    """The engine's streams as ``(name, width, is_write)``, from its signature."""
    from hw.accelerator import Accelerator
    from hw.host_bridge import channels_of

    w, r = channels_of(Accelerator(config=config).signature)
    return [(c.name, c.width, True) for c in w] + [(c.name, c.width, False) for c in r]


def per_command(nbytes):
    """Words in one WRITE of a channel of ``nbytes`` bytes a word (``HostLink.write``)."""
    return max(1, min(MAX_WORDS, (FIFO_DEPTH - 2) // max(nbytes, 1)))


def _chunks(kind, name, words, nbytes):
    per = per_command(nbytes) if kind == "write" else MAX_WORDS
    full, rest = divmod(words, per)
    return [(kind, name, per)] * full + ([(kind, name, rest)] if rest else [])


def host_commands(bundle, config):
    """Per layer: ``(batch size, [(kind, channel, words)])``: the commands of one batch, from
    the host code (see the module docstring); the bytes a word of each channel; per layer
    the activation vectors an image if each went once a batch (as the co-simulation harness
    replays them from its memory)."""
    import numpy as np

    from sim.cosim import CosimPlan
    from sim.network_sim import _outputs, _signed_shortcut, layer_params

    plan = CosimPlan(config)
    once = []                 # activation vectors an image if each were sent once a batch
    widths = {name: width for name, width, _ in engine_channels(config)}
    nb = {name: -(-w // 8) for name, w in widths.items()}
    out = []
    for i, layer in enumerate(bundle.layers):
        positions = layer.positions
        size = config.batch_for(positions)
        m = size * positions
        words_w, words_pass, blocks, pplan = plan.program(
            m, layer.weight_matrix, layer.w_format, layer.w_bits,
            layer.k if layer.depthwise else None)
        channels, out_positions = _outputs(layer)
        kind, _ = bundle.residual_kind(i)
        params = len(layer_params(layer, config, kind, _signed_shortcut(bundle, i)))
        col_blocks = -(-channels // config.cols)
        cmds = _chunks("write", "i_param", params, nb["i_param"])
        cmds += _chunks("write", "i_beta", size, nb["i_beta"])
        if kind != "none":
            # CosimPlan.layer_runs: a block of channels' vectors per position and sample
            cmds += _chunks("write", "i_res", col_blocks * positions * size, nb["i_res"])
        rows = config.rows
        finals = 0
        for j, p in enumerate(pplan.passes):
            cmds += _chunks("write", "i_w", len(words_w[j * rows:(j + 1) * rows]), nb["i_w"])
            cmds += _chunks("write", "i_pass", 1, nb["i_pass"])
            cmds += _chunks("write", "i_a", m, nb["i_a"])
            if p[5]:                  # the block's final pass: read its outputs
                finals += 1
                cmds += _chunks("read", "o_out", size * out_positions, nb["o_out"])
        assert finals == col_blocks and len(words_w) == len(pplan) * rows
        assert plan.out_words(channels, out_positions) == col_blocks * out_positions
        assert np.shape(layer.weight_matrix)[1] == channels or layer.depthwise
        out.append((size, cmds))
        once.append(blocks * m / size)
    return out, nb, once


def wire_bytes(cmd, nb):
    kind, name, n = cmd
    return 2 + n * nb[name] + 1


_MEASURED = {}


def per_byte(clk, baud):
    """``{kind: (clocks a command, clocks a byte on the line)}``: WRITE and READ commands of
    a one-byte channel of 1, 3 and 5 words through the bridge, the line through the first and
    the last (the middle checked on it within a clock), in the bytes on the line (the
    command's two, the words', the ``ACK``)."""
    if (clk, baud) in _MEASURED:
        return _MEASURED[clk, baud]
    channels = [("i_x", 8, True), ("o_x", 8, False)]
    sizes = (1, 3, 5)
    cmds = [("write", "i_x", n) for n in sizes] + [("read", "o_x", n) for n in sizes]
    got = dict(zip(cmds, measure(channels, cmds, clk=clk, baud=baud)))
    out = {}
    for kind, name in (("write", "i_x"), ("read", "o_x")):
        (b1, c1), (b2, c2), (b3, c3) = ((3 + n, got[(kind, name, n)]) for n in sizes)
        slope = (c3 - c1) / (b3 - b1)
        if abs(c1 + slope * (b2 - b1) - c2) > 1:
            raise AssertionError(f"{kind}: the clocks are not a line in the bytes: {got}")
        out[kind] = (c1 - slope * b1, slope)
    _MEASURED[clk, baud] = out
    return out


def check_channels(channels, nb, clk, baud, line):
    """The engine's own channels, one word and two words each, measured against ``line``:
    the largest difference in clocks."""
    cmds = [("write" if w else "read", name, n) for name, _, w in channels for n in (1, 2)]
    got = measure(channels, cmds, clk=clk, baud=baud)
    worst = 0.0
    for cmd, c in zip(cmds, got):
        a, b = line[cmd[0]]
        worst = max(worst, abs(a + b * wire_bytes(cmd, nb) - c) / c)
    return worst


def run(bundle_dir, bauds, clk, check=(), turnaround=1e-3):
    from core.bundle import load
    from core.sizing import array_for_bundle, config_for_bundle
    from gen.estimate import estimate, link_bytes

    bundle = load(bundle_dir)
    rows, cols = array_for_bundle(bundle)
    config = config_for_bundle(bundle, rows=rows, cols=cols)
    channels = engine_channels(config)
    layers, nb, once = host_commands(bundle, config)
    name = Path(bundle_dir).relative_to(ROOT) if Path(bundle_dir).is_relative_to(ROOT) \
        else bundle_dir
    print(f"{name}: {rows}x{cols} array, bytes a word: "
          + ", ".join(f"{k} {v}" for k, v in nb.items()))
    # (b) bytes per image, counted, against the model
    counted_in = counted_out = model_in = model_out = 0.0
    commands = 0.0
    w = max(10, *(len(layer.name) for layer in bundle.layers))
    print(f"  {'layer':<{w}} {'batch':>5} {'cmds/img':>9} {'in B/img':>10} {'model':>10} "
          f"{'out B/img':>10} {'model':>10}")
    for i, (size, cmds) in enumerate(layers):
        b_in = sum(wire_bytes(c, nb) for c in cmds if c[0] == "write") / size
        b_out = sum(wire_bytes(c, nb) for c in cmds if c[0] == "read") / size
        m_in, m_out = (x / size for x in link_bytes(bundle, i, config, size))
        counted_in, counted_out = counted_in + b_in, counted_out + b_out
        model_in, model_out = model_in + m_in, model_out + m_out
        commands += len(cmds) / size
        print(f"  {bundle.layers[i].name:<{w}} {size:>5} {len(cmds) / size:>9,.1f} "
              f"{b_in:>10,.1f} {m_in:>10,.1f} {b_out:>10,.1f} {m_out:>10,.1f}")
    total, model = counted_in + counted_out, model_in + model_out
    print(f"  {'all':<{w}} {'':>5} {commands:>9,.1f} {counted_in:>10,.1f} {model_in:>10,.1f} "
          f"{counted_out:>10,.1f} {model_out:>10,.1f}   in and out {total:,.0f} bytes, "
          f"model {model:,.0f} ({100 * (model / total - 1):+.2f} %)")
    # (a) and (c)
    rows_out = []
    for baud in bauds:
        line = per_byte(clk, baud)
        link = sum(sum(line[c[0]][0] + line[c[0]][1] * wire_bytes(c, nb) for c in cmds) / size
                   for size, cmds in layers)
        e = estimate(bundle, config, clock_mhz=clk / 1e6, baud=baud)
        engine = e["cycles_per_image"]
        div = divisor(clk, baud)
        text = "; ".join(f"{k.upper()} {b:,.1f} clocks a byte on the line and {a:,.0f} a "
                         f"command" for k, (a, b) in line.items())
        if baud in check:
            worst = check_channels(channels, nb, clk, baud, line)
            text += (f"; the engine's channels (1 and 2 words each) within "
                     f"{100 * worst:.2f} % of that")
        print(f"  {baud:,} baud ({div} clocks a bit at {clk / 1e6:g} MHz), measured: {text}")
        board = clk / (link + engine)
        slow = clk / (link + engine + commands * turnaround * clk)
        rows_out.append((baud, total, link, engine, board, clk / engine,
                         e["board_link"]["images_per_s"], slow))
    # What packing the outputs would save (computed; nothing of it is built): a layer that
    # returns codes (all but the final layer and the projections, which return z, up to 64
    # bits) in words of cols codes of CODE_BITS bits, beta and last.
    from hw.rescale_stages import BETA_BITS, Requantizer

    packed_nb = -(-(config.cols * Requantizer.CODE_BITS + BETA_BITS + 1) // 8)
    saved = 0.0
    for i, (size, cmds) in enumerate(layers):
        if bundle.layers[i].fixed.next_bits is not None:
            saved += sum(n * (nb["o_out"] - packed_nb) for k, name, n in cmds
                         if name == "o_out") / size
    print(f"  packed outputs (computed, not built): codes in {packed_nb}-byte words instead "
          f"of {nb['o_out']} would save {saved:,.0f} of the {total:,.0f} bytes an image "
          f"({100 * saved / total:.1f} %)")
    sent = sum(sum(n for k, name, n in cmds if name == "i_a") / size for size, cmds in layers)
    print(f"  activation vectors: {sent:,.0f} an image ({sent * nb['i_a']:,.0f} bytes, "
          f"{100 * sent * nb['i_a'] / total:.0f} %), each sent once a block of output channels; "
          f"held in the engine and sent once a batch they would be {sum(once):,.0f} "
          f"(computed, not built)")
    print(f"  {'baud':>9} {'bytes/img':>10} {'link clk/img':>13} {'engine clk/img':>15} "
          f"{'board img/s':>12} {'engine img/s':>13} {'ratio':>7} {'model img/s':>12} "
          f"{'+' + format(turnaround * 1e3, 'g') + ' ms/cmd':>14}")
    for baud, total, link, engine, board, eng, model_ips, slow in rows_out:
        print(f"  {baud:>9,} {total:>10,.0f} {link:>13,.0f} {engine:>15,.1f} {board:>12.3g} "
              f"{eng:>13,.0f} {eng / board:>7,.0f} {model_ips:>12.3g} {slow:>14.3g}")
    return rows_out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="+", default=[str(b) for b in BUNDLES])
    p.add_argument("--bauds", nargs="+", type=int, default=[115_200, 3_000_000])
    p.add_argument("--clock", type=float, default=100.0, help="MHz (%(default)g)")
    p.add_argument("--turnaround", type=float, default=1.0,
                   help="the host's time between an answer and its next command, in ms, for "
                        "the last column (%(default)g: the FT231X's latency timer at its "
                        "lowest; 16 by default in the driver)")
    p.add_argument("--check", nargs="*", type=int, default=[3_000_000],
                   help="at these bauds, also time every channel of the engine (1 and 2 words) "
                        "against the one-byte channel's line (%(default)s)")
    args = p.parse_args()
    for b in args.bundles:
        run(Path(b).resolve(), args.bauds, args.clock * 1e6, check=set(args.check),
            turnaround=args.turnaround / 1e3)


if __name__ == "__main__":
    main()
