"""All exercises of the course, from the grader modules that exist (one per topic module)."""
import importlib

from .course import NOTEBOOKS

_EXERCISES = {}


def _load():
    if _EXERCISES:
        return _EXERCISES
    for nb in NOTEBOOKS:
        for module in nb.modules:
            try:
                grader = importlib.import_module(f"autograde.graders.{module}")
            except ModuleNotFoundError as exc:
                if exc.name == f"autograde.graders.{module}":
                    continue  # notebook not written yet
                raise
            for exercise in grader.EXERCISES:
                _EXERCISES[exercise.id] = exercise
    return _EXERCISES


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
            raise _usage(f"unknown exercise {wanted!r}; known exercises: {known}")
        chosen += [m for m in matches if m not in chosen]
    return [e for e in exercises.values() if e in chosen]


def _usage(message):
    from .runner import UsageError

    return UsageError(message)


def dependency_order(exercises):
    """Dependencies first (stable otherwise), so no exercise is graded after one that builds on it."""
    ordered, seen = [], set()

    def visit(ex, stack=()):
        if ex.id in seen:
            return
        if ex.id in stack:
            raise ValueError(f"dependency cycle through {ex.id}")
        for dep in ex.deps:
            dep_ex = _load().get(dep)
            if dep_ex is not None and dep_ex in exercises:
                visit(dep_ex, stack + (ex.id,))
        seen.add(ex.id)
        ordered.append(ex)

    for ex in exercises:
        visit(ex)
    return ordered
