"""The arithmetic stages of the rescale unit, each ``gen.rescale`` in hardware for one value.

``Affine``        ``u = relu(rshift(acc * beta_in * m, sh) + bias)``      ``gen.rescale.affine``
``Reciprocal``    ``R = numerator // beta``, one bit per clock          ``LayerRescale.reciprocal``
``Requantizer``   ``clamp(rshift(u * R, sh_req), 0, max_code)``         ``gen.rescale.requantize``

Each has a ``LATENCY`` in clocks (0: combinational) and its own test against the golden
functions (``tests/test_rescale_stages.py``); ``hw.rescale_unit`` sequences them. Widths:
``WIDE_BITS`` holds every ``z``, ``u`` and adapter sum of the golden model (its ``int64``);
``BETA_BITS`` every ``beta`` up to ``BETA_MAX``; ``DIV_BITS`` the numerator ``m_s << RECIP_BITS``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen import regmap, rescale

__all__ = ["WIDE_BITS", "BETA_BITS", "DIV_BITS", "SHIFT_BITS", "rshift", "Affine",
           "Reciprocal", "Requantizer"]

WIDE_BITS = 64
BETA_BITS = rescale.BETA_MAX.bit_length()
DIV_BITS = rescale.MANTISSA_BITS - 1 + rescale.RECIP_BITS + 1   # m_s < 2**15, shifted by 16
SHIFT_BITS = 8                     # signed shifts from -MAX_LEFT_SHIFT to MAX_RIGHT_SHIFT


def rshift(m, x, n, name):
    """``gen.rescale.rshift`` of signal ``x`` by signed ``n``: round half up for ``n > 0``, a
    left shift (at most ``MAX_LEFT_SHIFT``) for ``n <= 0``."""
    right_bits = rescale.MAX_RIGHT_SHIFT.bit_length()
    left_bits = rescale.MAX_LEFT_SHIFT.bit_length()
    right = ((x >> (n - 1).as_unsigned()[:right_bits]) + 1) >> 1
    left = x << (-n).as_unsigned()[:left_bits]
    out = Signal(signed(max(len(right), len(left))), name=name)
    m.d.comb += out.eq(Mux(n > 0, right, left))
    return out


class Affine(wiring.Component):
    """``u = rshift(acc * beta_in * m, sh) + bias``, then ``max(u, 0)`` when ``relu``."""

    LATENCY = 0

    def __init__(self, acc_bits):
        self._acc_bits = acc_bits
        super().__init__({
            "acc": In(signed(acc_bits)), "beta_in": In(unsigned(BETA_BITS)),
            "m": In(signed(regmap.VALUE_BITS)), "sh": In(signed(SHIFT_BITS)),
            "bias": In(signed(regmap.VALUE_BITS)), "relu": In(1),
            "u": Out(signed(WIDE_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        scaled = Signal(signed(self._acc_bits + regmap.VALUE_BITS + BETA_BITS + 1))
        m.d.comb += scaled.eq(self.acc * self.m * self.beta_in)
        z = Signal(signed(WIDE_BITS))
        m.d.comb += z.eq(rshift(m, scaled, self.sh, "z_shifted") + self.bias)
        m.d.comb += self.u.eq(Mux(self.relu & (z < 0), 0, z))
        return m


class Reciprocal(wiring.Component):
    """``quotient = numerator // divisor`` by restoring division, one bit per clock.

    While ``run`` is low the divider is idle (``done`` low, ``quotient`` kept); ``LATENCY``
    clocks after ``run`` rises, ``done`` rises and ``quotient`` holds the result for as long as
    ``run`` stays high. ``numerator`` and ``divisor`` must not change while ``run`` is high.
    """

    LATENCY = DIV_BITS

    def __init__(self):
        super().__init__({
            "run": In(1), "numerator": In(unsigned(DIV_BITS)), "divisor": In(unsigned(BETA_BITS)),
            "done": Out(1), "quotient": Out(unsigned(DIV_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        step = Signal(range(DIV_BITS + 1))
        remainder = Signal(DIV_BITS + 1)
        m.d.comb += self.done.eq(self.run & (step == DIV_BITS))
        with m.If(~self.run):
            m.d.sync += [step.eq(0), remainder.eq(0)]
        with m.Elif(step != DIV_BITS):
            bit = self.numerator.bit_select((DIV_BITS - 1 - step).as_unsigned()[:6], 1)
            trial = Cat(bit, remainder)                      # (remainder << 1) | bit
            fits = trial >= self.divisor
            m.d.sync += [remainder.eq(Mux(fits, trial - self.divisor, trial)),
                         self.quotient.eq(Cat(fits, self.quotient)), step.eq(step + 1)]
        return m


class Requantizer(wiring.Component):
    """``code = clamp(rshift(u * recip, sh_req), 0, max_code)``."""

    LATENCY = 0

    def __init__(self):
        super().__init__({
            "u": In(signed(WIDE_BITS)), "recip": In(unsigned(DIV_BITS)),
            "sh_req": In(signed(SHIFT_BITS)), "max_code": In(unsigned(regmap.VALUE_BITS - 1)),
            "code": Out(signed(WIDE_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(WIDE_BITS + DIV_BITS + 1))
        m.d.comb += product.eq(self.u * self.recip)
        code = rshift(m, product, self.sh_req, "code_shifted")
        m.d.comb += self.code.eq(Mux(code < 0, 0, Mux(code > self.max_code, self.max_code, code)))
        return m
