"""References for attnlab.interpret.

The NumPy exercises (attention_entropy, attention_rollout, entropy_penalty, doubly_stochastic_penalty) are
computed in float64 and rounded once to the input's dtype, written apart from the solution: logs taken with
``np.log(..., where=...)`` on rows moved to the last axis, the rollout multiplied from the top layer down,
the penalty averaged over a list of the counted rows. tests/test_interpret_exercise.py cross-checks them
against PyTorch (torch.special.entr, torch.linalg.multi_dot).

plot_attention: written apart from the solution (matshow, ticks set through a FixedLocator and a
FixedFormatter, the colour bar in an Axes of its own) so that a grader that only accepted the solution's
way of drawing would fail this one. The grader never compares pictures with it: it checks what any
correct drawing shows (autograde/graders/interpret.py).
"""
import numpy as np


def plot_attention(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedFormatter, FixedLocator
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    w = np.array(weights, dtype=np.float64, copy=True)
    if ax is None:
        fig = plt.figure()
        ax = fig.add_subplot()
    image = ax.matshow(w, vmin=0.0, vmax=max(1.0, float(np.nanmax(w))) if w.size else 1.0)
    for axis, labels in ((ax.xaxis, key_labels), (ax.yaxis, query_labels)):
        axis.set_major_locator(FixedLocator(np.arange(len(labels), dtype=float)))  # cell centres
        axis.set_major_formatter(FixedFormatter([str(s) for s in labels]))
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    cax = make_axes_locatable(ax).append_axes("right", size="5%", pad=0.1)
    ax.figure.colorbar(image, cax=cax)
    return ax


def _xlogx(p):
    """p * ln p element-wise in float64, 0 where p == 0 (and for p < 0, which weights never are)."""
    p = np.asarray(p, dtype=np.float64)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return p * logs


def attention_entropy(weights, axis=-1):
    w = np.asarray(weights)
    rows = np.moveaxis(w.astype(np.float64), axis, -1)  # (..., S)
    entropy = -_xlogx(rows).sum(axis=-1) + 0.0          # + 0.0 turns -0.0 into 0.0
    return np.asarray(entropy).astype(w.dtype, copy=False)


def attention_rollout(attentions, residual=True):
    layers = [np.asarray(a) for a in attentions]
    dtype = np.result_type(*layers)
    per_layer = []
    for a in layers:
        heads = a.shape[-3]
        mixed = np.einsum("...hij->...ij", a.astype(np.float64)) / heads  # (..., L, L)
        if residual:
            L = mixed.shape[-1]
            mixed = mixed + np.broadcast_to(np.identity(L), mixed.shape)
            mixed = mixed / np.expand_dims(mixed.sum(axis=-1), -1)
        per_layer.append(mixed)
    rollout = per_layer[-1]
    for mixed in reversed(per_layer[:-1]):  # the top layer first: R = A_{n-1} (A_{n-2} (... A_0))
        rollout = np.matmul(rollout, mixed)
    return rollout.astype(dtype, copy=False)


def entropy_penalty(weights, mask=None):
    w = np.asarray(weights)
    keep = np.ones(w.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), w.shape)
    S = w.shape[-1]
    rows, keeps = w.astype(np.float64).reshape(-1, S), keep.reshape(-1, S)
    entropies = [-_xlogx(row[k]).sum() for row, k in zip(rows, keeps) if k.any()]  # counted rows only
    value = float(np.mean(entropies)) if entropies else 0.0
    return np.asarray(value, dtype=w.dtype)


def doubly_stochastic_penalty(attention_history):
    a = np.asarray(attention_history)
    column_sums = np.einsum("...ts->...s", a.astype(np.float64))  # (..., S)
    return np.square(1.0 - column_sums).sum(axis=-1).astype(a.dtype, copy=False)
