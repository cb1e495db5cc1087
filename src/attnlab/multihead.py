"""Multi-head attention, and dropout on attention weights.

Taught in notebooks/04_multihead_transformer.ipynb.

Multi-head attention runs H attention heads side by side over the same sequence. The model width E is
split into H heads of width D = E / H: each head projects the queries, keys and values into its own
subspace and computes its own weights, shape (B, H, L, S), so different heads can attend to different
positions; the H outputs (B, H, L, D_v) are concatenated back to width E and mixed by an output
projection. With D = E / H, H heads cost about as many multiply-adds as one head of width E.

During training the attention weights are often regularised with dropout: each weight is zeroed
independently with probability p, so that no output can lean on one particular key. PyTorch applies it
there: the ``dropout`` argument of ``nn.MultiheadAttention`` and the ``dropout_p`` argument of
``F.scaled_dot_product_attention``. It is *inverted* dropout: the surviving weights are scaled by
1 / (1 - p) during training, so every weight keeps its expected value and inference just skips dropout.
A row of dropped weights no longer sums to 1, only in expectation.
"""
import numpy as np


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
    # 1. Check 0 <= p < 1 first and raise ValueError otherwise; p == 0 may simply return a copy of weights.
    # 2. keep = rng.random(weights.shape) < 1 - p: a bool mask (..., L, S), True with probability 1 - p.
    # 3. Kept entries become weights / (1 - p), dropped ones 0; a float32 input must give a float32 output.
    raise NotImplementedError(
        "multihead.attention_dropout is not implemented yet: see notebooks/04_multihead_transformer.ipynb"
    )
