"""Seq2seq attention references, and the PyTorch float64 oracles the grader compares with.

The NumPy references answer dependency calls and the diagnosis' replays; they are written unlike the
solution (einsum over explicit (B, S, A) tensors, the concatenation built for "concat", a loop over decoder
steps for the coverage loss, the Gumbel-max trick for sampling) and round once to the inputs' dtype. The
`oracle_*` functions compute the same in PyTorch float64 (torch.tanh, torch.softmax with masked_fill,
torch.sigmoid, torch.cumsum, torch.minimum), with the course's convention for a fully masked row (zero
weights, zero context) where torch.softmax would give NaN; tests/test_seq2seq_exercise.py cross-checks the
two. Each returns float64 NumPy arrays; the grader rounds them once to the dtype the learner must return.
"""
import numpy as np

from .softmax import masked_softmax


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _finish(weights, encoder_outputs, dtype):
    context = np.einsum("bs,bsh->bh", weights, encoder_outputs)
    return context.astype(dtype), weights.astype(dtype)


def _all_kept(shape, mask):
    return np.ones(shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), shape)


# ------------------------------------------------------------------------------- NumPy references
def bahdanau_attention(decoder_state, encoder_outputs, W_s, W_h, w_v, mask=None):
    dtype = np.asarray(encoder_outputs).dtype
    s, h, Ws, Wh, wv = _f64(decoder_state, encoder_outputs, W_s, W_h, w_v)
    hidden = np.tanh(np.einsum("bd,da->ba", s, Ws)[:, None, :] + np.einsum("bsh,ha->bsa", h, Wh))
    scores = np.einsum("bsa,a->bs", hidden, wv)
    return _finish(masked_softmax(scores, _all_kept(scores.shape, mask)), h, dtype)


def luong_attention(decoder_state, encoder_outputs, method, params, mask=None):
    dtype = np.asarray(encoder_outputs).dtype
    s, h = _f64(decoder_state, encoder_outputs)
    if method == "dot":
        scores = np.einsum("bd,bsd->bs", s, h)
    elif method == "general":
        scores = np.einsum("bd,de,bse->bs", s, np.asarray(params["W"], np.float64), h)
    elif method == "concat":
        W, v = _f64(params["W"], params["v"])
        B, S = h.shape[:2]
        pairs = np.concatenate([np.broadcast_to(s[:, None, :], (B, S, s.shape[-1])), h], axis=-1)  # [s; h_j]
        scores = np.einsum("bsa,a->bs", np.tanh(np.einsum("bsk,ka->bsa", pairs, W)), v)
    else:
        raise ValueError(f"method must be 'dot', 'general' or 'concat', got {method!r}")
    return _finish(masked_softmax(scores, _all_kept(scores.shape, mask)), h, dtype)


def local_p_centre(decoder_state, W_p, v_p, S):
    """The predicted centre p = (S - 1) * sigmoid(tanh(s W_p) . v_p), float64 (B,)."""
    s, Wp, vp = _f64(decoder_state, W_p, v_p)
    z = np.einsum("ba,a->b", np.tanh(s @ Wp), vp)
    return (S - 1) * np.exp(-np.logaddexp(0.0, -z))  # sigmoid(z) = exp(-log(1 + exp(-z)))


def local_p_attention(decoder_state, encoder_outputs, W_p, v_p, window, mask=None):
    dtype = np.asarray(encoder_outputs).dtype
    s, h = _f64(decoder_state, encoder_outputs)
    B, S = h.shape[:2]
    p = local_p_centre(decoder_state, W_p, v_p, S)
    weights = np.zeros((B, S))
    keep = _all_kept((B, S), mask)
    for b in range(B):  # one row at a time: the window as an explicit list of positions
        lo, hi = int(np.ceil(p[b] - window)), int(np.floor(p[b] + window))
        inside = [j for j in range(max(lo, 0), min(hi, S - 1) + 1) if keep[b, j]]
        if not inside:
            continue
        scores = h[b, inside] @ s[b]
        e = np.exp(scores - scores.max())
        gauss = np.exp(-((np.array(inside) - p[b]) ** 2) / (2 * (window / 2) ** 2))
        weights[b, inside] = e / e.sum() * gauss
    return _finish(weights, h, dtype)


def coverage_attention(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v, mask=None):
    dtype = np.asarray(encoder_outputs).dtype
    s, h, c, Ws, Wh, wc, wv = _f64(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v)
    hidden = np.tanh(np.einsum("bd,da->ba", s, Ws)[:, None, :] + np.einsum("bsh,ha->bsa", h, Wh)
                     + np.einsum("bs,a->bsa", c, wc))
    scores = np.einsum("bsa,a->bs", hidden, wv)
    return _finish(masked_softmax(scores, _all_kept(scores.shape, mask)), h, dtype)


def coverage_loss(attention_history):
    a = np.asarray(attention_history)
    history = a.astype(np.float64)
    covered = np.zeros(history[:, 0].shape)  # (B, S): nothing covered before the first step
    loss = np.zeros(history.shape[0])
    for t in range(history.shape[1]):  # step by step, as a decoder would accumulate it
        loss += np.minimum(history[:, t], covered).sum(axis=-1)
        covered = covered + history[:, t]
    return loss.astype(a.dtype)


def sample_hard_attention(weights, rng):
    """The Gumbel-max trick: argmax_j (log w_j + g_j) with g_j ~ Gumbel(0, 1) is a sample of w."""
    w = np.asarray(weights)
    w64 = w.astype(np.float64)
    with np.errstate(divide="ignore"):
        keys = np.log(w64) + rng.gumbel(size=w.shape)  # log 0 = -inf: never the argmax
    index = np.argmax(keys, axis=-1)
    live = w64.sum(axis=-1) > 0
    one_hot = (np.arange(w.shape[-1]) == index[..., None]) & live[..., None]
    return one_hot.astype(w.dtype)


# ------------------------------------------------------------------------------- PyTorch oracles
def _torch():
    import torch

    return torch


def _tensors(*arrays):
    torch = _torch()
    return [torch.from_numpy(np.array(a, dtype=np.float64)) for a in arrays]


def _oracle_finish(scores, h, mask):
    """torch.softmax over the kept positions (masked_fill -inf), fully masked rows set to zero."""
    torch = _torch()
    keep = torch.ones_like(scores, dtype=torch.bool) if mask is None else \
        torch.from_numpy(np.broadcast_to(np.asarray(mask, dtype=bool), tuple(scores.shape)).copy())
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    weights = torch.where(keep.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))  # NaN rows -> 0
    context = torch.bmm(weights[:, None, :], h)[:, 0, :]
    return context.numpy(), weights.numpy()


def oracle_bahdanau(decoder_state, encoder_outputs, W_s, W_h, w_v, mask=None):
    s, h, Ws, Wh, wv = _tensors(decoder_state, encoder_outputs, W_s, W_h, w_v)
    scores = _torch().tanh((s @ Ws)[:, None, :] + h @ Wh) @ wv
    return _oracle_finish(scores, h, mask)


def oracle_luong(decoder_state, encoder_outputs, method, params, mask=None):
    torch = _torch()
    s, h = _tensors(decoder_state, encoder_outputs)
    if method == "dot":
        scores = torch.einsum("bd,bsd->bs", s, h)
    elif method == "general":
        (W,) = _tensors(params["W"])
        scores = torch.nn.functional.bilinear(h, s[:, None, :].expand(-1, h.shape[1], -1), W.T[None])[..., 0]
    elif method == "concat":
        W, v = _tensors(params["W"], params["v"])
        pairs = torch.cat([s[:, None, :].expand(-1, h.shape[1], -1), h], dim=-1)  # (B, S, D_s + D_h)
        scores = torch.tanh(torch.nn.functional.linear(pairs, W.T)) @ v
    else:
        raise ValueError(method)
    return _oracle_finish(scores, h, mask)


def oracle_local_p(decoder_state, encoder_outputs, W_p, v_p, window, mask=None):
    """(context, weights, p) in float64."""
    torch = _torch()
    s, h, Wp, vp = _tensors(decoder_state, encoder_outputs, W_p, v_p)
    S = h.shape[1]
    p = (S - 1) * torch.sigmoid(torch.tanh(s @ Wp) @ vp)  # (B,)
    distance = torch.arange(S, dtype=torch.float64)[None, :] - p[:, None]  # (B, S)
    keep = distance.abs() <= window
    if mask is not None:
        keep = keep & torch.from_numpy(np.asarray(mask, dtype=bool))
    scores = torch.einsum("bd,bsd->bs", s, h).masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(keep.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))
    weights = weights * torch.exp(-distance ** 2 / (2 * (window / 2) ** 2))
    context = torch.einsum("bs,bsh->bh", weights, h)
    return context.numpy(), weights.numpy(), p.numpy()


def oracle_coverage(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v, mask=None):
    s, h, c, Ws, Wh, wc, wv = _tensors(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v)
    scores = _torch().tanh((s @ Ws)[:, None, :] + h @ Wh + c[:, :, None] * wc) @ wv
    return _oracle_finish(scores, h, mask)


def oracle_coverage_loss(attention_history):
    torch = _torch()
    (a,) = _tensors(attention_history)
    T = a.shape[1]
    earlier = torch.tril(torch.ones(T, T, dtype=torch.float64), diagonal=-1)  # (T, T): step t sums steps t' < t
    before = torch.einsum("tu,bus->bts", earlier, a)  # (B, T, S) the coverage before each step
    return torch.minimum(a, before).sum(dim=(1, 2)).numpy()
