"""Drives a lone (combinational) multiplier with the job's ``(a, w)`` pairs.

Job: ``{"pairs": [[a, w], ...]}``. Result: ``{"products": [-mag if neg else mag, ...],
"odd": [odd, ...]}``.
"""

import cocotb
from cocotb.triggers import Timer

from .common import load_job, save_result


@cocotb.test()
async def multiply(dut):
    products, odd = [], []
    for a, w in load_job()["pairs"]:
        dut.a.value = a
        dut.w.value = w
        await Timer(1, unit="ns")
        mag = dut.mag.value.to_unsigned()
        products.append(-mag if dut.neg.value == 1 else mag)
        odd.append(int(dut.odd.value))
    save_result({"products": products, "odd": odd})
