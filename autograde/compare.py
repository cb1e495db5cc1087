"""Compare a learner's returned value with the oracle's and say precisely what differs.

Order of checks: type, then shape, then dtype, then values (NaN/Inf pattern, then closeness). Messages
report the max absolute and relative error and the index where the worst one occurred.
"""
import numpy as np

from .tolerances import tolerance
from .worker import TensorData, Unsupported


class Mismatch(Exception):
    """What differs, as a sentence fragment: `expected X, got Y`."""

    def __init__(self, detail, kind):
        super().__init__(detail)
        self.detail, self.kind = detail, kind  # kind: type | shape | dtype | values


def describe_type(value):
    if isinstance(value, Unsupported):
        return value.type_name
    if isinstance(value, TensorData):
        return f"torch.Tensor ({value.dtype})"
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray {value.shape} {value.dtype}"
    if isinstance(value, np.generic):
        return f"numpy scalar {value.dtype}"
    return type(value).__name__


def _fmt(x):
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


def compare_arrays(got, expected, dtype=None, rtol=None, atol=None):
    """Raise Mismatch unless `got` is an ndarray equal to `expected` within the dtype's tolerance."""
    expected = np.asarray(expected)
    want_dtype = np.dtype(dtype) if dtype is not None else expected.dtype
    if type(got) is not np.ndarray:
        if isinstance(got, Unsupported) and "ndarray" in got.type_name.lower() or (
                isinstance(got, Unsupported) and "Masked" in got.type_name):
            raise Mismatch(f"expected a plain numpy.ndarray, got {got.type_name} (a subclass or wrapper)", "type")
        raise Mismatch(f"expected a numpy.ndarray, got {describe_type(got)}", "type")
    if got.shape != expected.shape:
        raise Mismatch(f"expected shape {expected.shape}, got {got.shape}", "shape")
    if got.dtype != want_dtype:
        raise Mismatch(f"expected dtype {want_dtype}, got {got.dtype}", "dtype")
    if want_dtype.kind in "biu":
        diff = np.argwhere(got != expected)
        if diff.size:
            idx = tuple(int(i) for i in diff[0])
            raise Mismatch(f"{len(diff)} of {got.size} entries differ; first at index {idx}: "
                           f"expected {_fmt(expected[idx])}, got {_fmt(got[idx])}", "values")
        return
    default_rtol, default_atol = tolerance(want_dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    bad_nan = np.isnan(g) != np.isnan(e)
    if bad_nan.any():
        idx = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        raise Mismatch(f"{int(bad_nan.sum())} entries are NaN where the oracle is not (or the reverse); "
                       f"first at index {idx}: expected {_fmt(e[idx])}, got {_fmt(g[idx])}", "values")
    both = ~np.isnan(e)
    inf_mismatch = both & (np.isinf(g) | np.isinf(e)) & (g != e)
    if inf_mismatch.any():
        idx = tuple(int(i) for i in np.argwhere(inf_mismatch)[0])
        raise Mismatch(f"infinite values differ; first at index {idx}: expected {_fmt(e[idx])}, "
                       f"got {_fmt(g[idx])}", "values")
    finite = both & np.isfinite(e)
    abs_err = np.where(finite, np.abs(g - e), 0.0)
    allowed = atol + rtol * np.abs(np.where(finite, e, 0.0))
    if (abs_err > allowed).any():
        worst = np.unravel_index(int(np.argmax(abs_err - allowed)), abs_err.shape)
        worst = tuple(int(i) for i in worst)
        rel_err = abs_err / np.maximum(np.abs(np.where(finite, e, 0.0)), np.finfo(np.float64).tiny)
        n_bad = int((abs_err > allowed).sum())
        raise Mismatch(
            f"{n_bad} of {got.size} values are off: max abs error {abs_err.max():.3g}, max rel error "
            f"{rel_err.max():.3g} (rtol={rtol:g}, atol={atol:g}); worst at index {worst}: "
            f"expected {_fmt(e[worst])}, got {_fmt(g[worst])}", "values")


def same_output(a, b, rtol=1e-6, atol=1e-8):
    """True when two outputs agree (used to recognise a learner's output as a known mistake's)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_output(x, y, rtol, atol) for x, y in zip(a, b))
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "biu":
        return bool(np.array_equal(a, b))
    with np.errstate(invalid="ignore"):
        return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))
