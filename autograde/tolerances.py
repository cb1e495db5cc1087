"""The one tolerance table: how close a learner's float output must be to the oracle's, per dtype.

A value passes when ``|got - expected| <= atol + rtol * |expected|`` element-wise (numpy.allclose's
rule), NaN only where the oracle has NaN. Tolerances are those of torch.testing.assert_close for the
dtype, loosened slightly for float32 to absorb summation-order differences over long rows.
"""
import numpy as np

TOLERANCES = {
    # dtype: (rtol, atol)
    "float16": (1e-3, 1e-3),
    "bfloat16": (1.6e-2, 1e-2),
    "float32": (1e-5, 1e-5),
    "float64": (1e-7, 1e-9),
}


def tolerance(dtype):
    """(rtol, atol) for an output of this dtype (bool and integer outputs must match exactly)."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype.replace("torch.", "")
    if name in TOLERANCES:
        return TOLERANCES[name]
    return (0.0, 0.0)
