"""The judge: runs every case of every selected exercise against one submission and scores it.

    grade_submission(root, exercise_ids=None, ...) -> the grade dict written by `attnlab grade --json`

`root` is a folder containing `attnlab/` (a learner's `src/`, the instructor's `solutions/`, one student's
submission). Its code runs in sandboxed workers (autograde.backends, autograde.sandbox), one per profile;
each exercise is graded on its own, in its own profile, with the functions it builds on swapped for the
reference, and in dependency order so that nothing an exercise learns while graded can help an exercise
graded earlier.
"""
import os
import sys
from pathlib import Path

import numpy as np

from . import registry
from .backends import InProcessBackend, SandboxBackend  # noqa: F401  (InProcessBackend: re-exported)
from .errors import (CaseFailed, CaseSkipped, ForbiddenUsed, ImportFailed, LearnerRaised, NotImplementedYet,
                     SandboxError, UsageError, WorkerGone)
from .framework import Context, case_rng, hint_suffix, sentence
from .sandbox import Limits, dropped_guarantees, host_cuda

STATUSES = ("passed", "failed", "error", "timeout", "not_implemented", "forbidden")
DIAGNOSED_CASES = 5  # failing cases per exercise whose mutants are replayed (bounded judge time, deterministic)
MEMORY_WORDS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "Unable to allocate",
                "out of memory")


def check_timeout(timeout):
    """Reject a non-positive --timeout (None means the default)."""
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")


def find_package_root(folder):
    """The folder holding `attnlab/`: the folder itself or its `src/` (a whole course checkout)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    for candidate in (folder, folder / "src"):
        if owned_package(folder, candidate):
            return candidate
        if (candidate / "attnlab").is_dir():
            raise UsageError(f"{candidate / 'attnlab'}: a link to a folder outside {folder}; refusing to grade it")
    raise UsageError(f"{folder}: no attnlab/ package in it (expected {folder}/attnlab/ or {folder}/src/attnlab/)")


def owned_package(owner, candidate):
    """True when candidate/attnlab is a real folder inside `owner` (no link leads elsewhere: a submission
    must not get someone else's code graded by linking to it)."""
    owner, candidate = Path(owner), Path(candidate)
    package = candidate / "attnlab"
    if not package.is_dir():
        return False
    for path in (candidate, package):
        if path.is_symlink():
            return False
    return package.resolve().is_relative_to(owner.resolve())


# ------------------------------------------------------------------------------------- grading
def grade_exercise(exercise, backend, seed=0):
    """Run one exercise's cases. Returns its entry of the grade dict."""
    tests, status, reason = [], None, ""
    cases = exercise.cases
    try:
        backend.begin_exercise(exercise)
    except Exception as exc:  # forbidden source, a worker that cannot start: the same as in a case
        status, reason = _exercise_outcome(exercise, backend, exc)
        if status is None:
            raise
        cases_left = cases
    else:
        cases_left = []
        # enough for the reference and every mutant on the first DIAGNOSED_CASES failing cases
        diagnosis_budget = {"replays": DIAGNOSED_CASES * (len(exercise.mutants) + 1)}
        for i, case in enumerate(cases):
            ctx = Context(exercise, case, case_rng(seed, exercise.id, case.name), backend, diagnosis_budget)
            try:
                _run_case(case, ctx, backend)
                tests.append(_test(case, True, ""))
            except CaseSkipped as skip:
                tests.append(_test(case, None, str(skip)))
            except CaseFailed as failure:
                tests.append(_test(case, False, str(failure)))
            except LearnerRaised as exc:
                tests.append(_test(case, False, _raised_message(exercise, case, ctx, exc.info)))
            except WorkerGone as exc:
                if case.memory_budget_mb and not exc.timed_out:  # its own fresh worker (end_case killed it):
                    tests.append(_test(case, False, _memory_message(exercise, case, exc.reason)))
                    continue
                status, reason = _exercise_outcome(exercise, backend, exc)
            except Exception as exc:
                status, reason = _exercise_outcome(exercise, backend, exc)
                if status is None:
                    raise
            if status is not None:
                cases_left = cases[i:]
                break
    for rest in cases_left:
        tests.append(_test(rest, False, sentence(f"{exercise.id}: {reason}")))
    counted = [(c, t) for c, t in zip(cases, tests) if t.get("skipped") is None]
    weight = sum(c.weight for c, _ in counted)
    earned = sum(c.weight for c, t in counted if t["passed"])
    if status in ("forbidden", "not_implemented") or weight == 0:
        points = 0.0
    else:
        points = round(exercise.points * earned / weight, 2)
    if status is None:
        status = "passed" if earned == weight and weight > 0 else "failed"
    return {"id": exercise.id, "points": points, "max_points": float(exercise.points), "status": status,
            "tests": tests}


def _run_case(case, ctx, backend):
    backend.begin_case(case)
    try:
        with np.errstate(all="ignore"):
            case.run(ctx)
    finally:
        backend.end_case(case)


def _exercise_outcome(exercise, backend, exc):
    """(status, reason) for an exception that ends the exercise, or (None, '') for one that is not ours."""
    if isinstance(exc, NotImplementedYet):
        return "not_implemented", "raises NotImplementedError: not implemented yet"
    if isinstance(exc, ForbiddenUsed):
        return "forbidden", exc.message
    if isinstance(exc, ImportFailed):
        info = exc.info
        where = f" at {info['where']}" if info.get("where") else ""
        return "error", (f"attnlab.{exercise.module} could not be imported: "
                         f"{info['type']}: {info['message']}{where}")
    if isinstance(exc, WorkerGone):
        backend.abandon()
        if exc.timed_out:
            return "timeout", f"did not finish within the limits ({exc.reason}: an infinite loop?)"
        return "error", f"the grading process died: {exc.reason}"
    if isinstance(exc, SandboxError):
        return "error", str(exc)
    return None, ""


def _raised_message(exercise, case, ctx, info):
    where = f" at {info['where']}" if info.get("where") else ""
    if case.memory_budget_mb and any(w in f"{info.get('type')}: {info.get('message')}" for w in MEMORY_WORDS):
        return _memory_message(exercise, case, f"{info['type']}: {info['message']}", where)
    return (sentence(f"{exercise.id}: {case.intent} [{case.name}]; raised {info['type']}: {info['message']}{where}")
            + hint_suffix(ctx.diagnose()))


def _memory_message(exercise, case, what, where=""):
    detail = f"ran out of its {case.memory_budget_mb} MiB memory budget ({_first_line(what)}){where}"
    return sentence(f"{exercise.id}: {case.intent} [{case.name}]; {detail}") + hint_suffix(case.memory_hint)


def _first_line(text):
    text = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return text[:300]


def _test(case, passed, message):
    entry = {"name": case.name, "intent": case.intent, "passed": passed, "message": "" if passed else message}
    if passed is None:
        entry["passed"], entry["skipped"] = False, message
        entry["message"] = ""
    return entry


def prepare_judge(exercises):
    """Import what the judge's oracles and mutant replays need, before any submission's clock runs (and,
    in grade-batch, before its grading threads start: two threads importing torch at once can hit a
    CPython 3.11 bug, "AST constructor recursion depth mismatch")."""
    if any(e.judge_needs_torch for e in exercises):
        import torch  # noqa: F401
    if any(e.profile == "matplotlib" for e in exercises):
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # a terminal: replays never open windows (a Jupyter kernel keeps its own)
        import matplotlib.pyplot  # noqa: F401


def grade_with_backend(backend, exercise_ids=None, seed=0, submission="", extra=None):
    exercises = registry.select(exercise_ids)
    prepare_judge(exercises)
    results = {}
    try:
        for exercise in registry.dependency_order(exercises):
            results[exercise.id] = grade_exercise(exercise, backend, seed)
    finally:
        backend.close()
    entries = [results[e.id] for e in exercises]  # canonical order, whatever the grading order
    report = {
        "submission": submission,
        "total": round(sum(e["points"] for e in entries), 2),
        "max_total": round(sum(e["max_points"] for e in entries), 2),
        "exercises": entries,
        "seed": int(seed),
        "sandbox": backend.mode,
    }
    if any(c.device == "cuda" for e in exercises for c in e.cases):
        available, detail = host_cuda()
        report["device"] = {"cuda": detail if available else None}
        if not available:
            report["device"]["skipped"] = f"GPU cases skipped and not counted: {detail}"
    if backend.mode == "none":
        report["dropped_guarantees"] = dropped_guarantees("none")
    if extra:
        report.update(extra)
    return report


def grade_submission(folder, exercise_ids=None, timeout=None, seed=None, limits=None):
    """Grade the attnlab package in `folder` (sandboxed). Raises UsageError on bad input."""
    root = find_package_root(folder)
    exercises = registry.select(exercise_ids)  # validates ids before any process starts
    limits = limits or Limits()
    check_timeout(timeout)
    if timeout is not None:
        limits.wall_s = float(timeout)
    if seed is None:
        seed = int(os.environ.get("ATTNLAB_GRADE_SEED", "0"))
    backend = SandboxBackend(root, limits, exercises)
    return grade_with_backend(backend, [e.id for e in exercises], seed, submission=str(folder))
