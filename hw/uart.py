"""An 8N1 UART: a receiver and a transmitter, each a stream of bytes, for a clock and a baud rate.

Frames are one start bit (low), eight data bits, least significant first, and one stop bit
(high); the line idles high. Both sides count ``divisor = round(clk_freq / baud)`` clocks per
bit; a divisor whose baud rate is more than 2 % off ``baud`` is refused (the receiver samples
in the middle of each bit, so the two ends together may differ by about 4 %).

``fastest_baud(clk_freq)`` picks the fastest rate of ``FT231X_RATES`` (the rates of the
ULX3S's USB UART, an FTDI FT231X: 3,000,000 / n baud) that a clock can make within that
tolerance: 3 Mbaud (33 clocks per bit, 1.0 % fast) at 100 MHz, 1.5 Mbaud (17 clocks per bit,
2.0 % slow) at 25 MHz.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["BAUD_TOLERANCE", "FT231X_RATES", "MIN_DIVISOR", "UARTReceiver", "UARTTransmitter",
           "divisor", "fastest_baud"]

BAUD_TOLERANCE = 0.02   # the largest relative error of clk_freq / divisor against baud
MIN_DIVISOR = 4         # clocks per bit: the receiver needs a middle to sample
#: Rates of the FT231X (3 MHz / n, the standard ones by its fractional divisors), fastest first.
FT231X_RATES = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600, 460_800, 230_400, 115_200)


def divisor(clk_freq, baud):
    """Clocks per bit for ``clk_freq`` Hz and ``baud`` bit/s.

    Raises ``TypeError`` for a non-number, ``ValueError`` for a non-positive value, fewer than
    ``MIN_DIVISOR`` clocks per bit or a baud rate more than ``BAUD_TOLERANCE`` off.
    """
    for name, value in (("clk_freq", clk_freq), ("baud", baud)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    div = round(clk_freq / baud)
    if div < MIN_DIVISOR:
        raise ValueError(f"clk_freq / baud must be at least {MIN_DIVISOR} clocks per bit, not "
                         f"{clk_freq / baud:.3g} ({clk_freq:g} Hz, {baud:g} baud)")
    error = abs(clk_freq / div - baud) / baud
    if error > BAUD_TOLERANCE:
        raise ValueError(f"{clk_freq:g} Hz cannot make {baud:g} baud within "
                         f"{BAUD_TOLERANCE:.0%}: {div} clocks per bit give "
                         f"{clk_freq / div:.6g} baud ({error:.1%} off)")
    return div


def fastest_baud(clk_freq, rates=FT231X_RATES):
    """The fastest of ``rates`` (bit/s) that ``clk_freq`` Hz makes within ``BAUD_TOLERANCE``
    (``divisor`` accepts it). Raises ``ValueError`` when none does (and ``divisor``'s
    errors for a bad ``clk_freq``)."""
    for baud in sorted(rates, reverse=True):
        try:
            divisor(clk_freq, baud)
        except ValueError:
            if not (isinstance(clk_freq, (int, float)) and clk_freq > 0):
                raise
            continue
        return baud
    raise ValueError(f"{clk_freq:g} Hz makes none of {', '.join(str(r) for r in rates)} "
                     f"baud within {BAUD_TOLERANCE:.0%}")


class _UART(wiring.Component):
    def __init__(self, signature, *, clk_freq, baud):
        self._divisor = divisor(clk_freq, baud)
        self._clk_freq, self._baud = clk_freq, baud
        super().__init__(signature)

    @property
    def clk_freq(self):
        return self._clk_freq

    @property
    def baud(self):
        return self._baud

    @property
    def divisor(self):
        """Clocks per bit."""
        return self._divisor


class UARTReceiver(_UART):
    """Receives 8N1 frames from ``rx`` and offers each byte on ``o_data``.

    Parameters
    ----------
    clk_freq : int or float
        The ``sync`` domain's frequency in Hz.
    baud : int or float
        Bits per second.

    Members
    -------
    rx : In(1)
        The serial line (idle high); synchronised to ``sync`` inside (two flip-flops).
    o_data : Out(stream.Signature(8))
        One transfer per received byte. A UART cannot be held back: a byte that arrives while
        the previous one is still offered is dropped and ``overrun`` pulses.
    framing_error : Out(1)
        Pulses for one clock when a stop bit is low (the byte is dropped; the receiver waits
        for the line to go high again).
    overrun : Out(1)
        Pulses for one clock when a byte is dropped because ``o_data`` was not taken in time.

    Timing: a falling edge starts a frame; the start bit is checked half a bit later, each data
    bit sampled a whole bit after the previous one and the stop bit likewise; the receiver is
    ready for the next start bit in the middle of the stop bit. ``o_data`` becomes valid two
    clocks (the synchroniser) plus 9.5 bits after the start bit's falling edge.
    """

    def __init__(self, *, clk_freq, baud):
        super().__init__({
            "rx": In(1, init=1),
            "o_data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        }, clk_freq=clk_freq, baud=baud)

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div))
        bits = Signal(range(8))
        shift = Signal(8)

        with m.If(self.o_data.valid & self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):                     # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), timer.eq(div - 1),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~rx):
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
                with m.Else():
                    # A byte still offered (and not taken on this clock) is kept; the new one
                    # is dropped.
                    with m.If(self.o_data.valid & ~self.o_data.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o_data.payload.eq(shift), self.o_data.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(_UART):
    """Sends each byte taken from ``i_data`` as an 8N1 frame on ``tx``.

    Parameters
    ----------
    clk_freq : int or float
        The ``sync`` domain's frequency in Hz.
    baud : int or float
        Bits per second.

    Members
    -------
    i_data : In(stream.Signature(8))
        ``ready`` while the line is idle; a byte taken starts its frame on the next clock.
    tx : Out(1)
        The serial line, registered, idle high.

    Timing: each bit lasts exactly ``divisor`` clocks; a frame is ``10 * divisor`` clocks and
    a byte offered during a frame is taken on the stop bit's last clock, so back-to-back bytes
    follow each other without a gap.
    """

    def __init__(self, *, clk_freq, baud):
        super().__init__({
            "i_data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        }, clk_freq=clk_freq, baud=baud)

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        bits = Signal(range(10))           # bits left to send after the current one
        frame = Signal(9, init=0x1FF)      # the data bits, then the stop bit, then idle

        busy = Signal()
        # The stop bit's last clock: the next byte may start on the following clock.
        last = Signal()
        m.d.comb += [last.eq(busy & (timer == 0) & (bits == 0)),
                     self.i_data.ready.eq(~busy | last)]
        with m.If(self.i_data.valid & self.i_data.ready):
            m.d.sync += [self.tx.eq(0), frame.eq(Cat(self.i_data.payload, 1)),
                         timer.eq(div - 1), bits.eq(9), busy.eq(1)]
        with m.Elif(~busy):
            pass
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits != 0):
            m.d.sync += [self.tx.eq(frame[0]), frame.eq(Cat(frame[1:], 1)),
                         timer.eq(div - 1), bits.eq(bits - 1)]
        with m.Else():
            m.d.sync += busy.eq(0)             # the stop bit has lasted a whole bit
        return m
