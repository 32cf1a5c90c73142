"""Stream payloads as integers, packed and unpacked with the hardware's own Amaranth layouts.

The host drivers turn their values into the integers that the benches put on a stream, and the
integers that a bench received back into values, with ``Payload(layout)``: the bit positions
come from the layout that ``hw/`` declares for the port, so a change of a layout there changes
the packing here. ``Payload`` gives what ``layout.const(value).as_bits()`` and
``layout.from_bits(bits)`` give (``tests/test_payload.py`` checks it), about twelve times faster
(measured): the drivers pack
hundreds of thousands of words per run.

``pack(layout, arrays)`` and ``unpack(layout, words)`` do the same for many words at once, with
numpy (the co-simulation's memories: hundreds of thousands of words per layer).

Values are nested like the layout: a dict for a ``StructLayout``, a list (or any sequence) for
an ``ArrayLayout``, an ``int`` for a plain shape. Signed fields unpack to negative integers.
"""

import numpy as np
from amaranth.hdl import Shape, unsigned
from amaranth.lib import data

__all__ = ["Payload", "pack", "unpack"]


def _leaves(shape, offset=0, path=()):
    """``(path, offset, width, signed)`` of every plain field of ``shape``, in bit order."""
    if isinstance(shape, data.Layout):
        for key, field in shape:
            yield from _leaves(field.shape, offset + field.offset, path + (key,))
    else:
        s = Shape.cast(shape)
        yield path, offset, s.width, s.signed


class Payload:
    """Packs values into the integers of ``layout`` and unpacks them."""

    def __init__(self, layout):
        self.layout = layout
        self.width = Shape.cast(layout).width
        self._leaves = list(_leaves(layout))

    def pack(self, value):
        """The integer of ``value``; a value that does not fit its field raises ``ValueError``."""
        word = 0
        for path, offset, width, signed in self._leaves:
            v = value
            for key in path:
                v = v[key]
            v = int(v)
            lo, hi = (-(1 << width - 1), 1 << width - 1) if signed else (0, 1 << width)
            if not lo <= v < hi:
                raise ValueError(f"{v} does not fit the {width}-bit field "
                                 f"{'.'.join(map(str, path)) or 'payload'}")
            word |= (v & ((1 << width) - 1)) << offset
        return word

    def unpack(self, word):
        """The value of integer ``word`` (nested dicts and lists of ``int``)."""
        first = self._leaves[0][0]
        root = [] if first and isinstance(first[0], int) else {}
        for path, offset, width, signed in self._leaves:
            v = (word >> offset) & ((1 << width) - 1)
            if signed and v >> (width - 1):
                v -= 1 << width
            if not path:
                return v
            node = root
            for key, nxt in zip(path, path[1:]):
                fresh = [] if isinstance(nxt, int) else {}
                if isinstance(node, list):
                    if key == len(node):
                        node.append(fresh)
                    node = node[key]
                else:
                    node = node.setdefault(key, fresh)
            if isinstance(node, list):
                node.append(v)
            else:
                node[path[-1]] = v
        return root


def pack(layout, value):
    """Pack ``value`` into integer words of ``layout`` (an Amaranth shape or data layout).

    ``value`` is an integer array of shape ``(n,)`` for a plain shape, ``(n, length, ...)``
    for an ``ArrayLayout`` and a dict of such values by field name for a ``StructLayout``
    (missing fields are 0), or the struct's bits as an integer array (an ``ArrayLayout`` of
    structs takes those: the signed activations' ``{"a", "neg"}``, ``sim.array_sim.act_bits``).
    Returns an object array of ``n`` Python ints, each word laid out as Amaranth lays out
    ``layout`` (field offsets and widths from the layout itself).
    """
    if isinstance(layout, data.StructLayout) and not isinstance(value, dict):
        return pack(unsigned(layout.size), value)
    if isinstance(layout, data.StructLayout):
        words = None
        for name, field in layout:
            if name in value:
                part = pack(field.shape, value[name]) << field.offset
                words = part if words is None else words | part
        return words
    if isinstance(layout, data.ArrayLayout):
        value = np.asarray(value)
        width = Shape.cast(layout.elem_shape).width if not isinstance(
            layout.elem_shape, data.Layout) else layout.elem_shape.size
        words = pack(layout.elem_shape, value[:, 0])
        for i in range(1, layout.length):
            words = words | (pack(layout.elem_shape, value[:, i]) << (i * width))
        return words
    shape = Shape.cast(layout)
    value = np.asarray(value, dtype=np.int64)
    lo, hi = ((-(1 << shape.width - 1), 1 << shape.width - 1) if shape.signed
              else (0, 1 << shape.width))
    if value.size and (value.min() < lo or value.max() >= hi):
        bad = value[(value < lo) | (value >= hi)].flat[0]
        raise ValueError(f"{bad} does not fit a {shape.width}-bit field")
    return value.astype(object) & ((1 << shape.width) - 1)


def unpack(layout, words):
    """The fields of a ``StructLayout`` from integer ``words``: a dict of int64 arrays (signed
    fields sign-extended), ``(n,)`` for a plain field and ``(n, length)`` for an
    ``ArrayLayout`` of plain elements."""
    words = np.asarray(words, dtype=object)
    out = {}

    def plain(offset, shape):
        shape = Shape.cast(shape)
        v = (words >> offset) & ((1 << shape.width) - 1)
        if shape.signed:
            v = np.where(v >> (shape.width - 1) == 1, v - (1 << shape.width), v)
        return np.array(v.tolist(), dtype=np.int64).reshape(len(words))

    for name, field in layout:
        if isinstance(field.shape, data.ArrayLayout):
            elem = field.shape.elem_shape
            width = Shape.cast(elem).width
            out[name] = np.stack([plain(field.offset + i * width, elem)
                                  for i in range(field.shape.length)], axis=-1) \
                if len(words) else np.zeros((0, field.shape.length), dtype=np.int64)
        else:
            out[name] = plain(field.offset, field.shape)
    return out
