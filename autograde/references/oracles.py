"""PyTorch oracles for the PyTorch exercises: PyTorch's own kernels in float64, with the course's
conventions (boolean masks mean may attend; a query that sees no key gets a zero output, and its
log-sum-exp is -inf). The callers round the result once to the dtype the learner must return."""
import numpy as np


def _torch():
    import torch

    return torch


def end_aligned_causal(L, S, device="cpu"):
    """(L, S) bool: query i may see key j when j <= i + (S - L) (the course's causal rule)."""
    torch = _torch()
    return torch.arange(S, device=device)[None, :] <= torch.arange(L, device=device)[:, None] + (S - L)


def attention(q, k, v, mask=None, causal=False, scale=None):
    """(output, lse) of exact attention in float64, by F.scaled_dot_product_attention for the output and
    torch.logsumexp for the log-sum-exp. q (..., L, D), k (..., S, D), v (..., S, D_v); mask broadcastable
    to (..., L, S). Fully masked queries: output 0, lse -inf."""
    torch = _torch()
    import torch.nn.functional as F

    q, k, v = (torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).to(torch.float64)
               for x in (q, k, v))
    L, S = q.shape[-2], k.shape[-2]
    keep = torch.ones(L, S, dtype=torch.bool, device=q.device)
    if causal:
        keep = keep & end_aligned_causal(L, S, q.device)
    if mask is not None:
        keep = keep & torch.as_tensor(mask, device=q.device).to(torch.bool)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], keep.shape[:-2])
    keep = keep.expand(*lead, L, S)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    out = F.scaled_dot_product_attention(q.expand(*lead, L, q.shape[-1]), k.expand(*lead, S, k.shape[-1]),
                                         v.expand(*lead, S, v.shape[-1]), attn_mask=keep, scale=scale)
    scores = (q @ k.transpose(-1, -2)) * scale
    lse = torch.logsumexp(scores.masked_fill(~keep, float("-inf")), dim=-1)
    dead = ~keep.any(dim=-1)
    out = out.masked_fill(dead[..., None], 0.0)
    return out, lse
