"""``asqgen sim``: a bundle on the generated hardware in Verilator, against the golden model and
PyTorch. Needs no PyTorch: PyTorch's outputs come from the bundle's reference data."""

import time

import numpy as np

from gen.cycles import network_cycles
from core.errors import BundleError, UsageError
from core.rescale import Z
from core.sizing import check_fits, config_for_bundle

from .compare import first_difference
from .cosim import CosimPlan
from .golden import run_network
from .network_sim import NetworkSim, check_network
from .verilator import check_probability

__all__ = ["simulate", "format_sim_report"]


def simulate(bundle, *, images, config=None, root="build/sim", seed=0, stall=0.0,
             progress=None):
    """Run the first ``images`` reference inputs of ``bundle`` on the RTL; return the report.
    Accuracies need ``reference.labels`` (``None`` without them). ``progress`` takes the
    simulation's progress reports (``sim.progress``)."""
    ref = bundle.reference
    if "images" not in ref or "logits" not in ref:
        raise BundleError("the bundle has no reference inputs with PyTorch's outputs: export it "
                          "with export_bundle(model, input_shape=..., reference_inputs=..., "
                          "reference_labels=...)")
    available = len(ref["images"])
    if not 1 <= images <= available:
        raise UsageError(f"--images must be from 1 to {available} (the bundle's reference "
                         f"inputs), not {images}")
    check_probability("stall", stall)
    config = config or config_for_bundle(bundle)
    check_fits(bundle, config)
    codes = bundle.quantize_input(ref["images"][:images])
    labels = np.asarray(ref["labels"][:images]) if "labels" in ref else None
    check_network(CosimPlan(config), bundle)         # before the build: the memories' depths
    t0 = time.monotonic()
    sim = NetworkSim(config, root)
    build_s = time.monotonic() - t0
    golden = run_network(bundle, codes)
    t0 = time.monotonic()
    run = sim.run(bundle, codes, seed=seed, stall=stall, backpressure=stall, progress=progress)
    sim_s = time.monotonic() - t0

    model = network_cycles(bundle, config, images)
    layers, first = [], None
    for i, layer in enumerate(bundle.layers):
        # The last layer's z, a projection's z (its output, for a residual add), or codes.
        want = (golden.logits if i == len(bundle.layers) - 1 else golden.layers[i].u
                if layer.projection else golden.layers[i].codes)
        got = run.outputs[i]
        where = first_difference(got, want)
        if where is not None and first is None:
            first = {"layer": layer.name, "index": list(where), "rtl": int(got[where]),
                     "golden": int(want[where])}
        clocks, predicted = run.layer_clocks[i], model[layer.name]
        counters = dict(run.counters[i])
        # The idle clocks split into gaps in the host's streams and the layer's tail (the
        # array's drain and the rescale unit's last work, after the last activation).
        counters["host_gap"] = counters["idle"] - counters["tail"]
        layers.append({"layer": layer.name, "values": int(got.size),
                       "identical": bool(where is None),
                       "cycles_per_image": clocks / images,
                       "model_cycles_per_image": predicted.clocks / images,
                       "ideal_cycles": predicted.ideal / images,
                       "utilisation": predicted.ideal / clocks,
                       "batch": config.batch_for(layer.positions),
                       "clocks": {k: counters[k] for k in ("mac", "weight", "stall", "host_gap",
                                                          "tail")}})
    rtl_pred = (run.outputs[-1] * 2.0 ** -Z).argmax(1)
    golden_pred = golden.predictions
    torch_pred = np.asarray(ref["logits"][:images]).argmax(1)
    total_cycles = run.clocks
    return {
        "images": images, "config": config.as_dict(), "verilog": str(sim.verilog),
        "identical": first is None, "first_difference": first, "layers": layers,
        "accuracy": None if labels is None else {
            "rtl": float((rtl_pred == labels).mean()),
            "golden": float((golden_pred == labels).mean()),
            "pytorch": float((torch_pred == labels).mean())},
        "top1_agreement_rtl_pytorch": float((rtl_pred == torch_pred).mean()),
        "cycles_per_image": total_cycles / images,
        "simulated_cycles_per_second": total_cycles / sim_s,
        "build_seconds": build_s, "simulation_seconds": sim_s,
        "simulator_seconds": run.seconds,
    }


def format_sim_report(r):
    cfg = r["config"]
    w = max(8, *(len(x["layer"]) for x in r["layers"]))
    lines = [f"  array      {cfg['rows']}x{cfg['cols']} {cfg['w_format']}{cfg['w_bits']}, "
             f"{cfg['a_bits']}-bit {'signed ' if cfg.get('signed_acts') else ''}activations, "
             f"batches of up to {cfg['max_batch']}; "
             f"{r['verilog']}",
             f"  {'layer':<{w}} {'values':>7} {'RTL = golden':>12} {'batch':>5} "
             f"{'cycles/image':>12} {'model':>6} {'ideal':>6} {'utilisation':>11}   "
             f"clocks: MAC / weight load / rescale stall / host gap / tail"]
    for x in r["layers"]:
        c = x["clocks"]
        lines.append(f"  {x['layer']:<{w}} {x['values']:>7} {'yes' if x['identical'] else 'NO':>12} "
                     f"{x['batch']:>5} {x['cycles_per_image']:>12.0f} "
                     f"{x['model_cycles_per_image']:>6.0f} {x['ideal_cycles']:>6.0f} "
                     f"{x['utilisation']:>11.1%}   {c['mac']} / {c['weight']} / {c['stall']} / "
                     f"{c['host_gap']} / {c['tail']}")
    if r["first_difference"]:
        f = r["first_difference"]
        lines.append(f"  first divergence: layer {f['layer']!r} at (image, channel, row, col) "
                     f"{tuple(f['index'])}: RTL {f['rtl']}, golden {f['golden']}")
    a = r["accuracy"]
    accuracy = ("no labels in the bundle" if a is None else
                f"RTL {a['rtl']:.2%}, golden {a['golden']:.2%}, PyTorch {a['pytorch']:.2%}")
    lines += [
        f"  accuracy   {accuracy} on {r['images']} inputs; RTL/PyTorch top-1 agreement "
        f"{r['top1_agreement_rtl_pytorch']:.2%}",
        f"  speed      {r['cycles_per_image']:.0f} cycles per image; "
        f"{r['simulated_cycles_per_second']:.0f} simulated cycles/s; build "
        f"{r['build_seconds']:.1f} s, simulation {r['simulation_seconds']:.1f} s",
        *([f"             in the simulator: loading memories {t['load']:.1f} s, clocks "
           f"{t['simulate']:.1f} s, reading back {t['read']:.1f} s, in all {t['total']:.1f} s"]
          if (t := r.get("simulator_seconds")) else []),
        "PASS: every layer of the RTL equals the golden model" if r["identical"] else
        "FAIL: the RTL differs from the golden model",
    ]
    return lines
