"""Grader for attnlab.softmax (notebook 01): softmax, masked_softmax.

Oracle: our float64 references (autograde.references.softmax, cross-checked against torch.softmax in
tests/test_references.py), rounded once to the input's dtype. Softmax weights are compared with
`tolerances.exp_rtol(dtype, max |kept logit|)`: a correct program rounds its shift (the max, or the
log-sum-exp) to the input's precision, an error of about eps * |x| in every exponent, so the allowance grows
with the logits instead of failing correct float32 code on logits near 1e3 at some seeds.
"""
import numpy as np

from ..compare import dtype_hint
from ..framework import DTYPE_HINT, Exercise
from ..references import softmax as ref
from ..tolerances import exp_rtol
from .inputs import keep_mask

# (module prefix, name): a call is forbidden when the callable's own __module__ starts with the prefix and
# its __qualname__ contains the name (torch.softmax, Tensor.softmax, F.softmax, torch.special.softmax,
# torch._softmax, log_softmax, torch.ops.aten._softmax, scipy.special.softmax, ...).
FORBID_TORCH_SOFTMAX = (("torch", "softmax"), ("scipy.special", "softmax"))

F64_TO_F32_HINT = dtype_hint("float64", "float32")
MULTIPLY_HINT = ("mask with np.where(mask, x, -np.inf) (or take the max over kept entries only), not x * mask: "
                 "a masked logit of 0 is not excluded, and when every kept logit is far below 0 it wins the max "
                 "and the kept exps underflow to 0")
ZERO_HINT = ("masked weights must be exactly 0: a finite fill (x - 30, -1e4) or an epsilon leaves them a tiny "
             "weight; zero them with np.where(mask, ..., 0) after the exp")


# A masked weight that is not 0 but at most this is a finite fill or an epsilon, not a mask ignored: it is named
# before the values are compared (an error of 1e-9 either passes the comparison or is too small to tell the
# learner's output from that of other mistakes).
TINY_WEIGHT = 1e-3


def require_exact_zeros(t, got, shape, mask, hint, what="weights"):
    """Fail with `hint` when the masked entries of `got` (an array of `shape`) are not exactly 0 but all tiny;
    anything else (a wrong type or shape, NaN, large masked weights) is left to the value comparison."""
    if type(got) is not np.ndarray or got.shape != tuple(shape) or got.dtype.kind != "f":
        return
    left = np.abs(got.astype(np.float64))[~np.broadcast_to(np.asarray(mask, bool), got.shape)]
    left = left[~np.isnan(left)]
    if left.any() and left.max() <= TINY_WEIGHT:
        t.fail(f"{what}: {int(np.count_nonzero(left))} masked entries are not exactly 0 (largest "
               f"{left.max():.3g})", hint)


def exp_tolerance(x, mask=None):
    """rtol for softmax weights of the logits x (only the kept ones when a mask is given): exp_rtol of the
    largest |logit|, the rounding a correct shift x - c commits in x's dtype."""
    x = np.asarray(x)
    size = np.abs(x.astype(np.float64))
    if mask is not None:
        size = np.where(mask, size, 0.0)
    return exp_rtol(x.dtype, float(size.max(initial=0.0)))


softmax = Exercise("softmax.softmax", points=2, reference=ref.softmax, forbidden=FORBID_TORCH_SOFTMAX,
                   demo=lambda rng: ((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),), {}))


def _expect_softmax(t, got, x, expected, what=None):
    t.expect(got, expected, what=what, rtol=exp_tolerance(x))


@softmax.case("hand-checkable (2, 3)", "a small float64 input matches hand-computable values")
def _(t):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    _expect_softmax(t, t.call(x), x, ref.softmax(x))


@softmax.case("float64 (2, 3, 5, 7)", "every dimension distinct: rows along the last axis sum to 1")
def _(t):
    x = t.rng.standard_normal((2, 3, 5, 7))
    _expect_softmax(t, t.call(x), x, ref.softmax(x))


@softmax.case("float32 (3, 5, 7)", "a float32 input gives float32 weights")
def _(t):
    x = t.rng.standard_normal((3, 5, 7)).astype(np.float32)
    _expect_softmax(t, t.call(x), x, ref.softmax(x))


@softmax.case("large logits float64", "logits of magnitude 1e4 (rows far apart) give finite, exact weights")
def _(t):
    x = t.rng.standard_normal((4, 6)) * 10
    x[0] += 1e4
    x[1] -= 1e4
    x[2, 0] = 1e4
    _expect_softmax(t, t.call(x), x, ref.softmax(x))


@softmax.case("large logits float32", "logits of magnitude 1e3 in float32 stay finite (the allowance grows with "
              "eps * |logit|: a correct shift is rounded to float32)")
def _(t):
    x = (t.rng.standard_normal((3, 5)) * 10 + 1000).astype(np.float32)
    x[1] -= 2000
    _expect_softmax(t, t.call(x), x, ref.softmax(x))


@softmax.case("float16 (5, 7)", "a float16 input gives float16 weights within float16 tolerance")
def _(t):
    x = t.rng.standard_normal((5, 7)).astype(np.float16)
    _expect_softmax(t, t.call(x), x, ref.softmax(x.astype(np.float64)).astype(np.float16))


@softmax.case("axis=0 and axis=1", "the axis argument selects the axis that sums to 1")
def _(t):
    x = t.rng.standard_normal((4, 6, 3))
    _expect_softmax(t, t.call(x, axis=0), x, ref.softmax(x, axis=0), what="axis=0")
    _expect_softmax(t, t.call(x, axis=1), x, ref.softmax(x, axis=1), what="axis=1")


@softmax.mutant("no max subtraction", "subtract the row max before exp: exp(1000) overflows to inf and inf/inf is NaN")
def _(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


@softmax.mutant("global max", "subtract each row's own max (keepdims=True), not the global max: "
                "rows far below it underflow to 0/0")
def _(x, axis=-1):
    e = np.exp(x - x.max())
    return e / e.sum(axis=axis, keepdims=True)


@softmax.mutant("ignores axis", "normalise along the `axis` argument, not always the last axis")
def _(x, axis=-1):
    return ref.softmax(x, axis=-1)


@softmax.mutant("sums over everything", "sum along `axis` only (keepdims=True), not over the whole array")
def _(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum()


@softmax.mutant("log-softmax", "return probabilities, not log-probabilities")
def _(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@softmax.mutant("float64 output", DTYPE_HINT)
def _(x, axis=-1):
    return ref.softmax(np.asarray(x, dtype=np.float64), axis=axis)


@softmax.mutant("float32 output for float64 input", F64_TO_F32_HINT)
def _(x, axis=-1):
    out = ref.softmax(x, axis=axis)
    return out.astype(np.float32) if out.dtype == np.float64 else out


@softmax.alternative("log-sum-exp in the input dtype (the JAX/trax way)")
def _(x, axis=-1):
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    lse = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))  # rounded to x's dtype
    return np.exp(x - lse)


@softmax.alternative("float64 inside, cast back")
def _(x, axis=-1):
    x = np.asarray(x)
    w = x.astype(np.float64)
    e = np.exp(w - w.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


@softmax.alternative("moveaxis to the end, reciprocal of the sum")
def _(x, axis=-1):
    z = np.moveaxis(np.asarray(x), axis, -1)
    e = np.exp(z - z.max(axis=-1)[..., None])
    return np.moveaxis(e * (1 / e.sum(axis=-1))[..., None], -1, axis)


# ------------------------------------------------------------------------------- masked_softmax
masked_softmax = Exercise("softmax.masked_softmax", points=2, reference=ref.masked_softmax,
                          deps=("softmax.softmax",), forbidden=FORBID_TORCH_SOFTMAX,
                          demo=lambda rng: ((np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
                                             np.array([[True, False, True], [False, False, False]])), {}))


def _scores_and_mask(rng, shape, mask_shape=None):
    x = rng.standard_normal(shape)
    return x, keep_mask(rng, mask_shape or shape)  # no fully masked row unless a case asks for one


def _expect_masked(t, got, x, mask, axis=-1):
    """Masked weights exactly 0, then the weights within exp_rtol of the kept logits."""
    require_exact_zeros(t, got, np.shape(x), mask, ZERO_HINT)
    t.expect(got, ref.masked_softmax(x, mask, axis=axis), rtol=exp_tolerance(x, mask))


@masked_softmax.case("float64 (2, 3, 5, 7)", "masked entries get exactly 0 and kept entries sum to 1")
def _(t):
    x, mask = _scores_and_mask(t.rng, (2, 3, 5, 7))
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("broadcast mask (5, 7)", "a (5, 7) mask broadcasts against (2, 3, 5, 7) scores")
def _(t):
    x, mask = _scores_and_mask(t.rng, (2, 3, 5, 7), (5, 7))
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("fully masked row", "a row with no kept position is all zeros, never NaN")
def _(t):
    x, mask = _scores_and_mask(t.rng, (3, 5, 7))
    mask[1, 2, :] = False
    mask[2, 4, :] = False
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("huge masked logit", "a huge logit at a masked position must not affect the kept ones")
def _(t):
    x, mask = _scores_and_mask(t.rng, (4, 7))
    x[:, 3] = 1e4
    mask[:, 3] = False
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("kept logits far below 0, float32", "kept logits near -1000 with the masked ones above "
                     "them (near 5) or far below (near -2000): masked entries are excluded, not set to 0 (x * mask)")
def _(t):
    x, mask = _scores_and_mask(t.rng, (4, 7))
    mask[:, -1] = False  # every row masks something
    masked_at = np.array([5.0, 5.0, -2000.0, -2000.0])[:, None]  # rows 0-1 above the kept logits, 2-3 below
    x = (x + np.where(mask, -1000.0, masked_at)).astype(np.float32)
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("float32 (5, 7)", "a float32 input gives float32 weights")
def _(t):
    x, mask = _scores_and_mask(t.rng, (5, 7))
    x = x.astype(np.float32)
    _expect_masked(t, t.call(x, mask), x, mask)


@masked_softmax.case("axis=0", "the axis argument selects the axis that sums to 1")
def _(t):
    x = t.rng.standard_normal((6, 4))
    mask = t.rng.random((6, 4)) < 0.6
    mask[0] = True
    _expect_masked(t, t.call(x, mask, axis=0), x, mask, axis=0)


@masked_softmax.mutant("large negative fill", "a fully masked row must be all zeros: filling masked logits with a "
                       "large negative number gives a uniform row instead")
def _(x, mask, axis=-1):
    return ref.softmax(np.where(mask, x, -1e9).astype(x.dtype), axis=axis)


@masked_softmax.mutant("-inf fill", "a fully masked row gives exp(-inf)/0 = NaN: return zeros for rows with no "
                       "kept entry")
def _(x, mask, axis=-1):
    z = np.where(mask, x, -np.inf)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


@masked_softmax.mutant("small finite fill", ZERO_HINT)
def _(x, mask, axis=-1):
    return ref.softmax(np.where(mask, x, x - 30.0).astype(x.dtype), axis=axis)


@masked_softmax.mutant("inverted mask", "True in the mask means keep (may attend), as in PyTorch's boolean attn_mask")
def _(x, mask, axis=-1):
    return ref.masked_softmax(x, ~np.asarray(mask, bool), axis=axis)


@masked_softmax.mutant("no renormalisation", "renormalise after masking: the kept weights must sum to 1")
def _(x, mask, axis=-1):
    return (ref.softmax(x, axis=axis) * mask).astype(x.dtype)


@masked_softmax.mutant("ignores mask", "masked positions must get exactly 0 weight")
def _(x, mask, axis=-1):
    return ref.softmax(x, axis=axis)


@masked_softmax.mutant("max over masked entries", "take the max over kept entries only: a huge masked logit "
                       "makes every kept exp underflow to 0")
def _(x, mask, axis=-1):
    e = np.where(mask, np.exp(x - x.max(axis=axis, keepdims=True)), 0.0)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0).astype(x.dtype)


@masked_softmax.mutant("multiplies the logits by the mask", MULTIPLY_HINT)
def _(x, mask, axis=-1):
    z = x * mask  # masked logits become 0, not -inf: they still take part in the max
    e = np.where(mask, np.exp(z - z.max(axis=axis, keepdims=True)), 0.0)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0).astype(x.dtype)


@masked_softmax.mutant("multiplies the logits by the mask, 0/0 unguarded", MULTIPLY_HINT)
def _(x, mask, axis=-1):
    z = x * mask
    e = np.exp(z - z.max(axis=axis, keepdims=True)) * mask
    with np.errstate(invalid="ignore"):
        return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)  # NaN where every kept exp underflowed


@masked_softmax.mutant("softmax of x * mask", MULTIPLY_HINT)
def _(x, mask, axis=-1):
    return ref.softmax((x * mask).astype(x.dtype), axis=axis)


@masked_softmax.mutant("float64 output", DTYPE_HINT)
def _(x, mask, axis=-1):
    return ref.masked_softmax(np.asarray(x, np.float64), mask, axis=axis)


@masked_softmax.alternative("-inf fill, then NaN rows set to 0")
def _(x, mask, axis=-1):
    x = np.asarray(x)
    z = np.where(mask, x, -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(z - z.max(axis=axis, keepdims=True))  # NaN on a fully masked row (-inf - -inf)
        w = e / e.sum(axis=axis, keepdims=True)
    return np.where(np.isnan(w), 0.0, w).astype(x.dtype)


@masked_softmax.alternative("log-sum-exp over kept entries in the input dtype")
def _(x, mask, axis=-1):
    x = np.asarray(x)
    mask = np.broadcast_to(np.asarray(mask, bool), x.shape)
    m = np.where(mask, x, -np.inf).max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    s = np.where(mask, np.exp(x - m), 0).sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = m + np.log(s)  # -inf on a fully masked row
    return np.where(mask, np.exp(x - lse), 0).astype(x.dtype)


EXERCISES = [softmax, masked_softmax]
