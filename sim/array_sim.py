"""The host side of the systolic array: tiling, and running matrix products on Verilator.

``ArraySim(config, root)`` generates the Verilog for ``config`` and builds it once
(``sim.design.Design``); ``run([(A, W), ...])`` splits every product into
array tiles, runs all of them in one simulation and returns each product's accumulators.

Tiling: ``W`` (``K x N``) is cut into column blocks of ``cols``; ``K`` must not exceed ``rows``
(accumulating over ``K`` tiles needs the accumulator buffer, which this array does not have);
a short ``K`` or a short last block is padded with zero codes, whose products are 0.

Signed activations (``config.signed_acts``) are values here, as in the golden model: a signed
layer's two's-complement codes or an unsigned layer's codes, any of ``-(2**a_bits - 1) ..
2**a_bits - 1``; ``act_fields`` turns them into the magnitude and sign the array takes on
``i_a`` (``hw.operand``: the host does that conversion, not the array).
"""

from dataclasses import dataclass
import numpy as np

from core.errors import UsageError
from hw.multiplier import StandaloneMultiplier
from hw.operand import code_layout
from hw.systolic_array import SystolicArray, activation_layout, result_layout, weight_layout
from sim.golden import check_acts, check_codes

from .design import Design
from .payload import Payload

__all__ = ["ArraySim", "MultiplierSim", "Run", "ShapeError", "act_bits", "act_fields",
           "act_values", "tiles_for"]

TOP = "asq_array"


class ShapeError(UsageError):
    """A product that the array cannot run (a usage error: exit status 2)."""


@dataclass
class Run:
    """The outcome of ``ArraySim.run``: one accumulator matrix per product (``M x N``; for
    split sums ``2 x M x N``, as ``sim.golden.matmul`` gives them), and clocks."""

    results: list
    cycles: int
    lasts_ok: bool


def act_fields(fmt, codes):
    """Activation codes (a sequence) as the values of their ``hw.operand.code_layout`` fields:
    the codes themselves, or for signed activations (``fmt.a_signed``) ``{"a": |code|, "neg":
    code < 0}`` each (sign-magnitude; a signed layer's ``-2**(a_bits-1)`` is
    ``a = 2**(a_bits-1)``)."""
    if not fmt.a_signed:
        return [int(c) for c in codes]
    return [{"a": abs(int(c)), "neg": int(c < 0)} for c in codes]


def act_values(config, A):
    """``A`` as ``int64`` activations that the array of ``config`` takes (``ValueError``
    otherwise): ``a_bits``-bit codes, or with ``signed_acts`` any sign and ``a_bits``-bit
    magnitude (a signed layer's two's-complement codes and an unsigned layer's codes alike)."""
    return check_acts(A, config.product_format)


def act_bits(fmt, codes):
    """``act_fields`` for numpy arrays: every code's ``code_layout`` bits (``int64``, same
    shape), the code itself, or ``|code| | (code < 0) << a_bits`` for signed activations; for
    ``sim.payload.pack`` of whole vectors of ``activation_layout(config)["data"]``."""
    codes = np.asarray(codes, dtype=np.int64)
    if not fmt.a_signed:
        return codes
    return np.abs(codes) | ((codes < 0).astype(np.int64) << fmt.a_bits)


def tiles_for(config, A, W):
    """The array tiles of ``A x W``, in order: dicts with ``weights`` (``rows x cols``) and
    ``acts`` (``M x rows``; signed values for ``config.signed_acts``)."""
    A = act_values(config, A)
    W = check_codes("W", W, config.w_bits)
    (m, k), (k2, n) = A.shape, W.shape
    if k != k2:
        raise ShapeError(f"A is {m}x{k} but W is {k2}x{n}: the inner dimensions differ")
    if m < 1 or n < 1 or k < 1:
        raise ShapeError(f"A x W must have M, K, N >= 1, not {m}, {k}, {n}")
    if k > config.rows:
        raise ShapeError(f"K={k} does not fit the {config.rows}-row array: this array has no "
                         f"accumulator buffer to add K tiles, so K must be at most rows")
    acts = np.zeros((m, config.rows), dtype=np.int64)
    acts[:, :k] = A
    tiles = []
    for n0 in range(0, n, config.cols):
        block = np.zeros((config.rows, config.cols), dtype=np.int64)
        part = W[:, n0:n0 + config.cols]
        block[:k, :part.shape[1]] = part
        tiles.append({"weights": block.tolist(), "acts": acts.tolist()})
    return tiles


class ArraySim(Design):
    """The array of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        super().__init__(SystolicArray(config=config), root, TOP)
        self._w = Payload(weight_layout(config))
        self._a = Payload(activation_layout(config))
        self._r = Payload(result_layout(config))

    def run(self, products, *, seed=0, stall=0.0, backpressure=0.0, name="run"):
        """Run every ``(A, W)`` of ``products`` in one simulation; see ``Run``."""
        plans = [tiles_for(self.config, A, W) for A, W in products]
        tiles = [t for plan in plans for t in plan]
        w_words = [self._w.pack(row) for t in tiles for row in t["weights"]]
        fmt = self.config.product_format
        a_words = [self._a.pack({"data": act_fields(fmt, a), "last": i == len(t["acts"]) - 1})
                   for t in tiles for i, a in enumerate(t["acts"])]
        [(received, cycles)] = self.run_streams(
            [{"first": {}, "send": {"i_w": w_words, "i_a": a_words},
              "receive": {"o_r": len(a_words)}}],
            sources=("i_w", "i_a"), sinks=("o_r",), seed=seed, stall=stall,
            backpressure=backpressure, name=name)
        vectors = iter(self._r.unpack(w) for w in received["o_r"])
        results, lasts_ok = [], True
        for (A, W), plan in zip(products, plans):
            blocks = []
            for t in plan:
                chunk = [next(vectors) for _ in t["acts"]]
                sums = ("data", "odd") if self.config.split else ("data",)
                blocks.append(np.array([[v[s] for v in chunk] for s in sums], dtype=np.int64))
                lasts_ok &= [v["last"] for v in chunk] == [0] * (len(chunk) - 1) + [1]
            result = np.concatenate(blocks, axis=-1)[..., :np.shape(W)[1]]
            results.append(result if self.config.split else result[0])
        return Run(results=results, cycles=cycles, lasts_ok=lasts_ok)


class MultiplierSim(Design):
    """A lone multiplier of ``numerics.ProductFormat`` ``fmt`` built for Verilator."""

    TOP = "asq_multiplier"

    def __init__(self, fmt, root):
        self.fmt = fmt
        super().__init__(StandaloneMultiplier(fmt=fmt), root, self.TOP, clocked=False)

    def products(self, pairs):
        """The product of every ``(a, w)`` of ``pairs`` (``a`` a signed value for signed
        activations); for split sums ``(sum, product)``."""
        code = Payload(code_layout(self.fmt))
        job = {"pairs": [[code.pack(act_fields(self.fmt, [a])[0]), int(w)] for a, w in pairs]}
        out = self.run_bench("sim.benches.multiplier_bench", job)
        if self.fmt.split:
            return list(zip(out["odd"], out["products"]))
        return out["products"]
