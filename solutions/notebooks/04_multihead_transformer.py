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
# # 04 · Multi-head attention and the Transformer block
#
# Notebook 02 built one attention head. A Transformer runs several heads side by side, mixes what they
# found, and wraps the result with a feed-forward network, residual connections and layer norms. This
# notebook builds every one of those parts, checks each against PyTorch, then trains small models to see
# what the parts are for.
#
# **You will learn**
# - why a layer has several heads, measured on a task that one head of the same width learns only in part
#   in the same training budget;
# - how the model width $E$ is cut into $H$ heads of width $D = E/H$ and put back together;
# - how PyTorch stores projection weights (`(out, in)`) and how to copy them into code that writes `x @ W`;
# - where dropout acts on attention weights, and why the survivors are scaled by $1/(1-p)$;
# - layer norm and the position-wise feed-forward network (4x, GELU);
# - Post-LN versus Pre-LN: gradient norms through a deep stack at initialisation, and a training run of both;
# - the masks of encoder-only, decoder-only and encoder-decoder models;
# - what the heads of a small trained model attend to.
#
# **You will build**, in `src/attnlab/multihead.py`: `split_heads`, `merge_heads`, `multi_head_attention`,
# `attention_dropout`, `layer_norm`, `feed_forward`; in `src/attnlab/transformer.py`: the PyTorch module
# `TransformerBlock`.
#
# Shape legend: B batch, H heads, L queries, S keys/values, D per-head width, E model width ($E = HD$),
# $d_{ff}$ the feed-forward width. Masks are boolean and mean *may attend*: `True` keeps a position.
# Projections are written `x @ W + b` with `W` of shape `(in, out)`.

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
from torch import nn

torch.set_num_threads(1)  # tiny models: one thread avoids threading overhead and repeats exactly
QUICK = os.environ.get("ATTNLAB_QUICK") == "1"  # CI only: shorter training runs; the default is the real thing
print(f"torch {torch.__version__}, numpy {np.__version__}, {platform.machine()} CPU, 1 thread"
      + (" (ATTNLAB_QUICK=1: short runs)" if QUICK else ""))


def row_softmax(x):
    """Softmax over the last axis (plain NumPy; notebook 01 has the graded version)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def end_aligned_causal(L, S):
    """(L, S) bool: query i may see key j when j <= i + (S - L) (notebook 02)."""
    return np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L)

# %% [markdown]
# ## 1. Why several heads?
#
# One head turns each query's scores into **one** probability distribution over the keys and returns one
# weighted average of the values. If a position needs information from several other positions at once,
# a single head has to blend them into the same average.
#
# A task that asks for exactly that: a sequence of random tokens (16 symbols, length 12), and at each
# position $i$ four answers, the tokens at $i-1$, $i-2$, $i-4$ and $i-6$ (a *look-back* task; only
# positions 6 to 11, which have all four, are scored). The model is one Pre-LN PyTorch encoder layer under
# a causal mask, with learned position embeddings and one linear readout per answer. We train it twice with
# the same width $E = 32$ and the same cost: one head of width 32, and four heads of width 8.

# %%
VOCAB, LENGTH = 16, 12  # tokens 0..15, sequences of 12


def look_back_batch(n, offsets, gen):
    """n random sequences (n, LENGTH) and, for each offset o, targets y with y[:, i] = x[:, i - o]."""
    x = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    return x, [torch.roll(x, o, dims=1) for o in offsets]  # wraps around for i < o: those are not scored


class LookBack(nn.Module):
    """Embeddings -> n_layers of nn.TransformerEncoderLayer (causal) -> one readout per offset."""

    def __init__(self, offsets, E=32, H=4, n_layers=1, norm_first=True, xavier=False):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, E), nn.Embedding(LENGTH, E)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(E, H, 4 * E, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first) for _ in range(n_layers))
        if xavier:  # Glorot-uniform weight matrices (section 7 uses it)
            for p in self.layers.parameters():
                if p.dim() == 2:
                    nn.init.xavier_uniform_(p)
        self.final = nn.LayerNorm(E) if norm_first else nn.Identity()  # Pre-LN ends with a layer norm
        self.readouts = nn.ModuleList(nn.Linear(E, VOCAB) for _ in offsets)

    def embed(self, x):
        return self.tok(x) + self.pos(torch.arange(x.shape[1]))  # (B, L, E)

    def forward(self, x):
        h = self.embed(x)
        future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)  # PyTorch: True = masked OUT
        for layer in self.layers:
            h = layer(h, src_mask=future)
        h = self.final(h)
        return [readout(h) for readout in self.readouts]  # one (B, L, VOCAB) per offset


def look_back_loss(logits, targets, offsets):
    first = max(offsets)  # earlier positions have nothing that far back
    return sum(F.cross_entropy(lo[:, first:].reshape(-1, VOCAB), y[:, first:].reshape(-1))
               for lo, y in zip(logits, targets)) / len(offsets)


def train(model, offsets, steps, lr=3e-3, warmup=0, seed=0, batch=64):
    """Adam on fresh random batches, optionally with a linear learning-rate warm-up. Returns the losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    losses = []
    for _ in range(steps):
        x, ys = look_back_batch(batch, offsets, gen)
        loss = look_back_loss(model(x), ys, offsets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return np.array(losses)


def accuracy(model, offsets, n=2000, seed=1234):
    """Fraction of correct answers per offset on fresh sequences."""
    x, ys = look_back_batch(n, offsets, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = model(x)
    first = max(offsets)
    return [float((lo[:, first:].argmax(-1) == y[:, first:]).float().mean()) for lo, y in zip(logits, ys)]

# %%
OFFSETS = (1, 2, 4, 6)
STEPS = 150 if QUICK else 400
heads_runs = {}
for H in (1, 4):
    torch.manual_seed(0)
    model = LookBack(OFFSETS, E=32, H=H)
    started = time.perf_counter()
    losses = train(model, OFFSETS, STEPS)
    heads_runs[H] = dict(model=model, losses=losses, acc=accuracy(model, OFFSETS),
                         seconds=time.perf_counter() - started, size=sum(p.numel() for p in model.parameters()))

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for H, run in heads_runs.items():
    axes[0].plot(run["losses"], label=f"H = {H} head{'s' if H > 1 else ''} of width D = {32 // H}")
    axes[1].bar(np.arange(len(OFFSETS)) + (0.2 if H > 1 else -0.2), run["acc"], width=0.4, label=f"H = {H}")
axes[0].axhline(np.log(VOCAB), color="k", ls=":", label="chance: ln 16")
axes[0].set(title="training loss (one layer, E = 32)", xlabel="step", ylabel="cross-entropy (nats)")
axes[1].axhline(1 / VOCAB, color="k", ls=":", label="chance: 1/16")
axes[1].set(title="accuracy per answer after training", xlabel="answer: the token i - o back",
            ylabel="accuracy", xticks=range(len(OFFSETS)), xticklabels=[f"o = {o}" for o in OFFSETS])
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()
for H, run in heads_runs.items():
    print(f"H = {H}: {run['size']:,} parameters, final loss {run['losses'][-20:].mean():.3f}, accuracy per "
          f"offset {np.round(run['acc'], 3).tolist()}, {run['seconds']:.1f} s")

# %% [markdown]
# Same width, same number of parameters (printed above), the same multiply-adds per step (counted below):
# in the same number of steps four heads learn all four look-backs, while one head gets some answers right
# and others far less often (the bars). The single head is above chance, but each of its queries has only one
# distribution over the keys to spend. Four heads give every query four distributions, each computed in
# its own 8-dimensional subspace of queries, keys and values. This is one seed; `torch.manual_seed` and
# `train`'s `seed` argument give others. Section 3 looks inside the trained models to see what each head does.
#
# **The cost is the same.** The projections are $E \times E$ matrices whatever $H$ is; only how their
# output columns are grouped changes. The scores cost $H \cdot L \cdot S \cdot D = L \cdot S \cdot E$
# multiply-adds for any $H$ (only the softmax and the stored weights, $H \cdot L \cdot S$ numbers per
# sequence, grow with $H$):

# %%
E_, L_, S_ = 512, 128, 128
for H in (1, 8, 64):
    D = E_ // H
    projections = 4 * L_ * E_ * E_             # Q, K, V and output projections (L = S here)
    scores_and_mix = 2 * H * L_ * S_ * D       # Q K^T and A V, all heads
    print(f"H = {H:2d}, D = {D:3d}: projections {projections:,} + attention {scores_and_mix:,} multiply-adds")

# %% [markdown]
# ## 2. Splitting the width into heads, and merging them back
#
# A projection such as $Q = X W_q + b_q$ gives `(B, L, E)`. Head $h$ owns the $D$ consecutive columns
# $hD \dots (h+1)D - 1$ (PyTorch's layout). `split_heads` cuts the last axis into $H$ blocks and moves the
# head axis in front of the positions, so that notebook 02's attention runs on every (batch, head) pair:
#
# $$(B, L, E) \xrightarrow{\text{reshape}} (B, L, H, D) \xrightarrow{\text{transpose}} (B, H, L, D)$$
#
# `merge_heads` is the inverse, $(B, H, L, D) \to (B, L, H, D) \to (B, L, HD)$: the heads' outputs side
# by side, a concatenation along the features. The order of the two steps matters: reshaping
# `(B, L, E)` straight to `(B, H, L, D)` is legal NumPy and silently mixes positions with features. The
# picture labels every feature with the head that should own it:

# %%
B, L, E, H = 1, 5, 12, 3
D = E // H
owner = np.broadcast_to(np.arange(E) // D, (B, L, E))  # (B, L, E): the head each feature belongs to
right = owner.reshape(B, L, H, D).transpose(0, 2, 1, 3)  # (B, H, L, D)
wrong = owner.reshape(B, H, L, D)                         # the tempting shortcut

fig, axes = plt.subplots(1, 2, figsize=(12, 2.8), layout="constrained")
for ax, arr, title in ((axes[0], right, "reshape (B, L, H, D), then transpose"),
                       (axes[1], wrong, "reshape straight to (B, H, L, D)")):
    im = ax.imshow(np.concatenate(list(arr[0]), axis=1), cmap="viridis", vmin=0, vmax=H - 1)
    ax.set(title=title, xlabel="head 0 | head 1 | head 2 (D = 4 features each)", ylabel="position",
           xticks=[], yticks=range(L))
fig.colorbar(im, ax=axes, label="head that owns the feature", ticks=range(H))
plt.show()

# %% [markdown]
# On the left each head holds only its own features at every position; on the right most rows of a head
# hold features that belong to other heads, and (which the colours cannot show) to other positions: head
# 0's row 1 is position 0's features 4 to 7.
#
# ### Exercise: `split_heads` and `merge_heads`
# Implement `split_heads(x, num_heads)` and `merge_heads(x)` in `src/attnlab/multihead.py`. `split_heads`
# raises `ValueError` when $E$ is not divisible by $H$. Both only move values (no arithmetic), so they are
# checked exactly.

# %%
from attnlab.multihead import merge_heads, split_heads

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 5, 12))  # (B, L, E)
heads = split_heads(x, 3)            # (B, H, L, D)
print("x", x.shape, "-> split_heads(x, 3)", heads.shape, "-> merge_heads", merge_heads(heads).shape)
print("head 1, position 2 is x[0, 2, 4:8]:", np.array_equal(heads[0, 1, 2], x[0, 2, 4:8]),
      "| merge_heads(split_heads(x)) == x:", np.array_equal(merge_heads(heads), x))

# %% tags=["check"]
check("multihead.split_heads")

# %% tags=["check"]
check("multihead.merge_heads")

# %% [markdown]
# ## 3. Multi-head attention
#
# With $D = E/H$ and notebook 02's `scaled_dot_product_attention`:
#
# | step | expression | shape |
# |---|---|---|
# | queries | $Q = \mathrm{split}(X_q W_q + b_q)$ | `(B, H, L, D)` |
# | keys | $K = \mathrm{split}(X_{kv} W_k + b_k)$ | `(B, H, S, D)` |
# | values | $V = \mathrm{split}(X_{kv} W_v + b_v)$ | `(B, H, S, D)` |
# | weights | $A = \mathrm{softmax}(QK^\top/\sqrt{D})$, masked | `(B, H, L, S)` |
# | heads | $AV$ | `(B, H, L, D)` |
# | output | $\mathrm{merge}(AV)\,W_o + b_o$ | `(B, L, E)` |
#
# Every head has its own queries, keys and values (its own columns of $W_q, W_k, W_v$), its own weights
# and its own output; $W_o$ then mixes the heads. The scale is $1/\sqrt{D}$, the width of one head, since
# that is the length of the dot products. In self-attention $X_{kv} = X_q$; in cross-attention the keys
# and values come from another sequence (the encoder's output), so $S$ may differ from $L$. A mask
# broadcastable to `(B, H, L, S)` works per head; a query that may attend to no key gets zero weights and
# a zero output in that head, and if that holds in every head its output is $0 \cdot W_o + b_o = b_o$.
#
# ### Exercise: `multi_head_attention`
# Implement `multi_head_attention(x_q, x_kv, params, num_heads, mask=None)` in
# `src/attnlab/multihead.py`; `params` holds `W_q, W_k, W_v, W_o` `(E, E)` and `b_q, b_k, b_v, b_o` `(E,)`.
# Return `(output, weights)` with the weights of every head, `(B, H, L, S)`, both in `x_q`'s dtype (float32
# stays float32); masked keys get weight exactly 0, and a query with no key to attend to gets a row of
# zeros, never NaN. You may call your `split_heads`, `merge_heads` and notebook 02's
# `scaled_dot_product_attention`.

# %%
from attnlab.multihead import multi_head_attention

rng = np.random.default_rng(0)
B, L, S, E, H = 2, 5, 7, 12, 3
x_q, x_kv = rng.standard_normal((B, L, E)), rng.standard_normal((B, S, E))
params = {name: rng.standard_normal((E, E)) / np.sqrt(E) for name in ("W_q", "W_k", "W_v", "W_o")}
params.update({name: 0.1 * rng.standard_normal(E) for name in ("b_q", "b_k", "b_v", "b_o")})
out, weights = multi_head_attention(x_q, x_kv, params, H, mask=end_aligned_causal(L, S))
print("x_q", x_q.shape, "x_kv", x_kv.shape, "-> output", out.shape, "weights", weights.shape)

# %% tags=["check"]
check("multihead.multi_head_attention")

# %% [markdown]
# **Using PyTorch's weights.** `nn.Linear` and `nn.MultiheadAttention` store weights as `(out, in)` and
# compute `x @ weight.T + bias`; `nn.MultiheadAttention` keeps $W_q, W_k, W_v$ stacked in one
# `in_proj_weight` of shape `(3E, E)`. To use them with code that writes `x @ W`, copy the transposes.
# Two more differences: its boolean `attn_mask` means *masked out* (pass `~mask`), and it averages the
# weights over heads unless `average_attn_weights=False`. With square `(E, E)` matrices a forgotten
# transpose raises nothing; it just gives other numbers.

# %%
def params_from_torch(attn):
    """An nn.MultiheadAttention's weights as `params` for x @ W + b: transpose PyTorch's (out, in)."""
    E = attn.embed_dim
    W = attn.in_proj_weight.detach().double().numpy()  # (3E, E): rows of W_q, then W_k, then W_v
    b = attn.in_proj_bias.detach().double().numpy()    # (3E,)
    return {"W_q": W[:E].T, "W_k": W[E:2 * E].T, "W_v": W[2 * E:].T,
            "W_o": attn.out_proj.weight.detach().double().numpy().T,
            "b_q": b[:E], "b_k": b[E:2 * E], "b_v": b[2 * E:], "b_o": attn.out_proj.bias.detach().double().numpy()}


torch.manual_seed(0)
mha = nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
mask = end_aligned_causal(L, S)
theirs, theirs_w = mha(*(torch.from_numpy(a) for a in (x_q, x_kv, x_kv)), attn_mask=torch.from_numpy(~mask),
                       need_weights=True, average_attn_weights=False)
ours, ours_w = multi_head_attention(x_q, x_kv, params_from_torch(mha), H, mask=mask)
print(f"ours vs nn.MultiheadAttention: output {np.abs(ours - theirs.detach().numpy()).max():.1e}, "
      f"weights {np.abs(ours_w - theirs_w.detach().numpy()).max():.1e}")
untransposed = {k: v.T if k.startswith("W") else v for k, v in params_from_torch(mha).items()}
wrong, _ = multi_head_attention(x_q, x_kv, untransposed, H, mask=mask)
print(f"weights copied without .T: no error, output off by {np.abs(wrong - theirs.detach().numpy()).max():.2f}")

# %% [markdown]
# **What the trained heads attend to.** Back to section 1's models. Their first layer is Pre-LN, so its
# attention reads `norm1(embeddings)`; copying the layer's weights into `params` lets your
# `multi_head_attention` recompute the weights. Averaged over 500 sequences, each row is a query position
# and each column a key position:

# %%
def trained_attention(model, n=500, seed=7):
    """Weights (H, L, L) of the first layer of a Pre-LN LookBack, averaged over n random sequences."""
    layer = model.layers[0]
    x, _ = look_back_batch(n, OFFSETS, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        h = layer.norm1(model.embed(x)).double().numpy()  # (n, L, E): what attention reads
    causal = end_aligned_causal(LENGTH, LENGTH)
    _, weights = multi_head_attention(h, h, params_from_torch(layer.self_attn), layer.self_attn.num_heads,
                                      mask=causal)
    with torch.no_grad():  # the same weights from PyTorch, to be sure
        _, torch_w = layer.self_attn(*(torch.from_numpy(h).float(),) * 3, attn_mask=torch.from_numpy(~causal),
                                     need_weights=True, average_attn_weights=False)
    print(f"H = {layer.self_attn.num_heads}: max |ours - PyTorch's weights| = "
          f"{np.abs(weights - torch_w.double().numpy()).max():.1e}")
    return weights.mean(axis=0)


maps = {H: trained_attention(run["model"]) for H, run in heads_runs.items()}
fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), layout="constrained")
panels = [(maps[1][0], "H = 1: the only head")] + [(maps[4][h], f"H = 4: head {h}") for h in range(4)]
for ax, (w, title) in zip(axes, panels):
    im = ax.imshow(w, cmap="magma", vmin=0, vmax=1)
    ax.set(title=title, xlabel="key position j", ylabel="query position i")
fig.colorbar(im, ax=axes, label="mean attention weight")
plt.show()
for h in range(4):
    back = [np.mean(np.diagonal(maps[4][h], offset=-o)) for o in range(1, LENGTH)]
    print(f"H = 4, head {h}: looks back by {int(np.argmax(back)) + 1} (mean weight there {max(back):.2f})")

# %% [markdown]
# Each of the four heads settles on one look-back (printed above): a diagonal band below the main diagonal
# at a distance of 1, 2, 4 or 6, in whatever order the training happened to assign them. The single head
# has one distribution per query: it puts most of its weight on one offset and spreads the rest thinly, so
# what it returns for the other answers is a blend. Real models behave
# less cleanly: in BERT some heads track syntactic relations or coreference while others look at the
# previous token or a separator (Clark et al. 2019), and many heads can be removed after training with
# little loss (Michel et al. 2019). Notebook 09 reads attention weights critically.

# %% [markdown] tags=["question:qa-6"]
# ### Multi-head attention—why multiple heads?
#
# One head gives each query one distribution over the keys, hence one blend of the values; $H$ heads give
# it $H$ distributions, each in its own $D = E/H$ subspace, and $W_o$ mixes what they found. At the same
# width $E$ this costs about as much as one head (Vaswani et al. 2017: $H = 8$, $D = 64$, $E = 512$).
#
# - **Shapes:** $W_q, W_k, W_v$ cut column-wise into $H$ blocks; weights `(B, H, L, S)`; heads
#   concatenated to `(B, L, E)`, then $W_o$.
# - **Evidence here:** at $E = 32$, four heads learn four look-backs, one head only some (section 1);
#   each trained head takes one offset (section 3).
# - **Trained models:** some BERT heads track syntax or coreference (Clark et al. 2019), yet many can be
#   pruned (Michel et al. 2019; Voita et al. 2019).
# - **Cost:** the KV cache holds every head; multi-query and grouped-query attention share keys and
#   values across heads (Shazeer 2019; Ainslie et al. 2023).
# - **Pitfall:** scale by $1/\sqrt{D}$, the head width, not $1/\sqrt{E}$.

# %% [markdown] tags=["question:theory-12"]
# ### How does multi-head attention improve upon single-head attention?
#
# It lets one layer attend to several positions for different reasons at once, because every head has its
# own queries, keys, values and softmax; the full answer (mechanism, cost, evidence) is under
# "Multi-head attention—why multiple heads?" above. Two points to add:
#
# - **Averaging:** with one head, information wanted from different places is averaged into one vector;
#   Vaswani et al. (2017) give this as the reason for heads, and section 1 measures it.
# - **Not free:** at a fixed $E$, more heads means narrower heads, and a head's scores $QK^\top$ `(L, S)`
#   have rank at most $D = E/H$; when $D$ is smaller than the sequence length a head cannot produce every
#   attention pattern. Bhojanapalli et al. (2020) call this the low-rank bottleneck of multi-head attention
#   and propose choosing the head width (e.g. the sequence length) independently of the number of heads.

# %% [markdown]
# ## 4. Attention dropout
#
# During training, PyTorch's `nn.MultiheadAttention(dropout=p)` and `F.scaled_dot_product_attention(...,
# dropout_p=p)` apply dropout to the attention **weights**: after the softmax, before they multiply $V$.
# Each of the `(B, H, L, S)` weights is zeroed with probability $p$; the survivors are divided by $1-p$
# (*inverted* dropout), so every weight keeps its expected value and inference simply switches dropout
# off. A query can then not lean on one particular key, and the rows of dropped weights sum to 1 only on
# average. The module switches itself off in `eval()` mode; SDPA is a function that cannot see the mode
# and drops whenever `dropout_p > 0`, so modules that call it pass `dropout_p=p if self.training else 0.0`.
#
# ### Exercise: `attention_dropout`
# Implement `attention_dropout(weights, p, rng)` in `src/attnlab/multihead.py`: draw the keep decisions
# from `rng` only (the grader replays the generator's state), raise `ValueError` unless $0 \le p < 1$.

# %%
from attnlab.multihead import attention_dropout

rng = np.random.default_rng(0)
w = row_softmax(1.5 * rng.standard_normal((6, 9)))  # (L, S) weights, rows sum to 1
one_draw = attention_dropout(w, 0.3, rng)
mean_draw = np.mean([attention_dropout(w, 0.3, rng) for _ in range(4000)], axis=0)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.2), layout="constrained")
for ax, arr, title in ((axes[0], w, "weights"), (axes[1], one_draw, "one draw, p = 0.3"),
                       (axes[2], mean_draw, "mean of 4000 draws")):
    im = ax.imshow(arr, cmap="magma", vmin=0, vmax=one_draw.max())
    ax.set(title=title, xlabel="key position j", ylabel="query position i")
fig.colorbar(im, ax=axes, label="weight")
plt.show()
print("row sums of one draw:", one_draw.sum(axis=-1).round(2))
print(f"max |mean of draws - weights| = {np.abs(mean_draw - w).max():.3f} (shrinks like 1/sqrt(draws))")

# %% tags=["check"]
check("multihead.attention_dropout")

# %% [markdown]
# PyTorch returns the weights *after* dropout in training mode, which shows where it acts:

# %%
torch.manual_seed(0)
mha_drop = nn.MultiheadAttention(16, 2, dropout=0.3, batch_first=True)
x_t = torch.randn(4, 10, 16)
for mode in ("train", "eval"):
    getattr(mha_drop, mode)()
    with torch.no_grad():
        _, w_t = mha_drop(x_t, x_t, x_t, need_weights=True, average_attn_weights=False)
    row_sums = w_t.sum(-1)
    print(f"{mode:5s}: {float((w_t == 0).float().mean()):.2f} of the weights are 0, row sums from "
          f"{float(row_sums.min()):.2f} to {float(row_sums.max()):.2f}")

# %% [markdown] tags=["question:theory-34"]
# ### What is attention dropout and when to use it?
#
# During training it zeroes each attention weight with probability $p$, after the softmax and before the
# multiplication by $V$, and scales the survivors by $1/(1-p)$, so a query cannot count on any one key; at
# inference it is off. It is a regulariser for models that can overfit (small data, fine-tuning), typically
# with $p = 0.1$.
#
# - **Unbiased:** the expected output equals the weights; a row sums to 1 only on average (heatmaps above).
# - **In practice:** BERT uses $p = 0.1$ on all layers, attention included (Devlin et al. 2019); PyTorch:
#   `nn.MultiheadAttention(dropout=p)`, SDPA's `dropout_p`.
# - **Not residual dropout,** which Vaswani et al. (2017) apply to sub-layer outputs and embeddings
#   ($P_{drop} = 0.1$); models often use both.
# - **When not:** large pretraining runs often skip it: PaLM was pretrained without dropout and fine-tuned
#   with 0.1 (Chowdhery et al. 2022), as nanoGPT's config advises (Karpathy 2022).
# - **Pitfalls:** forgetting `model.eval()`, or SDPA's `dropout_p` at inference; renormalising rows.

# %% [markdown] tags=["question:qa-12"]
# ### Attention dropout—where?
#
# On the attention weights: after the softmax and before they multiply $V$, every entry of the
# `(B, H, L, S)` weights is zeroed with probability $p$ and the survivors are scaled by $1/(1-p)$, in
# training only. The full answer (why, when, the expectation) is under "What is attention dropout and when
# to use it?" above.
#
# - Dropping *scores* before the softmax is a different operation: a zeroed score still gets weight
#   $e^0$ relative to the others, so the key is not removed.
# - A block has other dropouts too: on each sub-layer's output before the residual addition and on the
#   embeddings (Vaswani et al. 2017), and sometimes inside the feed-forward network.

# %% [markdown]
# ## 5. Layer norm
#
# Each position's $E$ features are normalised on their own, then scaled and shifted by learned vectors:
#
# $$\mu = \tfrac{1}{E}\textstyle\sum_e x_e,\qquad \sigma^2 = \tfrac{1}{E}\sum_e (x_e-\mu)^2,\qquad
# y = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}}\,\gamma + \beta,\qquad x, y: (\dots, E),\; \gamma, \beta: (E,)$$
#
# Unlike batch norm, the statistics come from one position, not from the batch (Ba et al. 2016), so a
# sequence is treated the same in training and at inference, whatever the batch size or length. The
# variance is the biased one (divide by $E$) as in `nn.LayerNorm`; $\epsilon = 10^{-5}$ keeps a constant
# row finite (it becomes $\beta$). Compute the variance as the mean of squared deviations: $\overline{x^2} - \bar{x}^2$ cancels
# catastrophically in float32 when the mean is large next to the spread.
#
# ### Exercise: `layer_norm`
# Implement `layer_norm(x, gamma, beta, eps=1e-5)` in `src/attnlab/multihead.py` for any leading dims,
# returning `x`'s dtype, with `eps` inside the square root as above.

# %%
from attnlab.multihead import layer_norm

rng = np.random.default_rng(0)
x = 3.0 + 2.0 * rng.standard_normal((2, 5, 12))  # (B, L, E), mean 3, spread 2
gamma, beta = 1 + 0.1 * rng.standard_normal(12), 0.1 * rng.standard_normal(12)
y = layer_norm(x, gamma, beta)
torch_y = F.layer_norm(torch.from_numpy(x), (12,), torch.from_numpy(gamma), torch.from_numpy(beta)).numpy()
print("x", x.shape, "-> y", y.shape, f"| max |ours - F.layer_norm| = {np.abs(y - torch_y).max():.1e}")
plain = layer_norm(x, np.ones(12), np.zeros(12))
print(f"without gamma, beta every position has mean {np.abs(plain.mean(-1)).max():.0e} and variance "
      f"{plain.var(-1).min():.4f}..{plain.var(-1).max():.4f}")
print("invariant (up to eps) to rescaling and shifting a position:",
      np.allclose(layer_norm(10 * x + 7, gamma, beta), y, atol=1e-6))

# %% tags=["check"]
check("multihead.layer_norm")

# %% [markdown]
# ## 6. The position-wise feed-forward network
#
# After attention has mixed information *across* positions, a small MLP transforms each position on its
# own, with the same weights everywhere:
#
# $$\mathrm{FFN}(x) = \mathrm{act}(x W_1 + b_1)\, W_2 + b_2,\qquad (\dots, E) \to (\dots, d_{ff}) \to (\dots, E),
# \quad d_{ff} = 4E \text{ in the original Transformer}$$
#
# The original used ReLU; BERT and GPT use GELU, $\mathrm{GELU}(h) = h\,\Phi(h) =
# \tfrac{h}{2}\big(1 + \mathrm{erf}(h/\sqrt2)\big)$ with $\Phi$ the standard normal CDF (Hendrycks & Gimpel
# 2016). The same paper gives a tanh formula that approximates it, which GPT-2's and Google's BERT code use
# (`F.gelu(approximate="tanh")`); it is a different function, and a checkpoint should be run with the one
# it was trained with:

# %%
h = np.linspace(-4, 4, 801)
exact = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
tanh_form = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
axes[0].plot(h, exact, label="GELU (erf)")
axes[0].plot(h, np.maximum(h, 0), "--", label="ReLU")
axes[0].set(title="activations", xlabel="h", ylabel="act(h)")
axes[0].legend()
axes[1].plot(h, tanh_form - exact)
axes[1].set(title="tanh approximation minus exact GELU", xlabel="h", ylabel="difference")
fig.tight_layout()
plt.show()
print(f"largest difference {np.abs(tanh_form - exact).max():.1e} at h = {h[np.argmax(np.abs(tanh_form - exact))]:+.2f}")

# %% [markdown]
# ### Exercise: `feed_forward`
# Implement `feed_forward(x, W_1, b_1, W_2, b_2, activation="gelu")` in `src/attnlab/multihead.py`:
# `W_1` `(E, d_ff)`, `W_2` `(d_ff, E)` (the transposes of `nn.Linear`'s weights), the exact GELU or
# `"relu"`, `ValueError` otherwise. NumPy has no erf: `np.vectorize(math.erf)` gives one (float64: cast
# back to `x`'s dtype).

# %%
from attnlab.multihead import feed_forward

rng = np.random.default_rng(0)
E, d_ff = 12, 48
x = rng.standard_normal((2, 5, E))
W_1, b_1 = rng.standard_normal((E, d_ff)) / np.sqrt(E), 0.1 * rng.standard_normal(d_ff)
W_2, b_2 = rng.standard_normal((d_ff, E)) / np.sqrt(d_ff), 0.1 * rng.standard_normal(E)
y = feed_forward(x, W_1, b_1, W_2, b_2)
t = {k: torch.from_numpy(v) for k, v in dict(x=x, W_1=W_1, b_1=b_1, W_2=W_2, b_2=b_2).items()}
torch_y = F.linear(F.gelu(F.linear(t["x"], t["W_1"].T, t["b_1"])), t["W_2"].T, t["b_2"]).numpy()
print("x", x.shape, "-> hidden", (2, 5, d_ff), "-> y", y.shape,
      f"| max |ours - PyTorch| = {np.abs(y - torch_y).max():.1e}")

# %% tags=["check"]
check("multihead.feed_forward")

# %% [markdown]
# **Where the parameters are.** In a block of width $E$, attention holds $4E^2$ weights and the
# feed-forward network $2 \cdot E \cdot 4E = 8E^2$: two thirds of the block.

# %%
layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
groups = {"attention (q, k, v, out)": "self_attn", "feed-forward (W_1, W_2)": "linear", "layer norms": "norm"}
total = sum(p.numel() for p in layer.parameters())
for label, prefix in groups.items():
    n = sum(p.numel() for name, p in layer.named_parameters() if name.startswith(prefix))
    print(f"{label:26s} {n:9,d} parameters ({n / total:.0%})")

# %% [markdown] tags=["question:qa-11"]
# ### What sits after attention in a Transformer block?
#
# A position-wise feed-forward network, $E \to 4E \to E$ with a non-linearity in between, applied to every
# position on its own with the same weights (ReLU in Vaswani et al. 2017; GELU in BERT and GPT, Hendrycks &
# Gimpel 2016). Each sub-layer, attention and feed-forward, sits in a residual connection with a layer norm.
#
# - **Roles:** attention moves information between positions; the FFN transforms each position, and holds
#   two thirds of a block's parameters ($8E^2$ of $12E^2$, counted above).
# - **Shapes:** `(B, L, E) @ (E, 4E)` → GELU → `@ (4E, E)`: a width-1 convolution.
# - **Variants:** gated FFNs such as SwiGLU (Shazeer 2020), with $d_{ff} \approx \tfrac{8}{3}E$ in LLaMA
#   (Touvron et al. 2023) to keep the parameter count.
# - **GELU:** the erf form and the tanh approximation of GPT-2 differ by up to about $5 \cdot 10^{-4}$
#   (printed in section 6): run a checkpoint with the one it was trained with.
# - **Norm placement:** Post-LN or Pre-LN, next section.

# %% [markdown]
# ## 7. Residuals, and where the layer norm goes
#
# Each sub-layer $F$ (attention, then the FFN) is added to its input: the *residual stream*. The original
# Transformer normalises after the addition (**Post-LN**); GPT-2 and most models since normalise each
# sub-layer's input and leave the stream untouched (**Pre-LN**), with one more layer norm at the end:
#
# $$\text{Post-LN: } x \leftarrow \mathrm{LN}\big(x + F(x)\big) \qquad\qquad
# \text{Pre-LN: } x \leftarrow x + F\big(\mathrm{LN}(x)\big)$$
#
# In Pre-LN the residual stream joins every layer to the top of the stack through additions only (the one
# final layer norm comes after all of them); in Post-LN the path from a layer to the output crosses every
# later layer norm.
#
# ### Exercise: `TransformerBlock` (PyTorch)
# Implement the `nn.Module` `TransformerBlock(d_model, num_heads, d_ff, norm_first=False,
# activation="relu")` in `src/attnlab/transformer.py`, following its docstring: the sub-modules
# `q_proj, k_proj, v_proj, out_proj, ff1, ff2, norm1, norm2` by those names, both norm placements, and the
# course's mask convention (True = may attend). It must equal `nn.TransformerEncoderLayer` with the same
# weights; the cell below copies yours into PyTorch's layer and compares.

# %%
from attnlab.transformer import TransformerBlock

torch.manual_seed(0)
block = TransformerBlock(d_model=12, num_heads=3, d_ff=48, norm_first=True, activation="gelu").double()
theirs = nn.TransformerEncoderLayer(12, 3, 48, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
                                    dtype=torch.float64)
sd = block.state_dict()
with torch.no_grad():
    theirs.self_attn.in_proj_weight.copy_(torch.cat([sd[f"{n}_proj.weight"] for n in "qkv"]))  # (3E, E)
    theirs.self_attn.in_proj_bias.copy_(torch.cat([sd[f"{n}_proj.bias"] for n in "qkv"]))
    for ours_name, module in (("out_proj", theirs.self_attn.out_proj), ("ff1", theirs.linear1),
                              ("ff2", theirs.linear2), ("norm1", theirs.norm1), ("norm2", theirs.norm2)):
        module.weight.copy_(sd[f"{ours_name}.weight"])
        module.bias.copy_(sd[f"{ours_name}.bias"])
x = torch.randn(2, 5, 12, dtype=torch.float64)            # (B, L, E)
causal = torch.ones(5, 5, dtype=torch.bool).tril()        # (L, L), True = may attend
with torch.no_grad():
    mine, reference = block(x, mask=causal), theirs(x, src_mask=~causal)  # PyTorch: True = masked out
print("x", tuple(x.shape), "-> block(x)", tuple(mine.shape), f"| max |yours - nn.TransformerEncoderLayer| = "
      f"{(mine - reference).abs().max().item():.1e}")

# %% tags=["check"]
check("transformer.TransformerBlock")

# %% [markdown]
# **Gradients at initialisation.** Stack 24 encoder layers (section 1's model with $E = 32$, $H = 2$,
# Xavier-uniform weight matrices), put a loss on top, and measure the gradient norm of each layer's
# parameters before any training step. Then vary the depth and follow the last layer's gradient norm.

# %%
def layer_grad_norms(n_layers, norm_first, seed, offsets=(1, 3)):
    """Gradient norm of each layer's parameters at initialisation (one batch of 64)."""
    torch.manual_seed(seed)
    model = LookBack(offsets, E=32, H=2, n_layers=n_layers, norm_first=norm_first, xavier=True)
    x, ys = look_back_batch(64, offsets, torch.Generator().manual_seed(seed))
    look_back_loss(model(x), ys, offsets).backward()
    return np.array([torch.sqrt(sum((p.grad ** 2).sum() for p in layer.parameters())).item()
                     for layer in model.layers])


seeds = range(1 if QUICK else 3)
depths = (3, 12, 48) if QUICK else (3, 6, 12, 24, 48)
started = time.perf_counter()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for norm_first, name in ((False, "Post-LN"), (True, "Pre-LN")):
    profile = np.mean([layer_grad_norms(24, norm_first, s) for s in seeds], axis=0)
    axes[0].plot(range(1, 25), profile, "o-", label=name)
    last = [np.mean([layer_grad_norms(n, norm_first, s)[-1] for s in seeds]) for n in depths]
    slope = np.polyfit(np.log(depths), np.log(last), 1)[0]
    axes[1].loglog(depths, last, "o-", label=f"{name}: fitted slope {slope:+.2f}")
    print(f"{name}: top / bottom layer gradient in the 24-layer stack = {profile[-1] / profile[0]:.2f}; "
          f"last layer's gradient ~ depth^{slope:+.2f}")
axes[0].set(title="(a) 24 layers at initialisation", xlabel="layer (1 = next to the input)",
            ylabel="gradient norm of the layer's parameters")
axes[1].set(title="(b) the last layer, by depth", xlabel="number of layers", ylabel="gradient norm")
axes[1].set_xticks(depths, labels=[str(d) for d in depths], minor=False)
axes[1].xaxis.set_minor_locator(plt.NullLocator())
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()
print(f"{time.perf_counter() - started:.1f} s")

# %% [markdown]
# In the Post-LN stack the gradient grows towards the output: the top layers get the largest gradients,
# and the last layer's gradient does not shrink as the stack gets deeper (plot b). In the Pre-LN stack the
# top layers get the smallest gradients, and the last layer's gradient shrinks with depth. For the last
# layer, Xiong et al. (2020) derive this contrast at initialisation: their bound on its gradient does not
# depend on the depth $N$ in Post-LN and shrinks like $1/\sqrt{N}$ in Pre-LN (slopes 0 and $-0.5$ on plot
# b's axes; the fitted ones are in its legend).
# Across layers they measure Post-LN's gradients growing towards the output and Pre-LN's about equal in
# every layer; here Pre-LN's fall towards the output. The curves depend on the setting (PyTorch's default
# init gives a somewhat flatter Post-LN profile), so treat the plot as an illustration, not a law.
#
# Xiong et al. use the large gradients next to the output to explain why Post-LN needs a learning-rate
# warm-up: a large learning rate applied to them makes training unstable. With Adam that is not the whole
# story, since its first steps are about the learning rate in size whatever the gradient; Liu et al. (2020)
# trace the instability to Post-LN's heavy dependence on its residual branches, which turns small changes
# of the weights into large changes of the output. The training run tests the consequence.
#
# **Training both.** Six layers, the two-answer look-back task (offsets 1 and 3), Adam at a large
# learning rate, $10^{-2}$: Post-LN without warm-up, Post-LN with a linear warm-up, and Pre-LN without one.

# %%
LN_OFFSETS = (1, 3)
LN_STEPS, WARMUP = (40, 15) if QUICK else (100, 30)
ln_runs = {}
for name, norm_first, warmup in (("Post-LN", False, 0), (f"Post-LN + {WARMUP}-step warm-up", False, WARMUP),
                                 ("Pre-LN", True, 0)):
    torch.manual_seed(0)
    model = LookBack(LN_OFFSETS, E=32, H=2, n_layers=6, norm_first=norm_first, xavier=True)
    started = time.perf_counter()
    losses = train(model, LN_OFFSETS, LN_STEPS, lr=1e-2, warmup=warmup)
    ln_runs[name] = dict(losses=losses, acc=accuracy(model, LN_OFFSETS), seconds=time.perf_counter() - started)

fig, ax = plt.subplots(figsize=(7.5, 3.8))
for name, run in ln_runs.items():
    ax.plot(run["losses"], label=name)
ax.axhline(np.log(VOCAB), color="gray", ls=":", label="chance: ln 16")
ax.set(title="6 layers, Adam, learning rate 1e-2", xlabel="step", ylabel="training loss (nats)", yscale="log")
ax.legend()
plt.show()
for name, run in ln_runs.items():
    print(f"{name:28s} final loss {run['losses'][-10:].mean():.3f}, accuracy "
          f"{np.round(run['acc'], 3).tolist()}, {run['seconds']:.1f} s")

# %% [markdown]
# At this learning rate the Post-LN stack without warm-up stays at chance level for the whole run (loss
# $\ln 16 \approx 2.77$, accuracy about 1/16, printed above). The same stack with a short warm-up trains,
# and the Pre-LN stack trains fastest with no warm-up at all. Xiong et al. (2020) report the same pattern
# at scale: their Post-LN translation models trained far worse without warm-up, while Pre-LN models
# trained without one (translation, BERT) reached comparable results in less time. Post-LN is not simply
# worse: when it trains, its heavier reliance on the residual branches can end in a better model (Liu et
# al. 2020), and methods such as DeepNorm (Wang et al. 2022) rescale the residual to train very deep
# Post-LN stacks.

# %% [markdown]
# **Written answer.** In 3-4 sentences: why did the Post-LN stack need a warm-up at learning rate
# $10^{-2}$ in the run above, and what does Pre-LN change that removes the need?

# %% [markdown] tags=["answer", "points:2"]
# At initialisation the Post-LN stack has its largest gradients next to the output, and they do not shrink
# with depth (plots a and b); Xiong et al. (2020) argue that a large learning rate applied from the first
# step then makes training unstable, and here it left the model stuck at chance. A warm-up keeps the first
# updates small until the weights and Adam's running statistics have settled (an Adam step is about the
# learning rate in size whatever the gradient, so it is the step size that warm-up limits). Pre-LN
# normalises only each sub-layer's input, so every layer reaches the output through additions alone and
# the top gradients shrink with depth; the output depends less on any single layer's update (Liu et al.
# 2020), and the same learning rate is safe from the first step.

# %% [markdown] tags=["question:qa-7"]
# ### Pre-LN vs Post-LN Transformer (brief).
#
# Post-LN, the original Transformer (Vaswani et al. 2017), normalises after each residual addition,
# $x \leftarrow \mathrm{LN}(x + F(x))$; Pre-LN normalises each sub-layer's input, $x \leftarrow x +
# F(\mathrm{LN}(x))$, and adds a final layer norm. Pre-LN can train without the learning-rate warm-up
# Post-LN needs (Xiong et al. 2020); GPT-2 (Radford et al. 2019) and most large models since use it.
#
# - **Why:** at initialisation Post-LN's gradients near the output are large and do not shrink with depth
#   (Xiong et al. 2020; plots a and b above).
# - **Measured here:** learning rate $10^{-2}$, 6 layers: Post-LN stays at chance, Post-LN with a warm-up
#   trains, Pre-LN trains fastest.
# - **Trade-off:** Pre-LN's residual stream grows with depth, so deep layers change it relatively less;
#   Post-LN, when it trains, can end better (Liu et al. 2020), and DeepNorm trains very deep Post-LN
#   stacks (Wang et al. 2022).
# - **Pitfalls:** forgetting Pre-LN's final layer norm; large Pre-LN models still warm up briefly (GPT-3,
#   Brown et al. 2020).

# %% [markdown]
# ## 8. Encoder-only, decoder-only, encoder-decoder
#
# The three families use the same block and differ in who may attend to whom, that is, in their masks.
# Below, a source of 6 tokens whose last 2 are padding and a target of 5 tokens (dark = may attend):
#
# - **encoder-only** (BERT): bidirectional self-attention, only padding keys hidden, `(B, 1, 1, S)`;
# - **decoder-only** (GPT): causal self-attention, `(L, L)`; a *prefix LM* lets a prompt prefix see
#   itself in both directions;
# - **encoder-decoder** (the original Transformer, T5): a bidirectional encoder, a causal decoder, and
#   cross-attention from every decoder query to the non-padding encoder outputs, `(L, S)`.

# %%
S_src, pad, L_tgt, prefix = 6, 2, 5, 3
key_ok = np.arange(S_src) < S_src - pad                                      # (S,) padding mask
encoder = np.broadcast_to(key_ok, (S_src, S_src))                            # (S, S)
decoder = end_aligned_causal(L_tgt, L_tgt)                                   # (L, L)
prefix_lm = decoder | (np.arange(L_tgt)[None, :] < prefix)                   # the prefix is bidirectional
cross = np.broadcast_to(key_ok, (L_tgt, S_src))                              # (L, S)
panels = [(encoder, "encoder-only / encoder self-attention\n(padding hidden)", "source"),
          (decoder, "decoder-only / decoder self-attention\n(causal)", "target"),
          (prefix_lm, f"prefix LM\n(prefix of {prefix} bidirectional)", "target"),
          (cross, "encoder-decoder: cross-attention\n(decoder queries, encoder keys)", "cross")]
fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
for ax, (m, title, kind) in zip(axes, panels):
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3)
    ax.set(title=title, xticks=range(m.shape[1]), yticks=range(m.shape[0]),
           xlabel="source key position" if kind != "target" else "target key position",
           ylabel="source query position" if kind == "source" else "target query position")
fig.tight_layout()
plt.show()

# %% [markdown] tags=["question:qa-15"]
# ### Encoder-only vs decoder-only vs encoder–decoder.
#
# They differ in who may attend to whom. Encoder-only models (BERT, Devlin et al. 2019) attend in both
# directions and suit understanding tasks; decoder-only models (GPT, Radford et al. 2018) use a causal mask
# and generate; encoder-decoders (Vaswani et al. 2017; T5, Raffel et al. 2020) encode the source in both
# directions and generate with a causal decoder that cross-attends to it.
#
# - **Masks** (drawn above): encoder padding `(B, 1, 1, S)`; decoder causal `(L, L)`; cross-attention
#   padding over the source, `(L, S)`.
# - **Objectives:** masked tokens (BERT), the next token (GPT), corrupted spans (T5).
# - **Inference:** an encoder is one pass; a decoder generates token by token with a KV cache; cross
#   keys and values are computed once per source.
# - **In between:** a prefix LM, a decoder with a bidirectional prefix (compared by Raffel et al. 2020).
# - **Trend:** large language models are mostly decoder-only, prompted for many tasks (Brown et al. 2020).

# %% [markdown]
# ## Summary
#
# - $H$ heads split the width $E$ into $D = E/H$ subspaces: each query gets $H$ distributions for the
#   price of one; `split_heads` / `merge_heads` move the head axis, `multi_head_attention` projects,
#   attends per head and mixes with $W_o$ (a fully masked query outputs $b_o$).
# - PyTorch stores `(out, in)` weights: transpose when copying into `x @ W` code, invert its boolean masks.
# - Attention dropout acts on the weights after the softmax, inverted so that the expectation is kept.
# - Layer norm normalises each position; the FFN ($E \to 4E \to E$, exact GELU) transforms each position.
# - Post-LN needed a warm-up at a large learning rate where Pre-LN did not (here, as in Xiong et al. 2020);
#   at initialisation its largest gradients sit next to the output.
# - Encoder-only, decoder-only and encoder-decoder models differ in their masks.
#
# **Questions answered:** Multi-head attention—why multiple heads? · How does multi-head attention improve
# upon single-head attention? · What is attention dropout and when to use it? · Attention dropout—where? ·
# What sits after attention in a Transformer block? · Pre-LN vs Post-LN Transformer (brief). ·
# Encoder-only vs decoder-only vs encoder–decoder.
