"""Softmax and masked softmax: turning alignment scores into attention weights.

Taught in notebooks/01_what_attention_computes.ipynb.
"""
import numpy as np


def softmax(x, axis=-1):
    """Numerically stable softmax along one axis.

    Parameters
    ----------
    x : ndarray of float, any shape
        Scores (logits). May be huge (1e4) in magnitude: the result must still be finite.
    axis : int, optional
        Axis to normalise over. Default -1 (the key axis S of a ``(..., L, S)`` score array).

    Returns
    -------
    weights : ndarray, same shape and dtype as x
        Non-negative, summing to 1 along ``axis``.

    Notes
    -----
    .. math:: \\mathrm{softmax}(x)_i = \\frac{e^{x_i - m}}{\\sum_j e^{x_j - m}},\\quad m = \\max_j x_j

    Subtracting the maximum m changes nothing mathematically (it cancels) but keeps every
    exponent <= 0, so ``exp`` never overflows.
    """
    # 1. m = x.max(axis=axis, keepdims=True): shape (..., 1) so it broadcasts against x.
    # 2. e = np.exp(x - m): every exponent is <= 0, so nothing overflows.
    # 3. Divide e by its sum along the same axis (keepdims=True again); keep x's dtype.
    raise NotImplementedError(
        "softmax.softmax is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )


def masked_softmax(x, mask, axis=-1):
    """Softmax over the positions a boolean mask keeps.

    Parameters
    ----------
    x : ndarray of float, any shape
        Scores (logits).
    mask : ndarray of bool, shape broadcastable to x.shape
        True where a position may be attended to (PyTorch's boolean ``attn_mask`` convention).
    axis : int, optional
        Axis to normalise over. Default -1.

    Returns
    -------
    weights : ndarray, same shape and dtype as x
        Exactly 0 where ``mask`` is False; the kept entries of each slice sum to 1.
        A slice with no kept position (a *fully masked row*) is all zeros, never NaN.

    Notes
    -----
    .. math:: w_i = \\frac{[\\mathrm{mask}_i]\\, e^{x_i - m}}{\\sum_j [\\mathrm{mask}_j]\\, e^{x_j - m}},
              \\quad m = \\max_{j:\\,\\mathrm{mask}_j} x_j

    and w = 0 when no j is kept.
    """
    # 1. Take the max over kept entries only: np.where(mask, x, -np.inf).max(axis, keepdims=True);
    #    a fully masked row gives -inf there, so replace non-finite maxima by 0.
    # 2. e = np.where(mask, np.exp(x - m), 0): masked entries become exactly 0.
    # 3. Divide by the row sum only where it is > 0 (np.divide(..., where=...)); keep x's dtype.
    raise NotImplementedError(
        "softmax.masked_softmax is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )
