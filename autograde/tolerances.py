"""The one tolerance table: how close a learner's float output must be to the oracle's, per dtype.

A value passes when ``|got - expected| <= atol + rtol * |expected|`` element-wise (numpy.allclose's
rule), NaN only where the oracle has NaN. Tolerances are those of torch.testing.assert_close for the
dtype, loosened slightly for float32 to absorb summation-order differences over long rows.

The oracle is exact (float64, rounded once), so the allowance must cover the rounding a *correct* learner
program commits in the input's dtype. For most exercises that is a few units in the last place, and the
table suffices. Where the computation amplifies rounding, the allowance follows its conditioning:
`exp_rtol` for anything that exponentiates shifted logits (softmax, attention): a correct program computes
``exp(x - c)`` with ``c`` (the max, or the log-sum-exp) rounded to the input's precision, an absolute error
of about ``eps * |x|`` in the exponent, which is a relative error of the same size in the result.
"""
import numpy as np

TOLERANCES = {
    # dtype: (rtol, atol)
    "float16": (1e-3, 1e-3),
    "bfloat16": (1.6e-2, 1e-2),
    "float32": (1e-5, 1e-5),
    "float64": (1e-7, 1e-9),
}

EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52}


def _name(dtype):
    if isinstance(dtype, str):
        return dtype.replace("torch.", "")
    text = str(dtype)
    if text.startswith("torch."):
        return text.replace("torch.", "")
    return np.dtype(dtype).name


def tolerance(dtype):
    """(rtol, atol) for an output of this dtype (bool and integer outputs must match exactly)."""
    return TOLERANCES.get(_name(dtype), (0.0, 0.0))


def exp_rtol(dtype, magnitude, factor=8.0):
    """rtol for a result of exp(x - c) where |x| reaches `magnitude`: the table's rtol plus the rounding of
    the shift, `factor` units of eps per unit of |x| (a margin over the 2-3 a correct program needs)."""
    name = _name(dtype)
    base = tolerance(name)[0]
    return base + factor * EPS.get(name, 0.0) * float(magnitude)
