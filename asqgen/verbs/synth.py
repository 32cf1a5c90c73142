"""``asqgen synth``: a PE, an array, the matmul engine, the rescale unit, the layer engine or
the engine behind its bridge through Yosys for the board's ECP5 (``sim.synthesis``), out of
context, cached per design; with ``--pnr`` placed and routed for its Fmax."""

from core.bundle import load
from gen.boards import board as board_of
from sim.synthesis import logic, synthesise

from ..options import array_config, bundle_config, default_model, describe, shown, write_json

ENGINE_KINDS = ("matmul", "rescale", "engine", "bridge")


def run(args):
    b = board_of(args.board)
    bundle_path = args.bundle or (str(default_model() / "bundle")
                                  if args.design in ENGINE_KINDS else None)
    config = bundle_config(args, load(bundle_path)) if bundle_path else array_config(args)
    what = f"the {args.design}" + (f" for {shown(bundle_path)}" if bundle_path else "")
    lanes = (f", {config.rescale_lanes} rescale lane{'s' if config.rescale_lanes > 1 else ''}"
             if args.design in ENGINE_KINDS else "")
    print(f"asqgen synth: {what}: {describe(config)}{lanes}; {b.device} ({b.name}), Yosys "
          f"synth_ecp5" + (f" + nextpnr-ecp5 out of context at {args.clock:g} MHz"
                           if args.pnr else ""), flush=True)
    r = synthesise(args.design, config, board=b, cache=args.out, pnr=args.pnr, freq=args.clock)
    fmax = f", Fmax {r['fmax']:.1f} MHz" if r.get("fmax") else ""
    times = "cached" if r["cached"] else (
        f"{r['synth_s']} s synthesis" + (f", {r['pnr_s']} s place and route" if args.pnr else ""))
    print(f"  LUT4 {r['lut4']:,}, CCU2C {r['ccu2c']:,} (logic {logic(r):,}), FF {r['ff']:,}, "
          f"DP16KD {r['ebr']}, DPR16X4 {r['dpram']}, MULT18X18D {r['dsp']}{fmax} ({times}; "
          f"{r['folder']})")
    if r.get("error"):
        print(f"  {r['error']}")
    out = {k: v for k, v in r.items() if k != "cells"}
    out.update(design=args.design, board=b.name, config=config.as_dict())
    if args.estimate and args.design in ("matmul", "rescale", "engine", "bridge"):
        from gen.resources import estimate_part, estimate_resources

        if args.design in ("matmul", "rescale"):
            est = estimate_part(args.design, config)
        else:
            est = estimate_resources(config, b, bridge=args.design == "bridge")
        est_logic = est["lut4"] + 2 * est["ccu2c"]
        print(f"  estimate: logic {est_logic:,.0f} ({est_logic / max(1, logic(r)):.2f}x), "
              f"FF {est['ff']:,.0f} ({est['ff'] / max(1, r['ff']):.2f}x), DP16KD "
              f"{est['ebr']:.0f}, DSP {est['dsp']:.0f}")
        out["estimate"] = {k: est[k] for k in ("lut4", "ccu2c", "ff", "ebr", "dpram", "dsp")}
    write_json(args.json, out)
    return 0
