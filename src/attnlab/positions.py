"""Positions: how attention learns where a token is.

Taught in notebooks/05_positions.ipynb. Attention on its own treats its inputs as a set; the four
schemes here put order back in at three different places:

- ``sinusoidal_positional_encoding``: a fixed vector added to each token embedding (Vaswani et al. 2017);
- ``relative_position_bucket``: T5's map from a key-minus-query offset to one of a few learned biases
  (Raffel et al. 2020);
- ``alibi_slopes`` / ``alibi_bias``: a fixed penalty on the scores, linear in the distance (Press et al. 2022);
- ``apply_rope``: a rotation of queries and keys by an angle proportional to the position (Su et al. 2021).

Shape legend: H heads, L query length, S key length, D query/key width, E model width.
"""
import math

import numpy as np


def sinusoidal_positional_encoding(L, E, base=10000.0):
    """The fixed sinusoidal position encodings of Vaswani et al. (2017).

    Parameters
    ----------
    L : int
        Number of positions, 0 .. L - 1.
    E : int
        Model width; must be even (one sine and one cosine per frequency).
    base : float, optional
        Sets the longest wavelength, ``2 pi base**((E - 2) / E)``, just under ``2 pi base``. Default
        10000.0, as in the paper.

    Returns
    -------
    pe : ndarray of float64, shape (L, E)
        ``pe[pos, 2i] = sin(pos / base**(2i / E))`` and ``pe[pos, 2i + 1] = cos(pos / base**(2i / E))``
        for ``i = 0 .. E/2 - 1``: sines in the even columns, cosines in the odd ones, the two columns of a
        pair sharing one frequency.

    Raises
    ------
    ValueError
        If E is odd.

    Notes
    -----
    The frequencies fall geometrically from 1 (column pair 0, wavelength 2 pi) to about ``1 / base``.
    Because each (sin, cos) pair is a point on a circle, ``pe[pos + k]`` is ``pe[pos]`` rotated pair by pair
    by angles that depend only on k: a linear map that is the same for every pos.
    """
    # 1. The angles: positions np.arange(L)[:, None] (L, 1) times frequencies base ** (-np.arange(0, E, 2) / E)
    #    (E/2,) -> (L, E/2). Pair i uses the exponent 2i / E, for its sine and for its cosine.
    # 2. Fill pe[:, 0::2] with the sines and pe[:, 1::2] with the cosines (interleaved, not [sin..., cos...]).
    raise NotImplementedError(
        "positions.sinusoidal_positional_encoding is not implemented yet: see notebooks/05_positions.ipynb"
    )


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's bucket index of each relative position (Raffel et al. 2020; Mesh TensorFlow's code).

    Parameters
    ----------
    relative_position : ndarray of int, any shape
        ``key position - query position`` (negative: the key lies in the past). For a query block and a
        key block this is ``np.arange(S)[None, :] - np.arange(L)[:, None]``, shape (L, S).
    bidirectional : bool, optional
        True (an encoder): half of the buckets for keys in the past and at offset 0, half for keys in the
        future. False (a causal decoder): all buckets for the past; every future offset shares bucket 0.
    num_buckets : int, optional
        Number of buckets in all. Default 32.
    max_distance : int, optional
        Distances from here on all fall into the last bucket of their side (which already starts
        earlier: at distance 91 with the bidirectional defaults, 113 with the causal ones). Default 128.

    Returns
    -------
    buckets : ndarray of int64, same shape as relative_position
        Values in ``[0, num_buckets)``.

    Notes
    -----
    Let ``n`` be the distance and ``N`` the buckets of one side: ``N = num_buckets // 2`` and
    ``n = |relative_position|`` when bidirectional, with future keys (``relative_position > 0``) shifted by
    N; ``N = num_buckets`` and ``n = max(-relative_position, 0)`` otherwise. With ``m = N // 2``:

    - ``n < m``: one bucket per distance, bucket ``n``;
    - ``n >= m``: ``m + floor(log(n / m) / log(max_distance / m) * (N - m))``, capped at ``N - 1``:
      buckets that widen geometrically up to max_distance.

    The floor lands exactly on whole numbers at some distances (16, 32 and 64 with the defaults, giving
    buckets 10, 12 and 14): compute the expression in the order written, as T5 does, so rounding cannot
    drop it one bucket low.
    """
    # 1. Bidirectional: N = num_buckets // 2, offset N where relative_position > 0, n = |relative_position|.
    #    Causal: N = num_buckets, n = max(-relative_position, 0) (past keys have relative_position < 0).
    # 2. m = N // 2; exact buckets np.where(n < m, n, ...); the log part uses np.maximum(n, 1) so log(0) is
    #    never taken; cut the log value to int with np.floor(...).astype(np.int64), cap it at N - 1.
    raise NotImplementedError(
        "positions.relative_position_bucket is not implemented yet: see notebooks/05_positions.ipynb"
    )


def alibi_slopes(num_heads):
    """ALiBi's head-specific slopes (Press et al. 2022).

    Parameters
    ----------
    num_heads : int
        H >= 1.

    Returns
    -------
    slopes : ndarray of float64, shape (H,)
        For H a power of two, the geometric sequence ``2**(-8 h / H)``, h = 1 .. H (H = 8: 1/2, 1/4, ...,
        1/256). Otherwise, with P the largest power of two below H, the P slopes of P heads followed by
        every other slope of 2P heads (the 1st, 3rd, 5th, ...), as many as needed: for H = 6,
        ``[1/4, 1/16, 1/64, 1/256, 1/2, 1/8]``, in this order (the order of the authors' released code,
        which pretrained checkpoints depend on; the paper itself trains only power-of-two head counts).
    """
    # 1. Powers of two: 2.0 ** (-8.0 * np.arange(1, H + 1) / H).
    # 2. Otherwise P = 2 ** floor(log2(H)): concatenate the slopes of P heads with the slopes of 2P heads
    #    [0::2][:H - P] (every other one, starting with the first).
    raise NotImplementedError(
        "positions.alibi_slopes is not implemented yet: see notebooks/05_positions.ipynb"
    )


def alibi_bias(num_heads, L, S):
    """ALiBi's additive bias on the attention scores, one slope per head.

    Parameters
    ----------
    num_heads : int
        H.
    L : int
        Number of queries: the last L of the S positions (aligned to the end, like the course's causal mask).
    S : int
        Number of keys.

    Returns
    -------
    bias : ndarray of float64, shape (H, L, S)
        ``bias[h, i, j] = -slopes[h] * |(i + S - L) - j|``, slopes from ``alibi_slopes(H)``: zero on the
        query's own position, more negative the farther the key. Add it to the scores ``(..., H, L, S)``
        before the softmax; no position is added to the token embeddings.
    """
    # 1. Query i sits at position i + (S - L): np.arange(L)[:, None] + (S - L) is (L, 1); keys np.arange(S) (1, S).
    # 2. -slopes[:, None, None] * |distance|[None] broadcasts (H, 1, 1) against (1, L, S) -> (H, L, S).
    raise NotImplementedError(
        "positions.alibi_bias is not implemented yet: see notebooks/05_positions.ipynb"
    )


def apply_rope(x, positions, base=10000.0):
    """Rotary position embedding (Su et al. 2021) in the "rotate half" layout.

    Parameters
    ----------
    x : ndarray of float, shape (..., L, D)
        Queries or keys; D must be even.
    positions : ndarray of int or float, shape (L,), or broadcastable to x.shape[:-1]
        The position of each row (e.g. ``np.arange(S - L, S)`` for L new queries after a cache of S - L
        keys, or per-sequence positions under left padding).
    base : float, optional
        Default 10000.0.

    Returns
    -------
    rotated : ndarray, same shape and dtype as x
        With ``h = D / 2``, frequencies ``theta_i = base**(-2i / D)`` and angle ``a = position * theta_i``,
        each pair ``(x[..., i], x[..., i + h])`` is rotated by a:
        ``rotated[..., i] = x[..., i] cos a - x[..., i + h] sin a`` and
        ``rotated[..., i + h] = x[..., i + h] cos a + x[..., i] sin a``.

    Raises
    ------
    ValueError
        If D is odd.

    Notes
    -----
    Pairing i with i + D/2 ("rotate half") is the layout of GPT-NeoX and Hugging Face's Llama; the paper,
    GPT-J and Meta's original LLaMA code pair neighbours (2i, 2i + 1) instead. Both are rotations, so both
    preserve norms and give ``rope(q, m) . rope(k, n)`` that depends on m - n only; they differ by a fixed
    permutation of the D features, so a checkpoint needs the layout it was trained with, or its W_q and
    W_k output rows permuted to match (as Hugging Face's conversion of the LLaMA weights does).
    """
    # 1. h = D // 2; frequencies base ** (-np.arange(h) * 2 / D) (h,); angles positions[..., None] * freqs
    #    -> (..., L, h), broadcasting against x[..., :h].
    # 2. x1, x2 = x[..., :h], x[..., h:]; the result is concatenate([x1 cos - x2 sin, x2 cos + x1 sin], -1),
    #    cast back to x.dtype.
    raise NotImplementedError(
        "positions.apply_rope is not implemented yet: see notebooks/05_positions.ipynb"
    )
