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
# - hard (sampled) versus soft attention, why backpropagation cannot train hard attention, and how
#   REINFORCE estimates its gradient instead;
# - coverage (Tu et al. 2016; See et al. 2017), which discourages a decoder from attending to the same
#   words again and again;
# - how attention shortens the path that gradients travel, measured.
#
# **You will build** in `src/attnlab/seq2seq.py`: `bahdanau_attention`, `luong_attention`,
# `local_p_attention`, `coverage_attention`, `coverage_loss` and `sample_hard_attention`, and you will
# train a GRU encoder-decoder with attention in PyTorch, small enough for 2 CPU cores (the training cell
# prints how long it took).
#
# **Shapes.** For one decoder step: `decoder_state` $s$ `(B, D_s)`, `encoder_outputs` $h$ `(B, S, D_h)`
# (the $S$ source positions), `mask` `(B, S)` boolean with `True` = may attend (padding is `False`).
# Every attention function returns `(context (B, D_h), weights (B, S))`; $A$ is the hidden width of a
# scoring MLP, $T$ the number of decoder steps. Projections are written `x @ W`. A row with no kept
# position gets zero weights and a zero context, never NaN. Outputs keep the inputs' dtype (float32 in,
# float32 out).

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


def heatmap(ax, weights, title, xlabel="source position j", ylabel="decoder step t", xticks=None, yticks=None,
            colorbar="weight"):
    """Attention weights (rows, S) as an image with labelled axes and a colour bar."""
    im = ax.imshow(weights, cmap="viridis", vmin=0, aspect="auto")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # positions are whole numbers
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks)
    plt.colorbar(im, ax=ax, fraction=0.046, label=colorbar)

# %% [markdown]
# ## 1. Bahdanau attention: a fresh context at every decoder step
#
# An encoder–decoder without attention (Sutskever et al. 2014; Cho et al. 2014a) hands the decoder one
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
# previous decoder state scores each encoder annotation with a one-hidden-layer MLP, a softmax turns the
# scores into an alignment, and the weighted sum of annotations feeds the next decoder update. The model
# learns to align and translate jointly, with no alignment supervision.
#
# - Encoder: a bidirectional RNN; $h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]$, so $h_j$ describes
#   word $j$ in both contexts. The decoder's first state comes from $\overleftarrow{h}_1$.
# - Score: $e_{tj} = w_v^\top\tanh(s_{t-1}W_s + h_jW_h)$, additive; $h_jW_h$ is precomputed once.
# - Step: $c_t = \sum_j\alpha_{tj}h_j$, then $s_t = f(s_{t-1}, y_{t-1}, c_t)$ and $y_t$ from $(s_t, c_t, y_{t-1})$.
# - Evidence: RNNsearch-50 kept its BLEU on sentences of 50+ words, where the fixed-vector baseline's fell
#   (Bahdanau et al. 2014, Fig. 2); section 2 reproduces the trend in miniature.
# - Cost: $S$ scores of width $A$ per step, $O(TSA)$ per sentence.

# %% [markdown]
# ## 2. Training it: the bottleneck, measured
#
# Two GRU encoder–decoders learn to **reverse** a sequence of digits (`3 1 4 1 5` → `5 1 4 1 3`), a task
# generated in code whose difficulty grows with the length. Both have the same bidirectional encoder,
# decoder cell, output layer, data, optimiser and number of steps:
#
# - **no attention** (as in Cho et al. 2014a, here with the bidirectional encoder): the decoder reads one
#   fixed context at every step, the encoder's final states $[\overrightarrow{h}_S; \overleftarrow{h}_1]$
#   `(D_h)`;
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
    decoder reads the encoder's final states as one fixed context at every step (Cho et al. 2014a)."""

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
    model = models[name]
    scorer = sum(p.numel() for layer in (model.W_s, model.W_h, model.w_v) for p in layer.parameters())
    n_params = sum(p.numel() for p in model.parameters()) - (0 if attention else scorer)  # the ones it uses
    print(f"{name:12s}: {STEPS} steps in {seconds[name]:.1f} s, {n_params:,} parameters in use, "
          f"final loss {np.mean(curves[name][-20:]):.3f}")
D_h_trained = models["no attention"].W_h.in_features  # width of the fixed context (2 x hidden)
print(f"the fixed context without attention: one vector of D_h = {D_h_trained} numbers")
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
peak = example_weights[0].argmax(dim=-1)                                   # (T,) most-attended position
reversed_position = example.shape[1] - 1 - torch.arange(example.shape[1])  # (T,) S - 1 - t
offset = (peak - reversed_position).abs()
print(f"example: the peak sits exactly on S - 1 - t at {(offset == 0).float().mean():.0%} of the steps, "
      f"within one position of it at {(offset <= 1).float().mean():.0%}")

# %% [markdown]
# With the same budget, the model without attention learns the short sequences and then falls apart as
# the source grows: it must squeeze up to 14 digits into one $D_h$-number vector (printed above) *and*
# learn to unpack them in reverse. The attention model reads each digit where it is. Its weights (right)
# form a band along the anti-diagonal of reversal, around source position $S - 1 - t$ at output step
# $t$, an alignment it discovered from the loss alone. The peak is often one position off (printed): a
# bidirectional annotation $h_j$ also carries its neighbours, so reading $h_{j+1}$ can still yield digit
# $j$. Attention weights are a soft, approximate alignment, not an exact one. This is one budget and one
# seed on one toy task. In translation, Cho et al. (2014b) measured BLEU falling fast with sentence length
# for a fixed-vector encoder–decoder, and Bahdanau et al. (2014, Fig. 2) showed their attention model
# (RNNsearch-50) holding its BLEU on sentences of 50 words and more.

# %% [markdown] tags=["question:theory-32"]
# ### How does attention help with alignment in translation?
#
# The weights $\alpha_{tj}$ say how much source word $j$ contributes to target word $t$, so the `(T, S)`
# matrix is a soft word alignment, learned from the translation loss alone. It replaces the separately
# trained alignment models of phrase-based translation.
#
# - Reordering: Bahdanau et al. (2014, Fig. 3) align "European Economic Area" with "zone économique
#   européenne" in reversed order; our reversal model learned the anti-diagonal above.
# - Soft, not one-to-one: a target word can read several source words (multi-word units, agreement).
# - Measurable: Luong et al. (2015) scored attention against gold alignments (alignment error rate).
# - Caveat: it is not guaranteed to be a faithful alignment; Koehn and Knowles (2017) found a
#   German–English model whose attention sat one word off the aligned word (our peak is often off by one).
# - Uses: replacing an unknown output word by its most-attended source word, copied or looked up in a
#   dictionary (Jean et al. 2015), and debugging by heatmap.

# %% [markdown] tags=["question:theory-30"]
# ### How do you implement attention in recurrent models?
#
# Run the encoder once and precompute the keys $hW_h$ `(B, S, A)`; then, at every decoder step, score the
# annotations against the decoder state, mask and softmax over $S$, and take the context $c_t$ `(B, D_h)`.
# The context then enters the recurrent cell and the output layer, exactly as `Seq2Seq.step` above does.
#
# - Where it goes: before the recurrent update from $s_{t-1}$ (Bahdanau et al. 2014) or after it from
#   $s_t$ (Luong et al. 2015); theory-4 (section 4) compares the two.
# - Padded batches need a `(B, S)` mask so padding gets weight 0; bucketing by length avoids most padding.
# - Training uses teacher forcing, inference greedy or beam search; the recurrence keeps the decoder loop
#   sequential in both, and each additive step costs $O(SA)$.
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
# - with a **unidirectional** encoder (Sutskever et al. 2014; Cho et al. 2014a), where word $j$ sits
#   $S - 1 - j$ encoder steps before the final state (Sutskever et al. found that feeding the source in
#   reverse helped, and explained it this way: it brings the first source words close to the first
#   target words);
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
# It adds short paths: every decoder step reaches every encoder state through one softmax and one
# weighted sum, so the gradient for source word $j$ no longer has to survive a product of Jacobians over
# all the recurrent steps between $j$ and the end. Measured above at initialisation: with a
# unidirectional encoder, the fixed-vector model's gradient at word 1 of 40 is orders of magnitude below
# that at word 40; with attention all positions get about the same.
#
# - Mechanism: $\partial c_t / \partial h_j = \alpha_{tj} I$ plus a path through the scores. So a position
#   with weight near 0 gets little gradient, and a saturated softmax starves the scores (notebook 02).
# - The recurrence itself is not fixed: gradients between distant encoder states can still vanish
#   (gated cells mitigate it: LSTM, Hochreiter and Schmidhuber 1997).
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
# are one matrix product for all positions; concat builds a `(B, S, A)` tensor. Luong et al. also tried
# *location* weights, $\mathrm{softmax}(s_t W_a)$, computed without looking at the source states. They found dot
# worked well for global attention and general for local attention, while concat did poorly in their
# implementation (Luong et al. 2015, Table 4 and its discussion).
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
# similarity, $s^\top h_j$ (or Luong's general $s^\top W h_j$). The dot family is one matrix product and,
# scaled by $1/\sqrt{D}$, became the Transformer's attention (Vaswani et al. 2017).
#
# - The score comparison in full (cost, memory, quality in NMT, why the scale) is theory-6 in notebook 01.
# - The two papers differ in more than the score: which state asks ($s_{t-1}$ or $s_t$), where the
#   context goes, local attention and input feeding; see theory-4 just above.
# - Additive handles $D_s \neq D_h$ and is nonlinear in the pair; plain dot needs $D_s = D_h$.

# %% [markdown]
# ## 5. Global versus local attention: local-p
#
# Global attention scores all $S$ positions at every step. Luong et al.'s **local** attention looks only
# at the window $[p_t - D, p_t + D]$ around a centre $p_t$, at most $2D + 1$ positions (exactly $2D$ when
# $p_t$ is not a whole number), which costs $O(D)$ per step instead of $O(S)$.
# In **local-m** the centre is $p_t = t$ (monotonic alignment); in **local-p** the decoder *predicts* it:
#
# $$p_t = (S - 1)\,\sigma\!\left(v_p^\top \tanh(s_t W_p)\right),\qquad
# a_{tj} = \mathrm{softmax}_{|j - p_t| \le D}\!\left(s_t^\top h_j\right)\,
# \exp\!\left(-\frac{(j - p_t)^2}{2\sigma^2}\right),\quad \sigma = \frac{D}{2}$$
#
# with $W_p$ `(D_s, A)`, $v_p$ `(A,)`. The paper allows any of the three scores inside the softmax; we use
# dot, and their best model used general. The softmax runs over the positions inside the window (and
# kept by the mask); the Gaussian then favours positions near $p_t$. It is *not* renormalised, so a row
# sums to less than 1, as in the paper. $p_t$ is a real number, not rounded, which keeps it differentiable: the
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
        ylabel="centre p", yticks=[f"{p:.2f}" for p in (S_demo - 1) * grid], colorbar="Gaussian factor")
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
half_width = 3                                               # D
context, weights = local_p_attention(s_now, enc, W_p, v_p, window=half_width)
p = (S - 1) / (1 + np.exp(-(np.tanh(s_now @ W_p) @ v_p)))   # the centres, recomputed to label the plot
print("context", context.shape, " weights", weights.shape)
print("row sums (< 1: the Gaussian is not renormalised):", weights.sum(axis=1).round(3))
print("positions inside each window:", (weights > 0).sum(axis=1),
      f" (2D = {2 * half_width} when p is not a whole number and the window is not cut by an end)")
fig, ax = plt.subplots(figsize=(8, 2.6))
heatmap(ax, weights, f"local-p weights: the window |j - p| <= {half_width} around each predicted centre (white)",
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
# (Luong et al. 2015) first picks a centre $p_t$ and attends only to the at most $2D + 1$ positions within
# $D$ of it, $O(D)$ per step. Local-m takes $p_t = t$; local-p predicts $p_t$ and multiplies the window's
# softmax by a Gaussian, $\sigma = D/2$.
#
# - A soft–hard compromise inspired by Xu et al. (2015), differentiable almost everywhere: no REINFORCE.
# - The predicted centre is real-valued, so gradients reach its predictor through the Gaussian.
# - Luong et al.'s best single model (WMT'14 English→German, 20.9 BLEU with unknown-word replacement)
#   used local-p with the *general* score and $D = 10$; each global variant scored lower (Luong et al.
#   2015, Tables 1 and 4).
# - It assumes a target word needs only source words within $D$ of one centre (local-m: of position $t$).
# - Transformers revived it as sliding-window attention (e.g. Longformer, Beltagy et al. 2020).

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
# **Why backpropagation cannot train hard attention.** The sample $z$ is a discrete choice: a small
# change of the scores either leaves $z$ where it is (gradient 0) or flips it (no derivative). So
# backpropagation cannot reach the scores through $h_z$. The exact gradient of the expected reward is a
# sum over every possible choice, one run of the rest of the model per choice: $S$ runs for one step,
# $S^T$ for a caption of $T$ steps whose later choices depend on earlier ones. The score-function
# estimator (REINFORCE, Williams 1992) differentiates the *probability* of the choice instead: for any
# reward $R(z)$,
#
# $$\nabla_\theta\, \mathbb{E}_{z\sim p_\theta}[R(z)] = \mathbb{E}_{z\sim p_\theta}\big[(R(z) - b)\,\nabla_\theta \log p_\theta(z)\big],$$
#
# estimated by averaging over samples. Xu et al. (2015) reach it from a variational lower bound on the
# caption's log-likelihood, $\sum_z p(z)\log p(y \mid z) \le \log p(y)$ (Jensen's inequality): the
# gradient of the bound with respect to the attention parameters is this estimator with reward
# $R(z) = \log p(y \mid z)$. Any baseline $b$ that does not depend on $z$ leaves the estimate unbiased
# and can cut its variance a lot; Xu et al. use a moving average of past rewards. With
# $p_\theta = \mathrm{softmax}(e)$, $\nabla_e \log p(z) = \mathrm{onehot}(z) - \alpha$. Below, the
# estimate for a reward per position is compared with the exact gradient
# $\partial\,\mathbb{E}[R]/\partial e_j = \alpha_j (R_j - \sum_k \alpha_k R_k)$, with and without a baseline.

# %%
rng = np.random.default_rng(4)
reward = np.array([0.0, 1.0, 0.0, 3.0, -1.0, 0.5]) + 10.0  # (S,) R(z = j); the +10 makes b matter
exact = alpha * (reward - alpha @ reward)                  # (S,) d E[R] / d scores
estimates = {}
for baseline_name, b in (("no baseline", 0.0), ("baseline b = E[R]", alpha @ reward)):
    runs = []
    for _ in range(200):                                   # 200 independent estimates of 100 samples each
        z = sample_hard_attention(np.tile(alpha, (100, 1)), rng)           # (100, S) one-hot samples
        R = z @ reward                                                     # (100,) reward of each sample
        runs.append(((R - b)[:, None] * (z - alpha)).mean(axis=0))        # REINFORCE, (S,)
    estimates[baseline_name] = np.array(runs)                              # (200, S)
spread = {name: runs.std(axis=0).mean() for name, runs in estimates.items()}
print("largest |mean estimate - exact|: "
      + ", ".join(f"{name} {np.abs(runs.mean(axis=0) - exact).max():.3f}" for name, runs in estimates.items()))
print("spread of one estimate (std, averaged over positions): "
      + ", ".join(f"{name} {value:.3f}" for name, value in spread.items())
      + f"; the baseline cuts it {spread['no baseline'] / spread['baseline b = E[R]']:.0f}-fold")

fig, ax = plt.subplots(figsize=(8, 3.4))
positions_hard, width = np.arange(len(alpha)), 0.27
ax.bar(positions_hard - width, exact, width, color="k", label="exact gradient")
for k, (name, runs) in enumerate(estimates.items()):
    ax.bar(positions_hard + k * width, runs.mean(axis=0), width, yerr=runs.std(axis=0), capsize=3,
           label=f"REINFORCE, {name}: mean ± std of one estimate")
ax.axhline(0, color="grey", lw=0.8)
ax.set(xlabel="source position j", ylabel=r"$\partial\,\mathbb{E}[R] / \partial e_j$",
       title="REINFORCE estimates from 100 samples, repeated 200 times")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Both estimates are unbiased: their means sit on the exact gradient. Without a baseline each one is
# noisy: every reward here is near 10, so each sample pushes up the score of whatever position it drew,
# and only the small differences between rewards carry the signal. Subtracting $b = \mathbb{E}[R]$ keeps
# only those differences and cuts the spread by the printed factor.

# %% [markdown] tags=["question:theory-28"]
# ### What is hard vs soft attention?
#
# Soft attention returns the weighted average of all values, $\sum_j\alpha_jh_j$, and is trained by plain
# backpropagation; hard attention samples one position $z\sim\alpha$ and reads $h_z$ alone, which is not
# differentiable, so its scores are trained with a REINFORCE estimator (Xu et al. 2015 compare both for
# image captioning). The soft context is the expectation of the hard one (measured above).
#
# - Hard: the gradient is (reward − baseline) × $\nabla\log p(z)$; unbiased but noisy (plot above).
# - Xu et al. (2015) derive it from a variational lower bound, use a moving-average baseline and an
#   entropy bonus, and with probability 0.5 per image use the expected (soft) context instead of a sample.
# - In Xu et al.'s form hard attention still scores all $S$ positions and saves only the reading; Mnih et
#   al. (2014) predict a glimpse location instead, also trained with REINFORCE.
# - Middle grounds: local attention (section 5) and Gumbel-softmax relaxations (Jang et al. 2017).

# %% [markdown]
# ## 7. Coverage: remembering where the decoder has looked
#
# An attention decoder has no memory of its past weights other than its state, so nothing stops it from
# attending to the same source words again and again, or never: Tu et al. (2016) report over- and
# under-translation in NMT, See et al. (2017) repeated phrases in summaries. **Coverage**, an idea from
# phrase-based translation that Tu et al. (2016) and Mi et al. (2016) brought to NMT, keeps a record of
# past weights and gives it to the scorer. See et al.'s version, built here, is the plain running sum
# $c_t = \sum_{t' < t} \alpha_{t'}$ `(B, S)`, one extra input of the additive score (from the current
# state $s_t$, as in their model):
#
# $$e_{tj} = w_v^\top \tanh(s_t W_s + h_j W_h + c_{tj}\, w_c),\qquad w_c\ (A,)$$
#
# so the model *can* lower the score of covered positions. To make it *want* to, See et al. add a
# coverage loss, weighted by $\lambda = 1$, to the training loss (without it, they saw no reduction in
# repetition):
#
# $$\mathrm{covloss} = \sum_t \sum_j \min(\alpha_{tj}, c_{tj}),$$
#
# which charges a step only for weight placed where earlier steps already looked; each step pays at
# most 1. A first visit to a position is free. A penalty that pushes every position's total attention
# to 1, such as Xu et al.'s (2015) $\sum_j (1 - \sum_t \alpha_{tj})^2$ for image captions, would push
# the decoder to read every source word, which a summary should not (See et al. 2017). See et al.
# switched coverage on only in a short final phase: 3,000 iterations (about two hours) after a main run
# of under 230,000 without it. With coverage on from the first iteration, the coverage loss got in the
# way of the main objective early in training, and the final model was worse.
#
# **Tu et al. (2016) differ from See et al. (2017) in three ways.** They score from the previous state
# $s_{t-1}$ (Bahdanau's model), not $s_t$. Their coverage is this plain sum, or the sum with each weight
# divided by a *fertility* $\Phi_j = N\sigma(h_j U_f)$ predicted per source word (about how many target
# words word $j$ produces, at most $N$), or a small vector per word updated by a gated RNN from the
# weight, the annotation and the decoder state. And they train on the translation loss alone, with no
# coverage loss.
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
# alone, it attends to the same position at every step, the attention pattern behind repeated phrases,
# and the coverage loss charges it almost 1 for every step after the first. With a coverage weight that lowers
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
# Coverage tells the attention scorer how much each source word has been attended so far, so the
# decoder can steer away from words it has used. Tu et al. (2016) brought it to NMT against over- and
# under-translation; See et al. (2017) used the plain running sum $c_t = \sum_{t'<t}\alpha_{t'}$ against
# repetition in summaries.
#
# - Score: $w_v^\top\tanh(s_tW_s + h_jW_h + c_{tj}w_c)$, one extra feature per position (heatmaps, section 7).
# - Tu et al.: the sum, the sum scaled by a predicted fertility per word, or a vector per word updated by
#   a gated RNN; trained on the translation loss alone.
# - See et al.: plus $\lambda\sum_j\min(\alpha_{tj}, c_{tj})$ per step, $\lambda = 1$: at most 1, free on a
#   first visit. Without this loss, coverage did not curb repetition.
# - Training: See et al. added coverage only in a final 3,000-iteration phase; from the start it hurt
#   the main objective. Repeated n-grams fell to about the references' rate (Fig. 4).

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
# Measured here: on one toy task, with one budget, a fixed-vector encoder–decoder loses accuracy as the
# input grows far faster than the attention model does; attention learns an approximate alignment on its
# own; and, at initialisation, it delivers gradient to early inputs that the recurrence alone lets vanish.
#
# Questions answered: theory-3 (Bahdanau), theory-32 (alignment), theory-30 (attention in recurrent
# models), theory-17 (vanishing gradients), theory-4 and qa-10 (Luong vs Bahdanau), theory-10 (global vs
# local), theory-28 (hard vs soft), theory-31 (coverage). Next, notebook 04 runs many attentions side by
# side (multi-head attention) and builds the Transformer block around them.
