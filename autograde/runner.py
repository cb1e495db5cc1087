"""The judge: runs every case of every selected exercise against one submission and scores it.

    grade_submission(root, exercise_ids=None, ...) -> the grade dict written by `attnlab grade --json`

`root` is a folder containing `attnlab/` (a learner's `src/`, the instructor's `solutions/`, one student's
submission). Its code runs in a sandboxed worker (autograde.sandbox); each exercise is graded on its own,
with the functions it builds on swapped for the reference, and in dependency order so that nothing an
exercise learns while graded can help an exercise graded earlier.
"""
import os
import shutil
import time
from pathlib import Path

import numpy as np

from . import registry
from .framework import (CaseFailed, Context, diagnose_exception, hint_suffix, ForbiddenUsed, ImportFailed, LearnerRaised, NotImplementedYet,
                        case_rng)
from .sandbox import TORCH_PACKAGES, Limits, dropped_guarantees, SandboxError, Worker, WorkerGone, copy_submission, sandbox_mode
from .worker import UNAVAILABLE_REASON, TensorData

STATUSES = ("passed", "failed", "error", "timeout", "not_implemented", "forbidden")


class UsageError(Exception):
    """Bad input from the user (unknown exercise, missing folder): a one-line message."""


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


# ------------------------------------------------------------------------------------ backends
class SandboxBackend:
    """Calls into a submission through a sandboxed worker, restarting it after a crash or a timeout."""

    def __init__(self, root, limits=None, exercises=()):
        self.limits = limits or Limits()
        # NumPy exercises run where torch does not exist: no way to call its attention or softmax, however
        # the call is disguised. Only a selection with a PyTorch exercise gets torch in the sandbox.
        self.unavailable = () if any(e.learner_torch for e in exercises) else TORCH_PACKAGES
        self.mode = sandbox_mode()
        self.copy_dir = copy_submission(Path(root) / "attnlab", self.limits)
        self.worker = None
        self.deadline = None
        self.imported = set()
        self.broken = {}  # module -> WorkerGone / ImportFailed seen while importing it: not retried

    def begin_exercise(self, exercise):
        # The wall-time budget counts the submission's time only (waiting for the worker), not the judge's
        # own work between calls (oracles, comparisons), so a busy grader cannot time out a correct answer.
        self.budget_left = self.limits.wall_s

    def _ensure_imported(self, module):
        if module in self.broken:
            raise self.broken[module]
        if self.worker is None or not self.worker.alive:
            self.worker = Worker(self.copy_dir, self.limits, self.mode, self.unavailable)
            self.worker.start()
            self.imported = set()
        if module in self.imported:
            return
        try:
            message = self.worker.import_module(module, self.deadline)
        except WorkerGone as exc:
            self.broken[module] = exc  # a module that hangs or kills the process on import does it every time
            raise
        if message.get("op") == "raised":
            info = {k: message.get(k, "") for k in ("type", "message", "where")}
            self.broken[module] = _unavailable_use(info) or ImportFailed(info)
            raise self.broken[module]
        self.imported.add(module)

    def call(self, exercise, args, kwargs):
        started = time.monotonic()
        self.deadline = started + max(self.budget_left, 0.0)
        try:
            self._ensure_imported(exercise.module)
            message, value = self.worker.call(exercise.module, exercise.function, args, kwargs, exercise.deps,
                                              exercise.forbidden, _reference_for_dep, self.deadline)
        finally:
            self.budget_left -= time.monotonic() - started
        return _interpret(message, value)

    def abandon(self):
        """Kill the worker (after a timeout or a crash); the next call starts a fresh one."""
        if self.worker is not None:
            self.worker.kill()
            self.worker = None
            self.imported = set()

    def close(self):
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        shutil.rmtree(self.copy_dir, ignore_errors=True)


class InProcessBackend:
    """Trusted code only (the mutant catalogue, the solutions): calls functions in this process.

    Results still go through the wire codec, so types are judged exactly as for a sandboxed submission.
    """

    mode = "in-process"

    def __init__(self, functions):
        self.functions = functions  # exercise id -> callable

    def begin_exercise(self, exercise):
        pass

    def call(self, exercise, args, kwargs):
        from .framework import _copy
        from .worker import decode, encode

        func = self.functions[exercise.id]
        try:
            with np.errstate(all="ignore"):
                result = func(*_copy(args), **_copy(kwargs))
        except NotImplementedError as exc:
            raise NotImplementedYet(str(exc)) from None
        except Exception as exc:
            raise LearnerRaised({"type": type(exc).__name__, "message": str(exc), "where": ""}) from None
        arrays = []
        encoded = encode(result, arrays)
        return decode(encoded, arrays)

    def abandon(self):
        pass

    def close(self):
        pass


def _unavailable_use(info):
    """A ForbiddenUsed when the submission tried to import a package NumPy exercises may not use."""
    if info.get("type") == "ModuleNotFoundError" and UNAVAILABLE_REASON in str(info.get("message")):
        name = str(info["message"]).split("'")[1] if "'" in str(info["message"]) else "torch"
        where = f" ({info['where']})" if info.get("where") else ""
        top = name.split(".")[0]
        return ForbiddenUsed([top], f"imports {top}{where}, which NumPy exercises may not use: "
                                    "implement it with NumPy")
    return None


def _reference_for_dep(name, args, kwargs):
    exercise = registry.get(name)
    args = [a.array if isinstance(a, TensorData) else a for a in args]
    with np.errstate(all="ignore"):
        return exercise.reference(*args, **kwargs)


def _interpret(message, value):
    forbidden = message.get("forbidden") or []
    if forbidden:
        raise ForbiddenUsed(forbidden)
    if message.get("op") == "result":
        return value
    info = {k: message.get(k, "") for k in ("type", "message", "where")}
    forbidden = _unavailable_use(info)
    if forbidden:
        raise forbidden
    if message.get("phase") == "import":
        raise ImportFailed(info)
    if info["type"] == "NotImplementedError":
        raise NotImplementedYet(info["message"])
    raise LearnerRaised(info)


# ------------------------------------------------------------------------------------- grading
def grade_exercise(exercise, backend, seed=0):
    """Run one exercise's cases. Returns its entry of the grade dict."""
    tests, status, reason = [], None, ""
    backend.begin_exercise(exercise)
    cases = exercise.cases
    for i, case in enumerate(cases):
        ctx = Context(exercise, case, case_rng(seed, exercise.id, case.name), backend.call)
        try:
            with np.errstate(all="ignore"):
                case.run(ctx)
            tests.append(_test(case, True, ""))
        except CaseFailed as failure:
            tests.append(_test(case, False, str(failure)))
        except LearnerRaised as exc:
            info = exc.info
            where = f" at {info['where']}" if info.get("where") else ""
            hint = diagnose_exception(exercise, *ctx.pending, info["type"])
            tests.append(_test(case, False, f"{exercise.id}: {case.intent} [{case.name}]; raised "
                                            f"{info['type']}: {info['message']}{where}."
                                            + hint_suffix(hint)))
        except NotImplementedYet:
            status, reason = "not_implemented", "raises NotImplementedError: not implemented yet"
        except ForbiddenUsed as exc:
            status, reason = "forbidden", exc.message
        except ImportFailed as exc:
            info = exc.info
            where = f" at {info['where']}" if info.get("where") else ""
            status, reason = "error", (f"attnlab.{exercise.module} could not be imported: "
                                       f"{info['type']}: {info['message']}{where}")
        except WorkerGone as exc:
            backend.abandon()
            if exc.timed_out:
                status, reason = "timeout", "did not finish within the time limit (an infinite loop?)"
            else:
                status, reason = "error", f"the grading process died: {exc.reason}"
        except SandboxError as exc:
            status, reason = "error", str(exc)
        if status is not None:
            for rest in cases[i:]:
                tests.append(_test(rest, False, f"{exercise.id}: {reason}."))
            break
    weight = sum(c.weight for c in cases)
    earned = sum(c.weight for c, t in zip(cases, tests) if t["passed"])
    points = 0.0 if status in ("forbidden", "not_implemented") else round(exercise.points * earned / weight, 2)
    if status is None:
        status = "passed" if earned == weight else "failed"
    return {"id": exercise.id, "points": points, "max_points": float(exercise.points), "status": status,
            "tests": tests}


def _test(case, passed, message):
    return {"name": case.name, "intent": case.intent, "passed": passed, "message": "" if passed else message}


def grade_with_backend(backend, exercise_ids=None, seed=0, submission="", extra=None):
    exercises = registry.select(exercise_ids)
    if any(e.uses_torch for e in exercises):
        import torch  # noqa: F401  (the oracle's import, seconds, before any submission's clock runs)
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
