"""seq2seq (notebook 03): references against the PyTorch oracles, cases that separate look-alike mistakes,
and the random exercise through the real sandbox.

The catalogue-wide promises (every mutant loses points and is named, alternatives pass at 40 seeds) are in
tests/test_mutants.py; these are the checks specific to this module.
"""
import shutil

import numpy as np
import pytest

from autograde import registry
from autograde.graders import seq2seq as grader
from autograde.references import seq2seq as ref
from autograde.runner import InProcessBackend, grade_submission, grade_with_backend
from conftest import grade_in_process as _grade, failing_messages as _failing, mutant_of as _mutant, ROOT

pytest.importorskip("torch")


def _inputs(rng, B=3, S=9, D_s=4, D_h=6, A=5):
    s, h = rng.standard_normal((B, D_s)), rng.standard_normal((B, S, D_h))
    mask = rng.random((B, S)) < 0.6
    mask[:, 0] = True
    mask[-1] = False  # a fully masked row
    return s, h, mask


# ------------------------------------------------------------------------- references vs oracles
@pytest.mark.parametrize("seed", range(3))
def test_numpy_references_agree_with_the_pytorch_oracles(seed):
    rng = np.random.default_rng(seed)
    s, h, mask = _inputs(rng)
    W_s, W_h, w_v, w_c = rng.standard_normal((4, 5)), rng.standard_normal((6, 5)), rng.standard_normal(5), \
        rng.standard_normal(5)
    coverage = rng.random((3, 9)) * 2
    for m in (None, mask):
        for got, want in (
                (ref.bahdanau_attention(s, h, W_s, W_h, w_v, m), ref.oracle_bahdanau(s, h, W_s, W_h, w_v, m)),
                (ref.coverage_attention(s, h, coverage, W_s, W_h, w_c, w_v, m),
                 ref.oracle_coverage(s, h, coverage, W_s, W_h, w_c, w_v, m))):
            np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-13)
        s6 = rng.standard_normal((3, 6))
        for method, st, params in (("dot", s6, {}), ("general", s, {"W": rng.standard_normal((4, 6))}),
                                   ("concat", s, {"W": rng.standard_normal((10, 5)), "v": rng.standard_normal(5)})):
            got, want = ref.luong_attention(st, h, method, params, m), ref.oracle_luong(st, h, method, params, m)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
        for window in (1, 2, 20):
            W_p, v_p = rng.standard_normal((6, 5)), rng.standard_normal(5)
            got, want = ref.local_p_attention(s6, h, W_p, v_p, window, m), ref.oracle_local_p(s6, h, W_p, v_p,
                                                                                               window, m)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
    history = rng.dirichlet(np.ones(9), size=(3, 5))
    np.testing.assert_allclose(ref.coverage_loss(history), ref.oracle_coverage_loss(history), rtol=1e-12)


def test_oracles_keep_the_course_conventions():
    """Fully masked rows: zero weights and context; local-p rows sum to less than 1 (no renormalising)."""
    rng = np.random.default_rng(0)
    s, h, mask = _inputs(rng, D_s=6)
    context, weights = ref.oracle_luong(s, h, "dot", {}, mask)
    assert np.all(weights[-1] == 0) and np.all(context[-1] == 0) and np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights[:-1].sum(axis=1), 1.0)
    context, weights, p = ref.oracle_local_p(s, h, rng.standard_normal((6, 5)), rng.standard_normal(5), 2)
    assert np.all(weights.sum(axis=1) < 1) and np.all((0 <= p) & (p <= 8))
    inside = np.abs(np.arange(9)[None, :] - p[:, None]) <= 2
    assert np.all(weights[~inside] == 0) and np.all(weights[inside] > 0)
    # the hand-checkable coverage loss: steps cost 0, 0.75 and 0.25
    history = np.array([[[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(ref.oracle_coverage_loss(history), [1.0])


def test_reference_sampler_follows_the_weights_and_replays():
    w = np.array([[0.1, 0.0, 0.6, 0.3]] * 20000)
    out = ref.sample_hard_attention(w, np.random.default_rng(1))
    assert out.dtype == w.dtype and np.all(out.sum(axis=1) == 1) and not out[:, 1].any()
    np.testing.assert_allclose(out.mean(axis=0), w[0], atol=6 * np.sqrt(0.25 / 20000))
    np.testing.assert_array_equal(out, ref.sample_hard_attention(w, np.random.default_rng(1)))
    assert not ref.sample_hard_attention(np.zeros((2, 4), np.float32), np.random.default_rng(1)).any()


# ------------------------------------------------------------------- cases that separate mistakes
@pytest.mark.parametrize("exercise_id", ["seq2seq.bahdanau_attention", "seq2seq.luong_attention",
                                         "seq2seq.local_p_attention", "seq2seq.coverage_attention"])
def test_masking_by_multiplication_fails_only_where_kept_scores_are_far_below_zero(exercise_id):
    mutant = _mutant(exercise_id, "multiplies the scores by the mask")
    failing = _failing(_grade(exercise_id, mutant.func))
    assert list(failing) == [c.name for c in registry.get(exercise_id).cases if "far below 0" in c.name]
    assert all(mutant.hint in msg for msg in failing.values())


def test_an_exclusive_window_fails_exactly_where_the_centre_is_a_whole_number():
    mutant = _mutant("seq2seq.local_p_attention", "window exclusive")
    for seed in (0, 1):
        failing = _failing(_grade("seq2seq.local_p_attention", mutant.func, seed=seed))
        assert set(failing) == {"p a whole number: window ends included", "centres at the edges: p = S - 1 and p = 0",
                                "mask inside the window, a fully masked window", "kept scores far below 0, float32"}
        assert all(grader.EXCLUSIVE_HINT in msg for msg in failing.values())


def test_a_rounded_centre_fails_the_fractional_centres_case_at_every_seed():
    mutant = _mutant("seq2seq.local_p_attention", "p rounded")
    for seed in range(5):
        failing = _failing(_grade("seq2seq.local_p_attention", mutant.func, seed=seed))
        assert "float64 B=3, S=11, D=4, A=5, window=2" in failing, seed


def test_int64_positions_are_named_with_their_own_dtype_hint():
    mutant = _mutant("seq2seq.local_p_attention", "int64 positions")
    failing = _failing(_grade("seq2seq.local_p_attention", mutant.func))
    assert "float32, window=3" in failing
    assert grader.POSITIONS_DTYPE_HINT in failing["float32, window=3"]


def test_local_p_tolerance_covers_a_float32_sigmoid_written_another_way():
    """1 / (1 + exp(-z)) in float32 (not the solution's tanh form) at 10 seeds."""
    def float32_sigmoid(s, h, W_p, v_p, window, mask=None):
        S = h.shape[1]
        z = np.tanh(s @ W_p) @ v_p
        with np.errstate(over="ignore"):
            p = (S - 1) / (1 + np.exp(-z))
        d = np.arange(S, dtype=h.dtype)[None, :] - p[:, None]
        keep = np.abs(d) <= window if mask is None else (np.abs(d) <= window) & mask
        scores = np.einsum("bd,bsd->bs", s, h)
        e = np.where(keep, np.exp(scores - np.where(keep, scores, -np.inf).max(axis=1, keepdims=True)), 0)
        total = e.sum(axis=1, keepdims=True)
        w = np.divide(e, total, out=np.zeros_like(e), where=total > 0) * np.exp(-d ** 2 / (2 * (window / 2) ** 2))
        return np.einsum("bs,bsh->bh", w, h), w
    for seed in range(10):
        result = _grade("seq2seq.local_p_attention", float32_sigmoid, seed=seed)
        assert result["status"] == "passed", (seed, _failing(result))


def test_argmax_and_a_shared_draw_are_told_apart_where_they_can_be():
    hard = "seq2seq.sample_hard_attention"
    failing = _failing(_grade(hard, _mutant(hard, "argmax").func))
    assert grader.ARGMAX_HINT in failing["replay (2, 3, 5, 7)"]
    failing = _failing(_grade(hard, _mutant(hard, "one draw for all rows").func))
    assert list(failing) == ["statistics (4, 3000, 7)"] and grader.SHARED_HINT in failing["statistics (4, 3000, 7)"]


def test_mutant_verdicts_do_not_depend_on_the_seed(monkeypatch):
    """Each mutant fails the same cases at every seed (diagnosis off: only the verdicts are compared)."""
    from autograde.framework import Context

    monkeypatch.setattr(Context, "diagnose", lambda self: None)
    changed = []
    for ex in (e for e in registry.all_exercises() if e.module == "seq2seq"):
        for m in ex.mutants:
            verdicts = {seed: tuple(sorted(_failing(_grade(ex.id, m.func, seed)))) for seed in (0, 1, 7)}
            if len(set(verdicts.values())) > 1:
                changed.append(f"{ex.id}:{m.name}: {verdicts}")
    assert not changed, "\n".join(changed)


# ----------------------------------------------------------------- the random exercise, sandboxed
HEADER = '''"""A submission's seq2seq module: only sample_hard_attention is written."""
import numpy as np


def sample_hard_attention(weights, rng):
    w = np.asarray(weights, dtype=np.float64)
    flat = w.reshape(-1, w.shape[-1])
    out = np.zeros(flat.shape, dtype=weights.dtype)
'''
CHOICE = HEADER + '''    for r, row in enumerate(flat):  # rng.choice per row: draws unlike the solution's
        if row.sum() > 0:
            out[r, rng.choice(row.size, p=row / row.sum())] = 1
    return out.reshape(weights.shape)
'''
GLOBAL = HEADER + '''    for r, row in enumerate(flat):
        if row.sum() > 0:
            out[r, np.random.choice(row.size, p=row / row.sum())] = 1  # ignores rng
    return out.reshape(weights.shape)
'''
EXERCISE = "seq2seq.sample_hard_attention"


def _submission(tmp_path, name, source):
    folder = tmp_path / name
    shutil.copytree(ROOT / "solutions" / "attnlab", folder / "attnlab", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "attnlab" / "seq2seq.py").write_text(source)
    return folder


def _entry(report):
    (entry,) = [e for e in report["exercises"] if e["id"] == EXERCISE]
    return entry


def test_sampling_with_rng_choice_passes_and_np_random_fails_replay_in_the_sandbox(tmp_path):
    entry = _entry(grade_submission(_submission(tmp_path, "choice", CHOICE), [EXERCISE], seed=3))
    assert entry["status"] == "passed", [t["message"] for t in entry["tests"] if not t["passed"]]
    entry = _entry(grade_submission(_submission(tmp_path, "global", GLOBAL), [EXERCISE], seed=3))
    failed = {t["name"]: t["message"] for t in entry["tests"] if not t["passed"]}
    assert list(failed) == ["replay (2, 3, 5, 7)"], failed  # statistically it is a fine sampler
    assert grader.GLOBAL_HINT in failed["replay (2, 3, 5, 7)"]
