"""The layer graph of a residual network, read from its ``forward`` with ``torch.fx``.

``analyse(model)`` traces ``model`` (standard modules are leaves, user containers are traced
through) and returns its compute layers (``Conv2d``/``Linear``, or ``QConv2d``/``QLinear``
after ``quantize_model``) in the bundle's order, each with what follows it, the layer it reads
and its shortcut. What it maps (anything else is refused with ``core.rules.MappingError``, one
line naming the layer or the container whose ``forward`` holds the operation):

* a compute module on one tensor starts a layer; batch norm, ReLU (the module,
  ``F.relu``/``torch.relu`` or ``.relu()``), ``MaxPool2d`` and ``Flatten`` after it belong to
  it; ``Dropout`` and ``Identity`` are skipped;
* a value (a layer's output after those) may be read by several compute layers and by one
  addition each: it is quantized once, by one quantizer that its readers share;
* ``a + b`` (``operator.add``, ``torch.add``, ``+=``) adds a shortcut to a conv layer's output
  after its batch norm and before its ReLU (the *main* operand: a conv whose output is read by
  the addition only). The other operand is either
  - an **identity** shortcut: the output of an earlier layer that compute layers also read
    (the block's input; the quantized value, see ``export.wrap``), or
  - a **projection**: another conv (usually 1x1, strided) with at most a batch norm, read by
    the addition only. When both operands are such convs, the projection is the one that reads
    the earlier value (on a tie, the right operand);
* the model's output is the last layer's output, which nothing else reads.

The bundle's order is the order of the compute calls in ``forward``, except that a projection
is moved just before the layer that adds it (the golden model needs its ``z`` there).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from core import rules

from .layers import QConv2d, QLinear
from .quantizers import AsqQuantizer, LsqQuantizer

__all__ = ["GraphLayer", "analyse", "analyse_graph", "has_addition"]

_COMPUTE = (nn.Conv2d, nn.Linear)                      # QConv2d / QLinear are subclasses
_FOLLOW = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d, nn.Flatten)
_SKIP = (nn.Dropout, nn.Identity)
_QUANTIZERS = (LsqQuantizer, AsqQuantizer)
_ADD = (operator.add, operator.iadd, torch.add)
_RELU = (F.relu, torch.relu)
BLOCK = ("a residual block returns relu(bn2(conv2(...)) + shortcut), the shortcut being its "
         "input or a projection conv with batch norm (export/resnet.py's BasicBlock)")
_STAGE = {nn.BatchNorm2d: 0, nn.BatchNorm1d: 0, nn.ReLU: 2, nn.MaxPool2d: 3, nn.Flatten: 4}


@dataclass
class GraphLayer:
    """One compute layer: its module path and module, the modules after it (``(path,
    module)``, batch norm, ReLU, pooling, flatten; a functional ReLU as an ``nn.ReLU``), the
    index (in the returned list) of the layer it reads (``None``: the model's input), of its
    shortcut layer, and whether it is a projection."""

    path: str
    module: nn.Module
    following: list = field(default_factory=list)
    source: int | None = None
    shortcut: int | None = None
    projection: bool = False
    stage: int = -1               # the last of batch norm 0, add 1, ReLU 2, pool 3, flatten 4
    closed: bool = False          # its output is read (quantized): nothing may follow it


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, _COMPUTE + _FOLLOW + _SKIP + _QUANTIZERS) or \
            super().is_leaf_module(m, qualname)


def _trace(model):
    try:
        return _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001  (any tracing failure: the model cannot be read)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        rules.refuse("", type(model).__name__, f"torch.fx cannot trace its forward ({first})")


def has_addition(model):
    """Whether ``model``'s traced ``forward`` adds tensors (then ``analyse`` maps it)."""
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001
        return False
    return any(_is_add(n) for n in graph.nodes)


def _is_add(node):
    return (node.op == "call_function" and node.target in _ADD) or \
        (node.op == "call_method" and node.target in ("add", "add_", "__add__", "__iadd__"))


def _is_relu(node):
    return (node.op == "call_function" and node.target in _RELU) or \
        (node.op == "call_method" and node.target in ("relu", "relu_"))


def _owner(node, model):
    """``(path, type name)`` of the container whose ``forward`` holds ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        return path, getattr(kind, "__name__", str(kind))
    return "", type(model).__name__


def analyse(model, *, quantized=False):
    """The compute layers of ``model`` in the bundle's order (``GraphLayer`` list); raises
    ``core.rules.MappingError`` naming what cannot be mapped. ``quantized``: the model comes
    from ``quantize_model`` (else a ``QConv2d``/``QLinear`` is refused as already quantized)."""
    return analyse_graph(model, quantized=quantized)[0]


def analyse_graph(model, *, quantized=False):
    """``(layers, graph, value)``: ``analyse``'s layers, the traced ``fx.Graph`` and for each
    of its nodes ``("input", None)``, ``("layer", i)`` (the current output of layer ``i``) or
    ``("quantized", i)`` (a quantizer applied to it)."""
    graph = _trace(model)
    modules = dict(model.named_modules())
    layers, value, reads = [], {}, set()
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

    def extend(node, path, m, kind_name):
        (kind, i), arg = tensor_arg(node, lambda: rules.refuse(
            path, kind_name, "it must be called on one tensor"))
        if kind == "input":
            rules.refuse(path, kind_name, "it comes before the first Conv2d or Linear")
        if kind == "quantized":
            rules.refuse(path, kind_name, "it reads a quantizer's output")
        layer = layers[i]
        if layer.closed or len(arg.users) != 1:
            rules.refuse(path, kind_name, f"it reads the output of {layer.path!r}, which other "
                                          f"operations read too: a value may branch only after "
                                          f"its batch norm, ReLU and pooling")
        if m is not None:
            stage = _STAGE[type(m)]
            if stage < layer.stage or (stage == layer.stage and stage != 4):
                rules.refuse(path, kind_name, f"it cannot follow what follows {layer.path!r}: "
                                              f"the order must be batch norm, shortcut "
                                              f"addition, ReLU, max pooling, flatten")
            if type(m) is nn.MaxPool2d:
                rules.check_maxpool(path, kind_name, kernel_size=m.kernel_size,
                                    stride=m.stride, padding=m.padding, dilation=m.dilation,
                                    ceil_mode=m.ceil_mode, return_indices=m.return_indices)
            layer.stage = stage
            layer.following.append((path, m))
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
                if type(m) is nn.Flatten and (m.start_dim != 1 or m.end_dim != -1):
                    rules.refuse(path, kind_name, f"only Flatten(1, -1), not "
                                                  f"Flatten({m.start_dim}, {m.end_dim})")
                extend(node, path, m, kind_name)
            else:
                rules.refuse(path, kind_name)
        elif _is_relu(node):
            path, kind = _owner(node, model)
            extend(node, path or node.name, nn.ReLU(), kind)
        elif _is_add(node):
            _add(node, layers, value, reads, refuse_node)
        elif node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node) or value.get(arg, ("", None))[0] != "layer":
                rules.refuse("", type(model).__name__, "its forward must return the output of "
                                                       "its last Conv2d or Linear")
            out = value[arg][1]
        else:
            what = getattr(node.target, "__name__", str(node.target))
            refuse_node(node, f"its forward calls {what} ({node.name}), which has no "
                              f"counterpart in the accelerator")
    if not layers:
        rules.refuse("", type(model).__name__, "it has no Conv2d or Linear layer")
    layers, new = _order(layers, out, reads, model)
    value = {n: (k, None if i is None else new[i]) for n, (k, i) in value.items()}
    return layers, graph, value


def _add(node, layers, value, reads, refuse_node):
    """The shortcut addition ``node``: mark the main layer's shortcut."""
    args = list(node.args)
    if len(args) != 2 or node.kwargs or not all(isinstance(a, fx.Node) and a in value
                                                for a in args):
        refuse_node(node, f"its addition {node.name!r} must add two tensors", BLOCK)
    why = (f"its addition {node.name!r} must add a Conv2d's output (after its batch norm, "
           f"before its ReLU) and a shortcut")
    (ka, ia), (kb, ib) = value[args[0]], value[args[1]]

    def candidate(k, i, arg):
        if k != "layer":
            return False
        la = layers[i]
        return (not la.closed and len(arg.users) == 1 and la.stage <= 0 and la.shortcut is None
                and isinstance(la.module, nn.Conv2d))

    ca, cb = candidate(ka, ia, args[0]), candidate(kb, ib, args[1])
    if ca and cb:                           # a projection: the conv that reads earlier
        sa = -1 if layers[ia].source is None else layers[ia].source
        sb = -1 if layers[ib].source is None else layers[ib].source
        main, proj = (ib, ia) if sa < sb else (ia, ib)
        layers[proj].projection = True
        layers[proj].closed = True
        layers[main].shortcut = proj
    elif ca or cb:                          # an identity: the other is an earlier output
        main, (k, other) = (ia, (kb, ib)) if ca else (ib, (ka, ia))
        if k == "input":
            refuse_node(node, f"its addition {node.name!r} adds the model's input: start the "
                              f"network with a Conv2d", BLOCK)
        if other == main:
            refuse_node(node, why, BLOCK)
        layers[other].closed = True
        reads.add(("shortcut", other))
        layers[main].shortcut = other
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
