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
# # 02 · Scaled dot-product attention
#
# Notebook 01 turned query-key scores into weights. This notebook builds the function at the core
# of every Transformer attention layer, $\mathrm{softmax}(QK^\top/\sqrt{D})\,V$, together with
# the masks that decide who may look at whom.
#
# **You will learn**
# - where queries, keys and values come from (learned projections) and what each of them decides;
# - the formula with the shape of every matrix: $Q$ `(..., L, D)`, $K$ `(..., S, D)`, $V$ `(..., S, D_v)`;
# - why the scores are divided by $\sqrt{D}$: measured at initialisation, then in a small training run;
# - self- versus cross-attention;
# - causal masks aligned to the end (and how PyTorch's `is_causal=True` and FlashAttention's
#   `causal=True` differ), prefix-LM and sliding-window masks, padding masks, and what a query with
#   nothing to attend to should return.
#
# **You will build** `scaled_dot_product_attention` in `src/attnlab/attention.py` (and test it against
# PyTorch), then `causal_mask` and `padding_mask` in `src/attnlab/masks.py`.
#
# Shape legend: B batch, H heads, L queries, S keys/values, D query/key width, D_v value width,
# E model width. Masks are boolean and mean *may attend*: `True` keeps a position.

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import matplotlib.pyplot as plt


def row_softmax(x):
    """Softmax over the last axis (plain NumPy; notebook 01 has the graded version)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # shift by the row max: exp never overflows
    return e / e.sum(axis=-1, keepdims=True)


def show_weights(ax, w, title, xlabel="key position j", ylabel="query position i"):
    """Draw an (L, S) array of weights as a heatmap on a fixed 0-1 scale; NaN cells in red."""
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("red")                         # NaN is drawn, never hidden
    image = ax.imshow(np.ma.masked_invalid(w), cmap=cmap, vmin=0, vmax=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xticks=range(w.shape[1]), yticks=range(w.shape[0]))
    return image

# %% [markdown]
# ## 1. Queries, keys and values
#
# **Recap of notebook 01.** Attention is a soft dictionary lookup: score a query against every key,
# turn the scores into weights with a softmax over the keys, and return the weighted average of the
# values. Nothing is picked with an `argmax`, so the lookup is differentiable.
#
# In a Transformer the three roles are not given: they are **learned linear projections** of the
# token representations. With inputs $X$ of shape `(B, L, E)`:
#
# $$Q = X W_q,\quad K = X W_k,\quad V = X W_v,\qquad W_q, W_k \in \mathbb{R}^{E\times D},\; W_v \in \mathbb{R}^{E\times D_v}$$
#
# - a **query** $q_i$ (row $i$ of $Q$) encodes what position $i$ is looking for;
# - a **key** $k_j$ encodes what position $j$ offers to be matched on;
# - a **value** $v_j$ is the content position $j$ hands over once it is matched.
#
# Queries and keys meet in a dot product, so they share the width $D$; values can have their own
# width $D_v$. Separate matrices also make relevance *asymmetric*: in general
# $q_i\cdot k_j \ne q_j\cdot k_i$, whereas raw similarities $x_i\cdot x_j$ are symmetric.

# %%
rng = np.random.default_rng(0)
B, L, E, D, D_v = 2, 5, 8, 4, 6
X = rng.standard_normal((B, L, E))           # token representations
W_q = rng.standard_normal((E, D)) / np.sqrt(E)  # 1/sqrt(E) keeps projected entries at unit scale
W_k = rng.standard_normal((E, D)) / np.sqrt(E)
W_v = rng.standard_normal((E, D_v)) / np.sqrt(E)

Q = X @ W_q  # (B, L, E) @ (E, D) -> (B, L, D)
K = X @ W_k  # (B, L, D)
V = X @ W_v  # (B, L, D_v)
print("X", X.shape, " Q", Q.shape, " K", K.shape, " V", V.shape)

raw = X[0] @ X[0].T    # (L, L): x_i . x_j
qk = Q[0] @ K[0].T     # (L, L): q_i . k_j
print("x_i.x_j symmetric:", np.allclose(raw, raw.T), "| q_i.k_j symmetric:", np.allclose(qk, qk.T))

# %% [markdown] tags=["question:qa-2"]
# ### What are Query, Key, and Value?
#
# They are three learned linear views of the tokens: a query $q_i = x_i W_q$ says what position $i$ is
# looking for, a key $k_j = x_j W_k$ what position $j$ can be matched on, and a value $v_j = x_j W_v$ what
# $j$ hands over once matched (Vaswani et al. 2017). Query–key dot products set the weights and the
# values are what gets averaged, so $Q$ `(..., L, D)` and $K$ `(..., S, D)` share the width $D$ while $V$
# `(..., S, D_v)` may have its own.
#
# - They are not three inputs: in self-attention all three project the same $X$ `(B, L, E)`; in
#   cross-attention $Q$ comes from the decoder and $K, V$ from the encoder output (section 5).
# - Why not use $X$ directly: $x_i \cdot x_j$ is symmetric and each token tends to match itself best;
#   separate $W_q, W_k$ make relevance asymmetric (checked above), and separate $W_k, W_v$ let what a
#   token is matched on differ from what it hands over.
# - Keys and values come in pairs (same $S$); the number of queries $L$ is free (cross-attention,
#   cached decoding).

# %% [markdown] tags=["question:theory-5"]
# ### Explain the three main components of attention: Query, Key, Value.
#
# What each one is, with shapes, is the answer above (qa-2); the point this question probes is the
# division of labour. The weights $\mathrm{softmax}(QK^\top/\sqrt{D})$ depend on the queries and the keys
# together, while the values never touch the weights and only decide what is mixed (checked below: new
# values leave the weights unchanged, new keys change them).
#
# - One output row per query, `(..., L, D_v)`; keys and values share $S$.
# - In causal stacks a past token's key and value do not change when later tokens arrive, so generation
#   caches them (the KV cache, notebook 12) and computes the query, key and value of the new token only.
#   In a bidirectional encoder the keys above the first layer depend on every token: nothing to reuse.
# - Multi-query and grouped-query attention share each key/value head among several query heads to shrink
#   that cache (Shazeer 2019; Ainslie et al. 2023).

# %%
def attend(Q, K, V):
    """Plain NumPy attention: (..., L, D), (..., S, D), (..., S, D_v) -> (..., L, D_v), (..., L, S)."""
    weights = row_softmax(Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]))  # (..., L, S)
    return weights @ V, weights


out, w = attend(Q, K, V)
_, w_new_values = attend(Q, K, rng.standard_normal(V.shape))
_, w_new_keys = attend(Q, rng.standard_normal(K.shape), V)
print("new values: weights change by", np.abs(w_new_values - w).max())
print("new keys:   weights change by", np.abs(w_new_keys - w).max().round(3))

# %% [markdown]
# ## 2. The formula, with every shape
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{D}}\right) V$$
#
# | step | expression | shape |
# |---|---|---|
# | queries | $Q$ | `(..., L, D)` |
# | keys | $K$ | `(..., S, D)` |
# | values | $V$ | `(..., S, D_v)` |
# | scores | $QK^\top/\sqrt{D}$ | `(..., L, S)` |
# | weights | softmax over the last axis (the keys) | `(..., L, S)`, rows sum to 1 |
# | output | weights $\cdot V$ | `(..., L, D_v)` |
#
# The leading `...` are batch dimensions, usually `(B, H)`: every (batch, head) pair is an
# independent attention problem. $K^\top$ transposes only the last two axes.

# %%
rng = np.random.default_rng(0)
L, S, D, D_v = 5, 7, 4, 6
Q = rng.standard_normal((L, D))
K = rng.standard_normal((S, D))
V = rng.standard_normal((S, D_v))

scores = Q @ K.T / np.sqrt(D)  # (L, D) @ (D, S) -> (L, S)
weights = row_softmax(scores)  # (L, S): one distribution over the keys per query
output = weights @ V           # (L, S) @ (S, D_v) -> (L, D_v)
for name, a in [("Q", Q), ("K", K), ("V", V), ("scores", scores), ("weights", weights), ("output", output)]:
    print(f"{name:8s}{a.shape}")
print("row sums of weights:", weights.sum(axis=-1).round(12))

# %% [markdown] tags=["question:qa-3"]
# ### Scaled dot-product attention formula.
#
# $\mathrm{Attention}(Q,K,V) = \mathrm{softmax}(QK^\top/\sqrt{D})\,V$ with $Q$ `(..., L, D)`, $K$
# `(..., S, D)` and $V$ `(..., S, D_v)` (Vaswani et al. 2017): scores `(..., L, S)`, a softmax over the key
# axis so each row is a distribution over the $S$ keys, and an output `(..., L, D_v)`. The $1/\sqrt{D}$
# keeps the scores at unit variance at initialisation (for unit-variance query and key entries), so the
# softmax does not start saturated (section 3).
#
# - $D$ is the per-head query/key width ($d_k$), not the model width $E$; the factor is $1/\sqrt{D}$,
#   not $1/D$.
# - A mask acts on the scores before the softmax; zeroing weights after it breaks the row sums.
# - Cost per (batch, head): $2LSD + 2LSD_v$ flops and an `(L, S)` weight matrix, quadratic in length
#   unless a kernel streams it (FlashAttention, Dao et al. 2022; notebook 08).
# - Bugs interviewers probe: softmax over the query axis, transposing every axis of $K$ instead of the
#   last two, scaling by $\sqrt{E}$.
# - It has no parameters of its own; they live in the projections.

# %% [markdown]
# ## 3. Why divide by $\sqrt{D}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q\cdot k = \sum_{d=1}^{D} q_d k_d$ is a sum of $D$ independent terms of variance 1:
#
# $$\mathrm{Var}(q\cdot k) = D, \qquad \mathrm{Var}\!\left(\frac{q\cdot k}{\sqrt{D}}\right) = 1.$$
#
# This is Vaswani et al.'s (2017) argument for the factor, and it describes initialisation, not
# training (trained queries and keys are not independent). Unscaled, the scores spread out like
# $\sqrt{D}$; a softmax of widely spread scores puts almost all its weight on the largest one (it
# *saturates*). Vaswani et al. only *suspected* that this is what hurts unscaled dot products at large
# $d_k$ (where additive attention beat them, a result they cite from Britz et al. 2017): the Jacobian
# below shows the mechanism, and section 3.1 tests it in training.
#
# The experiment below draws $S=32$ keys per query for growing $D$ and measures the score variance
# (with the slope of its log-log fit), the mean largest weight in a row (1/32 is uniform, 1 is one-hot)
# and the mean entropy of a row (at most $\ln 32$).

# %%
rng = np.random.default_rng(0)
Ds = [4, 16, 64, 256, 1024]
S, n_rows = 32, 256  # keys per row, query rows per D
stats = {"raw": {"var": [], "max": [], "ent": []}, "scaled": {"var": [], "max": [], "ent": []}}
for D in Ds:
    q = rng.standard_normal((n_rows, 1, D))      # (N, 1, D)
    k = rng.standard_normal((n_rows, S, D))      # (N, S, D)
    raw = (q @ k.transpose(0, 2, 1))[:, 0, :]    # (N, 1, D) @ (N, D, S) -> (N, S)
    for kind, sc in (("raw", raw), ("scaled", raw / np.sqrt(D))):
        p = row_softmax(sc)                      # (N, S)
        stats[kind]["var"].append(sc.var())
        stats[kind]["max"].append(p.max(axis=-1).mean())
        stats[kind]["ent"].append(-(p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1).mean())

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for kind, style in (("raw", "o-"), ("scaled", "s-")):
    label = "q·k" if kind == "raw" else "q·k / √D"
    slope = np.polyfit(np.log(Ds), np.log(stats[kind]["var"]), 1)[0]  # variance ~ D^slope
    axes[0].loglog(Ds, stats[kind]["var"], style, label=f"{label} (fitted slope {slope:.2f})")
    axes[1].semilogx(Ds, stats[kind]["max"], style, label=label)
    axes[2].semilogx(Ds, stats[kind]["ent"], style, label=label)
axes[0].loglog(Ds, Ds, "k:", label="theory: D")
axes[1].axhline(1 / S, color="k", ls=":", label="uniform 1/S")
axes[2].axhline(np.log(S), color="k", ls=":", label="uniform ln S")
titles = ["(a) variance of the scores", "(b) mean largest weight per row", "(c) mean entropy per row"]
ylabels = ["variance", "max weight", "entropy (nats)"]
for ax, title, ylabel in zip(axes, titles, ylabels):
    ax.set(title=title, xlabel="D (query/key width)", ylabel=ylabel)
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Unscaled, the variance grows like $D$ and the softmax heads for one-hot (max weight near 1,
# entropy near 0); scaled, all three curves stay flat. Saturation matters for learning. With
# $p = \mathrm{softmax}(z)$,
#
# $$\frac{\partial p_i}{\partial z_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - pp^\top,$$
#
# and when $p$ is (nearly) one-hot every entry of $J$ is (nearly) 0: the diagonal terms
# $p_i(1-p_i)$ vanish and so do the products $p_ip_j$. A saturated row passes (almost) no gradient
# back to its scores. Below, the same logits multiplied by growing factors (as an unscaled score
# grows with $\sqrt{D}$); the Jacobian formula is first checked against finite differences.

# %%
def softmax_jacobian(p):
    """d softmax(z) / d z for one row p of shape (S,): diag(p) - p p^T, shape (S, S)."""
    return np.diag(p) - np.outer(p, p)


rng = np.random.default_rng(0)
z = rng.standard_normal(8)  # (S,) logits, S = 8
eps = 1e-6
J_fd = np.stack([(row_softmax(z + eps * e) - row_softmax(z - eps * e)) / (2 * eps) for e in np.eye(8)], axis=1)
print("formula vs finite differences:", f"{np.abs(softmax_jacobian(row_softmax(z)) - J_fd).max():.1e}")
for factor in [1, 4, 16, 64]:  # sqrt(D) for D = 1, 16, 256, 4096
    p = row_softmax(factor * z)
    print(f"logits x{factor:<3d} max weight {p.max():.4f}   largest |dp_i/dz_j| {np.abs(softmax_jacobian(p)).max():.1e}")

# %% [markdown]
# ### 3.1 Does it matter in training? Scaled and unscaled, side by side
#
# Everything above is about one moment, initialisation. To see what it does to learning we train the
# same one-layer attention model twice on a **retrieval task**, once with scores $q\cdot k/\sqrt{D}$ and
# once with $q\cdot k$, at $D = 256$.
#
# - **Task.** An example is a set of $S = 16$ slots; slot $j$ holds a key token $a_j$ (16 distinct keys
#   out of 64) and a value token $b_j$ (one of 16). The query is one of the 16 keys; the answer is the
#   value stored in the same slot. Chance is 1/16, a loss of $\ln 16 \approx 2.77$.
# - **Model.** Embeddings of width $E = 64$; $q = e(\text{query}) W_q$ and $k_j = e(a_j) W_k$ with
#   $W_q, W_k$ of shape `(E, D)` = `(64, 256)`; $v_j = e(b_j) W_v$; one attention read-out, then a
#   linear classifier over the 16 values. $W_q$ and $W_k$ start with entries of variance $1/E$, so the
#   entries of $q$ and $k$ have variance about 1: the setting of the variance argument.
# - **Comparison.** Each pair shares everything but the $1/\sqrt{D}$: the same initial weights, the same
#   batches of 64 examples, Adam. Three seeds at learning rate $3 \cdot 10^{-3}$, plus one seed at
#   $10^{-3}$ and at $10^{-2}$, to see whether another learning rate closes the gap.
#
# All ten models train at once: their parameters are stacked along a leading model axis $M$, which
# changes nothing in the arithmetic of each one (each gets the gradient of its own loss).

# %%
import math
import platform
import time

import torch
import torch.nn.functional as F

N_KEYS, N_VALUES, S_SLOTS, E_EMB, D_QK = 64, 16, 16, 64, 256
BATCH, STEPS = 64, 300
# (learning rate, seed, scaled?): the two models of a (learning rate, seed) pair start from the same weights
RUNS = ([(3e-3, seed, scaled) for seed in (0, 1, 2) for scaled in (True, False)]
        + [(lr, 0, scaled) for lr in (1e-3, 1e-2) for scaled in (True, False)])


def retrieval_batch(gen, n):
    """n examples: S distinct key tokens, S value tokens, the query (one of the keys) and its value."""
    keys = torch.rand(n, N_KEYS, generator=gen).argsort(dim=1)[:, :S_SLOTS]  # (n, S), distinct per row
    values = torch.randint(N_VALUES, (n, S_SLOTS), generator=gen)           # (n, S)
    slot = torch.randint(S_SLOTS, (n,), generator=gen)                      # (n,) the slot asked about
    rows = torch.arange(n)
    return keys, values, keys[rows, slot], values[rows, slot]               # (n, S), (n, S), (n,), (n,)


def init_params(seed):
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape, std=1.0):
        return (std * torch.randn(*shape, generator=gen)).requires_grad_()

    return {"key_emb": normal(N_KEYS, E_EMB), "value_emb": normal(N_VALUES, E_EMB),
            "W_q": normal(E_EMB, D_QK, std=E_EMB ** -0.5), "W_k": normal(E_EMB, D_QK, std=E_EMB ** -0.5),
            "W_v": normal(E_EMB, E_EMB, std=E_EMB ** -0.5), "W_o": normal(E_EMB, N_VALUES, std=E_EMB ** -0.5),
            "b_o": torch.zeros(N_VALUES, requires_grad=True)}


def forward(P, scale, keys, values, query):
    """M models at once. P[name]: (M, ...) parameters, scale (M,), tokens (M, n, S) and (M, n).
    Returns logits (M, n, N_VALUES), weights (M, n, S) and scores (M, n, S)."""
    m = torch.arange(len(scale))[:, None]                          # (M, 1) model index
    # Project each embedding table once, then look the tokens up: the same numbers as projecting
    # every token's embedding, for a fraction of the work.
    q = (P["key_emb"] @ P["W_q"])[m, query]                        # (M, n, D)
    k = (P["key_emb"] @ P["W_k"])[m[..., None], keys]              # (M, n, S, D)
    v = (P["value_emb"] @ P["W_v"])[m[..., None], values]          # (M, n, S, E)
    scores = (k @ q[..., None])[..., 0] * scale[:, None, None]     # (M, n, S, D) @ (M, n, D, 1) -> (M, n, S)
    weights = scores.softmax(dim=-1)                               # (M, n, S)
    context = (weights[:, :, None, :] @ v)[:, :, 0]                # (M, n, 1, S) @ (M, n, S, E) -> (M, n, E)
    return context @ P["W_o"] + P["b_o"][:, None], weights, scores


threads = torch.get_num_threads()
torch.set_num_threads(1)  # small matrices: on a shared 2-core machine a second thread mostly waits
params = [init_params(seed) for _, seed, _ in RUNS]
optimizer = torch.optim.Adam([{"params": list(p.values()), "lr": lr} for p, (lr, _, _) in zip(params, RUNS)])
scale = torch.tensor([D_QK ** -0.5 if scaled else 1.0 for _, _, scaled in RUNS])  # (M,)
streams = {seed: torch.Generator().manual_seed(1000 + seed) for seed in sorted({s for _, s, _ in RUNS})}
M = len(RUNS)
history = {name: torch.zeros(STEPS, M) for name in ("loss", "accuracy", "qk_grad_norm", "saturated", "on_match")}
started = time.perf_counter()
for step in range(STEPS):
    data = {seed: retrieval_batch(gen, BATCH) for seed, gen in streams.items()}  # one batch per seed
    keys, values, query, target = (torch.stack([data[seed][i] for _, seed, _ in RUNS]) for i in range(4))
    P = {name: torch.stack([p[name] for p in params]) for name in params[0]}  # (M, ...)
    logits, weights, _ = forward(P, scale, keys, values, query)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(M, BATCH).mean(dim=1)
    optimizer.zero_grad()
    loss.sum().backward()  # no parameter is shared, so each model gets the gradient of its own loss
    with torch.no_grad():
        history["loss"][step] = loss
        history["accuracy"][step] = (logits.argmax(dim=-1) == target).float().mean(dim=1)
        history["qk_grad_norm"][step] = torch.stack(
            [torch.cat([p["W_q"].grad.flatten(), p["W_k"].grad.flatten()]).norm() for p in params])
        history["saturated"][step] = (weights.max(dim=-1).values > 0.99).float().mean(dim=1)
        history["on_match"][step] = (weights * (keys == query[..., None])).sum(dim=-1).mean(dim=1)
    optimizer.step()
train_seconds = time.perf_counter() - started
torch.set_num_threads(threads)


def steps_to_90(accuracy, window=20):
    """First step at which the accuracy averaged over the last `window` steps reaches 90%, or None."""
    rolling = accuracy.unfold(0, window, 1).mean(dim=-1)
    reached = (rolling >= 0.9).nonzero()
    return int(reached[0]) + window if len(reached) else None


cpu = platform.processor() or platform.machine()
try:  # Linux names the CPU model in /proc/cpuinfo
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
print(f"{M} models x {STEPS} steps in {train_seconds:.1f} s (torch {torch.__version__}, 1 thread of {cpu})")
print("learning  seed | steps to 90% accuracy | saturated rows, steps 0-9 | |grad W_q, W_k|, steps 0-9 |"
      " loss, last 20 steps")
print("rate           |  scaled    unscaled   |  scaled    unscaled      |  scaled    unscaled         |"
      "  scaled  unscaled")
ratios = []
for i in range(0, M, 2):  # runs come in (scaled, unscaled) pairs
    (lr, seed, _), pair = RUNS[i], (i, i + 1)
    reached = [steps_to_90(history["accuracy"][:, j]) for j in pair]
    shown = [str(r) if r is not None else f">{STEPS}" for r in reached]
    ratios.append((reached[1] or STEPS) / (reached[0] or STEPS))  # a run that never got there counts as STEPS
    sat = [history["saturated"][:10, j].mean().item() for j in pair]
    grad = [history["qk_grad_norm"][:10, j].mean().item() for j in pair]
    final = [history["loss"][-20:, j].mean().item() for j in pair]
    print(f"{lr:<8g}  {seed:4d} |  {shown[0]:>6}    {shown[1]:>6}     |  {sat[0]:6.0%}    {sat[1]:6.0%}        |"
          f"  {grad[0]:6.2f}    {grad[1]:6.2f}           |  {final[0]:6.3f}  {final[1]:6.3f}")
print(f"unscaled / scaled steps to 90%: at least {min(ratios):.1f}x in every pair")


# %%
def moving_average(x, n=10):
    """Mean over the last n steps, (STEPS, M) -> (STEPS - n + 1, M): the per-batch values are noisy."""
    return np.stack([np.convolve(col, np.ones(n) / n, mode="valid") for col in x.numpy().T], axis=1)


fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
panels = [("loss", "training loss (cross-entropy)", "(a) loss"),
          ("qk_grad_norm", "gradient norm of (W_q, W_k)", "(b) gradient norm of W_q, W_k"),
          ("saturated", "share of rows with max weight > 0.99", "(c) saturated softmax rows"),
          ("on_match", "attention weight on the matching slot", "(d) what attention learned")]
steps_axis = np.arange(10, STEPS + 1)  # the 10-step average ending at each step
for ax, (name, ylabel, title) in zip(axes.flat, panels):
    smoothed = moving_average(history[name])
    for j, (lr, seed, scaled) in enumerate(RUNS):
        if lr != 3e-3:
            continue
        ax.plot(steps_axis, smoothed[:, j], color="C0" if scaled else "C3", alpha=0.85,
                label=(r"$q\cdot k/\sqrt{D}$" if scaled else r"$q\cdot k$ (unscaled)") if seed == 0 else None)
    ax.set(title=title, ylabel=ylabel)
    ax.legend()
axes[0, 0].axhline(math.log(N_VALUES), color="k", ls=":", lw=1)
axes[0, 1].set_yscale("log")
for ax in axes[1]:
    ax.set_xlabel("training step (10-step moving average; 3 seeds, learning rate 3e-3)")
fig.suptitle(f"Retrieval with one attention layer, D = {D_QK}: scaled vs unscaled scores")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the run shows** (the table and the four panels, 3 seeds at $3 \cdot 10^{-3}$):
#
# - (a), (d): the scaled model's loss starts near $\ln 16$ (dotted) and, within the few dozen steps the
#   table lists, falls to nearly 0 as its attention locks onto the matching slot. The unscaled model's
#   loss starts above $\ln 16$ and falls slowly while its weight on the matching slot creeps up; by the
#   table it needs several times more steps to reach 90% accuracy in every pair. Neither of the other two
#   learning rates (one seed each) closes the gap.
# - (c): from step 0, most of the unscaled model's softmax rows are saturated (max weight above 0.99)
#   on whatever key happens to score highest, while almost no scaled row is. Once trained, the scaled model
#   saturates too, on the right slot: being one-hot is the solution here, starting one-hot at random is
#   the problem.
# - (b): before either model has learned, the gradient norm of $W_q, W_k$ is several times **larger**
#   for the unscaled model (steps 0-9 in the table), not smaller. So "the gradient vanishes" is not what
#   the norm shows; the cell below looks inside it. (The scaled model's norm collapses once it has
#   solved the task: its loss, and with it the gradient, is then near 0.)

# %%
P0 = {name: torch.stack([t.detach()] * 2) for name, t in init_params(0).items()}  # one model, twice
for name in P0:
    P0[name].requires_grad_()
pair_scale = torch.tensor([D_QK ** -0.5, 1.0])  # (2,): scaled, unscaled
n_big = 4096
keys, values, query, target = (t.expand(2, *t.shape)
                               for t in retrieval_batch(torch.Generator().manual_seed(7), n_big))
logits, weights, scores = forward(P0, pair_scale, keys, values, query)
scores.retain_grad()
loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(2, n_big).mean(dim=1)
loss.sum().backward()
row_grad = scores.grad.norm(dim=-1) * n_big  # (2, n): |d loss_r / d scores_r| of each example r
top_rows = row_grad.argsort(dim=1, descending=True)[:, : n_big // 10]  # (2, n/10): the largest 10%
top_share = row_grad.gather(1, top_rows).sum(dim=1) / row_grad.sum(dim=1)
top_two = scores.detach().topk(2, dim=-1).values                      # (2, n, 2)
gap = top_two[..., 0] - top_two[..., 1]                               # (2, n): best minus second-best score
saturated = weights.detach().max(dim=-1).values > 0.99                # (2, n)
for j, name in enumerate(("scaled  ", "unscaled")):
    qk_grad = torch.cat([P0["W_q"].grad[j].flatten(), P0["W_k"].grad[j].flatten()]).norm()
    print(f"{name} at initialisation: score std {scores[j].std():5.2f} | saturated rows "
          f"{saturated[j].float().mean():4.0%} | median row |dL/dscores| "
          f"{row_grad[j].median():.1e} | share from the top 10% rows {top_share[j]:4.0%} | |grad W_q, W_k| {qk_grad:.2f}")
print(f"scaled / unscaled |dL/dscores| per row: median {row_grad[0].median() / row_grad[1].median():.0f}x, "
      f"mean {row_grad[0].mean() / row_grad[1].mean():.1f}x")
print(f"unscaled, the top 10% rows: {saturated[1, top_rows[1]].float().mean():.0%} saturated, median top-two "
      f"score gap {gap[1, top_rows[1]].median():.2f} (all rows: {gap[1].median():.2f})")

# %% [markdown]
# At initialisation the unscaled model's median row passes back a score gradient tens of times smaller
# than the scaled model's (the median ratio above), and a tenth of its rows carry most of the total:
# rows that are not saturated because their two best scores nearly tie (their median gap is printed
# against all rows'). Averaged over the batch, its score gradient is therefore only a few times smaller,
# and dropping $1/\sqrt{D}$ also multiplies the gradient of the scores with respect to $q$ and $k$ by
# $\sqrt{D} = 16$: its $W_q, W_k$ gradient ends up larger. So the unscaled model is not starved of
# gradient *size*; each step learns mostly from a few examples instead of the whole batch.
# (With Adam, which divides each step by a running gradient scale, size matters little anyway.) The
# conclusions are for this task, this initialisation and Adam; they are the behaviour the variance
# argument predicts, not a proof that it holds everywhere.

# %% [markdown] tags=["question:theory-14"]
# ### Why is scaling important in dot-product attention?
#
# At initialisation, with query and key entries of mean 0 and variance 1, $q \cdot k$ has variance $D$,
# so unscaled scores spread like $\sqrt{D}$ and at large $D$ most softmax rows start nearly one-hot on
# arbitrary keys; dividing by $\sqrt{D}$ restores unit variance. In section 3.1 ($D = 256$) the unscaled
# model needed several times more steps to learn a retrieval task, at each learning rate tried.
#
# - Sources: the variance argument is Vaswani et al.'s (2017); that saturation made unscaled dot products
#   trail additive attention at large $d_k$ (Britz et al. 2017) is only their suspicion.
# - Mechanism: a saturated row's Jacobian $\mathrm{diag}(p) - pp^\top$ is nearly 0, so a few near-tie
#   rows carry the signal; the q/k gradient *norm* hides this (section 3.1).
# - Initialisation only: trained $q$ and $k$ become correlated, hence μP's $1/D$ (Yang et al. 2022).
# - Logits still grow in training: ViTs of about 8B parameters diverged on near-one-hot attention until
#   queries and keys were LayerNormed (Dehghani et al. 2023); QK-norm bounds the scores (cell below).

# %% [markdown]
# Two follow-ups, checked in the cell below. **QK-norm** L2-normalises each query and key and multiplies
# their dot product by a learned scale $g$ instead of $1/\sqrt{D}$ (Henry et al. 2020), so a score can
# never exceed $|g|$ however large the projection weights grow. **Additive scores**
# $w_v^\top \tanh(W_q^\top q + W_k^\top k)$ are a sum of $A$ terms: the `tanh` bounds each term but not
# the sum, whose spread is set by the hidden width $A$ and the initialisation of $w_v$, not by $D$.

# %%
rng = np.random.default_rng(0)
E_demo, D_demo = 64, 128
x_tok = rng.standard_normal((32, E_demo))                          # (n, E) token states
W_qd, W_kd = rng.standard_normal((2, E_demo, D_demo)) / np.sqrt(E_demo)


def l2_normalise(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


for growth in (1, 10):  # projection weights grown 10x, as they can during training
    qd, kd = growth * x_tok @ W_qd, growth * x_tok @ W_kd        # (n, D) each
    plain = qd @ kd.T / np.sqrt(D_demo)                          # (n, n)
    qk_norm = l2_normalise(qd) @ l2_normalise(kd).T              # cosine, in [-1, 1]; times a learned scale g
    print(f"weights x{growth:<2d}: largest |score| plain {np.abs(plain).max():7.1f}, with QK-norm {np.abs(qk_norm).max():.2f}")

A_hidden = [16, 256, 4096]  # hidden width of additive attention
for std_name, std in (("w_v ~ N(0, 1)  ", lambda A: 1.0), ("w_v ~ N(0, 1/A)", lambda A: A ** -0.5)):
    spreads = []
    for A in A_hidden:
        hidden = np.tanh(rng.standard_normal((2000, A)))            # (pairs, A): each term in [-1, 1]
        spreads.append((hidden @ (std(A) * rng.standard_normal(A))).std())
    print(f"additive scores, {std_name}: std over pairs for A = {A_hidden}: {np.round(spreads, 2)}")

# %% [markdown]
# **Written answer.** Explain in 3-4 sentences what goes wrong if you forget the $1/\sqrt{D}$
# scaling when $D = 512$, and how you would notice it during training.

# %% [markdown] tags=["answer", "points:2"]
# With unit-variance queries and keys at initialisation, $q\cdot k$ has variance 512 (standard deviation
# about 22.6), so the scores of a row differ by tens of units and most rows of the softmax start nearly
# one-hot on arbitrary keys. A saturated row has Jacobian $\mathrm{diag}(p)-pp^\top \approx 0$ and passes
# back almost no gradient, so learning where to attend relies on the few rows that happen to be near a
# tie: training is slower, as the run in section 3.1 shows at $D = 256$. You would notice it in the
# attention statistics from the first step (attention entropies near 0, most rows with a largest
# weight above 0.99, score standard deviations near $\sqrt{D}$) and in a loss that falls more slowly
# than a scaled model's; not necessarily in the query/key gradient norm, which the missing
# $1/\sqrt{D}$ inflates.

# %% [markdown]
# ## 4. Exercise: `scaled_dot_product_attention`
#
# Implement `scaled_dot_product_attention(q, k, v, mask=None, scale=None)` in
# `src/attnlab/attention.py`. It returns `(output, weights)`:
#
# - `q` `(..., L, D)`, `k` `(..., S, D)`, `v` `(..., S, D_v)`; leading dims are batch dims;
# - `scale` defaults to $1/\sqrt{D}$;
# - `mask` (optional) is boolean, broadcastable to `(..., L, S)`, `True` = may attend. A query whose
#   row is entirely `False` gets zero weights and a zero output (section 8 explains why);
# - `output` `(..., L, D_v)`, `weights` `(..., L, S)`.
#
# Build on notebook 01: `scaled_dot_scores` (in `attnlab.scoring`) and `softmax` / `masked_softmax`
# (in `attnlab.softmax`).

# %%
from attnlab.attention import scaled_dot_product_attention

rng = np.random.default_rng(0)
B, H, L, S, D, D_v = 2, 3, 5, 7, 4, 6
q = rng.standard_normal((B, H, L, D))
k = rng.standard_normal((B, H, S, D))
v = rng.standard_normal((B, H, S, D_v))

out, weights = scaled_dot_product_attention(q, k, v)
print("output ", out.shape)      # (B, H, L, D_v)
print("weights", weights.shape)  # (B, H, L, S)
print("every row of weights sums to 1:", np.allclose(weights.sum(axis=-1), 1.0))

# %% tags=["check"]
check("attention.scaled_dot_product_attention")

# %% [markdown]
# **An independent oracle.** PyTorch ships the same operation as
# `torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=None, scale=None)`
# (imported as `F` in section 3.1), with the same shapes and the same boolean-mask meaning. It returns
# only the output. We compare on the same float64 inputs, with and without a mask and a custom scale.

# %%
qt, kt, vt = (torch.from_numpy(a) for a in (q, k, v))  # float64 tensors sharing memory with q, k, v
ref = F.scaled_dot_product_attention(qt, kt, vt).numpy()
print(f"no mask:            max |ours - torch| = {np.abs(out - ref).max():.1e}")

mask = rng.random((L, S)) < 0.6  # (L, S), broadcasts over (B, H)
mask[:, 0] = True                # every query keeps at least one key
out_m, _ = scaled_dot_product_attention(q, k, v, mask=mask, scale=0.3)
ref_m = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=torch.from_numpy(mask), scale=0.3).numpy()
print(f"mask + scale = 0.3: max |ours - torch| = {np.abs(out_m - ref_m).max():.1e}")

# %% [markdown] tags=["question:theory-13"]
# ### Describe the scaled dot-product attention formula.
#
# The formula and its shapes are the qa-3 answer (section 2); read it **inside-out**: compare ($QK^\top$,
# every query–key dot product), scale (the fixed temperature $\sqrt{D}$), normalise (a row-wise softmax,
# one distribution over the keys per query), mix (multiply by $V$). Two consequences are worth saying,
# and the cell below checks both: each output is a convex combination of the values, and shuffling the
# (key, value) pairs together changes nothing.
#
# - Convex combination: every output coordinate lies between that coordinate's minimum and maximum over
#   the values.
# - Attention sees the keys as a set, so order must come from positional information (notebook 05).
# - Scale: at 4k tokens, one attention layer of Llama 2 7B ($H = 32$, $D = 128$; Touvron et al. 2023)
#   does the arithmetic printed below, and its weights, if stored, take the memory printed below;
#   FlashAttention never stores them (Dao et al. 2022).

# %%
lo, hi = v.min(axis=-2, keepdims=True), v.max(axis=-2, keepdims=True)  # (B, H, 1, D_v)
print("outputs inside the values' bounding box:", bool(np.all((out >= lo - 1e-12) & (out <= hi + 1e-12))))
perm = rng.permutation(S)
out_perm, _ = scaled_dot_product_attention(q, k[..., perm, :], v[..., perm, :])
print("shuffling key/value pairs changes the output by", f"{np.abs(out_perm - out).max():.1e}")
L_big, D_big, H_big = 4096, 128, 32  # one layer of Llama 2 7B at 4k context
print(f"one sequence, L = S = {L_big}, H = {H_big}, D = D_v = {D_big}, no causal saving: "
      f"{4 * L_big**2 * D_big * H_big / 1e9:.0f} GFLOP, weights {L_big**2 * H_big * 2 / 2**30:.0f} GiB in fp16")

# %% [markdown]
# ## 5. Self-attention and cross-attention
#
# The function does not care where $Q$, $K$ and $V$ come from; the architecture does.
#
# - **Self-attention**: $Q$, $K$, $V$ are projections of the *same* sequence, so $L = S$ and the
#   weights are `(B, H, L, L)`. Every token builds its new representation from all tokens of its
#   own sequence (encoder layers, and decoder layers with a causal mask).
# - **Cross-attention**: $Q$ comes from one sequence (the decoder's target, length $L$) and $K$, $V$
#   from another (the encoder's output, the *memory*, length $S$), so weights are `(B, H, L, S)`
#   with $L \ne S$ in general. The output always has one row per *query*.

# %%
rng = np.random.default_rng(0)
B, L, S, E, D, D_v = 2, 5, 7, 8, 4, 6
x_dec = rng.standard_normal((B, L, E))  # decoder (target) states
x_enc = rng.standard_normal((B, S, E))  # encoder output: the memory
W_q, W_k = rng.standard_normal((2, E, D)) / np.sqrt(E)
W_v = rng.standard_normal((E, D_v)) / np.sqrt(E)
# (a real layer has separate projections for its self- and cross-attention blocks; one set keeps this short)

out_self, w_self = scaled_dot_product_attention(x_dec @ W_q, x_dec @ W_k, x_dec @ W_v)
out_cross, w_cross = scaled_dot_product_attention(x_dec @ W_q, x_enc @ W_k, x_enc @ W_v)
print("self : weights", w_self.shape, " output", out_self.shape)    # (B, L, L), (B, L, D_v)
print("cross: weights", w_cross.shape, " output", out_cross.shape)  # (B, L, S), (B, L, D_v)

# %% [markdown] tags=["question:qa-4"]
# ### Self-attention vs cross-attention.
#
# Both compute $\mathrm{softmax}(QK^\top/\sqrt{D})V$; they differ in where $Q$, $K$ and $V$ come from. In
# self-attention all three are projections of one sequence, so the weights are square, `(B, H, L, L)`; in
# cross-attention $Q$ comes from the decoder states and $K$, $V$ from the encoder output, so the weights
# are `(B, H, L, S)` and the output has the query side's length $L$ (Vaswani et al. 2017).
#
# - Masks: decoder self-attention needs a causal mask; cross-attention only a source padding mask
#   `(B, 1, 1, S)`.
# - Caching: cross-attention's keys and values are computed once per source; a self-attention cache
#   grows by one row per generated token.
# - Symmetry: self-attention is equivariant to permuting the tokens, cross-attention invariant to
#   reordering the memory rows (both checked below), so order must already be encoded.
# - Cross-attention is the Transformer's form of the target–source alignment of Bahdanau et al. (2014);
#   the same block lets text read image features (Flamingo, Alayrac et al. 2022).
# - Pitfall: $Q$ from the encoder and $K, V$ from the decoder gives an output of the source's length.

# %% [markdown] tags=["question:theory-11"]
# ### What is self-attention and how does it work?
#
# Self-attention is attention whose queries, keys and values are all projections of the same sequence,
# so every position updates itself from every position of its own sequence in one step; the comparison
# with cross-attention is the qa-4 answer above. For this question add what it costs and what it cannot
# see: $O(L^2 D)$ work per head with path length 1 between any two positions, and no notion of order.
#
# - Shapes: $X$ `(B, L, E)` -> $Q, K, V$ -> weights `(B, H, L, L)` -> output `(B, H, L, D_v)`; heads are
#   concatenated and projected by $W_O$ (notebook 04).
# - It is permutation-**equivariant**: shuffling the tokens shuffles the outputs the same way and changes
#   nothing else (checked below), hence positional encodings (notebook 05).
# - All positions are computed in parallel, against $L$ sequential steps in an RNN (Vaswani et al. 2017).
# - In a decoder it is combined with a causal mask (section 6).

# %%
perm = rng.permutation(L)
x_shuffled = x_dec[:, perm]  # same tokens, new order
out_shuffled, _ = scaled_dot_product_attention(x_shuffled @ W_q, x_shuffled @ W_k, x_shuffled @ W_v)
print("self-attention of shuffled tokens == shuffled outputs:", np.allclose(out_shuffled, out_self[:, perm]))

# %% [markdown] tags=["question:theory-16"]
# ### Explain cross-attention in encoder-decoder architectures.
#
# Cross-attention lets every decoder position read the encoder's output: queries from the decoder states,
# keys and values from the final encoder output (the memory), weights `(B, H, L, S)`; the comparison with
# self-attention is the qa-4 answer above. In the Transformer each decoder layer has one, after its
# masked self-attention, with its own projections of the same memory (Vaswani et al. 2017).
#
# - The output has the target's length whatever $S$ is (checked below with $S = 11$).
# - Reordering the memory rows changes nothing (checked below), so source order must already be encoded
#   in the memory.
# - It needs only a source padding mask, and its keys and values are computed once per source and reused
#   at every decoding step.

# %%
perm = rng.permutation(S)
out_reordered, _ = scaled_dot_product_attention(x_dec @ W_q, x_enc[:, perm] @ W_k, x_enc[:, perm] @ W_v)
print("memory rows reordered, output changes by", f"{np.abs(out_reordered - out_cross).max():.1e}")
x_long = rng.standard_normal((B, 11, E))  # a longer source: S = 11
print("output shape with S = 11:", scaled_dot_product_attention(x_dec @ W_q, x_long @ W_k, x_long @ W_v)[0].shape)

# %% [markdown]
# ## 6. Masks: who may attend to whom
#
# A mask is a boolean array broadcastable to the scores `(..., L, S)`; `True` means *may attend*.
# Masked positions get weight exactly 0 and the remaining weights of the row are renormalised. Two
# masks cover most uses:
#
# - a **causal** (look-ahead) mask stops a decoder position from seeing later positions, so that a
#   model trained on whole sequences at once still predicts token $t+1$ from tokens $\le t$ only;
# - a **padding** mask hides the filler positions of shorter sequences in a padded batch.
#
# **Causal, aligned to the end.** Query $i$ may see key $j$ when
#
# $$j \le i + (S - L).$$
#
# With $L = S$ this is the usual lower triangle (diagonal included: a token sees itself). With
# $L < S$ the $L$ queries are the *last* $L$ positions of the sequence, e.g. new tokens processed
# after a cache of $S - L$ earlier keys: the last query sees every key.
#
# ### Exercise: `causal_mask`
# Implement `causal_mask(L, S=None)` in `src/attnlab/masks.py`; it returns a boolean `(L, S)` array
# (`S` defaults to `L`). Hint: compare a column of query positions with a row of key positions.

# %%
from attnlab.masks import causal_mask, padding_mask

# both masks are drawn as heatmaps after the check; here, their shapes and how many keys each query sees
print("causal_mask(4):    ", causal_mask(4).shape, causal_mask(4).dtype,
      "| keys visible per query:", causal_mask(4).sum(axis=1))            # (L, S) -> (L,)
print("causal_mask(3, 7): ", causal_mask(3, 7).shape, causal_mask(3, 7).dtype,
      "| keys visible per query:", causal_mask(3, 7).sum(axis=1), "(3 new queries after a cache of 4 keys)")

# %% tags=["check"]
check("masks.causal_mask")

# %% [markdown]
# **PyTorch's `is_causal=True` is aligned to the start, by design.** Its documentation defines it as
# the "upper left" causal bias: `torch.ones(L, S, dtype=torch.bool).tril()`, i.e. $j \le i$, as if the
# $L$ queries were the *first* $L$ positions. For $L = S$ the two conventions agree. For a block of
# queries that comes after a cache, PyTorch offers the other alignment as
# `torch.nn.attention.bias.causal_lower_right(L, S)` (a prototype API), which you pass as `attn_mask`;
# it equals our mask (checked below by reading off which keys SDPA actually lets each query see).
# Other libraries choose differently: FlashAttention's
# `causal=True` was start-aligned in 2.0 and is end-aligned since 2.1 (the "2.1: Change behavior of
# causal flag" entry of its README). The same flag name can mean either: check which one you call.
#
# Two more masks built from the same positions, drawn below: a **prefix-LM** mask lets a prefix of $P$
# tokens attend to each other in both directions and the rest causally (one of the T5 variants,
# Raffel et al. 2020), and a **sliding-window** mask keeps only keys within $W$ positions of the query:
# on both sides in Longformer (Beltagy et al. 2020), the last $W$ in a causal decoder such as Mistral 7B
# (Jiang et al. 2023), as drawn below.

# %%
from torch.nn.attention.bias import causal_lower_right



def keys_read_by_sdpa(L, S, **mask_args):
    """Which keys each query reads inside F.scaled_dot_product_attention, as an (L, S) bool array.
    All scores equal and V = identity: output row i is then query i's weights, > 0 where visible."""
    q, k = torch.zeros(1, 1, L, 4, dtype=torch.float64), torch.zeros(1, 1, S, 4, dtype=torch.float64)
    weights = F.scaled_dot_product_attention(q, k, torch.eye(S, dtype=torch.float64)[None, None], **mask_args)
    return (weights[0, 0] > 0).numpy()


L_new, S_all = 3, 7
torch_is_causal = keys_read_by_sdpa(L_new, S_all, is_causal=True)
torch_lower_right = keys_read_by_sdpa(L_new, S_all, attn_mask=causal_lower_right(L_new, S_all))
print("causal_lower_right(3, 7) == causal_mask(3, 7):", np.array_equal(torch_lower_right, causal_mask(L_new, S_all)))
print("is_causal's mask      == causal_mask(3, 7):", np.array_equal(torch_is_causal, causal_mask(L_new, S_all)))
print("one new query after a cache of 6 (L = 1, S = 7), keys it reads with is_causal=True:",
      keys_read_by_sdpa(1, S_all, is_causal=True).astype(int)[0], "; with our mask:", causal_mask(1, S_all).astype(int)[0])

n_pos, prefix, window = 6, 3, 3
key_pos = np.arange(n_pos)
prefix_lm = causal_mask(n_pos) | (key_pos < prefix)[None, :]                        # (L, S)
sliding = causal_mask(n_pos) & (key_pos[:, None] - key_pos[None, :] < window)     # (L, S), L == S
fig, axes = plt.subplots(2, 3, figsize=(13, 6.8))
panels = [(causal_mask(n_pos), f"causal_mask({n_pos})"),
          (causal_mask(L_new, S_all), f"causal_mask({L_new}, {S_all}): end-aligned"),
          (torch_is_causal, f"PyTorch is_causal=True, L={L_new}, S={S_all}"),
          (torch_lower_right, f"causal_lower_right({L_new}, {S_all})"),
          (prefix_lm, f"prefix-LM, prefix of {prefix}"),
          (sliding, f"sliding window of {window}")]
for ax, (m, title) in zip(axes.flat, panels):
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3)  # dark = may attend
    ax.set(title=title, xlabel="key position j", ylabel="query i",
           xticks=range(m.shape[1]), yticks=range(m.shape[0]))
fig.suptitle("masks (dark = may attend)")
fig.tight_layout(h_pad=2.5)
plt.show()

# %%
rng = np.random.default_rng(0)
q = rng.standard_normal((1, 1, L_new, 4))  # (B, H, L, D)
k = rng.standard_normal((1, 1, S_all, 4))  # (B, H, S, D)
v = rng.standard_normal((1, 1, S_all, 6))  # (B, H, S, D_v)
qt, kt, vt = (torch.from_numpy(a) for a in (q, k, v))

ours, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(L_new, S_all))
via_is_causal = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).numpy()
via_lower_right = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=causal_lower_right(L_new, S_all)).numpy()
print(f"L < S : max |ours - torch is_causal=True|              = {np.abs(ours - via_is_causal).max():.2f}")
print(f"L < S : max |ours - torch attn_mask=causal_lower_right| = {np.abs(ours - via_lower_right).max():.1e}")
ours_sq, _ = scaled_dot_product_attention(k, k, v, mask=causal_mask(S_all))  # L == S == 7
torch_sq = F.scaled_dot_product_attention(kt, kt, vt, is_causal=True).numpy()
print(f"L == S: max |ours - torch is_causal=True|              = {np.abs(ours_sq - torch_sq).max():.1e}")

# %% [markdown] tags=["question:qa-5"]
# ### Causal (look-ahead) mask in decoders.
#
# A decoder models $p(x_t \mid x_{<t})$ but is trained on whole sequences in one pass, so a causal mask
# stops query $i$ from attending to any later key: key $j$ is visible when $j \le i$ (diagonal included),
# and hidden keys get a score of $-\infty$ before the softmax, hence weight 0. Training all positions at
# once is then equivalent to predicting one token at a time.
#
# - With a cache of $S - L$ earlier keys the rule is end-aligned, $j \le i + (S - L)$. PyTorch's
#   `is_causal=True` is start-aligned (its docs: "upper left"); `causal_lower_right(L, S)` equals our
#   mask (checked above); FlashAttention's `causal=True` is end-aligned since 2.1 (its README).
# - Variants (drawn above): prefix-LM, bidirectional over a prefix, causal after it (Raffel et al. 2020);
#   sliding window, keys within $W$ positions (both sides in Beltagy et al. 2020; the last $W$ in
#   Mistral 7B, Jiang et al. 2023).
# - The mask only protects attention: targets must still be shifted so position $t$ predicts token $t+1$.
# - Test it metamorphically: changing future tokens must leave earlier outputs unchanged (section 7).

# %% [markdown]
# ### Exercise: `padding_mask`
#
# Sequences in a batch have different lengths, so they are padded to a common length $S$ and the
# true lengths are kept alongside. Implement `padding_mask(lengths, max_len)` in
# `src/attnlab/masks.py`: given `lengths` `(B,)` it returns a boolean `(B, max_len)` array, `True`
# at the valid positions `j < lengths[b]`. A length outside `[0, max_len]` raises `ValueError`.

# %%
lengths = np.array([7, 4])  # (B,) true lengths, padded to S = 7
pad_demo = padding_mask(lengths, 7)  # (B, S); the next figure draws one, combined with a causal mask
print("padding_mask([7, 4], 7):", pad_demo.shape, pad_demo.dtype,
      "| valid keys per sequence:", pad_demo.sum(axis=1), "| first padded key of sequence 1:", int(np.argmin(pad_demo[1])))

# %% tags=["check"]
check("masks.padding_mask")

# %% [markdown]
# **Combining masks by broadcasting.** Scores are `(B, H, L, S)`. A key-padding mask `(B, S)` says the
# same thing to every head and every query, so it is reshaped to `(B, 1, 1, S)`; a causal mask
# `(L, S)` is the same for every sequence and head. A logical *and* broadcasts them to `(B, 1, L, S)`:
# a position is visible only if both masks allow it.

# %%
rng = np.random.default_rng(0)
B, H, L, D, D_v = 2, 3, 6, 4, 5  # self-attention: S == L == 6
lengths = np.array([6, 4])
pad = padding_mask(lengths, L)                 # (B, S)
mask = pad[:, None, None, :] & causal_mask(L)  # (B, 1, 1, S) & (L, S) -> (B, 1, L, S)
print("combined mask", mask.shape)

q = rng.standard_normal((B, H, L, D))
k = rng.standard_normal((B, H, L, D))
v = rng.standard_normal((B, H, L, D_v))
out, w = scaled_dot_product_attention(q, k, v, mask=mask)  # mask broadcasts over H
print("largest weight on a padded key of sequence 1:", w[1, :, :, 4:].max())
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
show_weights(axes[0], mask[1, 0].astype(float), "mask, sequence 1 (length 4)")
show_weights(axes[1], w[0, 0], "weights, sequence 0, head 0")
image = show_weights(axes[2], w[1, 0], "weights, sequence 1, head 0")
fig.colorbar(image, ax=axes, label="weight (mask: 1 = may attend)")
plt.show()

# %% [markdown]
# In sequence 1 the padded keys 4 and 5 get no weight from any query, and every query's weights stay
# on or below the diagonal. Queries 4 and 5 are padding themselves, but each still sees the real keys
# $\le$ its position, so its row is not empty; section 8 is about rows that are.

# %% [markdown]
# ## 7. A metamorphic test of causality
#
# How do we know a causal mask really hides the future? Not by looking at the weights, but by a
# **metamorphic** test: change the inputs in a way that must not matter and check the output does
# not move. With the end-aligned mask, query $i$ sees keys $0..i+(S-L)$; rewriting every key and
# value after that must leave output row $i$ exactly unchanged. The test must also be able to fail,
# so we check that later rows, which do see the rewritten positions, change.

# %%
rng = np.random.default_rng(0)
B, H, L, S, D, D_v = 2, 3, 5, 7, 4, 6
q = rng.standard_normal((B, H, L, D))
k = rng.standard_normal((B, H, S, D))
v = rng.standard_normal((B, H, S, D_v))
mask = causal_mask(L, S)  # (L, S)
out, _ = scaled_dot_product_attention(q, k, v, mask=mask)

for i in range(L - 1):  # the last query sees every key: nothing to rewrite
    future = slice(i + (S - L) + 1, None)  # keys query i must not see
    k2, v2 = k.copy(), v.copy()
    k2[..., future, :] = 100 * rng.standard_normal(k2[..., future, :].shape)
    v2[..., future, :] = 100 * rng.standard_normal(v2[..., future, :].shape)
    out2, _ = scaled_dot_product_attention(q, k2, v2, mask=mask)
    change = np.abs(out2 - out).max(axis=(0, 1, 3))  # (L,): largest change per query row
    print(f"future of query {i} rewritten: rows 0..{i} change by {change[:i + 1].max():.1e}, "
          f"rows {i + 1}..{L - 1} by {change[i + 1:].min():.1f} or more")

# %% [markdown] tags=["question:theory-36"]
# ### Describe masked attention in causal language models.
#
# Masked self-attention is how a Transformer implements $p(x_1, \dots, x_T) = \prod_t p(x_t \mid x_{<t})$;
# the mask itself, its alignment and its variants are the qa-5 answer above. For a causal LM add how it
# is used: in training the loss is taken at every position in one pass, while in generation each step
# sends one new query against the KV cache, where $L = 1$ needs no mask (PyTorch's `is_causal=True`
# would hide all but the first key, checked in section 6) and a chunk of $L > 1$ needs the end-aligned one.
#
# - Batched generation adds a padding mask (usually left padding), combined by broadcasting into
#   `(B, 1, L, S)` (sections 6 and 8).
# - Kernels exploit the structure: causal FlashAttention skips the tiles above the diagonal, about half
#   the work (Dao 2023).
# - The test is metamorphic (cell above): rewriting every key and value a query must not see leaves its
#   output exactly unchanged, and the test can fail, since later rows do change.

# %% [markdown]
# ## 8. Variable-length batches and fully masked rows
#
# Sometimes a query has *nothing* to attend to: a padding query when the mask hides padding on both
# sides, an empty source sequence, or left padding combined with a causal mask. The textbook recipe
# "set masked scores to $-\infty$, then softmax" turns such a row into
# $e^{-\infty}/\sum e^{-\infty} = 0/0 = \mathrm{NaN}$. Here both padding queries and padding keys
# are masked, so the rows of padding queries are fully masked.

# %%
rng = np.random.default_rng(0)
B, H, L, D, D_v = 2, 3, 6, 4, 5  # self-attention: S == L == 6
lengths = np.array([6, 4])
pad = padding_mask(lengths, L)                     # (B, L)
mask = pad[:, None, :, None] & pad[:, None, None, :]  # (B, 1, L, 1) & (B, 1, 1, S) -> (B, 1, L, S)
print("sequence 1: rows 4 and 5 (padding queries) are fully masked")

q = rng.standard_normal((B, H, L, D))
k = rng.standard_normal((B, H, L, D))
v = rng.standard_normal((B, H, L, D_v))


def fill_and_softmax(q, k, v, mask, fill):
    """The textbook recipe: masked scores <- fill, then a plain softmax. Returns (output, weights)."""
    scores = np.where(mask, q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]), fill)  # (B, H, L, S)
    weights = row_softmax(scores)
    return weights @ v, weights


with np.errstate(invalid="ignore"):  # -inf - (-inf) = nan: silence the warning, look at the result
    out_inf, w_inf = fill_and_softmax(q, k, v, mask, -np.inf)
out_big, w_big = fill_and_softmax(q, k, v, mask, -1e9)
print("-1e9 stored in float16 becomes", torch.tensor(-1e9).half().item())
out_ours, w_ours = scaled_dot_product_attention(q, k, v, mask=mask)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
show_weights(axes[0], mask[1, 0].astype(float), "mask of sequence 1 (1 = may attend)")
for ax, (wts, name) in zip(axes[1:], [(w_inf, "fill -inf"), (w_big, "fill -1e9"), (w_ours, "ours")]):
    image = show_weights(ax, wts[1, 0], f"weights, {name}")
fig.colorbar(image, ax=axes, label="weight (red = NaN)")
plt.show()
print("rows 4-5 of sequence 1, head 0: NaN with -inf:", bool(np.isnan(w_inf[1, 0, 4:]).all()),
      "| -1e9 gives", w_big[1, 0, 4].round(3), "| ours sum to", w_ours[1, 0, 4:].sum(axis=-1))

# %% [markdown]
# Filling with $-\infty$ gives NaN (red rows); filling with a large finite number avoids the NaN but
# spreads the row uniformly over *all* keys, padding included (and $-10^9$ is not representable in
# fp16, where it becomes $-\infty$ again). Our convention gives zero weights and a zero output.
#
# **The same in PyTorch.** A hand-written `masked_fill(-inf)` + `softmax` produces NaN, and NaN
# spreads through backpropagation even if the padding rows are dropped before the loss: the gradient
# of $V$ is $W^\top \, \partial\mathcal{L}/\partial O$, and $\mathrm{NaN}\times 0 = \mathrm{NaN}$.
# PyTorch's own `F.scaled_dot_product_attention` changed its stance in version 2.5: a fully masked row
# now gives zeros, the same convention as ours (PyTorch 2.5 release notes); before 2.5 it returned NaN.
# The cell below checks only the CPU path of the PyTorch installed here; on a GPU, check the backend you
# use. The caveat is for everything else: hand-written attention, older PyTorch, and other kernels and
# libraries each choose their own convention, so test yours with a fully masked row.

# %%
qt, kt, vt = (torch.from_numpy(a) for a in (q, k, v))
mask_t = torch.from_numpy(mask)  # (B, 1, L, S)
vt_grad = vt.clone().requires_grad_(True)
scores_t = qt @ kt.transpose(-2, -1) / D**0.5                         # (B, H, L, S)
w_t = torch.softmax(scores_t.masked_fill(~mask_t, float("-inf")), dim=-1)
out_t = w_t @ vt_grad                                                 # (B, H, L, D_v)
loss = out_t[0].sum() + out_t[1, :, :4].sum()  # padding rows of sequence 1 left out of the loss
loss.backward()
print("hand-written torch, padding query 4:", w_t[1, 0, 4].numpy().round(3))
print("loss is finite:", bool(torch.isfinite(loss)), "| NaN in the gradient of V:", bool(vt_grad.grad.isnan().any()))

sdpa = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask_t).numpy()
print(f"torch {torch.__version__} SDPA on {qt.device.type}, output of padding query 4:", sdpa[1, 0, 4].round(3))
print("ours, output of padding query 4:         ", out_ours[1, 0, 4].round(3))
print(f"all rows agree with torch SDPA: max diff {np.abs(out_ours - sdpa).max():.1e}")

# %% [markdown]
# **Why zeros?** A fully masked row belongs to a query that should not exist (a padding position);
# whatever it outputs is ignored downstream, since the loss and any pooling are masked too. Zero is
# the natural value for "a weighted sum over nothing", keeps every number finite, and contributes
# exactly nothing to any gradient. NaN, by contrast, poisons gradients and, through them, every
# parameter after one optimiser step; a uniform average over all keys invents information.
#
# **Left padding and position ids.** For batched generation, prompts are usually padded on the
# *left*, so that every sequence's next token lands in the same (last) column. Combined with a causal
# mask, the leading padding queries see only padding keys: exactly the fully masked rows above. Left
# padding also shifts the real tokens: with positions taken as `arange(S)`, the first real token of the
# padded prompt below gets position 2 instead of 0, so the same prompt would be encoded differently
# depending on the longest prompt in its batch. Count positions from the mask instead, e.g. the running
# count of real tokens minus one:

# %%
left_pad = np.array([[False, False, True, True, True],   # (B, S): 2 pads, then a 3-token prompt
                     [True, True, True, True, True]])    # a 5-token prompt
naive_positions = np.broadcast_to(np.arange(5), left_pad.shape)
positions = np.where(left_pad, np.cumsum(left_pad, axis=1) - 1, 0)  # pads get 0: they are masked anyway
print("arange positions:    ", naive_positions.tolist())
print("positions from mask: ", positions.tolist())
causal_left = left_pad[:, None, :] & causal_mask(5)     # (B, 1, S) & (L, S) -> (B, L, S)
empty_rows = [(int(b), int(i)) for b, i in zip(*np.nonzero(~causal_left.any(axis=-1)))]
print("fully masked query rows (sequence, query) with left padding + causal:", empty_rows)

# %% [markdown] tags=["question:theory-35"]
# ### How do you handle attention for variable-length sequences?
#
# Pad the batch to a common length $S$, keep the true lengths `(B,)`, and pass a boolean key-padding mask
# reshaped to `(B, 1, 1, S)` (True = real token), combined with any causal mask by a logical and; masked
# keys get weight exactly 0, so real tokens' outputs do not depend on the amount of padding. Padding
# *queries* still produce rows: leave them out of the loss, and make a fully masked row return zeros.
#
# - Fully masked rows: a $-\infty$ fill gives NaN, and NaN gradients even if the row is dropped from the
#   loss; a $-10^9$ fill averages over all keys and is $-\infty$ again in fp16 (section 8). PyTorch's
#   SDPA returns zeros since 2.5 (its release notes; checked on CPU in section 8).
# - Left padding keeps every sequence's next token in the last column; position ids must then come from
#   the mask, not `arange` (shown above).
# - Padding wastes compute: bucket by length, or pack sequences into one row with a block-diagonal
#   mask (FlashAttention's varlen kernels take cumulative sequence lengths instead).

# %% [markdown]
# ## Summary
#
# | idea | what to remember | where |
# |---|---|---|
# | $Q, K, V$ | learned projections; weights from $Q$ and $K$, content from $V$ | section 1 |
# | the formula | `(..., L, D)`, `(..., S, D)`, `(..., S, D_v)` -> weights `(..., L, S)` -> `(..., L, D_v)` | section 2 |
# | $1/\sqrt{D}$ | unit-variance scores at initialisation; unscaled, the softmax starts saturated, and in our run learned several times slower | section 3 |
# | self / cross | same function, different sources of $Q$ and $K, V$ | section 5 |
# | causal masks | $j \le i + (S - L)$, end-aligned; `is_causal=True` is start-aligned | section 6 |
# | padding, empty rows | `(B, 1, 1, S)` masks; a fully masked row gives zeros, not NaN | sections 6, 8 |
#
# **Questions answered:** qa-2 (Q, K, V), theory-5 (their roles), qa-3 and theory-13 (the formula),
# theory-14 (why scale), qa-4, theory-11 and theory-16 (self- and cross-attention), qa-5 and theory-36
# (causal masks), theory-35 (variable lengths).
#
# Next, notebook 03 goes back to where attention started, sequence-to-sequence RNNs with Bahdanau and
# Luong attention.
