"""interpret.plot_attention, a matplotlib exercise, through the real sandbox (about 20 s).

* The instructor's solution scores full marks in the sandboxed matplotlib worker: `import matplotlib.pyplot`
  works there (it used to fail: rebuilding the font cache ran `fc-list`, a process the worker may not start).
* A hostile plot function that tries to read and write files outside its sandbox (the repository, the
  solutions, /etc/passwd, its own submission's other modules) changes nothing: its own exercise and the
  submission's other exercises (NumPy, and PyTorch graded after it) keep full marks, and nothing is written.
* A plot function that ignores the Axes it is given fails, with that mistake's hint.
* Correct pyplot-state code (plt.sca(ax), then plt.*) is graded fairly, and the module imports no
  plotting library until a plot is drawn (its later NumPy exercises are graded where none is prepared).

The NumPy exercises of the module (attention_entropy, attention_rollout, entropy_penalty,
doubly_stochastic_penalty), below the plot tests:

* the references agree with PyTorch (torch.special.entr, torch.linalg.multi_dot) in float64;
* the solution scores full marks in the sandboxed NumPy worker and at 25 seeds in process; the learner's
  stub scores 0 (not implemented) without crashing the judge;
* a scalar penalty is accepted as a NumPy scalar (float32 and float64, a subclass of Python's float) or a
  0-d array, and refused, with its hint, as a Python float or a (1,) array;
* the solution's entropy emits no RuntimeWarning on zero weights (0 ln 0 = 0 without log(0) = -inf).
"""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autograde import sandbox
from autograde.graders import interpret as grader
from autograde.runner import InProcessBackend, grade_submission, grade_with_backend

ROOT = Path(__file__).resolve().parent.parent
EXERCISE = "interpret.plot_attention"
HOSTILE_NAME = "HOSTILE_PLOT_WAS_HERE"

needs_bwrap = pytest.mark.skipif(sandbox.sandbox_mode() != "bwrap",
                                 reason="the file-system guarantees hold only in the bubblewrap sandbox")


def _submission(folder, interpret_source=None):
    """A copy of the instructor's package in `folder`, with interpret.py replaced when a source is given."""
    shutil.copytree(ROOT / "solutions" / "attnlab", folder / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if interpret_source is not None:
        (folder / "attnlab" / "interpret.py").write_text(textwrap.dedent(interpret_source))
    return folder


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _failures(entry):
    return [t["message"] for t in entry["tests"] if not t["passed"]]


def test_solution_scores_full_marks_in_the_sandbox(tmp_path):
    report = grade_submission(_submission(tmp_path), [EXERCISE])
    (entry,) = report["exercises"]
    assert entry["status"] == "passed", _failures(entry)
    assert entry["points"] == entry["max_points"] == 2.0


HOSTILE = '''
import os
import sys

import numpy as np

REPO = {repo!r}
NAME = {name!r}
# Outside the submission: checked from the host afterwards (inside the sandbox such a write may land in its
# private, throw-away file system, which is harmless).
WRITES = [os.path.join(REPO, NAME + ".txt"), os.path.join(REPO, "solutions", "attnlab", NAME + ".py"),
          os.path.join(REPO, ".venv", NAME + ".txt"), os.path.join(sys.prefix, NAME + ".txt")]
FIGURES = [os.path.join(REPO, NAME + ".png"), os.path.join(REPO, ".venv", NAME + ".png")]
# Secrets and its own submission's other modules: any success here spoils its own grade (see below).
READS = ["/etc/passwd", os.path.join(REPO, "solutions", "attnlab", "softmax.py"),
         os.path.join(REPO, "autograde", "references", "interpret.py"),
         os.path.join(sys.prefix, os.path.relpath(os.path.join(REPO, "solutions", "attnlab", "softmax.py"),
                                                  sys.prefix)),  # up from the interpreter's folder
         os.path.join("..", "solutions", "attnlab", "softmax.py")]


def _try(action, *args):
    try:
        action(*args)
        return True
    except OSError:
        return False


def _write(path):
    with open(path, "w") as fh:
        fh.write("raise SystemExit('sabotaged')\\n")


def _read(path):
    with open(path) as fh:
        fh.read(64)


def plot_attention(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    for path in WRITES:
        _try(_write, path)
    for path in FIGURES:
        _try(ax.figure.savefig, path)
    escaped = [f"read {{p}}" for p in READS if _try(_read, p)]
    escaped += [f"wrote {{p}}" for p in ("attnlab/frontiers.py", os.path.join("attnlab", NAME + ".py"))
                if _try(_write, p)]
    escaped += ["removed attnlab/softmax.py"] if _try(os.remove, "attnlab/softmax.py") else []
    escaped += ["saved attnlab/" + NAME + ".png"] if _try(ax.figure.savefig, "attnlab/" + NAME + ".png") else []
    weights = np.asarray(weights)
    image = ax.imshow(weights)
    ax.set_xticks(range(weights.shape[1]), labels=key_labels)
    ax.set_yticks(range(weights.shape[0]), labels=query_labels)
    # Anything that got out spoils its own grade, so the test sees it in the failure message.
    ax.set_xlabel("ESCAPED: " + "; ".join(escaped) if escaped else "key")
    ax.set_ylabel("query")
    ax.figure.colorbar(image, ax=ax)
    return ax
'''


@needs_bwrap
def test_hostile_plot_function_reaches_nothing_and_spoils_no_other_grade(tmp_path):
    """softmax is graded (NumPy worker) before it, frontiers.KVCache (PyTorch worker) after it."""
    root = _submission(tmp_path, HOSTILE.format(repo=str(ROOT), name=HOSTILE_NAME))
    before = _snapshot(root)
    report = grade_submission(root, ["softmax.softmax", EXERCISE, "frontiers.KVCache"])
    entries = {e["id"]: e for e in report["exercises"]}
    for exercise_id, entry in entries.items():
        assert entry["status"] == "passed", (exercise_id, _failures(entry))
    assert _snapshot(root) == before, "the submission folder changed"
    targets = [ROOT / f"{HOSTILE_NAME}.txt", ROOT / f"{HOSTILE_NAME}.png", ROOT / ".venv" / f"{HOSTILE_NAME}.txt",
               ROOT / ".venv" / f"{HOSTILE_NAME}.png", ROOT / "solutions" / "attnlab" / f"{HOSTILE_NAME}.py",
               Path(sys.base_prefix) / f"{HOSTILE_NAME}.txt", Path(sys.prefix) / f"{HOSTILE_NAME}.txt"]
    leftovers = [p for p in targets if p.exists()]
    for p in leftovers:
        p.unlink()
    assert not leftovers, f"written outside the sandbox: {leftovers}"


def test_the_hostile_function_detects_an_escape_when_nothing_stops_it(tmp_path, monkeypatch):
    """Unsandboxed (in this process, against a fake repository) its reads and writes succeed and it spoils
    its own grade: the sandboxed test above is not passing for want of trying."""
    fake = tmp_path / "repo"
    (fake / "solutions" / "attnlab").mkdir(parents=True)
    (fake / "solutions" / "attnlab" / "softmax.py").write_text("SECRET = 1\n")
    (fake / ".venv").mkdir()
    submission = _submission(tmp_path / "submission")
    namespace = {}
    exec(compile(HOSTILE.format(repo=str(fake), name=HOSTILE_NAME), "hostile", "exec"), namespace)
    namespace["WRITES"] = namespace["WRITES"][:3]  # not the interpreter's own folder
    monkeypatch.chdir(submission)
    report = grade_with_backend(InProcessBackend({EXERCISE: namespace["plot_attention"]}), [EXERCISE])
    failures = _failures(report["exercises"][0])
    assert any("ESCAPED: read /etc/passwd" in m and "wrote attnlab/frontiers.py" in m for m in failures), failures
    assert (fake / f"{HOSTILE_NAME}.txt").exists() and (fake / f"{HOSTILE_NAME}.png").exists()


def test_new_figure_when_ax_is_given_fails_with_its_hint(tmp_path):
    source = '''
    import matplotlib.pyplot as plt
    import numpy as np


    def plot_attention(weights, query_labels, key_labels, ax=None):
        fig, ax = plt.subplots()  # ignores the ax it was given
        weights = np.asarray(weights)
        image = ax.imshow(weights)
        ax.set_xticks(range(weights.shape[1]), labels=key_labels)
        ax.set_yticks(range(weights.shape[0]), labels=query_labels)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        fig.colorbar(image, ax=ax)
        return ax
    '''
    report = grade_submission(_submission(tmp_path, source), [EXERCISE])
    (entry,) = report["exercises"]
    failures = _failures(entry)
    assert entry["status"] == "failed" and 0 < entry["points"] < entry["max_points"], failures
    assert len(failures) == 1 and "[given ax that is not the current one" in failures[0], failures
    assert failures[0].startswith(EXERCISE + ": ") and grader.H_IGNORES_AX in failures[0], failures


def test_pyplot_state_code_after_sca_is_graded_fairly():
    def plot_attention(weights, query_labels, key_labels, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            ax = plt.figure().gca()
        plt.sca(ax)  # the given Axes becomes pyplot's current one, so plt.* draws there
        plt.imshow(weights, interpolation="none")
        plt.colorbar()
        plt.xticks(range(len(key_labels)), key_labels, rotation="vertical")
        plt.yticks(range(len(query_labels)), query_labels)
        plt.xlabel("key index")
        plt.ylabel("query index")
        return plt.gca()

    for seed in (0, 1):
        (entry,) = grade_with_backend(InProcessBackend({EXERCISE: plot_attention}), [EXERCISE], seed=seed)["exercises"]
        assert entry["status"] == "passed", _failures(entry)


def test_module_imports_no_plotting_library():
    code = ("import sys; sys.path.insert(0, 'solutions'); import attnlab.interpret; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------------- NumPy exercises
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from autograde.references import interpret as ref  # noqa: E402

NUMPY_EXERCISES = ["interpret.attention_entropy", "interpret.attention_rollout", "interpret.entropy_penalty",
                   "interpret.doubly_stochastic_penalty"]


def _weights(rng, shape, zero_fraction=0.3):
    """Row-stochastic (..., S) weights with exact zeros (masked keys) and a fully masked row."""
    w = rng.random(shape) * (rng.random(shape) > zero_fraction)
    w[..., 0] += 0.1
    w /= w.sum(axis=-1, keepdims=True)
    w.reshape(-1, shape[-1])[0] = 0.0  # a fully masked query
    return w


def test_references_agree_with_pytorch():
    import torch

    rng = np.random.default_rng(0)
    w = _weights(rng, (2, 3, 5, 7))
    wt = torch.from_numpy(w)
    # entropy: torch.special.entr is -x ln x with entr(0) = 0
    for axis in (-1, 1):
        np.testing.assert_allclose(ref.attention_entropy(w, axis=axis),
                                   torch.special.entr(wt).sum(dim=axis).numpy(), rtol=1e-13, atol=1e-15)
    # rollout: torch.linalg.multi_dot of the residual-corrected, head-averaged layers, per batch element
    layers = [_weights(rng, (2, 3, 6, 6), zero_fraction=0.0) for _ in range(4)]
    for residual in (True, False):
        mixed = []
        for a in layers:
            m = torch.from_numpy(a).mean(dim=-3)
            if residual:
                m = m + torch.eye(6, dtype=torch.float64)
                m = m / m.sum(dim=-1, keepdim=True)
            mixed.append(m)
        want = torch.stack([torch.linalg.multi_dot([m[b] for m in reversed(mixed)]) for b in range(2)])
        np.testing.assert_allclose(ref.attention_rollout(layers, residual=residual), want.numpy(), rtol=1e-12)
    # entropy penalty: mean over counted rows of entr summed over kept entries
    mask = rng.random((2, 1, 5, 7)) < 0.7
    mask[0, 0, 2] = False  # a fully masked query
    keep = torch.from_numpy(np.broadcast_to(mask, w.shape).copy())
    rows = torch.special.entr(torch.where(keep, wt, torch.zeros_like(wt))).sum(dim=-1)
    np.testing.assert_allclose(ref.entropy_penalty(w, mask), rows[keep.any(dim=-1)].mean().item(), rtol=1e-13)
    np.testing.assert_allclose(ref.entropy_penalty(w), torch.special.entr(wt).sum(dim=-1).mean().item(),
                               rtol=1e-13)
    # doubly stochastic penalty
    np.testing.assert_allclose(ref.doubly_stochastic_penalty(w), ((1 - wt.sum(dim=-2)) ** 2).sum(dim=-1).numpy(),
                               rtol=1e-13)


def test_solution_full_marks_in_the_numpy_sandbox(tmp_path):
    report = grade_submission(_submission(tmp_path), NUMPY_EXERCISES)
    for entry in report["exercises"]:
        assert entry["status"] == "passed", (entry["id"], _failures(entry))
        assert entry["points"] == entry["max_points"]


def test_solution_full_marks_at_many_seeds_and_stub_scores_zero():
    from conftest import solutions_package

    with solutions_package() as load:
        module = load("interpret")
        funcs = {e: getattr(module, e.split(".")[1]) for e in NUMPY_EXERCISES}
    for seed in range(25):
        report = grade_with_backend(InProcessBackend(funcs), NUMPY_EXERCISES, seed=seed)
        failing = [(e["id"], _failures(e)) for e in report["exercises"] if e["status"] != "passed"]
        assert not failing, f"seed {seed}: {failing[:1]}"
    stub = grade_submission(ROOT / "src", NUMPY_EXERCISES)
    for entry in stub["exercises"]:
        assert entry["status"] == "not_implemented" and entry["points"] == 0, entry


def _penalty_returning(kind):
    def entropy_penalty(weights, mask=None):
        value = ref.entropy_penalty(weights, mask)        # a 0-d array of the weights' dtype
        if kind == "numpy scalar":
            return value[()]                              # np.float64 / np.float32
        if kind == "python float":
            return float(value)
        if kind == "(1,) array":
            return value.reshape(1)
        return value
    return entropy_penalty


def test_scalar_penalty_forms():
    exercise = "interpret.entropy_penalty"
    for kind in ("0-d array", "numpy scalar"):
        (entry,) = grade_with_backend(InProcessBackend({exercise: _penalty_returning(kind)}), [exercise])["exercises"]
        assert entry["status"] == "passed", (kind, _failures(entry))
    for kind, hint in (("python float", grader.H_PY_FLOAT), ("(1,) array", "expected shape ()")):
        (entry,) = grade_with_backend(InProcessBackend({exercise: _penalty_returning(kind)}), [exercise])["exercises"]
        assert entry["status"] == "failed"
        assert all(hint in m for m in _failures(entry)), (kind, _failures(entry))


def test_solution_entropy_warns_about_nothing():
    from conftest import solutions_package

    w = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    with solutions_package() as load:
        module = load("interpret")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ent = module.attention_entropy(w)
            pen = module.entropy_penalty(w, w > 0)
            empty = module.entropy_penalty(w, np.zeros_like(w, dtype=bool))
    assert ent.dtype == np.float32 and np.allclose(ent, [np.log(2), 0.0]) and not np.signbit(ent).any()
    assert np.isclose(pen, np.log(2)) and pen.dtype == np.float32
    assert empty == 0 and not np.isnan(empty)
