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
# # 09 · Reading attention
#
# Attention weights are the one part of a Transformer that comes with a ready-made picture: an
# `(L, S)` matrix that says how much each query reads from each key. This notebook trains a small model,
# reads its heads with a few tools, and then asks what those readings do and do not show.
#
# **You will learn**
# - to draw attention as a labelled heatmap: one head, a grid of heads, every layer;
# - to measure how focused a head is (attention entropy) and which heads matter (masking heads);
# - to follow information through several layers with attention rollout, and what rollout leaves out;
# - why attention weights are not, by themselves, explanations: different weights can give the same
#   output (Jain and Wallace 2019), and how to test whether a model needs its weights (Wiegreffe and
#   Pinter 2019);
# - to regularise attention: an entropy penalty, the doubly stochastic penalty of Show, Attend and Tell,
#   attention dropout;
# - a debugging gallery: five ways attention code breaks, the symptom of each, and the check that finds it.
#
# **You will build**, in `src/attnlab/interpret.py`: `plot_attention`, `attention_entropy`,
# `attention_rollout`, `entropy_penalty` and `doubly_stochastic_penalty`.
#
# Shape legend: B batch, H heads, L queries, S keys, D query/key width, D_v value width, E model width,
# T decoder steps. Weights are `(..., L, S)`: row i is query i's distribution over the keys. Masks are
# boolean and mean *may attend*: `True` keeps a position. Logs are natural (entropies in nats).

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import os
import platform
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)  # tiny models: one thread avoids threading overhead and repeats exactly


def cpu_name():
    """The CPU model (Linux names it in /proc/cpuinfo), else the architecture."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


MACHINE = f"torch {torch.__version__}, 1 thread of {cpu_name()} ({os.cpu_count()} CPUs visible)"
print(MACHINE)

# %% [markdown]
# ## 1. A model worth reading
#
# To read heads we need heads that learned something. The task is **associative recall**: a sequence
# lists six key-value pairs and then asks for one key again; the answer is the value that followed it.
#
# ```
# tokens:  C 5 H 0 A 7 K 2 E 5 B 1 A?      answer: 7   (the value after the earlier A)
# ```
#
# Keys are 6 distinct letters out of 12, values are digits 0-7 (chance: 1/8), and $L = 13$. The model is
# causal, so no single attention step can solve it: the query `A?` can find the earlier `A`, but the `A`
# token knows nothing of the value after it. Two steps can: in layer 0 each value token reads the key just
# before it (a *previous-token head*), and in layer 1 the query reads the value token whose key matches.
# That is the circuit of an *induction head* (`... A B ... A` → `B`), found by Elhage et al. (2021) in
# two-layer attention-only Transformers like this one and traced through language models of many sizes
# by Olsson et al. (2022).
#
# **Model.** Token and learned position embeddings of width $E = 64$; two layers of causal multi-head
# self-attention with $H = 4$ heads of width $D = 16$, each wrapped as `x + attention(layer_norm(x))` (no
# feed-forward network, so attention is the only way information moves between positions); a linear
# read-out of the last position. `forward` returns the logits and the weights of every layer,
# `(n_layers, B, H, L, L)`, and takes two switches used later: `head_mask` `(n_layers, H)` scales each
# head's output (0 removes a head), and `replace` swaps a layer's weights for others before they mix the
# values.

# %%
N_KEYS, N_VALUES, PAIRS = 12, 8, 6
L_SEQ = 2 * PAIRS + 1                      # 6 (key, value) pairs, then the query
KEY_NAMES = "ABCDEFGHIJKL"


def recall_batch(gen, n):
    """n sequences (n, L) of token ids: keys 0-11, values 12-19; targets (n,) in 0-7; the pair asked (n,)."""
    keys = torch.rand(n, N_KEYS, generator=gen).argsort(dim=1)[:, :PAIRS]     # (n, P) distinct keys
    values = N_KEYS + torch.randint(N_VALUES, (n, PAIRS), generator=gen)      # (n, P)
    asked = torch.randint(PAIRS, (n,), generator=gen)                         # (n,)
    rows = torch.arange(n)
    pairs = torch.stack([keys, values], dim=2).reshape(n, 2 * PAIRS)          # k v k v ...
    tokens = torch.cat([pairs, keys[rows, asked, None]], dim=1)               # (n, L)
    return tokens, values[rows, asked] - N_KEYS, asked


def token_labels(tokens):
    """Readable labels for one sequence: letters for keys, digits for values, 'A?' for the query."""
    names = [KEY_NAMES[t] if t < N_KEYS else str(t - N_KEYS) for t in tokens.tolist()]
    return names[:-1] + [names[-1] + "?"]


class RecallModel(nn.Module):
    """Two causal self-attention layers (H heads each, no MLP) on a pre-LN residual stream."""

    def __init__(self, E=64, H=4, n_layers=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.H, self.D = H, E // H
        self.embed = nn.Embedding(N_KEYS + N_VALUES, E)
        self.pos = nn.Parameter(0.1 * torch.randn(L_SEQ, E))
        self.norms = nn.ModuleList(nn.LayerNorm(E) for _ in range(n_layers))
        self.qkv = nn.ModuleList(nn.Linear(E, 3 * E) for _ in range(n_layers))
        self.proj = nn.ModuleList(nn.Linear(E, E) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(E)
        self.readout = nn.Linear(E, N_VALUES)
        self.register_buffer("causal", torch.ones(L_SEQ, L_SEQ, dtype=torch.bool).tril())

    def forward(self, tokens, head_mask=None, replace=None):
        """tokens (B, L) -> logits (B, N_VALUES), weights (n_layers, B, H, L, L)."""
        B = tokens.shape[0]
        x = self.embed(tokens) + self.pos                                         # (B, L, E)
        weights = []
        for layer, (norm, qkv, proj) in enumerate(zip(self.norms, self.qkv, self.proj)):
            q, k, v = qkv(norm(x)).view(B, L_SEQ, 3, self.H, self.D).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, D)
            scores = q @ k.transpose(-1, -2) / self.D ** 0.5                      # (B, H, L, L)
            w = scores.masked_fill(~self.causal, float("-inf")).softmax(dim=-1)
            if replace is not None and layer in replace:
                w = replace[layer](w)                                             # an intervention (section 6)
            weights.append(w)
            heads = w @ v                                                         # (B, H, L, D)
            if head_mask is not None:
                heads = heads * head_mask[layer][None, :, None, None]             # 0 removes a head (section 4)
            x = x + proj(heads.transpose(1, 2).reshape(B, L_SEQ, -1))             # (B, L, E)
        return self.readout(self.final_norm(x[:, -1])), torch.stack(weights)


def train_recall(steps=200, batch=96, lr=3e-3, penalty_weight=0.0, penalty=None, seed=0):
    """Adam on fresh batches (the same stream for every call). Returns the model and the per-step losses."""
    model = RecallModel(seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)  # same numbers, faster on CPU
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens, target, _ = recall_batch(gen, batch)
        logits, weights = model(tokens)
        loss = F.cross_entropy(logits, target)
        total = loss + penalty_weight * penalty(weights) if penalty_weight else loss
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def accuracy(model, data, **switches):
    tokens, target, _ = data
    with torch.no_grad():
        return (model(tokens, **switches)[0].argmax(dim=-1) == target).float().mean().item()


TEST = recall_batch(torch.Generator().manual_seed(2), 1000)  # held out: another stream of sequences
started = time.perf_counter()
model, losses = train_recall()
train_seconds = time.perf_counter() - started
with torch.no_grad():
    _, test_weights = model(TEST[0])                         # (2, 1000, 4, 13, 13)
print(f"200 steps of 96 sequences in {train_seconds:.1f} s ({MACHINE})")
print(f"held-out accuracy {accuracy(model, TEST):.3f} (chance 0.125), last-20-step loss {np.mean(losses[-20:]):.4f}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(losses)
ax.axhline(np.log(N_VALUES), color="k", ls=":", label="chance, ln 8")
ax.set(xlabel="training step", ylabel="cross-entropy (nats, log scale)", title="associative recall, 2 layers x 4 heads")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Heatmaps
#
# One head's weights for one sequence are an `(L, S)` matrix (here $L = S = 13$, self-attention). The
# natural picture is an image: row $i$ is query $i$, column $j$ is key $j$, the colour is the weight.
# Three details decide whether a reader can trust it:
#
# - **nothing moved**: the matrix drawn as it is, query 0 on the top row, not transposed, not rescaled
#   (a fully masked query stays a row of zeros);
# - **every label on its own cell**: one tick per token, set together with its label (the default tick
#   locator puts ticks on only some cells, and labels set without their ticks go to those ticks, often
#   the wrong cells). Tokens repeat ("the" twice, a digit twice), so labels go by position;
# - **a colour bar**: colour alone does not say whether the brightest cell is 0.3 or 0.99.
#
# ### Exercise: `plot_attention`
#
# Implement `plot_attention(weights, query_labels, key_labels, ax=None)` in `src/attnlab/interpret.py`:
# `weights` `(L, S)`, `L` query labels for the rows and `S` key labels for the columns; draw into `ax` when
# one is given (a panel of a grid) or into a new figure, label the axes "key" and "query", add a colour
# bar, and return the Axes. Import `matplotlib.pyplot` inside the function, so that the module's NumPy
# exercises never load a plotting library.

# %%
from attnlab.interpret import plot_attention

example = int(torch.nonzero(TEST[2] == 3)[0])              # a held-out sequence that asks for the 4th pair
labels = token_labels(TEST[0][example])
ax = plot_attention(test_weights[1, example, 0].numpy(), labels, labels)   # layer 1, head 0: (13, 13)
ax.set_title("layer 1, head 0")
plt.show()

# %% tags=["check"]
check("interpret.plot_attention")

# %% [markdown]
# **All heads, all layers.** Passing `ax` lets `plot_attention` fill a grid: rows are layers, columns
# heads, one sequence throughout, on one colour scale.

# %%
fig, axes = plt.subplots(2, 4, figsize=(15, 7), constrained_layout=True)
for layer in range(2):
    for head in range(4):
        ax = plot_attention(test_weights[layer, example, head].numpy(), labels, labels, ax=axes[layer, head])
        ax.images[0].set_clim(0, 1)   # one scale for every panel
        ax.set_title(f"layer {layer}, head {head}")
fig.suptitle(f"sequence {' '.join(labels)}: the answer is the value after the earlier {labels[-1][0]}")
plt.show()

asked = TEST[2]                                           # (1000,) which pair was asked
rows = torch.arange(len(asked))
value_pos = 2 * asked + 1                                 # where the answer sits
prev_token = torch.stack([test_weights[0, :, :, i, i - 1] for i in range(1, 2 * PAIRS, 2)], dim=-1)  # (B, H, P)
print("layer 0, value tokens: mean weight on the key just before them, per head:",
      prev_token.mean(dim=(0, 2)).numpy().round(2))
print("layer 1, the query row: mean weight on the answer's value token, per head:  ",
      test_weights[1, rows, :, -1, value_pos].mean(dim=0).numpy().round(2))

# %% [markdown]
# **Reading the grid.** In layer 0 the value tokens (odd positions) put most of their weight just left
# of the diagonal, on the key before them: previous-token heads, as the two-step solution needs. In
# layer 1 the last row, the query, lights up one cell: the value token after the matching key. The
# printed averages over 1000 held-out sequences say the picture of one sequence is typical. Other rows
# of layer 1 are diffuse: nothing in the loss asks those positions to attend anywhere in particular, and
# a pattern in a row the output never reads is no evidence of anything.

# %% [markdown] tags=["question:theory-23"]
# ### What are attention heatmaps and how to create them?
#
# An attention heatmap draws one head's weights for one input as an image: row $i$ is query $i$,
# column $j$ is key $j$, colour is the weight. To make one, take the softmax weights `(B, H, L, S)` from
# the layer, pick a batch element and a head, and draw the `(L, S)` matrix with `imshow`, one labelled
# tick per token and a colour bar (`plot_attention`, section 2).
#
# - Getting the weights: `F.scaled_dot_product_attention` never returns them; `nn.MultiheadAttention`
#   averages the heads unless `average_attn_weights=False`; else return them or use a forward hook.
# - Label by position (`set_xticks(range(S), labels=...)`: repeated tokens are different columns); draw
#   the weights as they are, not transposed or rescaled; fix `vmin=0, vmax=1` to compare heads.
# - A grid of layers × heads shows roles at a glance (the previous-token heads above). Causal models
#   leave the upper triangle empty; translation cross-attention follows a roughly monotone path
#   (Bahdanau et al. 2014, notebook 03).
# - It shows where a head reads, not why the model answered (section 6).

# %% [markdown]
# ## 3. How focused is a head? Attention entropy
#
# A head that reads one key and a head that averages over all of them look different in a heatmap; the
# **entropy** of each row puts a number on it:
#
# $$H(w) = -\sum_{j=1}^{S} w_j \ln w_j, \qquad 0 \le H(w) \le \ln S'$$
#
# with $S'$ the number of keys the query may see. One-hot gives 0 and uniform gives $\ln S'$ (so in a
# causal model the ceiling grows along the rows: query $i$ sees $i + 1$ keys). Two conventions: the log is
# natural (nats; divide by $\ln 2$ for bits), and $0 \ln 0 = 0$, the limit of $w \ln w$ as $w \to 0$: a
# masked key (weight exactly 0) contributes nothing, and a fully masked row has entropy 0, like a one-hot
# row (tell them apart by the row sum).
#
# ### Exercise: `attention_entropy`
#
# Implement `attention_entropy(weights, axis=-1)` in `src/attnlab/interpret.py`: weights `(..., S)`, the
# distributions along `axis`; return the entropies, `weights.shape` without `axis`, in the input's dtype.
# Beware `np.log(0) = -inf` and `0 * -inf = NaN`.

# %%
from attnlab.interpret import attention_entropy

rng = np.random.default_rng(0)
B, H, L, S = 2, 3, 5, 7
scores = rng.standard_normal((B, H, L, S))
keep = rng.random((B, 1, L, S)) < 0.7                       # (B, 1, L, S): shared by the heads
keep[..., 0] = True
keep[1, 0, 4] = False                                       # a fully masked query
w = np.exp(np.where(keep, scores, -np.inf) - scores.max(axis=-1, keepdims=True))
w = np.divide(w, w.sum(axis=-1, keepdims=True), out=np.zeros_like(w), where=keep.any(axis=-1, keepdims=True))
ent = attention_entropy(w)
print("weights", w.shape, "-> entropy", ent.shape, ent.dtype)
print("every entropy within [0, ln(visible keys)]:",
      bool(np.all((ent >= 0) & (ent <= np.log(np.maximum(keep.sum(-1), 1)) + 1e-12))))
print("the fully masked query:", ent[1, :, 4], "| one-hot and uniform over 4:",
      attention_entropy(np.array([[0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])).round(4), "ln 4 =", round(np.log(4), 4))

# %% tags=["check"]
check("interpret.attention_entropy")

# %% [markdown]
# **The entropy of every head of the trained model.** Left: the mean entropy of each head over the 1000
# held-out sequences, for the rows that matter to each layer's job (the value tokens in layer 0, the
# query in layer 1), next to the ceiling of a uniform row. Right: the entropy of layer 0's heads along the
# positions, with the causal ceiling $\ln(i + 1)$: key tokens (even positions) have no job in layer 0 and
# their rows stay spread out, at about two-thirds of the ceiling or more; value tokens (odd) stay far
# below it (they read mostly one key); and the query (position 12) is spread over everything: in layer 0
# it has nothing to look for yet. The ratios printed below the plot put numbers on it.

# %%
ent = attention_entropy(test_weights.numpy())                  # (n_layers, B, H, L)
value_rows = np.arange(1, 2 * PAIRS, 2)                        # positions 1, 3, ..., 11
job = np.stack([ent[0][..., value_rows].mean(axis=(0, 2)), ent[1][..., -1].mean(axis=0)])  # (2, H)
ceiling = np.array([np.log(value_rows + 1).mean(), np.log(L_SEQ)])

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
image = ax0.imshow(job, cmap="magma_r", vmin=0, vmax=ceiling.max())
for (i, j), value in np.ndenumerate(job):
    ax0.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value > 1 else "k")
ax0.set(xticks=range(4), yticks=range(2), yticklabels=[f"layer 0, value rows\n(ceiling {ceiling[0]:.2f})",
        f"layer 1, query row\n(ceiling {ceiling[1]:.2f})"], xlabel="head", ylabel="layer and rows",
        title="mean entropy (nats)")
fig.colorbar(image, ax=ax0, label="nats")
positions = np.arange(L_SEQ)
for head in range(4):
    ax1.plot(positions, ent[0, :, head].mean(axis=0), "o-", label=f"layer 0, head {head}")
ax1.plot(positions, np.log(positions + 1), "k:", label="ceiling ln(i + 1)")
ax1.set(xlabel="query position i (even: keys, odd: values, 12: the query)", ylabel="mean entropy (nats)",
        title="layer 0 along the sequence", xticks=positions)
ax1.legend(fontsize=8)
fig.tight_layout()
plt.show()

share = ent[0].mean(axis=(0, 1))[1:] / np.log(positions[1:] + 1)   # layer 0, heads averaged: H / ceiling
print("layer 0, entropy / ceiling: key rows", share[1:-1:2].round(2), "| value rows", share[0::2].round(2),
      "| the query", share[-1].round(2))

# %% [markdown]
# ## 4. Which heads matter? Masking heads
#
# A heatmap shows where a head reads; whether the model *needs* what it reads is a separate question,
# answered by an intervention. Multiplying each head's output by a gate of 0 or 1 (`head_mask`) before
# the output projection and measuring the score is the ablation of Michel et al. (2019). In trained
# translation models and BERT they found that most heads can be removed one at a time at little cost,
# that at test time most layers can even be cut down to a single head, and, pruning the heads in order
# of a gradient-based importance score, that about 20% (translation) to 40% (BERT) of all heads can go
# before the score drops noticeably. Below: every head removed alone, each whole layer removed, and the
# model left with exactly one head per layer (all 16 combinations).

# %%
def head_mask_keeping(layer0_heads, layer1_heads):
    mask = torch.zeros(2, 4)
    mask[0, list(layer0_heads)] = 1.0
    mask[1, list(layer1_heads)] = 1.0
    return mask


alone = np.zeros((2, 4))                               # accuracy with one head removed
for layer in range(2):
    for head in range(4):
        mask = torch.ones(2, 4)
        mask[layer, head] = 0.0
        alone[layer, head] = accuracy(model, TEST, head_mask=mask)
without_layer = [accuracy(model, TEST, head_mask=head_mask_keeping([], range(4))),    # layer 0 removed
                 accuracy(model, TEST, head_mask=head_mask_keeping(range(4), []))]    # layer 1 removed
single = np.array([[accuracy(model, TEST, head_mask=head_mask_keeping([a], [b])) for b in range(4)]
                   for a in range(4)])                 # (layer-0 head kept, layer-1 head kept)
print(f"all heads: {accuracy(model, TEST):.3f}; one head removed: {alone.min():.3f} to {alone.max():.3f}; "
      f"without layer 0: {without_layer[0]:.3f}; without layer 1: {without_layer[1]:.3f} (chance 0.125)")
print(f"one head per layer: {single.min():.3f} to {single.max():.3f}")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
for layer, style, shift in ((0, "o", -0.08), (1, "s", 0.08)):
    ax0.plot(np.arange(4) + shift, alone[layer], style, ms=9, label=f"head of layer {layer} removed")
ax0.axhline(0.125, color="k", ls=":", label="chance")
ax0.set(xlabel="head removed", ylabel="held-out accuracy", ylim=(0, 1.05), xticks=range(4),
        title="one head removed at a time")
ax0.legend(loc="center")
image = ax1.imshow(single, cmap="viridis", vmin=0, vmax=1)
for (i, j), value in np.ndenumerate(single):
    ax1.text(j, i, f"{value:.2f}", ha="center", va="center", color="k" if value > 0.6 else "w")
ax1.set(xticks=range(4), yticks=range(4), xlabel="the one head kept in layer 1",
        ylabel="the one head kept in layer 0", title="only one head per layer")
fig.colorbar(image, ax=ax1, label="held-out accuracy")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading it.** Removing any single head costs nothing here, yet removing a whole layer sends the
# accuracy most of the way to chance: the four heads of a layer learned much the same job, and each
# covers for the others. The right panel says how far one head per layer gets on its own: no single
# pair does as well as the full model, so unlike most layers in Michel et al.'s models, ours cannot be
# cut to one head. An importance score from removing heads one at a time can call every head
# unimportant while the layer is essential: test groups of heads too. Redundancy is also why heads can
# be pruned after training: Voita et al. (2019) fine-tuned a translation model with a learned gate per
# head and a penalty on the number of open gates, and removed 38 of its 48 encoder heads for a loss of
# 0.15 BLEU (English-Russian), the heads with clear roles (positional, syntactic, rare-word) the last
# to go.

# %% [markdown]
# ## 5. Across layers: attention rollout
#
# Layer 1's query reads position $2a + 1$, the value token. But after layer 0 that position no longer
# holds only its own token: it holds a mixture of itself (the residual connection) and the key before it.
# Raw attention of a deep layer describes mixtures of mixtures. **Attention rollout** (Abnar and Zuidema
# 2020) follows the mixing down to the input tokens. Per layer $l$, with weights `(..., H, L, L)`:
#
# 1. average the heads: $\bar A_l$ `(..., L, L)` (Abnar and Zuidema do this for simplicity; rollout per
#    head is possible too);
# 2. account for the residual stream, $x + \mathrm{attention}(x)$: add the identity and renormalise each
#    row, $\hat A_l = \mathrm{rownorm}(\bar A_l + I)$, which is their $0.5\,\bar A_l + 0.5\,I$ for rows that
#    sum to 1 (a fully masked query's zero row becomes the identity row: it keeps its own token);
# 3. multiply the layers, later ones on the left: $R = \hat A_{n-1} \cdots \hat A_1 \hat A_0$.
#
# $R[i, j]$ is the share of input token $j$ in position $i$ after the last layer, *if* heads moved whole
# token vectors and nothing else mixed them. Rollout ignores the value vectors and output projections
# (a head can read a token and pass on little of it; Kobayashi et al. 2020), and any MLPs. The same paper
# proposes **attention flow**: the layers as a graph whose edges carry the same $\hat A_l$ weights as
# capacities, and the maximum flow from each input token to each position as its share (costlier: a
# max-flow problem per pair). Both agreed better than raw attention with the importance of input tokens
# measured by ablation and by input gradients.
#
# ### Exercise: `attention_rollout`
#
# Implement `attention_rollout(attentions, residual=True)` in `src/attnlab/interpret.py`. `attentions`
# is an `(n_layers, ..., H, L, L)` array or a list of `n_layers` arrays `(..., H, L, L)`, first layer
# first; return `(..., L, L)` in the weights' dtype. With `residual=False`, multiply the head-averaged
# weights as they are.

# %%
from attnlab.interpret import attention_rollout

rng = np.random.default_rng(0)
n_layers, B, H, L = 3, 2, 4, 6
toy = rng.random((n_layers, B, H, L, L)) * np.tril(np.ones((L, L)))   # causal weights ...
toy /= toy.sum(axis=-1, keepdims=True)                                # ... each row a distribution
R = attention_rollout(toy)
print("attentions", toy.shape, "-> rollout", R.shape)
print("rows sum to 1:", np.allclose(R.sum(-1), 1), "| still causal (upper triangle 0):",
      np.allclose(np.triu(R, 1), 0), "| a list gives the same:", np.allclose(attention_rollout(list(toy)), R))

# %% tags=["check"]
check("interpret.attention_rollout")

# %% [markdown]
# **Rollout of the trained model.** Left, layer 1's raw weights averaged over its heads; right, the
# rollout through both layers, for the same sequence. Below them, over the 1000 held-out sequences: how
# the query row shares its weight between the query token itself, the answer's value token, the key
# before it, and everything else.

# %%
raw = test_weights[1].mean(dim=1).numpy()               # (B, L, L): layer 1, heads averaged
rolled = attention_rollout(test_weights.numpy())        # (B, L, L)

fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
for ax, matrix, title in ((axes[0], raw[example], "layer 1, heads averaged (raw)"),
                          (axes[1], rolled[example], "rollout through layers 0 and 1")):
    plot_attention(matrix, labels, labels, ax=ax).images[0].set_clim(0, 1)
    ax.set_title(title)
plt.show()

value_pos_np, key_pos_np, n = value_pos.numpy(), value_pos.numpy() - 1, len(value_pos)
for name, m in (("raw layer 1", raw), ("rollout", rolled)):
    last = m[:, -1]                                          # (B, L): the query row
    shares = [last[:, -1].mean(), last[np.arange(n), value_pos_np].mean(), last[np.arange(n), key_pos_np].mean()]
    print(f"{name:12s} query row: itself {shares[0]:.2f}, answer's value {shares[1]:.2f}, "
          f"its key {shares[2]:.2f}, all else {1 - sum(shares):.2f}")

# %% [markdown]
# Raw layer-1 attention credits the value token alone. Rollout adds the path through layer 0: part of
# what the query reads at the value position came from the key before it, and half of each layer's
# output is the residual stream, so the query token keeps a large share of itself. Rollout also credits
# "all else" with a good share: the query's own row in layer 0 is spread over every earlier token
# (section 3), and rollout cannot tell that this mixture is probably ignored downstream. Both pictures
# are consistent with the two-step circuit; neither proves it. Section 4's interventions are stronger
# evidence: removing layer 0 breaks the model, which layer 1's raw weights alone would never suggest.

# %% [markdown]
# ## 6. Are attention weights explanations?
#
# Jain and Wallace (2019) tested attention, mainly over recurrent (BiLSTM) encoders, on text
# classification, question answering and inference. The weights correlated only weakly with token importance measured by
# gradients or by leaving a token out; randomly permuting the weights often barely moved the output; and
# for many inputs they found *adversarial* weights, as different as possible from the original ones,
# that left the prediction almost unchanged. Serrano and Smith (2019) zeroed the weights of the
# highest-weighted words of text classifiers one after another, renormalising the rest: the decision
# often held until many were gone, and gradient-based rankings found smaller sets of words that flip it.
# Wiegreffe and Pinter (2019) answered that weights altered for one input at a time, which no trained
# model produces, say little about what a model relies on, and proposed model-level tests: train with
# attention frozen to uniform (where that does as well, the weights were never needed), compare with the
# spread of weights across random seeds, train an adversary end to end, and give the weights to a model
# without attention to see whether they help it.
#
# **Same output, different weights.** The output of one query is $o = w V$, with $w$ `(S,)` on the
# simplex and $V$ `(S, D_v)`. Any change $\delta$ with $\delta V = 0$ and $\sum_j \delta_j = 0$ leaves
# $o$ exactly unchanged; such changes form a space of dimension at least $S - D_v - 1$, which is large
# whenever there are more keys than value dimensions (in real models $S$ runs to thousands, $D_v$ is
# 64-128). Below, $S = 12$ keys and $D_v = 4$: starting from weights that favour key 3, we walk inside
# that space, keeping every weight $\ge 0$, until key 3's weight is as small as it gets.

# %%
def same_output_weights(w, V, target):
    """Weights u >= 0, sum 1, u @ V == w @ V, with u[target] pushed down: steepest descent in the null space
    of [V^T; 1^T] and of the weights already at 0 (an active-set walk; each step zeroes one more weight)."""
    u, S = w.copy(), len(w)
    for _ in range(S):
        stuck = np.eye(S)[u <= 1e-12]                            # weights at 0 must stay there
        constraints = np.vstack([V.T, np.ones(S), stuck])       # (D_v + 1 + n_zero, S)
        _, sv, vt = np.linalg.svd(constraints)
        free = vt[(sv > 1e-10).sum():].T                         # (S, k): directions that change nothing
        direction = -free @ free[target]                         # lowers u[target] fastest
        if np.abs(direction).max() < 1e-12:
            break
        shrinking = direction < -1e-15
        step = np.min(u[shrinking] / -direction[shrinking])      # the largest step that keeps u >= 0
        u = np.clip(u + step * direction, 0.0, None)
        u[u < 1e-12] = 0.0
    return u / u.sum()


rng = np.random.default_rng(3)
S_toy, D_v_toy, favoured = 12, 4, 3
V = rng.standard_normal((S_toy, D_v_toy))                      # (S, D_v) value vectors
logits = rng.standard_normal(S_toy)
logits[favoured] += 3.0
w = np.exp(logits) / np.exp(logits).sum()                      # (S,) weights that favour key 3
u = same_output_weights(w, V, favoured)
print(f"weight on key {favoured}: {w[favoured]:.3f} -> {u[favoured]:.3f}; total variation distance "
      f"{0.5 * np.abs(w - u).sum():.2f}; entropy {attention_entropy(w):.2f} -> {attention_entropy(u):.2f} nats")
print(f"max |w V - u V| = {np.abs(w @ V - u @ V).max():.1e} (float64 rounding)")
ax = plot_attention(np.stack([w, u]), ["original w", "same output u"], [f"k{j}" for j in range(S_toy)])
ax.set_title("two weight vectors, one output: w V = u V")
plt.show()

# %% [markdown]
# This is Jain and Wallace's adversarial search made exact for one head: the head's output, not only the
# prediction, is unchanged.
#
# **When the weights do matter.** Per-input constructions like this one show that a heatmap is not
# *unique*; they do not show that the trained model would work with other weights. That is a question
# for interventions on the model. Below, at test time, layer 1's weights are replaced by uniform ones
# (each query spread evenly over the keys it may see) and by the same weights shuffled over the keys;
# then only one head of layer 1 is made uniform. This is a test-time version of Wiegreffe and Pinter's
# uniform baseline (they *trained* models with frozen uniform weights).

# %%
gen = torch.Generator().manual_seed(4)
causal_uniform = torch.tril(torch.ones(L_SEQ, L_SEQ)) / torch.arange(1, L_SEQ + 1)[:, None]   # (L, L)


def uniform(w):
    return causal_uniform.expand_as(w)


def shuffled_over_keys(w):
    """Each query's weights permuted among the keys it may see (causal: keys 0..i)."""
    out = w.clone()
    for i in range(1, L_SEQ):
        perm = torch.randperm(i + 1, generator=gen)
        out[..., i, : i + 1] = w[..., i, perm]
    return out


def uniform_head(head):
    def replace(w):
        out = w.clone()
        out[:, head] = causal_uniform
        return out
    return replace


interventions = {"none": {}, "layer 1 uniform": {1: uniform}, "layer 1 shuffled": {1: shuffled_over_keys},
                 "layer 0 uniform": {0: uniform}, "layer 0 shuffled": {0: shuffled_over_keys},
                 "layer 1, head 0 uniform": {1: uniform_head(0)}}
results = {name: accuracy(model, TEST, replace=replace) for name, replace in interventions.items()}

fig, ax = plt.subplots(figsize=(9, 3))
ax.barh(list(results), list(results.values()), color="tab:blue")
ax.axvline(0.125, color="k", ls=":")
for i, value in enumerate(results.values()):
    ax.text(value + 0.01, i, f"{value:.3f}", va="center")
ax.set(xlabel="held-out accuracy (dotted: chance, 1/8)", xlim=(0, 1.12), ylabel="weights replaced at test time",
       title="does the model need its attention weights?")
ax.invert_yaxis()
plt.show()

with torch.no_grad():
    right = model(TEST[0], replace={0: uniform})[0].argmax(dim=-1) == TEST[1]    # (1000,)
print("layer 0 uniform, accuracy by the pair asked (1st to 6th):",
      [round(right[asked == a].float().mean().item(), 2) for a in range(PAIRS)])

# %% [markdown]
# Here the weights are necessary. Layer 1's most of all: uniform or shuffled weights there send the
# accuracy most of the way to chance, because this task *is* a lookup and attention is the only way to do it.
# Layer 0's matter less but clearly (a uniform row still hands a value token a share $1/(i+1)$ of the
# key before it, a large share for the early pairs, which is why the accuracy printed by pair falls,
# on the whole, from the first pair to the last). Yet one head made uniform changes nothing, since
# the three others carry the answer. Both halves of the debate show up in one
# small model: a single head's heatmap can look meaningful and be dispensable, and the weights of a
# layer can be essential. Whether attention explains a prediction is a property of the model and the
# task, to be tested, not read off a picture.
#
# **Written answer.** A head's heatmap puts 0.9 of one query's weight on token X. Give two reasons why
# this does not show that X caused the model's prediction, and describe one experiment that would test
# whether it did.

# %% [markdown] tags=["answer", "points:2"]
# First, the weight says how much of X's *value vector* the head mixes in, not how much that changes the
# output: a small value vector, or an output projection that discards it, makes a large weight matter
# little (Kobayashi et al. 2020), and other heads or layers may carry the same information (section 4).
# Second, after the first layer the vector at X's position is already a mixture of many tokens, so
# "attends to X" does not mean "reads token X" (rollout, section 5); and other weights could give the same
# output (section 6). To test it, intervene and measure: remove or replace X (or the head's weights on X)
# and see whether the prediction changes, compared with removing a token of low weight (Serrano and Smith
# 2019 ran such erasure tests on attention weights); or ablate the head and groups of heads and measure
# the change in the loss.

# %% [markdown] tags=["question:theory-22"]
# ### How do you visualize and interpret attention weights?
#
# Visualise with heatmaps per head and layer (theory-23 above), then summarise many inputs with numbers:
# entropy for focus, rollout for flow through layers, head removal for what the model needs. Trust a
# reading only once an intervention backs it: weights show where a head reads, not what caused the
# prediction (the debate of Jain and Wallace 2019 and Wiegreffe and Pinter 2019, section 6).
#
# - Recognisable heads: previous/next-token, delimiter and syntactic heads in BERT (Clark et al. 2019);
#   here layer 0 reads the previous token and layer 1 the answer (sections 2-3).
# - Deep layers attend over mixtures; rollout follows them to the input tokens (Abnar and Zuidema 2020).
# - The norm of weight × value says more about what a head passes on (Kobayashi et al. 2020).
# - Heads are redundant: removing one of ours changed nothing, removing a layer broke the model (section 4).
# - Weights are not unique: different weights can give the same output (section 6).

# %% [markdown]
# ## 7. Regularising attention
#
# A regulariser adds a term on the weights to the loss, or perturbs them in training, to state a prior
# about *how* the model should attend.
#
# ### 7.1 An entropy penalty
#
# $$\mathcal{L} = \mathcal{L}_{\text{task}} + \lambda \cdot \frac{1}{|\mathcal{R}|} \sum_{r \in \mathcal{R}} H(w_r)$$
#
# where $\mathcal{R}$ is the set of query rows that attend somewhere. With $\lambda > 0$ it pushes every
# head towards sharper attention; with $\lambda < 0$ towards spread-out attention (Attanasio et al. 2022
# reward high entropy to keep a hate-speech classifier from leaning on a few identity words).
#
# ### Exercise: `entropy_penalty`
#
# Implement `entropy_penalty(weights, mask=None)` in `src/attnlab/interpret.py`: weights `(..., L, S)`,
# mask broadcastable to `(..., L, S)`, `True` = may attend. Entries where the mask is `False` contribute
# nothing whatever their weight (the kept ones are not renormalised), and a query row with no `True`
# entry (a fully masked query) is left out of the mean; without a mask every row counts. Return a scalar
# in the weights' dtype (a NumPy scalar or 0-d array, not a Python float), and 0 (not NaN) when no row
# counts. A key-padding mask `(B, 1, 1, S)` leaves padding *queries* in (they attend to real keys); to
# drop them, combine the query and key masks with `&` (as below). You may call your `attention_entropy`.

# %%
from attnlab.interpret import entropy_penalty

rng = np.random.default_rng(0)
B, H, L, S = 2, 3, 5, 7
real_keys = np.array([[True] * 7, [True] * 4 + [False] * 3])       # (B, S): sequence 1 has 4 real tokens
real_queries = real_keys[:, :L]                                     # (B, L): the queries are the first L tokens
keep = real_queries[:, None, :, None] & real_keys[:, None, None, :]  # (B, 1, L, S): a real query, a real key
scores = rng.standard_normal((B, H, L, S))
w = np.exp(np.where(keep, scores, -np.inf) - scores.max(-1, keepdims=True))
w = np.divide(w, w.sum(-1, keepdims=True), out=np.zeros_like(w), where=keep.any(-1, keepdims=True))
print(f"penalty {entropy_penalty(w, keep):.4f} over", int(np.broadcast_to(keep, w.shape).any(-1).sum()),
      "counted rows of", B * H * L)
print("the same as the mean of attention_entropy over the counted rows:",
      np.isclose(entropy_penalty(w, keep), attention_entropy(w)[np.broadcast_to(keep, w.shape).any(-1)].mean()))

# %% tags=["check"]
check("interpret.entropy_penalty")

# %% [markdown]
# **Training with the penalty.** The NumPy function measures; to train with it we need a PyTorch twin
# that autograd can differentiate (checked against yours below). The same model, seed and batches as in
# section 1, now with $\lambda = 0.05$ on the mean entropy of every row of every head.

# %%
def entropy_penalty_torch(weights):
    """Mean row entropy of (..., L, S) weights in which every row counts (causal: none is fully masked)."""
    return -(weights * weights.clamp_min(1e-30).log()).sum(dim=-1).mean()   # 0 * log(1e-30) = 0


causal_np = np.tril(np.ones((L_SEQ, L_SEQ), dtype=bool))
print("twin vs your entropy_penalty:",
      f"{abs(entropy_penalty_torch(test_weights).item() - entropy_penalty(test_weights.numpy(), causal_np)):.1e}")

started = time.perf_counter()
sharp_model, sharp_losses = train_recall(penalty_weight=0.05, penalty=entropy_penalty_torch)
print(f"trained with the penalty in {time.perf_counter() - started:.1f} s; held-out accuracy "
      f"{accuracy(sharp_model, TEST):.3f} (without: {accuracy(model, TEST):.3f})")
with torch.no_grad():
    _, sharp_weights = sharp_model(TEST[0])
head_entropy = {name: attention_entropy(wts.numpy()).mean(axis=(1, 3))       # (n_layers, H)
                for name, wts in (("lambda = 0", test_weights), ("lambda = 0.05", sharp_weights))}
print("lower mean entropy in every head with the penalty:",
      bool(np.all(head_entropy["lambda = 0.05"] < head_entropy["lambda = 0"])))

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), gridspec_kw={"width_ratios": [1.3, 1, 1]})
axes[0].semilogy(losses, label="lambda = 0")
axes[0].semilogy(sharp_losses, label="lambda = 0.05 (task loss only)")
axes[0].set(xlabel="training step", ylabel="cross-entropy (nats, log scale)", title="task loss")
axes[0].legend()
top = max(h.max() for h in head_entropy.values())
for ax, (name, h) in zip(axes[1:], head_entropy.items()):
    image = ax.imshow(h, cmap="magma_r", vmin=0, vmax=top)
    for (i, j), value in np.ndenumerate(h):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value > top / 2 else "k")
    ax.set(xticks=range(4), yticks=range(2), xlabel="head", ylabel="layer", title=f"mean row entropy, {name}")
    fig.colorbar(image, ax=ax, label="nats")
fig.tight_layout()
plt.show()

# %% [markdown]
# The penalty does what it says: every head's mean entropy drops, at the same held-out accuracy. Whether
# sharper attention *helps* depends on the task; here it changes how readable the heads are, not how well
# the model recalls.
#
# ### 7.2 The doubly stochastic penalty (Show, Attend and Tell)
#
# A captioning decoder attends over $S$ image regions at each of $T$ steps, a history $a$ `(..., T, S)`
# whose rows sum to 1. Xu et al. (2015) also ask the *columns* to sum to about 1, so that over the whole
# caption the model pays about equal attention to every region, ignoring none and dwelling on none:
#
# $$P = \sum_{j=1}^{S} \Big(1 - \sum_{t=1}^{T} a_{tj}\Big)^2 \qquad \text{(one value per sequence, shape } (\dots,)\text{)}$$
#
# $P = 0$ exactly when every column sums to 1 (with $T = S$, a doubly stochastic matrix); when $T \ne S$ the
# columns hold $T$ in all and the smallest penalty is $(T - S)^2 / S$, with every column at $T / S$. In
# Xu et al.'s models $T$ (the words of a caption) is far below $S = 196$ (a $14 \times 14$ grid of
# regions), so the penalty in effect asks for equal totals, not totals of 1. They add $\lambda P$ to each
# caption's negative log-likelihood and found it important for their BLEU scores and for richer, more
# descriptive captions. It is a cousin of the coverage loss of notebook 03 (See et al. 2017), which
# charges each step for re-attending.
#
# ### Exercise: `doubly_stochastic_penalty`
#
# Implement `doubly_stochastic_penalty(attention_history)` in `src/attnlab/interpret.py`: `(..., T, S)` in,
# `(...,)` out (one penalty per sequence, not reduced over the batch), in the input's dtype. A padded step
# (a row of zeros) adds nothing to any column.

# %%
from attnlab.interpret import doubly_stochastic_penalty

rng = np.random.default_rng(0)
B, T, S = 3, 4, 6
history = np.exp(rng.standard_normal((B, T, S)))
history /= history.sum(axis=-1, keepdims=True)                 # (B, T, S): each step sums to 1
stuck = np.zeros((T, S))
stuck[:, 2] = 1.0                                              # every step on region 2
print("history", history.shape, "-> penalty", doubly_stochastic_penalty(history).shape,
      doubly_stochastic_penalty(history).round(3))
print(f"stuck on one region: {doubly_stochastic_penalty(stuck[None])[0]:.1f} = (1 - 4)^2 + 5 x 1; "
      f"smallest possible for T={T}, S={S}: (T - S)^2 / S = {(T - S) ** 2 / S:.3f}")

# %% tags=["check"]
check("interpret.doubly_stochastic_penalty")

# %% [markdown]
# **What the penalty does to a decoder.** A toy with no image: the attention logits of $T = 6$ steps over
# $S = 6$ regions are free parameters. The "task" loss is a cross-entropy towards a target per step that
# puts 0.6 on region 2 (a salient object the decoder keeps returning to) and 0.4 on region $t$ (what step
# $t$ would also describe). Adding $\lambda P$ trades the task against coverage: as $\lambda$ grows, weight
# leaves region 2 for the regions that were neglected.

# %%
T_toy, S_toy, salient = 6, 6, 2
target = 0.4 * torch.eye(T_toy, S_toy, dtype=torch.float64)
target[:, salient] += 0.6                                                # (T, S): each row sums to 1
histories = {}
for lam in (0.0, 0.3, 3.0):
    z = target.log().clamp_min(-20).clone().requires_grad_(True)        # start at the task's optimum
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(200):
        a = z.softmax(dim=-1)                                            # (T, S)
        task = -(target * z.log_softmax(dim=-1)).sum(dim=-1).mean()      # cross-entropy to the target
        coverage = ((1 - a.sum(dim=0)) ** 2).sum()                       # P, the torch twin
        opt.zero_grad()
        (task + lam * coverage).backward()
        opt.step()
    histories[lam] = z.detach().softmax(dim=-1).numpy()
print("torch twin vs your doubly_stochastic_penalty:",
      f"{abs(((1 - histories[3.0].sum(0)) ** 2).sum() - doubly_stochastic_penalty(histories[3.0])):.1e}")

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), constrained_layout=True)
regions, steps = [f"region {j}" for j in range(S_toy)], [f"step {t}" for t in range(T_toy)]
for ax, (lam, a) in zip(axes, histories.items()):
    plot_attention(a, steps, regions, ax=ax).images[0].set_clim(0, 1)
    ax.set(xlabel="image region (key)", ylabel="decoder step (query)",
           title=f"lambda = {lam}: P = {doubly_stochastic_penalty(a):.2f}, region {salient} receives "
                 f"{a[:, salient].sum():.2f}")
plt.show()

# %% [markdown]
# ### 7.3 Attention dropout, and the rest of the toolbox
#
# Dropout on the attention weights zeroes random weights in training and rescales the survivors by
# $1/(1-p)$ (notebook 04 builds it); BERT uses $p = 0.1$ (Devlin et al. 2019). Other ways to shape
# attention: supervise it towards known alignments (Liu et al. 2016), or replace the softmax by one that
# outputs exact zeros (sparsemax, Martins and Astudillo 2016; entmax, Peters et al. 2019).

# %% [markdown] tags=["question:theory-33"]
# ### Explain attention regularization techniques.
#
# They add a term on the attention weights to the loss, or perturb the weights in training, to encode a
# prior on how the model should attend. The main ones: an entropy penalty (sharper or, with the opposite
# sign, flatter attention), coverage-style penalties that make a decoder visit every source position, and
# attention dropout.
#
# - Entropy: $\lambda \cdot$ mean row entropy over real queries; $\lambda = 0.05$ lowered every head's
#   entropy at equal accuracy (section 7.1). Negative $\lambda$ spreads attention (Attanasio et al. 2022).
# - Doubly stochastic: $\lambda \sum_j (1 - \sum_t a_{tj})^2$ per sequence, `(..., T, S)` → `(...,)`;
#   Xu et al. (2015) report better BLEU and richer captions. A coverage loss charges re-attention instead
#   (See et al. 2017, notebook 03).
# - Attention dropout on the weights, rescaled by $1/(1-p)$ (BERT: $p = 0.1$, Devlin et al. 2019).
# - Supervised attention towards known alignments (Liu et al. 2016).
# - Common mistake: averaging over padding or fully masked rows, or NaN from $0 \ln 0$.

# %% [markdown]
# ## 8. A debugging gallery
#
# Attention bugs rarely crash: they produce numbers of the right shape. Below, one attention function
# with a switch for five classic bugs, run on the same inputs: a batch of 2 sequences of 8 tokens,
# causal, where sequence 1 is left-padded by 2 tokens (so its first two queries see only padding: fully
# masked rows), and $D = 256$, where the missing $1/\sqrt{D}$ is hard to miss.
#
# | bug | symptom in training | the check that finds it |
# |---|---|---|
# | $-\infty$ fill, plain softmax | NaN loss on the first batch with a fully masked row (e.g. left padding, causal) | every output finite, with a fully masked row in the test |
# | no $1/\sqrt{D}$ | slow start, near one-hot rows at initialisation | mean row entropy at initialisation well above 0 (score std near 1) |
# | inverted mask (`True` read as "masked") | attends to padding and the future; NaN where a row keeps everything | zero weight on every masked key |
# | future leak (causal mask off by one) | training loss suspiciously low, generation fails | change the future tokens: past outputs must not move |
# | softmax over the queries (`axis=-2`) | rows do not sum to 1; columns do | every kept row sums to 1 |

# %%
rng = np.random.default_rng(0)
B, L_dbg, E_dbg, D_dbg, D_v_dbg = 2, 8, 32, 256, 16
W_q, W_k = (rng.standard_normal((E_dbg, D_dbg)) / np.sqrt(E_dbg) for _ in range(2))  # q, k entries ~ N(0, 1)
W_v = rng.standard_normal((E_dbg, D_v_dbg)) / np.sqrt(E_dbg)
x_dbg = rng.standard_normal((B, L_dbg, E_dbg))
real = np.ones((B, L_dbg), dtype=bool)
real[1, :2] = False                                                 # sequence 1: 2 left-padding tokens
causal_dbg = np.tril(np.ones((L_dbg, L_dbg), dtype=bool))
keep_dbg = causal_dbg & real[:, None, :]                            # (B, L, S): causal and not padding


def attend(x, bug=None):
    """Self-attention (B, L, E) -> output (B, L, D_v), weights (B, L, L), with one optional bug."""
    q, k, v = x @ W_q, x @ W_k, x @ W_v
    scores = q @ k.swapaxes(-1, -2)                                 # (B, L, L)
    if bug != "no scale":
        scores = scores / np.sqrt(D_dbg)
    keep = keep_dbg
    if bug == "future leak":
        keep = np.tril(np.ones((L_dbg, L_dbg), dtype=bool), k=1) & real[:, None, :]   # sees one step ahead
    if bug == "inverted mask":
        keep = ~keep
    axis = -2 if bug == "softmax over queries" else -1
    filled = np.where(keep, scores, -np.inf)
    with np.errstate(invalid="ignore"):                             # -inf - -inf = NaN: the bug we show
        if bug in ("-inf, plain softmax", "inverted mask", "softmax over queries"):
            e = np.exp(filled - filled.max(axis=axis, keepdims=True))   # no guard for a row of -inf
            w = e / e.sum(axis=axis, keepdims=True)
        else:
            m = np.where(keep.any(axis=axis, keepdims=True), filled.max(axis=axis, keepdims=True), 0.0)
            e = np.where(keep, np.exp(filled - m), 0.0)
            total = e.sum(axis=axis, keepdims=True)
            w = np.divide(e, total, out=np.zeros_like(e), where=total > 0)   # fully masked row: zeros
    return w @ v, w


def check_finite(bug):
    out, w = attend(x_dbg, bug)
    return bool(np.isfinite(out).all() and np.isfinite(w).all())


def check_rows_sum_to_one(bug):
    _, w = attend(x_dbg, bug)
    live = keep_dbg.any(axis=-1)
    want = np.where(live, 1.0, 0.0)                                 # fully masked rows sum to 0
    return bool(np.allclose(w.sum(axis=-1), want))


def check_masked_keys_get_zero(bug):
    _, w = attend(x_dbg, bug)
    return bool(np.all(np.nan_to_num(w, nan=1.0)[~keep_dbg] == 0))


def check_causal(bug, t=4):
    """Replace the tokens after position t: outputs at positions <= t must not change."""
    changed = x_dbg.copy()
    changed[:, t + 1:] = np.random.default_rng(1).standard_normal(changed[:, t + 1:].shape)
    before, after = attend(x_dbg, bug)[0][:, : t + 1], attend(changed, bug)[0][:, : t + 1]
    return bool(np.allclose(before, after, equal_nan=True))


def check_not_saturated(bug):
    """At initialisation, rows with >= 2 visible keys should keep a good part of their entropy ceiling."""
    _, w = attend(x_dbg, bug)
    visible = keep_dbg.sum(axis=-1)
    ratio = attention_entropy(w)[visible >= 2] / np.log(visible[visible >= 2])
    return bool(np.nanmean(ratio) > 0.3) if np.isfinite(ratio).all() else False


bugs = [None, "-inf, plain softmax", "no scale", "inverted mask", "future leak", "softmax over queries"]
checks = {"outputs finite": check_finite, "rows sum to 1": check_rows_sum_to_one,
          "masked keys get 0": check_masked_keys_get_zero, "past ignores future": check_causal,
          "not saturated at init": check_not_saturated}
verdict = np.array([[checks[c](bug) for bug in bugs] for c in checks])    # (n_checks, n_bugs)
names = ["correct" if bug is None else bug for bug in bugs]

fig, axes = plt.subplots(2, 3, figsize=(14, 8.5), constrained_layout=True)
tokens_dbg = ["pad", "pad"] + [f"t{i}" for i in range(2, L_dbg)]
for ax, bug, name in zip(axes.flat, bugs, names):
    plot_attention(attend(x_dbg, bug)[1][1], tokens_dbg, tokens_dbg, ax=ax).images[0].set_clim(0, 1)
    failed = int((~verdict[:, bugs.index(bug)]).sum())
    ax.set_title(f"{name}: fails {failed} of {len(checks)} checks")
fig.suptitle("sequence 1 (2 left-padding tokens): weights of each implementation; blank cells are NaN")
plt.show()

fig, ax = plt.subplots(figsize=(10, 4.2))
ax.imshow(verdict.astype(float), cmap="RdYlGn", vmin=0, vmax=1)
for (i, j), ok in np.ndenumerate(verdict):
    ax.text(j, i, "pass" if ok else "FAIL", ha="center", va="center")
ax.set_xticks(range(len(names)), labels=names, rotation=25, ha="right")
ax.set_yticks(range(len(checks)), labels=list(checks))
ax.set(xlabel="implementation", ylabel="check", title="which check catches which bug")
plt.show()

# %% [markdown]
# Every bug fails at least one check and the correct code fails none. The structural checks are cheap and
# catch four of the five; the missing scale passes all of them (its outputs are finite, causal and
# normalised) and shows only in a statistic: rows close to one-hot at initialisation. Run such checks on
# tiny inputs with every dimension distinct, in float64, against a trusted reference (PyTorch's
# `scaled_dot_product_attention`, notebook 02), before any long training run.

# %% [markdown] tags=["question:theory-50"]
# ### How do you debug and improve attention model performance?
#
# Debug with checks that fail loudly on the known bugs: finite outputs with a fully masked row, kept rows
# summing to 1, zero weight on masked keys, past outputs unchanged when future tokens change, and row
# entropies well above 0 at initialisation (section 8). Improve by measuring: track per-head entropy and
# the loss, remove heads to see which matter, change one thing at a time.
#
# - Symptoms: NaN loss → fully masked rows; slow start, one-hot rows → no $1/\sqrt{D}$; weight on
#   padding → inverted mask; suspiciously low loss → future leak; rows not summing to 1 → softmax axis.
# - Compare with PyTorch's SDPA in float64 on tiny inputs whose dims all differ: no transpose can hide.
# - Entropy collapsing towards 0 in training goes with instability (Zhai et al. 2023, who add σReparam);
#   other remedies: warmup, a lower learning rate, QK layer norm (Dehghani et al. 2023).
# - Redundant heads can be pruned (Michel et al. 2019; section 4); regularisers shape attention (section 7).

# %% [markdown]
# ## Summary
#
# | idea | what to remember | where |
# |---|---|---|
# | heatmap | `(L, S)` as is, one labelled tick per token, a colour bar; grids of layers × heads | section 2 |
# | entropy | $-\sum_j w_j \ln w_j$ in nats, $0 \ln 0 = 0$, between 0 and $\ln S'$ | section 3 |
# | head removal | single-head removal misses redundancy: remove groups too | section 4 |
# | rollout | $\mathrm{rownorm}(\bar A_l + I)$ multiplied, later layers on the left; ignores values | section 5 |
# | explanations | weights are not unique; interventions decide whether they matter | section 6 |
# | regularisers | entropy penalty over real queries; doubly stochastic $\sum_j (1 - \sum_t a_{tj})^2$; dropout | section 7 |
# | debugging | finite, rows sum to 1, masked keys 0, causal, not saturated | section 8 |
#
# **Questions answered:** theory-23 (heatmaps), theory-22 (visualising and interpreting), theory-33
# (regularisation), theory-50 (debugging and improving).
#
# Next, notebook 10 takes attention to images: patches as tokens, and attention maps drawn over a picture.
