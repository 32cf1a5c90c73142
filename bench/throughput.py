"""Throughput of the layer engine on the default bundle: cycles per image and utilisation per
layer for 4x4, 8x8 and 16x16 arrays, batches of 1, 4 and 16 and a rescale unit of one lane
and of a lane per column (``rescale_lanes``), with the ideal
``M K N / (rows cols)`` beside each, and what the double buffering and the batching cost in
memory.

The figures come from the cycle model (``gen.cycles``), which the suite holds to the RTL's
counters within 2 % (``tests/test_network_rtl.py``); with ``--rtl`` every configuration also
runs on Verilator (``--images`` reference images, every layer checked against the golden
model) and the measured clocks are printed beside the model's. Run it with::

    ./dev python bench/throughput.py            # the model: a second
    ./dev python bench/throughput.py --rtl      # and the RTL: a build per configuration

A second table gives the paper's networks (the committed bundles in ``export/models/``: the
ResNet-8, the ResNet-20 and the MobileNet-V2 for Fashion-MNIST) on the same arrays, per
network and per kind of layer (3x3 and 1x1 convs, depthwise convs against their own ideal
``M 9 C / (rows cols)``, the rest), from the model.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amaranth.hdl import Fragment, Shape                             # noqa: E402

from core.bundle import load                                          # noqa: E402
from gen.cycles import network_cycles                                # noqa: E402
from core.sizing import config_for_bundle                             # noqa: E402
from hw.accelerator import Accelerator                               # noqa: E402

SIZES = (4, 8, 16)
NETWORKS = ("resnet8", "resnet20", "mobilenetv2")      # export/models/<name>, if committed
BATCHES = (1, 4, 16)
LANES = (1, 0)          # 0: a lane per column


def memory_bits(config):
    """``{memory path: bits}`` of the elaborated engine (depth x width of every memory)."""
    from amaranth.hdl._mem import MemoryInstance        # the elaborated memories

    found = {}

    def walk(fragment, path):
        for sub, name, _ in fragment.subfragments:
            here = f"{path}.{name}" if path else name
            if isinstance(sub, MemoryInstance):
                found[here] = sub._data.depth * Shape.cast(sub._data.shape).width
            else:
                walk(sub, here)

    walk(Fragment.get(Accelerator(config=config), None), "")
    return found


def costs(config):
    """What double buffering and batching add: flip-flops (the PEs' shadow weights and swap
    bits) and memory bits (the accumulator's second bank; ``beta_in`` and the channel sums of
    a batch in the rescale unit)."""
    bits = memory_bits(config)
    rows, cols = config.rows, config.cols
    shadow = rows * cols * config.w_bits + rows * cols + rows * (rows - 1) // 2
    bank = sum(v for k, v in bits.items() if k.endswith("buffer.banks")) // 2
    batch = sum(v for k, v in bits.items() if k.endswith(("mem_beta_in", "mem_s")))
    return {"shadow_ffs": shadow, "second_bank_bits": bank, "batch_bits": batch,
            "all_memory_bits": sum(bits.values())}


def _kind(layer):
    if layer.depthwise:
        return "depthwise"
    if layer.kind == "conv2d" and layer.kernel in (1, 3) and layer.w_format != "int":
        return f"{layer.kernel}x{layer.kernel}"
    return "other"


def networks_table(sizes, lanes, images):
    """Per committed network and configuration: cycles per image, the ideal, the utilisation
    over the network and per kind of layer."""
    kinds = ("3x3", "1x1", "depthwise", "other")
    print(f"\nthe paper's networks (export/models/), {images} images: cycles per image, "
          f"ideal, utilisation; by kind of layer: utilisation (share of the cycles)")
    print(f"{'network':>12} {'array':>6} {'lanes':>5} {'cycles':>8} {'ideal':>7} {'util':>6}  "
          + "  ".join(f"{k:>17}" for k in kinds))
    for name in NETWORKS:
        folder = ROOT / "export" / "models" / name
        if not (folder / "manifest.json").exists():
            continue
        bundle = load(folder)
        for size, lane in ((s, n) for s in sizes for n in lanes):
            cfg = config_for_bundle(bundle, rows=size, cols=size).replace(
                rescale_lanes=lane or size)
            model = network_cycles(bundle, cfg, images)
            total = sum(c.clocks for c in model.values())
            ideal = sum(c.ideal for c in model.values())
            cells = []
            for kind in kinds:
                part = [model[la.name] for la in bundle.layers if _kind(la) == kind]
                clocks = sum(c.clocks for c in part)
                cells.append("-" if not part else
                             f"{sum(c.ideal for c in part) / clocks:.1%} ({clocks / total:.0%})")
            print(f"{name:>12} {size}x{size:<4} {lane or size:>5} {total / images:>8.0f} "
                  f"{ideal / images:>7.0f} {ideal / total:>6.1%}  "
                  + "  ".join(f"{c:>17}" for c in cells))


def measure(config, bundle, images, root):
    from sim.golden import run_network
    from sim.network_sim import NetworkSim

    codes = bundle.quantize_input(bundle.reference["images"][:images])
    run = NetworkSim(config, root).run(bundle, codes, name="throughput")
    golden = run_network(bundle, codes)
    for i, layer in enumerate(bundle.layers[:-1]):
        assert (run.outputs[i] == golden.layers[i].codes).all(), layer.name
    assert (run.outputs[-1] == golden.logits).all()
    return {layer.name: c / images for layer, c in zip(bundle.layers, run.layer_clocks)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtl", action="store_true", help="also run every configuration on "
                        "Verilator and print the measured clocks")
    parser.add_argument("--images", type=int, default=32, help="images per run (%(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="array sizes")
    parser.add_argument("--batches", type=int, nargs="+", default=BATCHES, help="max_batch")
    parser.add_argument("--lanes", type=int, nargs="+", default=LANES,
                        help="rescale_lanes (0: the array's columns)")
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    args = parser.parse_args()
    bundle = load(ROOT / "export" / "default_model" / "bundle")
    names = [layer.name for layer in bundle.layers]
    print(f"default bundle, {args.images} images; cycles per image (model"
          f"{', RTL' if args.rtl else ''}), ideal, utilisation = ideal / cycles")
    head = "  ".join(f"{'layer ' + n:>21}" for n in names)
    print(f"{'array':>6} {'batch':>5} {'lanes':>5}  {head}  {'total':>7} {'ideal':>6} "
          f"{'x ideal':>7}")
    for size, batch, lanes in ((s, b, n) for s in args.sizes for b in args.batches
                               for n in args.lanes):
        cfg = config_for_bundle(bundle, rows=size, cols=size).replace(
            max_batch=batch, rescale_lanes=lanes or size)
        model = network_cycles(bundle, cfg, args.images)
        rtl = measure(cfg, bundle, args.images, args.out) if args.rtl else None
        cells = []
        for n in names:
            c = model[n]
            got = f"/{rtl[n]:.0f}" if rtl else ""
            cells.append(f"{c.per_sample:.0f}{got} {c.ideal / c.samples:.0f} "
                         f"{c.utilisation:.0%}")
        total = sum(c.per_sample for c in model.values())
        ideal = sum(c.ideal / c.samples for c in model.values())
        measured = f"/{sum(rtl.values()):.0f}" if rtl else ""
        print(f"{size}x{size:<4} {batch:>5} {lanes or size:>5}  "
              + "  ".join(f"{x:>21}" for x in cells)
              + f"  {total:>7.0f}{measured} {ideal:>6.0f} {total / ideal:>7.2f}")
    networks_table(args.sizes, args.lanes, args.images)
    print("\nwhat the double buffering and the batching cost (beside the engine's memory):")
    print(f"{'array':>6} {'batch':>5} {'shadow FFs':>10} {'2nd bank bits':>13} "
          f"{'batch bits':>10} {'all memory bits':>15}")
    for size in args.sizes:
        for batch in args.batches:
            cfg = config_for_bundle(bundle, rows=size, cols=size).replace(max_batch=batch)
            c = costs(cfg)
            print(f"{size}x{size:<4} {batch:>5} {c['shadow_ffs']:>10} "
                  f"{c['second_bank_bits']:>13} {c['batch_bits']:>10} "
                  f"{c['all_memory_bits']:>15}")


if __name__ == "__main__":
    main()
