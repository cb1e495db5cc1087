"""Grader for attnlab.softmax (notebook 01): softmax, masked_softmax."""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import softmax as ref

# (module prefix, name): a call is forbidden when the callable's own __module__ starts with the prefix and
# its __qualname__ contains the name (torch.softmax, Tensor.softmax, F.softmax, torch.special.softmax,
# torch._softmax, log_softmax, torch.ops.aten._softmax, scipy.special.softmax, ...).
FORBID_TORCH_SOFTMAX = (("torch", "softmax"), ("scipy.special", "softmax"))

softmax = Exercise("softmax.softmax", points=2, reference=ref.softmax, forbidden=FORBID_TORCH_SOFTMAX,
                   demo=lambda rng: ((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),), {}))


@softmax.case("hand-checkable (2, 3)", "a small float64 input matches hand-computable values")
def _(t):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t.expect(t.call(x), ref.softmax(x))


@softmax.case("float64 (2, 3, 5, 7)", "every dimension distinct: rows along the last axis sum to 1")
def _(t):
    x = t.rng.standard_normal((2, 3, 5, 7))
    got = t.call(x)
    t.expect(got, ref.softmax(x))


@softmax.case("float32 (3, 5, 7)", "a float32 input gives float32 weights")
def _(t):
    x = t.rng.standard_normal((3, 5, 7)).astype(np.float32)
    t.expect(t.call(x), ref.softmax(x))


@softmax.case("large logits float64", "logits of magnitude 1e4 (rows far apart) give finite, exact weights")
def _(t):
    x = t.rng.standard_normal((4, 6)) * 10
    x[0] += 1e4
    x[1] -= 1e4
    x[2, 0] = 1e4
    t.expect(t.call(x), ref.softmax(x))


@softmax.case("large logits float32", "logits of magnitude 1e3 in float32 stay finite")
def _(t):
    x = (t.rng.standard_normal((3, 5)) * 10 + 1000).astype(np.float32)
    x[1] -= 2000
    t.expect(t.call(x), ref.softmax(x))


@softmax.case("float16 (5, 7)", "a float16 input gives float16 weights within float16 tolerance")
def _(t):
    x = t.rng.standard_normal((5, 7)).astype(np.float16)
    t.expect(t.call(x), ref.softmax(x.astype(np.float64)).astype(np.float16))


@softmax.case("axis=0 and axis=1", "the axis argument selects the axis that sums to 1")
def _(t):
    x = t.rng.standard_normal((4, 6, 3))
    t.expect(t.call(x, axis=0), ref.softmax(x, axis=0), what="axis=0")
    t.expect(t.call(x, axis=1), ref.softmax(x, axis=1), what="axis=1")


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


# ------------------------------------------------------------------------------- masked_softmax
masked_softmax = Exercise("softmax.masked_softmax", points=2, reference=ref.masked_softmax,
                          deps=("softmax.softmax",), forbidden=FORBID_TORCH_SOFTMAX,
                          demo=lambda rng: ((np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
                                             np.array([[True, False, True], [False, False, False]])), {}))


def _scores_and_mask(rng, shape, mask_shape=None, p_keep=0.6):
    x = rng.standard_normal(shape)
    mask = rng.random(mask_shape or shape) < p_keep
    mask[..., 0] = True  # no fully masked row unless a case asks for one
    return x, mask


@masked_softmax.case("float64 (2, 3, 5, 7)", "masked entries get exactly 0 and kept entries sum to 1")
def _(t):
    x, mask = _scores_and_mask(t.rng, (2, 3, 5, 7))
    got = t.call(x, mask)
    t.expect(got, ref.masked_softmax(x, mask))
    t.require(not np.any(np.asarray(got)[~mask]), "masked positions are not exactly 0",
              "use np.where(mask, ..., 0) so masked weights are exactly zero")


@masked_softmax.case("broadcast mask (5, 7)", "a (5, 7) mask broadcasts against (2, 3, 5, 7) scores")
def _(t):
    x, mask = _scores_and_mask(t.rng, (2, 3, 5, 7), (5, 7))
    t.expect(t.call(x, mask), ref.masked_softmax(x, mask))


@masked_softmax.case("fully masked row", "a row with no kept position is all zeros, never NaN")
def _(t):
    x, mask = _scores_and_mask(t.rng, (3, 5, 7))
    mask[1, 2, :] = False
    mask[2, 4, :] = False
    t.expect(t.call(x, mask), ref.masked_softmax(x, mask))


@masked_softmax.case("huge masked logit", "a huge logit at a masked position must not affect the kept ones")
def _(t):
    x, mask = _scores_and_mask(t.rng, (4, 7))
    x[:, 3] = 1e4
    mask[:, 3] = False
    t.expect(t.call(x, mask), ref.masked_softmax(x, mask))


@masked_softmax.case("float32 (5, 7)", "a float32 input gives float32 weights")
def _(t):
    x, mask = _scores_and_mask(t.rng, (5, 7))
    x = x.astype(np.float32)
    t.expect(t.call(x, mask), ref.masked_softmax(x, mask))


@masked_softmax.case("axis=0", "the axis argument selects the axis that sums to 1")
def _(t):
    x = t.rng.standard_normal((6, 4))
    mask = t.rng.random((6, 4)) < 0.6
    mask[0] = True
    t.expect(t.call(x, mask, axis=0), ref.masked_softmax(x, mask, axis=0))


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


@masked_softmax.mutant("float64 output", DTYPE_HINT)
def _(x, mask, axis=-1):
    return ref.masked_softmax(np.asarray(x, np.float64), mask, axis=axis)


EXERCISES = [softmax, masked_softmax]
