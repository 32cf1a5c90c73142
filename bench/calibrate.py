"""Calibrate ``asqgen estimate``'s resource model from real synthesis runs, and rewrite its
committed table ``gen/calibration.json``.

    ./dev pip install -e '.[synth]'    # once
    ./dev python bench/calibrate.py [--board ulx3s-25f] [--dry-run]

Runs ``sim.synthesis`` (Yosys ``synth_ecp5``, DSP inference on, one design at a time, under
``nice``; cached per design in ``build/synth/``, so a second run only refits) on:

* every processing element of the grid ``PE_GRID`` (format, weight bits 2 to 8 where the
  format takes them, activation bits 2, 4 and 8): one PE each, a few seconds;
* the matmul engines ``MATMUL`` and the rescale units ``RESCALE`` (a few sizes, formats and
  lane counts), to which ``gen.resources.fit`` fits the array's, the accumulator buffer's and
  the rescale unit's terms by least squares;
* the engines and bridges of ``GLUE``: what the whole engine and the host bridge add.

None of the configurations of ``bench/estimate_check.py`` (the validation) is among them. The
table keeps every run's figures, the fitted coefficients and a history of the calibration runs
with the tools' versions and the date; re-run this after a change to the hardware (for
example a cheaper rescale lane) and commit the table.
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import ArrayConfig  # noqa: E402
from gen import resources  # noqa: E402
from gen.boards import board as board_of  # noqa: E402

FORMAT_BITS = {"post": range(2, 8), "pot": range(2, 7), "int": range(2, 9)}
PE_ACT_BITS = (2, 4, 8)   # between them the model interpolates (gen.resources)
PE_GRID = [(f, w, a) for f, ws in FORMAT_BITS.items() for w in ws for a in PE_ACT_BITS]


def _config(d):
    return ArrayConfig(**{k: v for k, v in d.items() if k != "rescale_widths" or v})


def _cfg(**kw):
    return ArrayConfig(**kw)


# (rows, cols, format, w_bits, a_bits, max_k, max_m, max_channels, max_hidden, lanes, residual)
MATMUL = [
    _cfg(rows=4, cols=4, w_format="post", w_bits=4, a_bits=4, max_k=64, max_m=16),
    _cfg(rows=8, cols=8, w_format="post", w_bits=4, a_bits=8, max_k=288, max_m=64,
         max_channels=32, max_hidden=8),
    _cfg(rows=8, cols=4, w_format="pot", w_bits=3, a_bits=4, max_k=128, max_m=32),
    _cfg(rows=4, cols=8, w_format="int", w_bits=4, a_bits=8, max_k=512, max_m=64),
    _cfg(rows=12, cols=12, w_format="post", w_bits=2, a_bits=2, max_k=256, max_m=32),
    _cfg(rows=8, cols=8, w_format="int", w_bits=2, a_bits=3, max_k=1024, max_m=128),
    _cfg(rows=16, cols=8, w_format="post", w_bits=3, a_bits=6, max_k=576, max_m=64),
    _cfg(rows=6, cols=6, w_format="pot", w_bits=5, a_bits=5, max_k=96, max_m=256),
]
RESCALE = [
    _cfg(cols=4, rescale_lanes=1, max_channels=16, max_m=16, max_hidden=4, max_k=64),
    _cfg(cols=8, rescale_lanes=1, max_channels=32, max_m=64, max_hidden=8, max_k=288),
    _cfg(cols=8, rescale_lanes=2, max_channels=32, max_m=64, max_hidden=8, max_k=288),
    _cfg(cols=4, rescale_lanes=4, max_channels=16, max_m=32, max_hidden=4, max_k=64,
         residual=False),
    _cfg(cols=16, rescale_lanes=1, max_channels=32, max_m=16, max_hidden=4, max_k=1024),
]


def _bundle_cfg(path, rows, cols, lanes):
    """The engine ``asqgen verilog --bundle`` sizes for a bundle: its rescale widths derived
    (``core.widths``, the cheaper lane), not the full 64-bit ones of the configurations above."""
    from core.bundle import load
    from core.sizing import config_for_bundle
    return config_for_bundle(load(ROOT / path), rows=rows, cols=cols).replace(
        rescale_lanes=lanes)


# The default bundle's rescale unit at its derived widths (57-bit product, 33-bit values; no
# residual add), 1 and 4 lanes; 8 lanes is left for the check (``asqgen synth rescale
# --estimate --rescale-lanes 8``).
RESCALE += [_bundle_cfg("export/default_model/bundle", 8, 8, lanes) for lanes in (1, 4)]
GLUE = [   # (kind, config): each with its matmul and rescale halves synthesised too
    ("engine", _cfg(rows=4, cols=4, w_format="post", w_bits=4, a_bits=4, max_k=64, max_m=16,
                    max_channels=16, max_hidden=4)),
    ("bridge", _cfg(rows=4, cols=4, w_format="post", w_bits=4, a_bits=4, max_k=64, max_m=16,
                    max_channels=16, max_hidden=4)),
]


def plan():
    """Every ``(kind, config)`` to synthesise, cheapest first."""
    runs = [("pe", _cfg(rows=1, cols=1, w_format=f, w_bits=w, a_bits=a)) for f, w, a in PE_GRID]
    runs += [("matmul", c) for c in MATMUL] + [("rescale", c) for c in RESCALE]
    for kind, c in GLUE:
        runs += [(kind, c), ("matmul", c), ("rescale", c)]
        if kind == "bridge":
            runs.append(("engine", c))
    seen, out = set(), []
    for kind, c in runs:
        if (kind, c) not in seen:
            seen.add((kind, c))
            out.append((kind, c))
    return out


def _shown(path):
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--board", default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--out", default=str(ROOT / "gen" / "calibration.json"),
                   help="the table to rewrite (%(default)s)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    p.add_argument("--refit", action="store_true",
                   help="fit the model again to the table's own runs (after a change to "
                        "gen/resources.py's terms), run no tool")
    p.add_argument("--cache", default=str(ROOT / "build" / "synth"), help="(%(default)s)")
    p.add_argument("--reuse", default="",
                   help="kinds (comma-separated, e.g. pe) whose runs are taken from the "
                        "table as they are, not synthesised again: for a hardware change "
                        "that leaves those designs' sources alone")
    args = p.parse_args()
    reuse = {k for k in args.reuse.split(",") if k}
    board = board_of(args.board)
    runs = plan()
    if args.dry_run:
        for kind, c in runs:
            print(kind, c.key(), f"l{c.rescale_lanes}")
        print(f"{len(runs)} designs")
        return
    if args.refit:
        old = json.loads(Path(args.out).read_text())
        table = resources.fit(old["points"])
        for key in ("failed", "history", "tools", "date"):
            table[key] = old.get(key)
        table["history"] = (old.get("history") or []) + [{
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "refit": True, "tools": old.get("tools"), "designs": len(old["points"]),
            "worst": table["worst"]}]
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
        print(f"refitted {_shown(args.out)} to its {len(old['points'])} runs: worst calibration error "
              + ", ".join(f"{k} {100 * v:+.1f} %" for k, v in table["worst"].items()))
        return
    from sim.synthesis import synthesise, tool_versions

    from core.errors import ToolError

    points, failed, t0, fresh = [], [], time.monotonic(), 0
    if reuse:
        old = json.loads(Path(args.out).read_text())
        kept = {(p["kind"], json.dumps(_config(p["config"]).as_dict(), sort_keys=True)): p
                for p in old["points"] if p["kind"] in reuse}
    for i, (kind, c) in enumerate(runs, 1):
        if kind in reuse:
            key = (kind, json.dumps(c.as_dict(), sort_keys=True))
            if key not in kept:
                raise SystemExit(f"calibrate.py: --reuse {kind}: {c.key()} is not in the table")
            points.append({**kept[key], "config": c.as_dict()})
            continue
        try:
            r = synthesise(kind, c, board=board, cache=args.cache)
        except ToolError as e:          # a tool's failure: recorded, and the fit goes on
            failed.append({"kind": kind, "config": c.as_dict(), "error": str(e)})
            print(f"[{i}/{len(runs)}] {kind} {c.key()} l{c.rescale_lanes}: {e}",
                  file=sys.stderr, flush=True)
            continue
        fresh += not r["cached"]
        points.append({"kind": kind, "config": c.as_dict(),
                       **{k: r[k] for k in ("lut4", "ccu2c", "ff", "ebr", "dpram", "dsp",
                                            "synth_s")}})
        print(f"[{i}/{len(runs)}] {kind} {c.key()} l{c.rescale_lanes}: logic "
              f"{r['lut4'] + 2 * r['ccu2c']}, FF {r['ff']}, EBR {r['ebr']}, DPRAM "
              f"{r['dpram']}, DSP {r['dsp']} ({'cached' if r['cached'] else r['synth_s']})",
              file=sys.stderr, flush=True)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    table = resources.fit(points)
    table["failed"] = failed
    entry = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "tools": tool_versions(), "board": args.board, "designs": len(points),
             "synthesised": fresh, "failed": len(failed), "reused": sorted(reuse),
             "seconds": round(time.monotonic() - t0),
             "worst": table["worst"]}
    table["history"] = old.get("history", []) + [entry]
    table["tools"] = entry["tools"]
    table["date"] = entry["date"]
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {_shown(args.out)}: {len(points)} designs ({fresh} synthesised now), "
          f"worst calibration error " + ", ".join(f"{k} {100 * v:+.1f} %" for k, v in
                                                  table["worst"].items()))


if __name__ == "__main__":
    from core.errors import AsqgenError
    try:
        main()
    except AsqgenError as e:
        print(f"calibrate.py: error: {e}", file=sys.stderr)
        sys.exit(e.exit_status)
