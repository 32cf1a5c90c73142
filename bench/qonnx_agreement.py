"""How close the QONNX files of ``asqgen export-onnx`` come to the bundles, and why not closer.

    ./dev python bench/qonnx_agreement.py [BUNDLE ...]

For each bundle (default: the default bundle and the committed ResNet-8, ResNet-20 and
MobileNet-V2): the top-1 agreement of the exported file, run by qonnx's ``execute_onnx`` and
(its plain-ops twin) by onnxruntime, and of the ``--compat`` file, with the bundle's reference
logits (PyTorch's) and with the golden model; then, per POST layer, the odd-exponent table's
share of the difference: the golden model's accumulators (the hardware's products, ``T[a]``
rounded per activation code) against the exact products ``a * level * 2**F`` of the same
input codes, in units of ``2**-F`` (the largest difference, and the largest ``|acc|`` for
scale).
"""

import argparse

import numpy as np

from core import numerics
from core.bundle import load
from export import qonnx_export
from sim.golden.im2col import im2col
from sim.golden.network import layer_accumulators, run_network

BUNDLES = ["export/default_model/bundle", "export/models/resnet8", "export/models/resnet20",
           "export/models/mobilenetv2"]


def exact_accumulators(layer, codes):
    """``sum a * level(code) * 2**F`` in float64: the products without the table's rounding."""
    n = codes.shape[0]
    values = np.array([numerics.weight_value(layer.w_format, layer.w_bits, c)
                       for c in range(2 ** layer.w_bits)])          # float64, not the table's
    w = values[layer.weight_matrix] * 2.0 ** layer.frac_bits
    if layer.kind == "linear":
        return codes.reshape(n, -1).astype(np.float64) @ w
    co, ho, wo = layer.conv_shape
    patches = im2col(codes, layer.kernel, layer.stride, layer.padding).astype(np.float64)
    return (patches @ w).reshape(n, ho, wo, co).transpose(0, 3, 1, 2)


def table_effect(bundle):
    """Per POST layer: ``(name, largest |golden - exact|, largest |acc|)`` in units of
    ``2**-F`` over the reference inputs."""
    trace = run_network(bundle, bundle.reference["codes"])
    rows = []
    for i, layer in enumerate(bundle.layers):
        if layer.w_format != "post":
            continue
        j = bundle.source_index(i)
        codes = trace.input_codes if j is None else trace.layers[j].codes
        acc = layer_accumulators(layer, codes)
        diff = np.abs(acc - exact_accumulators(layer, codes))
        rows.append((layer.name, float(diff.max()), int(np.abs(acc).max())))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="*", default=BUNDLES)
    args = parser.parse_args()
    for folder in args.bundles:
        bundle = load(folder)
        print(f"{folder} ({len(bundle.reference['images'])} reference inputs)")
        for name, kw in (("qonnx", dict(engine="qonnx")),
                         ("onnxruntime", dict(engine="onnxruntime")),
                         ("compat (qonnx)", dict(engine="qonnx", compat=True))):
            r = qonnx_export.agreement(bundle, **kw)
            print(f"  {name:<16} top-1 = reference {r['vs_reference']:7.2%}   = golden "
                  f"{r['vs_golden']:7.2%}   codes = golden {min(r['codes'].values()):8.4%} to "
                  f"{max(r['codes'].values()):8.4%}   codes = reference "
                  f"{min(r['codes_vs_reference'].values()):8.4%}")
        rows = table_effect(bundle)
        worst = max(rows, key=lambda r: r[1] / r[2])
        print(f"  odd-exponent table: over {len(rows)} POST layers, |golden acc - exact acc| "
              f"<= {max(r[1] for r in rows):.2f} units of 2**-F; the largest relative to the "
              f"layer's largest |acc|: {worst[1]:.2f} of {worst[2]} ({worst[0]})")


if __name__ == "__main__":
    main()
