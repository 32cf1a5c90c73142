"""Runs tiles of ``A x W`` through the systolic array with random stalls and backpressure.

Job::

    {"rows", "cols", "a_bits", "w_bits", "acc_bits",       # the configuration's widths
     "tiles": [{"weights": [[code] * cols] * rows, "acts": [[code] * rows] * M}, ...],
     "seed", "stall", "backpressure"}                      # stall: P(valid low) per item

Result: ``{"results": [[[acc] * cols] * M per tile], "lasts_ok": bool, "cycles": int}``.
The weight and activation streams run concurrently; the array's own sequencing orders them.
"""

import cocotb

from .common import Bench, save_result, within


def pack(values, bits):
    word = 0
    for i, v in enumerate(values):
        word |= int(v) << (i * bits)
    return word


def unpack_signed(word, bits, count):
    values = []
    for i in range(count):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        values.append(v - (1 << bits) if v >> (bits - 1) else v)
    return values


@cocotb.test()
async def run_tiles(dut):
    tb = Bench(dut, sources=("i_w", "i_a"), sinks=("o_r",))
    job = tb.job
    rows, cols, a_bits, w_bits, acc_bits = (job[k] for k in
                                            ("rows", "cols", "a_bits", "w_bits", "acc_bits"))
    await tb.start()

    w_words, a_words, count = [], [], 0
    for tile in job["tiles"]:
        w_words += [pack(row, w_bits) for row in tile["weights"]]
        m = len(tile["acts"])
        a_words += [pack(a, a_bits) | (int(i == m - 1) << (rows * a_bits))
                    for i, a in enumerate(tile["acts"])]
        count += m

    start = tb.clocks()
    cocotb.start_soon(tb.sources["i_w"].send(w_words))
    cocotb.start_soon(tb.sources["i_a"].send(a_words))
    budget = 20 * (len(w_words) + len(a_words) + count) + 100 * len(job["tiles"]) + 1000
    words = await within(tb.sinks["o_r"].receive(count), budget, "systolic array", tb)
    cycles = tb.clocks() - start

    out, lasts_ok, i = [], True, 0
    for tile in job["tiles"]:
        m = len(tile["acts"])
        chunk = words[i:i + m]
        i += m
        out.append([unpack_signed(w, acc_bits, cols) for w in chunk])
        lasts_ok &= all(((w >> (cols * acc_bits)) & 1) == int(j == m - 1)
                        for j, w in enumerate(chunk))
    save_result({"results": out, "lasts_ok": lasts_ok, "cycles": cycles})
