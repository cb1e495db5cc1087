"""Softmax references. Computed in float64 and rounded once to the input's dtype, so the oracle is the
correctly rounded answer (a float32 reference would carry its own rounding error into every comparison)."""
import numpy as np


def softmax(x, axis=-1):
    x = np.asarray(x)
    w = x.astype(np.float64)
    # log-sum-exp form: exp(x - logsumexp(x)); independent of the max-subtraction in the solution
    m = np.max(w, axis=axis, keepdims=True)
    lse = m + np.log(np.sum(np.exp(w - m), axis=axis, keepdims=True))
    return np.exp(w - lse).astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)


def masked_softmax(x, mask, axis=-1):
    x = np.asarray(x)
    keep = np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)
    work = np.moveaxis(np.where(keep, x, 0.0).astype(np.float64), axis, -1)
    k = np.moveaxis(keep, axis, -1)
    out = np.zeros_like(work)
    rows = k.any(axis=-1)
    for idx in zip(*np.nonzero(rows)):  # row by row: slow and obviously right
        vals = work[idx][k[idx]]
        e = np.exp(vals - vals.max())
        out[idx][k[idx]] = e / e.sum()
    return np.moveaxis(out, -1, axis).astype(x.dtype, copy=False)
