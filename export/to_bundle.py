"""From a trained quantized PyTorch model to a bundle (``gen.bundle``), and PyTorch's side of a
comparison with the golden model.

The model is walked in execution order (containers such as ``nn.Sequential`` are entered).
Each ``QConv2d`` or ``QLinear`` starts a layer; it may be followed, in this order, by a batch
norm (folded into a per-channel scale and bias), a ReLU and a max pooling (kernel equal to its
stride); a ``Flatten`` may stand before a ``QLinear``; ``Dropout`` and ``Identity`` are
skipped. Anything else is refused with an error naming the module.
"""

import numpy as np
import torch
from torch import nn

from gen import numerics
from gen.bundle import Bundle, Layer

from .layers import QConv2d, QLinear
from .quantizers import AsqQuantizer, LsqQuantizer, PostQuantizer, PotQuantizer

__all__ = ["ExportError", "export_bundle", "torch_trace"]

_SKIPPED = (nn.Dropout, nn.Identity)
_LEAVES = (QConv2d, QLinear, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d, nn.Flatten)


class ExportError(ValueError):
    """A model that cannot be exported; the message names the module."""


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
            raise ExportError(f"layer {path!r} ({type(child).__name__}) cannot be exported: "
                              f"the accelerator runs QConv2d, QLinear, batch norm, ReLU, max "
                              f"pooling and flatten")


def _groups(model):
    """``[(path, compute module, [following modules])]``."""
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
        codes = wq.codes(w).numpy() & (2 ** wq.bits - 1)        # two's-complement patterns
        step = wq.step.detach().double().numpy()
        alpha = np.broadcast_to(step, (w.shape[0],)).copy()
        return "int", wq.bits, codes, alpha
    raise ExportError(f"layer {path!r} needs POST, POT or signed LSQ weights, not "
                      f"{type(wq).__name__ if wq is not None else 'float weights'}")


def _act(path, mod):
    aq = mod.act_quantizer
    if isinstance(aq, AsqQuantizer):
        ad = aq.adapter
        adapter = {"input": "channels" if aq.kind == "conv" else "vector"}
        if ad.hidden is not None:
            adapter.update(w1=ad.hidden.weight, b1=ad.hidden.bias, w2=ad.output.weight,
                           b2=ad.output.bias)
        else:
            adapter.update(w1=ad.output.weight, b1=ad.output.bias)
        adapter = {k: v if isinstance(v, str) else v.detach().double().numpy()
                   for k, v in adapter.items()}
        return aq.bits, float(aq.step), adapter
    if isinstance(aq, LsqQuantizer) and not aq.signed and aq.per_channel is None:
        return aq.bits, float(aq.step), None
    raise ExportError(f"layer {path!r} needs an unsigned ASQ or per-tensor LSQ input quantizer, "
                      f"not {type(aq).__name__ if aq is not None else 'a float input'}")


def _following(path, mod, rest, kind):
    """Folded batch norm, ReLU and pooling after a compute layer."""
    cout = mod.out_channels if kind == "conv2d" else mod.out_features
    scale = np.ones(cout)
    bias = (mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(cout))
    relu, pool, order = False, 0, 0
    for p, m in rest:
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and order == 0:
            a = (m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)).numpy()
            bias = a * bias + m.bias.detach().double().numpy() - a * m.running_mean.double().numpy()
            scale = a
            order = 1
        elif isinstance(m, nn.ReLU) and order <= 1:
            relu, order = True, 2
        elif isinstance(m, nn.MaxPool2d) and order <= 2 and kind == "conv2d":
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            if m.kernel_size not in (k, (k, k)) or s != k or m.padding not in (0, (0, 0)) \
                    or m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise ExportError(f"layer {p!r}: only max pooling with kernel = stride, no "
                                  f"padding or dilation can be exported")
            pool, order = k, 3
        elif isinstance(m, nn.Flatten):
            order = 4
        else:
            raise ExportError(f"layer {p!r} ({type(m).__name__}) cannot follow {path!r} here: "
                              f"the order must be batch norm, ReLU, max pooling, flatten")
    return scale, bias, relu, pool


def _check_conv(path, mod):
    k = mod.kernel_size
    if (mod.groups != 1 or mod.dilation != (1, 1) or k[0] != k[1] or mod.stride[0] != mod.stride[1]
            or mod.padding[0] != mod.padding[1] or isinstance(mod.padding, str)
            or mod.padding_mode != "zeros"):
        raise ExportError(f"layer {path!r}: only square convolutions without groups, dilation "
                          f"or non-zero padding modes can be exported")


@torch.no_grad()
def export_bundle(model, *, input_shape, reference_images=None, meta=None):
    """The ``Bundle`` of a trained quantized ``model`` whose input is ``input_shape``
    (``(C, H, W)``). ``reference_images`` (a float tensor) are stored with PyTorch's logits."""
    model = model.eval()
    groups = _groups(model)
    layers, shape = [], tuple(input_shape)
    first_bits = first_step = None
    for i, (path, mod, rest) in enumerate(groups):
        kind = "conv2d" if isinstance(mod, QConv2d) else "linear"
        if kind == "conv2d":
            _check_conv(path, mod)
        w_format, w_bits, codes, alpha = _weights(path, mod)
        a_bits, s_in, adapter = _act(path, mod)
        if i == 0:
            if adapter is not None:
                raise ExportError(f"layer {path!r}: the first layer's input must be LSQ (the "
                                  f"host quantizes the image), not ASQ")
            first_bits, first_step = a_bits, s_in
        else:
            layers[-1].next_step, layers[-1].next_bits = s_in, a_bits
            layers[-1].adapter = adapter
        scale, bias, relu, pool = _following(path, mod, rest, kind)
        in_shape = shape if kind == "conv2d" else (int(np.prod(shape)),)
        # Module paths of a plain Sequential are numbers: name those layers by kind instead.
        name = path if not path.replace(".", "").isdigit() else \
            f"{'conv' if kind == 'conv2d' else 'fc'}{i + 1}"
        layer = Layer(
            name=name, kind=kind, in_shape=in_shape,
            out_channels=codes.shape[0], kernel=codes.shape[2] if kind == "conv2d" else 1,
            stride=mod.stride[0] if kind == "conv2d" else 1,
            padding=mod.padding[0] if kind == "conv2d" else 0,
            a_bits=a_bits, w_format=w_format, w_bits=w_bits,
            frac_bits=numerics.default_frac_bits(w_format, w_bits), relu=relu, pool=pool,
            weight=codes.astype(np.int64), alpha=alpha, bn_scale=scale, bn_bias=bias,
            s_in=s_in, input_adapter=adapter is not None)
        layers.append(layer)
        shape = layer.out_shape
    for layer in layers:
        layer.fixed = layer.compute_fixed()
    bundle = Bundle(input_shape=tuple(input_shape), input_bits=first_bits,
                    input_step=first_step, layers=layers, meta=dict(meta or {}))
    if reference_images is not None:
        images = torch.as_tensor(reference_images, dtype=torch.float32)
        trace = torch_trace(model, images)
        bundle.reference = {"images": images.numpy(), "codes": trace["codes"][0],
                            "logits": trace["logits"]}
    return bundle


@torch.no_grad()
def torch_trace(model, images):
    """PyTorch's fake-quantized run: the input codes of every ``QConv2d``/``QLinear`` (in
    order) and the logits, as numpy arrays."""
    model = model.eval()
    codes = []
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: codes.append(mod.act_quantizer.codes(args[0]).numpy()))
        for _, m in _leaves(model) if isinstance(m, (QConv2d, QLinear))]
    try:
        logits = model(torch.as_tensor(images, dtype=torch.float32)).numpy()
    finally:
        for h in hooks:
            h.remove()
    return {"codes": codes, "logits": logits}
