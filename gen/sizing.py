"""Sizing the hardware for a bundle: the array configuration that runs every layer."""

from .config import ArrayConfig
from .errors import BundleError, UsageError

__all__ = ["config_for_bundle", "check_fits"]


def _array_format(bundle):
    """``(w_format, w_bits, frac_bits)`` of the layers that need the array's own multipliers
    (every layer that is not ``int``); ``int`` layers run as bit planes on any array."""
    formats = {(l.w_format, l.w_bits, l.frac_bits): l.name for l in bundle.layers
               if l.w_format != "int"}
    if len(formats) > 1:
        (a, na), (b, nb) = list(formats.items())[:2]
        raise BundleError(f"layers {na!r} ({a[0]}{a[1]}) and {nb!r} ({b[0]}{b[1]}) need "
                         f"different arrays: one bundle must use one weight format")
    return next(iter(formats), None)


def _needs(bundle):
    layers = bundle.layers
    hidden = [l.adapter["w1"].shape[0] for l in layers
              if l.adapter is not None and "w2" in l.adapter]
    return {
        "a_bits": max(l.a_bits for l in layers),
        "max_k": max(l.k for l in layers),
        "max_m": max(int(l.conv_shape[1] * l.conv_shape[2]) if l.kind == "conv2d" else 1
                     for l in layers),
        "max_channels": max(l.out_channels for l in layers),
        "max_hidden": max(hidden, default=1),
    }


def config_for_bundle(bundle, *, rows=8, cols=8):
    """The smallest configuration of a ``rows x cols`` array that runs every layer of
    ``bundle``; raises ``BundleError`` naming the layers when one bundle needs two arrays."""
    fmt = _array_format(bundle)
    w_format, w_bits, frac_bits = fmt if fmt else ("post", 4, None)
    return ArrayConfig(rows=rows, cols=cols, w_format=w_format, w_bits=w_bits,
                       frac_bits=frac_bits, **_needs(bundle))


def check_fits(bundle, config):
    """Raise ``UsageError`` (or ``BundleError``) saying what does not fit when ``config``
    cannot run ``bundle``."""
    for layer in bundle.layers:
        if layer.pool not in (0, 1, 2):
            raise BundleError(f"layer {layer.name!r} pools {layer.pool}x{layer.pool}; the rescale "
                             f"unit pools 2x2 only")
        if layer.adapter is not None and layer.adapter["input"] != "channels":
            raise BundleError(f"the input of the layer after {layer.name!r} is an ASQ adapter on "
                             f"a vector (a linear layer's input), which the hardware does not "
                             f"run: use LSQ there")
    fmt = _array_format(bundle)
    if fmt and fmt != (config.w_format, config.w_bits, config.frac_bits):
        name = next(l.name for l in bundle.layers if l.w_format != "int")
        raise UsageError(f"layer {name!r} has {fmt[1]}-bit {fmt[0]} weights with frac_bits="
                         f"{fmt[2]}; the array is built for {config.w_bits}-bit "
                         f"{config.w_format} with frac_bits={config.frac_bits}")
    for key, need in _needs(bundle).items():
        have = getattr(config, key)
        if need > have:
            raise UsageError(f"the bundle needs {key}={need}, the array has {key}={have}")
