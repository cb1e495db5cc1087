"""Vision references, and the PyTorch float64 oracles the grader compares with.

The NumPy references answer the diagnosis' replays; they are written unlike the solution (patches cut and
placed one grid cell at a time, einsum over explicit axes, the spatial convolution as a sum over the
zero-padded neighbourhood of each output pixel, the sigmoid as exp(-log(1 + exp(-z)))) and round once to
the inputs' dtype. The `oracle_*` functions compute the same with PyTorch's own operators in float64:
F.unfold / F.fold for patches, F.adaptive_avg_pool2d / F.adaptive_max_pool2d, F.linear, torch.relu,
torch.sigmoid, F.conv2d(padding="same"), torch.tanh and torch.softmax; tests/test_vision_exercise.py
cross-checks the two and checks the patch order against the einops pattern written out by hand. Each
oracle returns float64 NumPy arrays (patches: the input's dtype, exactly); the grader rounds once.
"""
import numpy as np


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def _check_grid(Y, X, P):
    if P < 1 or Y % P != 0 or X % P != 0:
        raise ValueError(f"patch size {P} does not tile a ({Y}, {X}) image")


# ------------------------------------------------------------------------------- NumPy references
def patchify(images, patch_size):
    images = np.asarray(images)
    B, C, Y, X = images.shape
    P = int(patch_size)
    _check_grid(Y, X, P)
    tokens = []
    for i in range(Y // P):  # raster order: along a row of patches first
        for j in range(X // P):
            cell = images[:, :, i * P:(i + 1) * P, j * P:(j + 1) * P]  # (B, C, P, P)
            tokens.append(np.moveaxis(cell, 1, -1).reshape(B, P * P * C))  # (p1, p2, c) order
    return np.stack(tokens, axis=1)


def unpatchify(patches, image_size, patch_size):
    patches = np.asarray(patches)
    B, N, width = patches.shape
    Y, X = (int(s) for s in image_size)
    P = int(patch_size)
    _check_grid(Y, X, P)
    if N != (Y // P) * (X // P) or width % (P * P) != 0:
        raise ValueError(f"patches of shape {patches.shape} do not tile a ({Y}, {X}) image with P = {P}")
    C = width // (P * P)
    images = np.empty((B, C, Y, X), dtype=patches.dtype)
    for n in range(N):
        i, j = divmod(n, X // P)
        cell = patches[:, n].reshape(B, P, P, C)  # (B, p1, p2, c)
        images[:, :, i * P:(i + 1) * P, j * P:(j + 1) * P] = np.moveaxis(cell, -1, 1)
    return images


def squeeze_excitation(x, W1, b1, W2, b2):
    dtype = np.asarray(x).dtype
    x64, W1, b1, W2, b2 = _f64(x, W1, b1, W2, b2)
    squeezed = x64.sum(axis=(2, 3)) / (x64.shape[2] * x64.shape[3])  # (B, C)
    hidden = np.einsum("bc,cr->br", squeezed, W1) + b1
    gate = _sigmoid(np.einsum("br,rc->bc", np.where(hidden > 0, hidden, 0.0), W2) + b2)  # (B, C)
    return np.einsum("bcyx,bc->bcyx", x64, gate).astype(dtype)


def cbam_channel_attention(x, W1, W2):
    dtype = np.asarray(x).dtype
    x64, W1, W2 = _f64(x, W1, W2)
    B, C = x64.shape[:2]
    flat = x64.reshape(B, C, -1)
    both = np.stack([flat.mean(axis=-1), flat.max(axis=-1)])  # (2, B, C): the two descriptors
    hidden = np.einsum("kbc,cr->kbr", both, W1)
    logits = np.einsum("kbr,rc->bc", np.where(hidden > 0, hidden, 0.0), W2)  # the sum over k adds the two
    return _sigmoid(logits).reshape(B, C, 1, 1).astype(dtype)


def cbam_spatial_attention(x, kernel):
    dtype = np.asarray(x).dtype
    x64, K = _f64(x, kernel)
    _, k_y, k_x = K.shape
    if k_y % 2 == 0 or k_x % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got ({k_y}, {k_x})")
    B, C, Y, X = x64.shape
    maps = np.concatenate([x64.mean(axis=1, keepdims=True), x64.max(axis=1, keepdims=True)], axis=1)  # (B, 2, Y, X)
    r_y, r_x = k_y // 2, k_x // 2
    padded = np.zeros((B, 2, Y + 2 * r_y, X + 2 * r_x))
    padded[:, :, r_y:r_y + Y, r_x:r_x + X] = maps
    logits = np.empty((B, Y, X))
    for y in range(Y):  # each output pixel: its neighbourhood, centred on it, against the kernel
        for xx in range(X):
            logits[:, y, xx] = np.einsum("bcij,cij->b", padded[:, :, y:y + k_y, xx:xx + k_x], K)
    return _sigmoid(logits)[:, None].astype(dtype)


def caption_attention(features, hidden, params):
    dtype = np.asarray(features).dtype
    a, h = _f64(features, hidden)
    W_f, W_h, b, w = _f64(params["W_f"], params["W_h"], params["b"], params["w"])
    scores = np.einsum("bna,a->bn", np.tanh(np.einsum("bnd,da->bna", a, W_f)
                                              + np.einsum("bd,da->ba", h, W_h)[:, None, :] + b), w)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = e / e.sum(axis=-1, keepdims=True)  # (B, N)
    context = np.einsum("bn,bnd->bd", weights, a)
    if "w_beta" in params:
        w_beta = np.asarray(params["w_beta"], np.float64)
        b_beta = float(np.asarray(params.get("b_beta", 0.0), np.float64))
        context = context * _sigmoid(np.einsum("bd,d->b", h, w_beta) + b_beta)[:, None]
    return context.astype(dtype), weights.astype(dtype)


# ------------------------------------------------------------------------------- PyTorch oracles
def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _t(*arrays):
    torch, _ = _torch()
    return [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in arrays]


def oracle_patchify(images, patch_size):
    """F.unfold with kernel = stride = P gives (B, C * P * P, N), columns in (c, p1, p2) order; the course
    wants (p1, p2, c). Computed in float64 (exact for every dtype tested) and returned in the input's dtype."""
    torch, F = _torch()
    images = np.asarray(images)
    B, C, Y, X = images.shape
    P = int(patch_size)
    cols = F.unfold(*_t(images), kernel_size=P, stride=P)  # (B, C*P*P, N)
    tokens = cols.reshape(B, C, P, P, -1).permute(0, 4, 2, 3, 1).reshape(B, -1, P * P * C)
    return tokens.numpy().astype(images.dtype)


def oracle_unpatchify(patches, image_size, patch_size):
    """F.fold is unfold's adjoint; with non-overlapping patches it puts each value back in its place."""
    torch, F = _torch()
    patches = np.asarray(patches)
    B, N, width = patches.shape
    P = int(patch_size)
    C = width // (P * P)
    cols = _t(patches)[0].reshape(B, N, P, P, C).permute(0, 4, 2, 3, 1).reshape(B, C * P * P, N)
    return F.fold(cols, output_size=tuple(int(s) for s in image_size), kernel_size=P, stride=P).numpy().astype(
        patches.dtype)


def oracle_squeeze_excitation(x, W1, b1, W2, b2):
    torch, F = _torch()
    x, W1, b1, W2, b2 = _t(x, W1, b1, W2, b2)
    z = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C)
    gate = torch.sigmoid(F.linear(torch.relu(F.linear(z, W1.T, b1)), W2.T, b2))  # nn.Linear stores (out, in)
    return (x * gate[:, :, None, None]).numpy()


def oracle_cbam_channel_attention(x, W1, W2):
    torch, F = _torch()
    x, W1, W2 = _t(x, W1, W2)

    def mlp(v):
        return F.linear(torch.relu(F.linear(v, W1.T)), W2.T)

    avg, mx = F.adaptive_avg_pool2d(x, 1).flatten(1), F.adaptive_max_pool2d(x, 1).flatten(1)
    return torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None].numpy()


def oracle_cbam_spatial_attention(x, kernel):
    torch, F = _torch()
    x, K = _t(x, kernel)
    maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, Y, X)
    return torch.sigmoid(F.conv2d(maps, K[None], padding="same")).numpy()  # weight (1, 2, k_y, k_x)


def oracle_caption_attention(features, hidden, params):
    torch, F = _torch()
    a, h, W_f, W_h, b, w = _t(features, hidden, params["W_f"], params["W_h"], params["b"], params["w"])
    scores = F.linear(torch.tanh(F.linear(a, W_f.T, b) + F.linear(h, W_h.T)[:, None, :]), w[None]).squeeze(-1)
    weights = torch.softmax(scores, dim=-1)  # (B, N)
    context = torch.bmm(weights[:, None, :], a).squeeze(1)  # (B, D_f)
    if "w_beta" in params:
        w_beta, b_beta = _t(params["w_beta"], params.get("b_beta", 0.0))
        context = context * torch.sigmoid(h @ w_beta + b_beta)[:, None]
    return context.numpy(), weights.numpy()
