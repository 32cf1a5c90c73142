"""The model bundle: what the integer pipeline needs, in plain files, validated on load.

A bundle is a folder with ``manifest.json`` (format 1) and ``arrays.npz`` (numpy arrays, read
with ``allow_pickle=False``). It needs no PyTorch to read. The manifest lists the layers in
execution order; each compute layer (``conv2d`` or ``linear``) carries what follows it, in
this order: folded batch norm (or the linear layer's bias), ReLU, max pooling, and the
quantizer of the next layer's input (its step, bits and ASQ adapter). A flatten between a conv
and a linear layer is implied by their shapes (PyTorch's C, H, W order).

Arrays, for layer ``i``: ``layer{i}.weight`` (``int64`` codes, ``(Cout, Cin, k, k)`` or
``(Cout, Cin)``), ``.alpha``, ``.bn_scale``, ``.bn_bias`` (``float64``, ``(Cout,)``), the
adapter ``.adapter.w1``, ``.adapter.b1`` (and ``.w2``, ``.b2`` for two layers), and the
fixed-point integers ``.fixed.<field>`` of ``gen.rescale.LayerRescale``. Loading recomputes
the integers from the real values (``gen.rescale.fixed_point``) and refuses a bundle whose
stored integers differ. ``reference.images``/``.codes``/``.logits``: a few inputs with their
input codes and PyTorch's outputs, for a quick self-check.

Every problem found on load raises ``BundleError`` with one line that names the file, the
layer and the field.
"""

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import numerics, rescale
from .adapter import Adapter

__all__ = ["BUNDLE_FORMAT", "BundleError", "Layer", "Bundle", "save", "load"]

BUNDLE_FORMAT = 1
KIND = "asqgen-bundle"
LAYER_KINDS = ("conv2d", "linear")


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the problem in one line."""


@dataclass
class Layer:
    """One compute layer and the rescale after it. See the module docstring."""

    name: str
    kind: str
    in_shape: tuple
    out_channels: int
    kernel: int
    stride: int
    padding: int
    a_bits: int
    w_format: str
    w_bits: int
    frac_bits: int
    relu: bool
    pool: int
    weight: np.ndarray
    alpha: np.ndarray
    bn_scale: np.ndarray
    bn_bias: np.ndarray
    s_in: float
    input_adapter: bool = False         # the input's step was scaled by an ASQ beta
    next_step: float | None = None
    next_bits: int | None = None
    adapter: Adapter | None = None      # the ASQ adapter of the next layer's input
    fixed: rescale.LayerRescale = field(default=None, repr=False)

    @property
    def product_format(self):
        return numerics.ProductFormat(w_format=self.w_format, a_bits=self.a_bits,
                                      w_bits=self.w_bits, frac_bits=self.frac_bits)

    @property
    def k(self):
        """The inner dimension of the layer's matrix product."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def conv_shape(self):
        """``(Cout, Ho, Wo)`` before pooling (``(Cout,)`` for a linear layer)."""
        if self.kind == "linear":
            return (self.out_channels,)
        _, h, w = self.in_shape
        size = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1
        return (self.out_channels, size(h), size(w))

    @property
    def out_shape(self):
        """The shape of the layer's output codes (after pooling)."""
        shape = self.conv_shape
        if self.pool > 1:
            shape = (shape[0], shape[1] // self.pool, shape[2] // self.pool)
        return shape

    @property
    def acc_bits(self):
        """Accumulator width that no sum of the layer can overflow."""
        return self.product_format.sum_bits(self.k)

    @property
    def weight_matrix(self):
        """The weight codes as the ``K x Cout`` matrix of the layer's product (im2col order)."""
        return self.weight.reshape(self.out_channels, -1).T

    def compute_fixed(self):
        """``gen.rescale.fixed_point`` of this layer's real parameters."""
        # A "channels" adapter reads the mean over positions (its division is folded into the
        # weights); a "vector" adapter reads every value itself, whatever the layer's shape.
        channels = self.adapter is not None and self.adapter.input == "channels"
        positions = int(np.prod(self.out_shape[1:])) if channels else 1
        return rescale.fixed_point(
            bn_scale=self.bn_scale, bn_bias=self.bn_bias, s_in=self.s_in, alpha=self.alpha,
            frac_bits=self.frac_bits, acc_bound=self.k * self.product_format.bound,
            next_step=self.next_step, next_bits=self.next_bits, adapter=self.adapter,
            positions=positions)


@dataclass
class Bundle:
    """A whole network: its input quantizer, its layers and reference data."""

    input_shape: tuple
    input_bits: int
    input_step: float
    layers: list
    meta: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    def quantize_input(self, images):
        """The input codes ``round(clamp(x / s, 0, 2**bits - 1))`` of float images (numpy
        rounds half to even, as PyTorch does)."""
        x = np.asarray(images, dtype=np.float32) / np.float32(self.input_step)
        return np.clip(np.round(x), 0, 2 ** self.input_bits - 1).astype(np.int64)


# Saving --------------------------------------------------------------------------------------
_SCALARS = ("name", "kind", "out_channels", "kernel", "stride", "padding", "a_bits", "w_format",
            "w_bits", "frac_bits", "relu", "pool", "s_in", "input_adapter", "next_step",
            "next_bits")


def save(bundle, folder):
    """Write ``bundle`` into ``folder`` (created); fills each layer's ``fixed`` integers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, layers = {}, []
    for i, layer in enumerate(bundle.layers):
        layer.fixed = layer.compute_fixed()
        entry = {k: getattr(layer, k) for k in _SCALARS}
        entry["in_shape"] = list(layer.in_shape)
        entry["adapter"] = None if layer.adapter is None else {
            "layers": layer.adapter.layers, "input": layer.adapter.input}
        entry["derived"] = {"k": layer.k, "acc_bits": layer.acc_bits,
                            "out_shape": list(layer.out_shape)}
        layers.append(entry)
        p = f"layer{i}"
        arrays[f"{p}.weight"] = np.asarray(layer.weight, dtype=np.int64)
        for name in ("alpha", "bn_scale", "bn_bias"):
            arrays[f"{p}.{name}"] = np.asarray(getattr(layer, name), dtype=np.float64)
        if layer.adapter is not None:
            for name, value in layer.adapter.arrays().items():
                arrays[f"{p}.adapter.{name}"] = np.asarray(value, dtype=np.float64)
        for name, value in layer.fixed.arrays().items():
            arrays[f"{p}.fixed.{name}"] = value
    for name, value in bundle.reference.items():
        arrays[f"reference.{name}"] = np.asarray(value)
    manifest = {
        "format": BUNDLE_FORMAT, "kind": KIND,
        "input": {"shape": list(bundle.input_shape), "bits": bundle.input_bits,
                  "step": bundle.input_step},
        "fixed_point": {"Z": rescale.Z, "BETA_FRAC": rescale.BETA_FRAC,
                        "BETA_MAX": rescale.BETA_MAX, "MANTISSA_BITS": rescale.MANTISSA_BITS,
                        "RECIP_BITS": rescale.RECIP_BITS},
        "layers": layers, "meta": bundle.meta,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with open(folder / "arrays.npz", "wb") as f:
        np.savez(f, **arrays)
    return folder


# Loading -------------------------------------------------------------------------------------
class _Reader:
    """Typed access to the manifest and arrays with one-line errors naming the place."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BundleError(f"{self.folder}: no such bundle folder")
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise BundleError(f"{manifest}: missing")
        try:
            self.manifest = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{manifest}: not valid JSON ({e})") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("kind") != KIND:
            raise BundleError(f"{manifest}: not an asqgen bundle (kind is not {KIND!r})")
        if self.manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{manifest}: format {self.manifest.get('format')!r} is not "
                              f"supported (this asqgen reads format {BUNDLE_FORMAT})")
        npz = self.folder / "arrays.npz"
        if not npz.is_file():
            raise BundleError(f"{npz}: missing")
        try:
            with np.load(npz, allow_pickle=False) as data:
                self.arrays = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
            raise BundleError(f"{npz}: unreadable or truncated ({e})") from None

    def get(self, obj, key, kind, where, *, optional=False):
        if key not in obj or obj[key] is None:
            if optional:
                return None
            raise BundleError(f"manifest.json: {where}.{key} is missing")
        value = obj[key]
        ok = (isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
              or (kind is float and isinstance(value, int) and not isinstance(value, bool)))
        if not ok:
            raise BundleError(f"manifest.json: {where}.{key} must be {kind.__name__}, "
                              f"not {type(value).__name__}")
        return value

    def array(self, key, shape=None, integer=False, optional=False):
        if key not in self.arrays:
            if optional:
                return None
            raise BundleError(f"arrays.npz: {key} is missing")
        a = self.arrays[key]
        if integer and not np.issubdtype(a.dtype, np.integer):
            raise BundleError(f"arrays.npz: {key} must hold integers, not {a.dtype}")
        if not integer and not np.issubdtype(a.dtype, np.number):
            raise BundleError(f"arrays.npz: {key} must be numeric, not {a.dtype}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise BundleError(f"arrays.npz: {key} has shape {tuple(a.shape)}, "
                              f"expected {tuple(shape)}")
        if not integer and not np.all(np.isfinite(a)):
            raise BundleError(f"arrays.npz: {key} holds NaN or infinity")
        return a


def _check(cond, message):
    if not cond:
        raise BundleError(message)


def _load_layer(r, i, entry, in_shape, last):
    where = f"layers[{i}]"
    _check(isinstance(entry, dict), f"manifest.json: {where} must be an object")
    g = lambda key, kind, **kw: r.get(entry, key, kind, where, **kw)
    kind = g("kind", str)
    _check(kind in LAYER_KINDS, f"manifest.json: {where}.kind must be one of "
                                f"{', '.join(LAYER_KINDS)}, not {kind!r}")
    name = g("name", str)
    w = f"layer {name!r}"
    declared = tuple(g("in_shape", list))
    _check(declared == tuple(in_shape) or
           (kind == "linear" and declared == (int(np.prod(in_shape)),)),
           f"manifest.json: {w} takes {declared}, but the previous layer gives {tuple(in_shape)}")
    values = {k: g(k, int) for k in ("out_channels", "kernel", "stride", "padding", "a_bits",
                                     "w_bits", "frac_bits", "pool")}
    for k in ("out_channels", "kernel", "stride"):
        _check(values[k] >= 1, f"manifest.json: {w}.{k} must be at least 1, not {values[k]}")
    w_format = g("w_format", str)
    try:
        fmt = numerics.ProductFormat(w_format=w_format, a_bits=values["a_bits"],
                                     w_bits=values["w_bits"], frac_bits=values["frac_bits"])
    except (ValueError, TypeError) as e:
        raise BundleError(f"manifest.json: {w}: {e}") from None
    cout = values["out_channels"]
    cin = declared[0]
    k = values["kernel"]
    wshape = (cout, cin, k, k) if kind == "conv2d" else (cout, cin)
    p = f"layer{i}"
    weight = r.array(f"{p}.weight", wshape, integer=True)
    _check(weight.min(initial=0) >= 0 and weight.max(initial=0) < 2 ** fmt.w_bits,
           f"arrays.npz: {p}.weight holds codes outside the {fmt.w_bits}-bit range of {w}")
    adapter_info = entry.get("adapter")
    adapter = None
    if adapter_info is not None:
        _check(isinstance(adapter_info, dict), f"manifest.json: {where}.adapter must be an "
                                               f"object")
        n = r.get(adapter_info, "layers", int, f"{where}.adapter")
        _check(n in (1, 2), f"manifest.json: {where}.adapter.layers must be 1 or 2, not {n}")
        mode = r.get(adapter_info, "input", str, f"{where}.adapter")
        _check(mode in ("channels", "vector"), f"manifest.json: {where}.adapter.input must be "
                                               f"channels or vector, not {mode!r}")
        # The adapter reads this layer's output: its channels, or every value of a vector.
        inputs = cout if mode == "channels" else None
        w1 = r.array(f"{p}.adapter.w1")
        _check(w1.ndim == 2 and (inputs is None or w1.shape[1] == inputs) and
               (n == 2 or w1.shape[0] == 1),
               f"arrays.npz: {p}.adapter.w1 has shape {w1.shape}, which does not fit a "
               f"{n}-layer adapter on {inputs or 'the'} inputs")
        hidden = w1.shape[0]
        b1 = r.array(f"{p}.adapter.b1", (hidden,))
        w2 = r.array(f"{p}.adapter.w2", (1, hidden)) if n == 2 else None
        b2 = r.array(f"{p}.adapter.b2", (1,)) if n == 2 else None
        adapter = Adapter(w1=w1, b1=b1, w2=w2, b2=b2, input=mode)
    layer = Layer(
        name=name, kind=kind, in_shape=declared, w_format=w_format, **values, weight=weight,
        relu=g("relu", bool), alpha=r.array(f"{p}.alpha", (cout,)),
        bn_scale=r.array(f"{p}.bn_scale", (cout,)), bn_bias=r.array(f"{p}.bn_bias", (cout,)),
        s_in=float(g("s_in", float)), input_adapter=g("input_adapter", bool),
        next_step=g("next_step", float, optional=True), next_bits=g("next_bits", int,
                                                                      optional=True),
        adapter=adapter)
    if kind == "conv2d":
        _check(len(declared) == 3, f"manifest.json: {w}.in_shape must be [C, H, W]")
        co, ho, wo = layer.conv_shape
        _check(ho >= 1 and wo >= 1, f"manifest.json: {w} has an empty output")
        _check(layer.pool in (0, 1) or (ho % layer.pool == 0 and wo % layer.pool == 0),
               f"manifest.json: {w}: a {ho}x{wo} map cannot be pooled by {layer.pool}")
    else:
        _check(layer.pool in (0, 1), f"manifest.json: {w}: a linear layer cannot pool")
    _check((layer.next_step is None) == (layer.next_bits is None),
           f"manifest.json: {w}: next_step and next_bits go together")
    _check((layer.next_step is None) == last, f"manifest.json: {w} " +
           ("is last but names a next step" if last else "has no next_step"))
    _check(layer.next_bits is None or layer.next_bits in numerics.ACT_BITS,
           f"manifest.json: {w}.next_bits must be from 1 to 8, not {layer.next_bits}")
    try:
        layer.fixed = layer.compute_fixed()
    except ValueError as e:
        raise BundleError(f"{w}: {e}") from None
    for key, value in layer.fixed.arrays().items():
        stored = r.array(f"{p}.fixed.{key}", np.shape(value), integer=True)
        _check(np.array_equal(stored, value),
               f"arrays.npz: {p}.fixed.{key} differs from the fixed point computed from the "
               f"parameters of {w}")
    return layer


def load(folder):
    """Read and validate the bundle in ``folder``; raise ``BundleError`` on any problem."""
    r = _Reader(folder)
    m = r.manifest
    inp = r.get(m, "input", dict, "manifest")
    shape = tuple(r.get(inp, "shape", list, "input"))
    bits = r.get(inp, "bits", int, "input")
    step = float(r.get(inp, "step", float, "input"))
    _check(step > 0, "manifest.json: input.step must be positive")
    _check(bits in numerics.ACT_BITS, f"manifest.json: input.bits must be from 1 to 8, "
                                      f"not {bits}")
    entries = r.get(m, "layers", list, "manifest")
    _check(entries, "manifest.json: the bundle has no layers")
    layers, in_shape, in_bits = [], shape, bits
    for i, entry in enumerate(entries):
        layer = _load_layer(r, i, entry, in_shape, last=i == len(entries) - 1)
        _check(layer.a_bits == in_bits, f"manifest.json: layer {layer.name!r} takes "
                                        f"{layer.a_bits}-bit codes but is given {in_bits}-bit")
        layers.append(layer)
        in_shape, in_bits = layer.out_shape, layer.next_bits
    _check(np.isclose(layers[0].s_in, step, rtol=1e-12, atol=0),
           f"manifest.json: the first layer's s_in differs from input.step")
    for prev, layer in zip(layers, layers[1:]):
        _check(layer.input_adapter == (prev.adapter is not None),
               f"manifest.json: layer {layer.name!r}.input_adapter disagrees with the "
               f"adapter of {prev.name!r}")
    reference = {k.split(".", 1)[1]: v for k, v in r.arrays.items()
                 if k.startswith("reference.")}
    return Bundle(input_shape=shape, input_bits=bits, input_step=step, layers=layers,
                  meta=m.get("meta", {}), reference=reference)
