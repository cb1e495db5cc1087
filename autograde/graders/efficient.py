"""Grader for attnlab.efficient (notebook 07): sparse masks, local, linear and random-feature attention.

Oracles (independent of the solutions):

* the three masks: their set definitions, row by row (autograde/references/efficient.py); boolean outputs
  must match exactly. BigBird's random keys are graded by their properties, never by one draw: the window
  and the global rows *and* columns present, exactly ``min(num_random, keys left)`` extra keys in each
  non-global row, none of them duplicating a window or global key (so the draw was without replacement,
  from the keys not already allowed), the same mask for one generator state and different masks for two,
  and, over a large mask, random keys spread over the allowed positions as a uniform draw spreads them
  (6 standard deviations per bin). No verdict depends on the seed: the probability that a correct
  draw fails is below 1e-8 per case.
* local_attention: PyTorch's F.scaled_dot_product_attention in float64 under the sliding-window mask
  (autograde/references/oracles.py), rounded once. The memory case (L = 8192) runs in a worker whose
  address space may grow by 64 MiB only, where one L x L float32 matrix is 256 MiB, and compares 256
  sampled rows with the oracle computed on those rows.
* linear_attention and random_feature_attention: the quadratic form, the (L, S) matrix phi(Q) phi(K)^T made
  explicit, masked, normalised, in float64 (the solutions sum over the keys first). random_feature_attention
  is compared exactly with the reference fed a generator in the same state (the docstring fixes the draw,
  ``W = rng.standard_normal((num_features, D))``), and its statistics are checked too: the error against
  exact softmax attention falls as num_features grows (measured on the learner's function only).

Tolerances follow the conditioning. Local attention is softmax attention: weights get `exp_rtol` of the
largest |scale * q . k| over kept pairs, the output that relative error times max |v| on top of the
table's atol. Linear attention divides two sums of positive terms, each rounded with a relative error of
about (D + S) eps, so its output gets ``4 (D + S) eps max |v|`` on top of the table. Random features
exponentiate ``w . x' - |x'|^2 / 2``: a correct float32 program rounds that exponent with an absolute error
of about eps times its magnitude M, hence ``4 (M + m + S) eps max |v|``. Every mistake below moves outputs
by 1e-2 or more.
"""
import numpy as np

from ..compare import describe_type
from ..framework import DTYPE_HINT, Exercise
from ..references import efficient as ref
from ..references import oracles
from ..tolerances import EPS, exp_rtol, tolerance
from .inputs import qkv

SIGMAS = 6.0

BOOL_HINT = ("return a boolean mask (dtype bool): True means may attend; a comparison such as np.abs(j - i) <= "
             "window is already boolean")


def _seeds(rng, n=1):
    seeds = []
    while len(seeds) < n:
        s = int(rng.integers(2 ** 63))
        if s not in seeds:
            seeds.append(s)
    return seeds


def _offset(L):
    """(L, L): key position minus query position, j - i."""
    return np.arange(L)[None, :] - np.arange(L)[:, None]


# ============================================================================ sliding_window_mask
window_mask = Exercise("efficient.sliding_window_mask", points=1, reference=ref.sliding_window_mask,
                       demo=lambda rng: ((6, 1), {}))

NEGATIVE_WINDOW_HINT = "raise ValueError for a negative window (a query always sees at least itself)"


@window_mask.case("L=9, window=2", "a band: query i sees keys with |i - j| <= 2, five keys away from the edges")
def _(t):
    t.expect(t.call(9, 2), ref.sliding_window_mask(9, 2))


@window_mask.case("L=9, window=2, causal", "causal: keys i - 2 .. i, the query and the two keys before it")
def _(t):
    t.expect(t.call(9, 2, causal=True), ref.sliding_window_mask(9, 2, causal=True))


@window_mask.case("L=13, window=4, both modes", "a wider window on a length that is not a multiple of it")
def _(t):
    t.expect(t.call(13, 4), ref.sliding_window_mask(13, 4), what="causal=False")
    t.expect(t.call(13, 4, causal=True), ref.sliding_window_mask(13, 4, causal=True), what="causal=True")


@window_mask.case("window=0, L=5", "window 0: each query sees only itself (the identity), causal or not")
def _(t):
    t.expect(t.call(5, 0), ref.sliding_window_mask(5, 0), what="causal=False")
    t.expect(t.call(5, 0, causal=True), ref.sliding_window_mask(5, 0, causal=True), what="causal=True")


@window_mask.case("window >= L: L=6, window=8", "a window wider than the sequence keeps every key (the lower "
                  "triangle when causal)")
def _(t):
    t.expect(t.call(6, 8), ref.sliding_window_mask(6, 8), what="causal=False")
    t.expect(t.call(6, 8, causal=True), ref.sliding_window_mask(6, 8, causal=True), what="causal=True")


@window_mask.case("negative window", "window = -1 raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 7, -1, hint=NEGATIVE_WINDOW_HINT)


def _band(L, window, causal=False, low=None, high=None, dtype=bool, check=True):
    """Keys with low <= j - i <= high (defaults: the window's), one deliberate change at a time."""
    if check and window < 0:
        raise ValueError("negative window")
    low = -window if low is None else low
    high = (0 if causal else window) if high is None else high
    offset = _offset(L)
    return ((offset >= low) & (offset <= high)).astype(dtype)


@window_mask.mutant("window off by one", "a query sees the keys with |i - j| <= window (window keys on each side, "
                    "plus itself): use <=, not <")
def _(L, window, causal=False):
    return _band(L, window, causal, low=-window + 1, high=0 if causal else window - 1)


@window_mask.mutant("window as the total width", "window counts the keys on each side of the query (|i - j| <= "
                    "window, up to 2 * window + 1 keys), not the width of the whole band")
def _(L, window, causal=False):
    return _band(L, window, causal, low=-(window // 2), high=0 if causal else window // 2)


@window_mask.mutant("causal ignored", "with causal=True keep only keys at or before the query (j <= i): the future "
                    "half of the band must go")
def _(L, window, causal=False):
    return _band(L, window, False)


@window_mask.mutant("causal keeps the future", "mask[i, j] is query i (row), key j (column): causal keeps keys i - "
                    "window .. i (the band below the diagonal), not keys after the query")
def _(L, window, causal=False):
    return _band(L, window, causal, low=0 if causal else -window, high=window)


@window_mask.mutant("causal drops the query itself", "a query always sees its own position: the causal band is "
                    "i - window <= j <= i, diagonal included")
def _(L, window, causal=False):
    return _band(L, window, causal, high=-1 if causal else window)


@window_mask.mutant("causal window counts the query", "causal: the query plus the window keys before it (i - "
                    "window <= j <= i, window + 1 keys, as Mistral's window W reaches back to i - W)")
def _(L, window, causal=False):
    return _band(L, window, causal, low=-window + 1 if causal else -window)


@window_mask.mutant("one-sided window", "without causal the window covers both sides: |i - j| <= window, so keys up "
                    "to window positions after the query too")
def _(L, window, causal=False):
    return _band(L, window, True)


@window_mask.mutant("float 0/1 mask", BOOL_HINT)
def _(L, window, causal=False):
    return _band(L, window, causal, dtype=np.float64)


@window_mask.mutant("no validation", NEGATIVE_WINDOW_HINT)
def _(L, window, causal=False):
    return _band(L, window, causal, check=False)


@window_mask.alternative("np.tri differences")
def _(L, window, causal=False):
    if window < 0:
        raise ValueError("window must be non-negative")
    upper = np.tri(L, L, 0 if causal else window, dtype=bool)
    return upper & ~np.tri(L, L, -window - 1, dtype=bool)


@window_mask.alternative("np.subtract.outer and a causal triangle")
def _(L, window, causal=False):
    if window < 0:
        raise ValueError(window)
    distance = np.subtract.outer(np.arange(L), np.arange(L))  # i - j
    keep = np.abs(distance) <= window
    return keep & np.tril(np.ones((L, L), dtype=bool)) if causal else keep


# ============================================================================ strided_mask
strided = Exercise("efficient.strided_mask", points=1, reference=ref.strided_mask, demo=lambda rng: ((7, 3), {}))

STRIDE_HINT = "raise ValueError when stride < 1 (a stride of 0 has no every-stride-th key)"


@strided.case("L=12, stride=3", "causal: the query and the 2 keys before it, plus every 3rd key back")
def _(t):
    t.expect(t.call(12, 3), ref.strided_mask(12, 3))


@strided.case("L=10, stride=4", "a length that is not a multiple of the stride")
def _(t):
    t.expect(t.call(10, 4), ref.strided_mask(10, 4))


@strided.case("L=17, stride=5", "stride 5 on 17 positions: each strided key counted back from its own query")
def _(t):
    t.expect(t.call(17, 5), ref.strided_mask(17, 5))


@strided.case("stride=1 and stride > L", "stride 1 keeps every earlier key; a stride longer than the sequence "
              "makes the band cover it: both give the full causal mask")
def _(t):
    t.expect(t.call(6, 1), ref.strided_mask(6, 1), what="L=6, stride=1")
    t.expect(t.call(5, 9), ref.strided_mask(5, 9), what="L=5, stride=9")


@strided.case("stride=0", "stride 0 raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 8, 0, hint=STRIDE_HINT)


def _strided(L, stride, band=True, strided_part=True, band_width=None, absolute=False, causal=True, transpose=False,
             dtype=bool, check=True):
    """The strided pattern with one deliberate difference (the mutants below pick which)."""
    if check and stride < 1:
        raise ValueError("stride must be >= 1")
    stride = max(stride, 1)
    back = -_offset(L)  # i - j
    width = stride if band_width is None else band_width(stride)
    keep = np.zeros((L, L), dtype=bool)
    if band:
        keep |= (back >= 0) & (back < width) if causal else np.abs(back) < width
    if strided_part:
        column = np.arange(L)[None, :] if absolute else back
        part = column % stride == 0
        keep |= part & (back >= 0) if causal else part
    keep = keep.T if transpose else keep
    return keep.astype(dtype)


@strided.mutant("local band only", "add the strided part: every stride-th key back from the query, (i - j) % "
                "stride == 0 with j <= i")
def _(L, stride):
    return _strided(L, stride, strided_part=False)


@strided.mutant("strided part only", "add the local band: the query and the stride - 1 keys just before it (0 <= "
                "i - j < stride)")
def _(L, stride):
    return _strided(L, stride, band=False)


@strided.mutant("fixed columns j % stride", "count the strided keys back from each query, (i - j) % stride == 0: "
                "j % stride == 0 picks the same columns for every query (the fixed pattern's idea, not the "
                "strided one)")
def _(L, stride):
    return _strided(L, stride, absolute=True)


@strided.mutant("not causal", "the strided pattern is causal: keep only keys j <= i (band and strided part)")
def _(L, stride):
    return _strided(L, stride, causal=False)


@strided.mutant("transposed", "mask[i, j] is query i (row) and key j (column): keep keys at or before the query "
                "(lower triangle), not after it")
def _(L, stride):
    return _strided(L, stride, transpose=True)


@strided.mutant("band one short", "the local band holds the query and the stride - 1 keys before it: i - j < "
                "stride, not i - j < stride - 1")
def _(L, stride):
    return _strided(L, stride, band_width=lambda s: s - 1)


@strided.mutant("float 0/1 mask", BOOL_HINT)
def _(L, stride):
    return _strided(L, stride, dtype=np.float64)


@strided.mutant("no validation", STRIDE_HINT)
def _(L, stride):
    return _strided(L, stride, check=False)


@strided.alternative("union of the paper's two heads, A1 and A2, row by row")
def _(L, stride):
    if stride < 1:
        raise ValueError("stride")
    out = np.zeros((L, L), dtype=bool)
    for i in range(L):
        out[i, max(0, i - stride):i + 1] = True  # A1: i - l .. i (l + 1 keys)
        out[i, i::-stride] = True  # A2: i, i - l, i - 2l, ...
    return out


@strided.alternative("np.tri band and a modulo grid")
def _(L, stride):
    if stride <= 0:
        raise ValueError("stride must be positive")
    i, j = np.indices((L, L))
    grid = np.mod(i - j, stride) == 0
    return np.tri(L, dtype=bool) & (grid | ~np.tri(L, L, -stride, dtype=bool))


# ============================================================================ bigbird_mask
bigbird = Exercise("efficient.bigbird_mask", points=2, reference=ref.bigbird_mask,
                   demo=None)  # a random mask has no literal visible check

WINDOW_HINT = ("keep the sliding window of every row: |i - j| <= window, both sides (BigBird is bidirectional), "
               "window included")
GLOBAL_ROWS_HINT = ("global tokens see every key: set the first num_global rows to True, not only the first "
                    "num_global columns")
GLOBAL_COLUMNS_HINT = ("global tokens are seen by every query: set the first num_global columns to True as well as "
                       "the rows (the pattern is symmetric for global tokens)")
DUPLICATE_HINT = ("draw the random keys from the keys the row does not see yet (outside its window, not global): a "
                  "draw that lands on a window or global key adds nothing, and the row ends up with fewer than "
                  "num_random new keys")
REPLACE_HINT = ("draw without replacement (rng.choice(candidates, size, replace=False)): a key drawn twice gives the "
                "row fewer than num_random new keys")
TOTAL_HINT = "num_random is per row: each non-global row gets its own num_random random keys, not num_random in all"
TOO_MANY_HINT = ("each non-global row gets exactly num_random random keys (fewer only when fewer are left): count "
                 "your draws per row")
CAP_HINT = ("a row with fewer than num_random keys left takes them all: draw min(num_random, candidates.size) "
            "keys (rng.choice raises ValueError when asked for more than it has without replacement)")
GLOBAL_RNG_HINT = ("draw from the rng argument (rng.choice, rng.permutation), not from np.random's global state: the "
                   "same generator state must give the same mask")
FIXED_HINT = ("draw from the rng argument you are given: a generator seeded inside the function "
              "(np.random.default_rng(0)) gives every call the same random keys")
SPREAD_HINT = ("draw each random key uniformly among all the keys the row does not see yet, on both sides of the "
               "window (rng.choice over np.flatnonzero(~mask[i]))")


def _fail(t, detail, fallback):
    """Fail, naming the mutant that ends the same way if one does (exact replays), else the fallback hint."""
    t.fail(detail, t.diagnose() or fallback)


def _allowed(L, window, num_global):
    """(L, L) bool: window keys plus global rows and columns (what is there before any random draw)."""
    allowed = np.abs(_offset(L)) <= window
    allowed[:num_global, :] = True
    allowed[:, :num_global] = True
    return allowed


def _check_bigbird(t, mask, L, window, num_global, num_random, what="mask"):
    """The properties every BigBird mask of these arguments has, whatever the draw."""
    if type(mask) is not np.ndarray:
        _fail(t, f"{what}: expected a numpy.ndarray of bool, shape ({L}, {L}), got {describe_type(mask)}", None)
    if mask.shape != (L, L):
        _fail(t, f"{what}: expected shape ({L}, {L}), got {mask.shape}", None)
    if mask.dtype != bool:
        _fail(t, f"{what}: expected dtype bool, got {mask.dtype}", BOOL_HINT)
    band = np.abs(_offset(L)) <= window
    missing = np.argwhere(band & ~mask)
    if missing.size:
        i, j = missing[0]
        _fail(t, f"{what}: {len(missing)} window keys are missing, e.g. query {i}, key {j} (|i - j| <= {window})",
              WINDOW_HINT)
    g = min(num_global, L)
    rows_full, columns_full = bool(mask[:g].all()), bool(mask[:, :g].all())
    if not (rows_full and columns_full):
        which = "rows" if not rows_full else "columns"
        _fail(t, f"{what}: the global {which} 0..{g - 1} are not all True (rows full: {rows_full}, columns full: "
              f"{columns_full})", GLOBAL_COLUMNS_HINT if rows_full else GLOBAL_ROWS_HINT if columns_full else None)
    allowed = _allowed(L, window, g)
    extra = (mask & ~allowed)[g:]  # random keys of the non-global rows
    want = np.minimum(num_random, L - allowed[g:].sum(axis=1))
    got = extra.sum(axis=1)
    wrong = np.flatnonzero(got != want)
    if wrong.size:
        r = wrong[0]
        detail = (f"{what}: {len(wrong)} non-global rows hold a wrong number of random keys, e.g. row {g + r} holds "
                  f"{got[r]} keys beyond its window and the global tokens, expected {want[r]} (min(num_random = "
                  f"{num_random}, keys left = {L - allowed[g + r].sum()}))")
        if got.sum() == num_random and want.sum() > num_random:
            fallback = TOTAL_HINT
        elif np.all(got <= want):
            fallback = f"{DUPLICATE_HINT}; or: {REPLACE_HINT}"
        else:
            fallback = TOO_MANY_HINT
        _fail(t, detail, fallback)
    return extra


def _bigbird_case(t, L, window, num_global, num_random):
    (seed,) = _seeds(t.rng)
    mask = t.call(L, window, num_global, num_random, np.random.default_rng(seed))
    _check_bigbird(t, mask, L, window, num_global, num_random)


@bigbird.case("L=24, window=2, 2 global, 3 random", "the window, the global rows and columns, and exactly 3 new "
              "random keys in every other row")
def _(t):
    _bigbird_case(t, 24, 2, 2, 3)


@bigbird.case("L=17, window=1, no global, 4 random", "num_global = 0: the window plus 4 random keys per row")
def _(t):
    _bigbird_case(t, 17, 1, 0, 4)


@bigbird.case("L=31, window=3, 3 global, 1 random", "three global tokens, one random key per row, a longer "
              "sequence")
def _(t):
    _bigbird_case(t, 31, 3, 3, 1)


@bigbird.case("no random keys: L=10, window=2, 1 global", "num_random = 0: the mask is the window plus the global "
              "rows and columns, exactly")
def _(t):
    (seed,) = _seeds(t.rng)
    t.expect(t.call(10, 2, 1, 0, np.random.default_rng(seed)), _allowed(10, 2, 1))


@bigbird.case("fewer keys left than num_random: L=9, window=1, 1 global, 20 random", "a row with fewer keys left "
              "than num_random takes them all: every entry is True")
def _(t):
    (seed,) = _seeds(t.rng)
    got = t.call(9, 1, 1, 20, np.random.default_rng(seed))
    t.expect(got, np.ones((9, 9), dtype=bool))


@bigbird.case("replay: L=40, window=1, 1 global, 3 random", "rng is the only randomness: the same generator state "
              "gives the same mask, two states give two different masks", weight=2.0)
def _(t):
    s1, s2 = _seeds(t.rng, 2)
    args = (40, 1, 1, 3)
    first = t.call(*args, np.random.default_rng(s1))
    _check_bigbird(t, first, *args, what="first call")
    again = t.call(*args, np.random.default_rng(s1))
    same = type(again) is np.ndarray and again.shape == first.shape and bool(np.all(again == first))
    if not same:
        differ = int(np.sum(np.any(again != first, axis=-1))) if type(again) is np.ndarray and \
            again.shape == first.shape else args[0]
        _fail(t, f"a second call with the same generator state (np.random.default_rng({s1})) gave a different mask "
              f"in {differ} of {args[0]} rows", GLOBAL_RNG_HINT)
    other = t.call(*args, np.random.default_rng(s2))
    _check_bigbird(t, other, *args, what="call with another generator state")
    if np.array_equal(other, first):
        _fail(t, f"two different generator states (np.random.default_rng({s1}) and ({s2})) gave exactly the same "
              "mask", FIXED_HINT)


@bigbird.case("spread: L=300, window=2, 2 global, 4 random", "over 298 rows the random keys fall on each fifth of "
              "the allowed keys, and on each side of the window, as often as uniform draws would (6 standard "
              "deviations)", weight=2.0)
def _(t):
    L, window, g, r = 300, 2, 2, 4
    (seed,) = _seeds(t.rng)
    mask = t.call(L, window, g, r, np.random.default_rng(seed))
    extra = _check_bigbird(t, mask, L, window, g, r)  # (L - g, L)
    candidates = ~_allowed(L, window, g)[g:]  # (L - g, L): where each row may draw
    p = candidates / candidates.sum(axis=1, keepdims=True)  # uniform over each row's candidates
    keys = np.arange(L)[None, :]
    rows = np.arange(g, L)[:, None]
    groups = [("keys before the window", keys < rows), ("keys after the window", keys > rows)]
    groups += [(f"keys {a}..{b - 1}", (keys >= a) & (keys < b)) for a, b in zip(range(0, L, 60), range(60, L + 60, 60))]
    for name, where in groups:
        share = (p * where).sum(axis=1)  # (L - g,): probability that one draw of a row lands there
        expected = float((r * share).sum())
        sd = float(np.sqrt((r * share * (1 - share)).sum()))
        count = int((extra & where).sum())
        if abs(count - expected) > SIGMAS * sd + 1:
            _fail(t, f"{count} random keys fell on the {name}, expected {expected:.0f} +- {SIGMAS * sd:.0f} for "
                  f"uniform draws ({SIGMAS:g} standard deviations)", SPREAD_HINT)


def _bigbird(L, window, num_global, num_random, rng, rows=True, columns=True, exclude_allowed=True, replace=False,
             per_row=True, band=None, cap=True, source=None, dtype=bool, side=None):
    """BigBird with one deliberate difference (the mutants below pick which)."""
    offset = _offset(L)
    mask = band(offset) if band else np.abs(offset) <= window
    if rows:
        mask[:num_global, :] = True
    if columns:
        mask[:, :num_global] = True
    draw = source(rng) if source else rng
    budget = num_random
    for i in range(num_global, L):
        pool = np.flatnonzero(~mask[i]) if exclude_allowed else np.arange(L)
        if side is not None:
            pool = pool[pool > i]
        n = min(budget, pool.size) if cap else budget
        if n > 0:
            chosen = draw.choice(pool, size=n, replace=replace)
            mask[i, chosen] = True
        if not per_row:
            budget -= n
    return mask.astype(dtype)


@bigbird.mutant("global rows only", GLOBAL_COLUMNS_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, columns=False)


@bigbird.mutant("global columns only", GLOBAL_ROWS_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, rows=False)


@bigbird.mutant("random keys may repeat window keys", DUPLICATE_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, exclude_allowed=False)


@bigbird.mutant("with replacement", REPLACE_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, replace=True)


@bigbird.mutant("num_random in all", TOTAL_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, per_row=False)


@bigbird.mutant("window off by one", WINDOW_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, band=lambda offset: np.abs(offset) < window)


@bigbird.mutant("causal window", WINDOW_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, band=lambda offset: (offset <= 0) & (offset >= -window))


@bigbird.mutant("no cap on num_random", CAP_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, cap=False)


@bigbird.mutant("np.random global state", GLOBAL_RNG_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, source=lambda rng: np.random)


@bigbird.mutant("generator with a fixed seed", FIXED_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, source=lambda rng: np.random.default_rng(0))


@bigbird.mutant("random keys only after the query", SPREAD_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, side="after")


@bigbird.mutant("float 0/1 mask", BOOL_HINT)
def _(L, window, num_global, num_random, rng):
    return _bigbird(L, window, num_global, num_random, rng, dtype=np.float64)


@bigbird.alternative("a permutation of all keys, keeping the first ones not yet allowed")
def _(L, window, num_global, num_random, rng):
    i, j = np.indices((L, L))
    mask = (np.abs(i - j) <= window) | (i < num_global) | (j < num_global)
    for row in range(num_global, L):
        order = rng.permutation(L)
        fresh = order[~mask[row, order]][:num_random]
        mask[row, fresh] = True
    return mask


@bigbird.alternative("rejection sampling with rng.integers")
def _(L, window, num_global, num_random, rng):
    mask = np.zeros((L, L), dtype=bool)
    for i in range(L):
        mask[i, max(0, i - window):i + window + 1] = True
    mask[:num_global] = True
    mask[:, :num_global] = True
    for i in range(num_global, L):
        left = int((~mask[i]).sum())
        added = 0
        while added < min(num_random, left):
            j = int(rng.integers(L))
            if not mask[i, j]:
                mask[i, j] = True
                added += 1
    return mask


@bigbird.alternative("random keys by argsort of uniform scores (Gumbel-top-k style)")
def _(L, window, num_global, num_random, rng):
    offset = np.arange(L)[None, :] - np.arange(L)[:, None]
    base = np.abs(offset) <= window
    base[:num_global] = True
    base[:, :num_global] = True
    scores = np.where(base, np.inf, rng.random((L, L)))  # (L, L): smallest scores win, allowed keys never
    order = np.argsort(scores, axis=1)[:, :num_random] if num_random > 0 else np.zeros((L, 0), dtype=np.int64)
    picked = np.zeros((L, L), dtype=bool)
    np.put_along_axis(picked, order, True, axis=1)
    picked &= ~base
    picked[:num_global] = False
    return base | picked


# ============================================================================ local_attention
local = Exercise("efficient.local_attention", points=3, reference=ref.local_attention, uses_torch=True,
                 demo=lambda rng: ((np.eye(4, 3), np.eye(4, 3), np.arange(8.0).reshape(4, 2), 1), {}))

MEMORY_L, BUDGET_MB = 8192, 64
MATERIALISE_HINT = ("never build an L x L array (scores, mask or weights): cut the queries into blocks of about "
                    "window rows and score each block only against the keys within window of it, (b, b + 2 window)")


def _window_tolerances(q, k, v, mask):
    """(rtol of weights, atol of the output): exp_rtol of the largest |scale q . k| over kept pairs."""
    scale = q.shape[-1] ** -0.5
    size = np.abs(np.asarray(q, np.float64)) @ np.swapaxes(np.abs(np.asarray(k, np.float64)), -1, -2)
    rtol = exp_rtol(q.dtype, scale * float(np.where(mask, size, 0.0).max(initial=0.0)))
    table_rtol, table_atol = tolerance(q.dtype)
    return rtol, table_atol + (rtol - table_rtol) * float(np.abs(np.asarray(v, np.float64)).max(initial=0.0))


def _check_local(t, q, k, v, window, causal=None, what=None):
    kwargs = {} if causal is None else {"causal": causal}
    got = t.call(q, k, v, window, **kwargs)
    mask = ref.sliding_window_mask(q.shape[-2], window, bool(causal))
    out, _ = oracles.attention(q, k, v, mask=mask)
    _, atol = _window_tolerances(q, k, v, mask)
    t.expect(got, out.numpy().astype(q.dtype), what=what or "output (..., L, D_v)", atol=atol)
    return got


@local.case("float64 (2, 3): L=11, D=4, D_v=6, window=3", "both sides of a window of 3 on a length that is not a "
            "multiple of it, every dimension distinct, against PyTorch's SDPA under the window mask")
def _(t):
    _check_local(t, *qkv(t.rng, L=11, S=11), 3)


@local.case("causal, (2,): L=10, D=5, D_v=3, window=4", "causal=True: keys i - 4 .. i only")
def _(t):
    _check_local(t, *qkv(t.rng, lead=(2,), L=10, S=10, D=5, D_v=3), 4, causal=True)


@local.case("float32 (3,): L=17, window=5, both modes", "float32 inputs give a float32 output, causal or not")
def _(t):
    q, k, v = qkv(t.rng, lead=(3,), L=17, S=17, D=8, D_v=6, dtype="float32")
    _check_local(t, q, k, v, 5, causal=False, what="causal=False: output")
    _check_local(t, q, k, v, 5, causal=True, what="causal=True: output")


@local.case("window=0: (2,) L=7", "window 0: each query sees only itself, so the output is v")
def _(t):
    _check_local(t, *qkv(t.rng, lead=(2,), L=7, S=7), 0)


@local.case("window >= L: (2, 3) L=6, window=9", "a window wider than the sequence is full attention")
def _(t):
    _check_local(t, *qkv(t.rng, L=6, S=6), 9)


@local.case("no batch dims (13, 5), window=2, and window=1", "2-D inputs, narrow windows (blocks of one or two "
            "queries)")
def _(t):
    q, k, v = qkv(t.rng, lead=(), L=13, S=13, D=5, D_v=2)
    _check_local(t, q, k, v, 2, what="window=2: output")
    _check_local(t, q, k, v, 1, causal=True, what="window=1, causal: output")


@local.case("large logits (2,): L=12, window=3", "scores of magnitude ~1e3 inside the window stay finite and exact")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=12, S=12, D=4, D_v=3)
    _check_local(t, 15.0 * q, 15.0 * k, v, 3)


@local.case(f"memory budget: L={MEMORY_L}, D=16, D_v=8, window=16, {BUDGET_MB} MiB", f"computed block by block: it "
            f"runs in a worker whose address space may grow by only {BUDGET_MB} MiB (one float32 L x L matrix is "
            f"{MEMORY_L * MEMORY_L * 4 >> 20} MiB) and still equals masked attention on 256 sampled rows",
            memory_budget_mb=BUDGET_MB, memory_hint=MATERIALISE_HINT, diagnose=False, heavy=True, weight=2.0)
def _(t):
    q, k, v = qkv(t.rng, lead=(), L=MEMORY_L, S=MEMORY_L, D=16, D_v=8, dtype="float32")
    got = t.call(q, k, v, 16)
    if type(got) is not np.ndarray or got.shape != (MEMORY_L, 8) or got.dtype != np.float32:
        t.fail(f"expected a numpy.ndarray ({MEMORY_L}, 8) float32, got {describe_type(got)}")
    rows = np.sort(t.rng.choice(MEMORY_L, 256, replace=False))
    rows[:2] = (0, 1)  # the first rows and the last ones: the edges of the sequence
    rows[-2:] = (MEMORY_L - 2, MEMORY_L - 1)
    mask = np.abs(np.arange(MEMORY_L)[None, :] - rows[:, None]) <= 16  # (256, L)
    out, _ = oracles.attention(q[rows], k, v, mask=mask)
    _, atol = _window_tolerances(q[rows], k, v, mask)
    t.expect(got[rows], out.numpy().astype(np.float32), what="output on 256 sampled rows", atol=atol)


def _local(q, k, v, window, causal=False, *, low=None, high=None, block=None, blocks="window", scale=None,
           drop_tail=False, dtype=None, materialise=False):
    """Blocked local attention with one deliberate difference (the mutants below pick which).

    low/high: the offsets j - i kept (default -window .. 0 or window); blocks: "window" (neighbour blocks, masked
    per pair), "own" (only the query's block), "unmasked" (every key of the neighbour blocks)."""
    L, D = q.shape[-2], q.shape[-1]
    low = -window if low is None else low
    high = (0 if causal else window) if high is None else high
    scale = D ** -0.5 if scale is None else scale
    if materialise:  # the whole (L, L) problem at once
        offset_all = np.arange(L)[None, :] - np.arange(L)[:, None]
        keep = (offset_all >= low) & (offset_all <= high)
        scores = np.where(keep, (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return ((e / e.sum(axis=-1, keepdims=True)) @ v).astype(dtype or q.dtype)
    b = block or max(window, 1)
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    out = np.zeros(lead + (L, v.shape[-1]))
    end = L - L % b if drop_tail and L % b else L
    for start in range(0, end, b):
        stop = min(start + b, L)
        if blocks == "own":
            lo, hi = start, stop
        else:
            lo, hi = max(0, start - window), min(L, stop + window)
        offset = np.arange(lo, hi)[None, :] - np.arange(start, stop)[:, None]
        keep = np.ones(offset.shape, bool) if blocks == "unmasked" else (offset >= low) & (offset <= high)
        if causal and blocks == "unmasked":
            keep &= offset <= 0
        scores = (q[..., start:stop, :] @ np.swapaxes(k[..., lo:hi, :], -1, -2)) * scale
        scores = np.where(keep, scores, -np.inf)
        m = scores.max(axis=-1, keepdims=True)
        e = np.exp(scores - np.where(np.isfinite(m), m, 0.0))
        out[..., start:stop, :] = (e / e.sum(axis=-1, keepdims=True)) @ v[..., lo:hi, :]
    return out.astype(dtype or q.dtype)


@local.mutant("window off by one", "query i attends to keys with |i - j| <= window (the window keys on each side "
              "and itself): use <=, not <")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, low=-window + 1, high=0 if causal else window - 1)


@local.mutant("causal ignored", "with causal=True drop the keys after the query (j > i) inside the window: the future "
              "must not leak")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, False)


@local.mutant("one-sided window", "without causal the window covers both sides: keys up to window positions after "
              "the query count too")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, True)


@local.mutant("own block only", "a query near the edge of its block also sees keys in the neighbouring blocks: take "
              "keys [start - window, stop + window), not only the block's own keys")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, blocks="own")


@local.mutant("neighbour keys unmasked", "inside the (b, b + 2 window) tile, mask each pair with |j - i| > window: "
              "the keys of the neighbouring blocks are not all within the window of every query")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, blocks="unmasked")


@local.mutant("last partial block dropped", "when L is not a multiple of the block size the last, shorter block "
              "still needs its output: loop with range(0, L, block) and clip stop at L")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, drop_tail=True)


@local.mutant("no scale", "scale the scores by 1/sqrt(D), as full attention does")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, scale=1.0)


@local.mutant("scale by the window", "the scale is 1/sqrt(D) (D the width of q and k), whatever the window")
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, scale=1.0 / np.sqrt(2 * window + 1))


@local.mutant("materialises L x L", MATERIALISE_HINT)
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, materialise=True)


@local.mutant("float64 output", DTYPE_HINT)
def _(q, k, v, window, causal=False):
    return _local(q, k, v, window, causal, dtype=np.float64)


@local.alternative("a strided view of the padded keys: (L, 2 window + 1) scores")
def _(q, k, v, window, causal=False):
    from numpy.lib.stride_tricks import sliding_window_view

    L, D = q.shape[-2], q.shape[-1]
    width = 2 * window + 1
    pad = [(0, 0)] * (k.ndim - 2) + [(window, window), (0, 0)]
    k_pad, v_pad = np.pad(k, pad), np.pad(v, pad)  # (..., L + 2 window, D)
    k_win = np.swapaxes(sliding_window_view(k_pad, width, axis=-2), -1, -2)  # (..., L, width, D)
    v_win = np.swapaxes(sliding_window_view(v_pad, width, axis=-2), -1, -2)  # (..., L, width, D_v)
    scores = np.einsum("...ld,...lwd->...lw", q, k_win) / q.dtype.type(np.sqrt(D))
    position = np.arange(L)[:, None] + np.arange(width)[None, :] - window  # (L, width): key index j
    keep = (position >= 0) & (position < L)
    if causal:
        keep &= position <= np.arange(L)[:, None]
    scores = np.where(keep, scores, -np.inf)
    w = np.exp(scores - scores.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return np.einsum("...lw,...lwv->...lv", w, v_win).astype(q.dtype)


@local.alternative("one query at a time, keys sliced to its window, float64 inside")
def _(q, k, v, window, causal=False):
    L = q.shape[-2]
    out = np.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    for i in range(L):
        lo, hi = max(0, i - window), (i + 1 if causal else min(L, i + window + 1))
        s = np.einsum("...d,...sd->...s", q[..., i, :].astype(np.float64), k[..., lo:hi, :]) / np.sqrt(q.shape[-1])
        w = np.exp(s - s.max(axis=-1, keepdims=True))
        out[..., i, :] = np.einsum("...s,...sv->...v", w / w.sum(axis=-1, keepdims=True), v[..., lo:hi, :])
    return out


@local.alternative("fixed blocks of 32 queries, log-sum-exp weights")
def _(q, k, v, window, causal=False):
    L, D = q.shape[-2], q.shape[-1]
    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    for s in range(0, L, 32):
        e = min(L, s + 32)
        lo, hi = max(0, s - window), (e if causal else min(L, e + window))
        i, j = np.arange(s, e)[:, None], np.arange(lo, hi)[None, :]
        ok = (j >= i - window) & (j <= (i if causal else i + window))
        x = np.where(ok, q[..., s:e, :] @ np.swapaxes(k[..., lo:hi, :], -1, -2) / np.sqrt(D), -np.inf)
        m = x.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
        out[..., s:e, :] = np.exp(x - lse) @ v[..., lo:hi, :]
    return out


# ============================================================================ linear_attention
linear = Exercise("efficient.linear_attention", points=3, reference=ref.linear_attention,
                  demo=lambda rng: ((np.array([[1.0, -1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]),
                                     np.array([[1.0, 2.0], [3.0, 4.0]])), {}))


def _linear_atol(q, k, v):
    _, table_atol = tolerance(q.dtype)
    eps = EPS.get(np.dtype(q.dtype).name, 0.0)
    return table_atol + 4 * (q.shape[-1] + k.shape[-2]) * eps * float(np.abs(np.asarray(v, np.float64)).max())


def _check_linear(t, q, k, v, causal=None, what=None):
    kwargs = {} if causal is None else {"causal": causal}
    got = t.call(q, k, v, **kwargs)
    t.expect(got, ref.linear_attention(q, k, v, bool(causal)), what=what or "output (..., L, D_v)",
             atol=_linear_atol(q, k, v))
    return got


@linear.case("float64 (2, 3): L=5, S=7, D=4, D_v=6", "non-causal, every dimension distinct, against the quadratic "
             "form phi(Q) phi(K)^T normalised")
def _(t):
    _check_linear(t, *qkv(t.rng))


@linear.case("causal (2,): L=S=9", "causal by prefix sums: query i sums over keys j <= i")
def _(t):
    _check_linear(t, *qkv(t.rng, lead=(2,), L=9, S=9, D=3, D_v=5), causal=True)


@linear.case("causal, L=4 < S=9", "end-aligned: the last query sees every key, query i sees j <= i + S - L")
def _(t):
    _check_linear(t, *qkv(t.rng, lead=(2,), L=4, S=9), causal=True)


@linear.case("causal, L=6 > S=4", "the first L - S queries see no key: a zero output, never NaN")
def _(t):
    _check_linear(t, *qkv(t.rng, lead=(2,), L=6, S=4, D=5, D_v=3), causal=True)


@linear.case("float32 (3,): L=S=12, both modes", "float32 inputs give a float32 output")
def _(t):
    q, k, v = qkv(t.rng, lead=(3,), L=12, S=12, D=6, D_v=4, dtype="float32")
    _check_linear(t, q, k, v, causal=False, what="causal=False: output")
    _check_linear(t, q, k, v, causal=True, what="causal=True: output")


@linear.case("inputs far from 0: 4 x N(0, 1)", "large positive and negative inputs: elu(x) + 1 is x + 1 above 0 and "
             "exp(x) below, never negative, never overflowing")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=5, S=8)
    _check_linear(t, 4.0 * q, 4.0 * k, v, causal=False, what="causal=False: output")
    _check_linear(t, 4.0 * q, 4.0 * k, v, causal=True, what="causal=True: output")


@linear.case("no batch dims (6, 4), (10, 4), (10, 2)", "plain 2-D inputs, L != S")
def _(t):
    _check_linear(t, *qkv(t.rng, lead=(), L=6, S=10, D=4, D_v=2))


@linear.case("causal: the future does not leak", "with causal=True, changing keys and values after position 4 "
             "leaves the outputs of queries 0-4 unchanged (metamorphic)")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=8, S=8, D=3, D_v=4)
    first = _check_linear(t, q, k, v, causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[..., 5:, :] += 3.0
    v2[..., 5:, :] -= 3.0
    second = t.call(q, k2, v2, causal=True)
    t.expect(second[..., :5, :], np.asarray(first)[..., :5, :], what="outputs of queries 0-4 after changing keys 5-7",
             atol=_linear_atol(q, k, v), hint="query i must sum over keys j <= i only: prefix sums, not totals")


def _linear(q, k, v, causal=False, *, phi=None, normalise=True, future=False, exclusive=False,
            causal_denominator=True, start_aligned=False, scale=1.0, guard=True, dtype=None):
    """Linear attention in its quadratic form, with one deliberate difference (the mutants below pick which)."""
    phi = phi or (lambda x: np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0))))
    L, S = q.shape[-2], k.shape[-2]
    A = phi(np.asarray(q, np.float64) * scale) @ np.swapaxes(phi(np.asarray(k, np.float64) * scale), -1, -2)
    offset = np.arange(S)[None, :] - np.arange(L)[:, None]
    if causal and not future:
        limit = 0 if start_aligned else S - L
        keep = offset < limit if exclusive else offset <= limit
    else:
        keep = np.ones((L, S), bool)
    numerator = np.where(keep, A, 0.0) @ np.asarray(v, np.float64)
    denominator = np.where(keep if causal_denominator else True, A, 0.0).sum(axis=-1, keepdims=True)
    if not normalise:
        out = numerator
    elif guard:
        out = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
    else:
        out = numerator / denominator
    return out.astype(dtype or q.dtype)


@linear.mutant("relu feature map", "phi(x) = elu(x) + 1 (x + 1 above 0, exp(x) below): relu(x) is zero for every "
               "negative input, so features vanish and rows can divide 0 by 0")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, phi=lambda x: np.maximum(x, 0.0), guard=False)


@linear.mutant("elu without the + 1", "add 1 to elu(x): elu(x) alone is negative below 0, so phi(q) . phi(k) can be "
               "negative or cancel, and the normaliser can vanish")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, phi=lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))), guard=False)


@linear.mutant("exp feature map", "phi(x) = elu(x) + 1, not exp(x): exp grows without bound above 0, where elu(x) + 1 "
               "grows like x + 1")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, phi=np.exp)


@linear.mutant("softmax attention instead", "linear attention replaces exp(q . k / sqrt(D)) by phi(q) . phi(k) with "
               "phi(x) = elu(x) + 1 applied to each feature; it is not softmax attention")
def _(q, k, v, causal=False):
    L, S = q.shape[-2], k.shape[-2]
    scores = np.asarray(q, np.float64) @ np.swapaxes(np.asarray(k, np.float64), -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        scores = np.where(np.arange(S)[None, :] <= np.arange(L)[:, None] + S - L, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0) @ np.asarray(v, np.float64)


@linear.mutant("no normaliser", "divide by the normaliser phi(q_i) . sum_j phi(k_j): without it the output is a sum, "
               "not a weighted average, of the values")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, normalise=False)


@linear.mutant("1/sqrt(D) scale applied", "linear attention as defined here has no 1/sqrt(D) scale: apply phi to q "
               "and k as they are")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, scale=q.shape[-1] ** -0.25)


@linear.mutant("causal sums include the future", "with causal=True query i sums only over keys j <= i + S - L: "
               "prefix sums (np.cumsum over the key axis), not the totals over every key")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, future=True)


@linear.mutant("causal prefix excludes the current key", "the prefix of query i includes key i itself (an inclusive "
               "cumsum): sums over j <= i, not j < i")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, exclusive=True)


@linear.mutant("causal numerator, total normaliser", "in the causal form the normaliser is a prefix sum too: "
               "phi(q_i) . sum_{j <= i} phi(k_j), the same keys as the numerator")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, causal_denominator=False)


@linear.mutant("causal start-aligned", "align the causal rule to the end: query i reads the prefix up to key i + (S - "
               "L), so the last query sees every key when L < S")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, start_aligned=True)


@linear.mutant("NaN for queries that see nothing", "a query that sees no key (L > S, causal) gets a zero output: "
               "guard the division where the normaliser is 0")
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, guard=False)


@linear.mutant("float64 output", DTYPE_HINT)
def _(q, k, v, causal=False):
    return _linear(q, k, v, causal, dtype=np.float64)


@linear.alternative("recurrent form: a state (D, D_v) updated key by key")
def _(q, k, v, causal=False):
    def phi(x):
        return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))

    L, S = q.shape[-2], k.shape[-2]
    pq, pk = phi(q.astype(np.float64)), phi(k.astype(np.float64))
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    out = np.zeros(lead + (L, v.shape[-1]))
    if not causal:
        state = np.einsum("...sd,...sv->...dv", pk, v)
        z = pk.sum(axis=-2)
        return (np.einsum("...ld,...dv->...lv", pq, state) / np.einsum("...ld,...d->...l", pq, z)[..., None]
                ).astype(q.dtype)
    state = np.zeros(lead + (q.shape[-1], v.shape[-1]))
    z = np.zeros(lead + (q.shape[-1],))
    for j in range(S):
        state = state + pk[..., j, :, None] * v[..., j, None, :]
        z = z + pk[..., j, :]
        i = j - (S - L)  # the query whose last visible key is j
        if 0 <= i < L:
            out[..., i, :] = np.einsum("...d,...dv->...v", pq[..., i, :], state) / np.einsum(
                "...d,...d->...", pq[..., i, :], z)[..., None]
    return out.astype(q.dtype)


@linear.alternative("masked quadratic form in the input dtype")
def _(q, k, v, causal=False):
    def phi(x):
        return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0))).astype(x.dtype)

    L, S = q.shape[-2], k.shape[-2]
    A = phi(q) @ np.swapaxes(phi(k), -1, -2)  # (..., L, S)
    if causal:
        A = A * np.tri(L, S, S - L, dtype=q.dtype)
    den = A.sum(axis=-1, keepdims=True)
    return np.divide(A @ v, den, out=np.zeros(A.shape[:-1] + (v.shape[-1],), dtype=q.dtype), where=den > 0)


@linear.alternative("cumsum of outer products, elu through expm1")
def _(q, k, v, causal=False):
    def phi(x):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0))) + 1

    L, S = q.shape[-2], k.shape[-2]
    pq, pk = phi(q), phi(k)
    if not causal:
        kv, z = np.swapaxes(pk, -1, -2) @ v, pk.sum(axis=-2, keepdims=True)
        return ((pq @ kv) / (pq * z).sum(axis=-1, keepdims=True)).astype(q.dtype)
    kv = np.cumsum(np.einsum("...sd,...sv->...sdv", pk, v), axis=-3)
    z = np.cumsum(pk, axis=-2)
    pad = max(0, L - S)  # queries with nothing to see come first
    idx = np.arange(S - L + pad, S)
    num = np.einsum("...ld,...ldv->...lv", pq[..., pad:, :], kv[..., idx, :, :])
    den = np.einsum("...ld,...ld->...l", pq[..., pad:, :], z[..., idx, :])[..., None]
    out = np.zeros(num.shape[:-2] + (L, v.shape[-1]), dtype=q.dtype)
    out[..., pad:, :] = num / den
    return out


# ============================================================================ random_feature_attention
features = Exercise("efficient.random_feature_attention", points=3, reference=ref.random_feature_attention,
                    demo=None)  # a random output has no literal visible check

DRAW_HINT = ("use the generator exactly as the docstring says: one draw W = rng.standard_normal((num_features, D)) "
             "before anything else, shared by queries and keys")


def _rf_atol(q, k, v, m, W):
    """The table's atol plus 4 (M + m + S) eps max |v|, M the largest |exponent| (see the module docstring)."""
    _, table_atol = tolerance(q.dtype)
    eps = EPS.get(np.dtype(q.dtype).name, 0.0)
    D = q.shape[-1]
    magnitude = 0.0
    for x in (q, k):
        x = np.asarray(x, np.float64) * D ** -0.25
        exponent = np.abs(x @ W.T) + 0.5 * np.sum(x * x, axis=-1, keepdims=True)
        magnitude = max(magnitude, float(exponent.max()))
    return table_atol + 4 * (magnitude + m + k.shape[-2]) * eps * float(np.abs(np.asarray(v, np.float64)).max())


def _check_rf(t, q, k, v, m, what=None):
    (seed,) = _seeds(t.rng)
    got = t.call(q, k, v, m, np.random.default_rng(seed))
    want = ref.random_feature_attention(q, k, v, m, np.random.default_rng(seed))
    W = np.random.default_rng(seed).standard_normal((m, q.shape[-1]))
    t.expect(got, want, what=what or f"output (..., L, D_v), the same draw W ({m}, {q.shape[-1]})",
             atol=_rf_atol(q, k, v, m, W))


@features.case("float64 (2, 3): L=5, S=7, D=4, D_v=6, m=16", "with the same generator state, exactly the "
               "estimate of the docstring's features (every dimension distinct)")
def _(t):
    _check_rf(t, *qkv(t.rng), 16)


@features.case("no batch dims: L=6, S=9, D=8, D_v=3, m=64", "2-D inputs, more features than keys")
def _(t):
    _check_rf(t, *qkv(t.rng, lead=(), L=6, S=9, D=8, D_v=3), 64)


@features.case("float32 (3,): L=7, S=5, D=6, D_v=2, m=32", "float32 inputs give a float32 output")
def _(t):
    _check_rf(t, *qkv(t.rng, lead=(3,), L=7, S=5, D=6, D_v=2, dtype="float32"), 32)


@features.case("keys of very different norms: (2,) L=4, S=8, m=24", "keys scaled from 0.2 to 2.5: the exp(-|k'|^2 / "
               "2) factor of each key matters, and any stabilising shift must be one for all keys")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=4, S=8, D=5, D_v=3)
    k = k * np.linspace(0.2, 2.5, 8)[:, None]
    _check_rf(t, q, k, v, 24)


RF_GLOBAL_HINT = ("draw W from the rng argument (rng.standard_normal), not from np.random's global state: the same "
                  "generator state must give the same output (the grader replays your generator to know your features)")
RF_FIXED_HINT = ("draw W from the rng argument you are given: a generator seeded inside the function "
                 "(np.random.default_rng(0)) gives every call the same features")


@features.case("replay (2,): L=5, S=6, D=3, D_v=4, m=8", "rng is the only randomness: the same generator state gives "
               "the same output, two states give two different outputs")
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=5, S=6, D=3, D_v=4)
    s1, s2 = _seeds(t.rng, 2)
    first = t.call(q, k, v, 8, np.random.default_rng(s1))
    if type(first) is not np.ndarray or first.shape != (2, 5, 4):
        t.fail(f"expected a numpy.ndarray (2, 5, 4), got {describe_type(first)}")
    again = t.call(q, k, v, 8, np.random.default_rng(s1))
    if type(again) is not np.ndarray or again.shape != first.shape or not np.array_equal(again, first):
        _fail(t, f"a second call with the same generator state (np.random.default_rng({s1})) gave a different "
              "output", RF_GLOBAL_HINT)
    other = t.call(q, k, v, 8, np.random.default_rng(s2))
    if type(other) is np.ndarray and np.array_equal(other, first):
        _fail(t, f"two different generator states (np.random.default_rng({s1}) and ({s2})) gave exactly the same "
              "output", RF_FIXED_HINT)


@features.case("approximation: error falls with num_features", "over 6 draws each, the mean error against exact "
               "softmax attention with 4096 features is under half the error with 16 features, and under 0.1",
               weight=2.0)
def _(t):
    q, k, v = qkv(t.rng, lead=(2,), L=6, S=9, D=4, D_v=5)
    q, k = 0.7 * q, 0.7 * k
    exact = ref.softmax_attention(q, k, v)
    errors = {}
    for m in (16, 4096):
        runs = []
        for seed in _seeds(t.rng, 6):
            out = t.call(q, k, v, m, np.random.default_rng(seed))
            if type(out) is not np.ndarray or out.shape != exact.shape:
                t.fail(f"num_features={m}: expected a numpy.ndarray {exact.shape}, got {describe_type(out)}")
            runs.append(float(np.mean(np.abs(out.astype(np.float64) - exact))))
        errors[m] = float(np.mean(runs))
    detail = (f"mean |output - softmax attention| is {errors[16]:.4f} with 16 features and {errors[4096]:.4f} with "
              f"4096, expected the second under half the first and under 0.1")
    t.require(errors[4096] < 0.5 * errors[16] and errors[4096] < 0.1, detail)


def _rf(q, k, v, num_features, rng, *, norm_factor=True, scale_q=0.25, scale_k=0.25, draw="rows", two_draws=False,
        normalise=True, trig=False, key_shift=False, source=None, dtype=None):
    """Random-feature attention with one deliberate difference (the mutants below pick which)."""
    D = q.shape[-1]
    gen = source(rng) if source else rng
    W = gen.standard_normal((num_features, D)) if draw == "rows" else gen.standard_normal((D, num_features)).T
    W_k = gen.standard_normal((num_features, D)) if two_draws else W
    qs = np.asarray(q, np.float64) * D ** -scale_q
    ks = np.asarray(k, np.float64) * D ** -scale_k

    def features(x, W):
        half = 0.5 * np.sum(x * x, axis=-1, keepdims=True) if norm_factor else 0.0
        if trig:
            proj = x @ W.T
            return np.concatenate([np.cos(proj), np.sin(proj)], axis=-1) * np.exp(half)
        return np.exp(x @ W.T - half)

    pq, pk = features(qs, W), features(ks, W_k)
    if key_shift:  # a different shift per key: does not cancel
        log_k = np.log(pk)
        pk = np.exp(log_k - log_k.max(axis=-1, keepdims=True))
    numerator = pq @ (np.swapaxes(pk, -1, -2) @ np.asarray(v, np.float64))
    out = numerator / (pq @ pk.sum(axis=-2)[..., :, None]) if normalise else numerator
    return out.astype(dtype or q.dtype)


@features.mutant("no exp(-|x|^2 / 2) factor", "multiply each feature by exp(-|x'|^2 / 2): without it a key's "
                 "weight carries an extra exp(|k'|^2 / 2) and the estimate is no longer of exp(q . k / sqrt(D))")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, norm_factor=False)


@features.mutant("q and k not scaled", "scale queries and keys by D^(-1/4) each before the features, so that q' . k' "
                 "= q . k / sqrt(D)")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, scale_q=0.0, scale_k=0.0)


@features.mutant("D^(-1/2) on q only", "the docstring's features scale both q and k by D^(-1/4): putting the whole "
                 "1/sqrt(D) on q gives another (valid but different) estimator, not this one")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, scale_q=0.5, scale_k=0.0)


@features.mutant("W drawn as (D, num_features)", DRAW_HINT)
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, draw="columns")


@features.mutant("separate draws for queries and keys", "queries and keys share one W: with independent draws "
                 "E[phi(q) . phi(k)] = 1 whatever q and k, so the estimate is no longer of the softmax kernel")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, two_draws=True)


@features.mutant("no normaliser", "divide by phi(q_i) . sum_j phi(k_j): the estimate of the softmax denominator")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, normalise=False)


@features.mutant("trigonometric features", "use positive features exp(w . x' - |x'|^2 / 2), not sin/cos ones: "
                 "trigonometric estimates can be negative and blow up where the true kernel is small (FAVOR+'s point)")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, trig=True)


@features.mutant("shift per key", "a stabilising shift must be the same for all keys (e.g. the max over every key and "
                 "feature): a shift per key changes each key's weight")
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, key_shift=True)


@features.mutant("np.random global state", RF_GLOBAL_HINT)
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, source=lambda rng: np.random)


@features.mutant("generator with a fixed seed", RF_FIXED_HINT)
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, source=lambda rng: np.random.default_rng(0))


@features.mutant("float64 output", DTYPE_HINT)
def _(q, k, v, num_features, rng):
    return _rf(q, k, v, num_features, rng, dtype=np.float64)


@features.alternative("the (L, S) kernel estimate made explicit, with 1/sqrt(m)")
def _(q, k, v, num_features, rng):
    D = q.shape[-1]
    W = rng.standard_normal((num_features, D))

    def phi(x):
        x = x.astype(np.float64) / D ** 0.25
        return np.exp(x @ W.T - (x ** 2).sum(-1, keepdims=True) / 2) / np.sqrt(num_features)

    A = phi(q) @ np.swapaxes(phi(k), -1, -2)  # (..., L, S)
    return ((A / A.sum(-1, keepdims=True)) @ v).astype(q.dtype)


@features.alternative("features in the input dtype, no shifts")
def _(q, k, v, num_features, rng):
    W = rng.standard_normal((num_features, q.shape[-1])).astype(q.dtype)
    c = q.dtype.type(q.shape[-1] ** -0.25)
    qs, ks = q * c, k * c
    pq = np.exp(qs @ W.T - 0.5 * (qs * qs).sum(-1, keepdims=True))
    pk = np.exp(ks @ W.T - 0.5 * (ks * ks).sum(-1, keepdims=True))
    return (pq @ (np.swapaxes(pk, -1, -2) @ v)) / (pq @ pk.sum(-2)[..., None])


@features.alternative("log-domain features with a log-sum-exp normaliser")
def _(q, k, v, num_features, rng):
    W = rng.standard_normal((num_features, q.shape[-1]))
    D = q.shape[-1]
    lq = (q / D ** 0.25) @ W.T - 0.5 * np.sum((q / D ** 0.25) ** 2, -1, keepdims=True)  # (..., L, m)
    lk = (k / D ** 0.25) @ W.T - 0.5 * np.sum((k / D ** 0.25) ** 2, -1, keepdims=True)  # (..., S, m)
    scores = lq[..., :, None, :] + lk[..., None, :, :]  # (..., L, S, m) log of each product term
    m = scores.max(axis=(-2, -1), keepdims=True)
    log_kernel = np.log(np.exp(scores - m).sum(-1)) + m[..., 0]  # (..., L, S)
    w = np.exp(log_kernel - log_kernel.max(-1, keepdims=True))
    return ((w / w.sum(-1, keepdims=True)) @ v).astype(q.dtype)


EXERCISES = [window_mask, strided, bigbird, local, linear, features]
