"""Reference for attnlab.flash: dense attention in float64 with NumPy (independent of PyTorch's kernels; the
grader's oracle is PyTorch's F.scaled_dot_product_attention, and tests cross-check the two)."""
import numpy as np


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
