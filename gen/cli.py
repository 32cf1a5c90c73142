"""``asqgen``: the command line, one subcommand per step of the flow.

Every error a user can cause (a bad option, a configuration the generator refuses, a failed
build) ends with one line ``asqgen: error: ...`` on standard error and exit status 2 (1 when a
self-check finds a mismatch); never a traceback.
"""

import argparse
import sys

from . import __version__, numerics
from .config import ArrayConfig

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is in ``--help``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_array_options(p):
    d = ArrayConfig()
    g = p.add_argument_group("array")
    g.add_argument("--rows", type=int, default=d.rows, help="PE rows (K per tile) (%(default)s)")
    g.add_argument("--cols", type=int, default=d.cols, help="PE columns (N per tile) "
                   "(%(default)s)")
    g.add_argument("--a-bits", type=int, default=d.a_bits,
                   help="activation code width (%(default)s)")
    g.add_argument("--w-bits", type=int, default=d.w_bits, help="weight code width (%(default)s)")
    g.add_argument("--w-format", choices=numerics.WEIGHT_FORMATS, default=d.w_format,
                   help="weight format (%(default)s)")
    g.add_argument("--frac-bits", type=int, default=None,
                   help="fractional bits F of products and accumulators (default: a post table "
                        "with 8 fractional bits; the exact minimum for pot and int)")
    g.add_argument("--acc-bits", type=int, default=None,
                   help="accumulator width (default: the smallest that cannot overflow)")


def _config(args):
    return ArrayConfig(rows=args.rows, cols=args.cols, a_bits=args.a_bits, w_bits=args.w_bits,
                       w_format=args.w_format, frac_bits=args.frac_bits, acc_bits=args.acc_bits)


def _describe(cfg):
    table = (f", table with {cfg.table_frac_bits} fractional bits"
             if cfg.table_frac_bits is not None else "")
    return (f"{cfg.rows}x{cfg.cols} {cfg.w_format} array, {cfg.w_bits}-bit weights, "
            f"{cfg.a_bits}-bit activations, F={cfg.frac_bits}{table}, "
            f"{cfg.acc_bits}-bit accumulators")


def _cmd_verilog(args):
    from .verilog import generate_array

    cfg = _config(args)
    manifest = generate_array(cfg, args.out)
    print(f"asqgen verilog: {_describe(cfg)}")
    print(f"  wrote {args.out}/{manifest['verilog']} and {args.out}/manifest.json "
          f"({len(manifest['ports'])} ports, latency {cfg.latency} clocks)")
    return 0


def _cmd_selfcheck(args):
    from sim.selfcheck import selfcheck

    return selfcheck(_config(args), out=args.out, seed=args.seed, stall=args.stall)


def build_parser():
    parser = _Parser(prog="asqgen", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"asqgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("verilog", help="generate the Verilog and the manifest of an array")
    _add_array_options(p)
    p.add_argument("--out", default="out/verilog", help="output folder (%(default)s)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("selfcheck", help="generate an array, run random products through it on "
                                         "Verilator and compare them with the golden model")
    _add_array_options(p)
    p.add_argument("--out", default="out/selfcheck", help="output folder (%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")
    p.add_argument("--stall", type=float, default=0.3,
                   help="probability of an idle clock on each input and output (%(default)s)")
    p.set_defaults(func=_cmd_selfcheck)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"asqgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asqgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
