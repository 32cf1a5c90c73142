"""``asqgen import``: a QONNX file (from Brevitas) into a bundle, with qonnx's execution of it
on the given inputs as the bundle's reference (``export.qonnx_import``; no PyTorch)."""

from core.bundle import save
from core.errors import BundleError, ModelError
from export.qonnx_import import import_qonnx


def describe(layer):
    """One line about an imported layer."""
    shape = "x".join(map(str, layer.in_shape))
    kind = layer.kind
    if layer.kind == "conv2d":
        kind = (("depthwise " if layer.groups > 1 else "") + f"conv2d {layer.kernel}x"
                f"{layer.kernel}" + (f" stride {layer.stride}" if layer.stride > 1 else ""))
    parts = [f"{layer.name}: {kind} {shape} -> {layer.out_channels}"
             + (f" (reads {layer.source})" if layer.source is not None else ""),
             f"{layer.w_bits}-bit {layer.w_format} weights",
             f"{layer.a_bits}-bit {'signed ' if layer.a_signed else ''}inputs"]
    if layer.shortcut is not None:
        parts.append(f"adds {layer.shortcut}")
    parts += [p for p, on in (("relu", layer.relu), ("maxpool 2", layer.pool),
                              ("global avg pool", layer.global_pool)) if on]
    signed = " signed" if layer.next_signed else ""
    parts.append(f"next step {layer.next_step:.6g} ({layer.next_bits} bits{signed})"
                 if layer.next_step is not None else
                 "projection (no Relu: added to another layer)" if layer.projection else
                 "logits")
    return ", ".join(parts)


def run(args):
    bundle = import_qonnx(args.model, args.inputs, args.labels)
    try:
        folder = save(bundle, args.out)
    except BundleError as e:         # a graph the bundle format refuses (save writes nothing)
        raise ModelError(f"{args.model}: its bundle is refused: {e}") from None
    print(f"asqgen import: {args.model} -> {folder} ({len(bundle.layers)} layers, "
          f"{len(bundle.reference['images'])} reference inputs run by qonnx)")
    for layer in bundle.layers:
        print("  " + describe(layer))
    return 0
