"""Multi-head references.

attention_dropout is random: no built-in gives the same numbers (PyTorch's F.dropout draws from torch's
own generator), so the grader checks properties instead of comparing with this function's output. This
reference is what a dependency call gets (an exercise that builds on attention_dropout) and what the
grader's own self-test runs. It draws the *drop* decisions (u < p) where the solution draws the keep
decisions (u < 1 - p), and scales in float64, rounding once to the input's dtype.
"""
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
