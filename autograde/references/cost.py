"""References for attnlab.cost, written independently of the solutions.

- attention_flops: the visible pairs are summed query row by query row from the mask's definition
  (query i sees key j when j <= i + S - L), not from a closed form; 2 FLOPs per multiply-add;
- attention_memory_bytes: a list of the tensors held, each as a (shape, bytes per element), summed with
  math.prod over the shapes;
- kv_cache_bytes: the shapes of the two cached tensors of one layer, times the layers.

Everything is Python int arithmetic (exact at any size). Bytes per element come from a table of names;
anything else goes through np.dtype.
"""
import math

import numpy as np

_ITEMSIZE = {"float16": 2, "half": 2, "bfloat16": 2, "float32": 4, "float": 4, "single": 4, "float64": 8,
             "double": 8}


def itemsize(dtype):
    if type(dtype) is int:
        if dtype <= 0:
            raise ValueError("itemsize must be positive")
        return dtype
    if isinstance(dtype, str):
        name = dtype[len("torch."):] if dtype.startswith("torch.") else dtype
        if name in _ITEMSIZE:
            return _ITEMSIZE[name]
        return np.dtype(name).itemsize
    size = getattr(dtype, "itemsize", None)
    if isinstance(size, int):
        return size
    return np.dtype(dtype).itemsize


def _check(*sizes):
    for s in sizes:
        if int(s) < 0:
            raise ValueError(f"sizes must be non-negative, got {s}")
    return [int(s) for s in sizes]


def visible_pairs(L, S, causal):
    """(query, key) pairs attended to by one (batch, head), counted row by row."""
    if not causal:
        return L * S
    total = 0
    for i in range(L):
        last = i + S - L  # the last key query i may see (end-aligned)
        total += max(0, min(S - 1, last) + 1)
    return total


def attention_flops(B, H, L, S, D, D_v, causal=False):
    B, H, L, S, D, D_v = _check(B, H, L, S, D, D_v)
    pairs = visible_pairs(L, S, causal)
    scores = pairs * D      # multiply-adds of q . k over the visible pairs
    mixing = pairs * D_v    # multiply-adds of weights @ v
    return B * H * 2 * (scores + mixing)


def attention_memory_bytes(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    B, H, L, S, D, D_v = _check(B, H, L, S, D, D_v)
    size = itemsize(dtype)
    held = [((B, H, L, D), size), ((B, H, S, D), size), ((B, H, S, D_v), size), ((B, H, L, D_v), size)]
    if materialize:
        held.append(((B, H, L, S), size))
    else:
        held.append(((B, H, L), size if size > 4 else 4))
    return sum(math.prod(shape) * nbytes for shape, nbytes in held)


def kv_cache_bytes(num_layers, B, H_kv, S, D, dtype, D_v=None):
    D_v = D if D_v is None else D_v
    num_layers, B, H_kv, S, D, D_v = _check(num_layers, B, H_kv, S, D, D_v)
    size = itemsize(dtype)
    keys, values = (B, H_kv, S, D), (B, H_kv, S, D_v)
    return num_layers * (math.prod(keys) + math.prod(values)) * size
