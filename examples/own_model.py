"""Your own model, end to end: wrap, train, export with your test data.

    ./dev python examples/own_model.py --out out/own_model
    ./dev asqgen compare --bundle out/own_model/bundle
    ./dev asqgen sim --bundle out/own_model/bundle --images 5

A small CNN that is not the default network (other channel counts, 3-bit POST weights, ASQ
activations) on scikit-learn's digits (bundled with scikit-learn: no download). The steps are
those of any model of yours:

1. build a float ``nn.Sequential`` of supported layers (``core.rules``);
2. ``quantize_model`` it: this refuses, before any training, a layer the hardware cannot run,
   naming it by its module path (``'3'`` is ``model[3]``), which every later report uses too;
3. train it as usual;
4. ``export_bundle`` it with your test inputs (non-negative) and labels, and ``save`` it: the
   bundle holds PyTorch's outputs for them, which ``asqgen compare`` and ``asqgen sim`` use.
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from export.to_bundle import export_bundle
from export.wrap import quantize_model
from core.bundle import save


def data(seed=0):
    """Digits as float images in [0, 1], ``(N, 1, 8, 8)``, split 80/20 (stratified)."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, digits.target, test_size=0.2, random_state=seed,
                            stratify=digits.target)


def float_model():
    """conv 1->8, 8->24 + pool, 24->12 + pool, linear 48->10 (the default has 16, 32, 32)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(24, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(48, 10),
    )


def train(model, x, y, *, epochs, seed=0, lr=3e-3):
    """Plain Adam on cross-entropy, batches of 64."""
    torch.manual_seed(seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model, x, y):
    return float((model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="QAT epochs (%(default)s)")
    p.add_argument("--out", default="out/own_model", help="output folder (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (%(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = data(args.seed)
    torch.manual_seed(args.seed)
    model = quantize_model(float_model(), bits=3, weight_method="post", act_method="asq")
    train(model, x_train, y_train, epochs=args.epochs, seed=args.seed)
    bundle = export_bundle(model, input_shape=(1, 8, 8), reference_inputs=x_test,
                           reference_labels=y_test, meta={"example": "own_model"})
    folder = save(bundle, f"{args.out}/bundle")
    print(f"own_model: {args.epochs} QAT epochs in {time.perf_counter() - start:.1f} s, test "
          f"accuracy {accuracy(model, x_test, y_test):.2%} on {len(y_test)} images; "
          f"layers {', '.join(repr(la.name) for la in bundle.layers)}; wrote {folder}")
    return folder


if __name__ == "__main__":
    main()
