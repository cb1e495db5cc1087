"""cost: the counts agree with what they count, and the grader's claims hold.

- attention_flops equals PyTorch's FlopCounterMode on a naive attention and on F.scaled_dot_product_attention
  (2 FLOPs per multiply-add), and its causal count equals the number of True entries of the course's
  end-aligned causal mask for every (L, S) up to 12 x 12, L > S included;
- attention_memory_bytes(materialize=True) is within 10% (in fact 1%) of the tracemalloc peak of a NumPy
  attention that holds one (L, S) array, in float32 and float64;
- kv_cache_bytes equals the nbytes of real cache arrays (NumPy float16/32/64, torch bfloat16);
- solution and reference agree on a grid of sizes and on every dtype form the docstrings promise,
  including the ones the judge-worker wire cannot carry (np.dtype objects, scalar types, torch dtypes);
- results are Python ints, exact past 2**63; the module never imports torch.
"""
import ast
import itertools
import math
import tracemalloc

import numpy as np
import pytest

from autograde.graders.inputs import causal
from autograde.references import cost as ref
from conftest import ROOT, solutions_package


@pytest.fixture(scope="module")
def sol():
    with solutions_package() as load:
        yield load("cost")


DTYPE_FORMS = [("float16", 2), ("bfloat16", 2), ("float32", 4), ("float64", 8), ("torch.bfloat16", 2),
               ("torch.float16", 2), (np.float16, 2), (np.float32, 4), (np.dtype("float64"), 8),
               (np.dtype("float16"), 2), ("f4", 4), (1, 1), (2, 2), (8, 8)]


def test_causal_pairs_equal_the_mask_for_every_shape(sol):
    for L, S in itertools.product(range(0, 13), range(0, 13)):
        pairs = int(causal(L, S).sum()) if L and S else 0
        want = 2 * 2 * 3 * pairs * (4 + 6)
        assert sol.attention_flops(2, 3, L, S, 4, 6, causal=True) == want, (L, S)
        assert ref.attention_flops(2, 3, L, S, 4, 6, causal=True) == want, (L, S)
        assert sol.attention_flops(2, 3, L, S, 4, 6) == 2 * 2 * 3 * L * S * 10


def test_flops_equal_pytorchs_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    with solutions_package() as load:
        sol = load("cost")
        for B, H, L, S, D, D_v in [(2, 3, 5, 7, 4, 6), (1, 4, 33, 20, 16, 8), (3, 2, 9, 1, 5, 11)]:
            q, k, v = torch.randn(B, H, L, D), torch.randn(B, H, S, D), torch.randn(B, H, S, D_v)
            with FlopCounterMode(display=False) as naive:
                torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), dim=-1) @ v
            with FlopCounterMode(display=False) as fused:
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
            want = sol.attention_flops(B, H, L, S, D, D_v)
            assert naive.get_total_flops() == want == fused.get_total_flops()


def _inplace_attention(q, k, v):
    w = q @ np.swapaxes(k, -1, -2)
    w *= 1.0 / math.sqrt(q.shape[-1])
    w -= w.max(axis=-1, keepdims=True)
    np.exp(w, out=w)
    w /= w.sum(axis=-1, keepdims=True)
    return w @ v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_estimate_within_ten_percent_of_the_measured_peak(sol, dtype):
    for B, H, L, S, D, D_v in [(2, 3, 300, 500, 24, 40), (1, 2, 700, 256, 64, 32)]:
        rng = np.random.default_rng(0)
        tracemalloc.start()
        try:
            q = rng.standard_normal((B, H, L, D), dtype=dtype)
            k = rng.standard_normal((B, H, S, D), dtype=dtype)
            v = rng.standard_normal((B, H, S, D_v), dtype=dtype)
            _inplace_attention(q, k, v)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        estimate = sol.attention_memory_bytes(B, H, L, S, D, D_v, np.dtype(dtype))
        assert abs(peak / estimate - 1) < 0.10, (peak, estimate)
        assert abs(peak / estimate - 1) < 0.01, "within 1% in practice: only the row max and sum are left out"


def test_kv_cache_equals_the_bytes_of_real_arrays(sol):
    num_layers, B, H_kv, S, D, D_v = 3, 2, 5, 7, 4, 6
    for dtype in (np.float16, np.float32, np.float64):
        cache = [np.zeros((B, H_kv, S, D), dtype) for _ in range(num_layers)] + \
                [np.zeros((B, H_kv, S, D_v), dtype) for _ in range(num_layers)]
        assert sol.kv_cache_bytes(num_layers, B, H_kv, S, D, np.dtype(dtype), D_v=D_v) == sum(a.nbytes for a in cache)
    torch = pytest.importorskip("torch")
    cache = [torch.zeros(B, H_kv, S, D, dtype=torch.bfloat16) for _ in range(2 * num_layers)]
    nbytes = sum(t.nbytes for t in cache)
    assert sol.kv_cache_bytes(num_layers, B, H_kv, S, D, "bfloat16") == nbytes
    assert sol.kv_cache_bytes(num_layers, B, H_kv, S, D, torch.bfloat16) == nbytes  # a torch dtype: its itemsize
    assert ref.kv_cache_bytes(num_layers, B, H_kv, S, D, torch.bfloat16) == nbytes


def test_solution_and_reference_agree_on_sizes_and_every_dtype_form(sol):
    sizes = [(2, 3, 5, 7, 4, 6), (1, 1, 9, 4, 3, 8), (3, 2, 6, 6, 5, 5), (2, 1, 0, 7, 4, 6), (4, 2, 1, 13, 8, 2)]
    for dims, (dtype, itemsize) in itertools.product(sizes, DTYPE_FORMS):
        for materialize in (True, False):
            got = sol.attention_memory_bytes(*dims, dtype, materialize)
            assert got == ref.attention_memory_bytes(*dims, dtype, materialize), (dims, dtype, materialize)
        B, H, L, S, D, D_v = dims
        elements = B * H * (L * D + S * D + S * D_v + L * D_v + L * S)
        assert sol.attention_memory_bytes(*dims, dtype) == elements * itemsize
        assert sol.kv_cache_bytes(3, B, H, S, D, dtype) == ref.kv_cache_bytes(3, B, H, S, D, dtype) == \
            2 * 3 * B * H * S * D * itemsize
    for dims in sizes:
        for causal_ in (False, True):
            assert sol.attention_flops(*dims, causal=causal_) == ref.attention_flops(*dims, causal=causal_)


def test_counts_are_exact_python_ints_past_int64(sol):
    big = (2 ** 12, 2 ** 10, 3000, 4096, 2 ** 17, 2 ** 15)
    for value in (sol.attention_flops(*big), sol.attention_flops(*big, causal=True),
                  sol.attention_memory_bytes(2 ** 20, 2 ** 10, 2 ** 16, 3 * 2 ** 15, 128, 96, "bfloat16"),
                  sol.kv_cache_bytes(80, 2 ** 16, 128, 2 ** 24, 128, 4)):
        assert type(value) is int and value > 2 ** 63
    assert sol.attention_flops(*big) == ref.attention_flops(*big)
    assert sol.attention_flops(*big, causal=True) == ref.attention_flops(*big, causal=True)


def test_negative_sizes_raise_and_zero_sizes_count_nothing(sol):
    for f, args in ((sol.attention_flops, (2, 3, -1, 7, 4, 6)), (sol.attention_memory_bytes, (2, 3, 5, 7, -4, 6)),
                    (sol.kv_cache_bytes, (2, 3, 4, -7, 5, "float16"))):
        with pytest.raises(ValueError):
            f(*args)
    assert sol.kv_cache_bytes(2, 3, 4, 0, 5, "float16") == 0
    assert sol.attention_flops(2, 3, 0, 7, 4, 6, causal=True) == 0


def test_the_numpy_module_never_imports_torch():
    """cost is graded where torch does not exist: neither the solution nor the stub may import it."""
    for path in (ROOT / "solutions" / "attnlab" / "cost.py", ROOT / "src" / "attnlab" / "cost.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] == "torch" for n in names), (path, ast.dump(node))


def test_a_numpy_dtype_cannot_cross_the_wire():
    """Why the grader passes dtypes as names and ints (this file checks np.dtype objects directly)."""
    from autograde.wire import WireError, encode

    with pytest.raises(WireError):
        encode(np.dtype("float32"), [])
