"""grade-batch on a Dask cluster (autograde/cluster.py): the same table as one machine, a killed worker loses
nothing, workers of another course version are refused, bad input is a clear message.

The cluster is a LocalCluster of worker processes on this machine, as `--cluster local:N` builds it."""
import json
import os
import shutil
import signal
import threading

import pytest

from autograde import batch, cluster
from autograde.build import SOLUTIONS
from autograde.cli import main

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install '.[cluster]')")

IDS = ["softmax.softmax", "softmax.masked_softmax"]
BUGGY = '''
import numpy as np

def softmax(x, axis=-1):
    e = np.exp(x)                    # no max shift: overflows for large logits
    return e / e.sum(axis=axis, keepdims=True)
'''


def _class(tmp_path):
    """Eight students: complete, stubs, a planted bug, a syntax error and no package at all."""
    root = tmp_path / "class"
    stubs = SOLUTIONS.parent / "src" / "attnlab"
    for name, source in [("ada", SOLUTIONS / "attnlab"), ("ben", stubs), ("cy", SOLUTIONS / "attnlab"),
                         ("dee", SOLUTIONS / "attnlab"), ("eve", SOLUTIONS / "attnlab"), ("fay", stubs)]:
        shutil.copytree(source, root / name / "attnlab", ignore=shutil.ignore_patterns("__pycache__"))
    bug = root / "cy" / "attnlab" / "softmax.py"
    bug.write_text(bug.read_text() + BUGGY)
    (root / "dee" / "attnlab" / "softmax.py").write_text("def softmax(x, axis=-1:\n")
    (root / "gus").mkdir()
    return root


def _results(out):
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if not p.name.startswith(".")}


class _KillOnFirstResult:
    """A log stream that SIGKILLs a worker busy grading the moment the first student's result is written."""

    def __init__(self, client):
        self.client, self.killed, self.lines = client, None, []
        self.pids = client.run(os.getpid)  # {address: pid}

    def write(self, text):
        self.lines.append(text)
        if self.killed is None and text.startswith("[1/"):
            busy = [a for a, keys in self.client.processing().items() if keys]
            victim = busy[0] if busy else sorted(self.pids)[0]
            os.kill(self.pids[victim], signal.SIGKILL)
            self.killed = victim

    def flush(self):
        pass


@pytest.mark.slow
def test_cluster_gives_the_one_machine_table_even_when_a_worker_is_killed(tmp_path):
    submissions = _class(tmp_path)
    assert batch.grade_batch(submissions, tmp_path / "one", workers=2, exercise_ids=IDS, log=open(os.devnull, "w")) == 0

    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(local)
    try:
        log = _KillOnFirstResult(client)
        rc = batch.grade_batch(submissions, tmp_path / "cluster", exercise_ids=IDS, log=log, client=client)
    finally:
        client.close()
        local.close()
    assert log.killed is not None, "no worker was killed: the test proved nothing"
    assert rc == 0, "".join(log.lines)
    assert "cluster: 2 workers" in "".join(log.lines)
    one, many = _results(tmp_path / "one"), _results(tmp_path / "cluster")
    assert set(one) == set(many) == {f"{n}.json" for n in ("ada", "ben", "cy", "dee", "eve", "fay", "gus")}
    assert one == many                                      # every point, status and message identical
    assert (tmp_path / "one" / "grades.csv").read_text() == (tmp_path / "cluster" / "grades.csv").read_text()
    totals = {n: r["total"] for n, r in many.items()}
    assert totals["ada.json"] == totals["eve.json"] == 4 and totals["ben.json"] == 0
    assert 0 < totals["cy.json"] < 4 and totals["dee.json"] == 0 and totals["gus.json"] == 0


@pytest.mark.slow
def test_cluster_refuses_workers_of_another_course_version(tmp_path, monkeypatch):
    submissions = _class(tmp_path)
    local = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(local)
    lines = []

    class Log:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    try:
        monkeypatch.setattr(batch, "_grader_version", lambda: "another-version")  # the client's, not the worker's
        rc = batch.grade_batch(submissions, tmp_path / "out", exercise_ids=IDS, log=Log(), client=client)
    except Exception as exc:  # noqa: BLE001 - the message is what is tested
        rc, lines = 2, lines + [str(exc)]
    finally:
        client.close()
        local.close()
    text = "".join(lines)
    assert rc == 2
    assert "refused worker" in text and "no Dask worker has this course version" in text
    assert not list((tmp_path / "out").glob("*.json"))          # nothing graded by a foreign version


def test_grade_task_refuses_a_version_it_does_not_have():
    with pytest.raises(cluster.VersionMismatch):
        cluster.grade_task({}, IDS, None, 0, "not-this-version")


def test_packing_sends_regular_files_only(tmp_path):
    pkg = tmp_path / "attnlab"
    pkg.mkdir()
    (pkg / "softmax.py").write_text("x = 1\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "softmax.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "link.py").symlink_to("/etc/passwd")
    assert cluster.pack(tmp_path) == {"attnlab/softmax.py": b"x = 1\n"}


def test_merge_keeps_the_course_order_and_sums():
    a = {"total": 2, "max_total": 2, "sandbox": "bwrap", "seed": 0,
         "exercises": [{"id": "x", "points": 2.0, "max_points": 2.0}]}
    b = {"total": 1, "max_total": 3, "sandbox": "bwrap", "seed": 0, "device": {"cuda": "H100"},
         "exercises": [{"id": "y", "points": 1.0, "max_points": 3.0}]}
    merged = cluster.merge([b, a], ["x", "y"])
    assert [e["id"] for e in merged["exercises"]] == ["x", "y"]
    assert (merged["total"], merged["max_total"], merged["device"]) == (3.0, 5.0, {"cuda": "H100"})


@pytest.mark.parametrize("args, message", [
    (["--cluster", "local:0"], "--cluster must look like local:N"),
    (["--cluster", "kube"], "--cluster must look like local:N"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
])
def test_bad_cluster_options_are_one_clear_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("ATTNLAB_DASK_CONNECT_TIMEOUT", "2s")
    (tmp_path / "class" / "ada").mkdir(parents=True)
    assert main(["grade-batch", str(tmp_path / "class"), "--out", str(tmp_path / "out"), *args, "softmax"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_parallel_judge_threads_use_one_blas_thread_each_and_restore_it(tmp_path, monkeypatch):
    """Two judge threads calling NumPy's threaded OpenBLAS at once can deadlock (it hung grade-batch
    --workers 2 in dgemm_thread_tn): while the pool runs, OpenBLAS has one thread; afterwards, its old count."""
    from autograde import blas

    before = blas.get_threads()
    if before is None:
        pytest.skip("NumPy's OpenBLAS thread count cannot be read here")
    seen = []
    real = batch.grade_submission

    def spy(*args, **kwargs):
        seen.append(blas.get_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "grade_submission", spy)
    submissions = _class(tmp_path)
    assert batch.grade_batch(submissions, tmp_path / "out", workers=2, exercise_ids=IDS, log=open(os.devnull, "w")) == 0
    assert seen and set(seen) == {1}
    assert blas.get_threads() == before
    with blas.limited(1):
        assert blas.get_threads() == 1
    assert blas.get_threads() == before
