"""References for attnlab.applications (notebook 11), written unlike the solution.

Each computes in float64 and rounds once to the inputs' dtype. Where the solution slices a padded
alignment, builds two half-scores or concatenates features, these build the explicit object the paper
writes down: a banded (S, S) convolution matrix per filter, the (H, N, N, 2 D_out) tensor of all
concatenated pairs [z_i || z_j], the activation unit's four weight blocks, a loop over documents and
sentences, and the affinity matrix flattened over its leading dims. `tests/test_applications_exercise.py`
cross-checks every one of them against an independent PyTorch implementation (F.conv1d, F.leaky_relu,
torch.softmax with masked_fill, nn.PReLU...).
"""
import numpy as np

from .softmax import masked_softmax


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# ---------------------------------------------------------------------------- location-sensitive
def conv_matrices(filters, S):
    """(K, S, S) banded matrices M with (alpha @ M[k].T)[j] = sum_r F[k, r] alpha[j + r - (R - 1) / 2]."""
    F = np.asarray(filters, dtype=np.float64)
    K, R = F.shape
    half = (R - 1) // 2
    M = np.zeros((K, S, S))
    for j in range(S):
        for jj in range(S):
            r = jj - j + half  # the tap of filter k that multiplies alpha[jj] for frame j
            if 0 <= r < R:
                M[:, j, jj] = F[:, r]
    return M


def location_features(prev_weights, filters):
    """(B, S, K) location features f_j of the previous alignment (zero padding, centred, not flipped)."""
    alpha = np.asarray(prev_weights, dtype=np.float64)
    return np.einsum("ksj,bj->bsk", conv_matrices(filters, alpha.shape[-1]), alpha)


def location_sensitive_scores(decoder_state, encoder_outputs, prev_weights, W, V, U, filters, w, b):
    if np.shape(filters)[-1] % 2 == 0:
        raise ValueError(f"the filter width must be odd, got {np.shape(filters)[-1]}")
    dtype = np.asarray(encoder_outputs).dtype
    s, h, W_, V_, U_, w_, b_ = _f64(decoder_state, encoder_outputs, W, V, U, w, b)
    f = location_features(prev_weights, filters)
    pre = (np.einsum("bd,da->ba", s, W_)[:, None, :] + np.einsum("bsh,ha->bsa", h, V_)
           + np.einsum("bsk,ka->bsa", f, U_) + b_)
    return np.einsum("bsa,a->bs", np.tanh(pre), w_).astype(dtype)


# ------------------------------------------------------------------------------------------- GAT
def gat_scores(h, W, a, negative_slope=0.2):
    """(H, N, N) float64 LeakyReLU(a^T [z_i || z_j]) from the explicit tensor of concatenated pairs."""
    h, W, a = _f64(h, W, a)
    z = np.einsum("nd,hde->hne", h, W)  # (H, N, D_out)
    H, N, D_out = z.shape
    pairs = np.concatenate([np.broadcast_to(z[:, :, None, :], (H, N, N, D_out)),
                            np.broadcast_to(z[:, None, :, :], (H, N, N, D_out))], axis=-1)  # [z_i || z_j]
    e = np.einsum("hijc,hc->hij", pairs, a)
    return np.maximum(e, 0.0) + negative_slope * np.minimum(e, 0.0)


def gat_layer(h, adjacency, W, a, negative_slope=0.2, concat=True):
    dtype = np.asarray(h).dtype
    e = gat_scores(h, W, a, negative_slope)
    H, N, _ = e.shape
    weights = masked_softmax(e, np.broadcast_to(np.asarray(adjacency, bool), e.shape))  # float64
    z = np.einsum("nd,hde->hne", *_f64(h, W))
    heads = [weights[k] @ z[k] for k in range(H)]  # H of (N, D_out)
    out = np.concatenate(heads, axis=1) if concat else sum(heads) / H
    return out.astype(dtype), weights.astype(dtype)


# ------------------------------------------------------------------------------------------- DIN
def din_weights(candidate, history, params):
    """(B, S) float64 activation-unit outputs, from W1 split into its four (D, A) blocks."""
    c, h = _f64(candidate, history)
    W1, b1, alpha, w2, b2 = _f64(params["W1"], params["b1"], params["alpha"], params["w2"], params["b2"])
    D = h.shape[-1]
    W_h, W_c, W_diff, W_prod = (W1[k * D:(k + 1) * D] for k in range(4))
    pre = (np.einsum("bsd,da->bsa", h, W_h) + (c @ W_c)[:, None, :]
           + np.einsum("bsd,da->bsa", h - c[:, None, :], W_diff)
           + np.einsum("bsd,da->bsa", h * c[:, None, :], W_prod) + b1)
    act = np.maximum(pre, 0.0) + alpha * np.minimum(pre, 0.0)  # PReLU
    return np.einsum("bsa,a->bs", act, w2) + b2


def target_attention_pooling(candidate, history, mask, params):
    dtype = np.asarray(history).dtype
    weights = din_weights(candidate, history, params)
    if mask is not None:
        weights = weights * np.asarray(mask, bool)
    pooled = np.einsum("bs,bsd->bd", weights, np.asarray(history, np.float64))
    return pooled.astype(dtype), weights.astype(dtype)


# ---------------------------------------------------------------------------------- hierarchical
def _attend(items, keep, params):
    """One level of HAN on (n, D) float64 items with (n,) keep: (pooled (D,), weights (n,))."""
    W, b, u = _f64(params["W"], params["b"], params["u"])
    weights = np.zeros(len(items))
    if keep.any():
        scores = np.tanh(items[keep] @ W + b) @ u
        e = np.exp(scores - scores.max())
        weights[keep] = e / e.sum()
    return weights @ items, weights


def hierarchical_attention_pool(word_states, word_params, sentence_params, mask=None):
    x = np.asarray(word_states)
    dtype = x.dtype
    x = x.astype(np.float64)
    B, N, T, D = x.shape
    keep = np.ones((B, N, T), bool) if mask is None else np.asarray(mask, bool)
    document, sentence_weights, word_weights = np.zeros((B, D)), np.zeros((B, N)), np.zeros((B, N, T))
    for b in range(B):
        sentences = np.zeros((N, D))
        for n in range(N):
            sentences[n], word_weights[b, n] = _attend(x[b, n], keep[b, n], word_params)
        document[b], sentence_weights[b] = _attend(sentences, keep[b].any(axis=-1), sentence_params)
    return document.astype(dtype), sentence_weights.astype(dtype), word_weights.astype(dtype)


# ---------------------------------------------------------------------------------- co-attention
def co_attention(q_states, d_states, q_mask=None, d_mask=None):
    dtype = np.asarray(q_states).dtype
    q, d = _f64(q_states, d_states)
    lead, (L, D), S = q.shape[:-2], q.shape[-2:], d.shape[-2]
    q, d = q.reshape(-1, L, D), d.reshape(-1, S, D)  # (M, L, D), (M, S, D): leading dims flattened
    M = q.shape[0]
    def flat(mask, n):  # (M, n)
        if mask is None:
            return np.ones((M, n), bool)
        return np.broadcast_to(np.asarray(mask, bool), lead + (n,)).reshape(M, n)

    qm, dm = flat(q_mask, L), flat(d_mask, S)
    affinity = np.einsum("mld,msd->mls", q, d)
    q_weights = masked_softmax(affinity, np.broadcast_to(dm[:, None, :], affinity.shape))  # over S
    d_weights = masked_softmax(np.einsum("mls->msl", affinity), np.broadcast_to(qm[:, None, :], (M, S, L)))
    q_context = np.einsum("mls,msd->mld", q_weights, d)
    d_context = np.concatenate([np.einsum("msl,mld->msd", d_weights, q),
                                np.einsum("msl,mld->msd", d_weights, q_context)], axis=-1)
    out = (q_context.reshape(lead + (L, D)), d_context.reshape(lead + (S, 2 * D)),
           q_weights.reshape(lead + (L, S)), d_weights.reshape(lead + (S, L)))
    return tuple(o.astype(dtype) for o in out)
