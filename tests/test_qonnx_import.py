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


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_golden_model_agrees_with_qonnx(name, bundles):
    """Top-1 agreement of at least 99 %, and at least 99 % identical codes at every layer's
    input (the rounding of ties and of the rescale's constants are the only differences)."""
    report = _report(bundles[name])
    assert report["top1_agreement"] >= 0.99
    for layer in report["layers"]:
        assert layer["identical"] >= 0.99, layer
        assert layer["max_difference"] <= 1, layer


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
    """The CNN on Verilator, identical to the golden model. The engine is the default model's
    (``asqgen sim``'s sizing of the default bundle, which the imported CNN fits), so the build
    is the one ``tests/test_flow.py``'s ``asqgen sim`` makes and reuses."""
    from asqgen.options import default_model
    from sim.report import simulate

    default = load(default_model() / "bundle")
    config = config_for_bundle(default, **dict(zip(("rows", "cols"),
                                                   array_for_bundle(default))))
    report = simulate(bundles["cnn4"], images=3, config=config, root=build_root)
    assert report["identical"]


def test_external_data_beside_the_model(tmp_path):
    model = onnx.load(FIXTURES / "cnn4.onnx")
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 1000
    assert _import(tmp_path / "ext.onnx", tmp_path / "b") == 0
    assert load(tmp_path / "b").layers[1].w_bits == 4


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


BAD_MODELS = {
    "unsupported op": (_unsupported, "'Sigmoid_0' (Sigmoid): this op is not supported"),
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
