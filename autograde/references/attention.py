import numpy as np

from .scoring import scaled_dot_scores
from .softmax import masked_softmax


def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
    scores = scaled_dot_scores(q, k, scale)
    if mask is None:
        mask = np.ones(scores.shape, dtype=bool)
    weights = masked_softmax(scores, mask)
    return np.einsum("...ls,...sv->...lv", weights, v).astype(q.dtype), weights.astype(q.dtype)


def torch_oracle(q, k, v, mask=None, scale=None):
    """The same computation by PyTorch's scaled_dot_product_attention (float64), with our conventions:
    fully masked rows give zero weights and zero output (PyTorch gives NaN there)."""
    import torch
    import torch.nn.functional as F

    tq, tk, tv = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (q, k, v))
    L, S = tq.shape[-2], tk.shape[-2]
    bmask = None
    if mask is not None:
        bmask = torch.from_numpy(np.broadcast_to(np.asarray(mask, bool), tq.shape[:-2] + (L, S)).copy())
        if tk.dim() > bmask.dim():
            bmask = bmask.expand(*tk.shape[:-2], L, S)
    out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=bmask, scale=scale)
    scores = tq @ tk.transpose(-1, -2) * (scale if scale is not None else tq.shape[-1] ** -0.5)
    if bmask is not None:
        scores = scores.masked_fill(~bmask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if bmask is not None:
        dead = ~bmask.any(dim=-1, keepdim=True)
        weights = weights.masked_fill(dead, 0.0)
        out = out.masked_fill(dead, 0.0)
    return out.numpy(), weights.numpy()
