"""The vocabulary graders are written in: exercises, cases, mutants, and the context a case runs in.

A grader module (``autograde/graders/<module>.py``) builds `Exercise` objects. Each case is a small
function ``case(t)`` that makes inputs with ``t.rng`` (seeded by the grader, never by the learner), calls
the learner's function with ``t.call(...)`` and states what it expects with ``t.expect(...)`` or
``t.require(...)``. Everything in a case runs in the judge's process; only ``t.call`` crosses into the
submission's sandboxed worker.
"""
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .compare import Mismatch, compare_arrays, describe_type, same_output

DTYPE_HINT = "keep the input's dtype: a float32 input must give a float32 output (watch for float64 constants)"


def hint_suffix(hint):
    """' Hint: <hint>.' (no doubled punctuation), or '' without a hint."""
    if not hint:
        return ""
    return f" Hint: {hint}" + ("" if hint.endswith((".", "?", "!")) else ".")


@dataclass(frozen=True)
class Mutant:
    """A mistake learners make, as a runnable wrong implementation, and the hint that names it."""
    name: str
    func: Callable
    hint: str


@dataclass(frozen=True)
class Case:
    name: str      # short label, unique within the exercise: "float32 (2, 3, 5, 7), large logits"
    intent: str    # one sentence: what this case checks and why
    run: Callable
    weight: float = 1.0


@dataclass
class Exercise:
    id: str                          # "<module>.<function>"
    points: float
    reference: Callable              # our NumPy reference (hidden; used for dependency proxies and hints)
    cases: list = field(default_factory=list)
    deps: tuple = ()                 # exercises it may build on: swapped for `reference` while graded
    forbidden: tuple = ()            # (module prefix, qualname) of built-ins it must not call
    mutants: list = field(default_factory=list)
    demo: Callable = None            # rng -> (args, kwargs): a small visible example (classroom checks)
    uses_torch: bool = False         # the judge imports torch for this exercise's oracle
    learner_torch: bool = False      # the learner may use torch (a PyTorch exercise); NumPy exercises are
                                     # graded in a sandbox where torch does not exist

    @property
    def module(self):
        return self.id.split(".", 1)[0]

    @property
    def function(self):
        return self.id.split(".", 1)[1]

    def case(self, name, intent, weight=1.0):
        """Decorator: register a case function."""
        def register(run):
            if any(c.name == name for c in self.cases):
                raise ValueError(f"{self.id}: duplicate case name {name!r}")
            self.cases.append(Case(name, intent, run, weight))
            return run
        return register

    def mutant(self, name, hint):
        """Decorator: register a known mistake."""
        def register(func):
            self.mutants.append(Mutant(name, func, hint))
            return func
        return register


def case_rng(seed, exercise_id, case_name):
    """Inputs depend only on (seed, exercise, case): not on order, not on the learner."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(exercise_id.encode()),
                                  zlib.crc32(case_name.encode())])


# ----------------------------------------------------------------------------- case outcomes
class CaseFailed(Exception):
    """The learner's function returned something wrong (message is learner-facing)."""


class LearnerRaised(Exception):
    """The learner's function raised; `info` holds type, message and the line in their file."""

    def __init__(self, info):
        super().__init__(info.get("message", ""))
        self.info = info


class NotImplementedYet(Exception):
    pass


class ForbiddenUsed(Exception):
    def __init__(self, names, message=None):
        super().__init__(", ".join(names))
        self.names = names
        self.message = message or (f"calls {', '.join(names)}, which this exercise forbids: "
                                   "implement it yourself")


class ImportFailed(Exception):
    def __init__(self, info):
        super().__init__(info.get("message", ""))
        self.info = info


class Context:
    """What a case sees: a seeded rng, a way to call the learner's function, and assertions."""

    def __init__(self, exercise, case, rng, caller):
        self.exercise, self.case, self.rng, self._caller = exercise, case, rng, caller
        self._last = None
        self.pending = ((), {})

    # -- calling the learner ----------------------------------------------------------------
    def call(self, *args, **kwargs):
        """Call the learner's function. Returns what it returned (data only)."""
        self._last = None
        self.pending = (args, kwargs)
        got = self._caller(self.exercise, args, kwargs)
        self._last = (args, kwargs, got)
        return got

    def raises(self, exc_type_name, *args, **kwargs):
        """Require that the learner's function raises `exc_type_name` for these arguments."""
        try:
            got = self.call(*args, **kwargs)
        except LearnerRaised as exc:
            if exc.info.get("type") == exc_type_name:
                return
            self.fail(f"expected {exc_type_name}, got {exc.info.get('type')}: {exc.info.get('message')}")
        self.fail(f"expected {exc_type_name} to be raised, got a return value ({describe_type(got)})")

    # -- stating expectations -----------------------------------------------------------------
    def fail(self, detail, hint=None):
        msg = f"{self.exercise.id}: {self.case.intent} [{self.case.name}]; {detail}."
        hint = hint or self.diagnose()
        raise CaseFailed(msg + hint_suffix(hint))

    def expect(self, got, expected, what=None, dtype=None, hint=None, rtol=None, atol=None):
        """Compare an ndarray output with the oracle; on failure name the likely mistake."""
        try:
            compare_arrays(got, expected, dtype=dtype, rtol=rtol, atol=atol)
        except Mismatch as m:
            prefix = f"{what}: " if what else ""
            if m.kind == "dtype":
                hint = hint or self.diagnose() or DTYPE_HINT
            self.fail(prefix + m.detail, hint)

    def expect_tuple(self, got, n):
        """Require a tuple (or list) of n items; returns it as a tuple."""
        if not isinstance(got, (tuple, list)) or len(got) != n:
            self.fail(f"expected a tuple of {n} arrays, got {describe_type(got)}"
                      + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        return tuple(got)

    def require(self, condition, detail, hint=None):
        if not condition:
            self.fail(detail, hint)

    def diagnose(self):
        """If the learner's last output equals a known mistake's output on the same inputs, name it."""
        if self._last is None:
            return None
        return diagnose(self.exercise, *self._last)


def diagnose(exercise, args, kwargs, got):
    """Hints of every mutant whose output on (args, kwargs) equals `got` (joined), else None."""
    def same(mutant):
        with np.errstate(all="ignore"):
            out = mutant.func(*_copy(args), **_copy(kwargs))
        return same_output(got if not isinstance(got, list) else tuple(got), out)
    return _hints(exercise, same)


def diagnose_exception(exercise, args, kwargs, type_name):
    """Hints of every mutant that raises the same exception type on (args, kwargs), else None."""
    def raises_same(mutant):
        try:
            with np.errstate(all="ignore"):
                mutant.func(*_copy(args), **_copy(kwargs))
        except Exception as exc:
            return type(exc).__name__ == type_name
        return False
    return _hints(exercise, raises_same)


def _hints(exercise, matches):
    found = []
    for mutant in exercise.mutants:
        try:
            if matches(mutant) and mutant.hint not in found:
                found.append(mutant.hint)
        except Exception:
            continue
    return "; or: ".join(found) if found else None


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
