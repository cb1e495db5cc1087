"""References for attnlab.interpret.

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
