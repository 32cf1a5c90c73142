"""The fake quantizers of quantization-aware training: LSQ, ASQ, POT and POST.

Each quantizer is an ``nn.Module`` whose ``forward`` returns the fake-quantized tensor (the value
used in training) and whose ``codes`` returns the integer codes that the hardware stores. The
algorithms are those of ``docs/algorithms.md`` (LSQ, ASQ, POT and POST); what a weight code
means is defined only in ``core.numerics``, which this module imports.

Rounding and gradients
----------------------
* Uniform codes (LSQ, ASQ) are ``torch.round(clamp(x / s, Qn, Qp))``: **round half to even**
  (``2.5 -> 2``, ``3.5 -> 4``).
* Exponent codes (POT, POST) take the level nearest to ``clamp(w / alpha, -1, 1)`` in the linear
  domain; **a tie goes to the smaller magnitude**, as in ``core.numerics.nearest_code``.
* Straight-through estimators keep the forward value *exactly*: ``ste(x, value)`` returns
  ``value + (x - x.detach())``, whose value is ``value`` bit for bit and whose gradient is the
  identity, so ``forward(x) == codes(x) * step`` exactly.
* The gradient of the input is passed where ``Qn <= x / s <= Qp`` (``-1 <= w / alpha <= 1``) and
  is zero outside. A point exactly on a bound counts as inside (``torch.clamp``'s convention,
  and the reference code's): its input gradient passes and its scale gradient is the inside
  formula, ``round(Qp) - Qp = 0``, not ``Qp``.
* The scale's gradient is LSQ's: ``dx_hat/ds = round(x/s) - x/s`` inside, ``Qn`` or ``Qp`` where
  clipped (POT/POST: ``level - w/alpha`` inside, ``sign(w)`` where clipped), multiplied by the
  gradient scale ``g`` through ``grad_scale``: ``g = 1/sqrt(N * Qp)`` for LSQ and ASQ,
  ``g = 1/sqrt(N)`` for POT and POST, ``N`` the number of elements per scale.

Signed activations
------------------
A value with no ReLU before it (MobileNet-V2's linear bottleneck, or a residual sum with no ReLU
after the addition) is quantized by a **signed** ``LsqQuantizer`` (``Qn = -2**(b-1)``, ``Qp =
2**(b-1) - 1``, one step for the tensor): ``export.wrap.quantize_model`` gives it to every layer
that reads such a value, whatever ``act_method`` says for unsigned inputs. ASQ stays for
unsigned activations only: its adapter reads the mean of a non-negative map through ReLUs and
scales an unsigned step by ``beta``, semantics this project (and ``core.rescale``'s fixed
point) defines for non-negative activations; LSQ on the signed inputs also keeps adapters off
MobileNet-V2's expansions, whose inputs are the signed block outputs (the depthwise convs and
the projections, which read ReLU6 outputs of the expanded width, keep ASQ with
``act_method="asq"``: their adapters are the large ones, ``channels // 4`` hidden units).

Initialisation
--------------
The scales are initialised from the first tensor seen by ``forward`` in training mode (LSQ and
ASQ: ``s = 2 * mean(|x|) / sqrt(Qp)``; POT and POST: ``alpha`` = the 0.99 quantile of ``|w|``
per output channel, ``torch.quantile``'s linear interpolation). Before that, ``forward`` in
evaluation mode and ``codes`` raise ``RuntimeError``. The ``initialized`` buffer records the
state, so a loaded ``state_dict`` is not initialised again. Scales are clamped to at least
``SCALE_MIN`` before each use, in place, so that they stay positive during training.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from core import numerics
from core.adapter import adapter_hidden
from core.numerics import ACT_BITS, WEIGHT_BITS, nearest_code, weight_levels
from core.rules import check_bits as _check_bits

__all__ = [
    "SCALE_MIN", "BETA_MIN",
    "ste", "round_pass", "grad_scale",
    "LsqQuantizer", "AdapterNet", "AsqQuantizer", "PotQuantizer", "PostQuantizer",
]

SCALE_MIN = torch.finfo(torch.float32).eps
BETA_MIN = 1e-8


def ste(x, value):
    """``value`` in the forward pass, the identity's gradient for ``x`` in the backward pass."""
    return value.detach() + (x - x.detach())


def round_pass(x):
    """``torch.round(x)`` (half to even) with a straight-through gradient."""
    return ste(x, torch.round(x))


def grad_scale(x, g):
    """``x`` in the forward pass; the gradient that reaches ``x`` is multiplied by ``g``."""
    return x.detach() + (x * g - (x * g).detach())


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")


def _check_channels(name, x, channels, *, dim, ndim=None):
    """Check that ``x`` has ``channels`` in dimension ``dim`` (and ``ndim`` dimensions)."""
    if (ndim is not None and x.dim() != ndim) or x.dim() <= dim or x.shape[dim] != channels:
        rank = "a tensor" if ndim is None else f"a {ndim}-dimensional tensor"
        raise ValueError(f"{name} expects {rank} with {channels} channels in dimension {dim}, "
                         f"not shape {tuple(x.shape)}")


class _Learned(nn.Module):
    """A quantizer with a positive learned scale (the parameter named ``SCALE``).

    Subclasses define ``_init_scale(x)``, the initial scale computed from the first tensor.
    """

    SCALE = "step"

    def __init__(self):
        super().__init__()
        self.register_buffer("initialized", torch.tensor(False))

    def _init_scale(self, x):
        raise NotImplementedError

    def _ready(self, x, *, init):
        """Initialise from ``x`` if allowed (``init`` and training mode) and needed."""
        if not self.initialized:
            if not (init and self.training):
                raise RuntimeError(f"{type(self).__name__} is not initialised: run one forward "
                                   f"pass in training mode first")
            with torch.no_grad():
                getattr(self, self.SCALE).copy_(self._init_scale(x.detach()))
            self.initialized.fill_(True)
        with torch.no_grad():
            getattr(self, self.SCALE).clamp_(min=SCALE_MIN)


class LsqQuantizer(_Learned):
    """Uniform quantizer with a learned step (LSQ).

    ``x_hat = round(clamp(x / s, Qn, Qp)) * s`` with round half to even.

    Parameters
    ----------
    bits : int
        Code width: 1 to 8 unsigned (``Qn = 0``, ``Qp = 2**bits - 1``), 2 to 8 signed
        (``Qn = -2**(bits-1)``, ``Qp = 2**(bits-1) - 1``).
    signed : bool
        Signed codes (weights, or activations with no ReLU before them: module docstring) or
        unsigned ones (activations after a ReLU, the network's input).
    per_channel : int or None
        ``None`` for one step for the whole tensor; otherwise the number of channels along
        dimension 0, each with its own step (output channels of a weight).

    Members
    -------
    step : Parameter
        The step ``s``: shape ``()``, or ``(per_channel,)``.
    """

    def __init__(self, *, bits, signed, per_channel=None):
        _check_bool("Signed", signed)
        if signed:
            _check_bits("Signed bits", bits, WEIGHT_BITS)
        else:
            _check_bits("Unsigned bits", bits, ACT_BITS)
        if per_channel is not None:
            _check_int("Channel count", per_channel, 1)
        super().__init__()
        self._bits = bits
        self._signed = signed
        self._per_channel = per_channel
        self.step = nn.Parameter(torch.ones(() if per_channel is None else (per_channel,)))

    bits = property(lambda self: self._bits)
    signed = property(lambda self: self._signed)
    per_channel = property(lambda self: self._per_channel)
    qn = property(lambda self: -2 ** (self._bits - 1) if self._signed else 0)
    qp = property(lambda self: 2 ** (self._bits - 1) - 1 if self._signed else 2 ** self._bits - 1)

    def _check(self, x):
        if self._per_channel is not None:
            _check_channels("LsqQuantizer", x, self._per_channel, dim=0)

    def _per_step(self, x):
        """``x`` as ``(channels, N)`` per channel, as ``(N,)`` per tensor."""
        return x.reshape(-1) if self._per_channel is None else x.reshape(self._per_channel, -1)

    def _step_view(self, step, x):
        return step if self._per_channel is None else step.view((-1,) + (1,) * (x.dim() - 1))

    def _init_scale(self, x):
        return 2 * self._per_step(x.abs()).mean(dim=-1) / math.sqrt(self.qp)

    def forward(self, x):
        self._check(x)
        self._ready(x, init=True)
        g = 1 / math.sqrt(self._per_step(x).shape[-1] * self.qp)
        s = self._step_view(grad_scale(self.step, g), x)
        return round_pass(torch.clamp(x / s, self.qn, self.qp)) * s

    @torch.no_grad()
    def codes(self, x):
        """The integer codes ``round(clamp(x / s, Qn, Qp))`` in ``[Qn, Qp]``, as ``int64``."""
        self._check(x)
        self._ready(x, init=False)
        s = self._step_view(self.step, x)
        return torch.round(torch.clamp(x / s, self.qn, self.qp)).to(torch.int64)


class AdapterNet(nn.Module):
    """ASQ's adapter: a per-sample vector of ``channels`` values to one ``beta >= BETA_MIN``.

    With ``channels >= 2 * reduction``: ``h = relu(hidden(g))``, ``hidden`` of
    ``channels // reduction`` outputs, then ``beta = relu(output(h))``. Otherwise ``hidden`` is
    ``None`` and ``beta = relu(output(g))``. Finally ``beta = max(beta, BETA_MIN)``. ``output``
    starts with weights ~ N(0, 0.01^2) and bias 1, so that ``beta ~= 1``; ``hidden`` keeps
    PyTorch's default initialisation.

    Members
    -------
    hidden : nn.Linear or None
        ``W1`` (``channels // reduction`` x ``channels``) and ``b1``.
    output : nn.Linear
        ``W2`` (1 x ``channels // reduction``, or 1 x ``channels``) and ``b2``.
    """

    def __init__(self, *, channels, reduction=4):
        _check_int("Channel count", channels, 1)
        _check_int("Reduction", reduction, 1)
        super().__init__()
        two_layers = adapter_hidden(channels, reduction) > 0
        self.hidden = nn.Linear(channels, channels // reduction) if two_layers else None
        self.output = nn.Linear(channels // reduction if two_layers else channels, 1)
        nn.init.normal_(self.output.weight, mean=0.0, std=0.01)
        nn.init.constant_(self.output.bias, 1.0)

    def forward(self, g):
        """``g``: ``(batch, channels)``; returns ``beta``: ``(batch,)``."""
        if self.hidden is not None:
            g = F.relu(self.hidden(g))
        return torch.clamp(F.relu(self.output(g)).squeeze(1), min=BETA_MIN)


class AsqQuantizer(_Learned):
    """Unsigned activation quantizer with an adaptive step (ASQ); signed activations take a
    signed ``LsqQuantizer`` instead (module docstring).

    ``x_hat = round(clamp(x / s_a, 0, 2**bits - 1)) * s_a`` with ``s_a = s * beta(x)``, one
    ``beta`` per sample from the ``adapter`` (docs/algorithms.md, 'The adapter'), round half to
    even. ``s`` gets LSQ's gradient through ``s_a`` (``g * sum over samples of G * beta``) and
    ``beta`` gets ``G * s``, which flows into the adapter and through the adapter's input into
    ``x``, on top of the straight-through gradient of the quantization (docs/algorithms.md,
    'Gradients of ASQ': the spec leaves this path implicit; the reference code keeps it).

    Parameters
    ----------
    bits : int
        Activation code width, 1 to 8.
    channels : int
        Channels of the input (dimension 1): the adapter's input size.
    reduction : int
        The adapter's reduction ``r``: two layers with ``channels // r`` hidden units when
        ``channels >= 2 * r``, one layer otherwise.
    kind : str
        ``"conv"``: input ``(batch, channels, H, W)``, the adapter reads the mean over ``H, W``;
        ``"linear"``: input ``(batch, channels)``, the adapter reads it directly.

    Members
    -------
    step : Parameter
        The step ``s``, shape ``()``.
    adapter : AdapterNet
    """

    KINDS = ("conv", "linear")

    def __init__(self, *, bits, channels, reduction=4, kind="conv"):
        _check_bits("Activation bits", bits, ACT_BITS)
        if kind not in self.KINDS:
            raise ValueError(f"Kind must be one of {', '.join(self.KINDS)}, not {kind!r}")
        super().__init__()
        self.adapter = AdapterNet(channels=channels, reduction=reduction)
        self._bits = bits
        self._channels = channels
        self._reduction = reduction
        self._kind = kind
        self.step = nn.Parameter(torch.ones(()))

    bits = property(lambda self: self._bits)
    channels = property(lambda self: self._channels)
    reduction = property(lambda self: self._reduction)
    kind = property(lambda self: self._kind)
    qp = property(lambda self: 2 ** self._bits - 1)

    def _init_scale(self, x):
        return 2 * x.abs().mean() / math.sqrt(self.qp)

    def _check(self, x):
        _check_channels("AsqQuantizer", x, self._channels, dim=1,
                        ndim=4 if self._kind == "conv" else 2)

    def beta(self, x):
        """``beta(x)``, shape ``(batch,)``, differentiable."""
        self._check(x)
        return self.adapter(x.mean(dim=(2, 3)) if self._kind == "conv" else x)

    def _beta_view(self, x):
        return self.beta(x).view((-1,) + (1,) * (x.dim() - 1))

    def forward(self, x):
        self._check(x)
        self._ready(x, init=True)
        g = 1 / math.sqrt(x.numel() * self.qp)
        s_a = grad_scale(self.step, g) * self._beta_view(x)
        return round_pass(torch.clamp(x / s_a, 0, self.qp)) * s_a

    @torch.no_grad()
    def codes(self, x):
        """The codes ``round(clamp(x / (s * beta(x)), 0, 2**bits - 1))``, as ``int64``."""
        self._check(x)
        self._ready(x, init=False)
        s_a = self.step * self._beta_view(x)
        return torch.round(torch.clamp(x / s_a, 0, self.qp)).to(torch.int64)


@functools.lru_cache(maxsize=None)
def _magnitude_table(fmt, bits):
    """The non-negative levels (ascending), their codes, and the midpoints between them."""
    levels = [v for v in weight_levels(fmt, bits) if v >= 0]
    codes = [nearest_code(fmt, bits, v) for v in levels]
    midpoints = [(a + b) / 2 for a, b in zip(levels, levels[1:])]
    return tuple(levels), tuple(codes), tuple(midpoints)


class _ExponentQuantizer(_Learned):
    """Weights as ``alpha * level`` with exponent-coded levels; see ``PostQuantizer``."""

    FORMAT = None
    SCALE = "alpha"

    def __init__(self, *, bits, channels):
        _check_bits("Weight bits", bits, WEIGHT_BITS)
        _check_int("Channel count", channels, 1)
        super().__init__()
        self._bits = bits
        self._channels = channels
        levels, codes, midpoints = _magnitude_table(self.FORMAT, bits)
        # float64 so that the tie test is the one of core.numerics.nearest_code
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float64), False)
        self.register_buffer("_codes", torch.tensor(codes, dtype=torch.int64), False)
        self.register_buffer("_midpoints", torch.tensor(midpoints, dtype=torch.float64), False)
        self.alpha = nn.Parameter(torch.ones(channels))

    bits = property(lambda self: self._bits)
    channels = property(lambda self: self._channels)
    fmt = property(lambda self: self.FORMAT)

    @property
    def levels(self):
        """The sorted distinct levels (``alpha = 1``), as float64: ``weight_levels(fmt, bits)``."""
        return torch.cat([-self._levels[1:].flip(0), self._levels])

    def _check(self, w):
        _check_channels(type(self).__name__, w, self._channels, dim=0)

    def _per_channel(self, w):
        return w.reshape(self._channels, -1)

    def _init_scale(self, w):
        return torch.quantile(self._per_channel(w.abs()), 0.99, dim=1)

    def _alpha_view(self, alpha, w):
        return alpha.view((-1,) + (1,) * (w.dim() - 1))

    def _project(self, v):
        """The nearest level of each ``v`` in ``[-1, 1]`` (in ``v``'s dtype) and its code.

        ``searchsorted`` (left) counts the midpoints strictly below ``|v|``: a ``|v|`` exactly
        on a midpoint takes the smaller magnitude.
        """
        index = torch.searchsorted(self._midpoints, v.abs().to(torch.float64))
        m = self._codes[index]
        negative = (v < 0) & (m != 0)  # zero keeps the canonical code 0
        code = numerics.join_code(self._bits, negative.to(torch.int64), m)
        level = torch.where(negative, -self._levels[index], self._levels[index])
        return level.to(v.dtype), code

    def forward(self, w):
        self._check(w)
        self._ready(w, init=True)
        g = 1 / math.sqrt(self._per_channel(w).shape[1])
        alpha = self._alpha_view(grad_scale(self.alpha, g), w)
        v = torch.clamp(w / alpha, -1.0, 1.0)
        return ste(v, self._project(v.detach())[0]) * alpha

    @torch.no_grad()
    def codes(self, w):
        """The unsigned ``bits``-bit codes of ``core.numerics`` (sign bit, magnitude code)."""
        self._check(w)
        self._ready(w, init=False)
        return self._project(torch.clamp(w / self._alpha_view(self.alpha, w), -1.0, 1.0))[1]


class PotQuantizer(_ExponentQuantizer):
    """Power-of-two weights: levels ``{0} U {+-2**-n : n = 0 .. 2**(bits-1) - 2}``.

    Same contract as ``PostQuantizer``, with the ``pot`` format of ``core.numerics``.
    """

    FORMAT = "pot"


class PostQuantizer(_ExponentQuantizer):
    """Power-of-sqrt(2) weights with a learned per-output-channel clipping threshold ``alpha``.

    ``w_hat = alpha * P(clamp(w / alpha, -1, 1))`` where ``P`` takes the nearest level of
    ``core.numerics.weight_levels(fmt, bits)`` in the linear domain, a tie going to the smaller
    magnitude (as ``core.numerics.nearest_code``). The levels are float64 in ``core.numerics``
    and are rounded to the weight's dtype, so ``forward(w)`` equals
    ``weight_value(codes(w)) * alpha`` in that dtype, exactly.

    Parameters
    ----------
    bits : int
        Code width, 2 to 8: a sign bit and a ``(bits-1)``-bit magnitude code.
    channels : int
        Output channels (dimension 0 of the weight), one ``alpha`` each.

    Members
    -------
    alpha : Parameter
        The clipping thresholds, shape ``(channels,)``.
    """

    FORMAT = "post"
