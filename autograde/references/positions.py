"""References for attnlab.positions, written independently of the solutions.

- sinusoidal encodings from complex exponentials (cos + i sin of each angle);
- T5 buckets from their definition in exact integer arithmetic: the log-spaced bucket of distance n is the
  largest k with (n / m)^(N - m) >= (max_distance / m)^k, decided on Python integers, so no floating-point
  rounding can move a boundary (tests/test_positions_exercise.py checks it against T5's published code);
- ALiBi slopes by the recursion of the paper's code, in exact powers of two where they are exact;
- RoPE as the multiplication of complex numbers z_i = x_i + i x_{i + D/2} by e^{i m theta_i}.
"""
import math

import numpy as np


def sinusoidal_positional_encoding(L, E, base=10000.0):
    if E % 2:
        raise ValueError("E must be even")
    pair = np.arange(E // 2)
    inv_wavelength = np.exp(-math.log(base) * 2.0 * pair / E)  # (E/2,)
    phasor = np.exp(1j * np.outer(np.arange(L), inv_wavelength))  # (L, E/2) complex
    out = np.zeros((L, E))
    for i in range(E // 2):
        out[:, 2 * i] = phasor[:, i].imag
        out[:, 2 * i + 1] = phasor[:, i].real
    return out


def _log_bucket(n, per_side, max_distance):
    """The bucket of a distance n >= m = per_side // 2, from T5's definition, exactly."""
    m = per_side // 2
    top = per_side - m  # number of log-spaced buckets
    # floor(log(n/m) / log(max_distance/m) * top) >= k  <=>  (n/m)^top >= (max_distance/m)^k  <=>
    # n^top * m^k >= max_distance^k * m^top (all integers when max_distance is an integer)
    k = 0
    while k + 1 <= top and n ** top * m ** (k + 1) >= max_distance ** (k + 1) * m ** top:
        k += 1
    return min(m + k, per_side - 1)


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    rel = np.asarray(relative_position)
    per_side = num_buckets // 2 if bidirectional else num_buckets
    m = per_side // 2
    if int(max_distance) != max_distance:
        raise ValueError("the exact reference needs an integer max_distance")
    cache = {}
    out = np.empty(rel.shape, dtype=np.int64)
    for index, r in np.ndenumerate(rel):
        r = int(r)
        if bidirectional:
            offset, n = (per_side if r > 0 else 0), abs(r)
        else:
            offset, n = 0, (-r if r < 0 else 0)
        if n < m:
            bucket = n
        else:
            if n not in cache:
                cache[n] = _log_bucket(n, per_side, int(max_distance))
            bucket = cache[n]
        out[index] = offset + bucket
    return out


def alibi_slopes(num_heads):
    def powers(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))  # 2^(-8/n), as the paper's code writes it
        return [start ** (i + 1) for i in range(n)]

    def slopes(n):
        if math.log2(n).is_integer():
            return powers(n)
        closest = 2 ** math.floor(math.log2(n))
        return powers(closest) + slopes(2 * closest)[0::2][: n - closest]

    if num_heads < 1:
        raise ValueError("num_heads must be at least 1")
    return np.array(slopes(num_heads), dtype=np.float64)


def alibi_bias(num_heads, L, S):
    slopes = alibi_slopes(num_heads)
    out = np.zeros((num_heads, L, S))
    for i in range(L):
        for j in range(S):
            out[:, i, j] = slopes * -abs(i + (S - L) - j)  # an integer -0 is 0: no -0.0 on the diagonal
    return out


def apply_rope(x, positions, base=10000.0):
    x = np.asarray(x)
    D = x.shape[-1]
    if D % 2:
        raise ValueError("D must be even")
    h = D // 2
    theta = np.array([float(base) ** (-(2.0 * i) / D) for i in range(h)])  # (h,)
    pos = np.asarray(positions, dtype=np.float64)
    z = x[..., :h].astype(np.float64) + 1j * x[..., h:].astype(np.float64)  # (..., L, h) complex
    z = z * np.exp(1j * pos[..., None] * theta)
    return np.concatenate([z.real, z.imag], axis=-1).astype(x.dtype)
