"""Grader for attnlab.attention (notebook 02): scaled_dot_product_attention.

Oracle: PyTorch's torch.nn.functional.scaled_dot_product_attention in float64 (our NumPy reference is
cross-checked against it in tests/test_references.py), with the course's convention for fully masked rows
(zero weights, zero output) where PyTorch returns NaN, rounded once to the input's dtype.

Tolerance: the weights exponentiate scores s = scale * q.k, which a correct program rounds to the input's
precision with an error of about eps * scale * sum_d |q_d| |k_d|: the weights get `exp_rtol` of that
magnitude (the largest over kept query-key pairs), and the output, a weighted average of the values, the
same extra relative error times max |v| on top of the table's atol. Masked weights must be exactly 0: tiny
leftovers (a finite fill such as scores - 30, an epsilon) are named before the values are compared.
"""
import numpy as np

from ..compare import dtype_hint
from ..framework import DTYPE_HINT, Exercise
from ..references import attention as ref
from ..references import masks as ref_masks
from ..references import softmax as ref_softmax
from ..references.scoring import scaled_dot_scores
from ..tolerances import exp_rtol, tolerance
from .inputs import keep_mask, qkv
from .softmax import FORBID_TORCH_SOFTMAX, require_exact_zeros

FORBID_TORCH_ATTENTION = (
    ("torch", "scaled_dot_product"),      # F.scaled_dot_product_attention, aten._scaled_dot_product_*
    ("torch", "multi_head_attention"),    # F.multi_head_attention_forward
    ("torch", "MultiheadAttention"),      # nn.MultiheadAttention.forward
) + FORBID_TORCH_SOFTMAX

MULTIPLY_HINT = ("mask the scores with np.where(mask, scores, -np.inf) (or masked_softmax), not scores * mask: a "
                 "masked score of 0 is not excluded, and when every kept score is far below 0 it wins the max and the "
                 "kept exps underflow to 0")
ZERO_HINT = ("masked keys must get exactly 0 weight: a finite fill (scores - 30, -1e4) or an epsilon added to the "
             "weights leaves them a tiny weight; fill masked scores with -inf (guarding fully masked rows) or zero "
             "the masked weights with np.where(mask, ..., 0)")
FULL_ROW_HINT = ("a fully masked row must get zero weights and a zero output: filling masked scores with a large "
                 "negative number (-1e9, -1e6) gives that row uniform weights 1/S instead")
AFTER_SOFTMAX_HINT = ("apply the mask to the scores before the softmax, not to the weights after it: weights * mask "
                      "leaves kept weights that no longer sum to 1")
AFTER_SOFTMAX_RENORM_HINT = ("apply the mask to the scores before the softmax: renormalising weights * mask divides "
                             "0 by 0 on a fully masked row, and loses every kept weight when masked scores dominate")

sdpa = Exercise("attention.scaled_dot_product_attention", points=4, reference=ref.scaled_dot_product_attention,
                deps=("softmax.softmax", "softmax.masked_softmax", "scoring.dot_scores", "scoring.scaled_dot_scores"),
                forbidden=FORBID_TORCH_ATTENTION, uses_torch=True,
                demo=lambda rng: ((np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                   np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])), {}))


def _tolerances(q, k, v, mask=None, scale=None):
    """(rtol of the weights, atol of the output) for these inputs (see the module docstring)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    size = np.abs(np.asarray(q, np.float64)) @ np.swapaxes(np.abs(np.asarray(k, np.float64)), -1, -2)  # (..., L, S)
    if mask is not None:
        size = np.where(mask, size, 0.0)
    rtol = exp_rtol(q.dtype, abs(scale) * float(size.max(initial=0.0)))
    table_rtol, table_atol = tolerance(q.dtype)
    return rtol, table_atol + (rtol - table_rtol) * float(np.abs(np.asarray(v, np.float64)).max(initial=0.0))


def _check(t, q, k, v, mask=None, scale=None, **call_kwargs):
    kwargs = dict(call_kwargs)
    if mask is not None:
        kwargs["mask"] = mask
    if scale is not None:
        kwargs["scale"] = scale
    got = t.expect_tuple(t.call(q, k, v, **kwargs), 2)
    out, weights = ref.torch_oracle(q, k, v, mask=mask, scale=scale)
    rtol, out_atol = _tolerances(q, k, v, mask, scale)
    if mask is not None:
        require_exact_zeros(t, got[1], weights.shape, mask, ZERO_HINT, what="weights (..., L, S)")
    t.expect(got[1], weights.astype(q.dtype), what="weights (..., L, S)", rtol=rtol)
    t.expect(got[0], out.astype(q.dtype), what="output (..., L, D_v)", atol=out_atol)


@sdpa.case("float64 (2, 3): L=5, S=7, D=4, D_v=6", "no mask, every dimension distinct, against PyTorch's SDPA")
def _(t):
    _check(t, *qkv(t.rng))


@sdpa.case("no batch dims (5, 4), (7, 4), (7, 6)", "plain 2-D inputs")
def _(t):
    _check(t, *qkv(t.rng, lead=()))


@sdpa.case("causal mask (5, 7)", "a broadcast (L, S) boolean mask, end-aligned causal")
def _(t):
    _check(t, *qkv(t.rng), mask=ref_masks.causal_mask(5, 7))


@sdpa.case("padding mask (2, 1, 1, 7)", "a key-padding mask broadcast over heads and queries")
def _(t):
    mask = ref_masks.padding_mask(np.array([4, 7]), 7)[:, None, None, :]
    _check(t, *qkv(t.rng), mask=mask)


@sdpa.case("fully masked rows", "a query with no visible key gets zero weights and a zero output, never NaN")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=5, S=3)
    mask = ref_masks.causal_mask(5, 3)  # L > S: the first two queries see nothing
    _check(t, q, k, v, mask=np.repeat(mask[None], 2, axis=0))


@sdpa.case("large logits", "scores of magnitude 1e3-1e4 give finite, exact results (rows near +1000, near -1000 "
           "with a spread of a few units, and far apart)")
def _(t):
    q, k, v = qkv(t.rng, lead=(3,))             # (3, 5, 4), (3, 7, 4), (3, 7, 6)
    big_q, big_k = 40.0 * q[2], 40.0 * k[2]     # batch 2: scores up to ~1e4, rows nearly one-hot
    q[..., 0] = 40.0 + 0.1 * q[..., 0]          # batches 0-1: every query points along the first axis,
    k[..., 0] = np.array([50.0, -50.0, 0.0])[:, None] + 0.05 * k[..., 0]  # scores near +1000 and -1000
    q[2], k[2] = big_q, big_k                   # (a spread of a few units: a wrong scale cannot hide)
    _check(t, q, k, v)


@sdpa.case("kept scores far below 0, float32", "kept scores near -1000 with the masked ones above them (+4) or "
           "far below (-2000): masked keys are excluded, not given a score of 0 (scores * mask)")
def _(t):
    q, k, v = qkv(t.rng)                        # (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)
    mask = keep_mask(t.rng, (2, 1, 1, 7))       # a key mask per batch entry
    mask[..., -1] = False                       # every query masks at least one key
    q[..., 0] = 40.0 + 0.1 * q[..., 0]          # every query points along the first axis
    masked_k0 = np.array([0.2, -100.0])[:, None, None]  # masked scores: batch 0 near +4, batch 1 near -2000
    k[..., 0] = np.where(mask[:, :, 0, :], -50.0 + 0.05 * k[..., 0], masked_k0)  # kept scores near -1000
    _check(t, q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), mask=mask)


@sdpa.case("explicit scale=0.2", "an explicit scale replaces 1/sqrt(D)")
def _(t):
    _check(t, *qkv(t.rng, lead=(2,)), scale=0.2)


@sdpa.case("float32 (2, 3, 5, 7)", "float32 inputs give float32 output and weights")
def _(t):
    q, k, v = qkv(t.rng, dtype="float32")
    _check(t, q, k, v, mask=ref_masks.causal_mask(5, 7))


@sdpa.case("causal: future does not leak", "with a causal mask, changing future keys and values leaves earlier "
           "outputs unchanged (metamorphic)")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=6, S=6)
    mask = ref_masks.causal_mask(6)
    first, weights = t.expect_tuple(t.call(q, k, v, mask=mask), 2)
    require_exact_zeros(t, weights, (2, 6, 6), mask, ZERO_HINT, what="weights (..., L, S)")
    k2, v2 = k.copy(), v.copy()
    k2[..., 3:, :] += 5.0
    v2[..., 3:, :] -= 5.0
    second = t.expect_tuple(t.call(q, k2, v2, mask=mask), 2)[0]
    t.expect(first, ref.torch_oracle(q, k, v, mask=mask)[0], what="output", atol=_tolerances(q, k, v, mask)[1])
    t.expect(second[..., :3, :], np.asarray(first)[..., :3, :], what="outputs of queries 0-2 after changing keys 3-5",
             hint="queries must not see future keys: apply the mask before the softmax")


def _manual(q, k, v, mask=None, scale=None, *, fill=None, axis=-1, scale_fn=None, invert=False, dtype=None):
    scale = scale_fn(q, k, v) if scale is None and scale_fn else scale
    scores = scaled_dot_scores(q, k, scale)
    if mask is not None:
        m = ~np.asarray(mask, bool) if invert else np.asarray(mask, bool)
        if fill is None:
            weights = ref_softmax.masked_softmax(scores, m, axis=axis)
        else:
            scores = np.where(m, scores, fill(scores) if callable(fill) else fill)
            weights = ref_softmax.softmax(scores, axis=axis)
    else:
        weights = ref_softmax.softmax(scores, axis=axis)
    out = weights @ v
    dtype = dtype or q.dtype
    return out.astype(dtype), weights.astype(dtype)


def _after_softmax(q, k, v, mask, scale, renormalise):
    out, weights = _manual(q, k, v, None, scale)
    if mask is None:
        return out, weights
    weights = weights * np.asarray(mask, bool)
    if renormalise:
        with np.errstate(invalid="ignore"):
            weights = weights / weights.sum(axis=-1, keepdims=True)  # 0/0 on a fully masked row
    return (weights @ v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.mutant("forgot scale", "matches the unscaled scores: did you forget 1/sqrt(D)?")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: 1.0)


@sdpa.mutant("1/D", "the scale is 1/sqrt(D), not 1/D")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: 1.0 / q.shape[-1])


@sdpa.mutant("times sqrt(D)", "divide the scores by sqrt(D) (scale = 1/sqrt(D)): you multiplied them by sqrt(D)")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: float(np.sqrt(q.shape[-1])))


@sdpa.mutant("scale by D_v", "the scale uses D, the width of q and k, not D_v")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: 1.0 / np.sqrt(v.shape[-1]))


@sdpa.mutant("softmax over queries", "take the softmax over the key axis (-1): each query's weights sum to 1")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, axis=-2)


@sdpa.mutant("inverted mask", "True in the mask means may attend (PyTorch's boolean attn_mask convention)")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, invert=True)


@sdpa.mutant("ignores mask", "apply the mask: masked keys must get zero weight")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, None, scale)


@sdpa.mutant("-inf fill", "fully masked rows must give zero weights and a zero output, not NaN")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, fill=-np.inf)


@sdpa.mutant("-1e9 fill", FULL_ROW_HINT)
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, fill=-1e9)


@sdpa.mutant("-1e6 fill", FULL_ROW_HINT)
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, fill=-1e6)


@sdpa.mutant("fill scores - 30", ZERO_HINT)
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, fill=lambda scores: scores - 30.0)


@sdpa.mutant("weights + 1e-12, renormalised", ZERO_HINT)
def _(q, k, v, mask=None, scale=None):
    _, weights = _manual(q, k, v, mask, scale, dtype=np.float64)
    weights = (weights + 1e-12) / (weights + 1e-12).sum(axis=-1, keepdims=True)
    return (weights @ v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.mutant("multiplies the scores by the mask", MULTIPLY_HINT)
def _(q, k, v, mask=None, scale=None):
    if mask is None:
        return _manual(q, k, v, None, scale)
    scores = scaled_dot_scores(q, k, scale) * np.asarray(mask, bool)  # masked scores become 0, not -inf
    keep = np.broadcast_to(np.asarray(mask, bool), scores.shape)
    e = np.where(keep, np.exp(scores - scores.max(axis=-1, keepdims=True)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return (weights @ v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.mutant("multiplies the scores by the mask, 0/0 unguarded", MULTIPLY_HINT)
def _(q, k, v, mask=None, scale=None):
    if mask is None:
        return _manual(q, k, v, None, scale)
    scores = scaled_dot_scores(q, k, scale) * np.asarray(mask, bool)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True)) * np.asarray(mask, bool)
    with np.errstate(invalid="ignore"):
        weights = e / e.sum(axis=-1, keepdims=True)  # NaN where every kept exp underflowed
    return (weights @ v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.mutant("softmax of scores * mask", MULTIPLY_HINT)
def _(q, k, v, mask=None, scale=None):
    scores = scaled_dot_scores(q, k, scale)
    if mask is not None:
        scores = scores * np.asarray(mask, bool)
    weights = ref_softmax.softmax(scores)
    return (weights @ v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.mutant("mask after the softmax", AFTER_SOFTMAX_HINT)
def _(q, k, v, mask=None, scale=None):
    return _after_softmax(q, k, v, mask, scale, renormalise=False)


@sdpa.mutant("mask after the softmax, renormalised", AFTER_SOFTMAX_RENORM_HINT)
def _(q, k, v, mask=None, scale=None):
    return _after_softmax(q, k, v, mask, scale, renormalise=True)


@sdpa.mutant("(weights, output) order", "return (output, weights) in that order")
def _(q, k, v, mask=None, scale=None):
    out, weights = _manual(q, k, v, mask, scale)
    return weights, out


@sdpa.mutant("float64 output", DTYPE_HINT)
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, dtype=np.float64)


@sdpa.mutant("float32 output for float64 input", dtype_hint("float64", "float32"))
def _(q, k, v, mask=None, scale=None):
    out, weights = _manual(q, k, v, mask, scale)
    if q.dtype == np.float64:
        return out.astype(np.float32), weights.astype(np.float32)
    return out, weights


@sdpa.alternative("einsum instead of matmul")
def _(q, k, v, mask=None, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = np.einsum("...ld,...sd->...ls", q, k) * scale
    keep = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    m = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(scores - np.where(np.isfinite(m), m, 0)), 0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return np.einsum("...ls,...sv->...lv", weights, v).astype(q.dtype), weights.astype(q.dtype)


@sdpa.alternative("its own log-sum-exp softmax, in the input dtype")
def _(q, k, v, mask=None, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ np.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    keep = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    m = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(q.dtype)
    with np.errstate(divide="ignore"):
        lse = m + np.log(np.where(keep, np.exp(scores - m), 0).sum(axis=-1, keepdims=True))
    weights = np.where(keep, np.exp(scores - lse), 0).astype(q.dtype)
    return weights @ v, weights


@sdpa.alternative("additive -inf bias, NaN rows set to 0")
def _(q, k, v, mask=None, scale=None):
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ np.swapaxes(k, -1, -2) * scale).astype(q.dtype)
    if mask is not None:
        scores = scores + np.where(mask, 0.0, -np.inf).astype(q.dtype)
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = e / e.sum(axis=-1, keepdims=True)
    weights = np.nan_to_num(weights, nan=0.0)
    return weights @ v, weights


EXERCISES = [sdpa]
