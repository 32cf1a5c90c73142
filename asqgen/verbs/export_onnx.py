"""``asqgen export-onnx``: a bundle out to QONNX (``export.qonnx_export``), and how close the
file's execution comes to the bundle on its reference inputs."""

from pathlib import Path

from core.bundle import load
from core.errors import OutputError
from export import qonnx_export

from ..options import default_model, shown, write_json


def _report(bundle, compat, count):
    """The agreement figures of the written variant with qonnx's ``execute_onnx`` and of its
    plain-ops twin with onnxruntime, as printed lines and a JSON dict."""
    figures, lines = {}, []
    for engine in ("qonnx", "onnxruntime"):
        r = qonnx_export.agreement(bundle, compat=compat, engine=engine, count=count)
        r.pop("logits")
        figures[engine] = r
        lines.append(f"{engine + ':':<13} top-1 agreement {r['vs_reference']:.2%} with the "
                     f"reference (PyTorch), {r['vs_golden']:.2%} with the golden model, on "
                     f"{r['images']} inputs")
    lines.append(f"{'output of layer':<20} {'= golden':>10} {'= PyTorch':>10}   (identical "
                 f"codes, qonnx)")
    r = figures["qonnx"]
    for name, share in r["codes"].items():
        torch = r["codes_vs_reference"].get(name)
        lines.append(f"{name:<20} {share:>10.4%} {'-' if torch is None else f'{torch:.4%}':>10}")
    return lines, figures


def run(args):
    folder = args.bundle
    bundle = load(folder)
    out = Path(args.out)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder, not a file name for the .onnx")
    qonnx_export.write(bundle, out, compat=args.compat)
    variant = ("compat: POST/POT weights as float initializers, ASQ steps fixed at their "
               "mean beta" if args.compat else
               "POST/POT weights as codes decoded by Gather, ASQ adapters as standard ops")
    print(f"asqgen export-onnx: {folder} -> {shown(out)} ({variant})")
    if args.images == 0:
        return 0
    if "images" not in bundle.reference or "logits" not in bundle.reference:
        print("  (the bundle has no reference inputs: no agreement figures)")
        return 0
    lines, figures = _report(bundle, args.compat, args.images)
    for line in lines:
        print("  " + line)
    write_json(args.json, figures)
    return 0
