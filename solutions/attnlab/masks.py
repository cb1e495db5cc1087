"""Boolean attention masks: True means *may attend*.

Taught in notebooks/02_scaled_dot_product_attention.ipynb. Masks broadcast against scores of
shape ``(..., L, S)``.
"""
import numpy as np


def causal_mask(L, S=None):
    """Causal (look-ahead) mask, aligned to the end of the keys.

    Parameters
    ----------
    L : int
        Number of queries.
    S : int, optional
        Number of keys. Default L (self-attention).

    Returns
    -------
    mask : ndarray of bool, shape (L, S)
        ``mask[i, j]`` is True when query i may see key j, that is when ``j <= i + (S - L)``.

    Notes
    -----
    With L == S this is the lower triangle (diagonal included). With L < S the queries are the
    *last* L positions of the sequence (a decoder step that sees a cache of S - L earlier keys),
    so the last query sees every key. PyTorch's ``is_causal=True`` aligns to the *start* instead
    (``j <= i``); the two agree only when L == S.
    """
    ### BEGIN HINTS
    # 1. Query positions as a column np.arange(L)[:, None], key positions as a row np.arange(S)[None, :].
    # 2. Compare with broadcasting: keys j <= i + (S - L) -> (L, S) of bool.
    ### END HINTS
    ### BEGIN SOLUTION
    if S is None:
        S = L
    query_pos = np.arange(L)[:, None]  # (L, 1)
    key_pos = np.arange(S)[None, :]  # (1, S)
    return key_pos <= query_pos + (S - L)  # (L, S)
    ### END SOLUTION


def padding_mask(lengths, max_len):
    """Key-padding mask for a batch of variable-length sequences.

    Parameters
    ----------
    lengths : ndarray of int, shape (B,)
        True length of each sequence, 0 <= lengths[b] <= max_len.
    max_len : int
        Padded length (S).

    Returns
    -------
    mask : ndarray of bool, shape (B, max_len)
        True at the valid (non-padding) positions ``j < lengths[b]``. Reshape it to
        ``(B, 1, 1, S)`` to broadcast against ``(B, H, L, S)`` scores.

    Raises
    ------
    ValueError
        If a length is negative or greater than max_len.
    """
    ### BEGIN HINTS
    # 1. np.arange(max_len)[None, :] is (1, S); lengths[:, None] is (B, 1).
    # 2. Their comparison broadcasts to (B, S). Reject lengths outside [0, max_len] with ValueError.
    ### END HINTS
    ### BEGIN SOLUTION
    lengths = np.asarray(lengths)
    if np.any(lengths < 0) or np.any(lengths > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}], got {lengths.tolist()}")
    return np.arange(max_len)[None, :] < lengths[:, None]  # (B, S)
    ### END SOLUTION
