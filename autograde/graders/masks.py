"""Grader for attnlab.masks (notebook 02): causal_mask, padding_mask."""
import numpy as np

from ..framework import Exercise
from ..references import masks as ref

BOOL_HINT = "return a boolean array (dtype bool): True = may attend"
VALIDATE_HINT = "raise ValueError for lengths outside [0, max_len]"
FLOAT_MASK_HINT = ("return a boolean mask (dtype bool), not float 0/1: np.where(mask, scores, -np.inf) and ~mask "
                   "need booleans (~ on floats raises, and scores * mask or scores + mask do not mask); a comparison "
                   "such as {example} is already boolean")

causal_mask = Exercise("masks.causal_mask", points=1, reference=ref.causal_mask,
                       demo=lambda rng: ((3, 5), {}))


@causal_mask.case("L=S=5", "self-attention: the lower triangle, diagonal included")
def _(t):
    t.expect(t.call(5, 5), ref.causal_mask(5, 5))


@causal_mask.case("S omitted, L=4", "S defaults to L")
def _(t):
    t.expect(t.call(4), ref.causal_mask(4))


@causal_mask.case("L=3, S=7", "fewer queries than keys: aligned to the end, the last query sees every key")
def _(t):
    t.expect(t.call(3, 7), ref.causal_mask(3, 7))


@causal_mask.case("L=6, S=2", "more queries than keys: the first L - S queries see nothing")
def _(t):
    t.expect(t.call(6, 2), ref.causal_mask(6, 2))


@causal_mask.mutant("start-aligned", "align to the end: query i sees key j when j <= i + (S - L) "
                    "(PyTorch's is_causal=True aligns to the start instead)")
def _(L, S=None):
    S = L if S is None else S
    return np.tril(np.ones((L, S), dtype=bool))


@causal_mask.mutant("diagonal excluded", "a query may attend to its own position: keep the diagonal (<=, not <)")
def _(L, S=None):
    S = L if S is None else S
    return np.arange(S)[None, :] < np.arange(L)[:, None] + (S - L)


@causal_mask.mutant("future instead of past", "True means may attend: keep the past (lower triangle), not the future")
def _(L, S=None):
    return ~ref.causal_mask(L, S)


@causal_mask.mutant("int mask", BOOL_HINT)
def _(L, S=None):
    return ref.causal_mask(L, S).astype(np.int64)


@causal_mask.mutant("float 0/1 mask", FLOAT_MASK_HINT.format(example="`key_pos <= query_pos + (S - L)`"))
def _(L, S=None):
    S = L if S is None else S
    return np.tril(np.ones((L, S)), k=S - L)  # float64 ones and zeros


padding_mask = Exercise("masks.padding_mask", points=1, reference=ref.padding_mask,
                        demo=lambda rng: ((np.array([2, 4, 0]), 4), {}))


@padding_mask.case("lengths [3, 7, 0, 5], max_len 7", "True at j < length, including empty and full sequences")
def _(t):
    lengths = np.array([3, 7, 0, 5])
    t.expect(t.call(lengths, 7), ref.padding_mask(lengths, 7))


@padding_mask.case("B=1, max_len 9", "a single sequence gives shape (1, max_len)")
def _(t):
    lengths = np.array([4])
    t.expect(t.call(lengths, 9), ref.padding_mask(lengths, 9))


@padding_mask.case("length > max_len", "a length above max_len raises ValueError")
def _(t):
    t.raises("ValueError", np.array([2, 8]), 5, hint=VALIDATE_HINT)


@padding_mask.case("negative length", "a negative length raises ValueError")
def _(t):
    t.raises("ValueError", np.array([-1, 3]), 5, hint=VALIDATE_HINT)


def _validated(lengths, max_len):
    """The lengths as an array, checked as the exercise asks: each mutant below makes one mistake only."""
    lengths = np.asarray(lengths)
    if np.any(lengths < 0) or np.any(lengths > max_len):
        raise ValueError("lengths out of range")
    return lengths


@padding_mask.mutant("off by one", "positions j < length are valid (0-based): use <, not <=")
def _(lengths, max_len):
    return np.arange(max_len)[None, :] <= _validated(lengths, max_len)[:, None]


@padding_mask.mutant("marks padding", "True marks the valid positions (may attend), not the padding")
def _(lengths, max_len):
    return np.arange(max_len)[None, :] >= _validated(lengths, max_len)[:, None]


@padding_mask.mutant("(max_len, B) layout", "the mask is (B, max_len): one row per sequence")
def _(lengths, max_len):
    return (np.arange(max_len)[None, :] < _validated(lengths, max_len)[:, None]).T


@padding_mask.mutant("float 0/1 mask", FLOAT_MASK_HINT.format(example="`np.arange(max_len)[None, :] < "
                                                                     "lengths[:, None]`"))
def _(lengths, max_len):
    return ref.padding_mask(lengths, max_len).astype(float)  # float64 ones and zeros


@padding_mask.mutant("no validation", VALIDATE_HINT)
def _(lengths, max_len):
    return np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]


@causal_mask.alternative("np.tri with an offset")
def _(L, S=None):
    S = L if S is None else S
    return np.tri(L, S, k=S - L, dtype=bool)


@causal_mask.alternative("loops over queries and keys")
def _(L, S=None):
    S = L if S is None else S
    out = np.zeros((L, S), dtype=bool)
    for i in range(L):
        for j in range(S):
            out[i, j] = j - (S - L) <= i
    return out


@padding_mask.alternative("a row per sequence, validated first")
def _(lengths, max_len):
    lengths = [int(n) for n in np.asarray(lengths)]
    if any(n < 0 or n > max_len for n in lengths):
        raise ValueError("a length is outside [0, max_len]")
    return np.array([[j < n for j in range(max_len)] for n in lengths], dtype=bool).reshape(len(lengths), max_len)


@padding_mask.alternative("np.less.outer")
def _(lengths, max_len):
    lengths = np.asarray(lengths)
    if lengths.size and (lengths.min() < 0 or lengths.max() > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}]")
    return np.greater.outer(lengths, np.arange(max_len))


EXERCISES = [causal_mask, padding_mask]
