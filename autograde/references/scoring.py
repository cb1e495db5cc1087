"""Score references: einsum in float64, rounded once to the result dtype of the inputs."""
import numpy as np


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _dtype(*arrays):
    return np.result_type(*[np.asarray(a) for a in arrays])


def dot_scores(q, k):
    return np.einsum("...ld,...sd->...ls", *_f64(q, k)).astype(_dtype(q, k))


def scaled_dot_scores(q, k, scale=None):
    if scale is None:
        scale = 1.0 / np.sqrt(np.shape(q)[-1])
    return (np.einsum("...ld,...sd->...ls", *_f64(q, k)) * float(scale)).astype(_dtype(q, k))


def general_scores(q, k, W):
    return np.einsum("...la,ab,...sb->...ls", *_f64(q, W, k)).astype(_dtype(q, k, W))


def additive_scores(q, k, W_q, W_k, w_v):
    q64, k64, Wq, Wk, wv = _f64(q, k, W_q, W_k, w_v)
    qp = np.einsum("...la,ab->...lb", q64, Wq)
    kp = np.einsum("...sa,ab->...sb", k64, Wk)
    hidden = np.tanh(np.expand_dims(qp, -2) + np.expand_dims(kp, -3))
    return np.einsum("...lsb,b->...ls", hidden, wv).astype(_dtype(q, k, W_q, W_k, w_v))
