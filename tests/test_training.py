"""QAT on the digits: the fixed split, a short training, the pickle-free checkpoint and its
validation, the ``train`` and ``methods`` commands."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from export import digits
from export.methods import markdown
from export.quantizers import AsqQuantizer, PostQuantizer
from export.to_bundle import export_bundle
from export.train import Recipe, load_checkpoint, save_checkpoint, train

from .cli import asqgen

torch.set_num_threads(1)

SHORT = Recipe(bits=4, weight_method="post", act_method="asq", seed=3, float_epochs=1, epochs=1)
# sha256 of the sorted test indices as little-endian int64: changes only if the split changes
TEST_SPLIT_SHA256 = "029b55daa6f2edd89879dbf642826ff0d19422b26daba57377d2e31ed02cf1ff"


# --------------------------------------------------------------------------- the split

def test_split_is_fixed_disjoint_and_complete():
    np.random.seed(12345)                   # global seeds must not move the split
    torch.manual_seed(12345)
    train_idx, test_idx = digits.split_indices()
    assert (len(train_idx), len(test_idx)) == (1437, 360)
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.array_equal(np.union1d(train_idx, test_idx), np.arange(1797))
    assert hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest() == TEST_SPLIT_SHA256
    digits.split_indices.cache_clear()
    again = digits.split_indices()
    assert np.array_equal(again[1], test_idx)


def test_split_is_stratified():
    _, labels = digits.load()
    _, test_idx = digits.split_indices()
    per_class = np.bincount(labels)
    in_test = np.bincount(labels[test_idx], minlength=10)
    assert np.all(np.abs(in_test - per_class * 360 / 1797) < 1)   # largest remainder
    assert in_test.sum() == 360


def test_images_are_scaled_pixels():
    x, y = digits.tensors("test")
    assert x.shape == (360, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x * 16, torch.round(x * 16))                 # pixels / 16 exactly
    with pytest.raises(ValueError, match="part must be 'train' or 'test', not 'val'"):
        digits.tensors("val")


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    lines = []
    model, info = train(SHORT, log=lines.append)
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model, info, folder)
    return model, info, folder, lines


def test_short_training_learns(trained):
    model, info, _, lines = trained
    assert [h["phase"] for h in info["history"]] == ["float", "qat"]
    for h in info["history"]:
        assert np.isfinite(h["loss"]) and h["loss"] < 2.0            # chance is ln 10 = 2.3
        assert h["train_accuracy"] > 0.6
    assert 0.6 < info["test_accuracy"] <= 1.0                         # chance is 0.1
    assert len(lines) == 2 and "loss" in lines[0] and "test" in lines[1]
    assert not model.training


def test_training_is_reproducible(trained):
    _, info, _, _ = trained
    _, again = train(SHORT)
    assert again["history"] == info["history"]
    assert again["test_accuracy"] == info["test_accuracy"]


def test_trained_model_exports(trained):
    model, _, _, _ = trained
    bundle = export_bundle(model, input_shape=(1, 8, 8))
    assert [(la.w_format, la.w_bits, la.a_bits, la.input_adapter) for la in bundle.layers] == [
        ("int", 8, 8, False), ("post", 4, 4, True), ("post", 4, 4, True), ("int", 8, 8, False)]


# --------------------------------------------------------------------------- checkpoint

def test_checkpoint_round_trip_is_exact(trained):
    model, info, folder, _ = trained
    loaded, loaded_info = load_checkpoint(folder)
    assert loaded_info == json.loads(json.dumps(info))
    x, _ = digits.tensors("test")
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert isinstance(loaded[3].weight_quantizer, PostQuantizer)
    assert isinstance(loaded[3].act_quantizer, AsqQuantizer)
    with np.load(folder / "model.npz", allow_pickle=False) as npz:   # no object arrays
        assert all(npz[k].dtype != object for k in npz.files)


def _npz(folder):
    with np.load(folder / "model.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _write_npz(folder, arrays):
    with open(folder / "model.npz", "wb") as f:
        np.savez(f, **arrays)


def _edit_json(folder, **changes):
    info = json.loads((folder / "model.json").read_text())
    for k, v in changes.items():
        if v is _DELETE:
            del info[k]
        else:
            info[k] = v
    (folder / "model.json").write_text(json.dumps(info))


_DELETE = object()


def _drop_key(f):
    a = _npz(f)
    del a["3.act_quantizer.adapter.hidden.weight"]
    _write_npz(f, a)


def _extra_key(f):
    _write_npz(f, {**_npz(f), "99.weight": np.zeros(3, np.float32)})


def _wrong_shape(f):
    _write_npz(f, {**_npz(f), "7.weight": np.zeros((32, 32, 3, 2), np.float32)})


def _wrong_dtype(f):
    a = _npz(f)
    _write_npz(f, {**a, "12.bias": a["12.bias"].astype(np.float64)})


def _non_finite(f):
    a = _npz(f)
    a["1.running_var"][2] = np.nan
    _write_npz(f, a)


def _uninitialised(f):
    _write_npz(f, {**_npz(f), "3.weight_quantizer.initialized": np.array(False)})


def _pickled(f):
    _write_npz(f, {**_npz(f), "12.bias": np.array([{"a": 1}] * 10, dtype=object)})


BAD = [
    ("missing json", lambda f: (f / "model.json").unlink(),
     r"model\.json: missing checkpoint file$"),
    ("missing npz", lambda f: (f / "model.npz").unlink(),
     r"model\.npz: missing checkpoint file$"),
    ("corrupt json", lambda f: (f / "model.json").write_text('{"bits": 4,'),
     r"model\.json: not valid JSON \(Expecting property name enclosed in double quotes at "
     r"line 1\)$"),
    ("json not an object", lambda f: (f / "model.json").write_text("[1, 2]"),
     r"model\.json: expected a JSON object, not list$"),
    ("bits 5", lambda f: _edit_json(f, bits=5),
     r"model\.json: bits must be one of 2, 3, 4, 8, not 5$"),
    ("bits as text", lambda f: _edit_json(f, bits="4"),
     r"model\.json: bits must be one of 2, 3, 4, 8, not '4'$"),
    ("bad weight method", lambda f: _edit_json(f, weight_method="int"),
     r"model\.json: weight_method must be one of lsq, pot, post or null, not 'int'$"),
    ("bad act method", lambda f: _edit_json(f, act_method="pact"),
     r"model\.json: act_method must be one of lsq, asq or null, not 'pact'$"),
    ("wrong format", lambda f: _edit_json(f, format="other"),
     r"model\.json: format must be 'asqgen-checkpoint', not 'other'$"),
    ("wrong version", lambda f: _edit_json(f, version=2),
     r"model\.json: version must be 1, not 2$"),
    ("first bits", lambda f: _edit_json(f, first_bits=4),
     r"model\.json: first_bits must be 8, not 4$"),
    ("missing field", lambda f: _edit_json(f, act_method=_DELETE),
     r"model\.json: missing field 'act_method'$"),
    ("recipe disagrees", lambda f: _edit_json(f, act_method="lsq"),
     r"model\.npz: unexpected tensor '3\.act_quantizer\.adapter\.hidden\.weight' and 7 more for "
     r"4-bit post weights, 4-bit lsq activations \(first and last layers 8-bit lsq\)$"),
    ("missing key", _drop_key, r"model\.npz: missing tensor '3\.act_quantizer\.adapter\.hidden"
                               r"\.weight' for 4-bit post weights"),
    ("extra key", _extra_key, r"model\.npz: unexpected tensor '99\.weight' for 4-bit"),
    ("wrong shape", _wrong_shape,
     r"model\.npz: tensor '7\.weight' has shape \(32, 32, 3, 2\), expected \(32, 32, 3, 3\)$"),
    ("wrong dtype", _wrong_dtype,
     r"model\.npz: tensor '12\.bias' has dtype float64, expected float32$"),
    ("non-finite", _non_finite, r"model\.npz: tensor '1\.running_var' has non-finite values$"),
    ("uninitialised", _uninitialised,
     r"model\.npz: quantizer '3\.weight_quantizer' was never initialised"),
    ("not a zip", lambda f: (f / "model.npz").write_bytes(b"garbage" * 10),
     r"model\.npz: not a readable npz file"),
    ("pickled array", _pickled, r"model\.npz: not a readable npz file"),
]


@pytest.mark.parametrize("name, damage, message", BAD, ids=[b[0] for b in BAD])
def test_bad_checkpoint_is_one_line_value_error(trained, tmp_path, name, damage, message):
    _, _, good, _ = trained
    folder = tmp_path / "ckpt"
    shutil.copytree(good, folder)
    load_checkpoint(folder)                                            # intact before
    damage(folder)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(folder)
    assert "\n" not in str(info.value)
    assert str(folder) in str(info.value)


# --------------------------------------------------------------------------- methods

def test_methods_on_two_workers_equal_one_worker_bit_for_bit(tmp_path):
    """``asqgen methods --workers 2`` (a local Dask cluster of two processes) writes the same
    table as ``--workers 1``, byte for byte: every run is seeded, one torch thread each."""
    tiny = ["methods", "--seeds", "1", "--seed", "2", "--bits", "3", "--float-epochs", "1",
            "--epochs", "1",
            "--no-plot"]
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        done = asqgen(*tiny, "--workers", str(workers), "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "6 jobs: 6 run, 0 reused" in done.stdout
        outs[workers] = out
    assert (outs[1] / "methods.md").read_bytes() == (outs[2] / "methods.md").read_bytes()
    result = json.loads((outs[2] / "methods.json").read_text())
    assert result["rows"] == json.loads((outs[1] / "methods.json").read_text())["rows"]
    rows = [(r["method"], r["bits"]) for r in result["rows"]]
    assert rows == [("float", None), ("LSQ", 3), ("LSQ+POT", 3), ("LSQ+POST", 3), ("ASQ", 3),
                    ("ASQ+POST", 3)]
    for r in result["rows"]:
        assert len(r["runs"]) == 1 and r["min"] == r["mean"] == r["max"] and r["std"] == 0
        assert r["min"] > 50
    table = markdown(result)
    assert table == (outs[1] / "methods.md").read_text()
    assert table.count("\n| ") == 7 and "| ASQ+POST | 3 | post | asq |" in table
    assert "Ordering at 3 bits by mean: " in table
    # The same comparison resumed from the first run's store starts no job.
    again = asqgen(*tiny, "--workers", "1", "--out", str(outs[1]))
    assert again.returncode == 0 and "6 jobs: 0 run, 6 reused" in again.stdout
    assert (outs[1] / "methods.md").read_bytes() == (outs[2] / "methods.md").read_bytes()


def test_fashion_mnist_jobs_pass_the_float_network_to_qat(monkeypatch):
    """The Fashion-MNIST jobs of ``asqgen methods`` on 40 random 14x14 images (the suite has
    no Fashion-MNIST): the float job's result (its weights as arrays) starts a QAT job, and
    the QAT job gives the same accuracy twice."""
    from export import methods

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 14, 14, generator=g), torch.arange(40) % 10
    monkeypatch.setitem(methods._FASHION, 40, (x, y, x[:10], y[:10], x[:20], y[:20]))
    first = methods._fm_float_job(1, 1, 40)
    assert 0 <= first["accuracy"] <= 1 and first["seconds"] >= 0
    assert all(isinstance(v, np.ndarray) for v in first["arrays"].values())
    runs = [methods._fm_qat_job(1, first, 2, "post", "asq", 1, 40) for _ in range(2)]
    assert runs[0]["accuracy"] == runs[1]["accuracy"]
    assert 0 <= runs[0]["accuracy"] <= 1


# --------------------------------------------------------------------------- command line

@pytest.mark.parametrize("args, message", [
    (["train", "--bits", "5"],
     "asqgen: error: train: argument --bits: invalid choice: 5 (choose from 2, 3, 4, 8)"),
    (["train", "--weights", "int"], "asqgen: error: train: argument --weights: invalid choice: "
                                    "'int' (choose from 'lsq', 'pot', 'post')"),
    (["train", "--epochs", "-1"], "asqgen: error: train: argument --epochs: must be at least 0, "
                                  "not -1"),
    (["methods", "--seeds", "0"], "asqgen: error: methods: argument --seeds: must be at least 1, "
                                  "not 0"),
])
def test_cli_bad_options_are_one_line(args, message, tmp_path):
    result = asqgen(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_cli_train_writes_a_loadable_checkpoint(tmp_path):
    result = asqgen("train", "--bits", "3", "--weights", "lsq", "--acts", "lsq", "--epochs", "1",
                     "--float-epochs", "1", "--seed", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" epoch ") == 2 and "test accuracy" in result.stdout
    model, info = load_checkpoint(tmp_path)
    assert (info["bits"], info["weight_method"], info["act_method"], info["seed"]) == \
        (3, "lsq", "lsq", 2)
    assert info["split"] == digits.SPLIT and 0.5 < info["test_accuracy"] <= 1
