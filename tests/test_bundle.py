"""The bundle: a round trip keeps everything, and every kind of bad bundle is one clear line."""

import json
import zipfile

import numpy as np
import pytest

from core import bundle as B
from sim.golden import run_network

from .bundles import random_bundle


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "bundle"
    B.save(random_bundle(), folder)
    return folder


def test_round_trip(saved):
    original = random_bundle()
    loaded = B.load(saved)
    assert loaded.input_shape == (1, 8, 8) and loaded.input_bits == 8
    assert loaded.meta == {"test": True}
    for a, b in zip(original.layers, loaded.layers):
        assert (a.name, a.kind, a.in_shape, a.out_shape, a.w_format, a.w_bits) == \
               (b.name, b.kind, b.in_shape, b.out_shape, b.w_format, b.w_bits)
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.alpha, b.alpha)
        for k, v in a.fixed.arrays().items():
            assert np.array_equal(v, b.fixed.arrays()[k])
    codes = original.reference["codes"]
    assert np.array_equal(loaded.reference["codes"], codes)
    assert np.array_equal(run_network(original, codes).logits, run_network(loaded, codes).logits)


def test_manifest_is_plain_json_and_arrays_need_no_pickle(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["kind"] == "asqgen-bundle"
    assert [layer["derived"]["out_shape"] for layer in manifest["layers"]] == \
        [[4, 8, 8], [8, 4, 4], [5]]
    with np.load(saved / "arrays.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def _edit_manifest(folder, edit):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def _edit_arrays(folder, edit):
    path = folder / "arrays.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _set(path, value):
    def edit(m):
        obj = m
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return edit


def _del(path):
    def edit(m):
        obj = m
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]
    return edit


MANIFEST_CASES = {
    "wrong format": (_set(["format"], 4), r"format 4 is not supported \(this asqgen reads "
                                          r"formats 1, 2 and 3\)$"),
    "foreign json": (lambda m: m.update(kind="keras-model"), r"not an asqgen bundle"),
    "field type": (_set(["layers", 1, "out_channels"], "8"),
                   r"layers\[1\]\.out_channels must be int, not str$"),
    "bool as int": (_set(["layers", 0, "kernel"], True),
                    r"layers\[0\]\.kernel must be int, not bool$"),
    "missing field": (_del(["layers", 2, "relu"]), r"layers\[2\]\.relu is missing$"),
    "bad weight bits": (_set(["layers", 1, "w_bits"], 9),
                        r"layer 'conv2': w_bits must be from 2 to 8 for post weights, not 9$"),
    "bad kind": (_set(["layers", 1, "kind"], "lstm"),
                 r"layers\[1\]\.kind must be one of conv2d, linear, not 'lstm'$"),
    "shape chain": (_set(["layers", 1, "in_shape"], [5, 8, 8]),
                    r"layer 'conv2' takes \(5, 8, 8\), but the previous layer gives "
                    r"\(4, 8, 8\)$"),
    "bits chain": (_set(["layers", 1, "a_bits"], 3), r"layer 'conv2' takes 3-bit codes but is "
                                                     r"given 4-bit$"),
    "no layers": (_set(["layers"], []), r"the bundle has no layers$"),
    "adapter layers": (_set(["layers", 0, "adapter", "layers"], 3),
                       r"layers\[0\]\.adapter\.layers must be from 1 to 2, not 3$"),
    "negative step": (_set(["input", "step"], -1.0),
                      r"input\.step must be from 1e-12 to 1e\+12, not -1\.0$"),
    "half a next layer": (_set(["layers", 2, "next_step"], 0.5),
                          r"layer 'fc': next_step and next_bits go together$"),
    "last with next": (lambda m: m["layers"][2].update(next_step=0.5, next_bits=4),
                       r"layer 'fc' is last but names a next step$"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_manifest(saved, case):
    edit, message = MANIFEST_CASES[case]
    _edit_manifest(saved, edit)
    with pytest.raises(B.BundleError, match=message):
        B.load(saved)


ARRAY_CASES = {
    "missing array": (lambda a: a.pop("layer1.alpha"), r"/arrays\.npz: layer1\.alpha is "
                                                       r"missing$"),
    "wrong shape": (lambda a: a.update({"layer0.alpha": a["layer0.alpha"][:3]}),
                    r"/arrays\.npz: layer0\.alpha has shape \(3,\), expected \(4,\)$"),
    "code out of range": (lambda a: a["layer1.weight"].__setitem__((0, 0, 0, 0), 16),
                          r"/arrays\.npz: layer1\.weight holds codes outside the 4-bit range "
                          r"of layer 'conv2'$"),
    "float codes": (lambda a: a.update({"layer1.weight": a["layer1.weight"] + 0.5}),
                    r"/arrays\.npz: layer1\.weight must hold integers, not float64$"),
    "nan": (lambda a: a["layer2.bn_bias"].__setitem__(0, np.nan),
            r"/arrays\.npz: layer2\.bn_bias holds NaN or infinity$"),
    "tampered fixed point": (lambda a: a["layer1.fixed.m"].__setitem__(0, 1),
                             r"/arrays\.npz: layer1\.fixed\.m differs from the fixed point "
                             r"computed from the parameters of layer 'conv2'$"),
    "adapter bias shape": (lambda a: a.update({"layer0.adapter.b1": np.array([1.0, 2.0])}),
                           r"/arrays\.npz: layer0\.adapter\.b1 has shape \(2,\), expected "
                           r"\(1,\)$"),
    "adapter weight shape": (lambda a: a.update({"layer0.adapter.w1": np.ones((1, 3))}),
                             r"/arrays\.npz: layer0\.adapter\.w1 has shape \(1, 3\), which "
                             r"does not fit a 1-layer adapter on 4 inputs$"),
    "object array": (lambda a: a.update({"layer0.alpha": np.array([{}, 1, 2, 3], dtype=object)}),
                     r"arrays\.npz: member 'layer0\.alpha\.npy' holds Python objects \(it would "
                     r"need pickle\)$"),
}


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_bad_arrays(saved, case):
    edit, message = ARRAY_CASES[case]
    _edit_arrays(saved, edit)
    with pytest.raises(B.BundleError, match=message):
        B.load(saved)


def test_missing_folder(tmp_path):
    with pytest.raises(B.BundleError, match=r"no such bundle folder$"):
        B.load(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["manifest.json", "arrays.npz"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    with pytest.raises(B.BundleError, match=rf"{name}: missing$"):
        B.load(saved)


def test_not_json(saved):
    (saved / "manifest.json").write_text("{ this is not json")
    with pytest.raises(B.BundleError, match=r"manifest\.json: not valid JSON"):
        B.load(saved)


def test_truncated_arrays(saved):
    path = saved / "arrays.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(B.BundleError, match=r"arrays\.npz: unreadable or truncated"):
        B.load(saved)


def test_arrays_not_a_zip(saved):
    (saved / "arrays.npz").write_bytes(b"\x80\x04K\x01.")      # a pickle, not a zip
    with pytest.raises(B.BundleError, match=r"arrays\.npz: unreadable or truncated"):
        B.load(saved)


def test_errors_are_one_line(saved):
    _edit_arrays(saved, lambda a: a.pop("layer0.weight"))
    with pytest.raises(B.BundleError) as info:
        B.load(saved)
    assert "\n" not in str(info.value)
    assert zipfile.is_zipfile(saved / "arrays.npz")


def test_a_vector_adapter_must_read_the_whole_vector(tmp_path):
    """A "vector" adapter (the next layer is a linear one) reads every value of the layer's
    output; one of another width is refused on save, not left to fail in the golden model."""
    from core.adapter import Adapter

    b = random_bundle(c1=4, c2=8)
    b.layers[1].adapter = Adapter(w1=np.full((1, 7), 0.01), b1=np.array([1.0]), input="vector")
    b.layers[2].input_adapter = True
    with pytest.raises(B.BundleError, match=r"arrays\.npz: layer1\.adapter\.w1 reads 7 values, "
                                          r"but layer 'conv2' gives 128$"):
        B.save(b, tmp_path / "b")
    b.layers[1].adapter = Adapter(w1=np.full((1, 128), 0.001), b1=np.array([1.0]),
                                  input="vector")
    B.save(b, tmp_path / "b")
    assert B.load(tmp_path / "b").layers[1].adapter.inputs == 128


def test_a_saved_bundle_is_deflated_and_loads(tmp_path):
    """Every member of ``arrays.npz`` is deflated (the committed bundles stay small), and the
    same bundle gives the same bytes twice."""
    import zipfile

    from .bundles import random_bundle

    a = B.save(random_bundle(), tmp_path / "a") / "arrays.npz"
    b = B.save(random_bundle(), tmp_path / "b") / "arrays.npz"
    with zipfile.ZipFile(a) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
        assert sum(i.compress_size for i in z.infolist()) < sum(
            i.file_size for i in z.infolist()) / 2
    assert a.read_bytes() == b.read_bytes()
    B.load(a.parent)
