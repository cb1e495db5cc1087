"""The nbgrader classroom pipeline: `attnlab classroom ACTION ARGS...` (the workflow is in docs/classroom.md).

    attnlab classroom source COURSE_DIR [--notebooks 01 02 ...] [--course-id ID]
    attnlab classroom release COURSE_DIR ASSIGNMENT
    attnlab classroom verify-release COURSE_DIR ASSIGNMENT
    attnlab classroom push-grades COURSE_DIR ASSIGNMENT RESULTS_DIR

`source` builds an nbgrader course directory from `solutions/` (one assignment per notebook, named like it:
``source/01_what_attention_computes/``). Each assignment holds the notebook at its top level and the
learner *stubs* (never solutions) in ``src/attnlab/``. In the notebook:

* the setup cell becomes a locked cell that imports the submission's own ``src/attnlab`` (first on
  sys.path, cached modules purged, location asserted) and shortens tracebacks when nbgrader executes it;
* each ``check("module.function")`` cell becomes an autograded test cell: visible checks on the exercise's
  demo inputs against literal expected values (runnable by students, who do not have `autograde`), then a
  hidden part calling `hidden_score`, which grades the submission's ``src/`` with the sandboxed runner
  (partial credit) and is the cell's score;
* each ``answer`` + ``points:N`` markdown cell becomes a manually graded answer cell.

`hidden_score` is the one function of this module that runs inside nbgrader's kernel.
"""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"

DEFAULT_COURSE_ID = "attention-course"
CELL_TIMEOUT_S = 120        # nbgrader's per-cell limit (c.Execute.timeout); worst case is this x cells
HIDDEN_TIMEOUT_S = 15.0     # per exercise in the hidden grader; a notebook's exercises must fit in a cell
TEXT_STUB = "YOUR ANSWER HERE"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
LEAK_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "BEGIN HIDDEN TESTS",
                "hidden_score", "autograde")
MIN_LEAK_LINE = 16          # solution / model-answer lines shorter than this are too generic to flag

_CHECK_CALL = re.compile(r"""^\s*check\(\s*["']([\w.]+)["']\s*\)\s*$""")


class ClassroomError(Exception):
    """A one-line problem for the instructor (bad argument, nbgrader failed)."""


# ======================================================================== course structure
def notebook_exercises(nb):
    """The exercises a course notebook teaches, in course order."""
    from . import registry

    return [e for e in registry.all_exercises() if e.module in nb.modules]


def select_notebooks(wanted=None):
    """Course notebooks by number ("1", "01") or full name; default: every notebook with a source."""
    from .course import NOTEBOOKS

    written = [nb for nb in NOTEBOOKS if (SOLUTIONS / "notebooks" / f"{nb.name}.py").is_file()]
    if not wanted:
        return written
    chosen = []
    for w in wanted:
        matches = [nb for nb in written if w == nb.name or (w.isdigit() and int(w) == nb.number)]
        if not matches:
            known = ", ".join(nb.name for nb in written)
            raise ClassroomError(f"unknown or unwritten notebook {w!r}; written notebooks: {known}")
        chosen += [m for m in matches if m not in chosen]
    return sorted(chosen, key=lambda nb: nb.number)


def grade_id_for(exercise_id):
    return "check-" + exercise_id.replace(".", "_")


# ======================================================================== rendering literals
def _float_literal(x, digits=None):
    x = float(x)
    if x != x:
        return "np.nan"
    if x in (float("inf"), float("-inf")):
        return "np.inf" if x > 0 else "-np.inf"
    if digits is None:
        return repr(x)
    text = f"{x:.{digits}g}"
    return text if any(ch in text for ch in ".en") else text + ".0"


def _nested(value, digits):
    if isinstance(value, list):
        return "[" + ", ".join(_nested(v, digits) for v in value) + "]"
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return _float_literal(value, digits)
    return repr(value)


def literal(value, digits=None, indent=""):
    """Python source that rebuilds `value` (numpy arrays, scalars, tuples, lists, dicts) with `np` in scope.

    `digits` rounds floats to that many significant digits (for expected values compared with allclose);
    inputs are rendered exactly (repr round-trips).
    """
    import numpy as np

    if isinstance(value, np.ndarray):
        dtype = value.dtype.name
        items = value.tolist()
        if value.ndim >= 2 and len(items) > 1:
            inner = indent + "    "
            rows = (",\n" + inner).join(_nested(row, digits) for row in items)
            body = f"[\n{inner}{rows},\n{indent}]"
        else:
            body = _nested(items, digits)
        return f'np.array({body}, dtype="{dtype}")'
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        return _float_literal(value, digits)
    if isinstance(value, tuple):
        parts = [literal(v, digits, indent) for v in value]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v, digits, indent) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {literal(v, digits, indent)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, str):
        return repr(value)
    raise ClassroomError(f"cannot render {type(value).__name__} as a literal in a visible check")


# ======================================================================== notebook cells
CLASSROOM_SETUP_SOURCE = '''\
# Setup (locked): run this cell first. It loads YOUR package from src/attnlab/ next to this notebook,
# whatever else is installed, and checks where it came from.
import importlib
import os
import sys

_src = os.path.realpath("src")
sys.path[:] = [_src] + [p for p in sys.path if os.path.realpath(p or ".") != _src]
for _name in [m for m in sys.modules if m == "attnlab" or m.startswith("attnlab.")]:
    del sys.modules[_name]
importlib.invalidate_caches()
import attnlab

_where = os.path.dirname(os.path.realpath(getattr(attnlab, "__file__", None) or "?"))
assert _where == os.path.join(_src, "attnlab"), (
    f"attnlab was imported from {_where}, not from {_src}/attnlab: keep src/attnlab/__init__.py "
    "and open this notebook from its own folder")
if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader is running this notebook: one-line error messages
    get_ipython().run_line_magic("xmode", "Minimal")
else:  # your edits to src/attnlab/*.py are picked up without restarting the kernel
    get_ipython().run_line_magic("load_ext", "autoreload")
    get_ipython().run_line_magic("autoreload", "2")
import numpy as np'''


def check_cell_source(exercise, rng_seed=0):
    """The autograded test cell of one exercise: visible literal checks, then the hidden grader call."""
    import numpy as np

    fid = exercise.id
    hidden = ["### BEGIN HIDDEN TESTS", "from autograde.classroom import hidden_score", f'hidden_score("{fid}")',
              "### END HIDDEN TESTS"]
    if exercise.demo is None:  # a class, a random or a plotting exercise: no literal example to show
        return "\n".join([
            f"# Autograded: {fid} ({exercise.points:g} point{'' if exercise.points == 1 else 's'})",
            "# Its tests (a class driven step by step, random draws or a plot) run when your work is graded.",
            f"from attnlab.{exercise.module} import {exercise.function}  # it must at least import",
        ] + hidden)
    args, kwargs = exercise.demo(np.random.default_rng(rng_seed))
    with np.errstate(all="ignore"):
        want = exercise.reference(*args, **kwargs)
    call_args = [literal(a, indent="        ") for a in args] + [f"{k}={literal(v, indent='        ')}"
                                                              for k, v in kwargs.items()]
    if sum(len(a) for a in call_args) > 60 or any("\n" in a for a in call_args):
        call = f"{exercise.function}(\n        " + ",\n        ".join(call_args) + ",\n    )"
    else:
        call = f"{exercise.function}({', '.join(call_args)})"
    lines = [
        f"# Autograded: {fid} ({exercise.points:g} point{'' if exercise.points == 1 else 's'})",
        "# Visible check: your function on a small example, compared with known values.",
        "# Hidden tests (many more cases) run when your work is graded.",
        f"from attnlab.{exercise.module} import {exercise.function}",
        "",
        "with np.errstate(all=\"ignore\"):",
        f"    _got = {call}",
    ]
    if isinstance(want, tuple):
        lines.append("_want = (")
        lines += [f"    {literal(np.asarray(w), digits=10, indent='    ')}," for w in want]
        lines.append(")")
        lines += [
            f"assert isinstance(_got, (tuple, list)) and len(_got) == {len(want)}, (",
            f'    f"{fid}: expected a tuple of {len(want)} arrays, got {{type(_got).__name__}}")',
            "for _i, (_g, _w) in enumerate(zip(_got, _want)):",
            "    assert np.shape(_g) == _w.shape, (",
            f'        f"{fid}: output {{_i}} should have shape {{_w.shape}}, got {{np.shape(_g)}}")',
        ]
        cmp = "np.array_equal(_g, _w)" if all(np.asarray(w).dtype == bool for w in want) else \
            "np.allclose(_g, _w, equal_nan=True)"
        lines += [
            f"    assert {cmp}, (",
            f'        f"{fid}: output {{_i}} is wrong on the example.\\nexpected:\\n{{_w}}\\ngot:\\n{{np.asarray(_g)}}")',
        ]
    else:
        want = np.asarray(want)
        cmp = "np.array_equal(_got, _want)" if want.dtype == bool else "np.allclose(_got, _want, equal_nan=True)"
        lines += [
            f"_want = {literal(want, digits=10)}",
            "assert np.shape(_got) == _want.shape, (",
            f'    f"{fid}: expected shape {{_want.shape}}, got {{np.shape(_got)}}")',
            f"assert {cmp}, (",
            f'    f"{fid}: wrong values on the example.\\nexpected:\\n{{_want}}\\ngot:\\n{{np.asarray(_got)}}")',
        ]
    lines += [f'print("{fid}: visible check passed")'] + hidden
    return "\n".join(lines)


def _nbgrader_meta(grade_id, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def classroom_notebook(nb_info):
    """The nbgrader source notebook (nbformat node) of one course notebook."""
    import nbformat

    from . import registry
    from .build import cell_tags, load_source_notebook

    path = SOLUTIONS / "notebooks" / f"{nb_info.name}.py"
    src = load_source_notebook(path)
    own = {e.id for e in notebook_exercises(nb_info)}
    cells, answers, seen_checks = [], 0, set()
    for i, cell in enumerate(src.cells):
        tags = cell_tags(cell)
        meta = {"tags": tags} if tags else {}
        if "setup" in tags:
            meta["nbgrader"] = _nbgrader_meta("setup", locked=True)
            cells.append(nbformat.v4.new_code_cell(CLASSROOM_SETUP_SOURCE, metadata=meta))
        elif "check" in tags:
            m = _CHECK_CALL.match(cell.source.strip())
            if not m:
                raise ClassroomError(f"{path.name}: cell {i}: a check cell must be exactly "
                                     f"check(\"module.function\"), got {cell.source.strip()!r}")
            ex_id = m.group(1)
            if ex_id not in own:
                raise ClassroomError(f"{path.name}: cell {i}: {ex_id} is not an exercise of this notebook "
                                     f"(its exercises: {', '.join(sorted(own))})")
            if ex_id in seen_checks:
                raise ClassroomError(f"{path.name}: cell {i}: a second check cell for {ex_id}")
            seen_checks.add(ex_id)
            exercise = registry.get(ex_id)
            meta["nbgrader"] = _nbgrader_meta(grade_id_for(ex_id), grade=True, locked=True,
                                              points=float(exercise.points))
            cells.append(nbformat.v4.new_code_cell(check_cell_source(exercise), metadata=meta))
        elif "answer" in tags:
            points = [float(t.split(":", 1)[1]) for t in tags if t.startswith("points:")]
            if len(points) != 1 or cell.cell_type != "markdown":
                raise ClassroomError(f"{path.name}: cell {i}: an answer cell must be markdown with one points:N tag")
            answers += 1
            meta["nbgrader"] = _nbgrader_meta(f"answer-{answers}", grade=True, solution=True,
                                              points=points[0])
            # A markdown solution cell without markers is replaced as a whole by ClearSolutions.text_stub.
            cells.append(nbformat.v4.new_markdown_cell(cell.source, metadata=meta))
        elif cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=meta))
        else:
            qid = next((t.split(":", 1)[1] for t in tags if t.startswith("question:")), None)
            if qid:
                meta["nbgrader"] = _nbgrader_meta(f"question-{qid}", locked=True)
            cells.append(nbformat.v4.new_markdown_cell(cell.source, metadata=meta))
    missing = own - seen_checks
    if missing:
        raise ClassroomError(f"{path.name}: no check cell for {', '.join(sorted(missing))}")
    out = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    for i, cell in enumerate(out.cells):
        cell["id"] = f"{nb_info.name[:2]}-{i:03d}"
    return out


# ======================================================================== source
def nbgrader_config_text(course_dir, course_id, exclude):
    """The course's nbgrader_config.py. `exclude`: {assignment: [src/attnlab/*.py paths]}."""
    exclude_text = "{\n" + "".join(
        f"    {a!r}: [\n" + "".join(f"        {p!r},\n" for p in paths) + "    ],\n"
        for a, paths in sorted(exclude.items())) + "}"
    return f'''\
# Generated by `attnlab classroom source` (autograde/classroom.py); rerunning it rewrites this file.
# See docs/classroom.md for the workflow and for why each setting is here.
c = get_config()  # noqa: F821

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {str(Path(course_dir).resolve())!r}

# Autograde copies every non-notebook file of source/<assignment>/ over the submission before running it.
# Our src/attnlab/*.py are stubs: copying them would erase every student's work. Exact paths, not globs.
c.Autograde.exclude_overwriting = {exclude_text}

# Per cell (worst case: this x cells). The hidden grader needs <= {HIDDEN_TIMEOUT_S:g} s per exercise.
c.Execute.timeout = {CELL_TIMEOUT_S}
c.ExecutePreprocessor.timeout = {CELL_TIMEOUT_S}
c.Execute.interrupt_on_timeout = True

# A student who deletes an autograded cell still gets it graded (restored from the gradebook).
c.OverwriteCells.add_missing_cells = True

c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ClearSolutions.text_stub = {TEXT_STUB!r}

# Feedback must not show the hidden tests (nbgrader's default list is GetGrades, CSSHTMLHeaderPreprocessor).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
'''


def write_source(course_dir, notebooks=None, course_id=None, out=print):
    """Create or refresh the course directory. Returns the assignment names written."""
    from .build import generated_stubs, notebook_text

    course_dir = Path(course_dir).resolve()
    chosen = select_notebooks(notebooks)
    if not chosen:
        raise ClassroomError("no course notebook has a source in solutions/notebooks/")
    stubs = generated_stubs()
    course_dir.mkdir(parents=True, exist_ok=True)
    config = course_dir / "nbgrader_config.py"
    if course_id is None:
        course_id = read_course_id(course_dir) if config.exists() else DEFAULT_COURSE_ID
    written = []
    for nb in chosen:
        adir = course_dir / "source" / nb.name
        adir.mkdir(parents=True, exist_ok=True)
        (adir / f"{nb.name}.ipynb").write_text(notebook_text(classroom_notebook(nb)))
        pkg = adir / "src" / "attnlab"
        if pkg.exists():
            shutil.rmtree(pkg)
        pkg.mkdir(parents=True)
        for rel, text in stubs.items():
            (adir / rel).write_text(text)
        written.append(nb.name)
        n_ex = len(notebook_exercises(nb))
        out(f"wrote source/{nb.name}/ ({nb.name}.ipynb, {n_ex} autograded cells, {len(stubs)} stub files)")
    # exclude_overwriting covers every assignment in source/, not only those written now
    exclude = {}
    for adir in sorted(p for p in (course_dir / "source").iterdir() if p.is_dir()):
        exclude[adir.name] = sorted(str(p.relative_to(adir)) for p in (adir / "src" / "attnlab").glob("*.py"))
    config.write_text(nbgrader_config_text(course_dir, course_id, exclude))
    out(f"wrote {config.name} (course_id {course_id!r}, {len(exclude)} assignments)")
    return written


def read_course_id(course_dir):
    config = Path(course_dir) / "nbgrader_config.py"
    try:
        m = re.search(r"^c\.CourseDirectory\.course_id\s*=\s*['\"]([^'\"]+)['\"]", config.read_text(), re.M)
    except OSError:
        m = None
    return m.group(1) if m else DEFAULT_COURSE_ID


# ======================================================================== release and verify
def nbgrader_executable():
    exe = Path(sys.executable).parent / "nbgrader"
    return str(exe) if exe.exists() else (shutil.which("nbgrader") or str(exe))


def run_nbgrader(course_dir, *args, timeout=600):
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([nbgrader_executable(), *args], cwd=str(course_dir), env=env, capture_output=True,
                          text=True, timeout=timeout)


def release(course_dir, assignment, out=print):
    course_dir = Path(course_dir).resolve()
    if not (course_dir / "source" / assignment).is_dir():
        raise ClassroomError(f"{course_dir}/source/{assignment}: no such assignment (run `attnlab classroom source`)")
    r = run_nbgrader(course_dir, "generate_assignment", assignment, "--force")
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        out(f"nbgrader generate_assignment {assignment} failed (exit {r.returncode}):\n{tail}")
        return 1
    problems = verify_release(course_dir, assignment)
    for p in problems:
        out(p)
    if problems:
        out(f"release/{assignment} LEAKS ({len(problems)} problems): do not distribute it")
        return 1
    out(f"released release/{assignment}/ and verified it: no solution code, no hidden tests, no model answers")
    return 0


def _released_texts(release_dir):
    """{relative path: list of text lines to search} for every file of a release."""
    texts = {}
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(release_dir))
        try:
            raw = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".ipynb":
            try:
                nb = json.loads(raw)
                parts = []
                for cell in nb.get("cells", []):
                    src = cell.get("source", "")
                    parts.append("".join(src) if isinstance(src, list) else src)
                    for output in cell.get("outputs", []):
                        parts.append(json.dumps(output))
                raw_search = "\n".join(parts)
            except ValueError:
                raw_search = raw
        else:
            raw_search = raw
        texts[rel] = (raw, raw_search)
    return texts


def _model_answers(course_dir, assignment):
    """Lines of the model answers (markdown solution cells) of the assignment's source notebooks."""
    lines = []
    for nb_path in sorted((course_dir / "source" / assignment).glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for cell in nb.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution") and cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                src = "".join(src) if isinstance(src, list) else src
                lines += [l.strip() for l in src.splitlines()]
    return lines


def verify_release(course_dir, assignment):
    """Problems (one line each) that make release/ASSIGNMENT unfit to distribute; [] when clean."""
    from .build import generated_stubs, solution_lines, solution_only

    course_dir = Path(course_dir).resolve()
    release_dir = course_dir / "release" / assignment
    if not release_dir.is_dir():
        return [f"release/{assignment}: no such folder (run `attnlab classroom release`)"]
    problems = []
    texts = _released_texts(release_dir)
    if not any(rel.endswith(".ipynb") and "/" not in rel for rel in texts):
        problems.append(f"release/{assignment}: no notebook at the top level")

    solutions, secret_lines = {}, {}
    stubs = generated_stubs()
    for path in sorted((SOLUTIONS / "attnlab").glob("*.py")):
        text = path.read_text()
        stub = stubs.get(f"src/attnlab/{path.name}", "")
        if text != stub:
            solutions[path.name] = {text, solution_only(text)}
        stub_lines = {l.strip() for l in stub.splitlines()}
        for line in solution_lines(text):
            if len(line) >= MIN_LEAK_LINE and line not in stub_lines:
                secret_lines.setdefault(line, f"solutions/attnlab/{path.name}")
    answer_lines = {l for l in _model_answers(course_dir, assignment) if len(l) >= MIN_LEAK_LINE}
    answer_lines.discard(TEXT_STUB)

    for rel, (raw, search) in texts.items():
        for marker in LEAK_MARKERS:
            if marker in search:
                problems.append(f"release/{assignment}/{rel}: contains {marker!r}")
                break
        for name, versions in solutions.items():
            if raw in versions:
                problems.append(f"release/{assignment}/{rel}: is the solution module solutions/attnlab/{name}")
        lines = {l.strip() for l in search.splitlines()}
        leaked = [l for l in secret_lines if l in lines]
        if leaked:
            problems.append(f"release/{assignment}/{rel}: {len(leaked)} solution line(s) from "
                            f"{secret_lines[leaked[0]]}, e.g. {leaked[0]!r}")
        answers = [l for l in answer_lines if l in lines]
        if answers:
            problems.append(f"release/{assignment}/{rel}: {len(answers)} line(s) of a model answer, "
                            f"e.g. {answers[0][:60]!r}")
    return problems


# ======================================================================== hidden grader (in the kernel)
_CACHE = {}


def hidden_score(exercise_id, src="src", timeout=None):
    """Score of one exercise for the submission in `src` (default: the kernel's ./src), as a plain float.

    Runs inside nbgrader's kernel, in the last line of an autograded cell. The first call grades every
    exercise of the exercise's notebook in one sandboxed `grade_submission` and caches the report; later
    calls are lookups. Prints the failed cases (stdout) and never writes to stderr (which would zero the
    cell). Raises AssertionError when the grader cannot run, so the cell scores 0.
    """
    from . import registry
    from .course import notebook_for_module

    try:
        exercise = registry.get(exercise_id)
    except KeyError:
        raise AssertionError(f"unknown exercise {exercise_id!r}") from None
    root = os.path.realpath(src)
    ids = tuple(e.id for e in notebook_exercises(notebook_for_module(exercise.module)))
    key = (root, ids)
    if key not in _CACHE:
        from .runner import grade_submission

        if timeout is None:
            timeout = float(os.environ.get("ATTNLAB_CLASSROOM_TIMEOUT", HIDDEN_TIMEOUT_S))
        err = io.StringIO()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(err):
                warnings.simplefilter("ignore")
                report = grade_submission(root, list(ids), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to grade scores 0, with one line why
            raise AssertionError(f"the grader could not run on {src}/: {type(exc).__name__}: {exc}") from None
        _CACHE[key] = report
    report = _CACHE[key]
    entry = next((e for e in report["exercises"] if e["id"] == exercise_id), None)
    if entry is None:
        raise AssertionError(f"the grader returned no result for {exercise_id}")
    counted = [t for t in entry.get("tests", []) if not t.get("skipped")]  # GPU cases without CUDA: not counted
    failed = [t for t in counted if not t.get("passed")]
    points = min(max(float(entry["points"]), 0.0), float(exercise.points))
    print(f"{exercise_id}: {entry['status']}, {points:g} of {float(exercise.points):g} points "
          f"({len(counted) - len(failed)}/{len(counted)} cases passed)")
    shown = set()
    for t in failed:
        msg = t.get("message", "")
        if msg and msg not in shown:
            shown.add(msg)
            print("  - " + msg)
    return float(points)


# ======================================================================== push grades
def push_grades(course_dir, assignment, results_dir, out=print):
    """Set manual_score of each autograded cell to the runner's points. Returns the exit status."""
    from nbgrader.api import Gradebook, MissingEntry

    from .course import notebook_for_module

    course_dir = Path(course_dir).resolve()
    results_dir = Path(results_dir)
    db = course_dir / "gradebook.db"
    if not db.is_file():
        raise ClassroomError(f"{db}: no gradebook (run nbgrader autograde first)")
    if not results_dir.is_dir():
        raise ClassroomError(f"{results_dir}: no such folder")
    reports = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out(f"warning: {path.name}: unreadable ({exc}); skipped")
            continue
        exercises = data.get("exercises") if isinstance(data, dict) else None
        if isinstance(exercises, list) and exercises and all(isinstance(e, dict) and "id" in e and "points" in e
                                                             for e in exercises):
            reports.append((path.stem, data))  # .summary.json and other files of grade-batch are skipped
    if not reports:
        raise ClassroomError(f"{results_dir}: no <student>.json grade files")
    status, pushed_students = 0, 0
    with Gradebook(f"sqlite:///{db}", course_id=read_course_id(course_dir)) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ClassroomError(f"assignment {assignment!r} is not in the gradebook") from None
        for student, report in reports:
            try:
                gb.find_student(student)
            except MissingEntry:
                out(f"warning: {student}: not in the gradebook; skipped")
                continue
            n, total, missing = 0, 0.0, []
            for entry in report["exercises"]:
                ex_id = entry.get("id", "")
                module = ex_id.split(".", 1)[0]
                try:
                    notebook = notebook_for_module(module).name
                except KeyError:
                    continue
                try:
                    grade = gb.find_grade(grade_id_for(ex_id), notebook, assignment, student)
                except MissingEntry:
                    if notebook == assignment or (course_dir / "source" / assignment / f"{notebook}.ipynb").exists():
                        missing.append(ex_id)
                    continue
                points = float(entry.get("points", 0.0))
                max_points = float(grade.max_score)
                grade.manual_score = min(max(points, 0.0), max_points)
                grade.needs_manual_grade = False
                n += 1
                total += grade.manual_score
            gb.db.commit()
            if missing:
                out(f"warning: {student}: no autograded submission cell for {', '.join(missing)} "
                    "(not autograded yet?)")
                status = 1
            if n:
                pushed_students += 1
                out(f"{student}: {n} scores pushed, {total:g} points")
    out(f"pushed scores of record for {pushed_students} of {len(reports)} students into {db.name}")
    return status


# ======================================================================== command line
USAGE = """\
usage: attnlab classroom source COURSE_DIR [--notebooks NN ...] [--course-id ID]
       attnlab classroom release COURSE_DIR ASSIGNMENT
       attnlab classroom verify-release COURSE_DIR ASSIGNMENT
       attnlab classroom push-grades COURSE_DIR ASSIGNMENT RESULTS_DIR"""


def _parse_source_args(args):
    course_dir, notebooks, course_id, i = None, None, None, 0
    while i < len(args):
        a = args[i]
        if a == "--notebooks":
            notebooks = []
            i += 1
            while i < len(args) and not args[i].startswith("--"):
                notebooks.append(args[i])
                i += 1
            if not notebooks:
                raise ClassroomError("--notebooks needs at least one notebook number")
            continue
        if a == "--course-id":
            if i + 1 >= len(args):
                raise ClassroomError("--course-id needs a value")
            course_id = args[i + 1]
            i += 2
            continue
        if a.startswith("--"):
            raise ClassroomError(f"unknown option {a}")
        if course_dir is not None:
            raise ClassroomError(f"unexpected argument {a!r}")
        course_dir = a
        i += 1
    if course_dir is None:
        raise ClassroomError("source needs COURSE_DIR")
    return course_dir, notebooks, course_id


def main(action, args, out=print):
    """Entry point of `attnlab classroom ACTION ARGS...`; returns the exit status."""
    args = list(args or [])
    if args and args[0] == "--":
        args = args[1:]
    if any(a in ("-h", "--help") for a in args):
        out(USAGE)
        return 0
    try:
        if action == "source":
            course_dir, notebooks, course_id = _parse_source_args(args)
            write_source(course_dir, notebooks, course_id, out=out)
            return 0
        if action in ("release", "verify-release"):
            if len(args) != 2:
                raise ClassroomError(f"{action} needs COURSE_DIR ASSIGNMENT")
            if action == "release":
                return release(args[0], args[1], out=out)
            problems = verify_release(args[0], args[1])
            for p in problems:
                out(p)
            if problems:
                out(f"release/{args[1]}: {len(problems)} problems: do not distribute it")
                return 1
            n = sum(1 for p in (Path(args[0]) / "release" / args[1]).rglob("*") if p.is_file())
            out(f"OK: release/{args[1]} ({n} files) has no solution code, hidden tests or model answers")
            return 0
        if action == "push-grades":
            if len(args) != 3:
                raise ClassroomError("push-grades needs COURSE_DIR ASSIGNMENT RESULTS_DIR")
            return push_grades(args[0], args[1], args[2], out=out)
        raise ClassroomError(f"unknown action {action!r}")
    except ClassroomError as exc:
        sys.stderr.write(f"attnlab classroom {action}: {exc} (see `attnlab classroom --help`)\n")
        return 2
    except subprocess.TimeoutExpired as exc:
        sys.stderr.write(f"attnlab classroom {action}: nbgrader did not finish in {exc.timeout:g} s\n")
        return 1
