"""im2col: the one mapping from a conv layer's input codes to the rows of its matrix product,
shared by the golden model and the hardware driver."""

import numpy as np

__all__ = ["im2col", "conv_output_size"]


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel, stride, padding):
    """Patches of ``x`` (``(N, C, H, W)`` integer codes) as ``(N * Ho * Wo, C * k * k)``.

    Rows run over samples, then output rows, then output columns; columns over input channels,
    then kernel rows, then kernel columns: PyTorch's ``weight.reshape(Cout, -1)`` order, so
    that ``im2col(x) @ weight.reshape(Cout, -1).T`` is the convolution. Padding is code 0,
    which is the value 0 for the unsigned activations of this flow.
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kernel, stride, padding)
    wo = conv_output_size(w, kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((n, c, kernel, kernel, ho, wo), dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, i, j] = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * kernel * kernel)
