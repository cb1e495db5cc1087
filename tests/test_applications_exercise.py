"""applications (notebook 11): the NumPy references cross-checked by independent PyTorch implementations,
properties the exercises promise, and verdicts that do not depend on the seed.

PyTorch has no built-in for these five mechanisms (and torch_geometric is not a dependency), so each
reference is checked against a PyTorch re-implementation written here from the papers, in float64:

* location_sensitive_scores: F.conv1d with padding (R - 1) // 2 (a cross-correlation, as Chorowski et al.'s
  models are built), then the additive score;
* gat_layer: message passing over an edge list, the softmax per destination node done with
  scatter_reduce("amax") and index_add_ (how graph libraries compute it), never a dense mask;
* target_attention_pooling: the activation unit as F.linear layers with a PReLU, padding zeroed;
* hierarchical_attention_pool: masked_fill + torch.softmax at both levels, empty rows set to zero;
* co_attention: torch.matmul over the leading dims, masked_fill + torch.softmax both ways.

The catalogue-wide promises (every mutant loses points and is named, alternatives pass at 40 seeds) are in
tests/test_mutants.py.
"""
import subprocess
import sys

import numpy as np
import pytest

from autograde import registry
from autograde.framework import Context
from autograde.references import applications as ref
from autograde.runner import InProcessBackend, grade_with_backend
from conftest import ROOT, solutions_package

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

MODULE = "applications"


def _t(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _masked_softmax(scores, keep, dim=-1):
    """torch.softmax over the kept entries; a row with nothing kept is all zeros (torch gives NaN there)."""
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=dim)
    return torch.nan_to_num(weights, nan=0.0)


# ----------------------------------------------------------------------------- PyTorch versions
def torch_location_scores(s, h, prev, W, V, U, filters, w, b):
    s, h, prev, W, V, U, filters, w, b = map(_t, (s, h, prev, W, V, U, filters, w, b))
    R = filters.shape[-1]
    f = F.conv1d(prev[:, None, :], filters[:, None, :], padding=(R - 1) // 2).transpose(1, 2)  # (B, S, K)
    return (torch.tanh((s @ W)[:, None, :] + h @ V + f @ U + b) @ w).numpy()


def torch_gat(h, adjacency, W, a, negative_slope=0.2, concat=True):
    """Edge-list GAT: e per edge (i <- j), softmax per destination i with scatter max and index_add."""
    h, W, a = _t(h), _t(W), _t(a)
    H, _, D_out = W.shape
    N = h.shape[0]
    dst, src = (torch.as_tensor(v) for v in np.nonzero(np.asarray(adjacency)))  # edge: node dst attends to src
    outs, weights = [], torch.zeros(H, N, N, dtype=torch.float64)
    for k in range(H):
        z = h @ W[k]                                                    # (N, D_out)
        e = F.leaky_relu(z[dst] @ a[k, :D_out] + z[src] @ a[k, D_out:], negative_slope)  # (E,)
        top = torch.full((N,), -torch.inf, dtype=torch.float64).scatter_reduce(0, dst, e, "amax")
        p = torch.exp(e - top[dst])
        total = torch.zeros(N, dtype=torch.float64).index_add_(0, dst, p)
        alpha = p / total[dst]
        weights[k, dst, src] = alpha
        outs.append(torch.zeros(N, D_out, dtype=torch.float64).index_add_(0, dst, alpha[:, None] * z[src]))
    out = torch.cat(outs, dim=1) if concat else torch.stack(outs).mean(dim=0)
    return out.numpy(), weights.numpy()


def torch_din(candidate, history, mask, params):
    c, h = _t(candidate), _t(history)
    cc = c[:, None, :].expand_as(h)
    x = torch.cat([h, cc, h - cc, h * cc], dim=-1)
    hidden = F.linear(x, _t(params["W1"]).T, _t(params["b1"]))
    hidden = torch.where(hidden > 0, hidden, _t(params["alpha"]) * hidden)  # PReLU, one slope per unit
    weights = F.linear(hidden, _t(params["w2"])[None, :], _t([params["b2"]])).squeeze(-1)
    if mask is not None:
        weights = weights.masked_fill(~torch.as_tensor(mask), 0.0)
    return torch.einsum("bs,bsd->bd", weights, h).numpy(), weights.numpy()


def torch_han(word_states, word_params, sentence_params, mask=None):
    x = _t(word_states)
    keep = torch.ones(x.shape[:-1], dtype=torch.bool) if mask is None else torch.as_tensor(mask)

    def level(items, kept, p):
        scores = torch.tanh(items @ _t(p["W"]) + _t(p["b"])) @ _t(p["u"])
        weights = _masked_softmax(scores, kept)
        return (weights.unsqueeze(-2) @ items).squeeze(-2), weights

    sentences, word_weights = level(x, keep, word_params)
    document, sentence_weights = level(sentences, keep.any(dim=-1), sentence_params)
    return document.numpy(), sentence_weights.numpy(), word_weights.numpy()


def torch_co_attention(q, d, q_mask=None, d_mask=None):
    q, d = _t(q), _t(d)
    qm = torch.ones(q.shape[:-1], dtype=torch.bool) if q_mask is None else torch.as_tensor(q_mask)
    dm = torch.ones(d.shape[:-1], dtype=torch.bool) if d_mask is None else torch.as_tensor(d_mask)
    affinity = q @ d.transpose(-1, -2)                                  # (..., L, S)
    q_weights = _masked_softmax(affinity, dm.unsqueeze(-2).expand_as(affinity))
    d_weights = _masked_softmax(affinity.transpose(-1, -2), qm.unsqueeze(-2).expand(*affinity.transpose(-1, -2).shape))
    q_context = q_weights @ d
    d_context = d_weights @ torch.cat([q, q_context], dim=-1)
    return tuple(t.numpy() for t in (q_context, d_context, q_weights, d_weights))


def _close(got, want, rtol=1e-12, atol=1e-12):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def solution():
    with solutions_package() as load:
        yield load(MODULE)


# --------------------------------------------------------------------- references vs PyTorch
@pytest.mark.parametrize("B,S,K,R", [(2, 11, 3, 7), (3, 4, 2, 9), (1, 6, 4, 1), (2, 1, 1, 3)])
def test_location_scores_reference_and_solution_match_conv1d(B, S, K, R, solution):
    rng = np.random.default_rng(S * 10 + R)
    D_s, D_h, A = 4, 6, 5
    args = (rng.standard_normal((B, D_s)), rng.standard_normal((B, S, D_h)), rng.random((B, S)),
            rng.standard_normal((D_s, A)), rng.standard_normal((D_h, A)), rng.standard_normal((K, A)),
            rng.standard_normal((K, R)), rng.standard_normal(A), rng.standard_normal(A))
    want = torch_location_scores(*args)
    _close(ref.location_sensitive_scores(*args), want)
    _close(solution.location_sensitive_scores(*args), want)


def test_location_scores_reject_an_even_filter_width(solution):
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) for s in ((2, 4), (2, 7, 6), (2, 7), (4, 5), (6, 5), (3, 5), (3, 4), (5,), (5,))]
    for implementation in (ref.location_sensitive_scores, solution.location_sensitive_scores):
        with pytest.raises(ValueError):
            implementation(*args)


def _graph(rng, N, isolated=()):
    adjacency = rng.random((N, N)) < 0.4
    adjacency[np.arange(N), np.arange(N)] = rng.random(N) < 0.5   # some self-loops, not all
    adjacency[:, 0] |= ~adjacency.any(axis=1)                     # everyone attends to someone...
    for i in isolated:                                            # ...except the isolated nodes
        adjacency[i] = False
    return adjacency


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("slope", [0.2, 0.5])
def test_gat_reference_and_solution_match_edge_list_message_passing(concat, slope, solution):
    rng = np.random.default_rng(3)
    N, D_in, D_out, H = 9, 5, 4, 3
    h, W, a = rng.standard_normal((N, D_in)), rng.standard_normal((H, D_in, D_out)), rng.standard_normal((H, 2 * D_out))
    adjacency = _graph(rng, N, isolated=(4,))
    want = torch_gat(h, adjacency, W, a, slope, concat)
    _close(ref.gat_layer(h, adjacency, W, a, slope, concat), want)
    _close(solution.gat_layer(h, adjacency, W, a, negative_slope=slope, concat=concat), want)
    assert not want[1][:, 4].any() and not want[0][4].any()      # the isolated node: zero weights, zero output


def test_gat_is_permutation_equivariant(solution):
    """Relabelling the nodes relabels the output rows and the weights, nothing else."""
    rng = np.random.default_rng(4)
    N = 8
    h, W, a = rng.standard_normal((N, 5)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 6))
    adjacency = _graph(rng, N) | np.eye(N, dtype=bool)
    perm = rng.permutation(N)
    out, weights = solution.gat_layer(h, adjacency, W, a)
    out_p, weights_p = solution.gat_layer(h[perm], adjacency[perm][:, perm], W, a)
    _close((out_p, weights_p), (out[perm], weights[:, perm][:, :, perm]), rtol=1e-10, atol=1e-12)


def _din_inputs(rng, B=3, S=7, D=4, A=5):
    params = {"W1": rng.standard_normal((4 * D, A)), "b1": rng.standard_normal(A), "alpha": rng.random(A),
              "w2": rng.standard_normal(A), "b2": float(rng.standard_normal())}
    mask = np.arange(S)[None, :] < np.array([S, 3, 0])[:B, None]
    return rng.standard_normal((B, D)), rng.standard_normal((B, S, D)), mask, params


def test_din_reference_and_solution_match_torch(solution):
    candidate, history, mask, params = _din_inputs(np.random.default_rng(5))
    for m in (mask, None):
        want = torch_din(candidate, history, m, params)
        _close(ref.target_attention_pooling(candidate, history, m, params), want)
        _close(solution.target_attention_pooling(candidate, history, m, params), want)
    assert not torch_din(candidate, history, mask, params)[0][2].any()   # no history: the zero vector


def test_din_weights_are_not_normalised_and_padding_changes_nothing(solution):
    candidate, history, mask, params = _din_inputs(np.random.default_rng(6))
    pooled, weights = solution.target_attention_pooling(candidate, history, mask, params)
    assert not np.allclose(weights[:2].sum(axis=1), 1.0)
    twice, _ = solution.target_attention_pooling(candidate, np.concatenate([history] * 2, 1),
                                                 np.concatenate([mask] * 2, 1), params)
    np.testing.assert_allclose(twice, 2 * pooled, rtol=1e-12, atol=1e-12)
    junk = np.where(mask[..., None], history, 1e3)                     # padding holds garbage
    np.testing.assert_allclose(solution.target_attention_pooling(candidate, junk, mask, params)[0], pooled,
                               rtol=1e-12, atol=1e-12)


def _han_inputs(rng, B=3, N=4, T=5, D=4, A_w=6, A_s=7):
    x = rng.standard_normal((B, N, T, D))
    word = {"W": rng.standard_normal((D, A_w)), "b": rng.standard_normal(A_w), "u": rng.standard_normal(A_w)}
    sentence = {"W": rng.standard_normal((D, A_s)), "b": rng.standard_normal(A_s), "u": rng.standard_normal(A_s)}
    mask = rng.random((B, N, T)) < 0.7
    mask[..., 0] = True
    mask[0, 2] = False         # a padding sentence
    mask[2] = False            # an empty document
    return x, word, sentence, mask


def test_han_reference_and_solution_match_torch(solution):
    x, word, sentence, mask = _han_inputs(np.random.default_rng(7))
    for m in (mask, None):
        want = torch_han(x, word, sentence, m)
        _close(ref.hierarchical_attention_pool(x, word, sentence, m), want)
        _close(solution.hierarchical_attention_pool(x, word, sentence, mask=m), want)


def test_han_is_invariant_to_the_order_of_sentences(solution):
    """Attention pools a set: permuting the sentences permutes their weights and keeps the document."""
    x, word, sentence, mask = _han_inputs(np.random.default_rng(8))
    perm = np.array([2, 0, 3, 1])
    doc, sw, ww = solution.hierarchical_attention_pool(x, word, sentence, mask=mask)
    doc_p, sw_p, ww_p = solution.hierarchical_attention_pool(x[:, perm], word, sentence, mask=mask[:, perm])
    _close((doc_p, sw_p, ww_p), (doc, sw[:, perm], ww[:, perm]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_co_attention_reference_and_solution_match_torch(lead, solution):
    rng = np.random.default_rng(len(lead))
    L, S, D = 5, 7, 4
    q, d = rng.standard_normal(lead + (L, D)), rng.standard_normal(lead + (S, D))
    q_mask, d_mask = rng.random(lead + (L,)) < 0.6, rng.random(lead + (S,)) < 0.6
    if lead:
        q_mask.reshape(-1, L)[0] = False         # one example with no question word
        d_mask.reshape(-1, S)[-1] = False        # and one with no document word
    for masks in ((None, None), (q_mask, d_mask)):
        want = torch_co_attention(q, d, *masks)
        _close(ref.co_attention(q, d, *masks), want)
        _close(solution.co_attention(q, d, *masks), want)


def test_co_attention_is_symmetric_in_its_two_inputs(solution):
    """Swapping question and document swaps the two weight matrices: one affinity, read both ways."""
    rng = np.random.default_rng(9)
    q, d = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 7, 4))
    q_ctx, _, q_w, d_w = solution.co_attention(q, d)
    d_ctx, _, q_w2, d_w2 = solution.co_attention(d, q)
    _close((q_w2, d_w2), (d_w, q_w), rtol=1e-12, atol=1e-15)
    assert not np.allclose(d_w, np.swapaxes(q_w, -1, -2))


# ---------------------------------------------------------------------------- the module itself
def test_the_module_imports_neither_torch_nor_matplotlib():
    """A NumPy exercise is graded where torch does not exist: its module must not import it."""
    code = ("import sys; sys.path.insert(0, 'solutions'); import attnlab.applications; "
            "bad = [m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_stubs_point_to_notebook_11():
    stub = (ROOT / "src" / "attnlab" / "applications.py").read_text()
    for e in registry.all_exercises():
        if e.module == MODULE:
            assert f'"{MODULE}.{e.function} is not implemented yet: see notebooks/11_beyond_text.ipynb"' in stub


def test_mutant_verdicts_do_not_depend_on_the_seed(monkeypatch):
    """Each mutant fails the same cases at seeds 0 and 7 (diagnosis off: only the verdicts are compared)."""
    monkeypatch.setattr(Context, "diagnose", lambda self: None)
    changed = []
    for ex in registry.all_exercises():
        if ex.module != MODULE:
            continue
        for m in ex.mutants:
            verdicts = set()
            for seed in (0, 7):
                result = grade_with_backend(InProcessBackend({ex.id: m.func}), [ex.id], seed=seed)["exercises"][0]
                verdicts.add(tuple(sorted(t["name"] for t in result["tests"] if not t["passed"])))
            if len(verdicts) > 1:
                changed.append(f"{ex.id}:{m.name}: {verdicts}")
    assert not changed, "\n".join(changed)
