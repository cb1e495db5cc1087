"""Multi-head attention and the other parts of a Transformer block: heads, dropout on attention weights,
layer norm and the position-wise feed-forward network.

Taught in notebooks/04_multihead_transformer.ipynb.

Multi-head attention runs H attention heads side by side over the same sequence. The model width E is
split into H heads of width D = E / H: each head projects the queries, keys and values into its own
subspace and computes its own weights, shape (B, H, L, S), so different heads can attend to different
positions; the H outputs (B, H, L, D) are concatenated back to width E and mixed by an output
projection. With D = E / H, H heads cost about as many multiply-adds as one head of width E.

During training the attention weights are often regularised with dropout: each weight is zeroed
independently with probability p, so that no output can lean on one particular key. PyTorch applies it
there: the ``dropout`` argument of ``nn.MultiheadAttention`` and the ``dropout_p`` argument of
``F.scaled_dot_product_attention``. It is *inverted* dropout: the surviving weights are scaled by
1 / (1 - p) during training, so every weight keeps its expected value and inference just skips dropout.
A row of dropped weights no longer sums to 1, only in expectation.

Around attention, a Transformer block has a layer norm (each position's E features normalised to mean 0
and variance 1, then scaled and shifted) and a feed-forward network applied to every position on its own
(E -> d_ff -> E, usually d_ff = 4 E, with a GELU or ReLU in between).

Every projection in this module is written ``x @ W + b`` with W of shape (in, out). PyTorch's ``nn.Linear``
and ``nn.MultiheadAttention`` store their weights as (out, in) and compute ``x @ weight.T + bias``: copy
``weight.T`` into W (for square (E, E) weights a forgotten transpose raises no error, it just gives wrong
numbers).
"""
import math

import numpy as np


def split_heads(x, num_heads):
    """Cut the model width E into H heads of width D = E / H: (B, L, E) -> (B, H, L, D).

    Parameters
    ----------
    x : ndarray, shape (B, L, E)
        Projected queries, keys or values of every head side by side (E = H * D).
    num_heads : int
        H, the number of heads. E must be divisible by H.

    Returns
    -------
    heads : ndarray, shape (B, H, L, D)
        ``heads[b, h, l] == x[b, l, h * D:(h + 1) * D]``: head h owns the h-th block of D consecutive
        features (the layout of PyTorch's ``nn.MultiheadAttention``). Same dtype as x; the values are
        moved, never changed.

    Raises
    ------
    ValueError
        If E is not divisible by num_heads.

    Examples
    --------
    >>> split_heads(np.arange(12.0).reshape(1, 2, 6), 3)[0, :, 1]  # position 1 of each head
    array([[ 6.,  7.],
           [ 8.,  9.],
           [10., 11.]])
    """
    ### BEGIN HINTS
    # 1. B, L, E = x.shape and D = E // num_heads; raise ValueError when E % num_heads != 0.
    # 2. x.reshape(B, L, H, D) cuts the last axis into H blocks of D consecutive features.
    # 3. Then move the head axis in front of the positions: (B, L, H, D) -> (B, H, L, D).
    ### END HINTS
    ### BEGIN SOLUTION
    B, L, E = x.shape
    if E % num_heads:
        raise ValueError(f"the model width E = {E} is not divisible by num_heads = {num_heads}")
    D = E // num_heads
    return x.reshape(B, L, num_heads, D).transpose(0, 2, 1, 3)  # (B, L, H, D) -> (B, H, L, D)
    ### END SOLUTION


def merge_heads(x):
    """Put H heads of width D back side by side: (B, H, L, D) -> (B, L, H * D), the inverse of split_heads.

    Parameters
    ----------
    x : ndarray, shape (B, H, L, D)
        The outputs of H heads.

    Returns
    -------
    merged : ndarray, shape (B, L, E) with E = H * D
        ``merged[b, l, h * D:(h + 1) * D] == x[b, h, l]``: head h's features in the h-th block (a
        concatenation along the feature axis). Same dtype as x; ``merge_heads(split_heads(x, H)) == x``.
    """
    ### BEGIN HINTS
    # 1. B, H, L, D = x.shape.
    # 2. Move the head axis back behind the positions first: (B, H, L, D) -> (B, L, H, D).
    # 3. Then reshape (B, L, H, D) -> (B, L, H * D).
    ### END HINTS
    ### BEGIN SOLUTION
    B, H, L, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * D)  # (B, L, H, D) -> (B, L, E)
    ### END SOLUTION


def multi_head_attention(x_q, x_kv, params, num_heads, mask=None):
    """Multi-head attention: H scaled dot-product attention heads side by side, then an output projection.

    Parameters
    ----------
    x_q : ndarray, shape (B, L, E)
        The sequence the queries come from.
    x_kv : ndarray, shape (B, S, E)
        The sequence the keys and values come from: x_q itself in self-attention, the encoder's output in
        cross-attention.
    params : dict of ndarray
        ``"W_q", "W_k", "W_v", "W_o"`` of shape (E, E) and ``"b_q", "b_k", "b_v", "b_o"`` of shape (E,).
        Every projection is ``x @ W + b`` (W is (in, out)). PyTorch stores (out, in): to use an
        ``nn.MultiheadAttention``'s weights, copy the transposed blocks of ``in_proj_weight`` and
        ``out_proj.weight.T``.
    num_heads : int
        H. E must be divisible by H; each head has width D = E / H.
    mask : ndarray of bool, shape broadcastable to (B, H, L, S), optional
        True where a query may attend to a key (the OPPOSITE of ``nn.MultiheadAttention``'s boolean
        ``attn_mask``). (L, S) for a causal mask, (B, 1, 1, S) for key padding, (B, H, L, S) per head.

    Returns
    -------
    output : ndarray, shape (B, L, E)
        Same dtype as x_q.
    weights : ndarray, shape (B, H, L, S)
        The attention weights of every head (not averaged over heads), exactly 0 where the mask is False.
        A query that may attend to no key in a head gets a row of zeros there, so that head outputs 0 for
        it, never NaN; a query that sees no key in any head gets the output ``b_o``.

    Notes
    -----
    With D = E / H and ``split_heads`` / ``merge_heads`` of this module::

        Q = split_heads(x_q  @ W_q + b_q, H)        # (B, H, L, D)
        K = split_heads(x_kv @ W_k + b_k, H)        # (B, H, S, D)
        V = split_heads(x_kv @ W_v + b_v, H)        # (B, H, S, D)
        A = softmax(Q K^T / sqrt(D))                # (B, H, L, S), masked where mask is False
        output = merge_heads(A V) @ W_o + b_o       # (B, H, L, D) -> (B, L, E)

    The scale uses D, the width of one head, not E. ``scaled_dot_product_attention`` from notebook 02
    (``attnlab.attention``) computes A and A V for all heads at once.
    """
    ### BEGIN HINTS
    # 1. Project, then split: q = split_heads(x_q @ params["W_q"] + params["b_q"], num_heads) -> (B, H, L, D);
    #    k and v likewise from x_kv -> (B, H, S, D).
    # 2. out, weights = scaled_dot_product_attention(q, k, v, mask=mask) (from attnlab.attention): (B, H, L, D),
    #    (B, H, L, S); it scales by 1/sqrt(D) and zeroes fully masked rows.
    # 3. merge_heads(out) -> (B, L, E), then @ params["W_o"] + params["b_o"]. Return (output, weights).
    ### END HINTS
    ### BEGIN SOLUTION
    from attnlab.attention import scaled_dot_product_attention

    q = split_heads(x_q @ params["W_q"] + params["b_q"], num_heads)   # (B, H, L, D)
    k = split_heads(x_kv @ params["W_k"] + params["b_k"], num_heads)  # (B, H, S, D)
    v = split_heads(x_kv @ params["W_v"] + params["b_v"], num_heads)  # (B, H, S, D)
    heads, weights = scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, L, D), (B, H, L, S)
    output = merge_heads(heads) @ params["W_o"] + params["b_o"]       # (B, L, E)
    return output.astype(x_q.dtype, copy=False), weights.astype(x_q.dtype, copy=False)
    ### END SOLUTION


def attention_dropout(weights, p, rng):
    """Inverted dropout on attention weights: zero each weight with probability p, scale the rest by 1/(1 - p).

    Parameters
    ----------
    weights : ndarray of float, shape (..., L, S)
        Attention weights (rows usually sum to 1). Any shape works: every entry is kept or dropped
        independently of the others, in every batch and head.
    p : float
        Probability of dropping (zeroing) an entry, 0 <= p < 1. ``p = 0`` returns the weights unchanged.
    rng : numpy.random.Generator
        The only source of randomness (never ``np.random``'s global state nor a generator seeded inside),
        so that the same generator state gives the same output.

    Returns
    -------
    dropped : ndarray, same shape and dtype as weights
        0 where an entry was dropped, ``weights / (1 - p)`` where it was kept.

    Raises
    ------
    ValueError
        If p is not in [0, 1): p = 1 would drop everything and divide by 1 - p = 0, and a p below 0
        or above 1 is not a probability.

    Notes
    -----
    With a keep mask m of independent Bernoulli(1 - p) entries, shape (..., L, S):

    .. math:: \\mathrm{dropout}(w) = \\frac{m \\odot w}{1 - p},\\qquad
              \\mathbb{E}[\\mathrm{dropout}(w)] = \\frac{(1 - p)\\, w}{1 - p} = w

    How you draw m is up to you (``rng.random``, ``rng.binomial``, ``rng.uniform``...), as long as it
    comes from ``rng`` and has the full shape of ``weights``. Do not renormalise the rows afterwards:
    that would no longer be dropout's unbiased rescaling.
    """
    ### BEGIN HINTS
    # 1. Check 0 <= p < 1 first and raise ValueError otherwise; p == 0 may simply return a copy of weights.
    # 2. keep = rng.random(weights.shape) < 1 - p: a bool mask (..., L, S), True with probability 1 - p.
    # 3. Kept entries become weights / (1 - p), dropped ones 0; a float32 input must give a float32 output.
    ### END HINTS
    ### BEGIN SOLUTION
    weights = np.asarray(weights)
    if not 0 <= p < 1:
        raise ValueError(f"p must satisfy 0 <= p < 1, got {p}")
    if p == 0:
        return weights.copy()
    keep = rng.random(weights.shape) < 1 - p  # (..., L, S) bool, True with probability 1 - p
    # a Python float and int keep the array's dtype (float32 stays float32)
    return np.where(keep, weights / (1 - p), 0)
    ### END SOLUTION


def layer_norm(x, gamma, beta, eps=1e-5):
    """Layer normalisation over the last axis: each position's E features get mean 0 and variance 1, then a
    learned scale gamma and shift beta.

    Parameters
    ----------
    x : ndarray, shape (..., E)
        Any leading dims (B, L, ...): every position is normalised on its own, over its E features.
    gamma : ndarray, shape (E,)
        Scale (``nn.LayerNorm.weight``, initialised to 1).
    beta : ndarray, shape (E,)
        Shift (``nn.LayerNorm.bias``, initialised to 0).
    eps : float, optional
        Added to the variance inside the square root (``nn.LayerNorm``'s default 1e-5).

    Returns
    -------
    ndarray, shape (..., E)
        Same dtype as x.

    Notes
    -----
    .. math:: \\mu = \\frac{1}{E}\\sum_e x_e,\\qquad \\sigma^2 = \\frac{1}{E}\\sum_e (x_e - \\mu)^2,\\qquad
              y = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}\\,\\gamma + \\beta

    The variance is the biased one (divide by E, not E - 1), as ``nn.LayerNorm`` and ``F.layer_norm``. A row
    whose E entries are all equal has variance 0: eps keeps it finite and it becomes beta. Compute the
    variance as the mean of the squared deviations: ``mean(x**2) - mean(x)**2`` cancels catastrophically in
    float32 when the mean is large next to the spread.
    """
    ### BEGIN HINTS
    # 1. mean = x.mean(axis=-1, keepdims=True): (..., 1); centred = x - mean.
    # 2. var = (centred ** 2).mean(axis=-1, keepdims=True): divide by E (biased), as nn.LayerNorm.
    # 3. centred / np.sqrt(var + eps) * gamma + beta: (..., E), gamma and beta broadcast over the leading dims.
    ### END HINTS
    ### BEGIN SOLUTION
    mean = x.mean(axis=-1, keepdims=True)                 # (..., 1)
    centred = x - mean                                    # (..., E)
    var = (centred * centred).mean(axis=-1, keepdims=True)  # (..., 1), biased
    out = centred / np.sqrt(var + eps) * gamma + beta     # a Python float eps keeps float32 as float32
    return out.astype(x.dtype, copy=False)
    ### END SOLUTION


def feed_forward(x, W_1, b_1, W_2, b_2, activation="gelu"):
    """The position-wise feed-forward network of a Transformer block: ``act(x @ W_1 + b_1) @ W_2 + b_2``.

    Parameters
    ----------
    x : ndarray, shape (..., E)
        Any leading dims (B, L, ...): every position goes through the same network on its own.
    W_1 : ndarray, shape (E, d_ff)
        Expansion (d_ff = 4 E in the original Transformer). Written ``x @ W_1``: the transpose of
        ``nn.Linear(E, d_ff).weight``, which is stored (d_ff, E).
    b_1 : ndarray, shape (d_ff,)
    W_2 : ndarray, shape (d_ff, E)
        Projection back to the model width.
    b_2 : ndarray, shape (E,)
    activation : {"gelu", "relu"}, optional
        "gelu" (default) is the exact GELU, ``h * Phi(h)`` with Phi the standard normal CDF (the erf form,
        ``F.gelu``'s default), not its tanh approximation; "relu" is ``max(h, 0)``.

    Returns
    -------
    ndarray, shape (..., E)
        Same dtype as x.

    Raises
    ------
    ValueError
        If activation is not "gelu" or "relu".

    Notes
    -----
    .. math:: \\mathrm{GELU}(h) = h\\,\\Phi(h)
              = \\frac{h}{2}\\left(1 + \\mathrm{erf}\\!\\left(\\frac{h}{\\sqrt 2}\\right)\\right)

    The tanh form ``0.5 h (1 + tanh(sqrt(2 / pi) (h + 0.044715 h^3)))`` (GPT-2, ``F.gelu(approximate="tanh")``)
    differs from it by up to about 5e-4: a different function, not a rounding error. NumPy has no erf;
    ``np.vectorize(math.erf)`` gives one (it returns float64: cast the result back to x's dtype). SciPy is
    not available when this exercise is graded.
    """
    ### BEGIN HINTS
    # 1. Check activation first (ValueError unless "gelu" or "relu"); h = x @ W_1 + b_1: (..., d_ff).
    # 2. relu: np.maximum(h, 0). gelu: 0.5 * h * (1 + erf(h / sqrt(2))), erf = np.vectorize(math.erf).
    # 3. act(h) @ W_2 + b_2: (..., E), cast to x's dtype.
    ### END HINTS
    ### BEGIN SOLUTION
    if activation not in ("gelu", "relu"):
        raise ValueError(f'activation must be "gelu" or "relu", got {activation!r}')
    h = x @ W_1 + b_1  # (..., d_ff)
    if activation == "relu":
        a = np.maximum(h, 0)
    else:
        erf = np.vectorize(math.erf, otypes=[np.float64])
        a = (0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))).astype(h.dtype)  # erf works in float64
    return (a @ W_2 + b_2).astype(x.dtype, copy=False)  # (..., E)
    ### END SOLUTION
