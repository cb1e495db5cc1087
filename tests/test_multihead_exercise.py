"""multihead.attention_dropout through the real sandbox: a random exercise, graded by properties and replay.

The generator crosses to the sandboxed worker as its bit generator's state; these tests show that a
correct submission drawing in its own way passes, that one drawing from np.random's global state is
named, and that grading is itself reproducible (same seed, same JSON).
"""
import json
import shutil

import numpy as np
import pytest

from autograde.graders import multihead as grader
from autograde.references import multihead as ref
from autograde.runner import grade_submission
from conftest import ROOT

EXERCISE = "multihead.attention_dropout"

HEADER = '''"""A submission's multihead module."""
import numpy as np


def attention_dropout(weights, p, rng):
    if not 0 <= p < 1:
        raise ValueError("p must satisfy 0 <= p < 1")
'''
CORRECT = HEADER + '''    keep = rng.random(weights.shape) >= p  # draws the drop side: not the solution's convention
    return weights * keep / (1 - p)
'''
GLOBAL_STATE = HEADER + '''    keep = np.random.random(weights.shape) < 1 - p  # ignores rng
    return np.where(keep, weights / (1 - p), 0)
'''


def _submission(tmp_path, name, source=None):
    """A copy of solutions/attnlab with multihead.py replaced by `source` (None: the solution's own)."""
    folder = tmp_path / name
    shutil.copytree(ROOT / "solutions" / "attnlab", folder / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if source is not None:
        (folder / "attnlab" / "multihead.py").write_text(source)
    return folder


def _entry(report):
    (entry,) = [e for e in report["exercises"] if e["id"] == EXERCISE]
    return entry


def test_a_correct_submission_with_other_draws_passes_in_the_sandbox(tmp_path):
    entry = _entry(grade_submission(_submission(tmp_path, "correct", CORRECT), [EXERCISE], seed=7))
    assert entry["status"] == "passed", [t["message"] for t in entry["tests"] if not t["passed"]]


def test_np_random_global_state_fails_replay_with_its_hint(tmp_path):
    entry = _entry(grade_submission(_submission(tmp_path, "global", GLOBAL_STATE), [EXERCISE], seed=7))
    assert entry["status"] == "failed" and entry["points"] < entry["max_points"]
    failed = {t["name"]: t["message"] for t in entry["tests"] if not t["passed"]}
    assert list(failed) == ["replay (2, 3, 5, 7), p = 0.4"], failed  # statistically it is fine dropout
    assert grader.GLOBAL_HINT in failed["replay (2, 3, 5, 7), p = 0.4"]
    assert "gave a different output" in failed["replay (2, 3, 5, 7), p = 0.4"]


def test_grading_the_solution_twice_gives_identical_json(tmp_path):
    folder = _submission(tmp_path, "solution")
    first = grade_submission(folder, [EXERCISE], seed=11)
    second = grade_submission(folder, [EXERCISE], seed=11)
    assert _entry(first)["status"] == "passed"
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_reference_is_inverted_dropout_and_replays():
    w = np.random.default_rng(0).random((3, 40, 50)).astype(np.float32) + 0.1
    out = ref.attention_dropout(w, 0.3, np.random.default_rng(5))
    assert out.dtype == np.float32 and out.shape == w.shape
    kept = out != 0
    np.testing.assert_allclose(out[kept], w[kept] / 0.7, rtol=1e-6)
    assert abs((~kept).mean() - 0.3) < 6 * np.sqrt(0.21 / w.size)
    np.testing.assert_array_equal(out, ref.attention_dropout(w, 0.3, np.random.default_rng(5)))
    np.testing.assert_array_equal(ref.attention_dropout(w, 0.0, np.random.default_rng(5)), w)
    for p in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            ref.attention_dropout(w, p, np.random.default_rng(5))


def test_the_convention_is_pytorchs_dropout():
    """Survivors scaled by 1 / (1 - p), p = 0 the identity: what torch.nn.functional.dropout does."""
    torch = pytest.importorskip("torch")
    w = torch.rand(4, 30, 30, dtype=torch.float64) + 0.1
    torch.manual_seed(0)
    out = torch.nn.functional.dropout(w, p=0.3, training=True)
    kept = out != 0
    torch.testing.assert_close(out[kept], w[kept] / 0.7)
    assert torch.equal(torch.nn.functional.dropout(w, p=0.0, training=True), w)


# ------------------------------------------------------------- heads, layer norm, feed-forward (notebook 04)
SOLUTION = (ROOT / "solutions" / "attnlab" / "multihead.py").read_text()
GELU_LINE = "        a = (0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))).astype(h.dtype)  # erf works in float64"
# the tanh approximation written in its own way (float32 constants, h * h * h): not the grader's mutant
TANH_LINE = ("        c = np.asarray(0.7978845608, dtype=h.dtype)\n"
             "        a = h * 0.5 * (1.0 + np.tanh(c * (h + np.asarray(0.044715, dtype=h.dtype) * h * h * h)))")


def _grade_module(tmp_path, name, source, exercise_ids, seed=3):
    report = grade_submission(_submission(tmp_path, name, source), exercise_ids, seed=seed)
    return {e["id"]: e for e in report["exercises"]}


def _failures(entry):
    return [t["message"] for t in entry["tests"] if not t["passed"] and not t.get("skipped")]


def test_the_numpy_module_never_imports_torch():
    """multihead is graded where torch does not exist: neither the solution nor the stub may import it."""
    import ast

    for path in (ROOT / "solutions" / "attnlab" / "multihead.py", ROOT / "src" / "attnlab" / "multihead.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("torch", "scipy") for n in names), (path, ast.dump(node))


def test_numpy_reference_equals_nn_multihead_attention_and_keeps_the_course_rule():
    """Our float64 reference vs nn.MultiheadAttention with transposed weights: equal wherever a query sees a
    key; a query that sees nothing in every head gets zero weights and exactly b_o (PyTorch: NaN)."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, L, S, E, H = 2, 5, 7, 12, 3
    x_q, x_kv = rng.standard_normal((B, L, E)), rng.standard_normal((B, S, E))
    params = {n: rng.standard_normal((E, E) if n[0] == "W" else (E,)) for n in ref.PARAM_NAMES}
    mask = rng.random((B, H, L, S)) < 0.5
    mask[..., 0] = True
    mask[1, :, 2] = False                      # dead in every head
    mask[0, 1, 3] = False                      # dead in one head only
    ours_out, ours_w = ref.multi_head_attention(x_q, x_kv, params, H, mask)
    torch_out, torch_w = ref.torch_multi_head_attention(x_q, x_kv, params, H, mask)
    np.testing.assert_allclose(ours_w, torch_w, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ours_out, torch_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours_w[1, :, 2], 0.0)
    np.testing.assert_allclose(ours_out[1, 2], params["b_o"], rtol=0, atol=1e-15)
    assert np.isfinite(torch_out).all()


def test_a_correct_multi_head_attention_written_another_way_passes_in_the_sandbox(tmp_path):
    """A loop over heads with its own masked softmax, no dependency calls."""
    body = '''
def multi_head_attention(x_q, x_kv, params, num_heads, mask=None):
    B, L, E = x_q.shape
    D = E // num_heads
    outs, weights = [], []
    for h in range(num_heads):
        cols = slice(h * D, (h + 1) * D)
        q = x_q @ params["W_q"][:, cols] + params["b_q"][cols]
        k = x_kv @ params["W_k"][:, cols] + params["b_k"][cols]
        v = x_kv @ params["W_v"][:, cols] + params["b_v"][cols]
        s = q @ k.swapaxes(-1, -2) / np.sqrt(D)
        keep = np.ones(s.shape, bool) if mask is None else np.broadcast_to(mask, (B, num_heads) + s.shape[1:])[:, h]
        s = np.where(keep, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        e = np.where(keep, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
        t = e.sum(axis=-1, keepdims=True)
        w = np.divide(e, t, out=np.zeros_like(e), where=t > 0)
        outs.append(w @ v)
        weights.append(w)
    out = np.concatenate(outs, axis=-1) @ params["W_o"] + params["b_o"]
    return out.astype(x_q.dtype), np.stack(weights, axis=1).astype(x_q.dtype)
'''
    entry = _grade_module(tmp_path, "loop", SOLUTION + body, ["multihead.multi_head_attention"])
    assert entry["multihead.multi_head_attention"]["status"] == "passed", \
        _failures(entry["multihead.multi_head_attention"])


def test_pytorch_weight_layout_is_named(tmp_path):
    """x @ W.T (PyTorch's (out, in) habit) raises nothing with square weights: the grader names it."""
    source = SOLUTION
    for name in ("W_q", "W_k", "W_v", "W_o"):
        source = source.replace(f'params["{name}"]', f'params["{name}"].T')
    entry = _grade_module(tmp_path, "transposed", source, ["multihead.multi_head_attention"])
    mha = entry["multihead.multi_head_attention"]
    assert mha["status"] == "failed" and mha["points"] == 0, mha["points"]
    failures = _failures(mha)  # the engine caps mutant replays per exercise: the first cases carry the hint
    assert grader.TRANSPOSED_W_HINT in failures[0], failures[0]
    assert "; or: " not in failures[0], failures[0]  # and nothing else is named


def test_the_tanh_gelu_is_named_however_it_is_written(tmp_path):
    assert GELU_LINE in SOLUTION
    entry = _grade_module(tmp_path, "tanh", SOLUTION.replace(GELU_LINE, TANH_LINE), ["multihead.feed_forward"])
    ff = entry["multihead.feed_forward"]
    failed = {t["name"]: t["message"] for t in ff["tests"] if not t["passed"]}
    gelu_cases = {c.name for c in grader.feed_forward.cases if "relu" not in c.name and "activation" not in c.name}
    assert gelu_cases <= set(failed), (gelu_cases, list(failed))
    for name in gelu_cases:
        assert grader.TANH_HINT in failed[name], failed[name]


def test_layer_norm_by_mean_of_squares_is_caught_only_where_it_cancels(tmp_path):
    """mean(x**2) - mean(x)**2 is fine in float64 and at small offsets; in float32 rows centred near +-1000
    it loses the variance, and the grader says why."""
    good = "    var = (centred * centred).mean(axis=-1, keepdims=True)  # (..., 1), biased"
    bad = "    var = (x * x).mean(axis=-1, keepdims=True) - mean * mean"
    assert good in SOLUTION
    entry = _grade_module(tmp_path, "cancel", SOLUTION.replace(good, bad), ["multihead.layer_norm"])
    failed = {t["name"]: t["message"] for t in entry["multihead.layer_norm"]["tests"] if not t["passed"]}
    assert list(failed) == ["large offset, float32"], list(failed)
    assert grader.CANCEL_HINT in failed["large offset, float32"]
