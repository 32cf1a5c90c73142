"""Runs steps through the layer engine (``hw.accelerator``): for each step (one sample of one
layer) the rescale parameters, then the passes, while the outputs are collected.

Job: ``{"rows", "cols", "a_bits", "w_bits", "steps": [{"params": [[addr, value], ...],
"passes": [...], "outputs": n}], "seed", "stall", "backpressure"}`` (passes as in
``engine_bench``). Result: ``{"steps": [{"values", "betas", "lasts", "cycles"}]}``.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from .common import CLOCK_NS, load_job, save_result, start_clock, within
from .engine_bench import pass_words
from .rescale_bench import param_words, unpack_outputs
from .streams import StreamSink, StreamSource


@cocotb.test()
async def run_steps(dut):
    job = load_job()
    rng = random.Random(job["seed"])
    params = StreamSource(dut, "i_param", dut.clk, rng, job["stall"])
    sources = [StreamSource(dut, name, dut.clk, rng, job["stall"])
               for name in ("i_w", "i_a", "i_pass")]
    outputs = StreamSink(dut, "o_out", dut.clk, rng, job["backpressure"])
    await start_clock(dut)
    await RisingEdge(dut.clk)
    results = []
    for step in job["steps"]:
        start = get_sim_time(unit="ns")
        await params.send(param_words(step["params"]))
        words, _ = pass_words(step["passes"], job["rows"], job["a_bits"], job["w_bits"])
        tasks = [cocotb.start_soon(s.send(w)) for s, w in zip(sources, words)]
        budget = 30 * (len(words[0]) + len(words[1]) + step["outputs"]) + 2000
        received = await within(outputs.receive(step["outputs"]), budget, "layer engine")
        for task in tasks:
            await task
        result = unpack_outputs(received)
        result["cycles"] = round((get_sim_time(unit="ns") - start) / CLOCK_NS)
        results.append(result)
    save_result({"steps": results})
