"""``asqgen export-onnx`` (``export.qonnx_export``) and the recognisers of its patterns
(``export.qonnx_patterns``): the files are valid ONNX, qonnx and onnxruntime run them close to
the bundle, the POST codes come back exactly, ``--compat`` survives qonnx's clean-up, and a
file read back gives a bundle whose golden model is the original's."""

import math

import numpy as np
import onnx                  # the onnx extra, which the dev extra (./dev test) installs
import pytest

from asqgen.cli import main
from core.bundle import load, save
from core.errors import BundleError
from export import qonnx_export, qonnx_patterns
from sim.golden.network import run_network

from .cli import asqgen

DEFAULT = "export/default_model/bundle"
MODELS = ["export/models/resnet8", "export/models/resnet20", "export/models/mobilenetv2"]


@pytest.fixture(scope="module")
def default_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export-onnx", "--bundle", DEFAULT, "--out", str(path), "--images", "0"]) == 0
    return path


def _top1(logits, reference):
    return float(np.mean(np.asarray(logits).argmax(1) == np.asarray(reference).argmax(1)))


def test_the_default_bundle_is_valid_qonnx(default_file):
    model = onnx.load(default_file)
    onnx.checker.check_model(model, full_check=True)         # with its inferred shapes
    assert all(d.dim_value for v in model.graph.value_info
               for d in v.type.tensor_type.shape.dim)           # every shape fixed (batch 1)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert quants and all(n.domain == "qonnx.custom_op.general" for n in quants)
    # the input, two int weights (first and last layer) and three activation quantizers
    assert len(quants) == 1 + 2 + 3
    assert [n.op_type for n in model.graph.node].count("Gather") == 2     # the POST layers


def test_qonnx_runs_the_written_file_as_pytorch_did(default_file):
    """qonnx's execute_onnx on the file itself (batch 1, a few inputs), then the batched
    measurement on all 360 reference inputs: top-1 agreement of at least 99%."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    bundle = load(DEFAULT)
    ref = bundle.reference
    model = ModelWrapper(str(default_file))
    logits = np.concatenate([execute_onnx(model, {"x": ref["images"][i:i + 1]})["logits"]
                             for i in range(4)])
    assert _top1(logits, ref["logits"][:4]) == 1.0
    r = qonnx_export.agreement(bundle, engine="qonnx")
    assert r["images"] == 360
    assert r["vs_reference"] >= 0.99 and r["vs_golden"] >= 0.99
    assert _top1(r["logits"], ref["logits"]) == r["vs_reference"]
    # The float graph computes PyTorch's fake-quantized model: the same codes, layer by layer.
    assert all(share >= 0.999 for share in r["codes_vs_reference"].values())


def test_plain_onnxruntime_runs_the_plain_variant():
    bundle = load(DEFAULT)
    model = qonnx_export.build(bundle, plain=True, batch=8)
    assert not any(n.op_type == "Quant" for n in model.graph.node)
    onnx.checker.check_model(model, full_check=True)
    r = qonnx_export.agreement(bundle, engine="onnxruntime")
    assert r["vs_reference"] >= 0.99 and r["vs_golden"] >= 0.99


def _post_value(bits, code):
    """A POST code's value from its definition (docs: sign bit, magnitude m, sqrt(2)**-(m-1))."""
    sign, m = code >> (bits - 1), code & (2 ** (bits - 1) - 1)
    return 0.0 if m == 0 else (-1) ** sign * math.sqrt(2) ** -(m - 1)


def test_the_post_codes_come_back_exactly(default_file):
    from onnx import numpy_helper

    bundle = load(DEFAULT)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(default_file).graph.initializer}
    post = [la for la in bundle.layers if la.w_format == "post"]
    assert len(post) == 2
    for layer in post:
        codes = inits[f"{layer.name}.codes"]
        assert codes.dtype == np.int64 and np.array_equal(codes, layer.weight)
        levels = inits[f"{layer.name}.levels"]
        assert len(levels) == 2 ** layer.w_bits
        want = [_post_value(layer.w_bits, c) for c in range(2 ** layer.w_bits)]
        assert np.allclose(levels, want, rtol=1e-7, atol=0)
        assert np.array_equal(inits[f"{layer.name}.alpha"].reshape(-1), layer.alpha)


def test_compat_survives_qonnx_cleanup(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    bundle = load(DEFAULT)
    path = tmp_path / "compat.onnx"
    assert main(["export-onnx", "--out", str(path), "--compat", "--images", "0"]) == 0
    raw = onnx.load(path)
    ops = [n.op_type for n in raw.graph.node]
    assert "Gather" not in ops and "ReduceMean" not in ops       # no decode, no adapter
    count = 40
    clean = cleanup_model(ModelWrapper(raw), override_inpsize=count)
    ops = [n.op_type for n in clean.graph.node]
    assert ops.count("Quant") == 6 and "Cast" not in ops          # constants folded
    logits = execute_onnx(clean, {clean.graph.input[0].name:
                                  bundle.reference["images"][:count]})
    logits = next(iter(logits.values()))
    assert _top1(logits, bundle.reference["logits"][:count]) >= 0.95
    r = qonnx_export.agreement(bundle, compat=True, engine="onnxruntime", count=120)
    assert r["vs_reference"] >= 0.99


def test_compat_without_reference_inputs_is_one_line(tmp_path):
    bundle = load(DEFAULT)
    bundle.reference = {}
    save(bundle, tmp_path / "bare")
    out = tmp_path / "m.onnx"
    result = asqgen("export-onnx", "--bundle", str(tmp_path / "bare"), "--out", str(out),
                    "--compat")
    assert result.returncode == 3
    assert result.stderr.startswith("asqgen: error: --compat replaces each ASQ beta by its "
                                    "mean") and result.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("folder", MODELS)
def test_residual_and_format3_bundles_export(folder):
    bundle = load(folder)
    onnx.checker.check_model(qonnx_export.build(bundle))
    r = qonnx_export.agreement(bundle, engine="onnxruntime")
    assert r["vs_reference"] >= 0.99
    assert all(share >= 0.999 for share in r["codes_vs_reference"].values())


def _golden(bundle, codes):
    trace = run_network(bundle, codes)
    return trace.logits, [t.codes for t in trace.layers]


@pytest.mark.parametrize("folder", [DEFAULT] + MODELS[:1] + MODELS[2:])
def test_round_trip_gives_the_same_golden_model(folder, tmp_path):
    bundle = load(folder)
    path = qonnx_export.write(bundle, tmp_path / "m.onnx")
    back = qonnx_patterns.to_bundle(onnx.load(path))
    save(back, tmp_path / "back")
    back = load(tmp_path / "back")               # its fixed point recomputed and checked
    assert back.format == bundle.format
    for ours, theirs in zip(back.layers, bundle.layers):
        assert ours.name == theirs.name
        assert np.array_equal(ours.weight, theirs.weight)
        for key, value in theirs.fixed.arrays().items():
            assert np.array_equal(ours.fixed.arrays()[key], value), (ours.name, key)
    codes = bundle.reference["codes"][:40]
    want_logits, want_codes = _golden(bundle, codes)
    got_logits, got_codes = _golden(back, codes)
    assert np.array_equal(got_logits, want_logits)
    for got, want in zip(got_codes, want_codes):
        assert (got is None and want is None) or np.array_equal(got, want)


def test_recognisers_say_none_to_other_patterns(tmp_path):
    bundle = load(DEFAULT)
    compat = qonnx_export.build(bundle, compat=True, betas={0: 1.0, 1: 1.0})
    index = qonnx_patterns.GraphIndex(compat)
    assert qonnx_patterns.recognize_weight(index, "3.w") is None     # a float initializer
    quant = next(n for n in compat.graph.node if n.output[0] == "0.q")
    q = qonnx_patterns.recognize_quantizer(index, quant)
    assert q.adapter is None and q.bits == 4 and not q.signed        # a fixed step
    with pytest.raises(BundleError, match=r"^node '3\.acc' \(Conv\): its weights are not "
                                          r"asqgen's codes .*: a --compat file cannot be read "
                                          r"back$"):
        qonnx_patterns.to_bundle(compat)


def test_bad_bundle_and_unwritable_output_are_one_line(tmp_path):
    out = tmp_path / "m.onnx"
    result = asqgen("export-onnx", "--bundle", str(tmp_path / "missing"), "--out", str(out))
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"asqgen: error: {tmp_path / 'missing'}: no such bundle folder\n"
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = asqgen("export-onnx", "--out", str(blocker / "m.onnx"))
    assert result.returncode == 6 and result.stderr.count("\n") == 1
    result = asqgen("export-onnx", "--out", str(tmp_path))
    assert result.returncode == 6
    assert result.stderr == f"asqgen: error: {tmp_path}: is a folder, not a file name for " \
                            f"the .onnx\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_one_layer_and_vector_adapters(tmp_path):
    """The default bundle with a one-layer "channels" adapter and a "vector" one (before the
    linear layer; the golden model runs it, the hardware does not): the file follows the golden
    model, and reads back to it."""
    from core.adapter import Adapter

    bundle = load(DEFAULT)
    rng = np.random.default_rng(0)
    bundle.layers[1].adapter = Adapter(w1=rng.normal(0, 0.01, (1, 32)), b1=np.array([1.0]))
    bundle.layers[2].adapter = Adapter(w1=rng.normal(0, 0.01, (1, 128)), b1=np.array([1.0]),
                                       input="vector")
    bundle.layers[3].input_adapter = True
    save(bundle, tmp_path / "b")
    bundle = load(tmp_path / "b")
    r = qonnx_export.agreement(bundle, engine="onnxruntime", count=120)
    assert r["vs_golden"] >= 0.99 and min(r["codes"].values()) >= 0.98
    back = qonnx_patterns.to_bundle(qonnx_export.build(bundle))
    assert [la.adapter and (la.adapter.layers, la.adapter.input) for la in back.layers] == [
        (2, "channels"), (1, "channels"), (1, "vector"), None]
    save(back, tmp_path / "back")
    codes = bundle.reference["codes"][:40]
    assert np.array_equal(_golden(load(tmp_path / "back"), codes)[0], _golden(bundle, codes)[0])


def test_an_importer_gets_the_bundle_and_qonnx_reference(default_file, tmp_path):
    """What ``asqgen import`` calls for an exported file: ``is_exported``, ``to_bundle`` and
    ``reference`` (qonnx's execution of the file itself, batch changed to the inputs'), which
    gives PyTorch's codes and top-1 (the file computes PyTorch's model) and saves."""
    bundle = load(DEFAULT)
    model = onnx.load(default_file)
    assert qonnx_patterns.is_exported(model)
    assert not qonnx_patterns.is_exported(qonnx_export.build(bundle, compat=True,
                                                             betas={0: 1.0, 1: 1.0}))
    back = qonnx_patterns.to_bundle(model)
    count = 40
    want = bundle.reference
    back.reference = qonnx_patterns.reference(back, model, want["images"][:count],
                                              want["labels"][:count])
    save(back, tmp_path / "back")
    got = load(tmp_path / "back").reference
    assert np.array_equal(got["codes"], want["codes"][:count])
    assert _top1(got["logits"], want["logits"][:count]) == 1.0
    for i in range(1, len(bundle.layers)):
        key = f"layer{i}.codes"
        assert np.mean(got[key] == want[key][:count]) >= 0.999, key


def test_asqgen_import_reads_back_an_exported_file(default_file, tmp_path):
    """The round trip through the command line: ``asqgen import`` recognises the file of
    ``export-onnx`` (its POST decode and adapters) and writes a bundle whose golden model is
    the original's, with qonnx's execution of the file as its reference."""
    bundle = load(DEFAULT)
    count = 40
    images, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(images, bundle.reference["images"][:count].astype(np.float32))
    np.save(labels, bundle.reference["labels"][:count])
    assert main(["import", str(default_file), "--out", str(tmp_path / "back"), "--inputs",
                 str(images), "--labels", str(labels)]) == 0
    back = load(tmp_path / "back")
    assert [la.w_format for la in back.layers] == ["int", "post", "post", "int"]
    codes = bundle.reference["codes"][:count]
    assert np.array_equal(back.reference["codes"], codes)
    assert np.array_equal(_golden(back, codes)[0], _golden(bundle, codes)[0])
