"""The rescale unit's register map: the one definition of the words that the host writes on
``i_param`` before a layer, shared by the host drivers (``encode``), the hardware
(``hw.rescale_unit`` decodes ``Region`` and ``CONTROL`` by name) and the manifest
(``manifest()``).

A word is ``(address, value)``: ``value`` is a signed ``VALUE_BITS`` integer, ``address`` holds
the region in its top ``REGION_BITS`` bits and the entry in the low ``INDEX_BITS``:

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
"""

from enum import IntEnum

from . import rescale

__all__ = ["Region", "CONTROL", "ADAPTER_KINDS", "REGION_BITS", "INDEX_BITS", "ADDR_BITS",
           "VALUE_BITS", "FIELD_BITS", "RESIDUAL_KINDS", "address", "encode", "check_beta", "manifest"]

REGION_BITS = 4
INDEX_BITS = 12
ADDR_BITS = REGION_BITS + INDEX_BITS
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
           "shb", "bb", "m_s", "sh_req", "max_code", "residual")

#: ``LayerRescale.adapter`` as the ``adapter`` register holds it.
ADAPTER_KINDS = {"none": 0, "one": 1, "two": 2}

#: What a layer adds before its ReLU, as the ``residual`` register holds it.
RESIDUAL_KINDS = {"none": 0, "identity": 1, "projection": 2}


def address(region, index):
    """The address of entry ``index`` of ``region``."""
    if not 0 <= index < 1 << INDEX_BITS:
        raise ValueError(f"register index {index} does not fit {INDEX_BITS} bits")
    return int(region) << INDEX_BITS | index


def encode(r, *, channels, height, width, pool, relu, max_channels, residual="none",
           shortcut=None):
    """The ``(address, value)`` words of a layer's ``LayerRescale`` ``r`` (the control
    registers last; the host marks the final word ``last``). ``residual`` is a key of
    ``RESIDUAL_KINDS``; an ``"identity"`` residual needs the shortcut's ``LayerRescale``
    (``core.rescale.shortcut_fixed_point``) as ``shortcut``. ``height`` and ``width`` are the accumulators' spatial size (1 and 1
    for a linear layer); ``max_channels`` the hardware's (the stride of ``w1``)."""
    words = []
    for c in range(channels):
        words += [(address(Region.m, c), int(r.m[c])),
                  (address(Region.sh, c), int(r.z_shift[c])),
                  (address(Region.bias, c), int(r.bias_q[c]))]
    hidden = 0
    if r.adapter == "two":
        hidden = r.w1_q.shape[0]
        for j in range(hidden):
            words += [(address(Region.w1, j * max_channels + c), int(r.w1_q[j, c]))
                      for c in range(channels)]
            words.append((address(Region.b1, j), int(r.b1_q[j])))
    if r.adapter != "none":
        words += [(address(Region.wb, i), int(w)) for i, w in enumerate(r.beta_weights)]
    if residual == "identity":
        for c in range(channels):
            words += [(address(Region.res_m, c), int(shortcut.m[c])),
                      (address(Region.res_sh, c), int(shortcut.z_shift[c]))]
    final = r.next_bits is None
    control = {
        "channels": channels, "height": height, "width": width, "pool": pool, "relu": int(relu),
        "final": int(final), "adapter": ADAPTER_KINDS[r.adapter], "hidden": hidden,
        "sh1": r.hidden_shift or 0, "shb": r.beta_shift or 0, "bb": r.beta_bias or 0,
        "m_s": 0 if final else r.m_s, "sh_req": 0 if final else r.req_shift,
        "max_code": 0 if final else r.max_code, "residual": RESIDUAL_KINDS[residual],
    }
    words += [(address(Region.control, CONTROL.index(k)), int(v)) for k, v in control.items()]
    for a, v in words:
        bits = FIELD_BITS.get(Region(a >> INDEX_BITS).name, VALUE_BITS)
        if not -(1 << (bits - 1)) <= v < 1 << (bits - 1):
            name, index = Region(a >> INDEX_BITS).name, a & ((1 << INDEX_BITS) - 1)
            raise ValueError(f"register {name}[{index}] = {v} does not fit its {bits} signed "
                             f"bits")
    return words


def check_beta(beta_in):
    """A sample's ``beta_in`` (units ``2**-BETA_FRAC``), checked for the ``i_beta`` stream."""
    if not 1 <= beta_in <= rescale.BETA_MAX:
        raise ValueError(f"beta_in must be from 1 to {rescale.BETA_MAX}, not {beta_in}")
    return int(beta_in)


def manifest():
    """The register map as the generator's manifest lists it."""
    return {"address_bits": ADDR_BITS, "index_bits": INDEX_BITS, "value_bits": VALUE_BITS,
            "regions": {region.name: int(region) for region in Region},
            "control": list(CONTROL)}
