"""The layer engine's two halves out of context on an ECP5: logic, flip-flops, block RAM, DSPs
and the maximum clock of each, from Yosys and nextpnr.

    ./dev pip install -e '.[synth]'    # once, optional
    ./dev python bench/parts.py [--bundle B] [--rescale-lanes N] [--board ulx3s-25f]
    ./dev python bench/parts.py --part rescale --rescale-lanes 4 --no-pnr   # one half, Yosys only

(``asqgen synth matmul --pnr`` and ``asqgen synth rescale --pnr`` run one half each, with the
same library, ``sim.synthesis``.)

The engine is sized for the bundle (``asqgen verilog --bundle`` sizes it the same way; by
default the default bundle). Its halves are the matmul engine (``hw.matmul_engine``: the
systolic array, the skid buffer and the accumulator buffer) and the rescale unit
(``hw.rescale_unit``), each elaborated for an ECP5 (its multipliers DSP blocks with their own
registers, ``hw.dsp``), synthesised by ``synth_ecp5`` and placed and
routed by ``nextpnr-ecp5 --out-of-context`` with a 100 MHz target, so that a path that misses
the layer engine's clock shows in the part it is in (``bench/board.py`` builds the whole
engine behind its host bridge). Results are cached per design in ``build/ooc/`` (beside
``bench/synth.py``'s cache). ``--rows`` and ``--cols`` size the array as ``asqgen verilog``'s
options do.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))     # this tree's packages (a worktree beside an editable install)

from synth import BOARDS, logic, platform_class, run_main  # noqa: E402

from core.errors import UsageError  # noqa: E402
FREQ = 100


def _widths(config):
    w = config.widths
    return ", ".join(f"{k} {v}" for k, v in w.as_dict().items())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(ROOT / "export" / "default_model" / "bundle"),
                   help="size the engine for this bundle (%(default)s)")
    p.add_argument("--rescale-lanes", type=int, default=None, help="(1)")
    p.add_argument("--rows", type=int, help="PE rows (as asqgen verilog --bundle sizes them)")
    p.add_argument("--cols", type=int, help="PE columns (as asqgen verilog --bundle sizes them)")
    p.add_argument("--board", choices=BOARDS, default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--part", choices=("matmul", "rescale"), action="append",
                   help="only this half (repeatable; both by default)")
    p.add_argument("--no-pnr", action="store_true",
                   help="synthesis only: no place and route, no Fmax")
    args = p.parse_args()

    import synth
    from core.bundle import load
    from core.sizing import array_for_bundle, config_for_bundle
    from gen.boards import board
    from sim.synthesis import synthesise

    platform_class(args.board)          # the extra 'synth' installed (amaranth-boards with it)
    bundle = load(args.bundle)
    try:
        rows, cols = array_for_bundle(bundle, rows=args.rows, cols=args.cols)
        config = config_for_bundle(bundle, rows=rows, cols=cols)
        if args.rescale_lanes is not None:
            config = config.replace(rescale_lanes=args.rescale_lanes)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    b = board(args.board)
    print(f"the layer engine for {args.bundle}: {config.rows}x{config.cols} "
          f"{config.w_format}{config.w_bits}, {config.rescale_lanes} rescale "
          f"lane{'s' if config.rescale_lanes > 1 else ''} (widths {_widths(config)}); out of "
          f"context on {b.device} ({args.board}) at {FREQ} MHz, Yosys synth_ecp5"
          f"{'' if args.no_pnr else ' + nextpnr-ecp5'}", flush=True)
    print(f"{'part':<8} {'LUT4':>6} {'CCU2C':>6} {'logic':>6} {'FF':>6} {'EBR':>4} "
          f"{'DPRAM':>5} {'DSP':>4} {'Fmax':>7} {'synthesis':>10} {'place+route':>12}")
    for name in ("matmul", "rescale"):
        if args.part and name not in args.part:
            continue
        r = synthesise(name, config, board=b, cache=synth.ROOT.parent / "ooc",
                       pnr=not args.no_pnr, freq=FREQ)
        fmax = f"{r['fmax']:.1f}" if r["fmax"] else "-"
        print(f"{name:<8} {r['lut4']:>6} {r['ccu2c']:>6} {logic(r):>6} {r['ff']:>6} "
              f"{r['ebr']:>4} {r['dpram']:>5} {r['dsp']:>4} "
              f"{fmax:>7} {r['synth_s']:>8.0f} s {r['pnr_s'] or 0:>10.0f} s", flush=True)
        if r.get("error"):
            print(f"  {r['error']}")


if __name__ == "__main__":
    run_main(main)
