"""`attnlab bench`: the tiled FlashAttention kernel against PyTorch's SDPA and naive attention, on CPU and GPU.

    attnlab bench [--lengths 4096,16384] [--device cpu|cuda|all] [--dtype float32] [--causal]
                  [--block-q 128] [--block-k 128] [--repeat 3] [--batch 1] [--heads 1] [--dim 64]
                  [--naive-budget-mb 2048] [--threads N] [--src DIR]

Self-attention (L = S) on inputs (B, H, L, D) drawn with a fixed seed. For each device and length it runs
three kernels on the same inputs:

* ``tiled``: ``attnlab.flash.tiled_attention`` from the package you use (``src/`` by default, where your
  notebook exercises live; ``--src solutions`` for the instructor's, the folder given or its ``src/``);
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's fused kernels), the reference
  every error is measured against, on the same device;
* ``naive``: ``softmax(q k^T / sqrt(D)) v`` with the (B, H, L, S) matrix materialised, skipped (with the
  reason) when its two L x S matrices would not fit in ``--naive-budget-mb``.

It prints one row per (device, kernel, L): the max abs error against SDPA on the same device, the max abs
difference between the GPU and the CPU result of the same kernel, the median wall time of ``--repeat``
calls (after one untimed call, which is the one whose memory is measured) and the peak memory of a call.
Peak memory is measured differently on each device, and the table says so:

* GPU: ``torch.cuda.max_memory_allocated()`` during the call minus what was allocated before it (tensor
  memory from PyTorch's caching allocator);
* CPU: the growth of the process's peak resident set during the call (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``, after ``malloc_trim(0)`` hands freed heap pages back so that reused memory is
  counted). tracemalloc is not used: it sees Python objects, not PyTorch's tensor buffers. Elsewhere: n/a.

Where CUDA is absent, the GPU rows are skipped with a line saying so; ``--device cuda`` then fails with a
message. Bad options give a one-line message and exit status 2, never a traceback; times are measurements
of this machine at this moment, not assertions.

The notebook (notebooks/08_flash_attention.ipynb) calls `run_benchmark` and `format_table` itself.
"""
import argparse
import ctypes
import math
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("sdpa", "tiled", "naive")
DTYPES = ("float32", "float64", "float16", "bfloat16")
MAX_LENGTH = 1 << 20
CPU_MEMORY_METHOD = ("CPU peak = growth of the process's peak resident memory during one call (Linux VmHWM "
                     "reset via /proc/self/clear_refs, after malloc_trim(0))")
GPU_MEMORY_METHOD = "GPU peak = torch.cuda.max_memory_allocated() during one call minus what was allocated before"


class BenchError(Exception):
    """A problem to report in one line (bad input, a kernel that is missing or raises)."""


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


def _lengths(text):
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths such as 4096,16384, got {text!r}")
    lengths = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 4096,16384, "
                                             f"got {part!r}") from None
        if not 1 <= value <= MAX_LENGTH:
            raise argparse.ArgumentTypeError(f"each length must be between 1 and {MAX_LENGTH}, got {value}")
        lengths.append(value)
    return lengths


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number of MiB >= 0, got {text!r}")
    return value


def parser():
    p = _Parser(prog="attnlab bench", description="Time and measure attnlab.flash.tiled_attention against "
                "PyTorch's scaled_dot_product_attention and naive attention, on CPU and (when present) GPU.")
    p.add_argument("--lengths", type=_lengths, default=[4096, 16384], metavar="L1,L2,...",
                   help="sequence lengths L = S (default 4096,16384)")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="cpu, cuda, or all: the CPU and, when CUDA is present, the GPU (default all)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="input dtype (default float32)")
    p.add_argument("--causal", action="store_true", help="causal self-attention")
    p.add_argument("--block-q", type=_positive_int, default=128, help="query tile of the tiled kernel (128)")
    p.add_argument("--block-k", type=_positive_int, default=128, help="key tile of the tiled kernel (128)")
    p.add_argument("--repeat", type=_positive_int, default=3, help="timed calls per row; the median is shown (3)")
    p.add_argument("--batch", type=_positive_int, default=1, help="B (default 1)")
    p.add_argument("--heads", type=_positive_int, default=1, help="H (default 1)")
    p.add_argument("--dim", type=_positive_int, default=64, help="D = D_v, the head width (default 64)")
    p.add_argument("--naive-budget-mb", type=_non_negative_float, default=2048.0, metavar="MIB",
                   help="skip naive attention when its two (B, H, L, S) matrices need more (default 2048)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for PyTorch (default: PyTorch's own choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--src", default=None, metavar="DIR",
                   help="folder holding attnlab/ (or its src/): default the course's src/; 'solutions' for the "
                        "instructor's kernel")
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


def naive_bytes(batch, heads, length, itemsize):
    """What naive attention holds at its peak: the scores and the weights, two (B, H, L, S) matrices."""
    return 2 * batch * heads * length * length * itemsize


def sdpa(q, k, v, causal=False):
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # L == S: start- and end-aligned agree


def load_tiled(src=None):
    """tiled_attention from the attnlab package in `src` (a folder holding attnlab/, or its src/; default the
    course's src/). Returns (function, where it came from). Raises BenchError."""
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
        function = getattr(module, "tiled_attention", None)
    except Exception as exc:
        raise BenchError(f"{root / 'attnlab' / 'flash.py'} could not be imported: {type(exc).__name__}: "
                         f"{exc}") from None
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "attnlab" or n.startswith("attnlab.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    if not callable(function):
        raise BenchError(f"{where} has no tiled_attention function")
    return function, where


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


def median_seconds(fn, device, repeat):
    """Median wall time of `repeat` calls (synchronising the GPU around each)."""
    import torch

    times = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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


def run_benchmark(tiled, lengths, devices=("cpu",), dtype="float32", causal=False, block_q=128, block_k=128,
                  repeat=3, batch=1, heads=1, dim=64, naive_budget_mb=2048.0, seed=0, progress=None):
    """Measure the three kernels on each device and length. Returns a list of row dicts with keys device,
    kernel, L, err_vs_sdpa, gpu_vs_cpu, seconds, peak_bytes, note (None where not measured).

    `tiled` is the tiled_attention function to measure; `progress(text)` is called before each row."""
    import torch

    torch_dtype = getattr(torch, dtype)
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    rows, cpu_outputs = [], {}
    for device in devices:
        _warm_up(tiled, device, torch_dtype, block_q, block_k, causal)
        for L in lengths:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + L)
            q, k, v = (torch.randn(batch, heads, L, dim, generator=gen, dtype=torch.float32).to(torch_dtype)
                       .to(device) for _ in range(3))
            kernels = {
                "sdpa": lambda: sdpa(q, k, v, causal),
                "tiled": lambda: tiled(q, k, v, block_q=block_q, block_k=block_k, causal=causal),
                "naive": lambda: naive_attention(q, k, v, causal),
            }
            reference = None
            for name in KERNELS:
                row = {"device": device, "kernel": name, "L": L, "err_vs_sdpa": None, "gpu_vs_cpu": None,
                       "seconds": None, "peak_bytes": None, "note": ""}
                rows.append(row)
                need = naive_bytes(batch, heads, L, itemsize)
                if name == "naive" and need > naive_budget_mb * 2 ** 20:
                    row["note"] = (f"skipped: its two ({batch}, {heads}, {L}, {L}) {dtype} matrices need "
                                   f"{need / 2 ** 20:.0f} MiB > --naive-budget-mb {naive_budget_mb:g}")
                    continue
                if progress is not None:
                    progress(f"{device} {name} L={L}")
                call = kernels[name]
                if name == "tiled":
                    call = _first_output(call)
                try:
                    if device.startswith("cuda"):
                        out, peak = cuda_peak_bytes(call, device)  # also the warm-up call
                    else:
                        out, peak = cpu_peak_bytes(call)
                    seconds = median_seconds(call, device, repeat)
                except NotImplementedError as exc:
                    raise BenchError(f"tiled_attention is not implemented yet ({exc}); implement it in "
                                     "src/attnlab/flash.py (notebooks/08_flash_attention.ipynb), or bench the "
                                     "instructor's kernel with --src solutions") from None
                except (RuntimeError, MemoryError, TypeError, ValueError) as exc:
                    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                        row["note"] = f"out of memory: {_short(exc)[:80]}"
                        continue
                    if name == "sdpa":
                        raise BenchError(f"PyTorch's scaled_dot_product_attention failed on {device} "
                                         f"({dtype}, L={L}): {type(exc).__name__}: {_short(exc)}") from None
                    row["note"] = f"failed: {type(exc).__name__}: {_short(exc)}"
                    continue
                row["seconds"], row["peak_bytes"] = seconds, peak
                if name == "sdpa":
                    reference = out
                    row["note"] = "reference"
                else:
                    row["err_vs_sdpa"] = _max_abs(out, reference)
                if device == "cpu":
                    cpu_outputs[(name, L)] = out
                elif (name, L) in cpu_outputs:
                    row["gpu_vs_cpu"] = _max_abs(out.cpu(), cpu_outputs[(name, L)])
                del out
            del q, k, v, reference
    return rows


def _warm_up(tiled, device, dtype, block_q, block_k, causal):
    """One small call of each kernel, so one-off costs (loading kernels, first allocations) land outside the
    measured calls."""
    import torch

    q = torch.zeros(1, 1, 2 * max(block_q, block_k), 8, dtype=dtype, device=device)
    for call in (lambda: sdpa(q, q, q, causal), lambda: naive_attention(q, q, q, causal),
                 lambda: tiled(q, q, q, block_q=block_q, block_k=block_k, causal=causal)):
        try:
            call()
        except Exception:  # measured (and reported) properly later
            pass


def _first_output(call):
    """tiled_attention returns (output, lse): measure the output."""
    def run():
        got = call()
        return got[0] if isinstance(got, (tuple, list)) else got
    return run


def _max_abs(a, b):
    import torch

    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        raise BenchError(f"tiled_attention returned {type(a).__name__} of shape "
                         f"{tuple(getattr(a, 'shape', ()))}, expected a tensor of shape {tuple(b.shape)}")
    return float((a.double() - b.double()).abs().max().item())


def _short(exc):
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------------------- the table
def _mib(nbytes):
    return "n/a" if nbytes is None else f"{nbytes / 2 ** 20:.1f} MiB"


def _ms(seconds):
    return "-" if seconds is None else (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def _err(value):
    return "-" if value is None else f"{value:.1e}"


def format_table(rows):
    """The rows as a plain-text table (one line per device, kernel and length)."""
    head = ("device", "kernel", "L", "max|err| vs SDPA", "GPU vs CPU", "median time", "peak memory", "note")
    lines = [head]
    for r in rows:
        measured = r["seconds"] is not None
        lines.append((r["device"], r["kernel"], str(r["L"]), _err(r["err_vs_sdpa"]), _err(r["gpu_vs_cpu"]),
                      _ms(r["seconds"]), _mib(r["peak_bytes"]) if measured else "-", r["note"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


# ------------------------------------------------------------------------------------------- main
def main(argv=None, out=print, err=None):
    """Run the benchmark from command-line arguments; returns the exit status (0 ok, 1 a kernel problem,
    2 bad input, 130 interrupted). Messages go through `out` (the table) and `err` (problems; stderr)."""
    err = err or (lambda text: sys.stderr.write(text + "\n"))
    try:
        args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except BenchError as exc:
        err(f"attnlab bench: {exc}")
        return 2
    except SystemExit as exc:  # --help printed its text
        return int(exc.code or 0)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the course
        err(f"attnlab bench: PyTorch is needed: {exc}")
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    available, reason = cuda_status()
    if args.device == "cuda" and not available:
        err(f"attnlab bench: --device cuda: CUDA is not available on this machine ({reason}); use --device cpu")
        return 2
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if available else [])}[args.device]
    itemsize = torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    inputs = 3 * args.batch * args.heads * max(args.lengths) * args.dim * itemsize
    if inputs > 8 * 2 ** 30:
        err(f"attnlab bench: q, k and v would need {inputs / 2 ** 30:.1f} GiB; lower --lengths, --batch, "
            "--heads or --dim")
        return 2
    try:
        tiled, where = load_tiled(args.src)
    except BenchError as exc:
        err(f"attnlab bench: {exc}")
        return 2
    try:
        shown = where.relative_to(ROOT)
    except ValueError:
        shown = where
    out(f"attnlab bench: B={args.batch}, H={args.heads}, D={args.dim}, {args.dtype}, "
        f"{'causal' if args.causal else 'non-causal'}, tiles {args.block_q} x {args.block_k}, "
        f"median of {args.repeat} call(s); tiled_attention from {shown}")
    out(f"torch {torch.__version__}; cpu: {machine('cpu')}"
        + (f"; cuda: {machine('cuda')}" if "cuda" in devices else ""))
    try:
        rows = run_benchmark(tiled, args.lengths, devices, args.dtype, args.causal, args.block_q, args.block_k,
                             args.repeat, args.batch, args.heads, args.dim, args.naive_budget_mb, args.seed)
    except BenchError as exc:
        err(f"attnlab bench: {exc}")
        return 1
    except KeyboardInterrupt:
        err("attnlab bench: interrupted")
        return 130
    except Exception as exc:  # the learner's kernel can raise anything: one line, no traceback
        err(f"attnlab bench: the benchmark stopped: {type(exc).__name__}: {_short(exc)}")
        return 1
    out(format_table(rows))
    if "cuda" not in devices:
        out(f"CUDA not available: GPU rows skipped ({reason})" if not available else
            "GPU rows not requested (--device cpu)")
    out(f"peak memory: {CPU_MEMORY_METHOD}" + (f"; {GPU_MEMORY_METHOD}" if "cuda" in devices else ""))
    failed = [r for r in rows if r["note"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
