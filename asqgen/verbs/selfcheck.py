"""``asqgen selfcheck``: random products through a generated array on Verilator, against the
golden model."""

from sim.selfcheck import selfcheck

from ..options import array_config


def run(args):
    return selfcheck(array_config(args), out=args.out, seed=args.seed, stall=args.stall)
