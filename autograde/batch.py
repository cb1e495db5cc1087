"""Grade a whole class, resumably: `attnlab grade-batch SUBMISSIONS_DIR --out RESULTS_DIR [--workers N]`.

* One folder per student in SUBMISSIONS_DIR; the `attnlab/` package may sit in it, in its `src/`, or one
  level further down (an nbgrader ``submitted/<student>/<assignment>/src/`` layout).
* Each student's result is written atomically to ``RESULTS_DIR/<student>.json`` (write a temporary file,
  fsync, rename): a result file is either complete or absent, whenever the batch is killed.
* A re-run skips students whose result is already there *for the same submission, seed, exercises and
  grader* (a fingerprint of all four) and grades the rest. ``grades.csv`` and ``.summary.json`` are rebuilt
  from the result files at the end of every run, so killing and re-running gives the same final table with
  nothing lost or counted twice.
* One broken, slow or hostile submission cannot stop the batch: every student is graded in its own
  sandboxed processes, and anything that goes wrong becomes that student's status, not an exception.
"""
import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import blas, registry
from .sandbox import remove_stale_copies
from .runner import STATUSES, UsageError, check_timeout, grade_submission, owned_package, prepare_judge

GRADER_DIR = Path(__file__).resolve().parent


def atomic_write(path, text):
    """Write text to path so that readers (and a crash) only ever see the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def locate_package(student_dir, assignment=None):
    """The folder holding the student's attnlab/, or None.

    With `assignment`, only ``<student>/<assignment>/`` (or its ``src/``) is searched: nbgrader keeps one
    folder per assignment and each has its own copy of the package."""
    student_dir = Path(student_dir)
    if assignment is not None:
        candidates = [student_dir / assignment, student_dir / assignment / "src"]
    else:
        candidates = [student_dir, student_dir / "src"]
        subs = sorted(p for p in student_dir.iterdir() if p.is_dir() and not p.is_symlink())
        nested = [c for sub in subs for c in (sub, sub / "src") if owned_package(student_dir, c)]
        if len(nested) > 1 and not any(owned_package(student_dir, c) for c in candidates):
            return AMBIGUOUS
        candidates += nested
    for c in candidates:
        if owned_package(student_dir, c):
            return c
    return None


AMBIGUOUS = "ambiguous"


def _grader_version():
    h = hashlib.sha256()
    for p in sorted(GRADER_DIR.rglob("*.py")):
        h.update(p.relative_to(GRADER_DIR).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(package_root, seed, exercise_ids, grader_version):
    h = hashlib.sha256(f"{seed}|{','.join(exercise_ids)}|{grader_version}".encode())
    if package_root not in (None, AMBIGUOUS):
        for p in sorted((Path(package_root) / "attnlab").rglob("*")):
            if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts:
                h.update(p.relative_to(package_root).as_posix().encode() + b"\0")
                h.update(p.read_bytes())
    return h.hexdigest()


def _error_report(student, exercise_ids, message):
    exercises = [{"id": e.id, "points": 0.0, "max_points": float(e.points), "status": "error",
                  "tests": [{"name": "submission", "intent": "the submission can be graded", "passed": False,
                             "message": message}]}
                 for e in registry.select(exercise_ids)]
    return {"submission": student, "total": 0.0,
            "max_total": round(sum(e["max_points"] for e in exercises), 2), "exercises": exercises}


def _load_result(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and "fingerprint" in data and "exercises" in data else None
    except (OSError, ValueError):
        return None


def grade_batch(submissions, out, workers=1, timeout=None, seed=None, exercise_ids=None, log=None,
                assignment=None, scheduler=None, cluster=None, client=None):
    """Grade every student folder in `submissions` into `out` (see the module docstring); returns the exit code.

    On one machine `workers` threads each grade one student at a time. With `scheduler` (a Dask scheduler's
    address), `cluster` ("local:N") or an existing distributed `client`, the students are graded on Dask
    workers instead (autograde/cluster.py); results are still written here, atomically, as they arrive."""
    log = log or sys.stderr
    submissions, out = Path(submissions), Path(out)
    if not submissions.is_dir():
        raise UsageError(f"{submissions}: no such folder")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    check_timeout(timeout)  # before any student is graded
    if seed is None:
        seed = int(os.environ.get("ATTNLAB_GRADE_SEED", "0"))
    selected = registry.select(exercise_ids)
    ids = [e.id for e in selected]
    prepare_judge(selected)  # before the grading threads start (see runner.prepare_judge)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".tmp-*"), *out.glob(".timings/.tmp-*")]:  # left by a killed run: never a result
        stale.unlink(missing_ok=True)
    remove_stale_copies()
    out_resolved = out.resolve()
    students = sorted(p.name for p in submissions.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and p.resolve() != out_resolved)
    version = _grader_version()

    todo, resumed = [], 0
    for name in students:
        root = locate_package(submissions / name, assignment)
        fp = fingerprint(root, seed, ids, version)
        previous = _load_result(out / f"{name}.json")
        if previous is not None and previous.get("fingerprint") == fp:
            resumed += 1
        else:
            todo.append((name, root, fp))

    on_cluster = scheduler is not None or cluster is not None or client is not None
    own_client = None
    if on_cluster and client is None:
        from .cluster import connect

        client = own_client = connect(scheduler, cluster)
    progress = _Progress(len(students), resumed, log)
    started = time.monotonic()

    def write(name, fp, report, t0):
        report["submission"] = name
        report["student"] = name
        report["fingerprint"] = fp
        atomic_write(out / f"{name}.json", json.dumps(report, indent=2) + "\n")
        atomic_write(out / ".timings" / f"{name}.txt", f"{time.monotonic() - t0:.2f}\n")
        progress.step(name, report)

    def grade_one(item):
        name, root, fp = item
        t0 = time.monotonic()
        if root is None:
            report = _error_report(name, ids, "no attnlab/ package found in this submission")
        elif root == AMBIGUOUS:
            report = _error_report(name, ids, "several attnlab/ packages (one per assignment?): "
                                              "choose one with --assignment NAME")
        else:
            try:
                report = grade_submission(root, ids, timeout=timeout, seed=seed)
            except Exception as exc:  # the batch must go on, whatever one student did
                report = _error_report(name, ids, f"could not be graded: {type(exc).__name__}: {exc}")
        write(name, fp, report, t0)

    failed = []
    if on_cluster:
        from .cluster import ClusterRunner

        try:
            runner = ClusterRunner(client, selected, version, log)
            t0 = time.monotonic()
            fps = {name: fp for name, _, fp in todo}
            for name, (kind, value) in runner.run(todo, timeout, seed):
                if kind == "report":
                    write(name, fps[name], value, t0)
                elif kind == "student_error":
                    write(name, fps[name], _error_report(name, ids, value), t0)
                elif kind == "local":
                    grade_one(value)
                else:  # the cluster failed, not the student: nothing written, a re-run grades it again
                    failed.append(name)
                    log.write(f"{name}: not graded: {value}\n")
        finally:
            if own_client is not None:
                cluster_obj = own_client.cluster
                own_client.close()
                if cluster_obj is not None:
                    cluster_obj.close()
    else:
        # several judge threads in one process: NumPy's OpenBLAS gets one thread each (autograde.blas: its
        # threaded kernels can deadlock when two threads call them at once)
        with (blas.limited(1) if workers > 1 else contextlib.nullcontext()), \
                ThreadPoolExecutor(max_workers=workers) as pool:
            for fut in as_completed([pool.submit(grade_one, item) for item in todo]):
                fut.result()
    progress.done()

    rows, counts = [], {s: 0 for s in STATUSES}
    for name in students:
        report = _load_result(out / f"{name}.json")
        if report is None:  # a cluster error left it ungraded
            continue
        rows.append((name, report))
        for ex in report["exercises"]:
            counts[ex["status"]] = counts.get(ex["status"], 0) + 1
    atomic_write(out / "grades.csv", _csv(rows, ids))
    elapsed = time.monotonic() - started
    summary = {"students": len(students), "graded_now": len(todo) - len(failed), "resumed": resumed,
               "not_graded": failed,
               "exercise_statuses": counts, "seed": seed, "exercises": ids}
    atomic_write(out / ".summary.json", json.dumps(summary, indent=2) + "\n")  # dot: no student can collide
    rate = f", {60 * len(todo) / elapsed:.1f} students/min" if todo and elapsed > 0 else ""
    log.write(f"graded {len(todo)} students, resumed {resumed}, in {elapsed:.1f} s{rate}\n")
    log.write("exercise statuses: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + "\n")
    log.write(f"wrote {out / 'grades.csv'}\n")
    if failed:
        log.write(f"{len(failed)} students not graded because of cluster errors: run the same command again "
                  "to grade them (the others are kept)\n")
        return 1
    return 0


def _csv(rows, ids):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "total", "max_total"] + ids + [f"{i}:status" for i in ids])
    for name, report in rows:
        by_id = {e["id"]: e for e in report["exercises"]}
        w.writerow([name, f"{report['total']:g}", f"{report['max_total']:g}"]
                   + [f"{by_id[i]['points']:g}" if i in by_id else "" for i in ids]
                   + [by_id[i]["status"] if i in by_id else "" for i in ids])
    return buf.getvalue()


class _Progress:
    def __init__(self, total, resumed, stream):
        self.total, self.done_count, self.stream = total, resumed, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        if resumed:
            stream.write(f"resuming: {resumed} of {total} students already graded\n")

    def step(self, name, report):
        with self.lock:
            self.done_count += 1
            n, total = self.done_count, self.total
            if self.tty:
                filled = int(30 * n / max(total, 1))
                self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {n}/{total} students "
                                  f"({time.monotonic() - self.t0:.0f} s) {name[:20]:20s}")
            else:
                self.stream.write(f"[{n}/{total}] {name}: {report['total']:g}/{report['max_total']:g}\n")
            self.stream.flush()

    def done(self):
        if self.tty:
            self.stream.write("\n")
