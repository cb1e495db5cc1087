"""Profiles: what a worker imports before any submission code runs, and what it may not import at all.

Every exercise names one profile. The judge runs one worker per profile (and a fresh one for each case
with a memory budget), and grades an exercise only in a worker of its own profile, so a grade never
depends on what else is selected.

| profile      | imported before the learner's clock starts | not importable by the submission | devices |
|--------------|--------------------------------------------|----------------------------------|---------|
| `numpy`      | numpy                                      | torch, torchgen, functorch, triton, scipy | - |
| `torch`      | numpy, torch (one thread, warmed up)       | scipy                            | CPU     |
| `cuda`       | numpy, torch, CUDA initialised             | scipy                            | the NVIDIA devices, bound into the sandbox |
| `matplotlib` | numpy, matplotlib with Agg, pyplot, a prebuilt font cache | torch, torchgen, functorch, triton, scipy | - |

A `torch` exercise's cases that need a GPU run in the `cuda` worker; where the host has no CUDA they are
skipped with the reason, and never change the score.

This file is shared: the judge reads `PROFILES`; the worker (in the sandbox, standard library only at
import time) calls `prepare` and `arm_memory`.
"""
import os
import shutil
import sys
from dataclasses import dataclass

TORCH_PACKAGES = ("torch", "torchgen", "functorch", "triton", "scipy")
UNAVAILABLE_REASON = "not available when grading NumPy exercises"


@dataclass(frozen=True)
class Profile:
    name: str
    preload: tuple           # imported (and warmed up) before the submission's first import
    unavailable: tuple       # top-level packages the submission may not import
    gpu: bool = False        # bind the NVIDIA devices into the sandbox
    torch: bool = False      # the judge needs torch to build inputs and decode results

    @property
    def unavailable_reason(self):
        return UNAVAILABLE_REASON if "torch" in self.unavailable else "not available to graded code"


PROFILES = {
    "numpy": Profile("numpy", ("numpy",), TORCH_PACKAGES),
    "torch": Profile("torch", ("numpy", "torch"), ("scipy",), torch=True),
    "cuda": Profile("cuda", ("numpy", "torch"), ("scipy",), gpu=True, torch=True),
    "matplotlib": Profile("matplotlib", ("numpy", "matplotlib"), TORCH_PACKAGES),
}


def get(name):
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}") from None


# ----------------------------------------------------------------------------- worker side
def use_font_cache(cache_dir, config_dir):
    """Point matplotlib at a private, writable config folder seeded with the judge's prebuilt font cache,
    so importing it never rebuilds the cache (which runs `fc-list`, a process the worker may not start)."""
    os.makedirs(config_dir, exist_ok=True)
    if cache_dir and os.path.isdir(cache_dir):
        for name in os.listdir(cache_dir):
            if name.startswith("fontlist") and name.endswith(".json"):
                shutil.copyfile(os.path.join(cache_dir, name), os.path.join(config_dir, name))
    os.environ["MPLCONFIGDIR"] = config_dir
    os.environ["MPLBACKEND"] = "Agg"


def prepare(name):
    """Import and warm up what profile `name` provides. Returns facts for the judge (versions, CUDA)."""
    profile = get(name)
    info = {"profile": name}
    import numpy

    info["numpy"] = numpy.__version__
    if "torch" in profile.preload:
        import torch

        torch.set_num_threads(1)
        a = torch.ones(2, 8, 8)
        # Touch the kernels attention code uses, so their one-off allocations happen before any budget.
        torch.baddbmm(a, a, a).exp().amax(-1).sum()
        torch.logsumexp(a @ a.transpose(-1, -2), -1)
        torch.where(a > 0, a, torch.zeros(())).float().half().to(torch.bfloat16).float()
        _warm_dispatch_mode(torch, a)
        info["torch"] = torch.__version__
        if profile.gpu:
            info["cuda"] = _cuda_facts(torch)
    if "matplotlib" in profile.preload:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        im = ax.imshow(numpy.eye(2))
        fig.colorbar(im)
        ax.set_title("warm-up")
        fig.canvas.draw()  # loads the font files once
        plt.close("all")
        info["matplotlib"] = matplotlib.__version__
    return info


def _warm_dispatch_mode(torch, a):
    """The worker watches PyTorch calls with a TorchFunctionMode; its first use imports and builds things,
    which must happen now, not under a case's memory budget."""
    from torch.overrides import TorchFunctionMode

    class Warm(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            getattr(func, "__qualname__", None)
            return func(*args, **(kwargs or {}))

    with Warm():
        (a @ a).exp().amax(-1).sum()
        torch.maximum(a, a).masked_fill(a > 0, float("-inf"))


def _cuda_facts(torch):
    try:
        if not torch.cuda.is_available():
            return {"available": False, "reason": "torch.cuda.is_available() is False inside the sandbox"}
        torch.ones(1, device="cuda").sum().item()
        return {"available": True, "device": torch.cuda.get_device_name(0),
                "cuda": str(torch.version.cuda), "count": torch.cuda.device_count()}
    except Exception as exc:  # a driver or binding problem: the judge reports it and skips GPU cases
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}


def virtual_memory_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def arm_memory(budget_mb):
    """Limit this process's address space to what it uses now plus `budget_mb` (soft and hard: an
    unprivileged process can never raise it again). Returns the limit in bytes."""
    import resource

    limit = virtual_memory_bytes() + (int(budget_mb) << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m autograde.profiles torch
    print(prepare(sys.argv[1] if len(sys.argv) > 1 else "numpy"))
