"""Grader for attnlab.attention (notebook 02): scaled_dot_product_attention.

Oracle: PyTorch's torch.nn.functional.scaled_dot_product_attention in float64 (our NumPy reference is
cross-checked against it in tests/test_references.py), with the course's convention for fully masked rows
(zero weights, zero output) where PyTorch returns NaN.
"""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import attention as ref
from ..references import masks as ref_masks
from ..references import softmax as ref_softmax
from ..references.scoring import scaled_dot_scores
from .softmax import FORBID_TORCH_SOFTMAX

FORBID_TORCH_ATTENTION = (
    ("torch", "scaled_dot_product"),      # F.scaled_dot_product_attention, aten._scaled_dot_product_*
    ("torch", "multi_head_attention"),    # F.multi_head_attention_forward
    ("torch", "MultiheadAttention"),      # nn.MultiheadAttention.forward
) + FORBID_TORCH_SOFTMAX

sdpa = Exercise("attention.scaled_dot_product_attention", points=4, reference=ref.scaled_dot_product_attention,
                deps=("softmax.softmax", "softmax.masked_softmax", "scoring.dot_scores", "scoring.scaled_dot_scores"),
                forbidden=FORBID_TORCH_ATTENTION, uses_torch=True,
                demo=lambda rng: ((np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                   np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])), {}))


def _qkv(rng, lead=(2, 3), L=5, S=7, D=4, D_v=6, dtype=np.float64):
    q = rng.standard_normal(lead + (L, D)).astype(dtype)
    k = rng.standard_normal(lead + (S, D)).astype(dtype)
    v = rng.standard_normal(lead + (S, D_v)).astype(dtype)
    return q, k, v


def _check(t, q, k, v, mask=None, scale=None, **call_kwargs):
    kwargs = dict(call_kwargs)
    if mask is not None:
        kwargs["mask"] = mask
    if scale is not None:
        kwargs["scale"] = scale
    got = t.expect_tuple(t.call(q, k, v, **kwargs), 2)
    out, weights = ref.torch_oracle(q, k, v, mask=mask, scale=scale)
    t.expect(got[1], weights.astype(q.dtype), what="weights (..., L, S)")
    t.expect(got[0], out.astype(q.dtype), what="output (..., L, D_v)")


@sdpa.case("float64 (2, 3): L=5, S=7, D=4, D_v=6", "no mask, every dimension distinct, against PyTorch's SDPA")
def _(t):
    _check(t, *_qkv(t.rng))


@sdpa.case("no batch dims (5, 4), (7, 4), (7, 6)", "plain 2-D inputs")
def _(t):
    _check(t, *_qkv(t.rng, lead=()))


@sdpa.case("causal mask (5, 7)", "a broadcast (L, S) boolean mask, end-aligned causal")
def _(t):
    _check(t, *_qkv(t.rng), mask=ref_masks.causal_mask(5, 7))


@sdpa.case("padding mask (2, 1, 1, 7)", "a key-padding mask broadcast over heads and queries")
def _(t):
    mask = ref_masks.padding_mask(np.array([4, 7]), 7)[:, None, None, :]
    _check(t, *_qkv(t.rng), mask=mask)


@sdpa.case("fully masked rows", "a query with no visible key gets zero weights and a zero output, never NaN")
def _(t):
    q, k, v = _qkv(t.rng, lead=(2,), L=5, S=3)
    mask = ref_masks.causal_mask(5, 3)  # L > S: the first two queries see nothing
    _check(t, q, k, v, mask=np.repeat(mask[None], 2, axis=0))


@sdpa.case("large logits", "scores of magnitude ~1e3 give finite, exact results")
def _(t):
    q, k, v = _qkv(t.rng, lead=(3,))
    _check(t, q * 40.0, k * 40.0, v)


@sdpa.case("explicit scale=0.2", "an explicit scale replaces 1/sqrt(D)")
def _(t):
    _check(t, *_qkv(t.rng, lead=(2,)), scale=0.2)


@sdpa.case("float32 (2, 3, 5, 7)", "float32 inputs give float32 output and weights")
def _(t):
    q, k, v = _qkv(t.rng, dtype=np.float32)
    _check(t, q, k, v, mask=ref_masks.causal_mask(5, 7))


@sdpa.case("causal: future does not leak", "with a causal mask, changing future keys and values leaves earlier "
           "outputs unchanged (metamorphic)")
def _(t):
    q, k, v = _qkv(t.rng, lead=(2,), L=6, S=6)
    mask = ref_masks.causal_mask(6)
    first = t.expect_tuple(t.call(q, k, v, mask=mask), 2)[0]
    k2, v2 = k.copy(), v.copy()
    k2[..., 3:, :] += 5.0
    v2[..., 3:, :] -= 5.0
    second = t.expect_tuple(t.call(q, k2, v2, mask=mask), 2)[0]
    t.expect(first, ref.torch_oracle(q, k, v, mask=mask)[0], what="output")
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
            scores = np.where(m, scores, fill)
            weights = ref_softmax.softmax(scores, axis=axis)
    else:
        weights = ref_softmax.softmax(scores, axis=axis)
    out = weights @ v
    dtype = dtype or q.dtype
    return out.astype(dtype), weights.astype(dtype)


@sdpa.mutant("forgot scale", "matches the unscaled scores: did you forget 1/sqrt(D)?")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: 1.0)


@sdpa.mutant("1/D", "the scale is 1/sqrt(D), not 1/D")
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, scale_fn=lambda q, k, v: 1.0 / q.shape[-1])


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


@sdpa.mutant("(weights, output) order", "return (output, weights) in that order")
def _(q, k, v, mask=None, scale=None):
    out, weights = _manual(q, k, v, mask, scale)
    return weights, out


@sdpa.mutant("float64 output", DTYPE_HINT)
def _(q, k, v, mask=None, scale=None):
    return _manual(q, k, v, mask, scale, dtype=np.float64)


EXERCISES = [sdpa]
