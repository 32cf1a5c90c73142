"""Recognise what ``asqgen export-onnx`` writes, and read a bundle back from it.

``export.qonnx_export``'s docstring spells out the patterns; this module finds them in an
``onnx.ModelProto`` as written, **before** qonnx's ``cleanup_model`` (which folds the POST
decode into a float initializer and renames every tensor). Each recogniser returns ``None``
when its pattern is not there, so that an importer of other QONNX files
(``asqgen import``) can try it first and fall back on its own mapping:

* ``recognize_weight(index, tensor)``: a weight tensor made by the POST/POT decode
  (``Mul(Gather(levels, codes), alpha)``) or by a static signed ``Quant``: the bundle's weight
  codes, exactly, with the format, the width and ``alpha``;
* ``recognize_scale(index, tensor)``: an activation ``Quant``'s scale, a fixed step or the
  ASQ adapter's ``Mul(Reshape(Clip(Relu(Gemm(...)))), step)``: the step and the
  ``core.adapter.Adapter``;
* ``recognize_quantizer(index, node)``: an activation ``Quant`` (step, bits, signedness,
  adapter).

``is_exported(model)`` tells a file of ``export-onnx`` (not ``--compat``) by its metadata;
``to_bundle(model)`` walks a whole exported file with the recognisers and returns the
``Bundle`` (no reference data), and ``reference(bundle, model, images)`` adds qonnx's execution
of the file on ``images`` as its reference arrays. Importing a file that ``export-onnx`` wrote
gives a bundle whose golden model is the original's, integer for integer
(``tests/test_qonnx_export.py``). Anything that is not
the exporter's pattern raises ``BundleError`` with one line naming the node. The weights' codes
come from the ``codes`` initializer itself, not from float values; every real parameter is
read at the precision the file stores (``float64`` behind a ``Cast`` where ``float32`` would
round it), and ``frac_bits`` from the ``asqgen.frac_bits`` metadata (the default of
``core.numerics`` when absent).
"""

import json
from dataclasses import dataclass

import numpy as np

from core import numerics
from core.adapter import Adapter
from core.bundle import Bundle, Layer
from core.errors import BundleError

__all__ = ["GraphIndex", "WeightCodes", "Quantizer", "recognize_weight", "recognize_scale",
           "recognize_quantizer", "is_exported", "to_bundle", "reference"]

_BETA_MIN = 2.0 ** -14
_BETA_MAX = 64.0


class GraphIndex:
    """A model's nodes by the tensors they make and read, and its initializers as arrays."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.meta = {p.key: p.value for p in model.metadata_props}
        self.adapter_gemms = set()     # the Gemm nodes (outputs) of recognised adapters

    def made_by(self, tensor, op):
        """The node of type ``op`` that makes ``tensor``, or ``None``."""
        node = self.producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    def real(self, tensor):
        """The ``float64`` value of a constant: an initializer, or a ``Cast`` of one (the
        exporter's exact parameters); ``None`` otherwise."""
        if tensor in self.inits:
            return self.inits[tensor].astype(np.float64)
        cast = self.made_by(tensor, "Cast")
        if cast is not None and cast.input[0] in self.inits:
            return self.inits[cast.input[0]].astype(np.float64)
        return None

    def only_consumer(self, tensor, op):
        """The one node of type ``op`` among ``tensor``'s readers, or ``None``."""
        found = [n for n in self.consumers.get(tensor, []) if n.op_type == op]
        return found[0] if len(found) == 1 else None


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fail(node, what):
    raise BundleError(f"node {node.name or node.output[0]!r} ({node.op_type}): {what}")


@dataclass
class WeightCodes:
    """A layer's weights as the bundle holds them."""

    w_format: str
    w_bits: int
    codes: np.ndarray        # int64, the unsigned code patterns of core.numerics
    alpha: np.ndarray        # float64, (Cout,)


def _table_format(levels):
    """``(format, bits)`` whose code table ``levels`` is, or ``None``."""
    from .qonnx_export import level_table

    bits = int(len(levels)).bit_length() - 1
    if len(levels) != 2 ** bits or bits not in numerics.WEIGHT_BITS:
        return None
    for fmt in ("post", "pot"):
        if np.array_equal(level_table(fmt, bits), levels.astype(np.float32)):
            return fmt, bits
    return None


def recognize_weight(index, tensor):
    """``WeightCodes`` of the weight ``tensor`` if the POST/POT decode or a static signed
    ``Quant`` (zero point 0) makes it, else ``None``."""
    mul = index.made_by(tensor, "Mul")
    if mul is not None:
        gather = index.made_by(mul.input[0], "Gather")
        alpha = index.real(mul.input[1])
        if gather is None or alpha is None or _attr(gather, "axis", 0) != 0:
            return None
        levels, codes = (index.inits.get(t) for t in gather.input)
        if levels is None or codes is None or not np.issubdtype(codes.dtype, np.integer):
            return None
        found = _table_format(levels)
        if found is None:
            return None
        return WeightCodes(*found, codes=codes.astype(np.int64), alpha=alpha.reshape(-1))
    quant = index.producer.get(tensor)
    if quant is None or quant.op_type not in ("Quant", "IntQuant"):
        return None
    w, scale, zero, bits = (index.real(t) for t in quant.input[:4])
    if (w is None or scale is None or zero is None or bits is None or np.any(zero != 0) or
            not _attr(quant, "signed", 1) or _attr(quant, "narrow", 0)):
        return None
    bits = int(bits)
    if bits not in numerics.WEIGHT_BITS:
        return None
    scale = np.broadcast_to(scale, (w.shape[0],) + (1,) * (w.ndim - 1))
    values = np.clip(np.rint(w / scale), -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return WeightCodes("int", bits, numerics.int_code(bits, values.astype(np.int64)),
                       alpha=np.ascontiguousarray(scale).reshape(-1))


def _dense(index, node):
    """``(w, b)`` of ``Gemm(x, w, b; transB=1)``, or ``None``."""
    if node is None or _attr(node, "transB", 0) != 1 or len(node.input) != 3:
        return None
    w, b = index.real(node.input[1]), index.real(node.input[2])
    return None if w is None or b is None else (w, b)


def recognize_scale(index, tensor):
    """``(step, adapter)`` of an activation ``Quant``'s scale ``tensor``: a constant
    (``adapter`` ``None``) or the ASQ adapter's pattern; ``None`` otherwise."""
    step = index.real(tensor)
    if step is not None:
        return (float(step), None) if step.size == 1 else None
    mul = index.made_by(tensor, "Mul")
    step = None if mul is None else index.real(mul.input[1])
    reshape = None if mul is None else index.made_by(mul.input[0], "Reshape")
    clip = None if reshape is None else index.made_by(reshape.input[0], "Clip")
    if step is None or step.size != 1 or clip is None:
        return None
    bounds = [index.real(t) for t in clip.input[1:3]]
    if any(b is None for b in bounds) or (float(bounds[0]), float(bounds[1])) != (
            _BETA_MIN, _BETA_MAX):
        return None
    relu = index.made_by(clip.input[0], "Relu")
    out = None if relu is None else index.made_by(relu.input[0], "Gemm")
    last = _dense(index, out)
    if last is None:
        return None
    hidden_relu = index.made_by(out.input[0], "Relu")
    hidden = None if hidden_relu is None else index.made_by(hidden_relu.input[0], "Gemm")
    first = _dense(index, hidden)
    reader = hidden if first is not None else out
    g = index.producer.get(reader.input[0])
    if g is None or g.op_type not in ("ReduceMean", "Flatten"):
        return None
    if g.op_type == "ReduceMean" and (list(_attr(g, "axes", [])) != [2, 3] or
                                      _attr(g, "keepdims", 1) != 0):
        return None
    kind = "channels" if g.op_type == "ReduceMean" else "vector"
    try:
        if first is None:
            adapter = Adapter(w1=last[0], b1=last[1], input=kind)
        else:
            adapter = Adapter(w1=first[0], b1=first[1], w2=last[0], b2=last[1], input=kind)
    except ValueError:
        return None
    index.adapter_gemms.update(n.output[0] for n in (out, hidden) if n is not None)
    return float(step.reshape(())), adapter


@dataclass
class Quantizer:
    """An activation quantizer: the tensor it quantizes, its step, bits, signedness and ASQ
    adapter (or ``None``)."""

    input: str
    step: float
    bits: int
    signed: bool
    adapter: Adapter | None


def recognize_quantizer(index, node):
    """``Quantizer`` of an activation ``Quant`` node (zero point 0, not narrow), or ``None``."""
    if node.op_type not in ("Quant", "IntQuant"):
        return None
    zero, bits = index.real(node.input[2]), index.real(node.input[3])
    scale = recognize_scale(index, node.input[1])
    if (scale is None or zero is None or bits is None or np.any(zero != 0) or
            _attr(node, "narrow", 0) or bits.size != 1):
        return None
    return Quantizer(node.input[0], scale[0], int(bits), bool(_attr(node, "signed", 1)),
                     scale[1])


# The whole model -----------------------------------------------------------------------------
def is_exported(model):
    """Whether ``model`` says it is a file of ``asqgen export-onnx`` with its codes and adapters
    (metadata ``asqgen.variant`` ``"codes"``; ``to_bundle`` still checks every pattern)."""
    return any(p.key == "asqgen.variant" and p.value == "codes" for p in model.metadata_props)


def _follow(index, tensor, op):
    """The node of type ``op`` that reads ``tensor`` (its only reader of that type)."""
    return index.only_consumer(tensor, op)


def _layer_of(node, weight):
    """The layer's name: the weight tensor ``<L>.w``'s prefix."""
    return weight[:-2] if weight.endswith(".w") else (node.name or node.output[0])


def _input_step(index, x):
    """The input ``Quant`` of the graph input ``x``: ``(step, bits, output)``."""
    node = _follow(index, x, "Quant")
    q = None if node is None else recognize_quantizer(index, node)
    if q is None or q.adapter is not None or q.signed:
        raise BundleError(f"the input {x!r} is not read by an unsigned Quant with a fixed step "
                          f"(not a file of asqgen export-onnx)")
    return q, node.output[0]


def _after_z(index, t):
    """From a layer's ``z`` (or residual sum) to its quantizer: ``(fields, quant node)``."""
    fields = dict(relu=False, clip=None, pool=0, pool_mode="max", global_pool=False)
    node = _follow(index, t, "Relu")
    if node is not None:
        fields["relu"], t = True, node.output[0]
        clip = _follow(index, t, "Clip")
        if clip is not None:
            lo, hi = (index.real(i) for i in clip.input[1:3])
            if lo is None or hi is None or float(lo) != 0.0:
                _fail(clip, "a clip that is not a bounded ReLU (Clip(0, top))")
            fields["clip"], t = float(hi), clip.output[0]
    for op, mode in (("MaxPool", "max"), ("AveragePool", "avg")):
        node = _follow(index, t, op)
        if node is not None:
            k, s = list(_attr(node, "kernel_shape")), list(_attr(node, "strides", [1, 1]))
            if k[0] != k[1] or k != s or any(_attr(node, "pads", [0] * 4)):
                _fail(node, "a pooling other than p x p windows with stride p")
            fields.update(pool=k[0], pool_mode=mode)
            t = node.output[0]
            break
    gap = _follow(index, t, "GlobalAveragePool")
    quant = _follow(index, t, "Quant")
    if gap is not None:
        fields["global_pool"] = True
        quant = _follow(index, gap.output[0], "Quant")
    return fields, quant


def _shortcut(index, tensor, layers, outputs):
    """``(shortcut layer, stride, pad)`` of a residual ``Add``'s second operand."""
    stride, pad, t = 1, 0, tensor
    padding = index.made_by(t, "Pad")
    if padding is not None:
        pads = index.inits.get(padding.input[1])
        if pads is None or len(pads) != 8 or np.any(pads[[0, 2, 3, 4, 6, 7]]):
            _fail(padding, "a padding other than the option-A shortcut's channels")
        pad, t = int(pads[1]), padding.input[0]
    sliced = index.made_by(t, "Slice")
    if sliced is not None:
        steps = index.inits.get(sliced.input[4]) if len(sliced.input) > 4 else None
        if steps is None or len(set(steps.tolist())) != 1:
            _fail(sliced, "a slice other than the option-A shortcut's subsampling")
        stride, t = int(steps[0]), sliced.input[0]
    if t not in outputs:
        raise BundleError(f"the residual operand {tensor!r} is no layer's output")
    return layers[outputs[t]].name, stride, pad


def to_bundle(model):
    """The ``Bundle`` of a file that ``asqgen export-onnx`` wrote (module docstring)."""
    index = GraphIndex(model)
    x = index.graph.input[0]
    shape = tuple(d.dim_value for d in x.type.tensor_type.shape.dim[1:])
    first, x_q = _input_step(index, x.name)
    frac = json.loads(index.meta.get("asqgen.frac_bits", "{}"))
    layers, outputs, quantizers, zs = [], {x_q: None}, {None: first}, {}
    for node in index.graph.node:                    # the adapters' Gemms are no layers
        if node.op_type in ("Quant", "IntQuant"):
            recognize_quantizer(index, node)
    for node in index.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.output[0] in index.adapter_gemms:
            continue
        weights = recognize_weight(index, node.input[1])
        if weights is None:
            _fail(node, "its weights are not asqgen's codes (the POST/POT decode Mul(Gather("
                        "levels, codes), alpha) or a signed Quant): a --compat file cannot be "
                        "read back")
        name = _layer_of(node, node.input[1])
        src_tensor = node.input[0]
        flat = index.made_by(src_tensor, "Flatten")
        if node.op_type == "Gemm" and flat is not None:
            src_tensor = flat.input[0]
        if src_tensor not in outputs:
            _fail(node, "its input is not the output of a Quant of the model")
        src = outputs[src_tensor]
        q_in = quantizers[src]
        mul = _follow(index, node.output[0], "Mul")
        add = None if mul is None else _follow(index, mul.output[0], "Add")
        bn_scale = None if mul is None else index.real(mul.input[1])
        bn_bias = None if add is None else index.real(add.input[1])
        if bn_scale is None or bn_bias is None:
            _fail(node, "not followed by the folded batch norm Mul(scale) and Add(bias)")
        cout = weights.codes.shape[0]
        in_shape = shape if src is None else layers[src].out_shape
        kind = "conv2d" if node.op_type == "Conv" else "linear"
        if kind == "linear":
            in_shape = (int(np.prod(in_shape)),)
        k = weights.codes.shape[-1] if kind == "conv2d" else 1
        pads = list(_attr(node, "pads", [0, 0, 0, 0])) if kind == "conv2d" else [0]
        layer = Layer(
            name=name, kind=kind, in_shape=tuple(in_shape), out_channels=cout, kernel=k,
            stride=int(_attr(node, "strides", [1, 1])[0]) if kind == "conv2d" else 1,
            padding=int(pads[0]), a_bits=q_in.bits, w_format=weights.w_format,
            w_bits=weights.w_bits,
            frac_bits=int(frac.get(name, numerics.default_frac_bits(weights.w_format,
                                                                    weights.w_bits))),
            relu=False, pool=0, weight=weights.codes, alpha=weights.alpha,
            bn_scale=bn_scale.reshape(-1), bn_bias=bn_bias.reshape(-1), s_in=q_in.step,
            input_adapter=q_in.adapter is not None, a_signed=q_in.signed,
            groups=int(_attr(node, "group", 1)) if kind == "conv2d" else 1,
            source=None if src is None else layers[src].name)
        i = len(layers)
        layers.append(layer)
        z = add.output[0]
        zs[z] = i
        total = _follow(index, z, "Add")
        if total is not None and total.input[1] == z:       # a projection: its z is added
            layer.projection = True
            continue
        if total is not None:
            other = total.input[1]
            if other in zs:
                layer.shortcut = layers[zs[other]].name
            else:
                layer.shortcut, layer.shortcut_stride, layer.shortcut_pad = _shortcut(
                    index, other, layers, outputs)
            z = total.output[0]
        if z == model.graph.output[0].name:
            continue                                       # the last layer: its z, the logits
        fields, quant = _after_z(index, z)
        q = None if quant is None else recognize_quantizer(index, quant)
        if q is None:
            _fail(node, "its output does not end in an asqgen activation Quant")
        for key, value in fields.items():
            setattr(layer, key, value)
        layer.next_step, layer.next_bits, layer.next_signed = q.step, q.bits, q.signed
        layer.adapter = q.adapter
        outputs[quant.output[0]] = i
        quantizers[i] = q
    if not layers:
        raise BundleError("no layer of asqgen export-onnx's patterns found")
    chain = all(la.source in (None, layers[j - 1].name if j else None) and
                la.shortcut is None and not la.projection for j, la in enumerate(layers))
    if chain:
        for la in layers:
            la.source = None
    return Bundle(input_shape=shape, input_bits=first.bits, input_step=first.step,
                  layers=layers, meta={"imported_from": "asqgen export-onnx"})


def reference(bundle, model, images, labels=None):
    """The reference arrays of ``bundle`` (``to_bundle(model)``): qonnx's ``execute_onnx`` of
    the file ``model`` on ``images`` (``(N,) + input_shape``, float), its logits, its input
    codes and every layer's input codes (a quantizer's output over its scale, per sample for
    an ASQ one), as ``core.bundle`` stores them; ``labels`` (``(N,)``) if given."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    x = np.ascontiguousarray(images, dtype=np.float32)
    wrapper = ModelWrapper(model).transform(ChangeBatchSize(len(x))).transform(InferShapes())
    ctx = execute_onnx(wrapper, {model.graph.input[0].name: x}, return_full_exec_context=True)
    index = GraphIndex(model)
    steps = {}                      # a quantizer's output tensor: its scale's tensor or value
    for node in model.graph.node:
        if node.op_type in ("Quant", "IntQuant") and recognize_quantizer(index, node):
            scale = index.real(node.input[1])
            steps[node.output[0]] = scale if scale is not None else ctx[node.input[1]]
    outputs = [f"{la.name}.q" for la in bundle.layers]

    def codes(tensor, signed):
        c = np.rint(ctx[tensor] / steps[tensor]).astype(np.int64)
        return c.astype(np.int8 if signed else np.uint8)

    ref = {"images": np.asarray(images, dtype=np.float64),
           "logits": ctx[model.graph.output[0].name].astype(np.float64),
           "codes": codes("x.q", False)}
    for i, layer in enumerate(bundle.layers[1:], start=1):
        j = bundle.source_index(i)
        tensor = "x.q" if j is None else outputs[j]
        ref[f"layer{i}.codes"] = codes(tensor, layer.a_signed).reshape(
            (len(x),) + tuple(layer.in_shape))
    if labels is not None:
        ref["labels"] = np.asarray(labels, dtype=np.int64)
    return ref
