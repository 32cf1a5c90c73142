"""Stream payloads as integers, packed and unpacked with the hardware's own Amaranth layouts.

The host drivers turn their values into the integers that the benches put on a stream, and the
integers that a bench received back into values, with ``Payload(layout)``: the bit positions
come from the layout that ``hw/`` declares for the port, so a change of a layout there changes
the packing here. ``Payload`` gives what ``layout.const(value).as_bits()`` and
``layout.from_bits(bits)`` give (a test checks it), about fifty times faster: the drivers pack
hundreds of thousands of words per run.

Values are nested like the layout: a dict for a ``StructLayout``, a list (or any sequence) for
an ``ArrayLayout``, an ``int`` for a plain shape. Signed fields unpack to negative integers.
"""

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["Payload"]


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
