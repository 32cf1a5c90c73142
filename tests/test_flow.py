# amaranth: UnusedElaboratable=no
"""The whole flow on the default model that ships in the repository: export, the golden model
against PyTorch, and the default bundle on the RTL (20 test images, stalls on every stream)."""

import json

import numpy as np
import pytest

from export.digits_bundle import DEFAULT_BUNDLE, DEFAULT_MODEL
from core import bundle as B
from asqgen.cli import main

from .cli import asqgen


#: PyTorch's float logits differ between CPUs (their float kernels); seen: 8e-6.
LOGIT_TOLERANCE = 1e-4


def test_export_recreates_the_committed_bundle(tmp_path):
    """Every integer identical (codes, fixed point, images, labels); PyTorch's float outputs
    within ``LOGIT_TOLERANCE``."""
    assert main(["export", "--checkpoint", str(DEFAULT_MODEL), "--out", str(tmp_path)]) == 0
    ours, committed = B.load(tmp_path), B.load(DEFAULT_BUNDLE)
    assert [a.name for a in ours.layers] == [b.name for b in committed.layers]
    for a, b in zip(ours.layers, committed.layers):
        assert np.array_equal(a.weight, b.weight), a.name
        assert a.fixed.arrays().keys() == b.fixed.arrays().keys(), a.name
        for k, v in a.fixed.arrays().items():
            assert np.array_equal(v, b.fixed.arrays()[k]), (a.name, k)
    assert ours.reference.keys() == committed.reference.keys()
    for k, v in committed.reference.items():
        if np.issubdtype(v.dtype, np.floating) and k == "logits":
            np.testing.assert_allclose(ours.reference[k], v, rtol=0, atol=LOGIT_TOLERANCE)
        else:
            np.testing.assert_array_equal(ours.reference[k], v, err_msg=k)


def test_golden_follows_pytorch(tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["compare", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 360
    assert report["top1_agreement"] >= 0.99
    assert abs(report["golden_accuracy"] - report["torch_accuracy"]) <= 0.005
    assert all(layer["identical"] > 0.98 for layer in report["layers"])
    assert "top-1 agreement" in capsys.readouterr().out


def test_default_bundle_on_the_rtl_with_stalls(tmp_path, build_root, capsys):
    out = tmp_path / "sim.json"
    code = main(["sim", "--images", "20", "--stall", "0.2", "--seed", "3", "--out",
                 str(build_root), "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["identical"] and report["first_difference"] is None
    assert [layer["identical"] for layer in report["layers"]] == [True] * 4
    assert report["accuracy"]["rtl"] == report["accuracy"]["golden"]
    assert capsys.readouterr().out.rstrip().endswith("PASS: every layer of the RTL equals the "
                                                     "golden model")


def test_default_bundle_throughput(tmp_path, build_root):
    """Without stalls: at most 10,000 clocks per image on the 8x8 array, the two 4-bit
    convolutions at 90 % utilisation or more, and every layer's clocks within 2 % of the cycle
    model (``gen.cycles``). Clocks are counted in the RTL; nothing here is timed."""
    out = tmp_path / "sim.json"
    assert main(["sim", "--images", "20", "--out", str(build_root), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["identical"] and report["cycles_per_image"] <= 10_000
    layers = {layer["layer"]: layer for layer in report["layers"]}
    assert layers["3"]["utilisation"] >= 0.9 and layers["7"]["utilisation"] >= 0.9
    for layer in report["layers"]:
        got, want = layer["cycles_per_image"], layer["model_cycles_per_image"]
        assert abs(got - want) <= 0.02 * got, layer
        assert sum(layer["clocks"].values()) == round(got * 20), layer


@pytest.mark.parametrize("args, status, message", [
    (["sim", "--bundle", "/nonexistent"], 3, "asqgen: error: /nonexistent: no such bundle "
                                             "folder"),
    (["sim", "--images", "0"], 2, "asqgen: error: sim: argument --images: must be at least 1, "
                                  "not 0"),
    (["sim", "--images", "361"], 2, "asqgen: error: --images must be from 1 to 360 (the "
                                    "bundle's reference inputs), not 361"),
    (["compare", "--checkpoint", "/nonexistent"], 4, "asqgen: error: /nonexistent/model.json: "
                                                     "missing checkpoint file"),
    (["verilog", "--bundle", str(DEFAULT_BUNDLE), "--w-bits", "3"], 2,
     "asqgen: error: layer '3' has 4-bit post weights with frac_bits=10; the array is "
     "built for 3-bit post with frac_bits=10"),
])
def test_bad_input_is_one_line(args, status, message):
    result = asqgen(*args)
    assert result.returncode == status
    assert result.stderr == message + "\n"


def test_corrupt_bundle_is_one_line(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"kind": "asqgen-bundle", "format": 1}))
    (folder / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    result = asqgen("sim", "--bundle", str(folder))
    assert result.returncode == 3
    assert result.stderr.startswith("asqgen: error: ") and result.stderr.count("\n") == 1
