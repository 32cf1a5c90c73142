"""The widths of the rescale unit's datapath, derived from a bundle's integers.

``core.rescale`` guards every intermediate below ``2**62``, so a rescale unit with 64-bit
values and products is exact for any bundle; but most layers need far less, and on an ECP5 a
64 x 32-bit product takes four to eight 18 x 18 DSP blocks. ``RescaleWidths`` names the widths
the hardware is built with (``hw.rescale_*``), and ``bundle_widths`` derives the smallest ones
that hold every value the bundle's layers can produce, for every input (bounds from the
weights, the fixed-point constants and the codes' ranges, never from reference images):

``acc``      signed   the accumulator operand of the affine map: ``|acc| <= a_max * sum_k |w_k|``
                      per output channel, the weights' products at the largest activation
``mant``     signed   every channel's mantissa ``m`` (and an identity shortcut's ``res_m``)
``beta``     unsigned every ``beta_in``: ``BETA_MAX`` after a layer with an adapter, else
                      ``BETA_ONE`` (the input's, and a layer's without an adapter)
``product``  signed   ``acc * beta_in * m`` (``core.rescale.affine``), at most 64
``value``    signed   every ``z``, shortcut operand, ``u``, pooled sum and channel sum ``S``
                      that is read (the values the unit keeps, pools, sums and
                      requantizes; a layer without an adapter or a global pooling reads no
                      ``S``) and a
                      two-layer adapter's hidden units (its multiplier takes them as ``S``)
``recip``    unsigned every reciprocal ``R = (m_s << RECIP_BITS) // beta``: ``beta >= 1`` after
                      an adapter, ``BETA_ONE`` otherwise

and the ranges of the shifts: ``z_shift_min .. z_shift_max`` (the affine map's, a shortcut's
too) and ``req_shift_min .. req_shift_max`` (the requantization's), which set how far the
rounders' and the requantizers' shifters reach.

A width is the exact two's-complement (or unsigned) width of the bound; ``full`` are the widths
of a unit that runs any bundle (the 64-bit datapath, ``core.rescale``'s limits), the default
of a configuration sized by hand. ``check`` refuses, in one line, a bundle that needs more than
a unit has (``core.sizing.check_fits``).
"""

from dataclasses import asdict, dataclass, fields

import numpy as np

from . import numerics, rescale
from .errors import UsageError

__all__ = ["RescaleWidths", "full", "bundle_widths", "layer_bounds", "check"]

WIDE = 64                                                   # the golden model's int64
MANT_FULL = rescale.MANTISSA_BITS + 1                       # |m| <= 2**15, signed
BETA_FULL = rescale.BETA_MAX.bit_length()
RECIP_FULL = rescale.MANTISSA_BITS + rescale.RECIP_BITS     # (m_s <= 2**15) << 16, +1
SHIFTS = (-rescale.MAX_LEFT_SHIFT, rescale.MAX_RIGHT_SHIFT)  # every shift the hardware takes


@dataclass(frozen=True)
class RescaleWidths:
    """See the module docstring. Every field an ``int`` of at least 2 bits; ``product`` and
    ``value`` at most 64."""

    acc: int
    mant: int
    beta: int
    product: int
    value: int
    recip: int
    z_shift_min: int = -rescale.MAX_LEFT_SHIFT
    z_shift_max: int = rescale.MAX_RIGHT_SHIFT
    req_shift_min: int = -rescale.MAX_LEFT_SHIFT
    req_shift_max: int = rescale.MAX_RIGHT_SHIFT

    def __post_init__(self):
        limits = {"acc": WIDE, "mant": MANT_FULL, "beta": BETA_FULL, "product": WIDE,
                  "value": WIDE, "recip": RECIP_FULL}
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"rescale width {f.name} must be an integer, not {v!r}")
            lo, hi = (2, limits[f.name]) if f.name in limits else SHIFTS
            if not lo <= v <= hi:
                raise UsageError(f"rescale width {f.name} must be from {lo} to {hi}, not {v}")
        for kind in ("z", "req"):
            if getattr(self, f"{kind}_shift_min") > getattr(self, f"{kind}_shift_max"):
                raise UsageError(f"rescale width {kind}_shift_min must not exceed "
                                 f"{kind}_shift_max")

    @property
    def z_shifts(self):
        """``(lo, hi)``: the shifts of the affine map (``z_shift``, a shortcut's ``res_sh``)."""
        return self.z_shift_min, self.z_shift_max

    @property
    def req_shifts(self):
        """``(lo, hi)``: the requantization's shifts (``req_shift``)."""
        return self.req_shift_min, self.req_shift_max

    def as_dict(self):
        return asdict(self)

    def key(self):
        """A short name for build folders."""
        return "w" + "-".join(str(getattr(self, f.name)) for f in fields(self))


def full(acc_bits):
    """The widths that run any bundle whose accumulators have ``acc_bits`` bits."""
    return RescaleWidths(acc=acc_bits, mant=MANT_FULL, beta=BETA_FULL, product=WIDE,
                         value=WIDE, recip=RECIP_FULL)


def _signed(bound):
    return max(2, numerics.signed_bits(int(bound)))


def _unsigned(bound):
    return max(2, int(bound).bit_length())


def _shifted(bound, shift):
    """The largest ``|rshift(x, shift)|`` for ``|x| <= bound`` (per element)."""
    bound = np.asarray(bound, dtype=object)
    shift = np.asarray(shift, dtype=np.int64)
    out = np.empty(np.broadcast(bound, shift).shape, dtype=object)
    for idx in np.ndindex(out.shape):
        b = int(bound[idx] if bound.ndim else bound)
        s = int(shift[idx] if shift.ndim else shift)
        out[idx] = (b >> s) + 1 if s > 0 else b << -s
    return out


def _acc_bounds(layer):
    """Per output channel, the largest ``|acc|``: ``sum_k |product(a_max, w_k)|``."""
    pf = layer.product_format
    codes = np.asarray(layer.weight).reshape(layer.out_channels, -1)
    mags = {int(c): abs(int(pf.product(pf.a_max, int(c)))) for c in np.unique(codes)}
    return [sum(mags[int(c)] for c in row) for row in codes]


def _beta_max(bundle, index):
    """The largest ``beta`` of the codes of layer ``index`` (``None``: the input)."""
    if index is None or bundle.layers[index].adapter is None:
        return rescale.BETA_ONE
    return rescale.BETA_MAX


def layer_bounds(bundle):
    """Per layer, ``{"acc", "mant", "beta", "product", "value", "recip"}``: the largest
    magnitude of each (``recip`` 0 for the last layer), for every input."""
    out, zs = [], {}
    for i, layer in enumerate(bundle.layers):
        f = layer.fixed if layer.fixed is not None else layer.compute_fixed()
        acc = np.array(_acc_bounds(layer), dtype=object)
        beta = _beta_max(bundle, bundle.source_index(i))
        m = np.abs(np.asarray(f.m, dtype=np.int64)).astype(object)
        product = acc * beta * m
        z = _shifted(product, f.z_shift) + np.abs(np.asarray(f.bias_q)).astype(object)
        z_max = int(max(z, default=0))
        mant, beta_res, operand = int(max(m, default=0)), beta, 0
        kind, k = bundle.residual_kind(i)
        if kind == "identity":
            s = layer.shortcut_fixed if layer.shortcut_fixed is not None else \
                bundle.compute_shortcut_fixed(i)
            src = bundle.layers[k]
            codes = 2 ** (src.next_bits - 1) if src.next_signed else 2 ** src.next_bits - 1
            beta_res = _beta_max(bundle, k)
            res_m = np.abs(np.asarray(s.m, dtype=np.int64)).astype(object)
            operand = int(max(_shifted(codes * beta_res * res_m, s.z_shift), default=0))
            mant = max(mant, int(max(res_m, default=0)))
            product = np.concatenate([product, codes * beta_res * res_m])
        elif kind == "projection":
            operand = zs[k]
        zs[i] = z_max
        value = z_max + operand
        if layer.pool > 1 and layer.pool_mode == "avg":
            value *= layer.pool ** 2
        pooled = int(np.prod(layer.pooled_shape[1:])) if layer.kind == "conv2d" else 1
        # The channel sums S, kept for the adapter and a global pooling (the unit sums every
        # layer's, but a layer that reads none may let them wrap).
        sums = value * pooled if f.adapter != "none" or layer.global_pool else 0
        hidden = 0                                   # a two-layer adapter's hidden units,
        if f.adapter == "two":                       # which its multiplier takes as S
            w1 = np.abs(np.asarray(f.w1_q, dtype=np.int64)).astype(object).sum(axis=1)
            h = _shifted(sums * w1, f.hidden_shift) + np.abs(np.asarray(f.b1_q)).astype(object)
            hidden = int(max(h, default=0))
        recip = 0
        if f.m_s is not None:
            low = 1 if f.adapter != "none" else rescale.BETA_ONE
            recip = (int(f.m_s) << rescale.RECIP_BITS) // low
        shifts = [int(v) for v in np.asarray(f.z_shift).reshape(-1)]
        if kind == "identity":
            shifts += [int(v) for v in np.asarray(s.z_shift).reshape(-1)]
        out.append({"z_shifts": (min(shifts), max(shifts)),
                    "req_shifts": (f.req_shift, f.req_shift) if f.req_shift is not None
                    else None,
                    "acc": int(max(acc, default=0)), "mant": mant,
                    "beta": max(beta, beta_res), "product": int(max(product, default=0)),
                    "value": max(value, sums, hidden), "recip": recip})
    return out


def bundle_widths(bundle):
    """The smallest ``RescaleWidths`` that hold every value of every layer of ``bundle``."""
    bounds = layer_bounds(bundle)
    top = {key: max(b[key] for b in bounds) for key in bounds[0] if not key.endswith("shifts")}
    z = [b["z_shifts"] for b in bounds]
    req = [b["req_shifts"] for b in bounds if b["req_shifts"] is not None] or [(0, 0)]
    return RescaleWidths(acc=_signed(top["acc"]), mant=_signed(top["mant"]),
                         beta=_unsigned(top["beta"]),
                         product=min(WIDE, _signed(top["product"])),
                         value=min(WIDE, _signed(top["value"])),
                         recip=_unsigned(top["recip"]),
                         z_shift_min=min(lo for lo, _ in z), z_shift_max=max(hi for _, hi in z),
                         req_shift_min=min(lo for lo, _ in req),
                         req_shift_max=max(hi for _, hi in req))


def check(need: RescaleWidths, have: RescaleWidths):
    """``UsageError`` naming the first width of ``need`` that ``have`` does not reach."""
    for kind in ("z", "req"):
        (nlo, nhi), (hlo, hhi) = getattr(need, f"{kind}_shifts"), getattr(have, f"{kind}_shifts")
        if nlo < hlo or nhi > hhi:
            raise UsageError(f"the bundle needs the rescale unit's {kind} shifts from {nlo} "
                             f"to {nhi}, the engine takes {hlo} to {hhi}")
    for f in fields(need):
        if "shift" in f.name:
            continue
        n, h = getattr(need, f.name), getattr(have, f.name)
        if n > h:
            raise UsageError(f"the bundle needs the rescale unit's {f.name} width {n} bits, "
                             f"the engine has {h}")
