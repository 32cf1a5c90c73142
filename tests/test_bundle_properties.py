"""Property-based tests of the bundle (hypothesis, derandomized, bounded examples): random valid
bundles load, run through the golden model and round-trip byte for byte; a random single
corruption of a valid bundle is refused with ``BundleError``, never another exception."""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import bundle as B
from core.adapter import Adapter
from core.bundle import Bundle, Layer
from core.errors import BundleError
from core.numerics import WEIGHT_BITS, default_frac_bits
from sim.golden import run_network

from .bundles import random_bundle

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# Random valid bundles -------------------------------------------------------------------------
@st.composite
def bundles(draw):
    """conv layers (kernel 1 or 3, stride 1 or 2, pooling 2 when it divides) then linear
    layers, any weight format and widths, an adapter or not after each hidden layer."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    c, h = draw(st.integers(1, 3)), draw(st.sampled_from([4, 6, 8]))
    in_shape, bits = (c, h, h), draw(st.integers(1, 8))
    step = draw(st.floats(1e-3, 1.0))
    shape, layers = in_shape, []
    n_conv, n_linear = draw(st.integers(0, 2)), draw(st.integers(1, 2))
    for i in range(n_conv + n_linear):
        conv = i < n_conv
        fmt = draw(st.sampled_from(["post", "pot", "int"]))
        # Wider post and pot weights need accumulators wider than the rescale takes.
        w_bits = draw(st.integers(WEIGHT_BITS.start, 8 if fmt == "int" else 4))
        cout = draw(st.integers(1, 4))
        if conv:
            k = draw(st.sampled_from([1, 3]))
            stride = draw(st.integers(1, 2))
            pad = k // 2
            ho = (shape[1] + 2 * pad - k) // stride + 1
            pool = draw(st.sampled_from([0, 2])) if ho % 2 == 0 and ho >= 2 else 0
            weight = rng.integers(0, 2 ** w_bits, (cout, shape[0], k, k))
            layer_in = shape
        else:
            k, stride, pad, pool = 1, 1, 0, 0
            layer_in = (int(np.prod(shape)),)
            weight = rng.integers(0, 2 ** w_bits, (cout, layer_in[0]))
        last = i == n_conv + n_linear - 1
        layer = Layer(name=f"l{i}", kind="conv2d" if conv else "linear", in_shape=layer_in,
                      out_channels=cout, kernel=k, stride=stride, padding=pad, a_bits=bits,
                      w_format=fmt, w_bits=w_bits, frac_bits=default_frac_bits(fmt, w_bits),
                      relu=not last, pool=pool, weight=weight,
                      alpha=rng.uniform(0.01, 0.5, cout), bn_scale=rng.uniform(0.5, 2, cout),
                      bn_bias=rng.normal(0, 0.5, cout), s_in=step,
                      input_adapter=bool(layers and layers[-1].adapter is not None))
        if not last:
            layer.next_step = draw(st.floats(1e-3, 1.0))
            layer.next_bits = draw(st.integers(1, 8))
            if conv and draw(st.booleans()):
                layer.adapter = Adapter(w1=rng.normal(0, 0.05, (1, cout)), b1=np.array([1.0]))
            step, bits = layer.next_step, layer.next_bits
        layers.append(layer)
        shape = layer.out_shape
    codes = rng.integers(0, 2 ** layers[0].a_bits, (2, *in_shape))
    return Bundle(input_shape=in_shape, input_bits=layers[0].a_bits, input_step=layers[0].s_in,
                  layers=layers, meta={"seed": seed}, reference={"codes": codes})


@SETTINGS
@given(bundle=bundles())
def test_random_valid_bundles_round_trip(tmp_path_factory, bundle):
    first = tmp_path_factory.mktemp("b") / "bundle"
    B.save(bundle, first)
    loaded = B.load(first)
    codes = loaded.reference["codes"]
    np.testing.assert_array_equal(run_network(loaded, codes).logits,
                                  run_network(bundle, codes).logits)
    second = tmp_path_factory.mktemp("b") / "bundle"
    B.save(loaded, second)
    for name in ("manifest.json", "arrays.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


# Single corruptions ----------------------------------------------------------------------------
HOSTILE = [None, True, False, 0, -1, 1, 2, 3, 7, 10 ** 9, -(10 ** 9), 2 ** 70, 0.5, -0.0,
           1e-320, 1e300, "", "x", "conv2d", [], [0], [1, 2, 3], [-1, 8, 8], {}, {"a": 1},
           [[[[]]]]]


def _paths(obj, prefix=()):
    """Every path to a value in a JSON object, but not inside ``meta`` (free-form)."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return
    for key, value in items:
        if prefix == () and key == "meta":
            continue
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid") / "bundle"
    B.save(random_bundle(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return folder, manifest, arrays


def _write(tmp_path_factory, manifest_text, arrays_bytes):
    folder = tmp_path_factory.mktemp("bad") / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text(manifest_text)
    (folder / "arrays.npz").write_bytes(arrays_bytes)
    return folder


def _npz(arrays):
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _refused_or_sound(folder, must_refuse):
    """``load`` raises ``BundleError`` (nothing else); when it accepts, the bundle runs through
    the golden model, and saves and loads again."""
    try:
        b = B.load(folder)
    except BundleError as e:
        assert "\n" not in str(e)
        return
    assert not must_refuse, "a corrupt bundle was accepted"
    codes = np.zeros((1,) + tuple(b.input_shape), dtype=np.int64)
    run_network(b, codes)
    B.save(b, folder.parent / "again")
    B.load(folder.parent / "again")


@SETTINGS
@given(data=st.data())
def test_manifest_field_mutations_are_refused(tmp_path_factory, valid, data):
    folder, manifest, arrays = valid
    paths = list(_paths(manifest))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.sampled_from(HOSTILE + ["delete"]))
    m = json.loads(json.dumps(manifest))
    obj = m
    for key in path[:-1]:
        obj = obj[key]
    old = obj[path[-1]]
    if value == "delete":
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    changed = value == "delete" or json.dumps(old) != json.dumps(value)
    # A different type (an int for a float excepted) is always refused, as is a deletion of
    # anything but an optional field.
    retyped = changed and type(old) is not type(value) and not (
        isinstance(old, float) and type(value) is int) and old is not None and value is not None
    bad = _write(tmp_path_factory, json.dumps(m), (folder / "arrays.npz").read_bytes())
    _refused_or_sound(bad, must_refuse=retyped or (value == "delete" and old is not None))


MUTATIONS = ["float", "complex", "bool", "timedelta", "string", "drop", "extra dim", "nan",
             "huge", "negative", "delete"]


@SETTINGS
@given(data=st.data())
def test_array_mutations_are_refused(tmp_path_factory, valid, data):
    folder, manifest, arrays = valid
    key = data.draw(st.sampled_from(sorted(arrays)))
    how = data.draw(st.sampled_from(MUTATIONS))
    a = dict(arrays)
    v = a[key]
    if how == "float":
        a[key] = v.astype(np.float64) + 0.25
    elif how == "complex":
        a[key] = v + 1j
    elif how == "bool":
        a[key] = v.astype(bool)
    elif how == "timedelta":
        a[key] = v.astype(np.int64).astype("timedelta64[s]")
    elif how == "string":
        a[key] = v.astype(str)
    elif how == "drop":
        a[key] = v.reshape(-1)[:-1] if v.size else np.zeros(1)
    elif how == "extra dim":
        a[key] = v[None]
    elif how == "nan":
        a[key] = np.full(v.shape, np.nan)
    elif how == "huge":
        a[key] = np.full(v.shape, 1e30) if v.dtype.kind == "f" else np.full(v.shape, 2 ** 62)
    elif how == "negative":
        a[key] = -np.abs(v) - 1
    else:
        del a[key]
    must = how in ("complex", "timedelta", "string", "drop", "extra dim", "delete") or (
        how == "nan" and v.dtype.kind == "f")
    bad = _write(tmp_path_factory, (folder / "manifest.json").read_text(), _npz(a))
    _refused_or_sound(bad, must_refuse=must)


@SETTINGS
@given(data=st.data())
def test_truncations_are_refused(tmp_path_factory, valid, data):
    folder, _, _ = valid
    name = data.draw(st.sampled_from(["manifest.json", "arrays.npz"]))
    content = (folder / name).read_bytes()
    cut = data.draw(st.integers(0, len(content) - 3))
    files = {n: (folder / n).read_bytes() for n in ("manifest.json", "arrays.npz")}
    files[name] = content[:cut]
    bad = tmp_path_factory.mktemp("cut") / "bundle"
    bad.mkdir()
    for n, c in files.items():
        (bad / n).write_bytes(c)
    _refused_or_sound(bad, must_refuse=True)


@SETTINGS
@given(data=st.data())
def test_byte_flips_in_the_archive_never_crash(tmp_path_factory, valid, data):
    folder, _, _ = valid
    content = bytearray((folder / "arrays.npz").read_bytes())
    at = data.draw(st.integers(0, len(content) - 1))
    content[at] ^= data.draw(st.integers(1, 255))
    bad = _write(tmp_path_factory, (folder / "manifest.json").read_text(), bytes(content))
    _refused_or_sound(bad, must_refuse=False)
    assert zipfile.is_zipfile(folder / "arrays.npz")
