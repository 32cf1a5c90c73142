"""Runs steps of stream traffic through a design, with random stalls and backpressure: the one
per-clock bench of every streaming block (array, matmul engine, rescale unit, layer engine).

The bench moves integers only: the host packs and unpacks them with the hardware's layouts
(``sim.payload``). Job::

    {"sources": [name, ...], "sinks": [name, ...],      # the design's stream ports
     "steps": [{"first": {source: [word, ...]},         # sent before the rest (parameters)
                "send": {source: [word, ...]},          # sent concurrently
                "receive": {sink: count}}, ...],        # taken while they are sent, one
                                                        # sink after another
     "seed", "stall", "backpressure"}                   # P(valid low), P(ready low) per clock

With ``"aborted": step, "abort_after": clocks, "reset_clocks": clocks`` in the job, that step
runs first and is cut off by a reset after ``abort_after`` clocks (every stream stops where it
is, ``rst`` is held for ``reset_clocks``); the steps then run as on a fresh design.

Result: ``{"steps": [{"received": {sink: [word, ...]}, "cycles": clocks}, ...]}``. A step that
does not finish within its budget of clocks fails the run, naming the streams that are stuck
and how far each got.
"""

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from .common import Bench, save_result, within

#: Clocks allowed per word moved, and per step, before the watchdog calls a design hung.
CLOCKS_PER_WORD, CLOCKS_PER_STEP = 40, 2000


async def _abort(tb, step, abort_after, reset_clocks):
    """Start ``step``, cut it off after ``abort_after`` clocks with a reset; return a fresh
    ``Bench`` (every ``valid`` and ``ready`` low)."""
    tasks = [cocotb.start_soon(tb.sources[n].send(w))
             for n, w in {**step["first"], **step["send"]}.items()]
    tasks += [cocotb.start_soon(tb.sinks[n].receive(c)) for n, c in step["receive"].items()]
    await ClockCycles(tb.dut.clk, abort_after)
    for task in tasks:
        task.cancel()
    fresh = Bench(tb.dut)
    tb.dut.rst.value = 1
    await ClockCycles(tb.dut.clk, reset_clocks)
    tb.dut.rst.value = 0
    await RisingEdge(tb.dut.clk)
    return fresh


@cocotb.test()
async def run_steps(dut):
    tb = Bench(dut)
    await tb.start()
    if "aborted" in tb.job:
        tb = await _abort(tb, tb.job["aborted"], tb.job["abort_after"], tb.job["reset_clocks"])
    results = []
    for i, step in enumerate(tb.job["steps"]):
        start = tb.clocks()
        moved = (sum(map(len, step["first"].values())) + sum(map(len, step["send"].values()))
                 + sum(step["receive"].values()))
        budget = CLOCKS_PER_WORD * moved + CLOCKS_PER_STEP

        async def traffic():
            for name, words in step["first"].items():
                await tb.sources[name].send(words)
            tasks = [cocotb.start_soon(tb.sources[name].send(words))
                     for name, words in step["send"].items()]
            received = {}
            for name, count in step["receive"].items():
                received[name] = await tb.sinks[name].receive(count)
            for task in tasks:
                await task
            return received

        received = await within(traffic(), budget, f"step {i}", tb)
        results.append({"received": received, "cycles": tb.clocks() - start})
    save_result({"steps": results})
