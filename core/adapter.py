"""The ASQ adapter as one typed record, from the exporter to the hardware.

An ASQ quantizer scales its step by ``beta = adapter(g)``: one layer
``beta = relu(w1 @ g + b1)`` or two, ``beta = relu(w2 @ relu(w1 @ g + b1) + b2)``
(``docs/algorithms.md``, 'The adapter'). ``g`` is what the adapter reads from the layer before:

* ``"channels"``: the per-channel mean over the spatial positions (the next layer is a conv);
* ``"vector"``: every value of the vector itself (the next layer is a linear one; the golden
  model runs it, the hardware does not, see ``core.rules``).

The exporter (``export.to_bundle``) builds it from PyTorch's ``Adapter``, the bundle stores it
(``layer{i}.adapter.w1`` ... and ``{"layers": n, "input": ...}`` in the manifest),
``core.rescale.fixed_point`` turns it into integers. No PyTorch here.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["ADAPTER_INPUTS", "Adapter", "adapter_hidden"]

ADAPTER_INPUTS = ("channels", "vector")


def adapter_hidden(channels, reduction=4):
    """Hidden units of the adapter of an ASQ quantizer on ``channels`` inputs: two layers with
    ``channels // reduction`` hidden units when ``channels >= 2 * reduction``, else one layer
    (0 hidden units). ``export.quantizers.AdapterNet`` builds exactly this."""
    return channels // reduction if channels >= 2 * reduction else 0


@dataclass(frozen=True, eq=False)
class Adapter:
    """The real-valued weights of one ASQ adapter.

    Parameters
    ----------
    w1, b1 : array
        The first layer, ``(hidden, inputs)`` and ``(hidden,)``; for a one-layer adapter
        ``(1, inputs)`` and ``(1,)`` (it gives ``beta`` directly).
    w2, b2 : array or None
        The second layer, ``(1, hidden)`` and ``(1,)``; both ``None`` for one layer.
    input : {"channels", "vector"}
        What the adapter reads (see the module docstring).

    Raises
    ------
    ValueError
        Shapes that do not fit together, or another ``input``.
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray | None = None
    b2: np.ndarray | None = None
    input: str = "channels"

    def __post_init__(self):
        if self.input not in ADAPTER_INPUTS:
            raise ValueError(f"adapter input must be one of {', '.join(ADAPTER_INPUTS)}, "
                             f"not {self.input!r}")
        if (self.w2 is None) != (self.b2 is None):
            raise ValueError("adapter w2 and b2 go together")
        for name in ("w1", "b1", "w2", "b2"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value, dtype=np.float64))
        w1, b1 = self.w1, self.b1
        hidden = w1.shape[0] if w1.ndim == 2 else -1
        if w1.ndim != 2 or b1.shape != (hidden,) or (self.w2 is None and hidden != 1):
            raise ValueError(f"adapter w1 {w1.shape} and b1 {b1.shape} do not fit a "
                             f"{self.layers}-layer adapter")
        if self.w2 is not None and (self.w2.shape != (1, hidden) or self.b2.shape != (1,)):
            raise ValueError(f"adapter w2 {self.w2.shape} and b2 {self.b2.shape} do not fit "
                             f"{hidden} hidden units")

    @property
    def layers(self):
        """1 or 2."""
        return 1 if self.w2 is None else 2

    @property
    def inputs(self):
        """The number of values the adapter reads."""
        return self.w1.shape[1]

    @property
    def hidden(self):
        """Hidden units (0 for a one-layer adapter)."""
        return self.w1.shape[0] if self.layers == 2 else 0

    def arrays(self):
        """The weights by field name (``w1``, ``b1`` and for two layers ``w2``, ``b2``)."""
        names = ("w1", "b1") if self.layers == 1 else ("w1", "b1", "w2", "b2")
        return {name: getattr(self, name) for name in names}
