"""Scaled dot-product attention, the core of every Transformer.

Taught in notebooks/02_scaled_dot_product_attention.ipynb.
"""
import numpy as np

from attnlab.scoring import scaled_dot_scores
from attnlab.softmax import masked_softmax, softmax


def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
    """Attention(Q, K, V) = softmax(Q K^T * scale) V, with an optional boolean mask.

    Parameters
    ----------
    q : ndarray, shape (..., L, D)
        Queries.
    k : ndarray, shape (..., S, D)
        Keys.
    v : ndarray, shape (..., S, D_v)
        Values; one per key.
    mask : ndarray of bool, shape broadcastable to (..., L, S), optional
        True where a query may attend to a key. A query with no True entry (a fully masked
        row) gets all-zero weights and a zero output, never NaN.
    scale : float, optional
        Multiplier of the scores. Default ``1 / sqrt(D)``.

    Returns
    -------
    output : ndarray, shape (..., L, D_v)
        Weighted sums of values; same dtype as q.
    weights : ndarray, shape (..., L, S)
        Attention weights; each row sums to 1, except a fully masked row, which is all zeros.

    Notes
    -----
    .. math:: \\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{D}}\\right) V
    """
    ### BEGIN HINTS
    # 1. scores = scaled_dot_scores(q, k, scale): (..., L, S).
    # 2. weights: softmax over the key axis (-1), or masked_softmax when a mask is given.
    # 3. output = weights @ v: (..., L, S) @ (..., S, D_v) -> (..., L, D_v). Return (output, weights).
    ### END HINTS
    ### BEGIN SOLUTION
    scores = scaled_dot_scores(q, k, scale)  # (..., L, S)
    if mask is None:
        weights = softmax(scores, axis=-1)
    else:
        weights = masked_softmax(scores, mask, axis=-1)  # fully masked rows -> zeros
    output = np.matmul(weights, v)  # (..., L, S) @ (..., S, D_v) -> (..., L, D_v)
    return output.astype(q.dtype, copy=False), weights.astype(q.dtype, copy=False)
    ### END SOLUTION
