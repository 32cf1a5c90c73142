"""Runs batches of a layer through ``sim.harness.CosimHarness``: no Python per clock.

For each batch the bench writes the stimulus into the harness's memories, sets the counts,
raises ``go`` and waits for ``done`` (or the watchdog, which names the streams that stopped),
then reads the captured outputs and clock marks back in one go.

Job: ``{"seed", "stall", "backpressure" (16-bit thresholds), "progress",
"runs": [{"samples", "n_param", "n_w", "n_pass", "m", "a_stride", "n_out", "budget",
"stim_param", "stim_a", ["stim_w", "stim_pass"]}]}``; the program memories keep what an earlier
batch loaded. Result: ``{"runs": [{"out", "marks", "clocks"}], "load_seconds",
"wait_seconds"}``.
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, ReadWrite, RisingEdge, Timer

from sim.harness import STREAMS

from .common import CLOCK_NS, load_job, save_result

COUNTS = ("samples", "n_param", "n_w", "n_pass", "m", "a_stride", "n_out")


def _load(memory, words):
    for i, word in enumerate(words):
        memory[i].value = word


def _read(memory, count):
    return [memory[i].value.to_unsigned() for i in range(count)]


def _stuck(dut, run):
    """Which streams stopped where, for the watchdog's message."""
    totals = {"i_param": run["n_param"] * run["samples"], "i_w": run["n_w"] * run["samples"],
              "i_a": run["m"] * run["n_pass"] * run["samples"],
              "i_pass": run["n_pass"] * run["samples"], "o_out": run["n_out"]}
    waiting = dut.waiting.value.to_unsigned()
    parts = []
    for i, name in enumerate(STREAMS):
        taken = getattr(dut, f"taken_{name}").value.to_unsigned()
        if taken < totals[name]:
            state = "valid and not ready" if waiting >> i & 1 else "idle"
            parts.append(f"{name} stopped at word {taken} of {totals[name]} ({state})")
    return "; ".join(parts) or "every stream finished but done stayed low"


@cocotb.test()
async def run_batches(dut):
    job = load_job()
    progress_path = os.environ.get("ASQ_PROGRESS")
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.go.value = 0
    dut.serial.value = job["serial"]
    dut.seed.value = job["seed"]
    dut.stall.value = job["stall"]
    dut.backpressure.value = job["backpressure"]
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    memories = {name: getattr(dut, name) for name in
                ("stim_param", "stim_w", "stim_a", "stim_pass", "cap_out", "cap_mark")}
    results, load_s, wait_s, done_samples, done_clocks = [], 0.0, 0.0, 0, 0
    for run in job["runs"]:
        t0 = time.monotonic()
        await ReadWrite()                 # writes in this phase are applied at once
        for name in ("stim_param", "stim_w", "stim_a", "stim_pass"):
            if name in run:
                _load(memories[name], run[name])
        for name in COUNTS:
            getattr(dut, name).value = run[name]
        await RisingEdge(dut.clk)
        dut.go.value = 1
        t1 = time.monotonic()
        fired = await First(RisingEdge(dut.done), Timer(run["budget"] * CLOCK_NS, "ns"))
        if not dut.done.value:
            assert fired is not None
            raise AssertionError(f"layer engine hung: no result after {run['budget']} clocks: "
                                 f"{_stuck(dut, run)}")
        t2 = time.monotonic()
        clocks = dut.clocks.value.to_unsigned()
        out = _read(memories["cap_out"], run["n_out"])
        marks = _read(memories["cap_mark"], run["samples"])
        for name in STREAMS[:-1]:
            taken = getattr(dut, f"taken_{name}").value.to_unsigned()
            want = {"i_param": run["n_param"] * run["samples"], "i_w": run["n_w"] * run["samples"],
                    "i_a": run["m"] * run["n_pass"] * run["samples"],
                    "i_pass": run["n_pass"] * run["samples"]}[name]
            assert taken == want, f"{name}: {taken} words taken, {want} sent"
        results.append({"out": out, "marks": marks, "clocks": clocks})
        dut.go.value = 0
        await ClockCycles(dut.clk, 2)
        load_s += (t1 - t0) + (time.monotonic() - t2)
        wait_s += t2 - t1
        done_samples += run["samples"]
        done_clocks += clocks
        if progress_path:
            with open(progress_path, "w") as f:
                json.dump({"samples": done_samples, "clocks": done_clocks}, f)
    save_result({"runs": results, "load_seconds": load_s, "wait_seconds": wait_s})
