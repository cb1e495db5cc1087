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
# # 01 · What attention computes
#
# Attention answers one question for every query: *which of these vectors matter to me, and how much?*
# It scores each key against the query, turns the scores into weights with a softmax, and returns the
# weighted average of the values. This notebook builds that pipeline from intuition to code.
#
# **You will learn**
# - attention as a *soft dictionary lookup*, and its oldest form: Nadaraya–Watson kernel regression;
# - why encoder–decoder RNNs without attention degrade on long inputs (the fixed-size bottleneck);
# - the four classic alignment scores (dot, scaled dot, general, additive), with their shapes and costs;
# - a numerically stable softmax and a masked softmax that never returns NaN;
# - the context vector $c_i = \sum_j w_{ij} v_j$, and how to answer the interview questions on all of it.
#
# **Shapes.** $B$ batch, $H$ heads, $L$ queries, $S$ keys/values, $D$ query/key width, $D_v$ value
# width, $A$ hidden width of additive attention. Scores and weights are always `(..., L, S)`: one row per
# query, one column per key. Masks are boolean and `True` means *may attend*.
#
# **You will build** `dot_scores`, `scaled_dot_scores`, `general_scores` and `additive_scores` in
# `src/attnlab/scoring.py`, and `softmax` and `masked_softmax` in `src/attnlab/softmax.py`. Run the setup
# cell first; after each exercise, run its `check(...)` cell.

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import matplotlib.pyplot as plt

np.set_printoptions(precision=3, suppress=True)


def show_weights(ax, w, title, xlabel="key j", ylabel="query i"):
    """Draw an (L, S) array of weights as a heatmap on a fixed 0-1 scale; NaN cells in red."""
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("red")                                 # NaN is drawn, never hidden
    image = ax.imshow(np.ma.masked_invalid(w), cmap=cmap, vmin=0, vmax=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xticks=range(w.shape[1]), yticks=range(w.shape[0]))
    return image

# %% [markdown]
# ## 1. Intuition: a soft dictionary lookup
#
# A Python `dict` is a *hard* lookup: the query must equal a key exactly, and you get back exactly one
# value. Attention relaxes both rules. Every key is compared with the query by a similarity score, the
# scores become non-negative weights that sum to 1, and the result is the **weighted average of all
# values**:
#
# $$\text{hard: } \; v_{j^*},\; j^* = \arg\max_j \operatorname{sim}(q, k_j)
# \qquad\qquad
# \text{soft: } \; \sum_{j=1}^{S} w_j v_j,\quad w_j = \frac{e^{\operatorname{sim}(q, k_j)}}{\sum_{j'} e^{\operatorname{sim}(q, k_{j'})}}$$
#
# Because the soft version is a smooth function of the query, the keys and the values, gradients reach
# all of them: a network can *learn* where to look. Below, $S = 3$ keys of width $D = 2$ and values of
# width $D_v = 4$, one query.

# %%
keys = np.array([[1.0, 0.0],      # (S, D) = (3, 2)
                 [0.0, 1.0],
                 [0.7, 0.7]])
values = np.array([[10.0, 0.0, 0.0, 1.0],   # (S, D_v) = (3, 4)
                   [0.0, 10.0, 0.0, 1.0],
                   [0.0, 0.0, 10.0, 1.0]])
query = np.array([0.9, 0.2])      # (D,): closest to key 0, somewhat similar to key 2

scores = keys @ query             # (S,) dot-product similarity
hard = values[np.argmax(scores)]  # one value, all-or-nothing
# Naive softmax: fine for these small scores. Section 5 shows when it breaks.
weights = np.exp(scores) / np.exp(scores).sum()
soft = weights @ values           # (S,) @ (S, D_v) -> (D_v,)

print("scores :", scores)
print("weights:", weights, " sum =", weights.sum())
print("hard lookup:", hard)
print("soft lookup:", soft)

# %% [markdown]
# The soft lookup leans towards value 0 but blends in the others; the last column (1 in every value)
# stays exactly 1, because a weighted average with weights summing to 1 preserves constants. Sharper
# scores (multiply them by 10) push the soft answer towards the hard one:

# %%
sharp = np.exp(10 * scores) / np.exp(10 * scores).sum()
print("weights at 10x scores:", sharp)
print("soft lookup          :", sharp @ values)

# %% [markdown] tags=["question:qa-1"]
# ### Intuition: what does attention compute?
#
# For each query, attention returns a **weighted average of value vectors**, the weights being a softmax
# of how well the query matches each value's key. It is a dictionary lookup made soft: every value comes
# back a little, so the lookup is differentiable and the model can learn what to retrieve.
#
# - Shapes: weights `(L, S)`, each row summing to 1 over the keys; output `(L, S) @ (S, D_v) -> (L, D_v)`.
# - Unlike a dense layer, the mixing weights are computed from the input at run time, and the same
#   parameters serve any number of keys $S$.
# - A convex combination: the all-ones column stays exactly 1; sharper scores (the 10x cell) move the
#   answer towards the hard lookup.
# - Pitfall: normalise over the keys (the $S$ axis), not over the queries.
# - "Are weights an explanation?" They show what is mixed, not why (Jain and Wallace 2019; notebook 09).

# %% [markdown]
# ## 2. The oldest attention: Nadaraya–Watson kernel regression
#
# In 1964, decades before neural networks learned where to look, Nadaraya and Watson (independently)
# predicted $y$ at a new point $x$ by averaging the training targets $y_j$, weighted by how close each
# training input $x_j$ is to $x$:
#
# $$\hat f(x) = \sum_{j=1}^{S} \frac{K(x - x_j)}{\sum_{j'} K(x - x_{j'})}\, y_j,
# \qquad K(u) = e^{-u^2 / (2\sigma^2)}
# \;\;\Longrightarrow\;\;
# \hat f(x) = \sum_j \operatorname{softmax}_j\!\Big(-\tfrac{(x - x_j)^2}{2\sigma^2}\Big)\, y_j .$$
#
# That is attention with query $x$, keys $x_j$, values $y_j$ and the score $-(x - x_j)^2 / 2\sigma^2$.
# The data: $S = 50$ noisy training points from $y = 2\sin x + x^{0.8}$, and $L = 40$ query points.

# %%
rng = np.random.default_rng(0)
n_train, n_query = 50, 40                              # S = 50 keys, L = 40 queries


def true_f(x):
    return 2 * np.sin(x) + x ** 0.8


x_train = np.sort(rng.uniform(0, 5, n_train))          # keys, (S,); sorted so key index j grows with x_j
y_train = true_f(x_train) + rng.normal(0, 0.5, n_train)  # values, (S,)
x_query = np.linspace(0, 5, n_query)                   # queries, (L,)


def kernel_regression(x_query, x_train, y_train, sigma):
    """Nadaraya-Watson with a Gaussian kernel. Returns predictions (L,) and weights (L, S)."""
    scores = -((x_query[:, None] - x_train[None, :]) ** 2) / (2 * sigma**2)  # (L, 1) - (1, S) -> (L, S)
    # Scores are <= 0 and every row has a key within reach, so the naive exp neither overflows nor
    # underflows to an all-zero row here (section 5 shows the stable way).
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)     # (L, S), rows sum to 1
    return weights @ y_train, weights                                        # (L, S) @ (S,) -> (L,)


bandwidths = (1.0, 0.3, 0.05)                          # wide, moderate, narrow kernels
fits = {sigma: kernel_regression(x_query, x_train, y_train, sigma) for sigma in bandwidths}
y_hat, nw_weights = fits[0.3]                          # (L,), (L, S)
print("weights:", nw_weights.shape, " row sums all 1:", np.allclose(nw_weights.sum(axis=1), 1))


def effective_keys(w):
    """1 / sum_j w_j^2 per row, (L, S) -> (L,): how many keys would share the weight if split evenly."""
    return 1 / (w**2).sum(axis=1)


errors = {}
for sigma, (pred, w) in fits.items():
    errors[sigma] = np.mean((pred - true_f(x_query)) ** 2)
    print(f"sigma = {sigma:4}: mean squared error vs the true f = {errors[sigma]:.3f}, "
          f"keys averaged per query (median) = {np.median(effective_keys(w)):.1f} of {n_train}")
print("lowest error at sigma =", min(errors, key=errors.get))

# %%
fig, (ax_fit, ax_w) = plt.subplots(1, 2, figsize=(12, 4.2))
ax_fit.plot(x_train, y_train, "o", color="0.6", ms=4, label="training data (keys, values)")
ax_fit.plot(x_query, true_f(x_query), "k--", label="true $f(x)$")
for sigma, (pred, _) in fits.items():
    ax_fit.plot(x_query, pred, lw=2 if sigma == 0.3 else 1.2, label=fr"attention, $\sigma = {sigma}$")
ax_fit.set(title="Nadaraya–Watson regression = attention", xlabel="x", ylabel="y")
ax_fit.legend(fontsize=8)

# One square per (query, key) pair, drawn at the key's true position x_j: the keys are random, so
# their columns are unevenly spaced (an imshow would silently space them evenly).
key_x, query_x = np.meshgrid(x_train, x_query)                 # (L, S) each
im = ax_w.scatter(key_x, query_x, c=nw_weights, marker="s", s=10, cmap="viridis", vmin=0)
ax_w.set(title=r"attention weights (L=40 queries × S=50 keys), $\sigma = 0.3$",
         xlabel="key position $x_j$ (training input; one column per key)", ylabel="query $x$",
         xlim=(-0.1, 5.1), ylim=(5.1, -0.1))
fig.colorbar(im, ax=ax_w, label="weight")
fig.tight_layout()
plt.show()
n_eff = effective_keys(nw_weights)                             # (L,)
print(f"sigma = 0.3, keys sharing the weight: query x = 0: {n_eff[0]:.1f}, x = 5: {n_eff[-1]:.1f}, "
      f"median over all queries: {np.median(n_eff):.1f}")
print(f"largest weight in the row:          query x = 0: {nw_weights[0].max():.2f}, x = 5: "
      f"{nw_weights[-1].max():.2f}, median over all queries: {np.median(nw_weights.max(axis=1)):.2f}")

# %% [markdown]
# Each row is one query's distribution over the keys: a bump centred on the query. The score is
# $-(x - x_j)^2 / 2\sigma^2$, a negative squared distance divided by $2\sigma^2$, so $2\sigma^2$ is the
# **temperature** of this softmax: a narrow kernel ($\sigma = 0.05$) averages only a couple of
# neighbours and chases the noise; a wide one ($\sigma = 1$) averages more than half of the 50 keys and
# flattens the curve (bias). The printed counts and errors show both, and which bandwidth wins here.
#
# **The bright corners.** A row's weights always sum to 1, so they are shared among the keys within
# reach (about $2\sigma$). A query at the edge of the data, $x = 0$ or $x = 5$, has keys on one side
# only, and a query in a sparse stretch of keys has few keys near it: either way fewer keys share the
# unit of weight and each gets more (the printed counts, $1 / \sum_j w_j^2$, against the median
# query). A bright cell means "few neighbours", not "an important key".
# Nothing here is learned. Attention in neural networks keeps the same recipe and *learns* the score
# function (and the representations of queries, keys and values).

# %% [markdown] tags=["question:theory-1"]
# ### Explain the fundamental concept of attention in neural networks.
#
# Attention lets each query build its own mixture of values in three steps: **score** the query against
# every key, **normalise** the scores with a softmax, **aggregate** the values with those weights (qa-1).
# The routing is computed from the data, not fixed in the parameters, so any position can read any
# other in one step.
#
# - Path length $O(1)$ between any two positions, against $O(S)$ through an RNN (Vaswani et al. 2017,
#   Table 1); the price is $O(LSD)$ time and an `(L, S)` weight matrix, quadratic in length.
# - Symmetries: **invariant** to permuting the (key, value) pairs together, **equivariant** to permuting
#   the queries (checked after theory-9); without a causal mask, order must come from positions
#   (notebook 05).
# - History: Nadaraya–Watson regression (1964) is attention with a fixed kernel (section 2); Graves
#   (2013) used a soft, location-based window; Bahdanau et al. (2014) brought content-based attention to
#   translation; Vaswani et al. (2017) made it the core block.

# %% [markdown]
# ## 3. Why attention was needed: the seq2seq bottleneck
#
# A classic encoder–decoder RNN (Sutskever et al. 2014; Cho et al. 2014a, the RNN Encoder–Decoder) reads
# the source tokens $x_1, \dots, x_S$ into hidden states $h_t = \phi(h_{t-1}, x_t) \in \mathbb{R}^{D_h}$
# and hands the decoder **one** vector, the last state $c = h_S$ (as its initial state, or as an extra
# input at every step). Every target token must be generated from that single $D_h$-dimensional summary,
# whether the sentence has 5 words or 50. Its capacity does not grow with $S$, and the earliest tokens
# have passed through up to $S$ recurrent updates. Cho et al. (2014b, *On the Properties of Neural
# Machine Translation*) measured the symptom: BLEU fell fast as sentences grew longer (and as unknown
# words grew more frequent). That the fixed-length vector is the cause was Bahdanau et al.'s conjecture,
# which their attention model then supported. Sutskever et al. (2014), with a large 4-layer LSTM and the
# source sentence reversed, reported no difficulty on long sentences: the bottleneck is real, but how
# much it costs depends on the model.
#
# Attention (Bahdanau et al. 2014) keeps **all** encoder states $h_1, \dots, h_S$, an $(S, D_h)$
# memory, and lets decoder step $t$ compute its own context $c_t = \sum_j w_{tj} h_j$ with weights from
# comparing the decoder state $s_{t-1}$ with each $h_j$.
#
# **A toy measurement.** Take a *linear* RNN $h_t = A h_{t-1} + B x_t$ with $D_h = 32$, tokens
# $x_t \in \mathbb{R}^4$ drawn at random (so they are incompressible), a stable $A$ (spectral radius 0.9)
# and a little read-out noise $\varepsilon \sim \mathcal{N}(0, \sigma^2 I)$, $\sigma = 0.05$, added to each
# state we read (not fed back into the recurrence). For each token we compute what fraction of its
# variance the *best linear read-out* can recover (a Bayesian $R^2$) from (a) the final state only and
# (b) all $S$ states, which is what attention can read. For $h = M x + \varepsilon$ with
# $x \sim \mathcal{N}(0, I)$ the recovered fraction of coordinate $n$ is
# $1 - \sigma^2 \big[(M^\top M + \sigma^2 I)^{-1}\big]_{nn}$.

# %%
rng = np.random.default_rng(0)
D_x, D_h, noise = 4, 32, 0.05
A_rec = 0.9 * np.linalg.qr(rng.standard_normal((D_h, D_h)))[0]  # (D_h, D_h), all |eigenvalues| = 0.9
B_in = rng.standard_normal((D_h, D_x)) / np.sqrt(D_x)            # (D_h, D_x)


def recovered_fraction(M, noise):
    """Per-coordinate R^2 of the best linear estimate of x from h = M x + noise, x ~ N(0, I)."""
    n = M.shape[1]
    return 1 - noise**2 * np.diag(np.linalg.inv(M.T @ M + noise**2 * np.eye(n)))


def state_maps(S):
    """M_all (S*D_h, S*D_x): row block s maps the whole input sequence to state h_s."""
    powers = [np.eye(D_h)]
    for _ in range(S - 1):
        powers.append(A_rec @ powers[-1])                         # A^0, A^1, ..., A^(S-1)
    M_all = np.zeros((S * D_h, S * D_x))
    for s in range(S):
        for t in range(s + 1):
            M_all[s * D_h:(s + 1) * D_h, t * D_x:(t + 1) * D_x] = powers[s - t] @ B_in
    return M_all


lengths = [2, 4, 8, 16, 32, 64]
final_only, all_states, per_token = [], [], {}
for S in lengths:
    M_all = state_maps(S)
    r2_final = recovered_fraction(M_all[-D_h:], noise).reshape(S, D_x).mean(axis=1)  # from h_S: (S,)
    r2_all = recovered_fraction(M_all, noise).reshape(S, D_x).mean(axis=1)          # from h_1..h_S: (S,)
    final_only.append(r2_final.mean())
    all_states.append(r2_all.mean())
    per_token[S] = (r2_final, r2_all)
    print(f"S={S:3d}: numbers in the source {S * D_x:4d}, in the final state {D_h}; "
          f"recovered from final state {r2_final.mean():.2f}, from all states {r2_all.mean():.2f}")

# %%
fig, (ax_len, ax_pos) = plt.subplots(1, 2, figsize=(12, 4))
ax_len.plot(lengths, all_states, "o-", label="all $S$ states (what attention reads)")
ax_len.plot(lengths, final_only, "s-", label="final state only (fixed context)")
ax_len.plot(lengths, np.minimum(1, D_h / (D_x * np.array(lengths))), "k:", label=r"bound $D_h / (S \cdot 4)$")
ax_len.set_xscale("log", base=2)
ax_len.set(xlabel="source length S", ylabel="fraction of token variance recovered",
           title="A fixed-size vector cannot hold a growing input")
ax_len.set_xticks(lengths, [str(n) for n in lengths])
ax_len.minorticks_off()
ax_len.legend(fontsize=8)
r2_final, r2_all = per_token[32]
ax_pos.plot(np.arange(1, 33), r2_all, "o-", label="all states")
ax_pos.plot(np.arange(1, 33), r2_final, "s-", label="final state only")
ax_pos.set(xlabel="token position t", ylabel="fraction recovered", ylim=(-0.05, 1.05),
           title="S = 32: which tokens survive in the final state?")
ax_pos.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Once the source holds more numbers than the state ($4S > 32$), the final state can keep at most a
# $D_h / 4S$ share of them, and the recurrence decides which: the early tokens vanish first. Kept states
# lose almost nothing (only the noise). Be honest about the toy: real sentences are redundant, and real
# RNNs (LSTMs) are nonlinear and gated, so they can choose what to keep; this toy says nothing about how
# fast a trained LSTM degrades (recall Sutskever et al. 2014). But the dimension count is the point: a
# fixed vector's capacity is constant while the input grows, whereas attention's memory grows with $S$
# (at the price of $O(S)$ work per decoder step).

# %% [markdown] tags=["question:theory-2"]
# ### What problem does attention solve in sequence-to-sequence models?
#
# It removes the **fixed-length bottleneck**: a plain encoder–decoder squeezes the whole source into one
# vector $h_S$, and its BLEU fell fast as sentences grew longer (Cho et al. 2014b, *On the Properties of
# NMT*). With attention, the decoder keeps every one of the $S$ encoder states and, at each step, reads its
# own weighted average of them (Bahdanau et al. 2014).
#
# - The toy above: the final state keeps at most a $D_h / 4S$ share of the tokens, early ones lost first;
#   all $S$ states keep nearly everything.
# - Bahdanau et al.'s RNNsearch-50 held its BLEU on 50+ word sentences; their fixed-vector model fell.
# - Nuance: Sutskever et al. (2014), with a large 4-layer LSTM and a reversed source, reported no trouble
#   on long sentences; what the bottleneck costs depends on the model.
# - Limit: $O(S)$ work per decoder step, and nothing explicitly tracks what is already translated, so
#   words get repeated or dropped (coverage: Tu et al. 2016; notebook 03).

# %% [markdown]
# ## 4. Alignment scores: how well does a query match a key?
#
# The score function $f(q_i, k_j)$ is where the classic attention variants differ most visibly (they also
# differ in which decoder state asks the question and how the context is used: theory-9, notebook 03).
# Every score function maps queries `(..., L, D_q)` and keys `(..., S, D_k)` to scores `(..., L, S)`.
#
# | name | score $s_{ij}$ | parameters | needs |
# |---|---|---|---|
# | dot (Luong et al. 2015) | $q_i^\top k_j$ | none | $D_q = D_k = D$ |
# | scaled dot (Vaswani et al. 2017) | $q_i^\top k_j / \sqrt{D}$ | none | $D_q = D_k = D$ |
# | general (Luong et al. 2015) | $q_i^\top W k_j$ | $W$: $(D_q, D_k)$ | any $D_q, D_k$ |
# | additive (Bahdanau et al. 2014) | $w_v^\top \tanh(W_q^\top q_i + W_k^\top k_j)$ | $W_q$: $(D_q, A)$, $W_k$: $(D_k, A)$, $w_v$: $(A,)$ | any $D_q, D_k$ |
#
# In matrix form, with rows as vectors (the NumPy convention): dot is $Q K^\top$,
# `(L, D) @ (D, S) -> (L, S)`; general is $(Q W) K^\top$, `(L, D_q) @ (D_q, D_k) @ (D_k, S)`;
# additive is $\tanh(Q W_q \oplus K W_k)\, w_v$ where $\oplus$ adds every row of `(L, A)` to every row of
# `(S, A)`, giving an `(L, S, A)` tensor before $w_v$ reduces it to `(L, S)`.
#
# ### 4.1 Dot-product scores
#
# $s_{ij} = q_i \cdot k_j = \sum_{d=1}^{D} q_{id} k_{jd}$. Large when the two vectors point the same way
# and are long. Any leading dimensions (batch $B$, heads $H$) are just carried along.
#
# **Implement `dot_scores` in `src/attnlab/scoring.py`.** Transpose only the last two axes of `k`.

# %%
from attnlab.scoring import dot_scores

rng = np.random.default_rng(0)
q = rng.standard_normal((2, 5, 4))   # (B, L, D) = (2, 5, 4)
k = rng.standard_normal((2, 7, 4))   # (B, S, D) = (2, 7, 4)
s = dot_scores(q, k)
print("q", q.shape, "k", k.shape, "-> scores", s.shape)            # (2, 5, 7)
print("s[1, 2, 3] == q[1, 2] . k[1, 3]:", np.isclose(s[1, 2, 3], q[1, 2] @ k[1, 3]))

# %% tags=["check"]
check("scoring.dot_scores")

# %% [markdown]
# ### 4.2 Scaled dot-product scores
#
# $s_{ij} = q_i^\top k_j \cdot \text{scale}$, with default $\text{scale} = 1/\sqrt{D}$. Why $\sqrt{D}$: if
# the entries of $q$ and $k$ are independent with mean 0 and variance 1 (a fair picture at
# initialisation, not after training), then $q \cdot k$ is a sum of $D$ terms of variance 1, so
# $\operatorname{Var}(q \cdot k) = D$. The scores' spread grows like $\sqrt{D}$, and a softmax of widely
# spread scores is nearly one-hot (it *saturates*, with vanishing gradients: checked in section 5).
# Dividing by $\sqrt{D}$ restores unit variance whatever the width. The variance argument is Vaswani et
# al.'s (2017, footnote 4); that saturation is what held unscaled dot products back, they only
# *suspected*. Notebook 02 tests it in a training run.

# %%
rng = np.random.default_rng(0)
for D in (4, 64, 1024):
    qd = rng.standard_normal((2000, D))  # 2000 random (q, k) pairs of width D
    kd = rng.standard_normal((2000, D))
    raw = np.sum(qd * kd, axis=1)         # (2000,) dot products
    print(f"D={D:5d}: var(q.k) = {raw.var():8.1f}   var(q.k / sqrt(D)) = {(raw / np.sqrt(D)).var():.2f}")

# %% [markdown]
# **Implement `scaled_dot_scores` in `src/attnlab/scoring.py`.** `scale=None` means $1/\sqrt{D}$ with $D$
# the last dimension of `q`; any other value (even `0.0`) is used as given.

# %%
from attnlab.scoring import scaled_dot_scores

rng = np.random.default_rng(0)
q = rng.standard_normal((2, 5, 4))   # (B, L, D)
k = rng.standard_normal((2, 7, 4))   # (B, S, D)
s_scaled = scaled_dot_scores(q, k)
print("q", q.shape, "k", k.shape, "-> scores", s_scaled.shape)     # (2, 5, 7)
print("default scale is 1/sqrt(4) = 0.5:", np.allclose(s_scaled, 0.5 * (q @ np.swapaxes(k, -1, -2))))

# %% tags=["check"]
check("scoring.scaled_dot_scores")

# %% [markdown]
# ### 4.3 General (bilinear) scores
#
# $s_{ij} = q_i^\top W k_j$ with a learned $W \in \mathbb{R}^{D_q \times D_k}$. Read it as
# $(q_i^\top W) \cdot k_j$: first map the query into key space, then take a dot product. So the query and
# key widths may differ. `(..., L, D_q) @ (D_q, D_k) -> (..., L, D_k)`, then
# `@ (..., D_k, S) -> (..., L, S)`. With $W = I$ it reduces to the dot score.
#
# **Implement `general_scores` in `src/attnlab/scoring.py`.**

# %%
from attnlab.scoring import general_scores

rng = np.random.default_rng(0)
q = rng.standard_normal((2, 5, 4))   # (B, L, D_q) = (2, 5, 4)
k = rng.standard_normal((2, 7, 3))   # (B, S, D_k) = (2, 7, 3): a different width
W = rng.standard_normal((4, 3))      # (D_q, D_k)
s_general = general_scores(q, k, W)
print("q", q.shape, "k", k.shape, "W", W.shape, "-> scores", s_general.shape)  # (2, 5, 7)
print("s[1, 2, 3] == q[1, 2] @ W @ k[1, 3]:", np.isclose(s_general[1, 2, 3], q[1, 2] @ W @ k[1, 3]))

# %% tags=["check"]
check("scoring.general_scores")

# %% [markdown]
# ### 4.4 Additive (Bahdanau) scores
#
# $s_{ij} = w_v^\top \tanh\!\big(W_q^\top q_i + W_k^\top k_j\big)$: a one-hidden-layer MLP applied to each
# (query, key) pair. Project once, `q @ W_q` is `(..., L, A)` and `k @ W_k` is `(..., S, A)`; pair every
# query with every key by broadcasting to `(..., L, S, A)`; apply `tanh`; reduce with $w_v$ to
# `(..., L, S)`. Bahdanau et al. (2014, appendix A) write exactly this form,
# $v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$, with their $W_a, U_a$ acting on column vectors (our $W_q^\top,
# W_k^\top$). Luong et al. (2015) write it on the concatenation, $v_a^\top \tanh(W_a [h_t; \bar h_s])$,
# and call it *concat*: splitting $W_a$ into a query block and a key block gives the same score.
#
# **Implement `additive_scores` in `src/attnlab/scoring.py`.**

# %%
from attnlab.scoring import additive_scores

rng = np.random.default_rng(0)
q = rng.standard_normal((2, 5, 4))   # (B, L, D_q) = (2, 5, 4)
k = rng.standard_normal((2, 7, 3))   # (B, S, D_k) = (2, 7, 3)
W_q = rng.standard_normal((4, 6))    # (D_q, A), A = 6
W_k = rng.standard_normal((3, 6))    # (D_k, A)
w_v = rng.standard_normal(6)         # (A,)
s_additive = additive_scores(q, k, W_q, W_k, w_v)
print("q", q.shape, "k", k.shape, "-> scores", s_additive.shape)  # (2, 5, 7); hidden tensor was (2, 5, 7, 6)
one_pair = w_v @ np.tanh(q[1, 2] @ W_q + k[1, 3] @ W_k)            # the formula for query 2, key 3
print("s[1, 2, 3] matches the formula:", np.isclose(s_additive[1, 2, 3], one_pair))

# %% tags=["check"]
check("scoring.additive_scores")

# %% [markdown] tags=["question:theory-7"]
# ### How do you compute attention weights (alignment scores)?
#
# Score every query–key pair with a score function, giving an `(..., L, S)` matrix of logits, then apply
# a softmax over the key axis so each query's row is non-negative and sums to 1. Pairs that must not
# interact are masked on the scores, before the softmax (their logit treated as $-\infty$).
#
# - Score functions (table in section 4): dot and general (Luong et al. 2015), scaled dot (Vaswani et
#   al. 2017), additive (Bahdanau et al. 2014).
# - Dot scores for all pairs are one batched matmul, `(B, H, L, D) @ (B, H, D, S) -> (B, H, L, S)`.
# - Pitfalls: normalising over the queries; zeroing weights after the softmax (rows no longer sum to 1);
#   forgetting $1/\sqrt{D}$; NaN on a fully masked row (ours gives zeros). The `check` cells catch the
#   last three.
# - Softmax is not the only normaliser: sparsemax gives exact zeros (Martins and Astudillo 2016).

# %% [markdown] tags=["question:theory-6"]
# ### What is the difference between additive and multiplicative attention?
#
# Multiplicative attention scores a pair with a bilinear form, $q^\top W k$ ($W = I$ for dot; Luong et
# al. 2015); additive attention runs a one-hidden-layer MLP on every pair,
# $w_v^\top \tanh(W_q^\top q + W_k^\top k)$ (Bahdanau et al. 2014). Both cost $O(LS)$ times a width, but
# dot is one optimised matmul while additive builds an `(L, S, A)` tensor and a `tanh` over it, so it is
# slower and uses more memory (measured below).
#
# - Quality: in NMT, additive was as good or a little better at every size, unscaled multiplicative far
#   behind at 1024 (18.2 vs 22.1 BLEU; Britz et al. 2017). Vaswani et al. (2017) *suspected* softmax
#   saturation, hence $1/\sqrt{D}$.
# - A Transformer's score is a general score with $W = W_Q W_K^\top$, rank $\le D$ (checked below).
# - Without the `tanh` the score is $a_i + b_j$; the softmax over $j$ cancels $a_i$, so every query gets
#   the same weights (checked below).

# %%
import os
import platform
import time

rng = np.random.default_rng(0)
L_big, S_big, D_big, A_big = 256, 320, 64, 64
q_big = rng.standard_normal((L_big, D_big))   # (L, D)
k_big = rng.standard_normal((S_big, D_big))   # (S, D)
W_q_big = rng.standard_normal((D_big, A_big)) / np.sqrt(D_big)  # (D, A)
W_k_big = rng.standard_normal((D_big, A_big)) / np.sqrt(D_big)  # (D, A)
w_v_big = rng.standard_normal(A_big)          # (A,)


def best_time(fn, repeats=5):
    # The minimum over repeats is the run least disturbed by other processes.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


t_dot = best_time(lambda: dot_scores(q_big, k_big))
t_add = best_time(lambda: additive_scores(q_big, k_big, W_q_big, W_k_big, w_v_big))
cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # usable cores
print(f"measured on {platform.processor() or platform.machine()} with {cpus} usable CPU cores, "
      f"NumPy {np.__version__}, Python {platform.python_version()}")
print(f"L={L_big}, S={S_big}, D={D_big}, A={A_big}")
print(f"  dot:      {t_dot * 1e3:6.2f} ms, largest array (L, S)    = {L_big * S_big:>9,} floats")
print(f"  additive: {t_add * 1e3:6.2f} ms, largest array (L, S, A) = {L_big * S_big * A_big:>9,} floats")
print(f"  additive / dot time: {t_add / t_dot:.0f}x")

# %%
rng = np.random.default_rng(1)
q = rng.standard_normal((5, 4))      # (L, D_q)
k = rng.standard_normal((7, 3))      # (S, D_k)
W = rng.standard_normal((4, 3))      # (D_q, D_k)
print("general == dot of the projected query:", np.allclose(general_scores(q, k, W), dot_scores(q @ W, k)))
k4 = rng.standard_normal((7, 4))     # (S, D) with D = D_q for the identity case
print("general with W = I == dot:           ", np.allclose(general_scores(q, k4, np.eye(4)), dot_scores(q, k4)))
W_Q, W_K = rng.standard_normal((4, 2)), rng.standard_normal((3, 2))  # Transformer-style projections
print("dot of projected q, k == general with W = W_Q W_K^T:",
      np.allclose(dot_scores(q @ W_Q, k @ W_K), general_scores(q, k, W_Q @ W_K.T)))

# %%
# The separability trap: additive scores with tanh removed. Rows of weights become identical.
rng = np.random.default_rng(2)
q = rng.standard_normal((5, 4))      # (L, D_q)
k = rng.standard_normal((7, 3))      # (S, D_k)
W_q, W_k, w_v = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(6)


def row_softmax(x):  # naive softmax over keys; the scores here are small
    return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)


linear = ((q @ W_q)[:, None, :] + (k @ W_k)[None, :, :]) @ w_v  # (L, S, A) @ (A,) -> (L, S) = a_i + b_j
w_linear = row_softmax(linear)
w_tanh = row_softmax(additive_scores(q, k, W_q, W_k, w_v))
print("without tanh, every query's weights are the same:", np.allclose(w_linear, w_linear[0]))
print("with tanh, they differ per query:                ", not np.allclose(w_tanh, w_tanh[0]))

# %% [markdown]
# ## 5. Softmax: from scores to weights, stably
#
# $\operatorname{softmax}(x)_j = e^{x_j} / \sum_{j'} e^{x_{j'}}$ maps any real row to a probability
# distribution. Written literally, it breaks: $e^{x}$ overflows to `inf` once $x$ exceeds the log of the
# largest float (printed below for three dtypes), and `inf / inf` is `nan`. In float64 that takes a score
# of several hundred; in float32 and especially float16, unscaled dot products of wide vectors or a large
# inverse temperature can get there.

# %%
for dtype in (np.float16, np.float32, np.float64):
    print(f"{np.dtype(dtype).name:>7}: exp(x) overflows for x > {np.log(np.finfo(dtype).max):.2f}")
x = np.array([1000.0, 1001.0, 1002.0])           # (S,) = (3,) scores
with np.errstate(over="ignore", invalid="ignore"):  # silence the warnings; look at the values instead
    big = np.exp(1000.0)
    naive = np.exp(x) / np.exp(x).sum()
print("np.exp(1000) =", big)
print("naive softmax:      ", naive)
shifted = x - x.max()                             # (3,) = [-2, -1, 0]: every exponent <= 0
stable = np.exp(shifted) / np.exp(shifted).sum()
print("max-subtracted:     ", stable)
print("same as the softmax of [0, 1, 2]:", np.allclose(stable, np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum()))

# %% [markdown]
# **Shift invariance.** For any constant $m$,
#
# $$\frac{e^{x_j - m}}{\sum_{j'} e^{x_{j'} - m}} = \frac{e^{-m}\, e^{x_j}}{e^{-m} \sum_{j'} e^{x_{j'}}}
# = \operatorname{softmax}(x)_j ,$$
#
# so we may subtract anything. Choosing $m = \max_j x_j$ makes every exponent $\le 0$ (no overflow) and
# the largest term exactly $e^0 = 1$ (the denominator is $\ge 1$, so no division by zero or by an
# underflowed sum). Only the *differences* between scores matter.
#
# **Implement `softmax` in `src/attnlab/softmax.py`.** It normalises along `axis` (default `-1`, the key
# axis of a `(..., L, S)` score array), works for any shape, and keeps the input's dtype. Use
# `keepdims=True` so the max and the sum broadcast back.

# %%
from attnlab.softmax import softmax

rng = np.random.default_rng(0)
scores = 1e4 * rng.standard_normal((2, 3, 5, 7))  # (B, H, L, S): huge on purpose
w = softmax(scores)
print("scores", scores.shape, "-> weights", w.shape)
print("all finite:", np.isfinite(w).all(), "  rows sum to 1:", np.allclose(w.sum(axis=-1), 1))
print("along axis 2 (the L axis) instead, columns sum to 1:", np.allclose(softmax(scores, axis=2).sum(axis=2), 1))

# %% tags=["check"]
check("softmax.softmax")

# %% [markdown]
# **Temperature.** Dividing the scores by a temperature $T$ changes how peaked the weights are:
# $T \to 0$ approaches a one-hot `argmax` (hard lookup), $T \to \infty$ approaches the uniform average.
# Scaled dot-product attention divides by $T = \sqrt{D}$, and the Gaussian kernel of section 2 by
# $T = 2\sigma^2$: both are temperatures.

# %%
toy_scores = np.array([2.0, 1.0, 0.5, -1.0, 0.0])  # (S,) = (5,)
temperatures = [0.25, 1.0, 4.0]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, T in zip(axes, temperatures):
    ax.bar(np.arange(5), softmax(toy_scores / T))
    ax.set(title=f"softmax(scores / {T})", xlabel="key j", xticks=range(5))
axes[0].set_ylabel("weight $w_j$")
fig.suptitle("Low temperature: nearly hard lookup. High temperature: nearly uniform average.")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Masked softmax
#
# Some keys must not be attended to: padding at the end of a shorter sentence in a batch, or future
# tokens in a decoder. A boolean mask, broadcastable to the scores' shape, says which pairs are allowed
# (`True` = may attend). Masked weights must be exactly 0 and the kept weights of each row must sum to 1:
#
# $$w_j = \frac{[\text{mask}_j]\; e^{x_j - m}}{\sum_{j'} [\text{mask}_{j'}]\; e^{x_{j'} - m}},
# \qquad m = \max_{j:\,\text{mask}_j} x_j .$$
#
# The usual trick sets masked scores to $-\infty$ before the softmax. That fails when a whole row is
# masked: the max is $-\infty$, $-\infty - (-\infty) = $ `nan`, and the row becomes NaN, which then
# poisons every gradient. The other common trick, a large finite negative such as `-1e9`, avoids the NaN
# but silently gives a fully masked row uniform weights over keys it must not see. **Our convention: a
# fully masked row gets all-zero weights** (and, later, a zero output).
#
# **Implement `masked_softmax` in `src/attnlab/softmax.py`.**

# %%
from attnlab.softmax import masked_softmax

scores = np.array([[3.0, 1.0, 0.2, 5.0, -1.0],    # (L, S) = (3, 5)
                   [0.5, 0.5, 0.5, 0.5, 0.5],
                   [2.0, 0.0, 1.0, 4.0, 3.0]])
mask = np.array([[True, True, True, False, False],  # (L, S): query 0 may see keys 0-2 (3 and 4 are padding)
                 [True, False, True, False, True],  # query 1 sees keys 0, 2, 4
                 [False, False, False, False, False]])  # query 2 sees nothing: a fully masked row
w = masked_softmax(scores, mask)
# A mask of shape (S,) broadcasts to every query: here all queries ignore the last two keys.
w_broadcast = masked_softmax(scores, np.array([True, True, True, False, False]))
print("row sums:", w.sum(axis=-1), " any NaN:", np.isnan(w).any())
fig, axes = plt.subplots(1, 3, figsize=(13, 2.8))
show_weights(axes[0], mask.astype(float), "mask (L, S), 1 = may attend")
show_weights(axes[1], w, "weights with that mask")
image = show_weights(axes[2], w_broadcast, "weights, (S,) mask broadcast")
fig.colorbar(image, ax=axes, label="weight (or mask value)")
plt.show()

# %% tags=["check"]
check("softmax.masked_softmax")

# %% [markdown] tags=["question:theory-8"]
# ### Describe the softmax normalization in attention mechanisms.
#
# Softmax turns one query's row of scores into weights $\alpha_{ij} = e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}$
# that are positive, keep the order of the scores and sum to 1 over the keys; it is a smooth stand-in for
# `argmax` with Jacobian $\mathrm{diag}(\alpha) - \alpha\alpha^\top$, so attention trains by gradient
# descent. Implementations subtract the row maximum first, which changes nothing (shift invariance) and
# prevents overflow.
#
# - Temperature: $\mathrm{softmax}(s/T)$ tends to one-hot as $T \to 0$ and to uniform as $T \to \infty$;
#   $\sqrt{D}$ and the $2\sigma^2$ of section 2 are temperatures. A too-sharp softmax saturates: its
#   Jacobian vanishes (checked below).
# - The weights **must** sum to 1, so a query cannot attend to nothing. Trained autoregressive LLMs put
#   much of the spare weight on the first tokens, "attention sinks" (Xiao et al. 2023); a key with a zero
#   value acts as such a sink (cell below).
# - Masking and its pitfalls: see theory-7.

# %%
rng = np.random.default_rng(0)
s_row = rng.standard_normal(6)                          # (S,) one query's scores
print("shift invariant:", np.allclose(softmax(s_row), softmax(s_row + 123.4)))
a = softmax(s_row)
jacobian = np.diag(a) - np.outer(a, a)                  # (S, S): d alpha_j / d s_k
eps = 1e-6
numeric = np.stack([(softmax(s_row + eps * np.eye(6)[kk]) - softmax(s_row - eps * np.eye(6)[kk])) / (2 * eps)
                    for kk in range(6)], axis=1)        # (S, S), column k = d alpha / d s_k
print("Jacobian diag(a) - a a^T matches finite differences:", np.allclose(jacobian, numeric, atol=1e-8))
for scale in (1, 10, 100):
    a = softmax(scale * s_row)
    print(f"scores x{scale:<3d}: max weight {a.max():.3f}, largest |gradient entry| {np.abs(np.diag(a) - np.outer(a, a)).max():.2e}")

# Weights must sum to 1: a query that matches nothing still spreads a full unit of weight.
v_row = rng.standard_normal((6, 3))                     # (S, D_v) values
low = np.full(6, -5.0)                                  # (S,) every key a poor match
out_plain = softmax(low) @ v_row                        # (D_v,)
print("all scores -5: weights", softmax(low).round(3), "sum", softmax(low).sum().round(3),
      f"-> output norm {np.linalg.norm(out_plain):.3f}")
# A 'sink': one extra key with a zero value and a higher score absorbs most of the weight.
w_sink = softmax(np.append(low, 0.0))                   # (S + 1,)
out_sink = w_sink @ np.vstack([v_row, np.zeros(3)])     # (D_v,)
print(f"plus a sink key (score 0, value 0): weight on the sink {w_sink[-1]:.3f}, "
      f"output norm {np.linalg.norm(out_sink):.3f}")

# %% [markdown]
# ## 6. The context vector
#
# The last step averages the values with the weights. For query $i$:
#
# $$c_i = \sum_{j=1}^{S} w_{ij}\, v_j, \qquad C = W V: \quad (L, S) @ (S, D_v) \to (L, D_v),$$
#
# and with batch and heads, `(B, H, L, S) @ (B, H, S, D_v) -> (B, H, L, D_v)`. Below, the whole pipeline
# with your functions: scaled dot scores, a padding mask (batch element 1 has only 3 real keys), masked
# softmax, and the weighted sum. $B = 2$, $L = 3$, $S = 5$, $D = 4$, $D_v = 6$.

# %%
rng = np.random.default_rng(0)
q = rng.standard_normal((2, 3, 4))              # (B, L, D)
k = rng.standard_normal((2, 5, 4))              # (B, S, D)
v = rng.standard_normal((2, 5, 6))              # (B, S, D_v)
key_lengths = np.array([5, 3])                  # real keys per batch element; the rest is padding
pad_mask = np.arange(5)[None, None, :] < key_lengths[:, None, None]  # (B, 1, S), broadcasts over L

scores = scaled_dot_scores(q, k)                # (B, L, S) = (2, 3, 5)
weights = masked_softmax(scores, pad_mask)      # (B, L, S)
context = weights @ v                           # (B, L, S) @ (B, S, D_v) -> (B, L, D_v) = (2, 3, 6)
print("scores", scores.shape, "weights", weights.shape, "context", context.shape)
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
show_weights(axes[0], weights[0], "element 0: 5 real keys")
image = show_weights(axes[1], weights[1], "element 1: keys 3, 4 are padding")
fig.colorbar(image, ax=axes, label="weight")
plt.show()

# %% [markdown] tags=["question:theory-9"]
# ### What is the attention context vector and how is it computed?
#
# It is attention's output for one query, the weighted average of the values, $c_i = \sum_j \alpha_{ij} v_j$;
# for all queries it is one product, `(L, S) @ (S, D_v) -> (L, D_v)`. In RNN translation it replaced the
# single summary $h_S$ with a fresh context for every decoder step (Bahdanau et al. 2014).
#
# - Bahdanau et al. (2014): the values are annotations $h_j$ of a **bidirectional** RNN (forward and
#   backward states concatenated: both sides of word $j$); weights from the **previous** decoder state
#   $s_{t-1}$; $c_t$ then helps compute $s_t$.
# - Luong et al. (2015): weights from the **current** state $h_t$; $\tilde h_t = \tanh(W_c [c_t; h_t])$
#   predicts the word (notebook 03).
# - Properties (checked below): width $D_v$ whatever $S$ is; inside the values' bounding box; invariant
#   to permuting the (key, value) pairs together; equivariant to permuting the queries.
# - Pitfalls: summing over the wrong axis; NaN from fully masked rows (ours are zero vectors).

# %%
manual = np.zeros((2, 3, 6))                    # (B, L, D_v) by the definition, one sum per query
for b in range(2):
    for i in range(3):
        for j in range(5):
            manual[b, i] += weights[b, i, j] * v[b, j]
print("matmul == explicit sum over keys:", np.allclose(context, manual))
print("weights sum to 1 over S:", np.allclose(weights.sum(axis=-1), 1))
inside = (context >= v.min(axis=1, keepdims=True) - 1e-12) & (context <= v.max(axis=1, keepdims=True) + 1e-12)
print("every context coordinate lies between the values' min and max:", inside.all())
perm = np.array([2, 0, 1, 3, 4])                # permute the 3 real keys of element 1, with their values
c_perm = masked_softmax(scaled_dot_scores(q[1], k[1, perm]), pad_mask[1]) @ v[1, perm]  # (L, D_v)
print("permuting (key, value) pairs together leaves the context unchanged:", np.allclose(c_perm, context[1]))
q_perm = np.array([2, 0, 1])                    # permute the queries instead
c_qperm = masked_softmax(scaled_dot_scores(q[:, q_perm], k), pad_mask) @ v  # (B, L, D_v)
print("permuting the queries permutes the contexts the same way:", np.allclose(c_qperm, context[:, q_perm]))
no_keys = masked_softmax(scores, np.zeros((2, 3, 5), dtype=bool)) @ v  # every row fully masked
print("fully masked rows give a zero context:", np.all(no_keys == 0))

# %% [markdown]
# ## 7. In your own words
#
# In 3–4 sentences: why does an encoder–decoder without attention degrade on long inputs, and what
# exactly does attention change? Be specific about what is stored, what each decoder step reads, and
# what it costs.

# %% [markdown] tags=["answer", "points:2"]
# Without attention the encoder must squeeze the whole source into one fixed-size vector (its final
# state), and the decoder sees the source only through that vector; its capacity does not grow with the
# input length, so long sentences lose information, especially their early tokens, whose signal and
# gradients pass through many recurrent updates. Attention keeps all $S$ encoder states and, at each
# decoder step, scores them against the decoder state, normalises the scores with a softmax and reads a
# fresh weighted average (the context vector) of them. So the memory grows with the input, each output
# word can focus on the source words it needs (a soft alignment), and every source position is one step
# from every output, at a cost of $O(S)$ work per decoder step.

# %% [markdown]
# ## Summary
#
# | step | formula | shape |
# |---|---|---|
# | scores | $s_{ij} = f(q_i, k_j)$: dot, scaled dot, general, additive | `(..., L, S)` |
# | weights | $w_{ij} = \operatorname{softmax}_j(s_{ij})$, masked pairs $\to 0$, fully masked row $\to 0$ | `(..., L, S)` |
# | context | $c_i = \sum_j w_{ij} v_j$ | `(..., L, S) @ (..., S, D_v) -> (..., L, D_v)` |
#
# **Questions answered:** qa-1 (what attention computes), theory-1 (the concept), theory-2 (the seq2seq
# bottleneck), theory-6 (additive vs multiplicative), theory-7 (computing the weights), theory-8 (softmax),
# theory-9 (the context vector).
#
# Next, notebook 02 puts these pieces together as scaled dot-product attention with queries, keys and
# values projected from the inputs, adds causal and padding masks, and trains a small model to show what
# the $1/\sqrt{D}$ does in practice.
