"""Grader for attnlab.flash (notebook 08): tiled_attention, a PyTorch kernel proven to be tiled.

Oracle: PyTorch's F.scaled_dot_product_attention in float64 (output) and torch.logsumexp (lse), with the
course's end-aligned causal rule (autograde.references.oracles), rounded once to the dtypes the exercise
returns; our NumPy float64 reference (autograde.references.flash) is cross-checked against it in the tests.

Three independent lines keep PyTorch's own attention out: the judge reads the submission's source
(autograde.scan), a profile hook recognises the Python callables and a dispatch mode the PyTorch operators
as they run. The proof that the kernel is tiled is the kernel's: the "memory budget" case runs in a fresh
worker whose address space is limited to what it uses after importing torch plus 64 MiB (confirmed by the
judge from /proc/<pid>/limits before and after), on L = S = 8192, where one float32 L x S score matrix is
256 MiB. The GPU cases run where the grader has CUDA, and are skipped (not counted) elsewhere.
"""
import math

import numpy as np

from ..compare import dtype_hint
from ..framework import Exercise
from ..references import flash as ref
from ..references import oracles
from ..tolerances import exp_rtol
from .inputs import qkv

FORBID_TORCH_ATTENTION = (
    ("torch", "scaled_dot_product"),      # F.scaled_dot_product_attention, aten._scaled_dot_product_*
    ("torch", "multi_head_attention"),    # F.multi_head_attention_forward
    ("torch", "MultiheadAttention"),      # nn.MultiheadAttention.forward
    ("torch", "_flash_attention"),        # aten._flash_attention_forward (CUDA)
    ("torch", "_efficient_attention"),    # aten._efficient_attention_forward (CUDA)
)
SCAN_NAMES = ("scaled_dot_product", "multi_head_attention", "MultiheadAttention", "_flash_attention_forward",
              "_efficient_attention_forward", "sdpa_kernel")
BUDGET_MB = 64
MEMORY_L = 8192
MATERIALISE_HINT = ("a tiled kernel never holds an L x S matrix: compute scores one (block_q, block_k) tile at a "
                    "time and keep only the running max m, sum l and accumulator per query")

tiled = Exercise("flash.tiled_attention", points=5, reference=ref.tiled_attention, profile="torch",
                 forbidden=FORBID_TORCH_ATTENTION, scan_names=SCAN_NAMES)


def _check(t, q, k, v, what="", **kwargs):
    """Call the learner with (q, k, v, **kwargs) and compare output and lse with the float64 oracle."""
    import torch

    got = t.expect_tuple(t.call(q, k, v, **kwargs), 2)
    out, lse = oracles.attention(q.cpu(), k.cpu(), v.cpu(), causal=kwargs.get("causal", False),
                                 scale=kwargs.get("scale"))
    lse_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    scale = kwargs.get("scale") or q.shape[-1] ** -0.5
    magnitude = float((q.double().abs().amax() * k.double().abs().amax()).item()) * q.shape[-1] * scale
    rtol = exp_rtol(q.dtype, magnitude)
    prefix = f"{what}: " if what else ""
    t.expect(got[0], out.to(q.dtype).to(q.device), what=prefix + "output (..., L, D_v)", rtol=rtol)
    t.expect(got[1], lse.to(lse_dtype).to(q.device), what=prefix + "lse (..., L)")
    return got


@tiled.case("float32 (2, 3): L=5, S=7, D=4, D_v=6, blocks 2 x 3", "every dimension distinct, several tiles "
            "each way, the last ones partial")
def _(t):
    _check(t, *qkv(t.rng, dtype="float32", torch=True), block_q=2, block_k=3)


@tiled.case("L=37, S=53, blocks 16 x 16", "lengths that are not multiples of the blocks: every key counts")
def _(t):
    _check(t, *qkv(t.rng, lead=(2,), L=37, S=53, D=8, D_v=5, dtype="float32", torch=True), block_q=16, block_k=16)


@tiled.case("default blocks, L=300, S=260", "the default 128 x 128 tiles, partial at both ends")
def _(t):
    _check(t, *qkv(t.rng, lead=(1, 2), L=300, S=260, D=16, D_v=12, dtype="float32", torch=True))


@tiled.case("causal L=S=50, blocks 16 x 8", "causal self-attention: the lower triangle, diagonal tiles masked, "
            "future tiles skipped")
def _(t):
    _check(t, *qkv(t.rng, lead=(3,), L=50, S=50, D=4, D_v=6, dtype="float32", torch=True), block_q=16,
           block_k=8, causal=True)


@tiled.case("causal L=9 < S=30, blocks 4 x 8", "decoding with a cache: the queries are the last 9 positions, so "
            "query i sees keys j <= i + 21 (end-aligned)")
def _(t):
    _check(t, *qkv(t.rng, lead=(2, 2), L=9, S=30, D=4, D_v=3, dtype="float32", torch=True), block_q=4,
           block_k=8, causal=True)


@tiled.case("causal L=12 > S=5, blocks 4 x 2", "queries that see no key (the first 7) get a zero output and "
            "lse = -inf, never NaN")
def _(t):
    _check(t, *qkv(t.rng, lead=(2,), L=12, S=5, D=3, D_v=4, dtype="float32", torch=True), block_q=4,
           block_k=2, causal=True)


@tiled.case("float64, scale=0.3, blocks 8 x 5", "an explicit scale replaces 1/sqrt(D); float64 stays float64 "
            "(output and lse)")
def _(t):
    _check(t, *qkv(t.rng, lead=(2,), L=11, S=23, D=6, D_v=7, torch=True), block_q=8, block_k=5, scale=0.3)


@tiled.case("large logits, blocks 4 x 4", "scores of magnitude ~1e3 that grow from tile to tile stay finite and "
            "exact (the running max must be carried and the accumulator rescaled)")
def _(t):
    import torch

    q, k, v = qkv(t.rng, lead=(2,), L=8, S=24, D=4, D_v=5, dtype="float64", torch=True)
    ramp = torch.linspace(0.2, 1.0, 24, dtype=torch.float64)[:, None]  # later keys score higher
    _check(t, (q * 15).float(), (k.abs() * ramp * 15).float(), v.float(), block_q=4, block_k=4)


@tiled.case("float16, L=64, S=1000, blocks 64 x 128", "float16 inputs accumulate in float32 (a float16 running sum "
            "of ~1000 terms loses the small ones): output float16, lse float32")
def _(t):
    import torch

    q, k, v = qkv(t.rng, lead=(1, 2), L=64, S=1000, D=16, D_v=8, torch=True)
    _check(t, (q * 0.05).to(torch.float16), k.to(torch.float16), (v + 2.0).to(torch.float16), block_q=64,
           block_k=128)


@tiled.case("bfloat16, causal L=40, S=70, blocks 16 x 32", "bfloat16 inputs: output bfloat16, lse float32, causal")
def _(t):
    import torch

    q, k, v = qkv(t.rng, lead=(2,), L=40, S=70, D=8, D_v=6, torch=True)
    _check(t, q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16), block_q=16, block_k=32,
           causal=True)


@tiled.case(f"memory budget: L=S={MEMORY_L}, D=64, {BUDGET_MB} MiB", f"the kernel is tiled: it runs in a worker "
            f"whose address space may grow by only {BUDGET_MB} MiB (kernel-enforced; one float32 L x S score "
            f"matrix is {MEMORY_L * MEMORY_L * 4 >> 20} MiB) and still gives exact attention",
            memory_budget_mb=BUDGET_MB, memory_hint=MATERIALISE_HINT, diagnose=False, heavy=True)
def _(t):
    import torch

    q, k, v = qkv(t.rng, lead=(1,), L=MEMORY_L, S=MEMORY_L, D=64, D_v=64, dtype="float32", torch=True)
    got = t.expect_tuple(t.call(q, k, v), 2)
    rows = torch.from_numpy(np.sort(t.rng.choice(MEMORY_L, 256, replace=False)))  # exact check on 256 rows
    out, lse = oracles.attention(q[:, rows], k, v)
    t.expect(got[0][:, rows], out.float(), what="output on 256 sampled rows")
    t.expect(got[1][:, rows], lse.float(), what="lse on 256 sampled rows")


@tiled.case("cuda: float16, L=S=1024, default blocks", "on the GPU the same code gives exact attention on the "
            "device (output float16 on cuda, lse float32)", device="cuda")
def _(t):
    import torch

    q, k, v = qkv(t.rng, lead=(2, 4), L=1024, S=1024, D=64, D_v=64, torch=True, device="cuda")
    _check(t, q.half(), k.half(), v.half())


@tiled.case("cuda: float32 causal L=300 < S=700", "on the GPU: causal end-aligned, partial tiles", device="cuda")
def _(t):
    _check(t, *qkv(t.rng, lead=(2,), L=300, S=700, D=32, D_v=48, dtype="float32", torch=True, device="cuda"),
           causal=True)


# ------------------------------------------------------------------------------------- mutants
def _kernel(q, k, v, block_q=128, block_k=128, causal=False, scale=None, *, rescale=True, carry_max=True,
            drop_partial=False, start_aligned=False, accumulate_in_input=False, lse_plus_max=True,
            guard=True, use_scale=True, cast_back=True, lse_float32=True, skip_from_first_query=False):
    """The solution's loop with one switch per known mistake."""
    import torch

    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = (1.0 / math.sqrt(D) if scale is None else scale) if use_scale else 1.0
    half = q.dtype in (torch.float16, torch.bfloat16)
    work = q.dtype if (accumulate_in_input or not half) else torch.float32
    lead = q.shape[:-2]
    out = torch.zeros(lead + (L, v.shape[-1]), dtype=work)
    lse = torch.full(lead + (L,), float("-inf"), dtype=work)
    offset = 0 if start_aligned else S - L
    key_stop = S - S % block_k if drop_partial else S
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        qi = q[..., i0:i1, :].to(work) * scale
        m = torch.full(lead + (i1 - i0,), float("-inf"), dtype=work)
        l = torch.zeros(lead + (i1 - i0,), dtype=work)
        acc = torch.zeros(lead + (i1 - i0, v.shape[-1]), dtype=work)
        last_query = i0 if skip_from_first_query else i1 - 1
        key_end = min(key_stop, last_query + 1 + offset) if causal else key_stop
        for j0 in range(0, max(key_end, 0), block_k):
            j1 = min(j0 + block_k, S)
            s = qi @ k[..., j0:j1, :].to(work).transpose(-1, -2)
            if causal:
                visible = torch.arange(j0, j1)[None, :] <= torch.arange(i0, i1)[:, None] + offset
                s = s.masked_fill(~visible, float("-inf"))
            tile_max = s.amax(dim=-1)
            m_new = torch.maximum(m, tile_max) if carry_max else tile_max
            m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new) if guard else m_new
            p = torch.exp(s - m_safe[..., None])
            c = torch.exp(m - m_safe) if carry_max else torch.ones_like(m_safe)
            l = c * l + p.sum(dim=-1)
            acc = (c[..., None] * acc if rescale else acc) + p @ v[..., j0:j1, :].to(work)
            m = m_new
        if guard:
            seen = l > 0
            out[..., i0:i1, :] = acc / torch.where(seen, l, torch.ones_like(l))[..., None]
            log_l = torch.log(torch.where(seen, l, torch.ones_like(l)))
            lse[..., i0:i1] = torch.where(seen, (m + log_l) if lse_plus_max else log_l, lse[..., i0:i1])
        else:
            out[..., i0:i1, :] = acc / l[..., None]
            lse[..., i0:i1] = (m + torch.log(l)) if lse_plus_max else torch.log(l)
    lse_dtype = torch.float32 if (half and lse_float32) else q.dtype
    return (out.to(q.dtype) if cast_back else out), lse.to(lse_dtype)


def _mutant(name, hint, **switch):
    tiled.mutant(name, hint)(lambda q, k, v, block_q=128, block_k=128, causal=False, scale=None:
                             _kernel(q, k, v, block_q, block_k, causal, scale, **switch))


_mutant("no rescale of the accumulator", "when the running max grows, multiply the accumulator by exp(m_old - "
        "m_new) as you do the running sum: values summed under the old max are otherwise over-weighted",
        rescale=False)
_mutant("max not carried across tiles", "carry the running max from tile to tile (m_new = max(m, tile max)) and "
        "rescale l and the accumulator by exp(m - m_new): a max per tile mixes exponentials of different shifts",
        carry_max=False)
_mutant("last partial tile dropped", "visit the last, partial key tile too: range(0, S, block_k) with "
        "j1 = min(j0 + block_k, S)", drop_partial=True)
_mutant("causal start-aligned", "align the causal mask to the end: query i sees key j when j <= i + (S - L) "
        "(the queries are the last L positions)", start_aligned=True)
_mutant("accumulating in float16", "accumulate float16/bfloat16 inputs in float32 (m, l and the accumulator), "
        "then cast the output back once: a half-precision running sum drops small terms", accumulate_in_input=True)
_mutant("lse off by the max", "the log-sum-exp is m + log(l): l was summed after subtracting the running max m",
        lse_plus_max=False)
_mutant("NaN for queries that see no key", "a row that has seen no key yet has m = -inf and exp(-inf - (-inf)) is "
        "NaN: shift by 0 for such rows, and give them output 0 and lse -inf", guard=False)
_mutant("forgot scale", "multiply the scores by scale = 1/sqrt(D) (or the scale argument)", use_scale=False)
_mutant("output left in float32", dtype_hint("float16", "float32"), cast_back=False)
_mutant("lse in half precision", "return lse in float32 for float16/bfloat16 inputs (the backward pass needs its "
        "precision)", lse_float32=False)
_mutant("future block skip too early", "skip a key tile only when it is in the future of every query of the "
        "query block (of its last query, i1 - 1), not of its first", skip_from_first_query=True)


@tiled.mutant("materialising L x S", MATERIALISE_HINT)
def _(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
    import torch

    L, S = q.shape[-2], k.shape[-2]
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    s = (q.to(work) @ k.to(work).transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:
        s = s.masked_fill(torch.arange(S)[None, :] > torch.arange(L)[:, None] + (S - L), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    weights = torch.nan_to_num(torch.exp(s - lse[..., None]), nan=0.0)
    return (weights @ v.to(work)).to(q.dtype), lse


# ---------------------------------------------------------------------------------- alternatives
@tiled.alternative("log-space running sum: track lse directly")
def _(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
    import torch

    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    outs, lses = [], []
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        qi = q[..., i0:i1, :].to(work)
        lse = torch.full(qi.shape[:-1], float("-inf"), dtype=work)
        acc = torch.zeros(qi.shape[:-1] + (v.shape[-1],), dtype=work)
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            s = torch.einsum("...qd,...kd->...qk", qi, k[..., j0:j1, :].to(work)) * scale
            if causal:
                future = torch.arange(j0, j1)[None, :] > torch.arange(i0, i1)[:, None] + (S - L)
                s = s.masked_fill(future, float("-inf"))
            tile_lse = torch.logsumexp(s, dim=-1)
            new_lse = torch.logaddexp(lse, tile_lse)
            finite = torch.isfinite(new_lse)
            base = torch.where(finite, new_lse, torch.zeros_like(new_lse))
            acc = acc * torch.exp(lse - base)[..., None] + torch.exp(s - base[..., None]) @ v[..., j0:j1, :].to(work)
            lse = new_lse
        outs.append(acc)
        lses.append(lse)
    return torch.cat(outs, dim=-2).to(q.dtype), torch.cat(lses, dim=-1)


@tiled.alternative("one query block per row group, baddbmm-free, division at each step")
def _(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
    import torch

    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=work)
    lse = torch.full(q.shape[:-1], float("-inf"), dtype=work)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        m = torch.full(q.shape[:-2] + (i1 - i0,), float("-inf"), dtype=work)
        l = torch.zeros_like(m)
        o = torch.zeros(q.shape[:-2] + (i1 - i0, v.shape[-1]), dtype=work)  # normalised output so far
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            s = (q[..., i0:i1, :].to(work) * scale) @ k[..., j0:j1, :].to(work).transpose(-1, -2)
            if causal:
                s = s.masked_fill(torch.arange(j0, j1)[None, :] > torch.arange(i0, i1)[:, None] + (S - L),
                                  float("-inf"))
            m_new = torch.maximum(m, s.amax(-1))
            shift = torch.nan_to_num(m_new, neginf=0.0)
            p = torch.exp(s - shift[..., None])
            l_new = torch.exp(m - shift) * l + p.sum(-1)
            denom = torch.where(l_new > 0, l_new, torch.ones_like(l_new))
            o = (o * (torch.exp(m - shift) * l)[..., None] + p @ v[..., j0:j1, :].to(work)) / denom[..., None]
            m, l = m_new, l_new
        out[..., i0:i1, :] = o
        lse[..., i0:i1] = torch.where(l > 0, m + torch.log(torch.where(l > 0, l, torch.ones_like(l))),
                                      lse[..., i0:i1])
    return out.to(q.dtype), lse


EXERCISES = [tiled]
