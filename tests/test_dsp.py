# amaranth: UnusedElaboratable=no
"""``hw.dsp``: an ECP5's multipliers are DSP blocks with their own registers, everything else
gets portable Verilog; both multiply exactly (in Amaranth's simulator here, and the rescale unit
built for an ECP5 runs on Verilator with ``sim/vendor/MULT18X18D.v`` in
``tests/test_rescale_rtl.py``)."""

import re

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from gen.verilog import verilog_text
from hw.dsp import Ecp5Target, Mult18
from hw.rescale_stages import DIV_BITS, WIDE_BITS, Product


def _blocks(text):
    """The parameters of every ``MULT18X18D`` instance in ``text``."""
    return [dict(re.findall(r"\.(\w+)\(\"(\w+)\"\)", params))
            for params in re.findall(r"MULT18X18D #\((.*?)\) \w+ \(", text, flags=re.S)]


def test_portable_verilog_has_no_vendor_cells():
    assert "MULT18X18D" not in verilog_text(Product(signed(WIDE_BITS), unsigned(DIV_BITS),
                                                    WIDE_BITS), "top")


@pytest.mark.parametrize("shapes", [(signed(WIDE_BITS), unsigned(DIV_BITS), WIDE_BITS),
                                    (signed(17), unsigned(20), None)])
def test_ecp5_product_is_registered_dsp_blocks(shapes):
    """One block per partial product, each with its input and output registers (the same two
    clocks as the portable ``Mult18``), and no multiply left to the fabric."""
    product = Product(*shapes)
    text = verilog_text(product, "top", Ecp5Target())
    blocks = _blocks(text)
    assert len(blocks) == product.dsp_blocks == Product.blocks(*shapes)
    reg = {"REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0", "REG_OUTPUT_CLK": "CLK0"}
    assert all(b == reg for b in blocks)
    assert " * " not in re.sub(r"/\*.*?\*/|\(\*.*?\*\)", "", text, flags=re.S)


def test_mult18_portable_multiplies_with_two_registers():
    """Signed 18-bit extremes and random pairs, ``en`` held low at random: ``p`` is the
    product of the operands of the second-to-last enabled clock."""
    rng = np.random.default_rng(5)
    ends = [-2 ** 17, -1, 0, 1, 2 ** 17 - 1]
    pairs = [(a, b) for a in ends for b in ends]
    pairs += [tuple(int(v) for v in rng.integers(-2 ** 17, 2 ** 17, 2)) for _ in range(300)]
    dut = Mult18()
    got, want = [], []

    async def bench(ctx):
        history = []
        for a, b in pairs:
            en = int(rng.random() < 0.7)
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                history.append(a * b)
                if len(history) >= 2:
                    got.append(ctx.get(dut.p))
                    want.append(history[-2])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) > 200 and got == want
