"""Reference for attnlab.transformer: the encoder block computed in float64 NumPy from the state_dict, and
PyTorch's nn.TransformerEncoderLayer as the oracle.

`encoder_block` is written independently of the solution and of PyTorch's layer (einsum heads, an explicit
layer norm, erf GELU); tests/test_transformer_exercise.py cross-checks it against nn.TransformerEncoderLayer
on every row that sees a key. It keeps the course's rule where PyTorch gives NaN: a query that may attend to
no key gets zero weights, so its heads output zero and the attention sub-layer gives out_proj.bias.

`TransformerBlock` (the exercise's reference) holds its parameters in nn.Linear / nn.LayerNorm modules only
so that its state_dict has the exercise's keys; its forward is `encoder_block`, rounded once to x's dtype.
torch is imported on first use, so loading the graders does not import it.
"""
import functools
import math

import numpy as np

KEYS = ("q_proj", "k_proj", "v_proj", "out_proj", "ff1", "ff2", "norm1", "norm2")
EPS = 1e-5


def _np(t):
    return t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)


def encoder_block(params, x, mask=None, num_heads=1, norm_first=False, activation="relu"):
    """The block in float64 NumPy. params: '<name>.weight' / '<name>.bias' -> arrays (a state_dict);
    x (B, L, E); mask bool broadcastable to (B, H, L, L), True = may attend. Returns (B, L, E) float64."""
    p = {k: _np(v) for k, v in params.items()}
    x = _np(x)
    B, L, E = x.shape
    H, D = num_heads, E // num_heads

    def linear(name, h):
        return np.einsum("...i,oi->...o", h, p[name + ".weight"]) + p[name + ".bias"]

    def layer_norm(name, h):
        centred = h - h.mean(axis=-1, keepdims=True)
        var = (centred ** 2).mean(axis=-1, keepdims=True)  # biased, as LayerNorm
        return centred / np.sqrt(var + EPS) * p[name + ".weight"] + p[name + ".bias"]

    def attention(h):
        q, k, v = (linear(n, h).reshape(B, L, H, D) for n in ("q_proj", "k_proj", "v_proj"))
        scores = np.einsum("blhd,bshd->bhls", q, k) / math.sqrt(D)
        keep = np.ones((B, H, L, L), bool) if mask is None else np.broadcast_to(_np(mask) != 0, (B, H, L, L))
        scores = np.where(keep, scores, -np.inf)
        top = scores.max(axis=-1, keepdims=True)
        e = np.exp(scores - np.where(np.isfinite(top), top, 0.0))  # exactly 0 where masked
        total = e.sum(axis=-1, keepdims=True)
        weights = e / np.where(total > 0, total, 1.0)  # a row that sees no key stays all zero
        heads = np.einsum("bhls,bshd->blhd", weights, v).reshape(B, L, E)
        return linear("out_proj", heads)

    def feed_forward(h):
        a = linear("ff1", h)
        if activation == "relu":
            a = np.maximum(a, 0.0)
        else:
            a = 0.5 * a * (1.0 + np.vectorize(math.erf)(a / math.sqrt(2.0)))
        return linear("ff2", a)

    if norm_first:
        x = x + attention(layer_norm("norm1", x))
        return x + feed_forward(layer_norm("norm2", x))
    x = layer_norm("norm1", x + attention(x))
    return layer_norm("norm2", x + feed_forward(x))


def torch_oracle(params, x, mask=None, num_heads=1, norm_first=False, activation="relu"):
    """PyTorch's nn.TransformerEncoderLayer (batch_first, dropout 0) in float64 with the exercise's weights
    copied in: in_proj = cat(q, k, v), linear1 = ff1, linear2 = ff2; src_mask = ~mask (PyTorch's boolean
    masks mean *masked out*). Returns a float64 tensor (B, L, E), NaN on rows that see no key."""
    import torch
    from torch import nn

    p = {k: torch.as_tensor(v).detach().to(torch.float64).cpu() for k, v in params.items()}
    E, d_ff = p["q_proj.weight"].shape[0], p["ff1.weight"].shape[0]
    layer = nn.TransformerEncoderLayer(E, num_heads, d_ff, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first, dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([p[f"{n}_proj.weight"] for n in "qkv"]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([p[f"{n}_proj.bias"] for n in "qkv"]))
        for ours, theirs in (("out_proj", layer.self_attn.out_proj), ("ff1", layer.linear1), ("ff2", layer.linear2),
                             ("norm1", layer.norm1), ("norm2", layer.norm2)):
            theirs.weight.copy_(p[ours + ".weight"])
            theirs.bias.copy_(p[ours + ".bias"])
        layer.train()  # dropout is 0; training mode keeps PyTorch off its fused inference fast path
        src_mask = None if mask is None else ~torch.as_tensor(mask, dtype=torch.bool)
        return layer(torch.as_tensor(x).detach().to(torch.float64).cpu(), src_mask=src_mask)


@functools.cache
def _module_class():
    import torch
    from torch import nn

    class TransformerBlock(nn.Module):
        def __init__(self, d_model, num_heads, d_ff, norm_first=False, activation="relu"):
            super().__init__()
            if d_model % num_heads or activation not in ("relu", "gelu"):
                raise ValueError("d_model must be divisible by num_heads; activation 'relu' or 'gelu'")
            self.num_heads, self.norm_first, self.activation = num_heads, norm_first, activation
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(self, name, nn.Linear(d_model, d_model))
            self.ff1, self.ff2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
            self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=EPS), nn.LayerNorm(d_model, eps=EPS)

        def forward(self, x, mask=None):
            out = encoder_block(self.state_dict(), x, mask, self.num_heads, self.norm_first, self.activation)
            return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)

    return TransformerBlock


class TransformerBlock:
    """The reference block. A stand-in class: instantiating it returns an instance of the nn.Module built
    by `_module_class` (torch is imported then, not when the graders load)."""

    def __new__(cls, *args, **kwargs):
        return _module_class()(*args, **kwargs)
