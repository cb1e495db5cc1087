"""Multi-head references.

attention_dropout is random: no built-in gives the same numbers (PyTorch's F.dropout draws from torch's
own generator), so the grader checks properties instead of comparing with this function's output. This
reference is what a dependency call gets (an exercise that builds on attention_dropout) and what the
grader's own self-test runs. It draws the *drop* decisions (u < p) where the solution draws the keep
decisions (u < 1 - p), and scales in float64, rounding once to the input's dtype.

The other references (split_heads, merge_heads, multi_head_attention, layer_norm, feed_forward) answer
dependency calls and the diagnosis; the graders compare with PyTorch (the torch_* oracles below) where a
built-in exists. Queries that see no key follow the course's rule (zero weights, output b_o).
"""
import math

import numpy as np


def attention_dropout(weights, p, rng):
    w = np.asarray(weights)
    p = float(p)
    if not (0.0 <= p < 1.0):  # also rejects NaN
        raise ValueError(f"p must satisfy 0 <= p < 1, got {p}")
    if p == 0.0:
        return w.copy()
    drop = rng.random(w.shape) < p  # (..., L, S): True with probability p
    scaled = w.astype(np.float64) * (1.0 / (1.0 - p))
    scaled[drop] = 0.0
    return scaled.astype(w.dtype, copy=False)


# ------------------------------------------------------------------------ heads, layer norm, feed-forward
# Written independently of the solution (which reshapes and transposes, and calls notebook 02's attention):
# heads are cut with np.split and stacked, merged by concatenation; attention is an einsum over weights
# reshaped (E, H, D); everything is computed in float64 and rounded once to the input's dtype.
PARAM_NAMES = ("W_q", "W_k", "W_v", "W_o", "b_q", "b_k", "b_v", "b_o")


def split_heads(x, num_heads):
    x = np.asarray(x)
    if x.ndim != 3 or num_heads < 1 or x.shape[-1] % num_heads:
        raise ValueError(f"cannot split width {x.shape[-1]} of an array of shape {x.shape} into {num_heads} heads")
    return np.stack(np.split(x, num_heads, axis=-1), axis=1)  # H blocks (B, L, D) -> (B, H, L, D)


def merge_heads(x):
    x = np.asarray(x)
    return np.concatenate([x[:, h] for h in range(x.shape[1])], axis=-1)  # H blocks (B, L, D) -> (B, L, E)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def multi_head_attention(x_q, x_kv, params, num_heads, mask=None):
    dtype = np.asarray(x_q).dtype
    xq, xkv = _f64(x_q), _f64(x_kv)
    p = {name: _f64(params[name]) for name in PARAM_NAMES}
    B, L, E = xq.shape
    S = xkv.shape[1]
    H = num_heads
    D = E // H

    def heads(x, name):  # (B, N, E) -> (B, N, H, D): the projection's columns grouped by head
        return np.einsum("bne,ehd->bnhd", x, p["W_" + name].reshape(E, H, D)) + p["b_" + name].reshape(H, D)

    scores = np.einsum("blhd,bshd->bhls", heads(xq, "q"), heads(xkv, "k")) / math.sqrt(D)  # (B, H, L, S)
    keep = np.ones((B, H, L, S), bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), (B, H, L, S))
    top = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(np.where(keep, scores, 0.0) - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = e / np.where(total > 0, total, 1.0)  # a row that sees no key stays all zero
    mixed = np.einsum("bhls,bshd->blhd", weights, heads(xkv, "v"))  # (B, L, H, D)
    out = np.einsum("blhd,hde->ble", mixed, p["W_o"].reshape(H, D, E)) + p["b_o"]
    return out.astype(dtype), weights.astype(dtype)


def layer_norm(x, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    w = x.astype(np.float64)
    E = w.shape[-1]
    mean = w.sum(axis=-1, keepdims=True) / E
    var = np.square(w - mean).sum(axis=-1, keepdims=True) / E
    out = (w - mean) * (1.0 / np.sqrt(var + float(eps))) * _f64(gamma) + _f64(beta)
    return out.astype(x.dtype)


def gelu(h, approximate="none"):
    """GELU in float64: the exact erf form, or the tanh approximation (for naming that mistake)."""
    h = _f64(h)
    if approximate == "tanh":
        return 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
    return 0.5 * h * np.vectorize(math.erfc, otypes=[np.float64])(-h / math.sqrt(2.0))  # Phi(h) = erfc(-h/√2)/2


def feed_forward(x, W_1, b_1, W_2, b_2, activation="gelu"):
    if activation not in ("gelu", "relu"):
        raise ValueError(f"unknown activation {activation!r}: expected 'gelu' or 'relu'")
    x = np.asarray(x)
    h = np.einsum("...e,ef->...f", _f64(x), _f64(W_1)) + _f64(b_1)
    a = gelu(h) if activation == "gelu" else np.where(h > 0, h, 0.0)
    return (np.einsum("...f,fe->...e", a, _f64(W_2)) + _f64(b_2)).astype(x.dtype)


# ------------------------------------------------------------------------------------- PyTorch oracles
def torch_multi_head_attention(x_q, x_kv, params, num_heads, mask=None):
    """nn.MultiheadAttention(E, H, batch_first=True) in float64 with the exercise's weights copied in:
    in_proj_weight = cat(W_q.T, W_k.T, W_v.T) (PyTorch stores (out, in)), out_proj.weight = W_o.T, and
    attn_mask = ~mask as (B * H, L, S) (PyTorch's boolean masks mean *masked out*). Returns float64 arrays
    (output (B, L, E), weights (B, H, L, S)); a query that sees no key gets zero weights and output b_o (the
    course's rule; PyTorch gives NaN there)."""
    import torch
    from torch import nn

    xq, xkv = (torch.from_numpy(np.array(a, dtype=np.float64)) for a in (x_q, x_kv))
    p = {name: torch.from_numpy(np.array(params[name], dtype=np.float64)) for name in PARAM_NAMES}
    B, L, E = xq.shape
    S = xkv.shape[1]
    H = num_heads
    mha = nn.MultiheadAttention(E, H, dropout=0.0, bias=True, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([p["W_q"].T, p["W_k"].T, p["W_v"].T]))
        mha.in_proj_bias.copy_(torch.cat([p["b_q"], p["b_k"], p["b_v"]]))
        mha.out_proj.weight.copy_(p["W_o"].T)
        mha.out_proj.bias.copy_(p["b_o"])
        keep = None
        attn_mask = None
        if mask is not None:
            keep = np.broadcast_to(np.asarray(mask, bool), (B, H, L, S))
            attn_mask = torch.from_numpy(~keep.reshape(B * H, L, S))
        out, weights = mha(xq, xkv, xkv, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)
    out, weights = out.numpy().copy(), weights.numpy().copy()
    if keep is not None:
        dead = ~keep.any(axis=-1)  # (B, H, L): a head of a query that sees no key
        weights[dead] = 0.0
        dead_query = dead.all(axis=1)  # (B, L): every head sees nothing -> output b_o
        out[dead_query] = p["b_o"].numpy()
        partly = dead.any(axis=1) & ~dead_query  # (B, L): some heads see nothing; PyTorch's NaN fills the row
        if partly.any():
            f64 = {name: _f64(params[name]) for name in PARAM_NAMES}
            out[partly] = multi_head_attention(_f64(x_q), _f64(x_kv), f64, num_heads, mask)[0][partly]
    return out, weights


def torch_layer_norm(x, gamma, beta, eps=1e-5):
    """F.layer_norm over the last axis in float64."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(x, dtype=np.float64))
    return F.layer_norm(t, (t.shape[-1],), torch.from_numpy(_f64(gamma).copy()), torch.from_numpy(_f64(beta).copy()),
                        float(eps)).numpy()


def torch_feed_forward(x, W_1, b_1, W_2, b_2, activation="gelu", approximate="none"):
    """F.linear(act(F.linear(x, W_1.T, b_1)), W_2.T, b_2) in float64, act F.relu or F.gelu (approximate="none"
    is the exact erf form; "tanh" the approximation, to recognise that mistake)."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in
         dict(x=x, W_1=W_1, b_1=b_1, W_2=W_2, b_2=b_2).items()}
    h = F.linear(t["x"], t["W_1"].T, t["b_1"])
    a = F.relu(h) if activation == "relu" else F.gelu(h, approximate=approximate)
    return F.linear(a, t["W_2"].T, t["b_2"]).numpy()
