"""Alignment scores: how well each query matches each key.

Taught in notebooks/01_what_attention_computes.ipynb. Every function returns scores of shape
``(..., L, S)``: one row per query, one column per key.
"""
import numpy as np


def dot_scores(q, k):
    """Dot-product (Luong "dot") scores, ``q k^T``.

    Parameters
    ----------
    q : ndarray, shape (..., L, D)
        Queries.
    k : ndarray, shape (..., S, D)
        Keys. Leading dims broadcast against q's.

    Returns
    -------
    scores : ndarray, shape (..., L, S)
        ``scores[..., i, j] = q[..., i, :] . k[..., j, :]``; same dtype as q.
    """
    # 1. Transpose only the last two axes of k: np.swapaxes(k, -1, -2) is (..., D, S).
    # 2. (..., L, D) @ (..., D, S) -> (..., L, S); @ broadcasts the leading dims.
    raise NotImplementedError(
        "scoring.dot_scores is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )


def scaled_dot_scores(q, k, scale=None):
    """Scaled dot-product scores, ``q k^T * scale``.

    Parameters
    ----------
    q : ndarray, shape (..., L, D)
    k : ndarray, shape (..., S, D)
    scale : float, optional
        Multiplier of the scores. Default ``1 / sqrt(D)``.

    Returns
    -------
    scores : ndarray, shape (..., L, S)
        Same dtype as q.

    Notes
    -----
    If the entries of q and k are independent with mean 0 and variance 1, ``q . k`` has variance D;
    multiplying by 1/sqrt(D) brings it back to 1, so the softmax does not saturate as D grows.
    """
    # 1. D is the last dim of q: q.shape[-1]. The default scale is 1 / sqrt(D), not 1 / D.
    # 2. Reuse dot_scores; scale=0.0 is a valid (if odd) scale, so test `scale is None`.
    raise NotImplementedError(
        "scoring.scaled_dot_scores is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )


def general_scores(q, k, W):
    """Luong "general" (bilinear) scores, ``q W k^T``.

    Parameters
    ----------
    q : ndarray, shape (..., L, D_q)
    k : ndarray, shape (..., S, D_k)
    W : ndarray, shape (D_q, D_k)
        Learned bilinear form; D_q may differ from D_k.

    Returns
    -------
    scores : ndarray, shape (..., L, S)
        ``scores[..., i, j] = q[..., i, :] @ W @ k[..., j, :]``.
    """
    # 1. q @ W maps each query into key space: (..., L, D_q) @ (D_q, D_k) -> (..., L, D_k).
    # 2. Then take dot-product scores against k: (..., L, D_k) @ (..., D_k, S) -> (..., L, S).
    raise NotImplementedError(
        "scoring.general_scores is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )


def additive_scores(q, k, W_q, W_k, w_v):
    """Bahdanau (additive, "concat") scores, ``w_v^T tanh(q W_q + k W_k)``.

    Parameters
    ----------
    q : ndarray, shape (..., L, D_q)
    k : ndarray, shape (..., S, D_k)
    W_q : ndarray, shape (D_q, A)
        Projects queries into the A-dimensional attention space.
    W_k : ndarray, shape (D_k, A)
        Projects keys into the same space.
    w_v : ndarray, shape (A,)
        Reads one score out of each A-vector.

    Returns
    -------
    scores : ndarray, shape (..., L, S)
        ``scores[..., i, j] = w_v . tanh(q_i W_q + k_j W_k)``.
    """
    # 1. Project once: qp = q @ W_q is (..., L, A) and kp = k @ W_k is (..., S, A).
    # 2. Pair every query with every key by broadcasting: qp[..., :, None, :] + kp[..., None, :, :]
    #    is (..., L, S, A). Apply tanh *before* the dot with w_v.
    # 3. (..., L, S, A) @ (A,) -> (..., L, S).
    raise NotImplementedError(
        "scoring.additive_scores is not implemented yet: see notebooks/01_what_attention_computes.ipynb"
    )
