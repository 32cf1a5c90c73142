"""One design on Verilator: the base of every simulation wrapper (``ArraySim``, ``EngineSim``,
``RescaleSim``, ``NetworkSim``, ``MultiplierSim``).

``Design(component, root, top)`` converts the component to Verilog and builds it for cocotb
under ``root/<top>-<hash>``, where ``<hash>`` is that of the Verilog text: the one build key of
the project. Two designs that differ in any bit build apart; the same design (in any test, run
or process) is built once and reused (``sim.verilator.build`` locks and stamps the folder).
``run_streams`` drives the design's valid/ready streams with ``sim.benches.stream_bench``.
"""

import hashlib
from pathlib import Path

from gen.verilog import verilog_text, write_verilog

from . import verilator

__all__ = ["Design"]


class Design:
    """``component`` as Verilog (``self.verilog``, its ports ``self.ports``) built for Verilator
    in ``self.dir``."""

    def __init__(self, component, root, top, *, clocked=True):
        text = verilog_text(component, top)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.top = top
        self.dir = Path(root) / f"{top}-{digest}"
        self.verilog, self.ports = write_verilog(component, self.dir / "rtl", top,
                                                 clocked=clocked, text=text)
        self._runner = verilator.build(self.verilog, top, self.dir / "build")

    def run_bench(self, bench, job, *, name="run"):
        """Run the cocotb bench module ``bench`` with ``job``; return its result."""
        return verilator.run_bench(self._runner, top=self.top, bench=bench, job=job,
                                   work_dir=self.dir / name)

    def run_streams(self, steps, *, sources, sinks, seed=0, stall=0.0, backpressure=0.0,
                    name="run", aborted=None, abort_after=0, reset_clocks=3):
        """Run ``steps`` of integer stream words (see ``sim.benches.stream_bench``); return,
        per step, the words received (``{sink: [word, ...]}``) and the clocks it took.

        ``aborted``, a step, runs first and is cut off by a reset after ``abort_after`` clocks
        (held for ``reset_clocks``): the steps must then run as on a fresh design."""
        job = {"sources": list(sources), "sinks": list(sinks), "steps": steps, "seed": seed,
               "stall": stall, "backpressure": backpressure}
        if aborted is not None:
            job.update(aborted=aborted, abort_after=abort_after, reset_clocks=reset_clocks)
        out = self.run_bench("sim.benches.stream_bench", job, name=name)
        return [(s["received"], s["cycles"]) for s in out["steps"]]
