"""Compare a learner's returned value with the oracle's and say precisely what differs.

Order of checks: type, then shape, then dtype (and, for tensors, device), then values (NaN/Inf pattern,
then closeness). Messages report the max absolute and relative error and the index where the worst one
occurred, with as many digits as it takes to see the two values differ.

NumPy arrays and torch tensors are both judged here; a dict (a `state_dict`) is judged key by key.
"""
import sys

import numpy as np

from .tolerances import tolerance
from .wire import AxesData, Handle


class Mismatch(Exception):
    """What differs, as a sentence fragment: `expected X, got Y`."""

    def __init__(self, detail, kind, expected_dtype=None, got_dtype=None):
        super().__init__(detail)
        self.detail, self.kind = detail, kind  # kind: type | shape | dtype | device | values | keys
        self.expected_dtype, self.got_dtype = expected_dtype, got_dtype


def _torch():
    return sys.modules.get("torch")


def is_tensor(value):
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _unwrap(value):
    """The Handle behind a case's Remote wrapper (or the value itself)."""
    return value.__wire_handle__ if getattr(type(value), "__wire_handle__", False) is None else value


def describe_type(value):
    value = _unwrap(value)
    if isinstance(value, AxesData):
        return "a matplotlib Axes"
    if isinstance(value, Handle):
        return f"an object of type {value.type_name}"
    if is_tensor(value):
        return f"torch.Tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray {value.shape} {value.dtype}"
    if isinstance(value, np.generic):
        return f"numpy scalar {value.dtype}"
    return type(value).__name__


def format_pair(expected, got):
    """Both numbers with the fewest significant digits (at least 6) that show them differ."""
    if isinstance(expected, (bool, np.bool_)) or isinstance(got, (bool, np.bool_)):
        return str(bool(expected)), str(bool(got))
    e, g = float(expected), float(got)
    for digits in range(6, 18):
        a, b = f"{e:.{digits}g}", f"{g:.{digits}g}"
        if a != b:
            return a, b
    return repr(e), repr(g)


def _as_float64(value):
    if is_tensor(value):
        return value.detach().cpu().to(_torch().float64).numpy()
    return np.asarray(value).astype(np.float64)


def compare(got, expected, dtype=None, rtol=None, atol=None):
    """Raise Mismatch unless `got` equals `expected` (an ndarray, a tensor or a dict of them)."""
    if isinstance(expected, dict):
        return _compare_dict(got, expected, rtol, atol)
    if is_tensor(expected):
        return _compare_tensor(got, expected, dtype, rtol, atol)
    return compare_arrays(got, expected, dtype, rtol, atol)


def _compare_dict(got, expected, rtol, atol):
    if not isinstance(got, dict):
        raise Mismatch(f"expected a dict, got {describe_type(got)}", "type")
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {extra}"] if extra else [])
        raise Mismatch("; ".join(parts), "keys")
    for key, want in expected.items():
        try:
            compare(got[key], want, rtol=rtol, atol=atol)
        except Mismatch as m:
            raise Mismatch(f"[{key!r}] {m.detail}", m.kind, m.expected_dtype, m.got_dtype) from None


def _compare_tensor(got, expected, dtype, rtol, atol):
    torch = _torch()
    if type(got) not in (torch.Tensor, torch.nn.Parameter):
        raise Mismatch(f"expected a torch.Tensor, got {describe_type(got)}", "type")
    if tuple(got.shape) != tuple(expected.shape):
        raise Mismatch(f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}", "shape")
    want_dtype = dtype or expected.dtype
    if got.dtype != want_dtype:
        e, g = (str(d).replace("torch.", "") for d in (want_dtype, got.dtype))
        raise Mismatch(f"expected dtype {e}, got {g}", "dtype", e, g)
    if got.device.type != expected.device.type:
        raise Mismatch(f"expected a tensor on {expected.device}, got one on {got.device}", "device")
    name = str(want_dtype).replace("torch.", "")
    if not (got.is_floating_point() or got.is_complex()):
        _compare_exact(got.cpu().numpy(), expected.cpu().numpy())
        return
    _compare_values(_as_float64(got), _as_float64(expected), name, rtol, atol)


def compare_arrays(got, expected, dtype=None, rtol=None, atol=None):
    """Raise Mismatch unless `got` is an ndarray equal to `expected` within the dtype's tolerance."""
    expected = np.asarray(expected)
    want_dtype = np.dtype(dtype) if dtype is not None else expected.dtype
    got = _unwrap(got)
    if type(got) is not np.ndarray:
        if isinstance(got, Handle) and ("ndarray" in got.type_name.lower() or "Masked" in got.type_name):
            raise Mismatch(f"expected a plain numpy.ndarray, got {got.type_name} (a subclass or wrapper)", "type")
        raise Mismatch(f"expected a numpy.ndarray, got {describe_type(got)}", "type")
    if got.shape != expected.shape:
        raise Mismatch(f"expected shape {expected.shape}, got {got.shape}", "shape")
    if got.dtype != want_dtype:
        raise Mismatch(f"expected dtype {want_dtype}, got {got.dtype}", "dtype", want_dtype.name, got.dtype.name)
    if want_dtype.kind in "biu":
        _compare_exact(got, expected)
        return
    _compare_values(got.astype(np.float64), expected.astype(np.float64), want_dtype.name, rtol, atol)


def _compare_exact(got, expected):
    diff = np.argwhere(got != expected)
    if diff.size:
        idx = tuple(int(i) for i in diff[0])
        e, g = (str(v.item() if hasattr(v, "item") else v) for v in (expected[idx], got[idx]))
        raise Mismatch(f"{len(diff)} of {got.size} entries differ; first at index {idx}: expected {e}, got {g}",
                       "values")


def _compare_values(g, e, dtype_name, rtol, atol):
    default_rtol, default_atol = tolerance(dtype_name)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    bad_nan = np.isnan(g) != np.isnan(e)
    if bad_nan.any():
        idx = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        ev, gv = format_pair(e[idx], g[idx])
        raise Mismatch(f"{int(bad_nan.sum())} entries are NaN where the oracle is not (or the reverse); "
                       f"first at index {idx}: expected {ev}, got {gv}", "values")
    both = ~np.isnan(e)
    inf_mismatch = both & (np.isinf(g) | np.isinf(e)) & (g != e)
    if inf_mismatch.any():
        idx = tuple(int(i) for i in np.argwhere(inf_mismatch)[0])
        ev, gv = format_pair(e[idx], g[idx])
        raise Mismatch(f"infinite values differ; first at index {idx}: expected {ev}, got {gv}", "values")
    finite = both & np.isfinite(e)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.where(finite, np.abs(g - e), 0.0)
    allowed = atol + rtol * np.abs(np.where(finite, e, 0.0))
    if (abs_err > allowed).any():
        worst = np.unravel_index(int(np.argmax(abs_err - allowed)), abs_err.shape)
        worst = tuple(int(i) for i in worst)
        nonzero = finite & (e != 0)  # a relative error means nothing where the oracle is 0
        rel_err = np.where(nonzero, abs_err / np.where(nonzero, np.abs(e), 1.0), 0.0)
        rel = f"max rel error {rel_err.max():.3g}" if nonzero.any() else "the oracle is 0 everywhere"
        n_bad = int((abs_err > allowed).sum())
        ev, gv = format_pair(e[worst], g[worst])
        raise Mismatch(
            f"{n_bad} of {g.size} values are off: max abs error {abs_err.max():.3g}, {rel} "
            f"(rtol={rtol:.3g}, atol={atol:.3g}); worst at index {worst}: expected {ev}, got {gv}", "values")


def same_output(a, b, handles=None, rtol=1e-6, atol=1e-8):
    """True when two outputs agree (used to recognise a learner's output as a known mistake's).

    `handles` maps the learner's handle ids to the mistake's (objects the two runs created in step)."""
    handles = handles if handles is not None else {}
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_output(x, y, handles, rtol, atol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_output(a[k], b[k], handles, rtol, atol) for k in a)
    if isinstance(a, AxesData) and isinstance(b, AxesData):  # the same Axes (as paired), showing the same
        return handles.get(a.id, b.id) == b.id and same_output(a.data, b.data, handles, rtol, atol)
    if isinstance(a, Handle) and isinstance(b, Handle):
        return a.type_name.rsplit(".", 1)[-1] == b.type_name.rsplit(".", 1)[-1] and handles.get(a.id, b.id) == b.id
    if is_tensor(a) and is_tensor(b):
        if a.shape != b.shape or a.dtype != b.dtype or a.device.type != b.device.type:
            return False
        a, b = _as_float64(a), _as_float64(b)
    elif type(a) is np.ndarray and type(b) is np.ndarray:
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "biu":
            return bool(np.array_equal(a, b))
        a, b = a.astype(np.float64), b.astype(np.float64)
    elif isinstance(a, (str, bool, int, float, type(None))) or isinstance(a, np.generic):
        return type(a) is type(b) and (a == b or (a != a and b != b))
    else:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def pair_handles(a, b, handles):
    """Record, in `handles`, the learner's handle ids against the mistake's at the same places in two
    outputs. Returns False when the two outputs are not shaped alike, or name as the same object two
    objects already paired otherwise."""
    if isinstance(a, Handle) or isinstance(b, Handle):
        if not (isinstance(a, Handle) and isinstance(b, Handle)):
            return False
        if a.id in handles:  # an object both already hold must be the same one on both sides
            return handles[a.id] == b.id
        handles[a.id] = b.id
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(pair_handles(x, y, handles) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(pair_handles(a[k], b[k], handles) for k in a)
    return True


# ---------------------------------------------------------------------------------- dtype hints
def dtype_hint(expected, got):
    """The mistake a dtype mismatch most likely comes from, for this pair of dtypes."""
    expected, got = str(expected), str(got)
    if expected == "bool":
        return (f"return a boolean mask (dtype bool), not {got}: True means may attend; a comparison such "
                "as `j <= i + (S - L)` or np.tril(np.ones(..., dtype=bool)) gives one")
    if expected in ("float16", "bfloat16") and got == "float32":
        return (f"return the result in the input's dtype ({expected}): accumulate in float32 if you like, "
                "then cast back with .to(q.dtype)")
    if expected == "float32" and got == "float64":
        return DTYPE_HINT
    if expected == "float64" and got in ("float32", "float16"):
        return (f"keep the input's dtype: a float64 input must give a float64 output (a cast to {got} "
                "throws away precision)")
    return f"keep the dtype the exercise asks for: {expected}, not {got}"


DTYPE_HINT = "keep the input's dtype: a float32 input must give a float32 output (watch for float64 constants)"
