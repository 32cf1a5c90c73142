"""``asqgen import``: a QONNX file (from Brevitas) into a bundle, with qonnx's execution of it
on the given inputs as the bundle's reference (``export.qonnx_import``; no PyTorch)."""

from core.bundle import save
from export.qonnx_import import import_qonnx


def run(args):
    bundle = import_qonnx(args.model, args.inputs, args.labels)
    folder = save(bundle, args.out)
    print(f"asqgen import: {args.model} -> {folder} ({len(bundle.layers)} layers, "
          f"{len(bundle.reference['images'])} reference inputs run by qonnx)")
    for layer in bundle.layers:
        shape = "x".join(map(str, layer.in_shape))
        ops = "".join([", relu" if layer.relu else "", ", maxpool 2" if layer.pool else "",
                       ", global avg pool" if layer.global_pool else ""])
        nxt = (f", next step {layer.next_step:.6g} ({layer.next_bits} bits)"
               if layer.next_step is not None else ", logits")
        print(f"  {layer.name}: {layer.kind} {shape} -> {layer.out_channels}, "
              f"{layer.w_bits}-bit {layer.w_format} weights, {layer.a_bits}-bit inputs{ops}{nxt}")
    return 0
