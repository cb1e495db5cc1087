"""`attnlab bench` (autograde/bench.py): the --quick run end to end (table, CSV, PNG), interleaved rounds, the
FLOP/s arithmetic, the memory run, the learner's kernels (not implemented, failing), Ctrl-C, bad input (one line,
exit status 2, never a traceback) and the GPU helpers that can be checked without a GPU. No assertion on
timings; every run here stays at L <= 512."""
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autograde import bench
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_main(argv):
    lines, problems = [], []
    code = bench.main(list(argv) + ["--no-progress"], out=lines.append, err=problems.append)
    return code, "\n".join(lines), problems


def table_rows(text):
    """The table's lines, split on whitespace: [device, mode, kernel, L, blocks, ...]."""
    rows = [line.split() for line in text.splitlines() if line.startswith(("cpu ", "cuda "))]
    return [r for r in rows if len(r) > 4 and r[1] in bench.MODES]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def recording(name, calls, fn=None):
    """A tiled-style kernel that records its calls at the measured length (not the warm-up's)."""
    def kernel(q, k, v, causal=False, block_q=None, block_k=None):
        if q.shape[-2] != 256:
            calls.append(name)
        return (fn(q, k, v, causal) if fn else torch.zeros_like(q)), None
    return kernel


def learner_package(folder, flash_source):
    package = folder / "attnlab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "flash.py").write_text(flash_source)
    return folder


# ----------------------------------------------------------------------------------------- --quick
def test_quick_run_writes_the_table_the_csv_and_the_png(tmp_path):
    code, text, problems = run_main(["--quick", "--out", str(tmp_path)])
    assert code == 0 and not problems, problems
    rows = [r for r in table_rows(text) if r[0] == "cpu"]  # a GPU machine adds cuda rows (checked elsewhere)
    cpu_kernels = [k for k in bench.KERNELS if k != "triton"]  # the Triton kernel has GPU rows only
    expected = {(mode, kernel, L) for mode in ("full", "causal") for kernel in cpu_kernels for L in ("256", "512")}
    assert {(r[1], r[2], r[3]) for r in rows} == expected and len(rows) == len(expected)
    assert all(r[4] == "256x256" for r in rows if r[2] in ("tiled", "fast"))  # --quick: one candidate
    for header in ("median", "FLOP/s", "% GEMM", "x SDPA", "peak MiB", "max|err|", "GPU/CPU"):
        assert header in text
    assert "H=2" in text and "median of 1 interleaved round" in text and "no memory run" in text
    assert "GEMM cpu float32:" in text and "median time as a multiple of SDPA's: L=512" in text
    if not torch.cuda.is_available():
        assert "CUDA not available: GPU rows skipped" in text
    assert f"CSV: {tmp_path / 'bench.csv'}" in text and f"plot: {tmp_path / 'bench.png'}" in text

    with open(tmp_path / "bench.csv", newline="") as fh:
        assert next(csv.reader(fh)) == list(bench.COLUMNS)
    records = read_csv(tmp_path / "bench.csv")
    assert len(records) == len(expected) and {r["status"] for r in records} == {"ok"}
    for r in records:
        assert float(r["seconds"]) > 0 and float(r["gflops"]) > 0 and float(r["gemm_gflops"]) > 0
        assert r["H"] == "2" and r["calls"] == "1" and r["memory_run"] == "false" and r["peak_bytes"] != ""
        if r["kernel"] != "sdpa":
            assert float(r["err_vs_sdpa"]) < 1e-5, r
        else:
            assert r["x_sdpa"] == "1.0" and r["note"] == "reference"
    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


# ---------------------------------------------------------------------------------- interleaving
def test_timed_rounds_call_every_kernel_once_in_turn(monkeypatch):
    calls = []
    real_sdpa = bench.sdpa
    monkeypatch.setattr(bench, "sdpa", lambda q, k, v, causal=False: (
        calls.append("sdpa") if q.shape[-2] != 256 else None, real_sdpa(q, k, v, causal))[1])
    learner = {"yours:a": recording("a", calls), "yours:b": recording("b", calls, bench.naive_attention)}
    rows = bench.run_benchmark([64], modes=("full",), kernels=("sdpa",), learner=learner, repeat=3, heads=2,
                               gemm_size=64)
    # first calls (the warm-up: the reference first), then 3 rounds, each calling every kernel in turn
    assert calls == ["sdpa", "a", "b"] + ["sdpa", "a", "b"] * 3
    assert [r["kernel"] for r in rows] == ["sdpa", "yours:a", "yours:b"]
    assert all(r["calls"] == 3 and r["status"] == "ok" and r["block_q"] is None for r in rows)
    assert rows[1]["err_vs_sdpa"] > 0.01 and rows[2]["err_vs_sdpa"] < 1e-5  # zeros vs a correct kernel


def test_naive_kernels_get_their_own_rounds_after_the_others(monkeypatch):
    """Naive attention's gigabytes per call slowed whatever ran next: its rounds come after the others'."""
    calls = []
    real_sdpa, real_naive = bench.sdpa, bench.naive_attention
    monkeypatch.setattr(bench, "sdpa", lambda q, k, v, causal=False: (
        calls.append("sdpa") if q.shape[-2] != 256 else None, real_sdpa(q, k, v, causal))[1])
    monkeypatch.setattr(bench, "naive_attention", lambda q, k, v, causal=False: (
        calls.append("naive") if q.shape[-2] != 256 else None, real_naive(q, k, v, causal))[1])
    labels = []
    rows = bench.run_benchmark([64], modes=("full",), kernels=("sdpa", "naive-torch"),
                               learner={"yours:a": recording("a", calls, real_naive)}, repeat=2, heads=2,
                               gemm_size=64, progress=lambda step, total, label: labels.append((step, total, label)))
    assert calls == ["sdpa", "naive", "a"] + ["sdpa", "a"] * 2 + ["naive"] * 2
    assert all(r["calls"] == 2 and r["status"] == "ok" for r in rows)
    naive_labels = [(step, label) for step, _, label in labels if "naive round" in label]
    assert len(naive_labels) == 2 and naive_labels[0][0] == naive_labels[1][0]  # shown, not counted twice
    assert labels[-1][0] == labels[-1][1]  # the bar ends full


def test_the_median_comes_from_the_rounds_and_the_fastest_block_is_kept(monkeypatch):
    """A mock clock: each call of a kernel returns the next of its scripted durations."""
    # tiled: 4 first calls (warm-ups), 4 second calls (the search), then 3 rounds
    script = {"sdpa": [9.0, 2.0, 4.0, 3.0], "tiled": [5.0, 1.0, 7.0, 6.0, 4.0, 9.0, 2.0, 8.0, 6.0, 3.0, 8.0]}
    seen = []

    def fake_time_call(fn, device="cpu"):
        fn()
        return script[seen[-1]].pop(0)

    def tiled(q, k, v, causal=False, block_q=128, block_k=128):
        seen.append("tiled")
        return bench.naive_attention(q, k, v, causal), None

    def fake_sdpa(q, k, v, causal=False):
        seen.append("sdpa")
        return bench.naive_attention(q, k, v, causal)

    monkeypatch.setattr(bench, "_warm_up", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench, "gemm_gflops", lambda *args, **kwargs: 100.0)
    monkeypatch.setattr(bench, "time_call", fake_time_call)
    monkeypatch.setattr(bench, "sdpa", fake_sdpa)
    rows = bench.run_benchmark([512], modes=("causal",), kernels=("sdpa", "tiled"), reference={"tiled": tiled},
                               repeat=3, heads=1, dim=8)
    sdpa_row, tiled_row = rows
    assert sdpa_row["seconds"] == 3.0  # median of the rounds 2, 4, 3: the first call (9) is the warm-up
    # the second calls decide: 2.0 s for 512x256 (its warm-up took 7.0 s; 256x256's took 1.0 s, then 9.0 s)
    assert (tiled_row["block_q"], tiled_row["block_k"]) == (512, 256)
    assert script["tiled"] == []
    assert tiled_row["seconds"] == 6.0 and tiled_row["x_sdpa"] == 2.0  # median of 6, 3, 8
    assert tiled_row["flops"] == 4 * 512 * 512 * 8 // 2 and tiled_row["gemm_gflops"] == 100.0


# ------------------------------------------------------------------------------------- arithmetic
def test_flops_rates_and_ratios_of_a_fake_row():
    assert bench.flops(1, 8, 4096, 64) == 4 * 8 * 4096 * 4096 * 64
    assert bench.flops(1, 8, 4096, 64, causal=True) == 2 * 8 * 4096 * 4096 * 64
    assert bench.flops(2, 3, 5, 4, keys=7) == 4 * 2 * 3 * 5 * 7 * 4

    def row(device, kernel, seconds, mode="causal", dtype="float32", gemm=200.0, peak=None):
        r = bench._new_row(device, dtype, mode, kernel, 1024, 1, 8, 64, False, "test machine")
        r.update(seconds=seconds, gemm_gflops=gemm, device_peak_tflops=peak, status="ok")
        return r

    rows = bench.derive([row("cpu", "sdpa", 0.004), row("cpu", "tiled", 0.01), row("cuda", "tiled", 0.001),
                         row("cuda", "sdpa", 0.0005), row("cuda", "tiled", 0.002, dtype="bfloat16", peak=989.0)])
    causal_flops = 2 * 8 * 1024 * 1024 * 64  # half of 4 B H L S D
    assert rows[1]["flops"] == causal_flops
    assert rows[1]["gflops"] == pytest.approx(causal_flops / 0.01 / 1e9)
    assert rows[1]["pct_gemm"] == pytest.approx(100 * causal_flops / 0.01 / 1e9 / 200.0)
    assert rows[1]["x_sdpa"] == pytest.approx(2.5) and rows[0]["x_sdpa"] == 1.0
    assert rows[1]["gpu_speedup"] is None and rows[2]["gpu_speedup"] == pytest.approx(10.0)
    assert rows[2]["x_sdpa"] == pytest.approx(2.0)
    assert rows[4]["x_sdpa"] is None and rows[4]["gpu_speedup"] is None  # no bf16 reference, no bf16 CPU row
    assert rows[4]["pct_device_peak"] == pytest.approx(causal_flops / 0.002 / 1e12 / 989.0 * 100)
    table = bench.format_table(rows)
    assert "% peak" in table and "10.00x" in table and "cuda bfloat16" in table


# ------------------------------------------------------------------------------------- memory run
@pytest.mark.parametrize("available", [256 * 2 ** 10, 64 * 2 ** 30])
def test_the_memory_run_skips_naive_when_memory_is_short(monkeypatch, available):
    monkeypatch.setattr(bench, "mem_available_bytes", lambda: available)
    rows = bench.run_benchmark([64], modes=("full",), kernels=("naive-torch", "sdpa", "tiled", "fast"),
                               repeat=1, heads=2, memory_length=128, gemm_size=64)
    extra = {r["kernel"]: r for r in rows if r["memory_run"]}
    assert set(extra) == {"naive-torch", "sdpa", "tiled", "fast"}
    assert all(r["L"] == 128 and r["mode"] == "full" for r in extra.values())
    for kernel in ("sdpa", "tiled", "fast"):
        assert extra[kernel]["status"] == "ok" and extra[kernel]["calls"] == 1
        assert extra[kernel]["peak_bytes"] is not None and "memory run: one call" in extra[kernel]["note"]
    assert (extra["tiled"]["block_q"], extra["tiled"]["block_k"]) == (64, 64)  # the block chosen at L = 64
    text = bench.summary(rows)
    if available < 2 ** 30:
        assert extra["naive-torch"]["status"] == "skipped"
        # two (1, 2, 128, 128) float32 matrices: 0.25 MiB >= 75% of 0.25 MiB
        assert extra["naive-torch"]["note"].startswith("skipped: needs 0.2 MiB, MemAvailable 0.2 MiB")
        assert "naive-torch was not measured at L=128 (skipped: needs" in text
        assert "at L=64, the largest length it ran at (not 128), naive-torch took" in text
    else:
        assert extra["naive-torch"]["status"] == "ok" and extra["naive-torch"]["peak_bytes"] is not None
        assert "measured at the same L" in text
    assert "memory at L=128 (cpu, non-causal, one call each): tiled" in text


# --------------------------------------------------------------------------------- the learner's kernels
def test_learner_stubs_say_not_implemented_and_the_run_goes_on(tmp_path):
    shutil.copytree(ROOT / "src" / "attnlab", tmp_path / "src" / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code, text, problems = run_main(["--quick", "--lengths", "64", "--mode", "causal", "--kernels", "sdpa",
                                     "--src", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 0 and not problems, problems
    rows = {r[2]: " ".join(r) for r in table_rows(text)}
    assert set(rows) == {"sdpa", "yours:tiled", "yours:fast"}
    assert bench.NOT_IMPLEMENTED_NOTE in rows["yours:tiled"]
    has_fast = "def fast_tiled_attention" in (ROOT / "src" / "attnlab" / "flash.py").read_text()
    assert (bench.NOT_IMPLEMENTED_NOTE if has_fast else "not available") in rows["yours:fast"]
    assert "yours: " in text and "flash.py" in text


def test_a_learner_kernel_that_raises_gives_a_failed_row_and_exit_status_1(tmp_path):
    learner_package(tmp_path / "mine", "def tiled_attention(q, k, v, block_q=64, block_k=64, causal=False, "
                    "scale=None):\n    raise ValueError('block sizes are off')\n")
    code, text, problems = run_main(["--quick", "--lengths", "64", "--mode", "full", "--kernels", "sdpa",
                                     "--src", str(tmp_path / "mine"), "--out", str(tmp_path / "out")])
    assert code == 1
    rows = {r[2]: " ".join(r) for r in table_rows(text)}
    assert "failed: ValueError: block sizes are off" in rows["yours:tiled"]
    assert "not available: your attnlab/flash.py has no fast_tiled_attention" in rows["yours:fast"]
    assert len(problems) == 1 and problems[0].startswith("attnlab bench: 1 row(s) failed")
    assert "Traceback" not in problems[0]
    records = {r["kernel"]: r for r in read_csv(tmp_path / "out" / "bench.csv")}
    assert records["yours:tiled"]["status"] == "failed" and records["yours:fast"]["status"] == "unavailable"
    assert records["sdpa"]["status"] == "ok"


def test_a_learner_kernel_in_the_notebook_and_the_kept_helpers():
    q, k, v = (torch.randn(1, 2, 48, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    for causal in (False, True):
        want = bench.naive_attention(q, k, v, causal)
        got = bench.naive_numpy_attention(q.numpy(), k.numpy(), v.numpy(), causal)
        assert np.abs(got - want.numpy()).max() < 1e-5
    out, peak = bench.cpu_peak_bytes(lambda: bench.naive_attention(q, k, v))
    assert out.shape == (1, 2, 48, 8) and (peak is None or peak >= 0)
    assert bench.median_seconds(lambda: None, "cpu", 3) >= 0 and "thread" in bench.machine("cpu")
    before = sys.modules.get("attnlab")
    functions, where = bench.load_kernels(ROOT / "solutions")
    assert all(callable(f) for f in functions.values()) and where == ROOT / "solutions" / "attnlab" / "flash.py"
    tiled = functions["tiled_attention"]
    assert sys.modules.get("attnlab") is before  # loading put the importer's modules back

    rows = bench.run_benchmark([96], modes=("causal",), kernels=("sdpa",), learner={"yours:tiled": tiled},
                               repeat=1, heads=2, gemm_size=64)
    assert [r["kernel"] for r in rows] == ["sdpa", "yours:tiled"] and set(rows[0]) == set(bench.COLUMNS)
    assert rows[1]["err_vs_sdpa"] < 1e-5 and rows[1]["block_q"] is None  # the learner's kernel: its defaults
    fig = bench.plot(rows, title="test")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert "yours:tiled" in bench.format_table(rows) and "default" in bench.format_table(rows)


# ------------------------------------------------------------------------------------------ Ctrl-C
def test_an_interrupt_still_writes_the_csv_of_the_rows_so_far(tmp_path, monkeypatch):
    count, real = [], bench.naive_attention

    def interrupted(q, k, v, causal=False):
        count.append(1)
        if len(count) > 1:  # the section's warm-up call passes; the first measured call is interrupted
            raise KeyboardInterrupt
        return real(q, k, v, causal)

    monkeypatch.setattr(bench, "naive_attention", interrupted)
    code, text, problems = run_main(["--quick", "--kernels", "sdpa,naive-torch", "--out", str(tmp_path)])
    assert code == 130
    assert len(problems) == 1 and problems[0].startswith("attnlab bench: interrupted; the 2 row(s) so far are in")
    records = read_csv(tmp_path / "bench.csv")
    assert [(r["kernel"], r["status"]) for r in records] == [("naive-torch", "interrupted"), ("sdpa", "interrupted")]
    assert records[1]["peak_bytes"] != ""  # SDPA's first call (the reference's comes first) ran before it


# -------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv,needle", [
    (["--lengths", "0"], "between 1 and"),
    (["--lengths", "12,abc"], "comma-separated positive integers"),
    (["--lengths", ""], "comma-separated lengths"),
    (["--repeat", "0"], "--repeat"),
    (["--block-q", "-3"], "--block-q"),
    (["--dtype", "int8"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--mode", "sideways"], "--mode"),
    (["--causal", "--mode", "full"], "--causal contradicts --mode full"),
    (["--kernels", "naive,sdpa"], "--kernels"),
    (["--memory-length", "-1"], "--memory-length"),
    (["--naive-budget-mb", "nan"], "--naive-budget-mb"),
    (["--bogus"], "unrecognized arguments"),
    (["--src", "/nonexistent/folder"], "no such folder"),
    (["--lengths", "1048576", "--heads", "64", "--dim", "256"], "would need"),
    (["--quick", "--memory-length", "1048576", "--heads", "64", "--dim", "256"], "would need"),
])
def test_bad_input_gives_one_line_and_status_2(argv, needle):
    code, _, problems = run_main(argv)
    assert code == 2 and len(problems) == 1 and needle in problems[0], problems
    assert problems[0].startswith("attnlab bench: ") and "Traceback" not in problems[0]


def test_an_unwritable_out_and_cuda_without_a_gpu_give_status_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, problems = run_main(["--quick", "--out", str(blocker / "results")])
    assert code == 2 and len(problems) == 1 and problems[0].startswith("attnlab bench: --out ")
    assert "cannot write there" in problems[0]
    if not torch.cuda.is_available():
        code, _, problems = run_main(["--quick", "--device", "cuda", "--out", str(tmp_path)])
        assert code == 2 and len(problems) == 1
        assert "--device cuda: CUDA is not available on this machine" in problems[0]
    assert not (tmp_path / "bench.csv").exists()


def test_the_cli_subcommand_reports_bad_input_without_a_traceback():
    result = run_cli("bench", "--lengths", "-5", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("attnlab bench:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_is_the_module_docstring(capsys):
    assert bench.main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "--memory-length" in shown and "INTERLEAVED" in shown and "run_benchmark(" in shown


# ------------------------------------------------------------------------------ GPU helpers, progress
@pytest.mark.parametrize("name,expected", [
    ("NVIDIA H100 80GB HBM3", ("H100 SXM", 989.0)),
    ("NVIDIA H100 PCIe", ("H100 PCIe", 756.0)),
    ("NVIDIA H100 NVL", ("H100 NVL", 835.0)),
    ("NVIDIA H200", ("H200", 989.0)),
    ("NVIDIA A100-SXM4-80GB", ("A100", 312.0)),
    ("NVIDIA A100 80GB PCIe", ("A100", 312.0)),
    ("NVIDIA L4", ("L4", 121.0)),
    ("NVIDIA A10", ("A10", 125.0)),
    ("Tesla T4", ("T4", 65.0)),
    ("NVIDIA GeForce RTX 4090", ("RTX 4090", 165.0)),
    ("NVIDIA A10G", None),
    ("NVIDIA L40S", None),
    ("NVIDIA GeForce RTX 3090", None),
])
def test_dense_peak_lookup(name, expected):
    assert bench.dense_peak_tflops(name) == expected


def test_a_gpu_half_precision_table_shows_the_share_of_the_peak():
    def row(kernel, seconds, peak, dtype="bfloat16"):
        r = bench._new_row("cuda", dtype, "full", kernel, 8192, 1, 8, 64, False, "NVIDIA H100 80GB HBM3 (CUDA 12)")
        r.update(seconds=seconds, gemm_gflops=700_000.0, device_peak_tflops=peak, status="ok")
        return r

    rows = bench.derive([row("sdpa-flash", 0.0005, 989.0), row("tiled", 0.01, 989.0), row("fast", 0.005, None),
                         row("triton", 0.001, 989.0)])
    table = bench.format_table(rows)
    assert "% peak" in table and "TF/s" in table and "n/a" in table
    text = bench.summary(rows)
    assert "share of the H100 SXM dense bfloat16 peak, 989 TFLOP/s" in text and "sdpa-flash 274.9 TF/s" in text
    assert "triton 137.4 TF/s (14%)" in text


def test_the_triton_kernel_is_a_gpu_row_only(monkeypatch):
    """On the CPU the Triton kernel has no row (its interpreter is for tests); `--kernels triton` is valid."""
    assert "triton" in bench.KERNELS and "triton" in bench.HALF_KERNELS and "triton" in bench.MEMORY_KERNELS
    rows = bench.run_benchmark([64], modes=("full",), kernels=("sdpa", "triton"), repeat=1, heads=1, half=False)
    assert {r["kernel"] for r in rows} == {"sdpa"}
    assert bench._kernel_list("sdpa,triton") == ["sdpa", "triton"]


class FakeStream:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_the_progress_bar_redraws_on_a_terminal_and_prints_lines_otherwise():
    plain = bench.ProgressBar(FakeStream(False))
    plain(12, 40, "cpu causal L=4096 fast")
    plain(40, 40, "cpu causal L=8192 round 3/3")
    assert plain.stream.text == ("[##--------] 12/40 cpu causal L=4096 fast\n"
                                 "[##########] 40/40 cpu causal L=8192 round 3/3\n")
    tty = bench.ProgressBar(FakeStream(True))
    tty(1, 4, "cpu GEMM float32 2048x2048")
    tty(2, 4, "cpu full L=512 sdpa")
    tty.close()
    assert tty.stream.text.count("\r") == 2 and tty.stream.text.endswith("\n")
    assert "\n" not in tty.stream.text[:-1]


def test_the_gemm_rate_is_measured_before_and_after_and_the_higher_counts(monkeypatch):
    rates = [50.0, 80.0]
    monkeypatch.setattr(bench, "gemm_gflops", lambda *args, **kwargs: rates.pop(0))
    rows = bench.run_benchmark([64], modes=("full",), kernels=("sdpa",), repeat=1, heads=2)
    assert not rates and rows[0]["gemm_gflops"] == 80.0
    assert abs(rows[0]["pct_gemm"] - 100 * rows[0]["gflops"] / 80.0) < 1e-9
    assert "80.0 GF/s" in bench.summary(rows)
