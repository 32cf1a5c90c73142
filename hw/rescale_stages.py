"""The arithmetic stages of the rescale unit, each ``core.rescale`` in hardware, pipelined.

``Product``       ``p = a * b`` modulo ``2**64``: partial products of at most 18 x 18 bits
                  (``hw.dsp.Mult18``: a DSP block each, or logic), then a registered adder tree
``Rounder``       ``rshift(x, n) + addend``                               ``core.rescale.rshift``
``Affine``        ``rshift(acc * beta_in * m, sh) + bias``               ``core.rescale.affine``
``Reciprocal``    ``R = numerator // beta``, one bit per clock          ``LayerRescale.reciprocal``
``Requantizer``   ``clamp(rshift(u * R, sh_req), min_code, max_code)``  ``core.rescale.requantize``

Every stage has at most one adder (or one comparison) of 64 bits between two registers, so
that the unit runs at the array's clock (100 MHz and more on an ECP5). The pipelined stages
advance when ``en`` is high and have a ``LATENCY`` in clocks; each has its own test against
the golden functions (``tests/test_rescale_stages.py``); ``hw.rescale_unit`` sequences them.

Widths. The datapath is 64 bits, two's complement, and drops the bits above (the golden model
computes in numpy's ``int64``, which wraps the same way): ``core.rescale`` refuses every
parameter set or input for which an intermediate could reach ``2**62``, so the low 64 bits are
the exact value, and no product needs its full width. ``WIDE_BITS`` holds every ``z``, ``u``
and adapter sum; ``BETA_BITS`` every ``beta`` up to ``BETA_MAX``; ``DIV_BITS`` the numerator
``m_s << RECIP_BITS``; ``MANTISSA_BITS + 1`` every mantissa (``core.regmap.FIELD_BITS``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from core import numerics, regmap, rescale

from .dsp import Mult18

__all__ = ["WIDE_BITS", "BETA_BITS", "DIV_BITS", "SHIFT_BITS", "MANT_BITS", "CHUNK",
           "LOGIC_BITS", "delay",
           "delay_line", "greater", "halves", "joined",
           "Product", "Rounder", "Affine", "Reciprocal", "Requantizer"]

WIDE_BITS = 64
BETA_BITS = rescale.BETA_MAX.bit_length()
DIV_BITS = rescale.MANTISSA_BITS - 1 + rescale.RECIP_BITS + 1   # m_s < 2**15, shifted by 16
SHIFT_BITS = 8                     # signed shifts from -MAX_LEFT_SHIFT to MAX_RIGHT_SHIFT
MANT_BITS = rescale.MANTISSA_BITS + 1                            # |m| <= 2**15, signed
CHUNK = 18                         # the chunks of an operand (an ECP5 MULT18X18D's operands)
LOGIC_BITS = 4                     # a partial product with a chunk this narrow is logic


def delay_line(m, value, clocks, en=1, name="delay", reset_less=False):
    """``clocks`` registers in a row after ``value``, advancing when ``en`` is high: the list
    of them (the last is ``value`` delayed by ``clocks``). ``reset_less`` for data whose
    validity travels elsewhere (fewer loads on the reset net)."""
    regs = []
    for i in range(clocks):
        reg = Signal.like(value, name=f"{name}_{i}", reset_less=reset_less)
        with m.If(en):
            m.d.sync += reg.eq(value)
        regs.append(value := reg)
    return regs


def delay(m, value, clocks, en=1, name="delay", reset_less=False):
    """``value`` delayed by ``clocks`` registers that advance when ``en`` is high."""
    return delay_line(m, value, clocks, en, name, reset_less)[-1] if clocks else value


def halves(a, b):
    """``(hi_gt, hi_eq, lo_gt)``: the comparisons of the halves of signed ``a`` and ``b``, two
    carry chains half as long side by side; ``joined`` makes ``a > b`` of them."""
    half = len(a) // 2
    hi_a, hi_b = a[half:].as_signed(), b[half:].as_signed()
    return hi_a > hi_b, hi_a == hi_b, a[:half] > b[:half]


def joined(hi_gt, hi_eq, lo_gt):
    """``a > b`` from ``halves(a, b)`` (registered or not)."""
    return hi_gt | (hi_eq & lo_gt)


def greater(a, b):
    """``a > b`` for signed values, by ``halves``."""
    return joined(*halves(a, b))


def _shift_amount(n):
    """The one shift amount of ``rshift``'s two directions: ``t = x >> (n - 1)`` for ``n > 0``
    and ``x << -n`` otherwise are both ``_shifted(x, _shift_amount(n))``."""
    return (n + rescale.MAX_LEFT_SHIFT - (n > 0)).as_unsigned()


def _shifted(x, amount, first=0):
    """``(x << MAX_LEFT_SHIFT) >> (first + amount)``, one barrel shifter (see
    ``_shift_amount``) as deep as ``amount`` is wide: ``first`` is a constant, the least
    amount (``_amounts``)."""
    return (Cat(Signal(rescale.MAX_LEFT_SHIFT), x).as_signed() >> first) >> amount


def _amounts(shifts):
    """``(first, range)``: the least ``_shift_amount`` of the shifts from ``lo`` to ``hi``
    (``shifts``) and the range of what a shifter adds to it."""
    lo, hi = shifts
    amount = lambda n: n + rescale.MAX_LEFT_SHIFT - (n > 0)
    return amount(lo), range(max(2, amount(hi) - amount(lo) + 1))   # a 1-bit signal at least


FULL_SHIFTS = (-rescale.MAX_LEFT_SHIFT, rescale.MAX_RIGHT_SHIFT)


def _chunks(shape):
    """``[(offset, width, signed)]``: the low chunks ``CHUNK`` bits unsigned, the top one
    signed when ``shape`` is (at most ``CHUNK`` bits: an ECP5 ``MULT18X18D`` takes each
    operand signed or unsigned)."""
    width, sign = shape.width, shape.signed
    out, offset = [], 0
    while width - offset > CHUNK:
        out.append((offset, CHUNK, False))
        offset += CHUNK
    out.append((offset, width - offset, sign))
    return out


class Product(wiring.Component):
    """``p = a * b`` modulo ``2**out_bits`` (``out_bits`` at most 64, by default the exact
    width of the product or 64).

    The operands are cut into chunks of at most 18 bits (``_chunks``: the low ones unsigned,
    the top one with the operand's sign). Every partial product of a chunk of ``a`` and a
    chunk of ``b`` that reaches below bit ``out_bits`` is a ``hw.dsp.Mult18`` (on an ECP5, a
    DSP block with its own registers), or, when one of its chunks has at most ``LOGIC_BITS``
    bits, the same two registers around a sum of that many shifted rows in logic (cheaper
    than a DSP block for so few rows); each is cut to the bits that matter, then a tree adds
    them two at a time, one registered level per clock.
    ``LATENCY = 2 + ceil(log2(partial products))``; ``dsp_blocks`` counts the DSP blocks.
    """

    def __init__(self, a_shape, b_shape, out_bits=None):
        a_shape, b_shape = (s if hasattr(s, "signed") else unsigned(s) for s in (a_shape,
                                                                                  b_shape))
        self._out_bits, self._pairs, self.LATENCY = self.plan(a_shape, b_shape, out_bits)
        self.dsp_blocks = sum(not self._logic(ca, cb) for ca, cb in self._pairs)
        signed_out = a_shape.signed or b_shape.signed
        super().__init__({"a": In(a_shape), "b": In(b_shape), "en": In(1, init=1),
                          "p": Out(signed(self._out_bits) if signed_out
                                   else unsigned(self._out_bits))})

    @staticmethod
    def _logic(ca, cb):
        return min(ca[1], cb[1]) <= LOGIC_BITS

    @staticmethod
    def plan(a_shape, b_shape, out_bits=None):
        """``(out_bits, chunk pairs, latency)`` of the product of two shapes."""
        exact = a_shape.width + b_shape.width
        out_bits = min(exact, WIDE_BITS) if out_bits is None else out_bits
        pairs = [(ca, cb) for ca in _chunks(a_shape) for cb in _chunks(b_shape)
                 if ca[0] + cb[0] < out_bits]
        n, levels = len(pairs), 0
        while n > 1:
            n, levels = -(-n // 2), levels + 1
        return out_bits, pairs, 2 + levels

    @classmethod
    def blocks(cls, a_shape, b_shape, out_bits=None):
        """The DSP blocks of the product of two shapes."""
        return sum(not cls._logic(ca, cb) for ca, cb in cls.plan(a_shape, b_shape,
                                                                out_bits)[1])

    def _logic_product(self, m, name, a, b, sa, sb):
        """``a * b`` two clocks later (as a ``Mult18``), for a chunk ``a`` or ``b`` of at most
        ``LOGIC_BITS`` bits: the other one added once for each of the narrow one's bits,
        shifted (the top bit's row subtracted when the narrow one is signed), the rows added
        in pairs in the first clock and the pairs in the second (one adder deep each)."""
        (narrow, narrow_signed), wide = ((a, sa), b) if len(a) <= len(b) else ((b, sb), a)
        rows = [Mux(narrow[i], wide, 0) << i for i in range(len(narrow))]
        if narrow_signed:
            rows[-1] = -rows[-1]
        pairs = []
        for k in range(0, len(rows), 2):
            pair = rows[k] + rows[k + 1] if k + 1 < len(rows) else rows[k]
            reg = Signal(signed(len(wide) + len(narrow) + 1), name=f"{name}_r{k // 2}",
                         reset_less=True)
            with m.If(self.en):
                m.d.sync += reg.eq(pair)
            pairs.append(reg)
        total = pairs[0]
        for reg in pairs[1:]:
            total = total + reg
        p = Signal(signed(len(a) + len(b) + 1), name=f"{name}_p", reset_less=True)
        with m.If(self.en):
            m.d.sync += p.eq(total)
        return p

    def elaborate(self, platform):
        m = Module()
        width = self._out_bits
        terms = []                                   # (signal, offset): signal << offset
        for i, ((oa, wa, sa), (ob, wb, sb)) in enumerate(self._pairs):
            a = self.a.as_unsigned()[oa:oa + wa]
            b = self.b.as_unsigned()[ob:ob + wb]
            a, b = (a.as_signed() if sa else a), (b.as_signed() if sb else b)
            offset = oa + ob
            if self._logic((oa, wa, sa), (ob, wb, sb)):
                p = self._logic_product(m, f"pp_{i}", a, b, sa, sb)
            else:
                m.submodules[f"pp_{i}"] = mult = Mult18(a_signed=sa, b_signed=sb)
                m.d.comb += [mult.en.eq(self.en), mult.a.eq(a), mult.b.eq(b)]
                p = mult.p
            keep = min(len(p), width - offset)
            if keep == len(p) and not p.shape().signed:
                term = Cat(p, 0).as_signed()         # whole and unsigned: one bit for the sign
            else:
                term = p[:keep].as_signed()          # cut: modulo 2**width from here on
            terms.append((term, offset))
        level = 0
        while len(terms) > 1:
            paired = []
            for k in range(0, len(terms) - 1, 2):
                (x, ox), (y, oy) = terms[k], terms[k + 1]
                low = min(ox, oy)
                bits = min(max(len(x) + ox, len(y) + oy) - low + 1, width - low)
                reg = Signal(signed(bits), name=f"sum_{level}_{k // 2}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += reg.eq((x << (ox - low)) + (y << (oy - low)))
                paired.append((reg, low))
            if len(terms) % 2:                       # the odd one out waits a clock
                x, ox = terms[-1]
                reg = Signal.like(x, name=f"sum_{level}_{len(paired)}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += reg.eq(x)
                paired.append((reg, ox))
            terms, level = paired, level + 1
        x, ox = terms[0]
        m.d.comb += self.p.eq(x << ox)
        return m


class Rounder(wiring.Component):
    """``y = rshift(x, n) + addend`` (``core.rescale.rshift``: round half up for ``n > 0``, a
    left shift of at most ``MAX_LEFT_SHIFT`` for ``n <= 0``), modulo ``2**out_bits`` (64 by
    default; a narrower ``y`` is exact when the value fits, ``core.widths``). ``LATENCY = 3``.

    Stage 1 registers ``x`` and the one shift amount that serves both directions: ``t = x >>
    (n - 1)`` for ``n > 0`` and ``x << -n`` otherwise are both ``(x << MAX_LEFT_SHIFT) >> a``,
    with ``a = n - 1 + MAX_LEFT_SHIFT`` or ``n + MAX_LEFT_SHIFT`` (one barrel shifter, not a
    right and a left one); stage 2 shifts, keeping ``out_bits + 1`` bits of ``t``; stage 3
    adds, in one adder: ``(t + 2 * addend + 1) >> 1 = ((t + 1) >> 1) + addend`` for ``n > 0``,
    ``t + addend`` otherwise.
    """

    LATENCY = 3

    def __init__(self, x_shape=signed(WIDE_BITS), addend_shape=signed(WIDE_BITS),
                 out_bits=WIDE_BITS, shifts=FULL_SHIFTS):
        self._out_bits = out_bits
        self._first, self._amounts = _amounts(shifts)     # n only from shifts[0] to shifts[1]
        super().__init__({"x": In(x_shape), "n": In(signed(SHIFT_BITS)),
                          "addend": In(addend_shape), "en": In(1, init=1),
                          "y": Out(signed(out_bits))})

    def elaborate(self, platform):
        m = Module()
        left = rescale.MAX_LEFT_SHIFT
        keep = min(self._out_bits + 1, WIDE_BITS)
        x = Signal(signed(len(self.x)), reset_less=True)
        amount = Signal(self._amounts, reset_less=True)
        right, right2 = Signal(reset_less=True), Signal(reset_less=True)
        addend = Signal(signed(len(self.addend) + 2), reset_less=True)
        addend2 = Signal.like(addend, reset_less=True)
        t = Signal(signed(keep), reset_less=True)
        y = Signal(signed(self._out_bits), reset_less=True)
        with m.If(self.en):
            m.d.sync += [
                x.eq(self.x), right.eq(self.n > 0),
                amount.eq(_shift_amount(self.n) - self._first),
                addend.eq(Mux(self.n > 0, Cat(1, self.addend).as_signed(), self.addend)),
                t.eq(_shifted(x, amount, self._first)[:keep].as_signed()),
                right2.eq(right), addend2.eq(addend),
            ]
            total = t + addend2
            m.d.sync += y.eq(Mux(right2, total >> 1, total))
        m.d.comb += self.y.eq(y)
        return m


class Affine(wiring.Component):
    """``u = rshift(acc * beta_in * m, sh) + bias`` modulo ``2**64``: ``m * beta_in``
    (``Product``), times ``acc`` (``Product``), then ``Rounder``. ``LATENCY`` clocks from the
    inputs to ``u``; ``latency`` pads it to at least that many (to line up with another
    ``Affine``).

    ``widths`` (``core.widths.RescaleWidths``; by default the full ones for ``acc_bits``) sets
    the operands the products take (the low ``widths.mant`` bits of ``m``, ``widths.beta`` of
    ``beta_in``, ``widths.acc`` of ``acc``: exact, as the bundle's values fit them), the
    products' widths (``m * beta_in`` in ``mant + beta - 1`` bits, as ``beta``'s bound is a
    power of two; ``acc * m * beta_in`` in ``widths.product``) and ``u``'s (``widths.value``).

    Its ``Rounder`` may also serve the rescale unit's adapter (``lend``: lane 0's; the hidden
    units' and ``beta``'s rounding), which never runs while sums are rescaled: while ``bypass``
    is high the rounder takes ``x``, ``n`` and ``addend`` instead of the product, and ``y`` is
    ``rshift(x, n) + addend`` (64 bits) ``Rounder.LATENCY`` enabled clocks later. Without
    ``lend`` the rounder is as narrow as the product and ``u`` (a 64-bit barrel shifter is
    about 1,000 LUT4 on an ECP5)."""

    def __init__(self, acc_bits, latency=0, *, widths=None, lend=True):
        from core.widths import full
        self._acc_bits = acc_bits
        self._widths = widths or full(acc_bits)
        self._lend = lend
        self.LATENCY = max(self.latency(acc_bits, self._widths), latency)
        super().__init__({
            "acc": In(signed(acc_bits)), "beta_in": In(unsigned(BETA_BITS)),
            "m": In(signed(MANT_BITS)), "sh": In(signed(SHIFT_BITS)),
            "bias": In(signed(rescale.PARAM_BITS)), "en": In(1, init=1),
            "u": Out(signed(self._widths.value)),
            "bypass": In(1), "x": In(signed(WIDE_BITS)), "n": In(signed(SHIFT_BITS)),
            "addend": In(signed(WIDE_BITS)), "y": Out(signed(WIDE_BITS)),
        })

    @staticmethod
    def _shapes(acc_bits, widths):
        mant, beta = min(widths.mant, MANT_BITS), min(widths.beta, BETA_BITS)
        acc = min(acc_bits, widths.acc)
        mb_bits = mant + beta - 1
        p_bits = min(widths.product, acc + mb_bits)
        return (signed(mant), unsigned(beta), mb_bits), (signed(acc), signed(mb_bits), p_bits)

    @classmethod
    def latency(cls, acc_bits, widths=None):
        """The clocks from the inputs to ``u`` without padding."""
        from core.widths import full
        mb, p = cls._shapes(acc_bits, widths or full(acc_bits))
        return 1 + Product.plan(*mb)[2] + Product.plan(*p)[2] + Rounder.LATENCY

    @classmethod
    def dsp_blocks(cls, acc_bits, widths=None):
        """The DSP blocks of one ``Affine``."""
        from core.widths import full
        mb, p = cls._shapes(acc_bits, widths or full(acc_bits))
        return Product.blocks(*mb) + Product.blocks(*p)

    def elaborate(self, platform):
        m = Module()
        mb_shapes, p_shapes = self._shapes(self._acc_bits, self._widths)
        m.submodules.mb = mb = Product(*mb_shapes)
        m.submodules.p = p = Product(*p_shapes)
        value = self._widths.value
        if self._lend:
            rounder = Rounder(signed(WIDE_BITS), signed(len(self.bias)))
        else:
            rounder = Rounder(signed(len(p.p)), signed(len(self.bias)), out_bits=value,
                              shifts=self._widths.z_shifts)
        m.submodules.rounder = rounder
        # ``m`` comes straight from a block RAM (5.8 ns from the clock on an ECP5), and the
        # narrow chunks of ``m * beta_in`` are logic: both operands are registered first.
        lead = 1 + mb.LATENCY
        pad = self.LATENCY - (lead + p.LATENCY + Rounder.LATENCY)
        sh = delay(m, self.sh, lead + p.LATENCY, self.en, "sh", reset_less=True)
        bias = delay(m, self.bias, lead + p.LATENCY, self.en, "bias", reset_less=True)
        m.d.comb += [mb.en.eq(self.en), p.en.eq(self.en), rounder.en.eq(self.en),
                     mb.a.eq(delay(m, self.m[:len(mb.a)].as_signed(), 1, self.en, "m_in",
                                   reset_less=True)),
                     mb.b.eq(delay(m, self.beta_in[:len(mb.b)], 1, self.en, "beta_in",
                                   reset_less=True)),
                     p.a.eq(delay(m, self.acc[:len(p.a)].as_signed(), lead, self.en,
                                  "acc", reset_less=True)),
                     p.b.eq(mb.p),
                     self.u.eq(delay(m, rounder.y[:value].as_signed(), pad, self.en, "pad",
                                     reset_less=True))]
        if self._lend:
            m.d.comb += [rounder.x.eq(Mux(self.bypass, self.x, p.p)),
                         rounder.n.eq(Mux(self.bypass, self.n, sh)),
                         rounder.addend.eq(Mux(self.bypass, self.addend, bias)),
                         self.y.eq(rounder.y)]
        else:
            m.d.comb += [rounder.x.eq(p.p), rounder.n.eq(sh), rounder.addend.eq(bias)]
        return m


class Reciprocal(wiring.Component):
    """``quotient = numerator // divisor`` by restoring division, one bit per clock.

    While ``run`` is low the divider is idle (``done`` low, ``quotient`` kept); ``LATENCY``
    clocks after ``run`` rises, ``done`` rises and ``quotient`` holds the result for as long as
    ``run`` stays high. ``numerator`` and ``divisor`` must not change while ``run`` is high.
    """

    LATENCY = DIV_BITS + 1

    def __init__(self):
        super().__init__({
            "run": In(1), "numerator": In(unsigned(DIV_BITS)), "divisor": In(unsigned(BETA_BITS)),
            "done": Out(1), "quotient": Out(unsigned(DIV_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        step = Signal(range(DIV_BITS + 2))
        remainder = Signal(BETA_BITS + 1)       # below the divisor, so BETA_BITS bits suffice
        bits = Signal(DIV_BITS)                  # the numerator's bits still to bring down
        m.d.comb += self.done.eq(self.run & (step == DIV_BITS + 1))
        with m.If(~self.run):
            m.d.sync += step.eq(0)
        with m.Elif(step == 0):                  # load
            m.d.sync += [bits.eq(self.numerator), remainder.eq(0), step.eq(1)]
        with m.Elif(step != DIV_BITS + 1):
            trial = Cat(bits[-1], remainder)                 # (remainder << 1) | next bit
            fits = trial >= self.divisor
            m.d.sync += [remainder.eq(Mux(fits, trial - self.divisor, trial)),
                         bits.eq(bits << 1),
                         self.quotient.eq(Cat(fits, self.quotient)), step.eq(step + 1)]
        return m


class Requantizer(wiring.Component):
    """``code = clamp(rshift(u * recip, sh_req), min_code, max_code)`` for codes of at most
    ``CODE_BITS`` bits (``max_code < 2**CODE_BITS``): ``Product``, then five stages that never
    form the whole rounded value. ``LATENCY`` clocks.

    Unsigned codes (``signed`` low): ``min_code = 0``. Signed codes (``signed`` high,
    ``core.rescale.LayerRescale.next_signed``): ``min_code = -(max_code + 1)`` (``~max_code``,
    two's complement), and ``code`` is the code's two's complement in ``CODE_BITS`` bits (the
    host sign-extends it); an unsigned code is the code itself.

    With ``p = u * recip`` and ``t = p >> (sh - 1)`` (``sh > 0``) or ``p << -sh``, the rounded
    value is ``(t + 1) >> 1`` or ``t``. ``t`` lies in ``-2**(CODE_BITS + 2) .. 2**(CODE_BITS +
    2) - 1`` exactly when every bit of ``p`` at or above bit ``sh - 1 + CODE_BITS + 2`` (or
    ``CODE_BITS + 2 + sh``) equals ``p``'s sign; otherwise (``hi``) the value is beyond either
    end of the clamp, by its sign. For unsigned codes ``hi`` is the OR of those bits (a set
    bit: above ``max_code``) and a negative ``p`` is 0; for signed codes it is the OR of those
    bits XOR the sign (a bit that differs from it). So stage 1 registers ``p``, the OR of its
    bits (XOR the sign when signed) from each position up and the shift; stage 2 takes ``hi``
    (one bit of that OR) and the low ``CODE_BITS + 3`` bits of ``t`` (a barrel shifter that
    narrow), signed; stage 3 rounds (an adder), stage 4 compares with ``max_code`` and
    ``min_code`` (side by side, ``CODE_BITS + 3`` bits against the register), stage 5 clamps.
    """

    #: The widest code (``core.numerics.ACT_BITS``).
    CODE_BITS = max(numerics.ACT_BITS)

    def __init__(self, u_bits=WIDE_BITS, recip_bits=DIV_BITS, *, lend=False,
                 shifts=FULL_SHIFTS):
        self._shapes = self.shapes(u_bits, recip_bits)
        self._first, self._amounts = _amounts(shifts)     # sh_req only within shifts
        self._lend = lend
        #: The clocks from ``u`` to ``code``.
        self.LATENCY = self.latency(u_bits, recip_bits)
        lent = {"mac": In(1), "mac_a": In(signed(u_bits)), "mac_b": In(signed(MANT_BITS)),
                "mac_p": Out(signed(self._shapes[2]))} if lend else {}
        super().__init__({
            "u": In(signed(u_bits)), "recip": In(unsigned(DIV_BITS)),
            "sh_req": In(signed(SHIFT_BITS)), "max_code": In(unsigned(regmap.VALUE_BITS - 1)),
            "signed": In(1), "en": In(1, init=1), "code": Out(unsigned(self.CODE_BITS)),
            **lent,
        })

    @staticmethod
    def shapes(u_bits=WIDE_BITS, recip_bits=DIV_BITS):
        """The product's operands and width: ``u`` (``u_bits``) times ``recip`` (``recip_bits``
        zero-extended to a signed operand of at least ``MANT_BITS``, so that the adapter's
        weights can take its place, ``lend``), modulo ``2**64`` at most."""
        b = signed(max(recip_bits + 1, MANT_BITS))
        return signed(u_bits), b, min(u_bits + b.width, WIDE_BITS)

    @classmethod
    def latency(cls, u_bits=WIDE_BITS, recip_bits=DIV_BITS):
        """The clocks from ``u`` to ``code``."""
        return Product.plan(*cls.shapes(u_bits, recip_bits))[2] + 5

    @classmethod
    def dsp_blocks(cls, u_bits=WIDE_BITS, recip_bits=DIV_BITS):
        """The DSP blocks of one requantizer."""
        return Product.blocks(*cls.shapes(u_bits, recip_bits))

    def elaborate(self, platform):
        m = Module()
        a_shape, b_shape, out_bits = self._shapes
        m.submodules.p = p = Product(a_shape, b_shape, out_bits)
        recip = self.recip[:min(b_shape.width - 1, len(self.recip))]
        if self._lend:
            # While ``mac`` is high the product is the adapter's (``mac_a * mac_b``, on
            # ``mac_p`` ``Product``'s latency later); the requantizer's code is then unused.
            m.d.comb += [p.en.eq(self.en | self.mac),
                         p.a.eq(Mux(self.mac, self.mac_a, self.u)),
                         p.b.eq(Mux(self.mac, self.mac_b, recip)),
                         self.mac_p.eq(p.p)]
        else:
            m.d.comb += [p.en.eq(self.en), p.a.eq(self.u), p.b.eq(recip)]
        width = out_bits                          # the product's
        sh = delay(m, self.sh_req, p.LATENCY, self.en, "sh", reset_less=True)
        top = delay(m, self.max_code, p.LATENCY + 3, self.en, "max_code", reset_less=True)
        sgn = delay(m, self.signed, p.LATENCY, self.en, "signed", reset_less=True)
        sgn4 = delay(m, sgn, 3, self.en, "signed4", reset_less=True)
        left = rescale.MAX_LEFT_SHIFT
        low = self.CODE_BITS + 3                  # the bits of t below 2**(CODE_BITS + 2), +1
        # Stage 1: p, the OR of its bits (XOR the sign) from each position up, the shift.
        x = Signal(signed(width), reset_less=True)
        amount = Signal(self._amounts, reset_less=True)
        right, right2 = Signal(reset_less=True), Signal(reset_less=True)
        # Stage 2: negative, hi, the low bits of t; stage 3: y, t rounded.
        neg, hi = Signal(reset_less=True), Signal(reset_less=True)
        t = Signal(signed(low), reset_less=True)
        neg3, hi3 = Signal(reset_less=True), Signal(reset_less=True)
        y = Signal(signed(low), reset_less=True)
        # Stage 4: the comparisons with max_code and min_code; stage 5: the code.
        over, under = Signal(reset_less=True), Signal(reset_less=True)
        y4, top4 = Signal(signed(low), reset_less=True), Signal.like(self.max_code,
                                                                     reset_less=True)
        bottom4 = Signal(signed(len(self.max_code) + 1), reset_less=True)
        # above[k] = (p ^ sign)[base + k:].any() for each amount ``first + k`` the shifts can
        # give (hi's bit of p is at amount + low - 1 - left; beyond the product every bit is
        # the sign). For a few amounts, an OR of the bits above each; for the whole range,
        # three levels of 4-input ORs (blocks of 4, 16, 64 bits), each level a signal of its
        # own (a slice of a ``Cat`` of expressions would make the simulator evaluate the whole
        # ``Cat`` for every bit).
        assert low - 1 >= left
        flip = sgn & p.p[-1]
        bits = Signal(width, name="differs")
        m.d.comb += bits.eq(p.p.as_unsigned() ^ flip.replicate(width))
        base, count = self._first + low - 1 - left, len(self._amounts)
        if count <= 8:
            above_next = Cat(*(bits[base + k:].any() if base + k < width else Const(0)
                               for k in range(count)))
        else:
            for span in (4, 16, 64):
                level = Signal(width, name=f"above_{span}")
                m.d.comb += level.eq(Cat(*(Cat(*(bits[j] for j in range(i, min(i + span, width),
                                                                         span // 4))).any()
                                           for i in range(width))))
                bits = level
            above_next = Cat(bits[base:], Const(0, count))[:count]
        above = Signal(count, reset_less=True)
        with m.If(self.en):
            m.d.sync += [x.eq(p.p), right.eq(sh > 0), above.eq(above_next),
                         amount.eq(_shift_amount(sh) - self._first)]
            # t = (p << left) >> (first + amount); hi: a bit of p at or above that amount +
            # low - 1 - left set (unsigned) or not the sign (signed).
            m.d.sync += [neg.eq(x < 0), right2.eq(right),
                         hi.eq(above.bit_select(amount, 1)),
                         t.eq(_shifted(x, amount, self._first)[:low].as_signed())]
            m.d.sync += [y.eq(Mux(right2, (t + 1) >> 1, t)), neg3.eq(neg), hi3.eq(hi)]
            # Unsigned: below 0 exactly when p is; above max_code when hi or y is. Signed:
            # beyond the range by the sign when hi, else by y's comparisons.
            m.d.sync += [over.eq(Mux(hi3, ~neg3, y > top)),
                         under.eq(Mux(sgn4 & ~hi3, y < Cat(~top, 1).as_signed(), neg3)),
                         y4.eq(y), top4.eq(top),
                         bottom4.eq(Mux(sgn4, Cat(~top, 1).as_signed(), 0))]
            m.d.sync += self.code.eq(Mux(under, bottom4, Mux(over, top4, y4))[:self.CODE_BITS])
        return m
