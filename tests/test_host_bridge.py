# amaranth: UnusedElaboratable=no
"""``hw.host_bridge`` in Amaranth's simulator, end to end through serial bits: the host side
(``HostLink``) writes seeded random words into a small stream component (an adder of two
streams of different widths, one with a struct payload, and an echo FIFO) and reads every
result back, with commands cut at the receive FIFO's depth, a 256-word command, a target that
stalls for longer than the UART takes to fill the FIFO, the INFO reply, NAK for unknown
channels and the reserved commands with the bridge still in step afterwards, zero-width streams
and an ``always_ready`` stream. The host side's
encoding and every refusal are checked with their exact messages."""

import random

import pytest
from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.host_bridge import (ACK, NAK, Channel, HostBridge, HostLink, channels_of, decode_info,
                            decode_words, encode_read, encode_write)
from tests.serial_line import SerialPort

CLK = 1_000_000
BAUD = 250_000          # 4 clocks per bit: the fastest the UART allows, for short simulations
B_LAYOUT = data.StructLayout({"x": unsigned(5), "y": signed(9)})


class Adder(wiring.Component):
    """``o_sum = a + b.x + b.y`` for each pair of ``i_a`` and ``i_b`` words (64-word input
    FIFOs, a 4-word output FIFO: it stalls when its sums are not read); ``i_c`` comes back on
    ``o_c`` through a FIFO of ``echo_depth`` words of ``echo_width`` bits; ``i_slow`` is taken
    once every ``slow`` clocks and comes back on ``o_slow``, first offered only in the second
    half of each ``slow`` clocks (then until it is taken); ``busy`` is a plain port that the
    bridge leaves alone."""

    def __init__(self, *, echo_depth=8, echo_width=20, slow=300):
        self._echo_depth, self._echo_width, self._slow = echo_depth, echo_width, slow
        super().__init__({
            "i_a": In(stream.Signature(unsigned(12))),
            "i_b": In(stream.Signature(B_LAYOUT)),
            "o_sum": Out(stream.Signature(signed(15))),
            "i_c": In(stream.Signature(echo_width)),
            "o_c": Out(stream.Signature(echo_width)),
            "i_slow": In(stream.Signature(24)),
            "o_slow": Out(stream.Signature(24)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fa = fa = SyncFIFOBuffered(width=12, depth=64)
        m.submodules.fb = fb = SyncFIFOBuffered(width=14, depth=64)
        m.submodules.fs = fs = SyncFIFOBuffered(width=15, depth=4)
        m.submodules.fc = fc = SyncFIFOBuffered(width=self._echo_width, depth=self._echo_depth)
        m.submodules.fw = fw = SyncFIFOBuffered(width=24, depth=16)
        wiring.connect(m, wiring.flipped(self.i_a), fa.w_stream)
        m.d.comb += [fb.w_data.eq(self.i_b.payload.as_value()), fb.w_en.eq(self.i_b.valid),
                     self.i_b.ready.eq(fb.w_rdy)]
        b = data.View(B_LAYOUT, fb.r_data)
        go = fa.r_rdy & fb.r_rdy & fs.w_rdy
        m.d.comb += [fs.w_data.eq(fa.r_data + b.x + b.y), fs.w_en.eq(go), fa.r_en.eq(go),
                     fb.r_en.eq(go)]
        m.d.comb += [self.o_sum.payload.eq(fs.r_data), self.o_sum.valid.eq(fs.r_rdy),
                     fs.r_en.eq(self.o_sum.ready)]
        wiring.connect(m, wiring.flipped(self.i_c), fc.w_stream)
        wiring.connect(m, fc.r_stream, wiring.flipped(self.o_c))
        timer = Signal(range(self._slow))
        m.d.sync += timer.eq(timer + 1)
        with m.If(timer == self._slow - 1):
            m.d.sync += timer.eq(0)
        m.d.comb += [fw.w_data.eq(self.i_slow.payload),
                     fw.w_en.eq(self.i_slow.valid & (timer == 0)),
                     self.i_slow.ready.eq(fw.w_rdy & (timer == 0))]
        # A word is first offered only in the second half of a period, so a READ waits for
        # it; once offered it stays offered until it is taken (as a stream must).
        late = timer >= self._slow // 2
        offered = Signal()
        m.d.sync += offered.eq(self.o_slow.valid & ~self.o_slow.ready)
        m.d.comb += [self.o_slow.payload.eq(fw.r_data),
                     self.o_slow.valid.eq(fw.r_rdy & (late | offered)),
                     fw.r_en.eq(self.o_slow.ready & self.o_slow.valid)]
        m.d.comb += self.busy.eq(fa.r_rdy | fb.r_rdy)
        return m


def _simulate(bridge, scenario, *, clocks_per_bit=None, budget=200_000):
    """Run ``scenario(link, port)`` against ``bridge`` over simulated serial lines; returns the
    bridge's ``error`` at the end."""
    sim = Simulator(bridge)
    sim.add_clock(1 / CLK)
    port = SerialPort(sim, bridge.rx, bridge.tx, clocks_per_bit or round(CLK / BAUD), 1 / CLK,
                      budget=budget)
    error = []

    async def watch(ctx):
        async for _, _, e in ctx.tick().sample(bridge.error):
            error.append(e)

    sim.add_process(watch)
    scenario(HostLink.for_bridge(bridge, port), port)
    return any(error)


def _bridge(**kw):
    return HostBridge(Adder(**{k: kw.pop(k) for k in ("echo_depth", "echo_width", "slow")
                               if k in kw}),
                      clk_freq=CLK, baud=BAUD, **kw)


def test_init():
    bridge = _bridge(fifo_depth=40)
    assert [(c.name, c.index, c.width, c.nbytes) for c in bridge.write_channels] == [
        ("i_a", 0, 12, 2), ("i_b", 1, 14, 2), ("i_c", 2, 20, 3), ("i_slow", 3, 24, 3)]
    assert [(c.name, c.index, c.width, c.nbytes) for c in bridge.read_channels] == [
        ("o_sum", 0, 15, 2), ("o_c", 1, 20, 3), ("o_slow", 2, 24, 3)]
    assert bridge.fifo_depth == 40
    assert isinstance(bridge.target, Adder)
    assert bridge.info_bytes == bytes([4, 3, 12, 0, 14, 0, 20, 0, 24, 0, 15, 0, 20, 0, 24, 0])
    assert list(bridge.signature.members) == ["rx", "tx", "error"]


def test_refused():
    class NotAStream(wiring.Component):
        bus: In(wiring.Signature({"a": Out(1)}))

        def elaborate(self, platform):
            return Module()

    with pytest.raises(TypeError, match=r"^target must be a wiring.Component, not 3$"):
        HostBridge(3, clk_freq=CLK, baud=BAUD)
    with pytest.raises(TypeError, match=r"^member 'bus' is an interface but not a "
                                        r"stream.Signature; the bridge can only reach stream "
                                        r"members$"):
        HostBridge(NotAStream(), clk_freq=CLK, baud=BAUD)
    with pytest.raises(ValueError, match=r"^fifo_depth must be from 2 to 65536, not 1$"):
        _bridge(fifo_depth=1)
    with pytest.raises(TypeError, match=r"^fifo_depth must be an integer, not 2.0$"):
        _bridge(fifo_depth=2.0)
    with pytest.raises(ValueError, match=r"^clk_freq / baud must be at least 4 clocks per bit"):
        HostBridge(Adder(), clk_freq=CLK, baud=CLK / 2)
    many = wiring.Signature({f"i_{n}": In(stream.Signature(1)) for n in range(65)})
    with pytest.raises(ValueError, match=r"^the target has 65 write streams, more than 64$"):
        channels_of(many)


def test_host_side_encoding():
    ch = Channel("i_x", 5, 12)
    assert encode_write(ch, [0x123, 0xFFF]) == bytes([0x45, 1, 0x23, 0x01, 0xFF, 0x0F])
    assert encode_read(Channel("o_y", 2, 3), 256) == bytes([0x82, 0xFF])
    assert decode_words(Channel("o_y", 0, 20), bytes([1, 2, 3, 4, 5, 6])) == [0x030201,
                                                                             0x060504]
    assert decode_info(bytes([1, 1, 12, 0, 0, 1, ACK])) == ([12], [256])
    with pytest.raises(ValueError, match=r"^a word of 'i_x' must be from 0 to 4095, not 4096$"):
        encode_write(ch, [4096])
    with pytest.raises(ValueError, match=r"^a command moves 1 to 256 words, not 257$"):
        encode_write(ch, [0] * 257)
    with pytest.raises(ValueError, match=r"^a command moves 1 to 256 words, not 0$"):
        encode_read(ch, 0)
    with pytest.raises(ValueError, match=r"^5 bytes are not whole 3-byte words of 'o_y'$"):
        decode_words(Channel("o_y", 0, 20), bytes(5))
    with pytest.raises(ValueError, match=r"^not an INFO reply: 0101060015$"):
        decode_info(bytes([1, 1, 6, 0, NAK]))


def test_info_over_serial():
    bridge = _bridge()

    def scenario(link, port):
        assert link.info() == ([12, 14, 20, 24], [15, 20, 24])

    assert not _simulate(bridge, scenario)


def test_random_words_end_to_end():
    """Seeded random words into both adder inputs and the echo, in commands of random lengths
    (1 to the FIFO's limit), every sum and echo read back and checked; the output FIFO fills
    while the host writes, so the adder stalls its inputs."""
    rng = random.Random(12)
    bridge = _bridge(fifo_depth=24)      # 11 two-byte words or 7 three-byte words a command

    def scenario(link, port):
        for _ in range(3):
            n = rng.randint(1, 30)
            a = [rng.randrange(1 << 12) for _ in range(n)]
            b = [(rng.randrange(32), rng.randrange(-256, 256)) for _ in range(n)]
            c = [rng.randrange(1 << 20) for _ in range(min(n, 8))]
            link.write("i_a", a[:n // 2])
            link.write("i_b", [x | (y & 0x1FF) << 5 for x, y in b])
            link.write("i_c", c)
            link.write("i_a", a[n // 2:])
            sums = link.read("o_sum", n)
            assert [s - (1 << 15) if s >> 14 else s for s in sums] == [
                ai + x + y for ai, (x, y) in zip(a, b)]
            assert link.read("o_c", len(c)) == c

    assert not _simulate(bridge, scenario)


@pytest.mark.parametrize("width", [65, 130, 200, 256])
def test_wide_words_echo(width):
    """Words wider than 8 bytes: each byte read from its 8-byte chunk (selected one-hot),
    seeded random words with every edge byte set and clear."""
    rng = random.Random(width)
    bridge = _bridge(fifo_depth=512, echo_width=width, echo_depth=8)
    words = [(1 << width) - 1, 0, 1 << (width - 1), 0xFF << 64] + \
        [rng.randrange(1 << width) for _ in range(4)]
    words = [w & ((1 << width) - 1) for w in words]

    def scenario(link, port):
        link.write("i_c", words)
        assert link.read("o_c", len(words)) == words

    assert not _simulate(bridge, scenario)


def test_a_256_word_command():
    """One WRITE and one READ of 256 words (the count byte 0xFF), of 7 bits each."""
    rng = random.Random(5)
    bridge = _bridge(fifo_depth=512, echo_depth=256, echo_width=7)
    words = [rng.randrange(1 << 7) for _ in range(256)]

    def scenario(link, port):
        port.write(encode_write(bridge.write_channels[2], words))
        assert port.read(1) == bytes([ACK])
        port.write(encode_read(bridge.read_channels[1], 256))
        reply = port.read(256 + 1)
        assert reply[-1] == ACK
        assert decode_words(bridge.read_channels[1], reply[:-1]) == words

    assert not _simulate(bridge, scenario, budget=400_000)


def test_a_stalling_target_loses_no_byte():
    """The target takes a word every 300 clocks while a 3-byte word arrives every 120: the
    receive FIFO (40 bytes) holds a whole command, the ACK waits for the last word."""
    rng = random.Random(8)
    bridge = _bridge(fifo_depth=40, slow=300)
    words = [rng.randrange(1 << 24) for _ in range(14)]

    def scenario(link, port):
        start = port.clocks
        link.write("i_slow", words)          # two commands: 12 words, then 2
        assert port.clocks - start > 12 * 300
        assert link.read("o_slow", 14) == words

    assert not _simulate(bridge, scenario)


def test_nak_and_still_in_step():
    """Unknown channels and reserved commands answer NAK; the bridge then answers the next
    command correctly (a WRITE's words to an unknown channel are dropped a byte each)."""
    bridge = _bridge()

    def scenario(link, port):
        port.write(bytes([0x40 | 9, 2, 0xAA, 0xBB, 0xCC]))     # write 3 words to channel 9
        assert port.read(1) == bytes([NAK])
        port.write(bytes([0x80 | 3, 0]))                        # read from channel 3
        assert port.read(1) == bytes([NAK])
        port.write(bytes([0xC5]))                               # reserved
        assert port.read(1) == bytes([NAK])
        link.write("i_c", [0xABCDE])
        assert link.read("o_c", 1) == [0xABCDE]
        assert link.info() == ([12, 14, 20, 24], [15, 20, 24])

    assert not _simulate(bridge, scenario)


def test_host_link_refuses_unknown_names():
    link = HostLink(None, write_channels=[Channel("i_a", 0, 8)], read_channels=[],
                    fifo_depth=16)
    with pytest.raises(ValueError, match=r"^no write channel 'i_b'; there are i_a$"):
        link.write("i_b", [1])
    with pytest.raises(ValueError, match=r"^no read channel 'o'; there are none$"):
        link.read("o", 1)


def test_a_lost_byte_sets_error():
    """A host that ignores the flow-control rule overflows the receive FIFO: ``error``."""
    bridge = _bridge(fifo_depth=8, slow=2000)

    def scenario(link, port):
        port.write(encode_write(bridge.write_channels[3], list(range(12))))  # 38 bytes
        port.read(1)             # runs the simulation until the budget is spent

    assert _simulate(bridge, scenario, budget=6_000)


class Tokens(wiring.Component):
    """Zero-width streams: each ``i_tick`` adds a token, each ``o_token`` takes one; ``o_count``
    offers the number of tokens."""

    i_tick: In(stream.Signature(0))
    o_token: Out(stream.Signature(0))
    o_count: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        m.d.comb += [self.i_tick.ready.eq(1), self.o_token.valid.eq(count != 0),
                     self.o_count.valid.eq(1), self.o_count.payload.eq(count)]
        add = self.i_tick.valid
        take = self.o_token.valid & self.o_token.ready
        m.d.sync += count.eq(count + add - take)
        return m


def test_zero_width_streams():
    """A word of no bits is a bare handshake: no data bytes, the ACK still comes."""
    bridge = HostBridge(Tokens(), clk_freq=CLK, baud=BAUD)
    assert [(c.name, c.nbytes) for c in bridge.write_channels + bridge.read_channels] == [
        ("i_tick", 0), ("o_token", 0), ("o_count", 1)]

    def scenario(link, port):
        link.write("i_tick", [0] * 5)
        assert link.read("o_token", 3) == [0, 0, 0]
        assert link.read("o_count", 1) == [2]
        port.write(encode_write(bridge.write_channels[0], [0, 0]))
        assert port.read(1) == bytes([ACK])                # 2 bytes sent: command and count
        assert link.read("o_count", 2) == [4, 4]

    assert not _simulate(bridge, scenario)


class Ticker(wiring.Component):
    """An ``always_ready`` read stream, which the bridge cannot hold: a 16-bit count of the
    clocks, twice in each word, offered on every clock."""

    o_pair: Out(stream.Signature(32, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        count = Signal(16)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [self.o_pair.valid.eq(1), self.o_pair.payload.eq(Cat(count, count))]
        return m


def test_an_always_ready_stream_is_read_whole():
    """A word of an ``always_ready`` stream is copied when it is offered, so that its bytes
    belong together although the count moves on while they are sent."""
    bridge = HostBridge(Ticker(), clk_freq=CLK, baud=BAUD)

    def scenario(link, port):
        words = link.read("o_pair", 3)
        assert all(w & 0xFFFF == w >> 16 for w in words)
        assert len({w & 0xFFFF for w in words}) == 3

    assert not _simulate(bridge, scenario)
