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
    ### BEGIN HINTS
    # 1. m = full(x.shape[:-1], -inf) and l = zeros(x.shape[:-1]) (float32 for float16 x). For b, start in
    #    enumerate(range(0, N, block_size)): block = x[..., start:start + block_size] (..., <= block_size).
    # 2. m_new = maximum(m, block.max(-1)); shift = m_new, but 0 where m_new is -inf (only -inf seen);
    #    l = l * exp(m - shift) + exp(block - shift[..., None]).sum(-1). Append (b, m_new.copy(), l.copy()).
    # 3. weights = exp(x - shift[..., None]) / l[..., None] (shift from the final m), 0 where l == 0;
    #    cast to x.dtype.
    ### END HINTS
    ### BEGIN SOLUTION
    x = np.asarray(x)
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    work = np.float32 if x.dtype == np.float16 else (x.dtype if x.dtype.kind == "f" else np.float64)
    xw = x.astype(work, copy=False)
    m = np.full(x.shape[:-1], -np.inf, dtype=work)  # (...,) running max
    l = np.zeros(x.shape[:-1], dtype=work)  # (...,) running sum of exp(x - m)
    trace = []
    for b, start in enumerate(range(0, x.shape[-1], int(block_size))):
        block = xw[..., start:start + int(block_size)]  # (..., <= block_size)
        m_new = np.maximum(m, block.max(axis=-1))
        shift = np.where(np.isinf(m_new), 0.0, m_new).astype(work)  # rows that saw only -inf: shift by 0
        l = l * np.exp(m - shift) + np.exp(block - shift[..., None]).sum(axis=-1)
        m = m_new
        trace.append((b, m.copy(), l.copy()))
    shift = np.where(np.isinf(m), 0.0, m).astype(work)
    weights = np.exp(xw - shift[..., None]) / np.where(l > 0, l, 1.0).astype(work)[..., None]  # (..., N)
    weights = weights.astype(x.dtype)
    return (weights, trace) if return_trace else weights
    ### END SOLUTION


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
    ### BEGIN HINTS
    # 1. Cast scores_block and v_block to acc.dtype. m_new = maximum(m, scores_block.amax(-1)) (..., bq).
    # 2. shift = m_new with 0 where it is -inf (a query that has seen no finite score), so no -inf - -inf;
    #    c = exp(m - shift) (..., bq) and p = exp(scores_block - shift[..., None]) (..., bq, bk).
    # 3. Return m_new, c * l + p.sum(-1), c[..., None] * acc + p @ v_block.
    ### END HINTS
    ### BEGIN SOLUTION
    s = scores_block.to(acc.dtype)
    m_new = torch.maximum(m, s.amax(dim=-1))  # (..., bq)
    shift = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # rows that saw only -inf
    correction = torch.exp(m - shift)  # (..., bq): rescales what was summed under the old max
    p = torch.exp(s - shift[..., None])  # (..., bq, bk)
    l_new = correction * l + p.sum(dim=-1)
    acc_new = correction[..., None] * acc + p @ v_block.to(acc.dtype)  # (..., bq, D_v)
    return m_new, l_new, acc_new
    ### END SOLUTION


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
    ### BEGIN HINTS
    # 1. For each query block qi = q[..., i0:i1, :] * scale (..., bq, D): m = -inf, l = 0 (..., bq) and
    #    acc = 0 (..., bq, D_v), in float32 for half inputs (the working dtype).
    # 2. For each key block: s = qi @ kj^T (..., bq, bk), -inf where a key is in the query's future (causal);
    #    m, l, acc = online_softmax_update(m, l, acc, s, vj). With causal, stop at the last key block that
    #    the block's last query (i1 - 1) can see.
    # 3. output = acc / l (0 where l == 0), lse = m + log(l) (-inf where l == 0). Cast the output to q.dtype.
    ### END HINTS
    ### BEGIN SOLUTION
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    output = torch.zeros(lead + (L, v.shape[-1]), dtype=work, device=q.device)  # (..., L, D_v)
    lse = torch.full(lead + (L,), float("-inf"), dtype=work, device=q.device)  # (..., L)
    offset = S - L  # query i sees keys j <= i + offset

    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        qi = q[..., i0:i1, :].to(work) * scale  # (..., bq, D)
        m = torch.full(lead + (i1 - i0,), float("-inf"), dtype=work, device=q.device)  # running max
        l = torch.zeros(lead + (i1 - i0,), dtype=work, device=q.device)  # running sum of exponentials
        acc = torch.zeros(lead + (i1 - i0, v.shape[-1]), dtype=work, device=q.device)  # (..., bq, D_v)
        # causal: the block's last query sees keys up to i1 - 1 + offset; later key blocks are skipped
        key_end = min(S, i1 + offset) if causal else S
        for j0 in range(0, key_end, block_k):
            j1 = min(j0 + block_k, S)
            s = qi @ k[..., j0:j1, :].to(work).transpose(-1, -2)  # (..., bq, bk)
            if causal and j1 - 1 > i0 + offset:  # the tile straddles the diagonal: mask its future part
                visible = (torch.arange(j0, j1, device=q.device)[None, :]
                           <= torch.arange(i0, i1, device=q.device)[:, None] + offset)  # (bq, bk)
                s = s.masked_fill(~visible, float("-inf"))
            m, l, acc = online_softmax_update(m, l, acc, s, v[..., j0:j1, :])  # one step per key tile
        seen = l > 0
        output[..., i0:i1, :] = acc / torch.where(seen, l, torch.ones_like(l))[..., None]
        lse[..., i0:i1] = torch.where(seen, m + torch.log(torch.where(seen, l, torch.ones_like(l))), lse[..., i0:i1])
    return output.to(q.dtype), lse
    ### END SOLUTION


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
    ### BEGIN HINTS
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
    ### END HINTS
    ### BEGIN SOLUTION
    L, S, D, D_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    block_q, block_k = block_q or 256, block_k or 256
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    device = q.device
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    n = math.prod(lead)
    qf = q.expand(lead + (L, D)).reshape(n, L, D)
    # k^T with a last row of ones, laid out once; per query block, q in base-2 units with a column for -shift
    kt = torch.ones(n, D + 1, S, dtype=work, device=device)
    kt[:, :D] = k.expand(lead + (S, D)).reshape(n, S, D).transpose(1, 2)
    vw = v.expand(lead + (S, D_v)).reshape(n, S, D_v).to(work)
    output = torch.empty(n, L, D_v, dtype=work, device=device)
    lse = torch.empty(n, L, dtype=work, device=device)
    offset = S - L  # query i sees keys j <= i + offset
    lazy, limit, biases = device.type == "cpu", 2.0 ** 16, {}

    def diagonal_bias(i0, i1, j0, j1):  # 0 where visible, -inf in the future; depends on (i0 - j0) only
        key = (i1 - i0, j1 - j0, i0 + offset - j0)
        if key not in biases:
            visible = (torch.arange(j0, j1, device=device)[None, :]
                       <= torch.arange(i0, i1, device=device)[:, None] + offset)  # (bq, bk)
            biases[key] = torch.zeros(visible.shape, dtype=work, device=device).masked_fill_(~visible, -math.inf)
        return biases[key]

    starts = list(range(0, L, block_q))
    if causal:
        starts.reverse()  # the longest query blocks first, so the threads finish together
    queue, lock = iter(starts), threading.Lock()

    def take():
        with lock:
            return next(queue, None)

    def run_blocks(one_core):  # one thread's share: query blocks, taken one at a time until none is left
        if one_core:
            torch.set_num_threads(1)  # this thread's own products and passes run on one core
        tile = torch.empty(n, block_q, block_k, dtype=work, device=device)  # this thread's only (.., bq, bk) buffer
        qa = torch.empty(n, block_q, D + 1, dtype=work, device=device)
        while (i0 := take()) is not None:
            i1 = min(i0 + block_q, L)
            qi = qa[:, :i1 - i0]  # (n, bq, D + 1)
            torch.mul(qf[:, i0:i1].to(work), scale * LOG2E, out=qi[..., :D])
            neg_shift = qi[..., D:]  # (n, bq, 1): a view into the product's operand
            shift = torch.zeros(n, i1 - i0, 1, dtype=work, device=device)
            l = torch.zeros(n, i1 - i0, 1, dtype=work, device=device)
            acc = torch.zeros(n, i1 - i0, D_v, dtype=work, device=device)
            key_end = min(S, i1 + offset) if causal else S
            for j0 in range(0, max(key_end, 0), block_k):
                j1 = min(j0 + block_k, S)
                s = tile[:, :i1 - i0, :j1 - j0]  # (n, bq, bk)
                straddles = causal and j1 - 1 > i0 + offset
                for exact in ((False, True) if lazy and j0 > 0 else (True,)):
                    if exact:
                        neg_shift.zero_()  # the exact step starts from the raw scores
                    if straddles:
                        torch.baddbmm(diagonal_bias(i0, i1, j0, j1), qi, kt[:, :, j0:j1], out=s)
                    else:
                        torch.bmm(qi, kt[:, :, j0:j1], out=s)  # scores - shift, base-2 units
                    if not exact:  # fast step: keep the shift if no row rose more than 16 octaves above it
                        s.exp2_()
                        row_sum = s.sum(-1, keepdim=True)  # (n, bq, 1)
                        if row_sum.max().item() <= limit:  # NaN or inf compare False: exact step
                            l += row_sum
                            acc.baddbmm_(s, vw[:, j0:j1])
                            break
                        continue
                    seen = l > 0  # (n, bq, 1): rows with something accumulated
                    new = s.amax(-1, keepdim=True)
                    new = torch.where(seen, torch.maximum(shift, new), new)
                    new = torch.where(new == -math.inf, torch.zeros_like(new), new)  # nothing visible yet
                    c = torch.where(seen, torch.exp2(shift - new), torch.zeros_like(new))  # <= 1
                    s.sub_(new).exp2_()
                    l.mul_(c).add_(s.sum(-1, keepdim=True))
                    acc.mul_(c).baddbmm_(s, vw[:, j0:j1])
                    shift = new
                    torch.neg(shift, out=neg_shift)
            seen = l > 0
            safe_l = torch.where(seen, l, torch.ones_like(l))
            torch.div(acc, safe_l, out=output[:, i0:i1])
            lse[:, i0:i1] = torch.where(seen, (shift + torch.log2(safe_l)) / LOG2E, -math.inf).squeeze(-1)

    threads = min(threads or torch.get_num_threads(), len(starts)) if device.type == "cpu" else 1
    if threads <= 1:
        run_blocks(one_core=False)
    else:
        saved = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(threads) as pool:
                for done in [pool.submit(run_blocks, True) for _ in range(threads)]:
                    done.result()  # re-raises a thread's error here
        finally:
            torch.set_num_threads(saved)
    return output.reshape(lead + (L, D_v)).to(q.dtype), lse.reshape(lead + (L,))
    ### END SOLUTION
