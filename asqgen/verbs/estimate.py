"""``asqgen estimate``: a bundle's cycles and images/s, and the engine's resources on a board,
from the cycle model and the calibrated resource model (``gen.estimate``), without Yosys."""

from core.bundle import load
from core.errors import UsageError
from gen.boards import board as board_of
from gen.estimate import estimate, propose
from core.sizing import array_for_bundle, check_fits, config_for_bundle

from ..options import describe, write_json


def _config(args, bundle):
    rows, cols = array_for_bundle(bundle, rows=args.rows, cols=args.cols)
    try:
        config = config_for_bundle(bundle, rows=rows, cols=cols)
        if args.rescale_lanes is not None:
            config = config.replace(rescale_lanes=args.rescale_lanes)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    check_fits(bundle, config)
    return config


def _n(x, digits=0):
    return f"{x:,.{digits}f}"


def report_lines(e):
    """The text of an estimate (``gen.estimate.estimate``'s dictionary)."""
    w = max(10, *(len(l["name"]) for l in e["layers"]))
    lines = [f"{'layer':<{w}} {'cycles/image':>13} {'util':>7} {'batch':>5} {'array':>9} "
             f"{'rescale':>9} {'link ms':>9}  bottleneck: engine, board"]
    for l in e["layers"]:
        lines.append(f"{l['name']:<{w}} {_n(l['cycles_per_image'], 1):>13} "
                     f"{100 * l['utilisation']:>6.1f}% {l['batch']:>5} "
                     f"{_n(l['array_cycles']):>9} {_n(l['rescale_cycles']):>9} "
                     f"{l['link_cycles'] / e['clock_mhz'] / 1e3:>9,.1f}  "
                     f"{l['bottleneck_engine']}, "
                     f"{l['bottleneck_board']}")
    eng, brd = e["engine"], e["board_link"]
    lines.append(f"engine: {_n(e['cycles_per_image'], 1)} cycles per image, "
                 f"{_n(eng['images_per_s'])} images/s at {e['clock_mhz']:g} MHz, "
                 f"{eng['gops']:.2f} GOPS ({_n(e['macs_per_image'])} MACs per image, 2 ops "
                 f"each), {eng['gops_per_klut']:.2f} GOPS per thousand LUTs")
    lines.append(f"board: {brd['images_per_s']:.3g} images/s over the {_n(e['baud'])}-baud "
                 f"UART ({_n(brd['link_bytes_per_image'])} bytes per image in and out), "
                 f"{brd['gops'] * 1e3:.3g} MOPS")
    r = e["resources"]
    u = r["utilisation"]
    lines.append(f"resources on {e['board']} ({e['device']}), estimated: LUT4 {_n(r['lut4'])}, "
                 f"CCU2C {_n(r['ccu2c'])} (logic {_n(r['logic'])}), FF {_n(r['ff'])}, "
                 f"DP16KD {r['ebr']}, DPR16X4 {r['dpram']}, MULT18X18D {r['dsp']}")
    lines.append(f"  of the part: LUTs {100 * u['comb']:.0f} %, FF {100 * u['ff']:.0f} %, "
                 f"block RAM {100 * u['ebr']:.0f} %, DSP {100 * u['dsp']:.0f} %: "
                 + ("fits" if r["fits"] else f"does not fit ({r['why']})")
                 + f"; Fmax class: {r['fmax_class']}")
    return lines


def run(args):
    bundle = load(args.bundle)
    board_of(args.board)                       # a bad name: one line, before any work
    if args.rows is None and args.cols is None:
        config, e = propose(bundle, board=args.board, clock_mhz=args.clock,
                            lanes=args.rescale_lanes, baud=args.baud)
        if config is None:
            raise UsageError(f"no configuration of the bundle fits {args.board} in the "
                             f"model; try a larger board")
        print(f"asqgen estimate: {args.bundle}: the most images/s that fits {args.board}: "
              f"{describe(config)}, {config.rescale_lanes} rescale lane"
              f"{'s' if config.rescale_lanes > 1 else ''}, passes of up to {config.max_m} "
              f"positions (batches of up to {config.max_batch} images)")
    else:
        config = _config(args, bundle)
        e = estimate(bundle, config, board=args.board, clock_mhz=args.clock, baud=args.baud)
        print(f"asqgen estimate: {args.bundle} on {describe(config)}, {config.rescale_lanes} "
              f"rescale lane{'s' if config.rescale_lanes > 1 else ''}")
    for line in report_lines(e):
        print(line)
    write_json(args.json, e)
    return 0
