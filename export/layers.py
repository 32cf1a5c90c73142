"""Quantized convolution and linear layers: ``nn.Conv2d`` / ``nn.Linear`` with fake quantizers.

A layer quantizes its **input** with its activation quantizer and its **weight** with its weight
quantizer, then computes the float convolution or product of the two fake-quantized tensors
(the bias stays float). Either quantizer may be ``None``, which leaves that tensor float.
``quantized_conv2d`` and ``quantized_linear`` build a layer from method names.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from core import rules

from .quantizers import AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer

__all__ = [
    "WEIGHT_METHODS", "ACT_METHODS", "QConv2d", "QLinear",
    "weight_quantizer", "act_quantizer", "quantized_conv2d", "quantized_linear",
]

WEIGHT_METHODS = rules.WEIGHT_METHODS + (None,)     # None: a float tensor
ACT_METHODS = rules.ACT_METHODS + (None,)


def _check_quantizer(name, quantizer):
    if quantizer is not None and not isinstance(quantizer, nn.Module):
        raise TypeError(f"{name} must be an nn.Module or None, not {quantizer!r}")
    return quantizer


def _apply(quantizer, x):
    return x if quantizer is None else quantizer(x)


class _Quantized:
    """What ``QConv2d`` and ``QLinear`` share: two quantizers, applied in every forward."""

    def __init__(self, *args, weight_quantizer=None, act_quantizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quantizer = _check_quantizer("Weight quantizer", weight_quantizer)
        self.act_quantizer = _check_quantizer("Activation quantizer", act_quantizer)

    def _operands(self, x):
        """The fake-quantized input and weight."""
        return _apply(self.act_quantizer, x), _apply(self.weight_quantizer, self.weight)


class QConv2d(_Quantized, nn.Conv2d):
    """``nn.Conv2d`` on fake-quantized input and weight.

    Parameters
    ----------
    *args, **kwargs
        Those of ``nn.Conv2d``.
    weight_quantizer : nn.Module or None
        Applied to ``weight`` (``(out_channels, in_channels/groups, kH, kW)``) in every forward.
    act_quantizer : nn.Module or None
        Applied to the input in every forward.
    """

    def forward(self, x):
        x, weight = self._operands(x)
        return self._conv_forward(x, weight, self.bias)


class QLinear(_Quantized, nn.Linear):
    """``nn.Linear`` on fake-quantized input and weight.

    Parameters
    ----------
    *args, **kwargs
        Those of ``nn.Linear``.
    weight_quantizer : nn.Module or None
        Applied to ``weight`` (``(out_features, in_features)``) in every forward.
    act_quantizer : nn.Module or None
        Applied to the input in every forward.
    """

    def forward(self, x):
        x, weight = self._operands(x)
        return F.linear(x, weight, self.bias)


def _choices(values):
    return ", ".join(repr(v) for v in values)


def weight_quantizer(method, *, bits, channels):
    """The weight quantizer of ``method`` for ``channels`` output channels, or ``None``.

    ``"lsq"``: signed ``LsqQuantizer``, one step per output channel; ``"pot"``, ``"post"``:
    ``PotQuantizer`` / ``PostQuantizer``; ``None``: float weights.
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"Weight method must be one of {_choices(WEIGHT_METHODS)}, "
                         f"not {method!r}")
    if method == "lsq":
        return LsqQuantizer(bits=bits, signed=True, per_channel=channels)
    if method == "pot":
        return PotQuantizer(bits=bits, channels=channels)
    if method == "post":
        return PostQuantizer(bits=bits, channels=channels)
    return None


def act_quantizer(method, *, bits, channels, kind, signed=False):
    """The input quantizer of ``method``, or ``None``.

    ``"lsq"``: ``LsqQuantizer`` with one step, signed if ``signed``; ``"asq"``: ``AsqQuantizer``
    for ``channels`` input channels of a ``kind`` (``"conv"`` or ``"linear"``) layer, unsigned
    only; ``None``: float input, not signed.
    """
    if method not in ACT_METHODS:
        raise ValueError(f"Activation method must be one of {_choices(ACT_METHODS)}, "
                         f"not {method!r}")
    if not isinstance(signed, bool):
        raise TypeError(f"Signed input must be a bool, not {signed!r}")
    if signed and method != "lsq":
        raise ValueError(f"Signed input needs activation method 'lsq', not {method!r}")
    if method == "lsq":
        return LsqQuantizer(bits=bits, signed=signed)
    if method == "asq":
        return AsqQuantizer(bits=bits, channels=channels, kind=kind)
    return None


def quantized_conv2d(in_channels, out_channels, kernel_size, *, weight_method, act_method, bits,
                     signed_input=False, **kwargs):
    """A ``QConv2d`` with ``bits``-bit weights and input by method name (``nn.Conv2d`` kwargs)."""
    return QConv2d(in_channels, out_channels, kernel_size,
                   weight_quantizer=weight_quantizer(weight_method, bits=bits,
                                                     channels=out_channels),
                   act_quantizer=act_quantizer(act_method, bits=bits, channels=in_channels,
                                               kind="conv", signed=signed_input),
                   **kwargs)


def quantized_linear(in_features, out_features, *, weight_method, act_method, bits,
                     signed_input=False, **kwargs):
    """A ``QLinear`` with ``bits``-bit weights and input by method name (``nn.Linear`` kwargs)."""
    return QLinear(in_features, out_features,
                   weight_quantizer=weight_quantizer(weight_method, bits=bits,
                                                     channels=out_features),
                   act_quantizer=act_quantizer(act_method, bits=bits, channels=in_features,
                                               kind="linear", signed=signed_input),
                   **kwargs)
