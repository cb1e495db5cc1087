"""FlashAttention on CPU and GPU: exact attention by an online softmax over tiles.

Taught in notebooks/08_flash_attention.ipynb.

Standard attention materialises the (L, S) score matrix: O(L * S) memory per head, and as many reads and
writes of it to slow memory. A tiled kernel visits the keys block by block and keeps, for each query, a
running maximum m, a running sum l of exponentials and a running weighted sum of values: the (L, S) matrix
never exists, only (block_q, block_k) tiles of it. Written with PyTorch, it runs on any device.
"""
import math

import torch


def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
    """Exact attention computed tile by tile with an online softmax (FlashAttention's forward pass).

    Parameters
    ----------
    q : Tensor, shape (..., L, D)
        Queries. Any leading (batch, head) dims, on any device.
    k : Tensor, shape (..., S, D)
        Keys.
    v : Tensor, shape (..., S, D_v)
        Values.
    block_q, block_k : int, optional
        Tile sizes along the queries and the keys (default 128 x 128). L and S need not be multiples.
    causal : bool, optional
        Query i may see key j only when ``j <= i + (S - L)`` (the course's end-aligned rule: with L < S the
        queries are the last L positions). A query that sees no key (causal with L > S) gets a zero output
        and a log-sum-exp of -inf.
    scale : float, optional
        Multiplier of the scores; default ``1 / sqrt(D)``.

    Returns
    -------
    output : Tensor, shape (..., L, D_v)
        softmax(q k^T * scale) v, in q's dtype.
    lse : Tensor, shape (..., L)
        Log-sum-exp of each query's scaled scores over the keys it sees: ``log sum_j exp(s_ij)``. The backward
        pass recomputes the weights from it as ``exp(s_ij - lse_i)``. float32 for float16/bfloat16 inputs,
        otherwise q's dtype.

    Notes
    -----
    float16 and bfloat16 inputs are accumulated in float32 (as FlashAttention does) and the output is cast
    back once. For each query block, over key blocks j with scores s (block_q, block_k):

    .. math::
        m' = \\max(m, \\max_j s),\\quad l' = e^{m - m'} l + \\sum_j e^{s_j - m'},\\quad
        a' = e^{m - m'} a + e^{s - m'} V_j

    and finally output = a / l, lse = m + log l. The factor e^{m - m'} rescales what was accumulated under
    the old maximum. With ``causal``, key blocks wholly in the future of a query block are skipped.
    """
    # 1. For each query block qi (..., bq, D): m = -inf, l = 0 (..., bq) and acc = 0 (..., bq, D_v), in
    #    float32 for half inputs. For each key block: s = qi @ kj^T * scale (..., bq, bk), masked to -inf
    #    where a key is in the query's future (causal).
    # 2. m_new = max(m, s.amax(-1)); p = exp(s - m_new); c = exp(m - m_new); l = c * l + p.sum(-1);
    #    acc = c * acc + p @ vj. Rows that have seen no key yet have m_new = -inf: use 0 in its place.
    # 3. output = acc / l (0 where l == 0), lse = m + log(l) (-inf where l == 0). Cast the output to q.dtype.
    raise NotImplementedError(
        "flash.tiled_attention is not implemented yet: see notebooks/08_flash_attention.ipynb"
    )
