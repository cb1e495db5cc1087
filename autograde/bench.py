"""`attnlab bench`: naive attention, PyTorch's SDPA and the tiled FlashAttention kernels, side by side in one run.

    attnlab bench [--quick] [--lengths 512,1024,2048,4096,8192] [--mode both|full|causal] [--causal]
                  [--device cpu|cuda|all] [--dtype float32]
                  [--kernels naive-numpy,naive-torch,sdpa,tiled,fast,triton]
                  [--learner] [--src DIR] [--block-q N] [--block-k N] [--repeat 3] [--batch 1] [--heads 8]
                  [--dim 64] [--memory-length 16384] [--naive-budget-mb 6144] [--threads N] [--seed 0]
                  [--out bench-results] [--no-progress]

Self-attention (L = S) on inputs (B, H, L, D) drawn with a fixed seed, non-causal ("full") and causal
(end-aligned; with L = S the usual lower triangle). Kernels, one table row each per (device, mode, L):

* ``naive-numpy``: NumPy, the (B, H, L, S) scores and weights materialised, max-shift softmax, then @ v
  (CPU only; float32/float64 only);
* ``naive-torch``: the same in PyTorch (``naive_attention``);
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``, the reference: every error (max abs
  difference) and every "x SDPA" ratio is against it, on the same device and inputs. It always runs;
* ``tiled`` and ``fast``: the instructor's ``tiled_attention`` (the teaching kernel) and
  ``fast_tiled_attention`` (the tuned one) from ``solutions/attnlab/flash.py``, each at its best block
  size: at every (L, mode) two calls per candidate (128x128, 256x256, 512x256, 256x512, capped to L): the
  first calls are the warm-up, then each candidate is timed once more in turn and the fastest of those
  second calls is kept; the "blocks" column shows it. ``--block-q`` /
  ``--block-k`` fix the blocks instead (either one alone sets both). Without solutions/ the rows say so;
* ``yours:tiled`` and ``yours:fast``, with ``--learner`` (the course's ``src/``) or ``--src DIR`` (a folder
  holding attnlab/ or its src/; implies ``--learner``): your kernels, at their default blocks unless the
  blocks are fixed. One still raising NotImplementedError gets the note "not implemented yet (notebook 08)"
  and the run goes on; any other exception gives "failed: Type: message" and exit status 1 at the end;
* ``triton``: the course's Triton kernel (``autograde/triton_flash.py``), GPU rows only, at the faster of
  its own blocks (64x64, 128x64; ``--block-q``/``--block-k`` do not apply to it). Without the ``triton``
  package its rows say so.

Measurements. First the machine's own GEMM rate: the fastest of 5 ``torch.mm`` calls (after 2 warm-ups) of
2048 x 2048 on the CPU, 8192 x 8192 on a GPU, in the benchmark's dtype, measured again after the kernels (the
higher of the two counts: noise only ever slows a call). Then, at each (device, mode, L), each kernel's first
call (its warm-up) is the one whose peak memory is measured; after it, ``--repeat`` rounds (default 3) are
INTERLEAVED: each round calls every kernel once in turn, so machine noise hits them alike, and the median per
kernel is reported. The naive kernels get interleaved rounds of their own, after the others' (their gigabytes
of fresh memory per call slowed the kernel timed next). Columns: median time; achieved FLOP/s, counting
4*B*H*L*S*D FLOPs (half of it when causal); "% GEMM", that rate over the GEMM rate; "x SDPA", the median time
over SDPA's; "peak MiB", the peak extra memory of one call; "max|err|" against SDPA; on GPU rows "GPU/CPU",
the CPU median over the GPU median of the same kernel (a speed-up). Peak memory:

* CPU: the growth of the process's peak resident set during the call (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``, after ``malloc_trim(0)`` hands freed heap pages back so that reused memory is
  counted). tracemalloc is not used: it sees Python objects, not tensor buffers. Elsewhere: n/a;
* GPU: ``torch.cuda.max_memory_allocated()`` during the call minus what was allocated before it.

Timing: ``time.perf_counter`` on the CPU, ``torch.cuda.Event`` pairs (synchronised) on a GPU.

The memory run: at ``--memory-length`` (default 16384; 0 turns it off), non-causal only, sdpa, tiled and
fast run once each (the time shown is of that one call), and naive-torch too only when its two
(B, H, L, S) matrices take less than 75% of MemAvailable (/proc/meminfo; on a GPU: of the free GPU
memory), else the row says "skipped: needs X GiB, MemAvailable Y GiB". A line then compares the tiled
kernels' peak with naive's. In the timed sweep (not the memory run), naive kernels are also skipped (with the
reason) wherever their two matrices exceed ``--naive-budget-mb`` (default 6144 MiB: the default sweep runs
them at L = 8192, 4 GiB).

CUDA, when present (``--device all``, the default, or ``cuda``): the same table on the GPU (no
naive-numpy), then a half-precision table (bfloat16 where supported, else float16): SDPA forced to its
flash backend (``sdpa-flash``, the reference there), tiled, fast and triton, in TFLOP/s and as a share
("% peak") of the GPU's dense bf16/fp16 tensor-core peak from a small table of known devices
(``dense_peak_tflops``; unknown devices: n/a). Without CUDA a line says the GPU rows were skipped;
``--device cuda`` then exits 2.

Output: the table (and a summary: at L = 4096 and 8192, or the largest L run, fast and tiled as a
multiple of SDPA's time per mode, the GEMM rates and the memory comparison) on the terminal; a progress
bar on stderr (redrawn in place on a terminal, one line per step otherwise; ``--no-progress`` silences
it); ``bench.csv`` (every column below) and ``bench.png`` (two log-log panels, median time and peak
memory against L, one colour per kernel, solid non-causal, dashed causal) in ``--out`` (default
``bench-results/`` in the current folder). ``--quick``: L in 256,512, H = 2, 1 round, blocks 256x256
only, no memory run (options given explicitly still win): the CI smoke test, well under a minute.

Exit status: 0; 1 when a kernel failed; 2 for bad input (a one-line message, never a traceback: unknown
option, bad lengths, ``--device cuda`` without CUDA, an unwritable ``--out``, a missing ``--src``
folder); 130 when interrupted (Ctrl-C), after writing the CSV of the rows measured so far. Times are
measurements of this machine at this moment, not assertions.

From Python (notebook 08)::

    rows = bench.run_benchmark(lengths, modes=("full", "causal"), devices=("cpu",), kernels=None,
                               learner=None, reference=None, dtype="float32", batch=1, heads=8, dim=64,
                               repeat=3, blocks=None, candidates=CANDIDATES, memory_length=0,
                               naive_budget_mb=6144.0, half=True, seed=0, gemm_size=None, progress=None,
                               rows=None)
    print(bench.format_table(rows)); print(bench.summary(rows))
    bench.write_csv(rows, "bench.csv"); fig = bench.plot(rows, "bench.png")   # a matplotlib Figure

``kernels``: names among KERNELS (default all; sdpa is always added). ``learner``: None, a folder (loaded
like ``--src``) or a mapping {row name: function with tiled_attention's signature}, e.g.
``{"yours:tiled": tiled_attention}``. ``reference``: {"tiled": fn, "fast": fn} (default: loaded from
solutions/). ``blocks``: (block_q, block_k) to fix them. ``progress``: a callable (step, total, label),
e.g. ``bench.ProgressBar()``. ``rows``: a list the rows are appended to as they are measured (what was
measured survives a KeyboardInterrupt). Each row is a dict with the keys of COLUMNS:

    device, dtype, mode ("full"/"causal"), kernel, L, S, B, H, D, block_q, block_k (None: the kernel's
    default or not a tiled kernel), calls (timed calls behind the median), seconds (median), flops,
    gflops, gemm_gflops (this device and dtype), pct_gemm, x_sdpa, gpu_speedup, device_peak_tflops,
    pct_device_peak, peak_bytes, err_vs_sdpa, memory_run (True: the one-call memory run), status ("ok",
    "skipped", "unavailable", "not-implemented", "failed", "out-of-memory", "interrupted"), note, machine

(None where not measured). ``derive(rows)`` recomputes the derived columns. Also kept for the notebook:
``machine``, ``cpu_peak_bytes``, ``cuda_peak_bytes``, ``median_seconds``, ``naive_attention``.
"""
import argparse
import csv
import ctypes
import gc
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("naive-numpy", "naive-torch", "sdpa", "tiled", "fast", "triton")
HALF_KERNELS = ("sdpa-flash", "tiled", "fast", "triton")
MEMORY_KERNELS = ("naive-torch", "sdpa", "tiled", "fast", "triton")  # the ones the memory run measures
REFERENCES = ("sdpa", "sdpa-flash")  # the first of these present in a group is what errors and ratios use
MODES = ("full", "causal")
LENGTHS = (512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (256, 512)
CANDIDATES = ((128, 128), (256, 256), (512, 256), (256, 512))
QUICK_CANDIDATES = ((256, 256),)
DTYPES = ("float32", "float64", "float16", "bfloat16")
MAX_LENGTH = 1 << 20
DEFAULT_NAIVE_BUDGET_MB = 6144.0
DEFAULT_MEMORY_LENGTH = 16384
MEMORY_SHARE = 0.75  # the memory run's naive-torch needs less than this share of the available memory
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}
NOT_IMPLEMENTED_NOTE = "not implemented yet (notebook 08)"
LEARNER_FUNCTIONS = {"yours:tiled": "tiled_attention", "yours:fast": "fast_tiled_attention"}
COLUMNS = ("device", "dtype", "mode", "kernel", "L", "S", "B", "H", "D", "block_q", "block_k", "calls", "seconds",
           "flops", "gflops", "gemm_gflops", "pct_gemm", "x_sdpa", "gpu_speedup", "device_peak_tflops",
           "pct_device_peak", "peak_bytes", "err_vs_sdpa", "memory_run", "status", "note", "machine")
# Dense (no sparsity) bf16/fp16 tensor-core peaks in TFLOP/s, from the vendors' datasheets; the first pattern
# that matches torch.cuda.get_device_name() wins, so the more specific names come first.
DENSE_PEAKS = (
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe", 756.0),
    (r"\bH100\b.*\bNVL\b", "H100 NVL", 835.0),
    (r"\bH100\b", "H100 SXM", 989.0),
    (r"\bH200\b.*\bNVL\b", "H200 NVL", 835.0),
    (r"\bH200\b", "H200", 989.0),
    (r"\bA100\b", "A100", 312.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"\bT4\b", "T4", 65.0),
    (r"\bRTX 4090\b", "RTX 4090", 165.0),
)
CPU_MEMORY_METHOD = ("CPU peak = growth of the process's peak resident memory during one call (Linux VmHWM "
                     "reset via /proc/self/clear_refs, after malloc_trim(0))")
GPU_MEMORY_METHOD = "GPU peak = torch.cuda.max_memory_allocated() during one call minus what was allocated before"


class BenchError(Exception):
    """A problem to report in one line (bad input, a package that cannot be loaded)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + traceback-like noise
        raise BenchError(f"{message} (see `attnlab bench --help`)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _length_or_zero(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length (0 turns the memory run off), got {text!r}") from None
    if not 0 <= value <= MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"expected a length between 0 and {MAX_LENGTH}, got {value}")
    return value


def _lengths(text):
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths such as 512,4096, got {text!r}")
    lengths = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 512,4096, "
                                             f"got {part!r}") from None
        if not 1 <= value <= MAX_LENGTH:
            raise argparse.ArgumentTypeError(f"each length must be between 1 and {MAX_LENGTH}, got {value}")
        if value not in lengths:
            lengths.append(value)
    return sorted(lengths)


def _kernel_list(text):
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated names among {','.join(KERNELS)}, got "
                                         f"{text!r}")
    return names


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number of MiB >= 0, got {text!r}")
    return value


def parser():
    p = _Parser(prog="attnlab bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: L 256,512, H=2, 1 round, blocks 256x256, no memory run (explicit options win)")
    p.add_argument("--lengths", type=_lengths, default=None, metavar="L1,L2,...",
                   help="sequence lengths L = S (default 512,1024,2048,4096,8192)")
    p.add_argument("--mode", choices=("both",) + MODES, default=None, help="full, causal or both (default both)")
    p.add_argument("--causal", action="store_true", help="same as --mode causal")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="cpu, cuda, or all: the CPU and, when CUDA is present, the GPU (default all)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="input dtype (default float32)")
    p.add_argument("--kernels", type=_kernel_list, default=None, metavar="K1,K2,...",
                   help=f"kernels to run among {','.join(KERNELS)} (default all; sdpa always runs)")
    p.add_argument("--learner", action="store_true",
                   help="also your kernels (yours:tiled, yours:fast) from the course's src/")
    p.add_argument("--src", default=None, metavar="DIR",
                   help="folder holding your attnlab/ (or its src/); implies --learner")
    p.add_argument("--block-q", type=_positive_int, default=None,
                   help="fix the query tile of every tiled kernel (default: best of the candidates)")
    p.add_argument("--block-k", type=_positive_int, default=None,
                   help="fix the key tile of every tiled kernel (default: best of the candidates)")
    p.add_argument("--repeat", type=_positive_int, default=None,
                   help="interleaved timed rounds after the warm-up; the median is shown (default 3)")
    p.add_argument("--batch", type=_positive_int, default=1, help="B (default 1)")
    p.add_argument("--heads", type=_positive_int, default=None, help="H (default 8)")
    p.add_argument("--dim", type=_positive_int, default=64, help="D = D_v, the head width (default 64)")
    p.add_argument("--memory-length", type=_length_or_zero, default=None, metavar="L",
                   help=f"the extra non-causal length of the memory run (default {DEFAULT_MEMORY_LENGTH}; 0: off)")
    p.add_argument("--naive-budget-mb", type=_non_negative_float, default=DEFAULT_NAIVE_BUDGET_MB, metavar="MIB",
                   help="skip the naive kernels where their two (B, H, L, S) matrices need more (default "
                        f"{DEFAULT_NAIVE_BUDGET_MB:g})")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for PyTorch and NumPy (default: their own choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="folder for bench.csv and bench.png (default bench-results/ in the current folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


# ------------------------------------------------------------------------------------ the kernels
def naive_attention(q, k, v, causal=False):
    """softmax(q k^T / sqrt(D)) v with the (..., L, S) scores and weights materialised."""
    import torch

    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (..., L, S)
    if causal:
        L, S = scores.shape[-2:]
        future = torch.ones(L, S, dtype=torch.bool, device=q.device).triu(S - L + 1)
        scores.masked_fill_(future, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (..., L, S) weights, then (..., L, D_v)


def naive_numpy_attention(q, k, v, causal=False):
    """softmax(q k^T / sqrt(D)) v in NumPy with the (..., L, S) scores and weights materialised (L = S here:
    with causal and L > S a query would see no key)."""
    import numpy as np

    scores = (q * q.shape[-1] ** -0.5) @ np.swapaxes(k, -1, -2)  # (..., L, S)
    if causal:
        L, S = scores.shape[-2:]
        future = np.triu(np.ones((L, S), dtype=bool), S - L + 1)  # (L, S): key j after query i + (S - L)
        np.copyto(scores, -np.inf, where=future)  # broadcast over (...,), no index arrays
    weights = scores - scores.max(axis=-1, keepdims=True)  # (..., L, S): the second matrix
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v  # (..., L, D_v)


def naive_bytes(batch, heads, length, itemsize):
    """What naive attention holds at its peak: the scores and the weights, two (B, H, L, S) matrices."""
    return 2 * batch * heads * length * length * itemsize


def flops(batch, heads, length, dim, causal=False, keys=None):
    """FLOPs of one attention call: 4 * B * H * L * S * D (two matrix products), half of it when causal."""
    keys = length if keys is None else keys
    total = 4 * batch * heads * length * keys * dim
    return total // 2 if causal else total


def sdpa(q, k, v, causal=False):
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # L == S: start- and end-aligned agree


def sdpa_flash(q, k, v, causal=False):
    """SDPA forced to its FlashAttention backend (GPU, half precision)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def load_kernels(src=None, names=("tiled_attention", "fast_tiled_attention")):
    """The functions `names` of attnlab.flash from the package in `src` (a folder holding attnlab/, or its src/;
    default the course's src/). Returns ({name: function, or None where the module has none}, path of
    flash.py). Raises BenchError when the folder or the module cannot be loaded."""
    import importlib

    from .errors import UsageError
    from .runner import find_package_root

    try:
        root = find_package_root(Path(src) if src is not None else ROOT / "src")
    except UsageError as exc:
        raise BenchError(str(exc)) from None
    saved_path = list(sys.path)
    saved = {n: m for n, m in sys.modules.items() if n == "attnlab" or n.startswith("attnlab.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module("attnlab.flash")
        where = Path(module.__file__).resolve()
        functions = {name: getattr(module, name, None) for name in names}
    except Exception as exc:
        raise BenchError(f"{root / 'attnlab' / 'flash.py'} could not be imported: {type(exc).__name__}: "
                         f"{_short(exc)}") from None
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "attnlab" or n.startswith("attnlab.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    return {n: (f if callable(f) else None) for n, f in functions.items()}, where


def learner_kernels(src=None):
    """Your kernels as run_benchmark's `learner` mapping: ({"yours:tiled": fn, "yours:fast": fn or None},
    path of flash.py). Raises BenchError."""
    functions, where = load_kernels(src, names=tuple(LEARNER_FUNCTIONS.values()))
    return {row: functions[name] for row, name in LEARNER_FUNCTIONS.items()}, where


def reference_kernels():
    """The instructor's kernels: ({"tiled": fn, "fast": fn} (None where missing), note when unavailable)."""
    try:
        functions, where = load_kernels(ROOT / "solutions")
    except BenchError as exc:
        return {"tiled": None, "fast": None}, f"not available: {exc}"
    return {"tiled": functions["tiled_attention"], "fast": functions["fast_tiled_attention"]}, None


def dense_peak_tflops(device_name):
    """(label, dense bf16/fp16 tensor-core TFLOP/s) of a GPU from its name, or None when not in DENSE_PEAKS."""
    for pattern, label, tflops in DENSE_PEAKS:
        if re.search(pattern, str(device_name), flags=re.IGNORECASE):
            return label, tflops
    return None


# ----------------------------------------------------------------------------------- measurements
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _status_bytes(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def mem_available_bytes():
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_peak_bytes(fn):
    """(fn(), growth of the peak resident set during the call in bytes, or None where it cannot be read)."""
    libc = _libc()
    try:
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)  # freed heap pages go back to the OS: memory reused by fn is counted again
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM (the peak) to the current resident set
        base = _status_bytes("VmRSS")
    except OSError:
        return fn(), None
    result = fn()
    try:
        return result, max(_status_bytes("VmHWM") - base, 0)
    except OSError:
        return result, None


def cuda_peak_bytes(fn, device):
    """(fn(), bytes allocated at the peak of the call above what was allocated before it)."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) - base


def time_call(fn, device="cpu"):
    """Seconds of one call of fn: perf_counter on the CPU, a synchronised torch.cuda.Event pair on a GPU."""
    if str(device).startswith("cuda"):
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_seconds(fn, device, repeat):
    """Median wall time of `repeat` calls (CUDA events on a GPU)."""
    return statistics.median(time_call(fn, device) for _ in range(repeat))


def gemm_gflops(device="cpu", dtype="float32", size=None, repeat=5, warmup=2):
    """The machine's matrix-product rate in GFLOP/s: the fastest of `repeat` torch.mm of two (size, size)
    matrices after `warmup` untimed ones (size: 2048 on the CPU, 8192 on a GPU). The fastest, not the median:
    this is what the machine can do, and noise only ever slows a call down."""
    import torch

    size = size or GEMM_SIZE["cuda" if str(device).startswith("cuda") else "cpu"]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(getattr(torch, dtype)).to(device) for _ in range(2))
    c = torch.empty_like(a)
    for _ in range(warmup):
        torch.mm(a, b, out=c)
    seconds = min(time_call(lambda: torch.mm(a, b, out=c), device) for _ in range(repeat))
    return 2 * size ** 3 / seconds / 1e9


def machine(device):
    """A short description of the device the figures come from."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} PyTorch thread(s)"


def cuda_status():
    """(available, reason when not)."""
    import torch

    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    return True, ""


def set_numpy_threads(n):
    """Best effort: limit NumPy's OpenBLAS to n threads. Returns True when a known setter was found."""
    from . import blas

    return blas.set_threads(n)


# ------------------------------------------------------------------------------------ progress bar
class ProgressBar:
    """`progress(step, total, label)` for run_benchmark: ``[#####-----] 12/40 cpu causal L=4096 fast`` on
    `stream` (stderr), redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, stream=None, width=10):
        self.stream = stream or sys.stderr
        self.width = width
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self._shown = 0

    def text(self, step, total, label):
        filled = self.width * max(step - 1, 0) // max(total, 1) if step < total else self.width
        return f"[{'#' * filled}{'-' * (self.width - filled)}] {step}/{total} {label}"

    def __call__(self, step, total, label):
        text = self.text(step, total, label)
        if self.tty:
            self.stream.write("\r" + text.ljust(self._shown))
            self._shown = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = 0


# --------------------------------------------------------------------------------- the benchmark
class _Spec:
    """One kernel of a group: its row name, how to call it, and whether its block size is searched."""

    def __init__(self, name, kind, fn=None, learner=False, blocks=None, candidates=(), unavailable=None):
        self.name, self.kind, self.fn, self.learner = name, kind, fn, learner
        self.blocks, self.candidates, self.unavailable = blocks, candidates, unavailable

    def configs(self, length):
        """Block sizes to try: the fixed ones, the candidates capped to L (searched), or None (defaults)."""
        if self.kind != "tiled":
            return [None]
        if self.blocks is not None:
            return [tuple(self.blocks)]
        if self.learner or not self.candidates:
            return [None]
        capped = []
        for bq, bk in self.candidates:
            pair = (min(bq, length), min(bk, length))
            if pair not in capped:
                capped.append(pair)
        return capped


def _call(spec, tensors, causal, config):
    """A no-argument function running spec's kernel once (module-level names looked up at call time)."""
    q, k, v, arrays = tensors
    if spec.kind == "naive-numpy":
        return lambda: naive_numpy_attention(*arrays, causal)
    if spec.kind == "naive-torch":
        return lambda: naive_attention(q, k, v, causal)
    if spec.kind == "sdpa":
        return lambda: sdpa(q, k, v, causal)
    if spec.kind == "sdpa-flash":
        return lambda: sdpa_flash(q, k, v, causal)
    blocks = {} if config is None else {"block_q": config[0], "block_k": config[1]}
    return lambda: spec.fn(q, k, v, causal=causal, **blocks)


def _output(result):
    """A kernel's output as a tensor: (output, lse) -> output; a NumPy array -> a tensor."""
    import numpy as np
    import torch

    if isinstance(result, (tuple, list)) and result:
        result = result[0]
    if isinstance(result, np.ndarray):
        result = torch.from_numpy(result)
    return result


def _max_abs(a, b):
    import torch

    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        raise BenchError(f"returned {type(a).__name__} of shape {tuple(getattr(a, 'shape', ()))}, expected a "
                         f"tensor of shape {tuple(b.shape)}")
    return float((a.detach().double() - b.detach().to(a.device).double()).abs().max().item())


def _short(exc):
    return " ".join(str(exc).split())[:160]


def _is_oom(exc):
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _set_failure(row, spec, exc):
    """Record why a kernel's call ended: not implemented, out of memory, unavailable or failed."""
    if isinstance(exc, NotImplementedError) and spec.learner:
        row["status"], row["note"] = "not-implemented", NOT_IMPLEMENTED_NOTE
    elif _is_oom(exc):
        row["status"], row["note"] = "out-of-memory", f"out of memory: {_short(exc)[:80]}"
    elif spec.kind == "sdpa-flash":  # the flash backend needs a recent GPU: a fact of the machine, not a bug
        row["status"], row["note"] = "unavailable", f"flash backend unavailable: {_short(exc)[:80]}"
    elif isinstance(exc, BenchError):
        row["status"], row["note"] = "failed", f"failed: {exc}"
    else:
        row["status"], row["note"] = "failed", f"failed: {type(exc).__name__}: {_short(exc)}"
    _release(row["device"])


def _release(device):
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _first_call(call, device):
    """(output, peak extra bytes, seconds) of one call, the warm-up whose memory is measured."""
    box = {}

    def timed():
        box["seconds"] = time_call(lambda: box.__setitem__("out", call()), device)

    measure = (lambda fn: cuda_peak_bytes(fn, device)) if str(device).startswith("cuda") else cpu_peak_bytes
    _, peak = measure(timed)
    return box.pop("out"), peak, box["seconds"]


def _new_row(device, dtype, mode, kernel, length, batch, heads, dim, memory_run, where):
    return {"device": device, "dtype": dtype, "mode": mode, "kernel": kernel, "L": length, "S": length,
            "B": batch, "H": heads, "D": dim, "block_q": None, "block_k": None, "calls": 0, "seconds": None,
            "flops": flops(batch, heads, length, dim, mode == "causal"), "gflops": None, "gemm_gflops": None,
            "pct_gemm": None, "x_sdpa": None, "gpu_speedup": None, "device_peak_tflops": None,
            "pct_device_peak": None, "peak_bytes": None, "err_vs_sdpa": None, "memory_run": memory_run,
            "status": "pending", "note": "", "machine": where}


def _skip_reason(spec, device, dtype, length, batch, heads, itemsize, naive_budget_mb, memory_run):
    """Why spec does not run at this length (None: it runs)."""
    if spec.unavailable:
        return "unavailable", spec.unavailable
    if spec.kind == "naive-numpy" and dtype not in ("float32", "float64"):
        return "skipped", f"skipped: NumPy has no fast {dtype} matrix product"
    if spec.kind not in ("naive-numpy", "naive-torch"):
        return None
    need = naive_bytes(batch, heads, length, itemsize)
    if memory_run:
        if str(device).startswith("cuda"):
            import torch

            have, what = torch.cuda.mem_get_info(device)[0], "free GPU memory"
        else:
            have, what = mem_available_bytes(), "MemAvailable"
        if have is None:
            return "skipped", f"skipped: needs {_size(need)}, {what} unknown"
        if need >= MEMORY_SHARE * have:
            return "skipped", f"skipped: needs {_size(need)}, {what} {_size(have)}"
        return None  # the memory run exists to measure naive's peak: only the memory it finds limits it
    if need > naive_budget_mb * 2 ** 20:
        return "skipped", (f"skipped: its two ({batch}, {heads}, {length}, {length}) {dtype} matrices need "
                           f"{need / 2 ** 20:.1f} MiB > --naive-budget-mb {naive_budget_mb:g}")
    return None


def _size(nbytes):
    return f"{nbytes / 2 ** 30:.1f} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.1f} MiB"


def _inputs(device, dtype, batch, heads, length, dim, seed, numpy_too):
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + length)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=gen).to(getattr(torch, dtype)).to(device)
               for _ in range(3))
    arrays = tuple(t.numpy() for t in (q, k, v)) if numpy_too else None  # shares the tensors' memory
    return q, k, v, arrays


def _run_group(rows, specs, device, dtype, mode, length, memory_run, settings, tick):
    """Measure every kernel of one (device, dtype, mode, L): first calls (block search, memory, errors), then
    interleaved timed rounds. Rows are appended to `rows` as they start."""
    batch, heads, dim, repeat = settings["batch"], settings["heads"], settings["dim"], settings["repeat"]
    causal = mode == "causal"
    itemsize = settings["itemsize"]
    where = settings["machine"][device]
    group = [(spec, _new_row(device, dtype, mode, spec.name, length, batch, heads, dim, memory_run, where))
             for spec in specs]
    for _, row in group:
        row["gemm_gflops"] = settings["gemm"].get((device, dtype))
        row["device_peak_tflops"] = settings["peaks"].get((device, dtype))
        rows.append(row)
    tensors = _inputs(device, dtype, batch, heads, length, dim, settings["seed"],
                      any(spec.kind == "naive-numpy" for spec in specs))
    target = device if dtype == settings["dtype"] else f"{device} {dtype}"
    prefix = f"{target} {'memory' if memory_run else mode} L={length}"
    # the reference first: every other kernel's error is measured against its output
    order = sorted(group, key=lambda pair: pair[0].kind not in REFERENCES)
    reference, calls = None, {}
    for spec, row in order:
        tick(f"{prefix} {spec.name}")
        skip = _skip_reason(spec, device, dtype, length, batch, heads, itemsize, settings["naive_budget_mb"],
                            memory_run)
        if skip is not None:
            row["status"], row["note"] = skip
            continue
        tried = []  # (seconds, config, peak, err, call) per candidate block
        for config in spec.configs(length):
            call = _call(spec, tensors, causal, config)
            try:
                out, peak, seconds = _first_call(call, device)
                out = _output(out)
                err = None
                if spec.kind in REFERENCES and reference is None:
                    reference = out
                elif reference is not None:
                    err = _max_abs(out, reference)
            except Exception as exc:  # the learner's kernel can raise anything: the row says what
                _set_failure(row, spec, exc)
                tried = []
                break
            tried.append((seconds, config, peak, err, call))
            del out
        if not tried:
            continue
        if len(tried) > 1 and not memory_run:
            # A block search: the first calls were warm-ups, so each candidate is timed once more, in turn,
            # and that second call decides (with one cold call each, the search once kept a block that
            # side-by-side runs found about 10% slower).
            try:
                tried = [(time_call(entry[4], device),) + entry[1:] for entry in tried]
            except Exception as exc:
                _set_failure(row, spec, exc)
                continue
        first_seconds, config, row["peak_bytes"], row["err_vs_sdpa"], calls[id(row)] = min(tried, key=lambda e: e[0])
        if config is not None:
            row["block_q"], row["block_k"] = config
        if spec.kind in REFERENCES and reference is not None and row["err_vs_sdpa"] is None:
            row["note"] = "reference"
        if memory_run:  # the one call is the measurement; elsewhere the rounds below are
            row["seconds"], row["calls"], row["status"] = first_seconds, 1, "ok"
            row["note"] = (row["note"] + "; " if row["note"] else "") + "memory run: one call"
    del reference
    if not memory_run:
        samples = {id(row): [] for _, row in group}
        # Interleaved rounds, every kernel once per round in the same order, so that machine noise hits them
        # alike. The naive kernels get rounds of their own, after: their gigabytes of fresh memory per call
        # slowed the kernel timed next by up to 60% here, and the ratios that matter are the fast kernels'.
        naive = [pair for pair in group if pair[0].kind in ("naive-numpy", "naive-torch")]
        for phase in ([pair for pair in group if pair not in naive], naive):
            for round_index in range(repeat if phase else 0):
                label = f"{prefix} {'naive ' if phase is naive else ''}round {round_index + 1}/{repeat}"
                tick(label, advance=phase is not naive or len(naive) == len(group))
                for spec, row in phase:
                    if row["status"] != "pending" or id(row) not in calls:
                        continue
                    try:
                        samples[id(row)].append(time_call(calls[id(row)], device))
                    except Exception as exc:
                        _set_failure(row, spec, exc)
        for _, row in group:
            if row["status"] == "pending" and samples[id(row)]:
                row["seconds"] = statistics.median(samples[id(row)])
                row["calls"], row["status"] = len(samples[id(row)]), "ok"
    derive(rows)
    del tensors, calls
    _release(device)


def derive(rows):
    """Fill the derived columns from the measured ones, in place (idempotent): gflops, pct_gemm,
    pct_device_peak, x_sdpa (same device, dtype, mode, L and run) and gpu_speedup (the CPU row of the same
    kernel, dtype, mode and L over this one). Returns rows."""
    references = {}
    for r in rows:
        key = (r["device"], r["dtype"], r["mode"], r["L"], r["memory_run"])
        if r["kernel"] in REFERENCES and r["seconds"] and key not in references:
            references[key] = r["seconds"]
    cpu = {(r["dtype"], r["mode"], r["kernel"], r["L"], r["memory_run"]): r["seconds"]
           for r in rows if r["device"] == "cpu" and r["seconds"]}
    for r in rows:
        seconds = r["seconds"]
        r["gflops"] = r["flops"] / seconds / 1e9 if seconds else None
        r["pct_gemm"] = (100 * r["gflops"] / r["gemm_gflops"]) if r["gflops"] and r["gemm_gflops"] else None
        r["pct_device_peak"] = (r["gflops"] / 1e3 / r["device_peak_tflops"] * 100
                                if r["gflops"] and r["device_peak_tflops"] else None)
        ref = references.get((r["device"], r["dtype"], r["mode"], r["L"], r["memory_run"]))
        r["x_sdpa"] = seconds / ref if seconds and ref else None
        base = cpu.get((r["dtype"], r["mode"], r["kernel"], r["L"], r["memory_run"]))
        r["gpu_speedup"] = base / seconds if r["device"] != "cpu" and base and seconds else None
    return rows


def _kernel_names(kernels):
    names = list(KERNELS if kernels is None else kernels)
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise ValueError(f"unknown kernel(s) {unknown}; expected names among {KERNELS}")
    return [n for n in KERNELS if n in names or n == "sdpa"]


def run_benchmark(lengths=LENGTHS, modes=MODES, devices=("cpu",), kernels=None, learner=None, reference=None,
                  dtype="float32", batch=1, heads=8, dim=64, repeat=3, blocks=None, candidates=CANDIDATES,
                  memory_length=0, naive_budget_mb=DEFAULT_NAIVE_BUDGET_MB, half=True, seed=0, gemm_size=None,
                  progress=None, rows=None):
    """Measure the kernels on each device, mode and length; returns the list of row dicts (keys: COLUMNS;
    see the module docstring). `rows`, when given, is the list the rows are appended to as they start."""
    import torch

    names = _kernel_names(kernels)
    modes = list(modes)
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be among {MODES}, got {modes}")
    lengths = sorted(set(int(L) for L in lengths))
    rows = [] if rows is None else rows
    if learner is None:
        learner = {}
    elif isinstance(learner, (str, Path)):
        learner = learner_kernels(learner)[0]
    learner = dict(learner)
    reference_note = None
    if reference is None and ("tiled" in names or "fast" in names):
        reference, reference_note = reference_kernels()
    reference = dict(reference or {})
    itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    settings = {"batch": batch, "heads": heads, "dim": dim, "repeat": repeat, "itemsize": itemsize, "seed": seed,
                "naive_budget_mb": naive_budget_mb, "dtype": dtype, "gemm": {}, "peaks": {},
                "machine": {d: machine(d) for d in devices}}

    def specs_for(device, half_table):
        specs = []
        for name in (HALF_KERNELS if half_table else names):
            if name == "naive-numpy" and device != "cpu":
                continue  # NumPy runs on the CPU only
            if name == "triton":
                if device == "cpu":
                    continue  # a GPU kernel (its CPU interpreter is for tests, far too slow to time)
                from autograde import triton_flash

                usable, why = triton_flash.status()
                specs.append(_Spec(name, "tiled", triton_flash.triton_attention if usable else None,
                                   candidates=triton_flash.BLOCKS,
                                   unavailable=None if usable else f"not available: {why}"))
                continue
            if name in ("tiled", "fast"):
                fn = reference.get(name)
                missing = None if fn is not None else (reference_note or f"not available: no {name} kernel given")
                specs.append(_Spec(name, "tiled", fn, blocks=blocks, candidates=candidates, unavailable=missing))
            else:
                specs.append(_Spec(name, name))
        if not half_table:
            for name, fn in learner.items():
                missing = None if fn is not None else (
                    f"not available: your attnlab/flash.py has no {LEARNER_FUNCTIONS.get(name, name)}")
                specs.append(_Spec(name, "tiled", fn, learner=True, blocks=blocks, unavailable=missing))
        return specs

    # the plan: (device, dtype, specs, [(mode, L, memory_run)]) sections, so the progress bar knows its total
    sections = []
    for device in devices:
        specs = specs_for(device, False)
        groups = [(mode, L, False) for mode in modes for L in lengths]
        if memory_length:
            groups.append(("full", int(memory_length), True))
        sections.append((device, dtype, specs, groups))
        if device.startswith("cuda") and half and dtype in ("float32", "float64"):
            half_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            sections.append((device, half_dtype, specs_for(device, True),
                             [(mode, L, False) for mode in modes for L in lengths]))
    total = sum(1 + sum(len([s for s in specs if not memory or s.name in MEMORY_KERNELS])
                        + (0 if memory else repeat) for _, _, memory in groups)
                for _, _, specs, groups in sections)
    step = [0]

    def tick(label, advance=True):
        step[0] += bool(advance)
        if progress is not None:
            progress(min(step[0], total), total, label)

    for device, section_dtype, specs, groups in sections:
        size = gemm_size or GEMM_SIZE["cuda" if device.startswith("cuda") else "cpu"]
        tick(f"{device} GEMM {section_dtype} {size}x{size}")
        try:
            settings["gemm"][(device, section_dtype)] = gemm_gflops(device, section_dtype, size)
        except (RuntimeError, TypeError):  # a dtype without a matrix product on this device
            settings["gemm"][(device, section_dtype)] = None
            _release(device)
        _warm_up(specs, device, section_dtype, dim)
        if device.startswith("cuda") and section_dtype in ("bfloat16", "float16"):
            peak = dense_peak_tflops(torch.cuda.get_device_name(device))
            settings["peaks"][(device, section_dtype)] = peak[1] if peak else None
        for mode, length, memory in groups:
            chosen = specs
            if memory:
                chosen = [_memory_spec(s, rows, device, section_dtype) for s in specs if s.name in MEMORY_KERNELS]
            _run_group(rows, chosen, device, section_dtype, mode, length, memory, settings, tick)
        before = settings["gemm"][(device, section_dtype)]
        if before is not None:  # measured again at the end: a slow moment at the start must not set the rate
            rate = max(before, gemm_gflops(device, section_dtype, size))
            settings["gemm"][(device, section_dtype)] = rate
            for row in rows:
                if (row["device"], row["dtype"]) == (device, section_dtype):
                    row["gemm_gflops"] = rate
    if progress is not None and step[0] < total:
        progress(total, total, "done")
    return derive(rows)


def _warm_up(specs, device, dtype, dim, length=256):
    """One small call of each kernel, so one-off costs (loading kernels, first allocations, a GPU's context)
    land outside the measured calls; problems are reported by the measured calls."""
    tensors = _inputs(device, dtype, 1, 1, length, dim, 0, any(spec.kind == "naive-numpy" for spec in specs))
    for spec in specs:
        if spec.unavailable:
            continue
        for config in spec.configs(length):
            try:
                _call(spec, tensors, False, config)()
            except Exception:  # measured (and reported) properly later
                break
    _release(device)


def _memory_spec(spec, rows, device, dtype):
    """The memory run's version of a searched kernel: the block chosen at the largest non-causal length."""
    if spec.kind != "tiled" or spec.blocks is not None or spec.learner:
        return spec
    done = [r for r in rows if r["device"] == device and r["dtype"] == dtype and r["kernel"] == spec.name
            and r["mode"] == "full" and not r["memory_run"] and r["block_q"] is not None]
    if done:
        best = max(done, key=lambda r: r["L"])
        blocks = (best["block_q"], best["block_k"])
    else:
        blocks = spec.candidates[0] if spec.candidates else None
    return _Spec(spec.name, spec.kind, spec.fn, spec.learner, blocks, spec.candidates, spec.unavailable)


# --------------------------------------------------------------------------------------- the table
def _mib(nbytes):
    return "-" if nbytes is None else f"{nbytes / 2 ** 20:.1f}"


def _time(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _rate(gflops):
    if gflops is None:
        return "-"
    return f"{gflops / 1e3:.1f} TF/s" if gflops >= 1e3 else f"{gflops:.1f} GF/s"


def _pct(value):
    return "-" if value is None else (f"{value:.1f}%" if value < 10 else f"{value:.0f}%")


def _ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def _err(value):
    return "-" if value is None else f"{value:.1e}"


def _blocks(row):
    if row["block_q"] is not None:
        return f"{row['block_q']}x{row['block_k']}"
    return "default" if str(row["kernel"]).startswith("yours:") and row["seconds"] is not None else "-"


def format_table(rows):
    """The rows as a plain-text table (one line per device, mode, kernel and length)."""
    dtypes = {r["dtype"] for r in rows}
    with_peak = any(r["device_peak_tflops"] or r["kernel"] == "sdpa-flash" for r in rows)
    head = ["device", "mode", "kernel", "L", "blocks", "median", "FLOP/s", "% GEMM"] + (["% peak"] if with_peak
                                                                                        else [])
    head += ["x SDPA", "peak MiB", "max|err|", "GPU/CPU", "note"]
    lines = [head]
    for r in rows:
        line = [r["device"] + (f" {r['dtype']}" if len(dtypes) > 1 else ""), r["mode"], r["kernel"], str(r["L"]),
                _blocks(r), _time(r["seconds"]), _rate(r["gflops"]), _pct(r["pct_gemm"])]
        if with_peak:  # n/a: a half-precision GPU row on a device missing from DENSE_PEAKS
            half_gpu = r["device"] != "cpu" and r["dtype"] in ("bfloat16", "float16")
            line.append("n/a" if half_gpu and r["gflops"] and not r["device_peak_tflops"]
                        else _pct(r["pct_device_peak"]))
        line += [_ratio(r["x_sdpa"]), _mib(r["peak_bytes"]), _err(r["err_vs_sdpa"]), _ratio(r["gpu_speedup"]),
                 r["note"]]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def summary(rows):
    """A few lines: at L = 4096 and 8192 (or the largest L run), fast and tiled as a multiple of SDPA's time
    per device and mode; the GEMM rates; the half-precision kernels' share of the GPU peak; the memory run."""
    lines = []
    gemm = {}
    for r in rows:
        if r["gemm_gflops"]:
            gemm.setdefault((r["device"], r["dtype"]), r["gemm_gflops"])
    for (device, dtype), rate in gemm.items():
        lines.append(f"GEMM {device} {dtype}: {_rate(rate)} (torch.mm, fastest of 5 after 2 warm-ups, before and after the kernels)")
    timed = [r for r in rows if not r["memory_run"]]
    for device, dtype in dict.fromkeys((r["device"], r["dtype"]) for r in timed):
        mine = [r for r in timed if r["device"] == device and r["dtype"] == dtype]
        present = sorted({r["L"] for r in mine if r["seconds"]})
        chosen = [L for L in (4096, 8192) if L in present] or present[-1:]
        for mode in dict.fromkeys(r["mode"] for r in mine):
            parts = []
            for L in chosen:
                at = {r["kernel"]: r for r in mine if r["mode"] == mode and r["L"] == L}
                shown = [f"{k} {_ratio(at[k]['x_sdpa'])}"
                         for k in ("fast", "tiled", "triton", "yours:fast", "yours:tiled")
                         if k in at and at[k]["x_sdpa"] is not None]
                if dtype in ("bfloat16", "float16") and device != "cpu":
                    shown = [f"{k} {_rate(at[k]['gflops'])} ({_pct(at[k]['pct_device_peak'])})"
                             if at[k]["pct_device_peak"] is not None else f"{k} {_rate(at[k]['gflops'])}"
                             for k in HALF_KERNELS if k in at and at[k]["gflops"]]
                if shown:
                    parts.append(f"L={L}: " + ", ".join(shown))
            if parts:
                what = "median time as a multiple of SDPA's"
                if dtype in ("bfloat16", "float16") and device != "cpu":
                    peak = dense_peak_tflops(mine[0]["machine"])
                    what = (f"rate (share of the {peak[0]} dense {dtype} peak, {peak[1]:g} TFLOP/s)" if peak else
                            "rate (dense peak of this GPU unknown: n/a)")
                lines.append(f"{device} {dtype} {mode}, {what}: " + "; ".join(parts))
    lines += _memory_lines(rows)
    return "\n".join(lines)


def _memory_lines(rows):
    lines = []
    for device in dict.fromkeys(r["device"] for r in rows if r["memory_run"]):
        at = {r["kernel"]: r for r in rows if r["memory_run"] and r["device"] == device}
        length = next(iter(at.values()))["L"]
        measured = [f"{k} {_mib(at[k]['peak_bytes'])} MiB" for k in ("tiled", "fast", "sdpa")
                    if k in at and at[k]["peak_bytes"] is not None]
        text = f"memory at L={length} ({device}, non-causal, one call each): " + (", ".join(measured) or "-")
        tiled = [at[k]["peak_bytes"] for k in ("fast", "tiled") if k in at and at[k]["peak_bytes"]]
        naive = at.get("naive-torch")
        if naive is not None and naive["peak_bytes"] is not None:
            text += f"; naive-torch {_mib(naive['peak_bytes'])} MiB, measured at the same L"
            if tiled:
                share = ", ".join(f"{k} {100 * at[k]['peak_bytes'] / naive['peak_bytes']:.2g}%" for k in ("tiled", "fast")
                                  if k in at and at[k]["peak_bytes"])
                text += (f" ({naive['peak_bytes'] / max(tiled):.3g}x the tiled kernels' larger peak; as a share of "
                         f"naive's: {share})")
        else:
            why = f" ({naive['note']})" if naive is not None and naive["note"] else ""
            text += f"; naive-torch was not measured at L={length}{why}"
            earlier = [r for r in rows if r["device"] == device and r["kernel"] == "naive-torch" and
                       not r["memory_run"] and r["peak_bytes"] is not None and r["mode"] == "full"]
            if earlier:
                largest = max(earlier, key=lambda r: r["L"])
                text += (f"; at L={largest['L']}, the largest length it ran at (not {length}), naive-torch took "
                         f"{_mib(largest['peak_bytes'])} MiB")
                if tiled:
                    text += f" ({largest['peak_bytes'] / max(tiled):.3g}x the tiled kernels' larger peak at L={length})"
        lines.append(text)
    return lines


def write_csv(rows, path):
    """Every row with every column of COLUMNS (empty where None; True/False as true/false). Returns path."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else (str(r[c]).lower() if isinstance(r.get(c), bool)
                                                           else (repr(r[c]) if isinstance(r[c], float) else r[c]))
                             for c in COLUMNS])
    return path


def _default_title(rows):
    import torch

    parts = [f"attnlab bench: {machine('cpu')}, torch {torch.__version__}"]
    for r in rows:
        if r["gemm_gflops"] and (f"{r['device']} {r['dtype']}" not in " ".join(parts)):
            parts.append(f"GEMM {r['device']} {r['dtype']} {_rate(r['gemm_gflops'])}")
    shapes = {(r["B"], r["H"], r["D"]) for r in rows}
    if len(shapes) == 1:
        B, H, D = next(iter(shapes))
        parts.append(f"B={B}, H={H}, D={D}")
    return "; ".join(parts)


def plot(rows, path=None, title=None):
    """Two log-log panels, median time and peak memory against L: one colour per kernel, solid non-causal,
    dashed causal, one marker per device (and dtype). Saved to `path` (PNG) when given. Returns the Figure
    (matplotlib's object-oriented API: no pyplot, no backend switch, so it works under a notebook's backend
    and headless alike)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(12.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_time, ax_memory = fig.subplots(1, 2)
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    colours = {k: f"C{i % 10}" for i, k in enumerate(kernels)}
    targets = list(dict.fromkeys((r["device"], r["dtype"]) for r in rows))
    markers = dict(zip(targets, "osD^v<>"))
    for kernel in kernels:
        for target in targets:
            for mode, style in (("full", "-"), ("causal", "--")):
                mine = sorted((r for r in rows if r["kernel"] == kernel and (r["device"], r["dtype"]) == target
                               and r["mode"] == mode), key=lambda r: r["L"])
                kw = {"color": colours[kernel], "linestyle": style, "marker": markers.get(target, "o"),
                      "markersize": 4}
                timed = [r for r in mine if r["seconds"]]
                if timed:
                    ax_time.loglog([r["L"] for r in timed], [r["seconds"] * 1e3 for r in timed], **kw)
                held = [r for r in mine if r["peak_bytes"] is not None and r["seconds"]]
                if held:  # 1 KiB floor: a log axis has no 0 (a call may reuse memory the process held)
                    ax_memory.loglog([r["L"] for r in held], [max(r["peak_bytes"], 2 ** 10) / 2 ** 20 for r in held],
                                     **kw)
    lengths = sorted({r["L"] for r in rows})
    for ax, label in ((ax_time, "median time per call (ms)"), (ax_memory, "peak extra memory of one call (MiB)")):
        ax.set_xlabel("L = S")
        ax.set_ylabel(label)
        if lengths:
            ax.set_xticks(lengths)
            ax.set_xticklabels([str(L) for L in lengths], fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the measured lengths are labelled
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    ax_time.set_title("time (lower is better)", fontsize=9)
    ax_memory.set_title("memory (1 KiB floor)", fontsize=9)
    handles = [Line2D([], [], color=colours[k], label=k) for k in kernels]
    handles += [Line2D([], [], color="grey", linestyle="-", label="non-causal"),
                Line2D([], [], color="grey", linestyle="--", label="causal")]
    if len(targets) > 1:
        handles += [Line2D([], [], color="grey", linestyle="", marker=markers[t], label=" ".join(t)) for t in targets]
    ax_time.legend(handles=handles, fontsize=7, loc="upper left")
    fig.suptitle(title if title is not None else _default_title(rows), fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ------------------------------------------------------------------------------------------- main
def _resolve(args):
    """Fill the options --quick changes (explicit values win) and check the combinations."""
    quick = args.quick
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if quick else LENGTHS)
    if args.heads is None:
        args.heads = 2 if quick else 8
    if args.repeat is None:
        args.repeat = 1 if quick else 3
    if args.memory_length is None:
        args.memory_length = 0 if quick else DEFAULT_MEMORY_LENGTH
    if args.causal and args.mode not in (None, "causal"):
        raise BenchError(f"--causal contradicts --mode {args.mode}")
    args.modes = ["causal"] if args.causal else (list(MODES) if args.mode in (None, "both") else [args.mode])
    if args.block_q is not None or args.block_k is not None:
        args.blocks = (args.block_q or args.block_k, args.block_k or args.block_q)
    else:
        args.blocks = None
    args.candidates = QUICK_CANDIDATES if quick else CANDIDATES
    args.learner = args.learner or args.src is not None
    return args


def _prepare_out(folder):
    """Create the output folder and check that it takes a file. Raises BenchError."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".attnlab-bench-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"--out {folder}: cannot write there ({exc.strerror or exc})") from None
    return path


def _shown(path):
    try:
        return Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return path


def main(argv=None, out=print, err=None):
    """Run the benchmark from command-line arguments; returns the exit status (0 ok, 1 a kernel failed,
    2 bad input, 130 interrupted). The table goes through `out`, problems through `err` (stderr), the
    progress bar to stderr."""
    try:
        return _main(argv, out, err)
    except KeyboardInterrupt:  # outside the measurements (those write their CSV first): one line, no traceback
        (err or (lambda text: sys.stderr.write(text + "\n")))("attnlab bench: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`attnlab bench | head`): stop quietly, no traceback
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


def _main(argv, out, err):
    err = err or (lambda text: sys.stderr.write(text + "\n"))
    try:
        args = _resolve(parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
    except BenchError as exc:
        err(f"attnlab bench: {exc}")
        return 2
    except SystemExit as exc:  # --help printed its text
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the course
        err(f"attnlab bench: PyTorch is needed: {exc}")
        return 2
    available, reason = cuda_status()
    if args.device == "cuda" and not available:
        err(f"attnlab bench: --device cuda: CUDA is not available on this machine ({reason}); use --device cpu")
        return 2
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if available else [])}[args.device]
    itemsize = torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    longest = max(args.lengths + [args.memory_length])
    inputs = 3 * args.batch * args.heads * longest * args.dim * itemsize
    if inputs > 8 * 2 ** 30:
        err(f"attnlab bench: q, k and v would need {inputs / 2 ** 30:.1f} GiB at L={longest}; lower --lengths, "
            "--memory-length, --batch, --heads or --dim")
        return 2
    learner, learner_where = {}, None
    try:
        if args.learner:
            learner, learner_where = learner_kernels(args.src)
        out_dir = _prepare_out(args.out)
    except BenchError as exc:
        err(f"attnlab bench: {exc}")
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        set_numpy_threads(args.threads)
    kernels = _kernel_names(args.kernels)
    blocks = (f"fixed at {args.blocks[0]}x{args.blocks[1]}" if args.blocks else
              "fastest of " + ", ".join(f"{bq}x{bk}" for bq, bk in args.candidates) + " per (L, mode)")
    out(f"attnlab bench: B={args.batch}, H={args.heads}, D={args.dim}, {args.dtype}, L = S in "
        f"{','.join(map(str, args.lengths))}, {' and '.join(args.modes)}; median of {args.repeat} interleaved "
        f"round(s) after warm-up; tiled/fast blocks: {blocks}"
        + (f"; memory run at L={args.memory_length}" if args.memory_length else "; no memory run"))
    out(f"kernels: {', '.join(kernels)}" + (" (tiled, fast: solutions/attnlab/flash.py)"
                                            if {"tiled", "fast"} & set(kernels) else "")
        + (f"; yours: {_shown(learner_where)}" if learner_where else ""))
    out(f"torch {torch.__version__}; cpu: {machine('cpu')}" + (f"; cuda: {machine('cuda')}" if "cuda" in devices
                                                               else ""))
    progress = None if args.no_progress else ProgressBar(sys.stderr)
    rows = []
    csv_path, png_path = out_dir / "bench.csv", out_dir / "bench.png"
    try:
        run_benchmark(args.lengths, args.modes, devices, kernels=kernels, learner=learner, dtype=args.dtype,
                      batch=args.batch, heads=args.heads, dim=args.dim, repeat=args.repeat, blocks=args.blocks,
                      candidates=args.candidates, memory_length=args.memory_length,
                      naive_budget_mb=args.naive_budget_mb, seed=args.seed, progress=progress, rows=rows)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        for r in rows:
            if r["status"] == "pending":
                r["status"], r["note"] = "interrupted", (r["note"] + "; " if r["note"] else "") + "interrupted"
        derive(rows)
        if rows:
            out(format_table(rows))
        try:
            write_csv(rows, csv_path)
            err(f"attnlab bench: interrupted; the {len(rows)} row(s) so far are in {csv_path}")
        except OSError as exc:
            err(f"attnlab bench: interrupted; the CSV could not be written: {exc.strerror or exc}")
        return 130
    except (BenchError, ValueError) as exc:
        if progress is not None:
            progress.close()
        err(f"attnlab bench: {exc}")
        return 2
    except Exception as exc:  # a bug or a broken installation: one line, and the rows so far
        if progress is not None:
            progress.close()
        try:
            write_csv(derive(rows), csv_path)
        except Exception:
            pass
        err(f"attnlab bench: the benchmark stopped: {type(exc).__name__}: {_short(exc)} (rows so far: {csv_path})")
        return 1
    if progress is not None:
        progress.close()
    out(format_table(rows))
    status = 0
    try:
        out(f"CSV: {write_csv(rows, csv_path)}")
    except OSError as exc:
        err(f"attnlab bench: the CSV could not be written to {csv_path}: {exc.strerror or exc}")
        status = 1
    try:
        plot(rows, png_path)
        out(f"plot: {png_path}")
    except Exception as exc:  # a plot problem (matplotlib missing, a full disk) must not hide the table
        err(f"attnlab bench: the plot could not be drawn: {type(exc).__name__}: {_short(exc)}")
        status = 1
    text = summary(rows)
    if text:
        out(text)
    if "cuda" not in devices:
        out(f"CUDA not available: GPU rows skipped ({reason})" if not available else
            "GPU rows not requested (--device cpu)")
    out(f"peak memory: {CPU_MEMORY_METHOD}" + (f"; {GPU_MEMORY_METHOD}" if "cuda" in devices else ""))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        err(f"attnlab bench: {len(failed)} row(s) failed: " + "; ".join(
            f"{r['device']} {r['mode']} L={r['L']} {r['kernel']}: {r['note']}" for r in failed[:3]))
        status = 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
