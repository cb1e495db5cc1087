"""Reading attention: turning weights into pictures and numbers a person can check.

Taught in notebooks/09_reading_attention.ipynb. Attention weights have shape ``(L, S)`` for one head:
row i says how query i spreads one unit of attention over the S keys (a fully masked query spreads
none: its row is zeros). This module holds the tools for reading them: a labelled heatmap first
(``plot_attention``), then a number for how focused a head is (attention entropy), a picture across
layers rather than of one layer (attention rollout), and penalties that shape attention in training.

A weight is evidence about what a head *mixes*, not an explanation of *why* the model decides: a
large weight on a token whose value vector is small moves the output little (Kobayashi et al. 2020),
and quite different weights can give the same prediction (Jain and Wallace 2019). Treat every plot
here as a measurement to check with an intervention (mask the token, ablate the head).

Plotting functions take ``ax=None``: given an Axes they draw into it and return it (so plots compose
into grids of heads); without one they make a new figure. ``matplotlib.pyplot`` is imported inside
them, so the module's NumPy exercises never load a plotting library.
"""
import numpy as np


def plot_attention(weights, query_labels, key_labels, ax=None):
    """Draw one head's attention weights as a labelled heatmap: queries down, keys across.

    Parameters
    ----------
    weights : ndarray of float, shape (L, S)
        ``weights[i, j]`` is how much query i attends to key j; each row usually sums to 1, and a
        fully masked query row is all zeros. Plotted as given: not normalised, not transposed.
    query_labels : sequence of str, length L
        One label per query (row), e.g. the target tokens. Repeats are fine ("the" twice).
    key_labels : sequence of str, length S
        One label per key (column), e.g. the source tokens.
    ax : matplotlib.axes.Axes, optional
        Where to draw. Default None: a new figure with one Axes.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The Axes drawn on: ``ax`` itself when one was given (not its Figure, not a new Axes).

    Notes
    -----
    What the plot must show, because a reader relies on it:

    * **One image of the weights**, row i of the picture = query i, column j = key j. That is the
      ``(L, S)`` array itself, exactly as ``imshow``/``matshow`` draw it (query 0 on the top row).
    * **Every key label on its column** along the x axis, and **every query label on its row** along
      the y axis, in order. Set one tick per cell yourself: the default tick locator labels only
      some cells, and ``set_xticklabels`` without ``set_xticks`` pins the labels to ticks that are
      not the cells, so labels land one cell off.
    * **Axis titles** that say what runs along each axis: the x title names the keys (``"key"``,
      ``"key position"``), the y title the queries (``"query"``).
    * **A colour bar**: colour alone does not say whether the brightest cell is 0.3 or 0.99, and two
      heatmaps next to each other may use different colour scales. Any colour limits are fine:
      automatic, or fixed to (0, 1) so that several heads are drawn on one scale.
    """
    # 1. No ax given: fig, ax = plt.subplots() (import matplotlib.pyplot as plt inside the function).
    # 2. image = ax.imshow(weights) draws (L, S) with cell (i, j) centred at x = j, y = i; then
    #    ax.set_xticks(range(S), labels=key_labels) and the same for the L query labels on y.
    # 3. ax.figure.colorbar(image, ax=ax) adds the scale; label the axes, then return ax.
    raise NotImplementedError(
        "interpret.plot_attention is not implemented yet: see notebooks/09_reading_attention.ipynb"
    )


def attention_entropy(weights, axis=-1):
    """The entropy of each attention distribution, in nats: how spread out a query's attention is.

    Parameters
    ----------
    weights : ndarray of float, shape (..., S)
        Attention weights; the distributions run along `axis` (by default the last one, the keys).
        Each is non-negative and usually sums to 1; a fully masked query's row is all zeros.
    axis : int, optional
        The axis the weights of one distribution run along (default -1).

    Returns
    -------
    entropy : ndarray of float, shape (...,)
        ``weights.shape`` without `axis`, same dtype as `weights`:
        ``-sum_j w_j * ln(w_j)`` with the natural log (nats), taking ``0 * ln 0 = 0``.

    Notes
    -----
    .. math:: H(w) = -\\sum_{j=1}^{S} w_j \\ln w_j, \\qquad 0 \\le H(w) \\le \\ln S'

    where :math:`S'` is the number of non-zero weights: 0 for a one-hot row (all attention on one key),
    :math:`\\ln S'` for a uniform one. Zero weights (masked keys) contribute nothing, so a fully masked row
    has entropy 0, like a one-hot row: tell them apart by their sum. Divide by ``ln 2`` for bits.
    """
    # 1. np.log(0) is -inf and 0 * -inf is NaN: take the log of np.where(weights > 0, weights, 1) instead
    #    (ln 1 = 0, so a zero weight contributes exactly 0).
    # 2. Multiply by the weights, sum over `axis` (no keepdims) and negate: (..., S) -> (...,).
    raise NotImplementedError(
        "interpret.attention_entropy is not implemented yet: see notebooks/09_reading_attention.ipynb"
    )


def attention_rollout(attentions, residual=True):
    """Attention rollout (Abnar and Zuidema 2020): how much of each input token reaches each position
    after all the layers, if attention were the only way information moves.

    Parameters
    ----------
    attentions : ndarray of float, shape (n_layers, ..., H, L, L), or a sequence of n_layers arrays
        of shape (..., H, L, L)
        Self-attention weights of every layer, first layer first; ``attentions[l][..., h, i, j]`` is
        how much query i attends to key j in head h of layer l. Leading dims (a batch) are kept.
    residual : bool, optional
        Account for the residual connection (default True): per layer, add the identity to the
        head-averaged weights and renormalise every row to sum to 1 (0.5 A + 0.5 I for a row that
        sums to 1; an all-zero row, a fully masked query, becomes the identity row). False multiplies
        the head-averaged weights as they are.

    Returns
    -------
    rollout : ndarray of float, shape (..., L, L)
        ``rollout[..., i, j]``: the share of input token j in position i's output of the last layer.
        Same dtype as the weights.

    Notes
    -----
    With :math:`\\bar A_l` the mean over the H heads of layer l and, when `residual`,
    :math:`\\hat A_l = \\mathrm{rownorm}(\\bar A_l + I)` (else :math:`\\hat A_l = \\bar A_l`):

    .. math:: R = \\hat A_{n-1} \\cdots \\hat A_1 \\hat A_0

    Later layers multiply on the left: position i of layer l + 1 reads the positions of layer l, which
    read the layer below. Abnar and Zuidema average the heads for simplicity (rollout per head is
    possible too), and write the residual step as ``0.5 W + 0.5 I``. Rollout ignores the values, the
    output projections and the MLPs (it treats every head as mixing whole token representations), so it
    is a picture of where information *can* flow, to be checked with an intervention. The same paper's
    attention flow, a maximum flow through the layers with these weights as capacities, is not built
    here.
    """
    # 1. Per layer: A = layer.mean(axis=-3) averages the heads, (..., H, L, L) -> (..., L, L).
    # 2. residual: A = A + np.eye(L), then A / A.sum(axis=-1, keepdims=True) so every row sums to 1.
    # 3. Start from the first layer's A and, for each later layer, rollout = A_layer @ rollout.
    raise NotImplementedError(
        "interpret.attention_rollout is not implemented yet: see notebooks/09_reading_attention.ipynb"
    )


def entropy_penalty(weights, mask=None):
    """The mean attention entropy (in nats) over the queries that attend somewhere: a regulariser.

    Added to a loss as ``loss + lam * entropy_penalty(weights, mask)`` it pushes every head towards
    sharper attention (low entropy); subtracted, it keeps attention spread out (as entropy-based
    attention regularisation does, Attanasio et al. 2022).

    Parameters
    ----------
    weights : ndarray of float, shape (..., L, S)
        Attention weights, e.g. (B, H, L, S); each row is a query's distribution over the S keys.
    mask : ndarray of bool, shape broadcastable to (..., L, S), optional
        True where a query may attend to a key (the course's convention). Entries where it is False
        contribute nothing, whatever their weight, and a query row with no True entry (a fully masked
        query) is left out of the mean. A key-padding mask (B, 1, 1, S) keeps the padding *queries*
        (they attend to real keys): to leave them out, combine query and key padding,
        ``keep[:, None, :, None] & keep[:, None, None, :]``. Default None: every entry and row counts.

    Returns
    -------
    penalty : ndarray of float, shape ()
        A scalar in the weights' dtype: a NumPy scalar (what ``np.mean`` returns) or a 0-d array, not
        a Python float:
        ``sum over counted rows of -sum_j w_j ln w_j``, divided by the number of counted rows, with
        ``0 * ln 0 = 0`` and the natural log. 0 when no row is counted (never NaN).
    """
    # 1. keep = np.broadcast_to(mask, weights.shape) (all True without a mask); zero the masked entries
    #    with np.where(keep, weights, 0), then the row entropies are attention_entropy's, (..., L).
    # 2. A row counts when keep.any(axis=-1); average the entropies over the counted rows only.
    # 3. No counted row: return 0 in the weights' dtype (0 / 0 would be NaN).
    raise NotImplementedError(
        "interpret.entropy_penalty is not implemented yet: see notebooks/09_reading_attention.ipynb"
    )


def doubly_stochastic_penalty(attention_history):
    """The doubly stochastic attention penalty of Show, Attend and Tell (Xu et al. 2015).

    A decoder attends over S source positions (image regions) at each of T steps; every step's weights
    sum to 1 (a row). The penalty asks the *columns* to sum to 1 too: over the whole output, every
    position should receive about one unit of attention, so none is ignored and none is revisited at
    every step.

    Parameters
    ----------
    attention_history : ndarray of float, shape (..., T, S)
        The weights of T decoder steps over S positions; leading dims are a batch, e.g. (B, T, S).
        A step that attends nowhere (a padded step, a row of zeros) adds nothing to any column.

    Returns
    -------
    penalty : ndarray of float, shape (...,)
        One penalty per sequence, ``sum_j (1 - sum_t a[t, j])^2``, same dtype as the input. It is
        *not* reduced over the batch: average or sum it yourself (Xu et al. add ``lam * penalty`` to
        each caption's negative log-likelihood).

    Notes
    -----
    .. math:: P = \\sum_{j=1}^{S} \\Big(1 - \\sum_{t=1}^{T} a_{tj}\\Big)^2

    It is 0 exactly when every column sums to 1 (with T == S: a doubly stochastic matrix, e.g. a
    permutation). With T steps and S positions the columns sum to T in all, so when T != S it cannot
    reach 0; the smallest value, ``(T - S)^2 / S``, is reached when every column gets T / S.
    """
    # 1. Sum over the steps, the second-to-last axis: received = attention_history.sum(axis=-2), (..., S).
    # 2. ((1 - received) ** 2).sum(axis=-1) is (...,): one value per sequence, no batch reduction.
    raise NotImplementedError(
        "interpret.doubly_stochastic_penalty is not implemented yet: see notebooks/09_reading_attention.ipynb"
    )
