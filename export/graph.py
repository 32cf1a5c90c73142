"""The layer graph of a residual network, read from its ``forward`` with ``torch.fx``.

``analyse(model)`` traces ``model`` (standard modules are leaves, user containers are traced
through) and returns its compute layers (``Conv2d``/``Linear``, or ``QConv2d``/``QLinear``
after ``quantize_model``) in the bundle's order, each with what follows it, the layer it reads
and its shortcut. What it maps (anything else is refused with ``core.rules.MappingError``, one
line naming the layer or the container whose ``forward`` holds the operation):

* a compute module on one tensor starts a layer; what follows it belongs to it, in this
  order: batch norm, the shortcut addition (below), a ReLU (the module, ``F.relu``/
  ``torch.relu``/``.relu()``) or a clipped one (``nn.ReLU6``, ``F.relu6``, ``nn.Hardtanh(0,
  t)``, ``F.hardtanh(x, 0, t)``: ``clip``), a 2x2 pooling (``MaxPool2d(2)``, ``AvgPool2d(2)``,
  ``F.avg_pool2d(x, 2)``), a global average pooling (``AdaptiveAvgPool2d(1)``,
  ``F.adaptive_avg_pool2d(x, 1)``, ``x.mean((2, 3))``/``torch.mean(x, dim=[2, 3])`` with any
  ``keepdim``, an ``AvgPool2d(k)``/``F.avg_pool2d(x, k)`` whose window is the whole map, or
  ``F.avg_pool2d(x, x.size()[3])``), and a flatten (``Flatten()``, ``torch.flatten(x, 1)``,
  ``x.flatten(1)``, ``x.view(x.size(0), -1)``, ``x.reshape(x.shape[0], -1)``); ``Dropout``
  and ``Identity`` are skipped; shape queries (``x.size()``, ``x.shape``) are not operations;
* an AvgPool2d window other than 2 is a global pooling only if it covers the map: the model
  that ``quantize_model`` returns checks this in its forward (``GraphLayer.windows``) and
  ``export_bundle`` on the shapes;
* a value (a layer's output after those) may be read by several compute layers and by one
  addition each: it is quantized once, by one quantizer that its readers share;
* ``a + b`` (``operator.add``, ``torch.add``, ``+=``) adds a shortcut to a conv layer's output
  after its batch norm and before its ReLU if it has one (the *main* operand: a conv whose
  output is read by the addition only). A ReLU after the addition is optional: ResNet's block
  has one, MobileNet-V2's inverted residual (``x + self.conv(x)``, the main operand the
  projection's batch norm) has none, and its sum is then a signed value. The other operand is
  either
  - an **identity** shortcut: the output of an earlier layer that compute layers also read
    (the block's input; the quantized value, see ``export.wrap``), possibly as ResNet's
    option-A shortcut: subsampled (``x[:, :, ::s, ::s]``) and/or padded with zero channels
    (``F.pad(x, (0, 0, 0, 0, a, b))``), inline or in a module (akamaster's ``LambdaLayer``):
    ``shortcut_stride = s``, ``shortcut_pad = a``, or
  - a **projection**: another conv (usually 1x1, strided) with at most a batch norm, read by
    the addition only. When both operands are such convs, the projection is the one that reads
    the earlier value (on a tie, the right operand);
* the model's output is the last layer's output, which nothing else reads;
* a ``Conv2d`` with ``groups=1``, or a depthwise one (``groups == in_channels ==
  out_channels``, a channel multiplier of 1; ``check_conv``); any other grouped conv is
  refused naming the layer.

A value with no ReLU (or ReLU6) before it (a *linear bottleneck*: a conv and its batch norm
with no activation, or a residual sum with no ReLU after it) is signed: ``export.wrap`` gives
its readers a signed quantizer (``signed_sources``), ``export.to_bundle`` marks the layer
``next_signed`` and its readers ``a_signed``.

A functional operation that cannot be mapped is refused naming the container whose
``forward`` calls it and that line of ``forward`` (``torch.fx``'s recorded stack traces).

The bundle's order is the order of the compute calls in ``forward``, except that a projection
is moved just before the layer that adds it (the golden model needs its ``z`` there).
"""

from __future__ import annotations

import linecache
import operator
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from core import rules

from .layers import QConv2d, QLinear
from .quantizers import AsqQuantizer, LsqQuantizer

__all__ = ["GraphLayer", "analyse", "analyse_graph", "has_addition", "needs_graph",
           "check_following", "check_conv", "stage_of", "is_global_pool", "has_relu"]

_COMPUTE = (nn.Conv2d, nn.Linear)                      # QConv2d / QLinear are subclasses
_FOLLOW = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.MaxPool2d,
           nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
_SKIP = (nn.Dropout, nn.Identity)
_QUANTIZERS = (LsqQuantizer, AsqQuantizer)
_ADD = (operator.add, operator.iadd, torch.add)
_RELU = (F.relu, torch.relu)
BLOCK = ("a residual block returns relu(bn2(conv2(...)) + shortcut), or the sum with no ReLU "
         "after it (MobileNet-V2's x + self.conv(x)), the shortcut being its input or a "
         "projection conv with batch norm (export/resnet.py's BasicBlock)")
ORDER = ("batch norm, shortcut addition, ReLU (or ReLU6), 2x2 pooling, global average pooling, "
         "flatten, each optional")
_STAGE = {nn.BatchNorm2d: 0, nn.BatchNorm1d: 0, nn.ReLU: 2, nn.ReLU6: 2, nn.Hardtanh: 2,
          nn.MaxPool2d: 3, nn.AvgPool2d: 3, nn.AdaptiveAvgPool2d: 4, nn.Flatten: 5}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def is_global_pool(m):
    """Whether the following module ``m`` is a global average pooling: an
    ``AdaptiveAvgPool2d(1)``, or an ``AvgPool2d`` whose window is not 2 (it must cover the
    map)."""
    if type(m) is nn.AdaptiveAvgPool2d:
        return True
    return type(m) is nn.AvgPool2d and _pair(m.kernel_size)[0] != rules.POOL


def stage_of(m):
    """The place of the following module ``m`` in a layer (``ORDER``): batch norm 0, addition
    1, ReLU 2, 2x2 pooling 3, global pooling 4, flatten 5."""
    return 4 if is_global_pool(m) else _STAGE[type(m)]


def has_relu(following):
    """Whether the modules ``following`` a compute layer (``GraphLayer.following``, or a
    chain's ``(path, module)`` pairs) hold a ReLU or a clipped one: else its output is signed."""
    return any(type(m) in (nn.ReLU, nn.ReLU6, nn.Hardtanh) for _, m in following)


def check_conv(path, m, kind=None):
    """Refuse (``MappingError``) a ``Conv2d`` that the accelerator cannot run
    (``core.rules.check_conv``), a depthwise conv (``groups == in_channels == out_channels``)
    accepted; any other grouped conv (``1 < groups < in_channels``, or a depthwise conv with a
    channel multiplier above 1) is refused in one line naming the layer."""
    kind = kind or type(m).__name__
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    if g != 1 and not g == cin == cout:
        what = (f"a depthwise convolution with a channel multiplier of {cout // cin}"
                if g == cin else "a grouped convolution")
        rules.refuse(path, kind, f"groups={g} with {cin} input and {cout} output channels "
                                 f"({what}: the accelerator runs groups=1, or a depthwise conv "
                                 f"with groups = in_channels = out_channels)",
                     "use groups=1, or groups=in_channels with out_channels=in_channels")
    rules.check_conv(path, kind, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                     groups=1, dilation=m.dilation, padding_mode=m.padding_mode)


def check_following(path, m, kind=None, prefix=""):
    """Refuse (``MappingError``) a following module whose parameters the accelerator cannot
    run; ``None`` otherwise. A functional operation is named by its container (``path``,
    ``kind``) and ``prefix`` (the call and its line)."""
    t = type(m)
    name = kind or t.__name__

    def refuse(path, name, why, fix=None):
        rules.refuse(path, name, prefix + why, fix)
    if t is nn.MaxPool2d:
        rules.check_maxpool(path, name, kernel_size=m.kernel_size, stride=m.stride,
                            padding=m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode,
                            return_indices=m.return_indices)
    elif t is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            refuse(path, name, f"only Flatten(1, -1), not Flatten({m.start_dim}, "
                                     f"{m.end_dim})")
    elif t is nn.Hardtanh:
        if m.min_val != 0 or not m.max_val > 0:
            refuse(path, name, f"only Hardtanh(0, t) with t > 0 (a ReLU clipped at t), "
                               f"not Hardtanh({m.min_val:g}, {m.max_val:g})",
                   "use ReLU, ReLU6 or Hardtanh(0, t)")
    elif t is nn.AvgPool2d:
        k = _pair(m.kernel_size)
        stride = k if m.stride is None or m.stride == [] else _pair(m.stride)
        if (k[0] != k[1] or stride != k or _pair(m.padding) != (0, 0) or m.ceil_mode or
                m.divisor_override is not None or k[0] < 2):
            refuse(path, name, "only average pooling with a square window of 2 or more "
                                     "equal to its stride, no padding, ceil_mode or "
                                     "divisor_override",
                         "use AvgPool2d(2), or a window that covers the whole map (a global "
                         "average pooling)")
    elif t is nn.AdaptiveAvgPool2d:
        if _pair(m.output_size) != (1, 1):
            refuse(path, name, f"only AdaptiveAvgPool2d(1) (a global average pooling), "
                               f"not output_size={m.output_size}",
                   "use AdaptiveAvgPool2d(1), or AvgPool2d(2)")


@dataclass
class GraphLayer:
    """One compute layer: its module path and module, the modules after it (``(path,
    module)``: batch norm, ReLU or ReLU6, pooling, global pooling, flatten; a functional one as
    its module, ``nn.ReLU``, ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``...), the index (in the
    returned list) of the layer it reads (``None``: the model's input), of its shortcut layer,
    and whether it is a projection. ``shortcut_stride``/``shortcut_pad``: an option-A
    identity shortcut; ``shortcut_reader``: the node that reads the shortcut layer's value
    (the addition, or the first slice or pad of an option-A shortcut); ``windows``: ``(path,
    kind, k, pool, prefix)`` of each average pooling that must cover the map (``k`` its window,
    or ``"square"`` for ``F.avg_pool2d(x, x.size()[3])``), ``pool`` the 2x2 pooling before it
    (1 or 2), ``prefix`` the functional call and its line, for the refusal."""

    path: str
    module: nn.Module
    following: list = field(default_factory=list)
    source: int | None = None
    shortcut: int | None = None
    projection: bool = False
    stage: int = -1               # the last stage (``stage_of``)
    closed: bool = False          # its output is read (quantized): nothing may follow it
    shortcut_stride: int = 1
    shortcut_pad: int = 0
    shortcut_reader: object = None
    windows: list = field(default_factory=list)


class _Tracer(fx.Tracer):
    def __init__(self):
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m, qualname):
        return isinstance(m, _COMPUTE + _FOLLOW + _SKIP + _QUANTIZERS) or \
            super().is_leaf_module(m, qualname)


def _trace(model):
    try:
        return _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001  (any tracing failure: the model cannot be read)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        rules.refuse("", type(model).__name__, f"torch.fx cannot trace its forward ({first})")


def _try_trace(model):
    try:
        return _Tracer().trace(model)
    except Exception:  # noqa: BLE001
        return None


def has_addition(model):
    """Whether ``model``'s traced ``forward`` adds tensors (then ``analyse`` maps it)."""
    graph = _try_trace(model)
    return graph is not None and any(_is_add(n) for n in graph.nodes)


def needs_graph(model):
    """Whether ``model`` is read from its traced ``forward`` (``analyse``) rather than as a
    chain of modules: its ``forward`` calls functions or tensor methods (an addition,
    ``F.relu``, ``x.mean``, ``torch.flatten``...)."""
    graph = _try_trace(model)
    return graph is not None and any(n.op in ("call_function", "call_method")
                                     for n in graph.nodes)


def _is_add(node):
    return (node.op == "call_function" and node.target in _ADD) or \
        (node.op == "call_method" and node.target in ("add", "add_", "__add__", "__iadd__"))


def _is_relu(node):
    return (node.op == "call_function" and node.target in _RELU) or \
        (node.op == "call_method" and node.target in ("relu", "relu_"))


def _is_fn(node, *fns, methods=()):
    return (node.op == "call_function" and any(node.target is f for f in fns)) or \
        (node.op == "call_method" and node.target in methods)


def _is_shape(node):
    """``x.size()``, ``x.size(d)``, ``x.shape``, ``x.dim()`` and indexing into those."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and len(node.args) == 2 and \
            node.args[1] == "shape":
        return True
    return (node.op == "call_function" and node.target is operator.getitem and
            isinstance(node.args[0], fx.Node) and _is_shape(node.args[0]))


def _readers(node):
    """The users of ``node`` that read its values (not its shape)."""
    return [u for u in node.users if not _is_shape(u)]


def _dim_of(node):
    """``(tensor node, d)`` for a shape node giving dimension ``d`` of a tensor, else
    ``None``."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_method" and node.target == "size" and len(node.args) == 2 and \
            isinstance(node.args[1], int):
        return node.args[0], node.args[1]
    if node.op == "call_function" and node.target is operator.getitem and \
            isinstance(node.args[1], int) and isinstance(node.args[0], fx.Node):
        inner = node.args[0]
        whole = (inner.op == "call_method" and inner.target == "size" and len(inner.args) == 1) \
            or (inner.op == "call_function" and inner.target is getattr)
        if whole:
            return inner.args[0], node.args[1]
    return None


def _where(node):
    """`` at file:line (code)`` of the user's line of ``forward`` that made ``node``."""
    trace = node.stack_trace or node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', trace)
    torch_dir = torch.__file__.rsplit("/", 1)[0]
    user = [f for f in frames if not f[0].startswith(torch_dir)]
    if not user:
        return ""
    file, line, _ = user[-1]
    code = linecache.getline(file, int(line)).strip()
    short = file.rsplit("/", 1)[-1]
    return f" at {short}:{line}" + (f" ({code})" if code else "")


def _owner(node, model):
    """``(path, type name)`` of the container whose ``forward`` holds ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        return path, getattr(kind, "__name__", str(kind))
    return "", type(model).__name__


def _arg(node, i, name, default):
    """Argument ``i`` (positional) or ``name`` (keyword) of ``node``."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _functional(node):
    """The module that a functional following operation amounts to, ``None`` if ``node`` is
    none, ``False`` if it is one with arguments that cannot be mapped (and a why)."""
    args, kw = node.args, node.kwargs
    extra = lambda *ok: [k for k in kw if k not in ok]
    if _is_fn(node, F.relu6):
        return (nn.ReLU6(), None) if not extra("inplace") and len(args) <= 2 else (False, None)
    if _is_fn(node, F.hardtanh):
        if extra("min_val", "max_val", "inplace") or len(args) > 4:
            return False, None
        bounds = (_arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0))
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
            return False, None               # a bound computed in forward: not a constant
        return nn.Hardtanh(*bounds), None
    if _is_fn(node, F.avg_pool2d):
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                 "divisor_override")
        if extra(*names) or len(args) > 7:
            return False, None
        values = [_arg(node, i + 1, n, d) for i, (n, d) in enumerate(zip(names, (
            None, None, 0, False, True, None)))]
        k, stride = values[0], values[1]
        dim = _dim_of(k)
        if dim is not None:                  # F.avg_pool2d(x, x.size()[3]): the whole map
            if dim[0] is not args[0] or dim[1] not in (2, 3, -1, -2) or stride is not None \
                    or values[2:] != [0, False, True, None]:
                return False, None
            m = nn.AdaptiveAvgPool2d(1)
            m.square = True
            return m, "square"
        if any(isinstance(v, fx.Node) for v in values):
            return False, None
        return nn.AvgPool2d(k, stride, values[2], values[3], values[4], values[5]), None
    if _is_fn(node, F.adaptive_avg_pool2d):
        if extra("output_size") or len(args) > 2:
            return False, None
        return nn.AdaptiveAvgPool2d(_arg(node, 1, "output_size", None)), None
    if _is_fn(node, torch.mean, methods=("mean",)):
        dims = _arg(node, 1, "dim", None)
        keep = _arg(node, 2, "keepdim", False)
        if extra("dim", "keepdim") or len(args) > 3 or not isinstance(dims, (tuple, list)) or \
                not isinstance(keep, bool) or sorted(d % 4 for d in dims if isinstance(d, int)) \
                != [2, 3] or len(dims) != 2:
            return False, None
        return nn.AdaptiveAvgPool2d(1), None
    if _is_fn(node, torch.flatten, methods=("flatten",)):
        if extra("start_dim", "end_dim") or len(args) > 3:
            return False, None
        return nn.Flatten(_arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)), None
    if _is_fn(node, methods=("view", "reshape")) or _is_fn(node, torch.reshape):
        shape = list(args[1:]) if node.op == "call_method" else _arg(node, 1, "shape", None)
        if node.op == "call_method" and len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = list(shape[0])
        dim = _dim_of(shape[0]) if shape and len(shape) == 2 else None
        if kw or dim is None or dim[1] != 0 or shape[1] != -1:
            return False, None
        return nn.Flatten(), None
    return None, None


def analyse(model, *, quantized=False):
    """The compute layers of ``model`` in the bundle's order (``GraphLayer`` list); raises
    ``core.rules.MappingError`` naming what cannot be mapped. ``quantized``: the model comes
    from ``quantize_model`` (else a ``QConv2d``/``QLinear`` is refused as already quantized)."""
    return analyse_graph(model, quantized=quantized)[0]


def _slice_stride(index):
    """``s`` for ``[:, :, ::s, ::s]`` (or ``[..., ::s, ::s]``), else ``None``."""
    if not isinstance(index, tuple):
        return None
    full = slice(None, None, None)
    if len(index) == 4 and index[:2] == (full, full):
        a, b = index[2:]
    elif len(index) == 3 and index[0] is Ellipsis:
        a, b = index[1:]
    else:
        return None
    if not (isinstance(a, slice) and a == b and a.start is None and a.stop is None):
        return None
    s = 1 if a.step is None else a.step
    return s if isinstance(s, int) and s >= 1 else None


def _channel_pad(node):
    """``(a, b)`` for ``F.pad(x, (0, 0, 0, 0, a, b))`` with zeros, else ``None``."""
    pad = _arg(node, 1, "pad", None)
    mode = _arg(node, 2, "mode", "constant")
    fill = _arg(node, 3, "value", None)
    if [k for k in node.kwargs if k not in ("pad", "mode", "value")] or len(node.args) > 4:
        return None
    if not isinstance(pad, (tuple, list)) or len(pad) != 6 or list(pad[:4]) != [0, 0, 0, 0]:
        return None
    if mode != "constant" or fill not in (None, 0, 0.0) or not all(
            isinstance(p, int) and p >= 0 for p in pad[4:]):
        return None
    return tuple(pad[4:])


def analyse_graph(model, *, quantized=False):
    """``(layers, graph, value)``: ``analyse``'s layers, the traced ``fx.Graph`` and for each
    of its nodes ``("input", None)``, ``("layer", i)`` (the current output of layer ``i``),
    ``("quantized", i)`` (a quantizer applied to it), ``("view", i)`` (its option-A
    subsampling or channel padding) or ``("shape", None)``."""
    graph = _trace(model)
    modules = dict(model.named_modules())
    layers, value, reads, views = [], {}, set(), {}
    out = None

    def refuse_node(node, why, fix=None):
        path, kind = _owner(node, model)
        rules.refuse(path, kind, why, fix)

    def tensor_arg(node, what):
        args = [a for a in node.args]
        extra = {k: v for k, v in node.kwargs.items() if k != "inplace"}
        if len(args) != 1 or extra or not isinstance(args[0], fx.Node) or args[0] not in value:
            what()
        return value[args[0]], args[0]

    def extend(node, path, m, kind_name, arg=None, window=None, prefix="", label=None):
        if arg is None:
            (kind, i), arg = tensor_arg(node, lambda: rules.refuse(
                path, kind_name, "it must be called on one tensor"))
        else:
            kind, i = value[arg]
        if kind == "input":
            rules.refuse(path, kind_name, prefix + "it comes before the first Conv2d or Linear")
        if kind == "quantized":
            rules.refuse(path, kind_name, prefix + "it reads a quantizer's output")
        if kind in ("view", "shape"):
            rules.refuse(path, kind_name, prefix + "it reads a subsampled or padded shortcut (or a "
                                          "shape), which only a shortcut addition may read")
        layer = layers[i]
        if layer.closed or len(_readers(arg)) != 1:
            rules.refuse(path, kind_name, prefix + f"it reads the output of {layer.path!r}, which other "
                                          f"operations read too: a value may branch only after "
                                          f"its batch norm, ReLU and pooling")
        if m is not None:
            check_following(path, m, kind_name, prefix)
            stage = stage_of(m)
            if stage < layer.stage or (stage == layer.stage and stage != 5):
                rules.refuse(path, kind_name, prefix + f"it cannot follow what follows {layer.path!r}: "
                                              f"the order must be {ORDER}")
            layer.stage = stage
            layer.following.append((label or path, m))
            if type(m) is nn.AvgPool2d and stage == 4 or window == "square":
                pool = next((_pair(x.kernel_size)[0] for _, x in layer.following
                             if stage_of(x) == 3), 1)
                layer.windows.append((path, kind_name, window or _pair(m.kernel_size)[0],
                                      pool, prefix))
        value[node] = ("layer", i)

    for node in graph.nodes:
        if node.op == "placeholder":
            if any(k == "input" for k, _ in value.values()):
                rules.refuse("", type(model).__name__, "its forward takes more than one input")
            value[node] = ("input", None)
        elif node.op == "call_module":
            path, m = node.target, modules[node.target]
            kind_name = type(m).__name__
            if not quantized and isinstance(m, (QConv2d, QLinear)):
                rules.refuse(path, kind_name, "the layer is already quantized")
            if isinstance(m, _COMPUTE):
                (kind, i), _ = tensor_arg(node, lambda: rules.refuse(
                    path, kind_name, "it must be called on one tensor"))
                if kind == "quantized":
                    rules.refuse(path, kind_name, "it reads a quantizer's output")
                if kind in ("view", "shape"):
                    rules.refuse(path, kind_name, "it reads a subsampled or padded shortcut "
                                                  "(or a shape), which only a shortcut "
                                                  "addition may read")
                if i is not None:
                    layers[i].closed = True
                    reads.add(i)
                layers.append(GraphLayer(path=path, module=m, source=i))
                value[node] = ("layer", len(layers) - 1)
            elif isinstance(m, _QUANTIZERS):          # a shared quantizer on a shortcut
                (kind, i), _ = tensor_arg(node, lambda: rules.refuse(
                    path, kind_name, "it must be called on one tensor"))
                if kind != "layer":
                    rules.refuse(path, kind_name, "a quantizer may only read a layer's output")
                layers[i].closed = True
                value[node] = ("quantized", i)
            elif type(m) in _SKIP:
                value[node] = tensor_arg(node, lambda: rules.refuse(
                    path, kind_name, "it must be called on one tensor"))[0]
            elif type(m) in _FOLLOW:
                extend(node, path, m, kind_name)
            else:
                rules.refuse(path, kind_name)
        elif _is_shape(node):
            value[node] = ("shape", None)
        elif _is_relu(node):
            path, kind = _owner(node, model)
            extend(node, path or node.name, nn.ReLU(), kind)
        elif _is_add(node):
            _add(node, layers, value, reads, views, refuse_node)
        elif node.op == "call_function" and node.target is operator.getitem and \
                isinstance(node.args[0], fx.Node) and node.args[0] in value:
            _view(node, value, views, refuse_node, stride=_slice_stride(node.args[1]))
        elif _is_fn(node, F.pad) and isinstance(node.args[0], fx.Node) and \
                node.args[0] in value:
            _view(node, value, views, refuse_node, pad=_channel_pad(node))
        elif node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node) or value.get(arg, ("", None))[0] != "layer":
                rules.refuse("", type(model).__name__, "its forward must return the output of "
                                                       "its last Conv2d or Linear")
            out = value[arg][1]
        else:
            m, window = _functional(node)
            what = getattr(node.target, "__name__", str(node.target))
            if m is None:
                refuse_node(node, f"its forward calls {what} ({node.name}){_where(node)}, "
                                  f"which has no counterpart in the accelerator")
            if m is False:
                refuse_node(node, f"its forward calls {what} ({node.name}){_where(node)} with "
                                  f"arguments that the accelerator cannot run")
            path, kind = _owner(node, model)
            src = node.args[0]
            if not isinstance(src, fx.Node) or src not in value:
                refuse_node(node, f"its forward calls {what} ({node.name}){_where(node)} on "
                                  f"something other than a layer's output")
            extend(node, path, m, kind, arg=src, window=window, label=path or node.name,
                   prefix=f"its forward calls {what} ({node.name}){_where(node)}: ")
    if not layers:
        rules.refuse("", type(model).__name__, "it has no Conv2d or Linear layer")
    layers, new = _order(layers, out, reads, model)
    value = {n: (k, None if i is None else new[i]) for n, (k, i) in value.items()}
    return layers, graph, value


def _view(node, value, views, refuse_node, *, stride=1, pad=(0, 0)):
    """An option-A shortcut's subsampling (``stride``) or zero channels (``pad``) of a layer's
    output: ``value[node] = ("view", i)``, ``views[node] = (stride, pad, entry node)``."""
    what = "indexing" if node.target is operator.getitem else "padding"
    kind, i = value[node.args[0]]
    ok = stride is not None and pad is not None and kind in ("layer", "quantized", "view")
    entry = node                          # the node that reads the layer's value
    if ok and kind == "view":
        s0, p0, entry = views[node.args[0]]
        ok = p0 == (0, 0) and (stride == 1 or s0 == 1)
        stride = s0 * stride
    if not ok:
        refuse_node(node, f"its {what} {node.name!r}{_where(node)} is not an option-A shortcut "
                          f"(x[:, :, ::s, ::s], then F.pad(x, (0, 0, 0, 0, a, b)) with zeros)",
                    BLOCK)
    if kind == "view":
        pad = (views[node.args[0]][1][0] + pad[0], views[node.args[0]][1][1] + pad[1])
    value[node] = ("view", i)
    views[node] = (stride, pad, entry)


def _add(node, layers, value, reads, views, refuse_node):
    """The shortcut addition ``node``: mark the main layer's shortcut."""
    args = list(node.args)
    if len(args) != 2 or node.kwargs or not all(isinstance(a, fx.Node) and a in value
                                                for a in args):
        refuse_node(node, f"its addition {node.name!r}{_where(node)} must add two tensors", BLOCK)
    why = (f"its addition {node.name!r}{_where(node)} must add a Conv2d's output (after its "
           f"batch norm, before its ReLU) and a shortcut")     # "its ReLU": if it has one
    (ka, ia), (kb, ib) = value[args[0]], value[args[1]]

    def candidate(k, i, arg):
        if k != "layer":
            return False
        la = layers[i]
        return (not la.closed and len(_readers(arg)) == 1 and la.stage <= 0 and
                la.shortcut is None and isinstance(la.module, nn.Conv2d))

    ca, cb = candidate(ka, ia, args[0]), candidate(kb, ib, args[1])
    if ca and cb:                           # a projection: the conv that reads earlier
        sa = -1 if layers[ia].source is None else layers[ia].source
        sb = -1 if layers[ib].source is None else layers[ib].source
        main, proj = (ib, ia) if sa < sb else (ia, ib)
        layers[proj].projection = True
        layers[proj].closed = True
        layers[main].shortcut = proj
    elif ca or cb:                          # an identity: the other is an earlier output
        main, (k, other), arg = (ia, (kb, ib), args[1]) if ca else (ib, (ka, ia), args[0])
        if k == "input":
            refuse_node(node, f"its addition {node.name!r}{_where(node)} adds the model's "
                              f"input: start the network with a Conv2d", BLOCK)
        if k == "shape" or other == main:
            refuse_node(node, why, BLOCK)
        layers[other].closed = True
        reads.add(("shortcut", other))
        layers[main].shortcut = other
        if k == "view":
            stride, pad, entry = views[arg]
            layers[main].shortcut_stride, layers[main].shortcut_pad = stride, pad[0]
            layers[main].shortcut_reader = entry
        else:
            layers[main].shortcut_reader = node
    else:
        refuse_node(node, why, BLOCK)
    layers[main].stage = 1
    value[node] = ("layer", main)


def _order(layers, out, reads, model):
    """Check every output is used; move each projection before its user; renumber."""
    last = len(layers) - 1
    if out != last:
        rules.refuse("", type(model).__name__, "its forward must return the output of its last "
                                               "Conv2d or Linear")
    read_by_layer = {i for i in reads if isinstance(i, int)}
    for i, la in enumerate(layers):
        if i == last:
            if i in read_by_layer or ("shortcut", i) in reads:
                rules.refuse(la.path, type(la.module).__name__, "the last layer's output is "
                                                                 "read by another layer")
            continue
        if la.projection:
            continue
        if i not in read_by_layer:
            why = ("its output is added as a shortcut but read by no Conv2d or Linear, so it "
                   "has no quantizer" if ("shortcut", i) in reads else "its output is not used")
            rules.refuse(la.path, type(la.module).__name__, why)
    order = []
    users = {la.shortcut: i for i, la in enumerate(layers) if la.shortcut is not None}
    for i, la in enumerate(layers):
        if la.projection:
            continue
        for j, other in enumerate(layers):
            if other.projection and users.get(j) == i:
                order.append(j)
        order.append(i)
    new = {old: k for k, old in enumerate(order)}
    result = []
    for old in order:
        la = layers[old]
        la.source = None if la.source is None else new[la.source]
        la.shortcut = None if la.shortcut is None else new[la.shortcut]
        result.append(la)
    for la in result:
        if la.source is not None and la.source >= result.index(la):
            rules.refuse(la.path, type(la.module).__name__, "it reads a layer that runs later")
    return result, new
