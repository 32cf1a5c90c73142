"""The rescale between two layers in fixed point: folded batch norm, ReLU, pooling, the ASQ
adapter, ``beta``, its reciprocal and requantization to the next layer's codes.

This module defines the integers, once: ``fixed_point(...)`` turns a layer's real parameters
into them (the exporter stores its result in the bundle, the loader recomputes it to check the
bundle, the golden model and the hardware generator use it), and the functions below apply
them. Pure numpy on ``int64``; every width is bounded so that nothing overflows (checked by
``fixed_point``).

The real computation, for accumulators ``acc`` of output channel ``c`` of a layer whose input
was quantized with step ``s_in * beta_in`` (``beta_in = 1`` without an adapter)::

    z    = M_c * beta_in * acc + B_c       M_c = bn_scale_c * s_in * alpha_c * 2**-F
    u    = pool(clip(relu(z)))             B_c = bn_bias_c (the bias of a linear layer)
    g    = mean of u over the positions of one sample, per channel
    beta = adapter(g)                      (1 without an adapter)
    code = clamp(round(u / (s_next * beta)), 0, 2**b_next - 1)

and in fixed point (``rshift(x, n) = floor((x + 2**(n-1)) / 2**n)``: round half up; a
negative ``n`` shifts left)::

    z_q    = rshift(acc * beta_q * m_c, e_c + BETA_FRAC - Z) + bias_q_c    units 2**-Z
    u_q    = pool(min(max(z_q, 0), clip_q))
    S_c    = sum of u_q over the positions                                   units 2**-Z
    h_q    = max(rshift(W1_q @ S, e1) + b1_q, 0)                             units 2**-Z
    beta_q = clamp(rshift(W2_q @ h_q, e2 + Z - BETA_FRAC) + b2_q, 1, BETA_MAX)   2**-BETA_FRAC
    R      = (m_s * 2**RECIP_BITS) // beta_q           the reciprocal, floor, once per sample
    code   = clamp(rshift(u_q * R, e_s + RECIP_BITS + Z - BETA_FRAC), 0, 2**b_next - 1)

``m_c * 2**-e_c`` is ``M_c`` with ``MANTISSA_BITS`` significant bits, ``m_s * 2**-e_s`` is
``1 / s_next`` likewise, ``W1_q * 2**-e1`` is ``W1 / positions`` (the mean's division folded
into the weights) and ``W2_q * 2**-e2`` is ``W2``, each tensor with one shared exponent. A
one-layer adapter uses ``W1_q``/``b1_q`` with the ``beta`` line's shift. The differences from
PyTorch: round half up instead of half to even, ``beta`` floored at ``2**-BETA_FRAC`` instead
of 1e-8 and capped at ``BETA_MAX``, and the rounding of every constant; ``asqgen compare``
measures their effect.

Clipping, average pooling and global average pooling
----------------------------------------------------
``clip`` is the upper bound of a bounded ReLU (ReLU6: ``clip = 6``, ``clip_q = 6 * 2**Z``,
exact); ``None`` is a plain ReLU. ``pool`` is a ``p x p`` window with stride ``p``: its
maximum, or for average pooling its *sum* (exact), the division by ``p * p`` being folded
into the constants that read ``u``. Global average pooling (``global_pool``) keeps only the
per-channel sums ``S_c`` of one sample, which the adapter reads anyway, and requantizes them
(one position per sample, ``out_shape = (C, 1, 1)``). The divisions of both are folded::

    divisor = (p * p for average pooling, else 1) * (the positions, for global pooling)
    m_s * 2**-e_s  =  1 / (s_next * divisor)          (MANTISSA_BITS significant bits)
    code = clamp(rshift(S_or_u_q * R, req_shift), 0, 2**b_next - 1)

so a power-of-two divisor (2x2 windows, 4x4 or 8x8 maps) adds no error, and any other one (a 7x7
map: 49) changes ``1 / (s_next * divisor)`` by at most ``2**-(MANTISSA_BITS - 1)`` relative,
the rounding every other constant already has. The reciprocal's floor adds ``1 / R`` relative
(as on every layer; ``2**-16`` when ``beta = 1``), so without an adapter the code before its
rounding is off by less than ``(max_code + 1) * 2**-(MANTISSA_BITS - 2)`` (0.016 for 8-bit
codes): a code differs from the exactly rounded mean by at most one, and only next to a tie
(``tests/test_ops.py`` checks this against exact rational arithmetic). The adapter's
``W1`` is divided likewise, so that it reads the mean.

The residual add (a ResNet block, ``shortcut_fixed_point`` .. ``rescale_residual``)
-------------------------------------------------------------------------------------
A layer with a shortcut adds a second operand to its ``z`` before the ReLU::

    z'   = z + o                      (the real computation)
    u    = maxpool(relu(z'))          then beta and the requantization as above

The operand ``o`` is one of two things, each in the units ``2**-Z`` of ``z`` and each made
by the same affine step as ``z`` itself (so that the hardware runs it as its rescale unit's
first stage reading a second operand):

* **identity**: the output codes ``x`` of an earlier layer (the block's input, quantized with
  that layer's next step ``s_x`` and its per-sample ``beta_x``), ``o = s_x * beta_x * x``::

      o_q = rshift(x * beta_x_q * m_c, e_c + BETA_FRAC - Z)        units 2**-Z

  with ``m_c * 2**-e_c = s_x`` (``MANTISSA_BITS`` significant bits, the same for every
  channel; the per-channel form is kept so that one register file serves both kinds) and no
  bias: ``shortcut_fixed_point(step=s_x, channels=C, bits=b_x)``, which is
  ``fixed_point(bn_scale=1, bn_bias=0, s_in=s_x, alpha=1, frac_bits=0)``: a code is an
  accumulator of a 1x1 identity convolution with ``F = 0``.
* **projection**: the ``z_q`` of a projection layer (a 1x1, possibly strided, conv with its
  folded batch norm, no ReLU, no pooling and no requantization), computed by ``affine`` from
  its own accumulators, its input's ``beta`` and its own ``LayerRescale``.

``residual_add`` is then the exact integer sum ``z_q + o_q``: no rounding and no saturation
(each term is bounded by the guards of ``affine``, below ``2**62``, and the sum is checked
against ``2**62`` too). ReLU, pooling, the adapter's ``beta`` and the requantization follow
unchanged (``rescale_residual``). The rounding of ``o_q`` is the one of ``rshift`` (half up);
PyTorch adds the float values, so the golden model differs from it by at most the two
roundings (``z_q`` and ``o_q``: one unit of ``2**-Z`` each) plus the constants' rounding.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Z", "BETA_FRAC", "BETA_ONE", "BETA_MAX", "MANTISSA_BITS", "RECIP_BITS",
           "mantissa", "rshift", "LayerRescale", "fixed_point", "affine", "pool2d", "POOL_MODES",
           "adapter_beta", "requantize", "logits_q", "rescale_layer", "shortcut_fixed_point",
           "shortcut_operand", "shortcut_codes", "residual_add", "rescale_residual"]

Z = 16                      # fractional bits of activation values (z, u, h)
BETA_FRAC = 14              # fractional bits of beta
BETA_ONE = 1 << BETA_FRAC
BETA_MAX = 64 << BETA_FRAC  # beta is capped at 64 (codes are 0 long before)
MANTISSA_BITS = 16          # significant bits (with sign) of every real constant
MAX_RIGHT_SHIFT = 62        # the largest right shift (the hardware's shifter takes 7 bits)
MAX_LEFT_SHIFT = 8          # the largest left shift (the hardware's shifter takes 4 bits)
PARAM_BITS = 32             # the hardware's parameter words (signed)
RECIP_BITS = 16             # extra bits of the reciprocal of beta
INT64_HEADROOM = 62         # no intermediate may reach 2**62
POOL_MODES = ("max", "avg")  # a pooling window's maximum, or its sum (average pooling)


def mantissa(values, bits=MANTISSA_BITS, *, shared=False):
    """``values ~= m * 2**-e`` with integers ``|m| <= 2**(bits - 1)`` (``bits`` bits with sign,
    one more when rounding reaches the power of two).

    Per element (``e`` an array) or, with ``shared``, one ``e`` for the whole tensor (chosen
    for its largest magnitude). Zero maps to ``m = 0``.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError("a parameter is not finite (NaN or infinity)")
    mag = np.max(np.abs(v)) if shared else np.abs(v)
    with np.errstate(divide="ignore"):
        top = np.where(mag > 0, np.floor(np.log2(np.where(mag > 0, mag, 1.0))), 0)
    e = (bits - 2 - top).astype(np.int64)
    m = np.round(v * np.exp2(e.astype(np.float64))).astype(np.int64)
    return m, (int(e) if shared else e)


def rshift(x, n):
    """``round(x / 2**n)`` with halves rounded up, for integer arrays; ``n`` may be an array
    and may be negative (a left shift)."""
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    right = np.maximum(n, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    return np.where(n > 0, (x + half) >> right, x << np.maximum(-n, 0))


@dataclass(frozen=True)
class LayerRescale:
    """The integers of one layer's rescale (see the module docstring). Arrays are ``int64``.

    ``adapter`` is ``"none"``, ``"one"`` or ``"two"``; ``adapter_input`` is ``"channels"``
    (the per-channel sum over positions: the next layer is a conv) or ``"vector"`` (every value:
    the next layer is a linear one). The next-layer fields are ``None`` for the last layer,
    whose output is ``logits_q``.
    """

    m: np.ndarray            # (C,)
    e: np.ndarray            # (C,)
    bias_q: np.ndarray       # (C,)
    next_bits: int | None = None
    m_s: int | None = None
    e_s: int | None = None
    adapter: str = "none"
    adapter_input: str = "channels"
    w1_q: np.ndarray | None = None
    e1: int | None = None
    b1_q: np.ndarray | None = None
    w2_q: np.ndarray | None = None
    e2: int | None = None
    b2_q: np.ndarray | None = None
    clip_q: int | None = None   # the bounded ReLU's top, units 2**-Z (ReLU6: 6 << Z)
    next_signed: bool | None = None   # True: the next codes are signed (two's complement)

    # The shifts and constants that the formulas above apply; the golden model (below), the
    # register map (``core.regmap``) and the hardware use these, never the sums themselves.
    @property
    def z_shift(self):
        """``e_c + BETA_FRAC - Z`` (per channel): the shift of ``acc * beta_in * m_c``."""
        return _z_shift(self.e)

    @property
    def hidden_shift(self):
        """``e1``: the shift of the two-layer adapter's hidden layer (``None`` otherwise)."""
        return self.e1 if self.adapter == "two" else None

    @property
    def beta_shift(self):
        """The shift of the layer that makes ``beta``: ``e2 + Z - BETA_FRAC`` for two
        layers, ``e1 + Z - BETA_FRAC`` for one (``None`` without an adapter)."""
        e = {"two": self.e2, "one": self.e1}.get(self.adapter)
        return None if e is None else e + Z - BETA_FRAC

    @property
    def beta_weights(self):
        """The weights of the layer that makes ``beta`` (one row), or ``None``."""
        w = {"two": self.w2_q, "one": self.w1_q}.get(self.adapter)
        return None if w is None else w[0]

    @property
    def beta_bias(self):
        """The bias of the layer that makes ``beta`` (units ``2**-BETA_FRAC``), or ``None``."""
        b = {"two": self.b2_q, "one": self.b1_q}.get(self.adapter)
        return None if b is None else int(b[0])

    @property
    def req_shift(self):
        """``e_s + RECIP_BITS + Z - BETA_FRAC``: the requantization's shift (``None`` for the
        last layer)."""
        return None if self.e_s is None else self.e_s + RECIP_BITS + Z - BETA_FRAC

    @property
    def max_code(self):
        """``2**next_bits - 1``, or ``2**(next_bits - 1) - 1`` for signed codes (``None`` for
        the last layer)."""
        if self.next_bits is None:
            return None
        return 2 ** (self.next_bits - 1) - 1 if self.next_signed else 2 ** self.next_bits - 1

    @property
    def min_code(self):
        """0, or ``-2**(next_bits - 1)`` for signed codes (``None`` for the last layer)."""
        if self.next_bits is None:
            return None
        return -2 ** (self.next_bits - 1) if self.next_signed else 0

    def reciprocal(self, beta_q):
        """``R = (m_s << RECIP_BITS) // beta_q``, floored, once per sample."""
        return (np.int64(self.m_s) << RECIP_BITS) // np.asarray(beta_q, dtype=np.int64)

    def shifts(self):
        """Every shift this rescale applies (for the range checks)."""
        shifts = [int(np.min(self.z_shift)), int(np.max(self.z_shift))]
        shifts += [s for s in (self.req_shift, self.hidden_shift, self.beta_shift)
                   if s is not None]
        return shifts

    def arrays(self):
        """The fields as a flat dict of arrays (scalars as 0-d), for the bundle (``None``
        fields left out, so that older bundles keep their arrays)."""
        return {k: np.asarray(v, dtype=np.int64) for k, v in self.__dict__.items()
                if v is not None and k not in ("adapter", "adapter_input")}


def fixed_point(*, bn_scale, bn_bias, s_in, alpha, frac_bits, acc_bound, next_step=None,
                next_bits=None, adapter=None, positions=1, divisor=1, clip=None,
                next_signed=False):
    """The ``LayerRescale`` of a layer from its real parameters.

    ``adapter`` is ``None`` or a ``core.adapter.Adapter``; ``positions`` the divisor of its
    mean (the spatial positions it runs over, times the window of an average pooling; 1 for a
    ``"vector"`` adapter); ``divisor`` the one folded into the requantization (average and
    global pooling, module docstring); ``clip`` the bounded ReLU's top (``None``: none);
    ``next_signed``: the next codes are signed;
    ``acc_bound`` the largest ``|acc|``. Raises ``ValueError`` when a parameter is not finite
    or positive where it must be, or an intermediate could exceed 62 bits.
    """
    bn_scale, bn_bias, alpha = (np.asarray(a, dtype=np.float64) for a in
                                (bn_scale, bn_bias, alpha))
    if not s_in > 0 or not np.all(alpha > 0):
        raise ValueError("steps and weight scales must be positive")
    m, e = mantissa(bn_scale * s_in * alpha * 2.0 ** -frac_bits)
    # A channel whose scale needs a right shift beyond MAX_RIGHT_SHIFT (a collapsed batch norm)
    # contributes 0 to z: its mantissa becomes 0 and its shift MAX_RIGHT_SHIFT.
    tiny = _z_shift(e) > MAX_RIGHT_SHIFT
    m = np.where(tiny, 0, m)
    e = np.where(tiny, e - (_z_shift(e) - MAX_RIGHT_SHIFT), e)
    bias_q = np.round(bn_bias * 2.0 ** Z).astype(np.int64)
    if (acc_bound * (BETA_MAX) * (1 << (MANTISSA_BITS - 1))).bit_length() > INT64_HEADROOM:
        raise ValueError(f"accumulators up to {acc_bound} are too wide for the rescale")
    fields = dict(m=m, e=e, bias_q=bias_q)
    if clip is not None:
        if not (np.isfinite(clip) and clip > 0):
            raise ValueError(f"a ReLU's clip must be positive, not {clip!r}")
        fields["clip_q"] = int(round(float(clip) * 2.0 ** Z))
    if next_step is None:
        result = LayerRescale(**fields)
        _check_shifts(result)
        return result
    if not next_step > 0:
        raise ValueError("the next layer's step must be positive")
    m_s, e_s = mantissa(1.0 / (next_step * divisor), shared=True)
    fields.update(next_bits=int(next_bits), m_s=int(m_s), e_s=e_s)
    if next_signed:
        fields["next_signed"] = True
    if adapter is not None:
        w1_q, e1 = mantissa(adapter.w1 / positions, shared=True)
        two = adapter.layers == 2
        fields.update(adapter="two" if two else "one", w1_q=w1_q, e1=e1,
                      adapter_input=adapter.input,
                      b1_q=np.round(adapter.b1 * 2.0 ** (Z if two else BETA_FRAC)).astype(
                          np.int64))
        if two:
            w2_q, e2 = mantissa(adapter.w2, shared=True)
            fields.update(w2_q=w2_q, e2=e2, b2_q=np.round(adapter.b2 * BETA_ONE).astype(
                np.int64))
    result = LayerRescale(**fields)
    _check_shifts(result)
    return result


def _z_shift(e):
    return e + BETA_FRAC - Z


def _check_shifts(r):
    """Every shift of ``r`` may be a left shift of at most ``MAX_LEFT_SHIFT`` (the hardware's
    limit) and a right shift of at most ``MAX_RIGHT_SHIFT``."""
    shifts = r.shifts()
    if min(shifts) < -MAX_LEFT_SHIFT:
        raise ValueError(f"a fixed-point scale is too large for the rescale (a left shift "
                         f"beyond {MAX_LEFT_SHIFT} bits)")
    if max(shifts) > MAX_RIGHT_SHIFT:
        raise ValueError(f"a fixed-point scale is too small for the rescale (a right shift "
                         f"beyond {MAX_RIGHT_SHIFT} bits)")
    for name in ("bias_q", "b1_q", "b2_q", "clip_q"):
        value = getattr(r, name)
        if value is not None and np.abs(value).max() >= 1 << (PARAM_BITS - 1):
            raise ValueError(f"a bias is too large for the rescale's {PARAM_BITS}-bit "
                             f"parameters ({name})")


def _guard(what, *bounds, shift=0):
    """Refuse an intermediate that could reach ``2**62``: the product of ``bounds``, shifted
    left when the ``shift`` that follows is negative."""
    total = 1 << max(0, -int(np.min(shift)))
    for bound in bounds:
        total *= int(bound)
    if total.bit_length() > INT64_HEADROOM:
        raise ValueError(f"the fixed-point {what} would exceed {INT64_HEADROOM} bits")


def _peak(x):
    return int(np.abs(np.asarray(x)).max(initial=0))


def affine(acc, beta_q, r: LayerRescale):
    """``z_q`` for accumulators ``acc`` of shape ``(N, C, ...)`` and ``beta_q`` ``(N,)``."""
    acc = np.asarray(acc, dtype=np.int64)
    _guard("batch-norm product", _peak(acc), _peak(beta_q), _peak(r.m),
           shift=r.z_shift)
    extra = (1,) * (acc.ndim - 2)
    m = r.m.reshape((1, -1) + extra)
    shift = r.z_shift.reshape((1, -1) + extra)
    scaled = acc * np.asarray(beta_q, dtype=np.int64).reshape((-1, 1) + extra) * m
    return rshift(scaled, shift) + r.bias_q.reshape((1, -1) + extra)


def pool2d(u, size, mode="max"):
    """Pooling over ``size x size`` windows, stride ``size`` (``(N, C, H, W)``): each window's
    maximum, or for ``mode="avg"`` its sum (the division is folded into what reads it)."""
    n, c, h, w = u.shape
    if h % size or w % size:
        raise ValueError(f"a {h}x{w} map cannot be pooled by {size}")
    windows = np.asarray(u).reshape(n, c, h // size, size, w // size, size)
    if mode == "avg":
        _guard("pooling sum", _peak(u), size * size)
        return windows.sum(axis=(3, 5))
    return windows.max(axis=(3, 5))


def adapter_beta(u_q, r: LayerRescale):
    """``beta_q`` per sample (``(N,)``) from the rescaled activations ``u_q`` (``(N, C, ...)``)."""
    n = u_q.shape[0]
    if r.adapter == "none":
        return np.full(n, BETA_ONE, dtype=np.int64)
    if r.adapter_input == "vector":       # a linear layer's adapter reads the vector itself
        sums = np.asarray(u_q, dtype=np.int64).reshape(n, -1)
    else:                                   # a conv layer's: the sum over positions
        sums = np.asarray(u_q, dtype=np.int64).reshape(n, u_q.shape[1], -1).sum(axis=2)
    first = r.hidden_shift if r.adapter == "two" else r.beta_shift
    _guard("adapter sum", _peak(sums), _peak(r.w1_q), sums.shape[1], shift=first)
    x = sums
    if r.adapter == "two":
        x = np.maximum(rshift(sums @ r.w1_q.T, r.hidden_shift) + r.b1_q, 0)             # 2**-Z
        _guard("adapter output", _peak(x), _peak(r.w2_q), x.shape[1], shift=r.beta_shift)
    raw = rshift(x @ r.beta_weights, r.beta_shift) + r.beta_bias
    return np.clip(raw, 1, BETA_MAX)


def requantize(u_q, beta_q, r: LayerRescale):
    """The next layer's codes from ``u_q`` (``(N, C, ...)``) and ``beta_q`` (``(N,)``):
    unsigned, or signed (``r.next_signed``: a value with no ReLU before it, such as a linear
    bottleneck; ``rshift`` rounds half up there too, towards plus infinity)."""
    recip = r.reciprocal(beta_q)
    _guard("requantization product", _peak(u_q), _peak(recip), shift=r.req_shift)
    extra = (1,) * (u_q.ndim - 1)
    codes = rshift(u_q * recip.reshape((-1,) + extra), r.req_shift)
    return np.clip(codes, r.min_code, r.max_code)


def logits_q(acc, beta_q, r: LayerRescale):
    """The last layer's outputs (``z_q`` without ReLU), units ``2**-Z``."""
    return affine(acc, beta_q, r)


def rescale_layer(acc, beta_in, r: LayerRescale, *, relu, pool, pool_mode="max",
                  global_pool=False):
    """The whole rescale of a layer that is not the last: ``(u_q, beta_q, codes)`` for
    accumulators ``acc`` (``(N, C, ...)``) of inputs scaled by ``beta_in`` (``(N,)``). With
    ``global_pool``, ``u_q`` is the channel sums ``S`` (``(N, C, 1, 1)``), which are
    requantized."""
    return _after_z(affine(acc, beta_in, r), r, relu=relu, pool=pool, pool_mode=pool_mode,
                    global_pool=global_pool)


def _after_z(u, r: LayerRescale, *, relu, pool, pool_mode="max", global_pool=False):
    """ReLU and its clip, pooling, the adapter's ``beta``, global pooling and the
    requantization of a layer's ``z_q``."""
    if relu:
        u = np.maximum(u, 0)
    if r.clip_q is not None:
        u = np.minimum(u, r.clip_q)
    if pool > 1:
        u = pool2d(u, pool, pool_mode)
    beta = adapter_beta(u, r)
    if global_pool:
        _guard("channel sum", _peak(u), int(np.prod(u.shape[2:])))
        u = u.sum(axis=(2, 3), keepdims=True)
    return u, beta, requantize(u, beta, r)


# The residual add ----------------------------------------------------------------------------

def shortcut_fixed_point(*, step, channels, bits):
    """The ``LayerRescale`` (``m``, ``e``, ``bias_q = 0``) that turns identity-shortcut codes
    of ``bits`` bits, quantized with ``step * beta``, into units ``2**-Z`` (module docstring:
    ``fixed_point`` of a 1x1 identity convolution with ``F = 0``, ``channels`` channels).
    Raises ``ValueError`` as ``fixed_point`` does."""
    ones = np.ones(int(channels))
    return fixed_point(bn_scale=ones, bn_bias=np.zeros(int(channels)), s_in=step, alpha=ones,
                       frac_bits=0, acc_bound=2 ** int(bits) - 1)


def shortcut_operand(codes, beta_q, r: LayerRescale):
    """``o_q`` of an identity shortcut: ``affine(codes, beta_q, r)`` for codes ``(N, C, ...)``
    of the block's input, its per-sample ``beta_q`` (``(N,)``) and ``r`` from
    ``shortcut_fixed_point``."""
    return affine(codes, beta_q, r)


def shortcut_codes(codes, *, stride=1, pad=0, channels=None):
    """The identity operand's codes for ResNet's option-A shortcut: ``codes`` (``(N, C, H,
    W)``) subsampled by ``stride`` (``x[:, :, ::stride, ::stride]``) and placed at channel
    ``pad`` of ``channels`` channels, the others 0 (``F.pad`` with zeros; a code 0 is the
    value 0, so its operand is exactly 0). The default is the plain identity."""
    codes = np.asarray(codes, dtype=np.int64)[:, :, ::stride, ::stride]
    n, c, h, w = codes.shape
    channels = c + pad if channels is None else channels
    if pad < 0 or c + pad > channels:
        raise ValueError(f"{c} shortcut channels do not fit at {pad} of {channels}")
    out = np.zeros((n, channels, h, w), dtype=np.int64)
    out[:, pad:pad + c] = codes
    return out


def residual_add(z_q, o_q):
    """``z_q + o_q``: exact, no rounding, no saturation; ``ValueError`` if the shapes differ or
    the sum could reach ``2**62``."""
    z_q = np.asarray(z_q, dtype=np.int64)
    o_q = np.asarray(o_q, dtype=np.int64)
    if z_q.shape != o_q.shape:
        raise ValueError(f"the residual operands have shapes {z_q.shape} and {o_q.shape}")
    if max(_peak(z_q), _peak(o_q)).bit_length() + 1 > INT64_HEADROOM:
        raise ValueError(f"the residual sum would exceed {INT64_HEADROOM} bits")
    return z_q + o_q


def rescale_residual(acc, beta_in, r: LayerRescale, o_q, *, relu, pool, pool_mode="max",
                     global_pool=False):
    """The whole rescale of a layer with a shortcut: ``(u_q, beta_q, codes)`` as
    ``rescale_layer`` but with ``o_q`` (``shortcut_operand`` or a projection's ``affine``,
    the shape of ``acc``) added to ``z_q`` before the ReLU."""
    return _after_z(residual_add(affine(acc, beta_in, r), o_q), r, relu=relu, pool=pool,
                    pool_mode=pool_mode, global_pool=global_pool)
