# amaranth: UnusedElaboratable=no
"""The rescale unit on Verilator against the golden model's rescale (``core.rescale``): random
accumulators and adapter weights, batches of samples sharing a layer, extreme values, the
bounded ReLU's clip, average and global pooling (format 3), with random stalls and
backpressure."""

import numpy as np
import pytest

from core import rescale
from core.adapter import Adapter
from core.rescale import BETA_MAX, BETA_ONE
from hw.dsp import Ecp5Target
from sim.rescale_sim import RescaleSim, Sample

COLS, ACC_BITS, MAX_C, MAX_P, MAX_H, MAX_B = 4, 31, 12, 64, 3, 5


@pytest.fixture(scope="module", params=[(1, None), (4, None), (4, Ecp5Target())],
                ids=["1lane", "4lanes", "4lanes-ecp5"])
def unit(build_root, request):
    """The unit with one lane (a vector in 4 slices) and with a lane per column; and the
    latter built for an ECP5, its multipliers DSP blocks with their own registers
    (``hw.dsp``), simulated with ``sim/vendor/MULT18X18D.v``."""
    lanes, platform = request.param
    return RescaleSim(build_root, cols=COLS, lanes=lanes, acc_bits=ACC_BITS,
                      max_channels=MAX_C, max_positions=MAX_P, max_hidden=MAX_H,
                      max_batch=MAX_B, platform=platform)


def _fixed(rng, channels, adapter, positions, *, final=False, b_beta=1.0, next_bits=4,
           divisor=1, clip=None, next_signed=False):
    p = dict(bn_scale=rng.uniform(-0.5, 2, channels), bn_bias=rng.normal(0, 0.5, channels),
             s_in=rng.uniform(0.02, 0.2), alpha=rng.uniform(0.05, 0.3, channels), frac_bits=10,
             acc_bound=2 ** 26, positions=positions, divisor=divisor, clip=clip)
    if not final:
        p.update(next_step=rng.uniform(0.05, 0.3), next_bits=next_bits, next_signed=next_signed)
    if adapter == "two":
        hidden = min(MAX_H, max(1, channels // 4))
        p["adapter"] = Adapter(w1=rng.normal(0, 0.5, (hidden, channels)),
                               b1=rng.normal(0, 0.2, hidden), w2=rng.normal(0, 0.3, (1, hidden)),
                               b2=np.array([b_beta]))
    elif adapter == "one":
        p["adapter"] = Adapter(w1=rng.normal(0, 0.2, (1, channels)), b1=np.array([b_beta]))
    return rescale.fixed_point(**p)


def _check(unit, samples, batches=None, **kw):
    """Run ``batches`` (default: each sample alone) and compare every sample."""
    results, _ = unit.run(batches or [[s] for s in samples], **kw)
    for s, got in zip(samples, results):
        acc = s.acc[None] if s.acc.ndim > 1 else s.acc[None, :]
        post = dict(relu=s.relu, pool=s.pool, pool_mode=s.pool_mode, global_pool=s.global_pool)
        if s.fixed.next_bits is None:
            want, beta = rescale.logits_q(acc, np.array([s.beta_in]), s.fixed), BETA_ONE
        elif s.residual != "none":
            operand = s.operand[None]
            if s.residual == "identity":        # (signed codes: the golden model's values)
                operand = rescale.shortcut_operand(operand, np.array([s.res_beta]), s.shortcut)
            _, b, want = rescale.rescale_residual(acc, np.array([s.beta_in]), s.fixed, operand,
                                                  **post)
            beta = int(b[0])
        else:
            _, b, want = rescale.rescale_layer(acc, np.array([s.beta_in]), s.fixed, **post)
            beta = int(b[0])
        assert got["values"] == want.reshape(-1).tolist()
        assert set(got["betas"]) == {beta}, (got["betas"], beta)
        assert got["lasts"] == [0] * (len(got["lasts"]) - 1) + [1]
    return results


@pytest.mark.parametrize("seed, stall", [(1, 0.0), (2, 0.3)])
def test_random_samples(unit, seed, stall):
    rng = np.random.default_rng(seed)
    samples = []
    for channels, h, w, adapter, pool, relu in [(6, 4, 4, "two", 2, True),
                                                (12, 2, 2, "two", 0, True),
                                                (5, 8, 8, "one", 2, True),
                                                (3, 3, 3, "none", 0, False),
                                                (9, 1, 1, "none", 0, True),
                                                # two columns: the vertical pair is read in
                                                # the clock its partner is written (forwarded)
                                                (7, 4, 2, "one", 2, True)]:
        positions = h * w // (pool * pool if pool > 1 else 1)
        samples.append(Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (channels, h, w)),
                              beta_in=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE)),
                              fixed=_fixed(rng, channels, adapter, positions), relu=relu,
                              pool=pool))
    _check(unit, samples, seed=seed, stall=stall, backpressure=stall, name=f"random{seed}")


@pytest.mark.parametrize("seed, stall", [(3, 0.0), (4, 0.3), (7, 0.85)])
def test_batches(unit, seed, stall):
    """(A host that takes few of the vectors offered fills the unit's output queue.)"""
    """Samples of one layer share a pass: their positions one after the other, each with its
    own ``beta_in``; several batches and layers in a row."""
    rng = np.random.default_rng(seed)
    batches, samples = [], []
    for channels, h, w, adapter, pool, count in [(6, 4, 4, "two", 2, 4), (5, 2, 2, "one", 0, 5),
                                                 (10, 1, 1, "none", 0, 5), (3, 6, 2, "two", 2, 2)]:
        positions = h * w // (pool * pool if pool > 1 else 1)
        fixed = _fixed(rng, channels, adapter, positions)
        batch = [Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (channels, h, w)),
                        beta_in=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE)), fixed=fixed,
                        relu=True, pool=pool) for _ in range(count)]
        batches.append(batch)
        samples += batch
    _check(unit, samples, batches, seed=seed, stall=stall, backpressure=stall,
           name=f"batches{seed}")


@pytest.mark.parametrize("seed, stall", [(6, 0.0), (8, 0.3)])
def test_residual_add(unit, seed, stall):
    """A shortcut's operand added before the ReLU: an identity shortcut's codes (rescaled with
    their own step and each sample's own beta) and a projection's z, in batches."""
    rng = np.random.default_rng(seed)
    batches, samples = [], []
    for channels, h, w, kind, pool, count in [(6, 4, 4, "identity", 0, 3),
                                              (5, 2, 2, "projection", 0, 4),
                                              (7, 4, 4, "identity", 2, 2)]:
        positions = h * w // (pool * pool if pool > 1 else 1)
        fixed = _fixed(rng, channels, "two", positions)
        shortcut = (rescale.shortcut_fixed_point(step=rng.uniform(0.02, 0.2), channels=channels,
                                                 bits=8) if kind == "identity" else None)
        batch = []
        for _ in range(count):
            operand = (rng.integers(0, 256, (channels, h, w)) if kind == "identity" else
                       rng.integers(-2 ** 30, 2 ** 30, (channels, h, w)))
            batch.append(Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (channels, h, w)),
                                beta_in=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE)),
                                fixed=fixed, relu=True, pool=pool, residual=kind,
                                operand=operand, shortcut=shortcut,
                                res_beta=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE))))
        batches.append(batch)
        samples += batch
    _check(unit, samples, batches, seed=seed, stall=stall, backpressure=stall,
           name=f"residual{seed}")


# (channels, h, w, adapter, pool, pool mode, global pool, clip, residual, samples a batch)
OPS = [(6, 4, 4, "two", 2, "avg", False, None, "none", 2),       # average pooling
       (5, 4, 4, "one", 0, "max", False, 6.0, "none", 3),        # ReLU6
       (7, 4, 4, "two", 2, "avg", False, 3.0, "none", 2),        # both, two blocks
       (9, 2, 2, "none", 0, "max", True, None, "none", 5),       # global pooling, a batch
       (6, 4, 4, "two", 2, "avg", True, 6.0, "none", 3),         # all three
       (5, 4, 2, "one", 2, "max", True, 6.0, "identity", 2),     # a shortcut, clip, GAP
       (12, 1, 1, "none", 0, "max", False, 0.5, "projection", 4)]


@pytest.mark.parametrize("seed, stall", [(11, 0.0), (12, 0.3)])
def test_clip_average_and_global_pooling(unit, seed, stall):
    """Format 3's operations: the bounded ReLU (``clip_q``), the window's sum (average
    pooling) and the channel sums requantized (global pooling: one vector per block and
    sample), alone, together and after a shortcut, in batches, with the layers that follow
    each other setting their registers differently."""
    rng = np.random.default_rng(seed)
    batches, samples = [], []
    for channels, h, w, adapter, pool, mode, gap, clip, kind, count in OPS:
        pooled = h * w // (pool * pool if pool > 1 else 1)
        window = pool * pool if mode == "avg" else 1
        fixed = _fixed(rng, channels, adapter, pooled * window, clip=clip,
                       divisor=window * (pooled if gap else 1))
        assert fixed.clip_q == (None if clip is None else int(clip * 2 ** rescale.Z))
        shortcut = (rescale.shortcut_fixed_point(step=rng.uniform(0.02, 0.2), channels=channels,
                                                 bits=8) if kind == "identity" else None)
        batch = []
        for _ in range(count):
            operand = (None if kind == "none" else rng.integers(0, 256, (channels, h, w))
                       if kind == "identity" else rng.integers(-2 ** 30, 2 ** 30, (channels, h, w)))
            batch.append(Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (channels, h, w)),
                                beta_in=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE)),
                                fixed=fixed, relu=True, pool=pool, pool_mode=mode,
                                global_pool=gap, residual=kind, operand=operand,
                                shortcut=shortcut,
                                res_beta=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE))))
        batches.append(batch)
        samples += batch
    results = _check(unit, samples, batches, seed=seed, stall=stall, backpressure=stall,
                     name=f"ops{seed}")
    gap = [len(r["values"]) for s, r in zip(samples, results) if s.global_pool]
    assert gap == [s.acc.shape[0] for s in samples if s.global_pool]


# (channels, h, w, adapter, pool, pool mode, global pool, residual, shortcut codes signed,
#  next bits, samples a batch): layers with no ReLU and signed output codes
SIGNED = [(6, 4, 4, "two", 0, "max", False, "none", False, 4, 2),      # a linear bottleneck
          (5, 4, 4, "one", 2, "max", False, "none", False, 8, 3),      # max pooling of z < 0
          (7, 4, 4, "two", 2, "avg", False, "identity", True, 4, 2),   # + signed identity
          (6, 4, 4, "two", 2, "avg", True, "identity", False, 8, 2),   # unsigned identity, GAP
          (9, 2, 2, "none", 0, "max", True, "none", False, 4, 3),      # global pooling of z < 0
          (5, 2, 2, "one", 0, "max", False, "projection", False, 4, 2)]


@pytest.mark.parametrize("seed, stall", [(21, 0.0), (22, 0.3)])
def test_signed_codes(unit, seed, stall):
    """Layers with no ReLU whose output codes are signed (``next_signed``: a linear
    bottleneck, clamped to ``-2**(b-1) .. 2**(b-1) - 1``, read back as two's complement),
    their negative values through max and average pooling, the channel sums and the adapter;
    a signed identity shortcut (``res_signed``: the codes sent as ``o_out`` gives them, in
    their low 8 bits), an unsigned one and a projection, after one another so that each layer
    sets its registers anew; the layer after them unsigned again."""
    rng = np.random.default_rng(seed)
    batches, samples = [], []
    for channels, h, w, adapter, pool, mode, gap, kind, res_signed, bits, count in SIGNED:
        pooled = h * w // (pool * pool if pool > 1 else 1)
        window = pool * pool if mode == "avg" else 1
        fixed = _fixed(rng, channels, adapter, pooled * window, next_bits=bits,
                       divisor=window * (pooled if gap else 1), next_signed=True)
        code_bits = 4 if res_signed else 8
        shortcut = (rescale.shortcut_fixed_point(step=rng.uniform(0.02, 0.2), channels=channels,
                                                 bits=code_bits) if kind == "identity" else None)
        batch = []
        for _ in range(count):
            operand = (None if kind == "none" else
                       rng.integers(-8, 8, (channels, h, w)) if res_signed else
                       rng.integers(0, 256, (channels, h, w)) if kind == "identity" else
                       rng.integers(-2 ** 30, 2 ** 30, (channels, h, w)))
            batch.append(Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (channels, h, w)),
                                beta_in=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE)),
                                fixed=fixed, relu=False, pool=pool, pool_mode=mode,
                                global_pool=gap, residual=kind, operand=operand,
                                shortcut=shortcut, res_signed=res_signed,
                                res_beta=int(rng.integers(BETA_ONE // 8, 8 * BETA_ONE))))
        batches.append(batch)
        samples += batch
    after = [Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (6, 4, 4)), beta_in=BETA_ONE,
                    fixed=_fixed(rng, 6, "one", 4), relu=True, pool=2)]
    batches.append(after)
    samples += after
    results = _check(unit, samples, batches, seed=seed, stall=stall, backpressure=stall,
                     name=f"signed{seed}")
    codes = np.concatenate([r["values"] for r in results[:-1]])
    assert codes.min() < -1 and codes.max() > 1
    four = [r["values"] for s, r in zip(samples, results) if s.fixed.next_bits == 4]
    assert {-8, 7} <= set(np.concatenate(four).tolist())     # both clamps of 4-bit codes


def test_last_layer_returns_z(unit):
    rng = np.random.default_rng(5)
    samples = [Sample(acc=rng.integers(-2 ** 24, 2 ** 24, (10,)), beta_in=BETA_ONE,
                      fixed=_fixed(rng, 10, "none", 1, final=True), relu=False, pool=0)]
    _check(unit, samples, seed=5, stall=0.2, backpressure=0.2, name="final")


def test_extremes(unit):
    rng = np.random.default_rng(9)
    big = 2 ** 26                      # the largest accumulator fixed_point accepts
    samples = [
        Sample(acc=np.zeros((6, 4, 4), np.int64), beta_in=BETA_ONE,          # all zeros
               fixed=_fixed(rng, 6, "two", 4), relu=True, pool=2),
        Sample(acc=np.full((6, 4, 4), big), beta_in=BETA_MAX,                 # all maximal
               fixed=_fixed(rng, 6, "none", 16), relu=True, pool=0),
        Sample(acc=np.full((6, 4, 4), -big - 1), beta_in=1,                   # all minimal
               fixed=_fixed(rng, 6, "one", 16), relu=True, pool=0),
        Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (6, 4, 4)), beta_in=BETA_ONE,  # beta floor
               fixed=_fixed(rng, 6, "one", 4, b_beta=-50.0), relu=True, pool=2),
        Sample(acc=rng.integers(-2 ** 20, 2 ** 20, (6, 4, 4)), beta_in=BETA_ONE,  # beta cap
               fixed=_fixed(rng, 6, "two", 4, b_beta=500.0), relu=True, pool=2),
        Sample(acc=rng.integers(0, 2 ** 20, (6, 4, 4)), beta_in=BETA_ONE,     # 8-bit codes
               fixed=_fixed(rng, 6, "none", 16, next_bits=8), relu=True, pool=0),
    ]
    results = _check(unit, samples, seed=9, stall=0.1, backpressure=0.1, name="extremes")
    assert results[3]["betas"][0] == 1 and results[4]["betas"][0] == BETA_MAX


@pytest.mark.parametrize("cols, lanes", [(16, 1), (32, 2), (8, 1), (4, 4)])
def test_output_queue_has_no_zero_width_signals(cols, lanes):
    """Many slices a vector need few queue entries; the queue still has a real memory (a
    one-entry memory has a 0-bit address, ``[-1:0]``, which Verilator refuses)."""
    from amaranth.back import verilog

    from hw.rescale_unit import RescaleUnit

    unit = RescaleUnit(cols=cols, lanes=lanes, acc_bits=ACC_BITS, max_channels=2 * cols,
                       max_positions=8, max_hidden=2)
    assert "[-1:0]" not in verilog.convert(unit, name="asq_rescale")
