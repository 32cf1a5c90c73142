"""``asqgen verilog``: the Verilog and manifest of a bare array, or of the layer engine for a
bundle."""

from core.bundle import load
from gen.verilog import generate_accelerator, generate_array

from ..options import array_config, bundle_config, describe


def run(args):
    if args.bundle:
        bundle = load(args.bundle)
        cfg = bundle_config(args, bundle)
        manifest = generate_accelerator(cfg, args.out, bundle=bundle)
        print(f"asqgen verilog: the layer engine for {args.bundle}: {describe(cfg)}, "
              f"K up to {cfg.max_k}, {cfg.max_m} positions a pass, {cfg.max_channels} "
              f"channels, batches of up to {cfg.max_batch} images")
        print(f"  wrote {args.out}/{manifest['verilog']} and {args.out}/manifest.json "
              f"({len(manifest['ports'])} ports)")
        return 0
    cfg = array_config(args)
    manifest = generate_array(cfg, args.out)
    print(f"asqgen verilog: {describe(cfg)}")
    print(f"  wrote {args.out}/{manifest['verilog']} and {args.out}/manifest.json "
          f"({len(manifest['ports'])} ports, latency {cfg.latency} clocks)")
    return 0
