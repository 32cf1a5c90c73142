"""The Fashion-MNIST loader on small IDX files that the tests write (the suite does not need
Debian's package): the header and md5 checks, the 14x14 averaging, the split, and one-line
errors for missing, truncated, corrupt and foreign files."""

import gzip
import hashlib
import re

import numpy as np
import pytest

from core.errors import DataError
from export import fashion_mnist as F


def _idx(kind, data):
    magic = F._MAGIC[kind].to_bytes(4, "big")
    dims = b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    return magic + dims + data.astype(np.uint8).tobytes()


def _write(folder, part, images, labels, *, gz=True):
    for kind, data in (("images", images), ("labels", labels)):
        raw = _idx(kind, data)
        name = F.FILES[(part, kind)]
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28))
    labels = np.arange(30) % 10
    _write(tmp_path, "train", images, labels)
    _write(tmp_path, "test", images[:10], labels[:10], gz=False)
    return tmp_path, images, labels


def test_images_and_labels_round_trip(small):
    folder, images, labels = small
    x, y = F.load("train", size=28, base=folder, checked=False)
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0] * 255.0, images)
    np.testing.assert_array_equal(y, labels)
    x, y = F.load("test", size=28, base=folder, checked=False)    # plain, not gzip
    assert x.shape == (10, 1, 28, 28) and y.tolist() == list(range(10))


def test_14x14_is_the_exact_mean_of_each_2x2_block(small):
    folder, images, _ = small
    x, _ = F.load("train", size=14, base=folder, checked=False)
    i, r, c = 7, 3, 11
    block = images[i, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
    assert x[i, 0, r, c] == np.float32(block.sum() / 4.0 / 255.0)


def test_the_split_is_fixed_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 600)
    train, val = F.split_indices(labels)
    assert len(val) == 10 * F.VAL_PER_CLASS and len(train) == 6000 - len(val)
    assert np.intersect1d(train, val).size == 0
    assert np.bincount(labels[val]).tolist() == [F.VAL_PER_CLASS] * 10
    again = F.split_indices(labels)
    assert np.array_equal(again[1], val)


def test_the_md5_of_the_official_files_is_checked(small):
    folder, _, _ = small
    name = F.FILES[("train", "images")]
    raw = gzip.decompress((folder / f"{name}.gz").read_bytes())
    with pytest.raises(DataError, match=re.escape(
            f"{folder / name}.gz: md5 of the decompressed data is "
            f"{hashlib.md5(raw).hexdigest()}, not {F.MD5[name]} (a corrupt or different file; "
            f"install Debian's package dataset-fashion-mnist")):
        F.load("train", base=folder)


def test_a_missing_data_set_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ASQGEN_FASHION_MNIST", str(tmp_path / "none"))
    with pytest.raises(DataError, match=r"^.*/none/train-images-idx3-ubyte\.gz: Fashion-MNIST "
                                          r"not found; install Debian's package "
                                          r"dataset-fashion-mnist \(apt-get install "
                                          r"dataset-fashion-mnist\) or set ASQGEN_FASHION_MNIST"):
        F.load("train")


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], r": 23515 bytes of data, expected 23520$"),
    (lambda raw: b"\x00\x00\x08\x01" + raw[4:], r"not an IDX file of images \(magic 00000801, "
                                                r"expected 00000803\)"),
    (lambda raw: raw[:4] + (5).to_bytes(4, "big") + raw[8:], r": 23520 bytes of data, "
                                                             r"expected 3920$"),
    (lambda raw: raw[:4] + raw[4:8] + (27).to_bytes(4, "big") + raw[12:],
     r"holds images of shape \(30, 27, 28\), expected \(30, 28, 28\)"),
    (lambda raw: b"", r"not an IDX file of images \(magic missing"),
])
def test_damaged_image_files_are_refused_in_one_line(small, damage, message):
    folder, _, _ = small
    path = folder / f"{F.FILES[('train', 'images')]}.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(DataError, match=message) as e:
        F.load("train", base=folder, checked=False)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))


def test_bad_labels_and_a_bad_gzip_are_refused(small):
    folder, images, labels = small
    bad = labels.copy()
    bad[3] = 10
    _write(folder, "train", images, bad)
    with pytest.raises(DataError, match=r"a label is 10; the classes are 0 to 9$"):
        F.load("train", base=folder, checked=False)
    _write(folder, "train", images, labels[:29])
    with pytest.raises(DataError, match=r"30 images but 29 labels"):
        F.load("train", base=folder, checked=False)
    path = folder / f"{F.FILES[('train', 'images')]}.gz"
    path.write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(DataError, match=r"unreadable"):
        F.load("train", base=folder, checked=False)
