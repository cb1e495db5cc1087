"""Reference for attnlab.flash, written independently of the solution.

* `online_softmax`: NumPy float64, each trace entry computed directly from the prefix x[..., :stop] (not by
  streaming), so it cannot share a streaming mistake with the solution.
* `online_softmax_update`: PyTorch, combining the log-sum-exps of the old state and of the block with
  logaddexp (float64 for a float64 state, float32 otherwise), rounded once to acc's dtype. It also answers
  the learner's calls of online_softmax_update while their tiled_attention is graded (the engine's
  dependency proxy), one call per tile, so it is kept cheap.
* `dense_attention` / `tiled_attention`: dense attention in float64 with NumPy (independent of PyTorch's
  kernels; the grader's oracle is PyTorch's F.scaled_dot_product_attention, and tests cross-check the two).
"""
import numpy as np


def online_softmax(x, block_size, return_trace=False):
    """softmax(x, axis=-1) in float64, cast to x's dtype; the trace lists, per block b, the max and the
    sum of exp(x - max) over the prefix x[..., :min((b + 1) * block_size, N)] in the working dtype
    (float32 for float16 x, else x's dtype). All -inf rows: weights 0, max -inf, sum 0."""
    x = np.asarray(x)
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    work = np.float32 if x.dtype == np.float16 else (x.dtype if x.dtype.kind == "f" else np.float64)
    x64 = x.astype(np.float64)
    n = x.shape[-1]

    def stats(prefix):
        top = prefix.max(axis=-1) if prefix.shape[-1] else np.full(prefix.shape[:-1], -np.inf)
        base = np.where(np.isfinite(top), top, 0.0)
        return top, np.exp(prefix - base[..., None]).sum(axis=-1), base

    stops = list(range(int(block_size), n, int(block_size))) + [n]
    trace = []
    for b, stop in enumerate(stops):
        top, total, _ = stats(x64[..., :stop])
        trace.append((b, top.astype(work), total.astype(work)))
    top, total, base = stats(x64)
    with np.errstate(invalid="ignore", divide="ignore"):
        normaliser = np.where(total > 0, total, 1.0)[..., None]
        weights = np.where(total[..., None] > 0, np.exp(x64 - base[..., None]) / normaliser, 0.0)
    weights = weights.astype(x.dtype)
    return (weights, trace) if return_trace else weights


def online_softmax_update(m, l, acc, scores_block, v_block):
    """(m, l, acc) after one block, combining log-sum-exps (the old state's m + log l and the block's) with
    logaddexp; in float64 for a float64 state, else in float32, rounded once to acc's dtype, on acc's device.

    It also answers every tile of the learner's tiled_attention while that is graded (256 calls at L = S =
    8192), so it runs on one CPU thread: on a busy machine PyTorch's intra-op threads wait on each other and
    one 512 x 512 tile took 20-30x longer with two threads than with one."""
    import torch

    threads = torch.get_num_threads()
    if threads > 1 and acc.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _update(torch, m, l, acc, scores_block, v_block)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _update(torch, m, l, acc, scores_block, v_block):
    work = torch.float64 if acc.dtype == torch.float64 else torch.float32
    s = scores_block.to(work)
    m_old, l_old = m.to(work), l.to(work)
    m_new = torch.maximum(m_old, s.amax(dim=-1))  # (..., bq); -inf where nothing visible was seen
    base = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
    weights = torch.exp(s - base[..., None])  # (..., bq, bk); 0 where s is -inf
    block_total = weights.sum(dim=-1)
    seen_old, seen_block = l_old > 0, block_total > 0
    old_lse = torch.where(seen_old, m_old + torch.log(torch.where(seen_old, l_old, torch.ones_like(l_old))),
                          torch.full_like(l_old, float("-inf")))
    block_lse = torch.where(seen_block, base + torch.log(torch.where(seen_block, block_total,
                                                                      torch.ones_like(block_total))),
                            torch.full_like(block_total, float("-inf")))
    lse = torch.logaddexp(old_lse, block_lse)
    l_new = torch.where(torch.isfinite(lse), torch.exp(lse - base), torch.zeros_like(lse))
    keep_old = torch.where(seen_old, torch.exp(m_old - base), torch.zeros_like(base))
    acc_new = keep_old[..., None] * acc.to(work) + weights @ v_block.to(work)
    return m_new.to(acc.dtype), l_new.to(acc.dtype), acc_new.to(acc.dtype)


def _np(x):
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)


def dense_attention(q, k, v, causal=False, scale=None):
    """(output, lse) in float64 NumPy: fully masked queries give output 0 and lse -inf."""
    q, k, v = _np(q), _np(k), _np(v)
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    scores = np.einsum("...ld,...sd->...ls", q, k) * scale
    if causal:
        keep = np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L)
        scores = np.where(keep, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(scores - m)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, np.einsum("...ls,...sv->...lv", e, v) / np.where(total > 0, total, 1.0), 0.0)
        lse = np.where(total[..., 0] > 0, m[..., 0] + np.log(total[..., 0]), -np.inf)
    return out, lse


def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
    """The exercise's reference: float64 NumPy, key tiles of 512 with the log-sum-exp carried in log space
    (a different formulation from the solution's running max and sum), so it also passes the memory
    case. Output in q's dtype, lse in float32 for half inputs and q's dtype otherwise."""
    import torch

    qn, kn, vn = _np(q), _np(k), _np(v)
    L, S, D = qn.shape[-2], kn.shape[-2], qn.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    lead = np.broadcast_shapes(qn.shape[:-2], kn.shape[:-2], vn.shape[:-2])
    out = np.zeros(lead + (L, vn.shape[-1]))
    lse = np.full(lead + (L,), -np.inf)
    tile = 512
    for i0 in range(0, L, tile):
        i1 = min(i0 + tile, L)
        qi = qn[..., i0:i1, :] * scale
        for j0 in range(0, S, tile):
            j1 = min(j0 + tile, S)
            s = qi @ np.swapaxes(kn[..., j0:j1, :], -1, -2)  # (..., bq, bk)
            if causal:
                keep = np.arange(j0, j1)[None, :] <= np.arange(i0, i1)[:, None] + (S - L)
                s = np.where(keep, s, -np.inf)
            old = lse[..., i0:i1]
            tile_max = s.max(axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                shift = np.where(np.isfinite(tile_max), tile_max, 0.0)
                tile_lse = shift + np.log(np.exp(s - shift[..., None]).sum(axis=-1))
                new = np.logaddexp(old, tile_lse)
                base = np.where(np.isfinite(new), new, 0.0)
                out[..., i0:i1, :] = (out[..., i0:i1, :] * np.exp(old - base)[..., None]
                                      + np.exp(s - base[..., None]) @ vn[..., j0:j1, :])
            lse[..., i0:i1] = new
    lse_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    return (torch.from_numpy(out).to(q.dtype).to(q.device), torch.from_numpy(lse).to(lse_dtype).to(q.device))


def fast_tiled_attention(q, k, v, block_q=None, block_k=None, causal=False, scale=None):
    """The challenge's reference is the tiled kernel's: the same contract and results (tile sizes change
    neither)."""
    return tiled_attention(q, k, v, causal=causal, scale=scale)
