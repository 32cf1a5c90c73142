"""What QONNX's half-to-even rounding costs on the hardware's half-up: the ties in the QONNX
fixtures.

For every activation quantizer of each fixture in ``tests/fixtures/qonnx`` (the network input's
apart), qonnx's own execution on the fixture's 64 images gives the values it quantizes; this
counts those whose ``value / scale`` is exactly ``k + 1/2`` (where the two roundings differ)
and those within 1e-3 of it (where the rescale's fixed-point constants may round otherwise than
qonnx's float32 arithmetic). Needs the ``onnx`` extra; no PyTorch::

    python bench/qonnx_rounding.py
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export import qonnx_graph  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "qonnx"


def main():
    images = np.load(FIXTURES / "images.npy")
    for path in sorted(FIXTURES.glob("*.onnx")):
        model = qonnx_graph.read(path)
        inp = model.graph.input[0].name
        quants = [n for n in model.graph.node if n.op_type == "Quant" and
                  model.get_initializer(n.input[0]) is None and n.input[0] != inp]
        ctx = qonnx_graph.execute(model, images, [n.input[0] for n in quants])
        total = ties = near = 0
        for n in quants:
            v = ctx[n.input[0]].astype(np.float32) / np.float32(model.get_initializer(n.input[1]))
            frac = v - np.floor(v)
            total += v.size
            ties += int((frac == 0.5).sum())
            near += int((np.abs(frac - 0.5) < 1e-3).sum())
        print(f"{path.stem}: {total} values quantized by {len(quants)} activation quantizers; "
              f"{ties} exact ties, {near} within 1e-3 of a tie")


if __name__ == "__main__":
    main()
