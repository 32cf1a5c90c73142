"""The layer engine on a board: ``hw.accelerator.Accelerator`` behind the UART host bridge.

``BoardTop`` takes the board's default clock (the ULX3S's 25 MHz oscillator) as the ``sync``
domain, the board's first UART (on the ULX3S the FTDI chip's, the USB port marked US1) for the
bridge, and two LEDs: LED 0 is the bridge's ``error`` (a framing error or a lost byte; reset by
reprogramming) and LED 1 blinks at about 1.5 Hz to show that the clock runs. The host reaches
every stream of the engine through ``hw.host_bridge.HostLink`` (its channels are the engine's
stream members, in order: ``i_param``, ``i_beta``, ``i_res``, ``i_w``, ``i_a``, ``i_pass`` to
write, ``o_out`` to read).
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, \
    Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from .host_bridge import HostBridge
from .uart import fastest_baud

__all__ = ["BoardTop", "ecp5_pll"]

RESET_STAGES = 4        # registers between the reset synchroniser and the design's reset


def ecp5_pll(f_in, f_out):
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV, frequency)`` of an ECP5 ``EHXPLLL`` that makes
    ``f_out`` Hz (or the nearest it can, within 5 %) from ``f_in`` Hz with ``CLKOP`` as its
    feedback: ``f_in / CLKI_DIV`` from 3.125 to 400 MHz, ``frequency * CLKOP_DIV`` (the VCO)
    from 400 to 800 MHz (nearest 600), ``frequency = f_in * CLKFB_DIV / CLKI_DIV`` (Lattice TN1263).
    Raises ``ValueError`` when no setting is within 5 %."""
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f = pfd * clkfb
            # The VCO nearest 600 MHz, the middle of its range (as ecppll chooses).
            clkop = min(128, max(1, round(600e6 / f)))
            if 400e6 <= f * clkop <= 800e6:
                err = abs(f - f_out)
                if best is None or err < best[0] - 1e-3:
                    best = (err, clki, clkfb, clkop, f)
    if best is None or best[0] > 0.05 * f_out:
        raise ValueError(f"the ECP5 PLL cannot make {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz within 5 %")
    return best[1:]


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
    sys_freq : int or float or None
        The ``sync`` domain's frequency: ``None`` runs the design on the board's clock, a
        frequency makes it with the ECP5 PLL (``ecp5_pll``; the design is held in reset until
        the PLL locks) and tells nextpnr to meet it.
    baud : int or None
        The UART's bits per second; ``None`` (the default) takes the fastest rate of the
        board's FTDI chip that the ``sync`` clock makes within the UART's tolerance
        (``hw.uart.fastest_baud``: 3,000,000 at 100 MHz, 1,500,000 at 25 MHz).
    fifo_depth : int
        The bridge's receive FIFO in bytes (one ECP5 block RAM holds 2048).
    """

    def __init__(self, target, *, clk_freq, sys_freq=None, baud=None, fifo_depth=512):
        self._pll = None if sys_freq is None else ecp5_pll(clk_freq, sys_freq)
        self._sys_freq = clk_freq if sys_freq is None else self._pll[-1]
        if baud is None:
            baud = fastest_baud(self._sys_freq)
        self._baud = baud
        self._bridge = HostBridge(target, clk_freq=self._sys_freq, baud=baud,
                                  fifo_depth=fifo_depth)
        self._clk_freq = clk_freq

    @property
    def sys_freq(self):
        """The ``sync`` domain's frequency in Hz (the PLL's, when it has one)."""
        return self._sys_freq

    @property
    def baud(self):
        """The UART's bits per second."""
        return self._baud

    @property
    def bridge(self):
        return self._bridge

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self._bridge
        if platform.default_clk_frequency != self._clk_freq:
            raise ValueError(f"the board's clock is {platform.default_clk_frequency:g} Hz, not "
                             f"{self._clk_freq:g} Hz")
        if self._pll is not None:
            self._add_pll(m, platform)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.led_error = led_error = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led_beat = led_beat = io.Buffer("o", platform.request("led", 1, dir="-"))
        m.d.comb += [bridge.rx.eq(rx.i), tx.o.eq(bridge.tx), led_error.o.eq(bridge.error)]
        third = int(self._sys_freq) // 3
        blink = Signal(range(third + 1))
        beat = Signal()
        m.d.sync += blink.eq(blink + 1)
        with m.If(blink == third):
            m.d.sync += [blink.eq(0), beat.eq(~beat)]
        m.d.comb += led_beat.o.eq(beat)
        return m

    def _add_pll(self, m, platform):
        clki, clkfb, clkop, freq = self._pll
        m.submodules.clk_in = clk_in = io.Buffer("i", platform.request(platform.default_clk,
                                                                       dir="-"))
        m.domains.sync = sync = ClockDomain("sync")
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self._clk_freq / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{freq / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=clki, p_CLKFB_DIV=clkfb, p_CLKOP_DIV=clkop,
            p_CLKOP_CPHASE=clkop - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, i_CLKFB=ClockSignal("sync"),
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=ClockSignal("sync"), o_LOCK=locked)
        # The reset (held until the PLL locks) reaches thousands of flip-flops across the
        # part, from a synchroniser that sits by the PLL in a corner (9.7 ns of routing at
        # 100 MHz): it is synchronised in a domain of its own and leaves through a few more
        # registers, each with one load but the last, which the placer can move towards the
        # middle of the part.
        m.domains.reset = ClockDomain("reset")
        m.d.comb += ClockSignal("reset").eq(ClockSignal("sync"))
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="reset")
        stages = [Signal(init=1, name=f"reset_stage_{i}") for i in range(RESET_STAGES)]
        m.d.reset += [stages[0].eq(0)] + [b.eq(a) for a, b in zip(stages, stages[1:])]
        m.d.comb += ResetSignal("sync").eq(stages[-1])
        platform.add_clock_constraint(sync.clk, freq)
