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
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, First, ReadOnly, ReadWrite, RisingEdge, Timer

from .common import CLOCK_NS, load_job
from .cosim_fields import COUNTS, MEMORIES, STREAMS

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


def _write_hex(path, words):
    with open(path, "w") as f:
        f.write("\n".join(map("{:x}".format, words)))
        f.write("\n")


def _read_hex(path):
    """The words of a ``$writememh`` file (its comment lines skipped)."""
    with open(path) as f:
        return [int(line, 16) for line in f if line.strip() and not line.startswith("//")]


class Harness:
    """The harness under cocotb: the clock, reset and one method per batch. The memories move
    in bulk through hex files in the simulator's folder (``sim.harness.add_bulk_transfers``)."""

    def __init__(self, dut):
        self.dut = dut
        self.seconds = {"load": 0.0, "simulate": 0.0, "read": 0.0}

    async def start(self):
        # The harness toggles its own clock (sim.harness.add_own_clock): nothing outside the
        # model runs per clock.
        self.dut.rst.value = 1
        self.dut.go.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0

    async def run(self, run, settings):
        dut = self.dut
        t0 = time.monotonic()
        mask = 0
        for i, name in enumerate(MEMORIES):
            words = run.get(name)
            if words is not None and len(words):
                _write_hex(f"{name}.hex", words)
                mask |= 1 << i
        await ReadWrite()                 # writes in this phase are applied at once
        for name in COUNTS:
            getattr(dut, name).value = int(run[name])
        for name, value in settings.items():
            getattr(dut, name).value = value
        dut.bulk_marks.value = run["samples"]
        dut.bulk_load_mask.value = mask
        dut.bulk_load.value = 1
        await RisingEdge(dut.clk)
        dut.bulk_load.value = 0
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
        for name, total in _totals(run).items():
            taken = getattr(dut, f"taken_{name}").value.to_unsigned()
            assert taken == total, f"{name}: {taken} words moved, {total} expected"
        dut.bulk_save.value = 1
        await ReadOnly()                  # the files are written
        out, marks = _read_hex("cap_out.hex"), _read_hex("cap_mark.hex")
        await RisingEdge(dut.clk)
        dut.bulk_save.value = 0
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
            # The codes of every layer in .npy form: as JSON they took a second each way.
            arrays = str(Path(paths["result"]).with_suffix(".npz"))
            np.savez(arrays, **{f"outputs_{i}": o for i, o in enumerate(run.outputs)},
                     **{f"betas_{i}": b for i, b in enumerate(run.betas)})
            result = {"network": {"arrays": arrays, "layers": len(run.outputs),
                                  "cycles": run.cycles, "clocks": run.clocks,
                                  "layer_clocks": run.layer_clocks,
                                  "counters": run.counters}}
    result["seconds"] = dict(harness.seconds, total=time.monotonic() - start)
    with open(paths["result"], "w") as f:
        json.dump(result, f)
    with open(os.environ["ASQ_RESULT"], "w") as f:
        json.dump({"ok": True}, f)
