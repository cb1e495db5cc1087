"""The cost of attention: arithmetic and memory, counted exactly.

Taught in notebooks/06_cost_of_attention.ipynb. Three counts that every discussion of long contexts
starts from:

- ``attention_flops``: the floating-point operations of the two matrix products of attention, with the
  pairs a causal mask hides left out;
- ``attention_memory_bytes``: the bytes a forward pass holds, with and without the (L, S) weight matrix;
- ``kv_cache_bytes``: the bytes of the keys and values a decoder keeps for generation.

All three return exact Python ints: products of real model sizes can overflow NumPy's int64.

Shape legend: B batch, H query heads, H_kv key/value heads, L query length, S key/value length,
D query/key width, D_v value width.
"""
import numpy as np


def attention_flops(B, H, L, S, D, D_v, causal=False):
    """Floating-point operations of one attention forward pass, ``softmax(Q K^T / sqrt(D)) V``.

    Parameters
    ----------
    B, H : int
        Batch size and number of heads (each (batch, head) pair is one independent attention problem).
    L, S : int
        Number of queries and of keys/values.
    D, D_v : int
        Width of queries and keys, width of values.
    causal : bool, optional
        Count only the (query, key) pairs the course's causal mask keeps: query i sees key j when
        ``j <= i + (S - L)`` (aligned to the end). Default False: all ``L * S`` pairs.

    Returns
    -------
    flops : int
        A Python int (exact at any size).

    Raises
    ------
    ValueError
        If any size is negative. Zero sizes are allowed (and cost nothing).

    Notes
    -----
    Conventions (the same as PyTorch's ``torch.utils.flop_counter``):

    - one multiply-add counts as **2 FLOPs**;
    - counted: the scores ``Q K^T`` (``D`` multiply-adds per visible pair) and the output
      ``weights @ V`` (``D_v`` multiply-adds per visible pair);
    - not counted: the softmax (max, subtract, exp, sum, divide: a few operations per pair, not a
      multiple of D), the ``1/sqrt(D)`` scale and the projections that make Q, K and V.

    So with P visible pairs per (batch, head), ``flops = 2 * B * H * P * (D + D_v)``. Without a mask
    ``P = L * S``. With the causal mask, query i sees ``min(S, max(0, i + S - L + 1))`` keys. For
    ``L <= S`` that is ``S - L + 1, ..., S`` over the L rows, so ``P = L * (S - L) + L * (L + 1) / 2``
    (``L (L + 1) / 2`` when L == S); for ``L > S`` the first ``L - S`` queries see no key at all and
    ``P = S * (S + 1) / 2``. This is the work a kernel that skips hidden pairs needs (FlashAttention skips
    whole masked blocks); a kernel that computes every score and masks afterwards still does
    ``L * S`` pairs.
    """
    # 1. Per (batch, head) and per visible (query, key) pair: D multiply-adds for the score, D_v for the
    #    output; a multiply-add is 2 FLOPs.
    # 2. Causal: query i sees max(0, min(S, i + S - L + 1)) keys; sum over i (a loop, or the closed form
    #    in the Notes; note L > S). Keep everything a Python int: use //, never /, and no np.int64.
    raise NotImplementedError(
        "cost.attention_flops is not implemented yet: see notebooks/06_cost_of_attention.ipynb"
    )


def attention_memory_bytes(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    """Bytes a forward pass of attention holds at its peak, with or without the (L, S) weights.

    Parameters
    ----------
    B, H, L, S, D, D_v : int
        Batch, heads, queries, keys/values, query/key width, value width.
    dtype : numpy dtype, str or int, optional
        Element type of q, k, v, the output and the weights: a NumPy dtype or type (``np.float16``), a
        name (``"float32"``, ``"bfloat16"``, which NumPy lacks: 2 bytes; ``"torch.float16"`` also
        works), an object with an ``itemsize`` (a torch dtype), or an int, the bytes per element.
        Default ``"float32"``.
    materialize : bool, optional
        True (default): naive attention, which stores the whole ``(B, H, L, S)`` weight matrix once (the
        scores are turned into weights in place). False: a fused kernel that never stores it and keeps
        one log-sum-exp per query row instead, for the backward pass (as FlashAttention-2 and PyTorch's
        fused kernels do; the first FlashAttention kept two numbers per row, the row max and sum).

    Returns
    -------
    nbytes : int
        A Python int, exact at any size:

        - always: ``q (B, H, L, D)``, ``k (B, H, S, D)``, ``v (B, H, S, D_v)`` and the output
          ``(B, H, L, D_v)``, in ``dtype``;
        - materialize=True: plus the weights ``(B, H, L, S)`` in ``dtype``, counted once;
        - materialize=False: plus the log-sum-exp ``(B, H, L)`` in the accumulation type, ``max(itemsize,
          4)`` bytes: float32 for 16-bit inputs (as FlashAttention keeps it), the input's own type for
          float32 and float64 (as PyTorch's CPU kernel does).

    Raises
    ------
    ValueError
        If any size is negative.

    Notes
    -----
    Not counted: per-row scratch such as the row max and sum (``(B, H, L)``, small next to the rest),
    library workspaces, and anything a backward pass would add. For ``L = S = N`` the weights take
    ``B H N^2`` elements against ``2 B H N (D + D_v)`` for everything else, so they dominate once
    ``N > 2 (D + D_v)``.
    """
    # 1. Bytes per element: np.dtype(dtype).itemsize, except "bfloat16" (2 bytes), which NumPy does not
    #    know; an int dtype is the itemsize itself.
    # 2. Elements: B*H*(L*D + S*D + S*D_v + L*D_v), plus B*H*L*S weights, or B*H*L log-sum-exp values of
    #    max(itemsize, 4) bytes each. Python ints throughout.
    raise NotImplementedError(
        "cost.attention_memory_bytes is not implemented yet: see notebooks/06_cost_of_attention.ipynb"
    )


def kv_cache_bytes(num_layers, B, H_kv, S, D, dtype, D_v=None):
    """Bytes of a decoder's key/value cache holding S positions.

    Parameters
    ----------
    num_layers : int
        Attention layers; each keeps its own keys and values.
    B : int
        Sequences decoded together.
    H_kv : int
        Key/value heads: H for multi-head attention, 1 for multi-query attention (Shazeer 2019), a
        divisor of H for grouped-query attention (Ainslie et al. 2023). The query heads do not matter:
        queries are never cached.
    S : int
        Cached positions (prompt plus generated tokens).
    D : int
        Width of each key head (and of each value head unless D_v is given).
    dtype : numpy dtype, str or int
        Element type of the cache, as in ``attention_memory_bytes`` (``"bfloat16"`` is 2 bytes; an int is
        the itemsize).
    D_v : int, optional
        Width of each value head. Default None: D.

    Returns
    -------
    nbytes : int
        ``num_layers * B * H_kv * S * (D + D_v) * itemsize``, a Python int: keys ``(B, H_kv, S, D)`` AND
        values ``(B, H_kv, S, D_v)`` in every layer, i.e. ``2 * num_layers * B * H_kv * S * D * itemsize``
        when ``D_v == D``.

    Raises
    ------
    ValueError
        If any size is negative. ``S = 0`` (an empty cache) is 0 bytes.
    """
    # 1. Per layer: keys (B, H_kv, S, D) and values (B, H_kv, S, D_v): the factor 2 when D_v == D.
    # 2. Bytes per element as in attention_memory_bytes ("bfloat16" is 2 bytes); Python ints throughout.
    raise NotImplementedError(
        "cost.kv_cache_bytes is not implemented yet: see notebooks/06_cost_of_attention.ipynb"
    )
