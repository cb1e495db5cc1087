"""Grader for attnlab.positions (notebook 05): sinusoidal encodings, T5 buckets, ALiBi, RoPE.

Oracles (autograde/references/positions.py, independent of the solution):

* sinusoidal_positional_encoding: complex exponentials, float64;
* relative_position_bucket: T5's definition decided in exact integer arithmetic (tests/test_positions_exercise.py
  shows it equals T5's published code, float32 logs included, over hundreds of configurations); outputs are
  integers and must match exactly. Distances where the log-spaced value is a whole number (16, 32, 64 with
  the defaults) are tested on purpose: T5's expression gives the upper bucket there, and a formulation that
  rounds the other way is a real incompatibility with pretrained T5 weights, named by its own hint;
* alibi_slopes: the recursion of the ALiBi paper's code (Press et al. 2022);
* alibi_bias: loops over (i, j) with the reference slopes;
* apply_rope: complex multiplication z * e^{i m theta} with z = x[:D/2] + i x[D/2:], float64, rounded once.

Tolerances. Encodings, slopes and biases are float64 and well conditioned: the table's float64 tolerance.
RoPE rotates by angles up to |position| (theta_0 = 1); a correct program may form the angle in x's dtype
(Hugging Face's code does), an absolute error of about eps * |angle| in the angle, hence in the output
relative to |x|. The allowance is ``atol = 4 eps (1 + max |angle|) max |x|`` on top of the table. Measured
over 40 seeds, that float32 formulation uses at most 4% of it (positions up to 2000) and the solution, which
forms angles in float64 and rounds once, none; every mistake below moves outputs by O(|x|).
"""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import positions as ref
from ..tolerances import EPS, tolerance

ODD_E_HINT = "raise ValueError when E is odd: each frequency needs a sine column and a cosine column"
ODD_D_HINT = "raise ValueError when D is odd: RoPE rotates features in pairs (i, i + D/2)"
INT_HINT = ("return integer bucket indices (dtype int64): they index an embedding table of num_buckets biases; "
            "cast the floored log part with .astype(np.int64)")

# ============================================================================ sinusoidal encodings
sinusoidal = Exercise("positions.sinusoidal_positional_encoding", points=1,
                      reference=ref.sinusoidal_positional_encoding, demo=lambda rng: ((4, 6), {}))


@sinusoidal.case("L=7, E=6", "sin in the even columns, cos in the odd ones, one frequency per pair")
def _(t):
    t.expect(t.call(7, 6), ref.sinusoidal_positional_encoding(7, 6))


@sinusoidal.case("L=64, E=16", "a longer block: the slow columns keep changing after the fast ones wrap around")
def _(t):
    t.expect(t.call(64, 16), ref.sinusoidal_positional_encoding(64, 16))


@sinusoidal.case("L=9, E=10, base=100", "the base sets the frequencies: base ** (-2i / E)")
def _(t):
    t.expect(t.call(9, 10, base=100.0), ref.sinusoidal_positional_encoding(9, 10, base=100.0))


@sinusoidal.case("L=1, E=4", "position 0 alone: every sine is 0 and every cosine 1")
def _(t):
    t.expect(t.call(1, 4), ref.sinusoidal_positional_encoding(1, 4))


@sinusoidal.case("L=300, E=32", "positions up to 299: late rows as accurate as early ones")
def _(t):
    t.expect(t.call(300, 32), ref.sinusoidal_positional_encoding(300, 32))


@sinusoidal.case("odd E=5", "an odd width raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", 6, 5, hint=ODD_E_HINT)


def _pe(L, E, base=10000.0, column_exponent=None, layout="interleaved", first=np.sin, second=np.cos, start=0,
        multiply=False):
    """A sinusoidal table built with one deliberate difference (the mutants below pick which)."""
    if E % 2:
        raise ValueError("E must be even")
    pos = np.arange(start, start + L)[:, None].astype(np.float64)
    if column_exponent is None:
        exponent = (2 * (np.arange(E) // 2) / E)[None, :]  # (1, E): pair i uses 2i / E in both its columns
    else:
        exponent = column_exponent(np.arange(E), E)[None, :]
    angles = pos * base ** exponent if multiply else pos / base ** exponent  # (L, E)
    pe = np.where(np.arange(E) % 2 == 0, first(angles), second(angles))
    if layout == "blocked":
        pe = np.concatenate([pe[:, 0::2], pe[:, 1::2]], axis=1)
    return pe


@sinusoidal.mutant("sin and cos swapped", "sines go in the even columns (0, 2, ...) and cosines in the odd ones; "
                   "yours are the other way round")
def _(L, E, base=10000.0):
    return _pe(L, E, base, first=np.cos, second=np.sin)


@sinusoidal.mutant("blocked layout", "interleave the columns: pe[:, 0::2] = sin, pe[:, 1::2] = cos (pair i in columns "
                   "2i and 2i + 1), not all sines followed by all cosines")
def _(L, E, base=10000.0):
    return _pe(L, E, base, layout="blocked")


@sinusoidal.mutant("column index as exponent", "both columns of pair i share one frequency, base ** (-2i / E): the "
                   "cosine in column 2i + 1 must not use base ** (-(2i + 1) / E)")
def _(L, E, base=10000.0):
    return _pe(L, E, base, column_exponent=lambda j, E: j / E)


@sinusoidal.mutant("pair index without the 2", "the exponent of pair i is 2i / E (it runs from 0 to nearly 1), "
                   "not i / E")
def _(L, E, base=10000.0):
    return _pe(L, E, base, column_exponent=lambda j, E: (j // 2) / E)


@sinusoidal.mutant("multiplies by the base power", "divide the position by base ** (2i / E) (frequencies fall "
                   "from 1 to about 1 / base); multiplying by it makes them grow")
def _(L, E, base=10000.0):
    return _pe(L, E, base, multiply=True)


@sinusoidal.mutant("positions from 1", "positions start at 0 (np.arange(L)): the first row is [0, 1, 0, 1, ...]")
def _(L, E, base=10000.0):
    return _pe(L, E, base, start=1)


@sinusoidal.mutant("base ignored", "use the base argument in the frequencies, not a hard-coded 10000")
def _(L, E, base=10000.0):
    return _pe(L, E, 10000.0)


@sinusoidal.mutant("(E, L) layout", "return shape (L, E): one row per position, one column per feature")
def _(L, E, base=10000.0):
    return _pe(L, E, base).T.copy()


@sinusoidal.mutant("float32 table", "return float64: the angles of late positions need its precision")
def _(L, E, base=10000.0):
    return _pe(L, E, base).astype(np.float32)


@sinusoidal.mutant("no validation", ODD_E_HINT)
def _(L, E, base=10000.0):
    return _pe(L, E + E % 2, base)[:, :E]


@sinusoidal.alternative("div_term from exp and log, as in the PyTorch tutorial")
def _(L, E, base=10000.0):
    if E % 2:
        raise ValueError("E must be even")
    position = np.arange(L, dtype=np.float64)[:, None]
    div_term = np.exp(np.arange(0, E, 2) * (-np.log(base) / E))
    pe = np.zeros((L, E))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe


@sinusoidal.alternative("stack sin and cos, then reshape to interleave")
def _(L, E, base=10000.0):
    if E % 2 != 0:
        raise ValueError("odd E")
    angles = np.outer(np.arange(L), 1.0 / np.power(base, np.arange(E // 2) * 2.0 / E))  # (L, E/2)
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(L, E)


@sinusoidal.alternative("a loop over positions and columns")
def _(L, E, base=10000.0):
    if E % 2:
        raise ValueError("E must be even")
    import math
    pe = np.zeros((L, E))
    for pos in range(L):
        for i in range(0, E, 2):
            angle = pos / base ** (i / E)
            pe[pos, i], pe[pos, i + 1] = math.sin(angle), math.cos(angle)
    return pe


# ============================================================================ T5 relative buckets
bucket = Exercise("positions.relative_position_bucket", points=2, reference=ref.relative_position_bucket,
                  demo=lambda rng: ((np.array([[-40, -9, -1, 0, 1, 9, 40]]),), {}))


def _offsets(L, S, query_start=0):
    """key position - query position for L queries starting at query_start and S keys from 0: (L, S)."""
    return np.arange(S)[None, :] - (np.arange(L)[:, None] + query_start)


BOUNDARIES = np.array([7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000])


def _bucket_case(t, rel, **kwargs):
    t.expect(t.call(rel, **kwargs), ref.relative_position_bucket(rel, **kwargs))


@bucket.case("(L, S) = (5, 7), defaults", "key - query offsets of a small block: one bucket per distance, the "
             "future in the upper half")
def _(t):
    _bucket_case(t, _offsets(5, 7))


@bucket.case("exact distances 7..1000, both signs, defaults", "the log-spaced buckets start at 8 and fill up at 128; "
             "at 16, 32 and 64 T5's value is a whole number and the floor keeps it")
def _(t):
    rel = np.concatenate([-BOUNDARIES[::-1], [0], BOUNDARIES])[None, :]
    _bucket_case(t, np.repeat(rel, 2, axis=0))


@bucket.case("random offsets in [-300, 300], shape (2, 3, 11)", "any shape of offsets, far past max_distance")
def _(t):
    _bucket_case(t, t.rng.integers(-300, 301, size=(2, 3, 11)))


@bucket.case("causal, (L, S) = (6, 9) late queries", "bidirectional=False: every bucket for the past, "
             "future keys in bucket 0")
def _(t):
    _bucket_case(t, _offsets(6, 9, query_start=40), bidirectional=False)


@bucket.case("causal, exact distances and random offsets", "bidirectional=False with num_buckets=32: the "
             "exact part runs to 15, log buckets up to 128")
def _(t):
    rel = np.concatenate([-BOUNDARIES, [0, 5, 200], -t.rng.integers(0, 400, size=13)])
    _bucket_case(t, rel, bidirectional=False)


@bucket.case("num_buckets=10, max_distance=40", "5 buckets per side, 2 of them exact; the arguments are used")
def _(t):
    rel = np.concatenate([np.arange(-45, 46), t.rng.integers(-100, 101, size=9)]).reshape(4, 25)
    _bucket_case(t, rel, num_buckets=10, max_distance=40)


@bucket.case("causal, num_buckets=12, max_distance=20", "12 buckets for the past, 6 of them exact, cap at 11")
def _(t):
    rel = np.concatenate([np.arange(-30, 4), -t.rng.integers(0, 80, size=6)]).reshape(5, 8)
    _bucket_case(t, rel, bidirectional=False, num_buckets=12, max_distance=20)


def _t5(relative_position, bidirectional=True, num_buckets=32, max_distance=128, sign=-1, causal_side=-1,
        zero_upper=False, halve=True, exact_before_halving=False, cut=np.floor, order="t5", cap=True,
        dtype=np.int64):
    """T5's bucketing with one deliberate difference (the mutants below pick which)."""
    rel = np.asarray(relative_position)
    n = sign * rel  # T5 writes n = -relative_position
    out = np.zeros(rel.shape, dtype=np.int64)
    max_exact = num_buckets // 2
    if bidirectional:
        if halve:
            num_buckets //= 2
        upper = (n <= 0) if zero_upper else (n < 0)
        out += upper * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(causal_side * -n, 0)
    if not exact_before_halving:
        max_exact = num_buckets // 2
    small = n < max_exact
    ratio = np.maximum(n, 1) / max_exact
    if order == "t5":
        value = np.log(ratio) / np.log(max_distance / max_exact) * (num_buckets - max_exact)
    else:  # the same quantity, with the constant folded first: one ulp low at whole numbers
        value = np.log(ratio) * ((num_buckets - max_exact) / np.log(max_distance / max_exact))
    large = max_exact + cut(value).astype(np.int64)
    if cap:
        large = np.minimum(large, num_buckets - 1)
    return (out + np.where(small, n, large)).astype(dtype)


@bucket.mutant("query - key", "relative_position is key - query (negative for keys in the past): keys in the "
               "future (relative_position > 0) take the upper half of the buckets, and the causal mode counts "
               "the past")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, sign=1)


@bucket.mutant("causal mode counts the future", "with bidirectional=False the distance is max(-relative_position, 0): "
               "keys in the past (negative offsets) get the buckets, every future key bucket 0")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, causal_side=1)


@bucket.mutant("offset 0 in the upper half", "shift by num_buckets // 2 only where relative_position > 0: offset 0 "
               "(the query's own position) is bucket 0")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, zero_upper=True)


@bucket.mutant("num_buckets not halved", "when bidirectional, each side gets num_buckets // 2 buckets: halve "
               "num_buckets before computing the exact and log-spaced parts")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, halve=False)


@bucket.mutant("max_exact before halving", "max_exact is half of the buckets of one side: compute num_buckets // 2 "
               "after halving num_buckets for the bidirectional case (8 exact distances with the defaults, not 16)")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, exact_before_halving=True)


@bucket.mutant("rounds the log part", "T5 truncates the log-spaced value (floor, or astype(int) of a non-negative "
               "number): np.round and np.ceil put distances one bucket too high")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, cut=np.round)


@bucket.mutant("constant folded first", "at distances where the log-spaced value is a whole number (16, 32, 64 with the "
               "defaults) your floor lands one bucket low: compute log(n / max_exact) / log(max_distance / "
               "max_exact) * (num_buckets - max_exact) in this order, as T5 does")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, order="folded")


@bucket.mutant("no cap", "cap the log-spaced buckets at num_buckets - 1 (per side): every distance from max_distance "
               "on shares the last bucket")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, cap=False)


@bucket.mutant("float buckets", INT_HINT)
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    return _t5(relative_position, bidirectional, num_buckets, max_distance, dtype=np.float64)


@bucket.alternative("Hugging Face's T5 code, transcribed to NumPy (float32 logs)")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    import math
    relative_position = np.asarray(relative_position)
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, np.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    with np.errstate(divide="ignore"):
        if_large = max_exact + (np.log(relative_position.astype(np.float32) / max_exact)
                                / np.float32(math.log(max_distance / max_exact))
                                * np.float32(num_buckets - max_exact)).astype(np.int64)
    if_large = np.minimum(if_large, num_buckets - 1)
    return relative_buckets + np.where(is_small, relative_position, if_large).astype(np.int64)


@bucket.alternative("log2, element by element")
def _(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    import math
    rel = np.asarray(relative_position)
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact = per_side // 2
    out = np.zeros(rel.shape, dtype=np.int64)
    for index, r in np.ndenumerate(rel):
        r = int(r)
        base = per_side if (bidirectional and r > 0) else 0
        n = abs(r) if bidirectional else max(-r, 0)
        if n < exact:
            out[index] = base + n
        else:
            value = math.log2(n / exact) / math.log2(max_distance / exact) * (per_side - exact)
            out[index] = base + min(exact + int(value), per_side - 1)
    return out


# ============================================================================ ALiBi
slopes = Exercise("positions.alibi_slopes", points=1, reference=ref.alibi_slopes, demo=lambda rng: ((6,), {}))


@slopes.case("H=8", "the paper's power-of-two sequence: 1/2, 1/4, ..., 1/256")
def _(t):
    t.expect(t.call(8), ref.alibi_slopes(8))


@slopes.case("H=16", "ratio 2**(-8/16): the first slope is 1/sqrt(2)")
def _(t):
    t.expect(t.call(16), ref.alibi_slopes(16))


@slopes.case("H=6", "not a power of two: the 4 slopes of 4 heads, then every other slope of 8 heads")
def _(t):
    t.expect(t.call(6), ref.alibi_slopes(6))


@slopes.case("H=12", "the 8 slopes of 8 heads, then 4 of every other slope of 16 heads")
def _(t):
    t.expect(t.call(12), ref.alibi_slopes(12))


@slopes.case("H = 1, 2, 3, 5", "small head counts, powers of two or not")
def _(t):
    for H in (1, 2, 3, 5):
        t.expect(t.call(H), ref.alibi_slopes(H), what=f"H = {H}")


def _powers(n, first=1):
    return 2.0 ** (-8.0 * np.arange(first, first + n) / n)


def _alibi(H, extra=lambda doubled, k: doubled[0::2][:k], order=None):
    """ALiBi slopes with one deliberate difference (the mutants below pick which)."""
    closest = 2 ** int(np.floor(np.log2(H)))
    if closest == H:
        out = _powers(H)
    else:
        out = np.concatenate([_powers(closest), extra(_powers(2 * closest), H - closest)])
    return order(out) if order else out


@slopes.mutant("power-of-two rule for every H", "for H not a power of two the slopes are not 2**(-8h/H): take the "
               "P slopes of the largest power of two P below H, then every other slope of 2P heads")
def _(num_heads):
    return _powers(num_heads)


@slopes.mutant("next power of two, cut", "for H = 6 the slopes are not the first 6 of 8 heads: take the 4 slopes of "
               "4 heads, then every other slope of 8 heads (1/2, 1/8)")
def _(num_heads):
    closest = 2 ** int(np.ceil(np.log2(num_heads)))
    return _powers(closest)[:num_heads]


@slopes.mutant("every other from the second", "the extra slopes are every other slope of 2P heads starting with the "
               "first ([0::2]): the ones from the second ([1::2]) repeat slopes the first P heads already have")
def _(num_heads):
    return _alibi(num_heads, extra=lambda doubled, k: doubled[1::2][:k])


@slopes.mutant("consecutive extras", "the extra slopes are every other slope of 2P heads ([0::2]), not the first "
               "H - P of them in a row")
def _(num_heads):
    return _alibi(num_heads, extra=lambda doubled, k: doubled[:k])


@slopes.mutant("sorted", "keep the paper's order: the P slopes of P heads first, then the extra ones (pretrained "
               "checkpoints depend on it); do not sort them")
def _(num_heads):
    return _alibi(num_heads, order=lambda s: np.sort(s)[::-1].copy())


@slopes.mutant("first slope 1", "the first slope is 2**(-8/H), not 1: h runs from 1 to H in 2**(-8h/H)")
def _(num_heads):
    return _alibi(num_heads) * 2.0 ** (8.0 / 2 ** int(np.floor(np.log2(num_heads))))


@slopes.mutant("ratio 1/2 for every H", "the ratio depends on H: 2**(-8/H), which is 1/2 only for H = 8")
def _(num_heads):
    return 2.0 ** -np.arange(1.0, num_heads + 1)


def _paper_slopes(n):
    """The ALiBi paper's get_slopes, as published (start * ratio**i, recursive)."""
    import math

    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _paper_slopes(2 * closest)[0::2][: n - closest]


@slopes.alternative("the paper's code, recursive, start * ratio**i")
def _(num_heads):
    return np.array(_paper_slopes(num_heads))


@slopes.alternative("exponents first, then 2 ** exponents")
def _(num_heads):
    P = 1
    while P * 2 <= num_heads:
        P *= 2
    exponents = [-8.0 * h / P for h in range(1, P + 1)]
    exponents += [-8.0 * h / (2 * P) for h in range(1, 2 * P + 1, 2)][: num_heads - P]
    return np.power(2.0, np.array(exponents))


# ---------------------------------------------------------------------------- ALiBi bias
bias = Exercise("positions.alibi_bias", points=1, reference=ref.alibi_bias, deps=("positions.alibi_slopes",),
                demo=lambda rng: ((2, 3, 4), {}))


@bias.case("H=2, L=S=5", "self-attention: zero on the diagonal, -slope * |i - j| elsewhere")
def _(t):
    t.expect(t.call(2, 5, 5), ref.alibi_bias(2, 5, 5))


@bias.case("H=6, L=3, S=7", "fewer queries than keys: the queries are the last 3 positions (end-aligned); six heads "
           "use the non-power-of-two slopes")
def _(t):
    t.expect(t.call(6, 3, 7), ref.alibi_bias(6, 3, 7))


@bias.case("H=4, L=1, S=9", "one decoding step: the new query sits at position 8")
def _(t):
    t.expect(t.call(4, 1, 9), ref.alibi_bias(4, 1, 9))


@bias.case("H=3, L=6, S=4", "more queries than keys: query i sits at i + S - L, which may be negative")
def _(t):
    t.expect(t.call(3, 6, 4), ref.alibi_bias(3, 6, 4))


def _bias(H, L, S, slopes_of=ref.alibi_slopes, offset=None, sign=-1.0, signed=False, layout="HLS"):
    """ALiBi bias with one deliberate difference (the mutants below pick which)."""
    offset = S - L if offset is None else offset
    d = (np.arange(L)[:, None] + offset) - np.arange(S)[None, :]  # (L, S): query position - key position
    d = d if signed else np.abs(d)
    out = sign * np.asarray(slopes_of(H))[:, None, None] * d[None]  # (H, L, S)
    if layout == "LSH":
        out = np.moveaxis(out, 0, -1).copy()
    elif layout == "HSL":
        out = np.swapaxes(out, 1, 2).copy()
    return out


@bias.mutant("start-aligned", "align the queries to the end: query i sits at position i + (S - L), so the bias is "
             "-slope * |(i + S - L) - j|, not -slope * |i - j|")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, offset=0)


@bias.mutant("offset with the wrong sign", "query i sits at i + (S - L) (after the S - L cached keys), not at "
             "i - (S - L)")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, offset=L - S)


@bias.mutant("positive bias", "the bias is a penalty: -slope * distance (zero at distance 0, negative elsewhere), "
             "not +slope * distance")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, sign=1.0)


@bias.mutant("signed distance", "use the absolute distance |(i + S - L) - j|: without it keys after the query get a "
             "positive bias (a causal mask hides them, but this function returns the full (H, L, S))")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, signed=True)


@bias.mutant("power-of-two slopes for every H", "take the slopes from alibi_slopes(num_heads): 2**(-8h/H) is the "
             "rule only when H is a power of two")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, slopes_of=_powers)


@bias.mutant("one slope for all heads", "each head has its own slope: multiply the (L, S) distances by "
             "slopes[:, None, None], one slope per head")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, slopes_of=lambda H: np.full(H, ref.alibi_slopes(H)[0]))


@bias.mutant("(L, S, H) layout", "return shape (H, L, S): the head axis first, so the bias adds to scores "
             "(B, H, L, S)")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, layout="LSH")


@bias.mutant("(H, S, L) layout", "return shape (H, L, S): one row per query, one column per key")
def _(num_heads, L, S):
    return _bias(num_heads, L, S, layout="HSL")


@bias.alternative("np.subtract.outer and einsum")
def _(num_heads, L, S):
    distance = np.abs(np.subtract.outer(np.arange(S - L, S), np.arange(S)))  # (L, S)
    return -np.einsum("h,ls->hls", np.array(_paper_slopes(num_heads)), distance.astype(np.float64))


@bias.alternative("a causal-style position grid, written by hand")
def _(num_heads, L, S):
    s = np.asarray(_paper_slopes(num_heads), dtype=np.float64)
    out = np.empty((num_heads, L, S))
    for i in range(L):
        out[:, i, :] = -np.outer(s, np.abs(np.arange(S) - (i + S - L)))
    return out


# ============================================================================ RoPE
rope = Exercise("positions.apply_rope", points=2, reference=ref.apply_rope,
                demo=lambda rng: ((np.round(rng.standard_normal((3, 4)), 2), np.array([0, 1, 5])), {}))


def _rope_tol(x, positions):
    """(rtol, atol) for a rotation by angles up to max |position| (see the module docstring)."""
    name = np.asarray(x).dtype.name
    rtol, atol = tolerance(name)
    angle = 1.0 + float(np.max(np.abs(positions)))
    return rtol, atol + 4.0 * EPS[name] * angle * float(np.max(np.abs(x)))


def _rope_case(t, x, positions, **kwargs):
    rtol, atol = _rope_tol(x, positions)
    t.expect(t.call(x, positions, **kwargs), ref.apply_rope(x, positions, **kwargs), rtol=rtol, atol=atol)


@rope.case("float64 (2, 3, 5, 8), positions 0..4", "each pair (i, i + D/2) rotated by position * base**(-2i/D)")
def _(t):
    _rope_case(t, t.rng.standard_normal((2, 3, 5, 8)), np.arange(5))


@rope.case("float32 (3, 7, 6), positions 100..106", "queries after a cache of 100 keys, float32 kept")
def _(t):
    _rope_case(t, t.rng.standard_normal((3, 7, 6)).astype(np.float32), np.arange(100, 107))


@rope.case("(L, D) = (9, 4), random positions", "a 2-D input and positions in any order, not 0..L-1")
def _(t):
    _rope_case(t, t.rng.standard_normal((9, 4)), t.rng.permutation(40)[:9])


@rope.case("left padding, positions (2, 1, 5)", "per-sequence positions broadcast against (B, H, L): the first "
           "sequence has two pads")
def _(t):
    positions = np.array([[[0, 0, 0, 1, 2]], [[0, 1, 2, 3, 4]]])
    _rope_case(t, t.rng.standard_normal((2, 3, 5, 10)), positions)


@rope.case("D=12, base=500", "the base sets the frequencies")
def _(t):
    _rope_case(t, t.rng.standard_normal((2, 5, 12)), np.arange(3, 8), base=500.0)


@rope.case("float positions 0, 0.25, ..., 1.5", "fractional positions (position interpolation) rotate by fractional "
           "angles")
def _(t):
    _rope_case(t, t.rng.standard_normal((7, 8)), np.arange(7) * 0.25)


NOT_ROTATION_HINT = ("each pair (x_i, x_{i + D/2}) must be rotated by one angle: x1 cos - x2 sin and x2 cos + x1 sin, "
                     "with the same cos and sin for both halves")


@rope.case("norms preserved, float32 (4, 6, 16)", "a rotation keeps every row's norm whatever the positions",
           weight=0.5)
def _(t):
    x = t.rng.standard_normal((4, 6, 16)).astype(np.float32)
    positions = t.rng.integers(0, 2000, size=6)
    got = t.call(x, positions)
    t.require(isinstance(got, np.ndarray) and got.shape == x.shape,
              f"expected an ndarray of shape {x.shape}, got {type(got).__name__} "
              f"{getattr(got, 'shape', '')}")
    before = np.linalg.norm(x.astype(np.float64), axis=-1)
    after = np.linalg.norm(np.asarray(got, dtype=np.float64), axis=-1)
    worst = float(np.max(np.abs(after - before) / before))
    if worst > 1e-5:
        t.fail(f"row norms change by up to {worst:.3g} (relative); a rotation keeps them",
               t.diagnose() or NOT_ROTATION_HINT)


@rope.case("scores depend on m - n only", "rope(q, m) . rope(k, n) is the same for (m, n) = (3, 0), (10, 7), "
           "(250, 247), (1000, 997) and for (0, 5), (20, 25), (700, 705)", weight=0.5)
def _(t):
    D = 12
    q, k = t.rng.standard_normal(D), t.rng.standard_normal(D)
    m = np.array([3, 10, 250, 1000, 0, 20, 700])
    n = np.array([0, 7, 247, 997, 5, 25, 705])
    rq = t.call(np.tile(q, (len(m), 1)), m)
    rk = t.call(np.tile(k, (len(n), 1)), n)
    t.require(all(isinstance(a, np.ndarray) and a.shape == (len(m), D) for a in (rq, rk)),
              f"expected two ndarrays of shape ({len(m)}, {D})")
    scores = np.sum(rq * rk, axis=-1)  # one score per (m, n) pair
    groups = {"m - n = 3": scores[:4], "m - n = -5": scores[4:]}
    allowed = 64 * EPS["float64"] * (1 + 1000) * float(np.abs(q).sum() * np.abs(k).sum())
    for name, group in groups.items():
        spread = float(group.max() - group.min())
        if spread > allowed:
            t.fail(f"for {name} the scores are {np.round(group, 6).tolist()}: they should all be equal",
                   t.diagnose() or NOT_ROTATION_HINT)


@rope.case("odd D=5", "an odd width raises ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", t.rng.standard_normal((3, 5)), np.arange(3), hint=ODD_D_HINT)


def _rope(x, positions, base=10000.0, layout="half", sign=1.0, ignore_positions=False, exponent=2.0,
          no_minus=False, repeat=False, keep_dtype=True):
    """RoPE with one deliberate difference (the mutants below pick which)."""
    x = np.asarray(x)
    D = x.shape[-1]
    if D % 2:
        raise ValueError("D must be even")
    h = D // 2
    pos = np.arange(x.shape[-2]) if ignore_positions else np.asarray(positions, dtype=np.float64)
    theta = base ** (-np.arange(h) * exponent / D)  # (h,)
    angles = pos[..., None] * theta  # (..., L, h)
    if layout == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]
        c, s = np.cos(angles), sign * np.sin(angles)
        out = np.stack([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).reshape(x.shape)
    else:
        if repeat:
            c, s = np.repeat(np.cos(angles), 2, axis=-1), np.repeat(np.sin(angles), 2, axis=-1)
        else:
            c, s = np.concatenate([np.cos(angles)] * 2, -1), np.concatenate([np.sin(angles)] * 2, -1)
        rotated_half = np.concatenate([x[..., h:], x[..., :h]] if no_minus else [-x[..., h:], x[..., :h]], -1)
        out = x * c + rotated_half * (sign * s)
    return out.astype(x.dtype) if keep_dtype else out


@rope.mutant("interleaved pairs", "pair feature i with feature i + D/2 (rotate half: x1 = x[..., :D/2], x2 = "
             "x[..., D/2:]); rotating neighbours (2i, 2i + 1) is the other, GPT-J layout")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, layout="interleaved")


@rope.mutant("rotation by -theta", "rotate by +angle: x1 cos - x2 sin in the first half, x2 cos + x1 sin in the "
             "second; your signs rotate by -angle")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, sign=-1.0)


@rope.mutant("positions ignored", "rotate by the positions you are given, not np.arange(L): after a cache or under "
             "padding the rows do not start at position 0")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, ignore_positions=True)


@rope.mutant("frequencies base**(-i/D)", "the frequency of pair i is base ** (-2i / D) (exponents from 0 to nearly "
             "1), not base ** (-i / D)")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, exponent=1.0)


@rope.mutant("base ignored", "use the base argument in the frequencies, not a hard-coded 10000")
def _(x, positions, base=10000.0):
    return _rope(x, positions, 10000.0)


@rope.mutant("rotate_half without the minus", "rotate_half(x) is concatenate([-x2, x1]): without the minus sign "
             "the map is not a rotation, and norms and relative scores are lost")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, no_minus=True)


@rope.mutant("frequencies repeated, halves rotated", "in the rotate-half layout features i and i + D/2 share theta_i: "
             "lay cos and sin out as concatenate([c, c], -1), not np.repeat(c, 2, -1) (that is the interleaved "
             "layout's)")
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, repeat=True)


@rope.mutant("float64 output", DTYPE_HINT)
def _(x, positions, base=10000.0):
    return _rope(x, positions, base, keep_dtype=False)


@rope.mutant("no validation", ODD_D_HINT)
def _(x, positions, base=10000.0):
    x = np.asarray(x)
    if x.shape[-1] % 2:
        return x.copy()
    return _rope(x, positions, base)


@rope.alternative("Hugging Face style: cos/sin tables of width D and rotate_half, angles in x's dtype")
def _(x, positions, base=10000.0):
    x = np.asarray(x)
    D = x.shape[-1]
    if D % 2:
        raise ValueError("odd D")
    inv_freq = (1.0 / (base ** (np.arange(0, D, 2, dtype=np.int64).astype(x.dtype) / D))).astype(x.dtype)
    freqs = np.asarray(positions).astype(x.dtype)[..., None] * inv_freq  # (..., L, D/2) in x's dtype
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rotate_half(v):
        return np.concatenate([-v[..., D // 2:], v[..., : D // 2]], axis=-1)

    return (x * cos + rotate_half(x) * sin).astype(x.dtype)


@rope.alternative("2x2 rotation matrices applied with einsum")
def _(x, positions, base=10000.0):
    x = np.asarray(x)
    D = x.shape[-1]
    if D % 2 == 1:
        raise ValueError("D must be even")
    h = D // 2
    a = np.asarray(positions, dtype=np.float64)[..., None] / np.power(float(base), 2.0 * np.arange(h) / D)
    rot = np.stack([np.stack([np.cos(a), -np.sin(a)], -1), np.stack([np.sin(a), np.cos(a)], -1)], -2)  # (..., h, 2, 2)
    pairs = np.stack([x[..., :h], x[..., h:]], axis=-1).astype(np.float64)  # (..., L, h, 2)
    out = np.einsum("...ij,...j->...i", rot, pairs)
    return np.concatenate([out[..., 0], out[..., 1]], axis=-1).astype(x.dtype)


EXERCISES = [sinusoidal, bucket, slopes, bias, rope]
