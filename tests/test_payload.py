"""``sim.payload.Payload``: the packing of one word with the hardware's layouts equals
Amaranth's own (``layout.const(value).as_bits()``), unpacks back, and refuses a value that does
not fit its field; the vectorised ``pack`` refuses it too."""

import numpy as np
import pytest

from core.config import ArrayConfig
from hw.accumulator import accumulator_layout, pass_layout
from hw.rescale_unit import output_layout, param_layout
from hw.systolic_array import activation_layout, result_layout, weight_layout
from sim.payload import Payload, pack

CFG = ArrayConfig(rows=3, cols=5, a_bits=6, w_bits=4, odd="split")


def _random(rng, layout):
    """A random value of ``layout`` as ``layout.const`` takes it."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    if isinstance(layout, data.StructLayout):
        return {name: _random(rng, field.shape) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        return [_random(rng, layout.elem_shape) for _ in range(layout.length)]
    s = Shape.cast(layout)
    lo, hi = (-(1 << s.width - 1), 1 << s.width - 1) if s.signed else (0, 1 << s.width)
    return int(rng.integers(lo, hi))


@pytest.mark.parametrize("layout", [
    weight_layout(CFG), activation_layout(CFG), result_layout(CFG), pass_layout(CFG),
    accumulator_layout(ArrayConfig(rows=4, cols=4)), param_layout(12), param_layout(14),
    output_layout(3)],
    ids=["weight", "activation", "result_split", "pass", "accumulator", "param", "param 14",
         "output"])
def test_payload_equals_amaranth_and_round_trips(layout):
    rng = np.random.default_rng(0)
    payload = Payload(layout)
    for _ in range(50):
        value = _random(rng, layout)
        word = payload.pack(value)
        assert word == layout.const(value).as_bits()
        assert payload.unpack(word) == value


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match=r"^16 does not fit the 4-bit field 2$"):
        Payload(weight_layout(CFG)).pack([0, 0, 16, 0, 0])
    with pytest.raises(ValueError, match=r"^-1 does not fit the 6-bit field data\.0$"):
        Payload(activation_layout(CFG)).pack({"data": [-1, 0, 0], "last": 0})
    with pytest.raises(ValueError, match=r"^70000 does not fit a 16-bit field$"):
        pack(param_layout(12), {"addr": np.array([70000]), "value": np.array([0])})
