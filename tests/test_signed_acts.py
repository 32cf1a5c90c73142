# amaranth: UnusedElaboratable=no
"""Signed activations (``ProductFormat.a_signed``, ``ArrayConfig.signed_acts``): the
sign-magnitude product (of signed layers' two's-complement codes and unsigned layers' codes
alike: every sign and ``a_bits``-bit magnitude) against exact values, the bounds and accumulator
widths, the golden model
against float64 and a product by product reference, signed-digit terms, and the processing
element (with its operand encoder) on every signed code times every weight code in Amaranth's
simulator. The array and the engine on Verilator: ``test_array_rtl.py``, ``test_engine_rtl.py``,
``test_multiplier_rtl.py``."""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from core import numerics
from core.config import ArrayConfig
from core.errors import UsageError
from core.numerics import ProductFormat, int_value
from hw.operand import OperandEncoder, code_layout, operand_layout
from hw.pe import ProcessingElement
from sim.array_sim import act_fields, tiles_for
from sim.engine_sim import pass_plan
from sim.golden import act_codes, check_codes, matmul, matmul_exact, product_table, table_error

getcontext().prec = 60
SQRT_HALF = Decimal(2).sqrt() / 2


def _fmt(w_format, w_bits, a_bits, odd="table", signed=True):
    return ProductFormat(w_format=w_format, a_bits=a_bits, w_bits=w_bits, odd=odd,
                         frac_bits=numerics.default_frac_bits(w_format, w_bits, odd),
                         a_signed=signed)


FORMATS = [_fmt(f, w, a) for f in ("post", "pot") for w in (3, 4) for a in (1, 4, 8)]
FORMATS += [_fmt("post", 4, 8, "split"), _fmt("post", 3, 4, "split"), _fmt("int", 4, 4),
            _fmt("int", 8, 8), _fmt("post", 2, 8), _fmt("post", 5, 6)]


def _name(f):
    return f"{f.w_format}{f.w_bits}_{f.odd}_as{f.a_bits}"


def test_ranges():
    assert numerics.act_range(8) == (0, 255) and numerics.act_range(8, True) == (-128, 127)
    assert numerics.act_magnitude_max(8) == 255 and numerics.act_magnitude_max(8, True) == 128
    assert numerics.act_range(1, True) == (-1, 0) and numerics.act_magnitude_max(1, True) == 1
    f, u = _fmt("post", 4, 8), _fmt("post", 4, 8, signed=False)
    # Signed and unsigned layers' codes on one array: every sign and 8-bit magnitude.
    assert f.a_range == (-255, 255) and f.a_max == u.a_max == 255 and u.a_range == (0, 255)
    # The table is indexed by the magnitude: the unsigned table; the bounds are the same.
    assert f.table == u.table and len(f.table) == 256 and f.bound == u.bound
    codes = act_codes(f)
    assert codes.tolist() == list(range(256)) + list(range(-255, 0))
    # Row ``a`` of the product table (numpy's negative indexing for ``a < 0``) is ``a`` times
    # each weight code as ``ProductFormat.product`` makes it, and a negative row is the
    # positive one negated.
    table = product_table(f)
    for a in (-255, -129, -128, -7, -1, 0, 1, 7, 128, 255):
        assert table[a].tolist() == [f.product(a, c) for c in range(2 ** f.w_bits)]
        assert (table[a] == -table[-a]).all()


@pytest.mark.parametrize("fmt", FORMATS, ids=_name)
def test_product_is_sign_magnitude_and_exact_but_for_the_table(fmt):
    """Every signed code times every weight code: ``sign(a) * product(|a|, w)``, the even
    exponents and ``pot``/``int`` exactly ``a * value``, the odd ``post`` exponents within half a
    table unit of the exact signed product, and ``round(-x) = -round(x)``: the rounding of the
    signed value itself (``T`` of ``a`` is ``round(a * sqrt(2)/2 * 2**t)`` for negative ``a``
    too, no tie)."""
    lo, hi = fmt.a_range
    f, bits = fmt.frac_bits, fmt.w_bits
    k_odd = (numerics.max_exponent(bits) - 1) // 2
    for code in range(2 ** bits):
        for a in range(lo, hi + 1):
            got = fmt.product(a, code)
            if fmt.split:       # the magnitude's product, sign applied
                s, p = got
                s_mag, p_mag = numerics.split_product(bits, f, abs(a), code)
                assert (s, p) == (s_mag, -p_mag if a < 0 else p_mag)
                value = Decimal(p) * (SQRT_HALF if s else 1)
            else:
                p_mag = numerics.product(fmt.w_format, bits, f, abs(a), code)
                assert got == (-p_mag if a < 0 else p_mag)
                value = Decimal(got)
            if fmt.w_format == "int":
                assert got == a * int_value(bits, code)
                continue
            sign, m = numerics.split_code(bits, code)
            if m == 0:
                assert value == 0
                continue
            n = m - 1
            base = SQRT_HALF if fmt.w_format == "post" else Decimal(1) / 2
            exact = a * base ** n * 2 ** f * (-1) ** sign
            if fmt.w_format == "pot" or n % 2 == 0 or fmt.split:
                assert abs(value - exact) < Decimal(1e-40)
            else:
                shift = k_odd - n // 2
                t = f - k_odd
                x = abs(a) * SQRT_HALF * 2 ** t              # the table's exact entry
                signed_round = (-1 if a < 0 else 1) * int((x + Decimal("0.5")).to_integral_value(
                    rounding="ROUND_FLOOR"))
                negated_round = int((a * SQRT_HALF * 2 ** t + Decimal("0.5")).to_integral_value(
                    rounding="ROUND_FLOOR"))
                assert signed_round == negated_round       # no tie: round(-x) == -round(x)
                assert value == (-1) ** sign * signed_round * 2 ** shift
                assert abs(value - exact) < Decimal(2) ** (shift - 1)


def test_out_of_range_codes_are_refused():
    f = _fmt("post", 4, 8)
    with pytest.raises(ValueError, match=r"^Activation -256 is outside the 8-bit sign-magnitude "
                                         r"range -255\.\.255$"):
        f.product(-256, 1)
    with pytest.raises(ValueError, match=r"^Activation -1 is outside the 8-bit unsigned "
                                         r"range 0\.\.255$"):
        _fmt("post", 4, 8, signed=False).product(-1, 1)
    with pytest.raises(ValueError, match=r"^A holds the activation 256, outside the 8-bit "
                                         r"sign-magnitude range -255\.\.255$"):
        matmul([[1, 256]], [[1], [1]], f)
    with pytest.raises(ValueError, match=r"^A holds the code 128, outside the 8-bit signed "
                                         r"range -128\.\.127$"):
        check_codes("A", [[1, 128]], 8, signed=True)     # a signed layer's codes
    with pytest.raises(ValueError,
                       match=r"^A holds the code -3, outside the 8-bit range 0\.\.255$"):
        check_codes("A", [[-3]], 8)
    assert check_codes("A", [[-128, 127]], 8, signed=True).tolist() == [[-128, 127]]
    with pytest.raises(TypeError, match=r"^a_signed must be True or False, not 1$"):
        ProductFormat(w_format="post", a_bits=8, w_bits=4, frac_bits=10, a_signed=1)
    with pytest.raises(TypeError, match=r"^signed_acts must be True or False, not 'yes'$"):
        ArrayConfig(signed_acts="yes")


@pytest.mark.parametrize("fmt", FORMATS, ids=_name)
def test_bound_is_reached_and_tight(fmt):
    """``|product| <= bound``, reached (by ``+-(2**a_bits - 1)``): the accumulator widths built
    on it are exact."""
    table = product_table(fmt)
    assert np.abs(table).max() == fmt.bound
    assert fmt.bound == fmt.a_max * (2 ** (fmt.w_bits - 1) if fmt.w_format == "int"
                                     else 2 ** fmt.frac_bits)


@pytest.mark.parametrize("rows", [1, 3, 4, 8])
@pytest.mark.parametrize("w_format, w_bits", [("post", 4), ("int", 4), ("pot", 3)])
def test_accumulators_hold_the_extremes_and_no_fewer(rows, w_format, w_bits):
    """``acc_bits`` and ``psum_bits`` hold ``rows`` products of either sign at their largest, and
    one bit fewer would not; ``buffer_bits`` holds ``max_k`` of them and of signed-digit terms."""
    cfg = ArrayConfig(rows=rows, cols=2, a_bits=8, w_format=w_format, w_bits=w_bits,
                      signed_acts=True, max_k=100)
    table = product_table(cfg.product_format)
    for r in range(rows):
        hi, lo = (r + 1) * table.max(), (r + 1) * table.min()
        bits = cfg.psum_bits(r)
        assert -2 ** (bits - 1) <= lo and hi < 2 ** (bits - 1)
        assert not (-2 ** (bits - 2) <= lo and hi < 2 ** (bits - 2))
    assert cfg.acc_bits == cfg.psum_bits(rows - 1)
    assert cfg.acc_bits == cfg.replace(signed_acts=False).acc_bits
    assert cfg.buffer_bits == cfg.replace(signed_acts=False).buffer_bits
    assert 255 * 255 * 100 < 2 ** (cfg.buffer_bits - 1)           # digit terms' partial sums
    with pytest.raises(UsageError, match=r"^acc_bits must be at least \d+ for \d+ rows of "
                                         r"signed 8-bit x "):
        ArrayConfig(rows=rows, cols=2, a_bits=8, w_format=w_format, w_bits=w_bits,
                    signed_acts=True, acc_bits=cfg.acc_bits - 1)


def test_signed_config_differs_only_where_it_must():
    u, s = ArrayConfig(), ArrayConfig(signed_acts=True)
    assert s.key() != u.key() and "_as8_" in s.key()
    assert s.product_format.a_signed and not u.product_format.a_signed
    assert code_layout(u.product_format).width == 8
    assert code_layout(s.product_format).size == 9
    assert list(operand_layout(s.product_format).members) == ["a", "t", "neg"]
    assert operand_layout(s.product_format).size == operand_layout(u.product_format).size + 1
    # i_a: one bit more per activation; nothing else changes on the ports.
    from amaranth.back import verilog
    from hw.systolic_array import SystolicArray

    ports = {}
    for signed in (False, True):
        cfg = ArrayConfig(rows=3, cols=2, a_bits=4, signed_acts=signed)
        text = verilog.convert(SystolicArray(config=cfg), name="top", emit_src=False)
        text = text[text.index("module top("):]
        text = text[:text.index("endmodule")]
        ports[signed] = sorted(line.strip() for line in text.splitlines()
                               if line.strip().startswith(("input", "output")))
    assert "input [12:0] i_a__payload;" in ports[False]
    assert "input [15:0] i_a__payload;" in ports[True]
    changed = set(ports[False]) ^ set(ports[True])
    assert changed == {"input [12:0] i_a__payload;", "input [15:0] i_a__payload;"}


@pytest.mark.parametrize("fmt", FORMATS, ids=_name)
def test_golden_matmul_against_a_product_loop(fmt):
    rng = np.random.default_rng(3)
    lo, hi = fmt.a_range
    A = rng.integers(lo, hi + 1, (6, 9))
    A[0, :] = lo
    W = rng.integers(0, 2 ** fmt.w_bits, (9, 5))
    want = np.zeros((2, 6, 5) if fmt.split else (6, 5), dtype=np.int64)
    for i in range(6):
        for j in range(5):
            for k in range(9):
                p = fmt.product(int(A[i, k]), int(W[k, j]))
                if fmt.split:
                    want[p[0], i, j] += p[1]
                else:
                    want[i, j] += p
    np.testing.assert_array_equal(matmul(A, W, fmt), want)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if not f.split], ids=_name)
def test_golden_against_float64(fmt):
    """Signed codes (a signed layer's two's-complement ones, and any sign and magnitude) times the
    real weight values (``matmul_exact``, float64): the golden sums differ by at most ``K`` times
    the table's largest error (``table_error``), and not at all for weights without a table; the
    error is the unsigned format's, and a code's products are its negation's negated."""
    rng = np.random.default_rng(11)
    K = 40
    lo, hi = numerics.act_range(fmt.a_bits, signed=True)
    layer = rng.integers(lo, hi + 1, (30, K))
    layer[0] = lo
    full = rng.integers(-fmt.a_max, fmt.a_max + 1, (30, K))
    W = rng.integers(0, 2 ** fmt.w_bits, (K, 12))
    per_product, relative = table_error(fmt)
    for A in (layer, full):
        err = np.abs(matmul(A, W, fmt) - matmul_exact(A, W, fmt)).max()
        assert err <= K * per_product + 1e-6
        if not fmt.table:
            assert err == 0.0
    unsigned = ProductFormat(w_format=fmt.w_format, a_bits=fmt.a_bits, w_bits=fmt.w_bits,
                             frac_bits=fmt.frac_bits)
    assert (per_product, relative) == table_error(unsigned)
    assert (per_product > 0) == bool(fmt.table)
    a = act_codes(fmt)
    P = product_table(fmt)
    for x in range(1, fmt.a_max + 1):
        np.testing.assert_array_equal(P[a == -x][0], -P[a == x][0])


@pytest.mark.parametrize("w_format, w_bits", [("post", 4), ("post", 3), ("pot", 4)])
@pytest.mark.parametrize("bits", [4, 8])
def test_digit_terms_take_signed_activations(w_format, w_bits, bits):
    """``int`` weights as signed-digit terms on a ``post``/``pot`` array with signed
    activations: each pass's sums (``matmul`` of the array's format) have their ``drop`` low
    bits zero, and ``(sum >> drop) << shift`` added over the passes is exactly ``A x W``."""
    cfg = ArrayConfig(rows=4, cols=4, a_bits=8, w_format=w_format, w_bits=w_bits,
                      signed_acts=True, max_k=64, max_m=32)
    rng = np.random.default_rng(bits)
    A = rng.integers(-255, 256, (7, 11))        # any sign and magnitude
    A[0] = -255
    A[1] = rng.integers(-128, 128, 11)          # a signed layer's codes
    W = rng.integers(0, 2 ** bits, (11, 6))
    W[:, 0] = 2 ** (bits - 1)                       # the most negative weight
    plan = pass_plan(cfg, 7, W, "int", bits)
    stacked = plan.stack(A)
    blocks = []
    for k0, block, shift, drop, first, final in plan.passes:   # column blocks in order
        acts = np.zeros((7, cfg.rows), dtype=np.int64)
        part = stacked[:, k0:k0 + cfg.rows]
        acts[:, :part.shape[1]] = part
        sums = matmul(acts, block, cfg.product_format)
        assert (sums % 2 ** drop == 0).all()
        acc = (0 if first else acc) + ((sums >> drop) << shift)
        if final:
            blocks.append(acc)
    total = np.hstack(blocks)[:, :6]
    assert np.array_equal(total, A @ int_value(bits, W))


def test_host_converts_to_sign_magnitude():
    f = _fmt("post", 4, 8)
    assert act_fields(f, [0, 5, -5, -128, 127, 255, -255]) == [
        {"a": 0, "neg": 0}, {"a": 5, "neg": 0}, {"a": 5, "neg": 1}, {"a": 128, "neg": 1},
        {"a": 127, "neg": 0}, {"a": 255, "neg": 0}, {"a": 255, "neg": 1}]
    assert act_fields(_fmt("post", 4, 8, signed=False), [0, 200]) == [0, 200]
    cfg = ArrayConfig(rows=3, cols=2, a_bits=4, signed_acts=True)
    assert tiles_for(cfg, [[-8, 15]], [[1], [2]])[0]["acts"] == [[-8, 15, 0]]
    with pytest.raises(ValueError, match=r"^A holds the activation -16, outside the 4-bit "
                                         r"sign-magnitude range -15\.\.15$"):
        tiles_for(cfg, [[-16, 7]], [[1], [2]])


class _EncodedPE(wiring.Component):
    """A row-1 PE behind its row's operand encoder: the array's path, without the array."""

    def __init__(self, config):
        self._config = config
        pe = ProcessingElement(config=config, row=1)
        self._pe = pe
        members = {"a": In(code_layout(config.product_format)), "w_load": In(1),
                   "w_in": In(config.w_bits), "swap_in": In(1)}
        for chain in ("psum", "psum_odd") if config.split else ("psum",):
            members[f"{chain}_in"] = In(pe.signature.members[f"{chain}_in"].shape)
            members[f"{chain}_out"] = Out(pe.signature.members[f"{chain}_out"].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.enc = enc = OperandEncoder(fmt=self._config.product_format)
        m.submodules.pe = pe = self._pe
        m.d.comb += [enc.a.eq(self.a), pe.x_in.eq(enc.x), pe.w_load.eq(self.w_load),
                     pe.w_in.eq(self.w_in), pe.swap_in.eq(self.swap_in)]
        for chain in ("psum", "psum_odd") if self._config.split else ("psum",):
            m.d.comb += [getattr(pe, f"{chain}_in").eq(getattr(self, f"{chain}_in")),
                         getattr(self, f"{chain}_out").eq(getattr(pe, f"{chain}_out"))]
        return m


PE_CONFIGS = [
    ArrayConfig(rows=2, cols=1, a_bits=8, w_format="post", w_bits=4, signed_acts=True),
    ArrayConfig(rows=2, cols=1, a_bits=4, w_format="post", w_bits=3, signed_acts=True),
    ArrayConfig(rows=2, cols=1, a_bits=8, w_format="pot", w_bits=4, signed_acts=True),
    ArrayConfig(rows=2, cols=1, a_bits=4, w_format="int", w_bits=4, signed_acts=True),
    ArrayConfig(rows=2, cols=1, a_bits=4, w_format="post", w_bits=4, odd="split",
                signed_acts=True),
    ArrayConfig(rows=2, cols=1, a_bits=1, w_format="post", w_bits=2, signed_acts=True),
]


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=lambda c: c.key())
def test_pe_every_signed_code_times_every_weight(cfg):
    """The encoder and a PE of row 1, in Amaranth's simulator: for every weight code (loaded
    into the shadow register, swapped in by the first activation), every signed activation code
    in sign-magnitude, one a clock, and one clock later a partial sum from the row above
    (``+-bound`` or random between, as one product of the row above can be); ``psum_out`` a
    clock after that is ``psum_in + product`` (``core.numerics``), in the product's chain."""
    fmt = cfg.product_format
    dut = _EncodedPE(cfg)
    lo, hi = fmt.a_range
    codes = list(range(lo, hi + 1))
    rng = np.random.default_rng(1)
    chains = ("psum", "psum_odd") if cfg.split else ("psum",)
    got, want = [], []

    def expect(a, w, ins):
        p = fmt.product(a, w)
        if not cfg.split:
            return {"psum": ins["psum"] + p}
        s, v = p
        return {"psum": ins["psum"] + (v if s == 0 else 0),
                "psum_odd": ins["psum_odd"] + (v if s == 1 else 0)}

    async def bench(ctx):
        for w in range(2 ** cfg.w_bits):
            ctx.set(dut.w_load, 1)
            ctx.set(dut.w_in, w)
            await ctx.tick()
            ctx.set(dut.w_load, 0)
            prev = None                 # (a, partial sums) of the previous clock's activation
            for i in range(len(codes) + 1):
                ins = {c: int(rng.choice([-fmt.bound, fmt.bound,
                                          int(rng.integers(-fmt.bound, fmt.bound + 1))]))
                       for c in chains}
                if i < len(codes):
                    ctx.set(dut.a, act_fields(fmt, [codes[i]])[0])
                    ctx.set(dut.swap_in, int(i == 0))
                for c, v in ins.items():    # the row above's sum meets the previous product
                    ctx.set(getattr(dut, f"{c}_in"), v)
                await ctx.tick()
                if prev is not None:
                    got.append({c: ctx.get(getattr(dut, f"{c}_out")) for c in chains})
                    want.append(expect(prev, w, ins))
                prev = codes[i] if i < len(codes) else None

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(codes) * 2 ** cfg.w_bits
    bad = [(i, g, x) for i, (g, x) in enumerate(zip(got, want)) if g != x]
    assert bad == []


def test_vector_packing_matches_the_layout():
    """``act_bits`` and ``sim.payload.pack`` of whole vectors give the words that
    ``Payload.pack`` of ``act_fields`` gives, which Amaranth's layout defines
    (``tests/test_payload.py``)."""
    from hw.systolic_array import activation_layout
    from sim.array_sim import act_bits
    from sim.payload import Payload, pack

    cfg = ArrayConfig(rows=3, cols=2, a_bits=4, signed_acts=True)
    fmt = cfg.product_format
    rng = np.random.default_rng(4)
    A = rng.integers(-15, 16, (50, 3))
    A[0] = [-8, 0, 7]
    layout = activation_layout(cfg)
    one = Payload(layout)
    want = [one.pack({"data": act_fields(fmt, a), "last": 0}) for a in A]
    assert list(pack(layout["data"].shape, act_bits(fmt, A))) == want
    assert want[0] == (8 | 1 << 4) | 0 << 5 | 7 << 10
    unsigned_cfg = cfg.replace(signed_acts=False)
    B = rng.integers(0, 16, (5, 3))
    assert list(pack(activation_layout(unsigned_cfg)["data"].shape,
                     act_bits(unsigned_cfg.product_format, B))) == [
        Payload(activation_layout(unsigned_cfg)).pack({"data": b.tolist(), "last": 0}) for b in B]
