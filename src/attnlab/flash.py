"""FlashAttention on CPU and GPU: exact attention by an online softmax over tiles.

Taught in notebooks/08_flash_attention.ipynb, in three steps that build on each other:

1. ``online_softmax`` (NumPy): the softmax of a row read block by block, in one pass that keeps a running
   maximum m and a running sum l of exponentials (Milakov and Gimelshein 2018).
2. ``online_softmax_update`` (PyTorch): the same step for attention, where each row also carries a running,
   rescaled weighted sum of values (the accumulator).
3. ``tiled_attention`` (PyTorch): FlashAttention's forward pass (Dao et al. 2022), a loop over query and key
   tiles that repeats step 2, with the loop order of FlashAttention-2 (Dao 2023): query blocks outside.

Standard attention materialises the (L, S) score and weight matrices: O(L * S) memory per head, each written
to slow memory and read back. A tiled kernel visits the keys block by block and keeps, for each query, a
running maximum m, a running sum l of exponentials and a running weighted sum of values: the (L, S) matrix
never exists, only (block_q, block_k) tiles of it. Written with PyTorch, it runs on any device.

``online_softmax`` takes and returns NumPy arrays; it is graded in the same PyTorch worker as the rest of
this module (so ``import torch`` at the top of this file is fine), with NumPy inputs, and PyTorch's own
softmax may not be called inside it.
"""
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def online_softmax(x, block_size, return_trace=False):
    """Softmax over the last axis, computed by streaming over blocks of ``block_size`` entries.

    One pass over the blocks, in order, keeps per row a running maximum ``m`` (of the entries seen so far)
    and a running sum ``l`` of ``exp(x_j - m)`` over them; a second pass writes ``exp(x - m) / l``.

    Parameters
    ----------
    x : ndarray of float, shape (..., N)
        Scores (logits). May be huge (1e4) in magnitude and may hold -inf (masked entries).
    block_size : int
        Entries per block along the last axis (>= 1). N need not be a multiple: the last block is shorter.
    return_trace : bool, optional
        Also return what the first pass saw, block by block (the grader checks it; the notebook plots it).

    Returns
    -------
    weights : ndarray, shape (..., N), same dtype as x
        ``softmax(x, axis=-1)``. A row whose entries are all -inf gets zeros, never NaN.
    trace : list of tuple, only when ``return_trace``
        One entry per block, in the order the blocks were visited: ``(block_index, running_max,
        running_sum)`` with ``block_index`` an int (0, 1, ...) and ``running_max``, ``running_sum`` arrays
        of shape (...,): after block b, ``m_b = max(x[..., :stop])`` and ``l_b = sum(exp(x[..., :stop] -
        m_b))`` where ``stop = min((b + 1) * block_size, N)``. A row that has seen only -inf so far has
        running max -inf and running sum 0. Kept in the working precision (float32 for float16 input).

    Notes
    -----
    For a block x_b, with m the running max before it:

    .. math::
        m' = \\max(m, \\max_j x_{b,j}),\\qquad l' = e^{m - m'}\\, l + \\sum_j e^{x_{b,j} - m'}

    The factor e^{m - m'} <= 1 rescales the sum gathered under the old max. float16 inputs are accumulated
    in float32 and the weights cast back once.
    """
    # 1. m = full(x.shape[:-1], -inf) and l = zeros(x.shape[:-1]) (float32 for float16 x). For b, start in
    #    enumerate(range(0, N, block_size)): block = x[..., start:start + block_size] (..., <= block_size).
    # 2. m_new = maximum(m, block.max(-1)); shift = m_new, but 0 where m_new is -inf (only -inf seen);
    #    l = l * exp(m - shift) + exp(block - shift[..., None]).sum(-1). Append (b, m_new.copy(), l.copy()).
    # 3. weights = exp(x - shift[..., None]) / l[..., None] (shift from the final m), 0 where l == 0;
    #    cast to x.dtype.
    raise NotImplementedError(
        "flash.online_softmax is not implemented yet: see notebooks/08_flash_attention.ipynb"
    )


def online_softmax_update(m, l, acc, scores_block, v_block):
    """One step of the online softmax for attention: fold one block of keys into each query's running state.

    Parameters
    ----------
    m : Tensor, shape (..., bq)
        Running max of each query's scores over the keys seen so far (-inf before the first block).
    l : Tensor, shape (..., bq)
        Running sum of ``exp(score - m)`` over the keys seen so far (0 before the first block).
    acc : Tensor, shape (..., bq, D_v)
        Running sum of ``exp(score - m) * value`` over the keys seen so far (0 before the first block).
    scores_block : Tensor, shape (..., bq, bk)
        Scaled scores of the bq queries against this block's bk keys; -inf where a key is masked.
    v_block : Tensor, shape (..., bk, D_v)
        This block's values.

    Returns
    -------
    m, l, acc : Tensor, shapes (..., bq), (..., bq), (..., bq, D_v)
        The state after this block, in acc's dtype and on its device. A query that has seen only -inf
        scores keeps m = -inf, l = 0 and acc = 0: never NaN.

    Notes
    -----
    Any device: the code uses tensor operations only. m, l and acc carry the working precision (float32
    for float16/bfloat16 attention); a lower-precision scores_block or v_block is cast up to acc's dtype.

    .. math::
        m' = \\max(m, \\max_j s_j),\\quad c = e^{m - m'},\\quad l' = c\\, l + \\sum_j e^{s_j - m'},\\quad
        \\mathrm{acc}' = c\\,\\mathrm{acc} + e^{s - m'} V_{\\mathrm{block}}

    After the last block, ``acc / l`` is the attention output and ``m + log(l)`` the log-sum-exp.
    """
    # 1. Cast scores_block and v_block to acc.dtype. m_new = maximum(m, scores_block.amax(-1)) (..., bq).
    # 2. shift = m_new with 0 where it is -inf (a query that has seen no finite score), so no -inf - -inf;
    #    c = exp(m - shift) (..., bq) and p = exp(scores_block - shift[..., None]) (..., bq, bk).
    # 3. Return m_new, c * l + p.sum(-1), c[..., None] * acc + p @ v_block.
    raise NotImplementedError(
        "flash.online_softmax_update is not implemented yet: see notebooks/08_flash_attention.ipynb"
    )


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
    back once. For each query block, over key blocks j with scores s (block_q, block_k), one call of
    ``online_softmax_update`` per tile:

    .. math::
        m' = \\max(m, \\max_j s),\\quad l' = e^{m - m'} l + \\sum_j e^{s_j - m'},\\quad
        a' = e^{m - m'} a + e^{s - m'} V_j

    and finally output = a / l, lse = m + log l. The factor e^{m - m'} rescales what was accumulated under
    the old maximum. With ``causal``, key blocks wholly in the future of a query block are skipped.
    """
    # 1. For each query block qi = q[..., i0:i1, :] * scale (..., bq, D): m = -inf, l = 0 (..., bq) and
    #    acc = 0 (..., bq, D_v), in float32 for half inputs (the working dtype).
    # 2. For each key block: s = qi @ kj^T (..., bq, bk), -inf where a key is in the query's future (causal);
    #    m, l, acc = online_softmax_update(m, l, acc, s, vj). With causal, stop at the last key block that
    #    the block's last query (i1 - 1) can see.
    # 3. output = acc / l (0 where l == 0), lse = m + log(l) (-inf where l == 0). Cast the output to q.dtype.
    raise NotImplementedError(
        "flash.tiled_attention is not implemented yet: see notebooks/08_flash_attention.ipynb"
    )


LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2 e)


def fast_tiled_attention(q, k, v, block_q=None, block_k=None, causal=False, scale=None, threads=None):
    """``tiled_attention``, rewritten for speed on a CPU: same arguments (and ``threads``), same results, same
    memory bound.

    The challenge of notebook 08: on a CPU the straightforward loop can spend about as long on its
    elementwise passes over each tile (max, subtract, exp, sum) as on the two matrix products. This version
    keeps the products, removes passes and shares the work among threads, with five changes (the first,
    third and fifth have counterparts in FlashAttention's GPU kernels; notebook 08, section 9):

    1. **exp2 instead of exp.** q is multiplied once by ``scale * log2(e)``, so scores are in base-2 units
       and ``exp2`` replaces ``exp`` (the hardware instruction on GPUs, where FlashAttention-2's code uses
       it too; on a CPU, notebook 08 times both).
    2. **The shift rides in the matrix product.** q (bq, D) gets one more column holding ``-shift`` (bq, 1)
       and k^T (D, bk) one more row of ones, so ``[q, -shift] @ [k^T; 1] = q k^T - shift`` (bq, bk): no
       subtraction pass.
    3. **Lazy rescaling.** A tile is folded in with the old shift when every row sum of its exponentials is
       at most 2^16 (so every term is <= 2^16, finite in float32): no max, no rescale of l and acc. A tile
       whose row sums exceed 2^16 (always the case when a score rises more than 16 above the shift, in
       base-2 units), or are inf or NaN, is recomputed with the exact step, which raises the shift to the
       tile's row max where that is higher. So the data decide the speed, never the exactness.
       FlashAttention-4's conditional softmax rescaling (Zadouri et al. 2026) is the same idea, with a
       threshold on the max.
    4. **In place, one tile buffer per thread**, products written with ``out=`` and accumulated with
       ``baddbmm_``; causal key tiles wholly in the future are skipped and a diagonal tile's mask is added
       inside the product (``baddbmm``), from a cache of additive 0 / -inf tiles.
    5. **Threads share the query blocks, not each operation.** Query blocks are independent (FlashAttention-2's
       forward pass gives each its own GPU thread block, Dao 2023). On a CPU with several threads, each
       thread takes the next query block, longest first when causal, and runs its products and passes on one
       core, instead of each operation on a tile being split across all cores that then wait for one another.

    Parameters
    ----------
    q, k, v : Tensor, shapes (..., L, D), (..., S, D), (..., S, D_v)
        As ``tiled_attention`` (leading dims broadcast; any device; float16/bfloat16 work in float32).
    block_q, block_k : int, optional
        Tile sizes; default 256 x 256 (chosen with `attnlab bench` on the course's 2-core CPU).
    causal, scale :
        As ``tiled_attention`` (end-aligned causal rule; default scale 1/sqrt(D)).
    threads : int, optional
        CPU threads sharing the query blocks; default ``torch.get_num_threads()``, at most one per query block,
        always 1 on a GPU. Each calls ``torch.set_num_threads(1)``: with PyTorch's default OpenMP backend that
        limits the calling thread's own operations, but it also sets the count that threads first using
        PyTorch later begin with, so the caller's count is set again at the end. A query block goes through the same
        operations whichever thread takes it, so the results match one thread's (bit for bit in the tests).

    Returns
    -------
    output : Tensor, shape (..., L, D_v), q's dtype
    lse : Tensor, shape (..., L)
        Natural-log log-sum-exp, float32 for half inputs; a query that sees no key gets output 0 and -inf.

    Notes
    -----
    The state per query is (shift, l, acc) with l = sum_j 2^(s_j - shift) and acc = sum_j 2^(s_j - shift)
    v_j (s in base-2 units): the online softmax of ``tiled_attention`` with m replaced by a shift between
    the running max minus 16 and the running max. Any finite shift cancels in acc / l; these bounds only
    keep every term at most 2^16 and the largest at least 1, so nothing overflows and l > 0. At the end,
    output = acc / l and lse = (shift + log2 l) * ln 2. On a GPU the check costs a device sync per tile,
    so there every tile takes the exact step. Forward only: products written with ``out=`` record no
    gradients, so inputs that require grad raise (``tiled_attention`` supports autograd).
    """
    # 1. Flatten the (broadcast) leading dims to n. kt = [k^T; 1] (n, D + 1, S) and v (n, S, D_v) in the
    #    working dtype; one tile buffer (n, block_q, block_k).
    # 2. Per query block: qa = [q_i * scale * log2 e, 0] (n, bq, D + 1), whose last column is -shift;
    #    shift = 0, l = 0, acc = 0.
    #    Per key block: s = qa_i @ kt_j (out=tile; baddbmm with a 0/-inf bias on diagonal causal tiles).
    #    Fast step (CPU, not the first tile): s.exp2_(); r = s.sum(-1); if r.max() <= 2 ** 16: l += r,
    #    acc.baddbmm_(s, v_j), next tile. Otherwise (and for the first tile) the exact step: recompute s
    #    with shift 0, new = max(shift, rowmax) (only rowmax where l == 0; 0 where -inf), c = exp2(shift -
    #    new) (0 where l == 0), s = exp2(s - new), l = c l + sum, acc = c acc + s v_j, shift = new, and
    #    -new back into qa's last column for the next tile.
    # 3. output = acc / l (0 where l == 0); lse = (shift + log2 l) / log2 e (-inf where l == 0).
    # 4. Optional, for speed with several CPU threads: put steps 2-3 in a function that takes query blocks
    #    from a shared queue, and run it in `threads` Python threads, each after torch.set_num_threads(1).
    raise NotImplementedError(
        "flash.fast_tiled_attention is not implemented yet: see notebooks/08_flash_attention.ipynb"
    )
