"""The latency learners and teachers feel, measured: `attnlab latency [--notebooks NN ...] [--skip ...]`.

Prints one table (and writes it as CSV with --csv FILE), each row against its target:

* `attnlab check <one exercise>`, cold: a new process, as a learner's terminal runs it (target < 3 s);
* `attnlab grade` of a complete submission, every exercise of the course (target < 60 s);
* each notebook executed top to bottom against the solutions, demos at full size, and the total
  (targets: each < 90 s, total < 10 min);
* nbgrader autograde of one student for notebook 01 (target < 15 s);
* `grade-batch` of a class of complete submissions on this machine, in students per minute.

Wall-clock seconds on whatever machine runs it (it names the CPU count): a figure, never a test verdict.
"""
import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .course import NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("check", "grade", "notebooks", "nbgrader", "batch")


def _cli(*args, env=None, cwd=None):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "autograde.cli", *map(str, args)], cwd=cwd or ROOT,
                       env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=1800)
    return time.monotonic() - t0, r


def _notebook_seconds(nb):
    import nbformat
    from nbclient import NotebookClient

    env = {"ATTNLAB_SRC": "solutions", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in (*env, "ATTNLAB_QUICK")}
    os.environ.update(env)
    os.environ.pop("ATTNLAB_QUICK", None)  # the real demos
    # The kernel's own stderr (ipykernel's start-up warnings) goes to a file, shown only if the run fails;
    # a cell's error reaches us through the kernel's messages either way.
    log = tempfile.TemporaryFile(mode="w+")
    try:
        notebook = nbformat.read(ROOT / "notebooks" / f"{nb.name}.ipynb", as_version=4)
        t0 = time.monotonic()
        try:
            NotebookClient(notebook, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute(stderr=log)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:])
            raise
        return time.monotonic() - t0
    finally:
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _nbgrader_seconds(work):
    from . import classroom

    course = work / "course"
    a = NOTEBOOKS[0].name
    for args in (("classroom", "source", course, "--notebooks", "01"), ("classroom", "release", course, a)):
        _, r = _cli(*args)
        if r.returncode:
            raise RuntimeError(r.stdout + r.stderr)
    nbgrader = classroom.nbgrader_executable()
    (course / "students.csv").write_text("id,first_name,last_name\nada,Ada,Complete\n")
    subprocess.run([nbgrader, "db", "student", "import", "students.csv"], cwd=course, capture_output=True, check=True)
    dest = course / "submitted" / "ada" / a
    shutil.copytree(course / "release" / a, dest)
    (dest / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")
    from .build import solution_only

    for p in sorted((ROOT / "solutions" / "attnlab").glob("*.py")):
        (dest / "src" / "attnlab" / p.name).write_text(solution_only(p.read_text()))
    t0 = time.monotonic()
    r = subprocess.run([nbgrader, "autograde", a, "--student", "ada"], cwd=course, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    return time.monotonic() - t0


def main(argv=None, out=print):
    p = argparse.ArgumentParser(prog="attnlab latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts not to measure")
    p.add_argument("--notebooks", nargs="*", default=None, metavar="NN", help="notebook numbers (default: all)")
    p.add_argument("--students", type=int, default=8, help="class size for the grade-batch row (default 8)")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write the rows as CSV")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.students < 1:
        sys.stderr.write("attnlab latency: --students must be at least 1\n")
        return 2
    chosen = NOTEBOOKS
    if args.notebooks:
        wanted = {n.lstrip("0") for n in args.notebooks}
        chosen = [nb for nb in NOTEBOOKS if str(nb.number) in wanted]
        if len(chosen) != len(wanted):
            sys.stderr.write(f"attnlab latency: unknown notebook in {args.notebooks} (01..{len(NOTEBOOKS):02d})\n")
            return 2
    rows = []

    def row(what, seconds, target, unit="s"):
        ok = "" if target is None else ("ok" if seconds <= target else "OVER")
        rows.append({"what": what, "value": round(seconds, 2), "unit": unit, "target": target, "verdict": ok})
        out(f"{what:58s} {seconds:9.1f} {unit:12s} {'' if target is None else f'target {target:g}':12s} {ok}")

    out(f"latency on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="attnlab-latency-"))
    try:
        if "check" not in args.skip:
            seconds, _ = _cli("check", "softmax.softmax", "--src", ROOT / "solutions")
            row("attnlab check softmax.softmax (cold process)", seconds, 3)
        if "grade" not in args.skip:
            seconds, r = _cli("grade", ROOT / "solutions")
            row("attnlab grade of a complete submission (all exercises)", seconds, 60)
        if "notebooks" not in args.skip:
            total = 0.0
            for nb in chosen:
                if not (ROOT / "notebooks" / f"{nb.name}.ipynb").exists():
                    continue
                seconds = _notebook_seconds(nb)
                total += seconds
                row(f"notebook {nb.name}, top to bottom, full demos", seconds, 90)
            row("all notebooks above, total", total, 600)
        if "nbgrader" not in args.skip:
            row("nbgrader autograde, one student, notebook 01", _nbgrader_seconds(work), 15)
        if "batch" not in args.skip:
            from .batch import grade_batch

            for i in range(args.students):
                shutil.copytree(ROOT / "solutions" / "attnlab", work / "class" / f"s{i:03d}" / "attnlab",
                                ignore=shutil.ignore_patterns("__pycache__"))
            workers = max(1, os.cpu_count() or 1)
            t0 = time.monotonic()
            grade_batch(work / "class", work / "results", workers=workers, log=io.StringIO())
            seconds = time.monotonic() - t0
            row(f"grade-batch, {args.students} complete submissions, --workers {workers}",
                60 * args.students / seconds, None, unit="students/min")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"attnlab latency: {exc}\n")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["what"])
            w.writeheader()
            w.writerows(rows)
    return 0
