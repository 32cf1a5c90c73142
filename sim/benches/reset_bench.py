"""A reset in the middle of a layer, then a complete run, on the matmul engine.

Job: ``engine_bench``'s, plus ``"aborted": [pass, ...]`` (passes sent first and cut off by the
reset), ``"abort_after"`` (clocks of the aborted run before the reset) and ``"reset_clocks"``.
The aborted run's streams stop where they are (``valid`` and ``ready`` low), ``rst`` is held
for ``reset_clocks`` clocks, and then every pass of ``passes`` runs to the end with the job's
stalls. Result: ``engine_bench``'s, for the complete run.
"""

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from .array_bench import unpack_signed
from .common import Bench, save_result, within
from .engine_bench import pass_words

SOURCES, SINK = ("i_w", "i_a", "i_pass"), "o_acc"


@cocotb.test()
async def reset_mid_layer(dut):
    tb = Bench(dut, sources=SOURCES, sinks=(SINK,))
    job = tb.job
    rows, cols, a_bits, w_bits, bits = (job[k] for k in
                                        ("rows", "cols", "a_bits", "w_bits", "buffer_bits"))
    await tb.start()

    # The aborted run: every stream busy, then cut off by the reset.
    words, finals = pass_words(job["aborted"], rows, a_bits, w_bits)
    tasks = [cocotb.start_soon(tb.sources[n].send(w)) for n, w in zip(SOURCES, words)]
    tasks.append(cocotb.start_soon(tb.sinks[SINK].receive(sum(finals))))
    await ClockCycles(dut.clk, job["abort_after"])
    for task in tasks:
        task.cancel()
    fresh = Bench(dut, sources=SOURCES, sinks=(SINK,))     # valid and ready low
    dut.rst.value = 1
    if job["reset_clocks"]:
        await ClockCycles(dut.clk, job["reset_clocks"])
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    # The complete run.
    words, finals = pass_words(job["passes"], rows, a_bits, w_bits)
    start = tb.clocks()
    for name, w in zip(SOURCES, words):
        cocotb.start_soon(fresh.sources[name].send(w))
    budget = 20 * (len(words[0]) + len(words[1]) + sum(finals)) + 100 * len(words[2]) + 1000
    received = await within(fresh.sinks[SINK].receive(sum(finals)), budget,
                            "matmul engine after a reset", fresh)
    cycles = tb.clocks() - start
    out, lasts_ok, i = [], True, 0
    for m in finals:
        chunk = received[i:i + m]
        i += m
        out.append([unpack_signed(w, bits, cols) for w in chunk])
        lasts_ok &= all(((w >> (cols * bits)) & 1) == int(j == m - 1) for j, w in enumerate(chunk))
    save_result({"sums": out, "lasts_ok": lasts_ok, "cycles": cycles})
