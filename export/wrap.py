"""Wrap a float PyTorch model into its quantization-aware version: ``quantize_model``.

The recipe (``asq_post.md`` section 2, with the project's unsigned first input):

* the **first** ``Conv2d`` / ``Linear`` (in execution order): ``first_bits``-bit signed LSQ
  weights, one step per output channel (``int`` weights in hardware), and a ``first_bits``-bit
  **unsigned** LSQ input quantizer (the reference recipe quantizes the first input signed; the
  accelerator's activation codes are all unsigned and the images are non-negative);
* the **last** one: ``last_bits``-bit signed LSQ weights per output channel and a
  ``last_bits``-bit unsigned LSQ input quantizer (no adapter);
* **every other** one: ``bits``-bit weights of ``weight_method`` (``"lsq"``, ``"pot"``,
  ``"post"``) and a ``bits``-bit unsigned input quantizer of ``act_method`` (``"lsq"``,
  ``"asq"``).

``weight_method=None`` leaves every weight float (first and last included) and
``act_method=None`` every input: with both ``None`` the result is the float network built from
``QConv2d`` / ``QLinear`` without quantizers. Quantizer scales are not set here: they initialise
on the first forward pass in training mode (``export.quantizers``).

What can be mapped
------------------
The accelerator runs convolutions and fully connected layers, each followed by an optional
folded batch norm, ReLU and max pooling (``export.to_bundle``). Accepted modules, by exact type:
``Conv2d`` (``groups=1``, ``dilation=1``, square kernel, equal strides and equal numeric
paddings, ``padding_mode="zeros"``), ``Linear``, ``BatchNorm2d``, ``BatchNorm1d``, ``ReLU``,
``MaxPool2d`` (kernel = stride, no padding or dilation, no ``ceil_mode``), ``Flatten`` (from
dimension 1 to the end), ``Dropout`` and ``Identity`` (skipped at export). Containers are
``nn.Sequential``; another container module is accepted only if ``torch.fx`` shows its
``forward`` to be a plain chain through all its children in registration order (which is the
order the exporter assumes). Everything else (``GELU``, ``LSTM``, ``Conv1d``, ``AvgPool2d``
(the hardware has no average pooling), a grouped or dilated ``Conv2d``, a ``forward`` with a
residual addition or ``torch.flatten``, a layer that is already quantized) is refused with a
``ValueError`` that names the layer's module path and type. The order of the layers (batch
norm before ReLU before pooling) is checked at export, not here.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from .layers import ACT_METHODS, WEIGHT_METHODS, QConv2d, QLinear, quantized_conv2d, \
    quantized_linear

__all__ = ["SUPPORTED", "quantize_model", "check_mappable"]

SUPPORTED = ("Conv2d, Linear, BatchNorm2d, BatchNorm1d, ReLU, MaxPool2d, Flatten, Dropout, "
             "Identity in nn.Sequential containers")

_COMPUTE = (nn.Conv2d, nn.Linear)
_PLAIN = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Identity)


def _refuse(path, module, why=None):
    detail = f"{why}; " if why else ""
    what = f"layer {path!r}" if path else "the model"
    raise ValueError(f"{what} ({type(module).__name__}) cannot be mapped to the accelerator: "
                     f"{detail}supported are {SUPPORTED}")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _check_conv(path, m):
    if m.groups != 1:
        _refuse(path, m, f"groups={m.groups}")
    if _pair(m.dilation) != (1, 1):
        _refuse(path, m, f"dilation={m.dilation}")
    if isinstance(m.padding, str):
        _refuse(path, m, f"padding={m.padding!r} (give the padding as a number)")
    for name in ("kernel_size", "stride", "padding"):
        a, b = _pair(getattr(m, name))
        if a != b:
            _refuse(path, m, f"{name}={getattr(m, name)} is not square")
    if m.padding_mode != "zeros":
        _refuse(path, m, f"padding_mode={m.padding_mode!r}")


def _check_leaf(path, m):
    t = type(m)
    if t is nn.Conv2d:
        _check_conv(path, m)
    elif t is nn.MaxPool2d:
        k, s = _pair(m.kernel_size), _pair(m.stride)
        if (k[0] != k[1] or s != k or _pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1)
                or m.ceil_mode or m.return_indices):
            _refuse(path, m, "only max pooling with a square kernel equal to its stride, no "
                             "padding, dilation, ceil_mode or indices")
    elif t is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            _refuse(path, m, f"only Flatten(1, -1), not Flatten({m.start_dim}, {m.end_dim})")
    elif t is nn.Linear or t in _PLAIN:
        pass
    elif isinstance(m, (QConv2d, QLinear)):
        _refuse(path, m, "the layer is already quantized")
    else:
        _refuse(path, m)


class _ChildrenAreLeaves(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return True


def _check_chain(path, module):
    """A non-Sequential container must call each child once, in order, as a chain."""
    names = [n for n, _ in module.named_children()]
    try:
        graph = _ChildrenAreLeaves().trace(module)
    except Exception as e:  # noqa: BLE001  (any tracing failure means: not a plain chain)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        _refuse(path, module, f"torch.fx cannot trace its forward ({first})")
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    previous = inputs[0] if len(inputs) == 1 else None
    chain = previous is not None
    for node in nodes:
        chain = chain and node.op == "call_module" and node.args == (previous,) \
            and not node.kwargs
        previous = node
    if not chain or [n.target for n in nodes] != names:
        _refuse(path, module, "its forward is not a plain chain through its children in "
                              "registration order (use nn.Sequential and nn.Flatten)")


def _user_defined(module):
    """A container class of the user's (torch's own, such as ``MultiheadAttention``, are not)."""
    return not type(module).__module__.startswith("torch.")


def _walk(module, prefix=""):
    """Check everything; yield ``(path, parent, name, module)`` of every compute layer."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) in _COMPUTE:
            _check_leaf(path, child)
            yield path, module, name, child
        elif type(child) is nn.Sequential:
            yield from _walk(child, path)
        elif next(child.children(), None) is not None and _user_defined(child):
            _check_chain(path, child)
            yield from _walk(child, path)
        else:
            _check_leaf(path, child)


def check_mappable(model):
    """Raise ``ValueError`` naming the first layer of ``model`` that cannot be mapped."""
    _compute_layers(model)


def _compute_layers(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model must be an nn.Module, not {type(model).__name__}")
    if next(model.children(), None) is None:
        raise ValueError(f"the model must be a container of layers (nn.Sequential), not a "
                         f"single {type(model).__name__}")
    if type(model) is not nn.Sequential:
        if not _user_defined(model):
            _refuse("", model)
        _check_chain("", model)
    layers = list(_walk(model))
    if not layers:
        raise ValueError("the model has no Conv2d or Linear layer")
    return layers


def _check_bits(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 2 <= value <= 8:
        raise ValueError(f"{name} must be from 2 to 8, not {value}")


def _quantized(m, *, bits, weight_method, act_method):
    if isinstance(m, nn.Conv2d):
        q = quantized_conv2d(m.in_channels, m.out_channels, m.kernel_size,
                             weight_method=weight_method, act_method=act_method, bits=bits,
                             stride=m.stride, padding=m.padding, bias=m.bias is not None)
    else:
        q = quantized_linear(m.in_features, m.out_features, weight_method=weight_method,
                             act_method=act_method, bits=bits, bias=m.bias is not None)
    q = q.to(device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    q.weight.requires_grad_(m.weight.requires_grad)
    if m.bias is not None:
        q.bias.requires_grad_(m.bias.requires_grad)
    q.train(m.training)
    return q


def quantize_model(float_model, *, bits, weight_method, act_method, first_bits=8, last_bits=8):
    """The quantization-aware copy of ``float_model`` (which is left unchanged).

    Parameters
    ----------
    float_model : nn.Module
        An ``nn.Sequential`` (or a plain-chain container) of the supported layers.
    bits : int
        Weight and activation code width of every layer but the first and the last, 2 to 8.
    weight_method : {"lsq", "pot", "post", None}
    act_method : {"lsq", "asq", None}
    first_bits, last_bits : int
        Code widths of the first and the last compute layer (LSQ weights and inputs), 2 to 8.

    Returns
    -------
    nn.Module
        A deep copy in which every ``Conv2d`` is a ``QConv2d`` and every ``Linear`` a
        ``QLinear`` with the same hyper-parameters, weights and biases; every other module
        (batch norm with its running statistics included) is copied unchanged.

    Raises
    ------
    ValueError
        A layer that cannot be mapped to the accelerator (the message names its module path
        and type), a bad method or width.
    """
    for name, value in (("bits", bits), ("first_bits", first_bits), ("last_bits", last_bits)):
        _check_bits(name, value)
    if weight_method not in WEIGHT_METHODS:
        raise ValueError(f"weight_method must be one of {WEIGHT_METHODS}, not {weight_method!r}")
    if act_method not in ACT_METHODS:
        raise ValueError(f"act_method must be one of {ACT_METHODS}, not {act_method!r}")
    _compute_layers(float_model)                    # refuse before copying anything
    model = copy.deepcopy(float_model)
    layers = _compute_layers(model)
    for i, (_, parent, name, m) in enumerate(layers):
        if i == 0:
            b, wm, am = first_bits, "lsq", "lsq"
        elif i == len(layers) - 1:
            b, wm, am = last_bits, "lsq", "lsq"
        else:
            b, wm, am = bits, weight_method, act_method
        setattr(parent, name, _quantized(m, bits=b,
                                         weight_method=wm if weight_method is not None else None,
                                         act_method=am if act_method is not None else None))
    return model
