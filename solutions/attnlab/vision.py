"""Attention in vision: images as patch tokens (ViT), channel and spatial gates (SE, CBAM), and soft
attention over image regions for captioning (Show, Attend and Tell).

Taught in notebooks/10_vision_attention.ipynb.

Shapes. Images and feature maps are channels-first, ``(B, C, Y, X)``: B images, C channels, Y rows (the
height) and X columns (the width), as PyTorch's ``(N, C, H, W)``. This module writes Y and X because in this
course H counts attention heads. P is the patch size, ``N = (Y / P) * (X / P)`` the number of patches (or of
image regions), and R the hidden width of a gate's bottleneck (C / r for a reduction ratio r).

Conventions (every function): projections are written ``x @ W`` (PyTorch's ``nn.Linear`` stores ``W.T``);
outputs keep the inputs' dtype (float32 in, float32 out); no function changes its inputs.
"""
import numpy as np

from attnlab.softmax import softmax
### BEGIN SOLUTION


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow for large |z| (exp of a non-positive number only)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
### END SOLUTION


def patchify(images, patch_size):
    """Cut images into non-overlapping square patches and flatten each patch into a token.

    Parameters
    ----------
    images : ndarray, shape (B, C, Y, X)
        Channels-first images; Y and X must be multiples of `patch_size`. Any dtype.
    patch_size : int
        P, the side of a square patch in pixels.

    Returns
    -------
    patches : ndarray, shape (B, N, P * P * C)
        N = (Y / P) * (X / P) patches in row-major (raster) order: patch ``n = i * (X / P) + j`` covers rows
        ``i*P .. i*P + P - 1`` and columns ``j*P .. j*P + P - 1``. Inside a patch vector the pixel
        (p1, p2) of channel c sits at index ``(p1 * P + p2) * C + c``: rows, then columns, then channels
        (einops ``'b c (i p1) (j p2) -> b (i j) (p1 p2 c)'``, the order of MAE's ``patchify``). Same dtype
        as `images`.

    Raises
    ------
    ValueError
        If `patch_size` < 1, or Y or X is not a multiple of `patch_size`.

    Notes
    -----
    A ``Conv2d(C, E, kernel_size=P, stride=P)`` patch embedding (timm, torchvision) flattens each patch as
    ``(c, p1, p2)`` instead, channels first: a linear layer works with either order, but weights trained
    with one order must be permuted before they are used with the other.
    """
    ### BEGIN HINTS
    # 1. reshape (B, C, Y, X) -> (B, C, Y/P, P, X/P, P): axes (b, c, i, p1, j, p2).
    # 2. transpose to (b, i, j, p1, p2, c), then reshape to (B, (Y/P)(X/P), P * P * C).
    # 3. check the sizes first and raise ValueError, before reshape fails with its own message.
    ### END HINTS
    ### BEGIN SOLUTION
    images = np.asarray(images)
    B, C, Y, X = images.shape
    P = int(patch_size)
    if P < 1 or Y % P or X % P:
        raise ValueError(f"patch_size {patch_size} must be >= 1 and divide the image size (Y, X) = ({Y}, {X})")
    grid = images.reshape(B, C, Y // P, P, X // P, P)  # (b, c, i, p1, j, p2)
    grid = grid.transpose(0, 2, 4, 3, 5, 1)  # (b, i, j, p1, p2, c)
    return grid.reshape(B, (Y // P) * (X // P), P * P * C)  # (B, N, P*P*C): a copy, in raster order
    ### END SOLUTION


def unpatchify(patches, image_size, patch_size):
    """Put patch tokens back together into images: the inverse of `patchify`.

    Parameters
    ----------
    patches : ndarray, shape (B, N, P * P * C)
        Patches in `patchify`'s order (raster order of patches; rows, columns, channels inside a patch).
    image_size : tuple of int
        (Y, X), the height and width of the images to rebuild; multiples of P with N = (Y / P) * (X / P).
    patch_size : int
        P.

    Returns
    -------
    images : ndarray, shape (B, C, Y, X)
        C = (P * P * C) / (P * P). ``unpatchify(patchify(x, P), x.shape[-2:], P)`` equals x exactly. Same
        dtype as `patches`.

    Raises
    ------
    ValueError
        If P < 1, Y or X is not a multiple of P, N != (Y / P) * (X / P), or the patch width is not a
        multiple of P * P.
    """
    ### BEGIN HINTS
    # 1. the number of channels is C = patches.shape[-1] // (P * P); validate every size before reshaping.
    # 2. reshape (B, N, P*P*C) -> (B, Y/P, X/P, P, P, C): axes (b, i, j, p1, p2, c).
    # 3. transpose to (b, c, i, p1, j, p2) and reshape to (B, C, Y, X).
    ### END HINTS
    ### BEGIN SOLUTION
    patches = np.asarray(patches)
    B, N, width = patches.shape
    Y, X = (int(s) for s in image_size)
    P = int(patch_size)
    if P < 1 or Y % P or X % P:
        raise ValueError(f"patch_size {patch_size} must be >= 1 and divide the image size (Y, X) = ({Y}, {X})")
    if N != (Y // P) * (X // P):
        raise ValueError(f"{N} patches cannot tile a ({Y}, {X}) image with patches of {P}: "
                         f"expected {(Y // P) * (X // P)}")
    if width % (P * P):
        raise ValueError(f"patch width {width} is not a multiple of P * P = {P * P}")
    C = width // (P * P)
    grid = patches.reshape(B, Y // P, X // P, P, P, C)  # (b, i, j, p1, p2, c)
    grid = grid.transpose(0, 5, 1, 3, 2, 4)  # (b, c, i, p1, j, p2)
    return grid.reshape(B, C, Y, X)
    ### END SOLUTION


def squeeze_excitation(x, W1, b1, W2, b2):
    """A Squeeze-and-Excitation block (Hu et al. 2018): rescale each channel by a gate computed from the
    whole feature map.

    Parameters
    ----------
    x : ndarray, shape (B, C, Y, X)
        Feature maps.
    W1 : ndarray, shape (C, R)
        First layer of the excitation MLP (the bottleneck, R = C / r).
    b1 : ndarray, shape (R,)
    W2 : ndarray, shape (R, C)
        Second layer, back to one value per channel.
    b2 : ndarray, shape (C,)

    Returns
    -------
    out : ndarray, shape (B, C, Y, X)
        The recalibrated feature maps ``x * s[:, :, None, None]`` (the block's output, not the gate).

    Notes
    -----
    .. math:: z = \\frac{1}{YX}\\sum_{y,x} x_{:, :, y, x}\\ (B, C),\\qquad
              s = \\sigma(\\mathrm{ReLU}(z W_1 + b_1) W_2 + b_2)\\ (B, C),\\qquad
              \\tilde x_{b,c} = s_{b,c}\\, x_{b,c}

    The paper's equation has no biases; b1 and b2 are the layers' biases, as most implementations have them.
    Each image gets its own gate (the squeeze averages over Y and X only, never over the batch), and the
    sigmoid gates channels independently: several can be fully on at once, unlike a softmax. A sigmoid
    written ``1 / (1 + np.exp(-z))`` is right but warns about overflow where z is very negative;
    ``np.exp(-np.logaddexp(0, -z))`` gives the same values without the warning.
    """
    ### BEGIN HINTS
    # 1. squeeze: the mean of x over its last two axes, (B, C).
    # 2. excitation: relu(z @ W1 + b1) is (B, R); sigmoid(... @ W2 + b2) is the gate s (B, C).
    # 3. scale: x * s[:, :, None, None] broadcasts the gate over Y and X.
    ### END HINTS
    ### BEGIN SOLUTION
    z = x.mean(axis=(2, 3))  # (B, C): one descriptor per channel and image
    hidden = np.maximum(z @ W1 + b1, 0)  # (B, R)
    gate = _sigmoid(hidden @ W2 + b2)  # (B, C)
    return (x * gate[:, :, None, None]).astype(x.dtype)
    ### END SOLUTION


def cbam_channel_attention(x, W1, W2):
    """CBAM's channel attention map (Woo et al. 2018): a shared MLP on the average- and max-pooled
    descriptors of each channel, added, then a sigmoid.

    Parameters
    ----------
    x : ndarray, shape (B, C, Y, X)
        Feature maps.
    W1 : ndarray, shape (C, R)
        First layer of the shared MLP (followed by a ReLU). No biases, as in the paper's equation.
    W2 : ndarray, shape (R, C)
        Second layer.

    Returns
    -------
    weights : ndarray, shape (B, C, 1, 1)
        The channel attention map M_c in (0, 1), *not* the gated features: the CBAM block multiplies,
        ``x * weights``, before it computes the spatial map from that product.

    Notes
    -----
    .. math:: M_c = \\sigma\\big(\\mathrm{MLP}(\\mathrm{AvgPool}(x)) + \\mathrm{MLP}(\\mathrm{MaxPool}(x))\\big),
              \\qquad \\mathrm{MLP}(v) = \\mathrm{ReLU}(v W_1) W_2

    The pools run over Y and X of each image and channel. The MLP is applied to each descriptor separately:
    the ReLU makes ``MLP(a) + MLP(m)`` differ from ``MLP(a + m)``.
    """
    ### BEGIN HINTS
    # 1. the two descriptors: x.mean(axis=(2, 3)) and x.max(axis=(2, 3)), each (B, C).
    # 2. the same MLP on each, relu(v @ W1) @ W2 (B, C); add the two results, then one sigmoid.
    # 3. return shape (B, C, 1, 1), ready to broadcast against x.
    ### END HINTS
    ### BEGIN SOLUTION
    def mlp(v):
        return np.maximum(v @ W1, 0) @ W2  # (B, C) -> (B, R) -> (B, C)

    logits = mlp(x.mean(axis=(2, 3))) + mlp(x.max(axis=(2, 3)))  # (B, C)
    return _sigmoid(logits)[:, :, None, None].astype(x.dtype)  # (B, C, 1, 1)
    ### END SOLUTION


def cbam_spatial_attention(x, kernel):
    """CBAM's spatial attention map (Woo et al. 2018): pool across channels into an average map and a max
    map, convolve the pair with one k x k filter ('same' zero padding), then a sigmoid.

    Parameters
    ----------
    x : ndarray, shape (B, C, Y, X)
        Feature maps (in CBAM, the output of the channel gate).
    kernel : ndarray, shape (2, k_y, k_x)
        The filter, k_y and k_x odd (the paper uses 7 x 7). ``kernel[0]`` weighs the channel-average map and
        ``kernel[1]`` the channel-max map, the paper's order [AvgPool; MaxPool]. No bias.

    Returns
    -------
    weights : ndarray, shape (B, 1, Y, X)
        The spatial attention map M_s in (0, 1), one weight per position, *not* the gated features
        (multiply, ``x * weights``, to apply it).

    Raises
    ------
    ValueError
        If k_y or k_x is even ('same' padding would have to be lopsided).

    Notes
    -----
    The convolution is a deep-learning one, a cross-correlation as in ``F.conv2d``: the kernel is not
    flipped. With ``m = [mean_c x; max_c x]`` padded by ``(k - 1) / 2`` zeros on every side,

    .. math:: M_s[b, 0, y, x] = \\sigma\\Big(\\sum_{c=0}^{1}\\sum_{i,j} K[c, i, j]\\,
              m_{\\text{pad}}[b, c, y + i, x + j]\\Big)

    The authors' code stacks the max map first: swap ``kernel[0]`` and ``kernel[1]`` to use its weights.
    """
    ### BEGIN HINTS
    # 1. maps = np.stack([x.mean(axis=1), x.max(axis=1)], axis=1) is (B, 2, Y, X); pad it with
    #    np.pad(..., ((0, 0), (0, 0), (k_y // 2, k_y // 2), (k_x // 2, k_x // 2))) (zeros).
    # 2. loop over the k_y * k_x offsets (i, j): add kernel[:, i, j] times the window padded[:, :, i:i+Y, j:j+X],
    #    summed over the 2 maps. Do not flip the kernel.
    # 3. sigmoid, and keep a channel axis of size 1: (B, 1, Y, X).
    ### END HINTS
    ### BEGIN SOLUTION
    kernel = np.asarray(kernel)
    _, k_y, k_x = kernel.shape
    if k_y % 2 == 0 or k_x % 2 == 0:
        raise ValueError(f"kernel sizes must be odd for 'same' padding, got ({k_y}, {k_x})")
    B, C, Y, X = x.shape
    maps = np.stack([x.mean(axis=1), x.max(axis=1)], axis=1)  # (B, 2, Y, X): [average; max]
    padded = np.pad(maps, ((0, 0), (0, 0), (k_y // 2, k_y // 2), (k_x // 2, k_x // 2)))  # zeros
    logits = np.zeros((B, Y, X), dtype=np.result_type(x.dtype, kernel.dtype))
    for i in range(k_y):  # cross-correlation: kernel[:, i, j] meets the input at offset (i, j)
        for j in range(k_x):
            window = padded[:, :, i:i + Y, j:j + X]  # (B, 2, Y, X)
            logits += np.einsum("c,bcyx->byx", kernel[:, i, j], window)
    return _sigmoid(logits)[:, None].astype(x.dtype)  # (B, 1, Y, X)
    ### END SOLUTION


def caption_attention(features, hidden, params):
    """Soft attention over image regions for one step of a captioning decoder (Show, Attend and Tell;
    Xu et al. 2015, "soft" deterministic attention).

    Parameters
    ----------
    features : ndarray, shape (B, N, D_f)
        The annotation vectors a_i: one feature vector per image region (a CNN's (Y', X') feature grid
        flattened row-major, N = Y' * X'; 14 x 14 = 196 regions of width 512 in the paper).
    hidden : ndarray, shape (B, D_h)
        The decoder's previous hidden state h_{t-1}.
    params : dict of ndarray
        ``"W_f"`` (D_f, A) projects the regions; ``"W_h"`` (D_h, A) projects the hidden state; ``"b"`` (A,)
        is the bias inside the tanh; ``"w"`` (A,) turns each A-vector into one score. Optional gate
        (Xu et al. 2015, sec. 4.2.1): when ``"w_beta"`` (D_h,) is present, the context is multiplied by the
        scalar ``beta = sigmoid(hidden @ w_beta + b_beta)`` per image, with ``"b_beta"`` (a float, or an
        array of shape ()) taken as 0 when absent.

    Returns
    -------
    context : ndarray, shape (B, D_f)
        ``beta * sum_i weights[:, i] * features[:, i]`` (beta = 1 without the gate).
    weights : ndarray, shape (B, N)
        The softmax of the scores over the N regions; each row sums to 1 (the gate does not change them).

    Notes
    -----
    .. math:: e_{i} = w^\\top \\tanh(a_i W_f + h_{t-1} W_h + b),\\qquad \\alpha = \\mathrm{softmax}(e),
              \\qquad z = \\beta \\sum_i \\alpha_i a_i

    This is Bahdanau's additive score (notebook 03) with image regions in place of source words.
    ``features @ W_f`` does not depend on the step: a decoder computes it once per image.
    """
    ### BEGIN HINTS
    # 1. features @ W_f is (B, N, A) and hidden @ W_h is (B, A): add them with [:, None, :], plus b.
    # 2. tanh(...) @ w gives the scores (B, N); softmax over the N regions (axis -1) gives the weights.
    # 3. context = (weights[:, :, None] * features).sum(axis=1) (B, D_f); times beta (B, 1) if "w_beta" in params.
    ### END HINTS
    ### BEGIN SOLUTION
    keys = features @ params["W_f"]  # (B, N, D_f) @ (D_f, A) -> (B, N, A)
    query = hidden @ params["W_h"]  # (B, D_h) @ (D_h, A) -> (B, A)
    scores = np.tanh(keys + query[:, None, :] + params["b"]) @ params["w"]  # (B, N, A) @ (A,) -> (B, N)
    weights = softmax(scores, axis=-1)  # (B, N)
    context = (weights[:, None, :] @ features)[:, 0, :]  # (B, 1, N) @ (B, N, D_f) -> (B, D_f)
    if "w_beta" in params:
        beta = _sigmoid(hidden @ params["w_beta"] + params.get("b_beta", 0.0))  # (B,)
        context = context * beta[:, None]
    return context.astype(features.dtype), weights.astype(features.dtype)
    ### END SOLUTION
