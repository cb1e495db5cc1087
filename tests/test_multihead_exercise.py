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
