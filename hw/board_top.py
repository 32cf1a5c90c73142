"""The layer engine on a board: ``hw.accelerator.Accelerator`` behind the UART host bridge.

``BoardTop`` takes the board's default clock (the ULX3S's 25 MHz oscillator) as the ``sync``
domain, the board's first UART (on the ULX3S the FTDI chip's, the USB port marked US1) for the
bridge, and two LEDs: LED 0 is the bridge's ``error`` (a framing error or a lost byte; reset by
reprogramming) and LED 1 blinks at about 1.5 Hz to show that the clock runs. The host reaches
every stream of the engine through ``hw.host_bridge.HostLink`` (its channels are the engine's
stream members, in order: ``i_param``, ``i_w``, ``i_a``, ``i_pass`` to write, ``o_out`` to read).
"""

from amaranth.hdl import Elaboratable, Module, Signal

from .host_bridge import HostBridge

__all__ = ["BoardTop", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115_200


class BoardTop(Elaboratable):
    """A board-level top: it has no ports of its own, only the platform's pins (so it is an
    ``Elaboratable``, not a ``wiring.Component``).

    Parameters
    ----------
    target : wiring.Component
        The design behind the bridge, for example ``Accelerator(config=...)``.
    clk_freq : int or float
        The frequency of the board's default clock in Hz (``platform.default_clk_frequency``);
        given here, not read at elaboration, so that a bad baud rate is refused at once.
    baud : int
        The UART's bits per second (115200 by default).
    fifo_depth : int
        The bridge's receive FIFO in bytes (one ECP5 block RAM holds 2048).
    """

    def __init__(self, target, *, clk_freq, baud=DEFAULT_BAUD, fifo_depth=512):
        self._bridge = HostBridge(target, clk_freq=clk_freq, baud=baud, fifo_depth=fifo_depth)
        self._clk_freq = clk_freq

    @property
    def bridge(self):
        return self._bridge

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self._bridge
        if platform.default_clk_frequency != self._clk_freq:
            raise ValueError(f"the board's clock is {platform.default_clk_frequency:g} Hz, not "
                             f"{self._clk_freq:g} Hz")
        uart = platform.request("uart", 0)
        m.d.comb += [bridge.rx.eq(uart.rx.i), uart.tx.o.eq(bridge.tx)]
        m.d.comb += platform.request("led", 0).o.eq(bridge.error)
        blink = Signal(range(int(self._clk_freq) // 3 + 1))
        beat = Signal()
        m.d.sync += blink.eq(blink + 1)
        with m.If(blink == int(self._clk_freq) // 3):
            m.d.sync += [blink.eq(0), beat.eq(~beat)]
        m.d.comb += platform.request("led", 1).o.eq(beat)
        return m
