"""Grader for attnlab.scoring (notebook 01): dot, scaled dot, general and additive alignment scores.

Oracle: our float64 einsum references (cross-checked against torch in tests/test_references.py), rounded once.
Scores exponentiate nothing, so the table's tolerance applies: correct float32 code written four ways
(matmul, einsum, tensordot, broadcast-and-sum) used at most 7% of it over seeds 0..39.
"""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import scoring as ref
from .inputs import B, D, H, L, S, normal

TRANSPOSE_HINT = "transpose only the last two axes of k (np.swapaxes(k, -1, -2)); k.T reverses every axis"


def _qk(rng, lead=(B, H), L=L, S=S, D=D, dtype="float64"):
    """Queries (*lead, L, D) and keys (*lead, S, D), every dimension distinct by default."""
    return normal(rng, lead + (L, D), dtype), normal(rng, lead + (S, D), dtype)


# ----------------------------------------------------------------------------------- dot_scores
dot_scores = Exercise("scoring.dot_scores", points=1, reference=ref.dot_scores,
                      demo=lambda rng: ((np.array([[1.0, 0.0], [0.0, 2.0]]),
                                         np.array([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]])), {}))


@dot_scores.case("float64 (2, 3, 5, 4) x (2, 3, 7, 4)", "scores are (..., L, S) with every dimension distinct")
def _(t):
    q, k = _qk(t.rng)
    t.expect(t.call(q, k), ref.dot_scores(q, k))


@dot_scores.case("no batch dims (5, 4) x (7, 4)", "plain 2-D queries and keys give an (L, S) matrix")
def _(t):
    q, k = _qk(t.rng, lead=())
    t.expect(t.call(q, k), ref.dot_scores(q, k))


@dot_scores.case("broadcast (2, 3, 5, 4) x (3, 7, 4)", "leading dims of k broadcast against q's")
def _(t):
    q, _ = _qk(t.rng)
    k = t.rng.standard_normal((3, 7, 4))
    t.expect(t.call(q, k), ref.dot_scores(q, k))


@dot_scores.case("float32", "float32 queries and keys give float32 scores")
def _(t):
    q, k = _qk(t.rng, dtype="float32")
    t.expect(t.call(q, k), ref.dot_scores(q, k))


@dot_scores.mutant("k @ q^T", "scores are (..., L, S): compute q @ k^T, not k @ q^T")
def _(q, k):
    return np.matmul(k, np.swapaxes(q, -1, -2))


@dot_scores.mutant("k.T on batched input", TRANSPOSE_HINT)
def _(q, k):
    return np.matmul(q, k.T)


@dot_scores.mutant("scaled", "dot_scores is unscaled: the 1/sqrt(D) belongs in scaled_dot_scores")
def _(q, k):
    return ref.dot_scores(q, k) / np.sqrt(q.shape[-1]).astype(q.dtype)


@dot_scores.alternative("einsum")
def _(q, k):
    return np.einsum("...ld,...sd->...ls", q, k)


@dot_scores.alternative("broadcast multiply, then sum over D")
def _(q, k):
    q, k = np.asarray(q), np.asarray(k)
    return (q[..., :, None, :] * k[..., None, :, :]).sum(axis=-1)  # (..., L, S, D) -> (..., L, S)


# ----------------------------------------------------------------------------- scaled_dot_scores
scaled_dot_scores = Exercise("scoring.scaled_dot_scores", points=1, reference=ref.scaled_dot_scores,
                             deps=("scoring.dot_scores",),
                             demo=lambda rng: ((np.array([[1.0, 0.0, 2.0, 1.0]]),
                                                np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, -2.0]])), {}))


@scaled_dot_scores.case("default scale, D=4", "the default scale is 1/sqrt(D) with D = q.shape[-1]")
def _(t):
    q, k = _qk(t.rng)
    t.expect(t.call(q, k), ref.scaled_dot_scores(q, k))


@scaled_dot_scores.case("default scale, D=9", "1/sqrt(D) for another D, with L=2, S=3")
def _(t):
    q, k = _qk(t.rng, lead=(4,), L=2, S=3, D=9)
    t.expect(t.call(q, k), ref.scaled_dot_scores(q, k))


@scaled_dot_scores.case("explicit scale=0.3", "an explicit scale replaces the default")
def _(t):
    q, k = _qk(t.rng)
    t.expect(t.call(q, k, scale=0.3), ref.scaled_dot_scores(q, k, scale=0.3))


@scaled_dot_scores.case("scale=0.0", "scale=0.0 is a valid scale (test `scale is None`, not truthiness)")
def _(t):
    q, k = _qk(t.rng, lead=(2,))
    t.expect(t.call(q, k, scale=0.0), ref.scaled_dot_scores(q, k, scale=0.0))


@scaled_dot_scores.case("float32", "float32 inputs give float32 scores (a numpy float64 scale must not upcast)")
def _(t):
    q, k = _qk(t.rng, dtype="float32")
    t.expect(t.call(q, k), ref.scaled_dot_scores(q, k))


@scaled_dot_scores.mutant("forgot scale", "matches the unscaled scores: did you forget 1/sqrt(D)?")
def _(q, k, scale=None):
    return ref.dot_scores(q, k) if scale is None else ref.scaled_dot_scores(q, k, scale)


@scaled_dot_scores.mutant("1/D", "the scale is 1/sqrt(D), not 1/D")
def _(q, k, scale=None):
    return ref.scaled_dot_scores(q, k, 1.0 / q.shape[-1] if scale is None else scale)


@scaled_dot_scores.mutant("sqrt(D)", "the scale is 1/sqrt(D): you multiplied by sqrt(D)")
def _(q, k, scale=None):
    return ref.scaled_dot_scores(q, k, float(np.sqrt(q.shape[-1])) if scale is None else scale)


@scaled_dot_scores.mutant("sqrt(S)", "D is the width of q and k (q.shape[-1]), not a sequence length")
def _(q, k, scale=None):
    return ref.scaled_dot_scores(q, k, 1.0 / np.sqrt(k.shape[-2]) if scale is None else scale)


@scaled_dot_scores.mutant("ignores scale", "use the `scale` argument when it is given")
def _(q, k, scale=None):
    return ref.scaled_dot_scores(q, k)


@scaled_dot_scores.mutant("scale or default", "scale=0.0 is valid: test `scale is None`, not `if not scale`")
def _(q, k, scale=None):
    return ref.scaled_dot_scores(q, k, scale or None)


@scaled_dot_scores.mutant("float64 output", DTYPE_HINT + ", e.g. 1/np.sqrt(D)")
def _(q, k, scale=None):
    return ref.dot_scores(q, k) * (1.0 / np.sqrt(q.shape[-1]) if scale is None else np.float64(scale))


@scaled_dot_scores.alternative("scale the queries first, then einsum")
def _(q, k, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return np.einsum("...ld,...sd->...ls", q * scale, k)


@scaled_dot_scores.alternative("matmul, then divide by sqrt(D) in the input dtype")
def _(q, k, scale=None):
    scores = q @ np.swapaxes(k, -1, -2)
    if scale is None:
        return scores / np.sqrt(q.dtype.type(q.shape[-1]))
    return scores * q.dtype.type(scale)


# --------------------------------------------------------------------------------- general_scores
general_scores = Exercise("scoring.general_scores", points=1, reference=ref.general_scores,
                          demo=lambda rng: ((np.array([[1.0, 2.0]]), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
                                             np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]])), {}))


def _general_inputs(rng, lead=(B, H), L=L, S=S, D_q=4, D_k=3, dtype="float64"):
    return normal(rng, lead + (L, D_q), dtype), normal(rng, lead + (S, D_k), dtype), normal(rng, (D_q, D_k), dtype)


@general_scores.case("D_q=4, D_k=3, (2, 3, 5) x (2, 3, 7)", "q W k^T with query and key widths that differ")
def _(t):
    q, k, W = _general_inputs(t.rng)
    t.expect(t.call(q, k, W), ref.general_scores(q, k, W))


@general_scores.case("D_q=D_k=4", "with equal widths W still matters (it is not the identity)")
def _(t):
    q, k, W = _general_inputs(t.rng, lead=(2,), D_k=4)
    t.expect(t.call(q, k, W), ref.general_scores(q, k, W))


@general_scores.case("float32", "float32 inputs give float32 scores")
def _(t):
    q, k, W = _general_inputs(t.rng, lead=(), dtype="float32")
    t.expect(t.call(q, k, W), ref.general_scores(q, k, W))


@general_scores.mutant("forgot W", "apply the bilinear form: scores are q @ W @ k^T (you computed q @ k^T)")
def _(q, k, W):
    return ref.dot_scores(q, k)


@general_scores.mutant("W transposed", "W is (D_q, D_k): compute (q @ W) @ k^T, not q @ W.T")
def _(q, k, W):
    return np.matmul(np.matmul(q, W.T), np.swapaxes(k, -1, -2))


@general_scores.alternative("tensordot for W, then einsum")
def _(q, k, W):
    qW = np.tensordot(q, W, axes=([-1], [0]))  # (..., L, D_k)
    return np.einsum("...lb,...sb->...ls", qW, k)


@general_scores.alternative("k W^T first, then q (k W^T)^T")
def _(q, k, W):
    kW = k @ W.T  # (..., S, D_q)
    return q @ np.swapaxes(kW, -1, -2)


# -------------------------------------------------------------------------------- additive_scores
additive_scores = Exercise("scoring.additive_scores", points=2, reference=ref.additive_scores,
                           demo=lambda rng: ((np.array([[1.0, 0.0]]), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]),
                                              np.array([[1.0, -1.0], [0.5, 0.5]]),
                                              np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                              np.array([1.0, -2.0])), {}))


def _additive_inputs(rng, lead=(B, H), L=L, S=S, D_q=4, D_k=3, A=6, dtype="float64"):
    shapes = (lead + (L, D_q), lead + (S, D_k), (D_q, A), (D_k, A), (A,))  # q, k, W_q, W_k, w_v
    return tuple(normal(rng, shape, dtype) for shape in shapes)


@additive_scores.case("D_q=4, D_k=3, A=6, (2, 3, 5) x (2, 3, 7)", "w_v . tanh(q W_q + k W_k) for every query-key pair")
def _(t):
    args = _additive_inputs(t.rng)
    t.expect(t.call(*args), ref.additive_scores(*args))


@additive_scores.case("no batch dims, L=2, S=9", "plain 2-D inputs give an (L, S) matrix")
def _(t):
    args = _additive_inputs(t.rng, lead=(), L=2, S=9)
    t.expect(t.call(*args), ref.additive_scores(*args))


@additive_scores.case("float32", "float32 inputs give float32 scores")
def _(t):
    args = _additive_inputs(t.rng, lead=(3,), dtype="float32")
    t.expect(t.call(*args), ref.additive_scores(*args))


@additive_scores.mutant("tanh after w_v", "apply tanh to the A-dim hidden vector, before the dot with w_v")
def _(q, k, W_q, W_k, w_v):
    qp, kp = q @ W_q, k @ W_k
    return np.tanh((qp[..., :, None, :] + kp[..., None, :, :]) @ w_v)


@additive_scores.mutant("no tanh", "the additive score has a tanh nonlinearity: w_v . tanh(q W_q + k W_k)")
def _(q, k, W_q, W_k, w_v):
    qp, kp = q @ W_q, k @ W_k
    return (qp[..., :, None, :] + kp[..., None, :, :]) @ w_v


@additive_scores.mutant("(S, L) layout", "scores are (..., L, S): queries index the rows, keys the columns")
def _(q, k, W_q, W_k, w_v):
    return np.swapaxes(ref.additive_scores(q, k, W_q, W_k, w_v), -1, -2)


@additive_scores.alternative("tensordot projections, einsum with w_v")
def _(q, k, W_q, W_k, w_v):
    qp = np.tensordot(q, W_q, axes=([-1], [0]))  # (..., L, A)
    kp = np.tensordot(k, W_k, axes=([-1], [0]))  # (..., S, A)
    return np.einsum("...lsa,a->...ls", np.tanh(qp[..., :, None, :] + kp[..., None, :, :]), w_v)


@additive_scores.alternative("a loop over keys")
def _(q, k, W_q, W_k, w_v):
    qp, kp = q @ W_q, k @ W_k
    cols = [np.tanh(qp + kp[..., j:j + 1, :]) @ w_v for j in range(k.shape[-2])]  # each (..., L)
    return np.stack(cols, axis=-1)


EXERCISES = [dot_scores, scaled_dot_scores, general_scores, additive_scores]
