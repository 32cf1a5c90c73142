# amaranth: UnusedElaboratable=no
"""``hw.rescale_output.Output`` against ``core.rescale.requantize`` (and, for the last layer,
the activations as they are: ``core.rescale.logits_q``) in Amaranth's simulator: a batch of
samples of seeded random activations in the ``u`` memory as the rescale unit lays them out
(block, sample, position, slice), each sample with its own ``beta``, read out vector by
vector to a host that takes them at random."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from core import rescale
from hw.rescale_layouts import slice_layout
from hw.rescale_output import Output
from hw.rescale_stages import Requantizer

COLS, MAX_C, MAX_P, BATCH, POSITIONS = 4, 8, 9, 3, 3      # MAX_P: BATCH x POSITIONS


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("channels", [3, 8])
@pytest.mark.parametrize("final, sums, signed", [(False, False, False), (True, False, False),
                                                 (False, True, False), (False, False, True),
                                                 (False, True, True)])
def test_outputs_equal_the_golden_requantize(lanes, channels, final, sums, signed):
    """Unsigned codes, ``z`` out, the sums of a global pooling; and signed codes (a linear
    bottleneck, ``next_signed``: two's complement in ``Requantizer.CODE_BITS`` bits, clamped
    at both ends) of ``u`` and of the sums."""
    steps = COLS // lanes
    blocks = -(-channels // COLS)
    rng = np.random.default_rng(lanes * 100 + channels * 2 + final + 7 * sums + 13 * signed)
    positions = 1 if sums else POSITIONS
    # Some below 0 (signed codes: half); the sums of global pooling wider (over positions).
    top = 1 << (30 if sums else 24)
    u = rng.integers(-(1 << 22), top, (BATCH, channels, positions))
    if signed:                          # magnitudes from 1 to top, either sign
        u = np.rint(rng.choice([-1, 1], u.shape) * 2.0 ** rng.uniform(0, 30,
                                                                       u.shape)).astype(np.int64)
    betas = rng.integers(rescale.BETA_ONE // 4, 4 * rescale.BETA_ONE, BATCH)
    fixed = rescale.LayerRescale(m=np.zeros(channels), e=np.zeros(channels),
                                 bias_q=np.zeros(channels), next_bits=int(rng.choice([4, 8])),
                                 m_s=int(rng.integers(1 << 14, 1 << 15)),
                                 e_s=int(rng.integers(12, 16)),
                                 next_signed=signed or None)
    if signed:                          # and a few just past, at and inside both ends
        targets = [fixed.min_code - 3, fixed.min_code, -1, 1, fixed.max_code,
                   fixed.max_code + 3]
        flat = u.reshape(-1)
        for k, code in enumerate(targets):
            recip = int(fixed.reciprocal(np.array([betas[k // (channels * positions)]]))[0])
            flat[k] = round(code * 2 ** fixed.req_shift / recip)
    depth = -(-MAX_C // COLS) * MAX_P * steps
    # The S memory's blocks are BATCH samples apart (``max_batch``), the u memory's MAX_P
    # positions.
    block_stride = (BATCH if sums else MAX_P) * steps
    out_slices = positions * steps
    m = Module()
    m.submodules.outputs = dut = Output(cols=COLS, lanes=lanes, max_channels=MAX_C,
                                        max_positions=MAX_P, u_depth=depth, max_batch=BATCH)
    m.submodules.mem_u = mem = memory.Memory(shape=slice_layout(lanes), depth=depth, init=[])
    rd = mem.read_port()
    u_data = Signal(slice_layout(lanes))
    m.d.sync += u_data.eq(rd.data)
    m.d.comb += [rd.addr.eq(dut.u_addr), dut.u_data.eq(u_data)]
    got = [[] for _ in range(BATCH)]

    async def bench(ctx):
        for t in range(BATCH):
            for c in range(channels):
                b, j, lane = c // COLS, c % COLS // lanes, c % lanes
                for p in range(positions):
                    entry = b * block_stride + t * out_slices + p * steps + j
                    ctx.set(mem.data[entry][lane], int(u[t, c, p]))
        ctx.set(dut.final, final)
        ctx.set(dut.sums, sums)
        ctx.set(dut.channels, channels)
        ctx.set(dut.out_last, out_slices - 1)
        ctx.set(dut.sh_req, fixed.req_shift)
        ctx.set(dut.max_code, fixed.max_code)
        ctx.set(dut.signed, signed)
        for t in range(BATCH):
            ctx.set(dut.recip, int(fixed.reciprocal(np.array([betas[t]]))[0]))
            ctx.set(dut.beta, int(betas[t]))
            ctx.set(dut.sample_base, t * out_slices)
            phase, left = "load", True
            while left:
                ctx.set(dut.load, phase == "load")
                ctx.set(dut.run, phase == "run")
                ready = bool(rng.random() < 0.4)
                ctx.set(dut.o_out.ready, ready)
                issued_last = ctx.get(dut.issued_last)
                left = not ctx.get(dut.sample_out)
                if ready and ctx.get(dut.o_out.valid):
                    payload = dut.o_out.payload
                    got[t].append(([ctx.get(payload.value[i]) for i in range(COLS)],
                                   ctx.get(payload.last), ctx.get(payload.beta)))
                await ctx.tick()
                phase = "run" if phase == "load" else "wait" if issued_last else phase

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = u if final else rescale.requantize(u, betas, fixed)
    if signed:                              # the codes take both signs and both clamps
        codes = set(want.ravel().tolist())
        assert {fixed.min_code, fixed.max_code} <= codes
        assert codes & set(range(fixed.min_code + 1, 0)) and codes & set(range(1, fixed.max_code))
    for t in range(BATCH):
        assert len(got[t]) == blocks * positions
        assert [last for _, last, _ in got[t]] == [0] * (blocks * positions - 1) + [1]
        assert {beta for _, _, beta in got[t]} == {int(betas[t])}
        for k, (values, _, _) in enumerate(got[t]):
            b, p = divmod(k, positions)
            for i in range(min(COLS, channels - b * COLS)):
                value = values[i]
                if signed:                      # two's complement in CODE_BITS bits, 0 above
                    assert 0 <= value < 1 << Requantizer.CODE_BITS
                    value = value - (value >> (Requantizer.CODE_BITS - 1) << Requantizer.CODE_BITS)
                assert value == want[t, b * COLS + i, p], (t, b, p, i)


def test_lanes_must_divide_cols():
    with pytest.raises(ValueError, match=r"^lanes must divide cols \(4\), not 3$"):
        Output(cols=COLS, lanes=3, max_channels=MAX_C, max_positions=MAX_P, u_depth=8)
