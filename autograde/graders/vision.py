"""Grader for attnlab.vision (notebook 10): patches, Squeeze-and-Excitation, CBAM's two gates, and soft
attention over image regions for captioning.

Shapes: images and feature maps are (B, C, Y, X) (Y rows, X columns: H is the course's letter for heads),
every dimension distinct in every case. Oracles: PyTorch in float64 (autograde/references/vision.py):
F.unfold / F.fold for the patches, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear, torch.sigmoid,
F.conv2d(padding="same"), torch.tanh, torch.softmax; rounded once to the inputs' dtype. The exercises are
NumPy exercises (profile "numpy"); only the judge imports torch.

Tolerances. Patches move values without arithmetic: they must match exactly, dtype included (uint8
images stay uint8). The gates are sigmoids of sums: a correct program rounds each product and partial sum
in the inputs' dtype, an absolute error of a few eps times the sum of the absolute values of the terms
(the same sums taken over |x|, |W| and |b|), and the sigmoid passes it on as a relative error of at most
that size (sigma'(z) / sigma(z) = 1 - sigma(z) <= 1). The allowance is `exp_rtol` of the largest such sum
(8 eps per unit, the table's rtol on top). For the caption weights the scores w . tanh(.) are bounded the
same way as in notebook 03's additive attention (the rounding inside the tanh damped by tanh'), the
softmax turns it into a relative error of the weights, and the context gets that relative error times
max |features| as extra atol. Every mistake below moves outputs by O(1) relative amounts.
"""
import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import softmax as ref_softmax
from ..references import vision as ref
from ..tolerances import EPS, exp_rtol, tolerance

NOT_TILED_HINT = ("raise ValueError when Y or X is not a multiple of patch_size (check before reshaping); cropping "
                  "the remainder silently drops pixels")
UNFOLD_ORDER_HINT = ("inside a patch, flatten rows, then columns, then channels, (p1, p2, c) as einops "
                     "'b c (i p1) (j p2) -> b (i j) (p1 p2 c)': F.unfold and a Conv2d patch embedding use "
                     "(c, p1, p2), channels first")
RASTER_HINT = ("number the patches in raster order, along each row of patches first: patch n = i * (X / P) + j "
               "covers rows i*P.. and columns j*P..")
P2_FIRST_HINT = ("inside a patch, pixel (p1, p2) of channel c sits at index (p1 * P + p2) * C + c: rows (p1) vary "
                 "slowest, not columns")
PLAIN_RESHAPE_HINT = ("a plain reshape between (B, C, Y, X) and (B, N, P*P*C) mixes pixels of different patches: "
                      "split Y into (Y/P, P) and X into (X/P, P), then transpose the axes before flattening")
STRIDED_HINT = ("split Y as (Y/P, P), the patch index then the row inside the patch; (P, Y/P) takes every "
                "(Y/P)-th pixel, a strided patch spread over the whole image")
CHANNELS_LAST_HINT = "images are channels-first, (B, C, Y, X) as in PyTorch: the channel axis is 1, not -1"
SWAPPED_SIZE_HINT = "image_size is (Y, X), rows then columns, the order of the images' last two axes"

SE_MAX_HINT = "squeeze with the global average over Y and X (Hu et al. 2018), not the maximum"
SE_SUM_HINT = "squeeze with the mean over Y and X, not the sum: the sum grows with the size of the feature map"
BATCH_POOL_HINT = ("pool each image on its own, over its Y and X axes only (axis=(2, 3)): pooling over the batch "
                   "too gives every image the same gate")
SE_SOFTMAX_HINT = ("the excitation ends with a sigmoid per channel: gates are independent and several can be close "
                   "to 1, a softmax over the channels makes them compete")
NO_RELU_HINT = "put a ReLU between the two layers of the MLP: relu(z @ W1 + b1) @ W2 + b2"
CBAM_NO_RELU_HINT = "put a ReLU between the two layers of the shared MLP: relu(v @ W1) @ W2"
SE_BIAS_HINT = "add the biases of both layers, b1 (R,) and b2 (C,)"
SE_GATE_HINT = ("return the recalibrated features x * s[:, :, None, None], shape (B, C, Y, X), not the gate s "
                "itself")

AVG_ONLY_HINT = ("CBAM's channel branch uses two descriptors, the average-pooled and the max-pooled one: "
                 "MLP(avg) + MLP(max); with the average alone it is SE's squeeze")
MAX_ONLY_HINT = "use the average-pooled descriptor too: sigmoid(MLP(avg) + MLP(max))"
TWO_SIGMOIDS_HINT = ("add the two MLP outputs first, then apply one sigmoid: sigmoid(MLP(avg) + MLP(max)), not "
                     "sigmoid(MLP(avg)) + sigmoid(MLP(max)), which can exceed 1")
MLP_OF_SUM_HINT = ("run the shared MLP on each descriptor separately, then add: the ReLU is not linear, so "
                   "MLP(avg) + MLP(max) differs from MLP(avg + max)")
CHANNEL_GATED_HINT = ("return the channel attention map M_c, shape (B, C, 1, 1), not the gated features x * M_c: "
                      "the caller multiplies")
CHANNEL_SHAPE_HINT = "return shape (B, C, 1, 1) (keep the pooled axes) so that x * weights broadcasts"

SWAPPED_MAPS_HINT = ("stack the channel-average map first and the channel-max map second ([AvgPool; MaxPool] as in "
                     "the paper): kernel[0] weighs the average. The authors' code stacks max first; swap "
                     "kernel[0] and kernel[1] when porting its weights")
FLIPPED_HINT = ("a deep-learning convolution is a cross-correlation (F.conv2d): kernel[:, i, j] multiplies the "
                "pixel at offset (i - k_y // 2, j - k_x // 2); do not flip the kernel as scipy.signal.convolve2d does")
SHIFTED_HINT = ("'same' padding puts k // 2 zeros on each side of each axis, so output pixel (y, x) is centred on "
                "input pixel (y, x); padding k - 1 on one side shifts the map")
SUM_CHANNELS_HINT = "the first map is the mean over the channels (AvgPool across C), not their sum"
NO_SIGMOID_HINT = "squash the convolution's output with a sigmoid: the spatial weights lie in (0, 1)"
SPATIAL_GATED_HINT = "return the spatial attention map M_s, shape (B, 1, Y, X), not the gated features x * M_s"
SPATIAL_SHAPE_HINT = "keep a channel axis of size 1: return shape (B, 1, Y, X), which broadcasts against x"
EDGE_PAD_HINT = "pad with zeros (F.conv2d's padding), not by repeating the edge pixels"
SQUARE_PAD_HINT = ("pad each axis by its own kernel size: k_y // 2 rows and k_x // 2 columns (the kernel may be "
                   "rectangular)")
EVEN_KERNEL_HINT = "raise ValueError for an even kernel size: 'same' padding would have to be lopsided"

CAPTION_AXIS_HINT = ("take the softmax over the N regions (axis -1 of the (B, N) scores), not over the batch: each "
                     "row of weights sums to 1")
CAPTION_NO_TANH_HINT = "the score has a tanh: w . tanh(a_i W_f + h W_h + b); without it the softmax cancels the h term"
CAPTION_TANH_AFTER_HINT = ("apply tanh to the A-dim vector a_i W_f + h W_h + b, then take the dot with w, not "
                           "tanh(x @ w)")
CAPTION_PROJECTED_HINT = ("the context is the weighted average of the region features themselves, weights @ features "
                          "(B, D_f), not of their projections features @ W_f (B, A)")
GATE_IGNORED_HINT = ("when params has 'w_beta', multiply the context by the gate beta = sigmoid(hidden @ w_beta + "
                     "b_beta), one scalar per image (Xu et al. 2015, sec. 4.2.1)")
GATE_ON_WEIGHTS_HINT = "the gate beta scales the context only; return the softmax weights unscaled (each row sums to 1)"
B_BETA_HINT = "add params['b_beta'] inside the gate's sigmoid (0 when the key is absent)"
CAPTION_BIAS_HINT = "add the bias params['b'] (A,) inside the tanh"
CAPTION_NO_HIDDEN_HINT = ("the scores must depend on the decoder state: add hidden @ W_h (B, A) to every region's "
                          "features @ W_f (B, N, A)")
CAPTION_ORDER_HINT = "return (context, weights) in that order: context (B, D_f), weights (B, N)"


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def _stable_sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _rtol(dtype, magnitude):
    """The relative error a correct program may commit in a sigmoid (or softmax) of sums of this size."""
    return exp_rtol(dtype, float(magnitude))


# ================================================================================== patchify
patchify = Exercise("vision.patchify", points=2, reference=ref.patchify, uses_torch=True,
                    demo=lambda rng: ((np.arange(32).reshape(1, 2, 4, 4), 2), {}))


def _image(rng, shape, dtype="float64"):
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, size=shape).astype(np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def _check_patchify(t, images, P):
    got = t.call(images, P)
    t.expect(got, ref.oracle_patchify(images, P), what="patches (B, N, P*P*C)", rtol=0.0, atol=0.0)


@patchify.case("float64 (2, 3, 8, 12), P=4", "6 patches of 48 values, every dimension distinct, against F.unfold "
               "in the (p1, p2, c) order")
def _(t):
    _check_patchify(t, _image(t.rng, (2, 3, 8, 12)), 4)


@patchify.case("float32 (3, 5, 6, 10), P=2", "a wide image of 15 patches: float32 stays float32")
def _(t):
    _check_patchify(t, _image(t.rng, (3, 5, 6, 10), "float32"), 2)


@patchify.case("uint8 RGB (2, 3, 9, 15), P=3", "pixel values as loaded from a file (uint8) are moved, not converted")
def _(t):
    _check_patchify(t, _image(t.rng, (2, 3, 9, 15), "uint8"), 3)


@patchify.case("P=1 on (2, 4, 3, 5)", "P = 1: every pixel is a token of C values")
def _(t):
    _check_patchify(t, _image(t.rng, (2, 4, 3, 5)), 1)


@patchify.case("one patch: P = Y = X = 6, C = 2", "a patch as large as the image: N = 1, the whole image "
               "flattened as (p1, p2, c)")
def _(t):
    _check_patchify(t, _image(t.rng, (3, 2, 6, 6)), 6)


@patchify.case("Y or X not a multiple of P", "(2, 3, 10, 12) with P=4 and (2, 3, 8, 14) with P=4 raise "
               "ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", _image(t.rng, (2, 3, 10, 12)), 4, hint=NOT_TILED_HINT)
    t.raises("ValueError", _image(t.rng, (2, 3, 8, 14)), 4, hint=NOT_TILED_HINT)


def _patch_mutant(images, P, order="p1p2c", raster=True, split="outer", crop=False, dtype=None):
    """patchify with one deliberate difference (the mutants below pick which)."""
    images = np.asarray(images)
    B, C, Y, X = images.shape
    if crop:
        images = images[:, :, :Y - Y % P, :X - X % P]
        Y, X = images.shape[2:]
    elif Y % P or X % P:
        raise ValueError(f"patch_size {P} must divide the image size ({Y}, {X})")
    if split == "outer":
        g = images.reshape(B, C, Y // P, P, X // P, P)  # (b, c, i, p1, j, p2)
    else:  # (P, Y/P): strided patches
        g = images.reshape(B, C, P, Y // P, P, X // P).transpose(0, 1, 3, 2, 5, 4)
    axes = {"p1p2c": (0, 2, 4, 3, 5, 1), "cp1p2": (0, 2, 4, 1, 3, 5), "p2p1c": (0, 2, 4, 5, 3, 1)}[order]
    if not raster:
        axes = (axes[0], axes[2], axes[1]) + axes[3:]
    out = g.transpose(axes).reshape(B, (Y // P) * (X // P), P * P * C)
    return out if dtype is None else out.astype(dtype)


@patchify.mutant("(c, p1, p2) order, as F.unfold", UNFOLD_ORDER_HINT)
def _(images, patch_size):
    return _patch_mutant(images, patch_size, order="cp1p2")


@patchify.mutant("column-major patch order", RASTER_HINT)
def _(images, patch_size):
    return _patch_mutant(images, patch_size, raster=False)


@patchify.mutant("(p2, p1, c) inside a patch", P2_FIRST_HINT)
def _(images, patch_size):
    return _patch_mutant(images, patch_size, order="p2p1c")


@patchify.mutant("reshape without transpose", PLAIN_RESHAPE_HINT)
def _(images, patch_size):
    images = np.asarray(images)
    B, C, Y, X = images.shape
    P = patch_size
    if Y % P or X % P:
        raise ValueError("not tiled")
    return images.reshape(B, (Y // P) * (X // P), P * P * C)


@patchify.mutant("(P, Y/P) split: strided patches", STRIDED_HINT)
def _(images, patch_size):
    return _patch_mutant(images, patch_size, split="inner")


@patchify.mutant("crops instead of raising", NOT_TILED_HINT)
def _(images, patch_size):
    return _patch_mutant(images, patch_size, crop=True)


@patchify.mutant("channels-last", CHANNELS_LAST_HINT)
def _(images, patch_size):
    return _patch_mutant(np.moveaxis(np.asarray(images), -1, 1), patch_size)


@patchify.mutant("float64 output", "keep the images' dtype (uint8 stays uint8, float32 stays float32): "
                 "patchify moves values, it computes nothing")
def _(images, patch_size):
    return _patch_mutant(images, patch_size, dtype=np.float64)


@patchify.alternative("one grid cell at a time, channels moved last")
def _(images, patch_size):
    B, C, Y, X = images.shape
    P = patch_size
    if Y % P != 0 or X % P != 0:
        raise ValueError("the patch size must divide the image")
    cells = [images[:, :, i:i + P, j:j + P].transpose(0, 2, 3, 1).reshape(B, -1)
             for i in range(0, Y, P) for j in range(0, X, P)]
    return np.stack(cells, axis=1)


@patchify.alternative("channels-last first, then swap the patch-row and pixel-column axes")
def _(images, patch_size):
    B, C, Y, X = images.shape
    P = patch_size
    if Y % P or X % P:
        raise ValueError("image size not divisible by the patch size")
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # (B, Y, X, C)
    g = nhwc.reshape(B, Y // P, P, X // P, P, C).swapaxes(2, 3)  # (B, Y/P, X/P, P, P, C)
    return g.reshape(B, -1, P * P * C)


@patchify.alternative("fancy indexing with a precomputed gather")
def _(images, patch_size):
    B, C, Y, X = images.shape
    P = patch_size
    if Y % P or X % P:
        raise ValueError("bad patch size")
    i, j, p1, p2, c = np.meshgrid(np.arange(Y // P), np.arange(X // P), np.arange(P), np.arange(P), np.arange(C),
                                  indexing="ij")
    rows, cols = (i * P + p1).reshape(-1), (j * P + p2).reshape(-1)
    return images[:, c.reshape(-1), rows, cols].reshape(B, (Y // P) * (X // P), P * P * C)


# ================================================================================== unpatchify
unpatchify = Exercise("vision.unpatchify", points=2, reference=ref.unpatchify, uses_torch=True,
                      demo=lambda rng: ((np.arange(32).reshape(1, 4, 8), (4, 4), 2), {}))


def _check_unpatchify(t, patches, size, P):
    got = t.call(patches, size, P)
    t.expect(got, ref.oracle_unpatchify(patches, size, P), what="images (B, C, Y, X)", rtol=0.0, atol=0.0)


@unpatchify.case("float64 (2, 6, 48) -> (2, 3, 8, 12), P=4", "patches back into images, every dimension distinct, "
                 "against F.fold")
def _(t):
    _check_unpatchify(t, _image(t.rng, (2, 6, 48)), (8, 12), 4)


@unpatchify.case("float32 (3, 15, 20) -> (3, 5, 6, 10), P=2", "a wide image: float32 stays float32")
def _(t):
    _check_unpatchify(t, _image(t.rng, (3, 15, 20), "float32"), (6, 10), 2)


@unpatchify.case("a tall image (2, 10, 48) -> (2, 3, 20, 8), P=4", "Y > X: image_size is (rows, columns)")
def _(t):
    _check_unpatchify(t, _image(t.rng, (2, 10, 48)), (20, 8), 4)


@unpatchify.case("round trip of uint8 images", "unpatchify(patchify(x, P), (Y, X), P) gives back x exactly")
def _(t):
    images = _image(t.rng, (2, 3, 9, 15), "uint8")
    got = t.call(ref.patchify(images, 3), (9, 15), 3)
    t.expect(got, images, what="images (B, C, Y, X)", rtol=0.0, atol=0.0)


@unpatchify.case("P=1 (2, 15, 4) -> (2, 4, 3, 5)", "P = 1: token n is pixel (n // X, n % X)")
def _(t):
    _check_unpatchify(t, _image(t.rng, (2, 15, 4)), (3, 5), 1)


@unpatchify.case("sizes that do not fit", "N != (Y/P)(X/P), a patch width that is not a multiple of P*P, and Y "
                 "not a multiple of P raise ValueError", weight=0.5)
def _(t):
    t.raises("ValueError", _image(t.rng, (2, 5, 48)), (8, 12), 4)
    t.raises("ValueError", _image(t.rng, (2, 6, 50)), (8, 12), 4)
    t.raises("ValueError", _image(t.rng, (2, 6, 48)), (9, 12), 4)


def _unpatch_mutant(patches, image_size, P, order="p1p2c", raster=True, swap_size=False, plain=False):
    """unpatchify with one deliberate difference (the mutants below pick which)."""
    patches = np.asarray(patches)
    B, N, width = patches.shape
    Y, X = (int(s) for s in image_size)
    if swap_size:
        Y, X = X, Y
    if Y % P or X % P or N != (Y // P) * (X // P) or width % (P * P):
        raise ValueError("sizes do not fit")
    C = width // (P * P)
    if plain:
        return patches.reshape(B, C, Y, X)
    if order == "cp1p2":
        g = patches.reshape(B, Y // P, X // P, C, P, P).transpose(0, 3, 1, 4, 2, 5)
    else:
        g = patches.reshape(B, Y // P, X // P, P, P, C)
        if order == "p2p1c":
            g = g.swapaxes(3, 4)
        g = g.transpose(0, 5, 1, 3, 2, 4)
    if not raster:  # the grid was filled column by column
        g = patches.reshape(B, X // P, Y // P, P, P, C).transpose(0, 5, 2, 3, 1, 4)
    return g.reshape(B, C, Y, X)


@unpatchify.mutant("(c, p1, p2) order, as F.fold", UNFOLD_ORDER_HINT)
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size, order="cp1p2")


@unpatchify.mutant("column-major patch order", RASTER_HINT)
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size, raster=False)


@unpatchify.mutant("(p2, p1, c) inside a patch", P2_FIRST_HINT)
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size, order="p2p1c")


@unpatchify.mutant("image_size read as (X, Y)", SWAPPED_SIZE_HINT)
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size, swap_size=True)


@unpatchify.mutant("reshape without transpose", PLAIN_RESHAPE_HINT)
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size, plain=True)


@unpatchify.mutant("channels-last output", "return channels-first images (B, C, Y, X), as patchify takes them, "
                   "not (B, Y, X, C)")
def _(patches, image_size, patch_size):
    return np.moveaxis(_unpatch_mutant(patches, image_size, patch_size), 1, -1)


@unpatchify.mutant("float64 output", "keep the patches' dtype: unpatchify moves values, it computes nothing")
def _(patches, image_size, patch_size):
    return _unpatch_mutant(patches, image_size, patch_size).astype(np.float64)


@unpatchify.alternative("one grid cell at a time into an empty image")
def _(patches, image_size, patch_size):
    B, N, width = patches.shape
    Y, X = image_size
    P = patch_size
    if Y % P or X % P or N != (Y // P) * (X // P) or width % (P * P):
        raise ValueError("inconsistent sizes")
    C = width // (P * P)
    out = np.zeros((B, C, Y, X), dtype=patches.dtype)
    for n in range(N):
        i, j = n // (X // P), n % (X // P)
        out[:, :, i * P:i * P + P, j * P:j * P + P] = patches[:, n].reshape(B, P, P, C).transpose(0, 3, 1, 2)
    return out


@unpatchify.alternative("channels-last image first, then moveaxis")
def _(patches, image_size, patch_size):
    B, N, width = patches.shape
    Y, X = image_size
    P = patch_size
    C = width // (P * P)
    if Y % P or X % P or N != (Y // P) * (X // P) or C * P * P != width:
        raise ValueError("cannot unpatchify")
    nhwc = patches.reshape(B, Y // P, X // P, P, P, C).swapaxes(2, 3).reshape(B, Y, X, C)
    return np.ascontiguousarray(np.moveaxis(nhwc, -1, 1))


# ================================================================================== squeeze_excitation
se = Exercise("vision.squeeze_excitation", points=2, reference=ref.squeeze_excitation, uses_torch=True,
              demo=lambda rng: ((rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((4, 2)), np.zeros(2),
                                 rng.standard_normal((2, 4)), np.zeros(4)), {}))


def _se_inputs(rng, B=2, C=6, Y=5, X=7, R=3, dtype="float64", scale=1.0):
    """x (B, C, Y, X), W1 (C, R), b1 (R,), W2 (R, C), b2 (C,); weights scaled by 1/sqrt(fan-in)."""
    arrays = (rng.standard_normal((B, C, Y, X)) + 0.5 * rng.standard_normal((B, C, 1, 1)),  # channels differ
              scale * rng.standard_normal((C, R)) / np.sqrt(C), 0.5 * rng.standard_normal(R),
              scale * rng.standard_normal((R, C)) / np.sqrt(R), 0.5 * rng.standard_normal(C))
    return tuple(np.asarray(a).astype(dtype) for a in arrays)


def _se_rtol(x, W1, b1, W2, b2):
    """exp_rtol of the largest sum of |terms| behind a gate's logit: (mean|x| |W1| + |b1|) |W2| + |b2|."""
    x64, W1, b1, W2, b2 = (np.abs(np.asarray(a, np.float64)) for a in (x, W1, b1, W2, b2))
    size = (x64.mean(axis=(2, 3)) @ W1 + b1) @ W2 + b2
    return _rtol(np.asarray(x).dtype, size.max())


def _check_se(t, x, W1, b1, W2, b2):
    got = t.call(x, W1, b1, W2, b2)
    want = ref.oracle_squeeze_excitation(x, W1, b1, W2, b2).astype(x.dtype)
    t.expect(got, want, what="recalibrated features (B, C, Y, X)", rtol=_se_rtol(x, W1, b1, W2, b2))


@se.case("float64 B=2, C=6, Y=5, X=7, R=3", "the block's output against PyTorch (adaptive_avg_pool2d, two "
         "nn.Linear layers, ReLU, sigmoid)")
def _(t):
    _check_se(t, *_se_inputs(t.rng))


@se.case("float32 B=3, C=8, Y=4, X=9, R=2", "float32 in, float32 out")
def _(t):
    _check_se(t, *_se_inputs(t.rng, B=3, C=8, Y=4, X=9, R=2, dtype="float32"))


@se.case("images of different brightness", "each image gets its own gate: image 1 is the image 0 scaled by 5 "
         "plus 2, and its gates differ")
def _(t):
    x, W1, b1, W2, b2 = _se_inputs(t.rng, B=3)
    x[1] = 5 * x[0] + 2
    _check_se(t, x, W1, b1, W2, b2)


@se.case("saturated gates, float32", "logits near +-100, where exp(-z) overflows float32: gates at 0 and 1, no NaN")
def _(t):
    x, W1, b1, W2, _ = _se_inputs(t.rng, dtype="float32")
    b2 = (100 * t.rng.choice([-1.0, 1.0], size=6)).astype(np.float32)
    _check_se(t, x, W1, b1, W2, b2)


@se.case("1 x 1 feature maps, R=1", "Y = X = 1: the squeeze is the pixel itself; a bottleneck of one unit")
def _(t):
    _check_se(t, *_se_inputs(t.rng, B=4, C=5, Y=1, X=1, R=1))


def _se_mutant(x, W1, b1, W2, b2, pool="mean", axes=(2, 3), relu=True, gate="sigmoid", biases=True,
               output="gated", dtype=None):
    x64 = np.asarray(x, np.float64)
    z = {"mean": x64.mean, "max": x64.max, "sum": x64.sum}[pool](axis=axes)
    if z.ndim == 1:  # pooled over the batch too: one descriptor for every image
        z = np.broadcast_to(z, (x64.shape[0], z.shape[0]))
    b1, b2 = (b1, b2) if biases else (0.0, 0.0)
    h = z @ W1 + b1
    h = np.maximum(h, 0) if relu else h
    logits = h @ W2 + b2
    s = _sigmoid(logits) if gate == "sigmoid" else ref_softmax.softmax(logits, axis=-1)
    out = s if output == "gate" else x64 * s[:, :, None, None]
    return out.astype(dtype or np.asarray(x).dtype)


@se.mutant("max-pooled squeeze", SE_MAX_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, pool="max")


@se.mutant("summed squeeze", SE_SUM_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, pool="sum")


@se.mutant("pools over the batch", BATCH_POOL_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, axes=(0, 2, 3))


@se.mutant("softmax over channels", SE_SOFTMAX_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, gate="softmax")


@se.mutant("no ReLU", NO_RELU_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, relu=False)


@se.mutant("biases ignored", SE_BIAS_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, biases=False)


@se.mutant("returns the gate", SE_GATE_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, output="gate")


@se.mutant("float64 output", DTYPE_HINT)
def _(x, W1, b1, W2, b2):
    return _se_mutant(x, W1, b1, W2, b2, dtype=np.float64)


@se.alternative("einsum, sigmoid as 0.5 (1 + tanh(z / 2))")
def _(x, W1, b1, W2, b2):
    z = np.einsum("bcyx->bc", x) / (x.shape[2] * x.shape[3])
    h = np.einsum("bc,cr->br", z, W1) + b1
    logits = np.einsum("br,rc->bc", h * (h > 0), W2) + b2
    return np.einsum("bcyx,bc->bcyx", x, 0.5 * (1 + np.tanh(logits / 2)))


@se.alternative("channels-last, 1 / (1 + exp(-z)) with overflow silenced")
def _(x, W1, b1, W2, b2):
    nhwc = np.moveaxis(x, 1, -1)  # (B, Y, X, C)
    z = nhwc.reshape(x.shape[0], -1, x.shape[1]).mean(axis=1)  # (B, C)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-(np.maximum(z @ W1 + b1, 0) @ W2 + b2)))
    return np.moveaxis(nhwc * s[:, None, None, :], -1, 1)


@se.alternative("float64 inside, cast back once")
def _(x, W1, b1, W2, b2):
    x64 = x.astype(np.float64)
    s = _stable_sigmoid(np.maximum(x64.mean(axis=(2, 3)) @ W1 + b1, 0.0) @ W2 + b2)
    return (x64 * s[..., None, None]).astype(x.dtype)


# ================================================================================== cbam_channel_attention
cbam_c = Exercise("vision.cbam_channel_attention", points=2, reference=ref.cbam_channel_attention, uses_torch=True,
                  demo=lambda rng: ((rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((4, 2)),
                                     rng.standard_normal((2, 4))), {}))


def _cbam_inputs(rng, B=2, C=6, Y=5, X=7, R=3, dtype="float64"):
    arrays = (rng.standard_normal((B, C, Y, X)) + 0.5 * rng.standard_normal((B, C, 1, 1)),
              rng.standard_normal((C, R)) / np.sqrt(C), rng.standard_normal((R, C)) / np.sqrt(R))
    return tuple(np.asarray(a).astype(dtype) for a in arrays)


def _check_cbam_c(t, x, W1, W2):
    got = t.call(x, W1, W2)
    a = np.abs(np.asarray(x, np.float64)).reshape(x.shape[0], x.shape[1], -1).max(axis=-1)  # >= |mean|, |max|
    size = 2 * (a @ np.abs(W1.astype(np.float64))) @ np.abs(W2.astype(np.float64))
    t.expect(got, ref.oracle_cbam_channel_attention(x, W1, W2).astype(x.dtype), what="channel weights (B, C, 1, 1)",
             rtol=_rtol(x.dtype, size.max()))


@cbam_c.case("float64 B=2, C=6, Y=5, X=7, R=3", "M_c against PyTorch (adaptive avg and max pools, a shared MLP of "
             "two nn.Linear without bias, sigmoid of the sum)")
def _(t):
    _check_cbam_c(t, *_cbam_inputs(t.rng))


@cbam_c.case("float32 B=3, C=8, Y=4, X=9, R=2", "float32 in, float32 out")
def _(t):
    _check_cbam_c(t, *_cbam_inputs(t.rng, B=3, C=8, Y=4, X=9, R=2, dtype="float32"))


@cbam_c.case("one bright pixel per channel", "sparse maps where the max (a spike of +-6) and the mean disagree: "
             "both descriptors count")
def _(t):
    x, W1, W2 = _cbam_inputs(t.rng)
    x = 0.1 * x
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            x[b, c, t.rng.integers(5), t.rng.integers(7)] = 6.0 * t.rng.choice([-1.0, 1.0])
    _check_cbam_c(t, x, W1, W2)


@cbam_c.case("images of different brightness", "each image gets its own weights: image 1 is image 0 times 4 minus 1")
def _(t):
    x, W1, W2 = _cbam_inputs(t.rng, B=3)
    x[1] = 4 * x[0] - 1
    _check_cbam_c(t, x, W1, W2)


@cbam_c.case("1 x 1 feature maps", "Y = X = 1: the average and the max are the same value")
def _(t):
    _check_cbam_c(t, *_cbam_inputs(t.rng, B=4, C=5, Y=1, X=1, R=2))


def _cbam_c_mutant(x, W1, W2, use=("avg", "max"), two_sigmoids=False, mlp_of_sum=False, relu=True, axes=(2, 3),
                   output="weights"):
    x64 = np.asarray(x, np.float64)

    def pooled(f):
        v = f(x64, axis=axes)
        return np.broadcast_to(v, (x64.shape[0], v.shape[0])) if v.ndim == 1 else v

    def mlp(v):
        h = v @ W1
        return (np.maximum(h, 0) if relu else h) @ W2

    avg, mx = pooled(np.mean), pooled(np.max)
    if mlp_of_sum:
        m = _sigmoid(mlp(avg + mx))
    elif two_sigmoids:
        m = _sigmoid(mlp(avg)) + _sigmoid(mlp(mx))
    else:
        m = _sigmoid(sum(mlp({"avg": avg, "max": mx}[k]) for k in use))
    if output == "flat":
        return m.astype(x.dtype)
    m = m[:, :, None, None]
    return (x64 * m if output == "gated" else m).astype(x.dtype)


@cbam_c.mutant("average only (SE's squeeze)", AVG_ONLY_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, use=("avg",))


@cbam_c.mutant("max only", MAX_ONLY_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, use=("max",))


@cbam_c.mutant("a sigmoid per branch", TWO_SIGMOIDS_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, two_sigmoids=True)


@cbam_c.mutant("MLP of the summed descriptors", MLP_OF_SUM_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, mlp_of_sum=True)


@cbam_c.mutant("no ReLU", CBAM_NO_RELU_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, relu=False)


@cbam_c.mutant("pools over the batch", BATCH_POOL_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, axes=(0, 2, 3))


@cbam_c.mutant("returns the gated features", CHANNEL_GATED_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, output="gated")


@cbam_c.mutant("shape (B, C)", CHANNEL_SHAPE_HINT)
def _(x, W1, W2):
    return _cbam_c_mutant(x, W1, W2, output="flat")


@cbam_c.alternative("both descriptors through the MLP in one stacked matmul")
def _(x, W1, W2):
    B, C = x.shape[:2]
    flat = x.reshape(B, C, -1)
    v = np.concatenate([flat.mean(axis=-1), flat.max(axis=-1)])  # (2B, C)
    out = np.maximum(v @ W1, 0) @ W2  # (2B, C)
    return _stable_sigmoid(out[:B] + out[B:]).reshape(B, C, 1, 1)


@cbam_c.alternative("einsum, keepdims pools, 1 / (1 + exp(-z))")
def _(x, W1, W2):
    avg, mx = x.mean(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)  # (B, C, 1, 1)

    def mlp(v):
        return np.einsum("bryx,rc->bcyx", np.maximum(np.einsum("bcyx,cr->bryx", v, W1), 0), W2)

    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-(mlp(avg) + mlp(mx))))


# ================================================================================== cbam_spatial_attention
cbam_s = Exercise("vision.cbam_spatial_attention", points=2, reference=ref.cbam_spatial_attention, uses_torch=True,
                  demo=lambda rng: ((rng.standard_normal((1, 3, 4, 5)), rng.standard_normal((2, 3, 3))), {}))


def _spatial_inputs(rng, B=2, C=5, Y=6, X=9, k=(3, 3), dtype="float64"):
    x = rng.standard_normal((B, C, Y, X))
    kernel = rng.standard_normal((2,) + tuple(k)) / np.sqrt(2 * k[0] * k[1])
    return x.astype(dtype), kernel.astype(dtype)


def _check_spatial(t, x, kernel):
    got = t.call(x, kernel)
    a = np.abs(np.asarray(x, np.float64)).max(axis=1)  # (B, Y, X) >= |mean| and |max| over channels
    size = np.abs(kernel.astype(np.float64)).sum() * a.max()
    t.expect(got, ref.oracle_cbam_spatial_attention(x, kernel).astype(x.dtype), what="spatial weights (B, 1, Y, X)",
             rtol=_rtol(x.dtype, size))


@cbam_s.case("float64 B=2, C=5, Y=6, X=9, 3 x 3", "M_s against F.conv2d(padding='same') on [mean; max] over the "
             "channels, then a sigmoid")
def _(t):
    _check_spatial(t, *_spatial_inputs(t.rng))


@cbam_s.case("7 x 7 kernel (the paper's), Y=8, X=11", "a larger neighbourhood: 3 zeros of padding on each side")
def _(t):
    _check_spatial(t, *_spatial_inputs(t.rng, Y=8, X=11, k=(7, 7)))


@cbam_s.case("rectangular 3 x 5 kernel, float32", "k_y != k_x: each axis is padded by its own k // 2; float32 "
             "stays float32")
def _(t):
    _check_spatial(t, *_spatial_inputs(t.rng, B=3, C=4, Y=7, X=6, k=(3, 5), dtype="float32"))


@cbam_s.case("a kernel larger than the image", "7 x 7 on a 4 x 5 map: most of the kernel meets the zero padding")
def _(t):
    _check_spatial(t, *_spatial_inputs(t.rng, B=2, C=3, Y=4, X=5, k=(7, 7)))


@cbam_s.case("1 x 1 kernel, one channel", "k = 1 (no padding) and C = 1, where the mean and the max maps are equal")
def _(t):
    _check_spatial(t, *_spatial_inputs(t.rng, B=3, C=1, Y=5, X=4, k=(1, 1)))


@cbam_s.case("an even kernel", "a (2, 4, 3) kernel raises ValueError", weight=0.5)
def _(t):
    x, _ = _spatial_inputs(t.rng)
    t.raises("ValueError", x, t.rng.standard_normal((2, 4, 3)), hint=EVEN_KERNEL_HINT)


def _spatial_mutant(x, kernel, order=("mean", "max"), flip=False, pad="same", reduce_mean=True, sigmoid=True,
                    output="weights", check=True):
    x64, K = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    _, k_y, k_x = K.shape
    if check and (k_y % 2 == 0 or k_x % 2 == 0):
        raise ValueError("even kernel")
    if flip:
        K = K[:, ::-1, ::-1]
    B, C, Y, X = x64.shape
    first = x64.mean(axis=1) if reduce_mean else x64.sum(axis=1)
    maps = {"mean": first, "max": x64.max(axis=1)}
    m = np.stack([maps[k] for k in order], axis=1)  # (B, 2, Y, X)
    r_y, r_x = k_y // 2, k_x // 2
    if pad == "same":
        padded = np.pad(m, ((0, 0), (0, 0), (r_y, r_y), (r_x, r_x)))
    elif pad == "end":  # all the padding after the image
        padded = np.pad(m, ((0, 0), (0, 0), (0, k_y - 1), (0, k_x - 1)))
    elif pad == "edge":
        padded = np.pad(m, ((0, 0), (0, 0), (r_y, r_y), (r_x, r_x)), mode="edge")
    else:  # "square": k_y // 2 on both axes
        padded = np.pad(m, ((0, 0), (0, 0), (r_y, r_y), (r_y, r_y)))
    logits = np.zeros((B, Y, X))
    for i in range(k_y):
        for j in range(k_x):
            window = padded[:, :, i:i + Y, j:j + X]
            if window.shape[-2:] != (Y, X):
                raise ValueError(f"could not broadcast input array from shape {window.shape} into shape {(B, 2, Y, X)}")
            logits += np.einsum("c,bcyx->byx", K[:, i, j], window)
    w = _sigmoid(logits) if sigmoid else logits
    if output == "flat":
        return w.astype(x.dtype)
    w = w[:, None]
    return (x64 * w if output == "gated" else w).astype(x.dtype)


@cbam_s.mutant("[max; mean] order of the authors' code", SWAPPED_MAPS_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, order=("max", "mean"))


@cbam_s.mutant("flipped kernel (true convolution)", FLIPPED_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, flip=True)


@cbam_s.mutant("padding on one side", SHIFTED_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, pad="end")


@cbam_s.mutant("edge padding", EDGE_PAD_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, pad="edge")


@cbam_s.mutant("k_y // 2 on both axes", SQUARE_PAD_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, pad="square")


@cbam_s.mutant("sum over channels", SUM_CHANNELS_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, reduce_mean=False)


@cbam_s.mutant("no sigmoid", NO_SIGMOID_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, sigmoid=False)


@cbam_s.mutant("returns the gated features", SPATIAL_GATED_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, output="gated")


@cbam_s.mutant("shape (B, Y, X)", SPATIAL_SHAPE_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, output="flat")


@cbam_s.mutant("even kernels accepted", EVEN_KERNEL_HINT)
def _(x, kernel):
    return _spatial_mutant(x, kernel, check=False)


@cbam_s.alternative("im2col with sliding_window_view and one einsum")
def _(x, kernel):
    _, k_y, k_x = kernel.shape
    if not (k_y % 2 and k_x % 2):
        raise ValueError("kernel sizes must be odd")
    maps = np.stack([x.mean(axis=1), x.max(axis=1)], axis=1)  # (B, 2, Y, X)
    padded = np.pad(maps, ((0, 0), (0, 0), (k_y // 2,) * 2, (k_x // 2,) * 2))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k_y, k_x), axis=(2, 3))  # (B, 2, Y, X, k_y, k_x)
    logits = np.einsum("bcyxij,cij->byx", windows, kernel)
    return _stable_sigmoid(logits)[:, None, :, :].astype(x.dtype)


@cbam_s.alternative("shift the maps instead of the kernel: a sum of shifted, zero-filled copies")
def _(x, kernel):
    _, k_y, k_x = kernel.shape
    if k_y % 2 == 0 or k_x % 2 == 0:
        raise ValueError("odd kernels only")
    B, C, Y, X = x.shape
    maps = np.concatenate([x.mean(axis=1, keepdims=True), x.max(axis=1, keepdims=True)], axis=1)
    logits = np.zeros((B, Y, X), dtype=x.dtype)
    for i in range(k_y):
        for j in range(k_x):
            dy, dx = i - k_y // 2, j - k_x // 2  # the kernel tap (i, j) reads pixel (y + dy, x + dx)
            n_y, n_x = max(0, Y - abs(dy)), max(0, X - abs(dx))  # rows and columns that stay inside
            if n_y == 0 or n_x == 0:
                continue  # this tap only ever meets the zero padding
            shifted = np.zeros_like(maps)
            ys, yt = (slice(0, n_y), slice(dy, dy + n_y)) if dy >= 0 else (slice(-dy, -dy + n_y), slice(0, n_y))
            xs, xt = (slice(0, n_x), slice(dx, dx + n_x)) if dx >= 0 else (slice(-dx, -dx + n_x), slice(0, n_x))
            shifted[:, :, ys, xs] = maps[:, :, yt, xt]
            logits += kernel[0, i, j] * shifted[:, 0] + kernel[1, i, j] * shifted[:, 1]
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-logits)))[:, None]


# ================================================================================== caption_attention
caption = Exercise("vision.caption_attention", points=3, reference=ref.caption_attention, uses_torch=True,
                   deps=("softmax.softmax",),
                   demo=lambda rng: ((rng.standard_normal((1, 4, 3)), rng.standard_normal((1, 2)),
                                      {"W_f": rng.standard_normal((3, 2)), "W_h": rng.standard_normal((2, 2)),
                                       "b": np.zeros(2), "w": rng.standard_normal(2)}), {}))


def _caption_inputs(rng, B=2, N=12, D_f=6, D_h=5, A=4, dtype="float64", gate=False, b_beta=True, w_scale=1.0):
    """features (B, N, D_f), hidden (B, D_h), params: projections scaled by 1/sqrt(width)."""
    params = {"W_f": rng.standard_normal((D_f, A)) / np.sqrt(D_f), "W_h": rng.standard_normal((D_h, A)) / np.sqrt(D_h),
              "b": 0.5 * rng.standard_normal(A), "w": w_scale * rng.standard_normal(A)}
    if gate:
        params["w_beta"] = rng.standard_normal(D_h)
    params = {k: np.asarray(v).astype(dtype) for k, v in params.items()}
    if gate and b_beta:
        # a Python float: a 0-d array would reach the worker as shape (1,) (np.ascontiguousarray in wire._npy)
        params["b_beta"] = float(rng.standard_normal())
    return rng.standard_normal((B, N, D_f)).astype(dtype), rng.standard_normal((B, D_h)).astype(dtype), params


def _caption_tolerances(features, hidden, params):
    """(rtol of the weights, rtol and atol of the context)."""
    a, h = np.abs(np.asarray(features, np.float64)), np.abs(np.asarray(hidden, np.float64))
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(features, np.float64) @ p["W_f"] + (np.asarray(hidden, np.float64) @ p["W_h"])[:, None, :] + p["b"]
    xa = a @ np.abs(p["W_f"]) + (h @ np.abs(p["W_h"]))[:, None, :] + np.abs(p["b"])  # (B, N, A)
    size = (np.abs(p["w"]) * (1 + xa * (1 - np.tanh(x) ** 2))).sum(axis=-1)  # (B, N) score rounding, in eps
    dtype = np.asarray(features).dtype
    rtol = _rtol(dtype, size.max())
    if "w_beta" in p:
        gate_size = h @ np.abs(p["w_beta"]) + np.abs(p.get("b_beta", 0.0))
        rtol_context = rtol + 8.0 * EPS[dtype.name] * float(gate_size.max())
    else:
        rtol_context = rtol
    table_rtol, table_atol = tolerance(dtype)
    atol = table_atol + (rtol_context - table_rtol) * float(a.max())
    return rtol, rtol_context, atol


def _check_caption(t, features, hidden, params):
    got = t.call(features, hidden, params)
    context, weights = t.expect_tuple(got, 2)
    want_context, want_weights = ref.oracle_caption_attention(features, hidden, params)
    rtol, rtol_context, atol = _caption_tolerances(features, hidden, params)
    dtype = features.dtype
    t.expect(weights, want_weights.astype(dtype), what="weights (B, N)", rtol=rtol)
    t.expect(context, want_context.astype(dtype), what="context (B, D_f)", rtol=rtol_context, atol=atol)


@caption.case("float64 B=2, N=12, D_f=6, D_h=5, A=4, no gate", "Xu et al.'s soft attention over 12 regions "
              "against PyTorch (F.linear, tanh, softmax over N, bmm)")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng))


@caption.case("float32 with the gate beta", "params with 'w_beta' and 'b_beta': the context is scaled by "
              "sigmoid(hidden @ w_beta + b_beta), the weights are not; float32 stays float32")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng, B=3, N=20, dtype="float32", gate=True))


@caption.case("gate without b_beta", "'w_beta' alone: b_beta is taken as 0")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng, gate=True, b_beta=False))


@caption.case("one image, one region", "N = 1: that region gets weight 1 and the context is (beta times) its "
              "features")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng, B=1, N=1, gate=True))


@caption.case("sharp scores, float32", "|w| near 60: scores spread over hundreds, where exp without the max shift "
              "overflows")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng, N=16, dtype="float32", w_scale=60.0))


@caption.case("three images, one set of parameters", "each image's weights come from its own hidden state and "
              "regions (B = 3, N = 9 for a 3 x 3 grid)")
def _(t):
    _check_caption(t, *_caption_inputs(t.rng, B=3, N=9, D_f=7, D_h=4, A=5, gate=True))


def _caption_mutant(features, hidden, params, axis=-1, tanh="inside", projected=False, gate="context",
                    use_b_beta=True, bias=True, use_hidden=True, order="cw"):
    a, h = np.asarray(features, np.float64), np.asarray(hidden, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    pre = a @ p["W_f"] + (p["b"] if bias else 0.0)
    if use_hidden:
        pre = pre + (h @ p["W_h"])[:, None, :]
    if tanh == "inside":
        scores = np.tanh(pre) @ p["w"]
    elif tanh == "after":
        scores = np.tanh(pre @ p["w"])
    else:
        scores = pre @ p["w"]
    weights = ref_softmax.softmax(scores, axis=axis)
    values = a @ p["W_f"] if projected else a
    context = np.einsum("bn,bnd->bd", weights, values)
    if "w_beta" in p and gate != "none":
        beta = _sigmoid(h @ p["w_beta"] + (float(p.get("b_beta", 0.0)) if use_b_beta else 0.0))[:, None]
        context = context * beta
        if gate == "both":
            weights = weights * beta
    dtype = np.asarray(features).dtype
    out = (context.astype(dtype), weights.astype(dtype))
    return out if order == "cw" else out[::-1]


@caption.mutant("softmax over the batch axis", CAPTION_AXIS_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, axis=0)


@caption.mutant("no tanh", CAPTION_NO_TANH_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, tanh="none")


@caption.mutant("tanh after w", CAPTION_TANH_AFTER_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, tanh="after")


@caption.mutant("context of the projected features", CAPTION_PROJECTED_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, projected=True)


@caption.mutant("gate ignored", GATE_IGNORED_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, gate="none")


@caption.mutant("gate on the weights too", GATE_ON_WEIGHTS_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, gate="both")


@caption.mutant("b_beta ignored", B_BETA_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, use_b_beta=False)


@caption.mutant("bias b ignored", CAPTION_BIAS_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, bias=False)


@caption.mutant("hidden state ignored", CAPTION_NO_HIDDEN_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, use_hidden=False)


@caption.mutant("(weights, context) order", CAPTION_ORDER_HINT)
def _(features, hidden, params):
    return _caption_mutant(features, hidden, params, order="wc")


@caption.alternative("einsum, log-sum-exp weights")
def _(features, hidden, params):
    e = np.einsum("bna,a->bn", np.tanh(np.einsum("bnd,da->bna", features, params["W_f"])
                                       + np.einsum("bd,da->ba", hidden, params["W_h"])[:, None, :] + params["b"]),
                  params["w"])
    m = e.max(axis=-1, keepdims=True)
    weights = np.exp(e - (m + np.log(np.exp(e - m).sum(axis=-1, keepdims=True))))
    context = np.einsum("bn,bnd->bd", weights, features)
    if "w_beta" in params:
        z = hidden @ params["w_beta"] + params.get("b_beta", 0)
        context = context * _stable_sigmoid(z)[:, None].astype(features.dtype)
    return context, weights


@caption.alternative("a loop over images, the gate folded into the weights of the sum")
def _(features, hidden, params):
    B, N, D_f = features.shape
    contexts, weights = np.zeros((B, D_f), features.dtype), np.zeros((B, N), features.dtype)
    for i in range(B):
        scores = np.tanh(features[i] @ params["W_f"] + hidden[i] @ params["W_h"] + params["b"]) @ params["w"]  # (N,)
        w = np.exp(scores - scores.max())
        w = w / w.sum()
        beta = 1.0
        if "w_beta" in params:
            beta = 1.0 / (1.0 + np.exp(-np.clip(hidden[i] @ params["w_beta"] + params.get("b_beta", 0.0), -60, 60)))
        contexts[i] = (beta * w) @ features[i]
        weights[i] = w
    return contexts, weights


EXERCISES = [patchify, unpatchify, se, cbam_c, cbam_s, caption]
