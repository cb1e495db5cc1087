"""Grader for attnlab.interpret (notebook 09): plot_attention, a matplotlib exercise graded on data (this
docstring), and four NumPy exercises graded against float64 oracles (attention_entropy, attention_rollout,
entropy_penalty, doubly_stochastic_penalty: see the block comment above them, at the end of the file).

Nothing is judged on pixels. The worker extracts what the returned Axes shows (autograde.worker.axes_data):
every image-like artist (imshow, matshow, pcolormesh) with its array and whether it has a colour bar, and
for every visible tick label the image cell (column or row) it sits on. The cases check what a reader of
the heatmap relies on:

* an Axes comes back: the one passed as `ax` (the same handle), or a new one when ax is None;
* exactly one image, and its array is the weights exactly as given: shape (L, S), rows = queries;
* the S key labels along x, one on each column in order; the L query labels along y, one on each row;
* a colour bar for that image; an x axis title that mentions "key" and a y axis title that mentions
  "quer" (query, queries), as the exercise's docstring says.

Not checked, on purpose: the colour map and the colour limits (automatic or fixed to (0, 1) are both
fine), the title, the figure size, where the ticks are drawn (matshow puts x ticks on top), and whether
query 0 is on the top row (recommended; the extracted data does not carry the y axis direction).

Every check derives its hint from what the picture shows (a (S, L) array: transposed; query labels on
x: swapped; each label one cell off: shifted...), so the hint does not depend on the learner's other
choices (colour map, title) matching a mutant's exactly. Dimensions differ within every case
(L=5, S=7 style) and key labels repeat a token ("the" twice), so a transposition, an axis swap or a
label matched by text instead of by position cannot pass.
"""
import numpy as np

from ..compare import describe_type
from ..framework import DTYPE_HINT, Exercise, Remote
from ..references import interpret as ref
from ..references.softmax import masked_softmax
from ..wire import AxesData
from .inputs import causal, keep_mask

plot_attention = Exercise("interpret.plot_attention", points=2, reference=ref.plot_attention, profile="matplotlib")

# --------------------------------------------------------------------------------------- hints
H_RETURN = "return the Axes you drew on (ax), not the Figure, the image, a tuple or None"
H_IGNORES_AX = ("draw into the Axes you are given and return it: make a new figure (plt.subplots()) only "
                "when ax is None")
H_GCA = ("draw with the given Axes' own methods (ax.imshow, ax.set_xticks, ax.figure.colorbar(image, ax=ax)), "
         "not with plt.imshow / plt.gca(): pyplot draws on the current Axes, which need not be the ax you "
         "were given")
H_NO_IMAGE = "draw the weights as an image on the Axes you return: ax.imshow(weights) (or matshow, pcolormesh)"
H_MANY_IMAGES = ("draw the weights once, on a fresh Axes: with ax=None make a new figure (fig, ax = plt.subplots()); "
                 "plt.gca() returns the Axes of an earlier plot, and the new image lands on top of the old one")
H_RGB = "pass the (L, S) weights themselves to imshow and let a colour map colour them, not an RGB picture"
H_TRANSPOSED = ("plot the (L, S) weights as they are, not transposed: row i of the image is query i (y axis), "
                "column j is key j (x axis)")
H_RESCALED = ("plot the weights as they are: dividing by their maximum changes the values the colour bar "
              "reads; to fix the colour scale, pass vmin=0, vmax=1 instead")
H_NAN = ("plot the weights as they are: a fully masked query row is a row of zeros, and dividing each row by "
         "its sum (or masking the zeros) turns it into NaN, a blank row")
H_VALUES = "the image must hold the weights exactly as given (float64): do not round, cast or transform them"
H_SWAPPED = ("put the key labels along x (one per column, S of them) and the query labels along y (one per "
             "row, L of them)")
H_TICKLABELS = ("set the tick positions together with the labels: ax.set_xticks(range(S), labels=key_labels); "
                "set_xticklabels alone labels the ticks the default locator chose, which are not one per cell")
H_SHIFTED = ("every label sits one cell away from its own: put the tick for label j at the centre of cell j "
             "(x = j for imshow or matshow, j + 0.5 for pcolormesh), with no padding label such as ''")
H_MISSING = ("label every cell: the default tick locator puts a tick only every few cells, so set one tick per "
             "cell yourself: ax.set_xticks(range(S), labels=key_labels)")
H_COLORBAR_IMAGE = ("give the colour bar its image, ax.figure.colorbar(image, ax=ax): plt.colorbar() looks for an "
                    "image on pyplot's current Axes, which need not be the ax you drew on")
H_NO_COLORBAR = ("add a colour bar for the image, ax.figure.colorbar(image, ax=ax): without it a reader cannot "
                 "tell a weight of 0.3 from 0.9")
H_TITLES = "title the axes: ax.set_xlabel('key') and ax.set_ylabel('query')"
H_TITLES_SWAPPED = "the keys run along x and the queries along y: xlabel 'key', ylabel 'query' (they are swapped)"


# ------------------------------------------------------------------------------------- inputs
def _weights(rng, L, S, keep=None):
    """Softmax weights (L, S), float64; rows with no kept key are all zeros (a fully masked query)."""
    scores = rng.standard_normal((L, S)) * 1.5
    keep = np.ones((L, S), dtype=bool) if keep is None else keep
    return masked_softmax(scores, keep)


KEYS_7 = ["the", "cat", "sat", "on", "the", "mat", "."]          # "the" twice: labels go by position
QUERIES_5 = ["die", "Katze", "sass", "auf", "<eos>"]


# ------------------------------------------------------------------------------------- checks
def _describe(got):
    return f"an object of type {got.type_name}" if isinstance(got, Remote) else describe_type(got)


def _axes(t, got, given=None, current=None):
    """The returned value is an Axes; the given one when ax was passed (`current`: pyplot's current Axes)."""
    t.require(isinstance(got, AxesData), f"expected the Axes drawn on to be returned, got {_describe(got)}",
              H_RETURN)
    if given is not None and got.id != given.id:
        if current is not None and got.id == current.id:
            t.fail("returned pyplot's current Axes (plt.gca()), not the Axes passed as ax", H_GCA)
        t.fail("returned a different Axes from the one passed as ax", H_IGNORES_AX)


def _image(t, got, L, S, given=False):
    """The one image on the Axes, an (L, S) array of weights."""
    images = got.data["images"]
    no_image = H_NO_IMAGE + (" (ax.imshow draws on ax; plt.imshow on the current Axes)" if given else "")
    t.require(len(images) >= 1, "the returned Axes holds no image (imshow, matshow or pcolormesh)", no_image)
    t.require(len(images) == 1, f"the returned Axes holds {len(images)} images, expected exactly one",
              H_MANY_IMAGES)
    image = images[0]
    t.require(not image["rgb"], "the image is an RGB(A) picture, not the weights under a colour map", H_RGB)
    shape = tuple(image["array"].shape)
    t.require(shape == (L, S), f"the image should be the (L, S) = {(L, S)} weights (rows = queries, columns = "
              f"keys), got an array of shape {shape}", H_TRANSPOSED if shape == (S, L) else None)
    return image


def _values(t, image, weights):
    """The image's array is the weights, exactly (the worker reads it as float64); _image checked the shape."""
    got, want = image["array"], np.asarray(weights, dtype=np.float64)
    hint = None
    with np.errstate(all="ignore"):
        scale = got.max() / want.max() if want.max() > 0 else 1.0
        if np.isnan(got).any() and not np.isnan(want).any():
            hint = H_NAN
        elif not np.array_equal(got, want) and np.array_equal(got, want.T):  # L == S: only the values tell
            hint = H_TRANSPOSED
        elif np.allclose(got, want, rtol=1e-6, atol=1e-9):
            hint = H_VALUES
        elif not np.isclose(scale, 1.0) and np.allclose(got, scale * want, rtol=1e-9, atol=1e-12):
            hint = H_RESCALED
    t.expect(got, want, what="the image's array (the weights)", rtol=0.0, atol=0.0, hint=hint)


def _fmt(cells, n_max=8):
    shown = ", ".join(f"{text!r} " + (f"on {i}" if i >= 0 else "off the image") for text, i in cells[:n_max])
    return (shown + f", ... ({len(cells)} in all)" if len(cells) > n_max else shown) or "none"


def _tick_hint(cells, labels, other):
    """The likely mistake behind tick labels that are not one per cell in order."""
    labels, other = [str(s) for s in labels], [str(s) for s in other]
    texts = [text for text, _ in cells]
    if texts and texts == other[:len(texts)] and texts != labels[:len(texts)]:
        return H_SWAPPED
    on_image = [(text, i) for text, i in cells if 0 <= i < len(labels)]
    if not on_image:
        return H_TICKLABELS
    if all(labels[i] == text for text, i in on_image) and len({i for _, i in on_image}) < len(labels):
        return H_MISSING
    for d in (1, -1):
        if all(0 <= i + d < len(labels) and labels[i + d] == text for text, i in on_image):
            return H_SHIFTED
    return H_TICKLABELS


def _ticks(t, image, query_labels, key_labels):
    """Key labels on the columns (x), query labels on the rows (y), one each, in order."""
    for axis, labels, other, what, unit in (("x", key_labels, query_labels, "key", "column"),
                                            ("y", query_labels, key_labels, "query", "row")):
        cells = [[str(text), int(i)] for text, i in image[f"{axis}_cells"]]
        want = [[str(s), i] for i, s in enumerate(labels)]
        if cells != want:
            t.fail(f"the {axis} tick labels should be the {len(labels)} {what} labels, one on each {unit} in "
                   f"order ({_fmt(want)}); got {_fmt(cells)}", _tick_hint(cells, labels, other))


def _colorbar(t, image):
    t.require(image["colorbar"], "the image has no colour bar", H_NO_COLORBAR)


def _titles(t, got):
    x, y = got.data["xlabel"], got.data["ylabel"]
    ok = "key" in x.lower() and "quer" in y.lower()
    swapped = "quer" in x.lower() and "key" in y.lower()
    t.require(ok, f"the x axis title should name the keys and the y axis title the queries (e.g. 'key' and "
              f"'query'), got xlabel {x!r} and ylabel {y!r}", H_TITLES_SWAPPED if swapped else H_TITLES)


# -------------------------------------------------------------------------------------- cases
# heavy=True: the cases about labels, colour bar and axis titles. Their verdict cannot depend on the seed (it
# only changes weight values, which they do not read or compare exactly, with no tolerance to tip), and every
# call draws a figure (0.1-0.3 s), so the test suite runs them at one seed; the other cases run at every seed.
@plot_attention.case("new figure, (5, 7)", "with ax=None it returns an Axes holding exactly one image whose "
                     "array is the (L, S) weights exactly as given (L=5 queries, S=7 keys)")
def _(t):
    weights = _weights(t.rng, 5, 7)
    got = t.call(weights, QUERIES_5, KEYS_7)
    _axes(t, got)
    _values(t, _image(t, got, 5, 7), weights)


@plot_attention.case("tick labels, (5, 7), a repeated token", "every key label sits on its own column along x "
                     "and every query label on its own row along y, in order (the key 'the' on both of its "
                     "columns)", heavy=True)
def _(t):
    weights = _weights(t.rng, 5, 7)
    got = t.call(weights, QUERIES_5, KEYS_7)
    _axes(t, got)
    _ticks(t, _image(t, got, 5, 7), QUERIES_5, KEYS_7)


@plot_attention.case("colour bar and axis titles, (4, 6)", "the image has a colour bar (the scale a reader "
                     "needs) and the axis titles say that x holds keys and y queries", heavy=True)
def _(t):
    weights = _weights(t.rng, 4, 6)
    got = t.call(weights, ["je", "l'ai", "vue", "<eos>"], ["I", "saw", "her", "duck", "today", "."])
    _axes(t, got)
    _colorbar(t, _image(t, got, 4, 6))
    _titles(t, got)


@plot_attention.case("given ax that is not the current one, (3, 5)", "given an Axes that is not pyplot's "
                     "current one (a panel of a grid of heads), it draws into the given Axes and returns it")
def _(t):
    weights = _weights(t.rng, 3, 5)
    first = t.make("axes")
    current = t.make("axes")  # made last: pyplot's current Axes
    got = t.call(weights, ["x", "y", "z"], ["a", "b", "c", "d", "e"], ax=first)
    _axes(t, got, given=first, current=current)
    image = _image(t, got, 3, 5, given=True)
    _values(t, image, weights)
    _colorbar(t, image)


@plot_attention.case("long on both axes, (10, 13)", "10 queries over 13 keys: the image is (10, 13), not its "
                     "transpose, and every one of the 13 key and 10 query labels is on its cell (not every other "
                     "one, as the default tick locator would label them)", heavy=True)
def _(t):
    keys = ["we", "read", "the", "weights", "row", "by", "row", "to", "see", "where", "it", "looks", "."]
    queries = ["3", "1", "4", "1", "5", "9", "2", "6", "5", "<eos>"]  # repeats too
    weights = _weights(t.rng, 10, 13)
    got = t.call(weights, queries, keys)
    _axes(t, got)
    image = _image(t, got, 10, 13)
    _values(t, image, weights)
    _ticks(t, image, queries, keys)


@plot_attention.case("fully masked row, (6, 8)", "a padded batch element: the last query row is fully masked "
                     "(all zeros) and 3 padding keys get zero weight; it still plots, the zeros stay zeros "
                     "(no NaN), every label is on its cell and the colour bar is there")
def _(t):
    keys = ["the", "dog", "barked", ".", "<eos>", "<pad>", "<pad>", "<pad>"]
    queries = ["der", "Hund", "bellte", ".", "<eos>", "<pad>"]
    keep = np.zeros((6, 8), dtype=bool)
    keep[:5, :5] = True  # the padding query (row 5) keeps nothing
    weights = _weights(t.rng, 6, 8, keep)
    got = t.call(weights, queries, keys)
    _axes(t, got)
    image = _image(t, got, 6, 8)
    _values(t, image, weights)
    _ticks(t, image, queries, keys)
    _colorbar(t, image)


@plot_attention.case("causal self-attention, (6, 6)", "L == S with the same tokens on both axes: a causal "
                     "pattern (zeros above the diagonal) is drawn as is, so a transposed image cannot pass")
def _(t):
    tokens = ["<bos>", "a", "rose", "is", "a", "rose"]
    keep = np.tril(np.ones((6, 6), dtype=bool))
    weights = _weights(t.rng, 6, 6, keep)
    got = t.call(weights, tokens, tokens)
    _axes(t, got)
    image = _image(t, got, 6, 6)
    _values(t, image, weights)
    _ticks(t, image, tokens, tokens)


# ------------------------------------------------------------------------------------ mutants
def _heatmap(weights, query_labels, key_labels, ax=None, transpose=False, swap_labels=False, colorbar=True,
             titles=True, transform=None, ticks="fixed"):
    """A heatmap drawn with imshow, with one switchable mistake (each mutant flips one)."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker

    weights = np.asarray(weights)
    if ax is None:
        _, ax = plt.subplots()
    shown = transform(weights) if transform else weights
    image = ax.imshow(shown.T if transpose else shown)
    x_labels, y_labels = (query_labels, key_labels) if swap_labels else (key_labels, query_labels)
    if ticks == "fixed":
        ax.set_xticks(range(len(x_labels)), labels=x_labels)
        ax.set_yticks(range(len(y_labels)), labels=y_labels)
    elif ticks == "labels only":  # FixedFormatter on the default locator (matplotlib warns, then misaligns)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax.set_xticklabels(x_labels)
            ax.set_yticklabels(y_labels)
    elif ticks == "every cell, no padding":  # the seq2seq tutorial's locator without its leading ''
        import warnings

        for axis, labels in ((ax.xaxis, x_labels), (ax.yaxis, y_labels)):
            axis.set_major_locator(ticker.MultipleLocator(1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axis.set_ticklabels(labels)
    elif ticks == "default locator":  # the right label for each tick, but only where the locator puts one
        for axis, labels in ((ax.xaxis, x_labels), (ax.yaxis, y_labels)):
            axis.set_major_formatter(ticker.FuncFormatter(
                lambda v, _, labels=labels: labels[int(v)] if float(v).is_integer() and 0 <= v < len(labels) else ""))
    if titles:
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax


@plot_attention.mutant("transposed image", H_TRANSPOSED)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, transpose=True)


@plot_attention.mutant("labels swapped", H_SWAPPED)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, swap_labels=True)


@plot_attention.mutant("no colour bar", H_NO_COLORBAR)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, colorbar=False)


@plot_attention.mutant("no axis titles", H_TITLES)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, titles=False)


@plot_attention.mutant("normalised by the maximum", H_RESCALED)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, transform=lambda w: w / w.max())


@plot_attention.mutant("rows renormalised", H_NAN)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, transform=lambda w: w / w.sum(-1, keepdims=True))


@plot_attention.mutant("set_xticklabels without set_xticks", H_TICKLABELS)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, ticks="labels only")


@plot_attention.mutant("labels shifted by one", H_SHIFTED)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, ticks="every cell, no padding")


@plot_attention.mutant("default locator: some cells unlabelled", H_MISSING)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax, ticks="default locator")


@plot_attention.mutant("ignores ax", H_IGNORES_AX)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels)  # always a new figure


@plot_attention.mutant("returns the Figure", H_RETURN)
def _(weights, query_labels, key_labels, ax=None):
    return _heatmap(weights, query_labels, key_labels, ax).figure


@plot_attention.mutant("pyplot's current Axes", H_GCA)
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        plt.figure()
    plt.imshow(weights)
    plt.xticks(range(len(key_labels)), key_labels)
    plt.yticks(range(len(query_labels)), query_labels)
    plt.xlabel("key")
    plt.ylabel("query")
    plt.colorbar()
    return plt.gca()


@plot_attention.mutant("ax=None draws on plt.gca()", H_MANY_IMAGES)
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    return _heatmap(weights, query_labels, key_labels, ax or plt.gca())


@plot_attention.mutant("plt.colorbar() without its image", H_COLORBAR_IMAGE)
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    ax = _heatmap(weights, query_labels, key_labels, ax, colorbar=False)
    plt.colorbar()  # the current image of pyplot's current figure: none when ax is not the current Axes
    return ax


# ------------------------------------------------------------------------------- alternatives
@plot_attention.alternative("matshow, ticks on top")
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots() if ax is None else (ax.figure, ax)
    image = ax.matshow(weights, cmap="magma", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(key_labels)))
    ax.set_xticklabels(key_labels, rotation=45)
    ax.set_yticks(range(len(query_labels)))
    ax.set_yticklabels(query_labels)
    ax.set_xlabel("Keys (source tokens)")
    ax.set_ylabel("Queries (target tokens)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return ax


@plot_attention.alternative("pcolormesh, inverted y axis, ticks at cell centres + 0.5")
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.figure(figsize=(5, 4)).add_subplot()
    L, S = np.shape(weights)
    mesh = ax.pcolormesh(weights, cmap="Blues", edgecolors="white", linewidth=0.5)
    ax.invert_yaxis()  # query 0 on the top row, as in a matrix
    ax.set_xticks(np.arange(S) + 0.5, labels=key_labels)
    ax.set_yticks(np.arange(L) + 0.5, labels=query_labels)
    ax.set(xlabel="key", ylabel="query", title="attention")
    ax.get_figure().colorbar(mesh, ax=ax)
    return ax


@plot_attention.alternative("imshow with an explicit extent, cells [j, j + 1)")
def _(weights, query_labels, key_labels, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(constrained_layout=True)
    L, S = np.shape(weights)
    image = ax.imshow(weights, extent=(0, S, L, 0), aspect="auto", cmap="gray_r")
    ax.xaxis.set_major_locator(plt.FixedLocator(np.arange(S) + 0.5))
    ax.xaxis.set_major_formatter(plt.FixedFormatter(list(key_labels)))
    ax.set_yticks([i + 0.5 for i in range(L)], query_labels)
    ax.set_xlabel("keys")
    ax.set_ylabel("queries")
    ax.figure.colorbar(image, ax=ax, label="weight")
    return ax


# ######################################################################################################
# The NumPy exercises: attention_entropy, attention_rollout, entropy_penalty, doubly_stochastic_penalty.
#
# Oracles, in float64 and rounded once to the input's dtype: PyTorch's torch.special.entr (-x ln x with
# entr(0) = 0) for the two entropies, our references (autograde/references/interpret.py, cross-checked
# against PyTorch in tests/test_interpret_exercise.py) for the rollout and the doubly stochastic penalty.
# Tolerances: the table's (autograde/tolerances.py). Every computation here is a short sum of bounded terms
# (entropies <= ln S, products of row-stochastic matrices, squares of column sums <= T^2): a correct float32
# program is off by a few units in the last place of the result, far inside float32's 1e-5.
# ######################################################################################################
def _softmax_rows(rng, shape, keep=None, temperature=1.5):
    """Softmax weights of normal scores (..., S), float64; masked entries 0, fully masked rows all zeros."""
    keep = np.ones(shape, dtype=bool) if keep is None else np.broadcast_to(keep, shape)
    return masked_softmax(temperature * rng.standard_normal(shape), keep)


def _entr_sum(weights, axis=-1):
    """The oracle: -sum w ln w over `axis` in float64 by torch.special.entr (entr(0) = 0), as a NumPy array."""
    import torch

    w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
    return torch.special.entr(w).sum(dim=axis).numpy()


def _scalar(t, got, dtype, what):
    """A scalar result may be a NumPy scalar (np.float32(...), what np.mean returns) or a 0-d array: both are
    compared as a 0-d array of their dtype. A Python float (no dtype) fails with its own hint. (np.float64 is
    a subclass of float: test the exact type.)"""
    if type(got) is float:
        t.fail(f"{what}: expected a NumPy scalar of dtype {np.dtype(dtype).name}, got a Python float", H_PY_FLOAT)
    if isinstance(got, np.generic):
        return np.asarray(got)
    return got


H_PY_FLOAT = ("return a NumPy value in the weights' dtype (what np.sum / np.mean give, e.g. np.float32), not a "
              "Python float: float(...) drops the dtype")


# ================================================================================== attention_entropy
entropy = Exercise("interpret.attention_entropy", points=2, reference=ref.attention_entropy, uses_torch=True,
                   demo=lambda rng: ((np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0],
                                                [1.0, 0.0, 0.0, 0.0]]),), {}))

H_ENT_NAN = ("take 0 * ln 0 = 0: np.log(0) is -inf and 0 * -inf is NaN, so a masked (zero) weight poisons its "
             "row; use np.log(np.where(w > 0, w, 1)) so that zero weights contribute exactly 0")
H_ENT_LOG2 = "use the natural log (np.log, entropy in nats), not np.log2 (bits)"
H_ENT_SIGN = "entropy is -sum w ln w: each ln w <= 0, so negate the sum to get a value >= 0"
H_ENT_AXIS = "sum along the `axis` argument, not always along the last axis"
H_ENT_KEEPDIMS = "remove the summed axis (keepdims=False): the output has the shape of weights without `axis`"
H_ENT_NORMALISED = ("return the entropy itself, in nats: do not divide by ln S (a normalised entropy in [0, 1] is "
                    "a different quantity)")
H_ENT_MEAN = "sum -w ln w over the keys; do not average (np.mean divides the entropy by S)"
H_ENT_SOFTMAX = "the weights are already a distribution: take the entropy of the weights, not of softmax(weights)"


def _expect_entropy(t, weights, axis=-1, **kwargs):
    got = t.call(weights, axis=axis, **kwargs) if kwargs or axis != -1 else t.call(weights)
    want = _entr_sum(weights, axis=axis).astype(weights.dtype)
    t.expect(got, want, what=f"entropy {want.shape}")


@entropy.case("hand-checkable (5, 4)", "uniform over 4 keys gives ln 4 = 1.386 nats, two halves ln 2 = 0.693, "
              "one-hot 0, [0.7, 0.2, 0.1, 0] 0.802, and a fully masked (all-zero) row 0")
def _(t):
    weights = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0],
                        [0.7, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    _expect_entropy(t, weights)


@entropy.case("float64 (2, 3, 5, 7), masked keys", "B=2, H=3, L=5, S=7 softmax weights with masked keys (exact "
              "zeros): one entropy per query, shape (2, 3, 5)")
def _(t):
    shape = (2, 3, 5, 7)
    _expect_entropy(t, _softmax_rows(t.rng, shape, keep_mask(t.rng, shape)))


@entropy.case("float32 (3, 5, 7)", "float32 weights give float32 entropies")
def _(t):
    shape = (3, 5, 7)
    _expect_entropy(t, _softmax_rows(t.rng, shape, keep_mask(t.rng, shape)).astype(np.float32))


@entropy.case("axis=1 and axis=0", "the `axis` argument names the axis a distribution runs along: (4, 6, 3) "
              "normalised along axis 1 gives (4, 3); (5, 2) normalised along axis 0 gives (2,)")
def _(t):
    w1 = np.moveaxis(_softmax_rows(t.rng, (4, 3, 6)), -1, 1)  # (4, 6, 3), distributions along axis 1
    got = t.call(w1, axis=1)
    t.expect(got, _entr_sum(w1, axis=1), what="axis=1, entropy (4, 3)")
    w0 = _softmax_rows(t.rng, (2, 5)).T.copy()  # (5, 2), distributions along axis 0
    got = t.call(w0, axis=0)
    t.expect(got, _entr_sum(w0, axis=0), what="axis=0, entropy (2,)")


@entropy.case("fully masked queries, causal (2, 5, 8)", "end-aligned causal weights (query i sees keys j <= i + 3) "
              "with padding: the queries of batch element 1 past its length see nothing (all-zero rows) and get "
              "entropy 0, never NaN")
def _(t):
    keep = np.broadcast_to(causal(5, 8), (2, 5, 8)).copy()
    keep[1, 3:] = False  # two padding queries: fully masked rows
    _expect_entropy(t, _softmax_rows(t.rng, (2, 5, 8), keep))


@entropy.case("peaked float32 rows (3, 4, 9)", "nearly one-hot float32 rows (scores x 40: weights down to "
              "subnormal numbers and exact zeros) have entropies near 0, finite and accurate")
def _(t):
    _expect_entropy(t, _softmax_rows(t.rng, (3, 4, 9), temperature=40.0).astype(np.float32))


def _entropy_mutant(kind):
    def wrong(weights, axis=-1):
        w = np.asarray(weights)
        if kind == "axis":
            axis = -1
        if kind == "softmax":
            e = np.exp(w - w.max(axis=axis, keepdims=True))
            w = e / e.sum(axis=axis, keepdims=True)
        log = np.log2 if kind == "log2" else np.log
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = w * log(w) if kind == "nan" else w * log(np.where(w > 0, w, 1))
        if kind == "mean":
            out = -terms.mean(axis=axis)
        else:
            out = -terms.sum(axis=axis, keepdims=kind == "keepdims")
        if kind == "sign":
            out = -out
        if kind == "normalised":
            out = out / np.log(w.shape[axis])
        if kind == "float64":
            out = out.astype(np.float64)
        return out
    return wrong


for _kind, _name, _hint in [
        ("nan", "0 ln 0 is NaN", H_ENT_NAN),
        ("log2", "log base 2", H_ENT_LOG2),
        ("sign", "no minus sign", H_ENT_SIGN),
        ("axis", "ignores axis", H_ENT_AXIS),
        ("keepdims", "keepdims=True", H_ENT_KEEPDIMS),
        ("normalised", "divided by ln S", H_ENT_NORMALISED),
        ("mean", "mean over the keys", H_ENT_MEAN),
        ("softmax", "softmax of the weights", H_ENT_SOFTMAX),
        ("float64", "float64 output", DTYPE_HINT)]:
    entropy.mutant(_name, _hint)(_entropy_mutant(_kind))


@entropy.alternative("np.log with where= and out=")
def _(weights, axis=-1):
    w = np.asarray(weights)
    logs = np.log(w, out=np.zeros_like(w), where=w > 0)
    return -(w * logs).sum(axis=axis)


@entropy.alternative("float64 inside, einsum over the moved axis, cast back")
def _(weights, axis=-1):
    w = np.asarray(weights)
    p = np.moveaxis(w.astype(np.float64), axis, -1)
    logs = np.log(np.maximum(p, np.finfo(np.float64).tiny))  # 0 * ln(tiny) = 0
    return (-np.einsum("...s,...s->...", p, logs)).astype(w.dtype)


@entropy.alternative("log of the weights clipped to the smallest normal number of their dtype")
def _(weights, axis=-1):
    w = np.asarray(weights)
    return np.sum(-w * np.log(np.clip(w, np.finfo(w.dtype).tiny, None)), axis=axis)


# ================================================================================== attention_rollout
rollout = Exercise("interpret.attention_rollout", points=3, reference=ref.attention_rollout,
                   demo=lambda rng: (([np.array([[[1.0, 0.0], [0.5, 0.5]]]), np.array([[[0.5, 0.5], [0.0, 1.0]]])],),
                                     {}))

H_RO_ORDER = ("multiply later layers on the left: rollout = A_l @ rollout for l = 1, 2, ... (R = A_{n-1} ... A_1 "
              "A_0), so that row i of the result is position i at the top")
H_RO_NORM = ("renormalise each row after adding the identity: A + I has rows summing to 2, and the product of n "
             "layers grows like 2^n; divide by A.sum(axis=-1, keepdims=True)")
H_RO_HALF = ("add the identity, then divide each row by its own sum: 0.5 * (A + I) is right only for rows that "
             "sum to 1; a fully masked query's all-zero row must become the identity row (it keeps its token)")
H_RO_RESIDUAL_FLAG = "with residual=False, multiply the head-averaged weights as they are: no identity added"
H_RO_NO_RESIDUAL = ("residual=True (the default): add the identity to each layer's head-averaged weights and "
                    "renormalise the rows before multiplying (Abnar and Zuidema's 0.5 A + 0.5 I)")
H_RO_MAX = "average the heads (mean over the H axis), not their maximum"
H_RO_SUM_HEADS = ("average the heads (mean over H), do not sum them: with the identity added, the sum gives the "
                  "residual a weight of 1 / (H + 1) instead of 1 / 2")
H_RO_HEAD_AXIS = ("average over the head axis, axis -3 of each layer's (..., H, L, L) weights, not over its first "
                  "axis (the batch)")
H_RO_ADD = "multiply the layers' matrices (rollout = A_l @ rollout); do not add or average them"
H_RO_LAST = "roll out through every layer: multiply all n_layers matrices, not only the last layer's"
H_RO_FIRST = ("include the first layer: start from its matrix A_0 (or from the identity, then multiply every "
              "layer in)")
H_RO_TRANSPOSED = ("rows are queries: multiply the (L, L) matrices as they are, not transposed (rollout[i, j] is "
                   "how much of token j reaches position i)")


def _layers(rng, n_layers, lead, H, L, keep=None):
    """n_layers arrays (*lead, H, L, L) of softmax weights; `keep` (*lead, L, L) is shared by the heads."""
    shape = tuple(lead) + (H, L, L)
    keep = None if keep is None else np.broadcast_to(np.expand_dims(keep, -3), shape)
    return [_softmax_rows(rng, shape, keep) for _ in range(n_layers)]


def _expect_rollout(t, attentions, dtype, **kwargs):
    got = t.call(attentions, **kwargs)
    want = ref.attention_rollout([np.asarray(a, dtype=np.float64) for a in attentions], **kwargs).astype(dtype)
    t.expect(got, want, what=f"rollout {want.shape}")


@rollout.case("hand-checkable, 2 layers of 1 head, L=2", "A_0 = [[1, 0], [.5, .5]], A_1 = [[.5, .5], [0, 1]]: with "
              "the residual, A_0 -> [[1, 0], [.25, .75]], A_1 -> [[.75, .25], [0, 1]], and the rollout A_1 A_0 = "
              "[[.8125, .1875], [.25, .75]]")
def _(t):
    attentions = np.array([[[[1.0, 0.0], [0.5, 0.5]]], [[[0.5, 0.5], [0.0, 1.0]]]])  # (2, 1, 2, 2)
    _expect_rollout(t, attentions, np.float64)


@rollout.case("float64 array (4, 2, 3, 5, 5)", "an (n_layers, B, H, L, L) array, 4 layers, B=2, H=3, L=5: heads "
              "averaged, identity added and rows renormalised per layer, later layers multiplied on the left")
def _(t):
    attentions = np.stack(_layers(t.rng, 4, (2,), 3, 5))
    _expect_rollout(t, attentions, np.float64)


@rollout.case("float32 list of 3 layers (2, 6, 6)", "a list of 3 float32 layers of H=2 heads, L=6, no batch dims: "
              "a float32 (6, 6) rollout")
def _(t):
    attentions = [a.astype(np.float32) for a in _layers(t.rng, 3, (), 2, 6)]
    _expect_rollout(t, attentions, np.float32)


@rollout.case("residual=False (3, 2, 4, 6, 6)", "without the residual the rollout is the product of the "
              "head-averaged weights as they are, A_2 A_1 A_0 (B=2, H=4, L=6)")
def _(t):
    attentions = np.stack(_layers(t.rng, 3, (2,), 4, 6))
    _expect_rollout(t, attentions, np.float64, residual=False)


@rollout.case("one layer, causal (1, 3, 2, 7, 7)", "a single causal layer: the rollout is its head-averaged "
              "weights with the identity added and rows renormalised (B=3, H=2, L=7)")
def _(t):
    attentions = np.stack(_layers(t.rng, 1, (3,), 2, 7, keep=np.broadcast_to(causal(7), (3, 7, 7))))
    _expect_rollout(t, attentions, np.float64)


@rollout.case("padding queries (2, 2, 3, 6, 6)", "padded self-attention (B=2, H=3, L=6, the second sequence 4 "
              "tokens long): its 2 padding queries have all-zero rows, which the residual turns into identity "
              "rows (the token keeps itself), in every layer")
def _(t):
    real = np.array([[True] * 6, [True] * 4 + [False] * 2])             # (B, L)
    keep = real[:, :, None] & real[:, None, :]                           # (B, L, L): padding queries see nothing
    attentions = np.stack(_layers(t.rng, 2, (2,), 3, 6, keep=keep))
    _expect_rollout(t, attentions, np.float64)


def _rollout_mutant(kind):
    def wrong(attentions, residual=True):
        layers = [np.asarray(a) for a in attentions]
        if kind == "transposed":
            layers = [np.swapaxes(a, -1, -2) for a in layers]
        if kind == "first":
            layers = layers[1:] or layers
        if kind == "last":
            layers = layers[-1:]
        mixed = []
        for a in layers:
            if kind == "max":
                m = a.max(axis=-3)
            elif kind == "sum_heads":
                m = a.sum(axis=-3)
            elif kind == "head_axis":
                m = a.mean(axis=0)
            else:
                m = a.mean(axis=-3)
            add = residual if kind != "flag" else True
            if kind == "no_residual":
                add = False
            if add:
                eye = np.eye(m.shape[-1], dtype=m.dtype)
                if kind == "half":
                    m = 0.5 * (m + eye)
                elif kind == "no_norm":
                    m = m + eye
                else:
                    m = m + eye
                    m = m / m.sum(axis=-1, keepdims=True)
            mixed.append(m)
        if kind == "add":
            return sum(mixed) / len(mixed)
        out = mixed[0]
        for m in mixed[1:]:
            out = out @ m if kind == "order" else m @ out
        if kind == "float64":
            out = out.astype(np.float64)
        return out
    return wrong


for _kind, _name, _hint in [
        ("order", "earlier layers on the left", H_RO_ORDER),
        ("no_norm", "identity added, rows not renormalised", H_RO_NORM),
        ("half", "0.5 (A + I) without renormalising", H_RO_HALF),
        ("flag", "ignores residual=False", H_RO_RESIDUAL_FLAG),
        ("no_residual", "no residual", H_RO_NO_RESIDUAL),
        ("max", "max over heads", H_RO_MAX),
        ("sum_heads", "heads summed", H_RO_SUM_HEADS),
        ("head_axis", "mean over the batch axis", H_RO_HEAD_AXIS),
        ("add", "layers averaged, not multiplied", H_RO_ADD),
        ("last", "last layer only", H_RO_LAST),
        ("first", "first layer skipped", H_RO_FIRST),
        ("transposed", "transposed layers", H_RO_TRANSPOSED),
        ("float64", "float64 output", DTYPE_HINT)]:
    rollout.mutant(_name, _hint)(_rollout_mutant(_kind))


@rollout.alternative("identity added per head, rows renormalised per head, then heads averaged")
def _(attentions, residual=True):
    result = None
    for layer in attentions:
        a = np.asarray(layer)
        if residual:
            a = a + np.eye(a.shape[-1], dtype=a.dtype)
            a = a / a.sum(axis=-1, keepdims=True)
        a = a.mean(axis=-3)
        result = a if result is None else np.einsum("...ij,...jk->...ik", a, result)
    return result


@rollout.alternative("from the identity, a stacked float64 array, cast back")
def _(attentions, residual=True):
    stack = np.stack([np.asarray(a) for a in attentions])  # (n_layers, ..., H, L, L)
    work = stack.astype(np.float64).mean(axis=-3)          # (n_layers, ..., L, L)
    L = work.shape[-1]
    if residual:
        work = work + np.eye(L)
        work = work / work.sum(axis=-1)[..., None]
    out = np.broadcast_to(np.eye(L), work.shape[1:])
    for a in work:
        out = np.matmul(a, out)
    return out.astype(stack.dtype)


@rollout.alternative("reduce from the top layer down")
def _(attentions, residual=True):
    import functools

    def mix(a):
        a = np.asarray(a)
        m = a.sum(axis=-3) / a.shape[-3]
        if residual:
            m = m + np.identity(m.shape[-1], dtype=m.dtype)
            m = m / np.sum(m, axis=-1, keepdims=True)
        return m

    mixed = [mix(a) for a in attentions]
    return functools.reduce(np.matmul, mixed[::-1])  # A_{n-1} @ ... @ A_0


# ==================================================================================== entropy_penalty
penalty = Exercise("interpret.entropy_penalty", points=2, reference=ref.entropy_penalty, uses_torch=True,
                   deps=("interpret.attention_entropy",),
                   demo=lambda rng: ((np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]),), {}))

H_PEN_NAN = ("take 0 * ln 0 = 0: a zero weight (a masked key, or a key a peaked row ignores) gives 0 * -inf = NaN; "
             "take the log of np.where(w > 0, w, 1)")
H_PEN_DEAD_ROWS = ("average over the queries that keep at least one key (mask.any(axis=-1)), not over every row: "
                   "a fully masked query has no distribution, and counting it as entropy 0 drags the mean down")
H_PEN_SUM = "average the row entropies over the counted queries; do not sum them (the penalty would grow with B, H, L)"
H_PEN_NO_MASK = ("use the mask: entries where it is False contribute nothing, and query rows with no True entry "
                 "are left out of the mean")
H_PEN_MASKED_ENTRIES = ("entries where the mask is False contribute nothing, whatever their weight: zero them "
                        "(np.where(mask, w, 0)) before taking the entropy, not only when counting the rows")
H_PEN_LOG2 = "use the natural log (np.log, nats), not np.log2"
H_PEN_SIGN = ("return +mean entropy (>= 0): minimising the penalty sharpens attention; to spread attention "
              "instead, the caller subtracts it")
H_PEN_ENTRIES = ("divide by the number of counted query rows, not by the number of (kept) entries: the penalty "
                 "is a mean over queries of each query's entropy")
H_PEN_EMPTY = "when no query keeps any key, return 0 (in the weights' dtype), not 0 / 0 = NaN"
H_PEN_ROWS = "return one number, the mean over the counted rows, not the per-row entropies"


def _oracle_penalty(weights, mask=None):
    """Mean over counted rows of torch.special.entr summed over the kept entries, float64."""
    w = np.asarray(weights, dtype=np.float64)
    keep = np.ones(w.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), w.shape)
    rows = _entr_sum(np.where(keep, w, 0.0))          # (..., L)
    counted = keep.any(axis=-1)
    return rows[counted].mean() if counted.any() else 0.0


def _expect_penalty(t, weights, mask=None, pass_mask=True):
    got = t.call(weights, mask) if pass_mask else t.call(weights)
    got = _scalar(t, got, weights.dtype, "penalty")
    want = np.asarray(_oracle_penalty(weights, mask if pass_mask else None), dtype=weights.dtype)
    t.expect(got, want, what="penalty ()")


@penalty.case("hand-checkable, no mask (2, 3)", "rows [.5, .5, 0] and [1, 0, 0]: entropies ln 2 and 0, a penalty "
              "of ln 2 / 2 = 0.347 (the zero weights contribute 0, not NaN)")
def _(t):
    _expect_penalty(t, np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), pass_mask=False)


@penalty.case("hand-checkable, a fully masked query (3, 3)", "rows [.5, .5, 0], [.2, .3, .5] and a fully masked "
              "query (all False, zero weights): the mean over the 2 counted rows, (ln 2 + 1.030) / 2 = 0.861")
def _(t):
    weights = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 0.0]])
    mask = np.array([[True, True, False], [True, True, True], [False, False, False]])
    _expect_penalty(t, weights, mask)


@penalty.case("float64 (2, 3, 5, 7), mask (2, 1, 5, 7)", "B=2, H=3, L=5, S=7 masked softmax weights and a mask "
              "shared by the heads in which 2 queries are fully masked: the mean over the 24 counted rows")
def _(t):
    mask = keep_mask(t.rng, (2, 1, 5, 7))
    mask[0, 0, 4] = mask[1, 0, 2] = False  # two fully masked queries
    _expect_penalty(t, _softmax_rows(t.rng, (2, 3, 5, 7), mask), mask)


@penalty.case("no mask (2, 3, 5, 7)", "without a mask every query row counts: the mean of all 30 row entropies")
def _(t):
    _expect_penalty(t, _softmax_rows(t.rng, (2, 3, 5, 7)), pass_mask=False)


@penalty.case("float32 (3, 4, 6), causal mask (4, 6)", "float32 weights under an end-aligned causal mask give a "
              "float32 penalty")
def _(t):
    mask = causal(4, 6)
    _expect_penalty(t, _softmax_rows(t.rng, (3, 4, 6), mask).astype(np.float32), mask)


@penalty.case("key padding (2, 3, 5, 5), mask (2, 1, 1, 5)", "a key-padding mask (B, 1, 1, S), the second "
              "sequence 3 tokens long: its padding *queries* still attend to real keys, so they count; padding "
              "keys contribute nothing")
def _(t):
    real = np.array([[True] * 5, [True] * 3 + [False] * 2])  # (B, S)
    mask = real[:, None, None, :]                             # (B, 1, 1, S)
    _expect_penalty(t, _softmax_rows(t.rng, (2, 3, 5, 5), mask), mask)


@penalty.case("mask keeps part of non-zero weights (4, 6)", "weights of an unmasked softmax and a mask that keeps "
              "some entries of every row: only kept entries contribute (not renormalised), masked ones nothing")
def _(t):
    mask = keep_mask(t.rng, (4, 6), p_keep=0.5)
    _expect_penalty(t, _softmax_rows(t.rng, (4, 6)), mask)


@penalty.case("every query fully masked (2, 4, 5)", "a batch in which no query keeps any key (all-zero weights, "
              "an all-False mask): the penalty is 0, never NaN")
def _(t):
    _expect_penalty(t, np.zeros((2, 4, 5)), np.zeros((2, 4, 5), dtype=bool))


def _penalty_mutant(kind):
    def wrong(weights, mask=None):
        w = np.asarray(weights)
        if kind == "no_mask":
            mask = None
        keep = np.ones(w.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), w.shape)
        kept = w if kind == "entries_kept" else np.where(keep, w, 0)
        log = np.log2 if kind == "log2" else np.log
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = kept * log(kept) if kind == "nan" else kept * log(np.where(kept > 0, kept, 1))
            rows = -terms.sum(axis=-1)                          # (..., L)
            counted = keep.any(axis=-1)
            if kind == "rows":
                return rows
            if kind == "dead_rows":
                value = rows.mean()
            elif kind == "sum":
                value = rows[counted].sum()
            elif kind == "entries":
                value = rows.sum() / max(np.count_nonzero(keep), 1)
            elif kind == "empty":
                value = rows[counted].sum() / np.count_nonzero(counted)
            else:
                value = rows[counted].sum() / max(np.count_nonzero(counted), 1)
        value = np.asarray(value, dtype=w.dtype)
        if kind == "sign":
            value = -value
        if kind == "float64":
            value = value.astype(np.float64)
        if kind == "python":
            value = float(value)
        return value
    return wrong


for _kind, _name, _hint in [
        ("nan", "0 ln 0 is NaN", H_PEN_NAN),
        ("dead_rows", "fully masked rows counted", H_PEN_DEAD_ROWS),
        ("sum", "sum over rows", H_PEN_SUM),
        ("no_mask", "mask ignored", H_PEN_NO_MASK),
        ("entries_kept", "masked entries counted", H_PEN_MASKED_ENTRIES),
        ("log2", "log base 2", H_PEN_LOG2),
        ("sign", "negated", H_PEN_SIGN),
        ("entries", "mean over entries", H_PEN_ENTRIES),
        ("empty", "NaN when nothing is kept", H_PEN_EMPTY),
        ("rows", "per-row entropies", H_PEN_ROWS),
        ("python", "Python float", H_PY_FLOAT),
        ("float64", "float64 output", DTYPE_HINT)]:
    penalty.mutant(_name, _hint)(_penalty_mutant(_kind))


@penalty.alternative("float64 inside, np.mean over the selected rows")
def _(weights, mask=None):
    w = np.asarray(weights)
    p = w.astype(np.float64)
    keep = np.ones(p.shape, bool) if mask is None else np.broadcast_to(mask, p.shape)
    p = np.where(keep, p, 0.0)
    h = -np.sum(p * np.log(np.maximum(p, 1e-300)), axis=-1)  # (..., L)
    rows = keep.any(axis=-1)
    return np.asarray(h[rows].mean() if rows.any() else 0.0, dtype=w.dtype)


@penalty.alternative("attention_entropy (the dependency), weighted by a 0/1 row count")
def _(weights, mask=None):
    attention_entropy = ref.attention_entropy  # what a dependency call is answered with while graded

    w = np.asarray(weights)
    keep = np.ones(w.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), w.shape)
    rows = attention_entropy(np.where(keep, w, 0))            # (..., L)
    counted = keep.any(axis=-1).astype(w.dtype)
    return np.sum(rows * counted) / np.maximum(np.sum(counted), 1)


# ========================================================================== doubly_stochastic_penalty
ds = Exercise("interpret.doubly_stochastic_penalty", points=2, reference=ref.doubly_stochastic_penalty,
              demo=lambda rng: ((np.array([[[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]]),), {}))

H_DS_AXIS = ("sum the weights over the steps T (axis -2) to get what each position received: each step's row "
             "already sums to 1 over the positions, so (1 - row sum)^2 is always 0")
H_DS_MEAN_POS = "sum (1 - received)^2 over the positions S; do not average over them"
H_DS_ABS = "square the deficit, (1 - sum_t a_tj)^2, not its absolute value"
H_DS_TERMWISE = ("sum over the steps first, then subtract from 1 and square: sum_j (1 - sum_t a_tj)^2, not "
                 "sum_j sum_t (1 - a_tj)^2")
H_DS_BATCH = ("return one penalty per sequence, shape (...,) = attention_history.shape[:-2]: do not sum or "
              "average over the batch")
H_DS_TERMS = "sum the squared deficits over the positions: the result is (...,), not (..., S)"
H_DS_MEAN_STEPS = ("sum over the steps, not the mean: the target is that each position receives 1 in total over "
                   "the T steps")


def _expect_ds(t, history):
    got = t.call(history)
    want = ref.doubly_stochastic_penalty(history.astype(np.float64)).astype(history.dtype)
    t.expect(got, want, what=f"penalty {want.shape}")


@ds.case("hand-checkable (1, 2, 3)", "steps [.5, .5, 0] and [.5, 0, .5]: the positions receive 1, .5 and .5, so "
         "the penalty is 0 + .25 + .25 = 0.5")
def _(t):
    _expect_ds(t, np.array([[[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]]))


@ds.case("float64 (2, 3, 5, 7)", "leading dims (2, 3), T=5 steps over S=7 positions: one penalty per sequence, "
         "shape (2, 3)")
def _(t):
    _expect_ds(t, _softmax_rows(t.rng, (2, 3, 5, 7)))


@ds.case("float32 (3, 4, 6)", "float32 weights give a float32 penalty per sequence, shape (3,)")
def _(t):
    _expect_ds(t, _softmax_rows(t.rng, (3, 4, 6)).astype(np.float32))


@ds.case("doubly stochastic: 0 (3, 5, 5)", "with T == S, a permutation, the uniform matrix and a mix of two "
         "permutations have columns summing to 1: penalty 0")
def _(t):
    perm = np.eye(5)[t.rng.permutation(5)]
    other = np.eye(5)[t.rng.permutation(5)]
    _expect_ds(t, np.stack([perm, np.full((5, 5), 0.2), 0.3 * perm + 0.7 * other]))


@ds.case("one position at every step (2, 6, 4)", "a decoder that attends to one position at all T=6 steps: that "
         "position receives 6, (1 - 6)^2 = 25, and each of the 3 others 0, 1 each: 28 (second sequence: random)")
def _(t):
    stuck = np.zeros((6, 4))
    stuck[:, int(t.rng.integers(4))] = 1.0
    _expect_ds(t, np.stack([stuck, _softmax_rows(t.rng, (6, 4))]))


@ds.case("padded steps (2, 5, 7)", "the second caption is 3 steps long: its 2 padded steps are rows of zeros and "
         "add nothing to any position")
def _(t):
    history = _softmax_rows(t.rng, (2, 5, 7))
    history[1, 3:] = 0.0
    _expect_ds(t, history)


@ds.case("one step (4, 1, 5)", "T=1: the positions receive the step's weights, sum_j (1 - a_j)^2")
def _(t):
    _expect_ds(t, _softmax_rows(t.rng, (4, 1, 5)))


def _ds_mutant(kind):
    def wrong(attention_history):
        a = np.asarray(attention_history)
        if kind == "termwise":
            return ((1 - a) ** 2).sum(axis=(-2, -1))
        if kind == "axis":
            received = a.sum(axis=-1)
        elif kind == "mean_steps":
            received = a.mean(axis=-2)
        else:
            received = a.sum(axis=-2)
        deficit = np.abs(1 - received) if kind == "abs" else (1 - received) ** 2
        if kind == "terms":
            return deficit
        out = deficit.mean(axis=-1) if kind == "mean_pos" else deficit.sum(axis=-1)
        if kind == "batch":
            out = np.asarray(out.sum(), dtype=a.dtype)
        if kind == "float64":
            out = out.astype(np.float64)
        return out
    return wrong


for _kind, _name, _hint in [
        ("axis", "summed over positions, not steps", H_DS_AXIS),
        ("mean_pos", "mean over positions", H_DS_MEAN_POS),
        ("abs", "absolute value, not square", H_DS_ABS),
        ("termwise", "squared before summing the steps", H_DS_TERMWISE),
        ("batch", "summed over the batch", H_DS_BATCH),
        ("terms", "per-position terms", H_DS_TERMS),
        ("mean_steps", "mean over steps", H_DS_MEAN_STEPS),
        ("float64", "float64 output", DTYPE_HINT)]:
    ds.mutant(_name, _hint)(_ds_mutant(_kind))


@ds.alternative("einsum, then the deficit dotted with itself")
def _(attention_history):
    a = np.asarray(attention_history)
    deficit = 1 - np.einsum("...ts->...s", a)
    return np.einsum("...s,...s->...", deficit, deficit)


@ds.alternative("a running sum over the steps, float64 inside")
def _(attention_history):
    a = np.asarray(attention_history)
    received = np.zeros(a.shape[:-2] + a.shape[-1:])
    for step in range(a.shape[-2]):
        received += a[..., step, :]
    return np.square(1.0 - received).sum(axis=-1).astype(a.dtype)


EXERCISES = [plot_attention, entropy, rollout, penalty, ds]
