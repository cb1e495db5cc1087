"""All exercises of the course, from the grader modules that exist (one per topic module).

Loading checks what a grader declares, so a typo fails at once instead of grading the wrong thing:
every dependency must be a known exercise graded before it, and a dependency must be a *function*
exercise: functions are swapped for a proxy that the judge answers with the reference, classes are not
proxied (a class exercise builds on function exercises; an exercise that needs a class builds its own).
"""
import importlib

from .course import NOTEBOOKS
from .errors import GraderDefinitionError, UsageError

_EXERCISES = {}


def _load():
    if _EXERCISES:
        return _EXERCISES
    found = {}
    for nb in NOTEBOOKS:
        for module in nb.modules:
            try:
                grader = importlib.import_module(f"autograde.graders.{module}")
            except ModuleNotFoundError as exc:
                if exc.name == f"autograde.graders.{module}":
                    continue  # notebook not written yet
                raise
            for exercise in grader.EXERCISES:
                if exercise.module != module:
                    raise GraderDefinitionError(f"{exercise.id} is declared in autograde/graders/{module}.py")
                if exercise.id in found:
                    raise GraderDefinitionError(f"{exercise.id} is declared twice")
                found[exercise.id] = exercise
    validate(found)
    _EXERCISES.update(found)
    return _EXERCISES


def validate(exercises):
    """Raise GraderDefinitionError for an impossible declaration (see the module docstring)."""
    for ex in exercises.values():
        for dep in ex.deps:
            if dep not in exercises:
                raise GraderDefinitionError(f"{ex.id}: unknown dependency {dep!r} (known: {', '.join(exercises)})")
            if exercises[dep].kind == "class":
                raise GraderDefinitionError(f"{ex.id}: {dep} is a class; only function exercises can be "
                                            "dependencies (classes are not proxied)")
        for rule in ex.forbidden:
            if not (isinstance(rule, tuple) and len(rule) == 2 and all(isinstance(r, str) and r for r in rule)):
                raise GraderDefinitionError(f"{ex.id}: a forbidden rule is a (module prefix, name) pair, got {rule!r}")
        if not ex.cases:
            raise GraderDefinitionError(f"{ex.id} has no cases")
    dependency_order(list(exercises.values()), exercises)  # raises on a cycle


def all_exercises():
    return list(_load().values())


def get(exercise_id):
    return _load()[exercise_id]


def select(exercise_ids=None):
    """Exercises by id (or module name, selecting all of its exercises), in course order."""
    exercises = _load()
    if not exercise_ids:
        return list(exercises.values())
    chosen = []
    for wanted in exercise_ids:
        matches = [e for e in exercises.values() if e.id == wanted or e.module == wanted]
        if not matches:
            known = ", ".join(exercises)
            raise UsageError(f"unknown exercise {wanted!r}; known exercises: {known}")
        chosen += [m for m in matches if m not in chosen]
    return [e for e in exercises.values() if e in chosen]


def dependency_order(exercises, known=None):
    """Dependencies first (stable otherwise), so no exercise is graded after one that builds on it."""
    known = known if known is not None else _load()
    ordered, seen = [], set()

    def visit(ex, stack=()):
        if ex.id in seen:
            return
        if ex.id in stack:
            raise GraderDefinitionError(f"dependency cycle through {ex.id}")
        for dep in ex.deps:
            dep_ex = known.get(dep)
            if dep_ex is not None and dep_ex in exercises:
                visit(dep_ex, stack + (ex.id,))
        seen.add(ex.id)
        ordered.append(ex)

    for ex in exercises:
        visit(ex)
    return ordered
