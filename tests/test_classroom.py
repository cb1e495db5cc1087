"""End to end: the nbgrader classroom pipeline for notebook 01, driven through REAL nbgrader.

One course directory is built once (module fixture): `attnlab classroom source`, `attnlab classroom release`,
three simulated students (complete, untouched stubs, one planted bug) in ``submitted/``, one
``nbgrader autograde`` for all of them, ``nbgrader export`` to CSV and ``nbgrader generate_feedback`` for
the buggy student. The tests then check scores, the release and the feedback.

A second, smaller course (fixture `course04`) does the same for notebook 04, whose exercises include a
PyTorch class graded in the sandbox's torch worker (transformer.TransformerBlock): two students, complete
and untouched stubs, one ``nbgrader autograde``.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograde import classroom
from autograde.build import SOLUTIONS, solution_only
from autograde.course import NOTEBOOKS
from autograde.runner import grade_submission

ROOT = Path(__file__).resolve().parent.parent
NB = NOTEBOOKS[0]
A = NB.name                                   # "01_what_attention_computes"
FULL = sum(e.points for e in classroom.notebook_exercises(NB))
STUDENTS = ("complete", "stubs", "buggy", "tamper")
GOOD_LINE = "    shifted = x - np.max(x, axis=axis, keepdims=True)  # (..., S), every entry <= 0"
BUGGY_LINE = "    shifted = x  # planted bug: no max subtraction, exp overflows on large logits"


def _env(extra=None):
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for var in ("ATTNLAB_SRC", "ATTNLAB_STRICT", "ATTNLAB_GRADE_SEED", "NBGRADER_EXECUTION", "ATTNLAB_QUICK"):
        env.pop(var, None)
    env.update(extra or {})
    return env


def _run(cmd, cwd, timeout=300, extra_env=None):
    r = subprocess.run(cmd, cwd=str(cwd), env=_env(extra_env), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _nbgrader(course, *args, extra_env=None):
    return _run([classroom.nbgrader_executable(), *args], course, extra_env=extra_env)


def _attnlab(*args):
    return subprocess.run([sys.executable, "-m", "autograde.cli", *args], cwd=str(ROOT), env=_env(),
                          capture_output=True, text=True, timeout=300)


def _solution_modules():
    return {p.name: solution_only(p.read_text()) for p in sorted((SOLUTIONS / "attnlab").glob("*.py"))}


def _fill_answer(notebook_path, text):
    nb = json.loads(notebook_path.read_text())
    cells = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer-1"]
    assert len(cells) == 1
    cells[0]["source"] = text
    notebook_path.write_text(json.dumps(nb, indent=1))


def _submit(course, student, modules=None, answer=None, assignment=A):
    dest = course / "submitted" / student / assignment
    shutil.copytree(course / "release" / assignment, dest)
    (dest / "timestamp.txt").write_text("2025-01-15 12:00:00.000000 UTC")
    for name, text in (modules or {}).items():
        (dest / "src" / "attnlab" / name).write_text(text)
    if answer:
        _fill_answer(dest / f"{assignment}.ipynb", answer)
    return dest


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("classroom") / "course"
    r = _attnlab("classroom", "source", str(course), "--notebooks", "01")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _attnlab("classroom", "release", str(course), A)
    assert r.returncode == 0, r.stdout + r.stderr

    (course / "students.csv").write_text("id,first_name,last_name\ncomplete,Ada,Complete\n"
                                         "stubs,Sam,Stubs\nbuggy,Bo,Buggy\ntamper,Tim,Tamper\n")
    _nbgrader(course, "db", "student", "import", "students.csv")

    solutions = _solution_modules()
    assert GOOD_LINE in solutions["softmax.py"]
    buggy = dict(solutions, **{"softmax.py": solutions["softmax.py"].replace(GOOD_LINE, BUGGY_LINE)})
    _submit(course, "complete", solutions, answer="Attention keeps every encoder state and reads a new mix of them.")
    _submit(course, "stubs")
    _submit(course, "buggy", buggy, answer="A written answer.")
    # the planted bug again, plus: deletes one autograded cell, and rewrites the softmax one to claim 2.0
    tamper = _submit(course, "tamper", buggy)
    nb_path = tamper / f"{A}.ipynb"
    nb = json.loads(nb_path.read_text())
    gid = lambda c: c["metadata"].get("nbgrader", {}).get("grade_id")  # noqa: E731
    nb["cells"] = [c for c in nb["cells"] if gid(c) != "check-softmax_masked_softmax"]
    next(c for c in nb["cells"] if gid(c) == "check-softmax_softmax")["source"] = "2.0"
    nb_path.write_text(json.dumps(nb, indent=1))

    _nbgrader(course, "autograde", A)
    _nbgrader(course, "export", "--to", "grades.csv")
    _nbgrader(course, "generate_feedback", A, "--student", "buggy")
    return course


def _exported(course):
    with open(course / "grades.csv", newline="") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)}


def _cell_scores(course, student, assignment=A):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=classroom.read_course_id(course)) as gb:
        nb = gb.find_submission_notebook(assignment, assignment, student)
        return {g.name: (g.auto_score, g.manual_score, g.score, g.max_score) for g in nb.grades}


# ------------------------------------------------------------------------------------------ source
@pytest.mark.slow
def test_source_layout_and_config(course):
    src = course / "source" / A
    assert (src / f"{A}.ipynb").is_file()                       # top level (nbgrader globs <a>/*.ipynb)
    stubs = {p.name for p in (src / "src" / "attnlab").glob("*.py")}
    assert stubs == {p.name for p in (SOLUTIONS / "attnlab").glob("*.py")}
    assert "__init__.py" in stubs                               # a namespace package would lose (trap 3)
    config = (course / "nbgrader_config.py").read_text()
    for rel in sorted(stubs):
        assert f"'src/attnlab/{rel}'" in config                 # exact paths, not globs (trap 1)
    for setting in ("c.Execute.timeout", "c.OverwriteCells.add_missing_cells = True", "ClearHiddenTests"):
        assert setting in config
    nb = json.loads((src / f"{A}.ipynb").read_text())
    meta = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]
            for c in nb["cells"] if "nbgrader" in c["metadata"]}
    checks = {k: v for k, v in meta.items() if k.startswith("check-")}
    assert sum(v["points"] for v in checks.values()) == FULL == 9.0
    assert all(v["grade"] and v["locked"] and not v["solution"] for v in checks.values())
    assert meta["answer-1"]["solution"] and meta["answer-1"]["grade"] and meta["answer-1"]["points"] == 2
    assert meta["setup"]["locked"] and not meta["setup"]["grade"]
    setup = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "setup")
    assert "autograde" not in "".join(setup["source"])          # students do not have the package


# ----------------------------------------------------------------------------------------- release
@pytest.mark.slow
def test_release_has_no_solutions_or_hidden_tests(course):
    assert classroom.main("verify-release", [str(course), A], out=lambda *_: None) == 0
    rel = course / "release" / A
    text = (rel / f"{A}.ipynb").read_text()
    for needle in ("BEGIN HIDDEN TESTS", "hidden_score", "BEGIN SOLUTION"):
        assert needle not in text
    # no sentence of a model answer reaches the students, not even through the notebook's own prose
    source = json.loads((course / "source" / A / f"{A}.ipynb").read_text())
    answers = ["".join(c["source"]) for c in source["cells"] if "answer" in c["metadata"].get("tags", [])]
    assert answers
    released = "".join("".join(c["source"]) for c in json.loads(text)["cells"])
    released = " ".join(released.split())
    for answer in answers:
        words = answer.split()
        assert len(words) > 20
        for i in range(len(words) - 6):                     # no run of 7 words of a model answer
            run = " ".join(words[i:i + 7])
            assert run not in released, run
    assert "YOUR ANSWER HERE" in text
    solutions = _solution_modules()
    for p in (rel / "src" / "attnlab").glob("*.py"):
        if p.name != "__init__.py":
            assert p.read_text() != solutions[p.name]
            assert "NotImplementedError" in p.read_text()


@pytest.mark.slow
def test_verify_release_catches_planted_leaks(course, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(course, leaky, ignore=shutil.ignore_patterns("submitted", "autograded", "feedback"))
    lines = []
    pkg = leaky / "release" / A / "src" / "attnlab"
    (pkg / "softmax.py").write_text((SOLUTIONS / "attnlab" / "softmax.py").read_text())
    assert classroom.main("verify-release", [str(leaky), A], out=lines.append) == 1
    assert any("softmax.py" in line for line in lines), lines

    # one solution line pasted into a stub is enough
    shutil.copy(course / "release" / A / "src" / "attnlab" / "softmax.py", pkg / "softmax.py")
    assert classroom.main("verify-release", [str(leaky), A], out=lambda *_: None) == 0
    stub = (pkg / "scoring.py").read_text()
    (pkg / "scoring.py").write_text(stub + "\n" + GOOD_LINE + "\n")
    lines = []
    assert classroom.main("verify-release", [str(leaky), A], out=lines.append) == 1
    assert any("solution line" in line for line in lines), lines

    # a hidden test left in the released notebook
    shutil.copy(course / "release" / A / "src" / "attnlab" / "scoring.py", pkg / "scoring.py")
    nb_path = leaky / "release" / A / f"{A}.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][-1]["source"] += "\nfrom autograde.classroom import hidden_score"
    nb_path.write_text(json.dumps(nb))
    lines = []
    assert classroom.main("verify-release", [str(leaky), A], out=lines.append) == 1
    assert any("hidden_score" in line for line in lines), lines


# ----------------------------------------------------------------------------------------- scores
@pytest.mark.slow
def test_exported_scores(course):
    rows = _exported(course)
    assert set(STUDENTS) <= set(rows)
    scores = {s: float(rows[s]["raw_score"]) for s in STUDENTS}
    print("nbgrader raw scores:", scores)
    # the written answer (2 points) is not graded yet, so raw_score is the autograded part
    assert float(rows["complete"]["max_score"]) == FULL + 2
    assert scores["complete"] == pytest.approx(FULL)
    assert scores["stubs"] == 0.0
    assert 0.0 < scores["buggy"] < FULL
    expected = grade_submission(course / "autograded" / "buggy" / A / "src", [e.id for e in classroom.notebook_exercises(NB)])
    assert scores["buggy"] == pytest.approx(expected["total"], abs=1e-6)
    assert expected["total"] < FULL
    # a deleted autograded cell is added back and a rewritten locked cell is restored (trap 8):
    # not restored, "2.0" would score full credit (9.0); not added back, the deleted cell would score 0 (6.43)
    assert scores["tamper"] == pytest.approx(expected["total"], abs=1e-6)


@pytest.mark.slow
def test_cell_scores_match_the_runner(course):
    complete = _cell_scores(course, "complete")
    buggy = _cell_scores(course, "buggy")
    assert complete["check-softmax_softmax"][0] == 2.0
    assert complete["answer-1"][0] is None                 # written answer: manual grading
    assert 0 < buggy["check-softmax_softmax"][0] < 2.0     # partial credit for the planted bug
    for ex in classroom.notebook_exercises(NB):
        if ex.id != "softmax.softmax":
            assert buggy[classroom.grade_id_for(ex.id)][0] == ex.points
    assert all(v[0] == 0 for k, v in _cell_scores(course, "stubs").items() if k.startswith("check-"))


@pytest.mark.slow
def test_student_code_is_not_overwritten(course):
    # exclude_overwriting: autograded/ keeps the student's src, not the stubs from source/
    src = course / "autograded" / "complete" / A / "src" / "attnlab" / "softmax.py"
    assert src.read_text() == _solution_modules()["softmax.py"]


# ---------------------------------------------------------------------------------------- feedback
@pytest.mark.slow
def test_feedback_hides_hidden_tests(course):
    html_files = list((course / "feedback" / "buggy" / A).glob("*.html"))
    assert len(html_files) == 1
    html = html_files[0].read_text()
    for needle in ("hidden_score", "BEGIN HIDDEN TESTS", "autograde.classroom", "Traceback (most recent call last)",
                   "classroom.py", "runner.py"):
        assert needle not in html, needle
    assert "softmax.softmax" in html and "large logits" in html   # the failed cases are explained


# --------------------------------------------------------------------------------------- push-grades
@pytest.mark.slow
def test_push_grades(course, tmp_path):
    from conftest import run_cli

    results = tmp_path / "results"
    ids = [e.id for e in classroom.notebook_exercises(NB)]
    # the score of record, from nbgrader's own submitted/<student>/<assignment>/src layout
    batch = run_cli("grade-batch", course / "submitted", "--assignment", A, "--out", results, *ids)
    assert batch.returncode == 0, batch.stderr
    assert (results / ".summary.json").exists()
    assert json.loads((results / "complete.json").read_text())["total"] == 9.0
    (results / "ghost.json").write_text((results / "buggy.json").read_text())
    lines = []
    assert classroom.main("push-grades", [str(course), A, str(results)], out=lines.append) == 0
    assert any("ghost" in line and "not in the gradebook" in line for line in lines), lines
    assert not any("summary" in line for line in lines), lines  # grade-batch's .summary.json is not a student
    buggy = _cell_scores(course, "buggy")
    expected = json.loads((results / "buggy.json").read_text())
    for entry in expected["exercises"]:
        assert buggy[classroom.grade_id_for(entry["id"])][1] == pytest.approx(entry["points"])
        assert buggy[classroom.grade_id_for(entry["id"])][2] == pytest.approx(entry["points"])


# ------------------------------------------------------------------------------ fast unit checks
def test_visible_checks_pass_on_the_reference():
    """Every exercise's visible check (the part students see) passes with the reference implementation."""
    import numpy as np

    from autograde import registry

    for ex in registry.all_exercises():
        source = classroom.check_cell_source(ex)
        visible, hidden = source.split("### BEGIN HIDDEN TESTS")
        assert "autograde" not in visible and "hidden_score" in hidden
        visible = visible.replace(f"from attnlab.{ex.module} import {ex.function}\n", "")
        exec(compile(visible, ex.id, "exec"), {"np": np, ex.function: ex.reference})


def test_visible_checks_catch_a_wrong_function():
    import numpy as np

    from autograde import registry

    ex = registry.get("softmax.softmax")
    visible = classroom.check_cell_source(ex).split("### BEGIN HIDDEN TESTS")[0]
    visible = visible.replace("from attnlab.softmax import softmax\n", "")
    with pytest.raises(AssertionError, match="softmax.softmax: wrong values"):
        exec(visible, {"np": np, "softmax": lambda x, axis=-1: np.exp(x)})


def test_hidden_score_is_a_plain_float_and_fails_closed(tmp_path):
    score = classroom.hidden_score("scoring.dot_scores", src=str(SOLUTIONS))
    assert type(score) is float and score == 1.0
    with pytest.raises(AssertionError, match="could not run"):
        classroom.hidden_score("scoring.dot_scores", src=str(tmp_path))
    with pytest.raises(AssertionError, match="unknown exercise"):
        classroom.hidden_score("nope.nope", src=str(SOLUTIONS))


def test_literal_round_trips():
    import numpy as np

    values = [np.array([[1.5, -np.inf], [np.nan, 1e-300]]), np.array([True, False]), np.arange(3),
              (2, 3.25), {"axis": -1}, np.float32(0.1)]
    for v in values:
        back = eval(classroom.literal(v), {"np": np})
        if isinstance(v, np.ndarray):
            assert back.dtype == v.dtype and np.array_equal(back, v, equal_nan=True)
        elif isinstance(v, np.floating):
            assert back == float(v)
        else:
            assert back == v


# ------------------------------------------------------------------- notebook 04: a PyTorch exercise
NB4 = next(nb for nb in NOTEBOOKS if nb.number == 4)
A4 = NB4.name                                 # "04_multihead_transformer"
COURSE04_BUDGET_S = 180


@pytest.fixture(scope="module")
def course04(tmp_path_factory):
    """Notebook 04 through real nbgrader: source, release, a complete and a stub student, autograde. The
    notebook's training demos run shortened (ATTNLAB_QUICK=1) while nbgrader executes it."""
    started = time.monotonic()
    course = tmp_path_factory.mktemp("classroom04") / "course"
    for args in (("source", str(course), "--notebooks", "04"), ("release", str(course), A4)):
        r = _attnlab("classroom", *args)
        assert r.returncode == 0, r.stdout + r.stderr
    (course / "students.csv").write_text("id,first_name,last_name\ncomplete,Ada,Complete\nstubs,Sam,Stubs\n")
    _nbgrader(course, "db", "student", "import", "students.csv")
    _submit(course, "complete", _solution_modules(), assignment=A4,
            answer="Post-LN's large gradients near the output need small first steps; Pre-LN's do not.")
    _submit(course, "stubs", assignment=A4)
    _nbgrader(course, "autograde", A4, extra_env={"ATTNLAB_QUICK": "1"})
    return course, time.monotonic() - started


@pytest.mark.slow
def test_notebook_04_with_a_pytorch_exercise_grades_end_to_end(course04):
    from autograde import registry

    course, seconds = course04
    exercises = classroom.notebook_exercises(NB4)
    assert "transformer.TransformerBlock" in [e.id for e in exercises]
    assert registry.get("transformer.TransformerBlock").profile == "torch"
    complete, stubs = _cell_scores(course, "complete", A4), _cell_scores(course, "stubs", A4)
    for ex in exercises:
        gid = classroom.grade_id_for(ex.id)
        assert complete[gid][0] == ex.points == complete[gid][3], (ex.id, complete[gid])
        assert stubs[gid][0] == 0, (ex.id, stubs[gid])
    assert sum(complete[classroom.grade_id_for(e.id)][0] for e in exercises) == sum(e.points for e in exercises)
    assert complete["answer-1"][0] is None  # a written answer is graded by hand
    print(f"notebook 04 classroom: source, release and autograde of 2 students in {seconds:.0f} s")
    assert seconds < COURSE04_BUDGET_S
