"""``hw.block_fifo.BlockFIFO`` behaves as Amaranth's ``SyncFIFOBuffered``, clock by clock, and
asks for block RAM."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from gen.verilog import verilog_text
from hw.block_fifo import BlockFIFO


@pytest.mark.parametrize("depth", [3, 4, 8, 9])
def test_block_fifo_is_sync_fifo_buffered(depth):
    """Random writes and reads (more writes than reads, so that it fills): the same ``w_rdy``,
    ``r_rdy`` and ``r_data`` (when ready) on every clock."""
    m = Module()
    m.submodules.ref = ref = SyncFIFOBuffered(width=12, depth=depth)
    m.submodules.dut = dut = BlockFIFO(width=12, depth=depth)
    rng = random.Random(depth)
    seen = {"full": 0, "empty": 0}

    async def bench(ctx):
        for _ in range(2000):
            w_en, r_en, data = rng.random() < 0.6, rng.random() < 0.5, rng.randrange(4096)
            for f in (ref, dut):
                ctx.set(f.w_en, w_en)
                ctx.set(f.r_en, r_en)
                ctx.set(f.w_data, data)
            state = [(ctx.get(f.w_rdy), ctx.get(f.r_rdy),
                      ctx.get(f.r_data) if ctx.get(f.r_rdy) else None) for f in (ref, dut)]
            assert state[0] == state[1]
            seen["full"] += not state[0][0]
            seen["empty"] += not state[0][1]
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["full"] and seen["empty"]


def test_block_fifo_asks_for_block_ram():
    assert 'ram_style = "block"' in verilog_text(BlockFIFO(width=9, depth=4), "top")


@pytest.mark.parametrize("depth", [3, 5])
def test_registered_block_fifo_is_a_queue_one_entry_longer(depth):
    """``registered``: random writes and reads with stalls on both sides; every word comes out
    once, in order, and the queue holds ``depth + 1`` words before ``w_rdy`` drops."""
    m = Module()
    m.submodules.dut = dut = BlockFIFO(width=12, depth=depth, registered=True)
    rng = random.Random(depth)
    sent, got, most = [], [], 0

    async def bench(ctx):
        nonlocal most
        for i in range(3000):
            filling = (i // 200) % 2 == 0             # phases that fill it and drain it
            w_en = rng.random() < (0.8 if filling else 0.3)
            r_en = rng.random() < (0.2 if filling else 0.8)
            data = rng.randrange(4096)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.w_data, data)
            if w_en and ctx.get(dut.w_rdy):
                sent.append(data)
            if r_en and ctx.get(dut.r_rdy):
                got.append(ctx.get(dut.r_data))
            most = max(most, len(sent) - len(got))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == sent[:len(got)] and len(got) > 500
    assert most == depth + 1


def test_registered_block_fifo_reads_the_block_ram_into_a_register():
    """The registered queue's ``r_data`` is a flip-flop of the top module (the plain queue's
    is the memory's output, a wire)."""
    text = verilog_text(BlockFIFO(width=9, depth=4, registered=True), "top")
    assert 'ram_style = "block"' in text and "  reg [8:0] r_data " in text
    assert "  reg [8:0] r_data " not in verilog_text(BlockFIFO(width=9, depth=4), "top")
