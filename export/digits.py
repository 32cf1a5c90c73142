"""scikit-learn's 8x8 handwritten digits with a fixed, stratified train/test split.

The data ships inside scikit-learn (``sklearn.datasets.load_digits``): 1797 grey images of 8x8
pixels with values 0 .. 16, ten classes. The network's input is ``pixels / 16`` in ``[0, 1]``,
shape ``(N, 1, 8, 8)``, float32.

The split
---------
360 test images and 1437 training images, stratified by class, independent of any training
seed. It is computed here with numpy only (not ``train_test_split``, so that a scikit-learn
upgrade cannot move it): class ``c`` with ``n_c`` images gets ``round(360 * n_c / 1797)`` test
images by largest remainder (the counts add up to exactly 360; ties by class order), and those
are the first ``t_c`` indices of a permutation of the class's indices drawn from
``numpy.random.default_rng(SPLIT_SEED)`` (PCG64), classes in order 0 .. 9 from one generator.
Both index lists are returned sorted. ``SPLIT`` describes it in words for the checkpoints.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["SPLIT_SEED", "TEST_SIZE", "SPLIT", "load", "split_indices", "tensors"]

SPLIT_SEED = 0
TEST_SIZE = 360
SPLIT = (f"sklearn load_digits (1797 images), pixels/16; stratified split: {TEST_SIZE} test, "
         f"1437 train; per-class test counts by largest remainder, indices from "
         f"numpy default_rng({SPLIT_SEED}) permutations per class (export/digits.py)")


@functools.lru_cache(maxsize=None)
def load():
    """``(images, labels)``: float32 ``(1797, 1, 8, 8)`` in ``[0, 1]`` and int64 ``(1797,)``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = data.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _test_counts(labels, test_size):
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_size / counts.sum()
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")      # largest remainder, class order
    take[order[:test_size - take.sum()]] += 1
    return classes, take


@functools.lru_cache(maxsize=None)
def split_indices():
    """``(train, test)``: sorted int64 index arrays into ``load()``; always the same."""
    _, labels = load()
    rng = np.random.default_rng(SPLIT_SEED)
    classes, take = _test_counts(labels, TEST_SIZE)
    test = []
    for c, t in zip(classes, take):
        members = np.flatnonzero(labels == c)
        test.append(members[rng.permutation(len(members))[:t]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


def tensors(part):
    """``(images, labels)`` of ``part`` (``"train"`` or ``"test"``) as torch tensors."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    images, labels = load()
    index = split_indices()[0 if part == "train" else 1]
    return torch.from_numpy(images[index].copy()), torch.from_numpy(labels[index].copy())
