"""The processing element of the weight-stationary systolic array."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .multiplier import make_multiplier
from .operand import operand_layout

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One multiply-accumulate per clock, in two stages: the *product register* takes
    ``x_in * w`` (as the multiplier's sign, magnitude and ``odd``, ``hw.multiplier``), and one
    clock later ``psum_out <= psum_in + product``; ``x_out <= x_in``.

    The product register splits the multiplier (weight select, shift, table entry) from the
    carry chain of the add, so that neither is in series with the other in one clock. Every PE
    of every format has it: ``psum_in`` is expected one clock after the ``x_in`` whose product
    it meets, which a PE one row up delivers, since it has the same register (the array's
    alignment is unchanged, its latency one clock longer).

    The weights are double-buffered: ``w_load`` writes the *next* tile's weight into a shadow
    register while the current tile runs, and the PE switches to it with the first activation
    of the next tile (``swap_in``, which travels along the row with the activation): the
    product of that activation already uses the new weight. The product is taken in the clock
    in which the activation is at ``x_in``, so the weight registers are read then (only the add
    comes a clock later). The activation operand (code and ``post`` table entry,
    ``hw.operand``) passes on to the right and the partial sum down, both registered, so that
    the array's clock does not depend on its size. Every register advances on every clock, the
    product register too (the array's pipeline never stalls). With split ``post`` sums
    (``config.split``) a second chain ``psum_odd_in``/``psum_odd_out`` carries the sum of the
    odd exponents, and each product goes into one chain or the other (``core.numerics``).

    Parameters
    ----------
    config : core.config.ArrayConfig
        Widths and weight format.
    row : int
        The PE's row: the partial sum it emits is the sum of ``row + 1`` products and is
        ``config.psum_bits(row)`` wide (row 0 has no ``psum_in``).

    Members
    -------
    w_load : In(1)
        Load ``w_in`` into the shadow weight register at the next clock.
    w_in : In(w_bits)
    swap_in : In(1)
        ``x_in`` is the first activation of a tile: multiply it by the shadow weight, which
        becomes the PE's weight.
    swap_out : Out(1)
        ``swap_in``, registered like ``x_out``.
    x_in : In(operand_layout(config.product_format))
        The activation operand; with ``config.signed_acts`` its ``neg`` bit travels with it
        and the multiplier XORs it into the product's sign, which the add folds in as for a
        negative weight (no other change).
    psum_in : In(signed(psum_bits(row - 1)))   (not present in row 0)
    x_out : Out(operand_layout(config.product_format))
    psum_out : Out(signed(psum_bits(row)))
    psum_odd_in, psum_odd_out
        The same for the odd sum (split sums only).

    Latency: 1 clock from ``x_in`` to ``x_out`` and from ``psum_in`` to ``psum_out``; 2 clocks
    from ``x_in`` to its product being in ``psum_out``.
    """

    LATENCY = 1

    def __init__(self, *, config, row):
        if not 0 <= row < config.rows:
            raise ValueError(f"row must be from 0 to {config.rows - 1}, not {row}")
        self._config, self._row = config, row
        members = {
            "w_load": In(1),
            "w_in": In(config.w_bits),
            "swap_in": In(1),
            "swap_out": Out(1),
            "x_in": In(operand_layout(config.product_format)),
            "x_out": Out(operand_layout(config.product_format)),
        }
        chains = ("psum", "psum_odd") if config.split else ("psum",)
        for chain in chains:
            members[f"{chain}_out"] = Out(signed(config.psum_bits(row)))
            if row > 0:
                members[f"{chain}_in"] = In(signed(config.psum_bits(row - 1)))
        super().__init__(members)

    config = property(lambda self: self._config)
    row = property(lambda self: self._row)

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.mul = mul = make_multiplier(cfg.product_format)
        # The data registers have no reset (what they hold is used only once loaded or
        # marked valid): fewer loads on the reset net, which spans the part.
        # Both registers hold the weight as the multiplier stores it (``Multiplier.store``).
        weight = Signal(mul.weight_shape, reset_less=True)
        shadow = Signal(mul.weight_shape, reset_less=True)
        with m.If(self.w_load):
            m.d.sync += shadow.eq(mul.store(self.w_in))
        with m.If(self.swap_in):
            m.d.sync += weight.eq(shadow)
        m.d.comb += [mul.x.eq(self.x_in), mul.w.eq(Mux(self.swap_in, shadow, weight))]

        # The product register: the multiplier's output, taken with the weight selected for
        # this activation; the add below uses it one clock later.
        mag = Signal.like(mul.mag, name="p_mag", reset_less=True)
        neg, odd = Signal(name="p_neg", reset_less=True), None
        x_out = Signal.like(self.x_out, reset_less=True)
        m.d.comb += self.x_out.eq(x_out)
        m.d.sync += [x_out.eq(self.x_in), self.swap_out.eq(self.swap_in),
                     mag.eq(mul.mag), neg.eq(mul.neg)]
        if cfg.split:
            odd = Signal(name="p_odd", reset_less=True)
            m.d.sync += odd.eq(mul.odd)

        # Sign folded into the adder: -mag == ~mag + 1 in one more bit than mag. With split
        # sums the product's chain adds it and the other chain adds zero.
        width = len(mag) + 1
        chains = [("psum", ~odd), ("psum_odd", odd)] if cfg.split else [("psum", 1)]
        for chain, mine in chains:
            take = Signal(name=f"{chain}_take")
            m.d.comb += take.eq(mine)
            c_neg = neg & take
            c_mag = mag & take.replicate(len(mag))
            flipped = (Cat(c_mag, 0) ^ c_neg.replicate(width)).as_signed()
            psum_in = getattr(self, f"{chain}_in") if self._row > 0 else 0
            psum = Signal.like(getattr(self, f"{chain}_out"), name=chain, reset_less=True)
            m.d.comb += getattr(self, f"{chain}_out").eq(psum)
            m.d.sync += psum.eq(psum_in + flipped + c_neg)
        return m
