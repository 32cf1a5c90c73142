"""The payloads of the rescale unit's streams (``hw.rescale_unit``), the bookkeeping that
travels with each slice through its stages, and the two helpers its stages share.

A *slice* is ``lanes`` channels of one position; a vector of ``cols`` channels goes through
the stages as ``cols // lanes`` slices, one per clock.
"""

from amaranth.hdl import Cat, Value, signed, unsigned
from amaranth.lib import data, memory

from core import regmap

from .rescale_stages import BETA_BITS, WIDE_BITS

__all__ = ["param_layout", "acc_layout", "beta_layout", "residual_layout", "output_layout",
           "slice_layout", "narrowed", "meta_layout", "rotate", "memory_ports", "check_lanes",
           "RESIDUAL_CODE_BITS"]

#: An identity shortcut's operands are codes of at most this many bits (unsigned, or two's
#: complement when the shortcut's codes are signed: ``core.regmap``'s ``res_signed``).
RESIDUAL_CODE_BITS = regmap.SHORTCUT_CODE_BITS


def param_layout(index_bits):
    """One register write: ``core.regmap``'s address (of a map whose index is ``index_bits``
    wide) and signed value; ``last`` on the final word of a layer's parameters."""
    return data.StructLayout({"addr": regmap.address_bits(index_bits),
                              "value": signed(regmap.VALUE_BITS),
                              "last": 1})


def acc_layout(cols, acc_bits):
    """One vector of sums; ``last`` on the last vector of a block of channels."""
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), cols), "last": 1})


def beta_layout():
    """A sample's ``beta_in`` and, for a layer with an identity shortcut, the ``beta`` of the
    shortcut's codes (``res``; anything otherwise)."""
    return data.StructLayout({"beta": unsigned(BETA_BITS), "res": unsigned(BETA_BITS)})


def residual_layout(cols):
    """One vector of the second operand of a layer with a shortcut: an identity shortcut's
    codes, or a projection's ``z``, for ``cols`` channels of one position."""
    return data.StructLayout({"data": data.ArrayLayout(signed(WIDE_BITS), cols)})


def output_layout(cols):
    """One output vector: ``cols`` values (codes, or ``z`` for the last layer) of one
    position, the sample's ``beta`` and ``last`` on the sample's final vector."""
    return data.StructLayout({"value": data.ArrayLayout(signed(WIDE_BITS), cols),
                              "beta": unsigned(BETA_BITS), "last": 1})


def slice_layout(lanes, width=WIDE_BITS):
    """``lanes`` values of the datapath (``width`` bits each: ``core.widths``'s ``value``;
    64 by default)."""
    return data.ArrayLayout(signed(width), lanes)


def narrowed(values, count, width):
    """The low ``width`` bits of each of the ``count`` elements of the array ``values``,
    concatenated (an array of ``width``-bit elements as a value)."""
    return Cat(*(Value.cast(values[i])[:width] for i in range(count)))


def meta_layout(u_depth, s_depth):
    """What travels with a slice: ``valid``; its entry in the ``u`` memory (``uaddr``: block,
    pooled position, slice) and in the ``S`` memory (``saddr``: block, sample, slice);
    ``h_first``, the first of a horizontal pair of a pooled layer; ``v_second``, the second
    row of a vertical pair; ``sample_end``, the sample's last position."""
    return data.StructLayout({"valid": 1, "uaddr": range(max(2, u_depth)),
                              "saddr": range(max(2, s_depth)), "h_first": 1, "v_second": 1,
                              "sample_end": 1})


def rotate(value, lanes, width, incoming):
    """``value`` (an array of ``len // width`` elements) moved down by ``lanes`` elements, with
    ``incoming`` (``lanes`` elements) on top."""
    return Cat(value.as_value()[lanes * width:], incoming)


def memory_ports(m, name, shape, depth, block=False):
    """A memory with a synchronous read port and a write port; two entries at least (one
    entry has a 0-bit address, an illegal ``[-1:0]`` in Verilog). ``block``: in block RAM
    however small (``ram_style``; on an ECP5 a ``DP16KD`` instead of distributed RAM, whose
    LUTs the lanes need: every read port that asks for it is registered right after)."""
    attrs = {"ram_style": "block"} if block else None
    m.submodules[name] = mem = memory.Memory(shape=shape, depth=max(depth, 2), init=[],
                                             attrs=attrs)
    return mem.read_port(), mem.write_port()


def check_lanes(cols, lanes):
    """``ValueError`` unless ``lanes`` divides ``cols`` (a vector is a whole number of
    slices)."""
    if not 1 <= lanes <= cols or cols % lanes:
        raise ValueError(f"lanes must divide cols ({cols}), not {lanes}")
