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

Result: ``{"steps": [{"received": {sink: [word, ...]}, "cycles": clocks}, ...]}``. A step that
does not finish within its budget of clocks fails the run with the streams still busy named.
"""

import cocotb

from .common import Bench, save_result, within

#: Clocks allowed per word moved, and per step, before the watchdog calls a design hung.
CLOCKS_PER_WORD, CLOCKS_PER_STEP = 40, 2000


@cocotb.test()
async def run_steps(dut):
    tb = Bench(dut)
    await tb.start()
    results = []
    for i, step in enumerate(tb.job["steps"]):
        start = tb.clocks()
        moved = (sum(map(len, step["first"].values())) + sum(map(len, step["send"].values()))
                 + sum(step["receive"].values()))
        budget = CLOCKS_PER_WORD * moved + CLOCKS_PER_STEP
        busy = set()

        async def send(name, words):
            busy.add(name)
            await tb.sources[name].send(words)
            busy.discard(name)

        async def traffic():
            for name, words in step["first"].items():
                await send(name, words)
            tasks = [cocotb.start_soon(send(name, words)) for name, words in step["send"].items()]
            received = {}
            for name, count in step["receive"].items():
                busy.add(name)
                received[name] = await tb.sinks[name].receive(count)
                busy.discard(name)
            for task in tasks:
                await task
            return received

        received = await within(traffic(), budget,
                                lambda: f"step {i}: streams {', '.join(sorted(busy))} stuck")
        results.append({"received": received, "cycles": tb.clocks() - start})
    save_result({"steps": results})
