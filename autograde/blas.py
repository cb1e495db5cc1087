"""NumPy's BLAS threads, set from Python without extra dependencies (best effort, Linux).

Why the judge needs this: NumPy's OpenBLAS can deadlock when two Python threads of one process call its
multi-threaded kernels at the same time. `attnlab grade-batch --workers 2` grades two students in two threads
of one judge process, and it hung here for minutes in ``dgemm_thread_tn`` (one thread waiting on OpenBLAS's
lock, the other spinning in its ``inner_thread``) while both computed a tolerance with ``@``. The judge's own
matrix products are small, so one BLAS thread per judge thread costs nothing and removes the hazard.
`attnlab bench --threads N` uses the same setter for the NumPy rows.
"""
import ctypes
from contextlib import contextmanager

_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads")


def _function(names):
    """The first of `names` exported by an OpenBLAS library loaded in this process (NumPy's), or None."""
    import numpy  # noqa: F401  (loads its BLAS)

    try:
        with open("/proc/self/maps") as fh:
            libraries = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def get_threads():
    """NumPy's OpenBLAS thread count, or None where it cannot be read."""
    getter = _function(_GETTERS)
    return None if getter is None else int(getter())


def set_threads(n):
    """Limit NumPy's OpenBLAS to `n` threads. Returns True when a known setter was found."""
    setter = _function(_SETTERS)
    if setter is None:
        return False
    setter(int(n))
    return True


@contextmanager
def limited(n):
    """Run the block with NumPy's OpenBLAS limited to `n` threads, then restore the previous count."""
    before = get_threads()
    set_threads(n)
    try:
        yield
    finally:
        if before is not None:
            set_threads(before)
