"""The model bundle: what the integer pipeline needs, in plain files, validated on load.

A bundle is a folder with ``manifest.json`` (format 1) and ``arrays.npz`` (numpy arrays, no
pickle, deflated). It needs no PyTorch to read. The manifest lists the layers in
execution order; each compute layer (``conv2d`` or ``linear``) carries what follows it, in
this order: folded batch norm (or the linear layer's bias), ReLU, max pooling, and the
quantizer of the next layer's input (its step, bits and ASQ adapter). A flatten between a conv
and a linear layer is implied by their shapes (PyTorch's C, H, W order).

Arrays, for layer ``i``: ``layer{i}.weight`` (``int64`` codes, ``(Cout, Cin, k, k)`` or
``(Cout, Cin)``), ``.alpha``, ``.bn_scale``, ``.bn_bias`` (``float64``, ``(Cout,)``), the
adapter ``.adapter.w1``, ``.adapter.b1`` (and ``.w2``, ``.b2`` for two layers), and the
fixed-point integers ``.fixed.<field>`` of ``core.rescale.LayerRescale``. Loading recomputes
the integers from the real values (``core.rescale.fixed_point``) and refuses a bundle whose
stored integers differ. ``reference.images``/``.codes``/``.logits``: a few inputs with their
input codes and PyTorch's outputs, for a quick self-check.

Every field is checked against the declared schema below (``TOP_SCHEMA``, ``INPUT_SCHEMA``,
``LAYER_SCHEMA``, ``ADAPTER_SCHEMA``, ``REFERENCE_SCHEMA``, ``FIXED_POINT``: type, range, shape,
dtype, finiteness and the consistency between layers), and the archive is read with
``core.files.read_npz`` (no pickle, sizes checked before allocation). Every problem found on
load raises ``BundleError`` with one line that names the folder, the file, the layer and the
field; ``save`` runs the same checks first, so it never writes a bundle that ``load`` refuses.

Residual networks: format 2
---------------------------
A bundle whose layers are not a plain chain is written as format 2 (a chain is still written
as format 1, byte for byte as before, and both formats load). Each layer entry then has three
more fields (``GRAPH_SCHEMA``):

``source``
    The name of the layer whose output codes this layer reads (``null`` for the first layer
    only: the network input). It must be an earlier layer of the list (the list is the
    execution order, so a forward reference or a cycle is refused). Several layers may read
    one source: they share its quantizer (its ``next_step``, ``next_bits`` and adapter).
``shortcut``
    ``null``, or the name of an earlier layer whose output is added to this layer's ``z``
    before its ReLU (``core.rescale.rescale_residual``): a **projection** layer's ``z`` (its
    ``conv_shape`` must equal this layer's), or otherwise that layer's output **codes** (the
    identity shortcut, its ``out_shape`` must equal this layer's ``conv_shape``), rescaled by
    ``core.rescale.shortcut_fixed_point`` of that layer's ``next_step``: the integers are
    stored as ``layer{i}.shortcut.<field>`` and re-checked on load. Only a conv layer that is
    neither the last one nor a projection may have a shortcut.
``projection``
    ``true`` for a shortcut projection (a conv, usually 1x1 and strided, with its folded batch
    norm): no ReLU, no pooling, no next quantizer (``next_step`` and ``next_bits`` null); its
    output is used by exactly one layer's shortcut and by nothing else.

Every layer but the last must be used (as a source or a shortcut), and the last one must not
be. ``Layer.source`` is ``None`` in memory for "the previous layer" (a chain).

The paper's networks: format 3
------------------------------
A bundle that uses any of these is written as format 3 (format 2's fields, and these in every
layer entry, ``OPS_SCHEMA``); a bundle that uses none is written as before, so formats 1 and 2
are unchanged and still load:

``clip``
    ``null``, or the top of a bounded ReLU (ReLU6: 6.0; ``relu`` must be true).
``pool_mode``
    ``"max"`` or ``"avg"`` (average pooling over the ``pool x pool`` windows; ``pool`` >= 2).
``global_pool``
    ``true`` for global average pooling after the ReLU and pooling: the layer's output is the
    mean of every channel, ``out_shape`` ``(C, 1, 1)``; a conv layer, neither the last nor a
    projection, whose adapter (if any) reads ``"channels"``.
``groups``
    1, or the input channels of a depthwise conv (one 3x3 filter per channel, as many outputs
    as inputs: ``Conv2d(C, C, k, groups=C)``); its weight is ``(C, 1, k, k)``, ``k`` (the sum
    of one output) is ``k * k``, and the engine multiplies the ``C * k * k`` im2col row by the
    block-diagonal ``weight_matrix``.
``a_signed``, ``next_signed``
    The layer's input codes, and the codes its next quantizer makes, are signed (two's
    complement, ``-2**(b-1) .. 2**(b-1) - 1``): a value with no ReLU before it, such as
    MobileNet-V2's linear bottleneck. A layer's ``a_signed`` is its source's ``next_signed``
    (the network's input is unsigned).
``shortcut_stride``, ``shortcut_pad``
    ResNet's option-A identity shortcut: the shortcut's codes subsampled by the stride and
    placed at channel ``shortcut_pad`` of this layer's channels, the others zero
    (``core.rescale.shortcut_codes``); 1 and 0 for a plain identity.

The folded divisions and the clip are in ``core.rescale``'s docstring.
"""

import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import numerics, rescale, rules
from .adapter import ADAPTER_INPUTS, Adapter
from .errors import BundleError
from .files import npz_bytes, read_npz, replace_folder

__all__ = ["BUNDLE_FORMAT", "GRAPH_FORMAT", "OPS_FORMAT", "FORMATS", "BundleError", "Layer", "Bundle", "save",
           "load"]

BUNDLE_FORMAT = 1           # a plain chain of layers
GRAPH_FORMAT = 2            # with sources, shortcuts and projections (residual networks)
OPS_FORMAT = 3              # and clips, average and global pooling, option-A shortcuts
FORMATS = (BUNDLE_FORMAT, GRAPH_FORMAT, OPS_FORMAT)
KIND = "asqgen-bundle"
LAYER_KINDS = ("conv2d", "linear")


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
    source: str | None = None           # the layer it reads; None: the previous one (a chain)
    shortcut: str | None = None         # the layer added before the ReLU (format 2)
    projection: bool = False            # a shortcut projection: its z goes to a shortcut
    shortcut_fixed: rescale.LayerRescale | None = field(default=None, repr=False)
    clip: float | None = None           # a bounded ReLU's top (ReLU6: 6.0; format 3)
    pool_mode: str = "max"              # "max" or "avg" (format 3)
    global_pool: bool = False           # global average pooling: out_shape (C, 1, 1)
    shortcut_stride: int = 1            # option-A shortcut: subsample the shortcut's codes
    shortcut_pad: int = 0               # and place them at this channel
    groups: int = 1                     # the input channels of a depthwise conv (format 3)
    a_signed: bool = False              # the input codes are signed (two's complement)
    next_signed: bool = False           # the next quantizer's codes are signed

    @property
    def uses_ops(self):
        """Whether the layer needs format 3."""
        return (self.clip is not None or self.pool_mode != "max" or self.global_pool or
                self.shortcut_stride != 1 or self.shortcut_pad != 0 or self.groups != 1 or
                self.a_signed or self.next_signed)

    @property
    def depthwise(self):
        return self.groups > 1

    @property
    def product_format(self):
        return numerics.ProductFormat(w_format=self.w_format, a_bits=self.a_bits,
                                      w_bits=self.w_bits, frac_bits=self.frac_bits,
                                      a_signed=self.a_signed)

    @property
    def k(self):
        """The products summed into one output (``k * k`` for a depthwise conv)."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def product_k(self):
        """The inner dimension of the layer's matrix product on the array: the im2col row's
        length (``Cin * k * k``; ``k`` but for a depthwise conv)."""
        return self.k * self.groups

    @property
    def positions(self):
        """``M``: the rows of the layer's product per sample (a conv's output positions before
        pooling; 1 for a linear layer)."""
        return int(np.prod(self.conv_shape[1:])) if self.kind == "conv2d" else 1

    @property
    def conv_shape(self):
        """``(Cout, Ho, Wo)`` before pooling (``(Cout,)`` for a linear layer)."""
        if self.kind == "linear":
            return (self.out_channels,)
        _, h, w = self.in_shape
        size = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1
        return (self.out_channels, size(h), size(w))

    @property
    def pooled_shape(self):
        """The shape after pooling, before a global pooling."""
        shape = self.conv_shape
        if self.pool > 1:
            shape = (shape[0], shape[1] // self.pool, shape[2] // self.pool)
        return shape

    @property
    def out_shape(self):
        """The shape of the layer's output codes (after pooling; ``(C, 1, 1)`` after a global
        pooling)."""
        shape = self.pooled_shape
        return (shape[0], 1, 1) if self.global_pool else shape

    @property
    def window(self):
        """The divisor of an average pooling's window sums (``pool**2``; 1 otherwise)."""
        return self.pool ** 2 if self.pool_mode == "avg" and self.pool > 1 else 1

    @property
    def divisor(self):
        """What the requantization divides ``u`` (or the global pool's sums) by: the window
        of an average pooling times the positions of a global pooling."""
        spread = int(np.prod(self.pooled_shape[1:])) if self.global_pool else 1
        return self.window * spread

    @property
    def acc_bits(self):
        """Accumulator width that no sum of the layer can overflow."""
        return self.product_format.sum_bits(self.k)

    @property
    def weight_matrix(self):
        """The weight codes as the ``K x Cout`` matrix of the layer's product (im2col order,
        ``K = product_k``); a depthwise conv's is block-diagonal (code 0 is the weight 0 in
        every format)."""
        w = self.weight.reshape(self.out_channels, -1)
        if not self.depthwise:
            return w.T
        k = w.shape[1]
        matrix = np.zeros((self.product_k, self.out_channels), dtype=w.dtype)
        for c in range(self.out_channels):
            matrix[c * k:(c + 1) * k, c] = w[c]
        return matrix

    def compute_fixed(self):
        """``core.rescale.fixed_point`` of this layer's real parameters."""
        # A "channels" adapter reads the mean over positions (its division is folded into the
        # weights); a "vector" adapter reads every value itself, whatever the layer's shape.
        # An average pooling's window sums are divided by the window too.
        channels = self.adapter is not None and self.adapter.input == "channels"
        positions = int(np.prod(self.pooled_shape[1:])) if channels else 1
        return rescale.fixed_point(
            bn_scale=self.bn_scale, bn_bias=self.bn_bias, s_in=self.s_in, alpha=self.alpha,
            frac_bits=self.frac_bits, acc_bound=self.k * self.product_format.bound,
            next_step=self.next_step, next_bits=self.next_bits, adapter=self.adapter,
            positions=positions * self.window, divisor=self.divisor, clip=self.clip,
            next_signed=self.next_signed)


@dataclass
class Bundle:
    """A whole network: its input quantizer, its layers and reference data."""

    input_shape: tuple
    input_bits: int
    input_step: float
    layers: list
    meta: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    @property
    def is_graph(self):
        """Whether the layers are not a plain chain (saved as format 2 or 3)."""
        return any(la.source is not None or la.shortcut is not None or la.projection
                   for la in self.layers)

    @property
    def format(self):
        """The format ``save`` writes: 3 if a layer needs it, else 2 for a graph, else 1."""
        if any(la.uses_ops for la in self.layers):
            return OPS_FORMAT
        return GRAPH_FORMAT if self.is_graph else BUNDLE_FORMAT

    def source_index(self, i):
        """The index of the layer whose codes layer ``i`` reads, or ``None`` for the input."""
        name = self.layers[i].source
        if name is None:
            return i - 1 if i > 0 else None
        return next(j for j, la in enumerate(self.layers[:i]) if la.name == name)

    def shortcut_index(self, i):
        """The index of layer ``i``'s shortcut layer, or ``None``."""
        name = self.layers[i].shortcut
        if name is None:
            return None
        return next(j for j, la in enumerate(self.layers[:i]) if la.name == name)

    def residual_kind(self, i):
        """What layer ``i`` adds before its ReLU (a key of ``core.regmap.RESIDUAL_KINDS``:
        ``"none"``, ``"identity"`` or ``"projection"``) and its shortcut layer's index (or
        ``None``)."""
        k = self.shortcut_index(i)
        if k is None:
            return "none", None
        return ("projection" if self.layers[k].projection else "identity"), k

    def compute_shortcut_fixed(self, i):
        """``core.rescale.shortcut_fixed_point`` of layer ``i``'s identity shortcut (``None``
        without a shortcut or for a projection)."""
        j = self.shortcut_index(i)
        if j is None or self.layers[j].projection:
            return None
        src = self.layers[j]
        return rescale.shortcut_fixed_point(step=src.next_step,
                                            channels=self.layers[i].out_channels,
                                            bits=src.next_bits)

    def trimmed(self, count):
        """The same bundle with its first ``count`` reference samples only (every reference
        array, the layers' PyTorch codes included), for a small committed copy."""
        from dataclasses import replace
        return replace(self, reference={k: np.asarray(v)[:count]
                                        for k, v in self.reference.items()})

    def quantize_input(self, images):
        """The input codes ``round(clamp(x / s, 0, 2**bits - 1))`` of float images (numpy
        rounds half to even, as PyTorch does)."""
        x = np.asarray(images, dtype=np.float32) / np.float32(self.input_step)
        return np.clip(np.round(x), 0, 2 ** self.input_bits - 1).astype(np.int64)


# The schema -----------------------------------------------------------------------------------
# Every manifest field, its type and its range; the loader (and so ``save``) checks each one.
MAX_DIM = 1 << 16           # channels, rows, columns, features
MAX_KERNEL = 64             # kernel, stride and padding
MAX_POOL = 16
MAX_K = rules.MAX_K         # the inner dimension of a layer's product
MAX_LAYERS = 1000
MAX_NAME = 200
STEP_RANGE = (1e-12, 1e12)  # quantizer steps: finite, normal, not absurd
REAL_LIMIT = 1e12           # |scales| and adapter weights
BIAS_LIMIT = 2.0 ** (rescale.PARAM_BITS - 1 - rescale.Z)   # a bias's fixed point fits 32 bits
MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class Field:
    """One manifest field: its JSON type and, for numbers, its inclusive range."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    optional: bool = False


_INT = lambda lo, hi: Field(int, lo, hi)
_STEP = Field(float, *STEP_RANGE)

TOP_SCHEMA = {"format": Field(int), "kind": Field(str), "input": Field(dict),
              "fixed_point": Field(dict), "layers": Field(list), "meta": Field(dict)}
INPUT_SCHEMA = {"shape": Field(list), "bits": _INT(1, 8), "step": _STEP}
LAYER_SCHEMA = {
    "name": Field(str), "kind": Field(str), "in_shape": Field(list),
    "out_channels": _INT(1, MAX_DIM), "kernel": _INT(1, MAX_KERNEL),
    "stride": _INT(1, MAX_KERNEL), "padding": _INT(0, MAX_KERNEL), "a_bits": _INT(1, 8),
    "w_format": Field(str), "w_bits": Field(int), "frac_bits": Field(int), "relu": Field(bool),
    "pool": _INT(0, MAX_POOL), "s_in": _STEP, "input_adapter": Field(bool),
    "next_step": Field(float, *STEP_RANGE, optional=True),
    "next_bits": Field(int, 1, 8, optional=True), "adapter": Field(dict, optional=True),
    "derived": Field(dict),
}
GRAPH_SCHEMA = {"source": Field(str, optional=True), "shortcut": Field(str, optional=True),
                "projection": Field(bool)}
OPS_SCHEMA = {"clip": Field(float, 1e-6, BIAS_LIMIT, optional=True), "pool_mode": Field(str),
              "global_pool": Field(bool), "shortcut_stride": _INT(1, MAX_KERNEL),
              "shortcut_pad": _INT(0, MAX_DIM), "groups": Field(int, 1, MAX_DIM, optional=True),
              "a_signed": Field(bool, optional=True), "next_signed": Field(bool, optional=True)}
_OPS_DEFAULTS = {"groups": 1, "a_signed": False, "next_signed": False}   # when absent
_OPS = tuple(OPS_SCHEMA)
ADAPTER_SCHEMA = {"layers": _INT(1, 2), "input": Field(str)}
# The code's fixed-point constants, which the manifest repeats and the loader compares.
FIXED_POINT = {"Z": rescale.Z, "BETA_FRAC": rescale.BETA_FRAC, "BETA_MAX": rescale.BETA_MAX,
               "MANTISSA_BITS": rescale.MANTISSA_BITS, "RECIP_BITS": rescale.RECIP_BITS}
# Reference data: (integer codes?, shape after the sample count: "input", "classes" or ()).
REFERENCE_SCHEMA = {"images": (False, "input"), "codes": (True, "input"),
                    "labels": (True, ()), "logits": (False, "classes")}
# And ``layer{i}.codes`` (PyTorch's input codes of layer ``i`` >= 1): integers of that layer's
# input shape and width (``_load_reference``).


# Saving --------------------------------------------------------------------------------------
_SCALARS = ("name", "kind", "out_channels", "kernel", "stride", "padding", "a_bits", "w_format",
            "w_bits", "frac_bits", "relu", "pool", "s_in", "input_adapter", "next_step",
            "next_bits")
_ALLOWED_FILES = ("manifest.json", "arrays.npz")


def _encode(bundle):
    """``(manifest, arrays)`` of ``bundle``; fills each layer's ``fixed`` integers."""
    arrays, layers = {}, []
    fmt = bundle.format
    graph = fmt >= GRAPH_FORMAT
    for i, layer in enumerate(bundle.layers):
        entry = {k: _plain(getattr(layer, k)) for k in _SCALARS}
        if fmt == OPS_FORMAT:
            entry.update({k: _plain(getattr(layer, k)) for k in _OPS})
        if graph:
            entry.update(source=layer.source if i == 0 or layer.source is not None else
                         bundle.layers[i - 1].name, shortcut=layer.shortcut,
                         projection=bool(layer.projection))
        entry["in_shape"] = [_plain(n) for n in layer.in_shape]
        entry["adapter"] = None if layer.adapter is None else {
            "layers": layer.adapter.layers, "input": layer.adapter.input}
        try:
            entry["derived"] = {"k": layer.k, "acc_bits": layer.acc_bits,
                                "out_shape": list(layer.out_shape)}
        except (ValueError, TypeError, AttributeError):
            entry["derived"] = None                  # bad fields: ``_decode`` names them
        layers.append(entry)
        p = f"layer{i}"
        arrays[f"{p}.weight"] = _as(layer.weight, np.int64, f"{p}.weight")
        for name in ("alpha", "bn_scale", "bn_bias"):
            arrays[f"{p}.{name}"] = _as(getattr(layer, name), np.float64, f"{p}.{name}")
        if layer.adapter is not None:
            for name, value in layer.adapter.arrays().items():
                arrays[f"{p}.adapter.{name}"] = _as(value, np.float64, f"{p}.adapter.{name}")
        # Parameters that the fixed point refuses are left to ``_decode``, whose checks name
        # the field; the fixed-point arrays are then missing, which it refuses anyway.
        with np.errstate(invalid="raise", over="raise", divide="raise"):
            try:
                layer.fixed = layer.compute_fixed()
            except (ValueError, TypeError, FloatingPointError):
                layer.fixed = None
        for name, value in (layer.fixed.arrays() if layer.fixed else {}).items():
            arrays[f"{p}.fixed.{name}"] = value
        if layer.shortcut is not None:
            try:
                layer.shortcut_fixed = bundle.compute_shortcut_fixed(i)
            except (ValueError, TypeError, StopIteration, FloatingPointError):
                layer.shortcut_fixed = None          # ``_decode`` names the problem
            for name, value in (layer.shortcut_fixed.arrays() if layer.shortcut_fixed
                                else {}).items():
                arrays[f"{p}.shortcut.{name}"] = value
    for name, value in bundle.reference.items():
        arrays[f"reference.{name}"] = np.asarray(value)
    manifest = {
        "format": fmt, "kind": KIND,
        "input": {"shape": [_plain(n) for n in bundle.input_shape],
                  "bits": _plain(bundle.input_bits), "step": _plain(bundle.input_step)},
        "fixed_point": dict(FIXED_POINT),
        "layers": layers, "meta": bundle.meta,
    }
    return manifest, arrays


def _plain(value):
    """numpy scalars as Python ones (JSON has no numpy types)."""
    return value.item() if isinstance(value, np.generic) else value


def _as(value, dtype, key):
    """``value`` as ``dtype`` without a silent change of value (a complex or non-numeric array,
    or a float that is not an integer, is refused)."""
    a = np.asarray(value)
    kinds = "iu" if dtype is np.int64 else "iuf"
    if a.dtype.kind not in kinds:
        raise BundleError(f"arrays.npz: {key} must be {_KIND_NAMES[kinds]}, not {a.dtype}")
    return a.astype(dtype)


def save(bundle, folder):
    """Write ``bundle`` into ``folder``; fills each layer's ``fixed`` integers.

    The bundle is validated first, with every check of ``load``, so that nothing is written
    that ``load`` would refuse (``BundleError``). The folder is written beside ``folder`` and
    renamed into place once complete: a run killed half-way leaves the old bundle (if any).
    An existing ``folder`` that holds other files than a bundle's is not replaced
    (``OutputError``).
    """
    folder = Path(folder)
    manifest, arrays = _encode(bundle)
    try:
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise BundleError(f"manifest.json: a field is not plain JSON ({e})") from None
    _decode(json.loads(text), arrays)
    with replace_folder(folder, allowed=_ALLOWED_FILES) as tmp:
        (tmp / "manifest.json").write_text(text)
        (tmp / "arrays.npz").write_bytes(npz_bytes(arrays, compress=True))
    return folder


# Loading -------------------------------------------------------------------------------------
_KIND_NAMES = {"iu": "integers", "iuf": "real numbers"}


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def _read_manifest(path):
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BundleError(f"{path}: unreadable ({e.strerror})") from None
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {size} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not valid JSON (not UTF-8)") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except ValueError as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{path}: not valid JSON (nested too deeply)") from None
    except OSError as e:
        raise BundleError(f"{path}: unreadable ({e.strerror})") from None


class _Reader:
    """Typed access to the manifest and arrays with one-line errors naming the place; records
    which arrays were read, so that unexpected ones are refused."""

    def __init__(self, manifest, arrays):
        self.manifest = manifest
        self.arrays = arrays
        self.used = set()

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

    def fields(self, obj, schema, where):
        """Every field of ``schema`` from ``obj``, typed and in range; unknown fields refused."""
        _check(isinstance(obj, dict), f"manifest.json: {where} must be an object")
        for key in obj:
            _check(key in schema, f"manifest.json: {where} has an unknown field {key!r}")
        values = {}
        for key, f in schema.items():
            value = self.get(obj, key, f.kind, where, optional=f.optional)
            if value is not None and f.kind is float:
                _check(math.isfinite(value), f"manifest.json: {where}.{key} must be finite, "
                                             f"not {value!r}")
            if value is not None and f.lo is not None:
                _check(f.lo <= value <= f.hi, f"manifest.json: {where}.{key} must be from "
                                              f"{f.lo:g} to {f.hi:g}, not {value!r}")
            values[key] = value
        return values

    def array(self, key, shape=None, integer=False, optional=False):
        if key not in self.arrays:
            if optional:
                return None
            raise BundleError(f"arrays.npz: {key} is missing")
        self.used.add(key)
        a = self.arrays[key]
        kinds = "iu" if integer else "iuf"
        if a.dtype.kind not in kinds:
            raise BundleError(f"arrays.npz: {key} must hold {_KIND_NAMES[kinds]}, not {a.dtype}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise BundleError(f"arrays.npz: {key} has shape {tuple(a.shape)}, "
                              f"expected {tuple(shape)}")
        if integer:
            if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
                raise BundleError(f"arrays.npz: {key} holds integers beyond 64 bits")
            return a.astype(np.int64)
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise BundleError(f"arrays.npz: {key} holds NaN or infinity")
        return a

    def real(self, key, shape, limit=REAL_LIMIT):
        a = self.array(key, shape)
        peak = float(np.abs(a).max(initial=0))
        _check(peak < limit, f"arrays.npz: {key} holds {peak:g}, beyond the range of the "
                             f"rescale (|value| < {limit:g})")
        return a


def _check(cond, message):
    if not cond:
        raise BundleError(message)


def _shape(value, where, lengths):
    _check(len(value) in lengths and all(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_DIM for n in value),
        f"manifest.json: {where} must be {' or '.join(f'{n}' for n in lengths)} integers from "
        f"1 to {MAX_DIM}, not {value!r}")
    return tuple(value)


def _load_adapter(r, p, where, info, cout):
    """The ASQ adapter of layer ``p`` (its manifest entry ``info``) as a
    ``core.adapter.Adapter``."""
    v = r.fields(info, ADAPTER_SCHEMA, f"{where}.adapter")
    n, mode = v["layers"], v["input"]
    _check(mode in ADAPTER_INPUTS, f"manifest.json: {where}.adapter.input must be "
                                   f"{' or '.join(ADAPTER_INPUTS)}, not {mode!r}")
    # The adapter reads this layer's output: its channels, or every value of a vector.
    inputs = cout if mode == "channels" else None      # a vector's length: ``_load_layer``
    w1 = r.real(f"{p}.adapter.w1", None)
    _check(w1.ndim == 2 and w1.shape[0] >= 1 and w1.shape[1] >= 1 and
           (inputs is None or w1.shape[1] == inputs) and (n == 2 or w1.shape[0] == 1),
           f"arrays.npz: {p}.adapter.w1 has shape {w1.shape}, which does not fit a "
           f"{n}-layer adapter on {inputs or 'the'} inputs")
    hidden = w1.shape[0]
    b1 = r.real(f"{p}.adapter.b1", (hidden,), BIAS_LIMIT)
    w2 = r.real(f"{p}.adapter.w2", (1, hidden)) if n == 2 else None
    b2 = r.real(f"{p}.adapter.b2", (1,), BIAS_LIMIT) if n == 2 else None
    return Adapter(w1=w1, b1=b1, w2=w2, b2=b2, input=mode)


def _load_layer(r, i, entry, in_shape, in_bits, in_step, last, graph=False, ops=False):
    where = f"layers[{i}]"
    schema = {**LAYER_SCHEMA, **(GRAPH_SCHEMA if graph else {}), **(OPS_SCHEMA if ops else {})}
    v = r.fields(entry, schema, where)
    projection = bool(v.get("projection"))
    kind = v["kind"]
    _check(kind in LAYER_KINDS, f"manifest.json: {where}.kind must be one of "
                                f"{', '.join(LAYER_KINDS)}, not {kind!r}")
    name = v["name"]
    _check(1 <= len(name) <= MAX_NAME, f"manifest.json: {where}.name must have 1 to "
                                       f"{MAX_NAME} characters")
    w = f"layer {name!r}"
    declared = _shape(v["in_shape"], f"{w}.in_shape", (3,) if kind == "conv2d" else (1,))
    _check(declared == tuple(in_shape) or
           (kind == "linear" and declared == (int(np.prod(in_shape)),)),
           f"manifest.json: {w} takes {declared}, but "
           f"{'its source' if graph else 'the previous layer'} gives {tuple(in_shape)}")
    values = {k: v[k] for k in ("out_channels", "kernel", "stride", "padding", "a_bits",
                                "w_bits", "frac_bits", "pool")}
    k, pad = values["kernel"], values["padding"]
    if kind == "linear":
        _check((k, values["stride"], pad, values["pool"]) in ((1, 1, 0, 0), (1, 1, 0, 1)),
               f"manifest.json: {w}: a linear layer has kernel 1, stride 1, padding 0 and no "
               f"pooling")
    else:
        _check(pad <= k // 2, f"manifest.json: {w}.padding must be at most half the kernel "
                              f"({k // 2}), not {pad}")
    _check(values["a_bits"] == in_bits, f"manifest.json: {w} takes {values['a_bits']}-bit "
                                        f"codes but is given {in_bits}-bit")
    w_format = v["w_format"]
    try:
        fmt = numerics.ProductFormat(w_format=w_format, a_bits=values["a_bits"],
                                     w_bits=values["w_bits"], frac_bits=values["frac_bits"])
    except (ValueError, TypeError) as e:
        raise BundleError(f"manifest.json: {w}: {e}") from None
    cout, cin = values["out_channels"], declared[0]
    groups = v.get("groups") or 1
    _check(groups in (1, cin) and (groups == 1 or (kind == "conv2d" and cout == cin)),
           f"manifest.json: {w}.groups must be 1 or, for a depthwise conv with as many outputs "
           f"as inputs, {cin}, not {groups}")
    wshape = (cout, cin // groups, k, k) if kind == "conv2d" else (cout, cin)
    _check(cin * k * k <= MAX_K, f"manifest.json: {w}: K = {cin * k * k} is more than {MAX_K}")
    p = f"layer{i}"
    weight = r.array(f"{p}.weight", wshape, integer=True)
    _check(weight.min(initial=0) >= 0 and weight.max(initial=0) < 2 ** fmt.w_bits,
           f"arrays.npz: {p}.weight holds codes outside the {fmt.w_bits}-bit range of {w}")
    adapter = None if v["adapter"] is None else _load_adapter(r, p, where, v["adapter"], cout)
    layer = Layer(
        name=name, kind=kind, in_shape=declared, w_format=w_format, **values, weight=weight,
        relu=v["relu"], alpha=r.real(f"{p}.alpha", (cout,)),
        bn_scale=r.real(f"{p}.bn_scale", (cout,)),
        bn_bias=r.real(f"{p}.bn_bias", (cout,), BIAS_LIMIT),
        s_in=float(v["s_in"]), input_adapter=v["input_adapter"],
        next_step=None if v["next_step"] is None else float(v["next_step"]),
        next_bits=v["next_bits"], adapter=adapter, source=v.get("source"),
        shortcut=v.get("shortcut"), projection=projection,
        **({k: _OPS_DEFAULTS[k] if v[k] is None and k in _OPS_DEFAULTS else v[k]
            for k in _OPS} if ops else {}))
    if ops:
        _check_ops(layer, w, last)
    _check(np.all(layer.alpha > 0), f"arrays.npz: {p}.alpha must be positive")
    _check(_close(layer.s_in, in_step), f"manifest.json: {w}.s_in is {layer.s_in!r}, but its "
                                        f"input is quantized with the step {in_step!r}")
    if kind == "conv2d":
        co, ho, wo = layer.conv_shape
        _check(ho >= 1 and wo >= 1, f"manifest.json: {w} has an empty output")
        _check(layer.pool in (0, 1) or (ho % layer.pool == 0 and wo % layer.pool == 0),
               f"manifest.json: {w}: a {ho}x{wo} map cannot be pooled by {layer.pool}")
    if adapter is not None and adapter.input == "vector":
        size = int(np.prod(layer.out_shape))
        _check(adapter.inputs == size, f"arrays.npz: {p}.adapter.w1 reads {adapter.inputs} "
                                       f"values, but {w} gives {size}")
    _check((layer.next_step is None) == (layer.next_bits is None),
           f"manifest.json: {w}: next_step and next_bits go together")
    if projection:
        _check(kind == "conv2d" and not last, f"manifest.json: {w}: a projection must be a "
                                              f"conv layer that is not the last one")
        _check(not layer.relu and layer.pool in (0, 1) and adapter is None and
               layer.next_step is None and layer.shortcut is None,
               f"manifest.json: {w}: a projection has no ReLU, pooling, next quantizer, adapter "
               f"or shortcut")
    else:
        _check((layer.next_step is None) == last, f"manifest.json: {w} " +
               ("is last but names a next step" if last else "has no next_step"))
    _check(layer.adapter is None or not last, f"manifest.json: {w} is last but has an adapter")
    _check(not last or (not layer.relu and layer.clip is None and layer.pool in (0, 1)),
           f"manifest.json: {w} is last: its outputs are its z values (the logits), with no "
           f"ReLU, clip or pooling after them")
    derived = {"k": layer.k, "acc_bits": layer.acc_bits, "out_shape": list(layer.out_shape)}
    _check(v["derived"] == derived, f"manifest.json: {w}.derived is {v['derived']}, but the "
                                    f"layer's fields give {derived}")
    with np.errstate(invalid="raise", over="raise", divide="raise"):
        try:
            layer.fixed = layer.compute_fixed()
        except (ValueError, FloatingPointError) as e:
            raise BundleError(f"{w}: {e}") from None
    for key, value in layer.fixed.arrays().items():
        stored = r.array(f"{p}.fixed.{key}", np.shape(value), integer=True)
        _check(np.array_equal(stored, value),
               f"arrays.npz: {p}.fixed.{key} differs from the fixed point computed from the "
               f"parameters of {w}")
    return layer


def _check_ops(layer, w, last):
    """The format-3 fields of ``layer`` (module docstring)."""
    if layer.clip is not None:
        layer.clip = float(layer.clip)
        _check(layer.relu, f"manifest.json: {w}.clip needs a ReLU (relu true)")
    _check(layer.pool_mode in rescale.POOL_MODES, f"manifest.json: {w}.pool_mode must be "
                                                  f"{' or '.join(rescale.POOL_MODES)}, not "
                                                  f"{layer.pool_mode!r}")
    _check(layer.pool_mode == "max" or layer.pool >= 2,
           f"manifest.json: {w}: average pooling needs a window (pool) of 2 or more")
    if layer.global_pool:
        _check(layer.kind == "conv2d" and not last and not layer.projection,
               f"manifest.json: {w}: only a conv layer that is neither the last one nor a "
               f"projection may end in a global pooling")
        _check(layer.adapter is None or layer.adapter.input == "channels",
               f"manifest.json: {w}: the adapter after a global pooling reads \"channels\"")
    _check(layer.shortcut is not None or (layer.shortcut_stride, layer.shortcut_pad) == (1, 0),
           f"manifest.json: {w}: shortcut_stride and shortcut_pad need a shortcut")


def _close(a, b):
    return np.isclose(a, b, rtol=1e-12, atol=0)


def _load_reference(r, input_shape, input_bits, layers):
    """The reference arrays, each checked against ``REFERENCE_SCHEMA``; one sample count."""
    reference, count = {}, None
    classes = layers[-1].out_channels
    dims = {"input": tuple(input_shape), "classes": (classes,), (): ()}
    schema = dict(REFERENCE_SCHEMA)
    for i, layer in enumerate(layers[1:], start=1):
        dims[f"layer{i}"] = tuple(layer.in_shape)
        schema[f"layer{i}.codes"] = (True, f"layer{i}")
    for name, (integer, tail) in schema.items():
        key = f"reference.{name}"
        if key not in r.arrays:
            continue
        a = r.arrays[key]
        _check(a.ndim >= 1 and a.shape[0] >= 1, f"arrays.npz: {key} holds no samples")
        count = a.shape[0] if count is None else count
        _check(a.shape[0] == count, f"arrays.npz: {key} has {a.shape[0]} samples, but the "
                                    f"other reference arrays have {count}")
        a = r.array(key, (count, *dims[tail]), integer=integer)
        if name.endswith("codes"):
            layer = None if name == "codes" else layers[int(name[5:-6])]
            bits = input_bits if layer is None else layer.a_bits
            lo, hi = numerics.act_range(bits, layer is not None and layer.a_signed)
            _check(a.min() >= lo and a.max() <= hi,
                   f"arrays.npz: {key} holds codes outside the {bits}-bit input range")
        if name == "labels":
            _check(a.min() >= 0 and a.max() < classes,
                   f"arrays.npz: {key} holds labels outside 0 to {classes - 1}")
        reference[name] = a
    return reference


def _graph_reference(entry, i, names, key):
    """The index of the earlier layer that ``entry``'s ``key`` (``source`` or ``shortcut``)
    names, or ``None`` (``source``: the network input, for the first layer only)."""
    name = names[i]
    value = entry.get(key) if isinstance(entry, dict) else None
    if value is None:
        _check(key == "shortcut" or i == 0,
               f"manifest.json: layer {name!r}.source is missing (only the first layer reads "
               f"the network input)")
        return None
    _check(isinstance(value, str), f"manifest.json: layers[{i}].{key} must be str, not "
                                   f"{type(value).__name__}")
    _check(i > 0, f"manifest.json: layer {name!r}.{key} must be null: the first layer reads "
                  f"the network input")
    _check(value != name, f"manifest.json: layer {name!r}.{key} names the layer itself "
                          f"(a cycle)")
    earlier = names[:i]
    if value in earlier:
        _check(earlier.count(value) == 1, f"manifest.json: two layers are named {value!r}")
        return earlier.index(value)
    _check(value not in names, f"manifest.json: layer {name!r}.{key} names {value!r}, which "
                               f"comes later (a forward reference: the list is the execution "
                               f"order)")
    raise BundleError(f"manifest.json: layer {name!r}.{key} names an unknown layer {value!r}")


def _graph_shortcut(r, layers, i, j):
    """Check layer ``i``'s shortcut (layer ``j`` or ``None``) and its stored integers."""
    layer = layers[i]
    w = f"layer {layer.name!r}"
    if j is None:
        return
    other = layers[j]
    _check(layer.kind == "conv2d" and not layer.projection and layer.next_step is not None,
           f"manifest.json: {w}: only a conv layer that is neither the last one nor a "
           f"projection may have a shortcut")
    if other.projection:
        _check((layer.shortcut_stride, layer.shortcut_pad) == (1, 0),
               f"manifest.json: {w}: shortcut_stride and shortcut_pad are for an identity "
               f"shortcut, not a projection")
        _check(other.conv_shape == layer.conv_shape,
               f"manifest.json: {w} adds the projection {other.name!r} of shape "
               f"{other.conv_shape} to its output of shape {layer.conv_shape}")
        return
    _check(other.next_step is not None, f"manifest.json: {w}.shortcut names {other.name!r}, "
                                        f"which gives no codes (the last layer)")
    c, h, wd = other.out_shape
    s, pad = layer.shortcut_stride, layer.shortcut_pad
    shape = (c, -(-h // s), -(-wd // s))
    _check(shape[1:] == layer.conv_shape[1:] and c + pad <= layer.conv_shape[0],
           f"manifest.json: {w} adds the output of {other.name!r} of shape {other.out_shape}"
           + (f" (subsampled by {s}, at channel {pad})" if (s, pad) != (1, 0) else "")
           + f" to its output of shape {layer.conv_shape}")
    _check((s, pad) != (1, 0) or c == layer.conv_shape[0],
           f"manifest.json: {w} adds the output of {other.name!r} of shape {other.out_shape} "
           f"to its output of shape {layer.conv_shape}")
    try:
        layer.shortcut_fixed = rescale.shortcut_fixed_point(
            step=other.next_step, channels=layer.out_channels, bits=other.next_bits)
    except (ValueError, FloatingPointError) as e:
        raise BundleError(f"{w}: shortcut: {e}") from None
    p = f"layer{i}"
    for key, value in layer.shortcut_fixed.arrays().items():
        stored = r.array(f"{p}.shortcut.{key}", np.shape(value), integer=True)
        _check(np.array_equal(stored, value),
               f"arrays.npz: {p}.shortcut.{key} differs from the fixed point computed from the "
               f"step of {other.name!r}")


def _graph_uses(layers, sources):
    """Every layer's output is used, and a projection's by exactly one shortcut."""
    used = {}
    for i, layer in enumerate(layers):
        if sources[i] is not None:
            used.setdefault(sources[i], []).append(("source", layer.name))
        if layer.shortcut is not None:
            j = next(k for k, la in enumerate(layers[:i]) if la.name == layer.shortcut)
            used.setdefault(j, []).append(("shortcut", layer.name))
    for j, layer in enumerate(layers):
        uses = used.get(j, [])
        last = j == len(layers) - 1
        if layer.projection:
            _check([u for u, _ in uses] == ["shortcut"],
                   f"manifest.json: the projection {layer.name!r} must be the shortcut of "
                   f"exactly one layer and the source of none")
        elif last:
            _check(not uses, f"manifest.json: the last layer {layer.name!r} is read by "
                             f"{uses[0][1]!r}" if uses else "")
        else:
            _check(uses, f"manifest.json: the output of layer {layer.name!r} is not used")


def _decode(m, arrays):
    """The ``Bundle`` of a parsed manifest and its arrays, every field checked."""
    r = _Reader(m, arrays)
    _check(isinstance(m, dict) and m.get("kind") == KIND,
           f"manifest.json: not an asqgen bundle (kind is not {KIND!r})")
    fmt = m.get("format")
    _check(type(fmt) is int and fmt in FORMATS,
           f"manifest.json: format {fmt!r} is not supported (this asqgen reads formats "
           f"{', '.join(map(str, FORMATS[:-1]))} and {FORMATS[-1]})")
    top = r.fields(m, TOP_SCHEMA, "manifest")
    fixed = r.fields(top["fixed_point"], {k: Field(int) for k in FIXED_POINT}, "fixed_point")
    for key, ours in FIXED_POINT.items():
        _check(fixed[key] == ours, f"manifest.json: fixed_point.{key} is {fixed[key]}, but this "
                                   f"asqgen computes with {ours}")
    inp = r.fields(top["input"], INPUT_SCHEMA, "input")
    shape = _shape(inp["shape"], "input.shape", (1, 3))
    bits, step = inp["bits"], float(inp["step"])
    entries = top["layers"]
    _check(entries, "manifest.json: the bundle has no layers")
    _check(len(entries) <= MAX_LAYERS, f"manifest.json: more than {MAX_LAYERS} layers")
    graph, ops = fmt >= GRAPH_FORMAT, fmt == OPS_FORMAT
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    if graph:
        seen = set()
        for name in names:
            _check(name not in seen, f"manifest.json: two layers are named {name!r}")
            seen.add(name)
    layers, in_shape, in_bits, in_step = [], shape, bits, step
    sources = []
    for i, entry in enumerate(entries):
        src = _graph_reference(entry, i, names, "source") if graph else (
            i - 1 if i else None)
        if src is not None:
            prev = layers[src]
            _check(prev.next_step is not None, f"manifest.json: layer {names[i]!r} reads "
                                               f"{prev.name!r}, which gives no codes (the last "
                                               f"layer or a projection)")
            in_shape, in_bits, in_step = prev.out_shape, prev.next_bits, prev.next_step
        layer = _load_layer(r, i, entry, in_shape, in_bits, in_step,
                            last=i == len(entries) - 1, graph=graph, ops=ops)
        layers.append(layer)
        sources.append(src)
        if graph:
            _graph_shortcut(r, layers, i, _graph_reference(entry, i, names, "shortcut"))
    for layer, src in zip(layers, sources):
        if src is not None:
            prev = layers[src]
            _check(layer.input_adapter == (prev.adapter is not None),
                   f"manifest.json: layer {layer.name!r}.input_adapter disagrees with the "
                   f"adapter of {prev.name!r}")
            _check(layer.a_signed == prev.next_signed,
                   f"manifest.json: layer {layer.name!r}.a_signed disagrees with the "
                   f"next_signed of {prev.name!r}")
        else:
            _check(not layer.a_signed, f"manifest.json: layer {layer.name!r}.a_signed must "
                                       f"be false: the network's input codes are unsigned")
    if graph:
        _graph_uses(layers, sources)
    reference = _load_reference(r, shape, bits, layers)
    r.used.update(f"reference.{k}" for k in reference)
    unexpected = [k for k in arrays if k not in r.used]
    _check(not unexpected, f"arrays.npz: unexpected array {unexpected[0]!r}" if unexpected
           else "")
    return Bundle(input_shape=shape, input_bits=bits, input_step=step, layers=layers,
                  meta=top["meta"], reference=reference)


def _mode(path):
    """``path``'s mode, 0 if it does not exist; a ``PermissionError`` passes (``Path.is_dir``
    and ``is_file`` hide it from Python 3.14 on)."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0


def load(folder):
    """Read and validate the bundle in ``folder``; raise ``BundleError`` on any problem."""
    folder = Path(folder)
    manifest, npz = folder / "manifest.json", folder / "arrays.npz"
    try:                                         # a folder we may not list or enter: one line
        if not stat.S_ISDIR(_mode(folder)):
            raise BundleError(f"{folder}: no such bundle folder")
        if not stat.S_ISREG(_mode(manifest)):
            raise BundleError(f"{manifest}: missing")
        m = _read_manifest(manifest)
        if not stat.S_ISREG(_mode(npz)):
            raise BundleError(f"{npz}: missing")
    except PermissionError as e:
        raise BundleError(f"{folder}: unreadable ({e.strerror})") from None
    # Kind and format first: a foreign file is named as such before its arrays are read.
    _check(isinstance(m, dict) and m.get("kind") == KIND,
           f"{manifest}: not an asqgen bundle (kind is not {KIND!r})")
    arrays = read_npz(npz, BundleError)
    try:
        return _decode(m, arrays)
    except BundleError as e:                     # name the folder too
        message = str(e)
        joint = "/" if message.startswith(("manifest.json:", "arrays.npz:")) else ": "
        raise BundleError(f"{folder}{joint}{message}") from None
