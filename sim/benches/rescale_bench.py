"""Runs samples through the rescale unit: each sample's parameter words, then its accumulator
vectors, with random stalls and backpressure.

Job: ``{"lanes", "acc_bits", "samples": [{"params": [[addr, value], ...],
"vectors": [[acc] * lanes, ...], "outputs": n}], "seed", "stall", "backpressure"}``.
Result: ``{"samples": [{"values": [...], "betas": [...], "lasts": [...]}], "cycles"}``.
"""

import cocotb

from .array_bench import pack, unpack_signed
from .common import Bench, save_result, within

VALUE_BITS, BETA_BITS = 64, 21


def param_words(params):
    """``i_param`` words of ``(address, value)`` pairs."""
    return [(a & 0xFFFF) | ((v & 0xFFFFFFFF) << 16) for a, v in params]


def unpack_outputs(words):
    """``o_out`` words as values, betas and last flags."""
    return {"values": [unpack_signed(w, VALUE_BITS, 1)[0] for w in words],
            "betas": [(w >> VALUE_BITS) & ((1 << BETA_BITS) - 1) for w in words],
            "lasts": [(w >> (VALUE_BITS + BETA_BITS)) & 1 for w in words]}


@cocotb.test()
async def run_samples(dut):
    tb = Bench(dut, sources=("i_param", "i_acc"), sinks=("o_out",))
    lanes, acc_bits = tb.job["lanes"], tb.job["acc_bits"]
    await tb.start()
    start = tb.clocks()
    results = []
    for sample in tb.job["samples"]:
        params = param_words(sample["params"])
        await within(tb.sources["i_param"].send(params), 30 * len(params) + 2000,
                     "rescale unit, loading the parameters", tb)
        vectors = [pack([x & ((1 << acc_bits) - 1) for x in vec], acc_bits)
                   for vec in sample["vectors"]]
        sending = cocotb.start_soon(tb.sources["i_acc"].send(vectors))
        budget = 20 * (len(sample["vectors"]) * lanes + sample["outputs"]) + 2000
        words = await within(tb.sinks["o_out"].receive(sample["outputs"]), budget,
                             "rescale unit", tb)
        await within(sending, budget, "rescale unit, inputs left over", tb)
        results.append(unpack_outputs(words))
    save_result({"samples": results, "cycles": tb.clocks() - start})
