"""Reference KV cache: lists of chunks, concatenated when read; attention by the PyTorch oracle in float64,
rounded once to the query's dtype."""
from . import oracles


class KVCache:
    def __init__(self, capacity=16):
        if int(capacity) < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self._k, self._v = [], []

    def __len__(self):
        return sum(k.shape[-2] for k in self._k)

    def append(self, k, v):
        self._k.append(k)
        self._v.append(v)
        while self.capacity < len(self):
            self.capacity *= 2

    def decode_step(self, q):
        import torch

        k, v = torch.cat(self._k, dim=-2), torch.cat(self._v, dim=-2)
        out, _ = oracles.attention(q, k, v, causal=True)
        return out.to(q.dtype)


# ------------------------------------------------------------------------------ grouped-query attention
def _f64(x):
    import torch

    return torch.as_tensor(x).to(torch.float64)


def gqa_oracle(q, k, v, mask=None):
    """Grouped-query attention in float64 by PyTorch: F.scaled_dot_product_attention(..., enable_gqa=True)
    where this PyTorch has it (2.5+), else keys and values repeated with repeat_interleave; a query that
    sees no key gets 0 (the course rule; PyTorch gives NaN there). q (..., H, L, D), k (..., H_kv, S, D),
    v (..., H_kv, S, D_v), mask broadcastable to (..., H, L, S)."""
    import torch
    import torch.nn.functional as F

    q, k, v = _f64(q), _f64(k), _f64(v)
    H, L, S = q.shape[-3], q.shape[-2], k.shape[-2]
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    q = q.expand(*lead, *q.shape[-3:])
    k, v = k.expand(*lead, *k.shape[-3:]), v.expand(*lead, *v.shape[-3:])
    keep = torch.ones(L, S, dtype=torch.bool) if mask is None else torch.as_tensor(mask).to(torch.bool)
    keep = keep.expand(*lead, H, L, S)
    try:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)
    except TypeError:  # PyTorch < 2.5: no enable_gqa
        group = H // k.shape[-3]
        out = F.scaled_dot_product_attention(q, k.repeat_interleave(group, dim=-3),
                                             v.repeat_interleave(group, dim=-3), attn_mask=keep)
    return out.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)


def grouped_query_attention(q, k, v, mask=None):
    """Reference: one query head at a time, its key/value head found by integer division, softmax by hand
    in float64 (no PyTorch attention), rounded once to q's dtype."""
    import torch

    H, H_kv = q.shape[-3], k.shape[-3]
    if H_kv < 1 or H % H_kv != 0:
        raise ValueError(f"H = {H} query heads cannot be split into groups over H_kv = {H_kv} key/value heads")
    q64, k64, v64 = _f64(q), _f64(k), _f64(v)
    L, S = q.shape[-2], k.shape[-2]
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    keep = None if mask is None else torch.as_tensor(mask).to(torch.bool).expand(*lead, H, L, S)
    outs = []
    for h in range(H):
        j = h * H_kv // H  # = h // (H / H_kv)
        scores = torch.einsum("...ld,...sd->...ls", q64[..., h, :, :], k64[..., j, :, :]) / q.shape[-1] ** 0.5
        if keep is not None:
            scores = torch.where(keep[..., h, :, :], scores, torch.tensor(float("-inf"), dtype=torch.float64))
        top = scores.amax(dim=-1, keepdim=True)
        e = torch.exp(scores - torch.where(torch.isfinite(top), top, torch.zeros_like(top)))
        total = e.sum(dim=-1, keepdim=True)
        weights = e / torch.where(total > 0, total, torch.ones_like(total))
        outs.append(weights @ v64[..., j, :, :])
    return torch.stack(outs, dim=-3).to(q.dtype)


# ------------------------------------------------------------------------------ linear attention, recurrent
def _phi(x):
    import torch

    return torch.where(x > 0, x + 1.0, torch.exp(torch.clamp(x, max=0.0)))  # elu(x) + 1


def causal_linear_oracle(q, k, v, kv0=None, z0=None):
    """Causal linear attention in its parallel (quadratic) form, float64: the (L, L) matrix
    A = phi(Q) phi(K)^T masked to j <= i, output = (A V + phi(Q) kv0) / (A 1 + phi(Q) z0). The optional kv0
    (..., D, D_v) and z0 (..., D) are the sums over tokens before this chunk."""
    import torch

    pq, pk, v = _phi(_f64(q)), _phi(_f64(k)), _f64(v)
    L = q.shape[-2]
    A = (pq @ pk.transpose(-1, -2)).masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), 0.0)  # (..., L, L)
    numerator, denominator = A @ v, A.sum(dim=-1, keepdim=True)
    if kv0 is not None:
        numerator = numerator + pq @ _f64(kv0)
        denominator = denominator + (pq @ _f64(z0)[..., :, None])
    return numerator / denominator


def linear_state_oracle(k, v, kv0=None, z0=None):
    """(kv, z) after the chunk, float64: kv0 + phi(K)^T V (..., D, D_v) and z0 + phi(K)^T 1 (..., D)."""
    pk, v = _phi(_f64(k)), _f64(v)
    kv, z = pk.transpose(-1, -2) @ v, pk.sum(dim=-2)
    if kv0 is not None:
        kv, z = kv + _f64(kv0), z + _f64(z0)
    return kv, z


def linear_attention_recurrent(q, k, v, state=None, return_state=False):
    """Reference: prefix sums (cumsum over the time axis) of phi(k) v^T and phi(k) in float64, read by every
    query at its own position; rounded once to q's dtype (the state too)."""
    import torch

    pq, pk, v64 = _phi(_f64(q)), _phi(_f64(k)), _f64(v)
    kv = torch.cumsum(pk[..., :, :, None] * v64[..., :, None, :], dim=-3)  # (..., L, D, D_v)
    z = torch.cumsum(pk, dim=-2)  # (..., L, D)
    if state is not None:
        kv = kv + _f64(state[0])[..., None, :, :]
        z = z + _f64(state[1])[..., None, :]
    out = torch.einsum("...ld,...ldv->...lv", pq, kv) / torch.einsum("...ld,...ld->...l", pq, z)[..., None]
    out = out.to(q.dtype)
    if not return_state:
        return out
    return out, (kv[..., -1, :, :].to(q.dtype), z[..., -1, :].to(q.dtype))


# ------------------------------------------------------------------------------ diagonal state-space model
def ssm_oracle(x, a, b, c):
    """y = T x in float64 with the dense causal transfer matrix of each channel,
    T[t, s, ch] = sum_n c[ch, n] b[ch, n] a[ch, n]^(t - s) for s <= t (0 above the diagonal).
    x (..., L, C), a/b/c (C, N) -> (..., L, C)."""
    import torch

    x, a, b, c = _f64(x), _f64(a), _f64(b), _f64(c)
    L = x.shape[-2]
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]  # (L, L): t - s
    causal = lag >= 0
    powers = a[None, None] ** lag.clamp(min=0)[:, :, None, None].to(torch.float64)  # (L, L, C, N)
    T = (powers * (b * c)[None, None]).sum(-1) * causal[:, :, None]  # (L, L, C)
    return torch.einsum("tsc,...sc->...tc", T, x)


def diagonal_ssm(x, a, b, c, mode="scan"):
    """Reference: the recurrence in NumPy float64 (both modes give the same numbers), rounded once to x's
    dtype; ValueError for another mode."""
    import numpy as np
    import torch

    if mode not in ("scan", "conv"):
        raise ValueError(f"unknown mode {mode!r}: use 'scan' or 'conv'")
    xs = _f64(x).cpu().numpy()
    a64, bc = _f64(a).cpu().numpy(), (_f64(b) * _f64(c)).cpu().numpy()
    L = xs.shape[-2]
    y = np.zeros(xs.shape, dtype=np.float64)
    h = np.zeros(xs.shape[:-2] + a64.shape)  # (..., C, N) with b folded into the readout c * b
    for t in range(L):
        h = a64 * h + xs[..., t, :, None]
        y[..., t, :] = (h * bc).sum(axis=-1)
    return torch.from_numpy(y).to(x.dtype).to(x.device)
