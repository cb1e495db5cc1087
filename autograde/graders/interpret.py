"""Grader for attnlab.interpret (notebook 09): plot_attention, a matplotlib exercise graded on data.

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
from ..framework import Exercise, Remote
from ..references import interpret as ref
from ..references.softmax import masked_softmax
from ..wire import AxesData

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


EXERCISES = [plot_attention]
