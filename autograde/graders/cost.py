"""Grader for attnlab.cost (notebook 06): attention_flops, attention_memory_bytes, kv_cache_bytes.

Oracles (autograde/references/cost.py, independent of the solution): visible pairs summed query row by
query row from the mask's definition, tensors listed with their shapes and multiplied out with math.prod,
bytes per element from a table of names. All counts are exact Python ints, so results are compared
exactly (no tolerance): a count is right or it is not.

What is required of a returned count (the docstrings say so): a Python int equal to the oracle. A float
fails even when its value is right (``/`` instead of ``//``: floats lose exactness past 2**53, and these
counts reach 10**20); so does a NumPy integer, which wraps around silently past 2**63 - 1 (the "big
sizes" cases show it happen). Because a NumPy scalar crosses the wire as a (1,) array (wire.py encodes it
through np.ascontiguousarray, which makes 0-d arrays 1-d), a returned np.int64 is reported as
"numpy.ndarray (1,) int64"; the hint names NumPy integers.

Dtypes cross the judge-worker wire as names ("float16", "bfloat16", "float32", "float64") and as ints (an
itemsize); a ``np.dtype`` object cannot cross the wire, so tests/test_cost_exercise.py checks that form
(and np.float16, torch dtypes) on the solution and the reference directly.
"""
import math

import numpy as np

from ..compare import describe_type
from ..framework import Exercise
from ..references import cost as ref

NEGATIVE_HINT = ("raise ValueError when a size is negative (the docstring asks for it): a negative length is a "
                 "bug upstream, not something to count")
INT_HINT = ("return an exact Python int: use // rather than / (L * (L + 1) / 2 is a float in Python 3), and "
            "Python ints rather than NumPy integers (np.prod, np.int64); int(...) converts a small one")
OVERFLOW_HINT = ("multiply Python ints, not np.int64: products of real model sizes pass 2**63 - 1 and NumPy "
                 "integers wrap around silently")
BF16_HINT = ("bfloat16 takes 2 bytes per element (1 sign, 8 exponent and 7 mantissa bits); NumPy has no "
             "bfloat16, so handle the name yourself instead of falling back to float32")
ITEMSIZE_HINT = "multiply the element count by the bytes per element (np.dtype(dtype).itemsize); you counted elements"
BITS_HINT = "itemsize is in bytes (float32: 4), not bits (32): do not multiply by 8"


def _check_count(t, got, want, what, hint=None):
    """A count must be a Python int equal to the oracle's; otherwise fail, naming the mistake if we can."""
    if type(got) is not int:
        t.fail(f"{what}: expected the Python int {want}, got {describe_type(got)} {got!r}", t.diagnose() or INT_HINT)
    if got != want:
        ratio = f" ({got / want:.6g} times the expected count)" if want else ""
        t.fail(f"{what}: expected {want}, got {got}{ratio}", hint or t.diagnose())


def _distinct(rng, n, low, high):
    """n distinct ints in [low, high), in random order."""
    return [int(x) for x in rng.choice(np.arange(low, high), size=n, replace=False)]


# Sizes big enough to overflow int64 once multiplied (with and without the causal mask).
BIG = dict(B=2 ** 12, H=2 ** 10, L=3000, S=4096, D=2 ** 17, D_v=2 ** 15)
BIG_MEMORY = dict(B=2 ** 20, H=2 ** 10, L=2 ** 16, S=3 * 2 ** 15, D=128, D_v=96)  # B*H*L*S*2 bytes > 2**63

# ================================================================================ attention_flops
flops = Exercise("cost.attention_flops", points=2, reference=ref.attention_flops,
                 demo=lambda rng: ((2, 3, 5, 7, 4, 6), {"causal": True}))


def _flops_case(t, B, H, L, S, D, D_v, causal, what):
    kwargs = {"causal": True} if causal else {}
    _check_count(t, t.call(B, H, L, S, D, D_v, **kwargs), ref.attention_flops(B, H, L, S, D, D_v, causal), what)


@flops.case("(2, 3, 5, 7, 4, 6)", "2 FLOPs per multiply-add over all L * S pairs, for the scores (D) and the "
            "output (D_v)")
def _(t):
    _flops_case(t, 2, 3, 5, 7, 4, 6, False, "attention_flops(2, 3, 5, 7, 4, 6)")


@flops.case("random distinct sizes", "every size enters the count once (none swapped, none dropped)")
def _(t):
    B, H, L, S, D, D_v = _distinct(t.rng, 6, 2, 40)
    _flops_case(t, B, H, L, S, D, D_v, False, f"attention_flops{(B, H, L, S, D, D_v)}")


@flops.case("causal, L < S", "causal counts only the visible pairs, end-aligned: query i sees keys j <= i + S - L, "
            "so L * (S - L) + L * (L + 1) / 2 pairs")
def _(t):
    L = int(t.rng.integers(3, 9))
    S = L + int(t.rng.integers(2, 9))
    _flops_case(t, 2, 3, L, S, 4, 6, True, f"attention_flops(2, 3, {L}, {S}, 4, 6, causal=True)")


@flops.case("causal, L == S", "causal self-attention: L * (L + 1) / 2 pairs, the diagonal included")
def _(t):
    L = int(t.rng.integers(5, 30))
    _flops_case(t, 3, 2, L, L, 5, 7, True, f"attention_flops(3, 2, {L}, {L}, 5, 7, causal=True)")


@flops.case("causal, L > S", "with more queries than keys, the first L - S queries see no key at all (they add "
            "nothing), the others S * (S + 1) / 2 pairs")
def _(t):
    S = int(t.rng.integers(3, 7))
    L = S + int(t.rng.integers(4, 9))
    _flops_case(t, 2, 3, L, S, 4, 6, True, f"attention_flops(2, 3, {L}, {S}, 4, 6, causal=True)")


@flops.case("causal, L = 1", "one new query (decoding) sees the whole cache: S pairs, as without the mask")
def _(t):
    S = int(t.rng.integers(9, 40))
    _flops_case(t, 3, 2, 1, S, 8, 5, True, f"attention_flops(3, 2, 1, {S}, 8, 5, causal=True)")


@flops.case("big sizes", "counts past 2**63 stay exact (Python ints), with and without the mask")
def _(t):
    for causal in (False, True):
        _flops_case(t, *BIG.values(), causal, f"attention_flops(**{BIG}, causal={causal})")


@flops.case("zero sizes", "an empty problem (L = 0 or D_v = 0) costs 0, or only the scores", weight=0.5)
def _(t):
    _flops_case(t, 2, 3, 0, 7, 4, 6, True, "attention_flops(2, 3, 0, 7, 4, 6, causal=True)")
    _flops_case(t, 2, 3, 5, 7, 4, 0, False, "attention_flops(2, 3, 5, 7, 4, 0)")


@flops.case("negative size", "a negative size raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 2, 3, -5, 7, 4, 6, hint=NEGATIVE_HINT)


def _pairs(L, S, causal, alignment="end", strict=False, clip=True):
    if not causal:
        return L * S
    if alignment == "half":
        return L * S // 2
    if not clip:  # the L <= S closed form used everywhere
        return L * (S - L) + L * (L + 1) // 2
    offset = S - L if alignment == "end" else 0
    return sum(max(0, min(S, i + offset + (0 if strict else 1))) for i in range(L))


def _mutant_flops(B, H, L, S, D, D_v, causal=False, per_mac=2, value_width=None, extra_softmax=0, validate=True,
                  heads=True, **pairs_kwargs):
    if validate and min(B, H, L, S, D, D_v) < 0:
        raise ValueError("sizes must be >= 0")
    value_width = D_v if value_width is None else value_width(D, D_v)
    pairs = _pairs(L, S, causal, **pairs_kwargs)
    return per_mac * (B * H if heads else 1) * pairs * (D + value_width) + extra_softmax * B * H * pairs


@flops.mutant("1 FLOP per multiply-add", "count a multiply-add as 2 FLOPs (a multiply and an add), as PyTorch's "
              "flop counter does; yours is half the count")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, per_mac=1)


@flops.mutant("forgot weights @ V", "count both matrix products: Q K^T (D per pair) and weights @ V (D_v per pair)")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, value_width=lambda D, D_v: 0)


@flops.mutant("D for D_v", "weights @ V costs D_v multiply-adds per pair (the value width), not D")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, value_width=lambda D, D_v: D)


@flops.mutant("softmax counted", "count the two matrix products only (Notes): the softmax's max, exp, sum and "
              "divide are left out of this count")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, extra_softmax=5)


@flops.mutant("per (batch, head)", "multiply by B * H: every (batch, head) pair is a separate attention problem")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, heads=False)


@flops.mutant("causal as half of L * S", "causal does not save exactly half: count the visible pairs, "
              "L * (S - L) + L * (L + 1) / 2 for L <= S (the diagonal is visible, and with S > L every query "
              "also sees the S - L earlier keys)")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, alignment="half")


@flops.mutant("causal start-aligned", "the causal mask is aligned to the end: query i sees keys j <= i + (S - L), "
              "not j <= i (that is PyTorch's is_causal=True, aligned to the start)")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, alignment="start")


@flops.mutant("diagonal hidden", "query i also sees the key at its own position, j = i + (S - L): "
              "L * (L + 1) / 2 pairs when L == S, not L * (L - 1) / 2")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, strict=True)


@flops.mutant("L > S not clipped", "when L > S the first L - S queries see no key: clip each row's count at 0 (the "
              "closed form for L <= S goes wrong, even negative, when L > S)")
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, clip=False)


@flops.mutant("true division", INT_HINT)
def _(B, H, L, S, D, D_v, causal=False):
    if not causal:
        return _mutant_flops(B, H, L, S, D, D_v)
    pairs = L * S if L == 0 else (min(L, S) * (S - min(L, S)) + min(L, S) * (min(L, S) + 1) / 2)
    return 2 * B * H * pairs * (D + D_v)


@flops.mutant("np.int64 arithmetic", OVERFLOW_HINT)
def _(B, H, L, S, D, D_v, causal=False):
    pairs = np.int64(_pairs(L, S, causal))
    return np.prod(np.array([2, B, H, pairs, D + D_v], dtype=np.int64))  # wraps past 2**63 - 1, silently


@flops.mutant("no validation", NEGATIVE_HINT)
def _(B, H, L, S, D, D_v, causal=False):
    return _mutant_flops(B, H, L, S, D, D_v, causal, validate=False)


@flops.alternative("a loop over query rows")
def _(B, H, L, S, D, D_v, causal=False):
    if min(B, H, L, S, D, D_v) < 0:
        raise ValueError("negative size")
    pairs = 0
    for i in range(L):
        first_hidden = i + S - L + 1 if causal else S  # keys j < first_hidden are visible
        pairs += min(S, max(0, first_hidden))
    return 2 * B * H * pairs * D + 2 * B * H * pairs * D_v


@flops.alternative("count the mask with NumPy, multiply in Python")
def _(B, H, L, S, D, D_v, causal=False):
    if min(B, H, L, S, D, D_v) < 0:
        raise ValueError("negative size")
    visible = np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L) if causal else np.ones((L, S), bool)
    pairs = int(np.count_nonzero(visible))
    return math.prod([2, B, H, pairs, D + D_v])


@flops.alternative("full square minus the hidden triangle")
def _(B, H, L, S, D, D_v, causal=False):
    if min(B, H, L, S, D, D_v) < 0:
        raise ValueError("negative size")
    pairs = L * S
    if causal:
        if L <= S:
            pairs -= L * (L - 1) // 2  # the strict upper triangle of the last L x L block
        else:
            pairs = S * (S + 1) // 2
    return 2 * B * H * (D + D_v) * pairs


# ========================================================================= attention_memory_bytes
memory = Exercise("cost.attention_memory_bytes", points=2, reference=ref.attention_memory_bytes,
                  demo=lambda rng: ((2, 3, 5, 7, 4, 6), {"dtype": "float16", "materialize": False}))


def _memory_case(t, args, dtype=None, materialize=None, hint=None):
    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if materialize is not None:
        kwargs["materialize"] = materialize
    shown = ", ".join([str(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    want = ref.attention_memory_bytes(*args, **kwargs)
    _check_count(t, t.call(*args, **kwargs), want, f"attention_memory_bytes({shown})", hint)


@memory.case("float32, materialized", "q, k, v, output and the (B, H, L, S) weights, 4 bytes each")
def _(t):
    _memory_case(t, (2, 3, 5, 7, 4, 6), "float32", True)


@memory.case("float32, not materialized", "without the weights: q, k, v, output and one float32 log-sum-exp per "
             "query row")
def _(t):
    _memory_case(t, (2, 3, 5, 7, 4, 6), "float32", False)


@memory.case("random distinct sizes, both modes", "every size enters once; L != S and D != D_v")
def _(t):
    sizes = tuple(_distinct(t.rng, 6, 2, 40))
    _memory_case(t, sizes, "float32", True)
    _memory_case(t, sizes, "float32", False)


@memory.case("float16", "2 bytes per element; the log-sum-exp stays float32 (4 bytes) for 16-bit inputs")
def _(t):
    _memory_case(t, (3, 2, 9, 4, 5, 7), "float16", True)
    _memory_case(t, (3, 2, 9, 4, 5, 7), "float16", False)


@memory.case("bfloat16 by name", "'bfloat16' (which NumPy lacks) is 2 bytes per element")
def _(t):
    _memory_case(t, (2, 3, 6, 11, 4, 6), "bfloat16", True)
    _memory_case(t, (2, 3, 6, 11, 4, 6), "bfloat16", False)


@memory.case("float64", "8 bytes per element, and a float64 log-sum-exp (max(itemsize, 4) bytes)")
def _(t):
    _memory_case(t, (2, 1, 7, 5, 3, 8), "float64", True)
    _memory_case(t, (2, 1, 7, 5, 3, 8), "float64", False)


@memory.case("itemsize as an int", "dtype=2 means 2 bytes per element", weight=0.5)
def _(t):
    _memory_case(t, (2, 3, 5, 7, 4, 6), 2, True)


@memory.case("defaults", "dtype defaults to float32 and materialize to True", weight=0.5)
def _(t):
    _memory_case(t, (2, 3, 5, 7, 4, 6))


@memory.case("big sizes", "byte counts past 2**63 stay exact (Python ints)")
def _(t):
    _memory_case(t, tuple(BIG_MEMORY.values()), "float64", True)
    _memory_case(t, tuple(BIG_MEMORY.values()), "bfloat16", True)
    _memory_case(t, tuple(BIG.values()), "bfloat16", False)


@memory.case("negative size", "a negative size raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 2, 3, 5, -7, 4, 6, hint=NEGATIVE_HINT)


def _size_of(dtype, bf16=2, unit=1):
    if type(dtype) is int:
        return dtype * unit
    name = str(dtype).replace("torch.", "")
    return (bf16 if name == "bfloat16" else np.dtype(name).itemsize) * unit


def _mutant_memory(B, H, L, S, D, D_v, dtype="float32", materialize=True, bf16=2, unit=1, heads=True, output=True,
                   value_width=None, copies=1, lse_bytes=lambda size: max(size, 4), ignore_flag=False,
                   validate=True, elements_only=False):
    if validate and min(B, H, L, S, D, D_v) < 0:
        raise ValueError("sizes must be >= 0")
    size = 1 if elements_only else _size_of(dtype, bf16, unit)
    D_v = D_v if value_width is None else value_width(D, D_v)
    lead = B * H if heads else H
    nbytes = lead * (L * D + S * D + S * D_v + (L * D_v if output else 0)) * size
    if materialize or ignore_flag:
        return nbytes + copies * lead * L * S * size
    return nbytes + lead * L * (1 if elements_only else lse_bytes(size))


@memory.mutant("bfloat16 as float32", BF16_HINT)
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, bf16=4)


@memory.mutant("elements, not bytes", ITEMSIZE_HINT)
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, elements_only=True)


@memory.mutant("bits, not bytes", BITS_HINT)
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, unit=8)


@memory.mutant("per head without B", "multiply by the batch size B too: each of the B sequences has its own q, k, "
               "v, output and weights")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, heads=False)


@memory.mutant("weights always counted", "with materialize=False the (L, S) weights are never stored: count one "
               "log-sum-exp per query row instead")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, ignore_flag=True)


@memory.mutant("scores and weights both counted", "count the (L, S) matrix once: naive attention turns the scores "
               "into weights in place (Notes)")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, copies=2)


@memory.mutant("forgot the output", "count the output (B, H, L, D_v) too: it is held alongside q, k and v")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, output=False)


@memory.mutant("D for D_v", "values and output have width D_v, queries and keys width D")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, value_width=lambda D, D_v: D)


@memory.mutant("log-sum-exp forgotten", "with materialize=False count the log-sum-exp (B, H, L) the backward pass "
               "needs")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, lse_bytes=lambda size: 0)


@memory.mutant("log-sum-exp in the input dtype", "the log-sum-exp is kept in the accumulation type, at least "
               "float32: 4 bytes per row for float16 and bfloat16 inputs, not 2")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, lse_bytes=lambda size: size)


@memory.mutant("log-sum-exp always float32", "the log-sum-exp takes max(itemsize, 4) bytes: 8 for float64 inputs")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, lse_bytes=lambda size: 4)


@memory.mutant("np.int64 arithmetic", OVERFLOW_HINT)
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    size = _size_of(dtype)
    per_head = L * D + S * D + S * D_v + L * D_v + (L * S if materialize else 0)
    with np.errstate(all="ignore"):  # int64 wraps around past 2**63 - 1, silently
        total = np.prod(np.array([B, H, per_head, size], dtype=np.int64))
        return total + (0 if materialize else np.prod(np.array([B, H, L, max(size, 4)], dtype=np.int64)))


@memory.mutant("no validation", NEGATIVE_HINT)
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    return _mutant_memory(B, H, L, S, D, D_v, dtype, materialize, validate=False)


def _alt_itemsize(dtype):
    if isinstance(dtype, int):
        return dtype
    if str(dtype).endswith("bfloat16"):
        return 2
    return np.empty(0, dtype=np.dtype(dtype)).itemsize


@memory.alternative("math.prod over a list of shapes")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    if any(n < 0 for n in (B, H, L, S, D, D_v)):
        raise ValueError("negative size")
    size = _alt_itemsize(dtype)
    shapes = [(B, H, L, D), (B, H, S, D), (B, H, S, D_v), (B, H, L, D_v)]
    total = sum(math.prod(s) for s in shapes) * size
    return total + (math.prod((B, H, L, S)) * size if materialize else math.prod((B, H, L)) * max(4, size))


@memory.alternative("bits of the dtype name, // 8")
def _(B, H, L, S, D, D_v, dtype="float32", materialize=True):
    if min(B, H, L, S, D, D_v) < 0:
        raise ValueError("negative size")
    size = dtype if isinstance(dtype, int) else int("".join(c for c in str(dtype) if c.isdigit())) // 8
    per_row = (D + D_v) * size  # one row of q and one of the output
    per_key = (D + D_v) * size  # one row of k and one of v
    held = L * per_row + S * per_key + (L * S * size if materialize else L * max(size, 4))
    return B * H * held


# ================================================================================ kv_cache_bytes
kv = Exercise("cost.kv_cache_bytes", points=1, reference=ref.kv_cache_bytes,
              demo=lambda rng: ((2, 3, 4, 7, 5, "bfloat16"), {}))


def _kv_case(t, args, kwargs=None, hint=None):
    kwargs = kwargs or {}
    shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    _check_count(t, t.call(*args, **kwargs), ref.kv_cache_bytes(*args, **kwargs), f"kv_cache_bytes({shown})", hint)


@kv.case("float32 (3, 5, 6, 7, 4)", "keys AND values of every layer: 2 * layers * B * H_kv * S * D * 4 bytes")
def _(t):
    _kv_case(t, (3, 5, 6, 7, 4, "float32"))


@kv.case("random distinct sizes, float32", "every size enters the count once")
def _(t):
    num_layers, B, H_kv, S, D = _distinct(t.rng, 5, 2, 50)
    _kv_case(t, (num_layers, B, H_kv, S, D, "float32"))


@kv.case("bfloat16 by name", "'bfloat16' (which NumPy lacks) is 2 bytes per element")
def _(t):
    _kv_case(t, (4, 3, 2, 9, 6, "bfloat16"))


@kv.case("float64, D_v given", "keys of width D and values of width D_v (when given), 8 bytes each")
def _(t):
    _kv_case(t, (2, 3, 5, 11, 4, "float64"), {"D_v": 7})


@kv.case("itemsize as an int", "dtype=1 means 1 byte per element (an 8-bit cache)", weight=0.5)
def _(t):
    _kv_case(t, (5, 2, 3, 13, 8, 1))


@kv.case("Llama 2 70B at 4k", "80 layers, 8 key/value heads of width 128, 4096 positions, bfloat16, batch 3: "
         "the sizes of a real grouped-query model")
def _(t):
    _kv_case(t, (80, 3, 8, 4096, 128, "bfloat16"))


@kv.case("big sizes", "byte counts past 2**63 stay exact (Python ints)")
def _(t):
    _kv_case(t, (80, 2 ** 16, 128, 2 ** 24, 128, "float32"))


@kv.case("empty cache", "S = 0 positions take 0 bytes", weight=0.5)
def _(t):
    _kv_case(t, (2, 3, 4, 0, 5, "float16"))


@kv.case("negative size", "a negative size raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 2, 3, -4, 7, 5, "float16", hint=NEGATIVE_HINT)


def _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v=None, tensors=2, layers=True, batch=True, bf16=2,
               unit=1, value_width=None, validate=True, elements_only=False):
    if validate and min(num_layers, B, H_kv, S, D) < 0:
        raise ValueError("sizes must be >= 0")
    D_v = D if D_v is None else D_v
    if value_width is not None:
        D_v = value_width(D, D_v)
    size = 1 if elements_only else _size_of(dtype, bf16, unit)
    widths = D + D_v if tensors == 2 else D
    return (num_layers if layers else 1) * (B if batch else 1) * H_kv * S * widths * size


@kv.mutant("keys only", "cache the values too: each layer keeps keys (B, H_kv, S, D) AND values (B, H_kv, S, D_v), "
           "the factor 2")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, tensors=1)


@kv.mutant("one layer", "multiply by num_layers: every attention layer keeps its own keys and values")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, layers=False)


@kv.mutant("forgot B", "multiply by B: each sequence in the batch has its own cache")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, batch=False)


@kv.mutant("bfloat16 as float32", BF16_HINT)
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, bf16=4)


@kv.mutant("elements, not bytes", ITEMSIZE_HINT)
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, elements_only=True)


@kv.mutant("bits, not bytes", BITS_HINT)
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, unit=8)


@kv.mutant("D_v ignored", "when D_v is given the values have width D_v: layers * B * H_kv * S * (D + D_v) * itemsize")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, value_width=lambda D, D_v: D)


@kv.mutant("np.int64 arithmetic", OVERFLOW_HINT)
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    D_v = D if D_v is None else D_v
    return np.prod(np.array([num_layers, B, H_kv, S, D + D_v, _size_of(dtype)], dtype=np.int64))


@kv.mutant("no validation", NEGATIVE_HINT)
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    return _mutant_kv(num_layers, B, H_kv, S, D, dtype, D_v, validate=False)


@kv.alternative("shapes of the two cached tensors, math.prod")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    if min(num_layers, B, H_kv, S, D) < 0:
        raise ValueError("negative size")
    size = _alt_itemsize(dtype)
    keys = (num_layers, B, H_kv, S, D)
    values = (num_layers, B, H_kv, S, D if D_v is None else D_v)
    return (math.prod(keys) + math.prod(values)) * size


@kv.alternative("2 * ... when D_v is D, a loop over layers")
def _(num_layers, B, H_kv, S, D, dtype, D_v=None):
    if min(num_layers, B, H_kv, S, D) < 0:
        raise ValueError("negative size")
    size = dtype if isinstance(dtype, int) else {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[dtype]
    total = 0
    for _layer in range(num_layers):
        if D_v is None or D_v == D:
            total += 2 * B * H_kv * S * D * size
        else:
            total += B * H_kv * S * (D + D_v) * size
    return total


EXERCISES = [flops, memory, kv]
