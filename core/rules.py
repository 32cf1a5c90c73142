"""What the tool accepts and what the hardware can run: one definition, no PyTorch.

The vocabulary (methods and bit-widths) and the mapping rules are checked in three places with
the same functions and the same messages:

* where a float model is wrapped, before any training (``export.wrap.quantize_model``);
* at export (``export.to_bundle.export_bundle``);
* wherever a bundle meets the hardware (``asqgen verilog --bundle``, ``compare``, ``sim``:
  ``check_bundle``).

A layer is always named by the user's module path (``'3'`` for ``model[3]`` of an
``nn.Sequential``, ``'features.conv1'`` for an attribute path), from the wrap to the bundle to
the simulation report. Every refusal raises ``MappingError`` with one line:
``layer '<name>' (<Type>) cannot be mapped to the accelerator: <what, and the limit>; <what to
change>``.

What runs on the hardware
-------------------------
A chain of ``Conv2d`` (square kernel, one stride, one zero padding, no dilation; depthwise
``groups`` in a format-3 bundle, ``export.graph.check_conv``) and
``Linear`` layers, each followed by an optional batch norm (folded), ``ReLU`` and, after a
conv, ``MaxPool2d(2)``; in a format-3 bundle (``core.bundle``) also a bounded ReLU (ReLU6),
``AvgPool2d(2)``, a global average pooling and ResNet's option-A shortcut; ``Flatten`` between
a conv and a linear layer; ``Dropout`` and ``Identity`` are skipped. Inputs are unsigned:
negative inputs are clamped to 0 by the first quantizer (``check_inputs``). Weights: ``post`` /
``pot`` (one format and width for all middle layers of a bundle) or signed LSQ (``int``, run as
signed-digit terms); the products of one output must fit the rescale (``check_accumulator``: in
practice post/pot weights of at most 4 bits). Activations: LSQ, or ASQ on the input of a conv
layer (not of a linear layer, and with an adapter small enough for the rescale unit,
``check_adapter``).
"""

from . import numerics, regmap, rescale
from .adapter import adapter_hidden
from .errors import BundleError

__all__ = [
    "WEIGHT_METHODS", "ACT_METHODS", "BITS", "RECIPE_BITS", "WEIGHT_FORMAT",
    "POOL", "MAX_CHANNELS", "MAX_ADAPTER_WEIGHTS", "MAX_POSITIONS", "MAX_K", "SUPPORTED",
    "MappingError", "check_bits", "check_weight_method", "check_act_method", "refuse",
    "check_pool", "check_act", "check_accumulator", "max_k", "check_adapter", "check_size",
    "check_inputs", "check_bundle",
]

# The vocabulary -----------------------------------------------------------------------------
WEIGHT_METHODS = ("lsq", "pot", "post")      # weight quantizers (lsq: signed uniform, int)
ACT_METHODS = ("lsq", "asq")                 # activation quantizers (unsigned)
BITS = numerics.WEIGHT_BITS                  # code widths of a quantized layer: 2 to 8
RECIPE_BITS = (2, 3, 4, 8)                   # widths the digits recipe offers (asqgen train)
WEIGHT_FORMAT = {"lsq": "int", "pot": "pot", "post": "post"}   # method -> hardware format

# The hardware's limits ----------------------------------------------------------------------
POOL = 2                    # the rescale unit pools 2x2 windows with stride 2, nothing else
# The register map's index grows with the engine (``regmap.index_bits_for``) up to its ceiling:
MAX_CHANNELS = 1 << 16                             # output channels of a layer
MAX_ADAPTER_WEIGHTS = 1 << regmap.MAX_INDEX_BITS   # adapter hidden units x the widest channels
MAX_POSITIONS = 1 << 16     # output positions of a conv per sample (accumulator buffer depth)
MAX_K = 1 << 20             # inputs of one output (in_channels x kernel x kernel)

SUPPORTED = ("Conv2d, Linear, BatchNorm2d, BatchNorm1d, ReLU, ReLU6, Hardtanh, MaxPool2d, "
             "AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Identity in nn.Sequential "
             "containers")


class MappingError(BundleError):
    """A model or bundle that the hardware cannot run; one line naming the layer (a bundle
    error to the command line: exit status 3)."""


def _int(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")


def check_bits(name, value, allowed=BITS):
    """``value`` is one of ``allowed`` (``TypeError`` / ``ValueError`` otherwise)."""
    _int(name, value)
    if value not in allowed:
        text = (f"from {allowed.start} to {allowed.stop - 1}" if isinstance(allowed, range)
                else f"one of {', '.join(map(str, allowed))}")
        raise ValueError(f"{name} must be {text}, not {value}")
    return value


def _check_method(value, name, allowed, none):
    if value not in allowed + ((None,) if none else ()):
        raise ValueError(f"{name} must be one of {', '.join(allowed)}"
                         f"{f' or {none}' if none else ''}, not {value!r}")
    return value


def check_weight_method(value, name="weight_method", *, none=None):
    """``value`` is one of ``WEIGHT_METHODS`` (or ``None`` when ``none`` names it, e.g.
    ``"None"`` or ``"null"``: a float tensor)."""
    return _check_method(value, name, WEIGHT_METHODS, none)


def check_act_method(value, name="act_method", *, none=None):
    """``value`` is one of ``ACT_METHODS`` (or ``None`` when ``none`` names it)."""
    return _check_method(value, name, ACT_METHODS, none)


# The mapping rules --------------------------------------------------------------------------
def refuse(name, kind, why=None, fix=None):
    """Raise the one-line ``MappingError`` of layer ``name`` (its type ``kind``): what does not
    fit (``why``) and what to change (``fix``, by default the list of supported layers)."""
    what = f"layer {name!r} ({kind})" if name else f"the model ({kind})"
    fix = fix or f"supported are {SUPPORTED}"
    raise MappingError(f"{what} cannot be mapped to the accelerator: "
                       + "; ".join(x for x in (why, fix) if x))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def check_conv(name, kind, *, kernel_size, stride, padding, groups=1, dilation=1,
               padding_mode="zeros"):
    """A ``Conv2d``'s hyper-parameters (as PyTorch gives them): square kernel, one stride, one
    numeric zero padding, no groups or dilation."""
    if groups != 1:
        refuse(name, kind, f"groups={groups} (a grouped or depthwise convolution: the "
                           f"accelerator runs groups=1 only)", "use groups=1")
    if _pair(dilation) != (1, 1):
        refuse(name, kind, f"dilation={dilation}")
    if isinstance(padding, str):
        refuse(name, kind, f"padding={padding!r} (give the padding as a number)")
    for key, value in (("kernel_size", kernel_size), ("stride", stride), ("padding", padding)):
        a, b = _pair(value)
        if a != b:
            refuse(name, kind, f"{key}={value} is not square")
    if padding_mode != "zeros":
        refuse(name, kind, f"padding_mode={padding_mode!r}")


def check_maxpool(name, kind, *, kernel_size, stride, padding=0, dilation=1, ceil_mode=False,
                  return_indices=False):
    """A ``MaxPool2d``: a square kernel equal to its stride, and 2x2 (``check_pool``)."""
    k, s = _pair(kernel_size), _pair(stride if stride is not None else kernel_size)
    if (k[0] != k[1] or s != k or _pair(padding) != (0, 0) or _pair(dilation) != (1, 1)
            or ceil_mode or return_indices):
        refuse(name, kind, "only max pooling with a square kernel equal to its stride, no "
                           "padding, dilation, ceil_mode or indices")
    check_pool(name, k[0], kind)


def _type(kind):
    return {"conv2d": "Conv2d", "linear": "Linear"}.get(kind, kind)


def check_pool(name, kernel, kind="MaxPool2d", pool_type="MaxPool2d"):
    """Pooling must be ``MaxPool2d(2)`` or, for average pooling (bundle format 3: the rescale
    unit adds the window, ``pool_type`` ``"AvgPool2d"``), ``AvgPool2d(2)`` (kernel 2,
    stride 2)."""
    if kernel not in (0, 1, POOL):
        refuse(name, kind, f"the hardware pools {POOL}x{POOL} only, not {kernel}x{kernel}",
               f"use {pool_type}({POOL})" + (f" ({kernel.bit_length() - 1} times for "
                                             f"{kernel}x{kernel})"
                                             if kernel & (kernel - 1) == 0 else ""))


def check_act(name, kind, method, *, first=False):
    """The input quantizer of a layer of ``kind`` (``"conv2d"``/``"linear"``, or the torch
    type name): LSQ everywhere, ASQ on the input of a conv that is not the first layer."""
    t = _type(kind)
    if method != "asq":
        return
    if first:
        refuse(name, t, "the first layer's input must be LSQ (the host quantizes the input "
                        "with one fixed step), not ASQ", "use act_method 'lsq' for this layer")
    if t == "Linear":
        refuse(name, t, "ASQ on the input of a linear layer is not supported by the hardware "
                        "(its adapter reads the whole vector)",
               "use act_method 'lsq' for this layer")


def _acc_bound(w_format, w_bits, a_bits, k):
    fmt = numerics.ProductFormat(w_format=w_format, a_bits=a_bits, w_bits=w_bits,
                                 frac_bits=numerics.default_frac_bits(w_format, w_bits))
    return k * fmt.bound


def _fits(bound):
    # The same limit as core.rescale.fixed_point: acc * beta * m must stay below 2**62.
    return (bound * rescale.BETA_MAX * (1 << (rescale.MANTISSA_BITS - 1))).bit_length() \
        <= rescale.INT64_HEADROOM


def max_k(w_format, w_bits, a_bits):
    """The most products one output of the rescale can take for these widths (0: none)."""
    one = _acc_bound(w_format, w_bits, a_bits, 1)
    limit = ((1 << rescale.INT64_HEADROOM) - 1) // (rescale.BETA_MAX
                                                   << (rescale.MANTISSA_BITS - 1))
    return limit // one


def check_accumulator(name, kind, w_format, w_bits, a_bits, k):
    """The sum of ``k`` products of one output must fit the rescale's 62-bit arithmetic."""
    if k > MAX_K:
        refuse(name, _type(kind), f"{k} inputs per output (in_channels x kernel x kernel) is "
                                  f"more than the hardware's {MAX_K}", "use fewer channels")
    if not _fits(_acc_bound(w_format, w_bits, a_bits, k)):
        most = max_k(w_format, w_bits, a_bits)
        fix = ("use post or pot weights of at most 4 bits, or lsq weights" if w_format != "int"
               else "use fewer bits")
        limit = f"at most {most} for these widths" if most else "even one is"
        refuse(name, _type(kind),
               f"{k} products of {a_bits}-bit activations and {w_bits}-bit {w_format} weights "
               f"are too wide for the rescale ({limit})", fix)


def check_adapter(name, kind, channels, widest, widest_name=None, hidden=None):
    """An ASQ adapter on ``channels`` inputs (``hidden`` units, by default those that
    ``quantize_model`` gives it) in a network whose widest layer has ``widest`` output
    channels: its hidden units times ``widest`` must fit the rescale unit."""
    hidden = adapter_hidden(channels) if hidden is None else hidden
    if max(hidden, 1) * widest > MAX_ADAPTER_WEIGHTS:
        where = f" (layer {widest_name!r})" if widest_name else ""
        refuse(name, _type(kind),
               f"the ASQ adapter on its {channels} input channels has {hidden} hidden units, "
               f"and {hidden} x {widest} channels of the widest layer{where} is more than the "
               f"{MAX_ADAPTER_WEIGHTS} adapter weights of the largest rescale unit the "
               f"generator makes ({regmap.MAX_INDEX_BITS} index bits)",
               "use act_method 'lsq' for this layer, or fewer channels")


def check_size(name, kind, out_channels, positions):
    if out_channels > MAX_CHANNELS:
        refuse(name, _type(kind), f"{out_channels} output channels is more than the hardware's "
                                  f"{MAX_CHANNELS}", "use fewer channels")
    if positions > MAX_POSITIONS:
        refuse(name, _type(kind), f"{positions} output positions per sample is more than the "
                                  f"hardware's {MAX_POSITIONS}", "use a smaller input or a "
                                                                 "stride")


def check_inputs(name, kind, minimum):
    """The first layer's input codes are unsigned: refuse negative inputs."""
    if minimum < 0:
        refuse(name, kind, f"the inputs hold negative values (down to {minimum:.4g}), which "
                           f"the unsigned input quantizer clamps to 0",
               "shift and scale the inputs to be non-negative (for example min-max scaling "
               "to [0, 1])")


def check_bundle(bundle):
    """Every rule on a loaded ``core.bundle.Bundle``; raise ``MappingError`` on the first
    layer that the hardware cannot run."""
    layers = bundle.layers
    widest = max(layers, key=lambda la: la.out_channels)
    formats = {}
    for i, layer in enumerate(layers):
        kind = layer.kind
        check_size(layer.name, kind, layer.out_channels, layer.positions)
        pool_type = "AvgPool2d" if layer.pool_mode == "avg" else "MaxPool2d"
        check_pool(layer.name, layer.pool, f"{_type(kind)} + {pool_type}", pool_type)
        check_accumulator(layer.name, kind, layer.w_format, layer.w_bits, layer.a_bits,
                          layer.k)
        if i == 0 and layer.input_adapter:
            check_act(layer.name, kind, "asq", first=True)
        if layer.adapter is not None and i + 1 < len(layers):
            nxt = layers[i + 1]
            if layer.adapter.input != "channels" or nxt.kind == "linear":
                check_act(nxt.name, "linear", "asq")
            check_adapter(nxt.name, nxt.kind, layer.out_channels, widest.out_channels,
                          widest.name, hidden=layer.adapter.hidden)
        if layer.w_format != "int":
            formats.setdefault((layer.w_format, layer.w_bits, layer.frac_bits), layer.name)
    if len(formats) > 1:
        (a, na), (b, nb) = list(formats.items())[:2]
        raise MappingError(f"layers {na!r} ({a[0]}{a[1]}) and {nb!r} ({b[0]}{b[1]}) need "
                           f"different arrays: one bundle must use one weight format and width "
                           f"for its post/pot layers")
