"""Runs steps through the layer engine (``hw.accelerator``): for each step (one sample of one
layer) the rescale parameters, then the passes, while the outputs are collected.

Job: ``{"rows", "cols", "a_bits", "w_bits", "steps": [{"params": [[addr, value], ...],
"passes": [...], "outputs": n}], "seed", "stall", "backpressure"}`` (passes as in
``engine_bench``). Result: ``{"steps": [{"values", "betas", "lasts", "cycles"}]}``.
"""

import cocotb

from .common import Bench, save_result, within
from .engine_bench import pass_words
from .rescale_bench import param_words, unpack_outputs


@cocotb.test()
async def run_steps(dut):
    tb = Bench(dut, sources=("i_param", "i_w", "i_a", "i_pass"), sinks=("o_out",))
    job = tb.job
    await tb.start()
    results = []
    for step in job["steps"]:
        start = tb.clocks()
        params = param_words(step["params"])
        await within(tb.sources["i_param"].send(params), 30 * len(params) + 2000,
                     "layer engine, loading the rescale parameters", tb)
        words, _ = pass_words(step["passes"], job["rows"], job["a_bits"], job["w_bits"])
        tasks = [cocotb.start_soon(tb.sources[name].send(w))
                 for name, w in zip(("i_w", "i_a", "i_pass"), words)]
        budget = 30 * (len(words[0]) + len(words[1]) + step["outputs"]) + 2000
        received = await within(tb.sinks["o_out"].receive(step["outputs"]), budget,
                                "layer engine", tb)
        for task in tasks:
            await within(task, budget, "layer engine, inputs left over", tb)
        result = unpack_outputs(received)
        result["cycles"] = tb.clocks() - start
        results.append(result)
    save_result({"steps": results})
