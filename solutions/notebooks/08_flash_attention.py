# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · FlashAttention: online softmax and tiling, on GPU and CPU
#
# Standard attention computes the whole score matrix $QK^\top$ `(..., L, S)`, stores it, normalises it and
# reads it back to multiply by $V$. FlashAttention (Dao et al. 2022) computes exactly the same output
# without ever holding that matrix: it reads the keys block by block and keeps, per query, a running
# maximum, a running sum and a running weighted sum of values. This notebook builds that kernel from its two
# ideas, the online softmax and tiling, checks under a memory cap that it never holds an $L \times S$
# matrix, and runs it on the CPU and, where there is one, the GPU.
#
# **You will learn**
# - where the memory of standard attention goes, measured (the memory wall);
# - the online softmax: one pass with a running maximum and a running sum, and the rescaling that keeps it
#   exact;
# - the same step for attention, with a running weighted sum of values, and why a query that has seen only
#   masked keys must not turn into NaN;
# - tiling queries and keys/values so that only `(block_q, block_k)` tiles exist, and how the grader proves it;
# - causal block skipping, measured;
# - the log-sum-exp output: what the backward pass needs, and how it merges attention over two halves of
#   the keys (the split-KV idea behind Flash-Decoding);
# - the IO model of Dao et al. 2022: $\Theta(Nd + N^2)$ against $\Theta(N^2 d^2 / M)$ slow-memory accesses;
# - the same kernel on CPU and GPU against PyTorch's `scaled_dot_product_attention`;
# - where a tiled kernel's time goes on a CPU, and five changes that bring a Python-level kernel close to
#   PyTorch's fused one.
#
# **You will build**, in `src/attnlab/flash.py`: `online_softmax` (NumPy), then `online_softmax_update`
# and `tiled_attention` (PyTorch, any device), each on top of the one before; and, as a challenge,
# `fast_tiled_attention`, the same kernel made fast on a CPU.
#
# Shape legend: B batch, H heads, L queries, S keys/values, D query/key width, D_v value width; `bq`, `bk`
# the query and key tile sizes. The FlashAttention paper writes $N$ for the sequence length and $d$ for the
# head width ($N = L = S$, $d = D$). Masks are boolean and mean *may attend*; causal masks are end-aligned
# (query i sees key j when $j \le i + (S - L)$).

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import math
import os
import platform
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle
from matplotlib.ticker import NullFormatter

from autograde import bench

QUICK = os.environ.get("ATTNLAB_QUICK") == "1"  # CI smoke runs only: a shorter race in section 9
torch.set_num_threads(1)  # a shared 2-core machine: one thread gives steady timings
CPU = bench.machine("cpu")
MEASURED_ON = f"{platform.machine()} CPU, torch {torch.__version__}, 1 thread"
print(f"torch {torch.__version__}, numpy {np.__version__}, {platform.machine()} CPU ({CPU})")


def peak_mib(fn):
    """(fn(), MiB of fresh memory the call touched at its peak): growth of the process's peak resident set
    (Linux VmHWM), the CPU measure `attnlab bench` uses; None where /proc cannot be read."""
    result, peak = bench.cpu_peak_bytes(fn)
    return result, (None if peak is None else peak / 2 ** 20)


def seconds(fn, repeat=3):
    """Median wall time of `repeat` calls."""
    return bench.median_seconds(fn, "cpu", repeat)


def label_lengths(ax, values):
    """Log-scale axes with one plain tick label per measured length (no minor-tick labels)."""
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def row_softmax(x):
    """Softmax over the last axis, plain NumPy (notebook 01 has the graded version)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

# %% [markdown]
# ## 1. The memory wall
#
# The textbook implementation (Algorithm 0 in Dao et al. 2022) runs three steps, each reading its inputs from
# memory and writing its result back:
#
# | step | reads | writes |
# |---|---|---|
# | $S = QK^\top / \sqrt{D}$ | $Q$ `(L, D)`, $K$ `(S, D)` | $S$ `(L, S)` |
# | $P = \mathrm{softmax}(S)$ | $S$ `(L, S)` | $P$ `(L, S)` |
# | $O = PV$ | $P$ `(L, S)`, $V$ `(S, D_v)` | $O$ `(L, D_v)` |
#
# per head and per sequence ($S$ in the first column is the paper's name for the score matrix; in a shape,
# S is the number of keys). The inputs and the output grow like $L$; the two middle matrices grow like
# $L \cdot S$. In float32 one $4096 \times 4096$ matrix is 64 MiB, and at $L = S = 16384$ it is 1 GiB, for
# *each* head of *each* sequence in the batch. We measure the peak memory of the naive code (the two
# matrices exist together while the softmax runs) and of PyTorch's `F.scaled_dot_product_attention`,
# one head, $D = 64$, on this CPU.

# %%
lengths = [256, 512, 1024, 2048, 4096]
warm = torch.randn(1, 1, 64, 64)  # one call of each first: one-off set-up costs stay out of the figures
bench.naive_attention(warm, warm, warm)
F.scaled_dot_product_attention(warm, warm, warm)
naive_peak, sdpa_peak = [], []
for L in lengths:
    q, k, v = (torch.randn(1, 1, L, 64) for _ in range(3))
    naive_peak.append(peak_mib(lambda: bench.naive_attention(q, k, v))[1])
    sdpa_peak.append(peak_mib(lambda: F.scaled_dot_product_attention(q, k, v))[1])
    del q, k, v

two_matrices = [2 * L * L * 4 / 2 ** 20 for L in lengths]  # scores + weights, float32
slope = np.polyfit(np.log(lengths[2:]), np.log(naive_peak[2:]), 1)[0]
for L, a, b, c in zip(lengths, naive_peak, two_matrices, sdpa_peak):
    print(f"L = S = {L:5d}: naive {a:7.1f} MiB (two L x S float32 matrices: {b:6.1f} MiB), SDPA {c:5.2f} MiB")
print(f"fitted slope of the naive peak on log-log axes (L >= 1024): {slope:.2f}")

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.loglog(lengths, naive_peak, "o-", label=f"naive attention (slope {slope:.2f})")
ax.loglog(lengths, two_matrices, "k--", lw=1, label="2 L² x 4 bytes")
ax.loglog(lengths, np.maximum(sdpa_peak, 1e-2), "s-", label="F.scaled_dot_product_attention")
ax.set(xlabel="sequence length L = S", ylabel="peak memory of one call (MiB)",
       title=f"One head, D = 64, float32\n({MEASURED_ON})")
label_lengths(ax, lengths)
ax.legend()
plt.show()

# %% [markdown]
# The naive peak follows the two $L \times S$ matrices (slope 2 on log-log axes); PyTorch's fused kernel
# stays near the size of its output. On a GPU the same matrices must also travel to and from the GPU's
# main memory (HBM), which is slow next to the on-chip SRAM: the softmax, masking and dropout steps of
# standard attention are bound by that traffic, not by arithmetic (Dao et al. 2022, section 2). The rest of
# this notebook removes both the memory and the traffic.
#
# ## 2. The online softmax
#
# **Intuition.** To normalise a row you need its maximum (for stability, notebook 01) and then the sum of
# $e^{x_j - m}$: read naively, that is one pass for the max, one for the sum, one to normalise. The
# *online* softmax (Milakov and Gimelshein 2018) merges the first two: read the row in blocks, keep the
# largest value seen so far $m$ and the sum $l$ of $e^{x_j - m}$ over what was read, and whenever a block
# brings a larger maximum, shrink the old sum by $e^{m_{\text{old}} - m_{\text{new}}}$ so that every term
# is again relative to the current maximum. At the end $l$ is exactly $\sum_j e^{x_j - m}$.
#
# A row of 12 numbers in blocks of 4, by hand:

# %%
x_row = np.array([1.0, 3.0, 0.5, 2.0, 4.0, 1.5, 6.0, 0.0, 2.5, 5.0, 1.0, 3.5])
m, l = -np.inf, 0.0
print("block  block max  running max m  factor e^(m_old - m)  running sum l")
for b in range(3):
    block = x_row[4 * b:4 * b + 4]
    m_new = max(m, block.max())
    factor = np.exp(m - m_new)           # 0 for the first block (m = -inf)
    l = l * factor + np.exp(block - m_new).sum()
    m = m_new
    print(f"{b:5d}  {block.max():9.1f}  {m:13.1f}  {factor:20.4f}  {l:13.4f}")
print(f"one-pass (m, l) = ({m}, {l:.4f});  direct: max {x_row.max()}, sum {np.exp(x_row - x_row.max()).sum():.4f}")
print("weights equal softmax:", np.allclose(np.exp(x_row - m) / l, row_softmax(x_row)))

# %% [markdown]
# **The math, with shapes.** For scores `x` of shape `(..., N)` read in blocks $x_b$ of `block_size`
# entries, the state is $m$, $l$ of shape `(...,)`:
#
# $$m' = \max\big(m, \max_j x_{b,j}\big), \qquad l' = e^{m - m'}\, l + \sum_j e^{x_{b,j} - m'},
# \qquad \mathrm{softmax}(x) = \frac{e^{x - m_{\text{final}}}}{l_{\text{final}}}$$
#
# The factor $e^{m - m'} \le 1$; it is 1 when the maximum did not move. Two edge cases: before the first
# block $m = -\infty$, $l = 0$; and a row whose entries so far are all $-\infty$ (masked) has
# $m' = -\infty$, where $e^{-\infty - (-\infty)}$ is NaN: shift such rows by 0 instead. A fully masked row
# gets weights 0 (the course's rule from notebook 02).
#
# **Implement** `online_softmax(x, block_size, return_trace=False)` in `src/attnlab/flash.py` (NumPy):
#
# - one pass over the blocks `x[..., start:start + block_size]`, **in order**, the last one possibly shorter;
#   then the weights $e^{x - m}/l$, same shape and dtype as `x`, 0 for a row that is all $-\infty$;
# - with `return_trace=True` return `(weights, trace)`: `trace` is a list with one tuple
#   `(block_index, running_max, running_sum)` per block, in the order visited, where `running_max` and
#   `running_sum` are arrays of shape `x.shape[:-1]` (the state *after* that block). The grader checks
#   the trace against the prefixes `x[..., :stop]`, so it sees whether you really streamed;
# - float16 input: accumulate in float32 (the trace is float32) and cast the weights back once.
#
# It is graded with NumPy arrays in the same PyTorch process as the rest of `flash.py`, so the
# `import torch` at the top of the file is fine; PyTorch's softmax and logsumexp are off limits inside it.

# %%
from attnlab.flash import online_softmax

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 10)) * 2          # (B, H, N): every dim distinct
weights, trace = online_softmax(x, 4, return_trace=True)
print("weights", weights.shape, "| blocks", [entry[0] for entry in trace],
      "| running max / sum per block", trace[0][1].shape, trace[0][2].shape)
print("equals softmax:", np.allclose(weights, row_softmax(x)))

# the state of one row after each block, from the trace
row = (0, 1)
x_long = rng.standard_normal((2, 3, 64)) + np.linspace(0, 3, 64)  # a drift: the max keeps moving
_, trace = online_softmax(x_long, 8, return_trace=True)
ends = [min(8 * (b + 1), 64) for b, _, _ in trace]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(np.arange(1, 65), x_long[row], ".", color="0.6", label="x (one row)")
maxes = [mx[row] for _, mx, _ in trace]
ax1.step([0] + ends, [maxes[0]] + maxes, where="pre", label="running max m after each block")
ax1.set(xlabel="entries read", ylabel="score", title="running max: steps up when a block beats it")
ax1.legend(fontsize=8)
ax2.plot(ends, [sm[row] for _, _, sm in trace], "o-", label="running sum l (relative to the current m)")
ax2.plot(ends, [np.exp(x_long[row][:e] - x_long[row][:e].max()).sum() for e in ends], "k+", ms=10,
         label="sum of exp(x - max) over the prefix, direct")
ax2.set(xlabel="entries read", ylabel="l", title="running sum: old terms shrink when m jumps")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["check"]
check("flash.online_softmax")

# %% [markdown]
# ## 3. One step for attention: `online_softmax_update`
#
# Attention needs more than the weights: it needs $\sum_j \mathrm{softmax}(s)_j\, v_j$. So each query also
# carries an **accumulator**, the running sum of $e^{s_j - m} v_j$ over the keys read so far, rescaled by
# the same factor as $l$. For a block of `bq` queries and `bk` keys:
#
# | state / input | shape | start value |
# |---|---|---|
# | $m$ running max | `(..., bq)` | $-\infty$ |
# | $l$ running sum of $e^{s - m}$ | `(..., bq)` | 0 |
# | $\mathrm{acc}$ running sum of $e^{s - m} v$ | `(..., bq, D_v)` | 0 |
# | `scores_block` $s$ | `(..., bq, bk)` | scaled $q k^\top$, $-\infty$ where masked |
# | `v_block` | `(..., bk, D_v)` | |
#
# $$m' = \max(m, \max_j s_j), \quad c = e^{m - m'}, \quad l' = c\, l + \sum_j e^{s_j - m'}, \quad
# \mathrm{acc}' = c\,\mathrm{acc} + e^{s - m'}\, V_{\text{block}}$$
#
# After the last block, $\mathrm{acc} / l = \mathrm{softmax}(s)\,V$ over all the keys, and
# $m + \log l$ is the log-sum-exp of the scores. Once more, a query that has seen only masked keys keeps
# $m = -\infty$, $l = 0$, $\mathrm{acc} = 0$ and must not produce NaN (a causal tile above the diagonal, a
# padded key block).
#
# Dao et al. 2022 keep the output normalised instead: their Algorithm 1 divides by the new $\ell$ after every
# block. FlashAttention-2 keeps the unnormalised accumulator, as here, and divides once at the end, one of
# its cuts in non-matmul FLOPs (Dao 2023).
#
# **Implement** `online_softmax_update(m, l, acc, scores_block, v_block)` in `src/attnlab/flash.py`: it
# returns the new `(m, l, acc)`, in `acc`'s dtype and on its device. Use tensor operations only (no
# `.numpy()`), so it runs on a GPU as it is. `m`, `l`, `acc` carry the working precision (float32 when the
# attention inputs are float16 or bfloat16): cast a lower-precision `scores_block` or `v_block` up to
# `acc.dtype`.

# %%
from attnlab.flash import online_softmax_update

torch.manual_seed(0)
bq, S, D, D_v = 5, 13, 4, 6
q_b, k_all, v_all = torch.randn(2, 3, bq, D), torch.randn(2, 3, S, D), torch.randn(2, 3, S, D_v)
scores = q_b @ k_all.transpose(-1, -2) / math.sqrt(D)                   # (2, 3, bq, S)
m = torch.full((2, 3, bq), float("-inf"))
l = torch.zeros(2, 3, bq)
acc = torch.zeros(2, 3, bq, D_v)
for j0 in range(0, S, 4):                                               # blocks of 4, 4, 4 and 1 keys
    m, l, acc = online_softmax_update(m, l, acc, scores[..., j0:j0 + 4], v_all[..., j0:j0 + 4, :])
print("m", tuple(m.shape), "l", tuple(l.shape), "acc", tuple(acc.shape))
out = acc / l[..., None]
print("acc / l vs softmax(s) V:  max error", f"{(out - scores.softmax(-1) @ v_all).abs().max():.1e}")
print("acc / l vs PyTorch SDPA:  max error",
      f"{(out - F.scaled_dot_product_attention(q_b, k_all, v_all)).abs().max():.1e}")
print("m + log l vs logsumexp:   max error", f"{(m + l.log() - scores.logsumexp(-1)).abs().max():.1e}")

# %% tags=["check"]
check("flash.online_softmax_update")

# %% [markdown]
# ## 4. Tiling: no $L \times S$ matrix
#
# Now cut the queries into blocks of `bq` rows as well. For each query block, loop over the key blocks and
# fold each `(bq, bk)` tile of scores into that block's state with `online_softmax_update`; after the last
# key block, write the block's output $\mathrm{acc}/l$ and its log-sum-exp $m + \log l$. At any moment the
# kernel holds one tile of scores, one query block's state and the output, never the score matrix. On a GPU
# each query block goes to its own group of threads, and the tiles live in on-chip SRAM (Dao et al. 2022
# order the loops the other way round, keys outside; FlashAttention-2, Dao 2023, puts the queries outside,
# as here, so each query block's state never leaves fast memory).

# %%
def draw_tiling(ax_grid, ax_mem, L=512, S=640, bq=128, bk=128, i=2, j=3):
    """The (L, S) score matrix as tiles: the current query block, the tiles done, the one in fast memory."""
    for a in range(0, L, bq):
        for b in range(0, S, bk):
            done = a // bq == i and b // bk < j
            current = a // bq == i and b // bk == j
            colour = "tab:orange" if current else ("tab:blue" if done else "white")
            ax_grid.add_patch(Rectangle((b, a), bk, bq, facecolor=colour, edgecolor="0.3", alpha=0.8))
    ax_grid.add_patch(Rectangle((0, i * bq), S, bq, fill=False, edgecolor="tab:red", lw=2))
    ax_grid.add_patch(FancyArrowPatch((j * bk + bk / 2, i * bq - 20), (S - bk / 2, i * bq - 20),
                                      arrowstyle="->", mutation_scale=15, color="tab:red"))
    ax_grid.text(S / 2, i * bq - 35, "loop over key blocks j", ha="center", color="tab:red")
    ax_grid.set(xlim=(0, S), ylim=(L, -60), xlabel="key position (S)", ylabel="query position (L)",
                title="scores (L, S): only the orange tile exists now")
    ax_grid.legend(handles=[Patch(facecolor="tab:blue", alpha=0.8, label="tiles already folded into (m, l, acc)"),
                            Patch(facecolor="tab:orange", alpha=0.8, label="the tile being computed"),
                            Patch(fill=False, edgecolor="tab:red", lw=2, label="query block i")],
                   loc="lower left", fontsize=8)
    items = [("Q block", f"({bq}, D)"), ("K block, V block", f"({bk}, D), ({bk}, D_v)"),
             ("score tile s", f"({bq}, {bk})"), ("m, l", f"({bq},) each"), ("acc", f"({bq}, D_v)")]
    for n, (name, shape) in enumerate(items):
        ax_mem.add_patch(Rectangle((0.05, 0.82 - 0.17 * n), 0.9, 0.13, facecolor="tab:orange" if n == 2 else "0.9",
                                   edgecolor="0.3"))
        ax_mem.text(0.5, 0.885 - 0.17 * n, f"{name}  {shape}", ha="center", va="center", fontsize=9)
    ax_mem.set(xlim=(0, 1), ylim=(0, 1), xticks=[], yticks=[], title="fast memory (SRAM) holds",
               xlabel="per query block, whatever L and S")


fig, (ax_grid, ax_mem) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.6, 1]})
draw_tiling(ax_grid, ax_mem)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Implement** `tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None)` in
# `src/attnlab/flash.py`, built on `online_softmax_update`. It returns `(output, lse)`:
#
# - `q` `(..., L, D)`, `k` `(..., S, D)`, `v` `(..., S, D_v)` on any device; `scale` defaults to $1/\sqrt{D}$;
#   L and S need not be multiples of the tiles (the last tiles are partial);
# - `output` `(..., L, D_v)` in `q`'s dtype; `lse` `(..., L)`, $\log\sum_j e^{s_{ij}}$ over the keys query i
#   sees, float32 for float16/bfloat16 inputs (which are accumulated in float32) and `q`'s dtype otherwise;
# - `causal=True`: end-aligned, query i sees key j when $j \le i + (S - L)$; key tiles entirely in a query
#   block's future are skipped, tiles that straddle the diagonal are masked with $-\infty$; a query that
#   sees no key (L > S) gets output 0 and lse $-\infty$;
# - PyTorch's own attention (`F.scaled_dot_product_attention`, `nn.MultiheadAttention` and their kernels) is
#   off limits here.
#
# While `tiled_attention` is graded, your `online_softmax_update` is replaced by the course's reference, so a
# mistake in the helper is not charged twice; the one exception is the memory case below, which runs your
# own helper (answering its 4096 tiles from outside your process would take longer than the case itself).

# %%
from attnlab.flash import tiled_attention

torch.manual_seed(0)
q, k, v = torch.randn(2, 3, 37, 8), torch.randn(2, 3, 53, 8), torch.randn(2, 3, 53, 5)  # L=37, S=53, D=8, D_v=5
out, lse = tiled_attention(q, k, v, block_q=16, block_k=16)
print("output", tuple(out.shape), "lse", tuple(lse.shape))
error = (out - F.scaled_dot_product_attention(q, k, v)).abs().max()
print(f"vs F.scaled_dot_product_attention: max error {error:.1e}")
keep = torch.arange(53)[None, :] <= torch.arange(37)[:, None] + (53 - 37)  # end-aligned causal (L, S)
out_c, _ = tiled_attention(q, k, v, block_q=16, block_k=16, causal=True)
print(f"causal vs SDPA with the end-aligned mask: max error "
      f"{(out_c - F.scaled_dot_product_attention(q, k, v, attn_mask=keep)).abs().max():.1e}")

# %% [markdown]
# ### How the grader proves the kernel is tiled
#
# A correct output does not show *how* it was computed: code that builds the whole score matrix gives the
# same numbers. So one case of the check below runs your kernel at $L = S = 8192$, $D = 64$ with the
# default 128 x 128 tiles in a fresh process whose **address space** the operating system caps
# (`RLIMIT_AS`) at what that process uses after importing PyTorch plus 64 MiB. One float32
# $8192 \times 8192$ score matrix is 256 MiB:
# any line that creates it, in PyTorch or NumPy, fails with an out-of-memory error, and the case fails with
# the hint to tile. A tiled kernel needs the inputs and the output (8 MiB here) plus a few tiles. The limit
# is set before your code is imported, and the grader reads it from outside the process before and after
# the call, so code cannot lift it. Below, the same call on this machine, and what materialising would cost.

# %%
L_proof = 8192
q, k, v = (torch.randn(1, L_proof, 64) for _ in range(3))
started = time.perf_counter()
(out, lse), tiled_mib = peak_mib(lambda: tiled_attention(q, k, v))
elapsed = time.perf_counter() - started
print(f"tiled, L = S = {L_proof}, 128 x 128 tiles: peak {tiled_mib:.1f} MiB, {elapsed:.1f} s ({MEASURED_ON})")
print(f"one (L, S) float32 score matrix: {L_proof * L_proof * 4 / 2 ** 20:.0f} MiB; "
      f"inputs + output: {4 * L_proof * 64 * 4 / 2 ** 20:.0f} MiB; "
      f"one 128 x 128 tile: {128 * 128 * 4 / 2 ** 10:.0f} KiB")
rows = torch.arange(0, L_proof, 1024)  # spot-check 8 queries against full-row softmax in float64
exact = torch.softmax(q[:, rows].double() @ k.double().transpose(-1, -2) / 8.0, dim=-1) @ v.double()
print(f"8 sampled rows vs float64 attention: max error {(out[:, rows].double() - exact).abs().max():.1e}")
del q, k, v, out, lse, exact

# %% tags=["check"]
check("flash.tiled_attention")

# %% [markdown]
# ## 5. Causal block skipping
#
# With a causal mask, every key tile that lies wholly in the future of a query block holds only
# $-\infty$: skip it, and mask only the tiles on the diagonal. For $L = S$ and square tiles, $n = L/b$
# query blocks see $1, 2, \dots, n$ key tiles: $n(n+1)/2$ of the $n^2$ tiles, a fraction that tends to
# one half. FlashAttention-2 skips these blocks and reports a 1.7-1.8x speed-up over the same kernel
# without a mask (Dao 2023). We count the tiles your kernel visits (by counting its calls of
# `online_softmax_update`) and time it.

# %%
import attnlab.flash as flash_module

real_update = flash_module.online_softmax_update
calls = {"n": 0}


def counting_update(*args):
    calls["n"] += 1
    return real_update(*args)


flash_module.online_softmax_update = counting_update  # tiled_attention looks the helper up in its module
skip_lengths = [256, 512, 1024, 2048, 4096]
visited, full_tiles, t_full, t_causal = [], [], [], []
try:
    for L in skip_lengths:
        q, k, v = (torch.randn(1, 2, L, 64) for _ in range(3))
        calls["n"] = 0
        t_causal.append(seconds(lambda: tiled_attention(q, k, v, causal=True), repeat=1))
        visited.append(calls["n"])
        calls["n"] = 0
        t_full.append(seconds(lambda: tiled_attention(q, k, v), repeat=1))
        full_tiles.append(calls["n"])
finally:
    flash_module.online_softmax_update = real_update
if not all(full_tiles):  # a kernel that inlines the update: count the tiles its loops visit instead
    print("tiled_attention did not call online_softmax_update: tiles counted from the loop bounds")
    full_tiles = [(L // 128) ** 2 for L in skip_lengths]
    visited = [sum(min(L // 128, i + 1) for i in range(L // 128)) for L in skip_lengths]

for L, a, b, tf, tc in zip(skip_lengths, visited, full_tiles, t_full, t_causal):
    print(f"L = {L:5d}: causal visits {a:5d} of {b:5d} tiles ({a / b:5.1%}); time causal / full = {tc / tf:.2f} "
          f"({tc * 1e3:.0f} ms / {tf * 1e3:.0f} ms)")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.semilogx(skip_lengths, [a / b for a, b in zip(visited, full_tiles)], "o-", label="tiles visited, counted")
ax.semilogx(skip_lengths, [(L / 128 + 1) / (2 * L / 128) for L in skip_lengths], "k+", ms=10,
            label="n(n+1)/2 of n² tiles")
ax.semilogx(skip_lengths, [tc / tf for tc, tf in zip(t_causal, t_full)], "s--", label="time causal / full")
ax.axhline(0.5, color="0.7", lw=1)
ax.set(xlabel="L = S (128 x 128 tiles)", ylabel="causal / non-causal",
       ylim=(0, max([1.1] + [1.05 * tc / tf for tc, tf in zip(t_causal, t_full)])),
       title=f"work saved by skipping future tiles\n({MEASURED_ON})")
label_lengths(ax, skip_lengths)
ax.legend()
plt.show()

# %% [markdown]
# The tile count follows $n(n+1)/2$ exactly; the time ratio follows it loosely, since a tile on the
# diagonal also pays for its mask and our Python loop pays a fixed cost per tile.
#
# ## 6. The log-sum-exp: backward pass and split-KV
#
# `tiled_attention` also returns $\mathrm{lse}_i = m_i + \log l_i$. Two uses:
#
# **The backward pass.** Gradients need the weights $P$, which were never stored. With the lse (one number
# per query), any tile of weights is recomputed from the scores as $P_{ij} = e^{s_{ij} - \mathrm{lse}_i}$,
# tile by tile, in the same way. FlashAttention stores $m$ and $l$ for this (Dao et al. 2022); FlashAttention-2
# stores only the log-sum-exp (Dao 2023). Recomputing costs extra FLOPs but saves storing $P$ ($L \times S$
# per head) and reading it back from HBM.
#
# **Merging partial results.** Attention over keys split into two sets $A$ and $B$ is computed on each set
# separately, then merged exactly: with $\mathrm{lse} = \log(e^{\mathrm{lse}_A} + e^{\mathrm{lse}_B})$,
#
# $$O = e^{\mathrm{lse}_A - \mathrm{lse}}\, O_A + e^{\mathrm{lse}_B - \mathrm{lse}}\, O_B .$$
#
# That is the idea of Flash-Decoding (Dao, Haziza, Massa and Sizov 2023): when decoding, $L = 1$ query per
# sequence faces a long cache; splitting the keys into chunks processed in parallel fills the GPU, and a
# cheap reduction merges the chunks with their log-sum-exps.

# %%
torch.manual_seed(1)
q, k, v = torch.randn(2, 4, 6, 32), torch.randn(2, 4, 300, 32), torch.randn(2, 4, 300, 16)

# the backward pass's view: one tile of weights recomputed from the scores and lse only
out, lse = tiled_attention(q, k, v, block_q=64, block_k=64)
s_tile = q @ k[..., 64:128, :].transpose(-1, -2) / math.sqrt(32)        # (2, 4, 6, 64)
p_full = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(32), dim=-1)  # (2, 4, 6, 300), for checking only
error = (torch.exp(s_tile - lse[..., None]) - p_full[..., 64:128]).abs().max()
print(f"weights of keys 64-127 from exp(s - lse): max error {error:.1e}")

# split-KV: two halves of the keys, computed separately, merged with their log-sum-exps
out_a, lse_a = tiled_attention(q, k[..., :150, :], v[..., :150, :], block_q=64, block_k=64)
out_b, lse_b = tiled_attention(q, k[..., 150:, :], v[..., 150:, :], block_q=64, block_k=64)
lse_ab = torch.logaddexp(lse_a, lse_b)
merged = torch.exp(lse_a - lse_ab)[..., None] * out_a + torch.exp(lse_b - lse_ab)[..., None] * out_b
full = F.scaled_dot_product_attention(q, k, v)
print(f"two halves merged vs full attention (SDPA): max error {(merged - full).abs().max():.1e}")

# Flash-Decoding's shape: one query per sequence, a long cache cut into 8 chunks, merged in one reduction
q1 = torch.randn(2, 4, 1, 32)
k_cache, v_cache = torch.randn(2, 4, 4096, 32), torch.randn(2, 4, 4096, 16)
parts = [tiled_attention(q1, k_cache[..., c:c + 512, :], v_cache[..., c:c + 512, :], block_k=512)
         for c in range(0, 4096, 512)]
outs = torch.stack([p[0] for p in parts])  # (8, 2, 4, 1, 16): 8 chunks
lses = torch.stack([p[1] for p in parts])  # (8, 2, 4, 1)
total = torch.logsumexp(lses, dim=0)
decoded = (torch.exp(lses - total)[..., None] * outs).sum(dim=0)
print(f"8 chunks of 512 keys merged vs full attention: max error "
      f"{(decoded - F.scaled_dot_product_attention(q1, k_cache, v_cache)).abs().max():.1e}")

# %% [markdown]
# ## 7. The IO model: why tiling is faster on a GPU
#
# Dao et al. 2022 count accesses to slow memory (HBM on a GPU) for a fast memory (SRAM) of $M$ elements,
# with $d \le M \le Nd$. Their example GPU, the A100, has 40-80 GB of HBM at 1.5-2.0 TB/s and 192 KB of
# on-chip SRAM in each of its 108 streaming multiprocessors, at an estimated 19 TB/s (their section 2.1).
# Their Theorem 2:
#
# - standard attention: $\Theta(Nd + N^2)$ HBM accesses;
# - FlashAttention: $\Theta(N^2 d^2 M^{-1})$ HBM accesses.
#
# For fixed $d$ and $M$ both grow like $N^2$; what differs is the factor per score: a constant for the
# standard version (each $N \times N$ matrix is written once and read once), a constant times $d^2/M$ for
# the tiled one, and with $d = 64$ and $M$ in the tens of thousands of elements $d^2/M$ is well below 1.
# The tiled kernel does *more* arithmetic (the rescaling) but moves fewer bytes. They also prove a lower
# bound: no exact attention algorithm makes $o(N^2 d^2 M^{-1})$ HBM accesses for all $M$ in $[d, Nd]$ (their
# Proposition 3; at $M = Nd$ that count is $Nd$, the size of the input, which any algorithm must read).
#
# Below, both counts are computed by walking the loops of their Algorithm 0 and Algorithm 1 (the paper's
# order: key/value blocks of $B_c = \lceil M / 4d \rceil$ rows outside, query blocks of
# $B_r = \min(B_c, d)$ rows inside, each inner step reading $Q_i$, $O_i$, $\ell_i$, $m_i$ and writing
# $O_i$, $\ell_i$, $m_i$ back), counting elements read and written.

# %%
def io_standard(N, d):
    """HBM element accesses of Algorithm 0 (Dao et al. 2022): S = QK^T, P = softmax(S), O = PV."""
    reads = 2 * N * d          # Q, K
    writes = N * N             # S
    reads += N * N             # S
    writes += N * N            # P
    reads += N * N + N * d     # P, V
    writes += N * d            # O
    return reads + writes


def io_tiled(N, d, M):
    """HBM element accesses of Algorithm 1 (Dao et al. 2022), walking its loops."""
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)  # rows of a query block: it sets the inner steps, not the total traffic below
    total = N * d + 2 * N                          # initialise O, l, m in HBM (writes)
    for j0 in range(0, N, B_c):                    # outer loop: key/value blocks
        bc = min(B_c, N - j0)
        total += 2 * bc * d                        # read K_j, V_j
        # inner loop over the ceil(N / B_r) query blocks: each reads Q_i, O_i, l_i, m_i and writes O_i, l_i,
        # m_i; summed over the blocks (their rows add up to N) that is:
        total += (2 * N * d + 2 * N) + (N * d + 2 * N)
    return total


d = 64
Ns = [512, 1024, 2048, 4096, 8192, 16384]
M_sizes = {"M = 16K elements (64 KB fp32)": 16 * 1024, "M = 48K (192 KB fp32: one A100 SM)": 48 * 1024,
           "M = 192K (768 KB fp32)": 192 * 1024}
std = [io_standard(N, d) for N in Ns]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.loglog(Ns, std, "ko-", label="standard: Θ(Nd + N²)")
for label, M in M_sizes.items():
    tiled_io = [io_tiled(N, d, M) for N in Ns]
    ax1.loglog(Ns, tiled_io, "o--", label=f"tiled, {label}")
    print(f"{label:32s}: standard / tiled accesses at N = 16384: {std[-1] / tiled_io[-1]:5.1f}x; "
          f"tiled / (N² d² / M) = {tiled_io[-1] / (Ns[-1] ** 2 * d ** 2 / M):.2f}")
ax1.set(xlabel="sequence length N", ylabel="HBM accesses (elements)", title=f"d = {d}")
label_lengths(ax1, Ns)
ax1.legend(fontsize=7)
Ms = np.geomspace(4 * d, 512 * 1024, 12).astype(int)
ax2.loglog(Ms, [io_tiled(4096, d, M) for M in Ms], "o-", label="tiled, N = 4096")
ax2.loglog(Ms, [4096 ** 2 * d ** 2 / M for M in Ms], "k--", lw=1, label="N² d² / M")
ax2.axhline(io_standard(4096, d), color="k", lw=1, label="standard, N = 4096")
ax2.set(xlabel="fast memory M (elements)", ylabel="HBM accesses (elements)", title="more SRAM, fewer accesses")
ax2.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# The tiled count is $N^2 d^2 / M$ times a constant (printed above): the 4 of $B_c = \lceil M/4d \rceil$
# times the three $N \times d$ matrices each pass over the queries moves ($Q$ and $O$ in, $O$ out). It falls
# as $1/M$, since more SRAM means bigger key/value blocks and fewer passes; the standard count does not
# depend on $M$ at all, and with a very small $M$ (left of the crossing) tiling would move *more* data.
# The model counts traffic, not time: the real kernel wins because the softmax and elementwise steps of
# standard attention on a GPU are bound by memory traffic, while its extra FLOPs run on compute units that
# would otherwise wait (Dao et al. 2022, Figure 2 left: forward plus backward for GPT-2 medium on an A100,
# more GFLOPs than standard attention because the backward pass recomputes the weights, far fewer GB of HBM
# reads and writes, a shorter run time).

# %% [markdown] tags=["question:theory-39"]
# ### Explain flash attention and memory-efficient implementations.
#
# FlashAttention computes exact softmax attention without writing the $L \times S$ scores or weights to GPU
# memory (HBM): it works tile by tile in on-chip SRAM, keeping per query a running max, a running sum and a
# rescaled output (Dao et al. 2022). Extra memory becomes linear in the sequence length and HBM traffic falls
# from $\Theta(Nd + N^2)$ to $\Theta(N^2 d^2/M)$ (their Theorem 2), which is where its speed on GPUs comes from.
#
# - Mechanism: $m' = \max(m, \max s)$; rescale $l$ and the accumulator by $e^{m - m'}$; output
#   $\mathrm{acc}/l$ (sections 2-4).
# - Backward: keep the softmax statistics ($m$ and $l$; one log-sum-exp per query in FlashAttention-2) and
#   recompute tiles of $P$ (section 6).
# - Without a fused kernel, chunking queries and keys also gives exact attention in less memory (Rabe and
#   Staats 2021); PyTorch's SDPA dispatches to fused kernels (section 1 measures its memory).
# - Successors: FlashAttention-2 (Dao 2023) cuts non-matmul FLOPs and parallelises over sequence length too;
#   FlashAttention-3 (Shah et al. 2024) adds Hopper asynchrony and FP8.
# - FLOPs stay $O(N^2 D)$: sparse and linear attention (notebook 07) change that by restricting or
#   approximating full attention.

# %% [markdown] tags=["question:qa-14"]
# ### FlashAttention (interview one-liner).
#
# An IO-aware, exact attention kernel: it tiles $Q$, $K$, $V$ into blocks that fit in on-chip SRAM, fuses
# the matmuls and the softmax with an online (running max and sum) normalisation, and never writes the
# $L \times S$ matrix to GPU memory, so it gives the same output as standard attention with linear memory
# and less HBM traffic (Dao et al. 2022). The full answer, with the mechanism and what followed, is
# theory-39 above.
#
# - "Exact" matters: unlike sparse or low-rank methods it changes no result beyond float rounding (section 4
#   checks it against SDPA).
# - The speed-up comes from fewer memory accesses, not fewer FLOPs (section 7); on this CPU our Python loop
#   shows the memory saving, not the speed (section 8).

# %% [markdown]
# ## 8. GPU vs CPU: the same kernel on both
#
# `tiled_attention` uses tensor operations only, so the same function runs wherever its inputs live. Below,
# `bench.run_benchmark` (the code behind `attnlab bench`) runs your kernel (`yours:tiled`), PyTorch's
# `F.scaled_dot_product_attention` and naive attention on the CPU and, when `torch.cuda.is_available()`,
# on the GPU. Per row: each kernel's error against SDPA **on the same device**, the median of 3 calls made
# in turns (sdpa, naive, yours, sdpa, ...) so that machine noise hits all alike, the FLOP rate
# ($4 \cdot B \cdot H \cdot L \cdot S \cdot D$ FLOPs per call) and its share of this machine's own matrix
# multiply rate (`% GEMM`), the time as a multiple of SDPA's, and the peak memory of one call (CPU: growth
# of the peak resident memory; GPU: `torch.cuda.max_memory_allocated`; on a GPU also the speed-up over the
# CPU). From a terminal, `attnlab bench --learner` runs the full comparison (section 9).

# %%
from IPython.display import display

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
rows = bench.run_benchmark([256, 512] if QUICK else [512, 1024, 2048, 4096], modes=("full",), devices=devices,
                           kernels=("naive-torch", "sdpa"), learner={"yours:tiled": tiled_attention}, heads=2,
                           repeat=3, half=False)
print(f"B=1, H=2, D=64, float32, your tiles 128 x 128; torch {torch.__version__}; cpu: {CPU}"
      + (f"; cuda: {bench.machine('cuda')}" if "cuda" in devices else ""))
print(bench.format_table(rows))
if "cuda" not in devices:
    print("CUDA not available (torch.cuda.is_available() is False): GPU rows skipped; the CPU rows above "
          "still ran. On a machine with a GPU this cell adds the cuda rows and the GPU vs CPU column.")
display(bench.plot(rows, title=f"your tiled_attention vs SDPA and naive attention ({MEASURED_ON})"))

# %% [markdown]
# On this CPU the tiled kernel is exact and its memory stays near the size of its output, but it is not
# fast: every tile costs a few Python-level PyTorch calls. And a CPU core has a much lower ratio of
# arithmetic to memory bandwidth than a GPU, so the naive version's time goes mostly to its two matrix
# products and the traffic that tiling saves matters much less. The speed of FlashAttention comes from
# fusing the whole loop into one GPU kernel that keeps the tiles in SRAM; PyTorch's SDPA is such a fused
# kernel on both devices. On a GPU the same Python loop also launches several small kernels per tile, so it
# shows the exactness and the memory, while SDPA (or a Triton or CUDA kernel) shows the speed. The course
# ships one Triton kernel to read, `autograde/triton_flash.py`: the loop of `tiled_attention` as one GPU
# program per query block of one (batch, head) pair, FlashAttention-2's split of the work (Dao 2023), with
# the running max, sum and accumulator kept in registers. `attnlab bench` times it on a GPU next to SDPA,
# and in half precision next to SDPA's flash backend.

# %% [markdown]
# **Written answer.** In the table your `tiled_attention` is slower than PyTorch's SDPA on this CPU, and at
# moderate lengths often slower than naive attention too, yet FlashAttention is known as *faster* than
# standard attention. In 3-4 sentences, explain both observations, and say what a faster tiled kernel would
# have to change.

# %% [markdown] tags=["answer", "points:2"]
# Tiling does not reduce the arithmetic, it adds some (the rescaling by $e^{m - m'}$); its gain is fewer
# accesses to slow memory, $\Theta(N^2 d^2/M)$ instead of $\Theta(Nd + N^2)$, which pays off on a GPU where
# attention's softmax and masking are bound by HBM bandwidth. Our version is a Python loop that issues a
# handful of separate PyTorch operations per tile, each with dispatch overhead and its own pass over
# memory, while naive attention runs three large, well-optimised calls (two matmuls and a softmax), and on a
# CPU, with its low ratio of arithmetic to memory bandwidth, the matmuls rather than the traffic dominate.
# A fast tiled kernel fuses the whole loop into one compiled kernel (CUDA, Triton, or C++ like PyTorch's
# CPU flash kernel) that keeps each tile in registers or SRAM and writes only the output and the log-sum-exp.

# %% [markdown]
# ## 9. Challenge: a fast tiled kernel, still in Python
#
# Section 8 blamed the Python loop. Python's overhead, though, is a fixed cost per PyTorch call, the same for
# a 4 x 4 tensor as for a big tile, so larger tiles dilute it; what remains is the work each call does. Per
# tile, the loop does two matrix products, the real work ($2 \cdot bq \cdot bk \cdot (D + D_v)$ FLOPs), and
# several elementwise passes over the `(bq, bk)` tile: a max, a subtraction, an exp and a sum (the rescales
# of $l$ and $\mathrm{acc}$ touch only `(bq,)` and `(bq, D_v)`). Each pass reads the whole tile (the
# subtraction and the exp write one back too), and the exp costs more per element than the others. Below,
# each operation on one tile is timed alone: 8 heads, `bq = bk = 256`, $D = D_v = 64$, one thread.

# %%
n_heads, bq, bk = 8, 256, 256
qt, kt_tile = torch.randn(n_heads, bq, 64), torch.randn(n_heads, 64, bk)
vt, acc_t = torch.randn(n_heads, bk, 64), torch.zeros(n_heads, bq, 64)
tile_t, m_t = torch.empty(n_heads, bq, bk), torch.randn(n_heads, bq, 1)
scores_t = torch.randn(n_heads, bq, bk) * 3
shifted_t = scores_t - scores_t.amax(-1, keepdim=True)  # what exp sees: scores minus their row max
ops = {  # name -> one call on one tile
    "q k^T (bmm)": lambda: torch.bmm(qt, kt_tile, out=tile_t),
    "row max": lambda: scores_t.amax(-1, keepdim=True),
    "subtract max": lambda: torch.sub(scores_t, m_t, out=tile_t),
    "exp": lambda: torch.exp(shifted_t, out=tile_t),
    "exp2": lambda: torch.exp2(shifted_t, out=tile_t),
    "row sum": lambda: scores_t.sum(-1, keepdim=True),
    "p v (baddbmm)": lambda: acc_t.baddbmm_(tile_t, vt),
}
micro = {name: seconds(lambda f=f: [f() for _ in range(20)], repeat=5) / 20 * 1e6 for name, f in ops.items()}
fig, ax = plt.subplots(figsize=(7, 2.8))
colours = ["tab:blue" if "bmm" in name else ("tab:red" if name.startswith("exp") else "tab:gray") for name in micro]
ax.barh(list(micro), list(micro.values()), color=colours)
for y, value in enumerate(micro.values()):
    ax.text(value, y, f" {value:.0f}", va="center", fontsize=8)
ax.invert_yaxis()
ax.set(xlabel="microseconds per tile (8 heads x 256 x 256)",
       title=f"one tile, operation by operation ({MEASURED_ON})")
plt.tight_layout()
plt.show()
gemm = micro["q k^T (bmm)"] + micro["p v (baddbmm)"]
print(f"matrix products {gemm:.0f} us; teaching loop's extra passes (max, subtract, exp, sum) "
      f"{micro['row max'] + micro['subtract max'] + micro['exp'] + micro['row sum']:.0f} us; "
      f"exp2 instead of exp saves {micro['exp'] - micro['exp2']:.0f} us")

# %% [markdown]
# The matrix products are the floor: PyTorch's fused CPU kernel (SDPA) does them too (and one exp per score),
# so a kernel can only approach SDPA by shrinking everything else. `fast_tiled_attention` keeps the same
# algorithm, removes passes and shares the work among threads, with five changes:
#
# 1. **`exp2` instead of `exp`.** $e^{x} = 2^{x \log_2 e}$, so multiplying $q$ once by
#    $\text{scale} \cdot \log_2 e$ (one pass over `(L, D)`, not one per tile) puts the scores in base-2 units
#    and `exp2` does the rest. On a GPU `exp2` is the hardware instruction and `exp` costs at least a
#    multiply more; on a CPU, compare the two red bars above. FlashAttention's CUDA kernels use `exp2` too
#    (in FlashAttention-2's code, not its paper), folding $\text{scale} \cdot \log_2 e$ into one fused
#    multiply-add per score. The log-sum-exp goes back to natural units at the end:
#    $\mathrm{lse} = (\tilde m + \log_2 l) \ln 2$, with $\tilde m$ and $l$ as below.
# 2. **The shift rides in the product.** Each query carries a shift $\tilde m$ that stands in for its
#    running max. Give the (already scaled) $q$ one more column holding $-\tilde m$ and $k^\top$ one more
#    row of ones: $[q, -\tilde m]$ `(bq, D + 1)` times $[k^\top; \mathbf{1}]$ `(D + 1, bk)` is
#    $qk^\top - \tilde m$ `(bq, bk)`, each row's shift subtracted from all its scores. The subtraction pass
#    is gone, for the price of one more column in the product.
# 3. **Lazy rescaling.** With $l = \sum_j 2^{s_j - \tilde m}$ and $\mathrm{acc} = \sum_j 2^{s_j - \tilde m}
#    v_j$, *any* finite shift gives the same $\mathrm{acc}/l$ and the same $\tilde m + \log_2 l$: the shift
#    cancels. The running max is only there to keep the terms inside float32's range. Here $\tilde m$ is
#    always a score the query has already met, so it never exceeds the running max: the largest term is at
#    least 1 and $l$ cannot underflow to 0. The one danger is overflow, when later scores rise above
#    $\tilde m$. So a tile is folded in with the old shift when every row's sum of its terms is at most
#    $2^{16}$: each term is then at most $2^{16}$, far from float32's limit of about $2^{128}$ (and
#    $\tilde m$ only moves up, so earlier terms stay below that too). Such a tile skips the row max and the
#    rescales of $l$ and $\mathrm{acc}$, and the test is free: the step needs the row sums anyway. A tile
#    that fails (or gives inf or NaN) is recomputed with the exact step, so the data decide the speed, never
#    the exactness. A tile of `bk` keys passes for sure when none of its scores exceeds $\tilde m$ by more
#    than $16 - \log_2 bk$ (8 for 256 keys; base-2 units) and fails for sure when one exceeds it by more
#    than 16. Random scores like those timed below pass every tile after the first, with a wide margin; how
#    often a trained model's scores do depends on the model. FlashAttention-4 (Zadouri et al. 2026) calls its
#    version *conditional softmax rescaling*: for 16-bit inputs its code keeps the old maximum unless the new
#    one exceeds it by more than a threshold, though it still computes each tile's row max to decide.
# 4. **In place, one buffer.** Products are written into one preallocated tile per thread (`out=`) and
#    accumulated with `baddbmm_`. A diagonal causal tile gets its mask added inside the product (`baddbmm`
#    with a cached 0 / $-\infty$ tile), and tiles wholly in the future are skipped as before.
# 5. **Threads share query blocks, not operations.** Query blocks are independent: in its forward pass
#    FlashAttention-2 gives each (batch, head, query block) its own GPU thread block (Dao 2023), and
#    PyTorch's fused CPU kernel divides the same (batch, head, query block) items among its threads. Left
#    alone, PyTorch instead splits each large enough operation on a tile (a product, the exp, a sum) across
#    all cores, which wait for one another at its end. With `threads` > 1 (default: PyTorch's thread count,
#    at most one per query block), `fast_tiled_attention` starts that many Python threads. PyTorch releases
#    Python's global interpreter lock while an operation runs, so their operations overlap; only the Python
#    code between operations takes turns. Each thread calls `torch.set_num_threads(1)` (per thread with
#    PyTorch's default OpenMP backend; the caller's count is set back at the end) and takes the next query
#    block until none is left, the longest first when causal. This notebook runs one thread, so here it
#    changes nothing; `attnlab bench` runs both cores (figures below).
#
# **Implement** `fast_tiled_attention(q, k, v, block_q=None, block_k=None, causal=False, scale=None,
# threads=None)` in `src/attnlab/flash.py`: the same contract as `tiled_attention` (returns
# `(output, lse)`, any leading dims, L != S, end-aligned causal, float32 work for half inputs, output 0 and
# lse $-\infty$ for a query that sees no key), default tiles 256 x 256; PyTorch's own attention is off
# limits, as there. It is graded by the same oracle and cases as `tiled_attention` (memory cap included;
# its default-tile case is causal here, with 256 x 256 tiles), plus scores that jump far above the shift
# after the first tile and scores that fall far below it. The grader runs one thread, so change 5 is yours
# to add or leave out. The grade checks results only, so `tiled_attention`'s loop with 256 x 256 tiles
# also passes; how fast yours is never affects it: `attnlab bench --learner` times it.

# %% tags=["check"]
check("flash.fast_tiled_attention")

# %% [markdown]
# Both kernels against SDPA, timed in turns (sdpa, tiled, fast, sdpa, ...) so that a noisy moment on the
# machine slows all three alike; the median of each, B = 1, H = 8, D = 64, float32, one thread:

# %%
from attnlab.flash import fast_tiled_attention

L_race = 1024 if QUICK else 4096
q, k, v = (torch.randn(1, 8, L_race, 64) for _ in range(3))
race = {"sdpa": lambda c: F.scaled_dot_product_attention(q, k, v, is_causal=c),
        "tiled (128 x 128)": lambda c: tiled_attention(q, k, v, causal=c)[0],
        "fast (256 x 256)": lambda c: fast_tiled_attention(q, k, v, causal=c)[0]}
for causal in (False, True):
    times = {name: [] for name in race}
    for name, f in race.items():
        f(causal)  # warm-up
    for _ in range(3):
        for name, f in race.items():
            started = time.perf_counter()
            f(causal)
            times[name].append(time.perf_counter() - started)
    med = {name: sorted(ts)[1] for name, ts in times.items()}
    error = (race["fast (256 x 256)"](causal) - race["sdpa"](causal)).abs().max()
    print(f"L = S = {L_race}, {'causal' if causal else 'non-causal'}: "
          + ", ".join(f"{name} {t * 1e3:.0f} ms ({t / med['sdpa']:.2f}x SDPA)" for name, t in med.items())
          + f"; fast vs SDPA max error {error:.1e} ({MEASURED_ON})")
del q, k, v

# %% [markdown]
# The same comparison in full, from a terminal: `attnlab bench` times naive NumPy and PyTorch attention,
# SDPA, the course's `tiled_attention` and `fast_tiled_attention` (each at its fastest tile size) at
# $L = 512 \dots 8192$, causal and not, with both CPU threads, and measures peak memory up to
# $L = 16384$ (`attnlab bench --learner` adds your two kernels). Below, the run committed with the course
# (`docs/bench.png`, `docs/bench.csv`): the machine and the figures are in the plot's title and the CSV.

# %%
import csv
from pathlib import Path

from IPython.display import Image

docs = Path(bench.ROOT) / "docs"
if (docs / "bench.png").exists():
    display(Image(filename=str(docs / "bench.png")))
    with open(docs / "bench.csv") as fh:
        committed = [r for r in csv.DictReader(fh) if r["device"] == "cpu" and r["status"] == "ok"]
    for mode in ("full", "causal"):
        for L in ("4096", "8192"):
            mine = {r["kernel"]: r for r in committed if r["mode"] == mode and r["L"] == L}
            if "sdpa" in mine:
                print(f"{mode:6s} L = {L}: " + ", ".join(
                    f"{name} {float(mine[name]['x_sdpa']):.2f}x SDPA ({float(mine[name]['pct_gemm']):.0f}% of GEMM)"
                    for name in ("naive-torch", "tiled", "fast", "sdpa") if name in mine))
else:
    print("docs/bench.png is not in this copy of the course: run `attnlab bench` to make your own")

# %% [markdown]
# ## Summary
#
# | idea | what to remember | where |
# |---|---|---|
# | memory wall | naive attention holds two $L \times S$ matrices per head: quadratic memory, measured | section 1 |
# | online softmax | running max $m$ and sum $l$; rescale by $e^{m - m'}$; shift all-$-\infty$ rows by 0 | section 2 |
# | update step | $(m, l, \mathrm{acc})$ per query; $\mathrm{acc}/l$ = attention output, $m + \log l$ = lse | section 3 |
# | tiling | `(bq, bk)` tiles only; proven under a 64 MiB address-space limit at $L = S = 8192$ | section 4 |
# | causal skipping | about half the tiles, $n(n+1)/2$ of $n^2$ | section 5 |
# | lse | backward recomputes $P = e^{s - \mathrm{lse}}$; merges split keys exactly (Flash-Decoding) | section 6 |
# | IO model | $\Theta(Nd + N^2)$ vs $\Theta(N^2 d^2/M)$ HBM accesses (Dao et al. 2022) | section 7 |
# | GPU vs CPU | same code on both; exact against SDPA on each device; speed needs a fused kernel | section 8 |
# | fast kernel | matrix products are the floor; exp2, shift inside the product, lazy rescaling, in place, threads share query blocks | section 9 |
#
# **Questions answered:** theory-39 (FlashAttention and memory-efficient implementations), qa-14 (the
# one-liner).
#
# Next, notebook 09 reads what trained attention heads do.
