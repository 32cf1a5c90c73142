"""From a trained quantized PyTorch model to a bundle (``core.bundle``), and PyTorch's side of a
comparison with the golden model.

The model is walked in execution order (containers such as ``nn.Sequential`` are entered), or
read from its ``torch.fx`` graph when its ``forward`` calls functions (``export.graph``: a
residual network, functional ReLUs, poolings, flattens). Each ``QConv2d`` or ``QLinear``
starts a layer, named by its module path (``"3"``, ``"features.0"``: the names of
``quantize_model`` and of every report); it may be followed, in this order, by a batch norm
(folded into a per-channel scale and bias), a ReLU or a clipped one (``ReLU6``,
``Hardtanh(0, t)``: ``clip``; none after a linear bottleneck or a residual sum: ``relu``
false), a 2x2 pooling (``MaxPool2d(2)``, or ``AvgPool2d(2)``:
``pool_mode="avg"``), a global average pooling (``AdaptiveAvgPool2d(1)``, ``x.mean((2, 3))``,
an ``AvgPool2d`` over the whole map: ``global_pool``); a flatten may stand before a
``QLinear``; ``Dropout`` and ``Identity`` are skipped. An option-A shortcut gives the layer's
``shortcut_stride`` and ``shortcut_pad``. A depthwise conv (``groups == in_channels ==
out_channels``) gives ``groups``. A layer whose readers quantize its output with a signed LSQ
quantizer (a value with no ReLU before it, ``export.wrap``) is ``next_signed`` and its readers
``a_signed``: their codes are two's complement, ``clamp(round(x / s), -2**(b-1), 2**(b-1) -
1)``. Anything else is refused with an error naming the module. The hardware's limits
(``core.rules``) were checked by ``quantize_model`` and are checked again on the bundle by
``asqgen verilog --bundle``, ``compare`` and ``sim``; the golden model alone
(``sim.golden.run_network``) also runs what the hardware cannot (an ASQ adapter on a vector).

Test data
---------
``export_bundle(model, input_shape=..., reference_inputs=x, reference_labels=y)`` stores the
user's test inputs with PyTorch's side of them in the bundle's reference arrays:
``reference.images`` (the float inputs, images or feature vectors, ``(N,) + input_shape``),
``reference.labels`` (optional, ``(N,)`` integer classes), ``reference.logits`` (PyTorch's
outputs), ``reference.codes`` (the input codes) and ``reference.layer{i}.codes`` (PyTorch's
input codes of compute layer ``i >= 1``, ``uint8``, or ``int8`` for a layer whose input codes
are signed). ``asqgen compare`` and ``asqgen sim``
read them: nothing of the digits data set is assumed. The bundle's ``meta["fingerprint"]``
(``fingerprint(model)``) ties it to the model it was exported from.
"""

import hashlib

import numpy as np
import torch
from torch import nn

from core import numerics, rules
from core.adapter import Adapter
from core.bundle import Bundle, Layer
from core.errors import BundleError

from . import graph as _graph
from .layers import QConv2d, QLinear
from .quantizers import AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer

__all__ = ["ExportError", "export_bundle", "torch_trace", "fingerprint", "reference_codes"]

_SKIPPED = (nn.Dropout, nn.Identity)
_LEAVES = (QConv2d, QLinear, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Hardtanh,
           nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


class ExportError(BundleError):
    """A model that cannot be exported; the message names the module (a bundle error to the
    command line: exit status 3)."""


def _leaves(module, prefix=""):
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, _SKIPPED):
            continue
        if isinstance(child, _LEAVES):
            yield path, child
        elif len(list(child.children())) > 0:
            yield from _leaves(child, path)
        else:
            rules.refuse(path, type(child).__name__)


def _groups(model):
    """``[(path, compute module, [following modules], graph)]``: ``graph`` is ``None`` for a
    chain, else ``(source, shortcut, projection, shortcut_stride, shortcut_pad)`` with indices
    into the list (``export.graph``: a model read from its ``forward``). A model read from its
    ``forward`` that is a chain after all (no shortcut, each layer reading the previous one) is
    a chain."""
    if _graph.needs_graph(model):
        layers = _graph.analyse(model, quantized=True)
        chain = all(la.shortcut is None and not la.projection and
                    la.source == (i - 1 if i else None) for i, la in enumerate(layers))
        return [(la.path, la.module, la.following,
                 None if chain else (la.source, la.shortcut, la.projection, la.shortcut_stride,
                                     la.shortcut_pad))
                for la in layers]
    return [(path, mod, rest, None) for path, mod, rest in _chain_groups(model)]


def _chain_groups(model):
    groups = []
    for path, mod in _leaves(model):
        if isinstance(mod, (QConv2d, QLinear)):
            groups.append((path, mod, []))
        elif not groups:
            raise ExportError(f"layer {path!r} ({type(mod).__name__}) comes before the first "
                              f"QConv2d or QLinear")
        else:
            groups[-1][2].append((path, mod))
    if not groups:
        raise ExportError("the model has no QConv2d or QLinear layer")
    return groups


def _weights(path, mod):
    wq = mod.weight_quantizer
    w = mod.weight.detach()
    if isinstance(wq, (PostQuantizer, PotQuantizer)):
        fmt = "post" if isinstance(wq, PostQuantizer) else "pot"
        return fmt, wq.bits, wq.codes(w).numpy(), wq.alpha.detach().double().numpy()
    if isinstance(wq, LsqQuantizer) and wq.signed:
        codes = numerics.int_code(wq.bits, wq.codes(w).numpy())
        step = wq.step.detach().double().numpy()
        alpha = np.broadcast_to(step, (w.shape[0],)).copy()
        return "int", wq.bits, codes, alpha
    raise ExportError(f"layer {path!r} needs POST, POT or signed LSQ weights, not "
                      f"{type(wq).__name__ if wq is not None else 'float weights'}")


def _act(path, mod):
    aq = mod.act_quantizer
    if isinstance(aq, AsqQuantizer):
        ad = aq.adapter
        np64 = lambda t: t.detach().double().numpy()
        first, second = (ad.hidden, ad.output) if ad.hidden is not None else (ad.output, None)
        adapter = Adapter(w1=np64(first.weight), b1=np64(first.bias),
                          w2=None if second is None else np64(second.weight),
                          b2=None if second is None else np64(second.bias),
                          input="channels" if aq.kind == "conv" else "vector")
        return aq.bits, float(aq.step), adapter, False
    if isinstance(aq, LsqQuantizer) and aq.per_channel is None:
        return aq.bits, float(aq.step), None, aq.signed
    raise ExportError(f"layer {path!r} needs an unsigned ASQ or per-tensor LSQ input quantizer, "
                      f"not {type(aq).__name__ if aq is not None else 'a float input'}")


def _following(path, mod, rest, kind):
    """Folded batch norm, ReLU (and its clip), pooling and global pooling after a compute
    layer: a dict of ``Layer`` fields, and ``windows``, ``(path, type, k)`` of each global
    average pooling whose window ``k`` (or ``"square"``) must cover the map."""
    cout = mod.out_channels if kind == "conv2d" else mod.out_features
    scale = np.ones(cout)
    bias = (mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(cout))
    got = dict(relu=False, clip=None, pool=0, pool_mode="max", global_pool=False)
    windows, order = [], 0
    for p, m in rest:
        stage = _graph.stage_of(m) if isinstance(m, _LEAVES[2:]) else None
        if stage is not None and not isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            _graph.check_following(p, m)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and order == 0:
            a = (m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)).numpy()
            bias = a * bias + m.bias.detach().double().numpy() - a * m.running_mean.double().numpy()
            scale = a
            order = 1
        elif stage == 2 and order <= 1:
            got["relu"], order = True, 2
            if isinstance(m, nn.Hardtanh):                      # ReLU6 too
                got["clip"] = float(m.max_val)
        elif stage == 3 and order <= 2 and kind == "conv2d":
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            got["pool"], order = k, 3
            got["pool_mode"] = "avg" if isinstance(m, nn.AvgPool2d) else "max"
        elif stage == 4 and order <= 3 and kind == "conv2d":
            got["global_pool"], order = True, 4
            if isinstance(m, nn.AvgPool2d):
                windows.append((p, type(m).__name__, m.kernel_size if isinstance(
                    m.kernel_size, int) else m.kernel_size[0]))
            elif getattr(m, "square", False):
                windows.append((p, type(m).__name__, "square"))
        elif isinstance(m, nn.Flatten):
            order = 5
        else:
            raise ExportError(f"layer {p!r} ({type(m).__name__}) cannot follow {path!r} here: "
                              f"the order must be {_graph.ORDER}")
    return scale, bias, got, windows


def _check_windows(layer, windows):
    """Each global average pooling's window covers the map it pools (else ``MappingError``)."""
    if layer.kind != "conv2d":
        return
    _, h, w = layer.pooled_shape
    for p, kind, k in windows:
        if (k == "square" and h != w) or (k != "square" and (h, w) != (k, k)):
            what = (f"F.avg_pool2d(x, x.size()[3]) over a {h}x{w} map is not a global average "
                    f"pooling (the map is not square)" if k == "square" else
                    f"its {k}x{k} window does not cover the {h}x{w} map it pools, and the "
                    f"accelerator average-pools 2x2 windows or the whole map")
            rules.refuse(p, kind, what, "use AvgPool2d(2), or AdaptiveAvgPool2d(1) for a "
                                        "global average pooling")


def fingerprint(model):
    """A SHA-256 of ``model``'s state (every parameter and buffer: name, dtype, shape, bytes):
    the bundle stores it in ``meta["fingerprint"]`` so that a comparison never pairs a bundle
    with a model it was not exported from."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        a = value.detach().cpu().contiguous().numpy()
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def reference_codes(trace):
    """PyTorch's per-layer input codes of ``torch_trace`` as the bundle's reference arrays
    (``uint8``, or ``int8`` where the layer's input quantizer is signed)."""
    out = {"codes": trace["codes"][0]}
    signed = trace.get("signed") or [False] * len(trace["codes"])
    for i, codes in enumerate(trace["codes"][1:], start=1):
        # activation codes: 8 bits at most, two's complement where signed
        out[f"layer{i}.codes"] = codes.astype(np.int8 if signed[i] else np.uint8)
    return out


@torch.no_grad()
def export_bundle(model, *, input_shape, reference_inputs=None, reference_labels=None,
                  meta=None):
    """The ``Bundle`` of a trained quantized ``model``.

    Parameters
    ----------
    model : nn.Module
        A model from ``export.wrap.quantize_model``, trained.
    input_shape : tuple
        One input's shape: ``(C, H, W)`` for a conv network, ``(features,)`` for a linear one.
    reference_inputs : array or tensor, optional
        Test inputs ``(N,) + input_shape`` (float, non-negative). Stored with PyTorch's outputs
        and per-layer codes for ``asqgen compare`` and ``asqgen sim`` (see the module
        docstring); without them those commands refuse the bundle.
    reference_labels : array or tensor, optional
        Their true classes ``(N,)``, for accuracies; without them the reports give the
        agreement with PyTorch only.
    meta : dict, optional
        Plain JSON values stored in the manifest; ``fingerprint`` is added.

    Raises
    ------
    ValueError
        ``ExportError`` for a model that is not a quantized chain, ``core.rules.MappingError``
        for a malformed conv or pooling or negative reference inputs, and bad reference
        shapes.
    """
    model = model.eval()
    groups = _groups(model)
    layers, shape = [], tuple(input_shape)
    first_bits = first_step = None
    for i, (path, mod, rest, graph) in enumerate(groups):
        source = graph[0] if graph is not None else (i - 1 if i else None)
        if graph is not None and i > 0:
            shape = layers[source].out_shape
        kind = "conv2d" if isinstance(mod, QConv2d) else "linear"
        if kind == "conv2d":
            _graph.check_conv(path, mod)
        w_format, w_bits, codes, alpha = _weights(path, mod)
        a_bits, s_in, adapter, signed = _act(path, mod)
        if i == 0:
            if adapter is not None:
                rules.check_act(path, type(mod).__name__, "asq", first=True)
            if signed:
                raise ExportError(f"layer {path!r} quantizes the network's input with signed "
                                  f"codes: the input codes are unsigned (build the model with "
                                  f"quantize_model)")
            first_bits, first_step = a_bits, s_in
        else:
            prev = layers[source]
            if prev.next_step is not None and (prev.next_step, prev.next_bits,
                                               prev.next_signed) != (s_in, a_bits, signed):
                raise ExportError(f"layer {path!r} quantizes the output of {prev.name!r} "
                                  f"otherwise than another reader of it (one value has one "
                                  f"quantizer: build the model with quantize_model)")
            prev.next_step, prev.next_bits, prev.next_signed = s_in, a_bits, signed
            prev.adapter = adapter
        scale, bias, ops, windows = _following(path, mod, rest, kind)
        if kind == "conv2d" and len(shape) != 3:
            raise ExportError(f"layer {path!r} ({type(mod).__name__}) takes (C, H, W) inputs, "
                              f"but is given {shape} (input_shape={tuple(input_shape)})")
        in_shape = shape if kind == "conv2d" else (int(np.prod(shape)),)
        layer = Layer(
            name=path, kind=kind, in_shape=in_shape,
            out_channels=codes.shape[0], kernel=codes.shape[2] if kind == "conv2d" else 1,
            stride=mod.stride[0] if kind == "conv2d" else 1,
            padding=mod.padding[0] if kind == "conv2d" else 0,
            a_bits=a_bits, w_format=w_format, w_bits=w_bits,
            frac_bits=numerics.default_frac_bits(w_format, w_bits),
            weight=codes.astype(np.int64), alpha=alpha, bn_scale=scale, bn_bias=bias,
            s_in=s_in, input_adapter=adapter is not None, a_signed=signed,
            groups=mod.groups if kind == "conv2d" else 1, **ops)
        if graph is not None:
            layer.source = None if source is None else layers[source].name
            layer.shortcut = None if graph[1] is None else groups[graph[1]][0]
            layer.projection = graph[2]
            layer.shortcut_stride, layer.shortcut_pad = graph[3], graph[4]
        _check_windows(layer, windows)
        if layer.in_shape[0] != (mod.in_channels if kind == "conv2d" else mod.in_features):
            raise ExportError(f"layer {path!r} ({type(mod).__name__}) takes "
                              f"{mod.in_channels if kind == 'conv2d' else mod.in_features} "
                              f"inputs, but is given {layer.in_shape} "
                              f"(input_shape={tuple(input_shape)})")
        layers.append(layer)
        shape = layer.out_shape
    bundle = Bundle(input_shape=tuple(input_shape), input_bits=first_bits,
                    input_step=first_step, layers=layers,
                    meta=dict(meta or {}, fingerprint=fingerprint(model)))
    for i, layer in enumerate(layers):
        layer.fixed = layer.compute_fixed()
        if layer.shortcut is not None:
            layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    if reference_inputs is not None:
        bundle.reference = _reference(model, bundle, groups[0], reference_inputs,
                                      reference_labels)
    elif reference_labels is not None:
        raise ValueError("reference_labels need reference_inputs")
    return bundle


def _reference(model, bundle, first, inputs, labels):
    inputs = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    if tuple(inputs.shape[1:]) != bundle.input_shape or len(inputs) == 0:
        raise ValueError(f"reference_inputs must have shape (N,) + {bundle.input_shape}, not "
                         f"{tuple(inputs.shape)}")
    path, mod = first[0], first[1]
    rules.check_inputs(path, type(mod).__name__, float(inputs.min()))
    trace = torch_trace(model, inputs)
    reference = {"images": inputs.numpy(), "logits": trace["logits"], **reference_codes(trace)}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(inputs),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"reference_labels must be {len(inputs)} integer classes, not "
                             f"{labels.dtype} {labels.shape}")
        reference["labels"] = labels.astype(np.int64)
    return reference


@torch.no_grad()
def torch_trace(model, images):
    """PyTorch's fake-quantized run: the input codes of every ``QConv2d``/``QLinear`` (in
    order) and the logits, as numpy arrays, and ``signed``: whether each layer's input
    quantizer makes signed codes."""
    model = model.eval()
    modules = [g[1] for g in _groups(model)]            # the bundle's order
    found = {}

    def hook(i):
        def record(mod, args):          # returns None: the input is left as it is
            if i not in found:
                found[i] = mod.act_quantizer.codes(args[0]).numpy()
        return record

    hooks = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        logits = model(torch.as_tensor(images, dtype=torch.float32)).numpy()
    finally:
        for h in hooks:
            h.remove()
    signed = [bool(getattr(m.act_quantizer, "signed", False)) for m in modules]
    return {"codes": [found[i] for i in range(len(modules))], "logits": logits,
            "signed": signed}
