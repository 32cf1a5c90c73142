"""The Fashion-MNIST networks' checkpoints (``asqgen train --data fashion-mnist``) load again:
``asqgen compare --checkpoint`` runs PyTorch from them, on a bundle exported from the same
model and on no other. Trained here for one epoch on random images (no data set needed)."""

import json

import numpy as np
import pytest
import torch

from export.resnet import ResnetRecipe, resnet_bundle, train_resnet
from export.to_bundle import fingerprint, torch_trace
from export.train import load_checkpoint, save_checkpoint
from core.bundle import save
from core.errors import CheckpointError

from .cli import asqgen

torch.set_num_threads(1)


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 14, 14), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return (x, y, x[:8], y[:8], x[:16], y[:16])


@pytest.fixture(scope="module", params=["resnet8", "mobilenetv2"])
def trained(request, tmp_path_factory):
    recipe = ResnetRecipe(model=request.param, float_epochs=0, epochs=1, seed=2)
    data = _data()
    model, info = train_resnet(recipe, data=data)
    folder = tmp_path_factory.mktemp(request.param)
    save_checkpoint(model, info, folder)
    save(resnet_bundle(model, info, data[4], data[5], count=6), folder / "bundle")
    return model, info, folder, data


def test_a_checkpoint_loads_the_same_model(trained):
    model, info, folder, data = trained
    loaded, loaded_info = load_checkpoint(folder)
    assert loaded_info["model"] == info["model"]
    assert fingerprint(loaded) == fingerprint(model)
    ours, theirs = torch_trace(loaded, data[4]), torch_trace(model, data[4])
    assert np.array_equal(ours["logits"], theirs["logits"])
    for a, b in zip(ours["codes"], theirs["codes"]):
        assert np.array_equal(a, b)


def test_compare_runs_pytorch_from_the_checkpoint(trained):
    _, _, folder, _ = trained
    done = asqgen("compare", "--checkpoint", str(folder), "--bundle", str(folder / "bundle"))
    assert done.returncode == 0, done.stderr
    assert f"golden model vs PyTorch ({folder})" in done.stdout
    assert "top-1 agreement" in done.stdout


def test_a_bundle_of_another_model_is_refused(trained):
    _, _, folder, _ = trained
    done = asqgen("compare", "--checkpoint", str(folder), "--bundle",
                  "export/models/resnet8")
    assert done.returncode == 4
    assert done.stderr.count("\n") == 1 and "fingerprints differ" in done.stderr


def test_a_bad_recipe_field_is_one_line(trained, tmp_path):
    _, _, folder, _ = trained
    info = json.loads((folder / "model.json").read_text())
    for key, value, expect in (("model", "resnet99", "resnet99"), ("size", 28, "size must be 14")):
        (tmp_path / "model.npz").write_bytes((folder / "model.npz").read_bytes())
        (tmp_path / "model.json").write_text(json.dumps(dict(info, **{key: value})))
        with pytest.raises(CheckpointError, match=expect):
            load_checkpoint(tmp_path)
