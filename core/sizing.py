"""Sizing the hardware for a bundle: the array configuration that runs every layer. What the
hardware cannot run at all is refused by ``core.rules.check_bundle`` first."""

from .config import ArrayConfig
from .errors import UsageError
from .rules import check_bundle
from .widths import bundle_widths, check as check_widths

__all__ = ["array_for_bundle", "config_for_bundle", "check_fits"]


def _array_format(bundle):
    """``(w_format, w_bits, frac_bits)`` of the layers that need the array's own multipliers
    (every layer that is not ``int``); ``int`` layers run as signed-digit terms on any array."""
    check_bundle(bundle)                       # one format at most, among other rules
    formats = {(l.w_format, l.w_bits, l.frac_bits): l.name for l in bundle.layers
               if l.w_format != "int"}
    return next(iter(formats), None)


def _needs(bundle):
    layers = bundle.layers
    hidden = [l.adapter.hidden for l in layers if l.adapter is not None] + [1]
    return {
        "a_bits": max(l.a_bits for l in layers),
        "max_k": max(l.product_k for l in layers),
        "max_m": max(l.positions for l in layers),
        "max_channels": max(l.out_channels for l in layers),
        "max_hidden": max(hidden),
        "residual": any(bundle.residual_kind(i)[0] != "none" for i in range(len(layers))),
        "signed_acts": any(l.a_signed for l in layers),
    }


def array_for_bundle(bundle, *, rows=None, cols=None):
    """``(rows, cols)`` of the array for ``bundle`` when none is given: ``ArrayConfig``'s
    default (8x8), or the next power of two of the largest ``K`` (rows) and of the most output
    channels (cols) when that is smaller. Every size fits, since layers are tiled."""
    d = ArrayConfig()
    check_bundle(bundle)
    need = _needs(bundle)
    power = lambda n: 1 << max(0, (n - 1).bit_length())
    return (min(d.rows, power(need["max_k"])) if rows is None else rows,
            min(d.cols, power(need["max_channels"])) if cols is None else cols)


def config_for_bundle(bundle, *, rows=8, cols=8, widths=None):
    """The smallest configuration of a ``rows x cols`` array that runs every layer of
    ``bundle``, its rescale unit's widths derived from the bundle (``core.widths``; or
    ``widths``, already derived, when sizing one bundle for many arrays); raises
    ``core.rules.MappingError`` naming the layer the hardware cannot run."""
    fmt = _array_format(bundle)
    w_format, w_bits, frac_bits = fmt if fmt else ("post", 4, None)
    config = ArrayConfig(rows=rows, cols=cols, w_format=w_format, w_bits=w_bits,
                         frac_bits=frac_bits, **_needs(bundle))
    return config.replace(rescale_widths=widths or bundle_widths(bundle))


def check_fits(bundle, config):
    """Raise ``UsageError`` saying what does not fit when ``config`` cannot run ``bundle``
    (``core.rules.MappingError`` when no array could)."""
    fmt = _array_format(bundle)
    if fmt and fmt != (config.w_format, config.w_bits, config.frac_bits):
        name = next(l.name for l in bundle.layers if l.w_format != "int")
        raise UsageError(f"layer {name!r} has {fmt[1]}-bit {fmt[0]} weights with frac_bits="
                         f"{fmt[2]}; the array is built for {config.w_bits}-bit "
                         f"{config.w_format} with frac_bits={config.frac_bits}")
    for key, need in _needs(bundle).items():
        have = getattr(config, key)
        if key == "residual":
            if need and not have:
                raise UsageError("the bundle has residual blocks; the engine is built without "
                                 "the residual add (residual=False)")
            continue
        if key == "signed_acts":
            if need and not have:
                name = next(l.name for l in bundle.layers if l.a_signed)
                raise UsageError(f"layer {name!r} reads signed codes; the array is built for "
                                 f"unsigned activations (signed_acts=False)")
            continue
        if need > have:
            raise UsageError(f"the bundle needs {key}={need}, the array has {key}={have}")
    check_widths(bundle_widths(bundle), config.widths)
