"""Grader for attnlab.applications (notebook 11): attention in speech, graphs, recommendation, documents
and pairs of sequences.

Oracles: our NumPy references (autograde/references/applications.py), computed in float64 and rounded
once to the inputs' dtype. PyTorch has no built-in for any of these five (torch_geometric's GATConv is
not a dependency of the course), so tests/test_applications_exercise.py cross-checks each reference
against an independent PyTorch implementation in float64 (F.conv1d, F.leaky_relu, masked_fill +
torch.softmax, PReLU...). The solution's masked_softmax (notebook 01) is answered by its reference.

Tolerances follow the conditioning of each computation. Scores of an additive MLP w . tanh(x) round to
about eps * sum_a |w_a| (1 + xa_a (1 - tanh(x_a)^2)), xa the pre-activation summed over absolute values;
a dot score to eps * |q| . |k|; weights from a softmax get `exp_rtol` of the largest such rounding over
kept items, and a weighted sum the same relative error times the largest value on top of the table's
atol. The DIN weights are not exponentiated: their atol is eps times the sum of absolute terms. Masked
weights must be exactly 0: tiny leftovers are named before values are compared.

Every case uses distinct sizes (N=7 nodes, D_in=5, D_out=4, H=3 heads; B=2, L=5, S=7, D=4 style),
masks that drop something in every row, fully masked rows, and for the graph a directed adjacency, a
node with no neighbour and kept scores far below zero.
"""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import applications as ref
from ..references.softmax import masked_softmax as ref_masked_softmax
from ..tolerances import EPS, exp_rtol, tolerance
from .softmax import require_exact_zeros
from .inputs import keep_pattern

SOFTMAX_DEPS = ("softmax.masked_softmax",)


def _eps(dtype):
    return EPS[np.dtype(dtype).name]


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _cast(dtype, *arrays):
    return tuple(np.asarray(a).astype(dtype) for a in arrays)


def _additive_units(x, xa, w):
    """(...,) rounding of w . tanh(x) in units of eps, x and xa (..., A): pre-activations and the same sums
    over absolute values."""
    return (np.abs(w) * (1 + xa * (1 - np.tanh(x) ** 2))).sum(axis=-1)


def _softmax_masked(scores, keep, axis=-1):
    """Masked softmax in the scores' dtype (what a learner's code computes); zero rows stay zero."""
    keep = np.broadcast_to(np.asarray(keep, bool), scores.shape)
    kept = np.where(keep, scores, -np.inf)
    m = kept.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.where(keep, np.exp(kept - m), 0).astype(scores.dtype)
    total = e.sum(axis=axis, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def _softmax_fill(scores, keep, fill, axis=-1):
    """Softmax with masked scores replaced by a finite `fill` (-1e9): a fully masked row gets uniform weights."""
    filled = np.where(np.broadcast_to(np.asarray(keep, bool), scores.shape), scores, fill).astype(scores.dtype)
    e = np.exp(filled - filled.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ==================================================================== location_sensitive_scores
location = Exercise(
    "applications.location_sensitive_scores", points=3, reference=ref.location_sensitive_scores,
    demo=lambda rng: ((np.array([[1.0, -1.0]]), np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]),
                       np.array([[0.0, 1.0, 0.0]]), np.array([[0.5], [-0.5]]), np.array([[1.0], [0.5]]),
                       np.array([[2.0]]), np.array([[1.0, 0.0, -1.0]]), np.array([1.5]), np.array([0.1])), {}))

LS_FLIP_HINT = ("np.convolve flips the filter (a true convolution): the location features are a cross-correlation, "
                "f_j = sum_r F[k, r] alpha[j + r - (R - 1) / 2], what PyTorch's conv1d computes; flip the filter "
                "back (F[k, ::-1]) or slide it yourself")
LS_CIRCULAR_HINT = ("pad the previous alignment with zeros, not by wrapping around (np.roll): a filter hanging over "
                    "the first frame must not read the last one")
LS_CAUSAL_HINT = ("centre the filters on the frame being scored: pad (R - 1) // 2 zeros on each side, not R - 1 "
                  "zeros on the left (frame j must see alpha_{j - (R-1)/2} .. alpha_{j + (R-1)/2})")
LS_NO_LOCATION_HINT = ("add the location term f_j U: the convolution of the previous alignment, projected by U, goes "
                       "inside the tanh with s W and h_j V; without it the scores are content-only")
LS_NO_BIAS_HINT = "add the bias b inside the tanh: w . tanh(s W + h_j V + f_j U + b)"
LS_TANH_AFTER_HINT = ("apply tanh to the A-dim hidden vector, then take the dot with w: tanh(hidden) @ w, not "
                      "tanh(hidden @ w)")
LS_EVEN_HINT = ("raise ValueError when the filter width R is even: an even filter has no centre tap, so the "
                "features would be shifted by half a frame")
LS_TRANSPOSED_FILTERS_HINT = ("filters has shape (K, R): K filters of width R; features = windows (B, S, R) @ "
                              "filters.T (R, K) -> (B, S, K)")


def _location_inputs(rng, B=2, S=11, D_s=4, D_h=6, A=5, K=3, R=7, dtype="float64", prev=None):
    """Every dimension distinct; the projections scaled by 1/sqrt(width) so tanh stays sensitive; the
    previous alignment a softmax row (every frame > 0, both ends included) unless `prev` is given."""
    s = rng.standard_normal((B, D_s))
    h = rng.standard_normal((B, S, D_h))
    if prev is None:
        logits = 1.5 * rng.standard_normal((B, S))
        prev = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    W = rng.standard_normal((D_s, A)) / np.sqrt(D_s)
    V = rng.standard_normal((D_h, A)) / np.sqrt(D_h)
    U = 2.0 * rng.standard_normal((K, A)) / np.sqrt(K)
    filters = 2.0 * rng.standard_normal((K, R))     # asymmetric: a flipped filter is another filter
    w = rng.standard_normal(A)
    b = 0.5 * rng.standard_normal(A)
    return _cast(dtype, s, h, prev, W, V, U, filters, w, b)


def _location_units(s, h, prev, W, V, U, filters, w, b):
    """(B, S) rounding bound of the scores in units of eps (the location features summed over |alpha| |F|)."""
    s, h, prev, W, V, U, F, w, b = _f64(s, h, prev, W, V, U, filters, w, b)
    f = ref.location_features(prev, F)
    fa = ref.location_features(np.abs(prev), np.abs(F))
    x = (s @ W)[:, None, :] + h @ V + f @ U + b
    xa = (np.abs(s) @ np.abs(W))[:, None, :] + np.abs(h) @ np.abs(V) + fa @ np.abs(U) + np.abs(b)
    return _additive_units(x, xa, w)


def _check_location(t, *args, what="scores (B, S)"):
    got = t.call(*args)
    dtype = args[1].dtype
    atol = tolerance(dtype)[1] + 8.0 * _eps(dtype) * float(_location_units(*args).max())
    t.expect(got, ref.location_sensitive_scores(*args), what=what, atol=atol)


@location.case("float64 B=2, S=11, D_s=4, D_h=6, A=5, K=3, R=7", "a soft previous alignment over every frame, "
               "asymmetric filters, every dimension distinct, against the reference")
def _(t):
    _check_location(t, *_location_inputs(t.rng))


@location.case("one-hot previous alignment in the middle", "the previous step looked at frame 5 only: frame j's "
               "features are the filter taps F[:, 5 - j + 3], the filters laid down around frame 5 unflipped")
def _(t):
    prev = np.zeros((2, 11))
    prev[:, 5] = 1.0
    _check_location(t, *_location_inputs(t.rng, prev=prev))


@location.case("alignment on the first and last frames", "the previous step looked at frame 0 (row 0) and at "
               "frame S - 1 = 10 (row 1): the filters hang over the ends, where alpha is 0 (zero padding)")
def _(t):
    prev = np.zeros((2, 11))
    prev[0, 0] = 1.0
    prev[1, 10] = 1.0
    _check_location(t, *_location_inputs(t.rng, prev=prev))


@location.case("float32 B=3, S=8", "float32 inputs give float32 scores")
def _(t):
    _check_location(t, *_location_inputs(t.rng, B=3, S=8, dtype="float32"))


@location.case("filter wider than the input: R=9, S=4", "a 9-wide filter on 4 frames (short utterances meet "
               "Tacotron's 31-wide filters): still (B, S) scores, every tap beyond the ends reading 0")
def _(t):
    _check_location(t, *_location_inputs(t.rng, S=4, R=9))


@location.case("R = 1, K = 2", "a 1-wide filter: each frame's features are F[:, 0] times its own previous weight")
def _(t):
    _check_location(t, *_location_inputs(t.rng, K=2, R=1))


@location.case("even filter width", "R = 4 has no centre tap: ValueError")
def _(t):
    args = _location_inputs(t.rng, R=4)
    t.raises("ValueError", *args, hint=LS_EVEN_HINT)


def _location_manual(s, h, prev, W, V, U, filters, w, b, *, padding="zeros", flip=False, location=True,
                     bias=True, tanh_after=False, check_even=True):
    """A learner-style implementation in the inputs' dtype, with one thing done as `how` says."""
    K, R = filters.shape
    if check_even and R % 2 == 0:
        raise ValueError(f"the filter width R must be odd, got R = {R}")
    S = prev.shape[-1]
    F = filters[:, ::-1] if flip else filters
    if padding == "zeros":
        left, right = (R - 1) // 2, R - 1 - (R - 1) // 2
        padded = np.pad(prev, ((0, 0), (left, right)))
    elif padding == "causal":
        padded = np.pad(prev, ((0, 0), (R - 1, 0)))
    else:  # circular
        half = (R - 1) // 2
        idx = (np.arange(S + R - 1) - half) % S
        padded = prev[:, idx]
    windows = np.stack([padded[:, r:r + S] for r in range(R)], axis=-1)  # (B, S, R)
    hidden = (s @ W)[:, None, :] + h @ V
    if location:
        hidden = hidden + (windows @ F.T) @ U
    if bias:
        hidden = hidden + b
    return np.tanh(hidden @ w) if tanh_after else np.tanh(hidden) @ w


def _location_mutant(**how):
    return lambda s, h, prev, W, V, U, filters, w, b: _location_manual(s, h, prev, W, V, U, filters, w, b, **how)


location.mutant("np.convolve: flipped filters", LS_FLIP_HINT)(_location_mutant(flip=True))
location.mutant("wrap-around padding", LS_CIRCULAR_HINT)(_location_mutant(padding="circular"))
location.mutant("causal padding (R - 1 zeros on the left)", LS_CAUSAL_HINT)(_location_mutant(padding="causal"))
location.mutant("no location term", LS_NO_LOCATION_HINT)(_location_mutant(location=False))
location.mutant("no bias", LS_NO_BIAS_HINT)(_location_mutant(bias=False))
location.mutant("tanh after w", LS_TANH_AFTER_HINT)(_location_mutant(tanh_after=True))
location.mutant("even width accepted", LS_EVEN_HINT)(_location_mutant(check_even=False))


@location.mutant("float64 output", DTYPE_HINT)
def _(s, h, prev, W, V, U, filters, w, b):
    return _location_manual(*_f64(s, h, prev, W, V, U, filters, w, b))


@location.alternative("np.convolve with the flipped filter, full mode, centre slice")
def _(s, h, prev, W, V, U, filters, w, b):
    K, R = filters.shape
    if R % 2 == 0:
        raise ValueError("R must be odd")
    B, S = prev.shape
    half = (R - 1) // 2
    f = np.zeros((B, S, K), dtype=prev.dtype)
    for i in range(B):
        for k in range(K):
            f[i, :, k] = np.convolve(prev[i], filters[k, ::-1], mode="full")[half:half + S]
    return np.einsum("bsa,a->bs", np.tanh(np.einsum("bd,da->ba", s, W)[:, None, :]
                                          + np.einsum("bsh,ha->bsa", h, V) + f @ U + b), w)


@location.alternative("a loop over the filter taps, shifted copies of the alignment")
def _(s, h, prev, W, V, U, filters, w, b):
    K, R = filters.shape
    if R % 2 == 0:
        raise ValueError("even filter width")
    B, S = prev.shape
    half = R // 2
    f = np.zeros((B, S, K), dtype=prev.dtype)
    for r in range(R):
        offset = r - half  # frame j reads alpha[j + offset]
        lo, hi = max(0, -offset), min(S, S - offset)
        if lo < hi:
            f[:, lo:hi, :] += prev[:, lo + offset:hi + offset, None] * filters[:, r]
    x = s[:, None, :] @ W + h @ V + f @ U + b
    return np.tanh(x) @ w


@location.alternative("sliding_window_view over the padded alignment, float64 inside, cast back")
def _(s, h, prev, W, V, U, filters, w, b):
    K, R = filters.shape
    if not R % 2:
        raise ValueError("odd R only")
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(prev.astype(np.float64), ((0, 0), (R // 2, R // 2))),
                                                       R, axis=-1)  # (B, S, R)
    f = np.einsum("bsr,kr->bsk", windows, filters.astype(np.float64))
    x = (s.astype(np.float64) @ W)[:, None, :] + h.astype(np.float64) @ V + f @ U + b
    return (np.tanh(x) @ w).astype(h.dtype)


# ===================================================================================== gat_layer
gat = Exercise(
    "applications.gat_layer", points=3, reference=ref.gat_layer, deps=SOFTMAX_DEPS,
    demo=lambda rng: ((np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                       np.array([[True, True, False], [True, True, True], [False, True, True]]),
                       np.array([[[1.0, -1.0], [0.5, 1.0]]]), np.array([[1.0, 0.5, -0.5, 1.0]])), {}))

GAT_ALL_NODES_HINT = ("restrict the softmax to the neighbours: a node attends only where adjacency[i] is True "
                      "(masked_softmax(e, adjacency)), not over every node of the graph")
GAT_TRANSPOSED_ADJ_HINT = ("adjacency[i, j] True means node i attends to node j: row i lists i's neighbours; for a "
                           "directed graph adjacency.T is another graph")
GAT_AXIS_HINT = ("normalise over the neighbours j of each node i, the last axis of e (H, N, N): each row of weights "
                 "sums to 1, not each column")
GAT_SWAPPED_A_HINT = ("the first D_out entries of a multiply the attending node's z_i and the last D_out the "
                      "neighbour's z_j: e_ij = a[:D_out] . z_i + a[D_out:] . z_j")
GAT_NO_LEAKY_HINT = ("apply the LeakyReLU to the scores before the softmax: e_ij = LeakyReLU(a^T [z_i || z_j]) with "
                     "slope negative_slope for negative values")
GAT_RELU_HINT = ("use a LeakyReLU, not a ReLU: negative scores are multiplied by negative_slope (0.2), not set to "
                 "0, so neighbours with negative scores still differ")
GAT_SLOPE_HINT = "use the negative_slope argument for the LeakyReLU instead of a fixed 0.2"
GAT_SELF_LOOPS_HINT = ("use the adjacency exactly as given: do not add self-loops (the caller adds np.eye when the "
                       "paper's attention to the node itself is wanted)")
GAT_FULL_ROW_HINT = ("a node with no neighbour gets zero weights and a zero output: filling the non-edges with a large "
                     "negative number (-1e9) gives it uniform weights over all nodes instead")
GAT_INTERLEAVED_HINT = ("concatenate whole heads, head 0 first: out[:, k * D_out:(k + 1) * D_out] is head k; reshape "
                        "(H, N, D_out) -> (N, H, D_out) with transpose(1, 0, 2) before (N, H * D_out), not "
                        "(N, D_out, H)")
GAT_ALWAYS_CONCAT_HINT = "with concat=False average the heads: out.mean(axis=0), (N, D_out)"
GAT_SUM_HEADS_HINT = "with concat=False average the heads (divide by H), do not sum them"
GAT_RAW_H_HINT = ("aggregate the projected features z_j = h_j W[head] (D_out wide), not the raw node features h_j "
                  "(D_in wide)")
GAT_MULTIPLY_HINT = ("mask the scores with np.where(adjacency, e, -np.inf) (or masked_softmax), not e * adjacency: a "
                     "non-edge scored 0 is not excluded, and when every kept score is far below 0 it wins the max "
                     "and the kept exps underflow")


def _graph(rng, N, p_edge=0.4, directed=True, self_loops=True, isolated=()):
    """(N, N) adjacency: every listed node attends to nobody, every other node to at least one other node."""
    adj = rng.random((N, N)) < p_edge
    if not directed:
        adj = np.triu(adj, 1)
        adj = adj | adj.T
    np.fill_diagonal(adj, False)
    for i in range(N):
        if not adj[i].any():
            j = (i + 1 + rng.integers(N - 1)) % N
            adj[i, j] = True
            if not directed:
                adj[j, i] = True
    if directed:  # make sure it is not symmetric: one edge with no reverse edge
        i, j = 0, 1 + rng.integers(N - 1)
        adj[i, j], adj[j, i] = True, False
        if not adj[j].any():
            adj[j, (j + 1) % N if (j + 1) % N != i else (j + 2) % N] = True
    if self_loops:
        adj = adj | np.eye(N, dtype=bool)
    for i in isolated:
        adj[i] = False
    return adj


def _gat_inputs(rng, N=7, D_in=5, D_out=4, H=3, dtype="float64", **graph):
    h = rng.standard_normal((N, D_in))
    W = rng.standard_normal((H, D_in, D_out)) / np.sqrt(D_in)
    a = 1.5 * rng.standard_normal((H, 2 * D_out)) / np.sqrt(D_out)
    return _cast(dtype, h) + (_graph(rng, N, **graph),) + _cast(dtype, W, a)


def _gat_tolerances(h, adjacency, W, a):
    """(rtol of the weights, atol of the output): exp_rtol of the largest score rounding over the edges."""
    dtype = np.asarray(h).dtype
    h, W, a = _f64(h, W, a)
    D_out = W.shape[-1]
    za = np.abs(h) @ np.abs(W)  # (H, N, D_out)
    own = za @ np.abs(a[:, :D_out, None])  # (H, N, 1)
    neighbour = za @ np.abs(a[:, D_out:, None])
    units = 2.0 * (own + neighbour.transpose(0, 2, 1))  # (H, N, N): z's rounding, then the sum's
    units = np.where(np.asarray(adjacency, bool), units, 0.0)
    rtol = exp_rtol(dtype, float(units.max(initial=0.0)))
    table_rtol, table_atol = tolerance(dtype)
    return rtol, table_atol + (rtol - table_rtol) * 2.0 * float(za.max(initial=0.0))


def _check_gat(t, h, adjacency, W, a, what="", **kwargs):
    got = t.call(h, adjacency, W, a, **kwargs)
    out, weights = t.expect_tuple(got, 2)
    want_out, want_weights = ref.gat_layer(h, adjacency, W, a, **kwargs)
    rtol, atol = _gat_tolerances(h, adjacency, W, a)
    require_exact_zeros(t, weights, want_weights.shape, np.broadcast_to(adjacency, want_weights.shape),
                        GAT_FULL_ROW_HINT if not np.asarray(adjacency).any(axis=-1).all() else GAT_ALL_NODES_HINT,
                        what=f"{what}weights (H, N, N)")
    t.expect(weights, want_weights, what=f"{what}weights (H, N, N)", rtol=rtol)
    H, _, D_out = W.shape
    shape = "(N, H * D_out)" if kwargs.get("concat", True) else "(N, D_out)"
    t.expect(out, want_out, what=f"{what}out {shape}", atol=atol)


@gat.case("one head, undirected graph with self-loops", "H=1, N=7 nodes, D_in=5, D_out=4, a symmetric adjacency "
          "that includes every node itself (as Velickovic et al.): output (N, D_out), weights (1, N, N)")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng, H=1, directed=False))


@gat.case("three heads concatenated, directed graph", "H=3 heads concatenated head 0 first (N, H * D_out); an "
          "asymmetric adjacency: row i lists whom node i attends to")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng))


@gat.case("three heads averaged (concat=False)", "the paper's output layer: the mean of the H heads, (N, D_out)")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng, N=6, D_in=3, D_out=5), concat=False)


@gat.case("no self-loops, a node with no neighbour", "the adjacency is used as given: no self-loops are added, "
          "and node 2, which attends to nobody, gets zero weights and a zero output, never NaN")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng, self_loops=False, isolated=(2,)))


@gat.case("negative_slope=0.5 by keyword", "the LeakyReLU uses the slope it is given (scores of both signs)")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng, H=2), negative_slope=0.5)


@gat.case("float32, three heads", "float32 inputs give float32 output and weights")
def _(t):
    _check_gat(t, *_gat_inputs(t.rng, dtype="float32"))


@gat.case("kept scores far below 0, float32", "every edge scores near -400 after the LeakyReLU (a_1 . z_i near "
          "-2000) while non-edges would score 0 if multiplied by the adjacency: non-edges are excluded, not "
          "given a score of 0")
def _(t):
    h, adjacency, W, a = _gat_inputs(t.rng, H=2, directed=True)
    h[:, 0] = 1.0 + 0.01 * h[:, 0]          # a near-constant feature...
    W[:, 0, 0] = 40.0                       # ...that makes z[:, :, 0] near 40 for every node
    W[:, 1:, 0] *= 0.1
    a[:, 0] = -50.0                         # a_1 . z_i near -2000 for every attending node
    a[:, 4] = 0.0                           # the neighbour's half leaves that feature out: spread of order 1
    _check_gat(t, *_cast("float32", h), adjacency, *_cast("float32", W, a))


def _gat_manual(h, adjacency, W, a, negative_slope=0.2, concat=True, *, scores="leaky", swap_a=False,
                keep="adjacency", axis=-1, fill=None, multiply=False, heads="concat", raw=False, slope=None):
    """A learner-style GAT layer in the inputs' dtype, with one thing done as `how` says."""
    H, D_in, D_out = W.shape
    N = h.shape[0]
    z = np.einsum("nd,hde->hne", h, W)
    a1, a2 = (a[:, D_out:], a[:, :D_out]) if swap_a else (a[:, :D_out], a[:, D_out:])
    e = np.einsum("hne,he->hn", z, a1)[:, :, None] + np.einsum("hne,he->hn", z, a2)[:, None, :]
    s = negative_slope if slope is None else slope
    if scores == "leaky":
        e = np.where(e > 0, e, s * e)
    elif scores == "relu":
        e = np.maximum(e, 0)
    adj = np.asarray(adjacency, bool)
    mask = {"adjacency": adj, "all": np.ones_like(adj), "transposed": adj.T,
            "self": adj | np.eye(N, dtype=bool)}[keep]
    mask = np.broadcast_to(mask, e.shape)
    if multiply:
        scored = e * mask
        x = np.where(mask, np.exp(scored - scored.max(axis=-1, keepdims=True)), 0).astype(e.dtype)
        total = x.sum(axis=-1, keepdims=True)
        weights = np.divide(x, total, out=np.zeros_like(x), where=total > 0)
    elif fill is not None:
        weights = _softmax_fill(e, mask, fill, axis=axis)
    else:
        weights = _softmax_masked(e, mask, axis=axis)
    values = np.broadcast_to(h, (H,) + h.shape) if raw else z
    out = weights @ values  # (H, N, width)
    if heads == "interleaved" or (heads == "concat" and concat) or heads == "always":
        if heads == "interleaved" and concat:
            return out.transpose(1, 2, 0).reshape(N, -1), weights
        return out.transpose(1, 0, 2).reshape(N, -1), weights
    if heads == "sum":
        return out.sum(axis=0) if not concat else out.transpose(1, 0, 2).reshape(N, -1), weights
    return out.mean(axis=0), weights


def _gat_mutant(**how):
    def wrong(h, adjacency, W, a, negative_slope=0.2, concat=True):
        return _gat_manual(h, adjacency, W, a, negative_slope, concat, **how)
    return wrong


gat.mutant("softmax over all nodes", GAT_ALL_NODES_HINT)(_gat_mutant(keep="all"))
gat.mutant("adjacency transposed", GAT_TRANSPOSED_ADJ_HINT)(_gat_mutant(keep="transposed"))
gat.mutant("softmax over the attending nodes (axis -2)", GAT_AXIS_HINT)(_gat_mutant(axis=-2))
gat.mutant("halves of a swapped", GAT_SWAPPED_A_HINT)(_gat_mutant(swap_a=True))
gat.mutant("no LeakyReLU", GAT_NO_LEAKY_HINT)(_gat_mutant(scores="none"))
gat.mutant("ReLU instead of LeakyReLU", GAT_RELU_HINT)(_gat_mutant(scores="relu"))
gat.mutant("negative_slope ignored", GAT_SLOPE_HINT)(_gat_mutant(slope=0.2))
gat.mutant("adds self-loops", GAT_SELF_LOOPS_HINT)(_gat_mutant(keep="self"))
gat.mutant("-1e9 fill", GAT_FULL_ROW_HINT)(_gat_mutant(fill=-1e9))
gat.mutant("heads interleaved", GAT_INTERLEAVED_HINT)(_gat_mutant(heads="interleaved"))
gat.mutant("always concatenates", GAT_ALWAYS_CONCAT_HINT)(_gat_mutant(heads="always"))
gat.mutant("sums the heads", GAT_SUM_HEADS_HINT)(_gat_mutant(heads="sum"))
gat.mutant("aggregates h, not z", GAT_RAW_H_HINT)(_gat_mutant(raw=True))
gat.mutant("multiplies the scores by the adjacency", GAT_MULTIPLY_HINT)(_gat_mutant(multiply=True))


@gat.mutant("float64 output", DTYPE_HINT)
def _(h, adjacency, W, a, negative_slope=0.2, concat=True):
    return _gat_manual(*_f64(h), adjacency, *_f64(W, a), negative_slope, concat)


@gat.alternative("a loop over heads and nodes, each node's neighbour list")
def _(h, adjacency, W, a, negative_slope=0.2, concat=True):
    H, _, D_out = W.shape
    N = h.shape[0]
    weights = np.zeros((H, N, N), dtype=h.dtype)
    out = np.zeros((H, N, D_out), dtype=h.dtype)
    for k in range(H):
        z = h @ W[k]  # (N, D_out)
        for i in range(N):
            nbrs = np.flatnonzero(adjacency[i])
            if nbrs.size == 0:
                continue
            e = np.array([a[k] @ np.concatenate([z[i], z[j]]) for j in nbrs], dtype=h.dtype)
            e = np.maximum(e, 0) + negative_slope * np.minimum(e, 0)
            p = np.exp(e - e.max())
            weights[k, i, nbrs] = p / p.sum()
            out[k, i] = weights[k, i, nbrs] @ z[nbrs]
    return (np.concatenate(list(out), axis=1) if concat else out.mean(axis=0)), weights


@gat.alternative("all pairs by broadcasting, -inf bias, NaN rows set to 0")
def _(h, adjacency, W, a, negative_slope=0.2, concat=True):
    H, _, D_out = W.shape
    z = np.einsum("nd,hde->hne", h, W)
    e = (z * a[:, None, :D_out]).sum(-1)[:, :, None] + (z * a[:, None, D_out:]).sum(-1)[:, None, :]
    e = np.where(e < 0, negative_slope * e, e) + np.where(adjacency, 0.0, -np.inf).astype(h.dtype)
    with np.errstate(invalid="ignore"):
        p = np.exp(e - e.max(axis=-1, keepdims=True))
        weights = np.nan_to_num(p / p.sum(axis=-1, keepdims=True), nan=0.0)
    out = np.einsum("hij,hjd->hid", weights, z)
    return (np.hstack(list(out)) if concat else out.sum(axis=0) / H), weights


@gat.alternative("float64 inside, log-sum-exp, cast back")
def _(h, adjacency, W, a, negative_slope=0.2, concat=True):
    H, _, D_out = W.shape
    N = h.shape[0]
    z = h.astype(np.float64) @ W.astype(np.float64)
    e = z @ a[:, :D_out, None].astype(np.float64) + (z @ a[:, D_out:, None].astype(np.float64)).transpose(0, 2, 1)
    e = np.where(e >= 0, e, negative_slope * e)
    keep = np.broadcast_to(adjacency, e.shape)
    kept = np.where(keep, e, -np.inf)
    m = kept.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        lse = m + np.log(np.exp(kept - m).sum(axis=-1, keepdims=True))
    weights = np.where(keep, np.exp(kept - np.where(np.isfinite(lse), lse, 0.0)), 0.0)
    out = weights @ z
    out = out.transpose(1, 0, 2).reshape(N, -1) if concat else out.mean(axis=0)
    return out.astype(h.dtype), weights.astype(h.dtype)


# ====================================================================== target_attention_pooling
din = Exercise(
    "applications.target_attention_pooling", points=2, reference=ref.target_attention_pooling,
    demo=lambda rng: ((np.array([[1.0, 0.0]]), np.array([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]),
                       np.array([[True, True, False]]),
                       {"W1": np.array([[0.5], [0.0], [1.0], [0.0], [-1.0], [0.5], [0.0], [1.0]]),
                        "b1": np.array([0.1]), "alpha": np.array([0.25]), "w2": np.array([2.0]),
                        "b2": 0.5}), {}))

DIN_SOFTMAX_HINT = ("DIN does not normalise the weights: no softmax over the history. The activation unit's outputs "
                    "are used as they are, so a user with more relevant behaviours gets a larger interest vector "
                    "(Zhou et al. 2018 keep this intensity on purpose)")
DIN_SUM_NORM_HINT = ("do not divide the weights by their sum: DIN uses the activation unit's outputs as they are, "
                     "and a duplicated history must double the pooled vector")
DIN_MASK_HINT = "apply the mask: a padded behaviour (mask False) must get weight exactly 0 and contribute nothing"
DIN_MEAN_HINT = ("the pooled vector is the weighted sum over the behaviours, sum_j w_j h_j, not its mean: do not "
                 "divide by the number of behaviours")
DIN_DIFF_HINT = "the third feature block is h_j - c (behaviour minus candidate), not c - h_j"
DIN_ORDER_HINT = ("concatenate the features in the order [h_j, c, h_j - c, h_j * c]: W1's first D rows multiply the "
                  "behaviour, the next D the candidate")
DIN_RELU_HINT = ("the hidden layer is a PReLU: negative values are multiplied by params['alpha'] (one slope per "
                 "unit), not set to 0")
DIN_SIGMOID_HINT = ("the weight is the output unit's value w2 . hidden + b2 as it is: no sigmoid (it is not a "
                    "probability, and DIN does not squash it)")
DIN_WEIGHTS_ZERO_HINT = ("return weights that are exactly 0 where masked: the pooled vector is right, but the "
                         "returned weights still hold the activation unit's outputs for padded behaviours")


def _din_inputs(rng, B=3, S=7, D=4, A=5, dtype="float64", lengths=None):
    candidate = rng.standard_normal((B, D))
    history = rng.standard_normal((B, S, D))
    if lengths is None:
        mask = np.ones((B, S), dtype=bool)
    else:
        mask = np.arange(S)[None, :] < np.asarray(lengths)[:, None]
        history = np.where(mask[..., None], history, 6.0 * history)  # padding that would weigh a lot
    params = {"W1": rng.standard_normal((4 * D, A)) / np.sqrt(4 * D), "b1": 0.3 * rng.standard_normal(A),
              "alpha": rng.uniform(0.1, 0.4, A), "w2": rng.standard_normal(A),
              "b2": 0.2 + 0.3 * rng.random()}  # a Python float: 0-d arrays reach the worker as (1,) arrays
    params = {k: v if k == "b2" else v.astype(dtype) for k, v in params.items()}
    return (*_cast(dtype, candidate, history), mask, params)


def _din_tolerances(candidate, history, mask, params):
    """(atol of the weights, atol of the pooled vector)."""
    dtype = np.asarray(history).dtype
    c, h = _f64(candidate, history)
    W1, b1, w2, b2 = _f64(params["W1"], params["b1"], params["w2"], params["b2"])
    ca = np.broadcast_to(np.abs(c)[:, None, :], h.shape)
    xa = np.concatenate([np.abs(h), ca, np.abs(h) + ca, np.abs(h) * ca], axis=-1)  # (B, S, 4 D)
    units = 2.0 * (xa @ np.abs(W1) + np.abs(b1)) @ np.abs(w2) + abs(float(b2))  # (B, S)
    if mask is not None:
        units = np.where(mask, units, 0.0)
    weights = np.abs(ref.din_weights(c, h, params))
    eps, table_atol = _eps(dtype), tolerance(dtype)[1]
    pooled_units = (units + weights)[..., None] * np.abs(h)  # rounding of each weight, then of each product
    return (table_atol + 8.0 * eps * float(units.max(initial=0.0)),
            table_atol + 8.0 * eps * float(pooled_units.sum(axis=1).max(initial=0.0)))


def _check_din(t, candidate, history, mask, params, what=""):
    got = t.call(candidate, history, mask, params)
    pooled, weights = t.expect_tuple(got, 2)
    want_pooled, want_weights = ref.target_attention_pooling(candidate, history, mask, params)
    atol_w, atol_p = _din_tolerances(candidate, history, mask, params)
    if mask is not None:
        require_exact_zeros(t, weights, want_weights.shape, mask, DIN_WEIGHTS_ZERO_HINT, what=f"{what}weights (B, S)")
    t.expect(weights, want_weights, what=f"{what}weights (B, S)", atol=atol_w)
    t.expect(pooled, want_pooled, what=f"{what}pooled (B, D)", atol=atol_p)
    return pooled, weights


@din.case("float64 B=3, S=7, D=4, A=5, every behaviour kept", "an all-True mask: the weights are the activation "
          "unit's outputs (any sign, not normalised), the pooled vector their weighted sum of the behaviours")
def _(t):
    _check_din(t, *_din_inputs(t.rng))


@din.case("padded histories (lengths 7, 3, 5)", "padded behaviours, six times larger than the real ones, get weight "
          "exactly 0 and contribute nothing")
def _(t):
    _check_din(t, *_din_inputs(t.rng, lengths=[7, 3, 5]))


@din.case("a user with no history", "a row whose mask keeps nothing: zero weights and a zero interest vector, "
          "never NaN")
def _(t):
    _check_din(t, *_din_inputs(t.rng, lengths=[4, 0, 6]))


@din.case("float32", "float32 inputs and parameters give float32 outputs")
def _(t):
    _check_din(t, *_din_inputs(t.rng, B=2, S=9, dtype="float32", lengths=[9, 5]))


@din.case("mask=None", "None keeps every behaviour, the same as an all-True mask")
def _(t):
    candidate, history, _, params = _din_inputs(t.rng, B=2, S=6, D=3, A=4)
    _check_din(t, candidate, history, None, params)


@din.case("a duplicated history doubles the interest", "the same behaviours listed twice (S=5 -> 10): each keeps its "
          "weight and the pooled vector doubles, because nothing is normalised")
def _(t):
    candidate, history, mask, params = _din_inputs(t.rng, B=2, S=5, D=4, A=6, lengths=[5, 3])
    once = _check_din(t, candidate, history, mask, params, what="once: ")
    twice = t.call(candidate, np.concatenate([history, history], axis=1), np.concatenate([mask, mask], axis=1),
                   params)
    pooled2, _ = t.expect_tuple(twice, 2)
    if isinstance(pooled2, np.ndarray) and pooled2.shape == once[0].shape:
        _, atol = _din_tolerances(candidate, history, mask, params)
        t.require(np.allclose(pooled2, 2.0 * once[0], rtol=1e-5, atol=4 * atol),
                  f"with the history listed twice the pooled vector should double: max |pooled(twice) - 2 "
                  f"pooled(once)| = {np.abs(pooled2 - 2.0 * once[0]).max():.3g}", DIN_SUM_NORM_HINT)
    t.expect(twice[1], np.concatenate([once[1], once[1]], axis=1), what="twice: weights (B, 2 S)",
             atol=_din_tolerances(candidate, history, mask, params)[0])


def _din_manual(candidate, history, mask, params, *, normalise=None, ignore_mask=False, mean=False, diff="h-c",
                order="hc", activation="prelu", sigmoid=False, zero_weights=True):
    """A learner-style DIN pooling in the inputs' dtype, with one thing done as `how` says."""
    c = np.broadcast_to(candidate[:, None, :], history.shape)
    d = history - c if diff == "h-c" else c - history
    first = [history, c] if order == "hc" else [c, history]
    x = np.concatenate(first + [d, history * c], axis=-1)
    pre = x @ params["W1"] + params["b1"]
    act = np.where(pre > 0, pre, params["alpha"] * pre) if activation == "prelu" else np.maximum(pre, 0)
    w = act @ params["w2"] + params["b2"]
    if sigmoid:
        w = 1 / (1 + np.exp(-w))
    keep = np.ones(w.shape, bool) if (mask is None or ignore_mask) else np.asarray(mask, bool)
    if normalise == "softmax":
        w = _softmax_masked(w, keep)
    elif normalise == "sum":
        w = np.where(keep, w, 0).astype(w.dtype)
        total = w.sum(axis=-1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    used = np.where(keep, w, 0).astype(w.dtype)
    pooled = np.einsum("bs,bsd->bd", used, history)
    if mean:
        count = keep.sum(axis=-1, keepdims=True)
        pooled = np.divide(pooled, count, out=np.zeros_like(pooled), where=count > 0).astype(pooled.dtype)
    return pooled, (used if zero_weights else w)


def _din_mutant(**how):
    return lambda candidate, history, mask, params: _din_manual(candidate, history, mask, params, **how)


din.mutant("softmax over the history", DIN_SOFTMAX_HINT)(_din_mutant(normalise="softmax"))
din.mutant("weights divided by their sum", DIN_SUM_NORM_HINT)(_din_mutant(normalise="sum"))
din.mutant("ignores the mask", DIN_MASK_HINT)(_din_mutant(ignore_mask=True))
din.mutant("mean instead of sum", DIN_MEAN_HINT)(_din_mutant(mean=True))
din.mutant("c - h instead of h - c", DIN_DIFF_HINT)(_din_mutant(diff="c-h"))
din.mutant("features [c, h, ...]", DIN_ORDER_HINT)(_din_mutant(order="ch"))
din.mutant("ReLU instead of PReLU", DIN_RELU_HINT)(_din_mutant(activation="relu"))
din.mutant("sigmoid on the weights", DIN_SIGMOID_HINT)(_din_mutant(sigmoid=True))
din.mutant("masked weights returned", DIN_WEIGHTS_ZERO_HINT)(_din_mutant(zero_weights=False))


@din.mutant("float64 output", DTYPE_HINT)
def _(candidate, history, mask, params):
    return _din_manual(*_f64(candidate, history), mask, {k: np.asarray(v, np.float64) for k, v in params.items()})


@din.alternative("W1 split into four blocks, a projection per block")
def _(candidate, history, mask, params):
    D = history.shape[-1]
    W1 = params["W1"]
    c = candidate[:, None, :]
    pre = (history @ W1[:D] + c @ W1[D:2 * D] + (history - c) @ W1[2 * D:3 * D] + (history * c) @ W1[3 * D:]
           + params["b1"])
    pre = np.maximum(pre, 0) + params["alpha"] * np.minimum(pre, 0)
    weights = pre @ params["w2"] + params["b2"]
    if mask is not None:
        weights = weights * mask
    return np.einsum("bs,bsd->bd", weights, history), weights


@din.alternative("a loop over users and behaviours")
def _(candidate, history, mask, params):
    B, S, D = history.shape
    weights = np.zeros((B, S), dtype=history.dtype)
    pooled = np.zeros((B, D), dtype=history.dtype)
    for i in range(B):
        for j in range(S):
            if mask is not None and not mask[i, j]:
                continue
            x = np.concatenate([history[i, j], candidate[i], history[i, j] - candidate[i],
                                history[i, j] * candidate[i]])
            hid = x @ params["W1"] + params["b1"]
            hid = np.where(hid < 0, params["alpha"] * hid, hid)
            weights[i, j] = hid @ params["w2"] + params["b2"]
            pooled[i] += weights[i, j] * history[i, j]
    return pooled, weights


# =================================================================== hierarchical_attention_pool
han = Exercise(
    "applications.hierarchical_attention_pool", points=3, reference=ref.hierarchical_attention_pool,
    deps=SOFTMAX_DEPS,
    demo=lambda rng: ((np.array([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 0.0]]]]),
                       {"W": np.array([[1.0, 0.0], [0.0, 1.0]]), "b": np.array([0.0, 0.5]), "u": np.array([1.0, -1.0])},
                       {"W": np.array([[0.5], [1.0]]), "b": np.array([0.0]), "u": np.array([2.0])}),
                      {"mask": np.array([[[True, True], [True, False]]])}))

HAN_FLAT_HINT = ("attend in two levels: a softmax over the T words of each sentence (word params) gives N sentence "
                 "vectors, then a softmax over the N sentences (sentence params); one softmax over all N * T words "
                 "of the document is flat attention")
HAN_SWAPPED_HINT = ("use word_params at the word level and sentence_params at the sentence level: each level has "
                    "its own W, b and context vector u")
HAN_NO_TANH_HINT = "each level scores tanh(x W + b) . u: keep the tanh"
HAN_WORD_AXIS_HINT = ("the word-level softmax runs over the T words of a sentence (the last axis of the (B, N, T) "
                      "scores), not over the sentences")
HAN_EMPTY_SENTENCE_HINT = ("a sentence with no real word is padding at the sentence level too: mask it there with "
                           "mask.any(axis=-1) (B, N), or its zero vector still takes sentence weight")
HAN_WORD_MASK_HINT = "apply the word mask: a padded word (mask False) gets word weight exactly 0"
HAN_MEAN_SENTENCES_HINT = ("attend over the sentences too (sentence params, a softmax over N): averaging the "
                           "sentence vectors gives every sentence the same weight")
HAN_NO_BIAS_HINT = "add each level's bias inside the tanh: tanh(x W + b) . u"
HAN_FULL_ROW_HINT = ("a padding sentence (or an empty document) gets zero weights, never uniform ones: filling masked "
                     "scores with -1e9 spreads a fully masked row evenly; use masked_softmax")


def _han_inputs(rng, B=2, N=3, T=5, D=4, A_w=6, A_s=7, dtype="float64"):
    x = rng.standard_normal((B, N, T, D))
    word = {"W": rng.standard_normal((D, A_w)) / np.sqrt(D), "b": 0.5 * rng.standard_normal(A_w),
            "u": 1.5 * rng.standard_normal(A_w)}
    sentence = {"W": 2.0 * rng.standard_normal((D, A_s)) / np.sqrt(D), "b": 0.5 * rng.standard_normal(A_s),
                "u": 1.5 * rng.standard_normal(A_s)}
    cast = lambda p: {k: v.astype(dtype) for k, v in p.items()}  # noqa: E731
    return x.astype(dtype), cast(word), cast(sentence)


def _han_mask(rng, B, N, T, empty_sentences=(), empty_documents=()):
    """(B, N, T) word mask: every sentence keeps a prefix of 1..T words, except those listed."""
    lengths = rng.integers(1, T + 1, size=(B, N))
    lengths[0, rng.integers(N)] = T - 1 if T > 1 else 1  # at least one padded word
    mask = np.arange(T) < lengths[..., None]
    for b, n in empty_sentences:
        mask[b, n] = False
    for b in empty_documents:
        mask[b] = False
    return mask


def _han_tolerances(x, word_params, sentence_params, mask):
    """(rtol words, rtol sentences, atol document) from the additive rounding bounds of the two levels."""
    dtype = np.asarray(x).dtype
    x = np.asarray(x, np.float64)
    keep = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask, bool)
    eps, (table_rtol, table_atol) = _eps(dtype), tolerance(dtype)
    Ww, bw, uw = _f64(word_params["W"], word_params["b"], word_params["u"])
    units_w = _additive_units(x @ Ww + bw, np.abs(x) @ np.abs(Ww) + np.abs(bw), uw)
    rtol_w = exp_rtol(dtype, float(np.where(keep, units_w, 0).max(initial=0.0)))
    word_weights = ref.hierarchical_attention_pool(x, word_params, sentence_params, mask)[2]  # float64
    sentences = np.einsum("bnt,bntd->bnd", word_weights, x)  # (B, N, D)
    x_max = float(np.abs(x).max(initial=0.0))
    sentence_error = 2.0 * rtol_w * x_max  # absolute error of a sentence vector entry
    Ws, bs, us = _f64(sentence_params["W"], sentence_params["b"], sentence_params["u"])
    units_s = _additive_units(sentences @ Ws + bs, np.abs(sentences) @ np.abs(Ws) + np.abs(bs), us)
    carried = float(np.abs(us) @ np.abs(Ws).sum(axis=0)) * sentence_error  # the sentence vectors' error, in score
    rtol_s = exp_rtol(dtype, float(np.where(keep.any(-1), units_s, 0).max(initial=0.0))) + 8.0 * carried
    atol = table_atol + (rtol_s - table_rtol) * x_max + 2.0 * sentence_error
    return rtol_w, rtol_s, atol


def _check_han(t, x, word_params, sentence_params, mask=None):
    kwargs = {} if mask is None else {"mask": mask}
    got = t.call(x, word_params, sentence_params, **kwargs)
    document, sentence_weights, word_weights = t.expect_tuple(got, 3)
    want_doc, want_sw, want_ww = ref.hierarchical_attention_pool(x, word_params, sentence_params, mask)
    rtol_w, rtol_s, atol = _han_tolerances(x, word_params, sentence_params, mask)
    if mask is not None:
        require_exact_zeros(t, word_weights, want_ww.shape, mask, HAN_WORD_MASK_HINT, what="word_weights (B, N, T)")
        require_exact_zeros(t, sentence_weights, want_sw.shape, np.asarray(mask).any(-1), HAN_EMPTY_SENTENCE_HINT,
                            what="sentence_weights (B, N)")
    t.expect(word_weights, want_ww, what="word_weights (B, N, T)", rtol=rtol_w)
    t.expect(sentence_weights, want_sw, what="sentence_weights (B, N)", rtol=rtol_s)
    t.expect(document, want_doc, what="document (B, D)", atol=atol)


@han.case("float64 B=2, N=3, T=5, D=4, A_w=6, A_s=7, no mask", "two documents of three five-word sentences: word "
          "weights per sentence, sentence weights per document, the document vector")
def _(t):
    _check_han(t, *_han_inputs(t.rng))


@han.case("padded words", "sentences of different lengths (a (B, N, T) mask): padded words get weight exactly 0")
def _(t):
    x, wp, sp = _han_inputs(t.rng, B=3, N=4, T=6)
    _check_han(t, x, wp, sp, mask=_han_mask(t.rng, 3, 4, 6))


@han.case("a padding sentence", "document 0's sentence 1 has no real word: its word weights are all 0 and it gets "
          "sentence weight 0; the other sentences share the document")
def _(t):
    x, wp, sp = _han_inputs(t.rng)
    _check_han(t, x, wp, sp, mask=_han_mask(t.rng, 2, 3, 5, empty_sentences=[(0, 1)]))


@han.case("an empty document", "document 1 has no real word: zero word and sentence weights and a zero document "
          "vector, never NaN")
def _(t):
    x, wp, sp = _han_inputs(t.rng, B=3)
    _check_han(t, x, wp, sp, mask=_han_mask(t.rng, 3, 3, 5, empty_documents=[1]))


@han.case("float32", "float32 inputs and parameters give float32 outputs")
def _(t):
    x, wp, sp = _han_inputs(t.rng, dtype="float32")
    _check_han(t, x, wp, sp, mask=_han_mask(t.rng, 2, 3, 5))


@han.case("A_w = A_s = 5", "both levels with the same hidden width, so word and sentence parameters fit each "
          "other's place: only the right ones give the right weights")
def _(t):
    _check_han(t, *_han_inputs(t.rng, A_w=5, A_s=5))


@han.case("N = 1, T = 1", "a one-word document: both weights are 1 and the document vector is that word's state")
def _(t):
    _check_han(t, *_han_inputs(t.rng, B=2, N=1, T=1, D=3))


def _han_manual(x, word_params, sentence_params, mask=None, *, flat=False, swap=False, tanh=True, word_axis=-1,
                sentence_mask=True, word_mask=True, mean_sentences=False, bias=True, fill=None):
    """A learner-style HAN pooling in the inputs' dtype, with one thing done as `how` says."""
    wp, sp = (sentence_params, word_params) if swap else (word_params, sentence_params)
    keep = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask, bool)

    def scores(items, p):
        pre = items @ p["W"] + (p["b"] if bias else 0)
        return (np.tanh(pre) if tanh else pre) @ p["u"]

    def softmax(s, k, axis=-1):
        return _softmax_masked(s, k, axis) if fill is None else _softmax_fill(s, k, fill, axis)

    B, N, T, D = x.shape
    sw = scores(x, wp)
    if flat:
        flat_w = softmax(sw.reshape(B, N * T), (keep if word_mask else np.ones_like(keep)).reshape(B, N * T))
        word_weights = flat_w.reshape(B, N, T)
        sentence_weights = word_weights.sum(axis=-1)
        document = np.einsum("bnt,bntd->bd", word_weights, x)
        return document, sentence_weights, word_weights
    word_weights = softmax(sw, keep if word_mask else np.ones_like(keep), axis=word_axis)
    sentences = np.einsum("bnt,bntd->bnd", word_weights, x)
    s_keep = keep.any(-1) if sentence_mask else np.ones(keep.shape[:-1], bool)
    if mean_sentences:
        count = s_keep.sum(-1, keepdims=True)
        sentence_weights = np.divide(s_keep.astype(x.dtype), count, out=np.zeros(s_keep.shape, x.dtype),
                                     where=count > 0).astype(x.dtype)
    else:
        sentence_weights = softmax(scores(sentences, sp), s_keep)
    document = np.einsum("bn,bnd->bd", sentence_weights, sentences)
    return document, sentence_weights, word_weights


def _han_mutant(**how):
    def wrong(word_states, word_params, sentence_params, mask=None):
        return _han_manual(word_states, word_params, sentence_params, mask, **how)
    return wrong


han.mutant("flat attention over all words", HAN_FLAT_HINT)(_han_mutant(flat=True))
han.mutant("word and sentence parameters swapped", HAN_SWAPPED_HINT)(_han_mutant(swap=True))
han.mutant("no tanh", HAN_NO_TANH_HINT)(_han_mutant(tanh=False))
han.mutant("word softmax over the sentences", HAN_WORD_AXIS_HINT)(_han_mutant(word_axis=-2))
han.mutant("padding sentences take sentence weight", HAN_EMPTY_SENTENCE_HINT)(_han_mutant(sentence_mask=False))
han.mutant("ignores the word mask", HAN_WORD_MASK_HINT)(_han_mutant(word_mask=False))
han.mutant("mean of the sentence vectors", HAN_MEAN_SENTENCES_HINT)(_han_mutant(mean_sentences=True))
han.mutant("no bias", HAN_NO_BIAS_HINT)(_han_mutant(bias=False))
han.mutant("-1e9 fill", HAN_FULL_ROW_HINT)(_han_mutant(fill=-1e9))


@han.mutant("float64 output", DTYPE_HINT)
def _(word_states, word_params, sentence_params, mask=None):
    def f64(params):
        return {k: np.asarray(v, np.float64) for k, v in params.items()}

    return _han_manual(np.asarray(word_states, np.float64), f64(word_params), f64(sentence_params), mask)


@han.alternative("sentences flattened to (B * N, T, D), -inf bias, NaN rows set to 0")
def _(word_states, word_params, sentence_params, mask=None):
    B, N, T, D = word_states.shape
    keep = np.ones((B, N, T), bool) if mask is None else mask

    def pool(items, k, p):  # items (M, n, D), k (M, n)
        s = np.tanh(items @ p["W"] + p["b"]) @ p["u"] + np.where(k, 0.0, -np.inf).astype(items.dtype)
        with np.errstate(invalid="ignore"):
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            w = np.nan_to_num(e / e.sum(axis=-1, keepdims=True), nan=0.0)
        return np.einsum("mn,mnd->md", w, items), w

    sentences, word_weights = pool(word_states.reshape(B * N, T, D), keep.reshape(B * N, T), word_params)
    document, sentence_weights = pool(sentences.reshape(B, N, D), keep.any(-1), sentence_params)
    return document, sentence_weights, word_weights.reshape(B, N, T)


@han.alternative("a loop over documents and sentences, float64 inside, cast back")
def _(word_states, word_params, sentence_params, mask=None):
    B, N, T, D = word_states.shape
    keep = np.ones((B, N, T), bool) if mask is None else mask
    x = word_states.astype(np.float64)

    def level(items, k, p):
        w = np.zeros(len(items))
        if k.any():
            s = np.tanh(items[k] @ p["W"].astype(np.float64) + p["b"]) @ p["u"].astype(np.float64)
            w[k] = np.exp(s - np.logaddexp.reduce(s))
        return w @ items, w

    doc, sw, ww = np.zeros((B, D)), np.zeros((B, N)), np.zeros((B, N, T))
    for i in range(B):
        sent = np.zeros((N, D))
        for n in range(N):
            sent[n], ww[i, n] = level(x[i, n], keep[i, n], word_params)
        doc[i], sw[i] = level(sent, keep[i].any(-1), sentence_params)
    dt = word_states.dtype
    return doc.astype(dt), sw.astype(dt), ww.astype(dt)


# ================================================================================== co_attention
coatt = Exercise(
    "applications.co_attention", points=3, reference=ref.co_attention, deps=SOFTMAX_DEPS,
    demo=lambda rng: ((np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]])), {}))

CO_GLOBAL_HINT = ("normalise each row, not the whole matrix: q_weights is the affinity's softmax over S (one "
                  "distribution per question word), d_weights the transposed affinity's softmax over L")
CO_TRANSPOSED_HINT = ("d_weights is not q_weights transposed: take the softmax of the transposed affinity (S, L) "
                      "over L, so each document word's weights over the question sum to 1")
CO_ORDER_HINT = ("concatenate the question states first: d_context = d_weights @ [q_states, q_context], question "
                 "states in the first D columns")
CO_SCALED_HINT = ("the co-attention affinity is the plain dot product q . d (Xiong et al. 2017): no 1/sqrt(D) scale "
                  "(that belongs to the Transformer's scaled dot-product attention)")
CO_IGNORES_MASK_HINT = ("apply the masks: a padded document word gets 0 in q_weights and a padded question word 0 in "
                        "d_weights")
CO_SWAPPED_MASKS_HINT = ("mask the side being attended to: q_weights (over the document) uses d_mask, d_weights "
                         "(over the question) uses q_mask")
CO_OVERFLOW_HINT = ("subtract each row's max before exp (or use masked_softmax): large affinities overflow exp and "
                    "give inf / inf = NaN")
CO_NO_SUMMARY_HINT = ("d_context reads both the question and its document summaries: d_weights @ [q_states, "
                      "q_context], (..., S, 2 D), not d_weights @ q_states")
CO_FULL_ROW_HINT = ("when the side being attended to is all padding, the weights are zeros and the context is zero: "
                    "filling masked scores with -1e9 gives uniform weights instead")


def _co_inputs(rng, lead=(2,), L=5, S=7, D=4, dtype="float64", scale=None):
    scale = D ** -0.25 if scale is None else scale  # affinities of unit scale
    q = scale * rng.standard_normal(tuple(lead) + (L, D))
    d = scale * rng.standard_normal(tuple(lead) + (S, D))
    return _cast(dtype, q, d)


def _co_masks(rng, lead, L, S, empty_q=(), empty_d=()):
    qm = np.stack([keep_pattern(rng, L) for _ in range(int(np.prod(lead)))]).reshape(tuple(lead) + (L,))
    dm = np.stack([keep_pattern(rng, S) for _ in range(int(np.prod(lead)))]).reshape(tuple(lead) + (S,))
    for i in empty_q:
        qm[i] = False
    for i in empty_d:
        dm[i] = False
    return qm, dm


def _co_tolerances(q, d, q_mask, d_mask):
    """(rtol of both weights, atol of q_context, atol of d_context)."""
    dtype = np.asarray(q).dtype
    qa, da = (np.abs(np.asarray(a, np.float64)) for a in (q, d))
    units = qa @ np.swapaxes(da, -1, -2)  # (..., L, S)
    keep = np.ones(units.shape, bool)
    if q_mask is not None:
        keep = keep & np.asarray(q_mask, bool)[..., :, None]
    if d_mask is not None:
        keep = keep & np.asarray(d_mask, bool)[..., None, :]
    rtol = exp_rtol(dtype, float(np.where(keep, units, 0).max(initial=0.0)))
    table_rtol, table_atol = tolerance(dtype)
    atol_q = table_atol + (rtol - table_rtol) * float(da.max(initial=0.0))
    atol_d = table_atol + (rtol - table_rtol) * float(max(qa.max(initial=0.0), da.max(initial=0.0))) + atol_q
    return rtol, atol_q, atol_d


def _check_co(t, q, d, q_mask=None, d_mask=None):
    kwargs = {}
    if q_mask is not None:
        kwargs["q_mask"] = q_mask
    if d_mask is not None:
        kwargs["d_mask"] = d_mask
    got = t.call(q, d, **kwargs)
    q_context, d_context, q_weights, d_weights = t.expect_tuple(got, 4)
    want = ref.co_attention(q, d, q_mask, d_mask)
    rtol, atol_q, atol_d = _co_tolerances(q, d, q_mask, d_mask)
    lead, L, S = q.shape[:-2], q.shape[-2], d.shape[-2]
    if d_mask is not None:
        require_exact_zeros(t, q_weights, want[2].shape, np.asarray(d_mask)[..., None, :], CO_IGNORES_MASK_HINT,
                            what="q_weights (..., L, S)")
    if q_mask is not None:
        require_exact_zeros(t, d_weights, want[3].shape, np.asarray(q_mask)[..., None, :], CO_IGNORES_MASK_HINT,
                            what="d_weights (..., S, L)")
    t.expect(q_weights, want[2], what="q_weights (..., L, S)", rtol=rtol)
    t.expect(d_weights, want[3], what="d_weights (..., S, L)", rtol=rtol)
    t.expect(q_context, want[0], what="q_context (..., L, D)", atol=atol_q)
    t.expect(d_context, want[1], what="d_context (..., S, 2 D)", atol=atol_d)


@coatt.case("float64 B=2, L=5, S=7, D=4, no masks", "one affinity matrix (L, S) read both ways: q_weights over the "
            "document, d_weights over the question, and the two contexts")
def _(t):
    _check_co(t, *_co_inputs(t.rng))


@coatt.case("padding masks on both sides", "padded document words get 0 in q_weights, padded question words 0 in "
            "d_weights")
def _(t):
    q, d = _co_inputs(t.rng, lead=(3,), L=6, S=9)
    _check_co(t, q, d, *_co_masks(t.rng, (3,), 6, 9))


@coatt.case("an empty document and an empty question", "batch element 1 has no document word: zero q_weights and "
            "q_context; element 2 has no question word: zero d_weights and d_context; never NaN")
def _(t):
    q, d = _co_inputs(t.rng, lead=(3,))
    _check_co(t, q, d, *_co_masks(t.rng, (3,), 5, 7, empty_q=[2], empty_d=[1]))


@coatt.case("float32 with masks", "float32 inputs give float32 outputs")
def _(t):
    q, d = _co_inputs(t.rng, dtype="float32")
    _check_co(t, q, d, *_co_masks(t.rng, (2,), 5, 7))


@coatt.case("unbatched (L, D) and (S, D)", "no leading dimension: L=3 question words, S=8 document words, D=6")
def _(t):
    _check_co(t, *_co_inputs(t.rng, lead=(), L=3, S=8, D=6))


@coatt.case("two leading dims (2, 3)", "any leading dims are batch dims: q (2, 3, 5, 4), d (2, 3, 7, 4), masks "
            "(2, 3, 5) and (2, 3, 7)")
def _(t):
    q, d = _co_inputs(t.rng, lead=(2, 3))
    _check_co(t, q, d, *_co_masks(t.rng, (2, 3), 5, 7))


@coatt.case("L = S = 6 with masks", "a question as long as the document: masks and transposes that would fail "
            "on shapes otherwise must be the right ones")
def _(t):
    q, d = _co_inputs(t.rng, lead=(2,), L=6, S=6)
    _check_co(t, q, d, *_co_masks(t.rng, (2,), 6, 6))


@coatt.case("large affinities, float32", "affinities up to several hundred (long, confident states): the softmaxes "
            "stay finite")
def _(t):
    q, d = _co_inputs(t.rng, scale=12.0)
    _check_co(t, q.astype(np.float32), d.astype(np.float32))


def _co_manual(q, d, q_mask=None, d_mask=None, *, mode="rows", order="qc", scale=False, ignore_masks=False,
               swap_masks=False, naive=False, summary=True, fill=None):
    """A learner-style co-attention in the inputs' dtype, with one thing done as `how` says."""
    A = q @ np.swapaxes(d, -1, -2)
    if scale:
        A = A / np.sqrt(q.shape[-1]).astype(q.dtype)
    if swap_masks:  # each mask used on the other side (only the L = S case lets that run)
        q_mask, d_mask = d_mask, q_mask
    qm = np.ones(q.shape[:-1], bool) if (q_mask is None or ignore_masks) else np.asarray(q_mask, bool)
    dm = np.ones(d.shape[:-1], bool) if (d_mask is None or ignore_masks) else np.asarray(d_mask, bool)
    keep_q = np.broadcast_to(dm[..., None, :], A.shape)
    keep_d = np.broadcast_to(qm[..., None, :], np.swapaxes(A, -1, -2).shape)

    def softmax(x, keep):
        if naive:
            with np.errstate(over="ignore", invalid="ignore"):
                e = np.where(keep, np.exp(x), 0).astype(x.dtype)
                return e / e.sum(axis=-1, keepdims=True)
        return _softmax_masked(x, keep) if fill is None else _softmax_fill(x, keep, fill)

    if mode == "global":
        lead = A.shape[:-2]
        flat = A.reshape(lead + (-1,))
        keep = (np.broadcast_to(qm[..., :, None], A.shape) & keep_q).reshape(lead + (-1,))
        qw = softmax(flat, keep).reshape(A.shape)
        dw = np.swapaxes(qw, -1, -2)
    else:
        qw = softmax(A, keep_q)
        dw = np.swapaxes(qw, -1, -2) if mode == "transposed" else softmax(np.swapaxes(A, -1, -2), keep_d)
    qc = qw @ d
    if not summary:
        return qc, dw @ q, qw, dw
    parts = [q, qc] if order == "qc" else [qc, q]
    return qc, dw @ np.concatenate(parts, axis=-1), qw, dw


def _co_mutant(**how):
    def wrong(q_states, d_states, q_mask=None, d_mask=None):
        return _co_manual(q_states, d_states, q_mask, d_mask, **how)
    return wrong


coatt.mutant("one softmax over the whole affinity", CO_GLOBAL_HINT)(_co_mutant(mode="global"))
coatt.mutant("d_weights = q_weights transposed", CO_TRANSPOSED_HINT)(_co_mutant(mode="transposed"))
coatt.mutant("[q_context, q_states] order", CO_ORDER_HINT)(_co_mutant(order="cq"))
coatt.mutant("affinity scaled by 1/sqrt(D)", CO_SCALED_HINT)(_co_mutant(scale=True))
coatt.mutant("ignores the masks", CO_IGNORES_MASK_HINT)(_co_mutant(ignore_masks=True))
coatt.mutant("masks swapped", CO_SWAPPED_MASKS_HINT)(_co_mutant(swap_masks=True))
coatt.mutant("exp without the max shift", CO_OVERFLOW_HINT)(_co_mutant(naive=True))
coatt.mutant("d_context without the summaries", CO_NO_SUMMARY_HINT)(_co_mutant(summary=False))
coatt.mutant("-1e9 fill", CO_FULL_ROW_HINT)(_co_mutant(fill=-1e9))


@coatt.mutant("float64 output", DTYPE_HINT)
def _(q_states, d_states, q_mask=None, d_mask=None):
    return _co_manual(*_f64(q_states, d_states), q_mask, d_mask)


@coatt.alternative("einsum, -inf bias, NaN rows set to 0")
def _(q_states, d_states, q_mask=None, d_mask=None):
    A = np.einsum("...ld,...sd->...ls", q_states, d_states)
    zero = np.zeros((), dtype=A.dtype)

    def soft(x, keep):
        if keep is not None:
            x = x + np.where(keep, zero, -np.inf).astype(x.dtype)[..., None, :]
        with np.errstate(invalid="ignore"):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return np.nan_to_num(e / e.sum(axis=-1, keepdims=True), nan=0.0)

    qw = soft(A, d_mask)
    dw = soft(np.einsum("...ls->...sl", A), q_mask)
    qc = np.einsum("...ls,...sd->...ld", qw, d_states)
    dc = np.concatenate([np.einsum("...sl,...ld->...sd", dw, q_states), np.einsum("...sl,...ld->...sd", dw, qc)], -1)
    return qc, dc, qw, dw


@coatt.alternative("leading dims flattened, one matrix at a time, log-sum-exp")
def _(q_states, d_states, q_mask=None, d_mask=None):
    lead, (L, D), S = q_states.shape[:-2], q_states.shape[-2:], d_states.shape[-2]
    q, d = q_states.reshape(-1, L, D), d_states.reshape(-1, S, D)
    qm = np.ones((len(q), L), bool) if q_mask is None else np.asarray(q_mask).reshape(-1, L)
    dm = np.ones((len(q), S), bool) if d_mask is None else np.asarray(d_mask).reshape(-1, S)

    def soft(x, keep):  # x (n, m), keep (m,)
        out = np.zeros_like(x)
        if keep.any():
            k = x[:, keep]
            out[:, keep] = np.exp(k - np.logaddexp.reduce(k, axis=-1, keepdims=True))
        return out

    outs = [[], [], [], []]
    for i in range(len(q)):
        A = q[i] @ d[i].T
        qw, dw = soft(A, dm[i]), soft(A.T, qm[i])
        qc = qw @ d[i]
        for store, value in zip(outs, (qc, dw @ np.hstack([q[i], qc]), qw, dw)):
            store.append(value)
    shapes = ((L, D), (S, 2 * D), (L, S), (S, L))
    return tuple(np.stack(o).reshape(lead + shape) for o, shape in zip(outs, shapes))


EXERCISES = [location, gat, din, han, coatt]
