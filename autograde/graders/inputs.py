"""Input builders shared by the graders: every dimension distinct by default, only from the case's rng.

    q, k, v = qkv(t.rng)                          NumPy float64, (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)
    q, k, v = qkv(t.rng, torch=True, dtype="float32", L=9, S=13)
    mask = keep_mask(t.rng, (5, 7))               True = may attend, at least one key kept per query

Torch tensors are made from NumPy draws (the same seed gives the same numbers in both), so an oracle can
run on either.
"""
import numpy as np

# The house shapes (STYLE.md): every dimension distinct, so a transposed or swapped axis cannot pass.
B, H, L, S, D, D_V = 2, 3, 5, 7, 4, 6


def normal(rng, shape, dtype="float64", scale=1.0, torch=False, device="cpu"):
    """Standard normal draws times `scale`, in `dtype` (a NumPy or torch dtype name, bfloat16 included)."""
    x = rng.standard_normal(shape) * scale
    return as_dtype(x, dtype, torch=torch, device=device)


def as_dtype(x, dtype="float64", torch=False, device="cpu"):
    """A float64 array as `dtype`: a NumPy array, or a torch tensor when torch=True."""
    if not torch:
        return np.asarray(x).astype(dtype)
    import torch as _torch

    return _torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(getattr(_torch, dtype)).to(device)


def qkv(rng, lead=(B, H), L=L, S=S, D=D, D_v=D_V, dtype="float64", scale=1.0, torch=False, device="cpu"):
    """Queries (*lead, L, D), keys (*lead, S, D) and values (*lead, S, D_v)."""
    lead = tuple(lead)
    return (normal(rng, lead + (L, D), dtype, scale, torch, device),
            normal(rng, lead + (S, D), dtype, scale, torch, device),
            normal(rng, lead + (S, D_v), dtype, 1.0, torch, device))


def keep_mask(rng, shape, p_keep=0.6, every_row=True):
    """A boolean may-attend mask; with every_row each query keeps at least its first key."""
    mask = rng.random(shape) < p_keep
    if every_row:
        mask[..., 0] = True
    return mask


def keep_pattern(rng, n, p_keep=0.6):
    """A (n,) keep pattern with at least one kept and one dropped position (n >= 2)."""
    keep = rng.random(n) < p_keep
    if keep.all():
        keep[rng.integers(n)] = False
    if not keep.any():
        keep[rng.integers(n)] = True
    return keep


def causal(L, S=None):
    """The course's end-aligned causal mask (L, S): query i sees key j when j <= i + (S - L)."""
    S = L if S is None else S
    return np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L)
