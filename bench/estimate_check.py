"""``asqgen estimate``'s resource model against real synthesis, on engines it was not
calibrated on, and its cycles against the RTL's recorded counts.

    ./dev pip install -e '.[synth]'    # once
    ./dev python bench/estimate_check.py [--board ulx3s-25f] [--only 4x4-int8,...]

Each configuration of ``CHECKS`` (4x4 to 16x16; 2, 4 and 8 bits; post, pot and int; none of
them a configuration of ``bench/calibrate.py``) is synthesised whole (``sim.synthesis``'s
``engine``: ``hw.accelerator``, both halves, with ``synth_ecp5`` as ``asqgen synth engine``
runs it; cached in ``build/synth/``) and set beside ``gen.resources.estimate_resources`` of the
same configuration without the bridge; the table gives estimate / real for logic (LUT4 + 2 per
CCU2C), flip-flops and block RAM, and the DSP blocks. The goal is within +-15 %.

Then the cycle model as ``asqgen estimate`` uses it against the RTL's cycles per image that
``asqgen sim`` measured and the docs record (``RTL_RUNS``: the engine's own counters, in the
runs of README.md and docs/guide.md). The suite holds the model to the RTL within 2 % on every
layer (``tests/test_network_rtl.py::test_cycle_model_matches_the_rtl``,
``tests/test_residual.py``).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import ArrayConfig  # noqa: E402
from core.errors import AsqgenError, UsageError  # noqa: E402
from gen.boards import board as board_of  # noqa: E402
from gen.resources import estimate_resources  # noqa: E402

CHECKS = {
    "4x4-int8": ArrayConfig(rows=4, cols=4, w_format="int", w_bits=8, a_bits=8, max_k=64,
                            max_m=64, max_channels=16, max_hidden=4),
    "8x8-pot4": ArrayConfig(rows=8, cols=8, w_format="pot", w_bits=4, a_bits=4, max_k=256,
                            max_m=32, max_channels=32, max_hidden=8, rescale_lanes=2),
    "16x16-post2": ArrayConfig(rows=16, cols=16, w_format="post", w_bits=2, a_bits=2,
                               max_k=512, max_m=64, max_channels=64, max_hidden=8),
    "12x12-int2": ArrayConfig(rows=12, cols=12, w_format="int", w_bits=2, a_bits=4, max_k=288,
                              max_m=128, max_channels=48, max_hidden=4),
    "8x16-post4": ArrayConfig(rows=8, cols=16, w_format="post", w_bits=4, a_bits=4,
                              max_k=128, max_m=16, max_channels=32, max_hidden=4,
                              rescale_lanes=4),
    "16x8-pot2": ArrayConfig(rows=16, cols=8, w_format="pot", w_bits=2, a_bits=6, max_k=1024,
                             max_m=64, max_channels=64, max_hidden=16),
}
# (bundle, rows, cols, lanes, images, the RTL's cycles per image, where it is recorded)
RTL_RUNS = [
    ("export/default_model/bundle", 8, 8, 1, 100, 9393, "README.md, asqgen sim"),
    ("export/models/resnet20", 8, 8, 1, 16, 159043, "README.md, asqgen sim --bundle "
                                                   "export/models/resnet20 --images 16"),
]


def ratio(est, real):
    return f"{est / real:5.2f}" if real else "    -"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--board", default="ulx3s-25f", help="(%(default)s)")
    p.add_argument("--only", default=None, help=f"comma-separated, of {', '.join(CHECKS)}")
    p.add_argument("--cache", default=str(ROOT / "build" / "synth"), help="(%(default)s)")
    p.add_argument("--no-synth", action="store_true", help="the cycles only")
    args = p.parse_args()
    b = board_of(args.board)
    names = list(CHECKS) if not args.only else args.only.split(",")
    bad = [n for n in names if n not in CHECKS]
    if bad:
        raise UsageError(f"--only must name some of {', '.join(CHECKS)}, not {','.join(bad)}")
    if not args.no_synth:
        from sim.synthesis import synthesise

        print(f"the engine (hw.accelerator) out of context on {b.device}, Yosys synth_ecp5 "
              f"against gen.resources (estimate / real)")
        print(f"{'config':<12} {'lanes':>5} {'logic':>13} {'x':>5} {'FF':>13} {'x':>5} "
              f"{'EBR':>9} {'x':>5} {'DSP':>9} {'synth':>6}")
        worst = {"logic": 0.0, "ff": 0.0, "ebr": 0.0}
        for name in names:
            c = CHECKS[name]
            r = synthesise("engine", c, board=b, cache=args.cache)
            e = estimate_resources(c, b, bridge=False)
            real = {"logic": r["lut4"] + 2 * r["ccu2c"], "ff": r["ff"], "ebr": r["ebr"]}
            for k in worst:
                if real[k]:
                    worst[k] = max(worst[k], e[k] / real[k] - 1, key=abs)
            print(f"{name:<12} {c.rescale_lanes:>5} {e['logic']:>6}/{real['logic']:<6} "
                  f"{ratio(e['logic'], real['logic'])} {e['ff']:>6}/{real['ff']:<6} "
                  f"{ratio(e['ff'], real['ff'])} {e['ebr']:>4}/{real['ebr']:<4} "
                  f"{ratio(e['ebr'], real['ebr'])} {e['dsp']:>4}/{r['dsp']:<4} "
                  f"{'cached' if r['cached'] else str(round(r['synth_s'])) + ' s':>6}",
                  flush=True)
        print("worst: " + ", ".join(f"{k} {100 * v:+.1f} %" for k, v in worst.items()))
    from core.bundle import load
    from core.sizing import config_for_bundle
    from gen.cycles import network_cycles

    print("cycles per image: the model (as asqgen estimate runs it) against the RTL's counters")
    for path, rows, cols, lanes, images, rtl, where in RTL_RUNS:
        bundle = load(ROOT / path)
        c = config_for_bundle(bundle, rows=rows, cols=cols).replace(rescale_lanes=lanes)
        t0 = time.monotonic()
        model = sum(v.clocks for v in network_cycles(bundle, c, images).values()) / images
        print(f"  {path} {rows}x{cols}, {lanes} lane, {images} images: model {model:,.0f}, "
              f"RTL {rtl:,} ({100 * (model / rtl - 1):+.2f} %; {where}; model "
              f"{1e3 * (time.monotonic() - t0):.0f} ms)")


if __name__ == "__main__":
    try:
        main()
    except AsqgenError as e:
        print(f"estimate_check.py: error: {e}", file=sys.stderr)
        sys.exit(e.exit_status)
