"""The whole-network golden model: a bundle run on integer input codes, every step in integers.

For each compute layer: the matrix product of ``sim.golden.matmul`` (a conv over ``im2col``
patches; a depthwise conv: each channel's patch columns by its own filter), then the rescale of ``core.rescale`` (folded batch norm, ReLU, max pooling, the ASQ
adapter's ``beta`` and requantization to the next layer's codes); the last layer's
accumulators become ``logits_q`` (units ``2**-core.rescale.Z``). Every layer's output is kept,
so that a comparison can name the first layer, channel and position that differ.

A residual bundle (format 2, ``core.bundle``) runs in its list order, each layer on the codes
and ``beta`` of its source; a layer with a shortcut adds the identity operand
(``core.rescale.shortcut_operand`` of the shortcut layer's codes and ``beta``) or the
projection's ``z_q`` (``core.rescale.affine`` of its accumulators) to its ``z_q`` before the
ReLU (``core.rescale.rescale_residual``); an option-A shortcut's codes are subsampled and
padded with zero channels first (``core.rescale.shortcut_codes``). A projection's trace holds
its accumulators and its ``z_q`` as ``u`` (no ``beta``, no codes). A layer that ends in a
global average pooling has its channel sums ``S`` as ``u`` (``(N, C, 1, 1)``).
"""

from dataclasses import dataclass, field

import numpy as np

from core import rescale
from core.bundle import Bundle

from .im2col import im2col
from .matmul import check_codes, matmul

__all__ = ["LayerTrace", "Trace", "layer_accumulators", "run_network"]


@dataclass
class LayerTrace:
    """One layer's results: ``acc`` (``(N,) + conv_shape``), and unless it is the last layer
    the rescaled values ``u`` (after pooling), ``beta`` (``(N,)``, units ``2**-BETA_FRAC``) and
    the next layer's input ``codes`` (``(N,) + out_shape``)."""

    name: str
    acc: np.ndarray
    u: np.ndarray | None = None
    beta: np.ndarray | None = None
    codes: np.ndarray | None = None


@dataclass
class Trace:
    input_codes: np.ndarray
    layers: list = field(default_factory=list)
    logits: np.ndarray | None = None

    @property
    def predictions(self):
        return self.logits.argmax(axis=1)


def layer_accumulators(layer, codes):
    """The accumulators of ``layer`` for its input codes ``(N,) + in_shape``."""
    n = codes.shape[0]
    fmt = layer.product_format
    if layer.kind == "linear":
        return matmul(codes.reshape(n, -1), layer.weight_matrix, fmt)
    co, ho, wo = layer.conv_shape
    patches = im2col(codes, layer.kernel, layer.stride, layer.padding)
    if layer.depthwise:                    # each channel's own k * k columns and filter
        k = layer.k
        w = layer.weight.reshape(co, k)
        acc = np.stack([matmul(patches[:, c * k:(c + 1) * k], w[c:c + 1].T, fmt)[..., 0]
                        for c in range(co)], axis=-1)
        return acc.reshape(n, ho, wo, co).transpose(0, 3, 1, 2)
    acc = matmul(patches, layer.weight_matrix, fmt)
    return acc.reshape(n, ho, wo, co).transpose(0, 3, 1, 2)


def run_network(bundle: Bundle, input_codes):
    """Run ``bundle`` on ``input_codes`` (``(N,) + bundle.input_shape``); return a ``Trace``."""
    codes = check_codes("input codes", input_codes, bundle.input_bits,
                        ndim=1 + len(bundle.input_shape))
    if codes.shape[1:] != tuple(bundle.input_shape):
        raise ValueError(f"input codes have shape {codes.shape[1:]}, the bundle takes "
                         f"{tuple(bundle.input_shape)}")
    trace = Trace(input_codes=codes)
    one = np.full(codes.shape[0], rescale.BETA_ONE, dtype=np.int64)
    for i, layer in enumerate(bundle.layers):
        j = bundle.source_index(i)
        codes, beta = (trace.input_codes, one) if j is None else (
            trace.layers[j].codes, trace.layers[j].beta)
        acc = layer_accumulators(layer, codes)
        fixed = layer.fixed
        if layer.projection:
            trace.layers.append(LayerTrace(name=layer.name, acc=acc,
                                           u=rescale.affine(acc, beta, fixed)))
            continue
        if layer.next_step is None:
            trace.logits = rescale.logits_q(acc, beta, fixed)
            trace.layers.append(LayerTrace(name=layer.name, acc=acc))
            break
        k = bundle.shortcut_index(i)
        post = dict(relu=layer.relu, pool=layer.pool, pool_mode=layer.pool_mode,
                    global_pool=layer.global_pool)
        if k is None:
            u, beta, codes = rescale.rescale_layer(acc, beta, fixed, **post)
        else:
            other = trace.layers[k]
            if bundle.layers[k].projection:
                operand = other.u
            else:
                shortcut = rescale.shortcut_codes(other.codes, stride=layer.shortcut_stride,
                                                  pad=layer.shortcut_pad,
                                                  channels=layer.out_channels)
                operand = rescale.shortcut_operand(shortcut, other.beta, layer.shortcut_fixed)
            u, beta, codes = rescale.rescale_residual(acc, beta, fixed, operand, **post)
        trace.layers.append(LayerTrace(name=layer.name, acc=acc, u=u, beta=beta, codes=codes))
    return trace
