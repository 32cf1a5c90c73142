# amaranth: UnusedElaboratable=no
"""``hw.board_top``: the PLL settings against ``ecppll`` (Project Trellis's calculator), and
the board top prepared for an ECP5 platform (pins, the PLL, the clock constraints) without
running any tool; a small platform stands in for ``amaranth-boards``' ULX3S (same pins)."""

import re

import pytest
from amaranth.build import Attrs, Clock, Pins, Resource, Subsignal
from amaranth.vendor import LatticeECP5Platform

from hw.board_top import BoardTop, ecp5_pll
from tests.test_host_bridge import Adder


class MiniULX3S(LatticeECP5Platform):
    device, package, speed = "LFE5U-25F", "BG381", "6"
    default_clk = "clk25"
    resources = [
        Resource("clk25", 0, Pins("G2", dir="i"), Clock(25e6), Attrs(IO_TYPE="LVCMOS33")),
        Resource("led", 0, Pins("B2", dir="o"), Attrs(IO_TYPE="LVCMOS33")),
        Resource("led", 1, Pins("C2", dir="o"), Attrs(IO_TYPE="LVCMOS33")),
        Resource("uart", 0, Subsignal("rx", Pins("M1", dir="i")),
                 Subsignal("tx", Pins("L4", dir="o")), Attrs(IO_TYPE="LVCMOS33")),
    ]
    connectors = []


@pytest.mark.parametrize("f_out, expected", [
    # (CLKI_DIV, CLKFB_DIV, CLKOP_DIV) as `ecppll -i 25 -o <MHz>` prints them
    (8e6, (3, 1, 72, 25e6 / 3)),
    (10e6, (5, 2, 60, 10e6)),
    (12.5e6, (2, 1, 48, 12.5e6)),
])
def test_pll_settings_equal_ecppll(f_out, expected):
    assert ecp5_pll(25e6, f_out) == pytest.approx(expected)


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match=r"^the ECP5 PLL cannot make 1 MHz from 25 MHz within "
                                         r"5 %$"):
        ecp5_pll(25e6, 1e6)


def test_prepared_for_the_board_with_a_pll():
    top = BoardTop(Adder(), clk_freq=25e6, sys_freq=6.25e6, baud=115_200)
    assert top.sys_freq == 6.25e6
    assert top.bridge.target.signature.members.keys() >= {"i_a", "o_sum"}
    plan = MiniULX3S().prepare(top, name="top")
    lpf = plan.files["top.lpf"]
    for pin in ("G2", "B2", "C2", "M1", "L4"):
        assert f'SITE "{pin}"' in lpf
    assert re.search(r'FREQUENCY NET "[^"]+" 6250000\.0 HZ;', lpf)
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in lpf
    il = plan.files["top.il"]
    assert "EHXPLLL" in il
    assert re.search(r"parameter \\CLKOP_DIV 96\b", il)
    assert re.search(r"parameter \\CLKI_DIV 4\b", il)


def test_prepared_for_the_board_clock():
    top = BoardTop(Adder(), clk_freq=25e6)
    plan = MiniULX3S().prepare(top, name="top")
    assert "EHXPLLL" not in plan.files["top.il"]
    assert top.sys_freq == 25e6


def test_a_board_clock_other_than_given_is_refused():
    top = BoardTop(Adder(), clk_freq=12e6)
    with pytest.raises(ValueError, match=r"^the board's clock is 2.5e\+07 Hz, not 1.2e\+07 Hz$"):
        MiniULX3S().prepare(top, name="top")


def test_the_default_baud_is_the_fastest_the_clock_makes():
    """``hw.uart.fastest_baud`` of the ``sync`` clock: 1.5 Mbaud on the board's 25 MHz,
    3 Mbaud at 100 MHz from the PLL; an explicit rate is kept."""
    assert BoardTop(Adder(), clk_freq=25e6).baud == 1_500_000
    assert BoardTop(Adder(), clk_freq=25e6, sys_freq=100e6).baud == 3_000_000
    assert BoardTop(Adder(), clk_freq=25e6, sys_freq=100e6, baud=115_200).baud == 115_200
