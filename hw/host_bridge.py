"""A UART bridge that lets a host write and read the stream ports of any component.

The bridge wraps a ``wiring.Component`` (the *target*) and looks at its signature: every
``In(stream.Signature(...))`` member becomes a **write channel** and every
``Out(stream.Signature(...))`` member a **read channel**, numbered from 0 in the signature's
order, each with its payload's width in bits. Nothing is specific to one target, so a target
whose streams change needs no change here. Other port members are left alone (an input keeps
its reset value); an interface member that is not a stream is refused.

Protocol
--------
Bytes over an 8N1 UART (``hw.uart``). Words travel little-endian in ``ceil(width / 8)``
bytes; the bits above the width are ignored on writes and zero on reads. A command is one
byte, ``op << 6 | channel``:

=============  ==========================  ==============================================
command        then the host sends         and the bridge answers
=============  ==========================  ==============================================
``0x00`` INFO  nothing                     ``W``, ``R`` (the number of write and read
                                           channels), the width of each write channel, then
                                           of each read channel (two bytes each), ``ACK``
``0x40 | c``   ``n - 1`` (one byte), then  ``ACK`` once the ``n``-th word is in channel
WRITE          ``n`` words (1 to 256)      ``c``'s skid buffer (see below)
``0x80 | c``   ``n - 1`` (one byte)        ``n`` words taken from read channel ``c``, as the
READ                                       target offers them, then ``ACK``
``0xC0``-      (reserved)                  ``NAK``
``0xFF``
=============  ==========================  ==============================================

``ACK`` is ``0x06`` and ``NAK`` ``0x15``. A WRITE or READ to a channel that does not exist is
answered with ``NAK`` instead of ``ACK`` (a WRITE's words are then read and dropped as one byte
each; a READ sends nothing else).

Flow control: the UART cannot hold the host back, so received bytes wait in a FIFO of
``fifo_depth`` bytes while the target stalls. The host keeps the bytes of its unanswered
commands within ``fifo_depth`` (sending one command at a time and waiting for its ``ACK`` or
``NAK``, each command at most ``fifo_depth`` bytes long, does). A WRITE occupies the bridge
until its last word is in the channel's buffer (a ``SkidBuffer`` of two words between the
bridge and each write stream of the target, so that no path runs from the bridge's state into
the target's in one clock; on a board the two lie far apart), and a READ until the target has
offered its last word: the host must not ask a target for more than it can take or give in
that order (write the inputs that the outputs it then reads need; read outputs before a full
target stops taking inputs). ``HostLink`` is the host side.

A word read from the target goes to the host straight from the target's payload, which a stream
keeps stable while it is offered and not taken: the bridge takes the word (``ready``) only once
its last byte has gone to the transmitter, so that it needs a register only as wide as the
widest write channel (a read channel that is ``always_ready``, which cannot be held, is copied
into that register when it is offered).

A lost or damaged byte (``error`` goes high) puts host and bridge out of step; reset the bridge.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .skid import SkidBuffer
from .uart import UARTReceiver, UARTTransmitter, divisor

__all__ = ["ACK", "NAK", "INFO", "WRITE", "READ", "MAX_CHANNELS", "MAX_WORDS", "Channel",
           "HostBridge", "HostLink", "channels_of", "encode_write", "encode_read",
           "decode_words", "decode_info"]

ACK, NAK = 0x06, 0x15
INFO, WRITE, READ = 0x00, 0x40, 0x80
MAX_CHANNELS = 64       # per direction: the command byte's six low bits
MAX_WORDS = 256         # per command: the count byte holds n - 1
MAX_WIDTH = 0xFFFF      # the INFO reply's two bytes


class Channel:
    """One stream of the target: its member ``name``, ``index`` in its direction, ``width``
    of its payload in bits and ``nbytes`` per word on the wire."""

    def __init__(self, name, index, width, signature=None):
        self.name, self.index, self.width = name, index, width
        self.signature = signature      # the member's stream.Signature (None on the host)

    @property
    def nbytes(self):
        return (self.width + 7) // 8

    def __repr__(self):
        return f"Channel({self.name!r}, {self.index}, {self.width})"


def channels_of(signature):
    """The write and the read channels of a component's ``signature``: two lists of
    ``Channel``. Raises ``TypeError`` for an interface member that is not a stream and
    ``ValueError`` for too many streams or a payload too wide."""
    if not isinstance(signature, wiring.Signature):
        raise TypeError(f"signature must be a wiring.Signature, not {signature!r}")
    write, read = [], []
    for name, member in signature.members.items():
        if member.is_port:
            continue
        if not isinstance(member.signature, stream.Signature):
            raise TypeError(f"member {name!r} is an interface but not a stream.Signature; the "
                            f"bridge can only reach stream members")
        width = Shape.cast(member.signature.members["payload"].shape).width
        if width > MAX_WIDTH:
            raise ValueError(f"member {name!r} has a {width}-bit payload, more than "
                             f"{MAX_WIDTH} bits")
        side = write if member.flow == In else read
        side.append(Channel(name, len(side), width, member.signature))
    for kind, side in (("write", write), ("read", read)):
        if len(side) > MAX_CHANNELS:
            raise ValueError(f"the target has {len(side)} {kind} streams, more than "
                             f"{MAX_CHANNELS}")
    return write, read


class HostBridge(wiring.Component):
    """The target behind a UART: see the module's docstring for the protocol.

    Parameters
    ----------
    target : wiring.Component
        The component whose streams the host reaches; the bridge adds it as a submodule.
    clk_freq : int or float
        The ``sync`` domain's frequency in Hz.
    baud : int or float
        Bits per second (``hw.uart.divisor`` checks the pair).
    fifo_depth : int
        Bytes of the receive FIFO (2 to 65536; 512, one ECP5 block RAM, by default).

    Members
    -------
    rx : In(1)
        Serial data from the host (idle high).
    tx : Out(1)
        Serial data to the host (idle high).
    error : Out(1)
        High from a framing error or a lost byte (the receive FIFO full) until reset.

    Raises
    ------
    TypeError
        ``target`` is not a ``wiring.Component``, or has an interface member that is not a
        stream; a ``fifo_depth`` that is not an integer.
    ValueError
        More than 64 streams in a direction, a payload wider than 65535 bits, a bad
        ``fifo_depth``, or a clock and baud rate that do not fit (``hw.uart.divisor``).
    """

    def __init__(self, target, *, clk_freq, baud, fifo_depth=512):
        if not isinstance(target, wiring.Component):
            raise TypeError(f"target must be a wiring.Component, not {target!r}")
        if not isinstance(fifo_depth, int) or isinstance(fifo_depth, bool):
            raise TypeError(f"fifo_depth must be an integer, not {fifo_depth!r}")
        if not 2 <= fifo_depth <= 65536:
            raise ValueError(f"fifo_depth must be from 2 to 65536, not {fifo_depth}")
        self._write, self._read = channels_of(target.signature)
        self._target = target
        self._fifo_depth = fifo_depth
        self._uart = dict(clk_freq=clk_freq, baud=baud)
        divisor(clk_freq, baud)         # checks the clock and baud rate now
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "error": Out(1)})

    @property
    def target(self):
        return self._target

    @property
    def write_channels(self):
        """The target's input streams, as ``Channel``s in channel order."""
        return list(self._write)

    @property
    def read_channels(self):
        """The target's output streams, as ``Channel``s in channel order."""
        return list(self._read)

    @property
    def fifo_depth(self):
        return self._fifo_depth

    @property
    def info_bytes(self):
        """The INFO reply without its ``ACK``."""
        out = [len(self._write), len(self._read)]
        for ch in self._write + self._read:
            out += [ch.width & 0xFF, ch.width >> 8]
        return bytes(out)

    @staticmethod
    def _registered(m, target, ch):
        """The target's write stream of ``ch`` behind a ``SkidBuffer``: the end that the
        bridge drives (the port itself if it is ``always_valid`` or ``always_ready``)."""
        port = getattr(target, ch.name)
        if ch.signature.always_valid or ch.signature.always_ready:
            return port
        m.submodules[f"skid_{ch.name}"] = skid = SkidBuffer(ch.signature.members["payload"].shape)
        wiring.connect(m, skid.o, port)
        return skid.i

    def elaborate(self, platform):
        m = Module()
        m.submodules.target = self._target
        received, transmit = self._serial(m)
        s = self._shared_registers()
        self._write_streams(m, s)
        self._read_streams(m, s)
        s.take = received.valid & received.ready     # a byte from the host taken this clock
        s.sent = transmit.valid & transmit.ready      # a byte to the host taken this clock
        with m.FSM():
            self._command_states(m, s, received, transmit)
            self._write_states(m, s, received)
            self._read_states(m, s, received, transmit)
        return m

    def _serial(self, m):
        """The UART, the receive FIFO behind it and ``error``: the stream of received bytes
        (through a register: the FIFO's block RAM output is 5.8 ns from the clock on an
        ECP5) and the transmitter's input stream."""
        m.submodules.uart_rx = urx = UARTReceiver(**self._uart)
        m.submodules.uart_tx = utx = UARTTransmitter(**self._uart)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_data, fifo.w_stream)
        m.submodules.rx_skid = rx_skid = SkidBuffer(8)
        wiring.connect(m, fifo.r_stream, rx_skid.i)
        with m.If(urx.framing_error | urx.overrun):
            m.d.sync += self.error.eq(1)
        return rx_skid.o, utx.i_data

    def _shared_registers(self):
        """The registers that the state machine and the channels share: the current
        channel's number (``chan``), the words left (``count``), the byte within the word
        (``idx``) and the word of a write channel (or of an always_ready read channel, which
        cannot wait)."""
        channels = self._write + self._read
        held = [ch for ch in self._read if ch.signature.always_ready]
        s = SimpleNamespace()
        s.max_bytes = max([ch.nbytes for ch in channels] + [len(self.info_bytes), 1])
        s.word = Signal(8 * max([ch.nbytes for ch in self._write + held] + [1]))
        s.idx = Signal(range(s.max_bytes + 1))
        s.count = Signal(8)
        s.chan = Signal(6)
        s.w_known = s.chan < len(self._write)
        s.r_known = s.chan < len(self._read)
        return s

    @staticmethod
    def _nbytes(m, s, channels, name, default):
        """Bytes per word of the current channel among ``channels`` (``default`` if there is
        no such channel)."""
        nbytes = Signal(range(s.max_bytes + 1), name=name)
        m.d.comb += nbytes.eq(default)
        with m.Switch(s.chan):
            for ch in channels:
                with m.Case(ch.index):
                    m.d.comb += nbytes.eq(ch.nbytes)
        return nbytes

    def _write_streams(self, m, s):
        """The target's write streams, each through a skid buffer (``_registered``), so that
        no path runs from the bridge's state into the target's control (or back) in one
        clock: payloads straight from the word register (stable while it is offered), each
        valid a register (``s.pushing``: high in PUSH). A channel that does not exist reads
        and drops one byte per word (``s.w_nbytes``)."""
        s.w_nbytes = self._nbytes(m, s, self._write, "w_nbytes", 1)
        s.pushing = Signal(max(len(self._write), 1))
        s.to_push = Cat(s.chan == ch.index for ch in self._write)
        s.w_ready = Signal()        # the current write channel's ready
        for ch in self._write:
            port = self._registered(m, self._target, ch)
            m.d.comb += port.payload.eq(s.word[:ch.width])
            if not ch.signature.always_valid:
                m.d.comb += port.valid.eq(s.pushing[ch.index])
            with m.If(s.chan == ch.index):
                m.d.comb += s.w_ready.eq(port.ready)

    def _read_streams(self, m, s):
        """The target's read streams (not buffered: a word is taken only when the host reads
        it). The byte ``idx`` of the current channel's word comes in two registered steps:
        its 8-byte chunk (``chunk``, picked by ``s.at_chunk``, one-hot), then the byte
        (``s.r_byte``), so that no path runs from the target's payload (a wide register
        spread over the part) to the transmitter in one clock; READ_DATA waits for them
        (``s.settle``). ``s.pulling[c]``, read channel c's ready, is a register (high in
        TAKE), so that it reaches the target straight from a flip-flop."""
        s.r_nbytes = self._nbytes(m, s, self._read, "r_nbytes", 0)
        s.wait, s.pull = Signal(), Signal()     # waiting for a read word; taking it
        s.r_valid = Signal()                    # the current read channel's valid
        s.r_byte = Signal(8)
        r_byte_now = Signal(8)
        s.settle = Signal(range(3))
        s.pulling = Signal(max(len(self._read), 1))
        m.d.sync += s.pulling.eq(0)
        max_chunks = max([-(-ch.nbytes // 8) for ch in self._read] + [1])
        s.at_chunk = Signal(max_chunks, init=1)
        for ch in self._read:
            port = getattr(self._target, ch.name)
            if not ch.signature.always_ready:
                # A word of no bits is taken as soon as it is offered.
                m.d.comb += port.ready.eq(((s.pull | s.wait) & (s.chan == ch.index))
                                          if ch.nbytes == 0 else s.pulling[ch.index])
                source = Cat(port.payload, Const(0, 8 * ch.nbytes - ch.width))
            else:
                source = s.word[:8 * ch.nbytes]
            if ch.nbytes > 8:
                chunks = -(-ch.nbytes // 8)
                chunk = Signal(64, name=f"chunk_{ch.name}")
                padded = Cat(source, Const(0, 64 * chunks - len(source)))
                pick = 0
                for k in range(chunks):
                    pick = pick | Mux(s.at_chunk[k], padded.word_select(k, 64), 0)
                m.d.sync += chunk.eq(pick)
            else:
                chunk = source
            with m.If(s.chan == ch.index):
                m.d.comb += s.r_valid.eq(port.valid)
                if ch.nbytes == 1:
                    m.d.comb += r_byte_now.eq(chunk)
                elif ch.nbytes:
                    m.d.comb += r_byte_now.eq(chunk.word_select(
                        s.idx[:min(3, (ch.nbytes - 1).bit_length())], 8))
        m.d.sync += s.r_byte.eq(r_byte_now)

    def _command_states(self, m, s, received, transmit):
        """IDLE (a command byte), INFO and the answers ACK and NAK."""
        byte = received.payload
        info = Array(Const(b, 8) for b in self.info_bytes)
        with m.State("IDLE"):
            m.d.comb += received.ready.eq(1)
            with m.If(s.take):
                m.d.sync += [s.chan.eq(byte[:6]), s.idx.eq(0)]
                with m.Switch(byte[6:]):
                    with m.Case(INFO >> 6):
                        m.next = "INFO"
                    with m.Case(WRITE >> 6):
                        m.next = "WRITE_COUNT"
                    with m.Case(READ >> 6):
                        m.next = "READ_COUNT"
                    with m.Default():
                        m.next = "NAK"
        with m.State("INFO"):
            m.d.comb += [transmit.valid.eq(1), transmit.payload.eq(info[s.idx])]
            with m.If(s.sent):
                m.d.sync += s.idx.eq(s.idx + 1)
                with m.If(s.idx == len(self.info_bytes) - 1):
                    m.next = "ACK"
        for state, answer in (("ACK", ACK), ("NAK", NAK)):
            with m.State(state):
                m.d.comb += [transmit.valid.eq(1), transmit.payload.eq(answer)]
                with m.If(s.sent):
                    m.next = "IDLE"

    def _write_states(self, m, s, received):
        """WRITE: the count, then each word's bytes into ``word``, then PUSH it."""
        byte = received.payload
        with m.State("WRITE_COUNT"):
            m.d.comb += received.ready.eq(1)
            with m.If(s.take):
                m.d.sync += [s.count.eq(byte), s.idx.eq(0)]
                with m.If(s.w_known & (s.w_nbytes == 0)):
                    m.d.sync += s.pushing.eq(s.to_push)
                    m.next = "PUSH"
                with m.Else():
                    m.next = "WRITE_DATA"
        with m.State("WRITE_DATA"):
            m.d.comb += received.ready.eq(1)
            with m.If(s.take):
                m.d.sync += [s.word.word_select(s.idx, 8).eq(byte), s.idx.eq(s.idx + 1)]
                with m.If(s.idx == s.w_nbytes - 1):
                    with m.If(s.w_known):
                        m.d.sync += s.pushing.eq(s.to_push)
                        m.next = "PUSH"
                    with m.Elif(s.count == 0):
                        m.next = "NAK"
                    with m.Else():
                        m.d.sync += [s.count.eq(s.count - 1), s.idx.eq(0)]
        with m.State("PUSH"):
            with m.If(s.w_ready):
                m.d.sync += [s.count.eq(s.count - 1), s.idx.eq(0)]
                with m.If(s.count == 0):
                    m.d.sync += s.pushing.eq(0)
                    m.next = "ACK"
                with m.Elif(s.w_nbytes != 0):
                    m.d.sync += s.pushing.eq(0)
                    m.next = "WRITE_DATA"

    def _read_states(self, m, s, received, transmit):
        """READ: the count, then for each word PULL (wait for it), READ_DATA (its bytes to
        the transmitter) and TAKE."""
        with m.State("READ_COUNT"):
            m.d.comb += received.ready.eq(1)
            with m.If(s.take):
                m.d.sync += s.count.eq(received.payload)
                with m.If(s.r_known):
                    m.next = "PULL"
                with m.Else():
                    m.next = "NAK"
        with m.State("PULL"):
            # Wait for a word; one of no bits is taken at once, a longer one once its bytes
            # are sent (TAKE).
            m.d.comb += s.wait.eq(1)
            with m.If(s.r_valid):
                m.d.sync += [s.idx.eq(0), s.settle.eq(0), s.at_chunk.eq(1)]
                with m.Switch(s.chan):
                    for ch in self._read:
                        if ch.signature.always_ready:
                            with m.Case(ch.index):
                                port = getattr(self._target, ch.name)
                                m.d.sync += s.word[:8 * ch.nbytes].eq(Cat(port.payload))
                with m.If(s.r_nbytes != 0):
                    m.next = "READ_DATA"
                with m.Elif(s.count == 0):
                    m.next = "ACK"
                with m.Else():
                    m.d.sync += s.count.eq(s.count - 1)
        with m.State("READ_DATA"):
            m.d.comb += [transmit.valid.eq(s.settle == 2), transmit.payload.eq(s.r_byte)]
            with m.If(s.settle != 2):
                m.d.sync += s.settle.eq(s.settle + 1)
            with m.If(s.sent):
                m.d.sync += [s.idx.eq(s.idx + 1), s.settle.eq(0)]
                with m.If(s.idx[:3] == 7):
                    m.d.sync += s.at_chunk.eq(s.at_chunk << 1)
                with m.If(s.idx == s.r_nbytes - 1):
                    m.d.sync += s.pulling.eq(Cat(s.chan == ch.index for ch in self._read))
                    m.next = "TAKE"
        with m.State("TAKE"):
            # The word's last byte is in the transmitter: take the word.
            m.d.comb += s.pull.eq(1)
            with m.If(s.count == 0):
                m.next = "ACK"
            with m.Else():
                m.d.sync += s.count.eq(s.count - 1)
                m.next = "PULL"


# The host side ---------------------------------------------------------------------------------

def _check_count(n):
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"the word count must be an integer, not {n!r}")
    if not 1 <= n <= MAX_WORDS:
        raise ValueError(f"a command moves 1 to {MAX_WORDS} words, not {n}")


def encode_write(channel, words):
    """The bytes of a WRITE of ``words`` (integers, 1 to 256 of them) to ``channel``."""
    words = list(words)
    _check_count(len(words))
    out = bytearray([WRITE | channel.index, len(words) - 1])
    for w in words:
        if not isinstance(w, int) or not 0 <= w < 1 << channel.width:
            raise ValueError(f"a word of {channel.name!r} must be from 0 to "
                             f"{(1 << channel.width) - 1}, not {w!r}")
        out += w.to_bytes(channel.nbytes, "little")
    return bytes(out)


def encode_read(channel, n):
    """The bytes of a READ of ``n`` words (1 to 256) from ``channel``."""
    _check_count(n)
    return bytes([READ | channel.index, n - 1])


def decode_words(channel, data):
    """The words of ``channel`` in ``data`` (its bytes, without the ``ACK``)."""
    size = channel.nbytes
    if size == 0:
        raise ValueError(f"{channel.name!r} has no payload bits: count its words instead")
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes are not whole {size}-byte words of "
                         f"{channel.name!r}")
    return [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]


def decode_info(data):
    """``(write widths, read widths)`` from an INFO reply (its bytes, with the ``ACK``)."""
    if len(data) < 3 or len(data) != 3 + 2 * (data[0] + data[1]) or data[-1] != ACK:
        raise ValueError(f"not an INFO reply: {bytes(data).hex()}")
    widths = [data[2 + 2 * i] | data[3 + 2 * i] << 8 for i in range(data[0] + data[1])]
    return widths[:data[0]], widths[data[0]:]


class HostLink:
    """The host side of ``HostBridge`` over a byte port (a ``serial.Serial`` from pyserial, or
    anything with ``write(bytes)`` and ``read(n) -> bytes``).

    Channels are named after the target's members: ``link.write("i_w", words)``,
    ``link.read("o_out", n)``. Commands go one at a time, each at most ``fifo_depth`` bytes (a
    long write is cut into several), and each waits for its answer.

    Parameters
    ----------
    port
        The byte port.
    write_channels, read_channels : list of Channel
        As ``HostBridge.write_channels`` and ``read_channels`` (``HostLink.for_bridge``).
    fifo_depth : int
        The bridge's ``fifo_depth``.
    """

    def __init__(self, port, *, write_channels, read_channels, fifo_depth):
        self._port = port
        self._write = {ch.name: ch for ch in write_channels}
        self._read = {ch.name: ch for ch in read_channels}
        self._fifo_depth = fifo_depth

    @classmethod
    def for_bridge(cls, bridge, port):
        return cls(port, write_channels=bridge.write_channels,
                   read_channels=bridge.read_channels, fifo_depth=bridge.fifo_depth)

    def _channel(self, table, name, kind):
        try:
            return table[name]
        except KeyError:
            raise ValueError(f"no {kind} channel {name!r}; there are "
                             f"{', '.join(table) or 'none'}") from None

    def _answer(self, n):
        data = self._port.read(n)
        if len(data) != n:
            raise TimeoutError(f"the bridge answered {len(data)} of {n} bytes")
        if data[-1] != ACK:
            raise RuntimeError(f"the bridge answered {data[-1]:#04x}, not ACK")
        return data[:-1]

    def info(self):
        """``(write widths, read widths)`` as the bridge reports them."""
        self._port.write(bytes([INFO]))
        head = self._port.read(2)
        if len(head) != 2:
            raise TimeoutError("no INFO reply")
        return decode_info(head + self._port.read(2 * (head[0] + head[1]) + 1))

    def write(self, name, words):
        """Write ``words`` (integers) to the write channel ``name``."""
        ch = self._channel(self._write, name, "write")
        words = list(words)
        per = max(1, min(MAX_WORDS, (self._fifo_depth - 2) // max(ch.nbytes, 1)))
        for i in range(0, len(words), per):
            self._port.write(encode_write(ch, words[i:i + per]))
            self._answer(1)

    def read(self, name, n):
        """Read ``n`` words from the read channel ``name``."""
        ch = self._channel(self._read, name, "read")
        out = []
        for i in range(0, n, MAX_WORDS):
            k = min(MAX_WORDS, n - i)
            self._port.write(encode_read(ch, k))
            data = self._answer(k * ch.nbytes + 1)
            out += decode_words(ch, data) if ch.nbytes else [0] * k
        return out
