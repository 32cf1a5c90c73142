"""Runs passes through the matmul engine (array + accumulator buffer), with random stalls.

Job::

    {"rows", "cols", "a_bits", "w_bits", "buffer_bits",
     "passes": [{"weights": [[code] * cols] * rows, "acts": [[code] * rows] * M,
                 "shift", "drop", "first", "final"}, ...],
     "seed", "stall", "backpressure"}

Result: ``{"sums": [[[acc] * cols] * M per final pass], "lasts_ok": bool, "cycles": int}``.
"""

import cocotb

from .array_bench import pack, unpack_signed
from .common import Bench, save_result, within


def pass_words(passes, rows, a_bits, w_bits):
    """The words of ``passes`` for ``i_w``, ``i_a`` and ``i_pass``, and the ``M`` of every
    final pass (the vectors it sends out)."""
    words = ([], [], [])
    finals = []
    for p in passes:
        words[0].extend(pack(row, w_bits) for row in p["weights"])
        m = len(p["acts"])
        words[1].extend(pack(a, a_bits) | (int(i == m - 1) << (rows * a_bits))
                        for i, a in enumerate(p["acts"]))
        words[2].append(p["shift"] | p["drop"] << 3 | p["first"] << 4 | p["final"] << 5)
        if p["final"]:
            finals.append(m)
    return words, finals


@cocotb.test()
async def run_passes(dut):
    tb = Bench(dut, sources=("i_w", "i_a", "i_pass"), sinks=("o_acc",))
    job = tb.job
    rows, cols, a_bits, w_bits, bits = (job[k] for k in
                                        ("rows", "cols", "a_bits", "w_bits", "buffer_bits"))
    await tb.start()

    words, finals = pass_words(job["passes"], rows, a_bits, w_bits)

    start = tb.clocks()
    for source, w in zip(tb.sources.values(), words):
        cocotb.start_soon(source.send(w))
    budget = 20 * (len(words[0]) + len(words[1]) + sum(finals)) + 100 * len(words[2]) + 1000
    received = await within(tb.sinks["o_acc"].receive(sum(finals)), budget, "matmul engine",
                            tb)
    cycles = tb.clocks() - start

    out, lasts_ok, i = [], True, 0
    for m in finals:
        chunk = received[i:i + m]
        i += m
        out.append([unpack_signed(w, bits, cols) for w in chunk])
        lasts_ok &= all(((w >> (cols * bits)) & 1) == int(j == m - 1) for j, w in enumerate(chunk))
    save_result({"sums": out, "lasts_ok": lasts_ok, "cycles": cycles})
