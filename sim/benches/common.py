"""What every bench shares: the job and result files, the clock and the reset."""

import json
import os

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

__all__ = ["load_job", "save_result", "start_clock", "CLOCK_NS"]

CLOCK_NS = 10


def load_job():
    with open(os.environ["ASQ_JOB"]) as f:
        return json.load(f)


def save_result(result):
    with open(os.environ["ASQ_RESULT"], "w") as f:
        json.dump(result, f)


async def start_clock(dut, reset_cycles=2):
    """Start ``dut.clk`` and hold ``dut.rst`` for ``reset_cycles`` clocks."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst.value = 0


async def within(coro, clocks, what):
    """Await ``coro``, failing with a clear message after ``clocks`` clocks (a hung design must
    fail the test, not hang it)."""
    from cocotb.triggers import SimTimeoutError, with_timeout

    try:
        return await with_timeout(coro, clocks * CLOCK_NS, "ns")
    except SimTimeoutError:
        raise AssertionError(f"{what}: no result after {clocks} clocks") from None
