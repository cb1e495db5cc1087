import contextlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ATTNLAB = str(Path(sys.executable).parent / "attnlab")


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run the installed `attnlab` console script; returns CompletedProcess (text)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([ATTNLAB, *map(str, args)], cwd=cwd or ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def _forget_attnlab():
    for name in [m for m in sys.modules if m == "attnlab" or m.startswith("attnlab.")]:
        del sys.modules[name]


@contextlib.contextmanager
def solutions_package():
    """Import the instructor's attnlab in this process (trusted code only); yields importlib.import_module."""
    sys.path.insert(0, str(ROOT / "solutions"))
    _forget_attnlab()
    try:
        yield lambda module: importlib.import_module(f"attnlab.{module}")
    finally:
        sys.path.remove(str(ROOT / "solutions"))
        _forget_attnlab()


# `make test` runs the suite on every core (pytest-xdist, --dist loadgroup). The tests of one file stay on one
# worker, so a module-scoped fixture (a classroom, a graded class) is built once and tests that touch the same
# repository files never race; the two big parametrised files of independent tests are spread test by test.
SPREAD = {"test_mutants.py", "test_notebooks.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def grade_in_process(exercise_id, func, seed=0):
    """One exercise's result for `func`, graded in this process (trusted code: references, mutants)."""
    from autograde.runner import InProcessBackend, grade_with_backend

    return grade_with_backend(InProcessBackend({exercise_id: func}), [exercise_id], seed=seed)["exercises"][0]


def failing_messages(result):
    """{case name: message} of the failing cases of one exercise's result."""
    return {t["name"]: t["message"] for t in result["tests"] if not t["passed"]}


def mutant_of(exercise_id, name):
    from autograde import registry

    return next(m for m in registry.get(exercise_id).mutants if m.name == name)
