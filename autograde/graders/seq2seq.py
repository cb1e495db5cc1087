"""Grader for attnlab.seq2seq (notebook 03): attention for one step of a recurrent decoder.

Oracles: PyTorch in float64 (autograde/references/seq2seq.py: torch.tanh, torch.softmax with masked_fill
and fully masked rows set to zero, torch.sigmoid, F.bilinear, F.linear, torch.cumsum/torch.minimum over a
triangular matrix), rounded once to the inputs' dtype; our NumPy references answer dependency calls
(softmax.softmax and softmax.masked_softmax from notebook 01 are answered by their references too).
`sample_hard_attention` is random: it is graded by the form of its output, statistics of one large call
(6 binomial standard deviations) and replay of the generator state, like multihead.attention_dropout.

Tolerances follow the conditioning of the computation. A correct program rounds the scores in the
inputs' dtype: for an additive score w_v . tanh(x) with x = s W_s + h_j W_h (+ c_j w_c) the error is
about eps * sum_a |w_v[a]| (1 + xa[a] (1 - tanh(x[a])^2)), xa the same sum taken over absolute values
(rounding in x, damped by tanh' where tanh saturates); for a dot score eps * |s|.|h_j|; the weights get
`exp_rtol` of the largest such magnitude over kept positions, the context the same relative error times
max |h| on top of the table's atol. local-p adds the rounding of its centre p = (S - 1) sigmoid(z) seen
through the Gaussian, whose log has slope |j - p| / sigma^2 <= 4 / window. Masked weights must be exactly
0; tiny leftovers are named before values are compared.

Every case uses distinct sizes (B=2, S=7, D_s=4, D_h=6, A=5 style), masks with at least one dropped
position per row, fully masked rows, and kept scores far below zero with masked ones above them, where
multiplying the scores by the mask (a masked score of 0 wins the max) fails.
"""
import numpy as np

from ..compare import describe_type, dtype_hint
from ..framework import DTYPE_HINT, Exercise
from ..references import seq2seq as ref
from ..references import softmax as ref_softmax
from ..tolerances import EPS, exp_rtol, tolerance
from .softmax import require_exact_zeros
from .inputs import keep_pattern

B, S, D_S, D_H, A = 2, 7, 4, 6, 5
SOFTMAX_DEPS = ("softmax.softmax", "softmax.masked_softmax")

# --------------------------------------------------------------------------------------- hints
NO_TANH_HINT = ("the additive score has a tanh: w_v . tanh(s W_s + h_j W_h); without it the score is "
                "(s W_s) . w_v + (h_j W_h) . w_v, and the softmax over j cancels the decoder-state term")
TANH_AFTER_HINT = ("apply tanh to the A-dim hidden vector s W_s + h_j W_h, then take the dot with w_v: "
                   "tanh(x) @ w_v, not tanh(x @ w_v)")
IGNORES_MASK_HINT = "apply the mask: a position where mask is False must get exactly 0 weight"
INVERTED_MASK_HINT = ("True in the mask means may attend (PyTorch's boolean attn_mask convention): keep the True "
                      "positions")
BATCH_AXIS_HINT = ("take the softmax over the source positions S (axis -1 of the (B, S) scores), not over the "
                   "batch axis: each row of weights sums to 1")
MULTIPLY_HINT = ("mask the scores with np.where(mask, scores, -np.inf) (or masked_softmax), not scores * mask: a "
                 "masked score of 0 is not excluded, and when every kept score is far below 0 it wins the max and "
                 "the kept exps underflow to 0")
FULL_ROW_HINT = ("a fully masked row must get zero weights and a zero context: filling masked scores with a large "
                 "negative number (-1e9) gives that row uniform weights 1/S instead")
NAN_ROW_HINT = ("a fully masked row must get zero weights and a zero context, not NaN: -inf scores everywhere give "
                "exp(-inf - (-inf)) = NaN; use masked_softmax, which guards that row")
AFTER_SOFTMAX_HINT = ("apply the mask before the softmax (masked_softmax), not to the weights after it: weights * mask "
                      "leaves kept weights that no longer sum to 1")
ORDER_HINT = "return (context, weights) in that order: context (B, D_h), weights (B, S)"
PROJECTED_CONTEXT_HINT = ("the context is the weighted average of the encoder states themselves, weights @ "
                          "encoder_outputs (B, D_h), not of their projections encoder_outputs @ W_h (B, A)")
ZERO_HINT = ("masked positions must get exactly 0 weight: a finite fill (scores - 30, -1e4) or an epsilon leaves them "
             "a tiny weight; use masked_softmax, or zero the masked weights with np.where(mask, ..., 0)")


def _row_mask(rng, B, S, full_rows=()):
    """(B, S) bool: every row keeps something and drops something, except the rows listed, which keep nothing."""
    mask = np.stack([keep_pattern(rng, S) for _ in range(B)])
    for b in full_rows:
        mask[b] = False
    return mask


# ---------------------------------------------------------------------------------- tolerances
def _abs_pre(s, h, W_s, W_h, coverage=None, w_c=None):
    """(x, xa): the pre-activations of an additive score (B, S, A) and the same sums over absolute values."""
    s, h, W_s, W_h = (np.asarray(a, np.float64) for a in (s, h, W_s, W_h))
    x = (s @ W_s)[:, None, :] + h @ W_h
    xa = (np.abs(s) @ np.abs(W_s))[:, None, :] + np.abs(h) @ np.abs(W_h)
    if coverage is not None:
        c, wc = np.asarray(coverage, np.float64), np.asarray(w_c, np.float64)
        x = x + c[:, :, None] * wc
        xa = xa + np.abs(c)[:, :, None] * np.abs(wc)
    return x, xa


def _additive_size(x, xa, w_v):
    """(B, S) bound on the rounding of w_v . tanh(x), in units of eps."""
    return (np.abs(np.asarray(w_v, np.float64)) * (1 + xa * (1 - np.tanh(x) ** 2))).sum(axis=-1)


def _dot_size(s, h):
    """(B, S): |s| . |h_j|, the rounding of a dot score in units of eps."""
    return np.einsum("bd,bsd->bs", np.abs(np.asarray(s, np.float64)), np.abs(np.asarray(h, np.float64)))


def _tolerances(dtype, size, h, mask=None, extra_units=0.0):
    """(rtol of the weights, atol of the context) for score roundings `size` (B, S) over the kept positions."""
    if mask is not None:
        size = np.where(mask, size, 0.0)
    rtol = exp_rtol(dtype, float(np.max(size, initial=0.0))) + 8.0 * EPS[np.dtype(dtype).name] * extra_units
    table_rtol, table_atol = tolerance(dtype)
    return rtol, table_atol + (rtol - table_rtol) * float(np.abs(np.asarray(h, np.float64)).max(initial=0.0))


def _check(t, got, oracle, dtype, rtol, atol, mask=None, what=""):
    """(context, weights) against the oracle's (float64, rounded once to dtype)."""
    context, weights = t.expect_tuple(got, 2)
    want_context, want_weights = oracle[0], oracle[1]
    if mask is not None:
        require_exact_zeros(t, weights, want_weights.shape, mask, ZERO_HINT, what=f"{what}weights (B, S)")
    t.expect(weights, want_weights.astype(dtype), what=f"{what}weights (B, S)", rtol=rtol)
    t.expect(context, want_context.astype(dtype), what=f"{what}context (B, D_h)", atol=atol)


def _far_below(rng, B, S, D_h, mask):
    """Encoder states whose column 0 marks kept (+1) and dropped (row 0: -1, row 1: 0) positions."""
    h = 0.5 * rng.standard_normal((B, S, D_h))
    h[..., 0] = np.where(mask, 1.0, np.array([-1.0, 0.0])[:B, None])
    return h


# ============================================================================ bahdanau_attention
bahdanau = Exercise("seq2seq.bahdanau_attention", points=2, reference=ref.bahdanau_attention, deps=SOFTMAX_DEPS,
                    uses_torch=True,
                    demo=lambda rng: ((np.array([[1.0, 0.0]]), np.array([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]]),
                                       np.array([[0.5, -1.0], [1.0, 0.5]]),
                                       np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
                                       np.array([1.0, -2.0])), {}))


def _bahdanau_inputs(rng, B=B, S=S, D_s=D_S, D_h=D_H, A=A, dtype="float64"):
    """decoder_state (B, D_s), encoder_outputs (B, S, D_h), W_s (D_s, A), W_h (D_h, A), w_v (A,): the
    projections scaled by 1/sqrt(width), so tanh works in its sensitive range."""
    arrays = (rng.standard_normal((B, D_s)), rng.standard_normal((B, S, D_h)),
              rng.standard_normal((D_s, A)) / np.sqrt(D_s), rng.standard_normal((D_h, A)) / np.sqrt(D_h),
              rng.standard_normal(A))
    return tuple(a.astype(dtype) for a in arrays)


def _check_bahdanau(t, s, h, W_s, W_h, w_v, mask=None):
    kwargs = {} if mask is None else {"mask": mask}
    got = t.call(s, h, W_s, W_h, w_v, **kwargs)
    rtol, atol = _tolerances(h.dtype, _additive_size(*_abs_pre(s, h, W_s, W_h), w_v), h, mask)
    _check(t, got, ref.oracle_bahdanau(s, h, W_s, W_h, w_v, mask), h.dtype, rtol, atol, mask)


@bahdanau.case("float64 B=2, S=7, D_s=4, D_h=6, A=5", "no mask, every dimension distinct, against PyTorch")
def _(t):
    _check_bahdanau(t, *_bahdanau_inputs(t.rng))


@bahdanau.case("padding mask (3, 9)", "a (B, S) padding mask: padded source positions get exactly 0 weight")
def _(t):
    args = _bahdanau_inputs(t.rng, B=3, S=9)
    _check_bahdanau(t, *args, mask=np.arange(9)[None, :] < np.array([[9], [4], [6]]))


@bahdanau.case("float32, mask with a fully masked row", "float32 inputs give float32 outputs; a row that "
               "keeps no position gets zero weights and a zero context, never NaN")
def _(t):
    args = _bahdanau_inputs(t.rng, B=3, dtype="float32")
    _check_bahdanau(t, *args, mask=_row_mask(t.rng, 3, S, full_rows=(1,)))


@bahdanau.case("B=1, S=1", "a single source position gets all the weight: the context is that encoder state")
def _(t):
    _check_bahdanau(t, *_bahdanau_inputs(t.rng, B=1, S=1))


@bahdanau.case("kept scores far below 0, float32", "kept scores near -800 (tanh saturated against w_v) with "
               "the masked ones above them (+800) or near 0: masked positions are excluded, not given a score "
               "of 0 (scores * mask)")
def _(t):
    mask = _row_mask(t.rng, B, S)
    s, _, W_s, W_h, _ = _bahdanau_inputs(t.rng)
    h = _far_below(t.rng, B, S, D_H, mask)
    sign = t.rng.choice([-1.0, 1.0], size=A - 1)
    w_v = np.append(200.0 * sign, 3.0)          # four saturated units worth -+200 each, one unit for spread
    W_s[:, :A - 1] *= 0.1
    W_h[1:, :A - 1] *= 0.1
    W_h[0, :A - 1] = -30.0 * sign               # kept (+1): tanh = -sign, a score of -800 + 3 tanh(x_4)
    W_h[0, A - 1] = 0.0
    f32 = [np.asarray(a, np.float32) for a in (s, h, W_s, W_h, w_v)]
    _check_bahdanau(t, *f32, mask=mask)


def _manual_weights(scores, mask, fill=None, axis=-1, invert=False):
    if mask is None:
        return ref_softmax.softmax(scores, axis=axis)
    m = ~np.asarray(mask, bool) if invert else np.asarray(mask, bool)
    if fill is None:
        return ref_softmax.masked_softmax(scores, m, axis=axis)
    with np.errstate(invalid="ignore"):
        filled = np.where(m, scores, fill)
        e = np.exp(filled - filled.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def _finish(scores, h, mask, dtype, **how):
    """(context, weights) from scores (B, S), the masking done as `how` says (a mistake or not)."""
    if how.pop("multiply", False) and mask is not None:
        keep = np.asarray(mask, bool)
        scored = scores * keep                      # masked scores become 0, not -inf
        e = np.where(keep, np.exp(scored - scored.max(axis=-1, keepdims=True)), 0.0)
        total = e.sum(axis=-1, keepdims=True)
        weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    elif how.pop("after", False) and mask is not None:
        weights = ref_softmax.softmax(scores) * np.asarray(mask, bool)
    else:
        weights = _manual_weights(scores, mask, **how)
    with np.errstate(invalid="ignore"):
        context = np.einsum("bs,bsh->bh", weights, np.asarray(h, np.float64))
    return context.astype(dtype), weights.astype(dtype)


def _bahdanau_scores(s, h, W_s, W_h, w_v, tanh=True, tanh_after=False):
    x = (s @ W_s)[:, None, :] + h @ W_h
    if tanh_after:
        return np.tanh(x @ w_v)
    return (np.tanh(x) if tanh else x) @ w_v


@bahdanau.mutant("no tanh", NO_TANH_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v, tanh=False), h, mask, h.dtype)


@bahdanau.mutant("tanh after w_v", TANH_AFTER_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v, tanh_after=True), h, mask, h.dtype)


@bahdanau.mutant("ignores mask", IGNORES_MASK_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, None, h.dtype)


@bahdanau.mutant("inverted mask", INVERTED_MASK_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, invert=True)


@bahdanau.mutant("softmax over the batch axis", BATCH_AXIS_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, axis=0)


@bahdanau.mutant("multiplies the scores by the mask", MULTIPLY_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, multiply=True)


@bahdanau.mutant("-1e9 fill", FULL_ROW_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, fill=-1e9)


@bahdanau.mutant("-inf fill, unguarded", NAN_ROW_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, fill=-np.inf)


@bahdanau.mutant("mask after the softmax", AFTER_SOFTMAX_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype, after=True)


@bahdanau.mutant("context of the projected states", PROJECTED_CONTEXT_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    _, weights = _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype)
    return np.einsum("bs,bsa->ba", weights, h @ W_h).astype(h.dtype), weights


@bahdanau.mutant("(weights, context) order", ORDER_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    context, weights = _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, h.dtype)
    return weights, context


@bahdanau.mutant("float64 output", DTYPE_HINT)
def _(s, h, W_s, W_h, w_v, mask=None):
    return _finish(_bahdanau_scores(s, h, W_s, W_h, w_v), h, mask, np.float64)


@bahdanau.alternative("einsum everywhere, its own masked softmax with np.where")
def _(s, h, W_s, W_h, w_v, mask=None):
    hidden = np.tanh(np.einsum("bd,da->ba", s, W_s)[:, None, :] + np.einsum("bsh,ha->bsa", h, W_h))
    scores = np.einsum("bsa,a->bs", hidden, w_v)
    keep = np.ones(scores.shape, bool) if mask is None else mask
    m = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(scores - np.where(np.isfinite(m), m, 0)), 0).astype(scores.dtype)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return np.einsum("bs,bsh->bh", weights, h), weights


@bahdanau.alternative("a loop over source positions, -inf bias and NaN rows set to 0")
def _(s, h, W_s, W_h, w_v, mask=None):
    query = s @ W_s  # (B, A)
    scores = np.stack([np.tanh(query + h[:, j] @ W_h) @ w_v for j in range(h.shape[1])], axis=1)  # (B, S)
    if mask is not None:
        scores = scores + np.where(mask, 0.0, -np.inf).astype(scores.dtype)
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = np.nan_to_num(e / e.sum(axis=-1, keepdims=True), nan=0.0)
    return (weights[:, :, None] * h).sum(axis=1), weights


@bahdanau.alternative("float64 inside, log-sum-exp, cast back")
def _(s, h, W_s, W_h, w_v, mask=None):
    s64, h64 = s.astype(np.float64), h.astype(np.float64)
    scores = np.tanh((s64 @ W_s)[:, None, :] + h64 @ W_h) @ w_v.astype(np.float64)
    keep = np.ones(scores.shape, bool) if mask is None else mask
    kept = np.where(keep, scores, -np.inf)
    m = kept.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        lse = m + np.log(np.exp(kept - m).sum(axis=-1, keepdims=True))
    weights = np.where(keep & np.isfinite(lse), np.exp(kept - np.where(np.isfinite(lse), lse, 0)), 0.0)
    return np.einsum("bs,bsh->bh", weights, h64).astype(h.dtype), weights.astype(h.dtype)


# =============================================================================== luong_attention
luong = Exercise("seq2seq.luong_attention", points=3, reference=ref.luong_attention, deps=SOFTMAX_DEPS,
                 uses_torch=True,
                 demo=lambda rng: ((np.array([[1.0, 0.0]]), np.array([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]]),
                                    "general", {"W": np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])}), {}))

DOT_SCALED_HINT = ("Luong's dot score is the plain dot product s . h_j: no 1/sqrt(D) (that scale belongs to the "
                   "Transformer's scaled dot-product attention)")
GENERAL_T_HINT = "the general score is s W h_j with W of shape (D_s, D_h): compute (s @ W) . h_j, not s @ W.T"
GENERAL_NO_W_HINT = "the general score uses W: s W h_j (you computed the dot score s . h_j)"
CONCAT_ORDER_HINT = ("concat is tanh([s; h_j] W) . v with the decoder state first: the first D_s rows of W multiply "
                     "s, the last D_h rows multiply h_j")
CONCAT_NO_TANH_HINT = "the concat score has a tanh: v . tanh([s; h_j] W)"
UNKNOWN_METHOD_HINT = ("raise ValueError for a method other than 'dot', 'general' or 'concat' instead of falling "
                       "back to one of them")


def _luong_inputs(rng, method, B=B, S=S, D_s=D_S, D_h=D_H, A=A, dtype="float64"):
    """(decoder_state, encoder_outputs, method, params) with every dimension distinct (D_s = D_h for dot)."""
    if method == "dot":
        D_s = D_h
    s, h = rng.standard_normal((B, D_s)), rng.standard_normal((B, S, D_h))
    if method == "dot":
        params = {}
        s = s / np.sqrt(np.sqrt(D_h))  # scores of unit scale
        h = h / np.sqrt(np.sqrt(D_h))
    elif method == "general":
        params = {"W": rng.standard_normal((D_s, D_h)) / np.sqrt(D_s * D_h) ** 0.5}
    else:
        params = {"W": rng.standard_normal((D_s + D_h, A)) / np.sqrt(D_s + D_h), "v": rng.standard_normal(A)}
    cast = lambda a: np.asarray(a).astype(dtype)  # noqa: E731
    return cast(s), cast(h), method, {k: cast(v) for k, v in params.items()}


def _luong_size(s, h, method, params):
    if method == "dot":
        return _dot_size(s, h)
    if method == "general":
        return _dot_size(np.abs(np.asarray(s, np.float64)) @ np.abs(np.asarray(params["W"], np.float64)), h)
    W = np.asarray(params["W"])
    D_s = np.shape(s)[-1]
    return _additive_size(*_abs_pre(s, h, W[:D_s], W[D_s:]), params["v"])


def _check_luong(t, s, h, method, params, mask=None, what=""):
    kwargs = {} if mask is None else {"mask": mask}
    got = t.call(s, h, method, params, **kwargs)
    rtol, atol = _tolerances(h.dtype, _luong_size(s, h, method, params), h, mask)
    _check(t, got, ref.oracle_luong(s, h, method, params, mask), h.dtype, rtol, atol, mask, what)


@luong.case("dot, float64 B=2, S=7, D=6", "the dot score s . h_j, no mask, params = {}")
def _(t):
    _check_luong(t, *_luong_inputs(t.rng, "dot"))


@luong.case("general, D_s=4, D_h=6", "the bilinear score s W h_j with W (D_s, D_h), decoder and encoder widths "
            "that differ")
def _(t):
    _check_luong(t, *_luong_inputs(t.rng, "general"))


@luong.case("general, square W (5, 5)", "with D_s = D_h = 5, W and W.T have the same shape: only the right one "
            "matches")
def _(t):
    _check_luong(t, *_luong_inputs(t.rng, "general", B=3, S=8, D_s=5, D_h=5))


@luong.case("concat, D_s=4, D_h=6, A=5", "the concat score v . tanh([s; h_j] W) with W (D_s + D_h, A), decoder "
            "state first")
def _(t):
    _check_luong(t, *_luong_inputs(t.rng, "concat"))


@luong.case("each method with a mask and a fully masked row", "masked positions get exactly 0 weight; a row "
            "that keeps nothing gets zero weights and a zero context, for dot, general and concat")
def _(t):
    for method in ("dot", "general", "concat"):
        mask = _row_mask(t.rng, 3, 9, full_rows=(2,))
        _check_luong(t, *_luong_inputs(t.rng, method, B=3, S=9), mask=mask, what=f"{method}: ")


@luong.case("float32, each method", "float32 inputs give float32 context and weights")
def _(t):
    for method in ("dot", "general", "concat"):
        _check_luong(t, *_luong_inputs(t.rng, method, dtype="float32"), mask=_row_mask(t.rng, B, S),
                     what=f"{method}: ")


@luong.case("dot, kept scores far below 0, float32", "dot scores near -1000 for kept positions with the masked "
            "ones above them (+4) or far below (-2000): masked positions are excluded, not given a score of 0")
def _(t):
    mask = _row_mask(t.rng, B, S)
    s, h, _, _ = _luong_inputs(t.rng, "dot")
    s[:, 0] = 40.0 + 0.1 * s[:, 0]
    masked_h0 = np.array([0.1, -50.0])[:, None]  # masked scores: row 0 near +4, row 1 near -2000
    h[..., 0] = np.where(mask, -25.0 + 0.05 * h[..., 0], masked_h0)  # kept scores near -1000
    _check_luong(t, s.astype(np.float32), h.astype(np.float32), "dot", {}, mask=mask)


@luong.case("unknown method", "a method other than 'dot', 'general', 'concat' ('additive', or Luong's "
            "'location', which this exercise does not implement) raises ValueError")
def _(t):
    s, h, _, params = _luong_inputs(t.rng, "concat")
    t.raises("ValueError", s, h, "additive", params)
    s, h, _, _ = _luong_inputs(t.rng, "dot")
    t.raises("ValueError", s, h, "location", {})


def _luong_scores(s, h, method, params, scaled=False, W_T=False, no_W=False, swap=False, tanh=True):
    if method == "dot" or (method == "general" and no_W):
        scores = np.einsum("bd,bsd->bs", s, h)
        return scores / np.sqrt(s.shape[-1]) if scaled and method == "dot" else scores
    if method == "general":
        W = params["W"].T if W_T else params["W"]
        return np.einsum("bd,bsd->bs", s @ W, h)
    if method == "concat":
        W, v = params["W"], params["v"]
        B, S = h.shape[:2]
        s_rep = np.broadcast_to(s[:, None, :], (B, S, s.shape[-1]))
        pairs = np.concatenate([h, s_rep] if swap else [s_rep, h], axis=-1)
        hidden = pairs @ W
        return (np.tanh(hidden) if tanh else hidden) @ v
    raise ValueError(f"unknown method {method!r}")


def _luong_mutant(scores_kw=None, **how):
    def wrong(s, h, method, params, mask=None):
        return _finish(_luong_scores(s, h, method, params, **(scores_kw or {})), h, mask, h.dtype, **how)
    return wrong


luong.mutant("dot scaled by 1/sqrt(D)", DOT_SCALED_HINT)(_luong_mutant({"scaled": True}))
luong.mutant("general with W.T", GENERAL_T_HINT)(_luong_mutant({"W_T": True}))
luong.mutant("general without W", GENERAL_NO_W_HINT)(_luong_mutant({"no_W": True}))
luong.mutant("concat as [h; s]", CONCAT_ORDER_HINT)(_luong_mutant({"swap": True}))
luong.mutant("concat without tanh", CONCAT_NO_TANH_HINT)(_luong_mutant({"tanh": False}))
luong.mutant("ignores mask", IGNORES_MASK_HINT)(
    lambda s, h, method, params, mask=None: _luong_mutant()(s, h, method, params, None))
luong.mutant("inverted mask", INVERTED_MASK_HINT)(_luong_mutant(invert=True))
luong.mutant("softmax over the batch axis", BATCH_AXIS_HINT)(_luong_mutant(axis=0))
luong.mutant("multiplies the scores by the mask", MULTIPLY_HINT)(_luong_mutant(multiply=True))
luong.mutant("-1e9 fill", FULL_ROW_HINT)(_luong_mutant(fill=-1e9))


@luong.mutant("unknown method falls back to concat/dot", UNKNOWN_METHOD_HINT)
def _(s, h, method, params, mask=None):
    method = method if method in ("dot", "general", "concat") else ("concat" if "v" in params else "dot")
    return _finish(_luong_scores(s, h, method, params), h, mask, h.dtype)


@luong.mutant("(weights, context) order", ORDER_HINT)
def _(s, h, method, params, mask=None):
    context, weights = _finish(_luong_scores(s, h, method, params), h, mask, h.dtype)
    return weights, context


@luong.mutant("float64 output", DTYPE_HINT)
def _(s, h, method, params, mask=None):
    return _finish(_luong_scores(s, h, method, params), h, mask, np.float64)


def _softmax_context(scores, h, mask):
    keep = np.ones(scores.shape, bool) if mask is None else mask
    m = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(scores - np.where(np.isfinite(m), m, 0)), 0).astype(scores.dtype)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return np.einsum("bs,bsh->bh", weights, h), weights


@luong.alternative("einsum scores, a dict of score functions")
def _(s, h, method, params, mask=None):
    scorers = {
        "dot": lambda: np.einsum("bd,bsd->bs", s, h),
        "general": lambda: np.einsum("bd,de,bse->bs", s, params["W"], h),
        "concat": lambda: np.tanh(np.concatenate(
            [np.repeat(s[:, None, :], h.shape[1], axis=1), h], axis=-1) @ params["W"]) @ params["v"],
    }
    if method not in scorers:
        raise ValueError(f"unknown method {method!r}")
    return _softmax_context(scorers[method](), h, mask)


@luong.alternative("general as h W^T s, concat as split projections, -inf bias")
def _(s, h, method, params, mask=None):
    if method == "dot":
        scores = (h * s[:, None, :]).sum(axis=-1)
    elif method == "general":
        scores = (h @ params["W"].T @ s[:, :, None])[..., 0]  # (B, S, D_s) @ (B, D_s, 1)
    elif method == "concat":
        W = params["W"]
        n = s.shape[-1]
        scores = np.tanh(s[:, None, :] @ W[:n] + h @ W[n:]) @ params["v"]
    else:
        raise ValueError("method must be dot, general or concat")
    if mask is not None:
        scores = scores + np.where(mask, 0.0, -np.inf).astype(scores.dtype)
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = np.nan_to_num(e / e.sum(axis=-1, keepdims=True), nan=0.0)
    return (weights[:, None, :] @ h)[:, 0], weights


# ============================================================================= local_p_attention
local_p = Exercise("seq2seq.local_p_attention", points=3, reference=ref.local_p_attention,
                   deps=SOFTMAX_DEPS + ("seq2seq.luong_attention",), uses_torch=True,
                   demo=lambda rng: ((np.array([[1.0, 0.0]]),
                                      np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]]]),
                                      np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([1.0, 0.5]), 1), {}))

S_MINUS_1_HINT = ("the centre is p = (S - 1) * sigmoid(...), not S * sigmoid(...): with positions 0..S-1, S - 1 "
                  "keeps p on a valid position (the paper's S counts from 1)")
ROUNDED_HINT = ("do not round p: the centre is a real number, the window is [p - window, p + window] and the "
                "Gaussian is centred on p itself")
FLOOR_HINT = ("the window is the positions j with |j - p| <= window for the real-valued p: int(p) - window .. "
              "int(p) + window takes one position too many on the left")
EXCLUSIVE_HINT = ("the window includes its ends: keep positions with |j - p| <= window (<=, not <); it matters "
                  "whenever p is a whole number")
SIGMA_HINT = "the Gaussian's standard deviation is sigma = window / 2 (Luong et al. 2015), not window"
RENORM_HINT = ("do not renormalise after multiplying by the Gaussian: Luong et al. use the softmax over the window "
               "times exp(-(j - p)^2 / (2 sigma^2)) as it is, so a row sums to less than 1")
ALL_POSITIONS_HINT = ("take the softmax over the positions inside the window only (and kept by the mask): positions "
                      "outside it must not share the probability mass")
GAUSS_IN_SOFTMAX_HINT = ("apply the Gaussian after the softmax, as a factor: adding -(j - p)^2 / (2 sigma^2) to the "
                         "scores renormalises it away")
NO_TANH_P_HINT = "the centre is p = (S - 1) * sigmoid(v_p . tanh(s W_p)): keep the tanh"
NO_TWO_HINT = "the Gaussian is exp(-(j - p)^2 / (2 sigma^2)): you left out the 2"
POSITIONS_DTYPE_HINT = ("np.arange(S) is int64, and int64 - float32 gives float64: make the positions in the "
                        "input's dtype (np.arange(S, dtype=encoder_outputs.dtype)) so float32 stays float32")
WINDOW_MASKED_HINT = ("when every position of the window is masked the row gets zero weights and a zero context: "
                      "a finite fill (-1e9) spreads the softmax over the whole sequence instead")


def _sigmoid_inverse(y):
    return np.log(y) - np.log1p(-y)


def _local_inputs(rng, B, S, D, A, window, centres=None, dtype="float64"):
    """(decoder_state, encoder_outputs, W_p, v_p, window): with `centres` (B,) the centres are set by solving
    tanh(s W_p) v_p = logit(p / (S - 1)) for v_p (least squares, exact for B <= A)."""
    s = rng.standard_normal((B, D)) / np.sqrt(np.sqrt(D))
    h = rng.standard_normal((B, S, D)) / np.sqrt(np.sqrt(D))
    W_p = rng.standard_normal((D, A)) / np.sqrt(D)
    if centres is None:
        v_p = rng.standard_normal(A)
    else:
        v_p = np.linalg.lstsq(np.tanh(s @ W_p), _sigmoid_inverse(np.asarray(centres) / (S - 1)), rcond=None)[0]
    cast = lambda a: np.asarray(a).astype(dtype)  # noqa: E731
    return cast(s), cast(h), cast(W_p), cast(v_p), window


def _fractional_centres(rng, B, S, window):
    """B centres in [window, S - 1 - window] whose fractional part lies in [0.2, 0.8]: a rounded or floored p
    changes the window and the Gaussian, and no position sits near a window edge."""
    return rng.integers(window, S - 1 - window, size=B) + rng.uniform(0.2, 0.8, size=B)


def _centre_units(s, W_p, v_p, S):
    """A bound on the rounding of p = (S - 1) sigmoid(tanh(s W_p) . v_p), in units of eps: that of z (an
    additive score) times sigmoid' <= 1/4, times S - 1, plus the roundings of the sigmoid and the product."""
    s, W_p, v_p = (np.asarray(a, np.float64) for a in (s, W_p, v_p))
    x, xa = s @ W_p, np.abs(s) @ np.abs(W_p)  # (B, A)
    z_units = (np.abs(v_p) * (1 + xa * (1 - np.tanh(x) ** 2))).sum(axis=-1)  # (B,)
    return (S - 1) * (0.25 * float(np.max(z_units)) + 2)


def _check_local(t, s, h, W_p, v_p, window=None, mask=None, by_keyword=False):
    kwargs = {} if mask is None else {"mask": mask}
    if by_keyword:
        got = t.call(s, h, W_p, v_p, window=window, **kwargs)
    else:
        got = t.call(s, h, W_p, v_p, window, **kwargs)
    context, weights, p = ref.oracle_local_p(s, h, W_p, v_p, window, mask)
    S_ = h.shape[1]
    inside = np.abs(np.arange(S_)[None, :] - p[:, None]) <= window
    keep = inside if mask is None else inside & mask
    p_units = _centre_units(s, W_p, v_p, S_)
    rtol, atol = _tolerances(h.dtype, _dot_size(s, h), h, keep, extra_units=(4.0 / window) * p_units + 4)
    _check(t, got, (context, weights), h.dtype, rtol, atol, keep)


@local_p.case("float64 B=3, S=11, D=4, A=5, window=2", "fractional centres away from the edges: the softmax over "
              "the window, times the Gaussian (sigma = window / 2), zero outside, not renormalised")
def _(t):
    _check_local(t, *_local_inputs(t.rng, 3, 11, 4, 5, 2, centres=_fractional_centres(t.rng, 3, 11, 2)))


@local_p.case("random centres, window=1, S=7", "centres where the centre predictor puts them (B=2, D=6, A=3), "
              "the narrowest window")
def _(t):
    args = _local_inputs(t.rng, 2, 7, 6, 3, 1)
    _check_local(t, *args)


@local_p.case("p a whole number: window ends included", "v_p = 0 puts the centre at (S - 1) / 2 = 4 exactly, so "
              "positions 2 and 6 lie exactly `window` = 2 from it and belong to the window")
def _(t):
    s, h, W_p, v_p, window = _local_inputs(t.rng, 2, 9, 4, 5, 2)
    _check_local(t, s, h, W_p, np.zeros_like(v_p), window)


@local_p.case("centres at the edges: p = S - 1 and p = 0", "a saturated predictor puts row 0 at p = S - 1 = 7 "
              "and row 1 at p = 0: the window is cut by the sequence ends (positions 4-7 and 0-3), nothing is "
              "renormalised")
def _(t):
    s, h, W_p, v_p, window = _local_inputs(t.rng, 2, 8, 4, 5, 3)
    sign = t.rng.choice([-1.0, 1.0], size=5)
    s[:, 0] = [1.0, -1.0]
    s[:, 1:] *= 0.01
    W_p[0] = 30.0 * sign                        # tanh(s W_p) = +-sign exactly
    W_p[1:] *= 0.01
    _check_local(t, s, h, W_p, 9.0 * sign, window)  # z = +-45: sigmoid is 1 and ~3e-20


@local_p.case("mask inside the window, a fully masked window", "masked positions in the window get 0 and the "
              "softmax runs over the kept ones; row 1 keeps positions but none inside its window: zero weights, "
              "zero context")
def _(t):
    s, h, W_p, v_p, window = _local_inputs(t.rng, 2, 9, 4, 5, 1)
    mask = _row_mask(t.rng, 2, 9)
    mask[0, 3:6] = [True, False, True]  # the window of row 0 is {3, 4, 5}: one dropped position inside
    mask[1] = True
    mask[1, 3:6] = False                # row 1: its whole window dropped, the rest kept
    _check_local(t, s, h, W_p, np.zeros_like(v_p), window, mask=mask)


@local_p.case("float32, window=3", "float32 inputs give float32 outputs (positions built in float32)")
def _(t):
    _check_local(t, *_local_inputs(t.rng, 3, 12, 4, 5, 3, centres=_fractional_centres(t.rng, 3, 12, 3),
                                   dtype="float32"))


@local_p.case("window larger than the sequence", "window = 20 with S = 7 (keyword window=): every position is in "
              "the window and the Gaussian, nearly flat, still multiplies the softmax")
def _(t):
    s, h, W_p, v_p, _ = _local_inputs(t.rng, 2, 7, 6, 4, 20)
    _check_local(t, s, h, W_p, v_p, 20, by_keyword=True)


@local_p.case("kept scores far below 0, float32", "dot scores near -1000 for kept positions with masked ones above "
              "(+4) or far below (-2000), p = 3 and window = 3 covering all S = 7: masked positions are excluded, "
              "not given a score of 0")
def _(t):
    s, h, W_p, v_p, window = _local_inputs(t.rng, 2, 7, 4, 5, 3)
    mask = _row_mask(t.rng, 2, 7)
    s[:, 0] = 40.0 + 0.1 * s[:, 0]
    h[..., 0] = np.where(mask, -25.0 + 0.05 * h[..., 0], np.array([0.1, -50.0])[:, None])
    f32 = [np.asarray(a, np.float32) for a in (s, h, W_p, np.zeros_like(v_p))]
    _check_local(t, *f32, window, mask=mask)


def _local_manual(s, h, W_p, v_p, window, mask=None, *, use_S=False, rnd=False, floor=False, exclusive=False,
                  sigma=None, renorm=False, all_positions=False, gauss_in=False, no_tanh=False, no_two=False,
                  fill=None, multiply=False, f64_positions=False, ignore_mask=False):
    S_ = h.shape[1]
    z = (s @ W_p if no_tanh else np.tanh(s @ W_p)) @ v_p
    p = (S_ if use_S else S_ - 1) * 0.5 * (1 + np.tanh(z / 2))
    if rnd:
        p = np.round(p)
    positions = np.arange(S_) if f64_positions else np.arange(S_, dtype=h.dtype)
    distance = positions[None, :] - p[:, None]
    if floor:
        base = np.floor(p)[:, None]
        inside = (positions[None, :] >= base - window) & (positions[None, :] <= base + window)
    else:
        inside = np.abs(distance) < window if exclusive else np.abs(distance) <= window
    keep = np.ones(inside.shape, bool) if all_positions else inside
    if mask is not None and not ignore_mask:
        keep = keep & mask
    scores = np.einsum("bd,bsd->bs", s, h)
    sig = window / 2 if sigma is None else sigma
    log_gauss = -distance ** 2 / ((1 if no_two else 2) * sig ** 2)
    if gauss_in:
        scores = scores + log_gauss
    if multiply and mask is not None:
        scored = np.where(inside, scores * mask, -np.inf)
        m = scored.max(axis=-1, keepdims=True)
        e = np.where(inside & mask, np.exp(scored - np.where(np.isfinite(m), m, 0)), 0.0)
        total = e.sum(axis=-1, keepdims=True)
        weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    elif fill is not None:
        filled = np.where(keep, scores, fill)
        e = np.exp(filled - filled.max(axis=-1, keepdims=True))
        weights = e / e.sum(axis=-1, keepdims=True)
    else:
        weights = ref_softmax.masked_softmax(scores, keep)
    if not gauss_in:
        weights = weights * np.exp(log_gauss)
    if all_positions:
        weights = weights * inside
    if renorm:
        total = weights.sum(axis=-1, keepdims=True)
        weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    dtype = weights.dtype if f64_positions else h.dtype
    return np.einsum("bs,bsh->bh", weights, h).astype(dtype), weights.astype(dtype)


def _local_mutant(**how):
    def wrong(decoder_state, encoder_outputs, W_p, v_p, window, mask=None):
        return _local_manual(decoder_state, encoder_outputs, W_p, v_p, window, mask, **how)
    return wrong


local_p.mutant("S instead of S - 1", S_MINUS_1_HINT)(_local_mutant(use_S=True))
local_p.mutant("p rounded", ROUNDED_HINT)(_local_mutant(rnd=True))
local_p.mutant("window from int(p)", FLOOR_HINT)(_local_mutant(floor=True))
local_p.mutant("window exclusive", EXCLUSIVE_HINT)(_local_mutant(exclusive=True))
local_p.mutant("sigma = window", SIGMA_HINT)(
    lambda s, h, W_p, v_p, window, mask=None: _local_manual(s, h, W_p, v_p, window, mask, sigma=float(window)))
local_p.mutant("Gaussian renormalised", RENORM_HINT)(_local_mutant(renorm=True))
local_p.mutant("softmax over all positions", ALL_POSITIONS_HINT)(_local_mutant(all_positions=True))
local_p.mutant("Gaussian inside the softmax", GAUSS_IN_SOFTMAX_HINT)(_local_mutant(gauss_in=True))
local_p.mutant("no tanh in the centre", NO_TANH_P_HINT)(_local_mutant(no_tanh=True))
local_p.mutant("Gaussian without the 2", NO_TWO_HINT)(_local_mutant(no_two=True))
local_p.mutant("ignores mask", IGNORES_MASK_HINT)(_local_mutant(ignore_mask=True))
local_p.mutant("-1e9 fill", WINDOW_MASKED_HINT)(_local_mutant(fill=-1e9))
local_p.mutant("multiplies the scores by the mask", MULTIPLY_HINT)(_local_mutant(multiply=True))
local_p.mutant("int64 positions", POSITIONS_DTYPE_HINT)(_local_mutant(f64_positions=True))


@local_p.mutant("(weights, context) order", ORDER_HINT)
def _(s, h, W_p, v_p, window, mask=None):
    context, weights = _local_manual(s, h, W_p, v_p, window, mask)
    return weights, context


@local_p.alternative("window as a slice [ceil(p - D), floor(p + D)], scipy-free sigmoid 1 / (1 + exp(-z))")
def _(s, h, W_p, v_p, window, mask=None):
    B_, S_ = h.shape[:2]
    z = np.tanh(s @ W_p) @ v_p
    with np.errstate(over="ignore"):
        p = (S_ - 1) / (1 + np.exp(-z))
    weights = np.zeros((B_, S_), dtype=h.dtype)
    for b in range(B_):
        lo, hi = max(int(np.ceil(p[b] - window)), 0), min(int(np.floor(p[b] + window)), S_ - 1)
        idx = np.arange(lo, hi + 1)
        if mask is not None:
            idx = idx[mask[b, idx]]
        if idx.size == 0:
            continue
        sc = h[b, idx] @ s[b]
        e = np.exp(sc - sc.max())
        d = idx.astype(h.dtype) - p[b]
        weights[b, idx] = e / e.sum() * np.exp(-d * d / (2 * (window / 2) ** 2))
    return np.einsum("bs,bsh->bh", weights, h), weights


@local_p.alternative("luong_attention(dot) with the window as a mask, Gaussian in float64")
def _(s, h, W_p, v_p, window, mask=None):
    luong_attention = ref.luong_attention  # what a dependency call is answered with while graded

    S_ = h.shape[1]
    p = (S_ - 1) * (1 / (1 + np.exp(-(np.tanh(s.astype(np.float64) @ W_p) @ v_p))))
    distance = np.arange(S_)[None, :] - p[:, None]  # float64
    keep = np.abs(distance) <= window
    if mask is not None:
        keep &= mask
    _, soft = luong_attention(s, h, "dot", {}, mask=keep)
    weights = (soft * np.exp(-distance ** 2 / (window ** 2 / 2))).astype(h.dtype)  # 2 sigma^2 = window^2 / 2
    return (weights[:, None, :] @ h)[:, 0], weights


# ============================================================================ coverage_attention
coverage_attn = Exercise("seq2seq.coverage_attention", points=2, reference=ref.coverage_attention,
                         deps=SOFTMAX_DEPS + ("seq2seq.bahdanau_attention",), uses_torch=True,
                         demo=lambda rng: ((np.array([[1.0, 0.0]]),
                                            np.array([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]]),
                                            np.array([[1.0, 0.0]]),
                                            np.array([[0.5, -1.0], [1.0, 0.5]]),
                                            np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
                                            np.array([-2.0, 1.0]), np.array([1.0, -2.0])), {}))

COVERAGE_IGNORED_HINT = ("use the coverage: the score is w_v . tanh(s W_s + h_j W_h + c_j w_c), where c_j w_c (an "
                         "A-dim vector per position) tells the scorer how much attention position j has already had")
COVERAGE_OUTSIDE_HINT = ("put the coverage term inside the tanh, with the other two: tanh(s W_s + h_j W_h + c_j w_c) "
                         ". w_v, not tanh(s W_s + h_j W_h) . w_v + c_j (w_c . w_v)")
COVERAGE_NO_TANH_HINT = "the score has a tanh around all three terms: w_v . tanh(s W_s + h_j W_h + c_j w_c)"
COVERAGE_BATCH_HINT = ("the coverage is (B, S), one value per source position: add coverage[:, :, None] * w_c "
                       "(B, S, A), not a sum or mean over the positions")


def _coverage_inputs(rng, B=B, S=S, D_s=D_S, D_h=D_H, A=A, dtype="float64"):
    """(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v): coverage is the running sum of 3 earlier
    steps' weights (values in [0, 3])."""
    s, h, W_s, W_h, w_v = _bahdanau_inputs(rng, B, S, D_s, D_h, A)
    coverage = sum(ref_softmax.softmax(2.0 * rng.standard_normal((B, S))) for _ in range(3))
    w_c = rng.standard_normal(A)
    cast = lambda a: np.asarray(a).astype(dtype)  # noqa: E731
    return tuple(cast(a) for a in (s, h, coverage, W_s, W_h, w_c, w_v))


def _check_coverage(t, s, h, c, W_s, W_h, w_c, w_v, mask=None):
    kwargs = {} if mask is None else {"mask": mask}
    got = t.call(s, h, c, W_s, W_h, w_c, w_v, **kwargs)
    rtol, atol = _tolerances(h.dtype, _additive_size(*_abs_pre(s, h, W_s, W_h, c, w_c), w_v), h, mask)
    _check(t, got, ref.oracle_coverage(s, h, c, W_s, W_h, w_c, w_v, mask), h.dtype, rtol, atol, mask)


@coverage_attn.case("float64 B=2, S=7, D_s=4, D_h=6, A=5", "the coverage of each position enters the tanh with "
                    "the decoder and encoder terms")
def _(t):
    _check_coverage(t, *_coverage_inputs(t.rng))


@coverage_attn.case("zero coverage (3, 9)", "at the first step the coverage is 0 and the score is Bahdanau's")
def _(t):
    s, h, c, W_s, W_h, w_c, w_v = _coverage_inputs(t.rng, B=3, S=9)
    _check_coverage(t, s, h, np.zeros_like(c), W_s, W_h, w_c, w_v)


@coverage_attn.case("mask with a fully masked row", "masked positions get exactly 0; a row that keeps nothing "
                    "gets zero weights and a zero context")
def _(t):
    _check_coverage(t, *_coverage_inputs(t.rng, B=3), mask=_row_mask(t.rng, 3, S, full_rows=(0,)))


@coverage_attn.case("float32", "float32 inputs give float32 outputs")
def _(t):
    _check_coverage(t, *_coverage_inputs(t.rng, dtype="float32"), mask=_row_mask(t.rng, B, S))


@coverage_attn.case("kept scores far below 0, float32", "kept scores near -800 (tanh saturated against w_v) "
                    "with the masked ones above (+800) or near 0: masked positions are excluded, not given 0")
def _(t):
    mask = _row_mask(t.rng, B, S)
    s, _, c, W_s, W_h, w_c, _ = _coverage_inputs(t.rng)
    h = _far_below(t.rng, B, S, D_H, mask)
    sign = t.rng.choice([-1.0, 1.0], size=A - 1)
    w_v = np.append(200.0 * sign, 3.0)
    W_s[:, :A - 1] *= 0.1
    W_h[1:, :A - 1] *= 0.1
    W_h[0, :A - 1] = -30.0 * sign
    W_h[0, A - 1] = 0.0
    w_c[:A - 1] *= 0.1
    f32 = [np.asarray(a, np.float32) for a in (s, h, c, W_s, W_h, w_c, w_v)]
    _check_coverage(t, *f32, mask=mask)


def _coverage_scores(s, h, c, W_s, W_h, w_c, w_v, use=True, outside=False, tanh=True, summed=False):
    x = (s @ W_s)[:, None, :] + h @ W_h
    if summed:
        x = x + c.sum(axis=-1)[:, None, None] * w_c
    elif use and not outside:
        x = x + c[:, :, None] * w_c
    scores = (np.tanh(x) if tanh else x) @ w_v
    if outside:
        scores = scores + c * (w_c @ w_v)
    return scores


def _coverage_mutant(scores_kw=None, dtype=None, **how):
    def wrong(s, h, c, W_s, W_h, w_c, w_v, mask=None):
        scores = _coverage_scores(s, h, c, W_s, W_h, w_c, w_v, **(scores_kw or {}))
        return _finish(scores, h, mask, dtype or h.dtype, **how)
    return wrong


coverage_attn.mutant("coverage ignored", COVERAGE_IGNORED_HINT)(_coverage_mutant({"use": False}))
coverage_attn.mutant("coverage outside the tanh", COVERAGE_OUTSIDE_HINT)(_coverage_mutant({"outside": True}))
coverage_attn.mutant("coverage summed over positions", COVERAGE_BATCH_HINT)(_coverage_mutant({"summed": True}))
coverage_attn.mutant("no tanh", COVERAGE_NO_TANH_HINT)(_coverage_mutant({"tanh": False}))
coverage_attn.mutant("ignores mask", IGNORES_MASK_HINT)(
    lambda s, h, c, W_s, W_h, w_c, w_v, mask=None: _coverage_mutant()(s, h, c, W_s, W_h, w_c, w_v, None))
coverage_attn.mutant("inverted mask", INVERTED_MASK_HINT)(_coverage_mutant(invert=True))
coverage_attn.mutant("softmax over the batch axis", BATCH_AXIS_HINT)(_coverage_mutant(axis=0))
coverage_attn.mutant("multiplies the scores by the mask", MULTIPLY_HINT)(_coverage_mutant(multiply=True))
coverage_attn.mutant("-1e9 fill", FULL_ROW_HINT)(_coverage_mutant(fill=-1e9))
coverage_attn.mutant("float64 output", DTYPE_HINT)(_coverage_mutant(dtype=np.float64))


@coverage_attn.mutant("(weights, context) order", ORDER_HINT)
def _(s, h, c, W_s, W_h, w_c, w_v, mask=None):
    context, weights = _coverage_mutant()(s, h, c, W_s, W_h, w_c, w_v, mask)
    return weights, context


@coverage_attn.alternative("bahdanau_attention on states augmented with the coverage column")
def _(s, h, c, W_s, W_h, w_c, w_v, mask=None):
    bahdanau_attention = ref.bahdanau_attention  # what a dependency call is answered with while graded

    augmented = np.concatenate([h, c[:, :, None]], axis=-1)  # (B, S, D_h + 1): [h_j; c_j]
    _, weights = bahdanau_attention(s, augmented, W_s, np.vstack([W_h, w_c[None, :]]), w_v, mask=mask)
    return np.einsum("bs,bsh->bh", weights, h), weights


@coverage_attn.alternative("einsum, its own masked softmax")
def _(s, h, c, W_s, W_h, w_c, w_v, mask=None):
    hidden = np.tanh(np.einsum("bd,da->ba", s, W_s)[:, None] + np.einsum("bsh,ha->bsa", h, W_h)
                     + np.einsum("bs,a->bsa", c, w_c))
    return _softmax_context(np.einsum("bsa,a->bs", hidden, w_v), h, mask)


# ================================================================================= coverage_loss
cov_loss = Exercise("seq2seq.coverage_loss", points=2, reference=ref.coverage_loss, uses_torch=True,
                    demo=lambda rng: ((np.array([[[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]]),), {}))

INCLUSIVE_HINT = ("the coverage c_t sums the steps *before* t (c_0 = 0): including a_t makes min(a_t, c_t) = a_t, "
                  "so every step costs its full weight")
MAX_HINT = "the coverage loss takes the minimum, sum_j min(a_t[j], c_t[j]), not the maximum"
MEAN_STEPS_HINT = "sum the loss over the decoder steps t (and positions j); do not average over the steps"
MEAN_POSITIONS_HINT = "sum min(a_t[j], c_t[j]) over the positions j; do not average over them"
BATCH_SUM_HINT = "return one loss per batch element, shape (B,): sum over the steps T and positions S only"
PER_STEP_HINT = "sum over the steps too: the loss is (B,), not the per-step losses (B, T)"
WRONG_AXIS_HINT = ("accumulate the coverage over the decoder steps (axis 1 of (B, T, S)), not over the source "
                   "positions")
PREVIOUS_ONLY_HINT = "c_t is the sum of *all* earlier steps a_0 + ... + a_{t-1}, not only the previous one a_{t-1}"


def _history(rng, B, T, S, dtype="float64", temperature=2.0):
    """(B, T, S) softmax weights: T decoder steps over S positions."""
    return ref_softmax.softmax(temperature * rng.standard_normal((B, T, S))).astype(dtype)


def _check_loss(t, history):
    t.expect(t.call(history), ref.oracle_coverage_loss(history).astype(history.dtype), what="loss (B,)")


@cov_loss.case("hand-checkable (1, 3, 3)", "a = [.5 .5 0], [.5 .25 .25], [0 0 1]: steps cost 0, 0.75 and 0.25")
def _(t):
    _check_loss(t, np.array([[[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]]))


@cov_loss.case("float64 B=2, T=5, S=7", "the coverage before each step, the minimum with the step's weights, "
               "summed over steps and positions")
def _(t):
    _check_loss(t, _history(t.rng, 2, 5, 7))


@cov_loss.case("float32 B=3, T=4, S=6", "float32 weights give a float32 loss")
def _(t):
    _check_loss(t, _history(t.rng, 3, 4, 6, dtype="float32"))


@cov_loss.case("T = 1", "one step has nothing before it: the loss is 0")
def _(t):
    _check_loss(t, _history(t.rng, 4, 1, 5))


@cov_loss.case("repetition costs", "a decoder that attends to the same positions at every step pays 1 per step "
               "after the first (T - 1 = 5 for row 0), and a fully masked step (a zero row) pays nothing: B=2, "
               "T=6, S=5")
def _(t):
    one = _history(t.rng, 2, 1, 5)
    history = np.repeat(one, 6, axis=1)
    history[1, 2] = 0.0  # a step that attended nowhere (a fully masked query)
    _check_loss(t, history)


def _loss_mutant(kind):
    def wrong(attention_history):
        a = np.asarray(attention_history)
        run = np.cumsum(a, axis=1)
        before = np.concatenate([np.zeros_like(a[:, :1]), run[:, :-1]], axis=1)
        if kind == "inclusive":
            before = run
        elif kind == "axis":
            run_s = np.cumsum(a, axis=-1)
            before = run_s - a
        elif kind == "previous":
            before = np.concatenate([np.zeros_like(a[:, :1]), a[:, :-1]], axis=1)
        terms = np.maximum(a, before) if kind == "max" else np.minimum(a, before)  # (B, T, S)
        if kind == "mean_steps":
            return terms.sum(axis=-1).mean(axis=-1)
        if kind == "mean_positions":
            return terms.mean(axis=-1).sum(axis=-1)
        if kind == "batch":
            return terms.sum()
        if kind == "per_step":
            return terms.sum(axis=-1)
        if kind == "float64":
            return terms.sum(axis=(1, 2)).astype(np.float64)
        return terms.sum(axis=(1, 2))
    return wrong


for _kind, _name, _hint in [
        ("inclusive", "coverage includes the current step", INCLUSIVE_HINT),
        ("max", "max instead of min", MAX_HINT),
        ("mean_steps", "mean over steps", MEAN_STEPS_HINT),
        ("mean_positions", "mean over positions", MEAN_POSITIONS_HINT),
        ("batch", "summed over the batch", BATCH_SUM_HINT),
        ("per_step", "per-step losses", PER_STEP_HINT),
        ("axis", "cumulative sum over positions", WRONG_AXIS_HINT),
        ("previous", "previous step only", PREVIOUS_ONLY_HINT),
        ("float64", "float64 output", DTYPE_HINT)]:
    cov_loss.mutant(_name, _hint)(_loss_mutant(_kind))


@cov_loss.alternative("a loop over steps with a running coverage, in the input dtype")
def _(attention_history):
    covered = np.zeros_like(attention_history[:, 0])
    loss = np.zeros(attention_history.shape[0], dtype=attention_history.dtype)
    for t in range(attention_history.shape[1]):
        loss += np.minimum(attention_history[:, t], covered).sum(axis=-1)
        covered = covered + attention_history[:, t]
    return loss


@cov_loss.alternative("cumsum minus the current step, einsum-free")
def _(attention_history):
    a = np.asarray(attention_history)
    before = np.cumsum(a, axis=1) - a  # a_0 + ... + a_{t-1}, up to rounding
    return np.sum(np.where(a < before, a, before), axis=(1, 2))


# ========================================================================= sample_hard_attention
hard = Exercise("seq2seq.sample_hard_attention", points=2, reference=ref.sample_hard_attention,
                demo=None)  # a random output has no literal visible check

SIGMAS = 6.0  # two-sided normal tail beyond 6 standard deviations: ~2e-9

ARGMAX_HINT = ("sample a position with probability equal to its weight (rng.random and the cumulative sum, or "
               "rng.choice(S, p=row)): np.argmax always returns the most likely position")
UNIFORM_HINT = ("sample each position with probability equal to its weight, not uniformly (rng.integers(S) ignores "
                "the weights)")
SOFTMAX_AGAIN_HINT = ("the weights are already probabilities: sample position j with probability weights[j], do "
                      "not apply a softmax to them again")
SHARED_HINT = ("draw one uniform number per row (shape weights.shape[:-1] + (1,)), not one for the whole array: "
               "rows with the same weights must be sampled independently")
INDICES_HINT = ("return a one-hot array of the weights' shape (..., S), 1 at the sampled position, not the "
                "sampled indices (...,)")
VALUES_HINT = "put 1 at the sampled position (a one-hot row), not the sampled position's weight"
GLOBAL_HINT = ("draw from the rng argument (rng.random, rng.choice), not from np.random's global state "
               "(np.random.random, np.random.choice): the same rng state must give the same sample")
FIXED_HINT = ("draw from the rng argument you are given: a generator seeded inside the function "
              "(np.random.default_rng(0), np.random.seed(0)) gives every call the same sample")
ZERO_WEIGHT_HINT = ("a position of weight 0 (a masked key) must never be sampled: compare the uniform draw with "
                    "the cumulative sum (first position whose cdf exceeds u), or use the weights as probabilities")
ZERO_ROW_HINT = ("a row of zeros (a fully masked query) has nothing to sample: return a row of zeros for it, not a "
                 "one at some position")
BOOL_HINT = "return the one-hot rows in the weights' dtype (float), not as booleans"


def _one_hot_rows(rng, shape, dtype="float64", temperature=1.0):
    """Softmax weights of normal scores: every entry positive."""
    return ref_softmax.softmax(temperature * rng.standard_normal(shape)).astype(dtype)


def _seeds(rng, n=1):
    seeds = []
    while len(seeds) < n:
        s = int(rng.integers(2 ** 63))
        if s not in seeds:
            seeds.append(s)
    return seeds


def _check_form(t, w, out, what="output"):
    """A one-hot ndarray of w's shape and dtype: 1 at one position of weight > 0 per non-zero row, zero rows zero."""
    t.require(type(out) is np.ndarray, f"{what}: expected a numpy.ndarray {w.shape} {w.dtype}, got "
              f"{describe_type(out)}")
    if out.shape == w.shape[:-1]:
        t.fail(f"{what}: expected shape {w.shape} (one-hot rows), got {out.shape}", INDICES_HINT)
    t.require(out.shape == w.shape, f"{what}: expected shape {w.shape} (the shape of weights), got {out.shape}")
    t.require(out.dtype != bool, f"{what}: expected one-hot rows of dtype {w.dtype}, got a bool array", BOOL_HINT)
    t.require(out.dtype == w.dtype, f"{what}: expected dtype {w.dtype} (the dtype of weights), got {out.dtype}",
              dtype_hint(w.dtype, out.dtype) if out.dtype.kind == "f" else None)
    o64 = out.astype(np.float64)
    live = w.astype(np.float64).sum(axis=-1) > 0
    bad = ~np.isin(o64, (0.0, 1.0))
    if bad.any():
        vals = o64[bad & np.isfinite(o64)]
        hint = VALUES_HINT if vals.size and np.all(np.isin(vals, w.astype(np.float64)[bad])) else None
        t.fail(f"{what}: {int(bad.sum())} entries are neither 0 nor 1 (e.g. {o64[bad][0]!r})", hint)
    ones = o64.sum(axis=-1)
    dead = ~live & (ones != 0)
    t.require(not dead.any(), f"{what}: {int(dead.sum())} rows of zero weights got a sample", ZERO_ROW_HINT)
    t.require(bool(np.all(ones[live] == 1)), f"{what}: {int(np.sum(ones[live] != 1))} rows with weights do not "
              "hold exactly one 1")
    zero_hit = (o64 == 1) & (w == 0)
    if zero_hit.any():  # a known mistake that ends here (uniform draws...) is named first
        t.fail(f"{what}: {int(zero_hit.sum())} rows sampled a position of weight 0", t.diagnose() or ZERO_WEIGHT_HINT)


def _softmax_rows(p):
    e = np.exp(p - p.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _frequency_hint(counts, n, probs):
    """The likely mistake behind counts (K, S) over n rows each that do not follow probs (K, S)."""
    if np.all(counts.max(axis=-1) == n):  # every row of a distribution at the same position
        argmax = np.zeros_like(probs)
        argmax[np.arange(len(probs)), probs.argmax(axis=-1)] = n
        # one shared draw can land on every argmax: one call cannot tell the two mistakes apart then
        return f"{ARGMAX_HINT}; or: {SHARED_HINT}" if np.array_equal(counts, argmax) else SHARED_HINT
    for candidate, hint in ((np.full_like(probs, 1.0 / probs.shape[-1]), UNIFORM_HINT),
                            (_softmax_rows(probs), SOFTMAX_AGAIN_HINT)):
        bound = SIGMAS * np.sqrt(n * candidate * (1 - candidate)) + 1
        if np.all(np.abs(counts - n * candidate) <= bound):
            return hint
    return None


@hard.case("statistics (4, 3000, 7)", "one large call: each of 4 distributions (positive, with zeros, peaked, "
           "random) repeated over 3000 rows is sampled with its own frequencies, within 6 standard deviations",
           weight=3.0)
def _(t):
    S_, n = 7, 3000
    with_zeros = np.where(keep_pattern(t.rng, S_, 0.5), t.rng.uniform(0.5, 1.5, S_), 0.0)
    peaked = np.full(S_, 0.1 / (S_ - 1))
    peaked[t.rng.integers(S_)] = 0.9
    probs = np.stack([_one_hot_rows(t.rng, S_, temperature=0.7), with_zeros / with_zeros.sum(), peaked,
                      _one_hot_rows(t.rng, S_, temperature=1.5)])  # (4, S)
    w = np.repeat(probs[:, None, :], n, axis=1)  # (4, n, S)
    (seed,) = _seeds(t.rng)
    out = t.call(w, np.random.default_rng(seed))
    _check_form(t, w, out)
    counts = out.astype(np.float64).sum(axis=1)  # (4, S)
    bound = SIGMAS * np.sqrt(n * probs * (1 - probs))
    off = np.abs(counts - n * probs) > bound
    if off.any():
        k, j = np.argwhere(off)[0]
        t.fail(f"distribution {k}: position {j} was sampled {int(counts[k, j])} times in {n} rows, expected "
               f"{n * probs[k, j]:.0f} +- {bound[k, j]:.0f} ({SIGMAS:g} standard deviations; weight "
               f"{probs[k, j]:.3f})", _frequency_hint(counts, n, probs))


@hard.case("replay (2, 3, 5, 7)", "rng is the only randomness: the same generator state gives the same sample, "
           "two states give two different samples", weight=2.0)
def _(t):
    w = _one_hot_rows(t.rng, (2, 3, 5, 7), temperature=0.5)
    s1, s2 = _seeds(t.rng, 2)
    first = t.call(w, np.random.default_rng(s1))
    _check_form(t, w, first, "first call")
    again = t.call(w, np.random.default_rng(s1))
    same = type(again) is np.ndarray and again.shape == first.shape and again.dtype == first.dtype
    differ = int(np.sum(np.any(again != first, axis=-1))) if same else w.shape[0]
    t.require(same and differ == 0, f"a second call with the same generator state (np.random.default_rng({s1})) "
              f"gave a different sample in {differ} of {first[..., 0].size} rows", GLOBAL_HINT)
    other = t.call(w, np.random.default_rng(s2))
    _check_form(t, w, other, "call with another generator state")
    if not np.any(other != first):
        argmax = np.arange(w.shape[-1]) == w.argmax(axis=-1)[..., None]
        t.fail(f"two different generator states (np.random.default_rng({s1}) and ({s2})) gave exactly the same "
               f"sample in all {first[..., 0].size} rows", ARGMAX_HINT if np.array_equal(first == 1, argmax)
               else FIXED_HINT)


@hard.case("float32 (3, 5, 7)", "float32 weights give float32 one-hot rows")
def _(t):
    w = _one_hot_rows(t.rng, (3, 5, 7), dtype="float32")
    (seed,) = _seeds(t.rng)
    _check_form(t, w, t.call(w, np.random.default_rng(seed)))


@hard.case("masked keys and fully masked rows (2, 6, 7)", "weights of 0 (masked keys) are never sampled; a row of "
           "zeros (a query that sees nothing) gives a row of zeros")
def _(t):
    mask = np.stack([keep_pattern(t.rng, 7, 0.5) for _ in range(12)]).reshape(2, 6, 7)
    mask[1, :2] = False  # two fully masked queries
    w = ref_softmax.masked_softmax(t.rng.standard_normal((2, 6, 7)), mask)
    (seed,) = _seeds(t.rng)
    _check_form(t, w, t.call(w, np.random.default_rng(seed)))


@hard.case("certain rows (9, 6) and a single row (5,)", "a row with one non-zero weight always samples it, and a "
           "1-D weights vector (S,) gives one one-hot vector (S,)")
def _(t):
    w = np.eye(6)[t.rng.integers(6, size=9)]  # (9, 6): one weight of 1 per row
    s1, s2 = _seeds(t.rng, 2)
    got = t.call(w, np.random.default_rng(s1))
    _check_form(t, w, got)
    t.expect(got, w, what="one-hot rows of one-hot weights", rtol=0.0, atol=0.0)
    single = _one_hot_rows(t.rng, (5,))
    _check_form(t, single, t.call(single, np.random.default_rng(s2)), "1-D weights")


def _one_hot(index, S_, dtype):
    return (np.arange(S_) == np.asarray(index)[..., None]).astype(dtype)


def _inverse_cdf(weights, u):
    cdf = np.cumsum(weights, axis=-1, dtype=np.float64)
    return np.minimum((cdf <= u * cdf[..., -1:]).sum(axis=-1), weights.shape[-1] - 1)


@hard.mutant("argmax", ARGMAX_HINT)
def _(weights, rng):
    return _one_hot(np.argmax(weights, axis=-1), weights.shape[-1], weights.dtype) * \
        (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("returns indices", INDICES_HINT)
def _(weights, rng):
    return _inverse_cdf(weights, rng.random(weights.shape[:-1] + (1,)))


@hard.mutant("np.random global state", GLOBAL_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, np.random.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], weights.dtype) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("generator with a fixed seed", FIXED_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, np.random.default_rng(0).random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], weights.dtype) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("uniform positions", UNIFORM_HINT)
def _(weights, rng):
    index = rng.integers(weights.shape[-1], size=weights.shape[:-1])
    return _one_hot(index, weights.shape[-1], weights.dtype) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("softmax of the weights", SOFTMAX_AGAIN_HINT)
def _(weights, rng):
    probs = _softmax_rows(np.asarray(weights, np.float64)) * (weights > 0)  # masked keys still excluded
    index = _inverse_cdf(probs, rng.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], weights.dtype) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("one draw for all rows", SHARED_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, rng.random())
    return _one_hot(index, weights.shape[-1], weights.dtype) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("weight at the sampled position", VALUES_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, rng.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], weights.dtype) * weights


@hard.mutant("bool one-hot", BOOL_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, rng.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], bool) & (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("float64 one-hot", DTYPE_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, rng.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], np.float64) * (weights.sum(axis=-1, keepdims=True) > 0)


@hard.mutant("zero rows sample the last position", ZERO_ROW_HINT)
def _(weights, rng):
    index = _inverse_cdf(weights, rng.random(weights.shape[:-1] + (1,)))
    return _one_hot(index, weights.shape[-1], weights.dtype)


@hard.alternative("rng.choice per row on float64 probabilities")
def _(weights, rng):
    w = np.asarray(weights, np.float64).reshape(-1, weights.shape[-1])
    out = np.zeros(w.shape, dtype=weights.dtype)
    for r, row in enumerate(w):
        total = row.sum()
        if total > 0:
            out[r, rng.choice(row.size, p=row / total)] = 1
    return out.reshape(weights.shape)


@hard.alternative("Gumbel-max on log weights")
def _(weights, rng):
    with np.errstate(divide="ignore"):
        keys = np.log(weights.astype(np.float64)) + rng.gumbel(size=weights.shape)
    index = np.argmax(keys, axis=-1)
    return (_one_hot(index, weights.shape[-1], weights.dtype)
            * (weights.sum(axis=-1, keepdims=True) > 0)).astype(weights.dtype)


@hard.alternative("rng.multinomial(1, p) on normalised rows")
def _(weights, rng):
    w = np.asarray(weights, np.float64)
    total = w.sum(axis=-1, keepdims=True)
    probs = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    probs[..., -1] = np.where(total[..., 0] > 0, 1.0 - probs[..., :-1].sum(axis=-1), 1.0)  # exact sums for numpy
    probs = np.clip(probs, 0.0, 1.0)
    counts = rng.multinomial(1, probs)
    return (counts * (total > 0)).astype(weights.dtype)


EXERCISES = [bahdanau, luong, local_p, coverage_attn, cov_loss, hard]
