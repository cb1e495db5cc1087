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
# # 06 · The cost of attention
#
# Every query is compared with every key, so attention costs grow with the product $L \cdot S$ of
# the two lengths: quadratically in self-attention. This notebook counts that cost exactly, measures
# it on this machine, compares it with the layers attention replaced, and goes through the toolbox
# that makes long contexts affordable.
#
# **You will learn**
# - how many floating-point operations attention does, with and without a causal mask (end-aligned,
#   for $L < S$, $L = S$ and $L > S$), and how to check a FLOP count against PyTorch's flop counter;
# - that the peak memory of naive attention grows with slope 2 on a log-log plot and its time with slope
#   2 or more, measured;
# - exactly which tensors a forward pass holds, checked byte for byte against a measured peak;
# - Table 1 of Vaswani et al. (2017), self-attention against recurrent, convolutional and restricted
#   layers, reproduced with measurements: FLOPs, sequential steps, path length between positions;
# - where the memory of a small GPT goes in training and in inference, and how large a KV cache is;
# - the optimisation toolbox, each tool measured before and after on this machine: fused kernels, KV
#   caching, grouped-query attention, 16-bit formats, tiling.
#
# **You will build** three exact counters in `src/attnlab/cost.py`: `attention_flops`,
# `attention_memory_bytes` and `kv_cache_bytes`.
#
# Shape legend: B batch, H query heads, H_kv key/value heads, L queries, S keys/values, D query/key
# width, D_v value width, E model width. Causal masks are end-aligned: query $i$ sees key $j$ when
# $j \le i + (S - L)$.

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
import tracemalloc

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.utils.flop_counter import FlopCounterMode

torch.set_num_threads(1)  # every timing below runs on this one thread (see best_time)
cpu = platform.processor() or platform.machine()
try:  # Linux names the CPU model in /proc/cpuinfo
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
MACHINE = f"{cpu}, {cores} usable CPU cores (1 thread used), torch {torch.__version__}, NumPy {np.__version__}"
print("measured on", MACHINE)
NOTEBOOK_START = time.perf_counter()


def best_time(f, *args, repeats=3, budget=0.05, warmup=True):
    """The fastest of at least `repeats` calls (more, up to 100, while they take under `budget` seconds in
    all), in CPU seconds of this thread. With one thread the work runs here, and thread CPU time leaves
    out the time other programs hold the core, which wall-clock time on a shared machine would count."""
    if warmup:
        f(*args)
    times = []
    while len(times) < repeats or (sum(times) < budget and len(times) < 100):
        start = time.thread_time()
        f(*args)
        times.append(time.thread_time() - start)
    return min(times)


def fitted_slope(x, y):
    """Slope of log y against log x by least squares: the exponent p in y ~ x**p."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])

# %% [markdown]
# ## 1. Counting the arithmetic
#
# For one (batch, head) pair, attention is three steps:
#
# | step | expression | shape | multiply-adds |
# |---|---|---|---|
# | scores | $Q K^\top / \sqrt{D}$ | `(L, D) @ (D, S)` $\to$ `(L, S)` | $L \cdot S \cdot D$ |
# | weights | softmax over each row | `(L, S)` | none (a few exp, max, sum, divide per entry) |
# | output | weights $\cdot V$ | `(L, S) @ (S, D_v)` $\to$ `(L, D_v)` | $L \cdot S \cdot D_v$ |
#
# We count **one multiply-add as 2 FLOPs**, as PyTorch's flop counter does, and as the FlashAttention-2
# benchmarks do ($4 N^2 d$ FLOPs per head for a forward pass with $L = S = N$, halved when causal; Dao
# 2023). We leave out the softmax and the $1/\sqrt{D}$ scale: a handful of operations per
# (query, key) pair, not a multiple of $D$. So per visible pair we count $2(D + D_v)$ FLOPs, and
#
# $$\text{FLOPs} = 2\,B\,H\,P\,(D + D_v), \qquad P = L \cdot S \text{ without a mask.}$$
#
# **What a causal mask saves.** Query $i$ sees the keys $j \le i + (S - L)$, that is
# $c_i = \min\big(S, \max(0,\, i + S - L + 1)\big)$ keys. Sum over the rows:
#
# - $L \le S$: the counts run $S - L + 1, S - L + 2, \dots, S$, so
#   $P = \sum_{i=0}^{L-1} (S - L + 1 + i) = L (S - L) + \tfrac{L (L + 1)}{2}$; with $L = S$ this is
#   $\tfrac{L(L+1)}{2}$, a little over half of $L^2$ (the diagonal is visible);
# - $L > S$: the first $L - S$ queries see **no** key (they sit before the first key) and the last $S$
#   see $1, \dots, S$, so $P = \tfrac{S (S + 1)}{2}$.
#
# Both are $m (S - m) + \tfrac{m (m + 1)}{2}$ with $m = \min(L, S)$. A kernel only saves this work if
# it skips the hidden pairs (FlashAttention skips fully masked blocks); one that computes every score
# and masks afterwards still does all $L \cdot S$.

# %%
def causal_visible(L, S):
    """(L, S) boolean: query i may attend to key j when j <= i + (S - L)."""
    return np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L)


fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, (L, S) in zip(axes, [(4, 7), (6, 6), (7, 4)]):
    visible = causal_visible(L, S)
    m = min(L, S)
    closed_form = m * (S - m) + m * (m + 1) // 2
    ax.imshow(visible, cmap="Greens", vmin=0, vmax=1.3)
    ax.set(title=f"L={L}, S={S}: {visible.sum()} visible pairs\n(closed form {closed_form}, of L*S = {L * S})",
           xlabel="key position j", ylabel="query position i", xticks=range(S), yticks=range(L))
fig.suptitle("Causal mask aligned to the end (green: may attend)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise: `attention_flops`
#
# Implement `attention_flops(B, H, L, S, D, D_v, causal=False)` in `src/attnlab/cost.py`: the FLOPs
# above, as an exact Python `int`. Use `//`, never `/` (a `float` stops being exact past $2^{53}$), and
# Python ints rather than NumPy integers, which wrap around silently past $2^{63}$. A negative size
# raises `ValueError`.

# %%
from attnlab.cost import attention_flops

B, H, L, S, D, D_v = 2, 3, 5, 7, 4, 6
full = attention_flops(B, H, L, S, D, D_v)
causal = attention_flops(B, H, L, S, D, D_v, causal=True)
print(f"full:   {full} FLOPs = 2 * B*H = {B * H} * L*S = {L * S} pairs * (D + D_v) = {D + D_v}")
print(f"causal: {causal} FLOPs ({causal / full:.0%} of full: {causal_visible(L, S).sum()} of {L * S} pairs)")
print("7 queries, 4 keys, causal:", attention_flops(B, H, 7, 4, D, D_v, causal=True),
      "FLOPs (the first 3 queries see nothing)")

# %% tags=["check"]
check("cost.attention_flops")

# %% [markdown]
# **An independent check.** PyTorch's `FlopCounterMode` counts the FLOPs of every matrix product that
# runs (2 per multiply-add). Run a naive attention under it, with every dimension distinct, and compare;
# PyTorch's own fused `scaled_dot_product_attention` is counted with the same rule. The flop counter
# counts what runs, so a masked naive attention still costs all $L \cdot S$ pairs: the causal saving is
# work a kernel *may* skip, which the last lines count from the mask itself.

# %%
def naive_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(D)) v in PyTorch, materialising the (..., L, S) weights."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (..., L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v                     # (..., L, S) @ (..., S, D_v) -> (..., L, D_v)


for B, H, L, S, D, D_v in [(2, 3, 5, 7, 4, 6), (1, 4, 33, 20, 16, 8), (3, 2, 64, 128, 32, 48)]:
    q, k, v = torch.randn(B, H, L, D), torch.randn(B, H, S, D), torch.randn(B, H, S, D_v)
    with FlopCounterMode(display=False) as naive_count:
        naive_attention(q, k, v)
    with FlopCounterMode(display=False) as fused_count:
        F.scaled_dot_product_attention(q, k, v)
    ours = attention_flops(B, H, L, S, D, D_v)
    assert naive_count.get_total_flops() == fused_count.get_total_flops() == ours
    pairs = int(causal_visible(L, S).sum())  # counted from the mask, not from a formula
    assert attention_flops(B, H, L, S, D, D_v, causal=True) == 2 * B * H * pairs * (D + D_v)
    print(f"{(B, H, L, S, D, D_v)}: flop counter {naive_count.get_total_flops():>9} (naive) "
          f"{fused_count.get_total_flops():>9} (SDPA), attention_flops {ours:>9}; causal {pairs}/{L * S} pairs")

# %% [markdown]
# ## 2. Quadratic, measured
#
# Now time a naive attention (one batch, one head, $D = D_v = 32$, `float32`) at growing $L = S$,
# next to PyTorch's fused `scaled_dot_product_attention` (section 6), and measure the naive one's peak
# memory with Python's `tracemalloc`, which sees every NumPy allocation. The NumPy version below is
# written to hold as little as possible: it turns the scores into weights in place, so besides
# $q, k, v$ and the output it holds one `(B, H, L, S)` array. On log-log axes a power law
# $y \propto L^p$ is a straight line of slope $p$; we fit $p$ on the three longest lengths, where the
# $L^2$ term dominates.

# %%
def numpy_attention(q, k, v):
    """softmax(q k^T / sqrt(D)) v holding a single (..., L, S) array: the softmax runs in place."""
    weights = q @ np.swapaxes(k, -1, -2)               # (..., L, S): the one big array
    weights *= 1.0 / math.sqrt(q.shape[-1])
    weights -= weights.max(axis=-1, keepdims=True)     # (..., L, 1) row max: exp never overflows
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v                                 # (..., L, D_v)


def traced_peak(attention, shapes, dtype=np.float32, seed=0):
    """Peak bytes allocated while drawing q, k, v of these shapes and running `attention` on them."""
    rng = np.random.default_rng(seed)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        q, k, v = (rng.standard_normal(shape, dtype=dtype) for shape in shapes)  # drawn in place: no copies
        attention(q, k, v)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


LENGTHS = [256, 512, 1024, 2048, 4096]
heads, width = 1, 32
inputs = {n: [torch.randn(1, heads, n, width) for _ in range(3)] for n in LENGTHS}
kernels = {"naive (torch)": naive_attention, "fused (torch SDPA)": F.scaled_dot_product_attention}
seconds = {name: np.full(len(LENGTHS), np.inf) for name in kernels}
for name, kernel in kernels.items():  # warm-up
    for n in LENGTHS:
        kernel(*inputs[n])
for _ in range(3):  # round robin: a burst of other work on the machine hits every length alike; keep the best
    for name, kernel in kernels.items():
        for i, n in enumerate(LENGTHS):
            best = best_time(kernel, *inputs[n], repeats=1, budget=0.02, warmup=False)
            seconds[name][i] = min(seconds[name][i], best)
del inputs
peaks = np.array([traced_peak(numpy_attention, [(1, heads, n, width)] * 3) for n in LENGTHS])
memory_slope = fitted_slope(LENGTHS[-3:], peaks[-3:])

fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, y in seconds.items():
    ax_t.loglog(LENGTHS, y * 1e3, "o-", label=f"{name}: slope {fitted_slope(LENGTHS[-3:], y[-3:]):.2f}")
ax_m.loglog(LENGTHS, peaks / 2**20, "o-", label=f"naive (NumPy, tracemalloc): slope {memory_slope:.2f}")
for ax, y in ((ax_t, seconds["naive (torch)"] * 1e3), (ax_m, peaks / 2**20)):
    ax.loglog(LENGTHS, y[-1] * (np.array(LENGTHS) / LENGTHS[-1]) ** 2.0, "k:", label="slope 2 (reference)")
    ax.set_xticks(LENGTHS, [str(n) for n in LENGTHS], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("sequence length L = S")
    ax.legend(fontsize=8)
ax_t.set(ylabel="CPU time per call (ms)", title="time (best of 3 rounds)")
ax_m.set(ylabel="peak memory (MiB)", title="peak memory")
fig.suptitle(f"B=1, H={heads}, D=D_v={width}, float32 — {MACHINE}", fontsize=8)
fig.tight_layout()
plt.show()
for i, n in enumerate(LENGTHS):
    gflop = attention_flops(1, heads, n, n, width, width) / 1e9
    naive_s, fused_s = seconds["naive (torch)"][i], seconds["fused (torch SDPA)"][i]
    print(f"L = S = {n:5d}: naive {naive_s * 1e3:7.2f} ms ({gflop / naive_s:5.1f} GFLOP/s), "
          f"fused {fused_s * 1e3:7.2f} ms ({gflop / fused_s:5.1f} GFLOP/s); naive peak {peaks[i] / 2**20:6.2f} MiB")
print(f"fitted slope of the peak memory on the 3 longest lengths: {memory_slope:.2f}")
assert 1.9 < memory_slope < 2.05, memory_slope

# %% [markdown]
# **Reading the plot.** Memory follows slope 2 closely: the `(L, S)` array is most of the bytes once $L$
# is a few times $D + D_v$. Time is noisier. The arithmetic grows with slope exactly 2
# (`attention_flops`), so once fixed per-call overheads stop mattering, measured time grows about that
# fast or faster; where the naive kernel's slope comes out above 2, the GFLOP/s column shows why: each pair
# gets *slower* as the `(L, S)` matrix outgrows the processor's caches and the softmax waits on memory.
# The fused kernel never writes that matrix out, which is its whole advantage (section 6). Times are
# the CPU time of this thread (`best_time`), the best of three rounds: on a shared machine, wall-clock
# time would also count the moments other programs hold the core, and long calls suffer most from that.

# %% [markdown] tags=["question:qa-9"]
# ### Time complexity of self-attention in sequence length n.
#
# Quadratic: each of the $n^2$ query–key pairs costs a $D$-wide dot product and a $D_v$-wide weighted
# add, $4 n^2 D$ FLOPs per head when $D_v = D$, $O(n^2 d)$ per layer (Vaswani et al. 2017, Table 1).
# Stored weights take $O(n^2)$ memory; here memory grew with slope 2, time about as fast or faster (plot).
#
# - All heads together ($H D = E$): $4 n^2 E$ FLOPs against $24 n E^2$ for the projections and MLP, so
#   attention dominates only past $n \approx 6E$ (section 4).
# - A causal mask leaves $n(n+1)/2$ pairs: half the work, if the kernel skips the hidden ones.
# - Decoding with a KV cache: $O(n D)$ per new token, still $O(n^2 D)$ for $n$ tokens.
# - FlashAttention keeps the arithmetic but needs only $O(n)$ extra memory (Dao et al. 2022).
# - Sparse, local and linear attention attack the quadratic term (notebook 07).

# %% [markdown]
# ## 3. Memory: which tensors, how many bytes
#
# A forward pass of attention holds its inputs and its output, and in between either the whole weight
# matrix or, in a fused kernel, only a little per row:
#
# | tensor | shape | naive (`materialize=True`) | fused (`materialize=False`) |
# |---|---|---|---|
# | $q$, output | `(B, H, L, D)`, `(B, H, L, D_v)` | yes | yes |
# | $k$, $v$ | `(B, H, S, D)`, `(B, H, S, D_v)` | yes | yes |
# | weights | `(B, H, L, S)` | once (softmax in place) | never stored |
# | log-sum-exp | `(B, H, L)` | not needed | kept for the backward pass, at least `float32` |
#
# All in the input's dtype (`float32` 4 bytes, `float16` and `bfloat16` 2, `float64` 8), except the
# log-sum-exp, which a kernel accumulates in at least `float32`: `max(itemsize, 4)` bytes per row.
# (FlashAttention-2 and PyTorch's fused kernels keep this one number per row, Dao 2023; the first
# FlashAttention kept two, the row max and the row sum, Dao et al. 2022.)
# `bfloat16` is not a NumPy dtype, so a byte counter must know its size (2 bytes: 1 sign, 8 exponent and
# 7 mantissa bits) by name.
#
# ### Exercise: `attention_memory_bytes`
#
# Implement `attention_memory_bytes(B, H, L, S, D, D_v, dtype="float32", materialize=True)` in
# `src/attnlab/cost.py`. `dtype` may be a NumPy dtype or type, a name (`"bfloat16"` included), or an
# int (the bytes per element). Return an exact Python `int`; a negative size raises `ValueError`.

# %%
from attnlab.cost import attention_memory_bytes

B, H, L, S, D, D_v = 2, 3, 5, 7, 4, 6
for label, dtype in (("np.float32", np.float32), ('"bfloat16"', "bfloat16"),
                     ('np.dtype("float64")', np.dtype("float64")), ("2 (bytes)", 2)):
    naive = attention_memory_bytes(B, H, L, S, D, D_v, dtype)
    fused = attention_memory_bytes(B, H, L, S, D, D_v, dtype, materialize=False)
    print(f"dtype {label:>20}: naive {naive:6d} bytes, fused {fused:6d} bytes")

# %% tags=["check"]
check("cost.attention_memory_bytes")

# %% [markdown]
# **The estimate against a measured peak.** `tracemalloc` records the peak of the memory NumPy
# allocates. Draw $q, k, v$ and run `numpy_attention` (section 2) under it, for several shapes with
# every dimension distinct, in `float32` and `float64`: the measured peak and `attention_memory_bytes`
# must agree within 10%. Then the same attention written the textbook way,
# `e = np.exp(s - s.max(...)); w = e / e.sum(...)`, which creates a new `(L, S)` array at every step.

# %%
def textbook_attention(q, k, v):
    """The same function, each step making a new (..., L, S) array."""
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


print(f"{'B, H, L, S, D, D_v':>24} {'dtype':>8} {'estimate':>12} {'measured':>12} {'ratio':>7}   textbook")
for (B, H, L, S, D, D_v) in [(2, 3, 500, 700, 32, 48), (1, 2, 1024, 1536, 64, 80), (3, 1, 640, 384, 96, 40)]:
    for dtype in (np.float32, np.float64):
        shapes = [(B, H, L, D), (B, H, S, D), (B, H, S, D_v)]
        estimate = attention_memory_bytes(B, H, L, S, D, D_v, np.dtype(dtype))
        measured = traced_peak(numpy_attention, shapes, dtype)
        textbook = traced_peak(textbook_attention, shapes, dtype)
        print(f"{str((B, H, L, S, D, D_v)):>24} {np.dtype(dtype).name:>8} {estimate:12d} {measured:12d} "
              f"{measured / estimate:7.4f}   {textbook / estimate:.2f}x the estimate")
        assert abs(measured / estimate - 1) < 0.10, (measured, estimate)
print("attention_memory_bytes is within 10% of the tracemalloc peak in every case")

# %% [markdown]
# The estimate matches to a fraction of a percent. The small excess is Python's own objects, not the
# row max and row sum: those are freed before the output is allocated, so they are not part of the
# peak. The textbook version holds three `(L, S)` arrays at its peak (the scores, the shifted scores
# and their exponentials), well over twice the estimate (last column). That is worth knowing, but the
# fix for long sequences is not in-place arithmetic; it is never storing the `(L, S)` matrix (section 6,
# notebook 08).
#
# How the two modes compare as the sequence grows: for $L = S = N$ the weights take $B H N^2$
# elements against $2 B H N (D + D_v)$ for everything else, so they dominate once $N > 2(D + D_v)$.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
N = np.array([256, 1024, 4096, 16384, 65536, 262144])
for dtype, style in (("float32", "-"), ("bfloat16", "--")):
    for materialize in (True, False):
        nbytes = [attention_memory_bytes(1, 32, int(n), int(n), 128, 128, dtype, materialize) for n in N]
        ax.loglog(N, np.array(nbytes) / 2**30, style, marker="o",
                  label=f"{dtype}, {'weights stored' if materialize else 'fused (no weights)'}")
ax.axhline(80, color="grey", lw=0.8)
ax.text(N[0], 95, "80 GiB (one large GPU)", fontsize=8)
ax.set(xlabel="sequence length L = S", ylabel="GiB per layer", title="One attention layer, B=1, H=32, D=128")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Attention against the layers it replaced (Vaswani et al. 2017, Table 1)
#
# Vaswani et al. compared four ways of mixing information across $n$ positions of width $d$:
#
# | layer | complexity per layer | sequential operations | maximum path length |
# |---|---|---|---|
# | self-attention | $O(n^2 d)$ | $O(1)$ | $O(1)$ |
# | recurrent | $O(n d^2)$ | $O(n)$ | $O(n)$ |
# | convolutional (kernel $k$) | $O(k n d^2)$ | $O(1)$ | $O(\log_k n)$ |
# | self-attention restricted to $r$ neighbours | $O(r n d)$ | $O(1)$ | $O(n/r)$ |
#
# The table's $O(\log_k n)$ is for dilated convolutions; their text adds that contiguous kernels need a
# stack of $O(n/k)$ layers. The restricted row is a proposal for very long inputs (a neighbourhood of size
# $r$ centred on each output position), left to future work, not a layer they trained.
#
# Each column can be measured:
#
# - **complexity per layer**: FLOPs from `FlopCounterMode` at two lengths and two widths, giving the
#   exponents of $n$ and $d$ ($k$ and $r$ stay fixed). Only the mixing is counted: the attention layers
#   here have no projections (q = k = v = x), as the table counts attention's $n^2 d$ and the
#   recurrent and convolutional layers' own weight products;
# - **sequential operations**: the longest chain of dependent operations in one layer, read from the
#   autograd graph (each node waits for its inputs);
# - **maximum path length**: stack layers until the last output depends on the first input (its gradient
#   becomes non-zero), then count the autograd nodes on the shortest path between the two.
#
# All layers are causal (position $i$ reads positions $\le i$), so "first input to last output" is the
# longest path. The convolutions are causal too, $k = 3$, contiguous or dilated. Dilated causal stacks
# come from WaveNet (van den Oord et al. 2016: $k = 2$, dilation doubling per layer) and ByteNet
# (Kalchbrenner et al. 2016); here the dilation is $3^{\text{layer}}$, so each layer multiplies the reach
# by $k$, as the table's $\log_k n$ assumes. The restricted attention is causal as well: it sees the
# $r = 4$ previous positions and itself, where the paper's neighbourhood is centred.

# %%
class MixingAttention(nn.Module):
    """Causal self-attention with q = k = v = x; window=r restricts query i to keys i - r .. i."""

    def __init__(self, d, window=None):
        super().__init__()
        self.window = window

    def forward(self, rows):                        # rows: a list of n tensors (1, d), one per position
        x = torch.cat(rows)                         # (n, d)
        n, d = x.shape
        if self.window is None:
            scores = x @ x.T / math.sqrt(d)          # (n, n): every pair
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            return list((torch.softmax(scores, dim=-1) @ x).split(1))
        r = self.window                              # banded: only r + 1 keys per query are ever scored
        windows = F.pad(x, (0, 0, r, 0)).unfold(0, r + 1, 1)                  # (n, d, r + 1): keys i - r .. i
        scores = torch.einsum("nd,ndw->nw", x, windows) / math.sqrt(d)       # (n, r + 1)
        key_position = torch.arange(n)[:, None] - r + torch.arange(r + 1)[None, :]
        scores = scores.masked_fill(key_position < 0, float("-inf"))         # padding before position 0
        return list(torch.einsum("nw,ndw->nd", torch.softmax(scores, dim=-1), windows).split(1))


class Recurrent(nn.Module):
    """A GRU layer run step by step: step t needs the state of step t - 1."""

    def __init__(self, d):
        super().__init__()
        self.cell = nn.GRUCell(d, d)

    def forward(self, rows):
        h, out = torch.zeros_like(rows[0]), []
        for x_t in rows:                             # n dependent steps
            h = self.cell(x_t, h)                    # (1, d)
            out.append(h)
        return out


class Convolution(nn.Module):
    """A causal 1-d convolution over positions, kernel k, padded on the left only."""

    def __init__(self, d, k=3, dilation=1):
        super().__init__()
        self.conv, self.left = nn.Conv1d(d, d, k, dilation=dilation), dilation * (k - 1)

    def forward(self, rows):
        x = torch.cat(rows).T[None]                  # (1, d, n)
        return list(self.conv(F.pad(x, (self.left, 0)))[0].T.split(1))


LAYERS = {
    "self-attention": lambda d, depth: MixingAttention(d),
    "recurrent (GRU)": lambda d, depth: Recurrent(d),
    "convolutional, k=3": lambda d, depth: Convolution(d, 3),
    "dilated conv, k=3": lambda d, depth: Convolution(d, 3, dilation=3 ** depth),
    "restricted attention, r=4": lambda d, depth: MixingAttention(d, window=4),
}


def layer_flops(name, n, d):
    torch.manual_seed(0)
    layer, rows = LAYERS[name](d, 0), list(torch.randn(n, d).split(1))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(rows)
    return counter.get_total_flops()


def longest_chain(output):
    """Autograd nodes on the longest dependency chain ending at `output` (iterative depth-first search)."""
    depth, stack = {}, [(output.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        if node in depth:
            continue
        inputs = [nxt for nxt, _ in node.next_functions if nxt is not None]
        if expanded:
            depth[node] = 1 + max((depth[nxt] for nxt in inputs), default=0)
        else:
            stack.append((node, True))
            stack.extend((nxt, False) for nxt in inputs if nxt not in depth)
    return depth[output.grad_fn]


def shortest_path(output, leaf):
    """Autograd nodes on the shortest path from `output` back to the leaf tensor `leaf` (breadth first)."""
    frontier, seen, distance = [output.grad_fn], {output.grad_fn}, 1
    while frontier:
        if any(getattr(node, "variable", None) is leaf for node in frontier):
            return distance
        following = []
        for node in frontier:
            for nxt, _ in node.next_functions:
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    following.append(nxt)
        frontier, distance = following, distance + 1
    return None


def path_to_first(name, n, d=8):
    """(layers stacked until the last output depends on the first input, nodes on the shortest path)."""
    torch.manual_seed(0)
    inputs = [torch.randn(1, d, requires_grad=True) for _ in range(n)]
    rows = inputs
    for depth in range(1, n + 1):
        rows = LAYERS[name](d, depth - 1)(rows)
        grad, = torch.autograd.grad(rows[-1].sum(), inputs[0], retain_graph=True)
        if grad.abs().max() > 0:
            return depth, shortest_path(rows[-1], inputs[0])


started = time.perf_counter()
table = {}
for name in LAYERS:
    f_small, f_long, f_wide = layer_flops(name, 32, 16), layer_flops(name, 64, 16), layer_flops(name, 64, 32)
    chains, paths = [], []
    for n in (16, 32, 64):
        torch.manual_seed(0)
        rows = LAYERS[name](8, 0)([torch.randn(1, 8, requires_grad=True) for _ in range(n)])
        chains.append(longest_chain(rows[-1]))
        paths.append(path_to_first(name, n))
    table[name] = dict(n_exp=math.log2(f_long / f_small), d_exp=math.log2(f_wide / f_long), chains=chains,
                       paths=paths)

rows_md = ["| layer | FLOPs ~ n^a d^b (measured a, b) | longest chain in one layer, n = 16, 32, 64 | "
           "layers until out[n-1] sees x[0]; nodes on the path, n = 16, 32, 64 |", "|---|---|---|---|"]
for name, r in table.items():
    paths = ", ".join(f"{layers} ({nodes})" for layers, nodes in r["paths"])
    rows_md.append(f"| {name} | a = {r['n_exp']:.2f}, b = {r['d_exp']:.2f} | "
                   f"{', '.join(map(str, r['chains']))} | {paths} |")
display(Markdown("\n".join(rows_md)))
print(f"measured in {time.perf_counter() - started:.1f} s ({MACHINE})")

# %% [markdown]
# Reading the measured table against the paper's:
#
# - **FLOPs.** Self-attention grows as $n^2 d$, the recurrent and convolutional layers as $n d^2$ (a
#   $d \times d$ weight product per position, times $k$ for the kernel), restricted attention as
#   $n d$ (times $r + 1$ keys).
# - **Sequential operations.** Only the GRU's chain of dependent operations grows with $n$ (about ten
#   autograd nodes per step): step $t$ cannot start before step $t - 1$. Every other layer's chain
#   stays the same length whatever $n$: all positions can be computed at once.
# - **Path length.** One attention layer links the first input to the last output through a fixed
#   handful of operations. The GRU needs one layer, but the path runs through all $n - 1$ steps. A
#   contiguous $k = 3$ convolution widens its view by $k - 1 = 2$ positions per layer, so it needs
#   $\lceil (n-1)/2 \rceil$ layers; dilations $1, 3, 9, \dots$ reach $3^{\ell} - 1$ positions back after
#   $\ell$ layers, so they need $\lceil \log_3 n \rceil$; a window of $r = 4$ needs $\lceil (n - 1)/4 \rceil$.
#
# **Sequential steps cost time, even with fewer FLOPs.** Vaswani et al. note that self-attention's
# complexity is below a recurrent layer's when $n < d$, constants aside. With the constants of these
# layers, $4 n^2 d$ FLOPs for attention and $12 n d^2$ for a GRU (three gates, two $d \times d$ products
# each), the crossover is at $n = 3d$: below, attention does less arithmetic than the GRU at $n = 128$,
# $d = 64$, and more at $n = 512$, yet at both sizes one batched product beats $n$ small dependent steps.

# %%
for n, d in [(128, 64), (512, 64)]:
    x_rows = list(torch.randn(n, d).split(1))
    with torch.no_grad():
        for name in ("self-attention", "recurrent (GRU)"):
            layer = LAYERS[name](d, 0)
            seconds_layer = best_time(layer, x_rows, repeats=2)
            flops_layer = layer_flops(name, n, d)
            print(f"n={n:4d}, d={d}: {name:16s} {flops_layer / 1e6:7.1f} MFLOP in {seconds_layer * 1e3:7.2f} ms")

# %% [markdown]
# **Where attention starts to dominate a Transformer layer.** A layer's projections ($Q, K, V$ and the
# output, $4E^2$ weights) and its MLP ($8E^2$ weights) cost $2 \cdot 12 E^2$ FLOPs per token; attention
# costs $4 n E$ per token over $n$ keys (all heads together). They are equal at $n = 6E$. The flop
# counter confirms it on one GPT-2-small-sized block ($E = 768$, 12 heads).

# %%
E_gpt, H_gpt = 768, 12
with torch.device("meta"):  # the meta device computes shapes, no numbers: instant, and the flop counter still counts
    qkv, out_proj = nn.Linear(E_gpt, 3 * E_gpt), nn.Linear(E_gpt, E_gpt)
    up, down = nn.Linear(E_gpt, 4 * E_gpt), nn.Linear(4 * E_gpt, E_gpt)
for n in (512, 4608, 16384):
    x = torch.empty(1, n, E_gpt, device="meta")
    with FlopCounterMode(display=False) as counter:
        qkv(x), out_proj(x), down(up(x))
    dense = counter.get_total_flops()
    attn = attention_flops(1, H_gpt, n, n, E_gpt // H_gpt, E_gpt // H_gpt)
    print(f"n = {n:5d}: projections + MLP {dense / 1e9:6.1f} GFLOP, attention {attn / 1e9:6.1f} GFLOP "
          f"(attention / rest = {attn / dense:.2f}; n / 6E = {n / (6 * E_gpt):.2f})")

# %% [markdown] tags=["question:theory-15"]
# ### What are the computational complexities of different attention types?
#
# Full softmax attention costs $O(L S D)$ time per head ($O(n^2 D)$ when $L = S = n$) and $O(LS)$
# memory if the weights are stored; the variants trade exactness or flexibility for less. The measured
# table above covers Vaswani et al. (2017); the others, per head:
#
# - Causal: $n(n+1)/2$ pairs, half the arithmetic when the kernel skips masked blocks.
# - Sliding window of $w$ keys: $O(n w D)$ (Table 1's restricted attention; Longformer, Beltagy et al.
#   2020, adds global tokens).
# - Strided sparse: $O(n \sqrt{n}\, D)$ (Child et al. 2019); LSH buckets $O(n \log n\, D)$ (Kitaev
#   et al. 2020).
# - Linear attention: $O(n D^2)$ (Katharopoulos et al. 2020); Performer's $m$ random features
#   $O(n m D)$ (Choromanski et al. 2021); notebook 07.
# - FlashAttention: exact, same FLOPs, $O(n)$ extra memory (Dao et al. 2022); MQA/GQA: same attention
#   FLOPs, an $H / H_{kv}$ times smaller KV cache (section 6).

# %% [markdown]
# ## 5. Where the memory goes: training and inference
#
# Attention's own tensors are one item of several. In **training** a model holds its weights, their
# gradients, the optimiser's state (AdamW keeps two moments per weight) and the **activations** saved
# for the backward pass, which grow with batch and length, the weight matrices of naive attention
# quadratically. In **inference** there are no gradients and almost no activations, but a decoder
# keeps the keys and values of every past position: the **KV cache**.
#
# ### Exercise: `kv_cache_bytes`
#
# Implement `kv_cache_bytes(num_layers, B, H_kv, S, D, dtype)` in `src/attnlab/cost.py`: every layer
# caches keys `(B, H_kv, S, D)` **and** values `(B, H_kv, S, D_v)` (`D_v` is an optional keyword,
# default `D`). Only the key/value heads count: queries are never cached. Same rules as before: an
# exact `int`, `"bfloat16"` is 2 bytes, a negative size raises `ValueError`.

# %%
from attnlab.cost import kv_cache_bytes

# Llama 2 7B: 32 layers, 32 heads of width 128; Llama 2 70B: 80 layers, 8 key/value heads of 128
# (grouped-query attention for 64 query heads) (Touvron et al. 2023). One 4096-token sequence, bfloat16:
for model, layers_, heads_kv in (("Llama 2 7B", 32, 32), ("Llama 2 70B", 80, 8)):
    nbytes = kv_cache_bytes(layers_, 1, heads_kv, 4096, 128, "bfloat16")
    per_token = kv_cache_bytes(layers_, 1, heads_kv, 1, 128, "bfloat16")
    print(f"{model}: {nbytes / 2**30:.2f} GiB per 4096-token sequence ({per_token / 2**10:.0f} KiB per token)")

# %% tags=["check"]
check("cost.kv_cache_bytes")

# %% [markdown]
# **A named small configuration: GPT-2 small** (Radford et al. 2019: 12 layers, $E = 768$, a 1024-token
# context, a 50257-token vocabulary, layer norm before each block; the released model has 12 heads and
# ties the output layer to the token embeddings). The paper's Table 2 lists it at 117M parameters; the
# released weights hold 124M, which the model below reproduces (printed). We build it with naive
# attention and measure its activations with `torch.autograd.graph.saved_tensors_hooks`, which sees
# every tensor autograd keeps for the backward pass (parameters excluded, shared storage counted once).
# The full model runs on PyTorch's `meta` device, which computes shapes but no numbers; the same
# measurement on a small model on the CPU gives exactly the same bytes (asserted below). Training:
# `float32` weights, AdamW, batch 8 × 1024 tokens. Inference: `bfloat16` weights and a KV cache of 1024
# positions.

# %%
class Decoder(nn.Module):
    """A GPT-style decoder (pre-LN, GELU MLP, tied output layer). H_kv < H: grouped-query attention.

    forward(idx) runs a whole sequence; forward(idx, cache) appends idx's keys and values to `cache` (a
    KVCache) and attends over everything cached so far. fused=True uses F.scaled_dot_product_attention."""

    def __init__(self, vocab, E, H, layers, context, H_kv=None):
        super().__init__()
        self.H, self.H_kv, self.D = H, H_kv or H, E // H
        self.tok, self.pos = nn.Embedding(vocab, E), nn.Embedding(context, E)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(E), q=nn.Linear(E, E), kv=nn.Linear(E, 2 * self.H_kv * self.D), out=nn.Linear(E, E),
            ln2=nn.LayerNorm(E), up=nn.Linear(E, 4 * E), down=nn.Linear(4 * E, E))) for _ in range(layers))
        self.ln = nn.LayerNorm(E)

    def attend(self, q, k, v, fused):
        """q (B, H, T, D) against k, v (B, H_kv, S, D): end-aligned causal mask, query heads grouped."""
        B, H, T, D = q.shape
        H_kv, S = k.shape[1], k.shape[2]
        q = q.reshape(B, H_kv, (H // H_kv) * T, D)   # each key/value head serves H // H_kv query heads
        visible = (torch.arange(S, device=q.device)[None, :]
                   <= torch.arange(T, device=q.device)[:, None] + (S - T)).repeat(H // H_kv, 1)
        if fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
        else:
            out = naive_attention(q, k, v, visible)
        return out.reshape(B, H, T, D)

    def forward(self, idx, cache=None, fused=False):
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        x = self.tok(idx) + self.pos(torch.arange(start, start + T, device=idx.device))  # (B, T, E)
        for i, blk in enumerate(self.blocks):
            h = blk["ln1"](x)
            q = blk["q"](h).view(B, T, self.H, self.D).transpose(1, 2)                # (B, H, T, D)
            k, v = blk["kv"](h).view(B, T, 2, self.H_kv, self.D).permute(2, 0, 3, 1, 4)  # (B, H_kv, T, D) each
            if cache is not None:
                k, v = cache.store(i, k, v)                                          # (B, H_kv, start + T, D)
            x = x + blk["out"](self.attend(q, k, v, fused).transpose(1, 2).reshape(B, T, -1))
            x = x + blk["down"](F.gelu(blk["up"](blk["ln2"](x))))
        if cache is not None:
            cache.length += T
        return self.ln(x) @ self.tok.weight.T                                         # (B, T, vocab)


def saved_activation_bytes(model, idx, fused=False):
    """Bytes autograd keeps for the backward pass of the loss (parameters excluded; each storage once),
    and the part held in (..., T, T) attention matrices."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    held, square = {}, {}
    T = idx.shape[1]

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in params:
            held[storage._cdata] = storage.nbytes()
            if t.dim() == 4 and t.shape[-1] == T and t.shape[-2] % T == 0:   # (B, H_kv, G*T, T) weights
                square[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(idx, fused=fused)
        F.cross_entropy(logits.flatten(0, 1), idx.flatten())  # the loss keeps its log-softmax (B*T, vocab)
    return sum(held.values()), sum(square.values())


# the meta device counts the same bytes as real arithmetic on the CPU, for naive attention
small = dict(vocab=500, E=96, H=4, layers=3, context=256)
counts = {}
for device in ("cpu", "meta"):
    torch.manual_seed(0)
    with torch.device(device):
        model, idx = Decoder(**small), torch.randint(0, 500, (2, 200))
    counts[device] = saved_activation_bytes(model, idx)
assert counts["cpu"] == counts["meta"], counts
print(f"small model, naive attention: {counts['cpu'][0]} bytes saved on the CPU, {counts['meta'][0]} on meta")

# AdamW's state, measured after one step of the small model on the CPU: two float32 moments per weight
torch.manual_seed(0)
model = Decoder(**small)
idx = torch.randint(0, 500, (2, 200))
optimizer = torch.optim.AdamW(model.parameters())
F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
optimizer.step()
n_params = sum(p.numel() for p in model.parameters())
state_bytes = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if t.dim() > 0)
print(f"AdamW state: {state_bytes / n_params:.1f} bytes per parameter")

gpt2 = dict(vocab=50257, E=768, H=12, layers=12, context=1024)
with torch.device("meta"):
    model, idx = Decoder(**gpt2), torch.randint(0, 50257, (8, 1024))
n_params = sum(p.numel() for p in model.parameters())
activations, attention_matrices = saved_activation_bytes(model, idx)
print(f"GPT-2 small: {n_params / 1e6:.1f} M parameters; batch 8 x 1024: {activations / 2**30:.2f} GiB of "
      f"activations, of which {attention_matrices / 2**30:.2f} GiB ({attention_matrices / activations:.0%}) "
      "in attention weights")

# %%
GiB = 2**30
lse = gpt2["layers"] * 8 * 12 * 1024 * 4  # a fused kernel keeps one float32 log-sum-exp per query row and layer
log_softmax = 8 * 1024 * gpt2["vocab"] * 4
print(f"the loss's log-softmax alone: {log_softmax / GiB:.2f} GiB; weights + gradients + AdamW: "
      f"{16 * n_params / GiB:.2f} GiB")
for B_inference in (8, 64):
    cache_size = kv_cache_bytes(12, B_inference, 12, 1024, 64, "bfloat16")
    print(f"inference, {B_inference} x 1024 tokens: KV cache {cache_size / GiB:.2f} GiB, "
          f"{cache_size / (2 * n_params):.1f} x the bfloat16 weights ({2 * n_params / GiB:.2f} GiB)")
bars = {
    "train, naive\nattention": {"weights": 4 * n_params, "gradients": 4 * n_params, "AdamW moments": 8 * n_params,
                                "activations: attention weights": attention_matrices,
                                "activations: everything else": activations - attention_matrices},
    "train, fused\nattention": {"weights": 4 * n_params, "gradients": 4 * n_params, "AdamW moments": 8 * n_params,
                                "activations: attention weights": lse,
                                "activations: everything else": activations - attention_matrices},
    "inference\nB=8, S=1024": {"weights": 2 * n_params, "KV cache": kv_cache_bytes(12, 8, 12, 1024, 64, "bfloat16")},
    "inference\nB=64, S=1024": {"weights": 2 * n_params, "KV cache": kv_cache_bytes(12, 64, 12, 1024, 64, "bfloat16")},
}
colours = {"weights": "tab:blue", "gradients": "tab:cyan", "AdamW moments": "tab:purple",
           "activations: attention weights": "tab:red", "activations: everything else": "tab:orange",
           "KV cache": "tab:green"}
fig, ax = plt.subplots(figsize=(8, 4))
labelled = set()
for x_pos, (label, parts) in enumerate(bars.items()):
    bottom = 0.0
    for part, nbytes in parts.items():
        ax.bar(x_pos, nbytes / GiB, bottom=bottom, color=colours[part], label=None if part in labelled else part)
        labelled.add(part)
        bottom += nbytes / GiB
    ax.text(x_pos, bottom + 0.2, f"{bottom:.1f} GiB", ha="center", fontsize=8)
ax.set_xticks(range(len(bars)), list(bars))
ax.set(ylabel="GiB", title=f"GPT-2 small ({n_params / 1e6:.0f} M parameters): training in float32 with AdamW, "
       "inference in bfloat16")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The measured picture for this configuration:
#
# - **Training**: weights, gradients and AdamW take 16 bytes per parameter (printed above); the
#   activations of a batch of 8 × 1024 tokens take several times that, and the attention weights (one
#   `(1024, 1024)` matrix per head, layer and sequence) are over 40% of them (printed). A fused kernel
#   keeps one number per row instead: the second bar is the first with those matrices replaced by one
#   `float32` log-sum-exp per row (a red sliver too thin to see), an estimate; section 6 measures a fused
#   kernel on a small decoder. Activation recomputation trades the rest for compute (Chen et al. 2016);
#   Korthikanti et al. (2022) recompute only attention's core (scores, softmax, dropout, weights times
#   values), which holds much of the memory for little of the compute.
# - **The loss** is not small either: its log-softmax over 50257 tokens for 8192 positions is part of
#   "everything else" (printed above).
# - **Inference**: the weights are fixed, and the KV cache grows with batch and length; already at 8
#   sequences of 1024 tokens it outweighs the `bfloat16` weights, and at 64 it is about ten times them
#   (printed above).

# %% [markdown] tags=["question:theory-37"]
# ### What are the memory requirements for attention computation?
#
# A naive forward pass holds $q, k, v$ and the output, $O(BH(L+S)D)$, plus the `(B, H, L, S)` weights,
# $O(BHLS)$, which dominate once $L, S \gg D$; a fused kernel drops the weights and keeps $O(BHL)$ row
# statistics (Dao et al. 2022). `attention_memory_bytes` matched a measured peak within 1% (section 3).
#
# - Training keeps the attention weights for the backward pass unless the kernel recomputes them: over
#   40% of GPT-2 small's activations at batch 8 × 1024 with naive attention (section 5).
# - Inference adds the KV cache, $2 \cdot \text{layers} \cdot B H_{kv} S D$ elements:
#   2 GiB for one 4096-token Llama 2 7B sequence in `bfloat16` (section 5).
# - Bytes per element: 4 in `float32`, 2 in `float16`/`bfloat16` (which NumPy lacks); the textbook
#   softmax held three `(L, S)` arrays at once (section 3).
# - Chunking keys and queries needs only $O(\sqrt{n})$ extra memory in practice (Rabe & Staats 2021).

# %% [markdown]
# ## 6. The optimisation toolbox, measured
#
# Five tools, each measured before and after on this machine. Times are CPU time of the one thread that
# runs the work (`best_time`, section 2). Memory is measured where PyTorch allocates it: on Linux the
# process's peak resident memory (`VmHWM`), which the kernel lets a process reset
# (`/proc/self/clear_refs`).

# %%
def peak_rss_growth(f, *args):
    """Growth of this process's peak resident memory while f runs (Linux), or None elsewhere."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None

    def status(field):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))

    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current resident size
    except OSError:
        return None
    before = status("VmRSS:")
    f(*args)
    return status("VmHWM:") - before


def mib(nbytes):
    return "n/a (not Linux)" if nbytes is None else f"{nbytes / 2**20:7.1f} MiB"

# %% [markdown]
# **(a) A fused kernel.** `F.scaled_dot_product_attention` computes the same function without storing
# the `(L, S)` weights (on the CPU, the PyTorch printed at the top dispatches it to a FlashAttention-style
# kernel, `_scaled_dot_product_flash_attention_for_cpu`). Below: one `float32` layer, $B = 1$, $H = 2$,
# $L = S = 2048$, $D = 64$; then the memory autograd keeps for the backward pass of the small decoder,
# naive against fused.

# %%
q, k, v = (torch.randn(1, 2, 2048, 64) for _ in range(3))
t_naive, t_fused = best_time(naive_attention, q, k, v), best_time(F.scaled_dot_product_attention, q, k, v)
m_naive, m_fused = peak_rss_growth(naive_attention, q, k, v), peak_rss_growth(F.scaled_dot_product_attention, q, k, v)
err = (naive_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max().item()
print(f"naive: {t_naive * 1e3:7.1f} ms, peak memory +{mib(m_naive)}")
print(f"fused: {t_fused * 1e3:7.1f} ms, peak memory +{mib(m_fused)}   (max |difference| {err:.1e})")
print(f"one (2, 2048, 2048) float32 weight tensor is {2 * 2048 * 2048 * 4 / 2**20:.0f} MiB")
torch.manual_seed(0)
model, idx = Decoder(**small), torch.randint(0, 500, (2, 200))
saved_naive, _ = saved_activation_bytes(model, idx)
saved_fused, _ = saved_activation_bytes(model, idx, fused=True)
print(f"small decoder, saved for backward: naive {saved_naive / 2**20:.2f} MiB, fused {saved_fused / 2**20:.2f} MiB")

# %% [markdown]
# **(b) KV caching.** A decoder generates one token at a time. Without a cache each step runs the
# model on the whole prefix again; with one, each step computes the key and value of the new token
# only, appends them, and attends over the cache. A small decoder (2 layers, $E = 128$, 4 heads,
# untrained): first 48 tokens generated greedily both ways, which must be the same; then the time of one
# step at growing context lengths, both ways.

# %%
class KVCache:
    """Preallocated keys and values of every layer: (B, H_kv, capacity, D) each, filled up to `length`."""

    def __init__(self, model, B, capacity, dtype=torch.float32):
        shape = (B, model.H_kv, capacity, model.D)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in model.blocks]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in model.blocks]
        self.length = 0

    def store(self, layer, k, v):
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def nbytes(self):
        return sum(t.nbytes for t in self.keys + self.values)


@torch.no_grad()
def generate(model, prompt, steps, use_cache):
    """Greedy decoding: the prompt followed by `steps` generated tokens, and the cache (or None)."""
    tokens = prompt
    cache = KVCache(model, prompt.shape[0], prompt.shape[1] + steps) if use_cache else None
    logits = model(prompt, cache)
    for _ in range(steps):
        next_token = logits[:, -1:].argmax(dim=-1)                         # (B, 1)
        tokens = torch.cat([tokens, next_token], dim=1)
        logits = model(next_token, cache) if use_cache else model(tokens)  # one token, or the whole prefix
    return tokens, cache


torch.manual_seed(0)
decoder = Decoder(vocab=64, E=128, H=4, layers=2, context=1024).eval()
prompt = torch.randint(0, 64, (1, 16))
start = time.thread_time()
tokens_recompute, _ = generate(decoder, prompt, 48, use_cache=False)
seconds_recompute = time.thread_time() - start
start = time.thread_time()
tokens_cached, cache = generate(decoder, prompt, 48, use_cache=True)
seconds_cached = time.thread_time() - start
assert torch.equal(tokens_recompute, tokens_cached)
assert cache.nbytes() == kv_cache_bytes(2, 1, 4, 64, 32, "float32")
print(f"the same 48 tokens both ways: recompute {seconds_recompute:.2f} s, cached {seconds_cached:.2f} s; "
      f"cache {cache.nbytes()} bytes = kv_cache_bytes(2, 1, 4, 64, 32, 'float32')")

CONTEXTS = [32, 64, 128, 256, 512, 960]
step_seconds = {"recompute the prefix": [], "KV cache": []}
with torch.no_grad():
    for t in CONTEXTS:
        tokens = torch.randint(0, 64, (1, t + 1))
        cache = KVCache(decoder, 1, t + 1)
        decoder(tokens[:, :t], cache)                        # prefill t positions

        def cached_step():
            decoder(tokens[:, t:], cache)                    # one new token against t cached positions
            cache.length = t                                 # forget it again, for the next timing

        step_seconds["recompute the prefix"].append(best_time(decoder, tokens))
        step_seconds["KV cache"].append(best_time(cached_step))

fig, ax = plt.subplots(figsize=(6, 3.4))
for label, y in step_seconds.items():
    ax.loglog(CONTEXTS, np.array(y) * 1e3, "o-", label=f"{label}: slope {fitted_slope(CONTEXTS[-3:], y[-3:]):.2f}")
ax.set_xticks(CONTEXTS, [str(t) for t in CONTEXTS], minor=False)
ax.set_xticks([], minor=True)
ax.set(xlabel="context length when the token is generated", ylabel="CPU ms for one new token",
       title=f"One decoding step, small decoder ({platform.machine()}, 1 thread)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
for t, slow, fast in zip(CONTEXTS, *step_seconds.values()):
    print(f"context {t:4d}: recompute {slow * 1e3:6.2f} ms, cached {fast * 1e3:5.2f} ms ({slow / fast:5.1f}x)")

# %% [markdown]
# **(c) Grouped-query attention.** With $H_{kv} < H$ key/value heads, each serves $H / H_{kv}$ query heads
# (Ainslie et al. 2023; $H_{kv} = 1$ is multi-query attention, Shazeer 2019). Attention's FLOPs stay
# the same (only the key/value projections shrink); the cache shrinks by $H / H_{kv}$, and so does what
# a decoding step must read from memory, which bounds decoding speed once the cache is large: long
# contexts, big batches (Pope et al. 2022). Measured: one decoding step of one attention layer
# ($H = 16$ query heads, $D = 64$, 16384 cached positions, `float32`) with 16, 4 and 1 key/value heads,
# grouping the queries so that each cached head is read once.

# %%
H_q, S_cache, D_h = 16, 16384, 64
results = []
for H_kv in (16, 4, 1):
    k_cache, v_cache = torch.randn(1, H_kv, S_cache, D_h), torch.randn(1, H_kv, S_cache, D_h)
    q_step = torch.randn(1, H_kv, H_q // H_kv, D_h)   # the query heads of one new token, grouped by key/value head

    def step():
        weights = torch.softmax(q_step @ k_cache.transpose(-1, -2) / math.sqrt(D_h), dim=-1)  # (1, H_kv, G, S)
        return weights @ v_cache                                                             # (1, H_kv, G, D)

    seconds_step = best_time(step, repeats=5)
    cache_size = kv_cache_bytes(1, 1, H_kv, S_cache, D_h, "float32")
    assert cache_size == k_cache.nbytes + v_cache.nbytes
    results.append((H_kv, cache_size, seconds_step))
for H_kv, cache_size, seconds_step in results:
    print(f"H_kv = {H_kv:2d}: cache {cache_size / 2**20:6.1f} MiB per layer, "
          f"decoding step {seconds_step * 1e3:6.2f} ms")
for model, layers_, heads_kv in (("Llama 2 70B as published (GQA, 8)", 80, 8), ("the same with 64 KV heads", 80, 64)):
    print(f"{model}: {kv_cache_bytes(layers_, 1, heads_kv, 4096, 128, 'bfloat16') / 2**30:5.2f} GiB "
          "per 4096-token sequence (bfloat16)")

# %% [markdown]
# **(d) 16-bit formats.** `float16` and `bfloat16` halve every byte count (weights, activations, cache;
# a fused kernel's log-sum-exp stays `float32`). `float16` has more mantissa bits (10 against 7, so
# smaller rounding errors) but a narrow range: it overflows above 65504, and small gradients underflow,
# which is why `float16` training scales the loss (Micikevicius et al. 2018). `bfloat16` keeps
# `float32`'s 8 exponent bits and usually trains without loss scaling (Kalamkar et al. 2019). Measured:
# bytes, the error against a `float64` reference, and time on this CPU, where 16-bit arithmetic may or
# may not be faster than `float32` (it depends on the instruction set).

# %%
q64, k64, v64 = (torch.randn(1, 8, 1024, 64, dtype=torch.float64) for _ in range(3))
reference = F.scaled_dot_product_attention(q64, k64, v64)
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    qd, kd, vd = (t.to(dtype) for t in (q64, k64, v64))
    out = F.scaled_dot_product_attention(qd, kd, vd)
    seconds_dtype = best_time(F.scaled_dot_product_attention, qd, kd, vd)
    nbytes = attention_memory_bytes(1, 8, 1024, 1024, 64, 64, str(dtype).removeprefix("torch."), materialize=False)
    assert qd.nbytes == 1 * 8 * 1024 * 64 * dtype.itemsize
    print(f"{str(dtype):15s}: q {qd.nbytes / 2**20:4.1f} MiB, fused attention holds {nbytes / 2**20:5.2f} MiB, "
          f"max error {(out.double() - reference).abs().max().item():.1e}, {seconds_dtype * 1e3:7.1f} ms")

# %% [markdown]
# **(e) Tiling.** The fused kernel's trick is to never hold the `(L, S)` matrix: process the keys in
# blocks and keep a running max and sum per row (the online softmax), so the extra memory is one block.
# Notebook 08 builds that kernel (FlashAttention) step by step. The simplest form of the idea, chunking
# the *queries* (Rabe & Staats 2021 chunk the keys too), is already exact and already bounded: below,
# the NumPy peak of full attention against query chunks of 256 and 64 rows, one head, $L = S = 1024$,
# $D = 64$.

# %%
def chunked_attention(q, k, v, chunk):
    """Exact attention, `chunk` query rows at a time: the largest temporary is (..., chunk, S)."""
    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)   # (..., L, D_v)
    for start in range(0, q.shape[-2], chunk):
        out[..., start:start + chunk, :] = numpy_attention(q[..., start:start + chunk, :], k, v)
    return out


shapes = [(1, 1, 1024, 64)] * 3
rng = np.random.default_rng(0)
q_np, k_np, v_np = (rng.standard_normal(s, dtype=np.float32) for s in shapes)
assert np.allclose(chunked_attention(q_np, k_np, v_np, 64), numpy_attention(q_np, k_np, v_np), atol=1e-6)
for label, f in (("full", numpy_attention), ("chunks of 256", lambda q, k, v: chunked_attention(q, k, v, 256)),
                 ("chunks of 64", lambda q, k, v: chunked_attention(q, k, v, 64))):
    print(f"{label:14s}: peak {traced_peak(f, shapes) / 2**20:6.2f} MiB "
          f"(q, k, v and output alone: {4 * 1024 * 64 * 4 / 2**20:.2f} MiB)")

# %% [markdown] tags=["question:theory-38"]
# ### How do you optimize attention computation for efficiency?
#
# First find the bound: training and long prefills are limited by arithmetic and by the $O(n^2)$
# attention matrix, decoding by memory reads (model weights, KV cache). Then apply the matching tools,
# measured in section 6:
#
# - Fused, IO-aware kernels: same forward FLOPs, no `(L, S)` matrix (Dao et al. 2022; PyTorch's
#   `scaled_dot_product_attention`); here faster than naive and without its peak (a).
# - KV caching for generation: each step computes one token's keys and values instead of the whole
#   prefix (b).
# - Fewer key/value heads, MQA or GQA (Shazeer 2019; Ainslie et al. 2023): an $H/H_{kv}$ times smaller
#   cache and faster decoding steps (c); paged cache memory avoids fragmentation (Kwon et al. 2023).
# - 16-bit formats halve memory and traffic (d); tiling and chunking bound the extra memory (e,
#   notebook 08).
# - If exact attention is still too costly: sparse, local or linear attention change the model
#   (notebook 07).

# %% [markdown] tags=["question:theory-18"]
# ### What is the attention bottleneck and how to address it?
#
# Today it usually means attention's cost growing with the square of the context: $O(n^2)$ FLOPs, and
# $O(n^2)$ memory for naive weights, while decoding is limited by reading a KV cache that grows with
# every token. It is addressed by exact kernels that avoid storing the weights, by smaller caches, and by
# approximations that change the model.
#
# - In seq2seq the phrase names the fixed-length vector that attention removed (Bahdanau et al. 2014;
#   notebook 01, section 3).
# - Exact: FlashAttention (Dao et al. 2022); memory-saving chunking (Rabe & Staats 2021).
# - Cache: MQA/GQA, 16-bit or lower precision, paging (Kwon et al. 2023).
# - Approximate: local/sparse (Child et al. 2019; Beltagy et al. 2020), linear (Katharopoulos et al.
#   2020), notebook 07.
# - Attention is not always the largest cost: below $n \approx 6E$ the MLP and projections do more FLOPs
#   (section 4). Tools compared in theory-38.

# %% [markdown]
# ## 7. In your own words
#
# A colleague says: "causal attention costs half as much as bidirectional attention." For $L = S = 4096$,
# say when this is true and when it is not, and give the FLOP counts (per head, $D = D_v = 128$) of a
# kernel that computes every score and masks afterwards and of one that skips hidden pairs. What changes
# during decoding with a KV cache ($L = 1$)?

# %% [markdown] tags=["answer", "points:2"]
# Causal attention keeps $L(L+1)/2 = 8\,390\,656$ of the $L^2 = 16\,777\,216$ pairs, just over half
# (the diagonal is visible). A kernel that computes every score and masks afterwards still does all
# $16\,777\,216 \cdot 2 \cdot 256 \approx 8.6$ GFLOP per head, so it saves nothing; one that skips hidden
# pairs (FlashAttention skips fully masked blocks) does $8\,390\,656 \cdot 512 \approx 4.3$ GFLOP,
# the "half" (a little more, since blocks on the diagonal are computed whole). During decoding with a
# cache there is one query at the end of the sequence, and the end-aligned mask lets it see every cached
# key: $S$ pairs, the same as without a mask, so causality saves nothing at that step; it only makes the
# cache valid, because past keys and values never change.

# %%
L_q = 4096
print("computed:", attention_flops(1, 1, L_q, L_q, 128, 128), "FLOPs all pairs,",
      attention_flops(1, 1, L_q, L_q, 128, 128, causal=True), "FLOPs visible pairs;",
      "decoding step:", attention_flops(1, 1, 1, L_q, 128, 128, causal=True), "=",
      attention_flops(1, 1, 1, L_q, 128, 128), "FLOPs")
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s on {MACHINE}")

# %% [markdown]
# ## Summary
#
# | idea | what to remember | where |
# |---|---|---|
# | FLOPs | $2BHP(D + D_v)$, $P = LS$; causal $P = L(S-L) + L(L+1)/2$ ($L \le S$), $S(S+1)/2$ ($L > S$) | section 1 |
# | measured scaling | naive attention's memory: slope 2 in $L = S$; its time: slope 2 or more | section 2 |
# | memory | inputs + output + weights (or a log-sum-exp per row); within 1% of the measured peak | section 3 |
# | Table 1 | attention: $n^2 d$, $O(1)$ sequential steps, $O(1)$ path; recurrence: $O(n)$ and $O(n)$ | section 4 |
# | training vs inference | activations (attention weights included) dominate training; the KV cache, inference | section 5 |
# | toolbox | fused kernels, KV cache, GQA, 16-bit formats, tiling, each measured | section 6 |
#
# **Questions answered:** qa-9 (complexity in $n$), theory-15 (complexities of attention types),
# theory-37 (memory requirements), theory-38 (optimising attention), theory-18 (the attention bottleneck).
#
# Next, notebook 07 attacks the quadratic term itself: sparse, local and linear attention.
