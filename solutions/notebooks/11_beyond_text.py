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
# # 11 · Attention beyond text
#
# Score, normalise, average: the three steps of notebook 01 work on anything that comes as a set of
# vectors. What changes from field to field is the answer to three questions. **What is scored against
# what** (a decoder state against audio frames, a node against its neighbours, a candidate item against
# a user's history, a question against a document). **Over which set the weights are normalised** (all
# frames, the neighbours only, the words of one sentence). And **whether they are normalised at all**.
# This notebook builds five mechanisms that answer them differently, trains a small model on a task made
# in code for four of them, and looks at what the attention learned.
#
# **You will learn**
# - why speech recognisers feed the previous alignment into the score (location-sensitive attention),
#   and what monotonic alignment means;
# - graph attention (GAT): self-attention restricted to a node's neighbours, with several heads
#   concatenated or averaged, and what it adds over averaging the neighbours;
# - target attention in recommendation (Deep Interest Network), which deliberately skips the softmax,
#   and self-attentive sequential recommendation;
# - hierarchical attention: words into sentences, sentences into a document;
# - co-attention: one affinity matrix between two sequences, read in both directions.
#
# **You will build** in `src/attnlab/applications.py`: `location_sensitive_scores`, `gat_layer`,
# `target_attention_pooling`, `hierarchical_attention_pool` and `co_attention` (NumPy), and you will
# train, in PyTorch, a small speech-like recogniser, a graph attention network, a DIN-style click model
# and a hierarchical document classifier, each against a baseline without the idea.
#
# **Shapes.** $B$ batch; $S$ the number of items attended over (frames, behaviours, document words); $L$ the
# number of queries (decoder steps in speech, question words in co-attention); $N$ nodes of a graph (or
# sentences of a document), $T$ words per sentence; $D$ a feature width; $A$ the hidden width of a scoring
# MLP; $H$ heads. Projections are written `x @ W` with `W` of shape `(in, out)` (PyTorch's `nn.Linear` stores
# `W.T`). Masks are boolean, `True` = may be attended to; a row with nothing to attend to gets zero weights
# and a zero output, never NaN. Outputs keep the inputs' dtype.

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

torch.set_num_threads(1)  # matrices this small gain nothing from threads, and a shared machine stays steady
QUICK = os.environ.get("ATTNLAB_QUICK") == "1"  # CI smoke runs only: shorter training; the default is the real thing
MACHINE = (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs visible, PyTorch {torch.__version__}, "
           f"1 thread")


def heatmap(ax, weights, title, xlabel, ylabel, xticks=None, yticks=None, colorbar="weight", cmap="viridis",
            vmin=0, vmax=None):
    """Weights (rows, columns) as an image with labelled axes and a colour bar."""
    im = ax.imshow(weights, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks, fontsize=8)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks, fontsize=8)
    plt.colorbar(im, ax=ax, fraction=0.046, label=colorbar)
    return im


def smooth(values, n=20):
    """Moving average over n steps (a loss curve that can be read)."""
    return np.convolve(values, np.ones(n) / n, mode="valid")

# %% [markdown]
# ## 1. Speech: attention that knows where it looked last
#
# A speech recogniser reads about 100 acoustic frames per second and writes perhaps 10–15 characters in
# that second. An attention decoder (Chorowski et al. 2015; Listen, Attend and Spell, Chan et al. 2016)
# emits one output token per step, and at each step attends over all the encoded frames $h_1..h_S$ to
# find the ones it needs. Two properties of speech make this harder than translation:
#
# - **similar fragments repeat**: the same phone, or the same word, occurs several times in an
#   utterance, and its frames look alike wherever they are. A purely content-based score
#   $w^\top\tanh(sW + h_jV + b)$ gives them about the same score;
# - **the alignment is monotonic and local**: output step $i + 1$ reads the frames just after those that
#   step $i$ read, never earlier ones.
#
# Chorowski et al. (2015) therefore let the score also see *where the previous step attended*. The
# previous alignment $\alpha_{i-1}$ `(S,)` is convolved with $K$ learned filters $F$ `(K, R)`, giving
# $K$ location features per frame, and those enter the score's MLP next to the content:
#
# $$f_{j} = F * \alpha_{i-1}\ \ (K \text{ features of frame } j),\qquad
#   e_{i,j} = w^\top \tanh(s_{i-1} W + h_j V + f_j U + b)$$
#
# with $s_{i-1}$ `(D_s)`, $W$ `(D_s, A)`, $h_j$ `(D_h)`, $V$ `(D_h, A)`, $U$ `(K, A)`, $w, b$ `(A,)`. A
# filter can learn "score high just to the right of where I looked", which is exactly monotonic,
# local progress, and it tells two identical fragments apart by their position relative to the last
# alignment. On TIMIT their content-only model reached a competitive 18.7% phone error rate but could
# only decode utterances about as long as those it was trained on; the location-aware one reached 18%,
# and 20% on utterances made 10 times longer by repetition (Chorowski et al. 2015). The same paper also
# varies the normalisation. *Sharpening* narrows the weights for long inputs: a softmax with inverse
# temperature $\beta > 1$, keeping only the top $k$ frames, or *windowing*, scoring only the frames near
# the median of the previous alignment (used at decoding time only). *Smoothing* widens them: a logistic
# sigmoid in place of the exponential before normalising, so that several frames share the weight, which
# with the location features gave 17.6% PER. Tacotron 2 (Shen et al. 2018)
# uses location-sensitive attention for speech *synthesis*, with the attention weights accumulated over
# the previous steps as an extra feature.
#
# **Which convolution?** Deep-learning "convolution" is a cross-correlation, the filter slid without
# flipping: $f_{j,k} = \sum_r F_{k,r}\,\alpha_{i-1,\,j + r - (R-1)/2}$ with $\alpha = 0$ beyond the ends
# (zero padding) and an odd width $R$, so that tap $(R-1)/2$ sits on frame $j$. This is what
# `torch.nn.functional.conv1d(alpha, F, padding=(R - 1) // 2)` computes. `np.convolve` flips the filter.
#
# **Exercise.** Implement `location_sensitive_scores(decoder_state, encoder_outputs, prev_weights, W, V,
# U, filters, w, b)` in `src/attnlab/applications.py`: $s$ `(B, D_s)`, $h$ `(B, S, D_h)`, $\alpha_{i-1}$
# `(B, S)` → scores `(B, S)`, before any softmax. Raise `ValueError` for an even filter width.

# %%
from attnlab.applications import location_sensitive_scores

rng = np.random.default_rng(0)
B, S, D_s, D_h, A, K, R = 2, 12, 4, 6, 5, 3, 7
s_prev = rng.standard_normal((B, D_s))                  # (B, D_s) previous decoder states
frames = rng.standard_normal((B, S, D_h))               # (B, S, D_h) encoded frames
prev = np.zeros((B, S))
prev[0, 3], prev[1, 8] = 1.0, 1.0                       # (B, S) where each utterance looked last
W = rng.standard_normal((D_s, A)) / np.sqrt(D_s)        # (D_s, A)
V = rng.standard_normal((D_h, A)) / np.sqrt(D_h)        # (D_h, A)
U = rng.standard_normal((K, A))                         # (K, A)
filters = rng.standard_normal((K, R))                   # (K, R), R odd
w, b = rng.standard_normal(A), np.zeros(A)              # (A,), (A,)
scores = location_sensitive_scores(s_prev, frames, prev, W, V, U, filters, w, b)
print("scores", scores.shape)

# A location-only scorer: no content (V = 0, W = 0) and one filter whose only tap reads the frame to the
# left (tap (R - 1)/2 - 1), so f_j = alpha_{j-1}: each step scores highest just after the last one.
S_walk, R_walk = 12, 3
shift = np.zeros((1, R_walk))
shift[0, (R_walk - 1) // 2 - 1] = 1.0                   # f_j = alpha_{j - 1}
alpha, walk = np.eye(S_walk)[None, 0], []               # start on frame 0, (1, S)
for step in range(8):
    e = location_sensitive_scores(np.zeros((1, 1)), np.zeros((1, S_walk, 1)), alpha, np.zeros((1, 1)),
                                  np.zeros((1, 1)), np.ones((1, 1)), shift, np.array([12.0]), np.zeros(1))
    alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()   # softmax over the S frames
    walk.append(alpha[0])
fig, ax = plt.subplots(figsize=(7, 2.8))
heatmap(ax, np.array(walk), "a location-only scorer walks forward one frame per step", "input frame j",
        "decoder step i")
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("applications.location_sensitive_scores")

# %% [markdown]
# ### Training it: content-only versus location-aware attention
#
# A toy recogniser. An utterance is 6 "phones" from an alphabet of 6 (neighbours differ, repeats
# further apart are common), each lasting 2 to 4 frames; a frame is the one-hot vector of its phone plus
# Gaussian noise (σ = 0.3), and utterances are padded to the longest in the batch. The encoder reads each
# frame on its own (one linear layer), so a frame carries its phone and nothing about where it is: to
# content-only attention an utterance is an unordered bag of frames. This is an extreme case, chosen to
# make the role of location visible in a minute of training.
# A GRU decoder emits the 6 phones, attending over the frames at every step with the additive score,
# with and without the location term ($K = 4$ filters of width $R = 11$, the previous alignment starting
# on frame 0; the state that scores the frames is the GRU's state just updated from the previous phone and
# context). Both models have the same decoder, data, optimiser and number of steps; they are trained
# with teacher forcing and evaluated by greedy decoding on held-out utterances.

# %%
PHONES, START = 6, 6                  # phone ids 0..5; id 6 starts every output
LS_FILTERS, LS_WIDTH = 4, 11
SPEECH_STEPS = 120 if QUICK else 250


def utterances(rng, n, n_phones=6):
    """frames (n, S, PHONES) float32, mask (n, S) bool, phones (n, n_phones) int64, segment ids (n, S)."""
    phones = np.zeros((n, n_phones), dtype=np.int64)
    phones[:, 0] = rng.integers(PHONES, size=n)
    for t in range(1, n_phones):                                   # neighbours differ
        phones[:, t] = (phones[:, t - 1] + 1 + rng.integers(PHONES - 1, size=n)) % PHONES
    durations = rng.integers(2, 5, size=(n, n_phones))
    S = durations.sum(axis=1).max()
    x = 0.3 * rng.standard_normal((n, S, PHONES))
    mask, segment = np.zeros((n, S), dtype=bool), np.full((n, S), -1)
    for i in range(n):
        seg = np.repeat(np.arange(n_phones), durations[i])         # which phone each frame belongs to
        x[i, np.arange(len(seg)), phones[i, seg]] += 1.0
        mask[i, :len(seg)], segment[i, :len(seg)] = True, seg
    x[~mask] = 0.0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(mask), torch.tensor(phones), segment


class Recogniser(nn.Module):
    """Frames -> phones with additive attention; location=True adds Chorowski et al.'s f_j U term."""

    def __init__(self, location, hidden=48, A=32, E=32):
        super().__init__()
        self.location = location
        self.encoder = nn.Linear(PHONES, E)                         # frame by frame: no context, no position
        self.embed = nn.Embedding(PHONES + 1, 16)
        self.cell = nn.GRUCell(16 + E, hidden)
        self.W = nn.Linear(hidden, A)                               # s W + b: its bias is b
        self.V = nn.Linear(E, A, bias=False)
        self.filters = nn.Parameter(0.3 * torch.randn(LS_FILTERS, LS_WIDTH))   # (K, R)
        self.U = nn.Linear(LS_FILTERS, A, bias=False)
        self.w = nn.Linear(A, 1, bias=False)
        self.out = nn.Linear(hidden + E, PHONES)

    def scores(self, s, keys, alpha):
        """e (B, S) from the state s (B, hidden), keys h V (B, S, A) and the previous alignment (B, S)."""
        pre = self.W(s)[:, None, :] + keys
        if self.location:
            f = F.conv1d(alpha[:, None, :], self.filters[:, None, :], padding=LS_WIDTH // 2)  # (B, K, S)
            pre = pre + self.U(f.transpose(1, 2))
        return self.w(torch.tanh(pre)).squeeze(-1)

    def forward(self, x, mask, targets=None, steps=None):
        """Teacher forcing when targets (B, T) are given, else greedy for `steps`: logits (B, T, P), alignment
        (B, T, S)."""
        h = torch.tanh(self.encoder(x))                             # (B, S, E)
        keys = self.V(h)
        B, S, E = h.shape
        s = torch.zeros(B, self.cell.hidden_size)
        alpha = F.one_hot(torch.zeros(B, dtype=torch.long), S).float()  # start on frame 0
        context, y = torch.zeros(B, E), torch.full((B,), START)
        logits, alignment = [], []
        for t in range(targets.shape[1] if targets is not None else steps):
            s = self.cell(torch.cat([self.embed(y), context], dim=-1), s)
            alpha = torch.softmax(self.scores(s, keys, alpha).masked_fill(~mask, float("-inf")), dim=-1)
            context = torch.bmm(alpha[:, None, :], h).squeeze(1)    # (B, E)
            logits.append(self.out(torch.cat([s, context], dim=-1)))
            alignment.append(alpha)
            y = targets[:, t] if targets is not None else logits[-1].argmax(dim=-1)
        return torch.stack(logits, 1), torch.stack(alignment, 1)


def train_recogniser(location, steps=SPEECH_STEPS, batch=64, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Recogniser(location)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        x, mask, y, _ = utterances(rng, batch)
        logits, _ = model(x, mask, targets=y)
        loss = F.cross_entropy(logits.reshape(-1, PHONES), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
    return model, losses, time.perf_counter() - started


recognisers, speech_losses = {}, {}
for name, location in (("location-aware", True), ("content-only", False)):
    recognisers[name], speech_losses[name], seconds = train_recogniser(location)
    print(f"{name:15s}: {SPEECH_STEPS} steps in {seconds:.1f} s, final loss {np.mean(speech_losses[name][-20:]):.3f}")
print(f"(measured on {MACHINE})")

# %%
x_test, mask_test, y_test, segment_test = utterances(np.random.default_rng(100), 300)
speech_results = {}
with torch.no_grad():
    for name, model in recognisers.items():
        logits, alignment = model(x_test, mask_test, steps=6)
        correct = logits.argmax(dim=-1) == y_test
        peak = alignment.argmax(dim=-1)                              # (300, 6) most-attended frame per step
        on_segment = torch.tensor(segment_test)[torch.arange(300)[:, None], peak] == torch.arange(6)
        speech_results[name] = alignment
        print(f"{name:15s}: greedy phone accuracy {correct.float().mean():.2f}, whole utterances "
              f"{correct.all(dim=1).float().mean():.2f}; the peak sits on the right phone's frames at "
              f"{on_segment.float().mean():.0%} of the steps and never moves back at "
              f"{(peak[:, 1:] >= peak[:, :-1]).float().mean():.0%} of them")

# %%
# Your location_sensitive_scores computes the trained model's scores: one step, its parameters as (in, out) arrays.
m = recognisers["location-aware"]
with torch.no_grad():
    h = torch.tanh(m.encoder(x_test[:4]))
    s_probe = torch.randn(4, m.cell.hidden_size)
    alpha_probe = speech_results["location-aware"][:4, 2]            # the alignment of step 2
    want = m.scores(s_probe, m.V(h), alpha_probe).numpy()
got = location_sensitive_scores(
    s_probe.numpy(), h.numpy(), alpha_probe.numpy(), m.W.weight.detach().numpy().T, m.V.weight.detach().numpy().T,
    m.U.weight.detach().numpy().T, m.filters.detach().numpy(), m.w.weight.detach().numpy()[0],
    m.W.bias.detach().numpy())
print(f"location_sensitive_scores vs the trained model's scores: max |difference| {np.abs(got - want).max():.1e}")

# %%
example = 0
S_ex = int(mask_test[example].sum())
frame_labels = ["abcdef"[p] for p in y_test[example, segment_test[example, :S_ex]].tolist()]
fig, axes = plt.subplots(1, 3, figsize=(17, 3.8))
for name, style in (("location-aware", "-"), ("content-only", "--")):
    axes[0].plot(np.arange(len(smooth(speech_losses[name]))) + 20, smooth(speech_losses[name]), style, label=name)
axes[0].set(xlabel="training step", ylabel="cross-entropy (nats, 20-step average)", title="training loss")
axes[0].legend()
for ax, name in zip(axes[1:], recognisers):
    heatmap(ax, speech_results[name][example, :, :S_ex].numpy(), f"{name}: alignment of a held-out utterance",
            "input frame (labelled by its phone)", "output step (true phone)", xticks=frame_labels,
            yticks=["abcdef"[p] for p in y_test[example].tolist()])
fig.tight_layout()
plt.show()

# %% [markdown]
# The content-only decoder has no way to know where it is: its frames carry no position, so the order of
# the phones is not in anything it can score, and when a phone occurs twice it cannot tell the
# occurrences apart. Its alignment stays spread over the whole utterance and its accuracy stays low. The
# location-aware decoder learns a band that moves left to right through the utterance, one phone per
# step (see the printed share of steps whose peak never moves back). The two models differ only in the
# location term, so that term is what lets it track the utterance: its input is the previous alignment,
# the one thing that says where the decoder is. Real encoders (bidirectional RNNs, convolutions,
# self-attention) give frames context and some sense of position, which is why Chorowski et al.'s
# content-only model did well on utterances of the usual length; it failed on long ones.
#
# **Monotonic alignment.** Speech alignments only move forward, so some models enforce it. *Hard
# monotonic attention* (Raffel et al. 2017) scans the frames from where the last step stopped and, at
# each frame, decides with a sigmoid whether to stop there; the frame it stops at is the context. Training
# uses the expected (soft) alignment, computed in closed form; decoding needs only the frames seen so
# far, in time linear in $S + L$ ($L$ output steps) instead of $S\,L$, which makes *online* (streaming)
# recognition possible. Monotonic chunkwise attention (MoChA; Chiu and Raffel 2018) then runs soft
# attention over a small chunk ending at the stop. Joint CTC–attention training (Kim et al. 2017) adds a
# CTC loss on the shared encoder; CTC's alignments are monotonic by construction, and the extra loss
# helped the attention decoder learn to align faster and more robustly.

# %% [markdown] tags=["question:theory-29"]
# ### Describe attention mechanisms in speech recognition.
#
# An attention-based recogniser encodes the audio frames, then emits characters or phones one at a time,
# attending over all frames at each step (Chorowski et al. 2015; Listen, Attend and Spell, Chan et al.
# 2016). Because speech alignments move forward and similar sounds repeat, good speech attention also
# uses where it looked last: location-sensitive attention adds a convolution of the previous alignment to
# the score.
#
# - Length: frames far outnumber outputs; LAS's pyramidal BiLSTM cuts the frames 8-fold (Chan et al. 2016).
# - Content-only attention failed on utterances longer than the training ones; location-aware attention
#   held 20% PER on 10× longer ones (Chorowski et al. 2015). Section 1 trains both on a toy task.
# - Streaming: monotonic attention (Raffel et al. 2017), MoChA (Chiu and Raffel 2018); joint CTC–attention
#   (Kim et al. 2017).
# - Later encoders use self-attention: Speech-Transformer (Dong et al. 2018); Conformer adds convolution
#   (Gulati et al. 2020).

# %% [markdown]
# ## 2. Graphs: attention over a node's neighbours (GAT)
#
# A graph neural network updates each node from its neighbours. A graph convolution (Kipf and Welling
# 2017) sums them with fixed weights set by the node degrees, $1/\sqrt{d_i d_j}$; a **graph attention network**
# (Velickovic et al. 2018) learns the weights, per edge, from the two nodes' features. For node $i$ with
# neighbours $\mathcal{N}(i)$ (itself included, in the paper):
#
# $$z_j = h_j W,\qquad e_{ij} = \mathrm{LeakyReLU}\big(a^\top [z_i \,\Vert\, z_j]\big),\qquad
#   \alpha_{ij} = \mathrm{softmax}_{j\in\mathcal{N}(i)}(e_{ij}),\qquad h'_i = \sum_{j\in\mathcal{N}(i)}\alpha_{ij} z_j$$
#
# with $h$ `(N, D_in)`, $W$ `(D_in, D_out)`, $a$ `(2 D_out,)`, LeakyReLU slope 0.2. This is
# self-attention with the **adjacency matrix as the mask**: `adjacency[i, j]` True means node $i$ may
# attend to node $j$. A Transformer is this on the complete graph, with a dot-product score. $H$ heads
# run side by side with their own $W$ and $a$; hidden layers **concatenate** them `(N, H·D_out)`, and
# the paper's output layer **averages** them `(N, D_out)`. Because
# $a^\top[z_i \Vert z_j] = a_{1}\cdot z_i + a_{2}\cdot z_j$, the scores are two `(N,)` vectors per head and
# a broadcast sum, never an `(N, N, 2 D_out)` tensor; with an edge list instead of a dense mask, the
# attention costs $O(|E|\,D_{out})$ per head, on top of the $O(N D_{in} D_{out})$ projection.
#
# **Exercise.** Implement `gat_layer(h, adjacency, W, a, negative_slope=0.2, concat=True)`: $W$ `(H, D_in,
# D_out)`, $a$ `(H, 2 D_out)` → `(out, weights (H, N, N))`. Use the adjacency exactly as given (no
# self-loops added: pass `adjacency | np.eye(N, dtype=bool)` to follow the paper); a node with no
# neighbour gets zero weights and a zero output. Apply no nonlinearity after the aggregation.

# %%
from attnlab.applications import gat_layer

rng = np.random.default_rng(1)
N, D_in, D_out, H = 6, 5, 4, 3
h = rng.standard_normal((N, D_in))                       # (N, D_in) node features
edges = [(0, 1), (1, 0), (1, 2), (2, 3), (3, 1), (3, 4), (4, 3), (0, 4)]  # (i, j): i attends to j
adjacency = np.zeros((N, N), dtype=bool)
for i, j in edges:
    adjacency[i, j] = True
adjacency |= np.eye(N, dtype=bool)                       # self-loops, as Velickovic et al.
adjacency[5] = False                                     # node 5 attends to nobody, not even itself
W = rng.standard_normal((H, D_in, D_out)) / np.sqrt(D_in)  # (H, D_in, D_out)
a = rng.standard_normal((H, 2 * D_out))                  # (H, 2 D_out)
out, weights = gat_layer(h, adjacency, W, a)
mean_out, _ = gat_layer(h, adjacency, W, a, concat=False)
print("concatenated", out.shape, " averaged", mean_out.shape, " weights", weights.shape)
print("row sums of head 0:", weights[0].sum(axis=1).round(6), " (node 5 has no neighbour: 0, not NaN)")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, head in zip(axes, (0, 1)):
    heatmap(ax, weights[head], f"head {head}: who node i attends to", "neighbour j", "node i")
    ii, jj = np.nonzero(~adjacency)
    ax.plot(jj, ii, "x", color="grey", ms=5, label="not an edge")
axes[0].legend(loc="upper right", fontsize=8)
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("applications.gat_layer")

# %% [markdown]
# ### Training it: neighbours that carry the label, and decoys that do not
#
# A graph made in code where a node's label must be read from the right neighbours. Each of 400 nodes
# has one of 3 classes; half of the nodes are *informative* (their features show their class, one-hot,
# and a flag set to 1) and half are *decoys* (their features show a wrong class, flag 0), plus four
# features of noise. Every node is linked to itself, to 3 informative nodes of its own class and to 8
# decoys. So a node's own features lie half of the time, and a plain average of its neighbourhood
# mixes 3 or 4 honest votes with 8 random ones. Two models, one layer each (2 heads of width 8, ELU,
# then a linear classifier), trained on 200 nodes and tested on the other 200:
#
# - **GAT**: the weights come from `gat_layer`'s score, learned;
# - **mean aggregation**: the same layer with every score set to 0, so each node averages its
#   neighbourhood uniformly (like a graph convolution, with equal weights of 1/12).

# %%
CLASSES, N_NODES, N_INFORMATIVE, N_DECOYS = 3, 400, 3, 8
GAT_EPOCHS = 80 if QUICK else 150


def decoy_graph(seed=0):
    """features (N, 8), adjacency (N, N) with self-loops, labels (N,), informative (N,) bool, slots (N, 12):
    each node's neighbours in the order self, 3 informative, 8 decoys."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(CLASSES, size=N_NODES)
    informative = rng.random(N_NODES) < 0.5
    shown = np.where(informative, labels, (labels + rng.integers(1, CLASSES, size=N_NODES)) % CLASSES)
    x = np.concatenate([np.eye(CLASSES)[shown], informative[:, None], 0.5 * rng.standard_normal((N_NODES, 4))], 1)
    adjacency = np.eye(N_NODES, dtype=bool)
    slots = np.zeros((N_NODES, 1 + N_INFORMATIVE + N_DECOYS), dtype=np.int64)
    others = np.arange(N_NODES)
    for i in range(N_NODES):
        honest = np.flatnonzero(informative & (labels == labels[i]) & (others != i))
        decoys = np.flatnonzero(~informative & (others != i))
        slots[i] = np.concatenate([[i], rng.choice(honest, N_INFORMATIVE, replace=False),
                                   rng.choice(decoys, N_DECOYS, replace=False)])
        adjacency[i, slots[i]] = True
    return (torch.tensor(x, dtype=torch.float32), torch.tensor(adjacency), torch.tensor(labels), informative,
            slots)


class GraphAttention(nn.Module):
    """One GAT layer (the exercise's computation, heads concatenated), ELU, then a linear classifier."""

    def __init__(self, d_in, attention=True, heads=2, d_out=8):
        super().__init__()
        self.attention = attention
        self.W = nn.Parameter(torch.randn(heads, d_in, d_out) / d_in ** 0.5)   # (H, D_in, D_out)
        self.a = nn.Parameter(torch.randn(heads, 2 * d_out) / d_out ** 0.5)    # (H, 2 D_out)
        self.classify = nn.Linear(heads * d_out, CLASSES)

    def forward(self, x, adjacency):
        z = x @ self.W                                                       # (H, N, D_out)
        D_out = z.shape[-1]
        e = F.leaky_relu(z @ self.a[:, :D_out, None] + (z @ self.a[:, D_out:, None]).transpose(1, 2), 0.2)
        if not self.attention:
            e = torch.zeros_like(e)                                          # uniform: mean aggregation
        weights = torch.softmax(e.masked_fill(~adjacency, float("-inf")), dim=-1)  # (H, N, N)
        out = (weights @ z).transpose(0, 1).reshape(x.shape[0], -1)          # (N, H D_out)
        return self.classify(F.elu(out)), weights


x_graph, adj_graph, y_graph, informative, slots = decoy_graph()
train_nodes = torch.arange(N_NODES) < N_NODES // 2
graph_models, graph_losses = {}, {}
for name, attention in (("GAT", True), ("mean aggregation", False)):
    torch.manual_seed(0)
    model = GraphAttention(x_graph.shape[1], attention)
    opt = torch.optim.Adam(model.parameters(), lr=0.02, weight_decay=5e-4)
    losses, started = [], time.perf_counter()
    for _ in range(GAT_EPOCHS):                                              # full batch: the whole graph
        logits, _ = model(x_graph, adj_graph)
        loss = F.cross_entropy(logits[train_nodes], y_graph[train_nodes])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    graph_models[name], graph_losses[name] = model, losses
    with torch.no_grad():
        logits, graph_weights = model(x_graph, adj_graph)
    accuracy = (logits.argmax(dim=-1) == y_graph)[~train_nodes].float().mean().item()
    on_informative = (graph_weights * torch.tensor(informative, dtype=torch.float32)).sum(-1).mean().item()
    print(f"{name:16s}: {GAT_EPOCHS} epochs in {time.perf_counter() - started:.1f} s, test accuracy "
          f"{accuracy:.2f}, share of attention on informative nodes {on_informative:.2f}")
print(f"(measured on {MACHINE})")

# %%
# Your gat_layer, given the trained W and a, reproduces the trained layer's attention weights.
gat_model = graph_models["GAT"]
with torch.no_grad():
    _, torch_weights = gat_model(x_graph, adj_graph)
_, numpy_weights = gat_layer(x_graph.numpy(), adj_graph.numpy(), gat_model.W.detach().numpy(),
                             gat_model.a.detach().numpy())
print(f"gat_layer with the trained W and a vs the model's weights: max |difference| "
      f"{np.abs(numpy_weights - torch_weights.numpy()).max():.1e}")

# %%
test_nodes = np.flatnonzero(~train_nodes.numpy())[:14]
per_slot = torch_weights.mean(dim=0).numpy()[test_nodes[:, None], slots[test_nodes]]   # (14, 12), heads averaged
fig, axes = plt.subplots(1, 2, figsize=(15, 4))
for name, style in (("GAT", "-"), ("mean aggregation", "--")):
    axes[0].plot(graph_losses[name], style, label=name)
axes[0].set(xlabel="epoch (full batch)", ylabel="cross-entropy on the training nodes (nats)", title="training loss")
axes[0].legend()
heatmap(axes[1], per_slot, "what GAT learned: weights over each test node's neighbours",
        "neighbour", "test node (own features: informative or decoy)",
        xticks=["self"] + [f"inf {k}" for k in range(1, 4)] + [f"decoy {k}" for k in range(1, 9)],
        yticks=[f"node {i} ({'inf' if informative[i] else 'decoy'})" for i in test_nodes])
fig.tight_layout()
plt.show()

# %% [markdown]
# Averaging gives the 8 decoys more than twice the say of the 3 honest neighbours, and the mean
# model misclassifies a share of the test nodes. The GAT learned to put most of its attention on the
# informative neighbours (and on a node itself when it is informative): compare the two printed shares. It
# classifies nearly every test node correctly. Notice the rows: every node ranks its neighbours the same way,
# by how informative *they* look. That is a property of GAT's score, not of this task: within one head,
# $a_1 \cdot z_i$ is the same for every neighbour of node $i$, and LeakyReLU is monotonic, so the order of
# the scores $e_{ij}$ over $j$ does not depend on $i$. Brody et al. (2022) call this *static* attention and fix it
# in GATv2 by applying $a$ after the nonlinearity, $a^\top\mathrm{LeakyReLU}(W[h_i \Vert h_j])$.

# %% [markdown] tags=["question:theory-40"]
# ### What is the attention mechanism in Graph Neural Networks?
#
# In a graph attention network each node takes a softmax-weighted average of its neighbours' projected
# features, the weights computed from both nodes' features, $\mathrm{LeakyReLU}(a^\top[Wh_i \Vert Wh_j])$,
# and normalised over the neighbours only (Velickovic et al. 2018). It is self-attention masked by the
# adjacency matrix: weights learned per edge instead of fixed by node degrees as in a graph convolution
# (Kipf and Welling 2017).
#
# - Heads: concatenated in hidden layers, averaged in the output layer.
# - Cost: $O(|E|)$ scores per head on an edge list; nothing depends on the whole graph, so a trained
#   model applies to unseen graphs (inductive).
# - Evidence (section 2): GAT learned to ignore decoy neighbours; averaging could not.
# - Limit: GAT's ranking of neighbours does not depend on the node attending ("static"); GATv2 fixes it (Brody et
#   al. 2022). Graph Transformers attend over all nodes with structural encodings (Ying et al. 2021).

# %% [markdown]
# ## 3. Recommendation: a candidate item weighs the user's history (DIN)
#
# A click-through model scores a candidate item (an ad, a video) for a user described by a history of
# behaviours $h_1..h_S$ (items clicked or bought). Pooling the history into one fixed vector (sum or
# mean) gives the same user vector for every candidate, although a user who bought running shoes and
# baby clothes is interested in one of them *depending on what is shown*. The **Deep Interest Network**
# (Zhou et al. 2018) lets the candidate $c$ weigh the history: an *activation unit*, a small MLP on each
# pair, gives behaviour $j$ a weight, and the user vector is the weighted sum:
#
# $$x_j = [h_j;\ c;\ h_j - c;\ h_j \odot c]\ (4D),\qquad w_j = w_2^\top\,\mathrm{PReLU}(x_j W_1 + b_1) + b_2,
#   \qquad v_U(c) = \sum_j w_j h_j$$
#
# with $W_1$ `(4D, A)`, $b_1, w_2$ `(A,)`, $b_2$ a number. (The paper's figure feeds the unit the two
# embeddings and their "out product", usually read as an outer product; the TensorFlow code released
# with it feeds $[c;\ h_j;\ c - h_j;\ c \odot h_j]$, the form above up to an order and a sign that the
# first linear layer absorbs.) **There is no softmax**: Zhou et al. relax $\sum_j w_j = 1$ on purpose, to
# keep the *intensity* of an interest. A user with eight running-shoe purchases should look more
# interested in running shoes than a user with one, and a softmax would give both about the same average
# shoe. Padded history slots get weight 0. (The released code does apply a scaled softmax; asked why, its
# author answered that it is a demo, on public data too small to show the difference: issue 74 of
# zhougr1993/DeepInterestNetwork, 2020.) The paper adds two training devices that are not attention:
# *Dice*, a smooth PReLU whose switch point sits at the batch mean of its input, with a softness set by
# the batch variance, and *mini-batch aware regularisation*, an L2 penalty on only the embedding rows of
# the features present in the mini-batch, each scaled by the inverse of its feature's frequency.
#
# **Exercise.** Implement `target_attention_pooling(candidate, history, mask, params)`: $c$ `(B, D)`, $h$
# `(B, S, D)`, `mask` `(B, S)` (or None), `params` with `"W1"`, `"b1"`, `"alpha"` (PReLU slopes, one per
# hidden unit), `"w2"`, `"b2"` → `(pooled (B, D), weights (B, S))`.

# %%
from attnlab.applications import target_attention_pooling

rng = np.random.default_rng(2)
B, S, D, A = 2, 5, 4, 6
candidate = rng.standard_normal((B, D))                 # (B, D)
history = rng.standard_normal((B, S, D))                # (B, S, D)
mask = np.array([[True] * 5, [True, True, True, False, False]])   # user 1 has 3 behaviours
params = {"W1": rng.standard_normal((4 * D, A)) / np.sqrt(4 * D), "b1": np.zeros(A),
          "alpha": np.full(A, 0.25), "w2": rng.standard_normal(A), "b2": 0.1}
pooled, weights = target_attention_pooling(candidate, history, mask, params)
print("pooled", pooled.shape, " weights", weights.shape)
print("weights (not normalised, any sign; padded slots exactly 0):\n", weights.round(3))
twice, _ = target_attention_pooling(candidate, np.concatenate([history, history], 1),
                                    np.concatenate([mask, mask], 1), params)
print("the same history listed twice doubles the interest vector:", np.allclose(twice, 2 * pooled))

# %% tags=["check"]
check("applications.target_attention_pooling")

# %% [markdown]
# ### Training it: when the count of related behaviours matters
#
# Items belong to 8 categories (10 items each). A user's history holds 3 to 16 items (padded to 16)
# drawn from 3 categories of interest; the candidate comes from one of them 70% of the time, otherwise
# from any of the 8. The user clicks when **at least 3** history items share the candidate's category,
# an intensity that a weighted *average* cannot see. Three models, each with its own item embeddings of
# width 8 and the same MLP on `[user vector, candidate]`, differing only in the pooling:
#
# - **DIN**: the activation unit's weights as they are (the exercise);
# - **softmax**: the same activation unit, its weights normalised with a softmax over the history;
# - **sum**: every behaviour weighted 1 (no attention).

# %%
CATEGORIES, PER_CATEGORY, MAX_HISTORY, EMB = 8, 10, 16, 8
DIN_STEPS = 150 if QUICK else 400


def click_batch(rng, n):
    """history (n, 16) item ids, mask (n, 16), candidate (n,), click (n,) float, and the categories."""
    interests = np.stack([rng.choice(CATEGORIES, 3, replace=False) for _ in range(n)])            # (n, 3)
    history_cat = interests[np.arange(n)[:, None], rng.integers(0, 3, size=(n, MAX_HISTORY))]
    history = history_cat * PER_CATEGORY + rng.integers(PER_CATEGORY, size=(n, MAX_HISTORY))
    candidate_cat = np.where(rng.random(n) < 0.7, interests[np.arange(n), rng.integers(0, 3, size=n)],
                             rng.integers(CATEGORIES, size=n))
    candidate = candidate_cat * PER_CATEGORY + rng.integers(PER_CATEGORY, size=n)
    mask = np.arange(MAX_HISTORY)[None, :] < rng.integers(3, MAX_HISTORY + 1, size=n)[:, None]
    related = (history_cat == candidate_cat[:, None]) & mask
    click = (related.sum(axis=1) >= 3).astype(np.float32)
    return (torch.tensor(history), torch.tensor(mask), torch.tensor(candidate), torch.tensor(click), related)


class PReLU(nn.Module):
    """One slope per unit on the last axis (nn.PReLU puts its slopes on axis 1)."""

    def __init__(self, n):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((n,), 0.25))

    def forward(self, x):
        return torch.where(x > 0, x, self.alpha * x)


class ClickModel(nn.Module):
    def __init__(self, pooling, A=16):
        super().__init__()
        self.pooling = pooling
        self.embed = nn.Embedding(CATEGORIES * PER_CATEGORY, EMB)
        self.unit = nn.Sequential(nn.Linear(4 * EMB, A), PReLU(A), nn.Linear(A, 1))      # the activation unit
        self.head = nn.Sequential(nn.Linear(2 * EMB, 32), PReLU(32), nn.Linear(32, 1))

    def forward(self, history, mask, candidate):
        h, c = self.embed(history), self.embed(candidate)                          # (B, S, E), (B, E)
        cc = c[:, None, :].expand_as(h)
        w = self.unit(torch.cat([h, cc, h - cc, h * cc], dim=-1)).squeeze(-1)      # (B, S)
        if self.pooling == "softmax":
            w = torch.softmax(w.masked_fill(~mask, float("-inf")), dim=-1)
        elif self.pooling == "sum":
            w = torch.ones_like(w)
        w = w * mask                                                               # padding weighs 0
        user = (w[..., None] * h).sum(dim=1)                                       # (B, E)
        return self.head(torch.cat([user, c], dim=-1)).squeeze(-1), w


click_models, click_losses = {}, {}
test_history, test_mask, test_candidate, test_click, test_related = click_batch(np.random.default_rng(7), 4000)
for name in ("DIN", "softmax", "sum"):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ClickModel(name)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses, started = [], time.perf_counter()
    for _ in range(DIN_STEPS):
        history_ids, mask_ids, candidate_ids, click, _ = click_batch(rng, 256)
        logit, _ = model(history_ids, mask_ids, candidate_ids)
        loss = F.binary_cross_entropy_with_logits(logit, click)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    click_models[name], click_losses[name] = model, losses
    with torch.no_grad():
        logit, _ = model(test_history, test_mask, test_candidate)
    accuracy = ((logit > 0).float() == test_click).float().mean().item()
    print(f"{name:8s}: {DIN_STEPS} steps in {time.perf_counter() - started:.1f} s, held-out accuracy {accuracy:.3f}")
print(f"clicks in the held-out set: {test_click.mean():.2f} (always guessing 'no' scores {1 - test_click.mean():.2f})")
print(f"(measured on {MACHINE})")
din = click_models["DIN"]
with torch.no_grad():
    _, din_weights = din(test_history, test_mask, test_candidate)
size = din_weights.abs()
print(f"DIN's mean |weight|: behaviours of the candidate's category {size[torch.tensor(test_related)].mean():.2f}, "
      f"other behaviours {size[test_mask & ~torch.tensor(test_related)].mean():.2f}")

# %%
# Your target_attention_pooling, given the trained activation unit, reproduces the model's weights.
with torch.no_grad():
    h_emb, c_emb = din.embed(test_history[:50]), din.embed(test_candidate[:50])
din_params = {"W1": din.unit[0].weight.detach().numpy().T, "b1": din.unit[0].bias.detach().numpy(),
              "alpha": din.unit[1].alpha.detach().numpy(), "w2": din.unit[2].weight.detach().numpy()[0],
              "b2": float(din.unit[2].bias.detach())}
_, numpy_din = target_attention_pooling(c_emb.numpy(), h_emb.numpy(), test_mask[:50].numpy(), din_params)
print(f"target_attention_pooling with the trained activation unit vs the model's weights: max |difference| "
      f"{np.abs(numpy_din - din_weights[:50].numpy()).max():.1e}")

# %%
users = np.arange(10)
shown = np.where(test_mask[users].numpy(), din_weights[users].numpy(), np.nan)     # padding left blank
limit = np.nanmax(np.abs(shown))
fig, axes = plt.subplots(1, 2, figsize=(16, 4.2))
for name, style in (("DIN", "-"), ("softmax", "--"), ("sum", ":")):
    axes[0].plot(np.arange(len(smooth(click_losses[name]))) + 20, smooth(click_losses[name]), style, label=name)
axes[0].set(xlabel="training step", ylabel="binary cross-entropy (nats, 20-step average)", title="training loss")
axes[0].legend()
heatmap(axes[1], shown, "what DIN learned: the weight of each behaviour for the candidate shown",
        "history slot (● = same category as the candidate; blank = padding)",
        "held-out user (related behaviours, clicked?)", cmap="RdBu_r", vmin=-limit, vmax=limit,
        yticks=[f"{int(test_related[u].sum())} related, {'click' if test_click[u] else 'no click'}" for u in users])
rows, cols = np.nonzero(test_related[users])
axes[1].plot(cols, rows, "o", color="black", ms=4)
fig.tight_layout()
plt.show()

# %% [markdown]
# The activation unit learned to give large weights (of either sign: the head sees only the
# products $w_j h_j$, so a sign can pair with the learned embedding) to the behaviours that share the
# candidate's category and much smaller ones to the others (the printed mean sizes), so the user vector grows
# with the number of related behaviours and the click head can threshold it. With a softmax, the same unit can
# still find the related behaviours, but the user vector becomes their *average*: one related shoe or five
# give about the same vector, and the count is lost (only the share of related items survives, which is not
# what decides a click here). Summing every behaviour keeps the count but mixes every category into one
# vector. The held-out accuracies above measure both losses on this task.
#
# **Self-attentive sequential recommendation.** DIN treats the history as a set scored against one
# candidate. SASRec (Kang and McAuley 2018) treats it as a sequence: a causal Transformer over the
# item embeddings (plus learned positions) predicts the next item at every position, and the score of a
# candidate is the dot product of its embedding with the last position's output. BERT4Rec (Sun et al.
# 2019) trains a bidirectional one by masking items (a cloze task). DIEN (Zhou et al. 2019) models how
# interests evolve with a GRU whose update gate is scaled by the attention to the candidate.

# %% [markdown] tags=["question:theory-41"]
# ### How does attention work in recommendation systems?
#
# It weighs a user's past behaviours by their relevance: to the candidate item being scored (target
# attention, as in the Deep Interest Network, Zhou et al. 2018) or to each other and their order
# (self-attention over the sequence, as in SASRec, Kang and McAuley 2018). With target attention the user
# vector depends on the candidate shown, instead of being one fixed summary.
#
# - DIN: an MLP on each (behaviour, candidate) pair gives each behaviour a weight; no softmax, so the
#   intensity of an interest survives (section 3: DIN beat its softmax twin when clicks depended on counts).
# - SASRec: causal self-attention predicts the next item; BERT4Rec (Sun et al. 2019) masks items instead.
# - DIEN (Zhou et al. 2019): interest evolution with an attention-gated GRU.
# - Cost: DIN scores the history once per candidate, $O(S)$ MLP calls per candidate, which matters when
#   thousands of candidates are ranked per request.

# %% [markdown]
# ## 4. Hierarchical attention: words into sentences, sentences into a document
#
# A document is not a flat bag of words: words form sentences, and which words matter depends on the
# sentence they are in. The **hierarchical attention network** (Yang et al. 2016) mirrors that structure
# with attention at two levels. At each level, for items $x_k$ (the words of one sentence, then the
# sentence vectors of one document):
#
# $$u_k = \tanh(x_k W + b),\qquad \alpha_k = \mathrm{softmax}_k(u_k^\top u),\qquad
#   \mathrm{pooled} = \sum_k \alpha_k x_k$$
#
# The **context vector** $u$ is a learned query, one per level, shared by every sentence (or document):
# it asks "which words (sentences) are informative?". Word level: $B$ documents of $N$ sentences of $T$
# words, `(B, N, T, D)` → sentence vectors `(B, N, D)`; sentence level: → documents `(B, D)`. Yang et
# al. run a bidirectional GRU over the words of each sentence, and another over the sentence vectors,
# before each attention; the attention itself is the same at both levels, with its own $W$, $b$, $u$.
#
# **Exercise.** Implement `hierarchical_attention_pool(word_states, word_params, sentence_params,
# mask=None)` → `(document (B, D), sentence_weights (B, N), word_weights (B, N, T))`, the params being
# dicts with `"W"`, `"b"`, `"u"`. A padded word gets weight 0; a sentence with no real word is padding
# at the sentence level too.

# %%
from attnlab.applications import hierarchical_attention_pool

rng = np.random.default_rng(3)
B, N, T, D, A_w, A_s = 2, 3, 5, 4, 6, 7
word_states = rng.standard_normal((B, N, T, D))          # (B, N, T, D)
word_params = {"W": rng.standard_normal((D, A_w)) / 2, "b": np.zeros(A_w), "u": rng.standard_normal(A_w)}
sentence_params = {"W": rng.standard_normal((D, A_s)) / 2, "b": np.zeros(A_s), "u": rng.standard_normal(A_s)}
mask = np.ones((B, N, T), dtype=bool)
mask[0, :, 3:] = False                                   # document 0: sentences of 3 words
mask[1, 2] = False                                       # document 1: its last sentence is padding
document, sentence_weights, word_weights = hierarchical_attention_pool(word_states, word_params, sentence_params,
                                                                       mask=mask)
print("document", document.shape, " sentence weights", sentence_weights.shape, " word weights", word_weights.shape)
print("sentence weights:\n", sentence_weights.round(3), "\n(document 1's padding sentence gets 0)")

# %% tags=["check"]
check("applications.hierarchical_attention_pool")

# %% [markdown]
# ### Training it: the answer is in one sentence
#
# Documents of 5 sentences of 6 words from a vocabulary of 30 filler words, plus a *marker* word and
# two "good" and two "bad" words. Every sentence holds one good or bad word; exactly one sentence also
# holds the marker. The label is the polarity of **the marked sentence**, so the model must know which
# polarity word shares a sentence with the marker. Two models with the same word embeddings (no
# recurrent encoder, to keep it small) and the same classifier:
#
# - **hierarchical**: word-level attention within each sentence, then sentence-level attention (the
#   exercise);
# - **flat**: one attention over all 30 words of the document, with one context vector.

# %%
N_SENT, N_WORDS, FILLER = 5, 6, 30
MARKER, GOOD, BAD = FILLER, FILLER + 1, FILLER + 3      # good words: 31, 32; bad words: 33, 34
WORD_NAMES = [f"w{k}" for k in range(FILLER)] + ["MARK", "good", "great", "bad", "awful"]
HAN_STEPS = 120 if QUICK else 300


def marked_documents(rng, n):
    """words (n, N_SENT, N_WORDS) int64, label (n,) (1: the marked sentence is good), marked sentence (n,)."""
    words = rng.integers(FILLER, size=(n, N_SENT, N_WORDS))
    polarity = rng.integers(2, size=(n, N_SENT))
    slot = rng.integers(N_WORDS, size=(n, N_SENT))
    rows, sents = np.arange(n)[:, None], np.arange(N_SENT)[None, :]
    words[rows, sents, slot] = np.where(polarity == 1, GOOD, BAD) + rng.integers(2, size=(n, N_SENT))
    marked = rng.integers(N_SENT, size=n)
    marker_slot = (slot[np.arange(n), marked] + 1 + rng.integers(N_WORDS - 1, size=n)) % N_WORDS
    words[np.arange(n), marked, marker_slot] = MARKER
    return torch.tensor(words), torch.tensor(polarity[np.arange(n), marked]), marked


class AttentionPool(nn.Module):
    """tanh(x W + b) . u, softmax over the items, weighted sum: one level of the exercise."""

    def __init__(self, d, a=16):
        super().__init__()
        self.W = nn.Linear(d, a)
        self.u = nn.Parameter(torch.randn(a) / a ** 0.5)

    def forward(self, x):                                          # (..., n, d)
        weights = torch.softmax(torch.tanh(self.W(x)) @ self.u, dim=-1)
        return (weights[..., None] * x).sum(dim=-2), weights


class DocumentClassifier(nn.Module):
    def __init__(self, hierarchical, d=16):
        super().__init__()
        self.hierarchical = hierarchical
        self.embed = nn.Embedding(FILLER + 5, d)
        self.words, self.sentences, self.out = AttentionPool(d), AttentionPool(d), nn.Linear(d, 2)

    def forward(self, docs):
        x = self.embed(docs)                                       # (B, N, T, d)
        if not self.hierarchical:
            document, word_weights = self.words(x.flatten(1, 2))   # one softmax over all N T words
            return self.out(document), word_weights.reshape(docs.shape), None
        sentences, word_weights = self.words(x)                    # (B, N, d), (B, N, T)
        document, sentence_weights = self.sentences(sentences)     # (B, d), (B, N)
        return self.out(document), word_weights, sentence_weights


test_docs, test_labels, test_marked = marked_documents(np.random.default_rng(5), 2000)
doc_models, doc_losses = {}, {}
for name, hierarchical in (("hierarchical", True), ("flat", False)):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = DocumentClassifier(hierarchical)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses, started = [], time.perf_counter()
    for _ in range(HAN_STEPS):
        docs, labels, _ = marked_documents(rng, 128)
        logits, _, _ = model(docs)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    doc_models[name], doc_losses[name] = model, losses
    with torch.no_grad():
        logits, _, _ = model(test_docs)
    print(f"{name:12s}: {HAN_STEPS} steps in {time.perf_counter() - started:.1f} s, held-out accuracy "
          f"{(logits.argmax(dim=-1) == test_labels).float().mean():.3f}")
print(f"(measured on {MACHINE})")
good_sentences = ((test_docs == GOOD) | (test_docs == GOOD + 1)).any(dim=-1).sum(dim=-1)   # (2000,)
majority = (good_sentences > N_SENT // 2).long()                   # the polarity of most sentences
print(f"baseline without attention: the majority polarity of the {N_SENT} sentences is the label in "
      f"{(majority == test_labels).float().mean():.3f} of held-out documents")
han = doc_models["hierarchical"]
with torch.no_grad():
    _, han_words, han_sentences = han(test_docs)
    embedded = han.embed(test_docs[:50]).numpy()
print(f"sentence weight on the marked sentence, averaged over held-out documents: "
      f"{han_sentences[torch.arange(2000), torch.tensor(test_marked)].mean():.2f}")

# %%
# Your hierarchical_attention_pool, given the trained parameters, reproduces the model's weights.
as_params = lambda pool: {"W": pool.W.weight.detach().numpy().T, "b": pool.W.bias.detach().numpy(),  # noqa: E731
                          "u": pool.u.detach().numpy()}
_, numpy_sentences, numpy_words = hierarchical_attention_pool(embedded, as_params(han.words), as_params(han.sentences))
difference = max(np.abs(numpy_words - han_words[:50].numpy()).max(),
                 np.abs(numpy_sentences - han_sentences[:50].numpy()).max())
print(f"hierarchical_attention_pool with the trained parameters vs the model: max |difference| {difference:.1e}")

# %%
doc = 0
fig, axes = plt.subplots(1, 3, figsize=(17, 3.8), gridspec_kw={"width_ratios": [1.2, 1.6, 0.5]})
for name, style in (("hierarchical", "-"), ("flat", "--")):
    axes[0].plot(np.arange(len(smooth(doc_losses[name]))) + 20, smooth(doc_losses[name]), style, label=name)
axes[0].set(xlabel="training step", ylabel="cross-entropy (nats, 20-step average)", title="training loss")
axes[0].legend()
heatmap(axes[1], han_words[doc].numpy(), "word weights within each sentence", "word position t",
        "sentence n", yticks=[f"{n}{' (marked)' if n == test_marked[doc] else ''}" for n in range(N_SENT)])
for n in range(N_SENT):
    for t in range(N_WORDS):
        axes[1].text(t, n, WORD_NAMES[int(test_docs[doc, n, t])], ha="center", va="center", fontsize=8,
                     color="white" if han_words[doc, n, t] < 0.5 else "black")
heatmap(axes[2], han_sentences[doc].numpy()[:, None], "sentence weights", "", "sentence n", xticks=["weight"],
        vmax=1)
fig.tight_layout()
plt.show()

# %% [markdown]
# The hierarchical model reads almost every held-out document right; the flat one does about as well
# as the printed baseline, the majority polarity of the whole document. Flat attention can find the
# marker and the polarity words, but once they are averaged into one vector nothing says which polarity
# word sat next to the marker. The hierarchy keeps that information: each sentence vector holds its own
# polarity word (and, in one sentence, the marker), and the sentence-level attention learned to favour
# the marked sentence (its printed average weight, against 1/5 for uniform weights). The word weights
# show the word-level context vector picking mostly the polarity word and the marker (which takes the
# larger share in the marked sentence) over the fillers.

# %% [markdown] tags=["question:theory-42"]
# ### Describe hierarchical attention mechanisms.
#
# Hierarchical attention applies attention at each level of a structure: words are pooled into sentence
# vectors, then sentences into a document vector, each level with its own parameters and a learned
# context vector that plays the query (Yang et al. 2016, hierarchical attention networks). The weights
# tell which words matter inside each sentence and which sentences matter in the document.
#
# - Level: $u_k = \tanh(x_kW + b)$, $\alpha = \mathrm{softmax}(u_k^\top u)$, pooled $\sum_k\alpha_kx_k$;
#   Yang et al. put a bidirectional GRU under each level.
# - Why: a flat attention over all words loses which words belong together (section 4: flat near the
#   majority-vote baseline, hierarchical near 100%).
# - Cost: each softmax runs over $T$ or $N$ items, not $N \cdot T$; padding sentences need masking at
#   both levels.
# - Same idea elsewhere: Lu et al. (2016) co-attend a question and an image at word, phrase and
#   question level.

# %% [markdown]
# ## 5. Co-attention: one affinity matrix, two directions
#
# Cross-attention (notebook 02) lets one sequence read another: a question reads the document. Some
# tasks need both directions at once. To answer a question about a passage, each question word should
# know which passage words match it, *and* each passage word should know which question words it
# answers. **Co-attention** computes one **affinity matrix** between every question word and every
# document word and normalises it both ways (Xiong et al. 2017, dynamic coattention networks):
#
# $$A = q\,d^\top\ (L, S),\qquad A^Q = \mathrm{softmax}_S(A)\ (L, S),\qquad A^D = \mathrm{softmax}_L(A^\top)\ (S, L)$$
# $$C^Q = A^Q d\ (L, D),\qquad C^D = A^D\,[q;\ C^Q]\ (S, 2D)$$
#
# $C^Q$ is, for each question word, its summary of the document. $C^D$ is the co-attention context of
# each document word: it reads the question words *and* their document summaries, so a document word
# learns what the relevant part of the document says about the question. $A^D$ is not $A^Q$ transposed:
# the rows of $A^Q$ sum to 1 over the document, those of $A^D$ over the question. Xiong et al. first
# project the question through $\tanh(qW + b)$ and append a sentinel word to each sequence (so a word can
# attend to "nothing"); both are left to the caller here. The affinity is a plain dot product, not
# scaled by $1/\sqrt{D}$. ("Dynamic" names DCN's decoder, which re-estimates the answer's start and end
# over several iterations, not the co-attention.)
#
# Lu et al. (2016) co-attend a question and an image differently. Their *parallel* co-attention computes
# an affinity $C = \tanh(Q^\top W_b V)$ between question words and image regions but does not normalise
# it: $C$ carries each side's features into the other's attention scores, which give one attention map
# over the image regions and one over the question words. Their *alternating* co-attention summarises the
# question, attends over the image with it, then attends over the question with the attended image.
#
# **Exercise.** Implement `co_attention(q_states, d_states, q_mask=None, d_mask=None)`: $q$ `(..., L,
# D)`, $d$ `(..., S, D)` → `(q_context (..., L, D), d_context (..., S, 2D), q_weights (..., L, S),
# d_weights (..., S, L))`. Mask the side being attended to.

# %%
from attnlab.applications import co_attention

question = ["where", "did", "the", "cat", "sit", "?"]
passage = ["the", "cat", "sat", "on", "the", "mat", "near", "the", "door"]
rng = np.random.default_rng(4)
vocabulary = sorted(set(question + passage))
D = 16
vectors = {word: rng.standard_normal(D) for word in vocabulary}
vectors["sit"] = vectors["sat"] + 0.3 * rng.standard_normal(D)                # the same verb
vectors["where"] = 0.6 * (vectors["on"] + vectors["near"]) + 0.5 * rng.standard_normal(D)  # place words
q_states = 0.55 * np.stack([vectors[word] for word in question])               # (L, D) = (6, 16)
d_states = 0.55 * np.stack([vectors[word] for word in passage])                # (S, D) = (9, 16)
q_context, d_context, q_weights, d_weights = co_attention(q_states, d_states)
print("q_context", q_context.shape, " d_context", d_context.shape, " q_weights", q_weights.shape,
      " d_weights", d_weights.shape)
print("q_weights rows sum to", q_weights.sum(axis=1).round(6)[:3], "...; d_weights rows sum to",
      d_weights.sum(axis=1).round(6)[:3], "...; d_weights == q_weights.T?", np.allclose(d_weights, q_weights.T))
fig, axes = plt.subplots(1, 2, figsize=(15, 4))
heatmap(axes[0], q_weights, "question → passage: q_weights (each row sums to 1)", "passage word",
        "question word", xticks=passage, yticks=question)
heatmap(axes[1], d_weights, "passage → question: d_weights (each row sums to 1)", "question word",
        "passage word", xticks=question, yticks=passage)
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("applications.co_attention")

# %% [markdown]
# One affinity matrix, two readings. "cat" and "sit" in the question find "cat" and "sat" in the
# passage, and "where" (whose vector we built from "on" and "near") finds "near". Read the other way,
# "sat" attends to "sit" and "near" to "where", while passage words that match nothing ("mat", "door")
# spread their weight over the question. Each direction is
# a softmax over its own axis of the same scores, which is why `d_weights` is not `q_weights.T`.

# %% [markdown] tags=["question:theory-43"]
# ### What is co-attention and when is it useful?
#
# Co-attention attends between two inputs in both directions from one affinity matrix of every pair,
# $A = qd^\top$, normalised over each axis: each question word gets a summary of the document and each
# document word a summary of the question. It helps when the two inputs must be read in the light of
# each other, as in question answering (Xiong et al. 2017) and visual question answering (Lu et al. 2016).
#
# - DCN: $C^Q = \mathrm{softmax}_S(A)\,d$, then $C^D = \mathrm{softmax}_L(A^\top)[q; C^Q]$, a second
#   hop; sentinels let a word attend to nothing.
# - Lu et al. (2016): the affinity $\tanh(Q^\top W V)$ feeds one attention map per input (parallel), or
#   the two inputs take turns (alternating), at word, phrase and question level.
# - BiDAF (Seo et al. 2017) reads the same matrix as context-to-query and query-to-context attention.
# - Cost: $O(LSD)$ for the affinity; $A^D \ne (A^Q)^\top$ (section 5). Cross-attention is one direction.

# %% [markdown]
# ## 6. In your own words
#
# A colleague replaces DIN's pooling with a softmax over the history "to make the weights a proper
# distribution". In 3–4 sentences, say what the model loses, which users it hurts most, and when a
# softmax over the history would be the better choice.

# %% [markdown] tags=["answer", "points:2"]
# A softmax makes the user vector a weighted *average* of the related behaviours, so it no longer grows
# with how many of them there are: a user with one related purchase and a user with ten look alike, and
# the intensity of an interest, which Zhou et al. (2018) kept on purpose, is lost (section 3 measured it
# on a task where clicks depend on counts). It hurts most the heavy users whose histories contain many
# related behaviours, and it also inflates a single weakly related behaviour when it is the only one.
# A softmax is the better choice when only *what* the user likes should matter, not how much: for
# example when history lengths vary for reasons unrelated to interest, or when the pooled vector feeds
# a layer that expects a fixed scale.

# %% [markdown]
# ## Summary
#
# | mechanism | score | normalised over | output |
# |---|---|---|---|
# | location-sensitive (speech) | $w^\top\tanh(sW + h_jV + f_jU + b)$, $f = F * \alpha_{i-1}$ | all frames | `(B, S)` |
# | GAT (graphs) | $\mathrm{LeakyReLU}(a_1 \cdot z_i + a_2 \cdot z_j)$ | neighbours of $i$ | `(N, H·D_out)` |
# | DIN (recommendation) | MLP on $[h_j, c, h_j - c, h_j\odot c]$ | **nothing** | `(B, D)` |
# | hierarchical (documents) | $\tanh(xW + b)\cdot u$, two levels | words of a sentence; sentences | `(B, D)` |
# | co-attention (pairs) | $q\,d^\top$ | $S$ one way, $L$ the other | `(L, D)`, `(S, 2D)` |
#
# Measured here on tasks made in code: a content-only speech decoder could not follow the order of the
# phones where a location-aware one could; GAT learned to ignore decoy neighbours that averaging could not; DIN
# kept the count of related behaviours that a softmax removed; and a hierarchical classifier found the
# marked sentence that flat attention could not.
#
# Questions answered: theory-29 (speech), theory-40 (graphs), theory-41 (recommendation), theory-42
# (hierarchical attention), theory-43 (co-attention). Next, notebook 12 looks at what attention cannot do
# well and at the alternatives built to replace it.
