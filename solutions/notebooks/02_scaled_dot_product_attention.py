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
# Notebook 01 turned query-key scores into weights. This notebook builds the function every
# Transformer calls thousands of times, $\mathrm{softmax}(QK^\top/\sqrt{D})\,V$, together with
# the masks that decide who may look at whom.
#
# **You will learn**
# - what queries, keys and values are, and where they come from (learned projections);
# - the formula with the shape of every matrix: $Q$ `(..., L, D)`, $K$ `(..., S, D)`, $V$ `(..., S, D_v)`;
# - why the scores are divided by $\sqrt{D}$, measured rather than asserted;
# - to implement `scaled_dot_product_attention`, `causal_mask` and `padding_mask`, and to test the
#   first against PyTorch;
# - self- versus cross-attention;
# - causal masks aligned to the end (and how PyTorch's `is_causal=True` differs), padding masks, and
#   what a query with nothing to attend to should return.
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

# %% [markdown]
# ## 1. Queries, keys and values
#
# Attention is a **soft dictionary lookup**. A Python `dict` compares a query with every key and
# returns the value of the one key that matches exactly. Attention compares a query with every key,
# turns the similarities into weights with a softmax, and returns the weighted *average* of all the
# values. Because nothing is picked with an `argmax`, the lookup is differentiable.

# %%
keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # (S=3, D=2): three slots
values = np.array([[10.0], [20.0], [30.0]])              # (S=3, D_v=1): what each slot holds
query = np.array([[2.0, 0.5]])                           # (L=1, D=2): most similar to slot 0

scores = query @ keys.T                                  # (1, 3)
weights = row_softmax(scores)                            # (1, 3), sums to 1
print("scores ", scores.round(2))
print("weights", weights.round(3))
print("soft lookup returns", (weights @ values).round(2).item(), "(a hard lookup would return 10.0)")

# %% [markdown]
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
# width $D_v$. Separate matrices also make relevance *asymmetric*: $q_i\cdot k_j \ne q_j\cdot k_i$,
# whereas raw similarities $x_i\cdot x_j$ are symmetric.

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
# They are three views of the same tokens, produced by three learned matrices: $Q = X W_q$,
# $K = X_{\text{src}} W_k$, $V = X_{\text{src}} W_v$, with $X$ of shape `(B, L, E)`, $W_q, W_k$ of
# shape `(E, D)` and $W_v$ of shape `(E, D_v)`; in self-attention $X_{\text{src}} = X$. The query of a
# position says what it is looking for, the key of a position says how it should be found, and the
# value is what it contributes once found. The score $q_i \cdot k_j$ decides how much of $v_j$ flows
# into output $i$, so $Q$ and $K$ must share the width $D$ while $V$ may have any width $D_v$. The
# mental model is a dictionary lookup made soft: instead of returning the value whose key equals the
# query, return the softmax-weighted average of all values. A common follow-up is "why not use $X$
# directly?": then the scores $XX^\top$ are symmetric and each token tends to match itself best;
# separate projections let "what I match on" differ from "what I transmit", and let relevance be
# asymmetric (the cell above shows it). Pitfall: Q, K and V are not three different inputs; in
# self-attention they are the same tokens seen through three matrices.

# %% [markdown] tags=["question:theory-5"]
# ### Explain the three main components of attention: Query, Key, Value.
#
# Attention computes $\mathrm{softmax}(QK^\top/\sqrt{D})\,V$, and each component plays one part in it.
# **Queries** $Q$ `(..., L, D)`: one row per position that *asks*; the output has one row per query,
# `(..., L, D_v)`. **Keys** $K$ `(..., S, D)`: one row per position that can be *found*; comparing
# queries with keys gives the `(..., L, S)` score matrix, so keys alone decide *where* each query
# looks. **Values** $V$ `(..., S, D_v)`: one row per key, paired with it; they decide *what* comes
# back, and never influence the weights. Keys and values always come in pairs (same $S$, same
# source sequence) while the number of queries $L$ is independent, which is what makes
# cross-attention and decoding with a cache possible. Because a past token's key and value do not
# change when new tokens arrive, generation stores them (the *KV cache*) and only computes a query
# for the new token. In multi-head attention each head has its own slice of $Q$, $K$ and $V$;
# grouped-query attention shares each key/value head among several query heads to shrink that cache.
# The cell below checks the division of labour: new values leave the weights untouched, new keys
# change them.

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
# $\mathrm{Attention}(Q,K,V) = \mathrm{softmax}(QK^\top/\sqrt{D})\,V$, with $Q$ `(..., L, D)`,
# $K$ `(..., S, D)`, $V$ `(..., S, D_v)`. In three steps: scores $QK^\top/\sqrt{D}$ of shape
# `(..., L, S)` (one similarity per query-key pair); weights = softmax of each score row over the
# key axis, so every row is a probability distribution over the $S$ keys; output = weights $\cdot V$,
# shape `(..., L, D_v)`, a weighted average of value rows per query. $D$ is the *per-head*
# query/key width ($d_k$), not the model width $E$, and the factor is $1/\sqrt{D}$, not $1/D$: it
# brings the variance of $q\cdot k$ back to about 1 so the softmax does not saturate (section 3).
# A mask, when there is one, is applied to the scores before the softmax. Typical bugs an
# interviewer probes: softmax over the query axis instead of the key axis (columns sum to 1, not
# rows), transposing all axes of $K$ instead of the last two, or scaling by $\sqrt{E}$. The cost is
# $O(LSD + LSD_v)$ time and $O(LS)$ memory for the weights per (batch, head).

# %% [markdown]
# ## 3. Why divide by $\sqrt{D}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q\cdot k = \sum_{d=1}^{D} q_d k_d$ is a sum of $D$ independent terms of variance 1:
#
# $$\mathrm{Var}(q\cdot k) = D, \qquad \mathrm{Var}\!\left(\frac{q\cdot k}{\sqrt{D}}\right) = 1.$$
#
# Unscaled, the scores spread out like $\sqrt{D}$; a softmax of widely spread scores puts almost all
# its weight on the largest one (it *saturates*). The experiment below draws $S=32$ keys per query
# for growing $D$ and measures the score variance, the mean largest weight in a row (1/32 is
# uniform, 1 is one-hot) and the mean entropy of a row (at most $\ln 32$).

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
    axes[0].loglog(Ds, stats[kind]["var"], style, label=label)
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
# entropy near 0); scaled, all three curves stay flat. Saturation is not only a modelling problem,
# it kills learning. With $p = \mathrm{softmax}(z)$,
#
# $$\frac{\partial p_i}{\partial z_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - pp^\top,$$
#
# and when $p$ is (nearly) one-hot every entry of $J$ is (nearly) 0: the diagonal terms
# $p_i(1-p_i)$ vanish and so do the products $p_ip_j$. No gradient reaches the scores, hence none
# reaches $W_q$ and $W_k$. Below, the same logits multiplied by growing factors (as an unscaled
# score grows with $\sqrt{D}$); the Jacobian formula is first checked against finite differences.

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

# %% [markdown] tags=["question:theory-14"]
# ### Why is scaling important in dot-product attention?
#
# With $q$ and $k$ entries of mean 0 and variance 1 (roughly the situation at initialisation),
# $q\cdot k$ has variance $D$, so its typical size grows like $\sqrt{D}$: for $D=128$ scores differ
# by tens of units. The softmax of such scores is nearly one-hot (plot (b) above), and its Jacobian
# $\mathrm{diag}(p)-pp^\top$ is then nearly zero, so the gradients reaching $W_q$ and $W_k$ vanish and
# attention freezes into whatever hard pattern it started with. Dividing by $\sqrt{D}$ restores unit
# variance for every width, so the softmax starts in its sensitive, high-entropy regime and the same
# learning rate works whatever the head size. Large logits are also a numerical hazard in fp16/bf16.
# Pitfalls: the $D$ is the per-head query/key width, not $E$; $1/D$ is a different choice (used
# deliberately in μP-style parametrisations), not an equivalent one. The argument only holds at
# initialisation: trained weights can still grow large logits, which is why some models add
# QK-normalisation or a learned temperature. Additive (Bahdanau) attention needs no such factor
# because its $\tanh$ bounds the hidden units.

# %% [markdown]
# **Written answer.** Explain in 3-4 sentences what goes wrong if you forget the $1/\sqrt{D}$
# scaling when $D = 512$, and how you would notice it during training.

# %% [markdown] tags=["answer", "points:2"]
# With unit-variance queries and keys, $q\cdot k$ has variance 512 (standard deviation about 22.6), so
# the scores in a row differ by tens of units and the softmax is essentially one-hot from the first
# step. A saturated softmax has Jacobian $\mathrm{diag}(p)-pp^\top \approx 0$, so almost no gradient
# reaches the scores and hence $W_q$, $W_k$: attention stays stuck on arbitrary hard patterns and
# training is slow or stalls (large logits can also overflow in fp16). You would notice attention
# entropies near 0 and one-hot heatmaps right from initialisation, score standard deviations near
# $\sqrt{D}$, near-zero gradient norms for the query/key projections, and a loss that plateaus where
# a scaled model keeps improving.

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
# `torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=None, scale=None)`,
# with the same shapes and the same boolean-mask meaning. It returns only the output. We compare on
# the same float64 inputs, with and without a mask and a custom scale. (PyTorch is imported here, not
# at the top, because it takes a couple of seconds.)

# %%
import torch
import torch.nn.functional as F

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
# $\mathrm{Attention}(Q,K,V)=\mathrm{softmax}(QK^\top/\sqrt{D})\,V$ reads right to left as "compare,
# normalise, mix". $QK^\top$ `(..., L, S)` holds every query-key dot product at once, a similarity
# that is large when the two vectors point the same way. Dividing by $\sqrt{D}$ is a fixed
# temperature that keeps those scores at unit variance whatever the head width. The row-wise softmax
# makes the weight matrix row-stochastic: each query gets a probability distribution over the $S$
# keys. Multiplying by $V$ `(..., S, D_v)` then gives each query a convex combination of value
# vectors, so every output lies inside the hull of the values (checked below). The operation has no
# parameters of its own (they live in the projections producing $Q,K,V$), is differentiable
# everywhere, and treats the key/value pairs as an unordered set: shuffling them together changes
# nothing, which is why positions must be encoded separately. Cost per (batch, head):
# $2LSD + 2LSD_v$ flops and an $L\times S$ weight matrix, quadratic in length; FlashAttention
# computes the same result without ever storing that matrix.

# %%
lo, hi = v.min(axis=-2, keepdims=True), v.max(axis=-2, keepdims=True)  # (B, H, 1, D_v)
print("outputs inside the values' bounding box:", bool(np.all((out >= lo - 1e-12) & (out <= hi + 1e-12))))
perm = rng.permutation(S)
out_perm, _ = scaled_dot_product_attention(q, k[..., perm, :], v[..., perm, :])
print("shuffling key/value pairs changes the output by", f"{np.abs(out_perm - out).max():.1e}")
L_big, D_big, H_big = 4096, 128, 32  # one layer of a 7B-class model at 4k context
print(f"L = S = {L_big}, H = {H_big}, D = D_v = {D_big}: {4 * L_big**2 * D_big * H_big / 1e9:.0f} GFLOP, "
      f"weights {L_big**2 * H_big * 2 / 2**30:.0f} GiB in fp16")

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

# %% [markdown] tags=["question:theory-11"]
# ### What is self-attention and how does it work?
#
# Self-attention lets every position of a sequence update itself with information from every other
# position of the *same* sequence. From $X$ `(B, L, E)` it computes $Q = XW_q$, $K = XW_k$,
# $V = XW_v$, then $\mathrm{softmax}(QK^\top/\sqrt{D})V$ with weights `(B, H, L, L)` and output
# `(B, H, L, D_v)`; heads are concatenated and projected back to width $E$. Each output token is
# therefore a context-dependent mixture: the word "bank" can pull in "river" or "money" depending on
# its neighbours. Any two positions interact in one step (path length 1, against $L$ steps in an RNN),
# and all positions are computed in parallel, at a cost of $O(L^2 D)$ per head. It is
# permutation-*equivariant*: shuffling the tokens shuffles the outputs the same way and changes
# nothing else (checked below), so word order must be injected with positional encodings. In a
# decoder it is combined with a causal mask so that position $i$ sees only positions $\le i$.

# %%
perm = rng.permutation(L)
x_shuffled = x_dec[:, perm]  # same tokens, new order
out_shuffled, _ = scaled_dot_product_attention(x_shuffled @ W_q, x_shuffled @ W_k, x_shuffled @ W_v)
print("self-attention of shuffled tokens == shuffled outputs:", np.allclose(out_shuffled, out_self[:, perm]))

# %% [markdown] tags=["question:theory-16"]
# ### Explain cross-attention in encoder-decoder architectures.
#
# In an encoder-decoder Transformer, each decoder layer has a cross-attention block after its masked
# self-attention. Its queries are projections of the decoder states, $Q = Y W_q$ `(B, H, L, D)`, and
# its keys and values are projections of the final encoder output $M$ (the memory),
# $K = MW_k$ `(B, H, S, D)`, $V = MW_v$ `(B, H, S, D_v)`; every decoder layer reads the same memory
# through its own projections. The weights `(B, H, L, S)` are a soft alignment between target and
# source tokens, the successor of Bahdanau's alignment in RNN translation models, and the output
# `(B, H, L, D_v)` has the target's length whatever the source length. No causal mask is needed (the
# whole source is known), but a source padding mask `(B, 1, 1, S)` is. At inference the memory's keys
# and values are computed once per source and reused at every decoding step. Because attention treats
# key/value pairs as a set, reordering the memory rows changes nothing (below): source order must
# already be encoded in $M$. The same block powers multimodal models (text queries over image
# patches) and Perceiver-style latents.

# %%
perm = rng.permutation(S)
out_reordered, _ = scaled_dot_product_attention(x_dec @ W_q, x_enc[:, perm] @ W_k, x_enc[:, perm] @ W_v)
print("memory rows reordered, output changes by", f"{np.abs(out_reordered - out_cross).max():.1e}")
x_long = rng.standard_normal((B, 11, E))  # a longer source: S = 11
print("output shape with S = 11:", scaled_dot_product_attention(x_dec @ W_q, x_long @ W_k, x_long @ W_v)[0].shape)

# %% [markdown] tags=["question:qa-4"]
# ### Self-attention vs cross-attention.
#
# Both compute $\mathrm{softmax}(QK^\top/\sqrt{D})V$; they differ only in where the inputs come from.
# In self-attention $Q$, $K$ and $V$ are projections of one sequence $X$ `(B, L, E)`, so $S = L$ and
# the weights are square, `(B, H, L, L)`: tokens of a sequence exchange information among themselves
# (all encoder layers; decoder layers with a causal mask). In cross-attention $Q$ comes from one
# sequence (decoder states, length $L$) and $K$, $V$ from another (encoder output, length $S$), so the
# weights are `(B, H, L, S)` and the output has the *query* side's length $L$. Masks differ too:
# decoder self-attention needs a causal mask, cross-attention only a padding mask over the source.
# Cross-attention's keys and values depend only on the source, so they are computed once and cached
# for all decoding steps. Pitfall: taking $Q$ from the encoder and $K,V$ from the decoder gives an
# output of the source's length, which is the wrong way round for generating the target.

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

print("causal_mask(4): L == S == 4")
print(causal_mask(4).astype(int))
print("causal_mask(3, 7): 3 new queries after a cache of 4 keys")
print(causal_mask(3, 7).astype(int))

# %% tags=["check"]
check("masks.causal_mask")

# %% [markdown]
# **PyTorch's `is_causal=True` is aligned to the start.** It uses
# `torch.ones(L, S, dtype=torch.bool).tril()`, i.e. $j \le i$. For $L = S$ the two agree; for
# $L < S$ PyTorch's first query sees only key 0, as if the queries were the *first* $L$ positions,
# which is wrong for a query block that comes after a cache.

# %%
L_new, S_all = 3, 7
torch_causal = torch.ones(L_new, S_all, dtype=torch.bool).tril().numpy()  # what is_causal=True uses
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
panels = [(causal_mask(6), "ours, L = S = 6"),
          (causal_mask(L_new, S_all), f"ours, L = {L_new}, S = {S_all} (end-aligned)"),
          (torch_causal, f"PyTorch is_causal, L = {L_new}, S = {S_all}")]
for ax, (m, title) in zip(axes, panels):
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3)  # dark = may attend
    ax.set(title=title, xlabel="key position j", ylabel="query i",
           xticks=range(m.shape[1]), yticks=range(m.shape[0]))
fig.suptitle("causal masks (dark = may attend)")
fig.tight_layout()
plt.show()

# %%
rng = np.random.default_rng(0)
q = rng.standard_normal((1, 1, L_new, 4))  # (B, H, L, D)
k = rng.standard_normal((1, 1, S_all, 4))  # (B, H, S, D)
v = rng.standard_normal((1, 1, S_all, 6))  # (B, H, S, D_v)
qt, kt, vt = (torch.from_numpy(a) for a in (q, k, v))

ours, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(L_new, S_all))
torch_is_causal = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).numpy()
torch_our_mask = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=torch.from_numpy(causal_mask(L_new, S_all))).numpy()
print(f"L < S : max |ours - torch is_causal=True|   = {np.abs(ours - torch_is_causal).max():.2f}")
print(f"L < S : max |ours - torch attn_mask=ours|   = {np.abs(ours - torch_our_mask).max():.1e}")
ours_sq, _ = scaled_dot_product_attention(k, k, v, mask=causal_mask(S_all))  # L == S == 7
torch_sq = F.scaled_dot_product_attention(kt, kt, vt, is_causal=True).numpy()
print(f"L == S: max |ours - torch is_causal=True|   = {np.abs(ours_sq - torch_sq).max():.1e}")

# %% [markdown] tags=["question:qa-5"]
# ### Causal (look-ahead) mask in decoders.
#
# A decoder models $p(x_t \mid x_{<t})$, yet during training it processes the whole sequence in one
# pass (teacher forcing). The causal mask keeps that honest: query $i$ may attend to key $j$ only when
# $j \le i$, so the output at position $i$ depends on tokens $0..i$ and never on the token it must
# predict. It is a boolean `(L, S)` lower-triangular mask applied to the scores before the softmax:
# masked scores become $-\infty$ (or the weights are zeroed) and each row renormalises over the
# visible keys. The diagonal is included; excluding it is a classic off-by-one that also leaves row 0
# with nothing to attend to. With a KV cache the queries are the last $L$ of $S$ positions, and the
# rule becomes $j \le i + (S - L)$; PyTorch's `is_causal=True` uses $j \le i$ (aligned to the start),
# which is only right when $L = S$, as the cell above shows. The mask only protects the attention:
# the loss must still be shifted so that position $t$ predicts token $t+1$.

# %% [markdown]
# ### Exercise: `padding_mask`
#
# Sequences in a batch have different lengths, so they are padded to a common length $S$ and the
# true lengths are kept alongside. Implement `padding_mask(lengths, max_len)` in
# `src/attnlab/masks.py`: given `lengths` `(B,)` it returns a boolean `(B, max_len)` array, `True`
# at the valid positions `j < lengths[b]`. A length outside `[0, max_len]` raises `ValueError`.

# %%
lengths = np.array([7, 4])  # (B,) true lengths, padded to S = 7
print("padding_mask([7, 4], 7):")
print(padding_mask(lengths, 7).astype(int))  # (B, S)

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
print("combined mask", mask.shape, "; sequence 1 (length 4):")
print(mask[1, 0].astype(int))

q = rng.standard_normal((B, H, L, D))
k = rng.standard_normal((B, H, L, D))
v = rng.standard_normal((B, H, L, D_v))
out, w = scaled_dot_product_attention(q, k, v, mask=mask)  # mask broadcasts over H
print("largest weight on a padded key of sequence 1:", w[1, :, :, 4:].max())
print("weights of sequence 1, head 0:")
print(w[1, 0].round(2))

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
# A causal LM factorises $p(x_1..x_T) = \prod_t p(x_t \mid x_{<t})$, and masked self-attention is
# what makes a Transformer respect that factorisation. In training, the whole sequence goes through
# in one pass and the loss is taken at every position at once; the causal mask, boolean `(L, S)` with
# query $i$ allowed to see key $j$ only when $j \le i$, guarantees that the prediction at position $i$
# depends only on tokens $\le i$. Without it the model would learn to copy the next token and fail
# at generation time. At inference the model generates one token at a time with a KV cache: the new
# query `(B, H, 1, D)` may see all $S$ cached keys, so no mask is needed for $L = 1$, and a chunk of
# $L > 1$ new tokens needs the end-aligned rule $j \le i + (S - L)$. Batched generation adds a padding
# mask (often with left padding), combined by broadcasting into `(B, 1, L, S)`. Efficient kernels use
# the mask's structure: they skip the tiles above the diagonal, about half the work. The right way to
# test it is metamorphic, as above: changing future tokens must leave every earlier output
# bit-for-bit unchanged.

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
print(mask[1, 0].astype(int))

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
out_ours, w_ours = scaled_dot_product_attention(q, k, v, mask=mask)
for name, wts in [("fill -inf", w_inf), ("fill -1e9", w_big), ("ours", w_ours)]:
    print(f"{name:10s} weights of padding query 4: {wts[1, 0, 4].round(3)}")

# %% [markdown]
# Filling with $-\infty$ gives NaN; filling with a large finite number avoids the NaN but spreads the
# row uniformly over *all* keys, padding included (and $-10^9$ is not representable in fp16, where
# it becomes $-\infty$ again). Our convention gives zero weights and a zero output.
#
# **The same in PyTorch.** A hand-written `masked_fill(-inf)` + `softmax` produces NaN, and NaN
# spreads through backpropagation even if the padding rows are dropped before the loss: the gradient
# of $V$ is $W^\top \, \partial\mathcal{L}/\partial O$, and $\mathrm{NaN}\times 0 = \mathrm{NaN}$.
# PyTorch's own SDPA changed its stance in version 2.5: on the CPU and in its reference (math) path it
# returns zeros for a fully masked row, the same convention as ours. Earlier versions returned NaN,
# and not every fused GPU kernel or downstream library has followed, so production code still guards
# against fully masked rows rather than relying on the backend.

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
print(f"torch {torch.__version__} SDPA, output of padding query 4:", sdpa[1, 0, 4].round(3))
print("ours, output of padding query 4:         ", out_ours[1, 0, 4].round(3))
print(f"all rows agree with torch SDPA: max diff {np.abs(out_ours - sdpa).max():.1e}")

# %% [markdown]
# **Why zeros?** A fully masked row belongs to a query that should not exist (a padding position);
# whatever it outputs is ignored downstream, since the loss and any pooling are masked too. Zero is
# the natural value for "a weighted sum over nothing", keeps every number finite, and contributes
# exactly nothing to any gradient. NaN, by contrast, poisons gradients and, through them, every
# parameter after one optimiser step; a uniform average over all keys invents information.

# %% [markdown] tags=["question:theory-35"]
# ### How do you handle attention for variable-length sequences?
#
# Pad every sequence in the batch to a common length $S$, keep the true lengths `(B,)`, and build a
# boolean key-padding mask `(B, S)` that is `True` at valid positions. Reshape it to `(B, 1, 1, S)`
# so it broadcasts over heads and queries, and combine it with any other mask (causal `(L, S)`) by
# logical and. Masked keys then get weight exactly 0, so results for real tokens do not depend on how
# much padding there is. Padding *queries* still produce outputs; they must be excluded from the loss
# and from pooling, and if their rows are fully masked they must not produce NaN: the $-\infty$ fill
# gives $0/0$, a large finite fill like $-10^9$ gives a uniform average over all keys, padding
# included (and overflows in fp16), so a safe softmax that returns zeros is the clean answer
# (PyTorch SDPA's reference path does this since 2.5). For generation, batches are usually
# left-padded so that every sequence's next token sits in the last column. Padding wastes compute,
# so production systems sort sequences into length buckets, or pack several sequences into one row
# with a block-diagonal mask (the "varlen" kernels of FlashAttention take cumulative sequence
# lengths instead of a mask).
