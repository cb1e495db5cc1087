import numpy as np


def causal_mask(L, S=None):
    S = L if S is None else S
    return np.triu(np.ones((L, S), dtype=bool), k=S - L + 1) == False  # noqa: E712


def padding_mask(lengths, max_len):
    lengths = np.asarray(lengths)
    if np.any(lengths < 0) or np.any(lengths > max_len):
        raise ValueError("lengths out of range")
    out = np.zeros((len(lengths), max_len), dtype=bool)
    for b, n in enumerate(lengths):
        out[b, :n] = True
    return out
