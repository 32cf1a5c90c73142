"""The host side of the matmul engine: passes for any ``K`` and ``N``, and 8-bit ``int``
weights as signed-digit terms on a ``post`` array; running them on Verilator.

``passes_for(config, A, W, w_format)``: for each block of ``cols`` columns of ``W``, (for
``int`` weights on a ``post`` or ``pot`` array, for each window of signed digits,
``digit_terms``), for each block of ``rows`` rows of ``K``, one pass; the first pass of a
column block starts the sums, the last one completes them. Weights of the array's own format
and width run as they are, 8-bit or narrower ``int`` weights as signed-digit terms on a
``post`` or ``pot`` array; anything else is refused, as are ``K > max_k`` and ``M > max_m``.

Signed activations (``config.signed_acts``) run on every kind of pass, digit terms too: a
product is ``sign(a) * product(|a|, w)``, so a digit term's product stays an exact shift of
``|a|`` (its ``drop`` low bits zero) and the accumulator buffer adds its signed sums as for
unsigned activations; ``ArrayConfig.buffer_bits`` bounds them with ``|a| <= 2**a_bits - 1``.
"""

from dataclasses import dataclass

import numpy as np

from core.signed_digits import digit_shape, digit_window, naf
from core.tiles import depthwise_rows, live_tiles
from core.numerics import int_value, join_code
from hw.accumulator import accumulator_layout, pass_layout
from hw.matmul_engine import MatmulEngine
from hw.systolic_array import activation_layout, weight_layout
from sim.golden import check_codes

from .array_sim import ShapeError, act_fields, act_values
from .design import Design
from .payload import Payload

__all__ = ["pass_plan", "PassPlan", "passes_for", "EngineSim", "EngineRun", "PassWords",
           "digit_terms", "digit_window", "digit_shape", "naf"]

TOP = "asq_engine"


def digit_terms(W, bits, config):
    """8-bit (or narrower) two's-complement ``W`` codes as passes of a ``post``/``pot`` array
    (``core.signed_digits``).

    Each weight is written in non-adjacent form (signed binary digits, no two adjacent ones
    non-zero) and its digits are cut into windows of ``digit_window(config)`` positions; a
    window holds at most ``terms`` non-zero digits (``digit_shape``: 2 for 8-bit weights on a
    4-bit ``post`` array, which covers 4 positions). Term ``t`` of window ``w`` is, for every
    weight, its ``t``-th non-zero digit there as a code of ``+-2**(p - w*width - (width-1))``.
    The terms of a window are stacked along ``K`` (the activations repeated ``terms`` times),
    so that a window is one product of ``K * terms`` rows, and the accumulator adds it with
    ``drop = F - (width - 1)`` (those low bits are zero) and ``shift = w * width``.

    Returns ``([(stacked codes, shift)], drop, terms)``."""
    width = digit_window(config, bits)
    windows, terms = digit_shape(bits, width)
    signed = int_value(bits, np.asarray(W, dtype=np.int64))
    digits = naf(signed.ravel())
    digits += [np.zeros(signed.size, dtype=np.int64)] * (windows * width - len(digits))
    out = []
    for w in range(windows):
        stacked = np.zeros((terms, signed.size), dtype=np.int64)
        seen = np.zeros(signed.size, dtype=np.int64)
        for p in range(w * width, (w + 1) * width):
            d = digits[p]
            e = width - 1 - (p - w * width)
            magnitude = 2 * e + 1 if config.w_format == "post" else e + 1
            code = join_code(config.w_bits, (d < 0).astype(np.int64), magnitude)
            for t in range(terms):
                here = (d != 0) & (seen == t)
                stacked[t, here] = code[here]
            seen += d != 0
        out.append((stacked.reshape((terms,) + signed.shape).reshape(-1, signed.shape[1]),
                    w * width))
    return out, config.frac_bits - (width - 1), terms


@dataclass
class PassPlan:
    """The passes of ``A x W`` for an ``A`` of ``m`` rows, without the activations.

    ``passes``: ``(k0, weights, shift, drop, first, final)`` each, ``weights`` the
    ``rows x cols`` weight block and ``stack(A)[:, k0:k0 + rows]`` (zero-padded) its
    activations; ``repeat``: how many times ``stack`` repeats ``A``'s columns (the digit terms
    of ``int`` weights, ``digit_terms``; 1 otherwise)."""

    passes: list
    repeat: int = 1

    def stack(self, A):
        return np.tile(A, (1, self.repeat)) if self.repeat > 1 else A

    def __len__(self):
        return len(self.passes)


def pass_plan(config, m, W, w_format, w_bits=None, *, depthwise=None):
    """The ``PassPlan`` of ``A x W`` for an ``A`` of ``m`` rows: for each block of ``cols``
    columns, for each window of digits (``int`` weights on a ``post``/``pot`` array), for each
    block of ``rows`` rows of the (stacked) ``K``, one pass; the first pass of a column block
    starts the sums, the last one completes them. For a depthwise conv (``depthwise``: its
    ``k`` rows a channel), only the passes whose tile meets the block's own channels' rows
    (``core.tiles``): the others' weights are zero by construction, and ``gen.cycles``
    counts the same passes from the shape."""
    w_bits = config.w_bits if w_bits is None else w_bits
    W = check_codes("W", W, w_bits)
    k, n = W.shape
    if not 1 <= k <= config.max_k:
        raise ShapeError(f"K={k} must be from 1 to max_k={config.max_k}")
    if not 1 <= m <= config.max_m:
        raise ShapeError(f"M={m} must be from 1 to max_m={config.max_m}")
    if w_format == config.w_format and w_bits == config.w_bits:
        windows, drop, repeat = [(W, 0)], 0, 1
    elif w_format == "int" and config.w_format in ("post", "pot") and w_bits <= 8:
        windows, drop, repeat = digit_terms(W, w_bits, config)
    else:
        raise ShapeError(f"{w_bits}-bit {w_format} weights cannot run on a {config.w_bits}-bit "
                         f"{config.w_format} array")
    r, c = config.rows, config.cols
    passes = []
    for n0 in range(0, n, c):
        steps = [(k0, plane, shift) for plane, shift in windows
                 for k0 in range(0, plane.shape[0], r)]
        if depthwise:                    # the block-diagonal's other tiles are zero
            lo, hi = depthwise_rows(depthwise, n0, c, n)
            steps = [(k0, plane, shift) for plane, shift in windows
                     for k0 in live_tiles(k, r, lo, hi, plane.shape[0] // k)]
        for j, (k0, plane, shift) in enumerate(steps):
            block = np.zeros((r, c), dtype=np.int64)
            wpart = plane[k0:k0 + r, n0:n0 + c]
            block[:wpart.shape[0], :wpart.shape[1]] = wpart
            passes.append((k0, block, shift, drop, int(j == 0), int(j == len(steps) - 1)))
    return PassPlan(passes, repeat)


def passes_for(config, A, W, w_format, w_bits=None, *, depthwise=None):
    """The passes of ``A x W`` (see the module docstring), as dicts for the bench. ``A`` holds
    signed values for ``config.signed_acts`` (``act_values``; ``PassWords`` packs them as the
    magnitude and sign the array takes)."""
    A = act_values(config, A)
    (m, k), (k2, n) = A.shape, np.shape(W)
    if k != k2:
        raise ShapeError(f"A is {m}x{k} but W is {k2}x{n}: the inner dimensions differ")
    plan = pass_plan(config, m, W, w_format, w_bits, depthwise=depthwise)
    A = plan.stack(A)
    passes = []
    for k0, block, shift, drop, first, final in plan.passes:
        acts = np.zeros((m, config.rows), dtype=np.int64)
        part = A[:, k0:k0 + config.rows]
        acts[:, :part.shape[1]] = part
        passes.append({"weights": block.tolist(), "acts": acts.tolist(), "shift": shift,
                       "drop": drop, "first": first, "final": final})
    return passes


class PassWords:
    """Packs passes (``passes_for``) into the words of the streams ``i_w``, ``i_a`` and
    ``i_pass`` with the hardware's layouts, and unpacks the sums of ``o_acc``."""

    def __init__(self, config):
        self._fmt = config.product_format
        self._w = Payload(weight_layout(config))
        self._a = Payload(activation_layout(config))
        self._pass = Payload(pass_layout(config))
        self._acc = Payload(accumulator_layout(config))

    def streams(self, passes):
        """``{"i_w": [...], "i_a": [...], "i_pass": [...]}`` for ``passes``."""
        words = {"i_w": [], "i_a": [], "i_pass": []}
        for p in passes:
            words["i_w"] += [self._w.pack(row) for row in p["weights"]]
            last = len(p["acts"]) - 1
            words["i_a"] += [self._a.pack({"data": act_fields(self._fmt, a), "last": i == last})
                             for i, a in enumerate(p["acts"])]
            words["i_pass"].append(self._pass.pack({k: p[k] for k in
                                                    ("shift", "drop", "first", "final")}))
        return words

    def sums(self, words):
        """``o_acc`` words as ``{"data": [...], "last": 0 or 1}``."""
        return [self._acc.unpack(w) for w in words]


@dataclass
class EngineRun:
    results: list
    cycles: int
    lasts_ok: bool


class EngineSim(Design):
    """The matmul engine of ``config`` built for Verilator under ``root``."""

    def __init__(self, config, root):
        self.config = config
        super().__init__(MatmulEngine(config=config), root, TOP)
        self._words = PassWords(config)

    def step(self, passes):
        """The stream step of ``passes``: their words, and every final pass's sums to take."""
        expected = sum(len(p["acts"]) for p in passes if p["final"])
        return {"first": {}, "send": self._words.streams(passes), "receive": {"o_acc": expected}}

    def run(self, products, *, seed=0, stall=0.0, backpressure=0.0, name="run",
            reset_during=None):
        """Run every ``(A, W, w_format, w_bits)`` of ``products`` in one simulation.

        ``reset_during=(products, clocks)``: those products start first and are cut off by a
        reset after ``clocks`` clocks."""
        plans = [passes_for(self.config, A, W, fmt, bits) for A, W, fmt, bits in products]
        passes = [p for plan in plans for p in plan]
        abort = {}
        if reset_during is not None:
            cut, clocks = reset_during
            cut = [p for A, W, fmt, bits in cut
                   for p in passes_for(self.config, A, W, fmt, bits)]
            abort = dict(aborted=self.step(cut), abort_after=clocks)
        [(received, cycles)] = self.run_streams(
            [self.step(passes)], sources=("i_w", "i_a", "i_pass"), sinks=("o_acc",), seed=seed,
            stall=stall, backpressure=backpressure, name=name, **abort)
        sums = iter(self._words.sums(received["o_acc"]))
        results, lasts_ok = [], True
        for (A, W, _, _), plan in zip(products, plans):
            blocks = []
            for p in plan:
                if p["final"]:
                    chunk = [next(sums) for _ in p["acts"]]
                    blocks.append(np.array([v["data"] for v in chunk], dtype=np.int64))
                    lasts_ok &= [v["last"] for v in chunk] == [0] * (len(chunk) - 1) + [1]
            results.append(np.hstack(blocks)[:, :np.shape(W)[1]])
        return EngineRun(results=results, cycles=cycles, lasts_ok=lasts_ok)
