"""Plots: logic and Fmax of PEs and arrays against the weight width, and the 4-bit level sets.

    ./dev pip install -e '.[synth]'    # once: Yosys, nextpnr-ecp5, amaranth-boards, matplotlib
    ./dev python bench/plots.py [--rows 4] [--cols 4] [--board ulx3s-25f] [--out docs/plots]

Every design goes through ``bench/synth.py``'s flow (``synth_ecp5 -nodsp``, every multiplier in
logic, then ``nextpnr-ecp5`` out of context on the board's part) and its cache
(``build/synth/``): a second run only draws. Weight formats and widths, all with 8-bit
activations:

- ``int`` (a plain multiplier) 2 to 8 bits;
- ``pot`` 2 to 6 bits (7 and 8 bits need accumulators wider than 64 bits);
- ``post table`` (odd exponents through the row's table) and ``post split`` (``odd='split'``:
  two sums per column, every product a shift) 2 to 7 bits.

A PE is one of the last row of a ``rows x cols`` array (the widest partial sum), without the
``post`` table, which the array looks up once per row; the array includes its tables. Logic is
LUT4 plus two per CCU2C carry cell. The level sets are ``core.numerics.weight_levels`` at 4 bits
(``int`` scaled by 2^-3 so that all three span about [-1, 1]).

Writes ``widths.png``, ``levels.png`` and ``widths.json`` (the figures) into ``--out``.
"""

import argparse
import json
import sys
from pathlib import Path

from synth import BOARDS, INSTALL, device_of, logic, run_main, synthesise

from core.config import ArrayConfig
from core.errors import OutputError, ToolError
from core.numerics import weight_levels

SERIES = [   # label, ArrayConfig keywords, weight widths
    ("int", dict(w_format="int"), range(2, 9)),
    ("pot", dict(w_format="pot"), range(2, 7)),
    ("post table", dict(w_format="post", odd="table"), range(2, 8)),
    ("post split", dict(w_format="post", odd="split"), range(2, 8)),
]
STYLE = {"int": ("k", "o"), "pot": ("tab:green", "s"), "post table": ("tab:blue", "^"),
         "post split": ("tab:red", "v")}


def sweep(rows, cols, device, kinds=("pe", "array"), cached_only=False):
    """``{kind: {label: [(w_bits, result), ...]}}`` for every series, ``kinds`` in order
    (with ``cached_only``, only the designs already in the cache)."""
    out = {}
    for kind in kinds:
        out[kind] = {}
        for label, kw, widths in SERIES:
            out[kind][label] = []
            for w in widths:
                cfg = ArrayConfig(rows=rows, cols=cols, a_bits=8, w_bits=w, **kw)
                r = synthesise(cfg, nodsp=True, device=device, kind=kind,
                               cached_only=cached_only)
                if r is None:
                    print(f"  {kind:<5} {label:<10} w{w}: not in the cache", file=sys.stderr)
                    continue
                out[kind][label].append((w, r))
                print(f"  {kind:<5} {label:<10} w{w}: logic {logic(r):>6}, FF {r['ff']:>5}, "
                      f"Fmax {r['fmax'] or float('nan'):6.1f} MHz ({r['synth_s']} s synthesis, "
                      f"{r['pnr_s']} s place and route)", file=sys.stderr, flush=True)
    return out


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ToolError(f"matplotlib is not installed (the optional extra 'synth'): "
                        f"{INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_widths(results, path, title):
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharex=True)
    what = [("pe", "logic", "PE: LUT4 + 2 CCU2C"), ("pe", "fmax", "PE: Fmax (MHz)"),
            ("array", "logic", "array: LUT4 + 2 CCU2C"), ("array", "fmax", "array: Fmax (MHz)")]
    for ax, (kind, field, label) in zip(axes.flat, what):
        for series, points in results[kind].items():
            xs = [w for w, r in points if r["fmax"] and not r["error"]]
            ys = [logic(r) if field == "logic" else r["fmax"] for w, r in points
                  if r["fmax"] and not r["error"]]
            color, marker = STYLE[series]
            ax.plot(xs, ys, color=color, marker=marker, label=series)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if field == "logic":
            ax.set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("weight bits (8-bit activations)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_levels(path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.4))
    sets = [("uniform (int x 1/8)", [v / 8 for v in weight_levels("int", 4)]),
            ("POT", weight_levels("pot", 4)), ("POST", weight_levels("post", 4))]
    for y, (label, levels) in enumerate(reversed(sets)):
        ax.scatter(levels, [y] * len(levels), s=22, color="k", zorder=3)
        ax.axhline(y, color="0.85", lw=0.8, zorder=1)
    ax.set_yticks(range(len(sets)), [f"{label}\n{len(levels)} levels"
                                     for label, levels in reversed(sets)], fontsize=8)
    ax.set_xlim(-1.08, 1.08)
    ax.set_ylim(-0.6, len(sets) - 0.4)
    ax.set_xlabel("weight value (4-bit codes)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=4, help="array rows (%(default)s)")
    p.add_argument("--cols", type=int, default=4, help="array columns (%(default)s)")
    p.add_argument("--board", choices=BOARDS, default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--out", default="docs/plots", help="output folder (%(default)s)")
    p.add_argument("--levels-only", action="store_true", help="only the level sets (no tools)")
    p.add_argument("--cached-only", action="store_true",
                   help="draw the designs in the cache only (no tools)")
    args = p.parse_args()
    out = Path(args.out)
    _pyplot()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror}") from None
    plot_levels(out / "levels.png")
    print(f"wrote {out / 'levels.png'}")
    if args.levels_only:
        return
    device = device_of(args.board)
    results = sweep(args.rows, args.cols, device, cached_only=args.cached_only)
    title = (f"ECP5 {device[0]} ({args.board}), synth_ecp5 -nodsp + nextpnr out of context; "
             f"{args.rows}x{args.cols} arrays")
    plot_widths(results, out / "widths.png", title)
    (out / "widths.json").write_text(json.dumps(
        {"device": device[0], "rows": args.rows, "cols": args.cols, "results": results},
        indent=1) + "\n")
    print(f"{'kind':<6}{'series':<11}{'w':>2} {'LUT4':>6} {'CCU2C':>6} {'logic':>6} {'FF':>5} "
          f"{'Fmax':>6}")
    for kind, series in results.items():
        for label, points in series.items():
            for w, r in points:
                fmax = f"{r['fmax']:6.1f}" if r["fmax"] else "     -"
                print(f"{kind:<6}{label:<11}{w:>2} {r['lut4']:>6} {r['ccu2c']:>6} "
                      f"{logic(r):>6} {r['ff']:>5} {fmax}")
    print(f"wrote {out / 'widths.png'} and {out / 'widths.json'}")


if __name__ == "__main__":
    run_main(main)
