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
# # 03 · Attention in sequence-to-sequence models
#
# Attention entered mainstream deep learning through machine translation (Bahdanau et al. 2014; soft
# attention itself is older, Graves 2013): an RNN encoder reads a sentence, an RNN decoder writes its
# translation, and at every output step the decoder looks back at the source words it needs. This
# notebook builds that mechanism one decoder step at a time, trains it, and measures what it changes.
#
# **You will learn**
# - why one fixed-size encoder vector fails on long inputs, measured on a trained model, not asserted;
# - Bahdanau's additive attention from the previous decoder state over a bidirectional encoder;
# - Luong's dot, general and concat scores from the current state, and global versus local attention;
# - hard (sampled) versus soft attention, and why hard attention needs REINFORCE;
# - coverage (See et al. 2017), which stops a decoder from attending to the same words again and again;
# - how attention shortens the path that gradients travel, measured.
#
# **You will build** in `src/attnlab/seq2seq.py`: `bahdanau_attention`, `luong_attention`,
# `local_p_attention`, `coverage_attention`, `coverage_loss` and `sample_hard_attention`, and you will
# train a GRU encoder-decoder with attention in PyTorch (well under a minute on 2 CPU cores).
#
# **Shapes.** For one decoder step: `decoder_state` $s$ `(B, D_s)`, `encoder_outputs` $h$ `(B, S, D_h)`
# (the $S$ source positions), `mask` `(B, S)` boolean with `True` = may attend (padding is `False`).
# Every attention function returns `(context (B, D_h), weights (B, S))`; $A$ is the hidden width of a
# scoring MLP, $T$ the number of decoder steps. Projections are written `x @ W`. A row with no kept
# position gets zero weights and a zero context, never NaN.

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
from matplotlib.ticker import MaxNLocator

QUICK = os.environ.get("ATTNLAB_QUICK") == "1"  # CI smoke runs only: 150 steps, too few for what the text describes


def heatmap(ax, weights, title, xlabel="source position j", ylabel="decoder step t", xticks=None, yticks=None):
    """Attention weights (rows, S) as an image with labelled axes and a colour bar."""
    im = ax.imshow(weights, cmap="viridis", vmin=0, aspect="auto")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # positions are whole numbers
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks)
    plt.colorbar(im, ax=ax, fraction=0.046, label="weight")

# %% [markdown]
# ## 1. Bahdanau attention: a fresh context at every decoder step
#
# An encoder–decoder without attention (Sutskever et al. 2014; Cho et al. 2014) hands the decoder one
# vector, the encoder's final state, and every output word is generated from it. Notebook 01 counted why
# that fails: the vector's size is fixed while the sentence grows. Bahdanau et al. (2014) kept **all**
# encoder states and let the decoder choose among them at each step:
#
# 1. a **bidirectional** RNN reads the source forwards and backwards; the annotation of word $j$ is
#    $h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]$ `(D_h)`, so it summarises both sides of the word;
# 2. at output step $t$, the *previous* decoder state $s_{t-1}$ `(D_s)` scores every annotation with a
#    small MLP, the **additive** score
#    $$e_{tj} = w_v^\top \tanh(s_{t-1} W_s + h_j W_h),\qquad W_s\ (D_s, A),\ W_h\ (D_h, A),\ w_v\ (A,)$$
# 3. a softmax over the $S$ positions gives the weights $\alpha_{tj}$ `(S)`, and the context is
#    $c_t = \sum_j \alpha_{tj} h_j$ `(D_h)`;
# 4. the decoder then updates its state with the context, $s_t = f(s_{t-1}, y_{t-1}, c_t)$, and predicts
#    $y_t$ from $s_t$, $c_t$ and $y_{t-1}$.
#
# The score uses $s_{t-1}$ because the context is an *input* of the step that computes $s_t$. The
# keys' half, $h_j W_h$ `(S, A)`, does not depend on $t$: it is computed once per sentence. A padded
# batch adds a mask: padded source positions get weight exactly 0.
#
# **Exercise.** Implement `bahdanau_attention(decoder_state, encoder_outputs, W_s, W_h, w_v, mask=None)`
# in `src/attnlab/seq2seq.py` for a batch: $s$ `(B, D_s)`, $h$ `(B, S, D_h)` → `(context (B, D_h),
# weights (B, S))`. Use `masked_softmax` from notebook 01 for the weights.

# %%
from attnlab.seq2seq import bahdanau_attention

rng = np.random.default_rng(0)
B, S, D_s, D_h, A = 3, 7, 4, 6, 5
s_prev = rng.standard_normal((B, D_s))                  # (B, D_s) previous decoder states
enc = rng.standard_normal((B, S, D_h))                  # (B, S, D_h) annotations
W_s = rng.standard_normal((D_s, A)) / np.sqrt(D_s)      # (D_s, A)
W_h = rng.standard_normal((D_h, A)) / np.sqrt(D_h)      # (D_h, A)
w_v = rng.standard_normal(A)                            # (A,)
lengths = np.array([7, 4, 0])                           # sentence 2 is empty: a fully masked row
mask = np.arange(S)[None, :] < lengths[:, None]         # (B, S) True = may attend

context, weights = bahdanau_attention(s_prev, enc, W_s, W_h, w_v, mask=mask)
print("context", context.shape, " weights", weights.shape)
print("row sums of the weights:", weights.sum(axis=1).round(6), " (the empty sentence: 0, not NaN)")
fig, ax = plt.subplots(figsize=(6, 2.4))
heatmap(ax, weights, "Bahdanau weights of one decoder step (untrained)", ylabel="batch element b",
        yticks=[f"b={b}, length {n}" for b, n in enumerate(lengths)])
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("seq2seq.bahdanau_attention")

# %% [markdown] tags=["question:theory-3"]
# ### Describe the original attention mechanism in Bahdanau et al.
#
# Bahdanau et al. (2014) let an RNN translator compute a new context vector at every output step: the
# previous decoder state scores each encoder annotation with a one-layer MLP, a softmax turns the scores
# into an alignment, and the weighted sum of annotations feeds the next decoder update. The model learns
# to align and translate jointly, with no alignment supervision.
#
# - Encoder: a bidirectional RNN; $h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]$, so $h_j$ describes
#   word $j$ in both contexts. The decoder's first state comes from $\overleftarrow{h}_1$.
# - Score: $e_{tj} = w_v^\top\tanh(s_{t-1}W_s + h_jW_h)$, additive; $h_jW_h$ is precomputed once.
# - Step: $c_t = \sum_j\alpha_{tj}h_j$, then $s_t = f(s_{t-1}, y_{t-1}, c_t)$ and $y_t$ from $(s_t, c_t, y_{t-1})$.
# - Evidence: their attention model kept its BLEU on sentences of 50+ words where the fixed-vector model's
#   dropped sharply (Bahdanau et al. 2014, Fig. 2); section 2 reproduces the effect in miniature.
# - Cost: $O(S)$ scores per step, $O(TS)$ per sentence; the weights are an interpretable soft alignment.

# %% [markdown]
# ## 2. Training it: the bottleneck, measured
#
# Two GRU encoder–decoders learn to **reverse** a sequence of digits (`3 1 4 1 5` → `5 1 4 1 3`), a task
# generated in code whose difficulty grows with the length. Both have the same bidirectional encoder,
# decoder cell, output layer, data, optimiser and number of steps:
#
# - **no attention** (Cho et al. 2014): the decoder reads one fixed context at every step, the encoder's
#   final states $[\overrightarrow{h}_S; \overleftarrow{h}_1]$ `(D_h)`;
# - **attention** (Bahdanau et al. 2014): the context is recomputed at every step from $s_{t-1}$, exactly
#   `bahdanau_attention` in PyTorch.
#
# Each batch holds sequences of one length (2 to 14 digits), so no padding and no mask are needed here.
# The decoder is trained with *teacher forcing* (the true previous digit is its input) and evaluated
# with greedy decoding (its own previous prediction is its input). This is the section's one heavy cell.

# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)  # matrices this small gain nothing from threads, and a shared machine stays steady
VOCAB, BOS = 10, 10        # digits 0-9; token 10 starts every output
MAX_LEN, STEPS, BATCH = 14, (150 if QUICK else 400), 64


def reversal_batch(rng, n, length):
    """(source, decoder input, target), each (n, length) int64: the target is the source reversed."""
    x = rng.integers(0, VOCAB, size=(n, length))
    y = x[:, ::-1].copy()
    y_in = np.concatenate([np.full((n, 1), BOS), y[:, :-1]], axis=1)  # teacher forcing: shift right
    return torch.from_numpy(x), torch.from_numpy(y_in), torch.from_numpy(y)


class Seq2Seq(nn.Module):
    """A GRU encoder-decoder. With attention: Bahdanau's additive attention from s_{t-1}. Without: the
    decoder reads the encoder's final states as one fixed context at every step (Cho et al. 2014)."""

    def __init__(self, attention, emb=16, hidden=48, attn=32, bidirectional=True):
        super().__init__()
        self.attention = attention
        D_h = hidden * (2 if bidirectional else 1)          # width of an annotation h_j
        self.src_emb = nn.Embedding(VOCAB, emb)
        self.tgt_emb = nn.Embedding(VOCAB + 1, emb)
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=bidirectional)
        self.init_state = nn.Linear(hidden, hidden)          # s_0 = tanh(W <-h_1), as Bahdanau et al.
        self.W_s = nn.Linear(hidden, attn, bias=False)       # (D_s, A)
        self.W_h = nn.Linear(D_h, attn, bias=False)          # (D_h, A)
        self.w_v = nn.Linear(attn, 1, bias=False)            # (A,)
        self.cell = nn.GRUCell(emb + D_h, hidden)            # input [y_{t-1}; c_t]
        self.out = nn.Linear(hidden + D_h + emb, VOCAB)      # prediction from [s_t; c_t; y_{t-1}]

    def encode(self, src_embedded):
        h, last = self.encoder(src_embedded)                 # (B, S, D_h), (directions, B, hidden)
        s0 = torch.tanh(self.init_state(last[-1]))           # the backward state has read x_1 last
        summary = torch.cat(list(last), dim=-1)              # (B, D_h): the only context without attention
        return h, s0, summary, self.W_h(h)                   # keys h W_h (B, S, A): once per sentence

    def step(self, y_prev, s, h, summary, keys):
        """One decoder step: token y_{t-1} (B,), state s_{t-1} (B, D_s) -> logits (B, V), s_t, weights (B, S)."""
        weights = None
        if self.attention:
            scores = self.w_v(torch.tanh(self.W_s(s)[:, None, :] + keys)).squeeze(-1)  # (B, S)
            weights = torch.softmax(scores, dim=-1)
            context = torch.bmm(weights[:, None, :], h).squeeze(1)                     # (B, D_h)
        else:
            context = summary
        e = self.tgt_emb(y_prev)                                                        # (B, emb)
        s = self.cell(torch.cat([e, context], dim=-1), s)                               # s_t
        return self.out(torch.cat([s, context, e], dim=-1)), s, weights

    def forward(self, x, y_in, src_embedded=None):
        """Teacher-forced logits (B, T, V) and weights (B, T, S) (None without attention)."""
        h, s, summary, keys = self.encode(self.src_emb(x) if src_embedded is None else src_embedded)
        logits, weights = [], []
        for t in range(y_in.shape[1]):
            step_logits, s, w = self.step(y_in[:, t], s, h, summary, keys)
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, 1), (torch.stack(weights, 1) if self.attention else None)


@torch.no_grad()
def greedy(model, x):
    """Greedy decoding: predictions (B, S) and, with attention, weights (B, T, S)."""
    h, s, summary, keys = model.encode(model.src_emb(x))
    y, preds, weights = torch.full((x.shape[0],), BOS), [], []
    for _ in range(x.shape[1]):
        logits, s, w = model.step(y, s, h, summary, keys)
        y = logits.argmax(dim=-1)
        preds.append(y)
        weights.append(w)
    return torch.stack(preds, 1), (torch.stack(weights, 1) if model.attention else None)


def train(attention, steps=STEPS, seed=0):
    """Adam on batches of one random length each; both models see the same data stream."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Seq2Seq(attention)
    opt = torch.optim.Adam(model.parameters(), lr=8e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / steps)  # linear, to 10% at the end
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        x, y_in, y = reversal_batch(rng, BATCH, int(rng.integers(2, MAX_LEN + 1)))
        logits, _ = model(x, y_in)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        decay.step()
        losses.append(loss.item())
    return model, losses, time.perf_counter() - started


models, curves, seconds = {}, {}, {}
for name, attention in (("attention", True), ("no attention", False)):
    models[name], curves[name], seconds[name] = train(attention)
    n_params = sum(p.numel() for p in models[name].parameters() if p.requires_grad)
    print(f"{name:12s}: {STEPS} steps in {seconds[name]:.1f} s, {n_params:,} parameters, "
          f"final loss {np.mean(curves[name][-20:]):.3f}")
print(f"(measured on {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs visible, "
      f"PyTorch {torch.__version__}, 1 thread)")

# %%
lengths = list(range(2, MAX_LEN + 1))
accuracy = {name: {"token": [], "sequence": []} for name in models}
for L in lengths:
    x, _, y = reversal_batch(np.random.default_rng(1000 + L), 200, L)  # held-out sequences of length L
    for name, model in models.items():
        correct = greedy(model, x)[0] == y                               # (200, L)
        accuracy[name]["token"].append(correct.float().mean().item())
        accuracy[name]["sequence"].append(correct.all(dim=1).float().mean().item())

example = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]])            # (1, 12)
pred, example_weights = greedy(models["attention"], example)

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for name, style in (("attention", "-"), ("no attention", "--")):
    smooth = np.convolve(curves[name], np.ones(20) / 20, mode="valid")  # moving average over 20 steps
    axes[0].plot(np.arange(len(smooth)) + 20, smooth, style, label=name)
    axes[1].plot(lengths, accuracy[name]["token"], "o" + style, label=f"{name}: digits")
    axes[1].plot(lengths, accuracy[name]["sequence"], "s" + style, alpha=0.5, label=f"{name}: whole sequences")
axes[0].set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats, 20-step average)",
            title="training loss")
axes[1].set(xlabel="source length S", ylabel="accuracy (greedy decoding)", ylim=(-0.03, 1.03),
            title="accuracy against input length")
axes[0].legend()
axes[1].legend(fontsize=8)
heatmap(axes[2], example_weights[0].numpy(), "what attention learned (reversal)",
        xlabel="source digit (position j)", ylabel="output digit (step t)",
        xticks=example[0].tolist(), yticks=pred[0].tolist())
fig.tight_layout()
plt.show()
for name in models:
    print(f"{name:12s}: digit accuracy at S = 4, 8, 14: "
          + ", ".join(f"{accuracy[name]['token'][lengths.index(L)]:.2f}" for L in (4, 8, 14)))

# %% [markdown]
# With the same budget, the model without attention learns the short sequences and then falls apart as
# the source grows: it must squeeze up to 14 digits into one 96-number vector *and* learn to unpack
# them in reverse. The attention model reads each digit where it is. Its weights (right) form the
# anti-diagonal of reversal: output step $t$ attends to source position $S - 1 - t$, an alignment it
# discovered from the loss alone. This is one budget on one toy task; Bahdanau et al. (2014) measured the
# same trend, accuracy falling with length without attention and not with it, in full-scale translation.

# %% [markdown] tags=["question:theory-32"]
# ### How does attention help with alignment in translation?
#
# The weights $\alpha_{tj}$ say how much source word $j$ contributes to target word $t$, so the matrix
# `(T, S)` is a soft word alignment, learned from the translation loss alone. It replaces the separate
# alignment models of phrase-based translation with one the network adjusts to what it needs.
#
# - It handles reordering: Bahdanau et al. (2014, Fig. 3) show "European Economic Area" aligned to
#   "zone économique européenne", crossing lines; our reversal model learned the anti-diagonal above.
# - Soft, not one-to-one: a target word can read several source words (multi-word units, agreement).
# - Measurable: Luong et al. (2015) scored attention weights against gold alignments (alignment error rate).
# - Caveat: attention is not guaranteed to be a faithful alignment; Koehn and Knowles (2017) found
#   attention in some language pairs shifted away from the aligned word.
# - Uses: replacing an unknown output word by the most-attended source word (Luong et al. 2015), and
#   debugging by heatmap.

# %% [markdown] tags=["question:theory-30"]
# ### How do you implement attention in recurrent models?
#
# Run the encoder once and precompute the keys $hW_h$ `(B, S, A)`; then, at every decoder step, score the
# annotations against the decoder state, mask and softmax over $S$, and take the context $c_t$ `(B, D_h)`.
# The context then enters the recurrent cell and the output layer, exactly as `Seq2Seq.step` above does.
#
# - Where it goes: before the cell from $s_{t-1}$ (Bahdanau et al. 2014), or after it from $s_t$ with
#   $\tilde h_t = \tanh(W_c[c_t; s_t])$ predicting the word (Luong et al. 2015, section 3).
# - Luong's *input feeding* passes $\tilde h_{t-1}$ into the next step, so the decoder knows where it
#   looked.
# - Padded batches need a `(B, S)` mask so padding gets weight 0; bucketing by length avoids most padding.
# - Training uses teacher forcing, inference greedy or beam search; the recurrence keeps the loop
#   sequential in both, and each step costs $O(SA)$.
# - Check it: weights of each row sum to 1, masked positions get 0, and the alignment of a trained model
#   looks sensible (heatmap above).

# %% [markdown]
# ## 3. How attention shortens the gradient path
#
# Without attention, the loss reaches source word $j$ only through the recurrence: back through every
# decoder step, into the final encoder state, then back through every encoder step between the end
# and $j$. Each step multiplies the gradient by a Jacobian, and products of many Jacobians tend to
# shrink (Bengio et al. 1994; Pascanu et al. 2013). With attention, every decoder step reaches every
# annotation $h_j$ through one softmax and one sum: the path from the loss to word $j$ has a length
# that does not grow with the distance. We measure $\|\partial \mathcal{L} / \partial x_j\|$, the
# gradient of the reversal loss reaching the embedding of source position $j$, at initialisation (no
# training yet, so both models start from the same kind of weights) on 40-digit sources:
#
# - with a **unidirectional** encoder (Sutskever et al. 2014; Cho et al. 2014), where word $j$ sits
#   $S - 1 - j$ encoder steps before the final state;
# - with the **bidirectional** encoder of section 2, whose two final states sit next to the first and the
#   last word, so the middle of the source is furthest from both.

# %%
def source_gradient_norms(model, x, y_in, y):
    """Mean over the batch of ||dL/d e_j||, the gradient at the embedding of each source position: (S,)."""
    embedded = model.src_emb(x).detach().requires_grad_(True)  # (B, S, emb)
    logits, _ = model(x, y_in, src_embedded=embedded)
    F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)).backward()
    return embedded.grad.norm(dim=-1).mean(dim=0).numpy()


x40, y_in40, y40 = reversal_batch(np.random.default_rng(7), 64, 40)
fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
for ax, bidirectional in zip(axes, (False, True)):
    for name, attention, style in (("attention", True, "-"), ("no attention", False, "--")):
        torch.manual_seed(0)
        fresh = Seq2Seq(attention, bidirectional=bidirectional)  # untrained
        norms = source_gradient_norms(fresh, x40, y_in40, y40)
        ax.semilogy(np.arange(40), norms, "o" + style, ms=3, label=name)
        print(f"{'bi' if bidirectional else 'uni'}directional, {name:12s}: largest / smallest gradient over "
              f"the 40 positions = {norms.max() / norms.min():.1e}")
    ax.set(title=f"at initialisation, {'bidirectional' if bidirectional else 'unidirectional'} encoder, S = 40",
           xlabel="source position j", ylabel="gradient norm at the input embedding")
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Without attention the gradient shrinks by orders of magnitude with the distance to the encoder's final
# state(s): the first word of a unidirectional encoder, the middle words of a bidirectional one. With
# attention it stays within a small factor at every position. (This is at initialisation: training
# changes the weights, and gated cells can learn to carry gradients further, but the short path is there
# from the first step.)

# %% [markdown] tags=["question:theory-17"]
# ### How does attention help with the vanishing gradient problem?
#
# It adds short paths: every decoder step is connected to every encoder state through one softmax and one
# weighted sum, so the gradient for source word $j$ no longer has to survive a product of Jacobians over
# all the recurrent steps between $j$ and the end. The plot above measures it: at initialisation the
# fixed-vector model's gradient to the first of 40 words is orders of magnitude smaller, attention's is not.
#
# - Mechanism: $\partial c_t / \partial h_j = \alpha_{tj} I$ plus the path through the scores; no recurrence.
# - It does not fix the recurrence itself: gradients between distant encoder states still vanish, which
#   gated cells (LSTM, GRU) mitigate (Hochreiter and Schmidhuber 1997).
# - A saturated softmax gives a near-zero Jacobian (notebook 02), so attention can also starve gradients.
# - Self-attention pushes the idea to every pair of positions: path length $O(1)$ instead of $O(n)$
#   (Vaswani et al. 2017, Table 1).

# %% [markdown]
# ## 4. Luong attention: scoring from the current state
#
# Luong et al. (2015) simplified the recipe and compared score functions. Their decoder (a stack of
# LSTMs) first updates its state, then attends **from the current state** $s_t$ (their $h_t$), and
# predicts from the combination $\tilde h_t = \tanh(W_c [c_t; s_t])$:
#
# | score | formula | parameters | widths |
# |---|---|---|---|
# | dot | $s^\top h_j$ | none | $D_s = D_h$ |
# | general | $s^\top W h_j$ | $W$ `(D_s, D_h)` | any |
# | concat | $v^\top \tanh([s; h_j]\,W)$ | $W$ `(D_s + D_h, A)`, $v$ `(A,)` | any |
#
# "concat" is Bahdanau's additive score again: $[s; h_j]W = sW_{[:D_s]} + h_jW_{[D_s:]}$. dot and general
# are one matrix product for all positions; concat builds a `(B, S, A)` tensor. Luong et al. found dot
# worked well for global attention and general for local attention.
#
# **Exercise.** Implement `luong_attention(decoder_state, encoder_outputs, method, params, mask=None)`:
# `method` is `"dot"`, `"general"` or `"concat"` (anything else raises `ValueError`), `params` holds
# `"W"` (and `"v"` for concat).

# %%
from attnlab.seq2seq import luong_attention

rng = np.random.default_rng(1)
B, S, D_s, D_h, A = 2, 7, 4, 6, 5
s_now = rng.standard_normal((B, D_h))                   # (B, D_s) with D_s = D_h for dot
enc = rng.standard_normal((B, S, D_h)) / np.sqrt(D_h)   # (B, S, D_h)
params = {"dot": {},
          "general": {"W": rng.standard_normal((D_h, D_h)) / np.sqrt(D_h)},          # (D_s, D_h)
          "concat": {"W": rng.standard_normal((2 * D_h, A)) / np.sqrt(2 * D_h),      # (D_s + D_h, A)
                     "v": rng.standard_normal(A)}}                                    # (A,)
mask = np.ones((B, S), dtype=bool)
mask[1, 5:] = False                                      # element 1 has 5 source words
rows = []
for method in ("dot", "general", "concat"):
    context, weights = luong_attention(s_now, enc, method, params[method], mask=mask)
    print(f"{method:8s} context {context.shape}, weights {weights.shape}, row sums {weights.sum(axis=1).round(6)}")
    rows.append(weights[1])
fig, ax = plt.subplots(figsize=(6, 2.2))
heatmap(ax, np.stack(rows), "three scores, same states (batch element 1)", ylabel="score",
        yticks=["dot", "general", "concat"])
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("seq2seq.luong_attention")

# %% [markdown] tags=["question:theory-4"]
# ### How does Luong attention differ from Bahdanau attention?
#
# Mainly in where attention sits in the decoder step: Bahdanau et al. (2014) score from the previous
# state $s_{t-1}$ and feed the context into the recurrent update, while Luong et al. (2015) update the
# state first, score from the current $s_t$, and predict from $\tilde h_t = \tanh(W_c[c_t; s_t])$. Luong
# also offered cheaper multiplicative scores and a local variant.
#
# - Scores: Bahdanau uses the additive MLP; Luong compares dot, general ($s^\top W h_j$) and concat
#   (the additive form), finding dot good for global and general for local attention.
# - Encoder: Bahdanau's is bidirectional; Luong's is a unidirectional stack, attending from its top layer.
# - Input feeding: Luong feeds $\tilde h_{t-1}$ to the next step so the decoder remembers past alignments.
# - Scope: Luong adds local attention over a window (next section); Bahdanau's is global.
# - Cost: dot and general are matrix products, $O(SD)$ per step without an `(S, A)` tanh.

# %% [markdown] tags=["question:qa-10"]
# ### Bahdanau (additive) vs Luong (dot) attention.
#
# Additive attention scores a pair with a small MLP, $w_v^\top\tanh(sW_s + h_jW_h)$; dot attention with a
# similarity, $s^\top h_j$ (or $s^\top W h_j$). The dot family is one matrix product and became, scaled by
# $1/\sqrt{D}$, the Transformer's attention (Vaswani et al. 2017).
#
# - The two papers also differ in which state attends ($s_{t-1}$ or $s_t$): see theory-4 just above.
# - Additive handles $D_s \neq D_h$ and is nonlinear in the pair; plain dot needs $D_s = D_h$.
# - Additive materialises `(S, A)` per step; dot needs no intermediate larger than the `(S,)` scores.
# - Britz et al. (2017) found additive slightly but consistently better than unscaled multiplicative
#   scores in NMT; Vaswani et al. (2017) suspected large dot products and scaled them (notebook 01).

# %% [markdown]
# ## 5. Global versus local attention: local-p
#
# Global attention scores all $S$ positions at every step. Luong et al.'s **local** attention looks only
# at a window of $2D + 1$ positions around a centre $p_t$, which costs $O(D)$ per step instead of $O(S)$.
# In **local-m** the centre is $p_t = t$ (monotonic alignment); in **local-p** the decoder *predicts* it:
#
# $$p_t = (S - 1)\,\sigma\!\left(v_p^\top \tanh(s_t W_p)\right),\qquad
# a_{tj} = \mathrm{softmax}_{|j - p_t| \le D}\!\left(s_t^\top h_j\right)\,
# \exp\!\left(-\frac{(j - p_t)^2}{2\sigma^2}\right),\quad \sigma = \frac{D}{2}$$
#
# with $W_p$ `(D_s, A)`, $v_p$ `(A,)`. The softmax runs over the positions inside the window (and kept by
# the mask); the Gaussian then favours positions near $p_t$. It is *not* renormalised, so a row sums to
# less than 1, as in the paper. $p_t$ is a real number, not rounded, which keeps it differentiable: the
# gradient reaches $W_p$ and $v_p$ through the Gaussian.
#
# **$S - 1$ rather than $S$.** The paper writes $p_t = S\cdot\sigma(\dots)$, so $p_t \in [0, S]$. With
# positions numbered $0..S-1$, $S$ lets the centre sit one position past the last word; $S - 1$ keeps it
# on the sequence. The cell below shows the difference for a decoder that wants the last word
# (its sigmoid saturates at 0.999): with $S$ the centre lands off the end, the window loses a position,
# and no word gets the Gaussian's full weight.

# %%
S_demo, window = 20, 3
positions = np.arange(S_demo)
for name, scale in (("(S - 1) sigmoid, ours", S_demo - 1), ("S sigmoid, the paper's formula", S_demo)):
    centre = scale * 0.999
    inside = positions[np.abs(positions - centre) <= window]
    peak = np.exp(-(inside - centre) ** 2 / (2 * (window / 2) ** 2)).max()
    print(f"{name:31s}: p = {centre:5.2f}, window {[int(j) for j in inside]}, largest Gaussian factor {peak:.2f}")

sig = 0.5 * window                                   # sigma = D / 2
grid = np.linspace(0, 1, 5)                          # sigmoid values along a sentence
gauss = np.exp(-(positions[None, :] - (S_demo - 1) * grid[:, None]) ** 2 / (2 * sig ** 2))  # (5, S)
gauss[np.abs(positions[None, :] - (S_demo - 1) * grid[:, None]) > window] = 0.0             # outside: 0
fig, ax = plt.subplots(figsize=(8, 2.6))
heatmap(ax, gauss, f"the Gaussian factor for five centres (window D = {window}, sigma = D/2)",
        ylabel="centre p", yticks=[f"{p:.2f}" for p in (S_demo - 1) * grid])
fig.tight_layout()
plt.show()

# %% [markdown]
# **Exercise.** Implement `local_p_attention(decoder_state, encoder_outputs, W_p, v_p, window, mask=None)`
# with dot scores ($D_s = D_h$). Positions are `0..S-1`; the window $[p - D, p + D]$ includes both ends;
# everything outside it, or masked, gets weight 0. Careful with dtypes: `np.arange(S)` is int64, and
# int64 minus float32 gives float64.

# %%
from attnlab.seq2seq import local_p_attention

rng = np.random.default_rng(6)
B, S, D, A = 4, 16, 6, 5
enc = rng.standard_normal((B, S, D)) / np.sqrt(np.sqrt(D))   # (B, S, D_h)
s_now = rng.standard_normal((B, D)) / np.sqrt(np.sqrt(D))    # (B, D_s)
W_p = rng.standard_normal((D, A))                            # (D_s, A)
v_p = rng.standard_normal(A)                                 # (A,)
context, weights = local_p_attention(s_now, enc, W_p, v_p, window=3)
p = (S - 1) / (1 + np.exp(-(np.tanh(s_now @ W_p) @ v_p)))   # the centres, recomputed to label the plot
print("context", context.shape, " weights", weights.shape)
print("row sums (< 1: the Gaussian is not renormalised):", weights.sum(axis=1).round(3))
fig, ax = plt.subplots(figsize=(8, 2.6))
heatmap(ax, weights, "local-p weights: a window of 7 positions around each predicted centre",
        ylabel="batch element (centre p)", yticks=[f"p = {c:.2f}" for c in p])
ax.plot(p, np.arange(B), "w|", ms=14, mew=2)  # the centres
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("seq2seq.local_p_attention")

# %% [markdown] tags=["question:theory-10"]
# ### Explain global vs local attention mechanisms.
#
# Global attention scores every source position at every decoder step, $O(S)$ per step; local attention
# (Luong et al. 2015) first picks a centre $p_t$ and attends only to the $2D + 1$ positions around it,
# $O(D)$ per step. Local-m takes $p_t = t$; local-p predicts $p_t$ and multiplies the window's softmax by a
# Gaussian, $\sigma = D/2$.
#
# - Local is a differentiable compromise between soft (global) and hard attention: no sampling, no REINFORCE.
# - The predicted centre is real-valued, so gradients reach its predictor through the Gaussian.
# - Luong et al. (2015) report their best results with local-p (window $D = 10$).
# - It assumes alignments are roughly local; long-range reordering can fall outside the window.
# - The idea returned in Transformers as sliding-window attention (Longformer, Beltagy et al. 2020).

# %% [markdown]
# ## 6. Hard versus soft attention
#
# Soft attention returns the *average* $c = \sum_j \alpha_j h_j$. **Hard** attention (Xu et al. 2015)
# *samples* one position $z \sim \mathrm{Categorical}(\alpha)$ and returns $h_z$. Since $z$ is random,
# $h_z$ is a random vector, and its expectation is the soft context:
#
# $$\mathbb{E}_z[h_z] = \sum_j P(z = j)\, h_j = \sum_j \alpha_j h_j = c.$$
#
# **Exercise.** Implement `sample_hard_attention(weights, rng)`: weights `(..., S)` → a one-hot array
# of the same shape and dtype, one position sampled per row with probability equal to its weight. Use
# only `rng` (a `numpy.random.Generator`), so that the same generator state gives the same sample. A
# row of zeros (a fully masked query) stays zeros.

# %%
from attnlab.seq2seq import sample_hard_attention

rng = np.random.default_rng(3)
S, D_h = 6, 4
alpha = np.array([0.05, 0.4, 0.0, 0.25, 0.2, 0.1])   # (S,) soft weights; position 2 is masked
h = rng.standard_normal((S, D_h))                    # (S, D_h) annotations
soft = alpha @ h                                     # (D_h,) the soft context

n_max = 20_000
one_hot = sample_hard_attention(np.tile(alpha, (n_max, 1)), rng)  # (n, S): one sample per row
hard = one_hot @ h                                                # (n, D_h) sampled contexts h_z
print("empirical frequencies:", (one_hot.mean(axis=0)).round(3), " weights:", alpha)
ns = np.array([10, 100, 1_000, 10_000, n_max])
errors = [np.linalg.norm(hard[:n].mean(axis=0) - soft) for n in ns]
slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.loglog(ns, errors, "o-", label=f"measured (fitted slope {slope:.2f})")
ax.loglog(ns, errors[0] * np.sqrt(ns[0] / ns), "k:", label=r"$1/\sqrt{n}$")
ax.set(xlabel="number of hard samples n", ylabel=r"$\|\,\mathrm{mean}_n(h_z) - c_{soft}\|$",
       title="the average of hard contexts converges to the soft context")
ax.legend()
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("seq2seq.sample_hard_attention")

# %% [markdown]
# **Why hard attention needs REINFORCE.** The sample $z$ is a discrete choice: a small change of the
# scores either leaves $z$ where it is (gradient 0) or flips it (no derivative). So backpropagation
# cannot reach the scores through $h_z$. The score-function estimator (REINFORCE, Williams 1992)
# differentiates the *probability* of the choice instead: for any reward $R(z)$ (say, the
# log-likelihood of the next word given $h_z$),
#
# $$\nabla_\theta\, \mathbb{E}_{z\sim p_\theta}[R(z)] = \mathbb{E}_{z\sim p_\theta}\big[(R(z) - b)\,\nabla_\theta \log p_\theta(z)\big],$$
#
# estimated by averaging over samples. Any baseline $b$ that does not depend on $z$ leaves it unbiased
# and can cut its variance a lot; Xu et al. (2015) use a moving average of past rewards. With
# $p_\theta = \mathrm{softmax}(e)$, $\nabla_e \log p(z) = \mathrm{onehot}(z) - \alpha$. Below, the
# estimate for a reward per position is compared with the exact gradient
# $\partial\,\mathbb{E}[R]/\partial e_j = \alpha_j (R_j - \sum_k \alpha_k R_k)$, with and without a baseline.

# %%
rng = np.random.default_rng(4)
reward = np.array([0.0, 1.0, 0.0, 3.0, -1.0, 0.5]) + 10.0  # (S,) R(z = j); the +10 makes b matter
exact = alpha * (reward - alpha @ reward)                  # (S,) d E[R] / d scores
print(f"exact gradient           {exact.round(3)}")
for baseline_name, b in (("no baseline", 0.0), ("baseline b = E[R]", alpha @ reward)):
    estimates = []
    for _ in range(200):                                   # 200 independent estimates of 100 samples each
        z = sample_hard_attention(np.tile(alpha, (100, 1)), rng)           # (100, S) one-hot samples
        R = z @ reward                                                     # (100,) reward of each sample
        estimates.append(((R - b)[:, None] * (z - alpha)).mean(axis=0))   # REINFORCE, (S,)
    estimates = np.array(estimates)
    print(f"{baseline_name:17s}: mean {estimates.mean(axis=0).round(3)}, "
          f"spread (std over estimates) {estimates.std(axis=0).mean():.3f}")

# %% [markdown] tags=["question:theory-28"]
# ### What is hard vs soft attention?
#
# Soft attention returns the weighted average of all values, $\sum_j\alpha_jh_j$, and is trained by plain
# backpropagation; hard attention samples one position $z\sim\alpha$ and reads $h_z$ alone, which is not
# differentiable, so it is trained with REINFORCE (Xu et al. 2015 compare both for image captioning). The
# soft context is the expectation of the hard one (measured above).
#
# - Hard: the gradient goes through $\log p(z)$, times a reward minus a baseline; high variance (above).
# - Xu et al. (2015) add a moving-average baseline and an entropy bonus; Mnih et al. (2014) train glimpse
#   locations the same way.
# - Soft costs $O(S)$ per query and sees everything; hard reads one location, which pays off when
#   reading is expensive (large images, external memories).
# - Middle grounds: local attention (section 5) and Gumbel-softmax relaxations (Jang et al. 2017).

# %% [markdown]
# ## 7. Coverage: remembering where the decoder has looked
#
# An attention decoder has no memory of its past weights other than its state, and in practice it
# often attends to the same source words again and again, repeating phrases (summaries, long
# translations) or skipping others. **Coverage** (Tu et al. 2016; See et al. 2017) keeps the running sum
# of past weights, $c_t = \sum_{t' < t} \alpha_{t'}$ `(B, S)`, and gives it to the scorer:
#
# $$e_{tj} = w_v^\top \tanh(s_t W_s + h_j W_h + c_{tj}\, w_c),\qquad w_c\ (A,)$$
#
# so the model *can* lower the score of covered positions. To make it *want* to, See et al. add a
# coverage loss to the training loss:
#
# $$\mathrm{covloss} = \sum_t \sum_j \min(\alpha_{tj}, c_{tj}),$$
#
# which charges a step only for weight placed where earlier steps already looked; each step pays at
# most 1. Attending to a position once is free, unlike a penalty that forces every position to be
# covered exactly once, which would not suit summarisation (See et al. 2017).
#
# **Exercises.** Implement `coverage_attention(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c,
# w_v, mask=None)` and `coverage_loss(attention_history)`, history `(B, T, S)` → `(B,)`.

# %%
from attnlab.seq2seq import coverage_attention, coverage_loss

rng = np.random.default_rng(4)
S, D_s, D_h, A, T = 8, 4, 6, 5, 7
enc = rng.standard_normal((1, S, D_h))                    # (1, S, D_h) one source sentence
stuck = rng.standard_normal((1, D_s))                     # (1, D_s) a decoder state that does not move on
W_s = rng.standard_normal((D_s, A)) / np.sqrt(D_s)
W_h = 2.0 * rng.standard_normal((D_h, A)) / np.sqrt(D_h)
w_v = 5.0 * rng.standard_normal(A)                        # (A,) large: a peaked, confident attention
w_c_by_hand = -8.0 * np.sign(w_v)                         # (A,) more coverage -> lower score, set by hand

histories = {}
for name, w_c in (("without coverage (w_c = 0)", np.zeros(A)), ("with coverage (w_c set by hand)", w_c_by_hand)):
    coverage, steps = np.zeros((1, S)), []
    for t in range(T):
        _, weights = coverage_attention(stuck, enc, coverage, W_s, W_h, w_c, w_v)
        steps.append(weights[0])
        coverage = coverage + weights                     # the caller updates the coverage
    histories[name] = np.stack(steps)[None]               # (1, T, S)

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for ax, (name, history) in zip(axes, histories.items()):
    heatmap(ax, history[0], f"{name}\ncoverage loss {coverage_loss(history)[0]:.2f}")
fig.tight_layout()
plt.show()

# %% [markdown]
# A decoder state that does not change stands for a decoder that has lost track of its progress: left
# alone, it attends to the same position at every step, which is how repetition starts, and the
# coverage loss charges it almost 1 for every step after the first. With a coverage weight that lowers
# the score of covered positions (set by hand here; See et al. learn it, pushed by the loss), the same
# state moves on to positions it has not read yet and the loss falls several-fold. By the last step
# almost everything is covered, and the weights spread out: coverage says where not to look again, not
# where to look next.

# %% tags=["check"]
check("seq2seq.coverage_attention")

# %% tags=["check"]
check("seq2seq.coverage_loss")

# %% [markdown] tags=["question:theory-31"]
# ### What is the coverage mechanism in attention?
#
# Coverage keeps a running sum of the attention weights of past decoder steps, $c_t = \sum_{t'<t}\alpha_{t'}$,
# and feeds it into the attention score, so the model knows which source words it has already used. It
# was introduced against over- and under-translation in NMT (Tu et al. 2016) and against repetition in
# summarisation (See et al. 2017).
#
# - Score: $w_v^\top\tanh(s_tW_s + h_jW_h + c_{tj}w_c)$; the coverage is one extra feature per position.
# - Loss: See et al. add $\lambda\sum_t\sum_j\min(\alpha_{tj}, c_{tj})$ ($\lambda = 1$), at most 1 per step,
#   free the first time a word is read.
# - They switched coverage on for a short final phase of training; with it their summaries repeated far
#   less.
# - Heatmap check: without coverage a stuck decoder keeps lighting the same columns (section 7).

# %% [markdown]
# ## 8. In your own words
#
# A colleague's attention-based summariser repeats the same sentence three times. In 3–4 sentences,
# say what coverage adds to the model, what the coverage loss charges, and why `min(a, c)` rather than,
# say, the squared difference between the coverage and 1.

# %% [markdown] tags=["answer", "points:2"]
# Coverage gives the attention scorer a running total of how much each source position has already been
# attended, $c_t = \sum_{t'<t}\alpha_{t'}$, as an extra input to the score, so the model can learn to lower
# the score of positions it has used. The coverage loss $\sum_j\min(\alpha_{tj}, c_{tj})$ charges a step
# only for attention placed on positions earlier steps already covered, so repeating a sentence (attending
# to its words again) costs up to 1 per step, while reading a word for the first time costs nothing.
# Using the minimum bounds the penalty and does not force every source position to be covered exactly
# once, as $(c - 1)^2$ would: a summary should skip most of the source, so only re-attention is penalised.

# %% [markdown]
# ## Summary
#
# | piece | formula | shapes |
# |---|---|---|
# | additive (Bahdanau) | $w_v^\top\tanh(s_{t-1}W_s + h_jW_h)$ | $s$ `(B, D_s)`, $h$ `(B, S, D_h)` → scores `(B, S)` |
# | Luong | dot $s^\top h_j$, general $s^\top Wh_j$, concat $v^\top\tanh([s; h_j]W)$ | from the current $s_t$ |
# | context | $c_t = \sum_j\alpha_{tj}h_j$ | `(B, S)` × `(B, S, D_h)` → `(B, D_h)` |
# | local-p | window $\lvert j - p\rvert \le D$, softmax × Gaussian ($\sigma = D/2$) | $p = (S-1)\,\sigma(\cdot)$ |
# | hard | $z\sim\alpha$, context $h_z$; $\mathbb{E}[h_z] = c$ | one-hot `(..., S)` |
# | coverage | $c_t = \sum_{t'<t}\alpha_{t'}$; loss $\sum_t\sum_j\min(\alpha_{tj}, c_{tj})$ | `(B, S)`; `(B, T, S)` → `(B,)` |
#
# Measured here: a fixed-vector encoder–decoder loses accuracy as the input grows where the attention
# model does not, attention learns the alignment on its own, and it delivers gradient to early inputs
# that the recurrence alone lets vanish.
#
# Questions answered: theory-3 (Bahdanau), theory-32 (alignment), theory-30 (attention in recurrent
# models), theory-17 (vanishing gradients), theory-4 and qa-10 (Luong vs Bahdanau), theory-10 (global vs
# local), theory-28 (hard vs soft), theory-31 (coverage). Next, notebook 04 runs many attentions side by
# side (multi-head attention) and builds the Transformer block around them.
