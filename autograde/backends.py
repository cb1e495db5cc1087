"""How the judge reaches the code it grades.

* `SandboxBackend`: a submission. One sandboxed worker per profile (numpy, torch, matplotlib; cuda for GPU
  cases), a fresh worker for each case with a memory budget, the module state and object table reset for
  each exercise, wall time and CPU time budgeted per exercise.
* `InProcessBackend`: trusted code only (the solutions, the mutant catalogue, the fair alternatives), run in
  the judge's process through the same `worker.Session` and the same wire codec, so values are typed and
  handles work exactly as for a sandboxed submission.

Both answer `begin_exercise`, `begin_case`, `end_case`, `call(exercise, request, args, kwargs)`, `abandon`
and `close`; a request is what `worker.Session.run` executes.
"""
import time
from pathlib import Path

import numpy as np

from . import profiles, scan, wire
from .errors import (CaseSkipped, ForbiddenUsed, ImportFailed, LearnerRaised, NotImplementedYet, SandboxError,
                     WorkerGone)
from .sandbox import Limits, Worker, copy_submission, host_cuda, sandbox_mode
from .worker import Session, generators


class SandboxBackend:
    """Calls into a submission through sandboxed workers, restarting one after a crash or a timeout."""

    def __init__(self, root, limits=None, exercises=()):
        self.limits = limits or Limits()
        self.mode = sandbox_mode()
        self.copy_dir = copy_submission(Path(root) / "attnlab", self.limits)
        self.per_profile = {}
        for e in exercises:
            self.per_profile[e.profile] = self.per_profile.get(e.profile, 0) + 1
            if any(c.device == "cuda" for c in e.cases):
                self.per_profile["cuda"] = self.per_profile.get("cuda", 0) + 1
        self.workers = {}       # profile -> Worker
        self.imported = {}      # profile -> modules imported since the worker's last reset
        self.broken = {}        # (profile, module) -> ImportFailed / ForbiddenUsed / WorkerGone: not retried
        self.facts = {}         # profile -> what its worker reported (versions, CUDA)
        self.exercise = None
        self.case_worker = None  # a fresh worker with a memory budget, for one case
        self.reset_for = {}     # profile -> exercise id its worker was last reset for

    # -- exercises and cases ----------------------------------------------------------------
    def begin_exercise(self, exercise):
        """Reset the exercise's worker (fresh modules, no objects, a new CPU budget). The wall-time budget
        counts the submission's time only (waiting for the worker), not the judge's own work between
        calls (oracles, comparisons) nor a worker's start-up (importing torch), so a busy grader cannot
        time out a correct answer."""
        self.exercise = exercise
        self.budget_left = self.limits.wall_s
        if exercise.scan_names:
            findings = scan.scan_package(self.copy_dir / "attnlab", exercise.module, exercise.scan_names)
            if findings:
                raise ForbiddenUsed(findings, "uses PyTorch's own attention, which this exercise forbids: "
                                              + "; ".join(findings[:3]))
        self._worker(exercise.profile)

    def begin_case(self, case):
        if case.device == "cuda":
            available, reason = host_cuda()
            if not available:
                raise CaseSkipped(reason)
            worker = self._worker("cuda")
            cuda = worker.info.get("cuda") or {}
            if not cuda.get("available"):
                raise CaseSkipped(f"CUDA is not usable inside the sandbox: {cuda.get('reason', 'unknown')}")
        if case.memory_budget_mb:
            worker = Worker(self.copy_dir, self.limits, self.mode, self.exercise.profile,
                            memory_budget_mb=case.memory_budget_mb)
            try:
                worker.start()  # confirms the limit from outside (/proc/<pid>/limits) before any learner code
            except (SandboxError, WorkerGone):
                worker.kill()
                raise
            worker.cpu_mark = worker.cpu_seconds()
            self.case_worker = worker
            self.imported["memory"] = set()

    def end_case(self, case):
        worker, self.case_worker = self.case_worker, None
        if worker is None:
            return
        try:
            if worker.alive:  # the limit must still be the one armed: lifting it is tampering
                try:
                    worker.confirm_memory_limit()
                except SandboxError as exc:
                    raise ForbiddenUsed(["its memory limit"], f"changed the grader's memory limit ({exc})") from None
        finally:
            worker.kill()

    def memory_limit(self):
        """The address-space limit (bytes) the current memory-budget case runs under, as confirmed."""
        return self.case_worker.info.get("memory_limit") if self.case_worker else None

    def _worker(self, profile):
        worker = self.workers.get(profile)
        if worker is None or not worker.alive:
            worker = Worker(self.copy_dir, self.limits, self.mode, profile, exercises=self.per_profile.get(profile, 1))
            try:
                worker.start()
            except (SandboxError, WorkerGone):
                worker.kill()
                raise
            self.workers[profile] = worker
            self.facts[profile] = worker.info
            self.reset_for.pop(profile, None)
        if self.reset_for.get(profile) != self.exercise.id:
            worker.reset(time.monotonic() + self.limits.start_s)
            self.imported[profile] = set()
            self.reset_for[profile] = self.exercise.id
        return worker

    # -- calls --------------------------------------------------------------------------------
    def call(self, exercise, request, args, kwargs, device=None):
        if self.case_worker is not None:
            worker, key = self.case_worker, "memory"
        else:
            key = "cuda" if device == "cuda" else exercise.profile
            worker = self._worker(key)
        started = time.monotonic()
        deadline = started + max(self.budget_left, 0.0)
        judge_seconds = 0.0
        try:
            self._ensure_imported(worker, key, exercise.module, deadline)
            message, value, judge_seconds = worker.call(request, args, kwargs, exercise.deps, exercise.forbidden,
                                                        _reference_for_dep, deadline)
        finally:
            self.budget_left -= time.monotonic() - started - judge_seconds
        return _interpret(message, value)

    def _ensure_imported(self, worker, key, module, deadline):
        profile = worker.profile.name
        if (profile, module) in self.broken:
            raise self.broken[(profile, module)]
        if module in self.imported.setdefault(key, set()):
            return
        try:
            message = worker.import_module(module, deadline)
        except WorkerGone as exc:
            self.broken[(profile, module)] = exc  # a module that hangs or kills the process on import does it every time
            raise
        if message.get("op") == "raised":
            info = {k: message.get(k, "") for k in ("type", "message", "where")}
            self.broken[(profile, module)] = _unavailable_use(info) or ImportFailed(info)
            raise self.broken[(profile, module)]
        self.imported[key].add(module)

    def abandon(self):
        """Kill the worker that failed (after a timeout or a crash); the next call starts a fresh one."""
        if self.case_worker is not None:
            self.case_worker.kill()
            self.case_worker = None
            return
        for profile, worker in list(self.workers.items()):
            if not worker.alive or (self.exercise is not None and profile in (self.exercise.profile, "cuda")):
                worker.kill()
                del self.workers[profile]

    def close(self):
        for worker in list(self.workers.values()) + ([self.case_worker] if self.case_worker else []):
            worker.close()
        self.workers.clear()
        import shutil

        shutil.rmtree(self.copy_dir, ignore_errors=True)


class InProcessBackend:
    """Trusted code only (the mutant catalogue, the solutions, fair alternatives): runs in this process.

    `functions` maps exercise ids to the function or class standing in for the learner's. Values go
    through the wire codec both ways, so types are judged exactly as for a sandboxed submission. A case's
    memory budget is emulated from the process's peak resident memory; the sandbox's kernel-enforced
    limit stays the score of record for submissions."""

    mode = "in-process"

    def __init__(self, functions, heavy=True):
        self.functions = functions
        self.heavy = heavy  # False: skip cases marked heavy (the test suite runs them at one seed)
        self.session = Session(lambda module, name: self.functions[f"{module}.{name}"])
        self.budget_mb = None
        self.facts = {}

    def begin_exercise(self, exercise):
        self.session.reset()

    def begin_case(self, case):
        if case.device == "cuda":
            available, reason = host_cuda()
            if not available:
                raise CaseSkipped(reason)
        if case.heavy and not self.heavy:
            raise CaseSkipped("a heavy case, run at one seed only")
        self.budget_mb = case.memory_budget_mb

    def end_case(self, case):
        self.budget_mb = None

    def memory_limit(self):
        return None

    def call(self, exercise, request, args, kwargs, device=None):
        return self.execute(request, args, kwargs)

    def execute(self, request, args, kwargs):
        args, kwargs = wire.roundtrip((list(args), dict(kwargs)), resolve_handle=self.session.lookup)
        try:
            with np.errstate(all="ignore"), _EmulatedBudget(self.budget_mb):
                result = self.session.run(request, args, kwargs)
        except NotImplementedError as exc:
            raise NotImplementedYet(str(exc)) from None
        except Exception as exc:
            raise LearnerRaised({"type": type(exc).__name__, "message": str(exc)[:2000], "where": ""}) from None
        return wire.roundtrip(result, on_object=self.session.describe)

    def abandon(self):
        pass

    def close(self):
        self.session.reset()


class _EmulatedBudget:
    """For trusted code in the judge's process: raise MemoryError when the process's resident memory grew by
    more than the case's budget during the call (its peak, VmHWM, reset before via /proc/self/clear_refs),
    with a message like the sandbox allocator's. Trusted code does not fight the measurement; submissions
    meet the kernel's limit in the sandbox."""

    def __init__(self, budget_mb):
        self.budget = (budget_mb << 20) if budget_mb else None

    @staticmethod
    def _status(field):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(field)

    def __enter__(self):
        if self.budget is not None:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak resident set size to the current one
            self.base = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.budget is not None and exc[0] is None:
            grew = self._status("VmHWM") - self.base
            if grew > self.budget:
                raise MemoryError(f"can't allocate memory: the call's peak memory grew by {grew >> 20} MiB "
                                  f"(emulated budget {self.budget >> 20} MiB)")
        return False


def _unavailable_use(info):
    """A ForbiddenUsed when the submission tried to import a package its exercise's profile does not have."""
    message = str(info.get("message"))
    if info.get("type") == "ModuleNotFoundError" and profiles.UNAVAILABLE_REASON in message:
        name = message.split("'")[1] if "'" in message else "torch"
        where = f" ({info['where']})" if info.get("where") else ""
        top = name.split(".")[0]
        return ForbiddenUsed([top], f"imports {top}{where}, which NumPy exercises may not use: "
                                    "implement it with NumPy")
    return None


def _reference_for_dep(name, args, kwargs):
    """The judge's answer to a dependency call: the reference's value, and the states the learner's random
    generators must move on to (the reference drew from copies of them)."""
    from . import registry

    exercise = registry.get(name)
    with np.errstate(all="ignore"):
        value = exercise.reference(*args, **kwargs)
    return value, [g.bit_generator.state for g in generators((list(args), kwargs))]


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
