"""Usage: .venv/bin/python benchmarks/cluster_throughput.py   (N=40 students by default)

Throughput of grade-batch: one machine (threads) vs a local Dask cluster of N worker processes.
Cluster start-up is excluded (a client is started first and warmed with one tiny batch)."""
import io, os, shutil, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run():
    import distributed
    from autograde import registry
    from autograde.batch import grade_batch
    n = int(os.environ.get("N", "40"))
    ids = [e.id for e in registry.select(["softmax", "scoring", "attention", "masks"])]
    root = Path(os.environ.get("TMPDIR", "/tmp")) / "attnlab-cluster-bench"; shutil.rmtree(root, ignore_errors=True)
    for i in range(n):
        shutil.copytree(ROOT / "solutions" / "attnlab", root / "class" / f"s{i:03d}" / "attnlab",
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "class" / "s000", root / "warm" / "w" )
    results = {}
    grade_batch(root / "warm", root / "warm_out", exercise_ids=ids, log=io.StringIO())  # judge warm-up
    for w in (1, 2):
        t0 = time.monotonic()
        grade_batch(root / "class", root / f"t{w}", workers=w, exercise_ids=ids, log=io.StringIO())
        results[f"one machine, --workers {w}"] = time.monotonic() - t0
    for w in (1, 2, 4):
        cluster = distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        grade_batch(root / "warm", root / f"warm{w}", exercise_ids=ids, log=io.StringIO(), client=client)
        t0 = time.monotonic()
        grade_batch(root / "class", root / f"c{w}", exercise_ids=ids, log=io.StringIO(), client=client)
        results[f"Dask local cluster, {w} worker processes"] = time.monotonic() - t0
        client.close(); cluster.close()
    base = results["Dask local cluster, 1 worker processes"]
    same = all((root / f"c{w}" / "grades.csv").read_text() == (root / "t1" / "grades.csv").read_text() for w in (1, 2, 4))
    print(f"{n} complete submissions, {len(ids)} exercises each, {os.cpu_count()} CPUs; tables identical: {same}")
    for k, v in results.items():
        print(f"{k:42s} {v:6.1f} s  {60 * n / v:6.1f} students/min  x{base / v:.2f} vs 1 Dask worker")


if __name__ == "__main__":
    run()
