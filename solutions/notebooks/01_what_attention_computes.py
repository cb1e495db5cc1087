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
# **Exercises** live in `src/attnlab/scoring.py` and `src/attnlab/softmax.py`. Run the setup cell first;
# after each exercise, run its `check(...)` cell.

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import matplotlib.pyplot as plt

np.set_printoptions(precision=3, suppress=True)

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
# For each query it computes a **weighted average of a set of value vectors**, where the weight of each
# value depends on how well its key matches the query. With a query $q_i \in \mathbb{R}^{D}$, keys
# $K \in \mathbb{R}^{S \times D}$ and values $V \in \mathbb{R}^{S \times D_v}$:
# $w_i = \operatorname{softmax}_j\big(\operatorname{score}(q_i, k_j)\big) \in \mathbb{R}^{S}$ and
# $c_i = \sum_j w_{ij} v_j \in \mathbb{R}^{D_v}$; for all $L$ queries at once, $(L, S) @ (S, D_v) \to (L, D_v)$.
# It is a differentiable version of a dictionary lookup: `argmax` over keys is replaced by a softmax, so
# every key and value receives gradient and the model can learn what to retrieve. The crucial difference
# from a dense layer is that the mixing weights are **computed from the input at run time** (content-based),
# not stored as parameters, and the same parameters work for any number of keys $S$. Because the weights
# are non-negative and sum to 1, the output always lies in the convex hull of the values.
# Pitfall: the weights are normalised over the **keys** (the $S$ axis, each row sums to 1), not over the
# queries. Common follow-up: "are the weights an explanation?" They are a distribution over positions,
# but not necessarily a faithful explanation of the prediction (notebook 09).

# %% [markdown]
# ## 2. The oldest attention: Nadaraya–Watson kernel regression
#
# In 1964, long before neural networks, Nadaraya and Watson predicted $y$ at a new point $x$ by averaging
# the training targets $y_j$, weighted by how close each training input $x_j$ is to $x$:
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


x_train = np.sort(rng.uniform(0, 5, n_train))          # keys, (S,); sorted so the heatmap reads well
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
for sigma, (pred, _) in fits.items():
    print(f"sigma = {sigma:4}: mean squared error vs the true f = {np.mean((pred - true_f(x_query)) ** 2):.3f}")

# %%
fig, (ax_fit, ax_w) = plt.subplots(1, 2, figsize=(12, 4.2))
ax_fit.plot(x_train, y_train, "o", color="0.6", ms=4, label="training data (keys, values)")
ax_fit.plot(x_query, true_f(x_query), "k--", label="true $f(x)$")
for sigma, (pred, _) in fits.items():
    ax_fit.plot(x_query, pred, lw=2 if sigma == 0.3 else 1.2, label=fr"attention, $\sigma = {sigma}$")
ax_fit.set(title="Nadaraya–Watson regression = attention", xlabel="x", ylabel="y")
ax_fit.legend(fontsize=8)

im = ax_w.imshow(nw_weights, aspect="auto", cmap="viridis",
                 extent=[x_train[0], x_train[-1], x_query[-1], x_query[0]])
ax_w.set(title=r"attention weights (L=40 queries × S=50 keys), $\sigma = 0.3$",
         xlabel="key position $x_j$ (training input)", ylabel="query $x$")
fig.colorbar(im, ax=ax_w, label="weight")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each row of the heatmap is one query's distribution over the keys: a bump centred on the query.
# The width $\sigma$ plays the role of a **temperature**: a narrow kernel ($\sigma = 0.05$) attends to
# one or two neighbours and chases the noise; a wide one ($\sigma = 1$) averages nearly everything and
# flattens the curve (bias). The moderate $\sigma = 0.3$ has the lowest error here.
# Nothing here is learned. Attention in neural networks keeps the same recipe and *learns* the score
# function (and the representations of queries, keys and values).

# %% [markdown] tags=["question:theory-1"]
# ### Explain the fundamental concept of attention in neural networks.
#
# Attention lets a network build, for every element it is computing (a **query**), a *data-dependent*
# combination of other representations (the **values**), choosing the mixture by comparing the query
# with a **key** attached to each value. It always runs in three steps: **score** every query–key pair,
# $s_{ij} = f(q_i, k_j)$, giving an $(L, S)$ matrix; **normalise** each row with a softmax into weights
# $w_{ij} \ge 0$, $\sum_j w_{ij} = 1$; **aggregate**, $c_i = \sum_j w_{ij} v_j$, giving $(L, D_v)$.
# What makes it powerful: (1) the weights are computed from the input, so the same layer routes
# information differently for every example; (2) any position can read any other in one step, so the
# path between two distant tokens has length $O(1)$ instead of $O(S)$ in an RNN, which helps both
# long-range dependencies and gradient flow; (3) it works on sets of any size $S$ with a fixed number of
# parameters. Statistically it is Nadaraya–Watson kernel regression with a learned kernel (shown above).
# It was introduced for translation (Bahdanau et al., 2014) to remove the fixed-vector bottleneck, and
# the Transformer (2017) made self-attention the main building block.
# Follow-ups: it is permutation-equivariant over the keys, so word order must be injected with
# positional information; and the $(L, S)$ score matrix makes it cost $O(L S D)$ time and $O(L S)$
# memory, quadratic in sequence length for self-attention.

# %% [markdown]
# ## 3. Why attention was needed: the seq2seq bottleneck
#
# A classic encoder–decoder RNN (Sutskever et al., 2014; Cho et al., 2014) reads the source tokens
# $x_1, \dots, x_S$ into hidden states $h_t = \phi(h_{t-1}, x_t) \in \mathbb{R}^{D_h}$ and hands the
# decoder **one** vector, the last state $c = h_S$. Every target token must be generated from that single
# $D_h$-dimensional summary, whether the sentence has 5 words or 50. Its capacity does not grow with $S$,
# and the earliest tokens have been overwritten by $S$ recurrent updates. Cho et al. measured exactly
# this: translation quality fell sharply with sentence length.
#
# Attention (Bahdanau et al., 2014) keeps **all** encoder states $h_1, \dots, h_S$, an $(S, D_h)$
# memory, and lets decoder step $t$ compute its own context $c_t = \sum_j w_{tj} h_j$ with weights from
# comparing the decoder state $s_{t-1}$ with each $h_j$.
#
# **A toy measurement.** Take a *linear* RNN $h_t = A h_{t-1} + B x_t$ with $D_h = 32$, tokens
# $x_t \in \mathbb{R}^4$ drawn at random (so they are incompressible), a stable $A$ (spectral radius 0.9)
# and a little noise $\varepsilon \sim \mathcal{N}(0, \sigma^2 I)$, $\sigma = 0.05$, on the states. For each token we compute
# what fraction of its variance the *best linear read-out* can recover (a Bayesian $R^2$) from (a) the
# final state only and (b) all $S$ states, which is what attention can read. For $h = M x + \varepsilon$
# with $x \sim \mathcal{N}(0, I)$ the recovered fraction of coordinate $n$ is
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
# lose nothing. Be honest about the toy: real sentences are redundant and real RNNs (LSTMs) are
# nonlinear and gated, so they degrade more gracefully than random tokens in a linear RNN. But the
# dimension count is the point: a fixed vector's capacity is constant while the input grows, whereas
# attention's memory grows with $S$ (at the price of $O(S)$ work per decoder step).

# %% [markdown] tags=["question:theory-2"]
# ### What problem does attention solve in sequence-to-sequence models?
#
# It removes the **fixed-length context bottleneck**. A plain encoder–decoder compresses the whole source
# into the final encoder state $c = h_S \in \mathbb{R}^{D_h}$ and conditions every decoding step on that
# one vector. Its capacity is constant while the input grows, so long sentences lose information, and
# the earliest tokens suffer most because they passed through $S$ recurrent updates (their gradient
# path is just as long, which makes them hard to learn). Cho et al. (2014) showed BLEU dropping sharply
# with length; tricks such as reversing the source sentence only moved the problem.
# With attention the encoder keeps all states $H \in \mathbb{R}^{S \times D_h}$; at decoder step $t$ it
# scores the decoder state against every $h_j$, normalises with a softmax, and forms a step-specific
# context $c_t = \sum_j w_{tj} h_j$. So (1) memory grows with the input, (2) each output token can focus
# on the source words it needs (a learned soft **alignment**, visible as an $(L, S)$ matrix), and
# (3) every source token is one step away from every output, which shortens gradient paths.
# The price is $O(S)$ work per decoder step, $O(L S)$ per sentence.
# Follow-up: attention removes the *single-vector* bottleneck, but the decoder still has to track what it
# has already translated; without extra help it may repeat or skip words (coverage models address that).

# %% [markdown]
# ## 4. Alignment scores: how well does a query match a key?
#
# The score function $f(q_i, k_j)$ is the only part that differs between the classic attention variants.
# Every one of them maps queries `(..., L, D_q)` and keys `(..., S, D_k)` to scores `(..., L, S)`.
#
# | name | score $s_{ij}$ | parameters | needs |
# |---|---|---|---|
# | dot (Luong) | $q_i^\top k_j$ | none | $D_q = D_k = D$ |
# | scaled dot (Vaswani) | $q_i^\top k_j / \sqrt{D}$ | none | $D_q = D_k = D$ |
# | general (Luong) | $q_i^\top W k_j$ | $W$: $(D_q, D_k)$ | any $D_q, D_k$ |
# | additive (Bahdanau) | $w_v^\top \tanh(W_q^\top q_i + W_k^\top k_j)$ | $W_q$: $(D_q, A)$, $W_k$: $(D_k, A)$, $w_v$: $(A,)$ | any $D_q, D_k$ |
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
# the entries of $q$ and $k$ are independent with mean 0 and variance 1, then $q \cdot k$ is a sum of $D$
# terms of variance 1, so $\operatorname{Var}(q \cdot k) = D$. The scores' spread grows like $\sqrt{D}$,
# and a softmax of widely spread scores is nearly one-hot (it *saturates*, with vanishing gradients).
# Dividing by $\sqrt{D}$ restores unit variance whatever the width:

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
# `(..., L, S)`. (Bahdanau wrote it on the concatenation $[q_i; k_j]$; splitting $W$ into a query
# block and a key block gives this form.)
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
# In two stages. First the **alignment scores** (logits) $e_{ij} = f(q_i, k_j)$ for every query–key
# pair, with one of: dot $q_i^\top k_j$; scaled dot $q_i^\top k_j / \sqrt{D}$; general $q_i^\top W k_j$;
# additive $w_v^\top \tanh(W_q^\top q_i + W_k^\top k_j)$. The multiplicative ones are computed for all pairs
# in one batched matmul: `(B, H, L, D) @ (B, H, D, S) -> (B, H, L, S)`. Then, optionally, a **mask**
# removes pairs that must not interact (padding keys, future tokens in a decoder): in our convention
# `True` keeps a pair, and a removed pair's logit is treated as $-\infty$. Finally a **softmax over the
# key axis** turns each row into the **attention weights**
# $\alpha_{ij} = e^{e_{ij}} / \sum_{j'} e^{e_{ij'}}$: non-negative, each row summing to 1.
# Pitfalls interviewers probe: normalising over the wrong axis (queries instead of keys), forgetting the
# $1/\sqrt{D}$ scale, applying the mask *after* the softmax (the rows then no longer sum to 1), and a
# fully masked row producing NaN (`0/0`; we return zeros instead). Alternatives to softmax exist
# (sparsemax, sigmoid attention), but softmax is the standard.

# %% [markdown] tags=["question:theory-6"]
# ### What is the difference between additive and multiplicative attention?
#
# **Multiplicative** attention (dot, scaled dot, Luong's general) scores a pair with a bilinear form,
# $s_{ij} = q_i^\top W k_j$ ($W = I$ for dot). All $L \times S$ scores come from one matrix product,
# $O(L S D)$ multiply-adds, with no intermediate larger than the `(L, S)` output; that is exactly the
# operation GPUs are built for. **Additive** attention (Bahdanau) runs a small MLP on every pair,
# $s_{ij} = w_v^\top \tanh(W_q^\top q_i + W_k^\top k_j)$: the projections cost $O((L + S) D A)$, but then it
# materialises an `(L, S, A)` tensor and applies `tanh` to all of it, $O(L S A)$ time *and memory* in
# elementwise, memory-bound operations, so it is much slower in practice at similar flop counts.
# Expressiveness: additive is a nonlinear function of the pair and handles $D_q \ne D_k$ naturally;
# general also handles different widths through a rectangular $W$; plain dot needs $D_q = D_k$.
# Vaswani et al. (2017) found the two similar for small $D$ but additive better than *unscaled* dot for
# large $D$, because large dot products saturate the softmax; scaling by $1/\sqrt{D}$ fixed that, and
# scaled dot won on speed. Note also that the Transformer's $q = x W_Q$, $k = x W_K$ makes its dot score
# a general score with a low-rank $W = W_Q W_K^\top$.
# Follow-up: "why the `tanh`?" Without it the score is separable, $s_{ij} = a_i + b_j$; the softmax over $j$
# cancels $a_i$, so every query gets the same weights. The cells below show the cost gap, the
# general/dot equivalences and the separability trap.

# %%
import time

rng = np.random.default_rng(0)
L_big, S_big, D_big, A_big = 256, 320, 64, 64
q_big = rng.standard_normal((L_big, D_big))   # (L, D)
k_big = rng.standard_normal((S_big, D_big))   # (S, D)
W_q_big = rng.standard_normal((D_big, A_big)) / np.sqrt(D_big)  # (D, A)
W_k_big = rng.standard_normal((D_big, A_big)) / np.sqrt(D_big)  # (D, A)
w_v_big = rng.standard_normal(A_big)          # (A,)


def best_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


t_dot = best_time(lambda: dot_scores(q_big, k_big))
t_add = best_time(lambda: additive_scores(q_big, k_big, W_q_big, W_k_big, w_v_big))
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
# distribution. Written literally, it breaks: in float64, $e^{x}$ overflows to `inf` for $x > 709.78$,
# and `inf / inf` is `nan`. Scores that large are not exotic: unscaled dot products of long vectors, or
# a large inverse temperature, produce them.

# %%
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
# The $1/\sqrt{D}$ factor of scaled dot-product attention and the kernel width $\sigma$ of section 2 are
# both temperatures.

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
# poisons every gradient. **Our convention: a fully masked row gets all-zero weights** (and, later, a
# zero output).
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
print("weights (L, S):\n", w)
print("row sums:", w.sum(axis=-1), " any NaN:", np.isnan(w).any())
# A mask of shape (S,) broadcasts to every query: here all queries ignore the last two keys.
print("broadcast mask (S,) -> (L, S):\n", masked_softmax(scores, np.array([True, True, True, False, False])))

# %% tags=["check"]
check("softmax.masked_softmax")

# %% [markdown] tags=["question:theory-8"]
# ### Describe the softmax normalization in attention mechanisms.
#
# Softmax turns one query's row of scores $s_{i1}, \dots, s_{iS}$ into weights
# $\alpha_{ij} = e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}$ that are positive, sum to 1 over the **keys**, and keep
# the order of the scores; for a `(B, H, L, S)` score array it is applied along the last axis. It is a
# smooth, differentiable relaxation of `argmax`, which is why attention can be trained with gradients:
# $\partial \alpha_{ij} / \partial s_{ik} = \alpha_{ij}(\delta_{jk} - \alpha_{ik})$. Normalising makes the
# output a convex combination of the values, so its scale does not depend on $S$.
# A temperature controls sharpness: $\operatorname{softmax}(s / T)$ tends to one-hot as $T \to 0$ and to
# uniform as $T \to \infty$; the $1/\sqrt{D}$ factor is such a temperature, chosen so that the softmax does
# not **saturate**, where one weight is near 1 and the gradients above all go to nearly 0.
# Softmax is shift-invariant, $\operatorname{softmax}(s + c) = \operatorname{softmax}(s)$, which every
# implementation exploits by subtracting the row maximum to avoid overflow (kernels like FlashAttention
# keep a running maximum and sum for the same reason, and accumulate in float32 when inputs are
# half precision). Masking sets disallowed logits to $-\infty$ (weight exactly 0) before normalising;
# a fully masked row must be special-cased, since a naive implementation returns NaN.
# Pitfall: softmax over the wrong axis, or masking after normalising.
# The next cell checks the shift invariance, the Jacobian and the saturation with your `softmax`.

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
print("weights of batch element 1 (padding keys 3, 4 get 0):\n", weights[1])

# %% [markdown] tags=["question:theory-9"]
# ### What is the attention context vector and how is it computed?
#
# It is the output of attention for one query: the weighted average of the values,
# $c_i = \sum_{j=1}^{S} \alpha_{ij} v_j$, with $\alpha_i = \operatorname{softmax}_j(\operatorname{score}(q_i, k_j))$.
# For all queries it is one matrix product, weights `(L, S)` @ values `(S, D_v)` -> `(L, D_v)`, or
# `(B, H, L, S) @ (B, H, S, D_v) -> (B, H, L, D_v)` with batch and heads. In Bahdanau's translation model
# the values (and keys) are the encoder states $h_j$ and a new $c_t$ is computed at every decoder step from
# the previous decoder state; $c_t$ is then combined with the decoder state to predict the next word
# (Luong concatenates $[c_t; s_t]$ and applies a `tanh` layer). This replaces the single context vector
# $c = h_S$ of the plain encoder–decoder, which was the same for every step.
# Properties worth stating: its width is $D_v$ whatever $S$ is; since the weights are non-negative and
# sum to 1 it lies in the convex hull of the values (each coordinate between the values' min and max);
# it is invariant to permuting the (key, value) pairs together; and it is differentiable with respect to
# both the weights and the values. In a Transformer, each head produces such vectors, which are
# concatenated over heads and projected by $W_O$.
# Pitfalls: summing over the wrong axis (the weights are normalised over $S$), assuming values equal keys
# (they need not), and NaN contexts from fully masked rows (our convention returns a zero vector).
# The cell below checks these properties on the example above.

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
# state), and the decoder reads only that vector at every step; its capacity does not grow with the input
# length, so long sentences lose information, especially their early tokens, whose signal and gradients
# pass through many recurrent updates. Attention keeps all $S$ encoder states and, at each decoder step,
# scores them against the current decoder state, normalises the scores with a softmax and reads a fresh
# weighted average (the context vector) of them. So the memory grows with the input, each output word can
# focus on the source words it needs (a soft alignment), and every source position is one step from
# every output, at a cost of $O(S)$ work per decoder step.

# %% [markdown]
# ## Summary
#
# | step | formula | shape |
# |---|---|---|
# | scores | $s_{ij} = f(q_i, k_j)$: dot, scaled dot, general, additive | `(..., L, S)` |
# | weights | $w_{ij} = \operatorname{softmax}_j(s_{ij})$, masked pairs $\to 0$, fully masked row $\to 0$ | `(..., L, S)` |
# | context | $c_i = \sum_j w_{ij} v_j$ | `(..., L, S) @ (..., S, D_v) -> (..., L, D_v)` |
#
# Next, notebook 02 puts these pieces together as scaled dot-product attention with queries, keys and
# values projected from the inputs, and adds causal masks.
