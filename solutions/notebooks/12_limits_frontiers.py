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
# # 12 · Limits and frontiers
#
# Softmax attention lets every token read every other token exactly, and pays for it: time and memory that
# grow with the product of the lengths, and a decoder that must keep a key and a value for every token it
# has seen. This notebook measures those costs, builds the fixes that production models use today, then
# builds two alternatives that replace the growing cache with a fixed-size state, and trains a model to
# see what that state cannot hold.
#
# **You will learn**
# - what attention cannot do well, with its quadratic cost measured;
# - decoding with a key/value cache, and what the cache weighs for a real model (Llama 2);
# - multi-query and grouped-query attention: query heads that share keys and values;
# - sliding windows with attention sinks for unbounded streams (Xiao et al. 2023), on a toy;
# - position interpolation for longer contexts (Chen et al. 2023), on RoPE's angles;
# - linear attention as a recurrent network, and a diagonal state-space model computed both as a scan and
#   as a convolution;
# - a trained comparison: recalling one of n key-value pairs with softmax attention and with linear
#   attention's fixed-size state;
# - where RWKV, RetNet, Mamba and Hyena fit, and how far the analogy with human attention goes.
#
# **You will build**, in `src/attnlab/frontiers.py` (PyTorch): the class `KVCache`, and the functions
# `grouped_query_attention`, `linear_attention_recurrent` and `diagonal_ssm`.
#
# **Shapes.** B batch, H query heads, H_kv key/value heads, L queries, S keys, D query/key width per head,
# D_v value width, E model width. Masks are boolean and `True` means *may attend*; causal masks are
# end-aligned: query i sees key j when j <= i + (S - L).

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
from matplotlib.colors import PowerNorm

torch.set_num_threads(1)  # one thread: steadier timings on a shared machine, and identical runs
QUICK = os.environ.get("ATTNLAB_QUICK") == "1"  # CI may shrink the heavy demos; the default is the real thing
MACHINE = f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}, 1 thread"
print(MACHINE + (" (ATTNLAB_QUICK=1: short runs)" if QUICK else ""))
np.set_printoptions(precision=3, suppress=True)


def best_time(fn, repeats=3):
    """The fastest of `repeats` runs of fn(), in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def causal_attention(q, k, v):
    """Plain causal attention, the course's end-aligned rule: q (..., L, D), k (..., S, D), v (..., S, D_v)."""
    L, S = q.shape[-2], k.shape[-2]
    keep = torch.arange(S)[None, :] <= torch.arange(L)[:, None] + (S - L)  # (L, S)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~keep, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (..., L, D_v)

# %% [markdown]
# ## 1. What attention cannot do well
#
# **Cost.** One head scores every query against every key: an `(L, S)` matrix, $LSD$ multiply-adds for
# the scores and $LSD_v$ more for the output. In self-attention $S = L$, so doubling the length quadruples
# the work and the memory of the scores (notebook 06 counts them in detail; FlashAttention, notebook 08,
# removes the memory but not the work). Measured, one head with $D = 64$:

# %%
lengths = [256, 512, 1024, 2048] + ([] if QUICK else [4096])
seconds = []
for L in lengths:
    q, k, v = torch.randn(3, 1, L, 64).unbind(0)  # (1, L, D) each
    seconds.append(best_time(lambda: torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1) @ v))
score_mib = [L * L * 4 / 2 ** 20 for L in lengths]  # one float32 (L, L) matrix
slope = np.polyfit(np.log(lengths[-3:]), np.log(seconds[-3:]), 1)[0]
for L, s, m in zip(lengths, seconds, score_mib):
    print(f"L = {L:5d}: {1e3 * s:8.1f} ms, scores {m:6.1f} MiB")
print(f"fitted log-log slope of time over the three longest: {slope:.2f} (2 = quadratic) on {MACHINE}")

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.loglog(lengths, seconds, "o-", label=f"measured time (slope {slope:.2f})")
ax.loglog(lengths, [seconds[0] * (L / lengths[0]) ** 2 for L in lengths], "k--", lw=1, label="slope 2")
ax.set(xlabel="sequence length L (= S)", ylabel="seconds per head", title="one attention head, D = 64")
ax2 = ax.twinx()
ax2.loglog(lengths, score_mib, "s:", color="tab:red")
ax2.set_ylabel("MiB of float32 scores", color="tab:red")
ax.set_xticks(lengths, [str(L) for L in lengths])  # after twinx's log scale, or it resets them
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# On a CPU the fitted slope can come out a little above 2: the larger score matrices no longer fit in the
# processor's caches, so each number costs more to reach. Cost is only the first limit. The others, each
# shown in another notebook or paper:
#
# - **No order of its own.** Without position information, self-attention is permutation-equivariant, and
#   position schemes trained at one length often fail at longer ones (notebook 05; section 5 below).
# - **State tracking.** Hahn (2020) proved that self-attention networks of fixed size cannot recognise
#   parity or well-nested brackets of two kinds (Dyck-2) with hard attention, and with soft attention only
#   with a confidence that fades as inputs grow. Merrill & Sabharwal (2023) place log-precision
#   Transformers in the circuit class (uniform) TC$^0$; unless TC$^0$ = NC$^1$, that rules out tracking some
#   sequential state, such as composing permutations, in one forward pass, and Merrill et al. (2024) show
#   the same limit for the linear state-space models of section 7, Mamba included. Generating intermediate
#   tokens (chain of thought) is one way around it (Merrill & Sabharwal 2024).
# - **Weights are not explanations.** Jain & Wallace (2019) found attention weights that could be swapped
#   for very different ones with the same prediction; Wiegreffe & Pinter (2019) qualified the claim
#   (notebook 09).
# - **Data.** With fewer built-in assumptions than convolutions, Vision Transformers trailed ResNets when
#   trained on ImageNet alone without strong regularisation, and matched or overtook them only after
#   pre-training on 14M (ImageNet-21k) to 300M (JFT-300M) images (Dosovitskiy et al. 2021; notebook 10).
# - **Decoding memory.** A decoder keeps a key and a value per token per layer: the next section.

# %% [markdown] tags=["question:theory-46"]
# ### What are the limitations of attention mechanisms?
#
# Softmax attention scores every query against every key, so its time and score memory grow with L x S
# (quadratic in self-attention) and a decoder must keep a key and a value for every past token. It also
# has no built-in order or running state, its weights are not faithful explanations, and it tends to need
# more data than models with stronger priors.
#
# - Cost: the fitted log-log slope is printed above (2 is quadratic); FlashAttention removes the L x S
#   memory, not the work.
# - Decoding: Llama 2 7B's cache takes 512 KiB per token in 16-bit (computed in section 2).
# - Order: permutation-equivariant without positions, and many position schemes fail past the training
#   length (notebook 05).
# - State tracking: parity and Dyck-2 defeat fixed-size self-attention as inputs grow (Hahn 2020).
# - Weights are not explanations (Jain & Wallace 2019); ViT trails ResNets unless pre-trained on far more
#   images (Dosovitskiy et al. 2021).

# %% [markdown]
# ## 2. Decoding with a key/value cache
#
# **Intuition.** A decoder writes one token at a time. The new token's query must attend to the keys and
# values of *every* earlier token, and in a causal stack those never change once computed: token 5's key
# depends only on tokens 0..5. Recomputing them redoes all earlier work: step $t$ projects all $t$ tokens
# again and scores a full $(t, t)$ matrix. A **KV cache** keeps them: each step projects only the new
# token, appends its key and value, and scores one row of $t$ keys.
#
# **Math with shapes.** Per layer, the cache holds keys `(B, H, S, D)` and values `(B, H, S, D_v)` for the
# S tokens so far. A step with $T_q$ new tokens appends `(B, H, T_q, D)` and `(B, H, T_q, D_v)`, then
# computes attention of the new queries `(B, H, T_q, D)` over all S cached positions, `(B, H, T_q, S)`
# scores, with the end-aligned causal mask (query i sees key j when $j \le i + S - T_q$). Its memory is
#
# $$\text{bytes per token} = 2 \times n_\text{layers} \times H_{kv} \times D \times \text{bytes per number}$$
#
# (keys and values, with $D_v = D$; $H_{kv} = H$ for now). For a real model, Llama 2 7B (Touvron et al.
# 2023; its released `config.json`: 32 layers, 32 heads of width 128, $E = 4096$, contexts of 4096
# tokens), in 16-bit numbers:

# %%
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_number=2):
    """Keys and values of one token in every layer."""
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_number


LLAMA2_7B = dict(n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, context=4096, params=6.7e9)
per_token = kv_bytes_per_token(LLAMA2_7B["n_layers"], LLAMA2_7B["n_kv_heads"], LLAMA2_7B["head_dim"])
per_sequence = per_token * LLAMA2_7B["context"]
weights = LLAMA2_7B["params"] * 2
print(f"Llama 2 7B, 16-bit: {per_token / 2 ** 10:.0f} KiB per token, {per_sequence / 2 ** 30:.1f} GiB for one "
      f"{LLAMA2_7B['context']}-token sequence")
print(f"the weights take {weights / 2 ** 30:.1f} GiB: a batch of {math.ceil(weights / per_sequence)} full-length "
      "sequences needs more memory for its cache than for the model")

# %% [markdown]
# **Implement `KVCache`** in `src/attnlab/frontiers.py`, a PyTorch class:
#
# - `KVCache(capacity=16)`: `capacity` is where the storage *starts*, not a maximum. Allocate it at the
#   first `append`, with that call's B, H, D, D_v, dtype and device.
# - `append(k, v)` adds T positions, `(B, H, T, D)` and `(B, H, T, D_v)`. When they do not fit, double the
#   capacity until they do and copy the cached positions into the new storage.
# - `len(cache)` is the number of cached positions (positions, not calls to `append`).
# - `decode_step(q)`, q `(B, H, T_q, D)`: the queries of the *last* $T_q$ cached positions (append their keys
#   and values first) attend over the first `len(cache)` positions only, never the unused storage, scaled
#   by $1/\sqrt{D}$ with the end-aligned causal mask. Returns `(B, H, T_q, D_v)` in q's dtype.
#
# The check appends a prompt, then tokens one by one, and compares every step with full causal attention
# over the same sequence; it also grows a capacity-2 cache past its size and makes two caches at once
# (storage on the instance, not on the class).

# %%
from attnlab.frontiers import KVCache

gen = torch.Generator().manual_seed(0)
B, H, D, D_v, T = 2, 3, 4, 6, 9
q_all, k_all = torch.randn(2, B, H, T, D, generator=gen).unbind(0)  # a whole sequence of 9 positions
v_all = torch.randn(B, H, T, D_v, generator=gen)
cache = KVCache(capacity=4)
cache.append(k_all[:, :, :5], v_all[:, :, :5])  # prefill: the 5 prompt positions
outputs = [cache.decode_step(q_all[:, :, :5])]  # (B, H, 5, D_v)
for t in range(5, T):  # then one token at a time
    cache.append(k_all[:, :, t:t + 1], v_all[:, :, t:t + 1])
    outputs.append(cache.decode_step(q_all[:, :, t:t + 1]))  # (B, H, 1, D_v)
decoded = torch.cat(outputs, dim=2)
print(f"len(cache) = {len(cache)}, capacity = {cache.capacity}, decoded {tuple(decoded.shape)}")
print(f"max |cached decoding - full causal attention| = "
      f"{(decoded - causal_attention(q_all, k_all, v_all)).abs().max():.1e}")

# %% tags=["check"]
check("frontiers.KVCache")

# %% [markdown]
# **Measured: decoding with and without the cache.** A stack of four attention layers (E = 128, four
# heads, residual connections, random weights) decodes 160 tokens after a 32-token prompt; each step
# feeds its last output back as the next input, a stand-in for sampling a token and embedding it. Without
# a cache, every step runs the whole prefix again; with one `KVCache` per layer, every step projects one
# token.

# %%
E_DEC, H_DEC, LAYERS, PROMPT, NEW = 128, 4, 4, 32, (64 if QUICK else 160)
D_DEC = E_DEC // H_DEC
torch.manual_seed(0)
layer_weights = [[torch.randn(E_DEC, E_DEC) / math.sqrt(E_DEC) for _ in range(4)] for _ in range(LAYERS)]


def split(x):
    """(B, T, E) -> (B, H, T, D)."""
    return x.view(x.shape[0], x.shape[1], H_DEC, D_DEC).transpose(1, 2)


def merge(x):
    """(B, H, T, D) -> (B, T, E)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], E_DEC)


def renorm(x):
    return x / x.norm(dim=-1, keepdim=True) * math.sqrt(E_DEC)  # keeps values in range over 160 steps


def forward_all(x):
    """Every position of the sequence x (B, T, E), recomputed from scratch."""
    for W_q, W_k, W_v, W_o in layer_weights:
        x = renorm(x + merge(causal_attention(split(x @ W_q), split(x @ W_k), split(x @ W_v))) @ W_o)
    return x


def forward_cached(x, caches):
    """Only the new positions x (B, T_new, E): their keys and values join each layer's cache."""
    for (W_q, W_k, W_v, W_o), layer_cache in zip(layer_weights, caches):
        layer_cache.append(split(x @ W_k), split(x @ W_v))
        x = renorm(x + merge(layer_cache.decode_step(split(x @ W_q))) @ W_o)
    return x


prompt = torch.randn(1, PROMPT, E_DEC)
step_ms = {"recompute the prefix": [], "KV cache": []}
with torch.no_grad():
    sequence = prompt
    for _ in range(NEW):
        started = time.perf_counter()
        sequence = torch.cat([sequence, forward_all(sequence)[:, -1:]], dim=1)
        step_ms["recompute the prefix"].append(1e3 * (time.perf_counter() - started))
    caches = [KVCache() for _ in range(LAYERS)]
    cached, new = prompt, prompt  # the prefill step takes the whole prompt at once
    for _ in range(NEW):
        started = time.perf_counter()
        new = forward_cached(new, caches)[:, -1:]
        cached = torch.cat([cached, new], dim=1)
        step_ms["KV cache"].append(1e3 * (time.perf_counter() - started))
print(f"same tokens: max difference {(sequence - cached).abs().max():.1e}")
for name, ms in step_ms.items():
    print(f"{name:22s} total {sum(ms) / 1e3:5.2f} s, last 20 steps {np.mean(ms[-20:]):5.2f} ms each")
print(f"speed-up {sum(step_ms['recompute the prefix']) / sum(step_ms['KV cache']):.1f}x on {MACHINE}")

fig, ax = plt.subplots(figsize=(7, 3.4))
for name, ms in step_ms.items():
    ax.plot(np.arange(1, NEW + 1), np.cumsum(ms) / 1e3, label=name)
ax.set(xlabel="tokens generated", ylabel="seconds so far",
       title=f"{LAYERS} layers, E = {E_DEC}, after a {PROMPT}-token prompt")
ax.legend()
plt.show()

# %% [markdown]
# Without the cache each step costs more than the one before, so the total bends upwards; with it, the
# total grows about linearly at this size (single steps are noisy on a shared machine; the totals are
# not).
#
# Attention over the cache still grows with S (one query times S keys), but that is one row of scores
# per step instead of the whole `(S, S)` matrix and every projection. The price is the memory computed
# above, and it grows linearly with the context: sections 3 and 4 shrink it, sections 6 and 7 replace it
# with a state of fixed size.
#
# ## 3. Multi-query and grouped-query attention
#
# **Intuition.** The cache holds a key and a value for each of the H heads. Shazeer (2019) let all query
# heads share **one** key/value head (multi-query attention, MQA): the cache shrinks H-fold. Ainslie et al. (2023)
# interpolated: $H_{kv}$ key/value heads, each shared by a **group** of $G = H/H_{kv}$ query heads
# (grouped-query attention, GQA). They also converted existing multi-head checkpoints by mean-pooling the
# key and value heads of each group and continuing pre-training for 5% of the original compute. Which
# key/value head each query head reads (black):

# %%
H_demo = 8
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), layout="constrained")
for ax, (name, H_kv) in zip(axes, [("MHA: H_kv = H = 8", 8), ("GQA: H_kv = 2 (G = 4)", 2), ("MQA: H_kv = 1", 1)]):
    reads = np.zeros((H_demo, 8))
    reads[np.arange(H_demo), np.arange(H_demo) // (H_demo // H_kv)] = 1  # query head h reads kv head h // G
    ax.imshow(reads[:, :H_kv], cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set(title=name, xlabel="key/value head", ylabel="query head h", xticks=range(H_kv), yticks=range(H_demo))
plt.show()

# %% [markdown]
# **Math with shapes.** q `(B, H, L, D)`, k `(B, H_kv, S, D)`, v `(B, H_kv, S, D_v)`, $H_{kv}$ divides H,
# $G = H/H_{kv}$. Query head h uses key/value head $\lfloor h/G \rfloor$ (consecutive query heads form a
# group, the order of `repeat_interleave` and of PyTorch's `enable_gqa=True`):
#
# $$\mathrm{out}_h = \mathrm{softmax}\!\Big(\frac{q_h\, k_{\lfloor h/G \rfloor}^\top}{\sqrt{D}}\Big)\, v_{\lfloor h/G \rfloor}
# \qquad \text{(B, H, L, D}_v\text{)}$$
#
# Viewing q as `(B, H_kv, G, L, D)` and k as `(B, H_kv, 1, S, D)` gives the scores `(B, H_kv, G, L, S)` by
# broadcasting, without copying any key.
#
# **Implement `grouped_query_attention(q, k, v, mask=None)`** in `src/attnlab/frontiers.py`: the mask is
# broadcastable to `(B, H, L, S)` and indexed by *query* head; a query whose mask row is all False gets a
# zero output; leading batch dims are optional; the output has q's dtype (the check includes float64 and
# bfloat16); a `ValueError` when $H_{kv}$ does not divide H. PyTorch's own attention is off limits in this
# exercise (it would do the grouping for you); the cell below shows it as the fast path.

# %%
from attnlab.frontiers import grouped_query_attention

gen = torch.Generator().manual_seed(1)
q = torch.randn(2, 6, 5, 4, generator=gen)  # (B, H, L, D), H = 6
k = torch.randn(2, 2, 7, 4, generator=gen)  # (B, H_kv, S, D), H_kv = 2: groups of 3
v = torch.randn(2, 2, 7, 3, generator=gen)  # (B, H_kv, S, D_v)
out = grouped_query_attention(q, k, v)
print("out", tuple(out.shape), "(B, H, L, D_v)")
try:  # the fast path: PyTorch >= 2.5 groups the heads itself
    fast, fast_name = F.scaled_dot_product_attention(q, k, v, enable_gqa=True), "enable_gqa=True"
except TypeError:  # older PyTorch: repeat each key/value head G = 3 times first
    fast = F.scaled_dot_product_attention(q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1))
    fast_name = "repeated key/value heads"
print(f"max |yours - F.scaled_dot_product_attention ({fast_name})| = {(out - fast).abs().max():.1e}")
repeated = causal_attention(q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1))
print("with a causal mask, same as repeating each key/value head 3 times:",
      torch.allclose(grouped_query_attention(q, k, v, mask=torch.ones(5, 7, dtype=torch.bool).tril(2)), repeated,
                     atol=1e-6))

# %% tags=["check"]
check("frontiers.grouped_query_attention")

# %% [markdown]
# **Measured: what sharing saves.** The same 256 positions cached with $H = 8$ query heads and
# $H_{kv} = 8, 4, 2, 1$ key/value heads (D = 64, float32), read from the storage of a `KVCache`; then
# the per-token cache of a real GQA model, Llama 2 70B (Touvron et al. 2023 use GQA for their 34B and
# 70B models; the released 70B `config.json`: 80 layers, 64 query heads and 8 key/value heads of
# width 128).

# %%
measured = {}
for H_kv in (8, 4, 2, 1):
    toy_cache = KVCache(capacity=256)
    toy_cache.append(torch.zeros(1, H_kv, 256, 64), torch.zeros(1, H_kv, 256, 64))
    measured[H_kv] = (toy_cache.keys.nbytes + toy_cache.values.nbytes) / 256  # bytes per cached position
    print(f"H = 8, H_kv = {H_kv}: {measured[H_kv] / 2 ** 10:4.1f} KiB per position per layer "
          f"(formula: {kv_bytes_per_token(1, H_kv, 64, 4) / 2 ** 10:4.1f})")

LLAMA2_70B = dict(n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128)
variants = {"MHA (64 kv heads)": 64, "GQA-8, as released": 8, "MQA (1 kv head)": 1}
per_token_70b = {name: kv_bytes_per_token(80, n, 128) for name, n in variants.items()}
for name, size in per_token_70b.items():
    print(f"Llama 2 70B with {name:20s}: {size / 2 ** 10:6.0f} KiB per token, "
          f"{size * 4096 / 2 ** 30:5.2f} GiB per 4096-token sequence (16-bit)")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].bar([str(h) for h in measured], [m / 2 ** 10 for m in measured.values()])
axes[0].set(xlabel="key/value heads H_kv (H = 8)", ylabel="KiB per position per layer",
            title="toy cache, measured from KVCache storage")
axes[1].barh(list(per_token_70b), [s / 2 ** 20 for s in per_token_70b.values()])
axes[1].set(xlabel="MiB per token (all 80 layers, 16-bit)", title="Llama 2 70B's cache per token")
fig.tight_layout()
plt.show()

# %% [markdown]
# The cache divides by $G = H/H_{kv}$; the query heads, the output and the compute of the scores do not
# change. What is lost is capacity: Ainslie et al. (2023) report MQA losing some quality against
# multi-head attention and GQA with 8 groups coming close to it, at nearly MQA's decoding speed. On a GPU,
# decoding reads the whole cache for every generated token, so a smaller cache is also faster (Shazeer's
# argument for MQA); on this CPU at toy sizes we measure only the bytes.
#
# ## 4. Sliding windows and attention sinks
#
# A cache that keeps only the last W tokens (a **sliding window**, as in Longformer's local attention,
# Beltagy et al. 2020, and Mistral 7B's 4096-token window, Jiang et al. 2023) bounds memory for any
# stream length. Xiao et al. (2023) found that such a window makes language models fail badly once the
# stream outgrows it and the *first* tokens are evicted: trained models put a large share of their
# attention on the initial tokens whatever those tokens are (replacing them with line breaks changed
# little). They call these tokens **attention sinks** and explain them by softmax: its weights must sum to
# 1, so a head with nothing useful to read parks its weight somewhere, and the initial tokens are the ones
# every later token can see. Keeping the keys and values of 4 initial tokens next to the window
# (StreamingLLM) kept the perplexity of Llama 2, MPT, Falcon and Pythia stable on streams of up to 4
# million tokens. Inside the cache, they give positions by place in the cache, not in the original text.
#
# **A toy, with the sink planted by hand.** Random queries and keys (D = 32, 512 positions), plus one
# shared direction: every query has a component along it, and key 0 a large one, so that every query puts
# a large share of its weight on position 0, as the trained models do. We compare each query's output under
# full causal attention with a window of the last W keys, alone or with the first 4 keys kept.

# %%
L_STREAM, D_S, N_SINK = 512, 32, 4
gen = torch.Generator().manual_seed(0)
q_s, k_s = torch.randn(2, L_STREAM, D_S, generator=gen).unbind(0)
v_s = torch.randn(L_STREAM, D_S, generator=gen)
shared = F.normalize(torch.randn(D_S, generator=gen), dim=0)
q_s = q_s + 3.0 * shared  # every query leans towards the shared direction...
k_s[0] = k_s[0] + 16.0 * shared  # ...and key 0 points far along it: the sink


def window_mask(L, window, sinks=0):
    """(L, L) bool: causal, within the last `window` keys (j > i - window), or among the first `sinks`."""
    i, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
    return (j <= i) & ((j > i - window) | (j < sinks))


def attend(mask):
    scores = (q_s @ k_s.T / math.sqrt(D_S)).masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v_s, weights


full_out, full_w = attend(window_mask(L_STREAM, L_STREAM))
print(f"median weight on position 0 (queries 64+): {full_w[64:, 0].median():.2f}")
windows = [8, 16, 32, 64, 128, 256]
errors = {"window only": [], f"window + {N_SINK} sinks": []}
for W in windows:
    late = slice(W + N_SINK, L_STREAM)  # queries whose window no longer reaches the start
    norm = full_out[late].norm(dim=-1)
    for name, sinks in (("window only", 0), (f"window + {N_SINK} sinks", N_SINK)):
        out_w, _ = attend(window_mask(L_STREAM, W, sinks))
        errors[name].append(((out_w[late] - full_out[late]).norm(dim=-1) / norm).mean().item())
for name, errs in errors.items():
    print(f"{name:18s} mean relative error, W = {windows}: {np.round(errs, 3)}")

fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), layout="constrained")
rows = slice(L_STREAM - 40, L_STREAM)  # the last 40 queries
shown = np.r_[0:8, L_STREAM - 56:L_STREAM]  # keys: the first 8, then the last 56 (the middle is cut out)
for ax, (title, mask) in zip(axes[:3], [("full causal attention", window_mask(L_STREAM, L_STREAM)),
                                        ("window of 32", window_mask(L_STREAM, 32)),
                                        ("window of 32 + 4 sinks", window_mask(L_STREAM, 32, N_SINK))]):
    im = ax.imshow(attend(mask)[1][rows][:, shown].numpy(), aspect="auto", cmap="viridis",
                   norm=PowerNorm(0.4, 0, 1), interpolation="nearest")
    ax.axvline(7.5, color="white", lw=2)  # where keys 8..455 are cut out
    ax.set(title=title, xlabel="key position j (keys 8..455 not shown)", ylabel="query position i",
           xticks=[0, 16, 32, 48, 63], xticklabels=[shown[c] for c in (0, 16, 32, 48, 63)],
           yticks=[0, 13, 26, 39], yticklabels=[L_STREAM - 40 + r for r in (0, 13, 26, 39)])
fig.colorbar(im, ax=axes[:3], shrink=0.8, label="weight (power-0.4 scale)")
for name, errs in errors.items():
    axes[3].plot(windows, errs, "o-", label=name)
axes[3].set(xscale="log", yscale="log", xlabel="window W (keys kept besides sinks)", ylabel="mean relative error",
            title="output vs full attention (queries past W + 4)")
axes[3].legend(fontsize=8)
plt.show()

# %% [markdown]
# With the sink evicted, the weight it held spreads over the window, and every late output is wrong by
# about its own size (a relative error near or above 1) whatever the window; keeping the 4 initial
# positions cuts the error, and it keeps falling as the window grows. In this toy the sink is planted; in
# trained language models Xiao et al. observed it emerging on its own, and showed, with small models
# pre-trained from scratch, that a model given one dedicated sink token during pre-training needs only that
# token kept. The cache itself stays at `sinks + W` positions per layer, however long the stream.
#
# ## 5. Longer contexts: position interpolation on RoPE's angles
#
# RoPE (notebook 05) rotates each pair $i$ of query and key features by the angle $m\,\omega_i$ at position
# $m$, with $\omega_i = \text{base}^{-2i/D}$. During pre-training at length $L_\text{train}$ a pair only
# ever meets angles up to $(L_\text{train} - 1)\,\omega_i$. The slow pairs never complete a turn, so
# positions past $L_\text{train}$ give them angles, and scores, that training never shaped.
# **Position interpolation** (Chen et al. 2023) instead squeezes the new, longer range into the old one:
# position $m$ is used as $m \cdot L_\text{train}/L_\text{new}$, so every angle stays inside the trained
# range, at the price of neighbouring positions sitting closer together (fractional positions). Their
# own argument is about scores: a RoPE score fitted on positions up to $L_\text{train}$ can reach
# thousands beyond them, and their bound on interpolated scores is at least about 600 times smaller than
# the one on extrapolated scores (in LLaMA 7B's setting). They extended LLaMA models from 2048 to up to
# 32768 tokens within 1000 steps of fine-tuning, where fine-tuning with positions as they are had
# stretched the effective window (measured by passkey retrieval) only to 2560 after 10000 steps. The
# numbers for LLaMA's RoPE (D = 128 per head, base 10000, trained at 2048 tokens), stretched to 8192:

# %%
D_ROPE, BASE, L_TRAIN, L_NEW = 128, 10000.0, 2048, 8192
omega = BASE ** (-np.arange(0, D_ROPE, 2) / D_ROPE)  # (D/2,) one frequency per pair
trained_max = (L_TRAIN - 1) * omega
slow = np.flatnonzero(trained_max < 2 * np.pi)
print(f"{len(slow)} of {D_ROPE // 2} pairs (i = {slow[0]}..{slow[-1]}) never complete a turn in {L_TRAIN} "
      "positions: their angles past that are new")
positions = np.arange(L_NEW)
extrapolated = positions[:, None] * omega  # (L_new, D/2) angles, positions as they are
interpolated = positions[:, None] * (L_TRAIN / L_NEW) * omega  # positions squeezed into [0, L_train)
print("largest angle / largest trained angle, over all pairs: "
      f"extrapolated {np.max(extrapolated[-1] / trained_max):.2f}, "
      f"interpolated {np.max(interpolated[-1] / trained_max):.2f}")
print(f"step between neighbours, fastest pair: trained {omega[0]:.3f} rad, interpolated "
      f"{omega[0] * L_TRAIN / L_NEW:.3f} rad")

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
first_pair = 24  # the faster pairs turn too quickly to draw at this resolution
for ax, (title, angles) in zip(axes[:2], [("positions as they are (extrapolation)", extrapolated),
                                          (f"positions x {L_TRAIN}/{L_NEW} (interpolation)", interpolated)]):
    im = ax.imshow(np.cos(angles[::8, first_pair:]).T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                   extent=(-0.5, L_NEW - 0.5, D_ROPE // 2 - 0.5, first_pair - 0.5), interpolation="nearest")
    ax.axvline(L_TRAIN, color="k", ls="--", lw=1)
    ax.set(title=title, xlabel=f"position m (dashed: the trained length, {L_TRAIN})", ylabel="feature pair i")
fig.colorbar(im, ax=axes[:2], shrink=0.8, label="cos(angle of pair i at position m)")
axes[2].semilogy(trained_max, label=f"trained: (L_train - 1) w_i")
axes[2].semilogy(extrapolated[-1], "--", label=f"position {L_NEW - 1}, extrapolated")
axes[2].semilogy(interpolated[-1], ":", lw=2, label=f"position {L_NEW - 1}, interpolated")
axes[2].axhline(2 * np.pi, color="grey", lw=1)
axes[2].set(xlabel="feature pair i", ylabel="largest angle (rad); grey: one turn", title="angles each pair reaches")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown]
# Right of the dashed line, the left panel's slow pairs (bottom rows) keep turning into angles they never
# had in training. In the middle panel the whole range 0..8191 is squeezed into the angles that training
# covered, only more finely: its bottom rows never reach a phase that the left panel's first 2048
# positions did not have. Fast pairs
# had seen every angle anyway, which is why later methods (for example YaRN, Peng et al. 2023) interpolate
# the slow pairs, leave the fast ones as they are and blend in between, so that neighbouring positions
# stay as far apart as in training where it matters. Interpolation alone is not the whole method: Chen et
# al. still fine-tuned every extended model, briefly, on the longer contexts.
#
# ## 6. Linear attention as a recurrent network
#
# Notebook 07 replaced $\exp(q \cdot k)$ by $\phi(q)\cdot\phi(k)$ with $\phi(x) = \mathrm{elu}(x) + 1$
# (Katharopoulos et al. 2020), so that the sums over keys can be computed first. In a causal stack those
# sums grow one token at a time, which makes the layer a **recurrent network** with a fixed-size state:
#
# $$\mathrm{kv}_t = \mathrm{kv}_{t-1} + \phi(k_t)\,v_t^\top\ \ (D, D_v), \qquad
# z_t = z_{t-1} + \phi(k_t)\ \ (D), \qquad
# o_t = \frac{\phi(q_t)^\top \mathrm{kv}_t}{\phi(q_t)^\top z_t}\ \ (D_v)$$
#
# Token $t$ is added before it is read, so it sees itself; $\phi$ is applied to q and k as they are, with
# no $1/\sqrt{D}$ (the feature map and normaliser of notebook 07's `efficient.linear_attention`). The
# output is exactly causal linear attention computed in parallel,
# $o_t = \sum_{j \le t} \phi(q_t)\cdot\phi(k_j)\, v_j \,/\, \sum_{j \le t} \phi(q_t)\cdot\phi(k_j)$, but
# decoding keeps $D \cdot D_v + D$ numbers per head instead of a cache that grows by $D + D_v$ per token.
#
# **Implement `linear_attention_recurrent(q, k, v, state=None, return_state=False)`** in
# `src/attnlab/frontiers.py`: q, k `(..., L, D)`, v `(..., L, D_v)` -> `(..., L, D_v)`. `state`, when given,
# is `(kv, z)` from the tokens before this chunk; with `return_state=True` return `(output, (kv, z))` after
# the last token, kv `(..., D, D_v)` (keys first) and z `(..., D)`.

# %%
from attnlab.frontiers import linear_attention_recurrent

gen = torch.Generator().manual_seed(2)
q, k = torch.randn(2, 2, 3, 10, 4, generator=gen, dtype=torch.float64).unbind(0)  # (B, H, L, D)
v = torch.randn(2, 3, 10, 5, generator=gen, dtype=torch.float64)  # (B, H, L, D_v)
out, (kv, z) = linear_attention_recurrent(q, k, v, return_state=True)
print("out", tuple(out.shape), "| state kv", tuple(kv.shape), "z", tuple(z.shape))
phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
A = torch.tril(phi_q @ phi_k.transpose(-1, -2))  # (B, H, L, L), keys j <= t
print(f"max |recurrent - parallel causal form| = {(out - A @ v / A.sum(-1, keepdim=True)).abs().max():.1e}")
first, state = linear_attention_recurrent(q[..., :6, :], k[..., :6, :], v[..., :6, :], return_state=True)
second = linear_attention_recurrent(q[..., 6:, :], k[..., 6:, :], v[..., 6:, :], state=state)
chunked = torch.cat([first, second], dim=-2)
print(f"two chunks, the state carried between them: max difference {(chunked - out).abs().max():.1e}")

# %% tags=["check"]
check("frontiers.linear_attention_recurrent")

# %% [markdown]
# What it saves, per head and per layer in 16-bit numbers with $D = D_v = 128$: the state does not grow;
# the KV cache grows by $2 \times 128$ numbers per token.

# %%
tokens = np.arange(1, 8193)
cache_kib = tokens * 2 * 128 * 2 / 2 ** 10
state_kib = (128 * 128 + 128) * 2 / 2 ** 10
crossing = int(np.ceil((128 * 128 + 128) / (2 * 128)))
print(f"state: {state_kib:.1f} KiB whatever the length; the cache overtakes it after {crossing} tokens "
      f"and reaches {cache_kib[-1] / 2 ** 10:.0f} MiB at {tokens[-1]}")
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.loglog(tokens, cache_kib, label="KV cache (softmax attention)")
ax.loglog(tokens, np.full(tokens.shape, state_kib), label="linear attention's state (kv, z)")
ax.set(xlabel="tokens so far", ylabel="KiB per head per layer", title="decoding memory, D = D_v = 128, 16-bit")
ax.legend()
plt.show()

# %% [markdown]
# A fixed-size state is not free: every key-value pair is folded into one $D \times D_v$ matrix, and the
# query reads a blend of them. Section 8 trains a model to measure what that blend loses.
#
# ## 7. State-space models: one recurrence, two computations
#
# A **linear state-space model** (S4, Gu et al. 2022, and its diagonal variants) runs, for each channel of
# the input, a small linear recurrence. With a diagonal state matrix it is elementwise:
#
# $$h_t = a \odot h_{t-1} + b\, x_t, \qquad y_t = \textstyle\sum_n c_n\, h_{t,n}, \qquad h_{-1} = 0$$
#
# with x `(..., L, C)` (C channels), a, b, c `(C, N)` (an N-dimensional state per channel), the state h
# `(..., C, N)` and y `(..., L, C)`. Unrolling the recurrence, $h_t = \sum_{j=0}^{t} a^j b\, x_{t-j}$, so
# y is a **causal convolution** of x with a kernel fixed in advance:
#
# $$K_j = \sum_n c_n\, a_n^j\, b_n \quad (L, C), \qquad y_t = \sum_{j=0}^{t} K_j\, x_{t-j}$$
#
# The scan is sequential in t but needs only the state (an RNN at inference); the convolution is parallel
# in t and, by FFT, costs $O(L \log L)$ (how these models train). That duality holds only because a, b
# and c do not depend on t or on x.
#
# **Implement `diagonal_ssm(x, a, b, c, mode="scan")`** in `src/attnlab/frontiers.py`: `mode="scan"` runs
# the recurrence, `mode="conv"` builds K and convolves (an FFT needs zero padding to at least 2L - 1, or the
# end of the sequence wraps around onto its start); any other mode raises `ValueError`. Output in x's dtype;
# leading batch dims optional; a may hold any real numbers, 0, negative values and 1 included (so take the
# powers $a^j$ directly, not through a logarithm). Both modes are graded against the same oracle.

# %%
from attnlab.frontiers import diagonal_ssm

gen = torch.Generator().manual_seed(3)
C, N = 3, 4
x = torch.randn(2, 50, C, generator=gen)  # (B, L, C)
a = torch.tensor([[0.5, 0.8, 0.9, 0.95], [-0.6, -0.3, 0.2, 0.7], [0.99, 0.97, 0.0, -0.9]])  # (C, N)
b, c = torch.randn(2, C, N, generator=gen).unbind(0)
y_scan, y_conv = diagonal_ssm(x, a, b, c, mode="scan"), diagonal_ssm(x, a, b, c, mode="conv")
print("y", tuple(y_scan.shape), f"| max |scan - conv| = {(y_scan - y_conv).abs().max():.1e}")
impulse = torch.zeros(60, C)
impulse[0] = 1.0
kernel = diagonal_ssm(impulse, a, b, c)  # the response to a unit impulse is the kernel K
fig, ax = plt.subplots(figsize=(7, 3))
for ch in range(C):
    ax.plot(kernel[:, ch], marker=".", label=f"channel {ch}: a = " + ", ".join(f"{x:.2f}" for x in a[ch].tolist()))
ax.set(xlabel="lag j", ylabel="K_j", title="each channel's kernel: its response to a unit impulse")
ax.legend(fontsize=7)
plt.show()

# %% tags=["check"]
check("frontiers.diagonal_ssm")

# %% [markdown]
# **Measured: scan vs convolution.** Your two modes on one sequence of growing length (C = 16 channels,
# N = 16), with the largest difference between them.

# %%
ssm_lengths = [64, 256, 1024] + ([] if QUICK else [4096])
a_t = torch.rand(16, 16, generator=gen) * 0.99
b_t, c_t = torch.randn(2, 16, 16, generator=gen).unbind(0)
ssm_times = {"scan": [], "conv": []}
for L in ssm_lengths:
    x_t = torch.randn(1, L, 16, generator=gen)
    for mode in ssm_times:
        ssm_times[mode].append(best_time(lambda: diagonal_ssm(x_t, a_t, b_t, c_t, mode=mode), repeats=2))
    gap = (diagonal_ssm(x_t, a_t, b_t, c_t, mode="scan") - diagonal_ssm(x_t, a_t, b_t, c_t, mode="conv")).abs().max()
    print(f"L = {L:5d}: scan {1e3 * ssm_times['scan'][-1]:7.1f} ms, conv {1e3 * ssm_times['conv'][-1]:6.2f} ms, "
          f"max |scan - conv| {gap:.1e}")
print(f"on {MACHINE}")
fig, ax = plt.subplots(figsize=(6, 3.2))
for mode, secs in ssm_times.items():
    ax.loglog(ssm_lengths, secs, "o-", label=mode)
ax.set(xlabel="sequence length L", ylabel="seconds", title="diagonal SSM, C = 16, N = 16: your two modes")
ax.legend()
plt.show()

# %% [markdown]
# The scan is a Python loop of L small steps, which is what a GPU avoids during training; the convolution
# is a handful of large FFTs. At inference the roles swap: a new token needs one scan step and the `(C, N)`
# state, while the convolution would redo the whole sequence. Mamba (Gu & Dao 2023) computes $b$, $c$ and
# the step size that sets $a$ from the input (a *selective* SSM), which lets the model decide what to keep
# and what to forget, but removes the convolution form; it trains with a parallel scan instead.
#
# ## 8. Trained: what a fixed-size state forgets
#
# **The task** (associative recall): a context of n pairs (key, value), with n distinct keys out of 64 and
# values out of 16, then one query key; the answer is the value stored with that key. Each pair is one
# token (its key's embedding plus its value's); the query token is its key's embedding plus a "?" value.
# **The model**: one attention layer (width E = 32) whose last position attends over all n + 1 tokens,
# plus a residual connection and a linear readout; trained on n drawn from 2..32 per batch, then tested at
# n = 2..48. Three variants with the same parameters apart from the attention: softmax attention with
# queries and keys of width D = 8, and linear attention (elu + 1 features) with D = 8 and D = 16. Softmax
# reads a cache of n + 1 keys and values; linear attention reads a state of D x E numbers (plus D for z),
# the `kv` of section 6, whatever n.

# %%
N_KEYS, N_VALUES, E_R = 64, 16, 32
STEPS_R = 200 if QUICK else 400
TEST_N = [2, 4, 8, 16, 32, 48]


def recall_batch(gen, size, n):
    """keys (size, n) distinct per row, values (size, n), the query key, its value, and its slot."""
    keys = torch.argsort(torch.rand(size, N_KEYS, generator=gen), dim=1)[:, :n]
    values = torch.randint(0, N_VALUES, (size, n), generator=gen)
    slot = torch.randint(0, n, (size,), generator=gen)
    rows = torch.arange(size)
    return keys, values, keys[rows, slot], values[rows, slot], slot


class Recall(torch.nn.Module):
    """Pair tokens + a query token -> one attention layer read at the last position -> a value."""

    def __init__(self, kind, D):
        super().__init__()
        self.kind = kind
        self.key_embed = torch.nn.Embedding(N_KEYS, E_R)
        self.value_embed = torch.nn.Embedding(N_VALUES + 1, E_R)  # value N_VALUES is the query's "?"
        self.W_q, self.W_k = torch.nn.Linear(E_R, D, bias=False), torch.nn.Linear(E_R, D, bias=False)
        self.W_v = torch.nn.Linear(E_R, E_R, bias=False)
        self.readout = torch.nn.Linear(E_R, N_VALUES)

    def forward(self, keys, values, query):
        unknown = torch.full_like(query, N_VALUES)
        x = torch.cat([self.key_embed(keys) + self.value_embed(values),
                       (self.key_embed(query) + self.value_embed(unknown))[:, None]], dim=1)  # (B, n + 1, E)
        q, k, v = self.W_q(x[:, -1:]), self.W_k(x), self.W_v(x)  # (B, 1, D), (B, n + 1, D), (B, n + 1, E)
        if self.kind == "softmax":
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)  # (B, 1, n + 1)
        else:  # linear attention: phi(q) . phi(k_j), normalised (the last row of the causal form)
            kernel = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2)
            weights = kernel / kernel.sum(dim=-1, keepdim=True)
        return self.readout(x[:, -1] + (weights @ v)[:, 0]), weights[:, 0]  # (B, N_VALUES), (B, n + 1)


def train_recall(kind, D, seed=0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Recall(kind, D)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(STEPS_R):
        n = int(torch.randint(2, 33, (1,), generator=gen))
        keys, values, query, target, _ = recall_batch(gen, 64, n)
        loss = F.cross_entropy(model(keys, values, query)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


variants = {"softmax, D = 8": ("softmax", 8), "linear, D = 8": ("linear", 8), "linear, D = 16": ("linear", 16)}
models, curves, accuracy = {}, {}, {}
started = time.perf_counter()
for name, (kind, D) in variants.items():
    models[name], curves[name] = train_recall(kind, D)
train_seconds = time.perf_counter() - started
with torch.no_grad():
    for name, model in models.items():
        accuracy[name] = []
        for n in TEST_N:
            keys, values, query, target, _ = recall_batch(torch.Generator().manual_seed(100 + n), 1000, n)
            accuracy[name].append((model(keys, values, query)[0].argmax(-1) == target).float().mean().item())
print(f"3 models x {STEPS_R} steps of 64 examples in {train_seconds:.1f} s on {MACHINE}")
print(f"{'accuracy at n =':17s}" + "".join(f"{n:>7d}" for n in TEST_N))
for name in variants:
    print(f"{name:17s}" + "".join(f"{a:7.3f}" for a in accuracy[name]))
print(f"chance: {1 / N_VALUES:.3f}; n = 48 was never seen in training")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for name in variants:
    axes[0].plot(np.convolve(curves[name], np.ones(10) / 10, mode="valid"), label=name)
    axes[1].plot(TEST_N, accuracy[name], "o-", label=name)
axes[1].axhline(1 / N_VALUES, color="k", ls=":", lw=1, label="chance (1/16)")
axes[0].set(xlabel="training step", ylabel="cross-entropy (moving average of 10)", yscale="log",
            title="training, n drawn from 2..32")
axes[1].axvspan(32, 48, color="grey", alpha=0.15, label="longer than training")
axes[1].set(xlabel="pairs in the context n", ylabel="accuracy", xscale="log",
            title="recall accuracy vs number of pairs")
axes[1].set_xticks(TEST_N, [str(n) for n in TEST_N])
axes[1].minorticks_off()
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the attention learned, on 16 test contexts of n = 16 pairs: the weight of the query on each pair
# (the last column, the query's own token, is left out), with a red circle on the pair that holds the
# answer.

# %%
keys, values, query, target, slot = recall_batch(torch.Generator().manual_seed(7), 16, 16)
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
with torch.no_grad():
    for ax, name in zip(axes, ("softmax, D = 8", "linear, D = 16")):
        _, weights = models[name](keys, values, query)
        im = ax.imshow(weights[:, :-1].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.scatter(slot.numpy(), np.arange(16), s=60, facecolors="none", edgecolors="red")
        ax.set(title=f"{name}: weights over 16 pairs (red: the match)", xlabel="pair (context slot)",
               ylabel="test context")
fig.colorbar(im, ax=axes, shrink=0.85, label="attention weight")
plt.show()

# the trained linear model's read is one step of linear_attention_recurrent over the n + 1 tokens
model = models["linear, D = 16"]
with torch.no_grad():
    unknown = torch.full_like(query, N_VALUES)
    x = torch.cat([model.key_embed(keys) + model.value_embed(values),
                   (model.key_embed(query) + model.value_embed(unknown))[:, None]], dim=1)
    read = linear_attention_recurrent(model.W_q(x), model.W_k(x), model.W_v(x))[:, -1]  # last position
    direct = (model(keys, values, query)[1][:, None] @ model.W_v(x))[:, 0]
print(f"the model's read = linear_attention_recurrent's last output: max difference {(read - direct).abs().max():.1e}")

# %% [markdown]
# Softmax attention puts nearly all its weight on the matching pair and stays accurate as n grows, even
# past the lengths it was trained on: its cache keeps every pair apart. Linear attention's weights are
# spread over the pairs (the match often gets the most, but far from all of it), and its accuracy falls as
# n grows; a wider feature map (D = 16) holds more pairs than D = 8, because the state has more room, but
# not all of them. This is the trade-off behind the alternatives of the next section. Arora et al. (2023)
# trace 82% of the perplexity gap between gated-convolution language models (Hyena, H3, RWKV) and
# attention on the Pile to this kind of recall, and Jelassi et al. (2024) prove that a fixed-size state
# cannot copy strings longer than it can store, and find Transformers copying long strings that
# state-space models of similar size cannot.
#
# ## 9. Where RWKV, RetNet, Mamba and Hyena fit
#
# Each trains in parallel over the sequence, like a Transformer. All but Hyena also generate like an RNN,
# with a state that does not grow; Hyena's convolutions reach over the whole past, so its generation
# keeps that past. They differ in what the state is and in how, if at all, it forgets.
#
# | model | relation to this notebook | trains as | decodes with | how the memory forgets |
# |---|---|---|---|---|
# | softmax attention | sections 2-4 | parallel, $O(L^2)$ | a KV cache growing with L | it does not (a window evicts by age) |
# | linear attention (Katharopoulos et al. 2020) | section 6 | parallel or chunked | state $D \times D_v$ | it does not: a plain sum |
# | RetNet (Sun et al. 2023) | linear attention with a fixed exponential decay per head, no softmax | parallel, or chunkwise for long sequences | state $D \times D_v$ per head | a fixed decay $\gamma$ per head |
# | RWKV (Peng et al. 2023) | linear-attention-like "WKV" with a learned decay per channel | parallel in time | a small state per channel | a learned decay $w$ per channel, the same at every step in RWKV-4 (later versions make it depend on the input) |
# | S4 and diagonal SSMs (Gu et al. 2022) | section 7 | convolution (FFT) | state $C \times N$ | a fixed decay $a$ |
# | Mamba (Gu & Dao 2023) | section 7 with b, c and the step size that sets a computed from the input | parallel scan | state $C \times N$ | input-dependent (selective): each token sets its own $a$ |
# | Hyena (Poli et al. 2023) | long convolutions with implicitly parameterised filters, interleaved with input-dependent gating | FFT convolutions | filters as long as the context, over the past inputs | fixed filters that fade with distance; the gates depend on the input |
#
# The decays (RetNet's $\gamma$, RWKV's $w$, an SSM's $a$) let the state forget, which a plain sum, as in
# section 6, cannot. The models with a fixed-size state squeeze every earlier token into it, and recall of
# arbitrary earlier tokens is where they give ground (section 8); Arora et al. (2023) found the same for
# gated convolutions such as Hyena. Hybrids that keep a few attention layers among recurrent ones (Jamba,
# Lieber et al. 2024, has one attention layer in eight, the others Mamba) are a common compromise.

# %% [markdown] tags=["question:theory-49"]
# ### What are alternatives to attention for sequence modeling?
#
# Besides RNNs and CNNs, a newer family trains in parallel like a Transformer but decodes like an RNN
# (linear attention, state-space models, RWKV, RetNet), next to long convolutions such as Hyena. They
# replace the growing KV cache with a fixed-size state or long filters: long sequences become cheap, but
# exact recall of earlier tokens suffers.
#
# - RNNs/LSTMs: constant state, sequential training; CNNs (Gehring et al. 2017): parallel, finite reach.
# - Linear attention is an RNN with a D x D_v state (Katharopoulos et al. 2020; section 6); RetNet and
#   RWKV add decays (Sun et al. 2023; Peng et al. 2023).
# - SSMs: a scan or a convolution when time-invariant (Gu et al. 2022; section 7); Mamba makes them
#   input-dependent (Gu & Dao 2023); Hyena gates implicit long convolutions (Poli et al. 2023).
# - Trained in section 8: linear attention's recall falls as pairs grow; softmax's does not.
# - Hybrids keep a few attention layers (Jamba, Lieber et al. 2024).

# %% [markdown] tags=["question:theory-48"]
# ### Describe recent advances in attention research.
#
# Many recent advances make exact attention cheaper to run rather than change what it computes: IO-aware
# kernels, smaller and bounded key/value caches, and longer contexts by rescaling positions. Alongside,
# sub-quadratic alternatives and hybrids try to match its quality at linear cost (theory-49).
#
# - FlashAttention (Dao et al. 2022; Dao 2023): exact attention, tiled, never storing L x S (notebook 08).
# - MQA (Shazeer 2019) and GQA (Ainslie et al. 2023): the cache divided by H / H_kv (section 3); Llama 2
#   70B uses 8 key/value heads.
# - Cache management: PagedAttention stores the cache in fixed-size blocks, like virtual memory (Kwon et
#   al. 2023); StreamingLLM keeps 4 sink tokens plus a window (Xiao et al. 2023; section 4).
# - Longer contexts: position interpolation (Chen et al. 2023; section 5), then YaRN (Peng et al. 2023).
# - Alternatives: linear attention, SSMs such as Mamba, and hybrids (sections 6-9).

# %% [markdown]
# ## 10. Attention in people and in networks
#
# Psychology calls *attention* the selection of some inputs for fuller processing because capacity is
# limited (Broadbent 1958), needed for instance to bind an object's features together (Treisman & Gelade
# 1980), and steered both by goals and by salient stimuli (Corbetta & Shulman 2002); these are accounts
# from psychology and neuroscience, debated and refined since, not settled mechanisms. The networks
# borrowed the word through vision models that take glimpses, inspired by how people move their eyes
# (Mnih et al. 2014), and through the soft alignment of Bahdanau et al. (2014), which Xu et al. (2015)
# brought back to images. Two properties of the mechanism test the analogy: its weights are a fixed
# budget, and selecting saves no computation.

# %%
gen = torch.Generator().manual_seed(4)
target_key = torch.randn(16, generator=gen)
query = 3.0 * target_key / target_key.norm()  # the query looks for this key
for n_distractors in (1, 10, 100, 1000):
    keys = torch.cat([target_key[None], torch.randn(n_distractors, 16, generator=gen)])
    weights = torch.softmax(keys @ query / 4.0, dim=0)
    print(f"{n_distractors:5d} distractors: weight on the target {weights[0]:.3f}, "
          f"all weights sum to {weights.sum():.3f}")

L_c = 2048
q_c, k_c, v_c = torch.randn(3, 1, L_c, 64, generator=gen).unbind(0)
sharpness = {"focused": 40.0, "uniform": 0.0}  # a score scale: 0 makes every weight 1 / L
runs = {name: [] for name in sharpness}
for _ in range(5):  # alternate the two, so that a busy moment of the machine hits both alike
    for name, scale in sharpness.items():
        runs[name].append(best_time(lambda: torch.softmax(scale * q_c @ k_c.transpose(-1, -2), dim=-1) @ v_c, 1))
peak = torch.softmax(40.0 * q_c @ k_c.transpose(-1, -2), dim=-1).amax(-1).median()
# focused is, if anything, slower: most of its exponentials underflow towards 0, a slow path on CPUs
print(f"L = {L_c}: focused weights (median top weight {peak:.2f}) {1e3 * min(runs['focused']):.0f} ms, uniform "
      f"weights (each 1/{L_c}) {1e3 * min(runs['uniform']):.0f} ms, best of 5 each; focused / uniform = "
      f"{min(runs['focused']) / min(runs['uniform']):.2f}: every key is scored either way ({MACHINE})")

# %% [markdown] tags=["question:theory-47"]
# ### How does attention relate to human cognitive attention?
#
# Both select: a fixed budget of weight goes to some inputs at the expense of others, steered by what is
# looked for (the query). But nothing limits what the mechanism processes: it scores every token at full
# cost, in many heads and layers at once, so it is best read as a learned weighted average, not a model of
# human attention (Lindsay 2020 reviews both).
#
# - Psychology: selection because capacity is limited (Broadbent 1958), driven by goals and by salience
#   (Corbetta & Shulman 2002).
# - Budget: softmax weights sum to 1, so distractors take weight from the target (printed above), loosely
#   like biased competition (Desimone & Duncan 1995).
# - No saving: a focused softmax is no cheaper than a uniform one (timed above).
# - Borrowed inspiration: glimpse models were inspired by eye movements (Mnih et al. 2014).
# - Weights are not reliable evidence of what the model "looks at" (Jain & Wallace 2019; notebook 09).

# %% [markdown]
# ## 11. In your own words
#
# In 3-4 sentences, using section 8: why does the softmax model keep recalling as the number of pairs
# grows while the linear-attention model does not, why does D = 16 do better than D = 8, and, for a
# multi-head version of the softmax model, what would grouped-query attention change about its memory,
# and what would it not change?

# %% [markdown] tags=["answer", "points:2"]
# Softmax attention keeps every pair's key and value in its cache and scores the query against each of
# them, and the exponential lets one matching key take almost all the weight, so adding pairs costs memory
# but not accuracy (up to the 48 pairs tested). Linear attention folds all pairs into one sum of outer
# products phi(k) v^T of fixed size; with more pairs than its D features can keep apart, the query's read
# blends several values and accuracy falls, and a larger D leaves more room before that happens. With
# several heads, grouped-query attention would shrink the softmax model's cache per token by the group
# size H / H_kv, by sharing keys and values among query heads, but the cache would still grow with every
# token: it changes the constant, not the growth.

# %% [markdown]
# ## Summary
#
# | idea | what it buys | what it costs | built here |
# |---|---|---|---|
# | KV cache | one projection per generated token | memory linear in the context (Llama 2 7B: 512 KiB per token) | `KVCache` |
# | MQA / GQA | cache divided by H / H_kv | some quality (MQA more than GQA) | `grouped_query_attention` |
# | sliding window + sinks | bounded cache for any stream | tokens outside the window are gone | section 4 (toy) |
# | position interpolation | longer contexts inside the trained angles | finer positions; fine-tuning | section 5 |
# | linear attention as an RNN | a constant-size state | recall falls with the number of pairs | `linear_attention_recurrent` |
# | diagonal SSM | scan for decoding, convolution for training | time-invariant unless made selective (Mamba) | `diagonal_ssm` |
#
# Questions answered: theory-46 (limitations of attention), theory-47 (human attention), theory-48
# (recent advances), theory-49 (alternatives to attention).
