"""Runs batches through ``sim.harness.CosimHarness``: no Python per clock.

For each batch (a *run*) the bench writes the stimulus into the harness's memories, sets the
counts, raises ``go`` and waits for ``done`` (or the watchdog, which names the streams that
stopped and where), then reads the captured outputs and clock marks back in one go.

The job (JSON, ``sim.cosim.CosimSim.run``) is either ``{"mode": "runs", "settings",
"runs"}`` (``sim.cosim.CosimPlan.layer_runs``) or ``{"mode": "network", ...}``: a whole network,
sequenced in this process by ``sim.network_sim.drive`` so that the layers follow each other in
one simulation (its bundle a saved bundle, its input codes a ``.npy`` file). The result (JSON):
``{"runs": [{"out", "marks", "clocks"}]}`` or ``{"network": {"outputs", "betas", "cycles",
"clocks"}}`` (a ``NetworkRun``'s fields), with ``"seconds"`` (loading the memories,
simulating, reading back, and the total, host work included). After every batch the bench
writes ``{"layer", "layers", "steps_done", "steps", "clocks", "seconds"}`` (since the bench
started) to the progress
file.
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, ReadWrite, RisingEdge, Timer

from .common import CLOCK_NS, load_job

# The harness's streams, in the order of its ``waiting`` bits (``sim.harness.STREAMS``; not
# imported, to keep Amaranth out of a ``runs`` job's process).
STREAMS = ("i_param", "i_beta", "i_res", "i_w", "i_a", "i_pass", "o_out")
COUNTS = ("batches", "n_param", "n_beta", "n_res", "n_w", "n_pass", "m", "a_stride", "n_out")
MEMORIES = ("stim_param", "stim_beta", "stim_res", "stim_w", "stim_a", "stim_pass")
COUNTERS = ("mac", "weight", "stall", "idle")        # hw.accelerator.COUNTERS


def _totals(run):
    """The words each stream moves in ``run``."""
    k = run["batches"]
    return {"i_param": run["n_param"], "i_beta": run["n_beta"], "i_res": run["n_res"],
            "i_w": run["n_w"] * k,
            "i_a": run["m"] * run["n_pass"] * k, "i_pass": run["n_pass"] * k,
            "o_out": run["n_out"]}


def _stuck(dut, run):
    """Which streams stopped where, for the watchdog's message."""
    waiting = dut.waiting.value.to_unsigned()
    parts = []
    for i, (name, total) in enumerate(_totals(run).items()):
        taken = getattr(dut, f"taken_{name}").value.to_unsigned()
        if taken < total:
            state = "valid, not ready" if waiting >> i & 1 else "not valid"
            parts.append(f"{name} stopped at word {taken} of {total} ({state})")
    return "; ".join(parts) or "every stream finished but done stayed low"


class Harness:
    """The harness under cocotb: the clock, reset and one method per batch."""

    def __init__(self, dut):
        self.dut = dut
        self.seconds = {"load": 0.0, "simulate": 0.0, "read": 0.0}
        # stim_res is missing from an engine built without the residual add.
        self.memories = {name: getattr(dut, name) for name in (*MEMORIES, "cap_out",
                                                                "cap_mark")
                         if name != "stim_res" or hasattr(dut, name)}

    async def start(self):
        # The clock toggles from C (the GPI clock): no Python per clock.
        Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        self.dut.rst.value = 1
        self.dut.go.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0

    async def run(self, run, settings):
        dut = self.dut
        t0 = time.monotonic()
        await ReadWrite()                 # writes in this phase are applied at once
        for name in MEMORIES:
            if run.get(name):
                memory = self.memories[name]
                for i, word in enumerate(run[name]):
                    memory[i].value = word
        for name in COUNTS:
            getattr(dut, name).value = run[name]
        for name, value in settings.items():
            getattr(dut, name).value = value
        await RisingEdge(dut.clk)
        dut.go.value = 1
        t1 = time.monotonic()
        await First(RisingEdge(dut.done), Timer(run["budget"] * CLOCK_NS, "ns"))
        if not dut.done.value:
            raise AssertionError(f"the layer engine hung: no result after {run['budget']} "
                                 f"clocks; {_stuck(dut, run)}")
        t2 = time.monotonic()
        clocks = dut.clocks.value.to_unsigned()
        counters = {name: getattr(dut, f"count_{name}").value.to_unsigned()
                    for name in COUNTERS}
        counters["tail"] = clocks - dut.a_done.value.to_unsigned()
        cap_out, cap_mark = self.memories["cap_out"], self.memories["cap_mark"]
        out = [cap_out[i].value.to_unsigned() for i in range(run["n_out"])]
        marks = [cap_mark[i].value.to_unsigned() for i in range(run["samples"])]
        for name, total in _totals(run).items():
            taken = getattr(dut, f"taken_{name}").value.to_unsigned()
            assert taken == total, f"{name}: {taken} words moved, {total} expected"
        dut.go.value = 0
        await ClockCycles(dut.clk, 2)     # the LFSRs take their seeds again
        t3 = time.monotonic()
        for key, dt in (("load", t1 - t0), ("simulate", t2 - t1), ("read", t3 - t2)):
            self.seconds[key] += dt
        return {"out": out, "marks": marks, "clocks": clocks, "counters": counters}


class Progress:
    def __init__(self, path, layers, steps):
        self.path, self.layers, self.steps = path, layers, steps
        self.done = self.clocks = 0
        self.start = time.monotonic()

    def report(self, layer, run, clocks):
        self.done += run["samples"]
        self.clocks += clocks
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                json.dump({"layer": layer, "layers": self.layers, "steps_done": self.done,
                           "steps": self.steps, "clocks": self.clocks,
                           "seconds": time.monotonic() - self.start}, f)
            os.replace(tmp, self.path)


@cocotb.test()
async def run_job(dut):
    paths = load_job()
    with open(paths["job"]) as f:
        job = json.load(f)
    harness = Harness(dut)
    start = time.monotonic()
    await harness.start()
    if job["mode"] == "runs":
        progress = Progress(paths.get("progress"), 1, sum(r["samples"] for r in job["runs"]))
        results = []
        for run in job["runs"]:
            results.append(await harness.run(run, job["settings"]))
            progress.report(0, run, results[-1]["clocks"])
        result = {"runs": results}
    else:
        import numpy as np

        from core.bundle import load
        from core.config import ArrayConfig
        from sim.cosim import CosimPlan
        from sim.harness import Depths
        from sim.network_sim import drive

        bundle = load(job["bundle"])
        codes = np.load(job["codes"], allow_pickle=False)
        progress = Progress(paths.get("progress"), len(bundle.layers),
                            len(bundle.layers) * len(codes))
        plan = CosimPlan(ArrayConfig(**job["config"]), Depths(**job["depths"]))
        steps = drive(plan, bundle, codes, seed=job["seed"],
                      stall=job["stall"], backpressure=job["backpressure"])
        try:
            layer, runs, settings = next(steps)
            while True:
                results = []
                for run in runs:
                    results.append(await harness.run(run, settings))
                    progress.report(layer, run, results[-1]["clocks"])
                layer, runs, settings = steps.send(results)
        except StopIteration as stop:
            run = stop.value
            result = {"network": {"outputs": [o.tolist() for o in run.outputs],
                                  "betas": [b.tolist() for b in run.betas],
                                  "cycles": run.cycles, "clocks": run.clocks,
                                  "layer_clocks": run.layer_clocks,
                                  "counters": run.counters}}
    result["seconds"] = dict(harness.seconds, total=time.monotonic() - start)
    with open(paths["result"], "w") as f:
        json.dump(result, f)
    with open(os.environ["ASQ_RESULT"], "w") as f:
        json.dump({"ok": True}, f)
