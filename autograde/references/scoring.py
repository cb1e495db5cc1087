import numpy as np


def dot_scores(q, k):
    return np.einsum("...ld,...sd->...ls", q, k)


def scaled_dot_scores(q, k, scale=None):
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    return (np.einsum("...ld,...sd->...ls", q, k) * scale).astype(np.result_type(q, k), copy=False)


def general_scores(q, k, W):
    return np.einsum("...la,ab,...sb->...ls", q, W, k)


def additive_scores(q, k, W_q, W_k, w_v):
    qp = np.einsum("...la,ab->...lb", q, W_q)
    kp = np.einsum("...sa,ab->...sb", k, W_k)
    return np.einsum("...lsb,b->...ls", np.tanh(np.expand_dims(qp, -2) + np.expand_dims(kp, -3)), w_v)
