"""attnlab.flash (notebook 08): online_softmax, online_softmax_update, tiled_attention (and fast_tiled_attention).

* online_softmax is a NumPy exercise graded in the module's PyTorch worker (profile "torch"): flash.py
  imports torch at the top, which a NumPy worker would refuse (the whole exercise would be `forbidden`).
  Graded there, a submission that calls PyTorch's softmax inside it is forbidden.
* Its trace is what proves streaming: one (block_index, running_max, running_sum) per block, in order.
* tiled_attention builds on online_softmax_update, which the engine answers with the reference while
  tiled_attention is graded (declared dependency): a broken helper costs its own points, and in
  tiled_attention only the memory case, which runs the learner's own helper (4096 tiles answered from the
  judge would exceed the engine's 2000 dependency calls and most of the time budget).
"""
import shutil
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from autograde import registry
from autograde.graders import flash as grader
from autograde.references import flash as ref
from autograde.runner import InProcessBackend, grade_submission, grade_with_backend
from autograde.sandbox import Limits
from conftest import run_cli, solutions_package

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sol():
    with solutions_package() as load:
        yield load("flash")


def _submission(folder, extra):
    """The instructor's package with code appended to flash.py."""
    shutil.copytree(ROOT / "solutions" / "attnlab", folder / "attnlab", ignore=shutil.ignore_patterns("__pycache__"))
    path = folder / "attnlab" / "flash.py"
    path.write_text(path.read_text() + "\n" + textwrap.dedent(extra))
    return folder


def _failures(entry):
    return [t["message"] for t in entry["tests"] if not t["passed"] and not t.get("skipped")]


# ------------------------------------------------------------------------------------ online_softmax
def test_online_softmax_is_graded_in_the_torch_worker_with_numpy_inputs():
    ex = registry.get("flash.online_softmax")
    assert ex.profile == "torch" and ("torch", "softmax") in ex.forbidden
    source = (ROOT / "solutions" / "attnlab" / "flash.py").read_text()
    assert "\nimport torch\n" in source  # why: a "numpy" profile would refuse this module's import


def test_the_trace_describes_the_prefixes_block_by_block(sol):
    x = np.random.default_rng(0).standard_normal((2, 3, 37))
    weights, trace = sol.online_softmax(x, 8, return_trace=True)
    assert isinstance(sol.online_softmax(x, 8), np.ndarray)
    assert [b for b, _, _ in trace] == [0, 1, 2, 3, 4]
    for b, running_max, running_sum in trace:
        stop = min(8 * (b + 1), 37)
        np.testing.assert_array_equal(running_max, x[..., :stop].max(-1))
        np.testing.assert_allclose(running_sum, np.exp(x[..., :stop] - running_max[..., None]).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(weights, torch.softmax(torch.from_numpy(x), -1).numpy(), rtol=1e-12)


def test_all_minus_inf_rows_give_zeros_and_float16_accumulates_in_float32(sol):
    x = np.zeros((3, 20))
    x[0] = -np.inf
    x[1, :9] = -np.inf
    weights, trace = sol.online_softmax(x, 4, return_trace=True)
    assert not np.isnan(weights).any() and (weights[0] == 0).all()
    assert trace[1][1][1] == -np.inf and trace[1][2][1] == 0 and trace[2][2][1] == 3
    half = np.full((2, 4000), 0.5, dtype=np.float16)
    w16, trace16 = sol.online_softmax(half, 16, return_trace=True)
    assert w16.dtype == np.float16 and trace16[-1][2].dtype == np.float32
    assert trace16[-1][2][0] == 4000  # a float16 sum would stall at 2048 + steps of 2


def test_the_reference_matches_the_solution(sol):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 29)) * 5
    x[1, :10] = -np.inf
    (w_ref, t_ref), (w_sol, t_sol) = ref.online_softmax(x, 6, True), sol.online_softmax(x, 6, True)
    np.testing.assert_allclose(w_ref, w_sol, rtol=1e-12)
    for (a, m_a, l_a), (b, m_b, l_b) in zip(t_ref, t_sol):
        assert a == b
        np.testing.assert_array_equal(m_a, m_b)
        np.testing.assert_allclose(l_a, l_b, rtol=1e-12)


@pytest.mark.slow
def test_pytorch_softmax_inside_online_softmax_is_forbidden_in_the_sandbox(tmp_path):
    sub = _submission(tmp_path, """
        def online_softmax(x, block_size, return_trace=False):
            t = torch.from_numpy(np.asarray(x, dtype=np.float64))
            weights = torch.softmax(t, dim=-1).numpy().astype(np.asarray(x).dtype)
            return (weights, []) if return_trace else weights
        """)
    (entry,) = grade_submission(sub, ["flash.online_softmax"])["exercises"]
    assert entry["status"] == "forbidden" and entry["points"] == 0
    assert "softmax" in " ".join(_failures(entry))


# ------------------------------------------------------------------------------ online_softmax_update
def test_the_update_chained_over_blocks_is_the_closed_form(sol):
    torch.manual_seed(0)
    s, v = torch.randn(2, 5, 13, dtype=torch.float64), torch.randn(2, 13, 6, dtype=torch.float64)
    s[0, 0] = float("-inf")
    state = grader._empty_state((2,), 5, 6, torch.float64)
    for j0 in range(0, 13, 4):
        state = sol.online_softmax_update(*state, s[..., j0:j0 + 4], v[..., j0:j0 + 4, :])
        ref_state = grader._closed_form(s[..., :j0 + 4], v[..., :j0 + 4, :])
        for got, want in zip(state, ref_state):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    m, l, acc = state
    assert not torch.isnan(acc).any() and (acc[0, 0] == 0).all() and l[0, 0] == 0
    out = acc[0, 1:] / l[0, 1:, None]
    torch.testing.assert_close(out, torch.softmax(s[0, 1:], -1) @ v[0])


def test_the_reference_update_answers_like_the_solution_in_float32(sol):
    torch.manual_seed(1)
    m, l, acc = grader._state_after(torch.randn(3, 4, 7), torch.randn(3, 7, 5), torch.float32)
    s, v = torch.randn(3, 4, 9).half() + 2, torch.randn(3, 9, 5).half()
    for got, want in zip(ref.online_softmax_update(m, l, acc, s, v), sol.online_softmax_update(m, l, acc, s, v)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)


# ----------------------------------------------------------------------------------- tiled_attention
def test_the_solution_builds_tiled_attention_from_the_update(sol, monkeypatch):
    calls = []
    real = sol.online_softmax_update
    monkeypatch.setattr(sol, "online_softmax_update", lambda *a: calls.append(a[3].shape) or real(*a))
    q, k, v = torch.randn(1, 40, 8), torch.randn(1, 40, 8), torch.randn(1, 40, 4)
    sol.tiled_attention(q, k, v, block_q=16, block_k=16)
    assert len(calls) == 9 and calls[-1] == (1, 8, 8)  # 3 x 3 tiles, the last one 8 x 8
    calls.clear()
    sol.tiled_attention(q, k, v, block_q=16, block_k=16, causal=True)
    assert len(calls) == 6  # causal: 1 + 2 + 3 tiles


def test_tiled_attention_declares_the_update_and_keeps_its_memory_proof():
    ex = registry.get("flash.tiled_attention")
    assert ex.deps == ("flash.online_softmax_update",)
    memory = next(c for c in ex.cases if c.memory_budget_mb)
    assert memory.memory_budget_mb == 64 and grader.MEMORY_L == 8192
    assert grader.MEMORY_L ** 2 * 4 > 2 * (memory.memory_budget_mb << 20)  # one score matrix cannot fit
    assert (grader.MEMORY_L // 128) ** 2 > Limits().dep_calls  # why that case runs the learner's own helper


def test_in_process_the_solution_scores_full_marks(sol):
    report = grade_with_backend(InProcessBackend({f"flash.{n}": getattr(sol, n) for n in
                                                  ("online_softmax", "online_softmax_update", "tiled_attention",
                                                   "fast_tiled_attention")},
                                                 heavy=False), ["flash"])
    assert report["total"] == report["max_total"] == 12.0, [_failures(e) for e in report["exercises"]]


@pytest.mark.slow
def test_a_broken_helper_costs_its_own_points_and_only_the_memory_case_of_the_kernel(tmp_path):
    """In the sandbox, tiled_attention's calls of online_softmax_update reach the reference, except in the
    memory case, which runs the learner's own (broken) helper."""
    sub = _submission(tmp_path, """
        def online_softmax_update(m, l, acc, scores_block, v_block):   # forgets to rescale acc
            s = scores_block.to(acc.dtype)
            m_new = torch.maximum(m, s.amax(-1))
            shift = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
            p = torch.exp(s - shift[..., None])
            return m_new, torch.exp(m - shift) * l + p.sum(-1), acc + p @ v_block.to(acc.dtype)
        """)
    entries = {e["id"]: e for e in grade_submission(sub, ["flash.online_softmax_update", "flash.tiled_attention"])
               ["exercises"]}
    update, tiled = entries["flash.online_softmax_update"], entries["flash.tiled_attention"]
    assert update["points"] < update["max_points"]
    assert any("multiply the accumulator by c = exp(m - m_new)" in m for m in _failures(update))
    failing = [t["name"] for t in tiled["tests"] if not t["passed"] and not t.get("skipped")]
    assert failing == [next(c.name for c in registry.get("flash.tiled_attention").cases if c.memory_budget_mb)], \
        _failures(tiled)


@pytest.mark.parametrize("causal", [False, True])
def test_the_fast_kernel_shares_query_blocks_among_threads_with_the_same_bits(sol, causal, monkeypatch):
    """threads=3 runs three threads, each on one core, computes every query block exactly as one thread does
    (each block is independent), puts PyTorch's thread count back, and a thread's error reaches the caller."""
    g = torch.Generator().manual_seed(7)
    q, k = torch.randn(2, 3, 700, 40, generator=g), torch.randn(2, 3, 1100, 40, generator=g)
    v = torch.randn(2, 3, 1100, 24, generator=g)
    before, calls, set_threads = torch.get_num_threads(), [], torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append((threading.get_ident(), n)), set_threads(n)))
    one = sol.fast_tiled_attention(q, k, v, block_q=128, block_k=96, causal=causal, threads=1)
    assert calls == []
    three = sol.fast_tiled_attention(q, k, v, block_q=128, block_k=96, causal=causal, threads=3)
    workers = {ident for ident, n in calls if n == 1}
    assert len(workers) == 3 and threading.get_ident() not in workers, calls
    assert torch.get_num_threads() == before
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])
    expected, _ = ref.tiled_attention(q.double(), k.double(), v.double(), causal=causal)
    assert torch.allclose(three[0].double(), expected, atol=1e-5)
    with pytest.raises(RuntimeError):  # out= refuses inputs that require grad, inside a worker thread
        sol.fast_tiled_attention(q.requires_grad_(), k, v, block_q=128, threads=2)
    assert torch.get_num_threads() == before
