"""What a notebook's setup and check cells call.

`use_package()` makes `import attnlab` load the learner's package (``src/`` by default, or the folder
named by the ATTNLAB_SRC environment variable, e.g. ``solutions`` when CI runs the notebooks), whatever
else is installed. `check("module.function")` grades that same package in a separate, time-limited
process and shows one line per test case with a hint for each failure.
"""
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_package_root = None


def package_root():
    """The folder that contains the `attnlab/` package the notebook uses."""
    if _package_root is not None:
        return _package_root
    chosen = os.environ.get("ATTNLAB_SRC", "src")
    path = Path(chosen)
    return (path if path.is_absolute() else ROOT / path).resolve()


def use_package(folder=None):
    """Put the learner's package first on sys.path, import it and say where it came from."""
    global _package_root
    if folder is not None:
        os.environ["ATTNLAB_SRC"] = str(folder)
    _package_root = None
    root = package_root()
    if not (root / "attnlab" / "__init__.py").is_file():
        raise FileNotFoundError(f"no attnlab package in {root} (expected {root / 'attnlab' / '__init__.py'})")
    _package_root = root
    sys.path[:] = [str(root)] + [p for p in sys.path if Path(p or ".").resolve() != root]
    for name in [m for m in sys.modules if m == "attnlab" or m.startswith("attnlab.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    import attnlab

    where = Path(attnlab.__file__).resolve().parent
    if where != root / "attnlab":
        raise ImportError(f"attnlab was imported from {where}, not from {root / 'attnlab'}")
    try:
        shown = where.relative_to(ROOT)
    except ValueError:
        shown = where
    print(f"Using attnlab from {shown}/")
    return attnlab


class CheckResult(dict):
    """The grade of a `check(...)`: a dict (see the grade JSON in README.md) that Jupyter shows as one line,
    since the report itself is already on screen."""

    def __repr__(self):
        ids = ", ".join(e["id"] for e in self.get("exercises", []))
        return f"<check {ids}: {self.get('total', 0):g}/{self.get('max_total', 0):g} points>"

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


def check(*exercise_ids, timeout=None):
    """Grade exercises of the package in use and display per-case PASS/FAIL with hints.

    Returns a `CheckResult` (the grade as a dict, shown as one line)."""
    from .report import show_in_notebook
    from .runner import grade_submission

    result = grade_submission(package_root(), list(exercise_ids) or None, timeout=timeout)
    show_in_notebook(result)
    if os.environ.get("ATTNLAB_STRICT") == "1" and result["total"] < result["max_total"]:
        raise AssertionError(f"check{exercise_ids}: {result['total']}/{result['max_total']} (ATTNLAB_STRICT=1)")
    return CheckResult(result)
