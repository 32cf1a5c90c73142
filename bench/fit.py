"""The largest int8 and POST 4-bit arrays that fit a board's ECP5, and their MAC/s.

    ./dev pip install -e '.[synth]'    # once
    ./dev python bench/fit.py [--board ulx3s-25f] [--designs int8,post4-table,post4-split]

The comparison a user with DSP blocks faces: for each design, the largest bare array (8-bit
activations) from a list of sizes that ``bench/synth.py``'s flow places and routes on the
board's part (out of context), and ``MAC/s = PEs x Fmax``. ``int8`` is synthesised with
``synth_ecp5``'s DSP inference on, so the tools put multipliers in the ``MULT18X18D`` blocks
where they choose (Yosys maps every 8x8 multiplier to one; it does not fall back to logic when
the part runs out). The ``post4`` arrays have no multiplier (``-nodsp`` changes nothing for
them, and lets them share ``bench/synth.py``'s cache). ``int8-logic`` (every multiplier in
LUTs) is there for reference.

The search is a bisection over a few sizes (``DESIGNS``, ordered by PEs; fitting is taken to be
monotonic; ``--sizes`` gives others): a
size whose synthesis alone needs more LUT4 (LUT4 + 2 per CCU2C), flip-flops or DSPs than the
part has is refused without place and route; otherwise nextpnr decides (an error, or no
result within ``--pnr-timeout`` seconds, is a miss). Every design tried is listed with its
figures, cached per design in ``build/synth/``.
"""

import argparse
import sys

from synth import BOARDS, device_of, logic, run_main, synthesise

from core.config import ArrayConfig
from core.errors import UsageError

CAPACITY = {"25k": dict(lut4=24288, ff=24288, dsp=28), "85k": dict(lut4=83640, ff=83640,
                                                                  dsp=156)}
# The sizes tried, few because a place and route near a full part takes up to half an hour on
# this machine; the bisection starts in the middle (13x13 for the POST arrays, which the
# synthesis of 4x4 and 8x8 arrays puts at about 90 % of the 25F's LUTs).
SQUARES = [(8, 8), (12, 12), (13, 13), (14, 14)]
DESIGNS = {   # name: (label, ArrayConfig keywords, nodsp, sizes)
    "int8": ("int8 (DSP)", dict(w_format="int", w_bits=8), False,
             [(4, 4), (5, 5), (4, 7), (5, 6)]),
    "int8-logic": ("int8 (logic)", dict(w_format="int", w_bits=8), True, SQUARES),
    "post4-table": ("post4 table", dict(w_format="post", w_bits=4), True, SQUARES),
    "post4-split": ("post4 split", dict(w_format="post", w_bits=4, odd="split"), True, SQUARES),
}


def over_capacity(r, cap):
    """What the synthesis alone needs beyond the part, or None."""
    for what, need in (("lut4", logic(r)), ("ff", r["ff"]), ("dsp", r["dsp"])):
        if need > cap[what]:
            return f"needs {need} {what.upper()}, the part has {cap[what]}"
    return None


def largest(name, device, cap, *, a_bits, timeout, log, sizes=None):
    """``(best, tried)``: the largest of ``sizes`` (``DESIGNS[name]``'s by default) that fits,
    bisecting."""
    label, kw, nodsp, default = DESIGNS[name]
    sizes = sizes or default
    sizes = sorted(sizes, key=lambda s: (s[0] * s[1], s))
    tried = {}

    def fits(i):
        rows, cols = sizes[i]
        cfg = ArrayConfig(rows=rows, cols=cols, a_bits=a_bits, **kw)
        r = synthesise(cfg, nodsp=nodsp, device=device, pnr=False)
        why = over_capacity(r, cap)
        if why is None:
            r = synthesise(cfg, nodsp=nodsp, device=device, pnr_timeout=timeout)
            why = r["error"] or (None if r["fmax"] else "no Fmax in nextpnr's log")
        tried[sizes[i]] = (r, why)
        pnr = "no place and route" if r["pnr_s"] is None else f"{r['pnr_s']} s place and route"
        log(f"  {label} {rows}x{cols}: {'fits' if why is None else why} "
            f"({r['synth_s']} s synthesis, {pnr})")
        return why is None

    lo, hi = -1, len(sizes)        # sizes[lo] fits (or none), sizes[hi] does not (or none)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return (sizes[lo] if lo >= 0 else None), tried


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--board", choices=BOARDS, default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--designs", default="int8,post4-table,post4-split",
                   help=f"comma-separated, of {', '.join(DESIGNS)} (%(default)s)")
    p.add_argument("--a-bits", type=int, default=8, help="(%(default)s)")
    p.add_argument("--sizes", help="sizes to bisect instead, for example 10x10,11x11,12x12")
    p.add_argument("--pnr-timeout", type=float, default=1800,
                   help="seconds for one place and route (%(default)s)")
    args = p.parse_args()
    names = [n for n in args.designs.split(",") if n]
    bad = [n for n in names if n not in DESIGNS]
    if bad or not names:
        raise UsageError(f"--designs must name some of {', '.join(DESIGNS)}, not "
                         f"{args.designs!r}")
    sizes = None
    if args.sizes:
        try:
            sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
            if any(len(s) != 2 for s in sizes):
                raise ValueError
        except ValueError:
            raise UsageError(f"--sizes must be sizes like 10x10,12x12, not {args.sizes!r}") \
                from None
    device = device_of(args.board)
    cap = CAPACITY[device[1][2:]]
    print(f"Largest arrays that fit the {device[0]} ({args.board}: {cap['lut4']} LUT4, "
          f"{cap['dsp']} DSP), {args.a_bits}-bit activations, out of context")
    log = lambda line: print(line, file=sys.stderr, flush=True)
    results = []
    for name in names:
        best, tried = largest(name, device, cap, a_bits=args.a_bits, timeout=args.pnr_timeout,
                              log=log, sizes=sizes)
        results.append((DESIGNS[name][0], best, tried))
    print(f"{'design':<13} {'size':>6} {'PEs':>4} {'LUT4':>6} {'CCU2C':>6} {'logic':>6} "
          f"{'%':>4} {'FF':>6} {'DSP':>4} {'Fmax':>6} {'MAC/s':>7} {'synth':>6} {'P&R':>6}"
          f"  next size")
    for label, best, tried in results:
        larger = sorted((s for s in tried if best is None or s[0] * s[1] > best[0] * best[1]),
                        key=lambda s: s[0] * s[1])
        nxt = (f"{larger[0][0]}x{larger[0][1]}: {tried[larger[0]][1]}" if larger
               else "(none tried)")
        if best is None:
            print(f"{label:<13} none of the sizes fits; {nxt}")
            continue
        r = tried[best][0]
        pes = best[0] * best[1]
        print(f"{label:<13} {best[0]:>2}x{best[1]:<3} {pes:>4} {r['lut4']:>6} {r['ccu2c']:>6} "
              f"{logic(r):>6} {100 * logic(r) / cap['lut4']:>3.0f}% {r['ff']:>6} {r['dsp']:>4} "
              f"{r['fmax']:>6.1f} {pes * r['fmax'] / 1e3:>6.2f}G {r['synth_s']:>5.0f}s "
              f"{r['pnr_s']:>5.0f}s  {nxt}")


if __name__ == "__main__":
    run_main(main)
