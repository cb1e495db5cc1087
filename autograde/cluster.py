"""Grade a class on a Dask distributed cluster: `attnlab grade-batch DIR --out RESULTS --scheduler ADDRESS`.

The batch (autograde/batch.py) keeps everything that makes it safe: it decides what to grade, writes each
result atomically as it arrives, and rebuilds ``grades.csv`` and ``.summary.json`` from the result files. Only
*where* a submission is graded changes: one Dask task per submission (per part, see below) runs
`grade_submission` on a worker, in that worker's own sandbox. Dask does the scheduling, and reschedules the
task of a worker that dies; a killed client loses only results not yet written, and a re-run resumes.

* **What travels.** A task carries the submission's ``attnlab/`` files as bytes (regular files only, like
  the fingerprint: no symlinks, no ``__pycache__``), at most ``MAX_SUBMISSION_BYTES``; the worker writes them to
  a fresh temporary folder, grades, deletes it, and returns the report (plain JSON data).
* **Same course everywhere.** Before submitting, the client asks every worker for its grader version (a hash
  of ``autograde/``). Workers whose version differs are refused (never sent a task, named in the log); a
  task also checks the version itself, so a worker that joins later with another version cannot grade.
* **GPU cases.** Exercises with cases on ``cuda`` are sent as a second task per submission that asks for the
  Dask resource ``GPU`` (start GPU workers with ``--resources GPU=1``); the other exercises go to any worker.
  The two reports are merged in the course's exercise order. Without GPU workers the GPU cases run where
  they are and are skipped and not counted, as on one machine without CUDA.

Dask is an optional dependency: ``pip install .[cluster]``.
"""
import os
import shutil
import tempfile
import threading
from pathlib import Path

from .errors import UsageError

MAX_SUBMISSION_BYTES = 20 * 2 ** 20
_prepared = threading.Lock()


class VersionMismatch(RuntimeError):
    pass


def _dask():
    try:
        import distributed
    except ImportError:
        raise UsageError("grading on a cluster needs Dask distributed: pip install '.[cluster]' "
                         "(or conda install distributed)") from None
    return distributed


def connect(scheduler=None, cluster=None):
    """A distributed.Client for ``--scheduler ADDRESS`` or ``--cluster local:N`` (N worker processes here)."""
    distributed = _dask()
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout=os.environ.get("ATTNLAB_DASK_CONNECT_TIMEOUT", "15s"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    kind, _, n = (cluster or "").partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise UsageError(f"--cluster must look like local:N with N >= 1 worker processes, got {cluster!r}")
    local = distributed.LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                     dashboard_address=None, resources=_local_resources())
    return distributed.Client(local)


def _local_resources():
    from .sandbox import host_cuda

    available, _ = host_cuda()
    return {"GPU": 1} if available else None


def pack(root):
    """The attnlab/ package under `root` as {relative path: bytes}."""
    files, size = {}, 0
    for p in sorted((Path(root) / "attnlab").rglob("*")):
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts:
            data = p.read_bytes()
            size += len(data)
            if size > MAX_SUBMISSION_BYTES:
                raise UsageError(f"the attnlab/ package is over {MAX_SUBMISSION_BYTES // 2 ** 20} MiB")
            files[p.relative_to(root).as_posix()] = data
    return files


def worker_info():
    """Run on each worker: its course version and whether it advertises a GPU."""
    from .batch import _grader_version

    return {"version": _grader_version(), "pid": os.getpid()}


def grade_task(files, exercise_ids, timeout, seed, version):
    """Run on a worker: rebuild the package in a temporary folder and grade it in this worker's sandbox."""
    from . import registry
    from .batch import _grader_version
    from .runner import grade_submission, prepare_judge

    mine = _grader_version()
    if mine != version:
        raise VersionMismatch(f"worker {os.getpid()} has course version {mine}, the batch {version}")
    with _prepared:  # imports torch/matplotlib once per process, before concurrent grading (see runner)
        prepare_judge(registry.select(exercise_ids))
    folder = Path(tempfile.mkdtemp(prefix="attnlab-task-"))
    try:
        for rel, data in files.items():
            target = (folder / rel).resolve()
            if folder.resolve() not in target.parents:
                raise UsageError(f"refusing a file outside the package: {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return grade_submission(folder, exercise_ids, timeout=timeout, seed=seed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def split_by_device(exercises):
    """(ids without GPU cases, ids with GPU cases), each in course order."""
    gpu = [e.id for e in exercises if any(c.device == "cuda" for c in e.cases)]
    return [e.id for e in exercises if e.id not in gpu], gpu


def merge(reports, ids):
    """One report from the per-part reports of one submission, exercises in the order of `ids`."""
    by_id = {e["id"]: e for r in reports for e in r["exercises"]}
    entries = [by_id[i] for i in ids]
    merged = dict(reports[0])
    for r in reports[1:]:
        for key in ("device", "dropped_guarantees"):
            if key in r:
                merged[key] = r[key]
        if r.get("sandbox") != merged.get("sandbox"):
            merged["sandbox"] = ", ".join(sorted({merged.get("sandbox", ""), r.get("sandbox", "")}))
    merged["exercises"] = entries
    merged["total"] = round(sum(e["points"] for e in entries), 2)
    merged["max_total"] = round(sum(e["max_points"] for e in entries), 2)
    return merged


class ClusterRunner:
    """Submits per-submission tasks to a Dask cluster and yields (name, report) as they complete."""

    def __init__(self, client, exercises, version, log):
        self.client, self.version, self.log = client, version, log
        self.ids = [e.id for e in exercises]
        info = client.run(worker_info)
        if not info:
            raise UsageError("the Dask cluster has no workers")
        self.good = sorted(a for a, i in info.items() if i["version"] == version)
        refused = sorted(set(info) - set(self.good))
        for addr in refused:
            log.write(f"refused worker {addr}: course version {info[addr]['version']}, this batch {version} "
                      "(install the same course version on every worker)\n")
        if not self.good:
            raise UsageError("no Dask worker has this course version; refusing to grade")
        # Restrict tasks to the good workers only when some are refused: unrestricted tasks also go to a
        # worker that a nanny restarts after a crash (a new address). A worker that joins later with another
        # version fails its task in grade_task's own check; that student is left for a re-run.
        self.allowed = self.good if refused else None
        gpu_workers = {a for a, w in client.scheduler_info()["workers"].items()
                       if w.get("resources", {}).get("GPU", 0) >= 1 and a in self.good}
        self.cpu_ids, self.gpu_ids = split_by_device(exercises)
        if not gpu_workers and self.gpu_ids:
            log.write("no worker advertises a GPU resource: GPU cases run on CPU workers and are skipped there\n")
            self.cpu_ids, self.gpu_ids = self.ids, []
        log.write(f"cluster: {len(self.good)} workers ({len(gpu_workers)} with a GPU)\n")

    def run(self, items, timeout, seed):
        """items: (name, root, fp). Yields (name, (kind, value)): kind "report", "student_error" (message),
        "cluster_error" (message) or "local" (the item: nothing to send, e.g. no package found)."""
        distributed = _dask()
        futures, parts = {}, {}
        for item in items:
            name, root, fp = item
            try:
                files = pack(root) if isinstance(root, Path) else None
            except (UsageError, OSError) as exc:
                yield name, ("student_error", f"could not be sent to the cluster: {exc}")
                continue
            if files is None:
                yield name, ("local", item)
                continue
            parts[name] = []
            for ids, resources in ((self.cpu_ids, None), (self.gpu_ids, {"GPU": 1})):
                if ids:
                    fut = self.client.submit(grade_task, files, ids, timeout, seed, self.version,
                                             key=f"grade-{fp[:16]}-{len(parts[name])}-{name}", workers=self.allowed,
                                             resources=resources, pure=False)
                    futures[fut] = name
                    parts[name].append(None)
        index = {}
        for fut in futures:
            index.setdefault(futures[fut], []).append(fut)
        for fut in distributed.as_completed(list(futures)):
            name = futures[fut]
            if fut.status == "error":
                exc = fut.exception()
                for other in index[name]:
                    other.cancel()
                yield name, ("cluster_error", f"{type(exc).__name__}: {exc}")
                index[name] = []
                continue
            if not index[name] or not all(f.done() for f in index[name]):
                continue
            reports = [f.result() for f in index[name]]
            index[name] = []
            yield name, ("report", merge(reports, self.ids) if len(reports) > 1 else reports[0])
