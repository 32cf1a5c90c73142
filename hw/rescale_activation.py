"""The rescale unit's first arithmetic: a slice of sums to activations, every lane at once."""

from dataclasses import replace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from core import regmap

from .rescale_layouts import RESIDUAL_CODE_BITS, beta_layout, slice_layout
from .rescale_stages import MANT_BITS, SHIFT_BITS, WIDE_BITS, Affine, delay

__all__ = ["Activation", "CLIP_BITS"]

#: The clip's width: ``core.rescale`` keeps ``clip_q`` (a parameter) below ``2**31``.
CLIP_BITS = regmap.VALUE_BITS - 1


def _lanes_of(shape, lanes):
    return data.ArrayLayout(shape, lanes)


class Activation(wiring.Component):
    """``u = min(max(affine(acc, beta_in) + operand, 0), clip_q)`` for each of ``lanes``
    channels, one slice per clock: ``core.rescale.affine`` (``Affine``), plus the second
    operand of a layer with a shortcut (``core.rescale.residual_add``), then the ReLU when
    ``relu`` is high and the bounded ReLU's clip (ReLU6) when ``clip`` is high
    (``core.rescale._after_z``: ``min(u, clip_q)``, ``0 <= clip_q < 2**31``).

    The operand, chosen by ``residual`` (``core.regmap.RESIDUAL_KINDS``): nothing; an identity
    shortcut's codes ``res`` rescaled as ``core.rescale.shortcut_operand`` does (an ``Affine``
    a lane with ``res_m``, ``res_sh``, ``beta.res`` and no bias); or a projection's ``z``,
    ``res`` as it is. The codes are ``res``'s low ``RESIDUAL_CODE_BITS`` bits: unsigned, or
    with ``res_signed`` (the shortcut layer's ``next_signed``) two's complement, sign-extended
    (the bits above are ignored, so the codes may come as ``o_out`` gave them). Without
    ``residual`` the stage has neither the ports nor the logic.

    ``LATENCY = Affine.latency(acc_bits) + 2`` clocks from the inputs to ``u`` (stage Z1
    adds the operand, Z2 applies the ReLU and the clip: one comparison of 31 bits with
    ``clip_q`` beside an OR of the sum's 33 bits above, then two selects); a new slice every
    clock, no stall. The channel parameters ``m``, ``sh`` and ``bias`` come with their slice;
    ``relu``, ``clip`` and ``clip_q`` are the layer's.

    Lane 0's rounder also serves the adapter (``Affine``'s ``bypass``, ``x``, ``n``,
    ``addend`` and ``y``) while no slice goes through.
    """

    def __init__(self, *, lanes, acc_bits, residual=True, widths=None):
        from core.widths import full
        self._lanes, self._acc_bits, self._residual = lanes, acc_bits, residual
        self._widths = widths = widths or full(acc_bits)
        self.LATENCY = self.latency(acc_bits, widths, residual)
        value = widths.value
        field = {name: signed(regmap.FIELD_BITS.get(name, regmap.VALUE_BITS))
                 for name in ("m", "sh", "bias", "res_m", "res_sh")}
        residual_ports = {
            "res": In(slice_layout(lanes, value)), "residual": In(2), "res_signed": In(1),
            "res_m": In(_lanes_of(field["res_m"], lanes)),
            "res_sh": In(_lanes_of(field["res_sh"], lanes)),
        } if residual else {}
        super().__init__({
            "acc": In(_lanes_of(signed(acc_bits), lanes)), "beta": In(beta_layout()),
            "m": In(_lanes_of(field["m"], lanes)), "sh": In(_lanes_of(field["sh"], lanes)),
            "bias": In(_lanes_of(field["bias"], lanes)), **residual_ports, "relu": In(1),
            "clip": In(1), "clip_q": In(unsigned(CLIP_BITS)),
            "u": Out(slice_layout(lanes, value)),
            "bypass": In(1), "x": In(signed(WIDE_BITS)), "n": In(signed(SHIFT_BITS)),
            "addend": In(signed(WIDE_BITS)), "y": Out(signed(WIDE_BITS)),
        })
        assert field["m"].width == MANT_BITS

    @staticmethod
    def _shortcut_widths(widths):
        return replace(widths, acc=RESIDUAL_CODE_BITS + 1)

    @classmethod
    def latency(cls, acc_bits, widths=None, residual=True):
        """``LATENCY`` of the stage: the ``Affine``'s (the longer of the two), + 2."""
        from core.widths import full
        widths = widths or full(acc_bits)
        main = Affine.latency(acc_bits, widths)
        if residual:
            main = max(main, Affine.latency(RESIDUAL_CODE_BITS + 1,
                                            cls._shortcut_widths(widths)))
        return main + 2

    @classmethod
    def dsp_blocks(cls, acc_bits, widths=None, residual=True):
        """The DSP blocks of one lane."""
        from core.widths import full
        widths = widths or full(acc_bits)
        return Affine.dsp_blocks(acc_bits, widths) + (Affine.dsp_blocks(
            RESIDUAL_CODE_BITS + 1, cls._shortcut_widths(widths)) if residual else 0)

    def elaborate(self, platform):
        m = Module()
        lanes, widths = self._lanes, self._widths
        value = widths.value
        main_latency = self.LATENCY - 2
        z1_sum = Signal(slice_layout(lanes, value), reset_less=True)
        z2_u = Signal(slice_layout(lanes, value), reset_less=True)
        for lane in range(lanes):
            m.submodules[f"affine_{lane}"] = affine = Affine(
                self._acc_bits, main_latency, widths=widths, lend=lane == 0)
            m.d.comb += [affine.acc.eq(self.acc[lane]), affine.beta_in.eq(self.beta.beta),
                         affine.m.eq(self.m[lane]), affine.sh.eq(self.sh[lane]),
                         affine.bias.eq(self.bias[lane])]
            if lane == 0:
                m.d.comb += [affine.bypass.eq(self.bypass), affine.x.eq(self.x),
                             affine.n.eq(self.n), affine.addend.eq(self.addend),
                             self.y.eq(affine.y)]
            operand = 0
            if self._residual:
                m.submodules[f"shortcut_{lane}"] = shortcut = Affine(
                    RESIDUAL_CODE_BITS + 1, main_latency,
                    widths=self._shortcut_widths(widths), lend=False)
                # The codes' low RESIDUAL_CODE_BITS bits, sign-extended when signed.
                code = self.res[lane].as_unsigned()[:RESIDUAL_CODE_BITS]
                top = Mux(self.res_signed, code[-1], 0)
                m.d.comb += [shortcut.acc.eq(Cat(code, top).as_signed()),
                             shortcut.beta_in.eq(self.beta.res),
                             shortcut.m.eq(self.res_m[lane]), shortcut.sh.eq(self.res_sh[lane]),
                             shortcut.bias.eq(0)]
                projection = delay(m, self.res[lane], main_latency, name=f"projection_{lane}",
                                   reset_less=True)
                kinds = regmap.RESIDUAL_KINDS
                operand = Mux(self.residual == kinds["identity"], shortcut.u,
                              Mux(self.residual == kinds["projection"], projection, 0))
            # Stage Z1 adds the operand, Z2 applies the ReLU and the clip: ``z > clip_q``
            # for a 64-bit signed ``z`` and ``0 <= clip_q < 2**31`` is ``z`` non-negative
            # and either a bit above the clip's set or the low bits greater.
            z = z1_sum[lane]
            if value - 1 > CLIP_BITS:
                above = ~z[-1] & (z[CLIP_BITS:-1].any() | (z[:CLIP_BITS] > self.clip_q))
            else:                                    # a narrow z: one comparison
                above = ~z[-1] & (z[:-1] > self.clip_q)
            m.d.sync += z2_u[lane].eq(Mux(self.relu & z[-1], 0,
                                          Mux(self.clip & above, self.clip_q[:value], z)))
            m.d.sync += z1_sum[lane].eq(affine.u + operand)
        m.d.comb += self.u.eq(z2_u)
        return m
