"""The array configuration: one frozen, validated object from which everything is derived."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from . import numerics, regmap, widths
from .errors import UsageError
from .rules import MAX_ADAPTER_WEIGHTS, MAX_CHANNELS, MAX_K, MAX_POSITIONS

__all__ = ["ArrayConfig", "MAX_ACC_BITS", "MAX_DIM"]

MAX_ACC_BITS = 64   # the golden model computes in int64
MAX_DIM = 64        # rows and columns; a larger array is possible but not a test target


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise UsageError(f"{name} must be from {lo} to {hi}, not {value}")


@dataclass(frozen=True)
class ArrayConfig:
    """A weight-stationary ``rows x cols`` systolic array of POST (or POT, or int) PEs.

    Parameters
    ----------
    rows, cols:
        The array's size. A tile computes ``A (M x K) x W (K x N)`` with ``K <= rows`` and
        ``N <= cols``; ``M`` is unbounded (it streams).
    a_bits:
        Width of the activation codes.
    signed_acts:
        Whether the array takes signed activations: each activation is a magnitude of
        ``a_bits`` bits and a ``neg`` bit (``hw.operand``), so it runs layers of two's-complement
        codes (``-2**(a_bits-1) .. 2**(a_bits-1) - 1``, ``core.numerics``: multiplied in
        sign-magnitude, the table indexed by ``|a|``) and layers of unsigned codes (``neg = 0``)
        alike. It costs one bit more per activation on ``i_a`` and along the rows and an XOR a
        PE (``neg`` into the product's sign); the table and the accumulators are the unsigned
        array's. ``False`` (the default) keeps the unsigned design, its area and its ports
        exactly.
    w_bits, w_format:
        Width and format of the weight codes (``post``, ``pot`` or ``int``, see
        ``core.numerics``).
    odd:
        How a ``post`` array handles the odd exponents: ``"table"`` (the default: the table
        entry ``T[a]`` travels along each row, one sum per column) or ``"split"`` (two sums per
        column, of the even and of the odd exponents: every product is a shift, and
        ``sqrt(2)/2`` is applied once per output after the array; see ``core.numerics``). A
        split array runs as a bare array; the layer engine takes ``"table"`` arrays.
    frac_bits:
        ``F``, the fractional bits of the products and accumulators. ``None`` takes
        ``numerics.default_frac_bits`` (a table with 8 fractional bits for ``post``, the exact
        minimum for split sums).
    acc_bits:
        Width of the result accumulators. ``None`` takes the smallest width that no sum of
        ``rows`` products can overflow; a narrower explicit width is refused.
    max_k, max_m:
        The largest ``K`` and ``M`` of a product that the accumulator buffer takes (two banks,
        each ``max_m`` deep and ``buffer_bits`` wide); ``max_m`` is also the most positions of
        a pass (the positions of a batch's samples together) that the rescale unit takes.
    max_channels, max_hidden:
        The most channels of a layer and hidden units of an adapter (the rescale unit). They
        set the register map's index width, ``index_bits``.
    max_batch:
        The most samples that share one pass (their positions stacked in ``M``, so at most
        ``max_m // positions`` of them): the rescale unit keeps ``beta_in`` and the channel sums
        of that many samples. A layer runs its samples in batches of
        ``batch_for(positions)``.
    rescale_lanes:
        Values per clock through the rescale unit's datapath (``hw.rescale_unit``); divides
        ``cols``. Each lane has the multipliers of an ``Affine`` (two, with the shortcut's) and
        a ``Requantizer``, as wide as ``rescale_widths`` (the default bundle's: 7 DSP blocks a
        lane on an ECP5); the unit drains a vector of ``cols`` sums in ``cols //
        rescale_lanes`` clocks. The default, 1, is the smallest unit and keeps up with a layer
        whose blocks take more clocks in the array than ``cols`` per vector (every 4-bit layer
        of the default bundle); ``rescale_lanes = cols`` drains a vector per clock.
    rescale_widths:
        The widths of the rescale unit's datapath (``core.widths.RescaleWidths``, or a dict of
        its fields): ``None`` (the default) takes ``core.widths.full(buffer_bits)``, the 64-bit
        datapath that runs any bundle; ``core.sizing.config_for_bundle`` derives the smallest
        that run the bundle (``core.widths.bundle_widths``). The ``widths`` property gives them.
    residual:
        Whether the rescale unit has the residual add (a second operand ``i_res`` added to
        ``z`` before the ReLU, for a ResNet block's second conv): an ``Affine`` with its
        multipliers a lane and a vector register of the operands. ``core.sizing``'s
        ``config_for_bundle`` leaves it out for a bundle without shortcuts (a layer engine
        without it has no ``i_res`` stream).

    Derived values are properties. Build variants with ``config.replace(...)``: it derives
    ``frac_bits`` and ``acc_bits`` afresh unless they were given explicitly.
    """

    rows: int = 8
    cols: int = 8
    a_bits: int = 8
    w_bits: int = 4
    w_format: str = "post"
    odd: str = "table"
    frac_bits: int | None = None
    acc_bits: int | None = None
    max_k: int = 4096
    max_m: int = 64
    max_channels: int = 64
    max_hidden: int = 16
    max_batch: int = 16
    rescale_lanes: int = 1
    residual: bool = True
    signed_acts: bool = False
    rescale_widths: widths.RescaleWidths | None = None
    _derived: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    #: The register map's index width (``core.regmap.index_bits_for``), derived.
    index_bits: int = field(default=0, init=False, compare=False)

    def __post_init__(self):
        _check_int("rows", self.rows, 1, MAX_DIM)
        _check_int("cols", self.cols, 1, MAX_DIM)
        numerics.check_act_bits(self.a_bits)
        if not isinstance(self.signed_acts, bool):
            raise TypeError(f"signed_acts must be True or False, not {self.signed_acts!r}")
        numerics.check_weight_bits(self.w_format, self.w_bits)
        if self.odd not in numerics.ODD_MODES:
            raise ValueError(f"odd must be one of {', '.join(numerics.ODD_MODES)}, not "
                             f"{self.odd!r}")
        if self.odd == "split" and self.w_format != "post":
            raise ValueError(f"odd='split' is for post arrays, not {self.w_format}")
        derived = {name for name in ("frac_bits", "acc_bits") if getattr(self, name) is None}
        object.__setattr__(self, "_derived", frozenset(derived))
        if self.frac_bits is None:
            object.__setattr__(self, "frac_bits",
                               numerics.default_frac_bits(self.w_format, self.w_bits,
                                                          self.odd))
        numerics.check_frac_bits(self.w_format, self.w_bits, self.frac_bits)
        need = self.min_acc_bits
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", need)
        else:
            _check_int("acc_bits", self.acc_bits, 2, MAX_ACC_BITS)
            if self.acc_bits < need:
                signed = "signed " if self.signed_acts else ""
                raise UsageError(f"acc_bits must be at least {need} for {self.rows} rows of "
                                 f"{signed}{self.a_bits}-bit x {self.w_bits}-bit "
                                 f"{self.w_format} products with frac_bits={self.frac_bits}, "
                                 f"not {self.acc_bits}")
        if self.acc_bits > MAX_ACC_BITS:
            raise UsageError(f"acc_bits would be {self.acc_bits}, more than {MAX_ACC_BITS}: "
                             f"use fewer w_bits or frac_bits")
        _check_int("max_k", self.max_k, 1, MAX_K)
        _check_int("max_m", self.max_m, 1, MAX_POSITIONS)
        _check_int("max_channels", self.max_channels, 1, MAX_CHANNELS)
        _check_int("max_hidden", self.max_hidden, 1, MAX_ADAPTER_WEIGHTS // self.max_channels)
        object.__setattr__(self, "index_bits", regmap.index_bits_for(self.max_channels,
                                                                     self.max_hidden))
        _check_int("max_batch", self.max_batch, 1, 1024)
        _check_int("rescale_lanes", self.rescale_lanes, 1, self.cols)
        if self.cols % self.rescale_lanes:
            raise UsageError(f"rescale_lanes must divide cols ({self.cols}), not "
                             f"{self.rescale_lanes}")
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual must be True or False, not {self.residual!r}")
        if self.buffer_bits > MAX_ACC_BITS:
            raise UsageError(f"buffer_bits would be {self.buffer_bits}, more than "
                             f"{MAX_ACC_BITS}: use a smaller max_k")
        if isinstance(self.rescale_widths, dict):
            object.__setattr__(self, "rescale_widths",
                               widths.RescaleWidths(**self.rescale_widths))
        if self.rescale_widths is not None:
            if not isinstance(self.rescale_widths, widths.RescaleWidths):
                raise TypeError(f"rescale_widths must be a RescaleWidths, not "
                                f"{self.rescale_widths!r}")
            if self.rescale_widths.acc > self.buffer_bits:
                raise UsageError(f"the rescale unit's acc width ({self.rescale_widths.acc}) "
                                 f"is wider than the accumulators ({self.buffer_bits})")

    @property
    def widths(self):
        """The rescale unit's ``core.widths.RescaleWidths``: ``rescale_widths``, or the full
        ones."""
        return self.rescale_widths or widths.full(self.buffer_bits)

    # Products -----------------------------------------------------------------------------
    @property
    def product_format(self):
        """The ``numerics.ProductFormat`` of the array's multipliers."""
        return numerics.ProductFormat(w_format=self.w_format, a_bits=self.a_bits,
                                      w_bits=self.w_bits, frac_bits=self.frac_bits, odd=self.odd,
                                      a_signed=self.signed_acts)

    @property
    def split(self):
        """Whether the array keeps split ``post`` sums (two per column)."""
        return self.odd == "split"

    @property
    def product_bound(self):
        """The largest ``|product|`` in ``2**-frac_bits`` units."""
        return self.product_format.bound

    @property
    def magnitude_bits(self):
        """Width of a multiplier's unsigned product magnitude."""
        return self.product_bound.bit_length()

    def psum_bits(self, row):
        """Width of the partial sum leaving PE row ``row`` (the sum of ``row + 1`` products)."""
        return numerics.signed_bits((row + 1) * self.product_bound)

    @property
    def min_acc_bits(self):
        return self.psum_bits(self.rows - 1)

    @property
    def buffer_bits(self):
        """Width of the accumulator buffer: any sum of ``max_k`` products of the array's format,
        or of 8-bit ``int`` weights run as signed-digit terms (partial sums stay below
        ``a_max * 2**8`` per weight: a subset of its NAF digits adds up to at most 170),
        cannot overflow it (``a_max = 2**a_bits - 1``, the largest ``|a|``, signed or not)."""
        planes = numerics.signed_bits(self.max_k * self.product_format.a_max * 2 ** 8)
        return max(self.product_format.sum_bits(self.max_k), planes)

    @property
    def table_frac_bits(self):
        """``t``, the fractional bits of the ``post`` table (``None`` when it has no table)."""
        if self.w_format != "post" or self.split:
            return None
        return numerics.table_frac_bits(self.w_bits, self.frac_bits)

    def batch_for(self, positions):
        """How many samples of ``positions`` positions each share a pass: ``max_batch``, as far
        as ``max_m`` holds their positions."""
        return max(1, min(self.max_batch, self.max_m // positions))

    # Timing -------------------------------------------------------------------------------
    @property
    def latency(self):
        """Clocks from accepting an activation vector to its result being valid at the output:
        ``rows + cols + 4``. The vector is registered at the array's input, its last element
        reaches PE ``(rows - 1, c)`` after ``rows - 1 + c`` more clocks, the PE's product
        register and partial sum take two more (``hw.pe``), column ``c``'s result then passes
        ``cols - 1 - c`` de-skew registers, and the array's result queue
        (``hw.systolic_array``, its block RAM's output registered) three."""
        return self.rows + self.cols + 4

    def cycles(self, m, tiles=1):
        """Clocks for ``tiles`` tiles of ``m`` activation vectors each without stalls, from the
        first weight transfer to the last result transfer: ``rows`` weight rows before the
        first tile, ``max(m, rows + cols)`` per tile but the last (the next tile's weights load
        while a tile runs, ``hw.systolic_array``), then the last tile's ``m`` vectors and the
        ``latency`` of its last one."""
        return self.rows + (tiles - 1) * max(m, self.rows + self.cols) + m + self.latency

    def replace(self, **changes):
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.init and f.name not in self._derived}
        return ArrayConfig(**{**kwargs, **changes})

    def as_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        if self.rescale_widths is not None:
            d["rescale_widths"] = self.rescale_widths.as_dict()
        return d

    def key(self):
        """A short name that identifies the configuration (for build folders)."""
        odd = "_split" if self.split else ""
        signed = "s" if self.signed_acts else ""
        narrow = f"_{self.rescale_widths.key()}" if self.rescale_widths else ""
        return (f"{self.w_format}{self.w_bits}{odd}_a{signed}{self.a_bits}_{self.rows}x{self.cols}"
                f"_f{self.frac_bits}_acc{self.acc_bits}{narrow}")
