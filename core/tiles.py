"""Which tiles of a layer's weight matrix can hold a weight: all of them, or for a depthwise
conv (a block-diagonal matrix, ``core.bundle.Layer.weight_matrix``) only those that meet the
rows of the column block's own channels. The host's pass plan (``sim.engine_sim.pass_plan``)
and the cycle model (``gen.cycles``) count the same tiles, from the shape alone."""

__all__ = ["depthwise_rows", "live_tiles"]


def depthwise_rows(k, n0, cols, channels):
    """``[lo, hi)``: the rows of a depthwise matrix (``k`` rows a channel) that the column
    block starting at channel ``n0`` (``cols`` wide, ``channels`` in all) reads."""
    return k * n0, k * min(n0 + cols, channels)


def live_tiles(length, rows, lo, hi, terms=1):
    """The first rows (multiples of ``rows``) of the tiles of a matrix of ``terms`` stacked
    copies of ``length`` rows (``int`` weights as signed-digit terms) that meet the rows
    ``[lo, hi)`` of any copy, in order."""
    starts = set()
    for t in range(terms):
        a, b = t * length + lo, t * length + hi
        starts.update(range(a // rows * rows, b, rows))
    return sorted(starts)
