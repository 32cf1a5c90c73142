"""Wrap a float PyTorch model into its quantization-aware version: ``quantize_model``.

The recipe (docs/algorithms.md, 'Which tensors are quantized', with the project's unsigned
first input):

* the **first** ``Conv2d`` / ``Linear`` (in execution order): ``first_bits``-bit signed LSQ
  weights, one step per output channel (``int`` weights in hardware), and a ``first_bits``-bit
  **unsigned** LSQ input quantizer (the reference recipe quantizes the first input signed; the
  accelerator's activation codes are all unsigned and the images are non-negative);
* the **last** one: ``last_bits``-bit signed LSQ weights per output channel and a
  ``last_bits``-bit unsigned LSQ input quantizer (no adapter);
* **every other** one: ``bits``-bit weights of ``weight_method`` (``"lsq"``, ``"pot"``,
  ``"post"``) and a ``bits``-bit unsigned input quantizer of ``act_method`` (``"lsq"``,
  ``"asq"``);
* a layer whose input is **signed** (its source has no ReLU after it: MobileNet-V2's linear
  bottleneck, or a residual sum with no ReLU after the addition; ``export.graph``) takes a
  signed LSQ input quantizer (``Qn = -2**(b-1)``, ``Qp = 2**(b-1) - 1``) whatever
  ``act_method`` says: ASQ's adapter and its ReLU/``beta`` semantics are defined for
  non-negative activations in this project (``export.quantizers.AsqQuantizer``). With
  ``act_method="asq"`` the layers that read unsigned values (after a ReLU or ReLU6) keep ASQ;
  a dict or callable that asks ASQ for a signed input is refused.

``weight_method`` and ``act_method`` may each be one method for every middle layer, a dict
``{layer name: method}`` with an entry for every middle layer, or a callable ``f(name,
float_module) -> method`` (so a depthwise conv may take, say, ``"lsq"`` weights while the
others take ``"post"``; one bundle holds one post/pot format, so ``"pot"`` and ``"post"`` do
not mix).

``weight_method=None`` leaves every weight float (first and last included) and
``act_method=None`` every input: with both ``None`` the result is the float network built from
``QConv2d`` / ``QLinear`` without quantizers. Quantizer scales are not set here: they initialise
on the first forward pass in training mode (``export.quantizers``).

What can be mapped
------------------
The accelerator runs convolutions and fully connected layers, each followed by an optional
folded batch norm, ReLU (or a clipped one) and pooling (``export.to_bundle``). Accepted
modules, by exact type: ``Conv2d`` (``groups=1`` or a depthwise conv, ``groups ==
in_channels == out_channels``; ``dilation=1``, square kernel, equal strides and equal numeric
paddings, ``padding_mode="zeros"``), ``Linear``, ``BatchNorm2d``,
``BatchNorm1d``, ``ReLU``, ``ReLU6`` and ``Hardtanh(0, t)`` (a ReLU clipped at 6 or ``t``),
``MaxPool2d(2)`` and ``AvgPool2d(2)`` (the hardware pools 2x2 windows), a global average
pooling (``AdaptiveAvgPool2d(1)``, or an ``AvgPool2d`` whose window covers the whole map: the
returned model checks it in every forward, so the first batch refuses a window that does
not), ``Flatten`` (from dimension 1 to the end), ``Dropout`` and ``Identity`` (skipped at
export). Containers are ``nn.Sequential``, or another container module whose ``forward`` is a
plain chain through all its children in registration order (both read module by module). A
model whose ``forward`` calls functions (a residual addition, ``F.relu``, ``F.relu6``,
``F.avg_pool2d``, ``x.mean((2, 3))``, ``torch.flatten``, ResNet's option-A shortcut...) is
read from its ``torch.fx`` graph instead (``export.graph``, which lists what it maps; the
result is then an ``fx.GraphModule`` with the same module paths). Everything else (``GELU``,
``LSTM``, ``Conv1d``, a grouped ``Conv2d`` (``1 < groups < in_channels``) or a depthwise one
with a channel multiplier above 1, a dilated one, another function in
``forward``, a layer that is already quantized) is refused with a ``ValueError``
(``core.rules.MappingError``) of one line that names the layer's module path and type, or the
container and the line of its ``forward``. The hardware's limits (``core.rules``: ASQ on the
input of a linear layer, the adapter's size, post/pot weights too wide for the rescale, ...)
are checked here too, before any training, with the messages that ``export_bundle`` and
``asqgen verilog/compare/sim`` give, and so is the order of what follows each compute layer
(``export.graph.ORDER``: batch norm before ReLU before pooling...).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import fx, nn

from core import rules
from core.rules import SUPPORTED

from . import graph as _graph
from .layers import QConv2d, QLinear, quantized_conv2d, quantized_linear

__all__ = ["SUPPORTED", "quantize_model", "check_mappable", "signed_sources"]

_COMPUTE = (nn.Conv2d, nn.Linear)
_PLAIN = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity)
_FOLLOW_CHECKED = (nn.MaxPool2d, nn.Flatten, nn.Hardtanh, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def _refuse(path, module, why=None):
    rules.refuse(path, type(module).__name__, why)


def _check_leaf(path, m):
    t = type(m)
    name = t.__name__
    if t is nn.Conv2d:
        _graph.check_conv(path, m)
    elif t in _FOLLOW_CHECKED:
        _graph.check_following(path, m)
    elif t is nn.Linear or t in _PLAIN:
        pass
    elif isinstance(m, (QConv2d, QLinear)):
        _refuse(path, m, "the layer is already quantized")
    else:
        _refuse(path, m)


def _window_error(path, kind, k, h, w, prefix=""):
    if k == "square":
        why = (f"F.avg_pool2d(x, x.size()[3]) over a {h}x{w} map is not a global average "
               f"pooling (the map is not square)")
    else:
        why = (f"its {k}x{k} window does not cover the {h}x{w} map it pools, and the "
               f"accelerator average-pools 2x2 windows or the whole map")
    rules.refuse(path, kind, prefix + why, "use AvgPool2d(2), or AdaptiveAvgPool2d(1) for a "
                                           "global average pooling")


def _pool_input_hook(path, kind, k):
    """A forward pre-hook on an ``AvgPool2d(k)``, ``k != 2``: its window must cover the map."""
    def hook(module, args):
        h, w = args[0].shape[-2:]
        if (h, w) != (k, k):
            _window_error(path, kind, k, h, w)
    return hook


def _layer_output_hook(windows):
    """A forward hook on a compute module whose layer ends in the global poolings
    ``windows`` (``export.graph.GraphLayer.windows``): each must cover the map."""
    def hook(module, args, out):
        for path, kind, k, pool, prefix in windows:
            h, w = out.shape[-2] // pool, out.shape[-1] // pool
            if (k == "square" and h != w) or (k != "square" and (h, w) != (k, k)):
                _window_error(path, kind, k, h, w, prefix)
    return hook


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


def check_mappable(model, *, bits=None, weight_method=None, act_method=None, first_bits=8,
                   last_bits=8):
    """Raise ``ValueError`` naming the first layer of ``model`` that cannot be mapped; with
    ``bits``, also the hardware's rules for ``quantize_model(model, bits=..., ...)`` (without
    building anything). Returns the compute layers and their input methods."""
    layers, acts, _, _ = _plan(model, bits=bits, weight_method=weight_method,
                               act_method=act_method, first_bits=first_bits,
                               last_bits=last_bits)
    return layers, acts


def _plan(model, *, bits, weight_method, act_method, first_bits, last_bits):
    """``(layers, acts, weights, signed)``: the compute layers, their input and weight methods
    by name (``None`` without ``bits``) and ``signed_sources``; every rule checked."""
    layers = _compute_layers(model)
    signed = signed_sources(model, layers)
    if bits is None:
        return layers, None, None, signed
    for name, value in (("bits", bits), ("first_bits", first_bits), ("last_bits", last_bits)):
        rules.check_bits(name, value)
    weights = _weight_methods(weight_method, layers)
    acts = _act_methods(act_method, layers, signed)
    _check_rules(layers, bits=bits, weights=weights, acts=acts,
                 first_bits=first_bits, last_bits=last_bits)
    return layers, acts, weights, signed


def signed_sources(model, layers=None):
    """``{layer name: source name or None}`` for every compute layer of the float ``model``:
    the name of the layer whose output it reads when that output is **signed** (no ReLU,
    ReLU6 or clipped ReLU after that layer: a linear bottleneck, or a residual sum with no ReLU
    after the addition), ``None`` when its input is unsigned (after a ReLU, or the model's
    input)."""
    if _graph.needs_graph(model):
        glayers = _graph.analyse(model)
        return {la.path: (glayers[la.source].path if la.source is not None and
                          not _graph.has_relu(glayers[la.source].following) else None)
                for la in glayers}
    names = [p for p, _, _, _ in (layers if layers is not None else _compute_layers(model))]
    following, current = {}, None
    for path, m in _leaves(model):
        if type(m) in _COMPUTE:
            current = path
            following[path] = []
        elif current is not None:
            following[current].append((path, m))
    result = {names[0]: None}
    for prev, name in zip(names, names[1:]):
        result[name] = None if _graph.has_relu(following[prev]) else prev
    return result


def _compute_layers(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model must be an nn.Module, not {type(model).__name__}")
    if next(model.children(), None) is None:
        raise ValueError(f"the model must be a container of layers (nn.Sequential), not a "
                         f"single {type(model).__name__}")
    try:
        if type(model) is not nn.Sequential:
            if not _user_defined(model):
                _refuse("", model)
            _check_chain("", model)
        layers = list(_walk(model))
    except rules.MappingError:
        if not _graph.needs_graph(model):
            raise
        return _residual_layers(model)
    if not layers:
        raise ValueError("the model has no Conv2d or Linear layer")
    _check_order(model)
    return layers


def _leaves(module, prefix=""):
    """``(path, module)`` of every leaf of a chain, in ``_walk``'s order."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Sequential or (type(child) not in _COMPUTE and next(
                child.children(), None) is not None and _user_defined(child)):
            yield from _leaves(child, path)
        else:
            yield path, child


def _check_order(model):
    """The modules after each compute layer of a chain come in ``export.graph.ORDER`` (the
    graph path checks it as it reads the graph), a pooling after a conv only."""
    current, stage = None, -1
    for path, m in _leaves(model):
        if type(m) in _COMPUTE:
            current, stage = (path, m), -1
            continue
        if type(m) in (nn.Dropout, nn.Identity):
            continue
        if current is None:
            _refuse(path, m, "it comes before the first Conv2d or Linear")
        s = _graph.stage_of(m)
        if s < stage or (s == stage and s != 5):
            _refuse(path, m, f"it cannot follow what follows {current[0]!r}: the order must be "
                             f"{_graph.ORDER}")
        if s in (3, 4) and type(current[1]) is nn.Linear:
            _refuse(path, m, f"it pools the output of the Linear {current[0]!r}: only a "
                             f"Conv2d's map is pooled")
        stage = s


def _residual_layers(model):
    """The compute layers of a residual ``model`` (``export.graph``) as ``_walk``'s tuples, in
    the bundle's order, every module checked as ``_walk`` checks it."""
    result = []
    for la in _graph.analyse(model):
        _check_leaf(la.path, la.module)
        for path, m in la.following:
            if path in dict(model.named_modules()):
                _check_leaf(path, m)
        parent, _, name = la.path.rpartition(".")
        result.append((la.path, model.get_submodule(parent), name, la.module))
    return result


def _share_quantizers(model, layers, acts, bits_of):
    """A residual model's layers that read one value share one input quantizer (the first
    reader's), and every identity shortcut adds that quantizer's output (the value the
    accelerator holds: codes times step times ``beta``). Returns the ``fx.GraphModule``."""
    glayers, graph, value = _graph.analyse_graph(model, quantized=True)
    owner = {}
    for i, la in enumerate(glayers):
        if la.source is None and i != 0:
            rules.refuse(la.path, type(la.module).__name__, "only the first layer may read the "
                                                            "model's input")
        first = owner.setdefault(la.source, i)
        if first == i:
            continue
        a, b = glayers[first], la
        if (acts[a.path], bits_of[a.path]) != (acts[b.path], bits_of[b.path]):
            rules.refuse(b.path, type(b.module).__name__,
                         f"it reads the output that {a.path!r} reads, and one value has one "
                         f"quantizer, but it would quantize it differently ({acts[b.path]} "
                         f"{bits_of[b.path]}-bit, not {acts[a.path]} {bits_of[a.path]}-bit)",
                         "give both the same method (act_method)")
        b.module.act_quantizer = a.module.act_quantizer
    for la in glayers:
        if la.shortcut is None or glayers[la.shortcut].projection:
            continue
        reader = glayers[owner[la.shortcut]]
        if reader.module.act_quantizer is None:
            continue
        node = la.shortcut_reader            # the addition, or an option-A slice or pad
        arg = next(a for a in node.args if isinstance(a, fx.Node) and
                   value.get(a) == ("layer", la.shortcut))
        with graph.inserting_before(node):
            q = graph.call_module(f"{reader.path}.act_quantizer", (arg,))
        node.replace_input_with(arg, q)
    for la in glayers:
        if la.windows:
            la.module.register_forward_hook(_layer_output_hook(la.windows))
    graph.lint()
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _quantized(m, *, bits, weight_method, act_method, signed=False):
    signed = bool(signed) and act_method == "lsq"
    if isinstance(m, nn.Conv2d):
        q = quantized_conv2d(m.in_channels, m.out_channels, m.kernel_size,
                             weight_method=weight_method, act_method=act_method, bits=bits,
                             signed_input=signed, stride=m.stride, padding=m.padding,
                             groups=m.groups, bias=m.bias is not None)
    else:
        q = quantized_linear(m.in_features, m.out_features, weight_method=weight_method,
                             act_method=act_method, bits=bits, signed_input=signed,
                             bias=m.bias is not None)
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


def _per_layer(option, method, layers, check):
    """The method of every compute layer, by name: from one method (the first and the last
    layer then take LSQ), a dict ``{name: method}`` or a callable ``f(name, module)``;
    ``option`` names the argument, ``check(value, name)`` checks one method."""
    names = [path for path, _, _, _ in layers]
    if method is None or isinstance(method, str):
        check(method, option)
        ends = (names[0], names[-1])
        return {k: "lsq" if method is not None and k in ends else method for k in names}
    middle = names[1:-1]
    if isinstance(method, dict):
        unknown = [k for k in method if k not in middle]
        if unknown:
            raise ValueError(f"{option} names {unknown[0]!r}, which is not a middle Conv2d or "
                             f"Linear layer of the model (those are "
                             f"{', '.join(map(repr, middle))}; the first and the last layer "
                             f"take LSQ)")
        missing = [k for k in middle if k not in method]
        if missing:
            raise ValueError(f"{option} has no entry for layer {missing[0]!r} (give one for "
                             f"every middle layer: {', '.join(map(repr, middle))})")
        chosen = {k: method.get(k, "lsq") for k in names}
    elif callable(method):
        chosen = {path: method(path, m) if path in middle else "lsq"
                  for path, _, _, m in layers}
    else:
        raise TypeError(f"{option} must be a str, None, a dict or a callable, not "
                        f"{method!r}")
    for name in names:
        check(chosen[name], f"{option} of layer {name!r}")
    return chosen


def _act_methods(act_method, layers, signed=None):
    """The input method of every compute layer, by name (``_per_layer``); a layer whose input
    is signed (``signed_sources``) takes LSQ when ``act_method`` is one method, and is refused
    if a dict or callable gives it ASQ."""
    chosen = _per_layer("act_method", act_method, layers,
                        lambda v, name: rules.check_act_method(
                            v, name, none="None" if name == "act_method" else None))
    for path, _, _, m in layers:
        source = (signed or {}).get(path)
        if source is None or chosen[path] != "asq":
            continue
        if isinstance(act_method, str):
            chosen[path] = "lsq"
        else:
            rules.refuse(path, type(m).__name__,
                         f"its input, the output of {source!r}, is signed (no ReLU after that "
                         f"layer: a linear bottleneck or a residual sum), and ASQ quantizes "
                         f"non-negative activations", "use act_method 'lsq' for this layer")
    return chosen


def _weight_methods(weight_method, layers):
    """The weight method of every compute layer, by name (``_per_layer``); ``"pot"`` and
    ``"post"`` do not mix (one bundle holds one post/pot format)."""
    chosen = _per_layer("weight_method", weight_method, layers,
                        lambda v, name: rules.check_weight_method(
                            v, name, none="None" if name == "weight_method" else None))
    exponent = {}
    for name, method in chosen.items():
        if method in ("pot", "post"):
            exponent.setdefault(method, name)
    if len(exponent) > 1:
        (a, na), (b, nb) = list(exponent.items())[:2]
        raise ValueError(f"weight_method gives {a} weights to layer {na!r} and {b} weights to "
                         f"layer {nb!r}: one bundle holds one post/pot format (lsq weights "
                         f"mix with either)")
    return chosen


def _check_rules(layers, *, bits, weights, acts, first_bits, last_bits):
    """The hardware's rules (``core.rules``) on the float model's compute layers, before any
    training."""
    widest = max(layers, key=lambda x: _out_channels(x[3]))
    for i, (path, _, _, m) in enumerate(layers):
        kind = type(m).__name__
        first, last = i == 0, i == len(layers) - 1
        act = acts[path]
        rules.check_act(path, kind, act, first=first)
        rules.check_size(path, kind, _out_channels(m), 1)
        if act == "asq":
            rules.check_adapter(path, kind, m.in_channels, _out_channels(widest[3]), widest[0])
        if weights[path] is None:
            continue
        b = first_bits if first else last_bits if last else bits
        fmt = "int" if first or last else rules.WEIGHT_FORMAT[weights[path]]
        k = m.weight[0].numel()          # in_channels / groups x kernel x kernel
        rules.check_accumulator(path, kind, fmt, b, b if act is not None else 8, k)


def _out_channels(m):
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def _warn_negative(name):
    """A forward pre-hook on the first layer: warn once when its input has negative values
    (``core.rules.check_inputs`` refuses them at export)."""
    warned = []

    def hook(module, args):
        x = args[0]
        if not warned and isinstance(x, torch.Tensor) and x.numel() and x.min() < 0:
            warned.append(True)
            try:
                rules.check_inputs(name, type(module).__name__, float(x.min()))
            except rules.MappingError as e:
                warnings.warn(str(e), stacklevel=2)
    return hook


def quantize_model(float_model, *, bits, weight_method, act_method, first_bits=8, last_bits=8):
    """The quantization-aware copy of ``float_model`` (which is left unchanged).

    Parameters
    ----------
    float_model : nn.Module
        An ``nn.Sequential`` (or a plain-chain container) of the supported layers.
    bits : int
        Weight and activation code width of every layer but the first and the last, 2 to 8.
    weight_method : {"lsq", "pot", "post", None}, dict or callable
        The weight quantizer of the middle layers, given as ``act_method`` is (``"pot"`` and
        ``"post"`` do not mix); ``None`` leaves every weight float.
    act_method : {"lsq", "asq", None}, dict or callable
        The input quantizer of the middle layers: one method for all, a dict
        ``{layer name: method}`` with an entry for every middle layer, or a callable
        ``f(name, float_module) -> method`` called for every middle layer. A layer's name is
        its module path (``"3"`` for ``model[3]``, ``"features.0"``), the name that the
        bundle, ``asqgen compare`` and ``asqgen sim`` use. The first and the last layer always
        take LSQ, and so does a layer whose input is signed (module docstring).
    first_bits, last_bits : int
        Code widths of the first and the last compute layer (LSQ weights and inputs), 2 to 8.

    Returns
    -------
    nn.Module
        A deep copy in which every ``Conv2d`` is a ``QConv2d`` and every ``Linear`` a
        ``QLinear`` with the same hyper-parameters, weights and biases; every other module
        (batch norm with its running statistics included) is copied unchanged. The first
        layer warns (once) when its input has negative values: the accelerator's input codes
        are unsigned and the first quantizer clamps them to 0 (``export_bundle`` refuses such
        reference inputs).

    Raises
    ------
    ValueError
        A layer that cannot be mapped to the accelerator (``core.rules.MappingError``: the
        message names its module path, its type, the limit and what to change), a bad method
        or width.
    """
    _, acts, weights, signed = _plan(float_model, bits=bits, weight_method=weight_method,
                                     act_method=act_method, first_bits=first_bits,
                                     last_bits=last_bits)   # refuse before copying anything
    model = copy.deepcopy(float_model)
    layers = _compute_layers(model)
    residual = _graph.needs_graph(model)
    bits_of = {}
    for i, (path, parent, name, m) in enumerate(layers):
        b = first_bits if i == 0 else last_bits if i == len(layers) - 1 else bits
        bits_of[path] = b
        setattr(parent, name, _quantized(m, bits=b, weight_method=weights[path],
                                         act_method=acts[path],
                                         signed=signed.get(path) is not None))
    if residual:
        model = _share_quantizers(model, layers, acts, bits_of)
    else:
        for path, m in model.named_modules():
            if _graph.is_global_pool(m) and type(m) is nn.AvgPool2d:
                k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                m.register_forward_pre_hook(_pool_input_hook(path, type(m).__name__, k))
    model.get_submodule(layers[0][0]).register_forward_pre_hook(_warn_negative(layers[0][0]))
    return model
