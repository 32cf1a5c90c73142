"""Runs samples through the rescale unit: each sample's parameter words, then its accumulator
vectors, with random stalls and backpressure.

Job: ``{"lanes", "acc_bits", "samples": [{"params": [[addr, value], ...],
"vectors": [[acc] * lanes, ...], "outputs": n}], "seed", "stall", "backpressure"}``.
Result: ``{"samples": [{"values": [...], "betas": [...], "lasts": [...]}], "cycles"}``.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from .array_bench import pack, unpack_signed
from .common import CLOCK_NS, load_job, save_result, start_clock, within
from .streams import StreamSink, StreamSource

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
    job = load_job()
    lanes, acc_bits = job["lanes"], job["acc_bits"]
    rng = random.Random(job["seed"])
    params = StreamSource(dut, "i_param", dut.clk, rng, job["stall"])
    accs = StreamSource(dut, "i_acc", dut.clk, rng, job["stall"])
    outputs = StreamSink(dut, "o_out", dut.clk, rng, job["backpressure"])
    await start_clock(dut)
    await RisingEdge(dut.clk)
    start = get_sim_time(unit="ns")
    results = []
    for sample in job["samples"]:
        await params.send(param_words(sample["params"]))
        sending = cocotb.start_soon(accs.send([pack([x & ((1 << acc_bits) - 1) for x in vec],
                                                    acc_bits) for vec in sample["vectors"]]))
        budget = 20 * (len(sample["vectors"]) * lanes + sample["outputs"]) + 2000
        words = await within(outputs.receive(sample["outputs"]), budget, "rescale unit")
        await sending
        results.append(unpack_outputs(words))
    cycles = round((get_sim_time(unit="ns") - start) / CLOCK_NS)
    save_result({"samples": results, "cycles": cycles})
