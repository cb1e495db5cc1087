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
