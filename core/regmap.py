"""The rescale unit's register map: the one definition of the words that the host writes on
``i_param`` before a layer, shared by the host drivers (``encode``), the hardware
(``hw.rescale_unit`` decodes ``Region`` and ``CONTROL`` by name) and the manifest
(``manifest()``).

A word is ``(address, value)``: ``value`` is a signed ``VALUE_BITS`` integer, ``address`` holds
the region in its top ``REGION_BITS`` bits and the entry in the low ``index_bits``. The index
width is the engine's own, derived from its sizes like every other width (``index_bits_for``:
the adapter's ``w1`` region holds ``max_hidden x max_channels`` entries), never fewer than
``MIN_INDEX_BITS`` (12, the default engine's) and at most ``MAX_INDEX_BITS``; the host and the
hardware take it from the same ``core.config.ArrayConfig.index_bits``, and ``manifest()``
records it:

====== =========== ==============================================================
region name        contents (``r`` a ``core.rescale.LayerRescale``)
====== =========== ==============================================================
0      ``m``       ``r.m[c]``: the mantissas of the folded batch-norm scale
1      ``sh``      ``r.z_shift[c]`` (signed)
2      ``bias``    ``r.bias_q[c]``
3      ``w1``      ``r.w1_q[j, c]`` at ``j * max_channels + c`` (two-layer adapter)
4      ``b1``      ``r.b1_q[j]`` (two-layer adapter)
5      ``wb``      ``r.beta_weights[i]``: the weights of the layer that makes ``beta``
6      ``control`` the registers of ``CONTROL``, in that order
7      ``res_m``   ``s.m[c]`` of an identity shortcut's ``LayerRescale`` ``s``
8      ``res_sh``  ``s.z_shift[c]`` (signed)
====== =========== ==============================================================

The ``residual`` register says what the layer adds to its ``z`` before the ReLU
(``core.rescale.rescale_residual``): nothing (0), an identity shortcut's codes rescaled by
``res_m`` and ``res_sh`` with their own ``beta`` (1), or a projection's ``z`` as it is (2).

The last four control registers (bundle format 3, ``core.rescale``'s "Clipping, average
pooling and global average pooling") come after the older ones, whose indices are unchanged:
``clip`` (1: the bounded ReLU's ``u = min(u, clip_q)`` after the ReLU), ``clip_q``
(``r.clip_q``, units ``2**-Z``, 0 when ``clip`` is 0), ``pool_mode`` (``POOL_MODE_KINDS``:
0 the window's maximum, 1 its sum, average pooling) and ``global_pool`` (1: the outputs are
each sample's channel sums ``S`` requantized, one position). ``encode`` writes every control
register for every layer, so a layer of an older bundle sets them to 0 (the plain ReLU, max
pooling, ``u`` out) whatever the layer before it set.

Two more follow them for signed codes (``core.rescale.LayerRescale.next_signed``, bundle format
3's ``next_signed``): ``next_signed`` (1: the layer's output codes are two's complement, clamped
to ``min_code .. max_code``) and ``res_signed`` (1: an identity shortcut's codes on ``i_res``
are signed, two's complement in their low ``SHORTCUT_CODE_BITS`` bits, and are sign-extended).
``min_code`` is no register of its own: a signed layer's range is ``-2**(b-1) .. 2**(b-1) - 1``,
so ``min_code = -(max_code + 1)`` (``~max_code``, ``core.rescale.LayerRescale.min_code``),
which the unit derives. Older layers write both as 0 (unsigned codes, as before).
"""

from enum import IntEnum

from . import rescale

__all__ = ["Region", "CONTROL", "ADAPTER_KINDS", "REGION_BITS", "MIN_INDEX_BITS",
           "MAX_INDEX_BITS", "VALUE_BITS", "FIELD_BITS", "RESIDUAL_KINDS", "index_bits_for",
           "POOL_MODE_KINDS", "SHORTCUT_CODE_BITS", "max_words", "address_bits", "address", "encode", "check_beta",
           "manifest"]

REGION_BITS = 4
MIN_INDEX_BITS = 12         # the floor: the default engine's map stays as it is
MAX_INDEX_BITS = 20         # the generator's ceiling (a million entries in one region)
VALUE_BITS = rescale.PARAM_BITS     # the parameters' signed width

#: The regions whose values the hardware keeps narrower than ``VALUE_BITS`` (signed): the
#: mantissas (``|m| <= 2**(MANTISSA_BITS - 1)``, ``core.rescale.mantissa``) and the shifts
#: (``-MAX_LEFT_SHIFT`` to ``MAX_RIGHT_SHIFT``). ``encode`` refuses a value that does not fit.
FIELD_BITS = {"m": rescale.MANTISSA_BITS + 1, "res_m": rescale.MANTISSA_BITS + 1,
              "w1": rescale.MANTISSA_BITS + 1, "wb": rescale.MANTISSA_BITS + 1,
              "sh": 8, "res_sh": 8}


class Region(IntEnum):
    m = 0
    sh = 1
    bias = 2
    w1 = 3
    b1 = 4
    wb = 5
    control = 6
    res_m = 7
    res_sh = 8


#: The control registers: the layer's shape, its options and the constants of ``LayerRescale``
#: that are one per layer. (A sample's ``beta_in`` is not a register: it comes with the sample,
#: on the rescale unit's ``i_beta`` stream.)
CONTROL = ("channels", "height", "width", "pool", "relu", "final", "adapter", "hidden", "sh1",
           "shb", "bb", "m_s", "sh_req", "max_code", "residual",
           "clip", "clip_q", "pool_mode", "global_pool", "next_signed", "res_signed")

#: ``LayerRescale.adapter`` as the ``adapter`` register holds it.
ADAPTER_KINDS = {"none": 0, "one": 1, "two": 2}

#: What a layer adds before its ReLU, as the ``residual`` register holds it.
RESIDUAL_KINDS = {"none": 0, "identity": 1, "projection": 2}

#: An identity shortcut's codes are at most this wide (``core.numerics.ACT_BITS``): a signed
#: one's sign is bit ``SHORTCUT_CODE_BITS - 1`` of what ``i_res`` carries.
SHORTCUT_CODE_BITS = 8

#: ``core.bundle.Layer.pool_mode`` as the ``pool_mode`` register holds it.
POOL_MODE_KINDS = {"max": 0, "avg": 1}


def index_bits_for(max_channels, max_hidden):
    """The index width of an engine of ``max_channels`` channels and ``max_hidden`` adapter
    hidden units: enough for the largest region (``w1``, ``max_hidden x max_channels``), at
    least ``MIN_INDEX_BITS``."""
    entries = max(max_channels, max_hidden, max_channels * max(max_hidden, 1))
    bits = max(MIN_INDEX_BITS, (entries - 1).bit_length())
    if bits > MAX_INDEX_BITS:
        raise ValueError(f"max_channels x max_hidden = {entries} register entries is more than "
                         f"the register map's {1 << MAX_INDEX_BITS} ({MAX_INDEX_BITS} index "
                         f"bits)")
    return bits


def max_words(max_channels, max_hidden):
    """The most words ``encode`` writes for a layer of an engine of these sizes: the
    per-channel regions (``m``, ``sh``, ``bias``, ``res_m``, ``res_sh``), the adapter's
    (``w1``, ``b1``, ``wb``) and the control registers."""
    return (5 * max_channels + max_hidden * max_channels + max_hidden
            + max(max_channels, max_hidden) + len(CONTROL))


def address_bits(index_bits):
    """The width of an address of a map of ``index_bits``."""
    return REGION_BITS + index_bits


def address(region, index, index_bits):
    """The address of entry ``index`` of ``region`` in a map of ``index_bits``."""
    if not 0 <= index < 1 << index_bits:
        raise ValueError(f"register index {index} does not fit {index_bits} bits")
    return int(region) << index_bits | index


def encode(r, *, channels, height, width, pool, relu, max_channels, index_bits,
           residual="none", shortcut=None, pool_mode="max", global_pool=False,
           res_signed=False):
    """The ``(address, value)`` words of a layer's ``LayerRescale`` ``r`` (the control
    registers last; the host marks the final word ``last``). ``residual`` is a key of
    ``RESIDUAL_KINDS``; an ``"identity"`` residual needs the shortcut's ``LayerRescale``
    (``core.rescale.shortcut_fixed_point``) as ``shortcut``. ``height`` and ``width`` are the
    accumulators' spatial size (1 and 1 for a linear layer); ``max_channels`` the hardware's
    (the stride of ``w1``) and ``index_bits`` its map's index width
    (``core.config.ArrayConfig.index_bits``). ``pool_mode`` is a key of ``POOL_MODE_KINDS``;
    ``global_pool`` requantizes the channel sums (a layer that is not the last); the clip is
    ``r.clip_q``'s, the signed output codes ``r.next_signed``'s; ``res_signed``: an
    ``"identity"`` shortcut's codes are signed (its layer's ``next_signed``)."""
    if pool_mode not in POOL_MODE_KINDS:
        raise ValueError(f"pool_mode must be one of {', '.join(POOL_MODE_KINDS)}, not "
                         f"{pool_mode!r}")
    if global_pool and r.next_bits is None:
        raise ValueError("the last layer cannot end in a global pooling")
    if r.clip_q is not None and not 0 <= r.clip_q < 1 << (VALUE_BITS - 1):
        raise ValueError(f"clip_q = {r.clip_q} does not fit its {VALUE_BITS - 1} unsigned "
                         f"bits")
    signed_out = bool(r.next_signed) and r.next_bits is not None
    if res_signed and residual != "identity":
        raise ValueError("res_signed needs an identity shortcut")
    words = []
    for c in range(channels):
        words += [(address(Region.m, c, index_bits), int(r.m[c])),
                  (address(Region.sh, c, index_bits), int(r.z_shift[c])),
                  (address(Region.bias, c, index_bits), int(r.bias_q[c]))]
    hidden = 0
    if r.adapter == "two":
        hidden = r.w1_q.shape[0]
        for j in range(hidden):
            words += [(address(Region.w1, j * max_channels + c, index_bits),
                       int(r.w1_q[j, c])) for c in range(channels)]
            words.append((address(Region.b1, j, index_bits), int(r.b1_q[j])))
    if r.adapter != "none":
        words += [(address(Region.wb, i, index_bits), int(w))
                  for i, w in enumerate(r.beta_weights)]
    if residual == "identity":
        for c in range(channels):
            words += [(address(Region.res_m, c, index_bits), int(shortcut.m[c])),
                      (address(Region.res_sh, c, index_bits), int(shortcut.z_shift[c]))]
    final = r.next_bits is None
    control = {
        "channels": channels, "height": height, "width": width, "pool": pool, "relu": int(relu),
        "final": int(final), "adapter": ADAPTER_KINDS[r.adapter], "hidden": hidden,
        "sh1": r.hidden_shift or 0, "shb": r.beta_shift or 0, "bb": r.beta_bias or 0,
        "m_s": 0 if final else r.m_s, "sh_req": 0 if final else r.req_shift,
        "max_code": 0 if final else r.max_code, "residual": RESIDUAL_KINDS[residual],
        "clip": int(r.clip_q is not None), "clip_q": r.clip_q or 0,
        "pool_mode": POOL_MODE_KINDS[pool_mode], "global_pool": int(global_pool),
        "next_signed": int(signed_out), "res_signed": int(bool(res_signed)),
    }
    words += [(address(Region.control, CONTROL.index(k), index_bits), int(v))
              for k, v in control.items()]
    for a, v in words:
        bits = FIELD_BITS.get(Region(a >> index_bits).name, VALUE_BITS)
        if not -(1 << (bits - 1)) <= v < 1 << (bits - 1):
            name, index = Region(a >> index_bits).name, a & ((1 << index_bits) - 1)
            raise ValueError(f"register {name}[{index}] = {v} does not fit its {bits} signed "
                             f"bits")
    return words


def check_beta(beta_in):
    """A sample's ``beta_in`` (units ``2**-BETA_FRAC``), checked for the ``i_beta`` stream."""
    if not 1 <= beta_in <= rescale.BETA_MAX:
        raise ValueError(f"beta_in must be from 1 to {rescale.BETA_MAX}, not {beta_in}")
    return int(beta_in)


def manifest(index_bits):
    """The register map of an engine whose index is ``index_bits`` wide, as the generator's
    manifest lists it."""
    return {"address_bits": address_bits(index_bits), "index_bits": index_bits,
            "value_bits": VALUE_BITS,
            "regions": {region.name: int(region) for region in Region},
            "control": list(CONTROL), "pool_modes": dict(POOL_MODE_KINDS)}
