"""The vocabulary graders are written in: exercises, cases, mutants, and the context a case runs in.

A grader module (``autograde/graders/<module>.py``) builds `Exercise` objects. Each case is a small
function ``case(t)`` that makes inputs with ``t.rng`` (seeded by the grader, never by the learner), reaches
the learner's code through ``t`` and states what it expects with ``t.expect(...)`` or ``t.require(...)``.
Everything in a case runs in the judge's process; only the requests cross into the submission's worker:

    t.call(*args, **kwargs)        a function exercise: call the learner's function
    obj = t.new(*args, **kwargs)   a class exercise: create an instance in the worker; `obj` is a `Remote`
    obj(*args), obj.call("m", ...) call it / a method of it; obj.get("attr") reads an attribute
    ax = t.make("axes")            a trusted helper object made in the worker (an Axes to draw into)

An object the worker already holds comes back as the same `Remote` (so `obj.call("eval")` returning self
is recognised). Every request and what came back is logged; when a case fails, each mutant replays the
whole log (the same constructor, the same calls, the same random streams) and its hint is shown when it
ends where the learner's code ended: same output, or same exception with the same message.
"""
import copy
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import profiles
from .compare import DTYPE_HINT, Mismatch, compare, describe_type, dtype_hint, pair_handles, same_output
from .errors import CaseFailed, LearnerRaised, NotImplementedYet
from .wire import AxesData, Handle

__all__ = ["Exercise", "Case", "Mutant", "Context", "Remote", "case_rng", "hint_suffix", "DTYPE_HINT"]


def sentence(text):
    """text ending in one full stop (no '..' when it already ends with punctuation)."""
    text = str(text).rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


def hint_suffix(hint):
    """' Hint: <hint>.' (no doubled punctuation), or '' without a hint."""
    if not hint:
        return ""
    return f" Hint: {hint}" + ("" if hint.endswith((".", "?", "!")) else ".")


@dataclass(frozen=True)
class Mutant:
    """A mistake learners make, as a runnable wrong implementation (a function, or a class for a class
    exercise), and the hint that names it."""
    name: str
    func: Callable
    hint: str


@dataclass(frozen=True)
class Alternative:
    """A correct implementation written another way (log-sum-exp instead of max-shift, einsum instead of
    matmul...): it must score full marks at every seed, or the grader is unfair to it."""
    name: str
    func: Callable


@dataclass(frozen=True)
class Case:
    name: str      # short label, unique within the exercise: "float32 (2, 3, 5, 7), large logits"
    intent: str    # one sentence: what this case checks and why
    run: Callable
    weight: float = 1.0
    device: str = None          # "cuda": runs on the GPU worker; skipped (and not counted) without CUDA
    memory_budget_mb: int = None  # runs in a fresh worker whose address space is limited to this much more
    memory_hint: str = ""       # what running out of that budget means
    diagnose: bool = True       # replay the mutants on a failure (off for cases too big to replay)
    heavy: bool = False         # seconds to run: the test suite runs it at one seed, not at every seed


@dataclass
class Exercise:
    id: str                          # "<module>.<function or class>"
    points: float
    reference: Callable              # our reference (a function, or a class for a class exercise); hidden
    cases: list = field(default_factory=list)
    deps: tuple = ()                 # function exercises it may build on: swapped for `reference` while graded
    forbidden: tuple = ()            # (module prefix, qualname part) of built-ins it must not call
    scan_names: tuple = ()           # names the judge looks for in the submission's source (autograde.scan)
    mutants: list = field(default_factory=list)
    alternatives: list = field(default_factory=list)
    demo: Callable = None            # rng -> (args, kwargs): a small visible example (classroom checks)
    profile: str = "numpy"           # the worker it is graded in (autograde.profiles)
    uses_torch: bool = False         # the judge needs torch for the oracle even though the learner may not

    def __post_init__(self):
        profiles.get(self.profile)  # an unknown profile is a grader bug: fail at load

    @property
    def module(self):
        return self.id.split(".", 1)[0]

    @property
    def function(self):
        return self.id.split(".", 1)[1]

    @property
    def kind(self):
        return "class" if isinstance(self.reference, type) else "function"

    @property
    def judge_needs_torch(self):
        return self.uses_torch or profiles.get(self.profile).torch

    def case(self, name, intent, weight=1.0, device=None, memory_budget_mb=None, memory_hint="", diagnose=True,
             heavy=False):
        """Decorator: register a case function."""
        def register(run):
            if any(c.name == name for c in self.cases):
                raise ValueError(f"{self.id}: duplicate case name {name!r}")
            self.cases.append(Case(name, intent, run, weight, device, memory_budget_mb, memory_hint, diagnose,
                                   heavy))
            return run
        return register

    def mutant(self, name, hint):
        """Decorator: register a known mistake."""
        def register(func):
            self.mutants.append(Mutant(name, func, hint))
            return func
        return register

    def alternative(self, name):
        """Decorator: register a correct implementation written another way."""
        def register(func):
            self.alternatives.append(Alternative(name, func))
            return func
        return register


def case_rng(seed, exercise_id, case_name):
    """Inputs depend only on (seed, exercise, case): not on order, not on the learner."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(exercise_id.encode()),
                                  zlib.crc32(case_name.encode())])


# ---------------------------------------------------------------------------------- remote objects
class Remote:
    """A live object in the worker, as a case drives it: call it, call its methods, read its attributes."""

    __wire_handle__ = None  # the wire sends a Remote as its handle

    def __init__(self, handle, ctx):
        self.__wire_handle__ = handle
        self._ctx = ctx

    @property
    def type_name(self):
        return self.__wire_handle__.type_name

    @property
    def handle(self):
        return self.__wire_handle__

    def __call__(self, *args, **kwargs):
        return self.call("__call__", *args, **kwargs)

    def call(self, method, *args, **kwargs):
        return self._ctx._request({"kind": "method", "handle": self.handle.id, "name": method}, args, kwargs)

    def get(self, attribute):
        return self._ctx._request({"kind": "getattr", "handle": self.handle.id, "name": attribute}, (), {})

    def __eq__(self, other):
        return isinstance(other, Remote) and other.handle == self.handle

    def __hash__(self):
        return hash(self.handle)

    def __repr__(self):
        return repr(self.handle)


@dataclass
class _Entry:
    request: dict
    args: tuple
    kwargs: dict
    outcome: str = "pending"   # value | raised
    value: object = None       # what came back (wire data: arrays, tensors, Handles) or the exception info
    handles: dict = None       # a replay's ending: the learner's handle ids -> the replayed objects' ids


def _snapshot(value):
    """A copy of a call's inputs as they were when sent (the case may change its own arrays afterwards)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.random.Generator):
        return copy.deepcopy(value)
    if isinstance(value, Remote):
        return value.handle
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _snapshot(v)) for k, v in value.items())
    if hasattr(value, "clone") and hasattr(value, "dtype") and hasattr(value, "device"):  # a torch tensor
        return value.detach().clone()
    return value


# ------------------------------------------------------------------------------------------ Context
class Context:
    """What a case sees: a seeded rng, ways to reach the learner's code, and assertions."""

    def __init__(self, exercise, case, rng, backend, diagnosis_budget=None):
        self.exercise, self.case, self.rng, self._backend = exercise, case, rng, backend
        self.log = []
        # mutant replays this exercise may still spend (shared by its cases): a submission that fails
        # everything must not cost the judge the whole catalogue on every case. A count, not seconds, so
        # the report stays the same on a fast and a loaded machine.
        self.diagnosis_budget = diagnosis_budget if diagnosis_budget is not None else {"replays": 60}

    # -- reaching the learner's code ---------------------------------------------------------
    def _request(self, request, args, kwargs):
        entry = _Entry(request, _snapshot(tuple(args)), _snapshot(dict(kwargs)))
        self.log.append(entry)
        try:
            got = self._backend.call(self.exercise, request, args, kwargs, device=self.case.device)
        except LearnerRaised as exc:
            entry.outcome, entry.value = "raised", exc.info
            raise
        entry.outcome, entry.value = "value", got
        return self._wrap(got)

    def _wrap(self, value):
        if isinstance(value, Handle) and not isinstance(value, AxesData):  # an Axes comes back as data
            return Remote(value, self)
        if isinstance(value, (list, tuple)):
            return type(value)(self._wrap(v) for v in value)
        return value

    def call(self, *args, **kwargs):
        """Call the learner's function (a function exercise). Returns what it returned (data, or a Remote)."""
        ex = self.exercise
        return self._request({"kind": "function", "module": ex.module, "name": ex.function}, args, kwargs)

    def new(self, *args, **kwargs):
        """Create an instance of the learner's class (a class exercise). Returns a Remote."""
        ex = self.exercise
        got = self._request({"kind": "new", "module": ex.module, "name": ex.function}, args, kwargs)
        if not isinstance(got, Remote):
            self.fail(f"{ex.function}(...) should create an object, got {describe_type(got)}")
        return got

    def make(self, name, *args, **kwargs):
        """A trusted helper object made in the worker (see worker.MAKERS), e.g. an Axes to draw into."""
        return self._request({"kind": "make", "name": name}, args, kwargs)

    def raises(self, exc_type_name, *args, hint=None, **kwargs):
        """Require that the learner's function raises `exc_type_name` for these arguments."""
        try:
            got = self.call(*args, **kwargs)
        except LearnerRaised as exc:
            if exc.info.get("type") == exc_type_name:
                return
            self.fail(f"expected {exc_type_name}, got {exc.info.get('type')}: {exc.info.get('message')}", hint)
        self.fail(f"expected {exc_type_name} to be raised, got a return value ({describe_type(got)})", hint)

    def memory_limit(self):
        """The address-space limit (bytes) the current memory-budget case runs under, confirmed from outside."""
        return self._backend.memory_limit()

    # -- stating expectations -----------------------------------------------------------------
    def fail(self, detail, hint=None):
        msg = sentence(f"{self.exercise.id}: {self.case.intent} [{self.case.name}]; {detail}")
        hint = hint or self.diagnose()
        raise CaseFailed(msg + hint_suffix(hint))

    def expect(self, got, expected, what=None, dtype=None, hint=None, rtol=None, atol=None):
        """Compare an output (ndarray, tensor, or dict of them) with the oracle; on failure name the likely
        mistake: the hint given, else a mutant that ends the same way, else one for the kind of mismatch."""
        try:
            compare(got, expected, dtype=dtype, rtol=rtol, atol=atol)
        except Mismatch as m:
            prefix = f"{what}: " if what else ""
            if m.kind == "dtype":
                hint = hint or self.diagnose() or dtype_hint(m.expected_dtype, m.got_dtype)
            self.fail(prefix + m.detail, hint)

    def expect_tuple(self, got, n):
        """Require a tuple (or list) of n items; returns it as a tuple."""
        if not isinstance(got, (tuple, list)) or len(got) != n:
            self.fail(f"expected a tuple of {n} values, got {describe_type(got)}"
                      + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        return tuple(got)

    def require(self, condition, detail, hint=None):
        if not condition:
            self.fail(detail, hint)

    # -- diagnosis ------------------------------------------------------------------------------
    def diagnose(self):
        """Hints of every mutant that, replaying this case's whole log, ends where the learner's code ended
        (same output, or same exception and message) and not where the reference ends (a mistake that
        changes nothing on this case cannot be the one); joined, or None."""
        if not self.log or not self.case.diagnose or self.log[-1].outcome == "pending":
            return None
        if self.diagnosis_budget["replays"] <= 0:
            return None
        self.diagnosis_budget["replays"] -= 1
        try:
            reference = replay(self.exercise, self.exercise.reference, self.log)
        except Exception:
            reference = None
        found = []
        for mutant in self.exercise.mutants:
            if self.diagnosis_budget["replays"] <= 0:
                break
            self.diagnosis_budget["replays"] -= 1
            try:
                ending = replay(self.exercise, mutant.func, self.log)
                if (ending is not None and _same_ending(self.log[-1], ending)
                        and not (reference is not None and _same_ending(reference, ending))
                        and mutant.hint not in found):
                    found.append(mutant.hint)
            except Exception:
                continue
        return "; or: ".join(found) if found else None


def replay(exercise, implementation, log):
    """Drive `implementation` (a mutant, or the reference) through the same requests as the log. Returns
    its ending as an `_Entry` (the last request's outcome; `.handles` maps the learner's handle ids to the
    replay's), or None when it parted from the log before the end (raised where the learner did not, or
    the reverse, or returned other objects). Objects it creates are matched to the learner's by position;
    each request's inputs are fresh copies."""
    from .backends import InProcessBackend

    backend = InProcessBackend({exercise.id: implementation})
    handles = {}  # learner's handle id -> the implementation's

    def translate(value):
        if isinstance(value, Handle):
            if value.id not in handles:
                raise LookupError("an object the implementation never made")
            return Handle(handles[value.id], value.type_name)
        if isinstance(value, (list, tuple)):
            return type(value)(translate(v) for v in value)
        if isinstance(value, dict):
            return type(value)((k, translate(v)) for k, v in value.items())
        return _snapshot(value)

    try:
        for i, entry in enumerate(log):
            last = i == len(log) - 1
            request = dict(entry.request)
            if "handle" in request:
                if request["handle"] not in handles:
                    return None
                request["handle"] = handles[request["handle"]]
            try:
                got = backend.execute(request, translate(entry.args), translate(entry.kwargs))
            except LearnerRaised as exc:
                if last:
                    return _Entry(request, (), {}, "raised", exc.info, dict(handles))
                if entry.outcome != "raised":
                    return None
                continue
            except NotImplementedYet:
                return None
            if last:
                return _Entry(request, (), {}, "value", got, dict(handles))
            if entry.outcome != "value" or not pair_handles(entry.value, got, handles):
                return None
        return None
    finally:
        backend.close()


def _same_ending(a, b):
    """Do two endings agree? Each is the learner's last log entry (`handles` None) or a replay's ending."""
    if a.outcome != b.outcome:
        return False
    if a.outcome == "raised":
        return _same_exception(a.value, b.value)
    if a.handles is None:  # the learner's ids against the replay's
        handles = dict(b.handles)
    else:  # two replays: pair their objects through the learner's ids
        handles = {a.handles[k]: b.handles[k] for k in a.handles if k in b.handles}
    return pair_handles(a.value, b.value, handles) and same_output(a.value, b.value, handles)


def _same_exception(a, b):
    def norm(info):
        return str(info.get("type")), " ".join(str(info.get("message", "")).split())[:300]
    return norm(a) == norm(b)
