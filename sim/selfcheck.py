"""The self-check of a generated array: random and extreme products on Verilator vs the golden
model, with random stalls and backpressure. Prints a short report; returns 0 when every
product is identical to the golden model."""

import time
from pathlib import Path

import numpy as np

from core.numerics import int_code, join_code
from sim.golden import matmul, matmul_exact, table_error, value

from . import verilator
from .array_sim import TOP, ArraySim

__all__ = ["selfcheck_products", "selfcheck"]


def selfcheck_products(cfg, rng):
    """Named ``(A, W)`` products that cover the array: a full tile, a short ``K``, ``N`` not a
    multiple of ``cols``, ``M = 1``, and the extreme sums (every product at its largest
    magnitude, positive and negative) that set the accumulator width; with signed activations
    the extreme activation is ``-(2**a_bits - 1)`` (the largest magnitude), so the signs swap."""
    r, c = cfg.rows, cfg.cols
    lo, hi = cfg.product_format.a_range
    a_ext = lo if cfg.signed_acts else hi
    # The code of the largest positive and negative weight.
    if cfg.w_format == "int":
        w_pos, w_neg = (int_code(cfg.w_bits, v) for v in (2 ** (cfg.w_bits - 1) - 1,
                                                           -2 ** (cfg.w_bits - 1)))
    else:
        w_pos, w_neg = (join_code(cfg.w_bits, sign, 1) for sign in (0, 1))   # +-1

    def rand(m, k, n):
        return (rng.integers(lo, hi + 1, (m, k)), rng.integers(0, 2 ** cfg.w_bits, (k, n)))

    return [
        ("full tile", *rand(4 * r, r, c)),
        ("short K", *rand(9, max(1, r - 1), c)),
        ("N not a multiple of cols", *rand(5, r, 2 * c + max(1, c // 2))),
        ("M = 1", *rand(1, r, c)),
        ("largest positive sums", np.full((3, r), a_ext),
         np.full((r, c), w_neg if cfg.signed_acts else w_pos)),
        ("largest negative sums", np.full((3, r), a_ext),
         np.full((r, c), w_pos if cfg.signed_acts else w_neg)),
    ]


def selfcheck(cfg, *, out, seed=1, stall=0.3):
    verilator.check_probability("stall", stall)
    out = Path(out)
    split = ", split odd sums" if cfg.split else ""
    signed = "signed " if cfg.signed_acts else ""
    print(f"asqgen selfcheck: {cfg.rows}x{cfg.cols} {cfg.w_format}{cfg.w_bits}{split} array, "
          f"{cfg.a_bits}-bit {signed}activations, F={cfg.frac_bits}, {cfg.acc_bits}-bit "
          f"accumulators")
    t0 = time.monotonic()
    sim = ArraySim(cfg, out)
    build_s = time.monotonic() - t0
    rtl = sim.verilog
    warnings = verilator.lint(rtl, TOP)
    print(f"  verilog    {rtl} ({len(rtl.read_text().splitlines())} lines); "
          f"lint -Wall: {'clean' if not warnings else f'{len(warnings)} warnings'}")
    for w in warnings[:5]:
        print(f"             {w}")
    print(f"  build      {build_s:.1f} s (generate and Verilator, cached per configuration)")

    products = selfcheck_products(cfg, np.random.default_rng(seed))
    t0 = time.monotonic()
    run = sim.run([(A, W) for _, A, W in products], seed=seed, stall=stall, backpressure=stall)
    sim_s = time.monotonic() - t0
    fmt = cfg.product_format
    ok = run.lasts_ok and not warnings
    worst = 0.0
    for (name, A, W), got in zip(products, run.results):
        want = matmul(A, W, fmt)
        same = np.array_equal(got, want)
        ok &= same
        err = np.abs(value(want, fmt) - matmul_exact(A, W, fmt)).max() * 2.0 ** -fmt.frac_bits
        worst = max(worst, err)
        m, k = A.shape
        verdict = "identical" if same else f"DIFFERS at {np.argwhere(got != want)[0].tolist()}"
        print(f"  {name:<26} {m:>3}x{k:<3} x {k:>3}x{W.shape[1]:<3} {verdict}")
    ideal = sum(A.shape[0] * A.shape[1] * W.shape[1] for _, A, W in products)
    ideal_cycles = ideal / (cfg.rows * cfg.cols)
    print(f"  stalls     {stall:.0%} idle inputs and output backpressure, seed {seed}")
    print(f"  cycles     {run.cycles} simulated in {sim_s:.1f} s; ideal {ideal_cycles:.0f} "
          f"(utilisation {ideal_cycles / run.cycles:.0%} with stalls)")
    if fmt.split:
        print(f"  sums       split: every product an exact shift (no table); largest error of "
              f"E + O*sqrt(2)/2 here {worst:.2e} activation units (float rounding)")
    else:
        abs_err, rel_err = table_error(fmt)
        print(f"  table      largest product error {abs_err:.3f} units of 2^-{fmt.frac_bits} "
              f"({rel_err:.2e} relative); largest sum error here {worst:.2e} activation "
              f"units")
    print("PASS: the RTL equals the golden model bit for bit" if ok else
          "FAIL: the RTL differs from the golden model")
    return 0 if ok else 1
