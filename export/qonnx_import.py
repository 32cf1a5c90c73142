"""From a QONNX file (as Brevitas's ``export_qonnx`` writes it) to an asqgen bundle.

``import_qonnx(path, images, labels)`` reads and cleans the file (``export.qonnx_graph``), walks
the cleaned graph in its (topological) node order and builds the same ``core.bundle.Layer``s
that ``export.to_bundle`` builds from a PyTorch model, then stores qonnx's own execution of the
file on ``images`` as the bundle's reference outputs. No PyTorch.

What is mapped
--------------
Every tensor of the walk is one of: a constant (an initializer); a quantized weight (a
``Quant`` or ``IntQuant`` of a constant: signed, zero point 0, 2 to 8 bits, one scale per tensor
or per output channel: ``int`` weights whose codes are qonnx's own rounding of the weight,
``alpha`` the scale); activation **codes** (the output of an activation ``Quant``: the
network input's, or a layer's ``next_step``/``next_bits``); or a layer's **values**
(``z``, then after ``Relu``, pooling, global pooling). The ops:

=====================================  ==================================================
``Quant``/``IntQuant`` of a constant   the weights (signed) or a bias (its values)
``Quant`` of the graph input           the input step and bits (unsigned only)
``Quant`` of a layer's values          its ``next_step``/``next_bits``: unsigned (it
                                       clamps at 0, so a ``Relu`` before it is implied),
                                       or signed with no ``Relu`` (``next_signed``, the
                                       reader's ``a_signed``: format 3)
``Conv``                               a ``conv2d`` layer: square kernel, equal strides
                                       and pads, no dilation, groups 1 (or depthwise)
``Gemm``, ``MatMul``                   a ``linear`` layer (``Gemm``'s bias: ``bn_bias``)
``BatchNormalization``, ``Add`` and    folded into ``bn_scale``/``bn_bias`` (before the
``Mul`` of a constant                  ``Relu``)
``Relu``                               ``relu``
``MaxPool`` 2x2, stride 2              ``pool = 2``, before or after the quantizer (a
                                       quantizer is monotonic: the same codes)
``GlobalAveragePool``, ``ReduceMean``  ``global_pool`` (format 3): before the quantizer
over H and W                           only, as the accelerator averages the values
``Flatten``, ``Reshape`` to            the flatten between a conv and a linear layer
``(batch, features)``
``Add`` of a layer's values and codes  a residual block's identity shortcut (format 2)
``Add`` of two layers' values          a residual block's projection shortcut: the
                                       projection reads the same codes as another layer
                                       and only the ``Add`` reads it
``Identity``                           nothing
=====================================  ==================================================

A network with no shortcut and each layer reading the one before is a chain (format 1, or 3
for a global pooling or a depthwise conv); otherwise every layer names its source (format 2),
and a projection that comes after the layer it is added to is moved before it. Anything else
is refused with one line naming the node and its op type (``ModelError``, exit status 4).

Rounding: QONNX's ``ROUND`` rounds half to even, the accelerator's requantization half up; the
import maps one onto the other (``asqgen compare`` shows what it costs). ``HALF_UP`` maps
exactly onto unsigned codes; any other rounding mode of an activation quantizer is refused.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import numerics, rules
from core.bundle import Bundle, Layer
from core.errors import BundleError, ModelError, UsageError

from . import qonnx_graph, qonnx_patterns
from .qonnx_graph import QUANT_OPS, node_name

__all__ = ["import_qonnx", "read_inputs", "SUPPORTED_OPS"]

SUPPORTED_OPS = (*QUANT_OPS, "Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Mul", "Relu",
                 "MaxPool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Identity")
_ACT_ROUNDING = ("ROUND", "HALF_EVEN", "HALF_UP")
_NEAR = 1e-3                         # a quantizer's output / its scale is an integer within this


@dataclass
class _Weight:
    """A quantized constant: ``values`` (qonnx's dequantized output), ``codes`` (integers),
    ``scale`` (broadcast to ``codes``' shape) and ``bits``."""

    node: object
    values: np.ndarray
    codes: np.ndarray
    scale: np.ndarray
    bits: int


@dataclass
class _Codes:
    """Activation codes: the output of an activation quantizer (``layer`` ``None``: the
    network input's), possibly max-pooled or flattened; ``shape`` per sample."""

    layer: int | None
    step: float
    bits: int
    shape: tuple
    signed: bool = False


@dataclass
class _Values:
    """A layer's real values before its quantizer; ``stage``: ``"z"`` (its affine part),
    ``"relu"``, ``"pool"``, ``"global"``."""

    layer: int
    stage: str


@dataclass
class _Pending:
    """A layer being built: ``Layer``'s fields, and the tensor its compute node reads."""

    fields: dict
    node: object
    reads: str
    source: int | None
    scale: np.ndarray = None
    bias: np.ndarray = None
    shortcut: int | None = None         # the layer added before the Relu (a residual block)
    projection: bool = False            # a shortcut projection: its values go to one Add


class _Walk:
    def __init__(self, path, model):
        self.path, self.model = path, model
        self.values = {}
        self.layers = []
        self.input_quant = None         # (tensor name, step, bits)
        self.consumers = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.input_name = model.graph.input[0].name

    # Helpers ---------------------------------------------------------------------------------
    def fail(self, node, why, fix=None):
        raise ModelError(f"{self.path}: node {node_name(node)}: {why}"
                         + (f"; {fix}" if fix else ""))

    def const(self, name):
        return self.model.get_initializer(name) if name else None

    def shape(self, name):
        """The per-sample shape of tensor ``name`` (batch dropped)."""
        s = self.model.get_tensor_shape(name)
        return None if s is None else tuple(int(d) for d in s[1:])

    def attrs(self, node):
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def value(self, node, name, *kinds, what):
        v = self.values.get(name)
        if name == self.input_name and v is None:
            v = "input"
        if v is None and self.const(name) is not None:
            v = "const"
        if not any((k == v) if isinstance(k, str) else isinstance(v, k) for k in kinds):
            self.fail(node, f"its input {name!r} is {_describe(v)}, not {what}")
        return v

    def layer_of(self, node, name):
        v = self.value(node, name, _Values, what="the values of a Conv, Gemm or MatMul")
        return v, self.layers[v.layer]

    # The walk --------------------------------------------------------------------------------
    def run(self):
        for node in self.model.graph.node:
            op = node.op_type
            if op not in SUPPORTED_OPS:
                self.fail(node, "this op is not supported", f"asqgen maps "
                          f"{', '.join(SUPPORTED_OPS)}")
            handler = {"IntQuant": self.quant, "Quant": self.quant, "Conv": self.conv,
                       "Gemm": self.gemm, "MatMul": self.matmul,
                       "BatchNormalization": self.batchnorm, "Add": self.affine,
                       "Mul": self.affine, "Relu": self.relu, "MaxPool": self.maxpool,
                       "GlobalAveragePool": self.global_pool, "ReduceMean": self.global_pool,
                       "Flatten": self.flatten, "Reshape": self.flatten,
                       "Identity": self.identity}[op]
            handler(node)
        return self.finish()

    def quant(self, node):
        attrs = self.attrs(node)
        x, scale, zero, bits = (list(node.input) + [""] * 4)[:4]
        params = [self.const(n) for n in (scale, zero, bits)]
        if any(p is None for p in params):
            self.fail(node, "its scale, zero point and bit width must be constants")
        scale, zero, bits = (np.asarray(p, dtype=np.float64) for p in params)
        if np.any(zero != 0):
            self.fail(node, f"zero point {zero.ravel()[np.flatnonzero(zero)[0]]:g} is not "
                            f"implemented (asqgen's quantizers have zero point 0)",
                      "quantize with a zero point of 0 (Brevitas: the *Float quantizers, "
                      "not *FloatZeroPoint)")
        if bits.size != 1 or bits.item() != round(bits.item()):
            self.fail(node, f"bit width {bits.ravel()[:4]} is not one integer")
        bits = int(bits.item())
        missing = [a for a in ("signed", "narrow") if a not in attrs]
        if missing:
            self.fail(node, f"its attribute {missing[0]!r} is missing (qonnx requires it)")
        signed, narrow = bool(attrs["signed"]), bool(attrs["narrow"])
        rounding = attrs.get("rounding_mode", b"ROUND")
        rounding = (rounding.decode() if isinstance(rounding, bytes) else rounding).upper()
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            self.fail(node, "its scale must be positive and finite")
        w = self.const(x)
        if w is not None:
            return self.weight_quant(node, w, scale, bits, signed, narrow, rounding)
        src = self.value(node, x, "input", _Values,
                         what="the graph input or the values of a Conv, Gemm or MatMul")
        if signed and src == "input":
            self.fail(node, "a signed activation quantizer",
                      "use an unsigned input quantizer and non-negative inputs (Brevitas: "
                      "QuantIdentity(act_quant=Uint8ActPerTensorFloat)); the accelerator's "
                      "input codes are unsigned")
        if signed and (src.stage not in ("z", "sum", "global") or
                       self.layers[src.layer].fields["relu"]):
            self.fail(node, "a signed quantizer after a Relu",
                      "use an unsigned one (Brevitas: QuantReLU)")
        if narrow:
            self.fail(node, f"a{' signed' if signed else 'n unsigned'} quantizer with a narrow "
                            f"range is not implemented", "use narrow_range=False")
        if rounding not in _ACT_ROUNDING:
            self.fail(node, f"rounding mode {rounding} is not implemented (the accelerator "
                            f"rounds to nearest, half up)")
        if scale.size != 1:
            self.fail(node, "a per-channel activation scale is not implemented (one scale per "
                            "tensor)")
        if bits not in numerics.ACT_BITS:
            self.fail(node, f"{bits}-bit activations: asqgen's are "
                            f"{numerics.ACT_BITS.start} to {numerics.ACT_BITS.stop - 1} bits")
        step = float(scale.item())
        out = node.output[0]
        if src == "input":
            if self.input_quant is not None:
                self.fail(node, "the input is quantized twice")
            self.input_quant = (out, step, bits)
            self.values[out] = _Codes(None, step, bits, self.shape(x))
            return
        layer = self.layers[src.layer]
        f = layer.fields
        if f["next_step"] is not None:
            self.fail(node, f"the output of {layer.node.name!r} is quantized twice")
        f["relu"] = f["relu"] or not signed          # an unsigned quantizer clamps at 0
        f["next_step"], f["next_bits"], f["next_signed"] = step, bits, signed
        self.values[out] = _Codes(src.layer, step, bits, self.shape(out), signed)

    def weight_quant(self, node, w, scale, bits, signed, narrow, rounding):
        from qonnx.custom_op.general.intquant import int_quant

        w = np.asarray(w, dtype=np.float64)
        try:
            scale_b = np.broadcast_to(scale, w.shape)
        except ValueError:
            self.fail(node, f"its scale of shape {scale.shape} does not fit the weight "
                            f"{w.shape}")
        values = int_quant(w, scale, np.float64(0), np.float64(bits), signed, narrow, rounding)
        codes = np.round(values / scale_b)
        if np.max(np.abs(values / scale_b - codes), initial=0) > _NEAR:
            self.fail(node, "its output is not an integer multiple of its scale")
        self.values[node.output[0]] = _Weight(node, values, codes.astype(np.int64), scale_b,
                                              bits)

    def _weights(self, node, name, out_axis):
        """The ``(Cout, ...)`` codes and ``alpha`` of a quantized weight; ``out_axis`` is the
        output channels' axis."""
        if name not in self.values and self.const(name) is not None:
            self.fail(node, f"its weight {name!r} is float, with no Quant",
                      "quantize the weights (Brevitas: QuantConv2d, QuantLinear)")
        q = self.value(node, name, _Weight, what="quantized weights")
        if not bool(self.attrs(q.node).get("signed", 1)):
            self.fail(q.node, "unsigned weights are not implemented (signed int weights)")
        if q.bits not in numerics.WEIGHT_BITS:
            self.fail(q.node, f"{q.bits}-bit weights: asqgen's int weights are "
                              f"{numerics.WEIGHT_BITS.start} to {numerics.WEIGHT_BITS.stop - 1} "
                              f"bits")
        codes = np.moveaxis(q.codes, out_axis, 0)
        scale = np.moveaxis(q.scale, out_axis, 0).reshape(codes.shape[0], -1)
        if np.any(scale != scale[:, :1]):
            self.fail(q.node, "its scale varies along another axis than the output channels")
        return codes, scale[:, 0].copy(), q.bits

    def _bias(self, node, name, cout):
        if not name:
            return np.zeros(cout)
        v = self.values.get(name)
        b = v.values if isinstance(v, _Weight) else self.const(name)
        if b is None:
            self.fail(node, f"its bias {name!r} is not a constant")
        b = np.asarray(b, dtype=np.float64).ravel()
        if b.size != cout:
            self.fail(node, f"its bias has {b.size} values for {cout} outputs")
        return b

    def _codes_in(self, node, name):
        v = self.value(node, name, _Codes, what="activation codes (the output of an unsigned "
                                                "activation Quant)")
        return v

    def _new_layer(self, node, kind, x, codes, alpha, w_bits, bias, **conv):
        if x.layer is None and self.layers:
            self.fail(node, "it reads the network input, but it is not the first layer (only "
                            "the first layer reads the input codes)")
        cout = codes.shape[0]
        fields = dict(
            name=node.name, kind=kind, out_channels=cout, a_bits=x.bits, w_format="int",
            w_bits=w_bits, frac_bits=numerics.default_frac_bits("int", w_bits),
            weight=numerics.int_code(w_bits, codes).astype(np.int64), alpha=alpha,
            s_in=x.step, relu=False, pool=0, next_step=None, next_bits=None,
            a_signed=x.signed, next_signed=False,
            kernel=conv.get("kernel", 1), stride=conv.get("stride", 1),
            padding=conv.get("padding", 0), groups=conv.get("groups", 1),
            in_shape=x.shape if kind == "conv2d" else (int(np.prod(x.shape)),))
        self.layers.append(_Pending(fields, node, node.input[0], x.layer, np.ones(cout),
                                    self._bias(node, bias, cout)))
        self.values[node.output[0]] = _Values(len(self.layers) - 1, "z")

    def conv(self, node):
        a = self.attrs(node)
        x = self._codes_in(node, node.input[0])
        codes, alpha, bits = self._weights(node, node.input[1], 0)
        ks, strides = list(a.get("kernel_shape", codes.shape[2:])), list(a.get("strides", [1, 1]))
        pads, dil = list(a.get("pads", [0, 0, 0, 0])), list(a.get("dilations", [1, 1]))
        groups = int(a.get("group", 1))
        if len(x.shape) != 3 or codes.ndim != 4:
            self.fail(node, "asqgen maps 2-D convolutions of (C, H, W) inputs")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            self.fail(node, "auto_pad is not implemented (explicit pads)")
        if ks[0] != ks[1] or strides[0] != strides[1] or len(set(pads)) != 1 or set(dil) != {1}:
            self.fail(node, f"kernel {ks}, strides {strides}, pads {pads}, dilations {dil}: "
                            f"asqgen maps square kernels with equal strides and pads and no "
                            f"dilation")
        if groups != 1 and not (groups == x.shape[0] == codes.shape[0] and codes.shape[1] == 1):
            self.fail(node, f"groups {groups}: asqgen maps groups 1 or a depthwise conv")
        if codes.shape[1] * groups != x.shape[0]:
            self.fail(node, f"its weight {codes.shape} does not fit its input {x.shape}")
        self._new_layer(node, "conv2d", x, codes, alpha, bits,
                        node.input[2] if len(node.input) > 2 else "", kernel=int(ks[0]),
                        stride=int(strides[0]), padding=int(pads[0]), groups=groups)

    def gemm(self, node):
        a = self.attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            self.fail(node, "transA, alpha and beta must be 0, 1 and 1")
        self._linear(node, out_axis=0 if a.get("transB", 0) else 1,
                     bias=node.input[2] if len(node.input) > 2 else "")

    def matmul(self, node):
        self._linear(node, out_axis=1, bias="")

    def _linear(self, node, out_axis, bias):
        x = self._codes_in(node, node.input[0])
        codes, alpha, bits = self._weights(node, node.input[1], out_axis)
        if len(x.shape) != 1 or codes.ndim != 2 or codes.shape[1] != x.shape[0]:
            self.fail(node, f"its weight {codes.shape} does not fit its input {x.shape} (a "
                            f"linear layer reads a flat vector)")
        self._new_layer(node, "linear", x, codes, alpha, bits, bias)

    def _channel_vector(self, node, c, layer):
        """The per-channel vector of a constant that broadcasts against a layer's values."""
        c = np.asarray(c, dtype=np.float64)
        shape = self.shape(layer.node.output[0])
        try:
            full = np.broadcast_to(c, (1,) + shape)[0].reshape(shape[0], -1)
        except ValueError:
            self.fail(node, f"its constant of shape {c.shape} does not fit the layer's output "
                            f"{shape}")
        if c.ndim > len(shape) + 1 or np.any(full != full[:, :1]):
            self.fail(node, "its constant varies along another axis than the channels")
        return full[:, 0].copy()

    def batchnorm(self, node):
        v, layer = self.layer_of(node, node.input[0])
        params = [self.const(n) for n in node.input[1:5]]
        if v.stage != "z" or any(p is None for p in params):
            self.fail(node, "a batch norm must follow a Conv, Gemm or MatMul (before the Relu), "
                            "with constant parameters")
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        eps = float(self.attrs(node).get("epsilon", 1e-5))
        a = gamma / np.sqrt(var + eps)
        layer.scale = layer.scale * a
        layer.bias = a * layer.bias + beta - a * mean
        self.values[node.output[0]] = v

    def affine(self, node):
        names = list(node.input)
        consts = [self.const(n) for n in names]
        if node.op_type == "Add" and len(names) == 2 and all(c is None for c in consts):
            return self.residual(node)
        if sum(c is not None for c in consts) != 1:
            self.fail(node, "asqgen maps an Add or Mul of a layer's values and a constant, or "
                            "the Add of a residual block")
        other = names[0] if consts[0] is None else names[1]
        c = consts[1] if consts[0] is None else consts[0]
        v, layer = self.layer_of(node, other)
        if v.stage != "z":
            self.fail(node, "a constant Add or Mul must come before the Relu")
        vec = self._channel_vector(node, c, layer)
        if node.op_type == "Add":
            layer.bias = layer.bias + vec
        else:
            layer.scale, layer.bias = layer.scale * vec, layer.bias * vec
        self.values[node.output[0]] = v

    def residual(self, node):
        """A residual block's Add: a conv layer's values plus an earlier layer's codes (the
        identity shortcut) or a projection's values (a conv with batch norm and nothing
        after it, whose values only this Add reads)."""
        a, b = (self.values.get(n) for n in node.input)
        if isinstance(a, _Codes) or (isinstance(a, _Values) and isinstance(b, _Values) and
                                     self._is_projection(a) and not self._is_projection(b)):
            a, b = b, a
        if not isinstance(a, _Values) or a.stage != "z" or not isinstance(b, (_Codes, _Values)):
            self.fail(node, f"a residual Add adds a conv layer's values (after its batch norm, "
                            f"before its Relu) and a shortcut, not {_describe(a)} and "
                            f"{_describe(b)}")
        main = self.layers[a.layer]
        if main.fields["kind"] != "conv2d" or main.shortcut is not None:
            self.fail(node, "the shortcut must be added to a conv layer, once")
        if isinstance(b, _Codes):
            if b.layer is None:
                self.fail(node, "its shortcut is the network input's codes (the shortcut must "
                                "be a layer's output)")
            main.shortcut = b.layer
        else:
            if b.stage != "z" or not self._is_projection(b):
                self.fail(node, "its shortcut is neither codes (a quantizer's output) nor a "
                                "projection (a conv with batch norm whose values only this Add "
                                "reads)")
            proj = self.layers[b.layer]
            if proj.fields["kind"] != "conv2d" or proj.projection:
                self.fail(node, "a projection shortcut must be a conv layer, used once")
            proj.projection = True
            main.shortcut = b.layer
        self.values[node.output[0]] = _Values(a.layer, "sum")

    def _is_projection(self, v):
        """Whether layer values ``v`` can be a projection: its layer reads the same codes as
        another layer (the block's first conv)."""
        reads = self.layers[v.layer].reads
        return sum(p.reads == reads for p in self.layers) > 1

    def relu(self, node):
        v, layer = self.layer_of(node, node.input[0])
        if v.stage not in ("z", "sum"):
            self.fail(node, "a second Relu")
        layer.fields["relu"] = True
        self.values[node.output[0]] = _Values(v.layer, "relu")

    def maxpool(self, node):
        a = self.attrs(node)
        ks, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
        pads, dil = list(a.get("pads", [0, 0, 0, 0])), list(a.get("dilations", [1, 1]))
        if (ks != [2, 2] or strides != [2, 2] or set(pads) != {0} or set(dil) != {1}
                or a.get("ceil_mode", 0) or len(node.output) > 1):
            self.fail(node, f"kernel {ks}, strides {strides}, pads {pads}: the accelerator "
                            f"max-pools 2x2 windows with stride 2 and no padding")
        v = self.values.get(node.input[0])
        if isinstance(v, _Codes) and v.layer is not None:
            if len(self.consumers.get(node.input[0], [])) != 1:
                self.fail(node, "the codes it pools are read elsewhere too")
            layer = self.layers[v.layer]
            if layer.fields["pool"] or layer.fields["kind"] != "conv2d":
                self.fail(node, "a second pooling of one layer")
            layer.fields["pool"] = 2
            self.values[node.output[0]] = _Codes(v.layer, v.step, v.bits,
                                                 self.shape(node.output[0]), v.signed)
            return
        v, layer = self.layer_of(node, node.input[0])
        if v.stage not in ("z", "sum", "relu") or layer.fields["kind"] != "conv2d":
            self.fail(node, "a max pooling after a pooling, or of a linear layer")
        if v.stage in ("z", "sum"):
            self.fail(node, "a max pooling before the Relu is not mapped (Relu, then pooling)")
        layer.fields["pool"] = 2
        self.values[node.output[0]] = _Values(v.layer, "pool")

    def global_pool(self, node):
        if node.op_type == "ReduceMean":
            a = self.attrs(node)
            axes = a.get("axes")
            if axes is None and len(node.input) > 1:
                axes = self.const(node.input[1])
            axes = sorted(int(i) for i in np.ravel(axes)) if axes is not None else None
            if axes not in ([2, 3], [-2, -1]) or not a.get("keepdims", 1):
                self.fail(node, f"a mean over axes {axes}: asqgen maps the mean over H and W "
                                f"(keepdims=1), a global average pooling")
        v = self.values.get(node.input[0])
        if isinstance(v, _Codes):
            self.fail(node, "it averages quantized codes; the accelerator averages the values "
                            "before its quantizer",
                      "put the activation quantizer after the pooling (Brevitas: a float ReLU, "
                      "the pooling, then QuantIdentity)")
        v, layer = self.layer_of(node, node.input[0])
        if v.stage not in ("relu", "pool") or layer.fields["kind"] != "conv2d":
            self.fail(node, "a global average pooling must follow a conv layer's Relu (or its "
                            "max pooling)")
        layer.fields["global_pool"] = True
        self.values[node.output[0]] = _Values(v.layer, "global")

    def flatten(self, node):
        out = self.shape(node.output[0])
        if out is None or len(out) != 1 or (node.op_type == "Flatten" and
                                            self.attrs(node).get("axis", 1) != 1):
            self.fail(node, f"it gives shape {out} per sample: asqgen maps a flatten to "
                            f"(batch, features) only")
        v = self.values.get(node.input[0])
        if isinstance(v, _Codes):
            self.values[node.output[0]] = _Codes(v.layer, v.step, v.bits, out, v.signed)
            if len(self.consumers.get(node.input[0], [])) != 1:
                self.fail(node, "the codes it flattens are read elsewhere too")
            return
        v, layer = self.layer_of(node, node.input[0])
        self.values[node.output[0]] = v

    def identity(self, node):
        v = self.values.get(node.input[0])
        if v is None:
            self.fail(node, "an Identity of the graph input or a constant")
        self.values[node.output[0]] = v

    # The result -------------------------------------------------------------------------------
    def finish(self):
        out = self.model.graph.output[0].name
        v = self.values.get(out)
        if self.input_quant is None:
            raise ModelError(f"{self.path}: the graph input is not quantized (asqgen needs an "
                             f"unsigned activation Quant on the input)")
        if not isinstance(v, _Values) or v.stage != "z" or v.layer != len(self.layers) - 1:
            raise ModelError(f"{self.path}: the graph output {out!r} is {_describe(v)}: asqgen "
                             f"maps a network whose output is the last layer's values with no "
                             f"Relu, pooling or quantizer (the logits)")
        for i, p in enumerate(self.layers):
            if i < len(self.layers) - 1 and p.fields["next_step"] is None and not p.projection:
                raise ModelError(f"{self.path}: the output of {p.fields['name']!r} is not "
                                 f"quantized (an unsigned activation Quant must follow it)")
        graph = any(p.shortcut is not None or p.source != (k - 1 if k else None)
                    for k, p in enumerate(self.layers))
        order = list(range(len(self.layers)))
        for i, p in enumerate(self.layers):         # a projection comes before its reader
            j = p.shortcut
            if j is not None and self.layers[j].projection and order.index(j) > order.index(i):
                order.remove(j)
                order.insert(order.index(i), j)
        names = [p.fields["name"] for p in self.layers]       # by the original index
        self.layers = [self.layers[i] for i in order]
        name = lambda i: None if i is None else names[i]
        layers = []
        for p in self.layers:
            layer = Layer(bn_scale=p.scale, bn_bias=p.bias, **p.fields)
            if graph:
                layer.source, layer.shortcut = name(p.source), name(p.shortcut)
                layer.projection = p.projection
            layers.append(layer)
        return layers


def _describe(v):
    if v is None:
        return "nothing asqgen maps"
    if isinstance(v, str):
        return {"input": "the graph input", "const": "a float constant"}[v]
    if isinstance(v, _Codes):
        return "activation codes"
    if isinstance(v, _Weight):
        return "quantized weights"
    return f"the values of a layer ({v.stage})"


def read_inputs(images, labels, shape):
    """The ``--inputs`` and ``--labels`` arrays checked against one input's ``shape``
    (``UsageError``)."""
    def load(path, what):
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise UsageError(f"{what} {path}: no such file") from None
        except (OSError, ValueError, EOFError) as e:
            raise UsageError(f"{what} {path}: not a .npy array ({e})") from None

    x = load(images, "--inputs")
    if x.ndim == len(shape):
        x = x[None]
    if tuple(x.shape[1:]) != tuple(shape) or len(x) == 0:
        raise UsageError(f"--inputs {images}: shape {x.shape}, but the model takes (N,) + "
                         f"{tuple(shape)}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise UsageError(f"--inputs {images}: {x.dtype} values, not real numbers")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise UsageError(f"--inputs {images}: holds NaN or infinite values")
    if x.min() < 0:
        raise UsageError(f"--inputs {images}: holds negative values (down to {x.min():.4g}), "
                         f"which the unsigned input quantizer clamps to 0: shift and scale the "
                         f"inputs to be non-negative")
    y = None
    if labels is not None:
        y = load(labels, "--labels")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"--labels {labels}: {y.dtype} {y.shape}, not {len(x)} integer "
                             f"classes")
        y = y.astype(np.int64)
    return x, y


def _codes(values, step, where):
    q = np.asarray(values, dtype=np.float64) / step
    codes = np.round(q)
    if np.max(np.abs(q - codes), initial=0) > _NEAR:
        raise ModelError(f"{where}: qonnx's quantized values are not multiples of the step")
    return codes.astype(np.int64)


def _fixed(path, layers):
    """Every layer's fixed-point integers, or one line naming the layer."""
    for layer in layers:
        try:
            with np.errstate(invalid="raise", over="raise", divide="raise"):
                layer.fixed = layer.compute_fixed()
        except (ValueError, FloatingPointError) as e:
            raise ModelError(f"{path}: layer {layer.name!r}: its scales cannot be represented "
                             f"by the rescale's fixed point ({e})") from None


def _exported(path, proto, images, labels):
    """A file of ``asqgen export-onnx``: its own patterns (``export.qonnx_patterns``: the POST
    decode and the ASQ adapters), read before the clean-up that would fold them, give the
    original bundle's layers; the reference is qonnx's execution of the file."""
    try:
        bundle = qonnx_patterns.to_bundle(proto)
    except BundleError as e:
        raise ModelError(f"{path}: {e}") from None
    x, y = read_inputs(images, labels, bundle.input_shape)
    _fixed(path, bundle.layers)
    bundle.reference = qonnx_patterns.reference(bundle, proto, x, y)
    bundle.meta = {"source": "qonnx", "written_by": "asqgen export-onnx", "model": path.name,
                   "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "reference": "qonnx execute_onnx"}
    return bundle


def import_qonnx(path, images, labels=None):
    """The bundle of the QONNX file ``path`` with qonnx's execution on ``images`` (an ``.npy``
    path or array) as its reference; a file of ``asqgen export-onnx`` gives its original
    bundle back (``_exported``).

    ``images`` and ``labels`` are paths of ``.npy`` files (``read_inputs``). Raises
    ``ModelError`` for a file that cannot be read or mapped, ``UsageError`` for bad inputs.
    """
    path = Path(path)
    proto = qonnx_graph.load(path)
    if qonnx_patterns.is_exported(proto):
        return _exported(path, proto, images, labels)
    model = qonnx_graph.read(path, proto)
    walk = _Walk(path, model)
    layers = walk.run()
    in_name, step, bits = walk.input_quant
    shape = walk.shape(walk.input_name)
    x, y = read_inputs(images, labels, shape)
    _fixed(path, layers)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bundle = Bundle(input_shape=tuple(shape), input_bits=bits, input_step=step, layers=layers,
                    meta={"source": "qonnx", "model": path.name, "model_sha256": digest,
                          "reference": "qonnx execute_onnx"})
    for i, layer in enumerate(layers):
        if layer.shortcut is not None:
            layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
    try:
        rules.check_bundle(bundle)
    except ValueError as e:
        raise ModelError(f"{path}: {e}") from None
    out = walk.model.graph.output[0].name
    reads = [p.reads for p in walk.layers[1:]]
    try:
        ctx = qonnx_graph.execute(model, x, [in_name, out, *reads])
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    reference = {"images": x, "logits": ctx[out].reshape(len(x), -1).astype(np.float64),
                 "codes": _codes(ctx[in_name], step, f"{path}: the input").astype(np.uint8)}
    for i, (layer, name) in enumerate(zip(layers[1:], reads), start=1):
        codes = _codes(ctx[name], layer.s_in, f"{path}: layer {layer.name!r}")
        reference[f"layer{i}.codes"] = codes.reshape((len(x),) + tuple(layer.in_shape)).astype(
            np.int8 if layer.a_signed else np.uint8)
    if y is not None:
        reference["labels"] = y
    bundle.reference = reference
    return bundle
