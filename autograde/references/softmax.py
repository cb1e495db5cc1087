import numpy as np


def softmax(x, axis=-1):
    x = np.asarray(x)
    # log-sum-exp form: exp(x - logsumexp(x)); independent of the max-subtraction in the solution
    m = np.max(x, axis=axis, keepdims=True)
    lse = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return np.exp(x - lse).astype(x.dtype, copy=False)


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
