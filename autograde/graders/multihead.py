"""Grader for attnlab.multihead (notebook 04): attention_dropout (this docstring); split_heads, merge_heads,
multi_head_attention, layer_norm and feed_forward (see the section "heads, layer norm, feed-forward" below).

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
import math

import numpy as np

from ..compare import describe_type
from ..framework import DTYPE_HINT, Exercise
from ..references import multihead as ref
from ..references import softmax as ref_softmax
from ..tolerances import EPS, exp_rtol, tolerance
from .attention import FULL_ROW_HINT, MULTIPLY_HINT
from .attention import ZERO_HINT as ATT_ZERO_HINT
from .inputs import causal, keep_mask
from .softmax import require_exact_zeros

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



# =============================================================================================================
# heads, layer norm, feed-forward
#
# split_heads / merge_heads move values without computing anything: compared exactly (rtol = atol = 0) with our
# reference (np.split + np.stack, and concatenation), on shapes where B, L, E, H and D = E / H all differ.
#
# multi_head_attention: oracle torch.nn.MultiheadAttention(E, H, batch_first=True) in float64 with the same
# weights (in_proj_weight = cat(W_q.T, W_k.T, W_v.T), out_proj.weight = W_o.T: PyTorch stores (out, in)) and
# attn_mask = ~mask (PyTorch's boolean masks mean *masked out*), weights not averaged over heads; compared on the
# rows that see at least one key. A query that sees no key gets zero weights and the output b_o (the course's
# rule; PyTorch gives NaN): our float64 reference (einsum over weights reshaped (E, H, D)) answers those rows.
# Tolerance: the weights exponentiate scores that a correct float32 program computes with an absolute error of
# about eps * scale * sum_d Q_d K_d, where Q = |x_q| @ |W_q| + |b_q| and K likewise are the sizes of what the
# projections summed (not |q|, which may be small after cancellation): the weights get `exp_rtol` of that
# magnitude, the largest over kept pairs. The output, merge(A V) @ W_o + b_o, gets the same extra relative error
# times max V (V = |x_kv| @ |W_v| + |b_v|) times the largest column sum of |W_o|, plus the rounding of its own
# sums (8 eps per unit of |merged| @ |W_o| + |b_o|), on top of the table's atol. Masked weights must be exactly 0.
#
# layer_norm: oracle F.layer_norm in float64. A correct float32 program's mean is off by a few eps * |mean|, which
# the normalisation divides by the row's standard deviation: the allowance adds 8 eps * max(|mean| / sqrt(var +
# eps)) * max |gamma| to the table's atol (it matters only in the large-offset case).
#
# feed_forward: oracle F.linear / F.gelu (exact erf) / F.relu in float64; the table's tolerance. Where a GELU
# output misses, it is also compared with the tanh and the sigmoid approximations, so that mistake is named
# whatever the learner's rounding.
#
# Measured over seeds 0..39 (the solution and every alternative, each case): the largest error is 0.26 of the
# allowance (multi_head_attention, float32 with kept scores near -1000), 0.12 (layer_norm, float32 rows near
# +-1000) and 0.06 (feed_forward, float32); everywhere else below 0.03. The smallest mistakes stay far outside:
# the tanh GELU by at least 24x the allowance in float32 (10^4x in float64), mean(x**2) - mean(x)**2 by 49x in
# the large-offset case, eps outside the square root by 300x in float64.
# =============================================================================================================

EXACT = dict(rtol=0.0, atol=0.0)


def _eps(dtype):
    return EPS.get(np.dtype(dtype).name, 0.0)


def _abs(a):
    return np.abs(np.asarray(a, dtype=np.float64))


# --------------------------------------------------------------------------------------------- split_heads
SPLIT_DIRECT_HINT = ("reshape (B, L, E) to (B, L, H, D) first, then move the head axis: reshaping straight to "
                     "(B, H, L, D) mixes positions and features")
SPLIT_INTERLEAVED_HINT = ("head h owns the D consecutive features h * D : (h + 1) * D: reshape to (B, L, H, D), not "
                          "(B, L, D, H), which deals the features out to the heads in turn")
SPLIT_NO_TRANSPOSE_HINT = ("move the head axis in front of the positions: (B, L, H, D) -> (B, H, L, D) with "
                           ".transpose(0, 2, 1, 3) (or np.swapaxes(x, 1, 2))")
SPLIT_WIDTH_HINT = ("num_heads is the number of heads H; each head's width is D = E // H: reshape to "
                    "(B, L, H, D), not (B, L, E // H, H)")
SPLIT_HEADS_FIRST_HINT = "the batch axis stays first: (B, L, H, D) -> (B, H, L, D) is .transpose(0, 2, 1, 3)"
SPLIT_FEATURES_HINT = ("the result is (B, H, L, D), positions before features: .transpose(0, 2, 1, 3), not "
                       "(0, 2, 3, 1)")
SPLIT_CHECK_HINT = ("raise ValueError when E is not divisible by num_heads: dropping the last E % H features "
                    "hides the mistake instead of reporting it")

split_heads = Exercise("multihead.split_heads", points=1, reference=ref.split_heads,
                       demo=lambda rng: ((np.arange(12.0).reshape(1, 2, 6), 3), {}))


def _split_case(t, shape, H, dtype="float64", **kwargs):
    x = t.rng.standard_normal(shape).astype(dtype)
    got = t.call(x, **kwargs) if kwargs else t.call(x, H)
    t.expect(got, ref.split_heads(x, H), what=f"heads (B, H, L, D) = {(shape[0], H, shape[1], shape[2] // H)}",
             **EXACT)


@split_heads.case("float64 (2, 5, 12), H = 3", "B=2, L=5, E=12 cut into H=3 heads of D=4: head h gets features "
                  "4h..4h+3 of every position, values unchanged")
def _(t):
    _split_case(t, (2, 5, 12), 3)


@split_heads.case("float32 (3, 7, 10), H = 5", "a float32 input stays float32 (B=3, L=7, E=10, H=5, D=2), "
                  "num_heads given by keyword")
def _(t):
    _split_case(t, (3, 7, 10), 5, "float32", num_heads=5)


@split_heads.case("H = 1 and H = E", "one head of the full width (2, 5, 6) -> (2, 1, 5, 6), and E heads of width 1 "
                  "(2, 5, 6) -> (2, 6, 5, 1)")
def _(t):
    x = t.rng.standard_normal((2, 5, 6))
    t.expect(t.call(x, 1), ref.split_heads(x, 1), what="H = 1", **EXACT)
    t.expect(t.call(x, 6), ref.split_heads(x, 6), what="H = E = 6", **EXACT)


@split_heads.case("E not divisible by H", "E = 10 cannot be cut into H = 4 heads: ValueError")
def _(t):
    t.raises("ValueError", t.rng.standard_normal((2, 5, 10)), 4)


def _split_checked(x, num_heads):
    if x.shape[-1] % num_heads:
        raise ValueError(f"E = {x.shape[-1]} is not divisible by num_heads = {num_heads}")
    B, L, E = x.shape
    return B, L, num_heads, E // num_heads


@split_heads.mutant("reshape straight to (B, H, L, D)", SPLIT_DIRECT_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, H, L, D)


@split_heads.mutant("heads interleaved", SPLIT_INTERLEAVED_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, L, D, H).transpose(0, 3, 1, 2)


@split_heads.mutant("no transpose", SPLIT_NO_TRANSPOSE_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, L, H, D)


@split_heads.mutant("num_heads as the head width", SPLIT_WIDTH_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, L, D, H).transpose(0, 2, 1, 3)


@split_heads.mutant("(H, B, L, D)", SPLIT_HEADS_FIRST_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, L, H, D).transpose(2, 0, 1, 3)


@split_heads.mutant("(B, H, D, L)", SPLIT_FEATURES_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return x.reshape(B, L, H, D).transpose(0, 2, 3, 1)


@split_heads.mutant("float64 output", DTYPE_HINT)
def _(x, num_heads):
    B, L, H, D = _split_checked(x, num_heads)
    return np.asarray(x, dtype=np.float64).reshape(B, L, H, D).transpose(0, 2, 1, 3)


@split_heads.mutant("drops E % H features", SPLIT_CHECK_HINT)
def _(x, num_heads):
    B, L, E = x.shape
    D = E // num_heads
    return x[..., :num_heads * D].reshape(B, L, num_heads, D).transpose(0, 2, 1, 3)


@split_heads.alternative("np.swapaxes of the (B, L, H, D) view, explicit check")
def _(x, num_heads):
    B, L, E = x.shape
    if E % num_heads != 0:
        raise ValueError("E must be divisible by num_heads")
    return np.swapaxes(x.reshape(B, L, num_heads, -1), 1, 2)


@split_heads.alternative("a list of column slices stacked on axis 1")
def _(x, num_heads):
    E = x.shape[-1]
    if E % num_heads:
        raise ValueError("E must be divisible by num_heads")
    D = E // num_heads
    return np.stack([x[:, :, h * D:(h + 1) * D] for h in range(num_heads)], axis=1)


@split_heads.alternative("einops-style np.moveaxis, copied")
def _(x, num_heads):
    B, L, E = x.shape
    if E % num_heads:
        raise ValueError("E must be divisible by num_heads")
    return np.ascontiguousarray(np.moveaxis(x.reshape(B, L, num_heads, E // num_heads), 2, 1))


# --------------------------------------------------------------------------------------------- merge_heads
MERGE_DIRECT_HINT = ("move the head axis back behind the positions first ((B, H, L, D) -> (B, L, H, D)), then "
                     "reshape to (B, L, H * D): reshaping (B, H, L, D) straight to (B, L, E) mixes heads and positions")
MERGE_INTERLEAVED_HINT = ("head h's D features go in the block h * D : (h + 1) * D: transpose to (B, L, H, D), not "
                          "(B, L, D, H), which interleaves the heads feature by feature")
MERGE_SUM_HINT = ("concatenate the heads along the feature axis (E = H * D): summing or averaging them gives "
                  "(B, L, D) and loses what each head found")
MERGE_NO_RESHAPE_HINT = "after moving the head axis ((B, L, H, D)), reshape to (B, L, H * D)"
MERGE_POSITIONS_HINT = ("the heads go side by side along the feature axis, (B, L, H * D), not one after another "
                        "along the positions (B, H * L, D)")

merge_heads = Exercise("multihead.merge_heads", points=1, reference=ref.merge_heads,
                       demo=lambda rng: ((np.arange(12.0).reshape(1, 3, 2, 2),), {}))


@merge_heads.case("float64 (2, 3, 5, 4)", "H=3 heads of D=4 at B=2, L=5 become (2, 5, 12): head h in features "
                  "4h..4h+3")
def _(t):
    x = t.rng.standard_normal((2, 3, 5, 4))
    t.expect(t.call(x), ref.merge_heads(x), what="merged (B, L, E) = (2, 5, 12)", **EXACT)


@merge_heads.case("float32 (3, 5, 7, 2)", "a float32 input stays float32 (B=3, H=5, L=7, D=2 -> (3, 7, 10))")
def _(t):
    x = t.rng.standard_normal((3, 5, 7, 2)).astype(np.float32)
    t.expect(t.call(x), ref.merge_heads(x), what="merged (B, L, E) = (3, 7, 10)", **EXACT)


@merge_heads.case("inverse of split_heads", "merge_heads undoes split_heads: x (2, 6, 12) split into H = 4 heads "
                  "(our split) and merged back is x")
def _(t):
    x = t.rng.standard_normal((2, 6, 12))
    t.expect(t.call(ref.split_heads(x, 4)), x, what="merge_heads(split_heads(x, 4))", **EXACT)


@merge_heads.case("H = 1 and D = 1", "one head (2, 1, 5, 6) -> (2, 5, 6), and six heads of width 1 "
                  "(2, 6, 5, 1) -> (2, 5, 6)")
def _(t):
    for shape in ((2, 1, 5, 6), (2, 6, 5, 1)):
        x = t.rng.standard_normal(shape)
        t.expect(t.call(x), ref.merge_heads(x), what=f"from {shape}", **EXACT)


@merge_heads.mutant("reshape without transpose", MERGE_DIRECT_HINT)
def _(x):
    B, H, L, D = x.shape
    return x.reshape(B, L, H * D)


@merge_heads.mutant("heads interleaved", MERGE_INTERLEAVED_HINT)
def _(x):
    B, H, L, D = x.shape
    return x.transpose(0, 2, 3, 1).reshape(B, L, H * D)


@merge_heads.mutant("sum over heads", MERGE_SUM_HINT)
def _(x):
    return x.sum(axis=1)


@merge_heads.mutant("mean over heads", MERGE_SUM_HINT)
def _(x):
    return x.mean(axis=1)


@merge_heads.mutant("transpose only", MERGE_NO_RESHAPE_HINT)
def _(x):
    return x.transpose(0, 2, 1, 3)


@merge_heads.mutant("heads along the positions", MERGE_POSITIONS_HINT)
def _(x):
    B, H, L, D = x.shape
    return x.reshape(B, H * L, D)


@merge_heads.mutant("float64 output", DTYPE_HINT)
def _(x):
    B, H, L, D = x.shape
    return np.asarray(x, dtype=np.float64).transpose(0, 2, 1, 3).reshape(B, L, H * D)


@merge_heads.alternative("np.concatenate of the heads on the last axis")
def _(x):
    return np.concatenate(list(np.moveaxis(x, 1, 0)), axis=-1)


@merge_heads.alternative("swapaxes then reshape with -1")
def _(x):
    return np.swapaxes(x, 1, 2).reshape(x.shape[0], x.shape[2], -1)


@merge_heads.alternative("einsum into a preallocated (B, L, H, D)")
def _(x):
    B, H, L, D = x.shape
    out = np.empty((B, L, H, D), dtype=x.dtype)
    out[...] = np.einsum("bhld->blhd", x)
    return out.reshape(B, L, H * D)


# ------------------------------------------------------------------------------------ multi_head_attention
TRANSPOSED_W_HINT = ("params hold each W as (in, out): project with x @ W + b, not x @ W.T (PyTorch's nn.Linear "
                     "stores (out, in) and transposes for you; with square (E, E) weights nothing raises)")
MHA_SPLIT_DIRECT_HINT = ("split the heads as (B, N, E) -> (B, N, H, D) -> (B, H, N, D) (split_heads): reshaping "
                         "straight to (B, H, N, D) mixes positions and features")
MHA_INTERLEAVED_HINT = ("head h owns the projection's features h * D : (h + 1) * D (split_heads): reshaping to "
                        "(B, N, D, H) deals the features out to the heads in turn")
MHA_MERGE_HINT = ("merge the heads with merge_heads ((B, H, L, D) -> (B, L, H, D) -> (B, L, E)) before W_o: "
                  "reshaping (B, H, L, D) straight to (B, L, E) mixes heads and positions")
SCALE_E_HINT = "scale the scores by 1/sqrt(D), D = E / H the width of one head, not 1/sqrt(E)"
NO_OUT_PROJ_HINT = ("apply the output projection: output = merge_heads(heads) @ W_o + b_o; without it the heads "
                    "are never mixed")
NO_B_O_HINT = "add the output projection's bias: output = merge_heads(heads) @ W_o + b_o"
AVERAGED_HINT = ("return every head's weights, shape (B, H, L, S): averaging over the heads is what PyTorch "
                 "does only with average_attn_weights=True")
INVERTED_HINT = ("True in the mask means may attend: PyTorch's nn.MultiheadAttention attn_mask uses the opposite "
                 "convention (True = masked out), ours is that of F.scaled_dot_product_attention")
KV_FROM_Q_HINT = "keys and values come from x_kv (S positions), queries from x_q (L positions)"
ONE_HEAD_HINT = ("split into num_heads heads of width D = E / H and attend in each one: one head of width E "
                 "gives weights (B, 1, L, S)")
DEAD_OUTPUT_HINT = ("a query that sees no key gets zero weights, so its heads output 0 and its output is "
                    "0 @ W_o + b_o = b_o: do not zero the output itself")
NAN_ROW_HINT = ("a query that sees no key gets zero weights (output b_o), not NaN: the softmax of a row of -inf "
                "is 0/0 (scaled_dot_product_attention from notebook 02 handles it)")
QUERY_AXIS_HINT = "take the softmax over the keys (axis -1): each query's weights sum to 1 in every head"

PARAMS = ref.PARAM_NAMES

def _mha_demo(rng):
    """The classroom's visible example: B=1, L=2, S=3, E=4, H=2, one-decimal numbers (+ 0.0: no -0.0)."""
    def small(shape, scale=1.0):
        return np.round(scale * rng.standard_normal(shape), 1) + 0.0

    params = {name: small((4, 4) if name[0] == "W" else (4,), 0.5) for name in PARAMS}
    return (small((1, 2, 4)), small((1, 3, 4)), params, 2), {"mask": np.array([[True, True, False],
                                                                                [True, True, True]])}


multi_head_attention = Exercise(
    "multihead.multi_head_attention", points=4, reference=ref.multi_head_attention, uses_torch=True,
    deps=("multihead.split_heads", "multihead.merge_heads", "attention.scaled_dot_product_attention",
          "softmax.softmax", "softmax.masked_softmax", "scoring.dot_scores", "scoring.scaled_dot_scores"),
    demo=_mha_demo)


def _mha_params(rng, E, dtype="float64", bias_scale=0.3):
    """W ~ N(0, 1/E) (activations stay O(1)), biases ~ N(0, bias_scale^2), b_o larger (a missing b_o shows)."""
    params = {}
    for name in PARAMS:
        if name[0] == "W":
            params[name] = (rng.standard_normal((E, E)) / np.sqrt(E)).astype(dtype)
        else:
            scale = 1.0 if name == "b_o" else bias_scale
            params[name] = (scale * rng.standard_normal(E)).astype(dtype)
    return params


def _mha_tolerances(x_q, x_kv, params, H, mask):
    """(rtol of the weights, atol of the output): see the section's docstring."""
    dtype = np.asarray(x_q).dtype
    p = {k: _abs(v) for k, v in params.items()}
    B, L, E = np.shape(x_q)
    S, D = np.shape(x_kv)[1], E // H

    def size(x, name):  # (B, N, H, D): what the projection summed, in absolute value
        return (_abs(x) @ p["W_" + name] + p["b_" + name]).reshape(x.shape[0], x.shape[1], H, D)

    mag = np.einsum("blhd,bshd->bhls", size(x_q, "q"), size(x_kv, "k")) / np.sqrt(D)  # (B, H, L, S)
    if mask is not None:
        mag = np.where(np.broadcast_to(np.asarray(mask, bool), mag.shape), mag, 0.0)
    rtol = exp_rtol(dtype, float(mag.max(initial=0.0)))
    table_rtol, table_atol = tolerance(dtype)
    v_size = float(size(x_kv, "v").max(initial=0.0))
    out_gain = float(p["W_o"].sum(axis=0).max())  # largest column sum of |W_o|
    merged = v_size  # |merge(A V)| <= max V (weights sum to at most 1)
    own = 8 * _eps(dtype) * (merged * out_gain + float(p["b_o"].max()))
    return rtol, table_atol + (rtol - table_rtol) * v_size * out_gain + own


def _mha_check(t, x_q, x_kv, params, H, mask=None, pass_mask=True, **call_kwargs):
    """Call the learner's function, compare both outputs with nn.MultiheadAttention's (see above)."""
    if mask is not None or pass_mask:
        call_kwargs["mask"] = mask
    got = t.expect_tuple(t.call(x_q, x_kv, params, H, **call_kwargs) if "num_heads" not in call_kwargs
                         else t.call(x_q, x_kv, params, **call_kwargs), 2)
    dtype = np.asarray(x_q).dtype
    out, weights = ref.torch_multi_head_attention(x_q, x_kv, params, H, mask)
    rtol, out_atol = _mha_tolerances(x_q, x_kv, params, H, mask)
    B, L, E = np.shape(x_q)
    shape = (B, H, L, np.shape(x_kv)[1])
    if mask is not None:
        require_exact_zeros(t, got[1], shape, mask, ATT_ZERO_HINT, what="weights (B, H, L, S)")
    t.expect(got[1], weights.astype(dtype), what="weights (B, H, L, S)", rtol=rtol)
    t.expect(got[0], out.astype(dtype), what="output (B, L, E)", atol=out_atol)


def _xs(rng, B, L, S, E, dtype="float64", self_attention=False):
    x_q = rng.standard_normal((B, L, E)).astype(dtype)
    return (x_q, x_q) if self_attention else (x_q, rng.standard_normal((B, S, E)).astype(dtype))


@multi_head_attention.case("self-attention (2, 5, 12), H = 3", "self-attention (x_kv is x_q) with no mask, "
                           "B=2, L=S=5, E=12, H=3, D=4, against nn.MultiheadAttention with the same weights")
def _(t):
    x_q, x_kv = _xs(t.rng, 2, 5, 5, 12, self_attention=True)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 12), 3, pass_mask=False)


@multi_head_attention.case("cross-attention L = 5, S = 7", "queries from x_q (2, 5, 12), keys and values from "
                           "x_kv (2, 7, 12), mask=None: weights (2, 3, 5, 7)")
def _(t):
    x_q, x_kv = _xs(t.rng, 2, 5, 7, 12)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 12), 3)


@multi_head_attention.case("causal mask (5, 7)", "an end-aligned causal (L, S) mask broadcast over batch and heads, "
                           "in cross-attention (B=2, L=5, S=7, E=12, H=3)")
def _(t):
    x_q, x_kv = _xs(t.rng, 2, 5, 7, 12)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 12), 3, mask=causal(5, 7))


@multi_head_attention.case("padding (2, 1, 5, 7), a query that sees nothing", "keys 4-6 of sequence 0 are "
                           "padding and query 2 of sequence 1 sees no key: zero weights and output b_o there, "
                           "never NaN")
def _(t):
    mask = np.ones((2, 1, 5, 7), bool)
    mask[0, ..., 4:] = False
    mask[1, 0, 2] = False
    x_q, x_kv = _xs(t.rng, 2, 5, 7, 12)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 12), 3, mask=mask)


@multi_head_attention.case("a mask per head (2, 3, 5, 7)", "every head has its own random mask; in sequence 0 "
                           "query 3 sees nothing in head 1 only, in sequence 1 query 2 sees nothing in any head")
def _(t):
    mask = keep_mask(t.rng, (2, 3, 5, 7), p_keep=0.5)
    mask[0, 1, 3] = False
    mask[1, :, 2] = False
    x_q, x_kv = _xs(t.rng, 2, 5, 7, 12)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 12), 3, mask=mask)


@multi_head_attention.case("kept scores far below 0, float32", "float32; in every head the kept scores are near "
                           "-1000 and the masked ones above them (+4) or far below (-2000): masked keys are "
                           "excluded, not given a score of 0 (scores * mask)")
def _(t):
    B, L, S, E, H = 2, 5, 7, 12, 3
    D = E // H
    mask = keep_mask(t.rng, (B, 1, 1, S))      # a key mask per sequence
    mask[..., -1] = False                      # every query masks at least one key
    params = _mha_params(t.rng, E)
    x_q, x_kv = _xs(t.rng, B, L, S, E)
    first = np.arange(H) * D                   # the first feature of every head
    # key feature 0 carries a per-key level c: about -50 where kept, 0.2 (sequence 0) or -100 (sequence 1)
    # where masked; it reaches the first feature of every head's key, whose query feature is about 40
    masked_c = np.array([0.2, -100.0])[:, None]
    x_kv[..., 0] = np.where(mask[:, 0, 0, :], -50.0 + 0.05 * t.rng.standard_normal((B, S)), masked_c)
    for name in ("W_k", "W_v"):
        params[name][0] *= 0.005               # the large feature 0 stays small elsewhere
    params["W_k"][:, first] *= 0.02
    params["W_k"][0, first] = 1.0
    params["b_k"][first] = 0.0
    params["W_q"][:, first] *= 0.01
    params["b_q"][first] = 40.0                # scores ~ 40 c / sqrt(D) = 20 c
    to32 = {k: v.astype(np.float32) for k, v in params.items()}
    _mha_check(t, x_q.astype(np.float32), x_kv.astype(np.float32), to32, H, mask=mask)


@multi_head_attention.case("float32 (3, 6, 10), H = 5, causal", "float32 in, float32 out (B=3, L=6, S=8, E=10, "
                           "H=5, D=2), num_heads and mask by keyword, causal (6, 8) mask")
def _(t):
    x_q, x_kv = _xs(t.rng, 3, 6, 8, 10, dtype="float32")
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 10, "float32"), 5, mask=causal(6, 8), num_heads=5)


@multi_head_attention.case("one head, H = 1", "H = 1 is single-head attention with projections (B=2, L=4, S=3, "
                           "E=6, D=6); a (4, 3) causal mask, so query 0 sees only key 0")
def _(t):
    x_q, x_kv = _xs(t.rng, 2, 4, 3, 6)
    _mha_check(t, x_q, x_kv, _mha_params(t.rng, 6), 1, mask=causal(4, 3))


# ----- mutants: one mistake each, in plain NumPy in the inputs' dtype, as a learner would write them
def _mha_manual(x_q, x_kv, params, num_heads, mask=None, *, transposed=False, split="ok", merge="ok",
                scale_by_e=False, out_proj="ok", averaged=False, invert=False, kv_from_q=False, one_head=False,
                dead_output_zero=False, nan_rows=False, multiply=False, fill=None, axis=-1, float64=False):
    def W(name):
        return params["W_" + name].T if transposed else params["W_" + name]

    H = 1 if one_head else num_heads
    B, L, E = x_q.shape
    D = E // H
    src = x_q if kv_from_q else x_kv

    def heads(t):  # (B, N, E) -> (B, H, N, D)
        N = t.shape[1]
        if split == "direct":
            return t.reshape(B, H, N, D)
        if split == "interleaved":
            return t.reshape(B, N, D, H).transpose(0, 3, 1, 2)
        return t.reshape(B, N, H, D).transpose(0, 2, 1, 3)

    q = heads(x_q @ W("q") + params["b_q"])
    k = heads(src @ W("k") + params["b_k"])
    v = heads(src @ W("v") + params["b_v"])
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(E if scale_by_e else D)  # (B, H, L, S)
    if mask is None:
        keep = np.ones(scores.shape, bool)
    else:
        keep = np.broadcast_to(np.asarray(mask, bool), scores.shape)
        keep = ~keep if invert else keep
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if multiply:  # masked scores become 0 and still take part in the max
            s = scores * keep
            e = np.where(keep, np.exp(s - s.max(axis=axis, keepdims=True)), 0.0)
        elif fill is not None:  # a finite fill: a fully masked row becomes a uniform average
            s = np.where(keep, scores, fill)
            e = np.exp(s - s.max(axis=axis, keepdims=True))
        else:
            s = np.where(keep, scores, -np.inf)
            m = s.max(axis=axis, keepdims=True)
            e = np.exp(s - (m if nan_rows else np.where(np.isfinite(m), m, 0.0)))
        total = e.sum(axis=axis, keepdims=True)
        weights = e / total if nan_rows else np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    weights = weights.astype(x_q.dtype)
    mixed = weights @ v  # (B, H, L, D)
    merged = mixed.reshape(B, L, E) if merge == "direct" else mixed.transpose(0, 2, 1, 3).reshape(B, L, E)
    if out_proj == "none":
        out = merged
    elif out_proj == "no bias":
        out = merged @ W("o")
    else:
        out = merged @ W("o") + params["b_o"]
    if dead_output_zero:
        out = np.where(keep.any(axis=-1).any(axis=1)[..., None], out, 0.0)
    if averaged:
        weights = weights.mean(axis=1)
    dtype = np.float64 if float64 else x_q.dtype
    return out.astype(dtype), weights.astype(dtype)


MHA_MUTANTS = (  # (name, hint, knobs)
    ("x @ W.T", TRANSPOSED_W_HINT, {"transposed": True}),
    ("split straight to (B, H, N, D)", MHA_SPLIT_DIRECT_HINT, {"split": "direct"}),
    ("heads interleaved", MHA_INTERLEAVED_HINT, {"split": "interleaved"}),
    ("merge without transpose", MHA_MERGE_HINT, {"merge": "direct"}),
    ("scale 1/sqrt(E)", SCALE_E_HINT, {"scale_by_e": True}),
    ("no output projection", NO_OUT_PROJ_HINT, {"out_proj": "none"}),
    ("no b_o", NO_B_O_HINT, {"out_proj": "no bias"}),
    ("weights averaged over heads", AVERAGED_HINT, {"averaged": True}),
    ("inverted mask", INVERTED_HINT, {"invert": True}),
    ("keys and values from x_q", KV_FROM_Q_HINT, {"kv_from_q": True}),
    ("one head of width E", ONE_HEAD_HINT, {"one_head": True}),
    ("fully masked query outputs 0", DEAD_OUTPUT_HINT, {"dead_output_zero": True}),
    ("fully masked row is NaN", NAN_ROW_HINT, {"nan_rows": True}),
    ("multiplies the scores by the mask", MULTIPLY_HINT, {"multiply": True}),
    ("-1e9 fill", FULL_ROW_HINT, {"fill": -1e9}),
    ("softmax over queries", QUERY_AXIS_HINT, {"axis": -2}),
    ("float64 output", DTYPE_HINT, {"float64": True}),
)


def _mha_mutant(knobs):
    def mutant(x_q, x_kv, params, num_heads, mask=None):
        return _mha_manual(x_q, x_kv, params, num_heads, mask, **knobs)
    return mutant


for _name, _hint, _knobs in MHA_MUTANTS:
    multi_head_attention.mutant(_name, _hint)(_mha_mutant(_knobs))


# ----- alternatives: correct code written another way, in the inputs' dtype
@multi_head_attention.alternative("a loop over heads slicing the projections, -inf bias and nan_to_num")
def _(x_q, x_kv, params, num_heads, mask=None):
    B, L, E = x_q.shape
    S, D = x_kv.shape[1], E // num_heads
    q = x_q @ params["W_q"] + params["b_q"]
    k = x_kv @ params["W_k"] + params["b_k"]
    v = x_kv @ params["W_v"] + params["b_v"]
    keep = np.ones((B, num_heads, L, S), bool) if mask is None else np.broadcast_to(mask, (B, num_heads, L, S))
    outs, all_weights = [], []
    for h in range(num_heads):
        cols = slice(h * D, (h + 1) * D)
        scores = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / np.sqrt(D)  # (B, L, S)
        scores = scores + np.where(keep[:, h], 0.0, -np.inf).astype(x_q.dtype)
        with np.errstate(invalid="ignore"):
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            w = np.nan_to_num(e / e.sum(axis=-1, keepdims=True), nan=0.0)
        outs.append(w @ v[..., cols])
        all_weights.append(w)
    out = np.concatenate(outs, axis=-1) @ params["W_o"] + params["b_o"]
    return out.astype(x_q.dtype), np.stack(all_weights, axis=1).astype(x_q.dtype)


@multi_head_attention.alternative("einsum over weights reshaped (E, H, D), log-sum-exp softmax")
def _(x_q, x_kv, params, num_heads, mask=None):
    B, L, E = x_q.shape
    H, D = num_heads, E // num_heads
    dt = x_q.dtype
    q = np.einsum("ble,ehd->bhld", x_q, params["W_q"].reshape(E, H, D)) + params["b_q"].reshape(H, 1, D)
    k = np.einsum("bse,ehd->bhsd", x_kv, params["W_k"].reshape(E, H, D)) + params["b_k"].reshape(H, 1, D)
    v = np.einsum("bse,ehd->bhsd", x_kv, params["W_v"].reshape(E, H, D)) + params["b_v"].reshape(H, 1, D)
    scores = np.einsum("bhld,bhsd->bhls", q, k) * dt.type(D ** -0.5)
    keep = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    m = np.where(keep, scores, -np.inf).max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(dt)
    with np.errstate(divide="ignore", over="ignore"):  # masked entries may overflow: np.where drops them
        lse = m + np.log(np.where(keep, np.exp(scores - m), 0).sum(axis=-1, keepdims=True))
        weights = np.where(keep, np.exp(scores - lse), 0).astype(dt)
    heads = np.einsum("bhls,bhsd->blhd", weights, v)
    out = np.einsum("blhd,hde->ble", heads, params["W_o"].reshape(H, D, E)) + params["b_o"]
    return out.astype(dt), weights


@multi_head_attention.alternative("keys and values in one (E, 2E) projection, softmax in float64")
def _(x_q, x_kv, params, num_heads, mask=None):
    B, L, E = x_q.shape
    S, H = x_kv.shape[1], num_heads
    D = E // H
    kv = x_kv @ np.concatenate([params["W_k"], params["W_v"]], axis=1) + np.concatenate([params["b_k"],
                                                                                         params["b_v"]])
    k, v = (a.reshape(B, S, H, D).swapaxes(1, 2) for a in np.split(kv, 2, axis=-1))  # (B, H, S, D)
    q = (x_q @ params["W_q"] + params["b_q"]).reshape(B, L, H, D).swapaxes(1, 2)
    scores = (q @ k.swapaxes(-1, -2)).astype(np.float64) / np.sqrt(D)
    keep = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    e = np.where(keep, np.exp(np.where(keep, scores, -np.inf) - np.where(keep, scores, -np.inf).max(
        axis=-1, keepdims=True, initial=-1e300)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = (e / np.where(total > 0, total, 1.0)).astype(x_q.dtype)
    out = (weights @ v).swapaxes(1, 2).reshape(B, L, E) @ params["W_o"] + params["b_o"]
    return out.astype(x_q.dtype), weights


# ----------------------------------------------------------------------------------------------- layer_norm
UNBIASED_HINT = ("use the biased variance, mean((x - mean)**2) (divide by E), as nn.LayerNorm: np.var(..., ddof=1) "
                 "divides by E - 1")
EPS_OUTSIDE_HINT = "eps goes inside the square root: (x - mean) / sqrt(var + eps), not / (sqrt(var) + eps)"
NO_EPS_HINT = ("add eps to the variance inside the square root: a row whose entries are all equal has variance 0, "
               "and 0 / sqrt(0) is NaN")
FIXED_EPS_HINT = "use the eps argument (default 1e-5) instead of a constant"
AXIS_HINT = ("normalise over the last axis (the E features of each position), with keepdims=True: not over the "
             "positions or the batch (that is closer to batch norm)")
GLOBAL_HINT_LN = ("compute the mean and variance of each position on its own (axis=-1, keepdims=True), not of the "
                  "whole array")
RMS_HINT = "subtract the mean before dividing: layer norm centres each position (without it, it is RMSNorm)"
SWAPPED_HINT = "gamma scales and beta shifts: normalised * gamma + beta, not normalised * beta + gamma"
NO_AFFINE_HINT = "apply the learned scale and shift after normalising: normalised * gamma + beta"
NO_SQRT_HINT = "divide by the standard deviation sqrt(var + eps), not by the variance"
CANCEL_HINT = ("compute the variance as the mean of the squared deviations, mean((x - mean)**2): "
               "mean(x**2) - mean(x)**2 cancels catastrophically in float32 when the mean is large next to the spread")

layer_norm = Exercise("multihead.layer_norm", points=2, reference=ref.layer_norm, uses_torch=True,
                      demo=lambda rng: ((np.array([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]]),
                                         np.array([1.0, 1.0, 2.0, 0.5]), np.array([0.0, 0.5, 0.0, -1.0])), {}))


def _ln_inputs(rng, shape, dtype="float64", scale=1.0, offset=0.0):
    """x with rows of different scales and offsets, gamma = 1 + 0.3 N, beta = 0.5 N."""
    E = shape[-1]
    row_scale = scale * np.exp(0.5 * rng.standard_normal(shape[:-1] + (1,)))
    x = offset + row_scale * rng.standard_normal(shape)
    gamma = 1.0 + 0.3 * rng.standard_normal(E)
    beta = 0.5 * rng.standard_normal(E)
    return x.astype(dtype), gamma.astype(dtype), beta.astype(dtype)


def _ln_check(t, x, gamma, beta, eps=None, what=None):
    got = t.call(x, gamma, beta) if eps is None else t.call(x, gamma, beta, eps=eps)
    eps = 1e-5 if eps is None else eps
    want = ref.torch_layer_norm(x, gamma, beta, eps)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    cond = np.abs(mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=-1, keepdims=True) + eps)  # |mean| / std
    atol = tolerance(x.dtype)[1] + 8 * _eps(x.dtype) * float(cond.max(initial=0.0)) * float(_abs(gamma).max())
    t.expect(got, want.astype(x.dtype), what=what or f"normalised {x.shape}", atol=atol)


@layer_norm.case("float64 (2, 5, 12)", "every position (B=2, L=5) normalised over its E=12 features, then scaled "
                 "by gamma and shifted by beta, against F.layer_norm")
def _(t):
    _ln_check(t, *_ln_inputs(t.rng, (2, 5, 12)))


@layer_norm.case("float32 (3, 7, 10)", "a float32 input gives a float32 output (B=3, L=7, E=10)")
def _(t):
    _ln_check(t, *_ln_inputs(t.rng, (3, 7, 10), "float32"))


@layer_norm.case("any leading dims", "a 2-D (5, 12) and a 4-D (2, 3, 5, 12) input: only the last axis is normalised")
def _(t):
    for shape in ((5, 12), (2, 3, 5, 12)):
        _ln_check(t, *_ln_inputs(t.rng, shape), what=f"{len(shape)}-D input {shape}")


@layer_norm.case("constant and near-constant rows", "a row whose features are all equal becomes beta (eps keeps "
                 "0 / sqrt(0 + eps) finite); rows of spread 1e-3 are where eps matters (2, 4, 12)")
def _(t):
    x, gamma, beta = _ln_inputs(t.rng, (2, 4, 12), scale=1e-3)
    x[0, 1] = 3.0
    x[1, 2] = -0.5
    _ln_check(t, x, gamma, beta)


@layer_norm.case("eps = 1e-2", "the eps argument is used: eps=1e-2 on rows of spread about 0.1 (5, 10)")
def _(t):
    x, gamma, beta = _ln_inputs(t.rng, (5, 10), scale=0.1)
    _ln_check(t, x, gamma, beta, eps=1e-2)


@layer_norm.case("large offset, float32", "float32 rows with means near +-1000 and spread about 1 (2, 5, 12): the "
                 "variance is the mean of squared deviations, not mean(x**2) - mean(x)**2")
def _(t):
    x, gamma, beta = _ln_inputs(t.rng, (2, 5, 12), "float32")
    x = (x + np.where(t.rng.random((2, 5, 1)) < 0.5, -1000.0, 1000.0)).astype(np.float32)
    _ln_check(t, x, gamma, beta)


def _ln_manual(x, gamma, beta, eps=1e-5, *, ddof=0, eps_outside=False, use_eps=True, fixed_eps=False, axis=-1,
               whole=False, centre=True, swap=False, affine=True, sqrt=True, cancel=False, float64=False):
    eps = 1e-5 if fixed_eps else eps
    eps = eps if use_eps else 0.0
    work = x.astype(np.float64) if float64 else x
    red = dict(axis=None if whole else axis, keepdims=not whole)
    mean = work.mean(**red) if centre else 0.0
    if cancel:
        var = (work * work).mean(**red) - mean * mean
    elif ddof:
        var = work.var(ddof=ddof, **red)
    else:
        var = ((work - mean) ** 2).mean(**red)
    with np.errstate(invalid="ignore", divide="ignore"):
        if eps_outside:
            normed = (work - mean) / (np.sqrt(var) + eps)
        elif sqrt:
            normed = (work - mean) / np.sqrt(var + eps)
        else:
            normed = (work - mean) / (var + eps)
    if affine:
        normed = normed * beta + gamma if swap else normed * gamma + beta
    return normed if float64 else normed.astype(x.dtype)


LN_MUTANTS = (
    ("unbiased variance", UNBIASED_HINT, {"ddof": 1}),
    ("eps outside the sqrt", EPS_OUTSIDE_HINT, {"eps_outside": True}),
    ("no eps", NO_EPS_HINT, {"use_eps": False}),
    ("eps argument ignored", FIXED_EPS_HINT, {"fixed_eps": True}),
    ("normalised over the positions", AXIS_HINT, {"axis": -2}),
    ("statistics of the whole array", GLOBAL_HINT_LN, {"whole": True}),
    ("no centring (RMSNorm)", RMS_HINT, {"centre": False}),
    ("gamma and beta swapped", SWAPPED_HINT, {"swap": True}),
    ("no gamma, no beta", NO_AFFINE_HINT, {"affine": False}),
    ("divides by the variance", NO_SQRT_HINT, {"sqrt": False}),
    ("mean(x**2) - mean(x)**2", CANCEL_HINT, {"cancel": True}),
    ("float64 output", DTYPE_HINT, {"float64": True}),
)


def _ln_mutant(knobs):
    def mutant(x, gamma, beta, eps=1e-5):
        return _ln_manual(x, gamma, beta, eps, **knobs)
    return mutant


for _name, _hint, _knobs in LN_MUTANTS:
    layer_norm.mutant(_name, _hint)(_ln_mutant(_knobs))


@layer_norm.alternative("np.var in float64, cast back")
def _(x, gamma, beta, eps=1e-5):
    w = x.astype(np.float64)
    normed = (w - w.mean(axis=-1, keepdims=True)) / np.sqrt(w.var(axis=-1, keepdims=True) + eps)
    return (normed * gamma + beta).astype(x.dtype)


@layer_norm.alternative("sums divided by E and a reciprocal square root, in the input dtype")
def _(x, gamma, beta, eps=1e-5):
    E = x.shape[-1]
    centred = x - x.sum(axis=-1, keepdims=True) / x.dtype.type(E)
    inv_std = 1 / np.sqrt(np.einsum("...e,...e->...", centred, centred)[..., None] / x.dtype.type(E)
                          + x.dtype.type(eps))
    return gamma * (centred * inv_std) + beta


@layer_norm.alternative("np.std with keepdims, eps added to its square")
def _(x, gamma, beta, eps=1e-5):
    std = x.std(axis=-1, keepdims=True)
    return ((x - x.mean(axis=-1, keepdims=True)) / np.sqrt(std * std + eps) * gamma + beta).astype(x.dtype)


# --------------------------------------------------------------------------------------------- feed_forward
TANH_HINT = ('activation="gelu" is the exact GELU, 0.5 * h * (1 + erf(h / sqrt(2))) (F.gelu\'s default), not the '
             "tanh approximation 0.5 * h * (1 + tanh(sqrt(2 / pi) * (h + 0.044715 * h**3))): they differ by up to "
             "5e-4; np.vectorize(math.erf) gives erf")
SIGMOID_HINT = ('activation="gelu" is the exact GELU, h * Phi(h) = 0.5 * h * (1 + erf(h / sqrt(2))), not the '
                "sigmoid approximation h * sigmoid(1.702 * h)")
ERF_SCALE_HINT = "Phi(h) = 0.5 * (1 + erf(h / sqrt(2))): divide h by sqrt(2) inside erf"
ALWAYS_RELU_HINT = 'use the activation asked for: activation="gelu" (the default) is the GELU, not a ReLU'
ALWAYS_GELU_HINT = 'use the activation asked for: activation="relu" is max(h, 0)'
NO_ACT_HINT = "apply the activation between the two projections: act(x @ W_1 + b_1) @ W_2 + b_2"
ACT_OUT_HINT = "the activation goes between the two projections only: the output act(...) @ W_2 + b_2 is not activated"
B1_AFTER_HINT = "add b_1 before the activation: act(x @ W_1 + b_1), not act(x @ W_1) + b_1"
FF_TRANSPOSED_HINT = ("W_1 is (E, d_ff) and W_2 is (d_ff, E): compute x @ W_1, not x @ W_1.T (nn.Linear stores "
                      "(out, in), these are (in, out))")
FF_DTYPE_HINT = ("keep x's dtype: np.vectorize(math.erf) returns float64, so cast the result back "
                 "(.astype(x.dtype))")
NO_B2_HINT = "add the second bias: act(x @ W_1 + b_1) @ W_2 + b_2"
ACT_CHECK_HINT = 'raise ValueError for an activation other than "gelu" or "relu", instead of silently using one'

feed_forward = Exercise(
    "multihead.feed_forward", points=2, reference=ref.feed_forward, uses_torch=True,
    demo=lambda rng: ((np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0]]),
                       np.array([[1.0, 0.0, -1.0, 0.5], [0.5, 1.0, 0.0, -0.5], [0.0, -1.0, 1.0, 1.0]]),
                       np.array([0.1, -0.2, 0.0, 0.3]),
                       np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [-1.0, 0.5, 0.0], [0.5, 0.5, 1.0]]),
                       np.array([0.0, 0.1, -0.1])), {"activation": "gelu"}))


def _ff_params(rng, E, d_ff, dtype="float64", spread=2.0):
    """W_1 so that the hidden pre-activations have standard deviation `spread` (GELU's curved part and its tail),
    W_2 ~ N(0, 1/d_ff), biases ~ N(0, 0.25)."""
    W_1 = rng.standard_normal((E, d_ff)) * spread / np.sqrt(E)
    b_1 = 0.5 * rng.standard_normal(d_ff)
    W_2 = rng.standard_normal((d_ff, E)) / np.sqrt(d_ff)
    b_2 = 0.5 * rng.standard_normal(E)
    return tuple(a.astype(dtype) for a in (W_1, b_1, W_2, b_2))


def _ff_check(t, x, params, activation=None, what=None):
    got = t.call(x, *params) if activation is None else t.call(x, *params, activation=activation)
    act = activation or "gelu"
    want = ref.torch_feed_forward(x, *params, activation=act).astype(x.dtype)
    hint = None
    if act == "gelu" and type(got) is np.ndarray and got.shape == want.shape and got.dtype.kind == "f":
        rtol, atol = tolerance(x.dtype)
        g = got.astype(np.float64)
        if not np.allclose(g, want, rtol=rtol, atol=atol):
            tanh = ref.torch_feed_forward(x, *params, activation="gelu", approximate="tanh")
            sigmoid = _ff_manual(x.astype(np.float64), *(a.astype(np.float64) for a in params), gelu="sigmoid")
            if np.allclose(g, tanh, rtol=rtol, atol=atol):
                hint = TANH_HINT
            elif np.allclose(g, sigmoid, rtol=rtol, atol=atol):
                hint = SIGMOID_HINT
    t.expect(got, want, what=what or f"output {x.shape}", hint=hint)


@feed_forward.case("gelu float64 (2, 5, 12), d_ff = 20", "the exact (erf) GELU between the two projections, "
                   "B=2, L=5, E=12, d_ff=20, against F.gelu and F.linear with W.T")
def _(t):
    _ff_check(t, t.rng.standard_normal((2, 5, 12)), _ff_params(t.rng, 12, 20), "gelu")


@feed_forward.case("relu float64 (3, 4, 6), d_ff = 10", 'activation="relu": max(h, 0) between the projections '
                   "(B=3, L=4, E=6, d_ff=10)")
def _(t):
    _ff_check(t, t.rng.standard_normal((3, 4, 6)), _ff_params(t.rng, 6, 10), "relu")


@feed_forward.case("gelu float32 (2, 5, 8), d_ff = 32", "float32 in, float32 out, with the original 4x expansion "
                   "(E=8, d_ff=32)")
def _(t):
    _ff_check(t, t.rng.standard_normal((2, 5, 8)).astype(np.float32), _ff_params(t.rng, 8, 32, "float32"), "gelu")


@feed_forward.case("default activation", "called without activation=, the network uses the exact GELU "
                   "(B=2, L=3, E=10, d_ff=14)")
def _(t):
    _ff_check(t, t.rng.standard_normal((2, 3, 10)), _ff_params(t.rng, 10, 14))


@feed_forward.case("any leading dims", "a 2-D (7, 12) input with relu and a 4-D (2, 3, 4, 12) input with gelu: every "
                   "position on its own (d_ff=20)")
def _(t):
    for shape, act in (((7, 12), "relu"), ((2, 3, 4, 12), "gelu")):
        _ff_check(t, t.rng.standard_normal(shape), _ff_params(t.rng, 12, 20), act, what=f"{act}, input {shape}")


@feed_forward.case("unknown activation", 'activation="swish" or "sigmoid" raises ValueError')
def _(t):
    x, params = t.rng.standard_normal((2, 3, 6)), _ff_params(t.rng, 6, 10)
    for act in ("swish", "sigmoid"):
        t.raises("ValueError", x, *params, activation=act)


def _erf(a):
    return np.vectorize(math.erf, otypes=[np.float64])(a)


def _ff_manual(x, W_1, b_1, W_2, b_2, activation="gelu", *, gelu="erf", force=None, check=True, bias_after=False,
               act_out=False, transposed=False, no_b2=False, float64=False):
    if check and activation not in ("gelu", "relu"):
        raise ValueError(f"unknown activation {activation!r}")
    act = force or activation
    act = "gelu" if act not in ("gelu", "relu", "none") else act

    def apply(h):
        if act == "relu":
            return np.maximum(h, 0)
        if act == "none":
            return h
        if gelu == "tanh":
            return 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
        if gelu == "sigmoid":
            return h / (1 + np.exp(-1.702 * h))
        if gelu == "erf(h)":
            return 0.5 * h * (1 + _erf(h))
        return 0.5 * h * (1 + _erf(h / np.sqrt(2)))

    h = x @ (W_1.T if transposed else W_1)
    a = apply(h) + b_1 if bias_after else apply(h + b_1)
    out = a @ W_2 + (0 if no_b2 else b_2)
    out = apply(out) if act_out else out
    return out if float64 else out.astype(x.dtype)


FF_MUTANTS = (
    ("tanh GELU", TANH_HINT, {"gelu": "tanh"}),
    ("sigmoid GELU", SIGMOID_HINT, {"gelu": "sigmoid"}),
    ("erf(h) without / sqrt(2)", ERF_SCALE_HINT, {"gelu": "erf(h)"}),
    ("always relu", ALWAYS_RELU_HINT, {"force": "relu"}),
    ("always gelu", ALWAYS_GELU_HINT, {"force": "gelu"}),
    ("no activation", NO_ACT_HINT, {"force": "none"}),
    ("activation on the output too", ACT_OUT_HINT, {"act_out": True}),
    ("b_1 after the activation", B1_AFTER_HINT, {"bias_after": True}),
    ("x @ W_1.T", FF_TRANSPOSED_HINT, {"transposed": True}),
    ("no b_2", NO_B2_HINT, {"no_b2": True}),
    ("float64 output", FF_DTYPE_HINT, {"float64": True}),
    ("unknown activation accepted", ACT_CHECK_HINT, {"check": False}),
)


def _ff_mutant(knobs):
    def mutant(x, W_1, b_1, W_2, b_2, activation="gelu"):
        return _ff_manual(x, W_1, b_1, W_2, b_2, activation, **knobs)
    return mutant


for _name, _hint, _knobs in FF_MUTANTS:
    feed_forward.mutant(_name, _hint)(_ff_mutant(_knobs))


@feed_forward.alternative("Phi from math.erfc, everything in float64, cast once")
def _(x, W_1, b_1, W_2, b_2, activation="gelu"):
    if activation not in ("gelu", "relu"):
        raise ValueError(activation)
    h = x.astype(np.float64) @ W_1.astype(np.float64) + b_1
    if activation == "gelu":
        a = h * 0.5 * np.vectorize(math.erfc)(-h / math.sqrt(2))
    else:
        a = np.where(h > 0, h, 0.0)
    return (a @ W_2.astype(np.float64) + b_2).astype(x.dtype)


@feed_forward.alternative("einsum and np.frompyfunc(math.erf) in the input dtype")
def _(x, W_1, b_1, W_2, b_2, activation="gelu"):
    if activation == "relu":
        act = lambda h: h * (h > 0)  # noqa: E731
    elif activation == "gelu":
        erf = np.frompyfunc(math.erf, 1, 1)
        act = lambda h: (h / 2 * (1 + erf(h / np.sqrt(2)).astype(h.dtype))).astype(h.dtype)  # noqa: E731
    else:
        raise ValueError(f"activation {activation!r}")
    h = np.einsum("...e,ef->...f", x, W_1) + b_1
    return np.einsum("...f,fe->...e", act(h), W_2) + b_2


@feed_forward.alternative("a dict of activations, np.matmul, erf vectorised over a flat array")
def _(x, W_1, b_1, W_2, b_2, activation="gelu"):
    def gelu(h):
        flat = np.array([math.erf(v / math.sqrt(2)) for v in h.ravel().tolist()]).reshape(h.shape)
        return (0.5 * h * (1 + flat)).astype(h.dtype)

    acts = {"gelu": gelu, "relu": lambda h: np.maximum(h, 0)}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}")
    return np.matmul(acts[activation](np.matmul(x, W_1) + b_1), W_2) + b_2


EXERCISES = [split_heads, merge_heads, multi_head_attention, attention_dropout, layer_norm, feed_forward]
