"""What every bench shares: the job and result files, the clock and the reset, and ``Bench``."""

import json
import os
import random

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from .streams import StreamSink, StreamSource

__all__ = ["load_job", "save_result", "start_clock", "within", "Bench", "CLOCK_NS"]

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


async def within(coro, clocks, what, bench=None):
    """Await ``coro``, failing with a clear message after ``clocks`` clocks (a hung design must
    fail the test, not hang it); with ``bench``, the message names the streams that are stuck
    (their transfers made of those asked for)."""
    from cocotb.triggers import SimTimeoutError, with_timeout

    try:
        return await with_timeout(coro, clocks * CLOCK_NS, "ns")
    except SimTimeoutError:
        stuck = f"; stuck: {', '.join(bench.stuck()) or 'no stream'}" if bench else ""
        raise AssertionError(f"{what}: no result after {clocks} clocks{stuck}") from None


class Bench:
    """One job's test bench: the job, a generator seeded by it, a ``StreamSource`` per input
    stream (idling with the job's ``stall``) and a ``StreamSink`` per output stream (with its
    ``backpressure``), all driven from ``dut.clk``. The streams are the job's ``sources`` and
    ``sinks`` unless given."""

    def __init__(self, dut, *, sources=None, sinks=None):
        self.dut = dut
        self.job = load_job()
        sources = self.job["sources"] if sources is None else sources
        sinks = self.job["sinks"] if sinks is None else sinks
        self.rng = random.Random(self.job["seed"])
        self.sources = {name: StreamSource(dut, name, dut.clk, self.rng, self.job["stall"])
                        for name in sources}
        self.sinks = {name: StreamSink(dut, name, dut.clk, self.rng, self.job["backpressure"])
                      for name in sinks}

    async def start(self):
        """Clock, reset, and one clock more."""
        await start_clock(self.dut)
        await RisingEdge(self.dut.clk)

    def stuck(self):
        """The streams with transfers still to make, as ``name (done of total)``."""
        return [f"{name} ({ep.done} of {ep.total})"
                for name, ep in {**self.sources, **self.sinks}.items() if ep.done < ep.total]

    @staticmethod
    def clocks():
        """The simulation time in clocks."""
        return round(get_sim_time(unit="ns") / CLOCK_NS)
