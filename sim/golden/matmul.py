"""The bit-exact golden model of a quantized matrix product, and its real-valued reference.

``matmul(A, W, fmt)`` is the single definition of what the array computes: for ``a_bits``-bit
activation codes ``A`` (``M x K``; with ``fmt.a_signed`` any sign and ``a_bits``-bit magnitude,
which holds a signed layer's two's-complement codes ``-2**(a_bits-1) .. 2**(a_bits-1) - 1`` and
an unsigned layer's codes alike) and weight codes ``W`` (``K x N``, the unsigned bit
patterns of ``core.numerics``), the accumulators

    acc[m, n] = sum_k product(A[m, k], W[k, n])

in units of ``2**-F``, where ``product`` is ``core.numerics.product``: exact shifts, and for the
odd ``post`` exponents the table ``T[a] = round(a * sqrt(2)/2 * 2**t)`` (round half up; no
ties occur) shifted left. A signed activation is multiplied in sign-magnitude,
``sign(a) * product(|a|, w)``, the table indexed by ``|a|`` (the same numbers as the table of
the signed values, since no entry is a tie). Integers only (``int64``); no sum can overflow
because the configuration refuses accumulators wider than 64 bits.

With split ``post`` sums (``fmt.split``) the accumulators are two, ``acc[0]`` of the even and
``acc[1]`` of the odd exponents (``core.numerics.split_product``, every product a shift), and
their value is ``acc[0] + acc[1] * sqrt(2)/2`` (``value``).

``matmul_exact(A, W, fmt)`` is the same product with the real weight values
(``(sqrt 2)**-n`` in floating point), scaled by ``2**F``: the difference of the two is the
table's error.
"""

import numpy as np

from core.numerics import ProductFormat, act_range, weight_value

__all__ = ["act_codes", "product_table", "check_acts", "check_codes", "matmul", "matmul_exact",
           "table_error", "value"]


def act_codes(fmt: ProductFormat):
    """Every activation of ``fmt`` in the order of ``product_table``'s rows: ``0 .. a_max``,
    then for ``a_signed`` ``-a_max .. -1``, so that row ``a`` is activation ``a`` with numpy's
    negative indices too."""
    codes = np.arange(fmt.a_max + 1, dtype=np.int64)
    return np.concatenate([codes, -codes[:0:-1]]) if fmt.a_signed else codes


def product_table(fmt: ProductFormat):
    """``P[a, code]``: every product of the format (``len(act_codes(fmt)) x 2**w_bits``,
    ``int64``), row ``a`` activation ``a`` (negative ``a`` through numpy's negative indices);
    for split sums ``P[s, a, code]``, the part of the product in sum ``s``."""
    codes = [int(a) for a in act_codes(fmt)]
    if fmt.split:
        table = np.zeros((2, len(codes), 2 ** fmt.w_bits), dtype=np.int64)
        for i, a in enumerate(codes):
            for c in range(2 ** fmt.w_bits):
                s, p = fmt.product(a, c)
                table[s, i, c] = p
        return table
    return np.array([[fmt.product(a, c) for c in range(2 ** fmt.w_bits)]
                     for a in codes], dtype=np.int64)


def check_codes(name, codes, bits, ndim=2, *, signed=False):
    """``codes`` as an ``int64`` array of ``ndim`` dimensions with every entry a ``bits``-bit
    code: in ``[0, 2**bits)``, or ``[-2**(bits-1), 2**(bits-1))`` when ``signed`` (two's
    complement values); a one-line ``ValueError`` naming ``name`` otherwise."""
    arr = np.asarray(codes)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not {arr.ndim}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer codes, not {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = act_range(bits, signed)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr[(arr < lo) | (arr > hi)].flat[0]
        kind = "signed " if signed else ""
        raise ValueError(f"{name} holds the code {bad}, outside the {bits}-bit {kind}range "
                         f"{lo}..{hi}")
    return arr


def check_acts(A, fmt):
    """``A`` as a two-dimensional ``int64`` array of activations of ``fmt``, every entry in
    ``fmt.a_range``; a one-line ``ValueError`` otherwise."""
    if not fmt.a_signed:
        return check_codes("A", A, fmt.a_bits)
    A = check_codes("A", A, 63, signed=True)        # integers, two dimensions
    if A.size and np.abs(A).max() > fmt.a_max:
        bad = A[np.abs(A) > fmt.a_max].flat[0]
        raise ValueError(f"A holds the activation {bad}, outside the {fmt.a_bits}-bit "
                         f"sign-magnitude range {-fmt.a_max}..{fmt.a_max}")
    return A


def _check_shapes(A, W):
    if A.shape[1] != W.shape[0]:
        raise ValueError(f"A is {A.shape[0]}x{A.shape[1]} but W is {W.shape[0]}x{W.shape[1]}: "
                         f"the inner dimensions differ")


def matmul(A, W, fmt: ProductFormat):
    """The accumulators ``A x W`` as the hardware computes them (``int64``, ``M x N``; for
    split sums ``2 x M x N``)."""
    A = check_acts(A, fmt)
    W = check_codes("W", W, fmt.w_bits)
    _check_shapes(A, W)
    table = product_table(fmt)
    acc = np.zeros(table.shape[:-2] + (A.shape[0], W.shape[1]), dtype=np.int64)
    for k in range(A.shape[1]):            # one K slice at a time keeps memory at M x N
        acc += table[..., A[:, k][:, None], W[k, :][None, :]]
    return acc


def value(acc, fmt: ProductFormat):
    """The real value of accumulators ``acc`` in units of ``2**-F`` (``float64``): ``acc``
    itself, or ``acc[0] + acc[1] * sqrt(2)/2`` for split sums."""
    acc = np.asarray(acc, dtype=np.float64)
    return acc[0] + acc[1] * np.sqrt(0.5) if fmt.split else acc


def matmul_exact(A, W, fmt: ProductFormat):
    """``A x W`` with the real weight values, in units of ``2**-F`` (``float64``); signed
    activations as their values."""
    A = check_acts(A, fmt)
    W = check_codes("W", W, fmt.w_bits)
    _check_shapes(A, W)
    values = np.array([weight_value(fmt.w_format, fmt.w_bits, c)
                       for c in range(2 ** fmt.w_bits)])
    return (A.astype(np.float64) @ values[W]) * 2.0 ** fmt.frac_bits


def table_error(fmt: ProductFormat):
    """The largest ``|table product - exact product|`` over every code pair, in units of
    ``2**-F`` and relative to the exact product (``(absolute, relative)``)."""
    a = act_codes(fmt)[:, None]
    exact = a * np.array([weight_value(fmt.w_format, fmt.w_bits, c)
                          for c in range(2 ** fmt.w_bits)])[None, :] * 2.0 ** fmt.frac_bits
    err = np.abs(value(product_table(fmt), fmt) - exact)
    nonzero = exact != 0
    rel = (err[nonzero] / np.abs(exact[nonzero])).max() if nonzero.any() else 0.0
    return float(err.max()), float(rel)
