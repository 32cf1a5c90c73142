"""Fashion-MNIST from Debian's package ``dataset-fashion-mnist``, offline, checked.

The package (MIT licence, 31 MB) holds the full official set under
``/usr/share/datasets/fashion-mnist/``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``,
60,000 training and 10,000 test images of 28x28 grey pixels, ten classes. ``ASQGEN_FASHION_MNIST``
names another folder with the same four files (gzip or not). Nothing is downloaded.

Every file is read as IDX (big-endian header: magic ``0x0803`` and three sizes for images,
``0x0801`` and one size for labels), its header checked against the official sizes and the md5
of its decompressed bytes against the official one (``MD5``: Debian recompressed the files, so
the sums are those of the decompressed data). A missing, truncated, corrupt or foreign file is a
``DataError`` with one line that names the file and says what to do.

The split: ``"test"`` is the official test set (10,000 images); the official training set is
split once, independent of any training seed, into ``"train"`` (55,000) and ``"val"``
(5,000: the first 500 indices of each class in a ``numpy.random.default_rng(SPLIT_SEED)``
permutation of that class, classes 0 .. 9 from one generator), both sorted.

Resolution: ``size=28`` gives the images as they are; ``size=14`` (the default) averages each
2x2 block, exactly (the mean of four bytes, then ``/ 255``). 14x14 keeps the network small
enough for RTL runs of many images (a conv layer has a quarter of the positions, so a quarter of
the clocks), and the classes stay well apart at that size; 28x28 is there for the accuracy
comparison. Pixels are ``[0, 1]`` float32, shape ``(N, 1, size, size)``; labels int64.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from core.errors import DataError

__all__ = ["FOLDER", "FILES", "MD5", "CLASSES", "SPLIT_SEED", "VAL_PER_CLASS",
           "folder", "read_idx", "load", "split_indices", "arrays"]

FOLDER = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
COUNTS = {"train": 60000, "test": 10000}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
SPLIT_SEED = 0
VAL_PER_CLASS = 500
_MAGIC = {"images": 0x0803, "labels": 0x0801}
_INSTALL = ("install Debian's package dataset-fashion-mnist (apt-get install "
            "dataset-fashion-mnist) or set ASQGEN_FASHION_MNIST to a folder with the four IDX "
            "files")


def folder():
    """The folder read: ``$ASQGEN_FASHION_MNIST``, or Debian's."""
    return Path(os.environ.get("ASQGEN_FASHION_MNIST") or FOLDER)


def _find(base, name):
    for candidate in (base / f"{name}.gz", base / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{base / name}.gz: Fashion-MNIST not found; {_INSTALL}")


def read_idx(path, kind, count=None, *, md5=None):
    """The array of the IDX file ``path`` (gzip or plain) of ``kind`` (``"images"`` of 28x28,
    or ``"labels"``) with ``count`` entries (any number when ``None``); ``md5``, when given, is
    that of the decompressed bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if md5 is not None and hashlib.md5(raw).hexdigest() != md5:
        raise DataError(f"{path}: md5 of the decompressed data is "
                        f"{hashlib.md5(raw).hexdigest()}, not {md5} (a corrupt or different "
                        f"file; {_INSTALL})")
    dims = 3 if kind == "images" else 1
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != _MAGIC[kind]:
        raise DataError(f"{path}: not an IDX file of {kind} (magic "
                        f"{raw[:4].hex() or 'missing'}, expected {_MAGIC[kind]:08x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    n = shape[0] if count is None else count
    expected = (n, 28, 28) if kind == "images" else (n,)
    if shape != expected:
        raise DataError(f"{path}: holds {kind} of shape {shape}, expected {expected}")
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DataError(f"{path}: {len(raw) - header} bytes of data, expected {size}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if kind == "labels" and data.max(initial=0) >= len(CLASSES):
        raise DataError(f"{path}: a label is {int(data.max())}; the classes are 0 to "
                        f"{len(CLASSES) - 1}")
    return data


@functools.lru_cache(maxsize=4)
def _official(part, base, checked):
    paths = {kind: _find(base, FILES[(part, kind)]) for kind in ("images", "labels")}
    images, labels = (read_idx(paths[kind], kind, COUNTS[part] if checked else None,
                               md5=MD5[FILES[(part, kind)]] if checked else None)
                      for kind in ("images", "labels"))
    if len(images) != len(labels):
        raise DataError(f"{paths['images']}: {len(images)} images but {len(labels)} labels in "
                        f"{paths['labels'].name}")
    return images, labels


def load(part, *, size=14, base=None, checked=True):
    """``(images, labels)`` of the official ``part`` (``"train"`` or ``"test"``): float32
    ``(N, 1, size, size)`` in ``[0, 1]`` and int64 ``(N,)``. ``checked=False`` skips the md5
    and the official counts (for the tests' own small files)."""
    if part not in COUNTS:
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    if size not in (14, 28):
        raise ValueError(f"size must be 14 or 28, not {size!r}")
    images, labels = _official(part, Path(base) if base else folder(), checked)
    x = images.astype(np.float32)
    if size == 14:
        x = x.reshape(-1, 14, 2, 14, 2).sum(axis=(2, 4)) / 4.0     # exact: a sum of 4 bytes
    return (x / 255.0).astype(np.float32)[:, None], labels.astype(np.int64)


def split_indices(labels):
    """``(train, val)``: sorted indices into the official training set (see the module
    docstring); always the same for the same labels."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(SPLIT_SEED)
    val = []
    for c in range(len(CLASSES)):
        members = np.flatnonzero(labels == c)
        val.append(members[rng.permutation(len(members))[:VAL_PER_CLASS]])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val), val


def arrays(part, *, size=14, base=None, checked=True):
    """``(images, labels)`` of ``"train"``, ``"val"`` or ``"test"`` (see the module docstring)."""
    if part == "test":
        return load("test", size=size, base=base, checked=checked)
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train', 'val' or 'test', not {part!r}")
    images, labels = load("train", size=size, base=base, checked=checked)
    index = split_indices(labels)[0 if part == "train" else 1]
    return images[index], labels[index]
