# amaranth: UnusedElaboratable=no
"""``hw.uart`` in Amaranth's simulator: the transmitter's waveform clock by clock, the receiver
on seeded random bytes at the exact baud rate and 3 % off either way, from the FT231X at the
board's default rate (``fastest_baud``), a glitch, a missing stop
bit, an overrun, and the loop of both; the divisor's checks with their exact messages."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import UARTReceiver, UARTTransmitter, divisor, fastest_baud
from tests.serial_line import frame_bits, receive_bytes, send_bytes

CLK = 1_000_000
PERIOD = 1 / CLK


def _run(dut, *benches, processes=(), background=()):
    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    for bench in benches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for process in processes:
        sim.add_process(process)
    sim.run()


def test_init():
    rx = UARTReceiver(clk_freq=CLK, baud=62_500)
    tx = UARTTransmitter(clk_freq=25e6, baud=115_200)
    assert (rx.clk_freq, rx.baud, rx.divisor) == (CLK, 62_500, 16)
    assert (tx.clk_freq, tx.baud, tx.divisor) == (25e6, 115_200, 217)
    assert [n for n in rx.signature.members] == ["rx", "o_data", "framing_error", "overrun"]
    assert [n for n in tx.signature.members] == ["i_data", "tx"]
    assert divisor(48e6, 3e6) == 16


@pytest.mark.parametrize("clk, baud, error, match", [
    (CLK, 500_000, ValueError, r"^clk_freq / baud must be at least 4 clocks per bit, not 2 "
                               r"\(1e\+06 Hz, 500000 baud\)$"),
    (CLK, 0, ValueError, r"^baud must be positive, not 0$"),
    (-1, 9600, ValueError, r"^clk_freq must be positive, not -1$"),
    ("1e6", 9600, TypeError, r"^clk_freq must be a number, not '1e6'$"),
    (CLK, True, TypeError, r"^baud must be a number, not True$"),
    (1_000_000, 230_000, ValueError, r"^1e\+06 Hz cannot make 230000 baud within 2%: 4 clocks "
                                     r"per bit give 250000 baud \(8\.7% off\)$"),
])
def test_divisor_refused(clk, baud, error, match):
    with pytest.raises(error, match=match):
        divisor(clk, baud)
    with pytest.raises(error, match=match):
        UARTTransmitter(clk_freq=clk, baud=baud)


def test_transmitter_waveform_clock_by_clock():
    """Back-to-back bytes: every bit exactly ``divisor`` clocks, no gap between frames."""
    dut = UARTTransmitter(clk_freq=CLK, baud=CLK / 5)
    data = [0x55, 0x00, 0xFF, 0xA3]
    wave = []

    async def bench(ctx):
        ctx.set(dut.i_data.valid, 1)
        for byte in data:
            ctx.set(dut.i_data.payload, byte)
            while True:
                ready = ctx.get(dut.i_data.ready)
                await ctx.tick()
                wave.append(ctx.get(dut.tx))
                if ready:
                    break
        ctx.set(dut.i_data.valid, 0)
        for _ in range(60):
            await ctx.tick()
            wave.append(ctx.get(dut.tx))

    _run(dut, bench)
    expected = [b for byte in data for bit in frame_bits(byte) for b in [bit] * 5]
    start = wave.index(0)
    assert wave[:start] == []            # the first byte starts on the first clock
    assert wave[start:start + len(expected)] == expected
    assert set(wave[start + len(expected):]) == {1}


@pytest.mark.parametrize("clocks_per_bit", [16, 16 * 1.03, 16 * 0.97])
def test_receiver_random_bytes(clocks_per_bit):
    """Seeded random bytes from a host at the exact rate and 3 % slower and faster."""
    dut = UARTReceiver(clk_freq=CLK, baud=CLK / 16)
    data = random.Random(7).choices(range(256), k=40) + [0x00, 0xFF]
    got, errors = [], []

    async def sender(ctx):
        ctx.set(dut.o_data.ready, 1)
        await ctx.tick().repeat(5)
        await send_bytes(ctx, dut.rx, data, clocks_per_bit)
        await ctx.tick().repeat(40)

    async def sink(ctx):
        async for _, _, valid, payload, ferr, ovr in ctx.tick().sample(
                dut.o_data.valid, dut.o_data.payload, dut.framing_error, dut.overrun):
            if valid:
                got.append(payload)
            if ferr or ovr:
                errors.append((ferr, ovr))

    _run(dut, sender, processes=[sink])
    assert got == data
    assert errors == []


def test_receiver_glitch_framing_error_and_recovery():
    """A low pulse shorter than half a bit is no byte; a low stop bit is a framing error and no
    byte; the next good frame is received."""
    dut = UARTReceiver(clk_freq=CLK, baud=CLK / 8)
    got, ferrs = [], []

    async def sender(ctx):
        ctx.set(dut.o_data.ready, 1)
        await ctx.tick().repeat(4)
        ctx.set(dut.rx, 0)                   # a glitch of 2 clocks
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        for bit in frame_bits(0x5A)[:-1] + [0]:   # stop bit low
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(8)
        await ctx.tick().repeat(16)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(16)
        await send_bytes(ctx, dut.rx, [0xC3], 8)
        await ctx.tick().repeat(20)

    async def sink(ctx):
        async for _, _, valid, payload, ferr in ctx.tick().sample(
                dut.o_data.valid, dut.o_data.payload, dut.framing_error):
            if valid:
                got.append(payload)
            ferrs.append(ferr)

    _run(dut, sender, processes=[sink])
    assert got == [0xC3]
    assert sum(ferrs) == 1


def test_receiver_overrun_keeps_the_first_byte():
    dut = UARTReceiver(clk_freq=CLK, baud=CLK / 8)
    overruns = []

    async def sender(ctx):
        await send_bytes(ctx, dut.rx, [0x11, 0x22], 8)
        await ctx.tick().repeat(10)
        assert ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.payload) == 0x11
        ctx.set(dut.o_data.ready, 1)
        await ctx.tick()
        ctx.set(dut.o_data.ready, 0)
        assert not ctx.get(dut.o_data.valid)
        await send_bytes(ctx, dut.rx, [0x33], 8)
        await ctx.tick().repeat(10)
        assert ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.payload) == 0x33

    async def watch(ctx):
        async for _, _, ovr in ctx.tick().sample(dut.overrun):
            overruns.append(ovr)

    _run(dut, sender, processes=[watch])
    assert sum(overruns) == 1


def test_transmitter_into_receiver():
    """The loop: both at 25 MHz and 115200 baud (217 clocks per bit, 0.04 % off)."""
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(clk_freq=25e6, baud=115_200)
    m.submodules.rx = rx = UARTReceiver(clk_freq=25e6, baud=115_200)
    m.d.comb += rx.rx.eq(tx.tx)
    data = random.Random(3).choices(range(256), k=6)
    got = []

    async def bench(ctx):
        ctx.set(rx.o_data.ready, 1)
        for byte in data:
            ctx.set(tx.i_data.payload, byte)
            ctx.set(tx.i_data.valid, 1)
            await ctx.tick().until(tx.i_data.ready)
        ctx.set(tx.i_data.valid, 0)
        await ctx.tick().repeat(217 * 12)

    async def sink(ctx):
        async for _, _, valid, payload in ctx.tick().sample(rx.o_data.valid, rx.o_data.payload):
            if valid:
                got.append(payload)

    sim = Simulator(m)
    sim.add_clock(1 / 25e6)
    sim.add_testbench(bench)
    sim.add_process(sink)
    sim.run()
    assert got == data


def test_reference_receiver_reads_the_transmitter():
    """The test's own receiver (``tests.serial_line``) agrees with the transmitter, so the
    bridge tests' host side is sound."""
    dut = UARTTransmitter(clk_freq=CLK, baud=CLK / 6)
    data = [0x00, 0x81, 0x7E, 0xFF]
    got = []

    async def bench(ctx):
        for byte in data:
            ctx.set(dut.i_data.payload, byte)
            ctx.set(dut.i_data.valid, 1)
            await ctx.tick().until(dut.i_data.ready)
        ctx.set(dut.i_data.valid, 0)
        await ctx.tick().repeat(6 * 12)

    _run(dut, bench, background=[receive_bytes(dut.tx, 6, got)])
    assert got == data


@pytest.mark.parametrize("clk", [100e6, 25e6])
def test_receiver_from_the_ftdi_chip_at_the_fastest_baud(clk):
    """The board's default (``fastest_baud``): at 100 MHz 3 Mbaud (33 clocks per bit, 1.0 %
    fast), at 25 MHz 1.5 Mbaud (17 clocks per bit, 2.0 % slow); the host (the FT231X) at
    exactly its rate, 33.33 and 16.67 clocks per bit, sends seeded random bytes back to back
    and every one arrives without an error."""
    baud = fastest_baud(clk)
    assert (baud, divisor(clk, baud)) == {100e6: (3_000_000, 33), 25e6: (1_500_000, 17)}[clk]
    host = clk / baud
    dut = UARTReceiver(clk_freq=clk, baud=baud)
    data = random.Random(11).choices(range(256), k=60) + [0x00, 0xFF, 0x00, 0xFF]
    got, errors = [], []

    async def sender(ctx):
        ctx.set(dut.o_data.ready, 1)
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, data, host)
        await ctx.tick().repeat(80)

    async def sink(ctx):
        async for _, _, valid, payload, ferr, ovr in ctx.tick().sample(
                dut.o_data.valid, dut.o_data.payload, dut.framing_error, dut.overrun):
            if valid:
                got.append(payload)
            if ferr or ovr:
                errors.append((ferr, ovr))

    sim = Simulator(dut)
    sim.add_clock(1 / clk)
    sim.add_testbench(sender)
    sim.add_process(sink)
    sim.run()
    assert got == data
    assert errors == []


def test_fastest_baud():
    assert [fastest_baud(c) for c in (100e6, 50e6, 25e6, 12e6)] == [3_000_000] * 2 + \
        [1_500_000, 3_000_000]
    assert fastest_baud(25e6, rates=(115_200, 921_600)) == 921_600
    with pytest.raises(ValueError, match=r"^1e\+06 Hz makes none of 3000000, 2000000, 1500000, "
                                         r"1000000, 921600, 460800, 230400, 115200 baud within "
                                         r"2%$"):
        fastest_baud(1e6)
    with pytest.raises(ValueError, match=r"^clk_freq must be positive, not 0$"):
        fastest_baud(0)
