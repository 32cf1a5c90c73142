"""A bundle out to QONNX: the golden model's network as ONNX with QONNX ``Quant`` nodes.

``build(bundle)`` returns an ``onnx.ModelProto`` (ONNX opset 13, ``Quant`` in the domain
``qonnx.custom_op.general``) that computes, in float, what ``sim.golden.network`` computes in
integers (``core.rescale``'s "real computation"): one input ``x`` (the float images,
``(batch,) + input_shape``) and one output, the logits. ``write(bundle, path)`` writes it
(atomically, ``core.files.write_bytes``). No PyTorch; ``onnx.helper`` builds the graph.

The patterns, exactly (``<L>`` is the layer's name from the bundle, ``"3"``, ``"layer1.conv1"``;
an importer recognises them by these initializer names and node shapes, ``export.qonnx_patterns``)
----------------------------------------------------------------------------------------------
The input quantizer::

    x.q = Quant(x, input.step, input.zero, input.bits; signed=0, narrow=0, rounding_mode=ROUND)

Weights of layer ``<L>`` (``<L>.w``, ``(Cout, Cin/groups, k, k)`` or ``(Cout, Cin)``):

* ``int``: ``<L>.w = Quant(<L>.weight, <L>.alpha, <L>.wzero, <L>.wbits; signed=1, narrow=0)``,
  ``<L>.weight`` the float weights ``alpha * value`` (``float32``), ``<L>.alpha`` the
  per-channel scale ``(Cout, 1, 1, 1)`` or ``(Cout, 1)``, zero point 0;
* ``post`` and ``pot``: ``<L>.level = Gather(<L>.levels, <L>.codes; axis=0)`` then
  ``<L>.w = Mul(<L>.level, <L>.alpha)``: ``<L>.codes`` are the bundle's weight codes
  (``int64``, the unsigned ``w_bits``-bit patterns of ``core.numerics``, unchanged) and
  ``<L>.levels`` (``float32``, ``2**w_bits`` entries) the value of every code,
  ``levels[c] = core.numerics.weight_value(fmt, bits, c)``: a reader recovers the codes, the
  format (the table is POST's or POT's) and the width (its length).

The layer (``<L>.in`` its input: the ``Quant`` output of its source, or ``x.q``; a linear
layer reading a feature map first ``<L>.flat = Flatten(<L>.in; axis=1)``)::

    <L>.acc = Conv(<L>.in, <L>.w; kernel_shape, strides, pads, group)  or
              Gemm(<L>.in, <L>.w; transB=1)
    <L>.z   = Add(Mul(<L>.acc, <L>.bn_scale), <L>.bn_bias)     (folded batch norm or bias;
                                                               (Cout, 1, 1) or (Cout,))
    <L>.sum = Add(<L>.z, shortcut)     a residual layer: shortcut is the projection's <P>.z, or
                                       the identity: the shortcut layer's Quant output (its
                                       codes times its scale), for option A first
                                       Slice(steps=stride) on H, W (<L>.short_sub) and Pad on
                                       the channels (<L>.short)
    <L>.relu = Relu(...)               if the layer has a ReLU
    <L>.clip = Clip(<L>.relu, <L>.clip_min, <L>.clip_max)         a bounded ReLU (ReLU6)
    <L>.pool = MaxPool or AveragePool(...; kernel_shape=strides=[p, p])
    <L>.gap  = GlobalAveragePool(...)  global average pooling (after the adapter, which reads
                                       the map before it)

The last layer's ``<L>.z`` is the graph's output (the logits); a projection ends at ``<L>.z``.
Every other layer ends in its output quantizer, whose scale is the step ``<L>.step`` or, with
an ASQ adapter, the step times ``beta``::

    <L>.g     = ReduceMean(u; axes=[2, 3], keepdims=0)     "channels" adapter (a feature map)
                or Flatten(u; axis=1)                      "vector" adapter
    <L>.h     = Relu(Gemm(<L>.g, <L>.adapter.w1, <L>.adapter.b1; transB=1))    two layers only
    <L>.braw  = Relu(Gemm(<L>.h or <L>.g, <L>.adapter.w2 or .w1, .b2 or .b1; transB=1))
    <L>.beta  = Clip(<L>.braw, <L>.beta_min, <L>.beta_max)        [2**-14, 64], the golden
                                                                  model's clamp (core.rescale)
    <L>.scale = Mul(Reshape(<L>.beta, <L>.beta_shape), <L>.step)  (batch, 1, 1, 1) or (batch, 1)
    <L>.q     = Quant(u, <L>.scale or <L>.step, <L>.zero, <L>.bits; signed=next_signed,
                      narrow=0, rounding_mode=ROUND)

Every real parameter (steps, ``alpha``, the folded batch norm, the adapter's weights, the clip)
is a ``float32`` initializer if ``float32`` holds the bundle's value exactly, and otherwise a
``float64`` initializer ``<name>`` read through ``<name>.f32 = Cast(<name>; to=FLOAT)`` (in
practice the folded batch norm): the file keeps the bundle's exact values, so that an importer
recomputes the same fixed-point integers, and computes in ``float32``. The model's
``metadata_props`` hold ``asqgen.frac_bits`` (JSON: layer name to ``frac_bits``,
the hardware's product format, which ONNX has no place for) and ``asqgen.variant``.

Two variants
------------
``compat=True`` (``asqgen export-onnx --compat``) writes what qonnx's ``cleanup_model`` (the
first step of FINN and hls4ml) keeps: it folds every constant subgraph that is not a ``Quant``,
so the POST decode would become a float initializer anyway, and FINN wants static quantizer
scales. So POST and POT weights are the float initializer ``<L>.w = alpha * level`` (the codes
are gone, and no uniform ``Quant`` can hold the levels ``sqrt(2)**-n``), and each ASQ quantizer
takes a fixed scale ``<L>.scale = step * mean(beta)``, ``beta``'s mean over the bundle's
reference inputs in the golden model (``mean_betas``): every input loses its own ``beta``.

``plain=True`` writes each ``Quant`` as standard ops, ``Mul(Round(Clip(Div(x, scale), lo,
hi)), scale)`` (ONNX's ``Round`` is half to even, as ``Quant``'s ``ROUND``), so that plain
onnxruntime runs the file; the measurements use it, the written file does not.

What the float execution cannot reproduce: the hardware's POST product of an odd exponent
``2k + 1`` is ``T[a] << (k_odd - k)`` with ``T[a] = round(a * sqrt(2)/2 * 2**t)`` rounded per
activation code ``a`` (``core.numerics``); a weight table holds ``sqrt(2)/2`` once, so the float
products differ from the hardware's by up to half a table unit each. Besides, the golden model
rounds ``z``, ``beta`` and the requantization in fixed point and rounds half up where ``Quant``
rounds half to even. ``agreement`` measures the effect.
"""

import json

import numpy as np

from core import numerics, rescale
from core.errors import BundleError, ToolError
from core.files import write_bytes

__all__ = ["OPSET", "QONNX_DOMAIN", "level_table", "mean_betas", "build", "write", "run_onnx",
           "agreement"]

OPSET = 13
QONNX_DOMAIN = "qonnx.custom_op.general"
BETA_MIN = 2.0 ** -rescale.BETA_FRAC               # the golden model's clamp of beta
BETA_MAX = rescale.BETA_MAX / rescale.BETA_ONE
INPUT, OUTPUT = "x", "logits"


def _need(name):
    """Import ``name`` (``onnx``, ``onnxruntime``, ``qonnx``), or a one-line ``ToolError``."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ToolError(f"asqgen export-onnx needs the {name.split('.')[0]} package: "
                        f"./dev pip install -e '.[onnx]'") from None


def _onnx():
    return _need("onnx")


def level_table(fmt, bits):
    """The value of every ``bits``-bit ``post``/``pot`` code, indexed by the code (``float32``,
    ``2**bits`` entries): the table the ``Gather`` of the POST decode reads."""
    return np.array([numerics.weight_value(fmt, bits, c) for c in range(2 ** bits)],
                    dtype=np.float32)


def mean_betas(bundle):
    """``{layer index: mean beta}`` of every layer with an adapter, over the bundle's reference
    input codes in the golden model (``--compat``'s fixed steps); ``BundleError`` without
    reference inputs."""
    from sim.golden.network import run_network

    if not any(la.adapter is not None for la in bundle.layers):
        return {}
    codes = bundle.reference.get("codes")
    if codes is None:
        raise BundleError("--compat replaces each ASQ beta by its mean over the bundle's "
                          "reference inputs, and this bundle has none")
    trace = run_network(bundle, codes)
    return {i: float(np.mean(trace.layers[i].beta)) / rescale.BETA_ONE
            for i, la in enumerate(bundle.layers) if la.adapter is not None}


class _Graph:
    """The nodes and initializers being built (``onnx.helper``)."""

    def __init__(self, onnx, plain):
        self.onnx, self.h, self.plain = onnx, onnx.helper, plain
        self.nodes, self.inits = [], []

    def const(self, name, value, dtype=np.float32):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype),
                                                            name))
        return name

    def real(self, name, value):
        """A real parameter: the ``float32`` initializer ``name`` when ``float32`` holds it
        exactly, else the ``float64`` initializer ``name`` and ``<name>.f32 = Cast(name)``
        (the bundle's exact value stays in the file); returns the tensor to compute with."""
        v = np.asarray(value, dtype=np.float64)
        if np.array_equal(v.astype(np.float32).astype(np.float64), v):
            return self.const(name, v)
        self.const(name, v, np.float64)
        return self.node("Cast", [name], f"{name}.f32", to=self.onnx.TensorProto.FLOAT)

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(self.h.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def quant(self, x, scale, prefix, bits, signed, out):
        """``Quant`` (or, ``plain``, its standard-op spelling) of ``x`` by ``scale``."""
        lo, hi = numerics.act_range(bits, signed)
        if self.plain:
            d = self.node("Div", [x, scale], f"{out}.div")
            c = self.node("Clip", [d, self.const(f"{prefix}.qmin", float(lo)),
                                   self.const(f"{prefix}.qmax", float(hi))], f"{out}.clamp")
            r = self.node("Round", [c], f"{out}.round")
            return self.node("Mul", [r, scale], out)
        zero = self.const(f"{prefix}.zero", 0.0)
        bits_name = self.const(f"{prefix}.bits", float(bits))
        self.nodes.append(self.h.make_node("Quant", [x, scale, zero, bits_name], [out],
                                           name=out, domain=QONNX_DOMAIN, signed=int(signed),
                                           narrow=0, rounding_mode="ROUND"))
        return out


def _weight(g, layer, compat):
    """The layer's float weight tensor ``<L>.w`` (module docstring)."""
    n, codes = layer.name, np.asarray(layer.weight, dtype=np.int64)
    alpha = np.asarray(layer.alpha, dtype=np.float64).reshape((-1,) + (1,) * (codes.ndim - 1))
    if layer.w_format == "int":
        values = numerics.int_value(layer.w_bits, codes)
        weight = g.const(f"{n}.weight", values * alpha)
        scale = g.real(f"{n}.alpha", alpha)
        if g.plain:
            return g.quant(weight, scale, f"{n}.w", layer.w_bits, True, f"{n}.w")
        zero = g.const(f"{n}.wzero", 0.0)
        bits = g.const(f"{n}.wbits", float(layer.w_bits))
        g.nodes.append(g.h.make_node("Quant", [weight, scale, zero, bits], [f"{n}.w"],
                                     name=f"{n}.w", domain=QONNX_DOMAIN, signed=1, narrow=0,
                                     rounding_mode="ROUND"))
        return f"{n}.w"
    table = level_table(layer.w_format, layer.w_bits)
    if compat:
        return g.const(f"{n}.w", table[codes].astype(np.float64) * alpha)
    level = g.node("Gather", [g.const(f"{n}.levels", table),
                              g.const(f"{n}.codes", codes, np.int64)], f"{n}.level", axis=0)
    return g.node("Mul", [level, g.real(f"{n}.alpha", alpha)], f"{n}.w")


def _compute(g, layer, x, w, flat):
    """``<L>.z`` of the layer reading ``x`` with the weights ``w`` (module docstring)."""
    n = layer.name
    if layer.kind == "linear":
        if flat:
            x = g.node("Flatten", [x], f"{n}.flat", axis=1)
        acc = g.node("Gemm", [x, w], f"{n}.acc", transB=1)
        shape = (-1,)
    else:
        k, p, s = layer.kernel, layer.padding, layer.stride
        acc = g.node("Conv", [x, w], f"{n}.acc", kernel_shape=[k, k],
                     strides=[s, s], pads=[p, p, p, p], group=layer.groups)
        shape = (-1, 1, 1)
    scaled = g.node("Mul", [acc, g.real(f"{n}.bn_scale", layer.bn_scale.reshape(shape))],
                    f"{n}.scaled")
    return g.node("Add", [scaled, g.real(f"{n}.bn_bias", layer.bn_bias.reshape(shape))],
                  f"{n}.z")


def _shortcut(g, bundle, i, outputs):
    """The tensor layer ``i`` adds to its ``z``: a projection's ``z`` or the identity's codes
    (subsampled and padded for option A)."""
    layer, k = bundle.layers[i], bundle.shortcut_index(i)
    other = bundle.layers[k]
    x = outputs[k]
    if other.projection:
        return x
    n, s, pad = layer.name, layer.shortcut_stride, layer.shortcut_pad
    if s != 1:
        big = np.iinfo(np.int64).max
        x = g.node("Slice", [x, g.const(f"{n}.short_starts", [0, 0], np.int64),
                             g.const(f"{n}.short_ends", [big, big], np.int64),
                             g.const(f"{n}.short_axes", [2, 3], np.int64),
                             g.const(f"{n}.short_steps", [s, s], np.int64)], f"{n}.short_sub")
    extra = layer.out_channels - other.out_channels - pad
    if pad or extra:
        x = g.node("Pad", [x, g.const(f"{n}.short_pads", [0, pad, 0, 0, 0, extra, 0, 0],
                                      np.int64)], f"{n}.short")
    return x


def _adapter_scale(g, layer, u, rank):
    """``<L>.scale``: ``step * beta(u)`` (module docstring)."""
    n, a = layer.name, layer.adapter
    if a.input == "channels":
        x = g.node("ReduceMean", [u], f"{n}.g", axes=[2, 3], keepdims=0)
    else:
        x = g.node("Flatten", [u], f"{n}.g", axis=1)
    arrays = {k: g.real(f"{n}.adapter.{k}", v) for k, v in a.arrays().items()}
    if a.layers == 2:
        hidden = g.node("Gemm", [x, arrays["w1"], arrays["b1"]], f"{n}.hidden", transB=1)
        x = g.node("Relu", [hidden], f"{n}.h")
        last = (arrays["w2"], arrays["b2"])
    else:
        last = (arrays["w1"], arrays["b1"])
    out = g.node("Gemm", [x, *last], f"{n}.out", transB=1)
    braw = g.node("Relu", [out], f"{n}.braw")
    beta = g.node("Clip", [braw, g.const(f"{n}.beta_min", BETA_MIN),
                           g.const(f"{n}.beta_max", BETA_MAX)], f"{n}.beta")
    shaped = g.node("Reshape", [beta, g.const(f"{n}.beta_shape", [-1] + [1] * (rank - 1),
                                              np.int64)], f"{n}.beta_view")
    return g.node("Mul", [shaped, g.real(f"{n}.step", layer.next_step)], f"{n}.scale")


def _after(g, layer, x, compat_beta):
    """ReLU, clip, pooling, the adapter, global pooling and the quantizer after ``x``."""
    n = layer.name
    if layer.relu:
        x = g.node("Relu", [x], f"{n}.relu")
    if layer.clip is not None:
        x = g.node("Clip", [x, g.const(f"{n}.clip_min", 0.0),
                            g.real(f"{n}.clip_max", layer.clip)], f"{n}.clip")
    rank = 4 if layer.kind == "conv2d" else 2
    if layer.pool > 1:
        op = "MaxPool" if layer.pool_mode == "max" else "AveragePool"
        x = g.node(op, [x], f"{n}.pool", kernel_shape=[layer.pool] * 2,
                   strides=[layer.pool] * 2)
    if layer.adapter is None:
        scale = g.real(f"{n}.step", layer.next_step)
    elif compat_beta is not None:
        scale = g.const(f"{n}.scale", layer.next_step * compat_beta)
    else:
        scale = _adapter_scale(g, layer, x, rank)
    if layer.global_pool:
        x = g.node("GlobalAveragePool", [x], f"{n}.gap")
    return g.quant(x, scale, n, layer.next_bits, layer.next_signed, f"{n}.q")


def build(bundle, *, compat=False, plain=False, batch=1, betas=None):
    """The ``onnx.ModelProto`` of ``bundle`` (module docstring), for ``batch`` inputs at once.
    ``compat`` takes ``betas`` (``mean_betas``, computed when ``None``)."""
    onnx = _onnx()
    if compat and betas is None:
        betas = mean_betas(bundle)
    g = _Graph(onnx, plain)
    x = g.quant(INPUT, g.real("input.step", bundle.input_step), "input", bundle.input_bits,
                False, f"{INPUT}.q")
    outputs = []
    for i, layer in enumerate(bundle.layers):
        j = bundle.source_index(i)
        src = x if j is None else outputs[j]
        src_rank = 1 + len(bundle.input_shape if j is None else bundle.layers[j].out_shape)
        w = _weight(g, layer, compat)
        z = _compute(g, layer, src, w, flat=layer.kind == "linear" and src_rank > 2)
        if i == len(bundle.layers) - 1 or layer.projection:
            outputs.append(z)
            continue
        if bundle.shortcut_index(i) is not None:
            z = g.node("Add", [z, _shortcut(g, bundle, i, outputs)], f"{layer.name}.sum")
        outputs.append(_after(g, layer, z, (betas or {}).get(i) if compat else None))
    # The last layer's z is the graph's output, named OUTPUT.
    last = g.nodes[-1]
    last.output[0] = OUTPUT
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, "asqgen", [onnx.helper.make_tensor_value_info(INPUT, f32,
                                                               [batch, *bundle.input_shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT, f32,
                                            [batch, bundle.layers[-1].out_channels])],
        initializer=g.inits)
    opsets = [onnx.helper.make_opsetid("", OPSET)]
    if not plain:
        opsets.append(onnx.helper.make_opsetid(QONNX_DOMAIN, 1))
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="asqgen")
    model.ir_version = 8
    variant = "compat" if compat else "codes"
    onnx.helper.set_model_props(model, {
        "asqgen.variant": variant + ("+plain" if plain else ""),
        "asqgen.frac_bits": json.dumps({la.name: la.frac_bits for la in bundle.layers})})
    return model


def _with_shapes(model):
    """``model`` with every tensor's shape (qonnx's ``InferShapes``, which knows ``Quant``),
    as a qonnx ``ModelWrapper``."""
    ModelWrapper = _need("qonnx.core.modelwrapper").ModelWrapper
    InferShapes = _need("qonnx.transformation.infer_shapes").InferShapes
    return ModelWrapper(model).transform(InferShapes())


def write(bundle, path, *, compat=False):
    """Write ``build(bundle, compat=compat)`` to ``path`` (atomically), with the tensors' shapes
    inferred; return ``path``."""
    model = _with_shapes(build(bundle, compat=compat)).model
    return write_bytes(path, model.SerializeToString())


def run_onnx(model, images, *, engine="qonnx", tensors=()):
    """The logits of ``model`` (built for ``len(images)`` inputs) on ``images``, and the
    values of the named ``tensors`` (a dict): ``engine="qonnx"`` runs qonnx's
    ``execute_onnx`` (onnxruntime node by node, ``Quant`` by qonnx), ``"onnxruntime"`` one
    onnxruntime session (a ``plain`` model)."""
    x = np.asarray(images, dtype=np.float32)
    if engine == "onnxruntime":
        onnxruntime = _need("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        model = _with_outputs(model, tensors)
        session = onnxruntime.InferenceSession(model.SerializeToString(), options)
        values = session.run([OUTPUT, *tensors], {INPUT: x})
        return values[0], dict(zip(tensors, values[1:]))
    execute_onnx = _need("qonnx.core.onnx_exec").execute_onnx
    context = execute_onnx(_with_shapes(model), {INPUT: x}, return_full_exec_context=True)
    return context[OUTPUT], {t: context[t] for t in tensors}


def _with_outputs(model, tensors):
    """A copy of ``model`` whose graph also outputs ``tensors``."""
    onnx = _onnx()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for t in tensors:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    return model


def agreement(bundle, *, compat=False, engine="qonnx", count=None):
    """How close the exported model comes to the bundle, on its first ``count`` reference
    inputs (all by default): ``{"images", "vs_reference", "vs_golden", "codes",
    "codes_vs_reference", "logits"}``, the top-1 agreement with the reference logits
    (PyTorch's) and with the golden model, and per layer that gives codes, the share of its
    output codes identical to the golden model's and to the reference's (PyTorch's,
    ``reference.layer{k}.codes`` of a layer ``k`` reading it) (``{layer name: share}``)."""
    from sim.golden.network import run_network

    ref = bundle.reference
    if "images" not in ref or "logits" not in ref:
        raise BundleError("the bundle has no reference inputs and logits to measure on")
    images = ref["images"][:count]
    betas = mean_betas(bundle) if compat else None
    model = build(bundle, compat=compat, plain=engine == "onnxruntime", batch=len(images),
                  betas=betas)
    quantizers = [la.name for la in bundle.layers if la.next_step is not None]
    scaled = [f"{la.name}.scale" for la in bundle.layers
              if la.adapter is not None and not compat]
    logits, values = run_onnx(model, images, engine=engine,
                              tensors=[f"{n}.q" for n in quantizers] + scaled)
    trace = run_network(bundle, bundle.quantize_input(images))
    readers = {bundle.source_index(k): k for k in range(len(bundle.layers) - 1, 0, -1)}
    shares, torch_shares = {}, {}
    for i, layer in enumerate(bundle.layers):
        if layer.next_step is None:
            continue
        n = layer.name
        scale = values.get(f"{n}.scale")
        if scale is None:
            scale = layer.next_step * (betas[i] if compat and layer.adapter else 1.0)
        codes = np.rint(values[f"{n}.q"] / scale).astype(np.int64)
        shares[n] = float(np.mean(codes == trace.layers[i].codes))
        torch_codes = ref.get(f"layer{readers.get(i)}.codes")
        if torch_codes is not None:
            torch_shares[n] = float(np.mean(codes == torch_codes[:count].reshape(codes.shape)))
    top = logits.argmax(axis=1)
    return {"images": len(images),
            "vs_reference": float(np.mean(top == ref["logits"][:count].argmax(axis=1))),
            "vs_golden": float(np.mean(top == trace.predictions)), "codes": shares,
            "codes_vs_reference": torch_shares, "logits": logits}
