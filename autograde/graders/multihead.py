"""Grader for attnlab.multihead (notebook 04): attention_dropout.

attention_dropout is random, and every correct way of drawing the keep mask (``rng.random(shape) < 1 - p``,
``>= p``, ``rng.binomial(1, 1 - p, shape)``, ``rng.uniform(size=shape) < 1 - p``...) gives a different,
equally right answer; PyTorch's dropout draws from torch's own generator. So no case compares with an
oracle's output. The cases check what every correct answer shares:

* form and values: an ndarray of the weights' shape and dtype whose every entry is exactly 0 (dropped) or
  weights / (1 - p) (kept), the latter computed in float64 and rounded once to the dtype, within the dtype's
  tolerance (autograde/tolerances.py: a correct program commits one or two roundings, ~1e-7 in float32);
* statistics of one large call, with bounds of 6 binomial standard deviations (a correct program fails
  one with probability ~2e-9; a wrong keep probability is off by hundreds of them): the fraction of
  non-zero weights dropped is p; at p = 0.9 the mean of out / weights is 1 (inverted dropout is unbiased);
  the keep mask is not constant along any axis (one draw per row, per key or per head);
* replay: ``rng`` is the only randomness. Each call gets ``np.random.default_rng(seed)`` with a seed drawn
  from the case's t.rng; the generator crosses to the worker as its bit generator's state and is rebuilt
  there. The same state twice must give identical outputs (np.random's global state does not), two
  states different masks (a generator seeded inside the function does not).

Draws differ between formulations, so replaying the mutants on the learner's inputs names a mistake only
when the learner drew like the mutant; the property checks below name each mistake whatever the draws.
"""
import numpy as np

from ..compare import describe_type
from ..framework import DTYPE_HINT, Exercise
from ..references import multihead as ref
from ..references import softmax as ref_softmax
from .inputs import causal

SIGMAS = 6.0  # two-sided normal tail beyond 6 standard deviations: ~2e-9

KEEP_P_HINT = ("p is the probability of dropping an entry: keep each one with probability 1 - p "
               "(rng.random(weights.shape) < 1 - p, or >= p), not with probability p")
NO_RESCALE_HINT = ("scale the kept weights by 1 / (1 - p) (inverted dropout): without it the expected output is "
                   "(1 - p) * weights, not weights")
TIMES_KEEP_HINT = ("divide the kept weights by (1 - p), do not multiply: inverted dropout scales the survivors up "
                   "by 1 / (1 - p) so that the expected output equals the weights")
OVER_P_HINT = ("scale the kept weights by 1 / (1 - p), the inverse of the keep probability: 1 / p would be right "
               "only if p were the probability of keeping")
GLOBAL_HINT = ("draw the mask from the rng argument (rng.random(weights.shape)), not from np.random's global state "
               "(np.random.random, np.random.rand, np.random.binomial): the same rng state must give the same output")
FIXED_HINT = ("draw the mask from the rng argument you are given: a generator seeded inside the function "
              "(np.random.default_rng(0), np.random.seed(0)) gives every call the same mask")
RENORM_HINT = ("do not renormalise the rows after dropping: inverted dropout only scales the survivors by "
               "1 / (1 - p), so a row sums to 1 in expectation, not exactly (and a row with every weight dropped "
               "would be 0/0 = NaN)")
MASK_HINT = "return the dropped weights (weights / (1 - p) where kept, 0 where dropped), not the keep mask"
P0_HINT = ("p = 0 must return the weights exactly as they are, with their dtype: no epsilon added to 1 - p, "
           "no cast to float64")
ROWS_HINT = ("draw one keep/drop decision per weight, with the full shape of weights (..., L, S): one draw per "
             "query row (shape (..., L, 1)) drops or keeps whole rows")
KEYS_HINT = ("draw one keep/drop decision per weight, with the full shape of weights (..., L, S): one draw per "
             "key (shape (..., 1, S)) drops the same keys for every query")
SHARED_HINT = ("draw the mask with the full shape of weights (..., L, S): a mask of shape (L, S) broadcast over "
               "the batch and head axes drops the same positions in every head")
P_RANGE_HINT = ("raise ValueError unless 0 <= p < 1: p = 1 would divide by 1 - p = 0, and p < 0 or p > 1 is not "
                "a probability")

attention_dropout = Exercise("multihead.attention_dropout", points=2, reference=ref.attention_dropout,
                             demo=None)  # a random output has no literal visible check


# ------------------------------------------------------------------------------------- helpers
def _weights(rng, shape, dtype="float64"):
    """Softmax weights of standard normal scores: rows sum to 1, no entry is 0."""
    return ref_softmax.softmax(rng.standard_normal(shape)).astype(dtype)


def _seeds(rng, n=1):
    """n distinct seeds for np.random.default_rng, drawn from the case's rng."""
    seeds = []
    while len(seeds) < n:
        s = int(rng.integers(2 ** 63))
        if s not in seeds:
            seeds.append(s)
    return seeds


def _value_hint(w64, o64, p):
    """The likely mistake behind entries that are neither 0 nor weights / (1 - p), or None."""
    finite = np.isfinite(o64)
    kept = finite & (o64 != 0) & (w64 != 0)
    vals = o64[kept]
    if vals.size >= 2 and np.all(vals == vals[0]) and np.ptp(w64[kept]) > 0:
        return MASK_HINT
    rows = finite.all(axis=-1) & kept.any(axis=-1)  # rows with a survivor and no NaN
    if rows.any() and np.allclose(o64.sum(axis=-1)[rows], 1.0, rtol=1e-3, atol=0):
        return RENORM_HINT
    ratio = vals / w64[kept]
    if ratio.size and p > 0:
        for factor, hint in ((1.0, NO_RESCALE_HINT), (1 - p, TIMES_KEEP_HINT), (1 / p, OVER_P_HINT)):
            if np.allclose(ratio, factor, rtol=1e-3, atol=0):
                return hint
    return None


def _check_dropped(t, w, out, p, what="output"):
    """What every correct answer shares: an ndarray of w's shape and dtype, each entry exactly 0 (dropped)
    or w / (1 - p) (kept), and something kept."""
    t.require(type(out) is np.ndarray, f"{what}: expected a numpy.ndarray {w.shape} {w.dtype}, "
              f"got {describe_type(out)}")
    t.require(out.shape == w.shape, f"{what}: expected shape {w.shape} (the shape of weights), got {out.shape}")
    t.require(out.dtype != bool, f"{what}: expected the dropped weights ({w.dtype}), got a bool array", MASK_HINT)
    t.require(out.dtype == w.dtype, f"{what}: expected dtype {w.dtype} (the dtype of weights), got {out.dtype}",
              DTYPE_HINT)
    w64, o64 = w.astype(np.float64), out.astype(np.float64)
    expected = np.where(o64 == 0, 0.0, w64 / (1 - p)).astype(w.dtype)  # exact, rounded once
    t.expect(out, expected, what=f"{what} (0 where dropped, weights / (1 - p) = weights * {1 / (1 - p):.6g} "
             "where kept)", hint=_value_hint(w64, o64, p))
    t.require(bool(np.any(o64 != 0)), f"{what}: every weight was dropped at p = {p}")


AXIS_HINTS = {-1: ("S: one decision per query row", ROWS_HINT), -2: ("L: one decision per key", KEYS_HINT)}


def _check_independent(t, out):
    """The keep mask is not constant along any axis (only for weights with no zero entry). For independent
    draws each of the thousands of lines along an axis would have to be all kept or all dropped."""
    keep = out != 0
    if keep.all() or not keep.any():
        return  # the drop-rate check speaks to this
    for axis in range(keep.ndim):
        if keep.shape[axis] > 1 and np.all(keep.all(axis=axis) | ~keep.any(axis=axis)):
            name, hint = AXIS_HINTS.get(axis - keep.ndim, ("a batch/head axis: one mask for all of them",
                                                           SHARED_HINT))
            t.fail(f"the keep mask is constant along axis {axis} ({name}) in all {keep.size // keep.shape[axis]} "
                   "lines; independent draws make that practically impossible", hint)


def _check_drop_rate(t, w, out, p):
    """The fraction of non-zero weights dropped is p within SIGMAS binomial standard deviations."""
    live = w != 0
    n = int(live.sum())
    rate = float(((out == 0) & live).sum()) / n
    bound = SIGMAS * np.sqrt(p * (1 - p) / n)
    if abs(rate - p) > bound:
        hint = KEEP_P_HINT if abs(rate - (1 - p)) <= bound else None
        t.fail(f"{rate:.4f} of the {n} non-zero weights were dropped, expected p = {p} +- {bound:.4f} "
               f"({SIGMAS:g} standard deviations)", hint)


# ------------------------------------------------------------------------------------- cases
@attention_dropout.case("statistics (4, 3, 50, 70), p = 0.3", "one large float64 call: survivors are "
                        "weights / (1 - p), a fraction p of the weights is dropped, each one independently",
                        weight=2.0)
def _(t):
    w, p = _weights(t.rng, (4, 3, 50, 70)), 0.3
    (seed,) = _seeds(t.rng)
    out = t.call(w, p, np.random.default_rng(seed))
    _check_dropped(t, w, out, p)
    _check_independent(t, out)
    _check_drop_rate(t, w, out, p)


@attention_dropout.case("replay (2, 3, 5, 7), p = 0.4", "rng is the only randomness: the same generator state "
                        "gives the same output, two states give two different masks", weight=2.0)
def _(t):
    w, p = _weights(t.rng, (2, 3, 5, 7)), 0.4
    s1, s2 = _seeds(t.rng, 2)
    first = t.call(w, p, np.random.default_rng(s1))
    _check_dropped(t, w, first, p, "first call")
    again = t.call(w, p, np.random.default_rng(s1))
    same = type(again) is np.ndarray and again.shape == first.shape and again.dtype == first.dtype
    differ = int(np.sum(again != first)) if same else first.size
    t.require(same and differ == 0, f"a second call with the same generator state (np.random.default_rng({s1})) "
              f"gave a different output: {differ} of {first.size} entries differ", GLOBAL_HINT)
    other = t.call(w, p, np.random.default_rng(s2))
    _check_dropped(t, w, other, p, "call with another generator state")
    t.require(bool(np.any((first == 0) != (other == 0))), f"two different generator states "
              f"(np.random.default_rng({s1}) and ({s2})) dropped exactly the same {int(np.sum(first == 0))} of "
              f"{first.size} entries", FIXED_HINT)


@attention_dropout.case("p = 0", "p = 0 is the identity: the weights come back exactly, float64 (2, 3, 5, 7) "
                        "and float32 (5, 7)")
def _(t):
    for shape, dtype in (((2, 3, 5, 7), "float64"), ((5, 7), "float32")):
        w = _weights(t.rng, shape, dtype)
        (seed,) = _seeds(t.rng)
        t.expect(t.call(w, 0.0, np.random.default_rng(seed)), w, what=f"{dtype} {shape}", rtol=0.0, atol=0.0,
                 hint=P0_HINT)


@attention_dropout.case("float32 (5, 7), p = 0.2", "a 2-D float32 input (keyword arguments p=, rng=) gives "
                        "float32 dropped weights")
def _(t):
    w, p = _weights(t.rng, (5, 7), "float32"), 0.2
    (seed,) = _seeds(t.rng)
    _check_dropped(t, w, t.call(w, p=p, rng=np.random.default_rng(seed)), p)


@attention_dropout.case("p = 0.9, float32 (3, 2, 60, 80)", "at a high drop rate inverted dropout is still "
                        "unbiased: the mean of out / weights over 28800 entries is 1")
def _(t):
    w, p = _weights(t.rng, (3, 2, 60, 80), "float32"), 0.9
    (seed,) = _seeds(t.rng)
    out = t.call(w, p, np.random.default_rng(seed))
    _check_dropped(t, w, out, p)
    ratio = out.astype(np.float64) / w.astype(np.float64)  # 0 or 1 / (1 - p) = 10
    mean, n = float(ratio.mean()), ratio.size
    bound = SIGMAS * np.sqrt(p / (1 - p) / n)  # the standard deviation of 10 * Bernoulli(0.1) is 3
    if abs(mean - 1.0) > bound:
        hint = KEEP_P_HINT if abs(mean - p / (1 - p)) <= bound else None  # kept with probability p: mean 9
        t.fail(f"the mean of out / weights is {mean:.4f}, expected 1 +- {bound:.4f} ({SIGMAS:g} standard "
               "deviations): E[out] must equal the weights", hint)


@attention_dropout.case("masked weights (2, 3, 5, 7), p = 0.25", "weights that are 0 (a causal mask, a fully "
                        "masked row) stay exactly 0 and nothing becomes NaN")
def _(t):
    shape, p = (2, 3, 5, 7), 0.25
    mask = np.broadcast_to(causal(5, 7), shape).copy()
    mask[1, 2, 3] = False  # a fully masked query row: all-zero weights
    w = ref_softmax.masked_softmax(t.rng.standard_normal(shape), mask)
    (seed,) = _seeds(t.rng)
    _check_dropped(t, w, t.call(w, p, np.random.default_rng(seed)), p)


@attention_dropout.case("p outside [0, 1)", "p = 1.0 (everything dropped, 1 / (1 - p) undefined), p = -0.1 and "
                        "p = 1.5 (not probabilities) raise ValueError")
def _(t):
    w = _weights(t.rng, (5, 7))
    for p, seed in zip((1.0, -0.1, 1.5), _seeds(t.rng, 3)):
        t.raises("ValueError", w, p, np.random.default_rng(seed))


# ------------------------------------------------------------------------------------- mutants
def _valid(p):
    if not 0 <= p < 1:
        raise ValueError(f"p must satisfy 0 <= p < 1, got {p}")


def _kept(weights, keep, p):
    return np.where(keep, weights / (1 - p), 0)


@attention_dropout.mutant("keeps with probability p", KEEP_P_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, rng.random(weights.shape) < p, p)


@attention_dropout.mutant("no rescale", NO_RESCALE_HINT)
def _(weights, p, rng):
    _valid(p)
    return np.where(rng.random(weights.shape) < 1 - p, weights, 0)


@attention_dropout.mutant("multiplies by (1 - p)", TIMES_KEEP_HINT)
def _(weights, p, rng):
    _valid(p)
    return np.where(rng.random(weights.shape) < 1 - p, weights * (1 - p), 0)


@attention_dropout.mutant("divides by p", OVER_P_HINT)
def _(weights, p, rng):
    _valid(p)
    if p == 0:
        return weights.copy()
    return np.where(rng.random(weights.shape) >= p, weights / p, 0)


@attention_dropout.mutant("np.random global state", GLOBAL_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, np.random.random(weights.shape) < 1 - p, p)


@attention_dropout.mutant("generator with a fixed seed", FIXED_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, np.random.default_rng(0).random(weights.shape) < 1 - p, p)


@attention_dropout.mutant("renormalised rows", RENORM_HINT)
def _(weights, p, rng):
    _valid(p)
    dropped = np.where(rng.random(weights.shape) < 1 - p, weights, 0)
    return dropped / dropped.sum(axis=-1, keepdims=True)


@attention_dropout.mutant("returns the mask", MASK_HINT)
def _(weights, p, rng):
    _valid(p)
    return (rng.random(weights.shape) < 1 - p).astype(weights.dtype)


@attention_dropout.mutant("float64 output", DTYPE_HINT)
def _(weights, p, rng):
    _valid(p)
    keep = (rng.random(weights.shape) < 1 - p).astype(np.float64)  # float64 mask promotes the product
    return weights * keep / (1 - p)


@attention_dropout.mutant("epsilon in 1 / (1 - p)", P0_HINT)
def _(weights, p, rng):
    _valid(p)
    return np.where(rng.random(weights.shape) < 1 - p, weights / (1 - p + 1e-8), 0)


@attention_dropout.mutant("p = 0 returns a float64 copy", P0_HINT)
def _(weights, p, rng):
    _valid(p)
    if p == 0:
        return np.array(weights, dtype=np.float64)
    return _kept(weights, rng.random(weights.shape) < 1 - p, p)


@attention_dropout.mutant("one draw per row", ROWS_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, rng.random(weights.shape[:-1] + (1,)) < 1 - p, p)


@attention_dropout.mutant("one draw per key", KEYS_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, rng.random(weights.shape[:-2] + (1,) + weights.shape[-1:]) < 1 - p, p)


@attention_dropout.mutant("one (L, S) mask for every head", SHARED_HINT)
def _(weights, p, rng):
    _valid(p)
    return _kept(weights, rng.random(weights.shape[-2:]) < 1 - p, p)


# t.raises carries no hint: these three are named by replay, and at p = 1 (nothing kept) the draws do not
# matter: np.where-style code returns zeros, mask-product code 0 / 0 = NaN, a Python 1 / (1 - p) raises.
@attention_dropout.mutant("no check of p (np.where)", P_RANGE_HINT)
def _(weights, p, rng):
    return _kept(weights, rng.random(weights.shape) < 1 - p, p)


@attention_dropout.mutant("no check of p (mask product)", P_RANGE_HINT)
def _(weights, p, rng):
    return weights * (rng.random(weights.shape) >= p) / (1 - p)


@attention_dropout.mutant("no check of p (Python 1 / (1 - p))", P_RANGE_HINT)
def _(weights, p, rng):
    return weights * (rng.random(weights.shape) < 1 - p) * (1.0 / (1 - p))


# ------------------------------------------------------------------------------------- alternatives
@attention_dropout.alternative("rng.random(shape) >= p, multiplied by the bool mask")
def _(weights, p, rng):
    _valid(p)
    keep = rng.random(weights.shape) >= p
    return weights * keep / (1 - p)


@attention_dropout.alternative("rng.binomial(1, 1 - p, shape) cast to the weights' dtype")
def _(weights, p, rng):
    _valid(p)
    mask = rng.binomial(1, 1 - p, size=weights.shape).astype(weights.dtype)  # int64 would promote to float64
    return weights * mask / (1 - p)


@attention_dropout.alternative("rng.uniform(size=shape) < 1 - p with np.where, scaled in float64")
def _(weights, p, rng):
    _valid(p)
    keep = rng.uniform(size=weights.shape) < 1 - p
    return np.where(keep, weights.astype(np.float64) / (1 - p), 0.0).astype(weights.dtype)


EXERCISES = [attention_dropout]
