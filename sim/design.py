"""One design on Verilator: the base of every simulation wrapper (``ArraySim``, ``EngineSim``,
``RescaleSim``, ``MultiplierSim``, and ``CosimSim``, which ``NetworkSim`` runs).

``Design(component, root, top)`` converts the component to Verilog and builds it for cocotb
under ``root/<top>-<hash>``, where ``<hash>`` is that of the Verilog text (or, for a design
whose conversion is slow, of a key of everything its Verilog is generated from): the one
build key of the project. Two designs that differ build apart; the same design (in any test,
run or process) is built once and reused (``sim.verilator.build`` locks and stamps the
folder).
``run_streams`` drives the design's valid/ready streams with ``sim.benches.stream_bench``.
"""

import hashlib
from pathlib import Path

from core.files import write_text
from gen.verilog import port_list, verilog_text, write_verilog
from hw.dsp import is_ecp5

from . import verilator

__all__ = ["Design"]

VENDOR = Path(__file__).resolve().parent / "vendor"      # models of vendor primitives


class Design:
    """``component`` as Verilog (``self.verilog``, its ports ``self.ports``) built for Verilator
    in ``self.dir``.

    ``source_key``: for a design whose conversion to Verilog is slow (the co-simulation
    harness and its deep memories), a key of everything its Verilog depends on; the folder is
    named by its hash instead, and the Verilog is converted only when the folder has none.
    ``rewrite``: a function applied to the Verilog text. ``control``: the text of a Verilator
    control file built with it; ``args`` and ``make_flags`` go to ``sim.verilator.build``.
    ``platform``: what the component is elaborated for (for ``hw.dsp.Ecp5Target``, with ECP5
    primitives, the build adds their models, ``sim/vendor``).
    """

    def __init__(self, component, root, top, *, clocked=True, source_key=None, rewrite=None,
                 control=None, args=(), make_flags=(), platform=None):
        def convert():
            text = verilog_text(component, top, platform)
            return rewrite(text) if rewrite else text

        text = convert() if source_key is None else None
        key = text if source_key is None else f"{top}:{source_key}"
        self.top = top
        self.dir = Path(root) / f"{top}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        rtl = self.dir / "rtl"
        self.verilog = rtl / f"{top}.v"
        if text is None and not self.verilog.exists():     # written atomically, so complete
            text = convert()
        if text is not None:
            write_verilog(component, rtl, top, clocked=clocked, text=text)
        self.ports = port_list(component, clocked=clocked)
        extra = sorted(VENDOR.glob("*.v")) if is_ecp5(platform) else []
        if control is not None:
            extra.append(write_text(rtl / f"{top}.vlt", control))
        self._runner = verilator.build(self.verilog, top, self.dir / "build", args=args,
                                       extra_sources=extra, make_flags=make_flags)

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
