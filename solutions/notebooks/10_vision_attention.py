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
# # 10 · Attention in vision
#
# Attention came to images in two ways. Convolutional networks gained small *gates*: a vector of weights in
# (0, 1) that turns channels or positions of a feature map up or down (Hu et al. 2018; Woo et al. 2018).
# Later, the Vision Transformer dropped convolution almost entirely and ran a Transformer encoder over
# patches of the image (Dosovitskiy et al. 2021). Before both, a captioning model learned where in the
# image to look for each word it wrote (Xu et al. 2015). This notebook builds each of them, trains small
# versions on images generated in code, and draws what they attend to.
#
# **You will learn**
# - how a Vision Transformer (ViT) turns an image into tokens, and in which order the pixels of a patch
#   are flattened;
# - what a tiny ViT's class token attends to after training, drawn over the images;
# - what a convolution's inductive bias gives for free, measured against a ViT on little and more data;
# - channel attention (Squeeze-and-Excitation) and CBAM's channel and spatial branches, and how a gate
#   differs from a softmax;
# - soft attention over image regions in a captioning decoder (Show, Attend and Tell), trained to name
#   three shapes from left to right.
#
# **You will build**, in `src/attnlab/vision.py`: `patchify`, `unpatchify`, `squeeze_excitation`,
# `cbam_channel_attention`, `cbam_spatial_attention` and `caption_attention` (NumPy), and you will train a
# tiny ViT, two small CNNs with attention gates and an attention captioner in PyTorch.
#
# **Shapes.** Images and feature maps are channels-first, `(B, C, Y, X)`: $B$ images, $C$ channels, $Y$
# rows (the height) and $X$ columns (the width), PyTorch's `(N, C, H, W)`. We write $Y, X$ because $H$
# counts attention heads in this course. $P$ is the patch side, $N = (Y/P)(X/P)$ the number of patches
# (or image regions), $E$ the model width, $R$ the bottleneck width of a gate's MLP. Projections are
# written `x @ W` with `W` of shape `(in, out)` (PyTorch's `nn.Linear` stores `W.T`).

# %% tags=["setup"]
# %load_ext autoreload
# %autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()

# %%
import os
import platform
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import nn

torch.set_num_threads(1)  # tiny models: one thread avoids threading overhead and repeats exactly
MACHINE = f"{platform.machine()} CPU ({os.cpu_count()} visible), PyTorch {torch.__version__}, 1 thread"
print(MACHINE)

KINDS = ("h-stripes", "v-stripes", "ring", "plus")  # the four shapes of every task below
OBJ = 6                                               # each shape is 6 x 6 pixels


def glyph(kind):
    """The 6 x 6 pattern of one kind: 0 horizontal stripes, 1 vertical stripes, 2 a ring, 3 a plus."""
    g = np.zeros((OBJ, OBJ))
    if kind == 0:
        g[0::2, :] = 1
    elif kind == 1:
        g[:, 0::2] = 1
    elif kind == 2:
        g[[0, -1], :] = 1
        g[:, [0, -1]] = 1
    else:
        g[2:4, :] = 1
        g[:, 2:4] = 1
    return g


def shapes_dataset(n, seed, size=20, noise=0.35):
    """n noisy single-channel images (n, 1, size, size), float32, each with one shape at a random place;
    labels (n,) and the shapes' top-left corners (n, 2) as (row, column)."""
    rng = np.random.default_rng(seed)
    images = noise * rng.standard_normal((n, 1, size, size))
    labels = rng.integers(0, len(KINDS), n)
    corners = rng.integers(0, size - OBJ + 1, size=(n, 2))
    for i, (r, c) in enumerate(corners):
        images[i, 0, r:r + OBJ, c:c + OBJ] += glyph(labels[i])
    return images.astype(np.float32), labels, corners


def outline(ax, corner, color="red"):
    """Draw the box of a shape whose top-left pixel is corner = (row, column)."""
    ax.add_patch(Rectangle((corner[1] - 0.5, corner[0] - 0.5), OBJ, OBJ, fill=False, color=color, lw=1.2))


def fit(model, inputs, labels, steps=400, batch=64, lr=3e-3, seed=0):
    """AdamW with a one-cycle schedule on random batches; returns (losses, seconds)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(inputs), (batch,), generator=gen)
        loss = F.cross_entropy(model(inputs[idx])[0], labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - started


@torch.no_grad()
def accuracy(model, inputs, labels):
    return (model(inputs)[0].argmax(dim=-1) == labels).float().mean().item()

# %% [markdown]
# ## 1. An image as a sequence of tokens
#
# A Transformer reads a sequence of vectors. Dosovitskiy et al. (2021) made one from an image by cutting it
# into $N$ non-overlapping $P \times P$ patches and flattening each patch into a vector of $P^2 C$ numbers:
# a 224 x 224 RGB image with $P = 16$ becomes $N = 14 \cdot 14 = 196$ tokens of $16 \cdot 16 \cdot 3 = 768$
# values. The rest is a BERT-style encoder:
#
# $$z_0 = [\,x_{\text{class}};\ x_1 W_E;\ \dots;\ x_N W_E\,] + E_{\text{pos}}, \qquad
#   W_E\ (P^2C, E),\quad E_{\text{pos}}\ (N + 1, E)$$
#
# 1. each patch $x_n$ `(P*P*C)` is projected to width $E$ by one shared matrix $W_E$;
# 2. a learned **class token** $x_{\text{class}}$ `(E)` is put in front, as BERT's `[CLS]`;
# 3. learned **1-D** position embeddings are added, one vector per token index `(N + 1, E)`, with nothing
#    in them about rows and columns: without them, self-attention cannot tell where a patch came from
#    (notebook 05), and 2-D-aware variants did no better in the authors' ablation (their Appendix D.4);
# 4. a stack of encoder blocks (multi-head self-attention and an MLP, Pre-LN, notebook 04; 12 blocks in
#    ViT-Base) mixes all $N + 1$ tokens with each other, from the first block on;
# 5. a classifier head reads the class token's final state (an MLP in pre-training, one linear layer when
#    fine-tuning; a linear layer here).
#
# The model is told that its input is a 2-D image only by the patching and, when it is fine-tuned at a
# higher resolution, by the 2-D interpolation of its position embeddings (Dosovitskiy et al. 2021,
# section 3.2). Inside a patch the pixels need an order. We use the one written in einops as
# `'b c (i p1) (j p2) -> b (i j) (p1 p2 c)'` (lucidrains' `vit-pytorch`; MAE's `patchify`): patches in raster
# order (patch $n = i \cdot X/P + j$), and inside a patch rows $p_1$, then columns $p_2$, then channels $c$,
# so pixel $(p_1, p_2)$ of channel $c$ lands at index $(p_1 P + p_2) C + c$.
#
# **Exercise.** Implement `patchify(images, patch_size)` `(B, C, Y, X) -> (B, N, P*P*C)` and its inverse
# `unpatchify(patches, image_size, patch_size)` `(B, N, P*P*C) -> (B, C, Y, X)`, with `image_size = (Y, X)`,
# in `src/attnlab/vision.py`. Both keep the dtype (uint8 images stay uint8: nothing is computed) and raise
# `ValueError` when the sizes do not fit: $Y$ or $X$ not a multiple of $P$; for `unpatchify` also
# $N \ne (Y/P)(X/P)$ or a patch width that is not a multiple of $P^2$.

# %%
from attnlab.vision import patchify, unpatchify

rng = np.random.default_rng(0)
B, C, Y, X, P = 2, 3, 8, 12, 4
images = rng.standard_normal((B, C, Y, X))
patches = patchify(images, P)
print("images", images.shape, "-> patches", patches.shape, f"(N = {Y // P} x {X // P} = {(Y // P) * (X // P)}, "
      f"P*P*C = {P * P * C})")
print("patch 4 = row 1, column 1 of the grid; its first C values are pixel (4, 4) of each channel:",
      np.array_equal(patches[:, 4, :C], images[:, :, 4, 4]))
print("unpatchify(patchify(x)) == x:", np.array_equal(unpatchify(patches, (Y, X), P), images))

# One image of the training task below, cut into 4 x 4 patches: where each token comes from.
demo_images, demo_labels, demo_corners = shapes_dataset(1, seed=3)
tokens = patchify(demo_images, 4)[0]                         # (25, 16)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.25]})
axes[0].imshow(demo_images[0, 0], cmap="gray")
for k in range(1, 5):
    axes[0].axhline(4 * k - 0.5, color="cyan", lw=0.8)
    axes[0].axvline(4 * k - 0.5, color="cyan", lw=0.8)
for n in range(25):
    axes[0].text(4 * (n % 5) + 0.2, 4 * (n // 5) + 1.0, str(n), color="yellow", fontsize=8)
axes[0].set(title=f"a 20 x 20 image ({KINDS[demo_labels[0]]}) and its 25 patches", xlabel="x (column)",
            ylabel="y (row)")
im = axes[1].imshow(tokens, cmap="gray", aspect="auto")
axes[1].set(title="patchify(image, 4): one row per token", xlabel="index inside the patch, (p1 * P + p2) * C + c",
            ylabel="token n (raster order)")
plt.colorbar(im, ax=axes[1], fraction=0.046, label="pixel value")
fig.tight_layout()
plt.show()

# %% tags=["check"]
check("vision.patchify")

# %% tags=["check"]
check("vision.unpatchify")

# %% [markdown]
# Production code often embeds patches with a convolution instead, `nn.Conv2d(C, E, kernel_size=P, stride=P)`
# (timm, torchvision): each output pixel is one patch times a weight. It is the same linear map, but a
# convolution's weight is stored `(E, C, P, P)`, channels first, so its flattened rows follow the order
# $(c, p_1, p_2)$. To reuse such weights on our tokens, permute them to $(p_1, p_2, c)$:

# %%
torch.manual_seed(0)
E = 5
conv = nn.Conv2d(C, E, kernel_size=P, stride=P).double()
with torch.no_grad():
    by_conv = conv(torch.from_numpy(images)).flatten(2).transpose(1, 2)               # (B, N, E)
    W_E = conv.weight.permute(0, 2, 3, 1).reshape(E, P * P * C).T                      # (P*P*C, E), (p1 p2 c) rows
    by_tokens = torch.from_numpy(patches) @ W_E + conv.bias                            # (B, N, E)
    unpermuted = torch.from_numpy(patches) @ conv.weight.reshape(E, -1).T + conv.bias  # (c p1 p2) rows: wrong
print(f"stride-P convolution vs patchify @ W_E: max difference {(by_conv - by_tokens).abs().max():.1e}")
print(f"the same weights without the permutation: max difference {(by_conv - unpermuted).abs().max():.2f}")

# %% [markdown]
# ## 2. Training a tiny ViT
#
# The task: 20 x 20 grey images with Gaussian noise (standard deviation 0.35) and one 6 x 6 shape,
# horizontal stripes, vertical stripes, a ring or a plus, at a random place (usually not aligned with the
# patch grid); the model must name the shape. With $P = 4$ an image is $N = 25$ tokens of 16 pixels, plus
# the class token. The model is a ViT in miniature: $E = 32$, 2 heads, 2 Pre-LN blocks, learned position
# embeddings, 19k parameters. It reads the tokens your `patchify` makes; 3,000 training images, 400 steps
# of 64.

# %%
class EncoderBlock(nn.Module):
    """Pre-LN: z + MHA(LN(z)), then z + MLP(LN(z)); returns the attention weights (B, H, N+1, N+1) too."""

    def __init__(self, E, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(E), nn.LayerNorm(E)
        self.qkv = nn.Linear(E, 3 * E)  # the three projections in one matrix
        self.out = nn.Linear(E, E)
        self.mlp = nn.Sequential(nn.Linear(E, 2 * E), nn.GELU(), nn.Linear(2 * E, E))

    def forward(self, z):
        B, L, E = z.shape
        q, k, v = self.qkv(self.norm1(z)).reshape(B, L, 3, self.heads, E // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / (E // self.heads) ** 0.5, dim=-1)  # (B, H, L, L)
        z = z + self.out((weights @ v).transpose(1, 2).reshape(B, L, E))
        return z + self.mlp(self.norm2(z)), weights


class TinyViT(nn.Module):
    """Patch tokens (B, N, P*P*C) -> logits (B, classes) and each block's weights (B, H, N+1, N+1)."""

    def __init__(self, N, patch_dim, classes=4, E=32, heads=2, depth=2):
        super().__init__()
        self.embed = nn.Linear(patch_dim, E)                       # W_E (and a bias)
        self.cls = nn.Parameter(torch.zeros(1, 1, E))              # the class token
        self.pos = nn.Parameter(0.02 * torch.randn(1, N + 1, E))   # learned positions, one per token
        self.blocks = nn.ModuleList(EncoderBlock(E, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(E), nn.Linear(E, classes)

    def forward(self, tokens):
        z = torch.cat([self.cls.expand(len(tokens), -1, -1), self.embed(tokens)], dim=1) + self.pos  # (B, N+1, E)
        weights = []
        for block in self.blocks:
            z, w = block(z)
            weights.append(w)
        return self.head(self.norm(z[:, 0])), weights


def n_params(model):
    return sum(p.numel() for p in model.parameters())


train_images, train_labels, _ = shapes_dataset(3000, seed=1)
test_images, test_labels, test_corners = shapes_dataset(1000, seed=0)
train_tokens = torch.from_numpy(patchify(train_images, 4))         # (3000, 25, 16), made by your patchify
test_tokens = torch.from_numpy(patchify(test_images, 4))           # (1000, 25, 16)
y_train, y_test = torch.from_numpy(train_labels), torch.from_numpy(test_labels)

torch.manual_seed(0)
vit = TinyViT(N=25, patch_dim=16)
vit_losses, vit_seconds = fit(vit, train_tokens, y_train)
vit_accuracy = accuracy(vit, test_tokens, y_test)
print(f"TinyViT, {n_params(vit):,} parameters: 400 steps in {vit_seconds:.1f} s ({MACHINE}); "
      f"test accuracy {vit_accuracy:.1%} on 1,000 new images (chance 25%)")

# %%
with torch.no_grad():
    _, test_weights = vit(test_tokens)
cls_to_patches = test_weights[-1][:, :, 0, 1:].mean(dim=1).reshape(-1, 5, 5).numpy()  # (1000, 5, 5): last block

# Which patches overlap the shape? A 6 x 6 shape touches 4, 6 or 9 of the 25, depending on its alignment.
on_shape = np.zeros((len(test_corners), 5, 5), dtype=bool)
for i, (r, c) in enumerate(test_corners):
    on_shape[i, r // 4:(r + OBJ - 1) // 4 + 1, c // 4:(c + OBJ - 1) // 4 + 1] = True
mass = (cls_to_patches * on_shape).sum(axis=(1, 2)) / cls_to_patches.sum(axis=(1, 2))
print(f"the class token's weight on the patches that the shape touches: {mass.mean():.0%} on average, "
      f"for {on_shape.mean():.0%} of the patches; by shape: "
      + ", ".join(f"{kind} {mass[test_labels == k].mean():.0%}" for k, kind in enumerate(KINDS)))

predictions = vit(test_tokens[:6])[0].argmax(dim=-1).numpy()
fig = plt.figure(figsize=(16, 5.6), layout="constrained")
grid = fig.add_gridspec(2, 7, width_ratios=[1.6] + [1] * 6)
ax = fig.add_subplot(grid[:, 0])
ax.plot(np.convolve(vit_losses, np.ones(10) / 10, mode="valid"))
ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats, 10-step mean)", title="TinyViT training loss")
for k in range(6):
    top, bottom = fig.add_subplot(grid[0, k + 1]), fig.add_subplot(grid[1, k + 1])
    top.imshow(test_images[k, 0], cmap="gray")
    outline(top, test_corners[k], "cyan")
    top.set(title=f"{KINDS[test_labels[k]]} (said {KINDS[predictions[k]]})", xlabel="x (pixel)", ylabel="y (pixel)")
    top.title.set_fontsize(9)
    heat = bottom.imshow(cls_to_patches[k], cmap="viridis", vmin=0, vmax=cls_to_patches[:6].max())
    r, c = test_corners[k]
    bottom.add_patch(Rectangle(((c - 0.5) / 4 - 0.5 + 0.125, (r - 0.5) / 4 - 0.5 + 0.125), OBJ / 4, OBJ / 4,
                               fill=False, color="red", lw=1.2))  # the shape's box in patch units
    bottom.set(xlabel="patch column j", ylabel="patch row i", xticks=range(5), yticks=range(5))
fig.colorbar(heat, ax=fig.axes[-1], label="class token -> patch weight\n(last block, mean of 2 heads)")
plt.show()

# %% [markdown]
# Nothing told the model where the shape is: in its last block the class token learned to put much of its
# weight on the patches the shape touches (boxes), about twice their share of the image on average
# (printed above). How much differs by shape (printed), and where the last block's weights are spread,
# the evidence may already have been gathered into the tokens by the first block.
# In that first block every patch can already attend to every other; a convolution's receptive field,
# by contrast, grows by a few pixels per layer.
#
# Did the position embeddings learn the grid? They start random, and nothing in the architecture says
# which patches are neighbours. In a large pre-trained ViT-L/32, Dosovitskiy et al. (2021, Fig. 7, centre)
# found the embeddings of nearby patches more similar than those of distant ones, and patches in the same
# row or column similar: the 2-D layout had been learned. The same test on our 400-step model:

# %%
pos = vit.pos[0, 1:].detach()                                  # (25, E): the patches' position embeddings
pos = pos / pos.norm(dim=-1, keepdim=True)
similarity = (pos @ pos.T).numpy()                             # (25, 25) cosine similarities
row, col = np.divmod(np.arange(25), 5)
grid_distance = np.abs(row[:, None] - row[None, :]) + np.abs(col[:, None] - col[None, :])  # (25, 25)
for d in (1, 2, 4, 8):
    print(f"patches {d} grid steps apart: mean cosine similarity {similarity[grid_distance == d].mean():+.2f}")

# %% [markdown]
# Here the similarity barely depends on the distance: after 400 steps the embeddings do not encode the
# grid. This task probably rewards little of it: a shape is the same shape anywhere, and what lies inside
# each patch may already tell the kinds apart. Learning the layout takes data and a task that rewards it;
# a convolution gets it for nothing (section 3).

# %% [markdown] tags=["question:qa-13"]
# ### Vision Transformer—how is attention used?
#
# A ViT cuts the image into patches, embeds each as a token, adds a class token and learned positions, and
# runs a Transformer encoder whose self-attention mixes all patches from the first layer on; the class
# token's final state is classified (Dosovitskiy et al. 2021). Beyond the patch embedding there is no
# convolution, so locality and the 2-D layout must be learned.
#
# - **Tokens:** `patchify` `(B, C, Y, X) -> (B, N, P*P*C)`, then `@ W_E`; ViT-B/16 at 224 x 224: 196
#   tokens of width 768, 12 layers of 12 heads.
# - **Cost:** attention grows as $N^2$; halving $P$ multiplies it by 16 (hence Swin's local windows, Liu
#   et al. 2021).
# - **Global from layer 1:** some heads attend far already in the lowest layers (their Fig. 7, right).
# - **Data:** it trailed comparable ResNets trained on ImageNet alone, and matched or beat them after
#   pre-training on 14M-300M images (their section 4.3; our toy, section 3).

# %% [markdown]
# ## 3. What a convolution knows before it sees any data
#
# A convolution applies the same small filter at every position: it is **local** (a pixel meets only its
# neighbours in one layer) and **translation equivariant** (shift the image and its feature map shifts the
# same way). Those are assumptions built in, an *inductive bias*, and they suit images. A ViT builds in
# much less (Dosovitskiy et al. 2021, section 3.1): its patch embedding and MLPs treat each patch alone
# with the same weights, but its attention may link any two patches, and which patches are neighbours is
# learned through the position embeddings (section 2). Dosovitskiy et al. put the consequence to the test
# (their section 4.3): trained on ImageNet alone (1.3M images) without strong regularisation, their ViTs
# fell a few points below ResNets of comparable size, and after pre-training on ImageNet-21k (14M) or
# JFT-300M (303M images) they matched or beat them. Their reading: with enough data, learning the
# structure beats building it in.
#
# A toy version: the same ViT and a small CNN (two 3 x 3 convolutions with a CBAM block, section 5; global
# average pooling; 1.5k parameters), each trained with the same 400 steps on 150 or on 3,000 images.

# %%
class SEBlock(nn.Module):
    """Squeeze-and-Excitation in PyTorch (section 4): keeps its last gate (B, C) for drawing."""

    def __init__(self, C, R):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, R), nn.Linear(R, C)

    def forward(self, x):
        self.gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))    # (B, C)
        return x * self.gate[:, :, None, None]


class CBAMBlock(nn.Module):
    """CBAM in PyTorch (section 5): channel map, then spatial map on the gated features; keeps both."""

    def __init__(self, C, R, k=7):
        super().__init__()
        self.W1, self.W2 = nn.Linear(C, R, bias=False), nn.Linear(R, C, bias=False)  # the shared MLP
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)                   # [mean; max] -> 1 map

    def forward(self, x):
        def mlp(v):
            return self.W2(torch.relu(self.W1(v)))

        self.channel = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
        self.gated = x * self.channel                                                  # (B, C, Y, X)
        maps = torch.cat([self.gated.mean(dim=1, keepdim=True), self.gated.amax(dim=1, keepdim=True)], dim=1)
        self.spatial = torch.sigmoid(self.conv(maps))                                  # (B, 1, Y, X)
        return self.gated * self.spatial


class SmallCNN(nn.Module):
    """conv 3x3 (1 -> 8), ReLU, 2 x 2 max-pool, conv 3x3 (8 -> 16), ReLU, an SE or CBAM block, global average pool,
    linear: images (B, 1, 20, 20) -> logits (B, 4)."""

    def __init__(self, gate="cbam"):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.block = CBAMBlock(16, 4) if gate == "cbam" else SEBlock(16, 4)
        self.head = nn.Linear(16, 4)

    def features(self, images):
        return torch.relu(self.conv2(F.max_pool2d(torch.relu(self.conv1(images)), 2)))  # (B, 16, 10, 10)

    def forward(self, images):
        return self.head(self.block(self.features(images)).mean(dim=(2, 3))), None


train_pixels, test_pixels = torch.from_numpy(train_images), torch.from_numpy(test_images)
small = torch.arange(150)  # the first 150 training images
results = {("ViT", 3000): vit_accuracy}
torch.manual_seed(0)
vit_small = TinyViT(N=25, patch_dim=16)
_, seconds = fit(vit_small, train_tokens[small], y_train[small])
results[("ViT", 150)] = accuracy(vit_small, test_tokens, y_test)
train_fit = {"ViT": accuracy(vit_small, train_tokens[small], y_train[small])}
cnns = {}
for n_train, subset in ((150, small), (3000, torch.arange(3000))):
    torch.manual_seed(0)
    cnns[n_train] = SmallCNN("cbam")
    _, s = fit(cnns[n_train], train_pixels[subset], y_train[subset])
    seconds += s
    results[("CNN", n_train)] = accuracy(cnns[n_train], test_pixels, y_test)
train_fit["CNN"] = accuracy(cnns[150], train_pixels[small], y_train[small])
print(f"three more trainings in {seconds:.1f} s; TinyViT {n_params(vit):,} parameters, SmallCNN "
      f"{n_params(cnns[150]):,}")
for (name, n_train), acc in results.items():
    print(f"{name:4s} trained on {n_train:5,} images: test accuracy {acc:.1%}"
          + (f" (on its own 150 training images: {train_fit[name]:.1%})" if n_train == 150 else ""))

fig, ax = plt.subplots(figsize=(6, 3.6))
for offset, name in ((-0.2, "ViT"), (0.2, "CNN")):
    bars = [results[(name, n)] for n in (150, 3000)]
    ax.bar(np.arange(2) + offset, bars, width=0.38, label=name)
ax.set(xticks=[0, 1], xticklabels=["150 training images", "3,000 training images"], ylim=(0, 1.05),
       ylabel="test accuracy (1,000 images)", title="same 400 steps, same test set")
ax.axhline(0.25, color="gray", ls=":", lw=1, label="chance")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# With 150 images the CNN already names the shapes almost perfectly. The ViT, with more parameters and no
# built-in notion of neighbourhood, fits its 150 training images perfectly but generalises worse (printed);
# with 3,000 images the gap nearly closes. This is one toy task, one seed, and models of different sizes; it
# shows the direction of the effect, not its size on real images. The large-scale result is Dosovitskiy et
# al.'s. Touvron et al. (2021, DeiT) later trained ViTs competitively on ImageNet alone, with strong
# augmentation and regularisation (DeiT-B: 81.8% top-1) and, better still, distillation from a CNN teacher;
# so "needs huge data" describes ViT training with a plain recipe, not every recipe.

# %% [markdown] tags=["question:theory-24"]
# ### Describe attention mechanisms in computer vision.
#
# Vision uses attention in three forms: gates that rescale a CNN's channels or positions (SE, CBAM),
# self-attention between positions or patches (non-local blocks, ViT), and cross-attention from a
# decoder's queries to image regions (captioning, detection). The first re-weights features, the last two
# move information between places.
#
# - **Gates:** a sigmoid weight per channel (Hu et al. 2018) or per position (Woo et al. 2018), computed
#   from the features themselves; sections 4-5.
# - **Self-attention in CNNs:** non-local blocks (Wang et al. 2018) add a global attention layer between
#   convolutions.
# - **Self-attention instead of CNNs:** ViT over patches (Dosovitskiy et al. 2021), Swin with local windows
#   (Liu et al. 2021); sections 1-3.
# - **Cross-attention:** a captioner attends over regions per word (Xu et al. 2015, section 6); DETR's object
#   queries attend over encoded CNN features (Carion et al. 2020).

# %% [markdown]
# ## 4. Channel attention: Squeeze-and-Excitation
#
# A feature map's channels are detectors: one fires on horizontal edges, another on a texture. Which of
# them matter depends on the image. Hu et al. (2018) let each image choose, with three steps on a feature
# map $x$ `(B, C, Y, X)`:
#
# $$z = \frac{1}{YX}\sum_{y,x} x_{:,:,y,x}\ \ (B, C),\qquad
#   s = \sigma\big(\mathrm{ReLU}(z W_1 + b_1)\, W_2 + b_2\big)\ \ (B, C),\qquad
#   \tilde x = s \odot x\ \ (B, C, Y, X)$$
#
# 1. **squeeze**: global average pooling summarises each channel of each image by one number;
# 2. **excitation**: a two-layer MLP with a bottleneck of $R = C/r$ units ($W_1$ `(C, R)`, $W_2$ `(R, C)`;
#    the paper uses $r = 16$) and a sigmoid gives a gate per channel (the paper's equation leaves out the
#    biases $b_1, b_2$; layers in code usually have them, and so does ours);
# 3. **scale**: each channel is multiplied by its gate, broadcast over $Y$ and $X$.
#
# It is attention in a broad sense, weights computed from the input itself, but not the query-key kind:
# there is no softmax, so the gates do not compete and many can be near 1 at once.
#
# **Exercise.** Implement `squeeze_excitation(x, W1, b1, W2, b2)` in `src/attnlab/vision.py`. It returns
# the recalibrated features `x * s[:, :, None, None]` `(B, C, Y, X)`, not the gate; each image is pooled
# on its own (over $Y$ and $X$ only); the output keeps `x`'s dtype.

# %%
from attnlab.vision import squeeze_excitation

rng = np.random.default_rng(1)
B, C, Y, X, R = 2, 6, 5, 7, 3
x = rng.standard_normal((B, C, Y, X))
W1, b1 = rng.standard_normal((C, R)) / np.sqrt(C), np.zeros(R)
W2, b2 = rng.standard_normal((R, C)) / np.sqrt(R), np.zeros(C)
out = squeeze_excitation(x, W1, b1, W2, b2)
gate = out[:, :, 0, 0] / x[:, :, 0, 0]  # each channel was multiplied by one number
print("x", x.shape, "-> out", out.shape, "; the gate is the same at every position:",
      np.allclose(out, x * gate[:, :, None, None]))
print("gates in (0, 1):", bool(((gate > 0) & (gate < 1)).all()), "; image 0 and 1 get different gates:",
      not np.allclose(gate[0], gate[1]))

# %% tags=["check"]
check("vision.squeeze_excitation")

# %% [markdown]
# **What the gates learned.** The SmallCNN of section 3 with an SE block in place of CBAM, trained on the
# 3,000 images. Your `squeeze_excitation`, given the model's weights and its features, must reproduce the
# block's output; then the gates, averaged over the test images of each kind:

# %%
torch.manual_seed(0)
se_cnn = SmallCNN("se")
_, seconds = fit(se_cnn, train_pixels, y_train)
print(f"SmallCNN with SE: {seconds:.1f} s, test accuracy {accuracy(se_cnn, test_pixels, y_test):.1%} "
      f"(with CBAM, section 3: {results[('CNN', 3000)]:.1%})")
with torch.no_grad():
    se_said = se_cnn(test_pixels)[0].argmax(dim=-1).numpy()
print("SE variant, accuracy per shape: " + ", ".join(
    f"{kind} {np.mean(se_said[test_labels == k] == k):.0%}" for k, kind in enumerate(KINDS)))
with torch.no_grad():
    feats = se_cnn.features(test_pixels)                                       # (1000, 16, 10, 10)
    block_out = se_cnn.block(feats)
    se_gates = se_cnn.block.gate.numpy()                                        # (1000, 16)
se = se_cnn.block
mine = squeeze_excitation(feats.numpy(), se.fc1.weight.detach().numpy().T, se.fc1.bias.detach().numpy(),
                          se.fc2.weight.detach().numpy().T, se.fc2.bias.detach().numpy())
print(f"your squeeze_excitation vs the trained block: max difference {np.abs(mine - block_out.numpy()).max():.1e}")

per_kind = np.stack([se_gates[test_labels == k].mean(axis=0) for k in range(4)])  # (4, 16)
fig, ax = plt.subplots(figsize=(9, 2.8))
im = ax.imshow(per_kind, cmap="viridis", vmin=0, vmax=1, aspect="auto")
ax.set(yticks=range(4), yticklabels=KINDS, xticks=range(16), xlabel="channel c of the second convolution",
       ylabel="shape in the image", title="SE gates s (mean over the test images of each shape)")
plt.colorbar(im, ax=ax, label="gate")
fig.tight_layout()
plt.show()
spread = per_kind.max(axis=0) - per_kind.min(axis=0)
print(f"channels whose mean gate differs by more than 0.3 between two shapes: {int((spread > 0.3).sum())} of 16; "
      f"above 0.9 for all four shapes: {int((per_kind.min(axis=0) > 0.9).sum())} of 16")

# %% [markdown]
# The gates depend on the image: several channels are open for one kind of shape and closed for another,
# so the block passes different detectors to the classifier for different inputs. Others sit near 1 for
# every shape (printed): the gate is not a selection among channels, each one is weighted on its own.
#
# This SE variant is also clearly less accurate than the CBAM one of section 3 (printed, per shape). The
# two blocks differ in several ways (CBAM also max-pools, adds a spatial map and has no biases) and this
# is one seed, so the toy does not prove which difference matters. One is structural in this network:
# SE's gate is the same at every position and the head reads the global average, so the classifier sees
# $s \odot z$, a function of the channel averages $z$ alone; CBAM's max pool and its position-dependent
# spatial map let in what the averages miss. On ImageNet, Woo et al. (2018, Table 1) measured that adding
# the max-pooled descriptor to the average lowered the error of a ResNet-50.

# %% [markdown] tags=["question:theory-26"]
# ### Explain the Squeeze-and-Excitation (SE) attention module.
#
# An SE block rescales each channel of a feature map by a gate in (0, 1) computed from the whole map:
# global average pooling squeezes each channel to one number, a small bottleneck MLP with a sigmoid turns
# the $C$ numbers into $C$ gates, and the channels are multiplied by them (Hu et al. 2018).
#
# - **Shapes:** $x$ `(B, C, Y, X)` -> $z$ `(B, C)` -> $s = \sigma(\mathrm{ReLU}(zW_1 + b_1)W_2 + b_2)$
#   `(B, C)` -> $s \odot x$; $W_1$ `(C, C/r)`, $r = 16$.
# - **Sigmoid, not softmax:** gates do not compete; several channels can stay fully open.
# - **Cost:** about 10% more parameters and well under 1% more FLOPs for ResNet-50, which it improved by
#   about 1.5 points of top-1 error on ImageNet (Hu et al. 2018); SENets won ILSVRC 2017 classification.
# - **Where:** on each residual branch, before the addition.
# - **Trained gates** above differ between shapes.

# %% [markdown]
# ## 5. Channel and spatial attention: CBAM
#
# SE decides **which** channels matter. Woo et al. (2018) added **where**, with two maps applied one after
# the other (their Convolutional Block Attention Module):
#
# $$M_c = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(x)) + \mathrm{MLP}(\mathrm{MaxPool}(x))\big)\ \ (B, C, 1, 1),
#   \qquad \mathrm{MLP}(v) = \mathrm{ReLU}(v W_1)\, W_2$$
# $$x' = M_c \odot x, \qquad
#   M_s = \sigma\big(K \star [\,\mathrm{mean}_c\, x';\ \max_c x'\,]\big)\ \ (B, 1, Y, X), \qquad x'' = M_s \odot x'$$
#
# - **Channel map:** like SE, but the MLP (shared by the two descriptors; no biases, as in the paper's
#   equation) also reads the max-pooled descriptor, and the two outputs are added before one sigmoid. Woo
#   et al. (2018, Table 1) found both pools better than average pooling alone.
# - **Spatial map:** pool across the channels into a mean map and a max map `(B, 2, Y, X)`, convolve with
#   one $k \times k$ filter $K$ `(2, k, k)` ($k = 7$ in the paper; 'same' zero padding of $k//2$ on each
#   side, so the map keeps its size), and a sigmoid. A deep-learning convolution is a cross-correlation, as
#   `F.conv2d`: the kernel is not flipped.
# - **Order:** channel first, then spatial, sequentially, was their best arrangement (Woo et al. 2018,
#   Table 3).
#
# The maps are kept apart from the features so that you can compose them: the functions below return
# **the maps**, not the gated features. `kernel[0]` weighs the mean map and `kernel[1]` the max map, the
# paper's order; the authors' released code stacks max first, so its weights need the two swapped.
#
# **Exercise.** Implement `cbam_channel_attention(x, W1, W2)` -> $M_c$ `(B, C, 1, 1)` and
# `cbam_spatial_attention(x, kernel)` -> $M_s$ `(B, 1, Y, X)` in `src/attnlab/vision.py`; `kernel` has shape
# `(2, k_y, k_x)` with both sizes odd (raise `ValueError` otherwise), and the maps are padded with
# `k_y // 2` rows and `k_x // 2` columns of zeros on each side. Outputs keep `x`'s dtype.

# %%
from attnlab.vision import cbam_channel_attention, cbam_spatial_attention

rng = np.random.default_rng(2)
B, C, Y, X, R = 2, 6, 5, 7, 3
x = rng.standard_normal((B, C, Y, X))
M_c = cbam_channel_attention(x, rng.standard_normal((C, R)) / np.sqrt(C), rng.standard_normal((R, C)) / np.sqrt(R))
x1 = x * M_c                                                   # (B, C, Y, X): channels gated
M_s = cbam_spatial_attention(x1, rng.standard_normal((2, 7, 7)) / 7)
x2 = x1 * M_s                                                  # (B, C, Y, X): positions gated
print("M_c", M_c.shape, " M_s", M_s.shape, " output", x2.shape)

# %% tags=["check"]
check("vision.cbam_channel_attention")

# %% tags=["check"]
check("vision.cbam_spatial_attention")

# %% [markdown]
# **Reading the trained CBAM.** The SmallCNN of section 3 (3,000 images) has a CBAM block. Your two
# functions must reproduce its maps from its weights and features; then its channel map per shape, and
# what its spatial map did.

# %%
cnn = cnns[3000]
with torch.no_grad():
    feats = cnn.features(test_pixels)                                        # (1000, 16, 10, 10)
    cnn.block(feats)
block = cnn.block
my_channel = cbam_channel_attention(feats.numpy(), block.W1.weight.detach().numpy().T,
                                    block.W2.weight.detach().numpy().T)
my_spatial = cbam_spatial_attention(block.gated.numpy(), block.conv.weight.detach().numpy()[0])  # (2, 7, 7)
print(f"your maps vs the trained block: channel {np.abs(my_channel - block.channel.numpy()).max():.1e}, "
      f"spatial {np.abs(my_spatial - block.spatial.numpy()).max():.1e}")

channel_per_kind = np.stack([my_channel[test_labels == k, :, 0, 0].mean(axis=0) for k in range(4)])  # (4, 16)
fig, ax = plt.subplots(figsize=(9, 2.8))
im = ax.imshow(channel_per_kind, cmap="viridis", vmin=0, vmax=1, aspect="auto")
ax.set(yticks=range(4), yticklabels=KINDS, xticks=range(16), xlabel="channel c of the second convolution",
       ylabel="shape in the image", title="CBAM channel map M_c (mean over the test images of each shape)")
plt.colorbar(im, ax=ax, label="weight")
fig.tight_layout()
plt.show()
inside = np.zeros((len(test_corners), 10, 10), dtype=bool)  # feature-map cells (2 x 2 pixels) the shape covers
for i, (r, c) in enumerate(test_corners):
    inside[i, r // 2:(r + OBJ + 1) // 2, c // 2:(c + OBJ + 1) // 2] = True
trained_spatial = my_spatial[:, 0]
print(f"trained spatial map: mean {trained_spatial[inside].mean():.4f} on the shape, "
      f"{trained_spatial[~inside].mean():.4f} elsewhere, minimum {trained_spatial.min():.4f}")

# %% [markdown]
# The channel map, like SE's gates, depends on the shape. The spatial map did not learn a "where": it sits
# at almost exactly 1 everywhere (printed). In this task there is little to suppress (the background is
# plain noise, and one shape fills the rest), and a gate that can only attenuate is left open. Woo et al.
# measured its value on natural images (ImageNet classification, MS COCO and VOC detection).
#
# To see what the spatial branch *can* compute, hand-set its kernel: a positive 7 x 7 box on the mean map
# and nothing on the max map scores each position by the average activity of all channels around it. On
# a noisy image with a shape and a thin line segment elsewhere, with the image itself and its square as
# the two "channels":

# %%
scene = 0.35 * np.random.default_rng(4).standard_normal((1, 1, 20, 20))
scene[0, 0, 3:9, 11:17] += glyph(3)              # a plus at rows 3-8, columns 11-16
scene[0, 0, 14, 2:7] += 1.0                      # a thin line segment
channels = np.concatenate([scene, scene ** 2], axis=1)  # (1, 2, 20, 20)
box = np.zeros((2, 7, 7))
box[0] = 0.3                                     # the mean map, summed over a 7 x 7 window
hand_set = cbam_spatial_attention(channels, box)  # (1, 1, 20, 20)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
panels = ((channels.mean(axis=1)[0], "mean over channels", "gray"),
          (channels.max(axis=1)[0], "max over channels", "gray"), (hand_set[0, 0], "M_s (hand-set kernel)", "magma"))
for ax, (img, title, cmap) in zip(axes, panels):
    im = ax.imshow(img, cmap=cmap)
    outline(ax, (3, 11), "cyan")
    ax.set(title=title, xlabel="x (column)", ylabel="y (row)")
    plt.colorbar(im, ax=ax, fraction=0.046, label="weight" if "M_s" in title else "value")
fig.tight_layout()
plt.show()

# %% [markdown]
# The map is highest over the shape, where the $7 \times 7$ window is full of active pixels, lower over the
# thin segment, lower still over plain noise, and lowest at the borders, where part of the window is zero
# padding. A trained kernel can weigh the mean and the max maps differently and in any pattern; the
# authors' code also follows the convolution with batch normalisation, which gives the logit an offset
# that our bias-free version lacks.

# %% [markdown] tags=["question:theory-25"]
# ### What is spatial attention and channel attention?
#
# Channel attention weights **what**: one gate per channel `(B, C, 1, 1)`, computed from spatially pooled
# descriptors, emphasising some detectors for this image. Spatial attention weights **where**: one gate per
# position `(B, 1, Y, X)`, computed from channel-pooled maps, emphasising some locations.
#
# - **Channel:** SE (Hu et al. 2018) pools by average; CBAM adds the max pool through a shared MLP (Woo
#   et al. 2018).
# - **Spatial:** CBAM pools mean and max across channels and applies a 7 x 7 convolution and a sigmoid.
# - **Together:** CBAM applies the channel map, then the spatial map to the gated features.
# - **Gates, not distributions:** sigmoids; weights need not sum to 1, unlike softmax attention over
#   positions (non-local blocks, ViT, the captioner of section 6).
# - **Caveat:** a gate can only attenuate; above, the trained spatial map stayed open where nothing needed
#   suppressing.

# %% [markdown]
# ## 6. Show, Attend and Tell: attention over image regions
#
# A captioning model writes one word at a time. Xu et al. (2015) let the decoder look at a different part
# of the image for each word. A CNN's last convolutional feature grid ($14 \times 14 \times 512$ from VGG
# in the paper) is flattened into $N = 196$ **annotation vectors** $a_i$ `(D_f)`, one per region; at step
# $t$ an LSTM decoder with state $h_{t-1}$ `(D_h)` scores every region with a small MLP (in the authors'
# code, the additive score of notebook 03):
#
# $$e_{ti} = w^\top \tanh(a_i W_f + h_{t-1} W_h + b),\qquad \alpha_t = \mathrm{softmax}_i(e_t),\qquad
#   z_t = \beta_t \sum_i \alpha_{ti}\, a_i,\qquad \beta_t = \sigma(h_{t-1} \cdot w_\beta + b_\beta)$$
#
# The context $z_t$ `(D_f)` enters the LSTM with the previous word. Xu et al. call this the **soft**
# (deterministic) version; their **hard** version samples one region and needs REINFORCE-style gradients
# (notebook 03). The scalar gate $\beta_t$, computed from $h_{t-1}$, scales the context; Xu et al. found
# that with it their attention put more emphasis on the objects (section 4.2.1). A "doubly stochastic"
# penalty $\lambda\sum_i(1 - \sum_t \alpha_{ti})^2$ pushes every region to be looked at over the whole
# caption (notebook 09 builds it).
#
# **Exercise.** Implement `caption_attention(features, hidden, params)` in `src/attnlab/vision.py`:
# `features` `(B, N, D_f)`, `hidden` `(B, D_h)`, `params` a dict with `"W_f"` `(D_f, A)`, `"W_h"` `(D_h, A)`,
# `"b"` `(A,)`, `"w"` `(A,)` and, optionally, the gate's `"w_beta"` `(D_h,)` and `"b_beta"` (a float, 0 when
# absent). Return `(context (B, D_f), weights (B, N))`; the gate scales the context only, so each row of
# weights sums to 1. Use `softmax` from notebook 01.

# %%
from attnlab.vision import caption_attention

rng = np.random.default_rng(5)
B, N, D_f, D_h, A = 2, 12, 6, 5, 4
features, hidden = rng.standard_normal((B, N, D_f)), rng.standard_normal((B, D_h))
params = {"W_f": rng.standard_normal((D_f, A)) / np.sqrt(D_f), "W_h": rng.standard_normal((D_h, A)) / np.sqrt(D_h),
          "b": np.zeros(A), "w": rng.standard_normal(A), "w_beta": rng.standard_normal(D_h), "b_beta": 0.5}
context, weights = caption_attention(features, hidden, params)
print("context", context.shape, " weights", weights.shape, " row sums", weights.sum(axis=1).round(6))

# %% tags=["check"]
check("vision.caption_attention")

# %% [markdown]
# **Training a captioner.** Images of 12 x 30 pixels hold three shapes side by side; the "caption" is their
# three names from left to right (`ring plus h-stripes`). The encoder is a 3 x 3 convolution, a 3 x 3 max
# pool and a second 3 x 3 convolution on the pooled grid, giving a $4 \times 10$ grid of $N = 40$ regions of
# width $D_f = 32$, plus a learned embedding per region (convolutions say little about where a region is).
# The decoder is a GRU (an LSTM in the paper) whose attention is exactly `caption_attention`, gate included;
# 400 steps of 64 images, teacher forcing.

# %%
STRIP_Y, STRIP_X, WORDS = 12, 30, 3
BOS = len(KINDS)  # the start token


def strips_dataset(n, seed, noise=0.3):
    """n images (n, 1, 12, 30) with three shapes left to right, captions (n, 3) and corners (n, 3, 2)."""
    rng = np.random.default_rng(seed)
    images = noise * rng.standard_normal((n, 1, STRIP_Y, STRIP_X))
    captions = rng.integers(0, len(KINDS), size=(n, WORDS))
    corners = np.zeros((n, WORDS, 2), dtype=int)
    for i in range(n):
        gaps = np.sort(rng.integers(0, STRIP_X - WORDS * OBJ + 1, WORDS))  # free columns before each shape
        for k in range(WORDS):
            r, c = rng.integers(0, STRIP_Y - OBJ + 1), gaps[k] + k * OBJ
            images[i, 0, r:r + OBJ, c:c + OBJ] += glyph(captions[i, k])
            corners[i, k] = r, c
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(captions), corners


class Captioner(nn.Module):
    """CNN grid -> regions (B, N, D_f); a GRU decoder with Show-Attend-Tell soft attention and its gate."""

    def __init__(self, D_f=32, D_h=48, A=32, emb=16):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, D_f, 3, padding=1)
        self.where = nn.Parameter(0.1 * torch.randn(1, (STRIP_Y // 3) * (STRIP_X // 3), D_f))  # per region
        self.W_f = nn.Linear(D_f, A)                    # a_i W_f + b
        self.W_h = nn.Linear(D_h, A, bias=False)        # h W_h
        self.w = nn.Linear(A, 1, bias=False)            # w
        self.beta = nn.Linear(D_h, 1)                   # w_beta, b_beta
        self.init = nn.Linear(D_f, D_h)
        self.embed = nn.Embedding(len(KINDS) + 1, emb)
        self.cell = nn.GRUCell(emb + D_f, D_h)
        self.out = nn.Linear(D_h + D_f, len(KINDS))

    def regions(self, images):
        cells = F.max_pool2d(torch.relu(self.conv1(images)), 3)                      # (B, 16, 4, 10)
        grid = torch.relu(self.conv2(cells))                                            # (B, D_f, 4, 10)
        return grid.flatten(2).transpose(1, 2) + self.where                           # (B, N, D_f), raster order

    def attend(self, a, keys, h):
        """caption_attention in PyTorch: (context (B, D_f), weights (B, N))."""
        weights = torch.softmax(self.w(torch.tanh(keys + self.W_h(h)[:, None, :])).squeeze(-1), dim=-1)
        return torch.sigmoid(self.beta(h)) * (weights[:, None, :] @ a).squeeze(1), weights

    def step(self, a, keys, h, previous_word):
        context, weights = self.attend(a, keys, h)                                    # from h_{t-1}
        h = self.cell(torch.cat([self.embed(previous_word), context], dim=-1), h)
        return self.out(torch.cat([h, context], dim=-1)), h, weights

    def forward(self, images, words_in):
        a = self.regions(images)
        keys, h = self.W_f(a), torch.tanh(self.init(a.mean(dim=1)))                 # keys once per image
        logits, weights = [], []
        for t in range(words_in.shape[1]):
            step_logits, h, w = self.step(a, keys, h, words_in[:, t])
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, 1), torch.stack(weights, 1)                      # (B, T, 4), (B, T, N)


@torch.no_grad()
def describe(model, images):
    """Greedy captions (B, 3), weights (B, 3, N), and each step's (regions, hidden state) for checking."""
    a = model.regions(images)
    keys, h = model.W_f(a), torch.tanh(model.init(a.mean(dim=1)))
    word, words, weights, states = torch.full((len(images),), BOS), [], [], []
    for _ in range(WORDS):
        states.append(h)
        logits, h, w = model.step(a, keys, h, word)
        word = logits.argmax(dim=-1)
        words.append(word)
        weights.append(w)
    return torch.stack(words, 1), torch.stack(weights, 1), a, states


strip_train, caption_train, _ = strips_dataset(3000, seed=1)
strip_test, caption_test, strip_corners = strips_dataset(500, seed=0)
words_in = torch.cat([torch.full((3000, 1), BOS), caption_train[:, :-1]], dim=1)  # teacher forcing

torch.manual_seed(0)
captioner = Captioner()
gen = torch.Generator().manual_seed(0)
opt = torch.optim.Adam(captioner.parameters(), lr=3e-3)
caption_losses, started = [], time.perf_counter()
for _ in range(400):
    idx = torch.randint(0, 3000, (64,), generator=gen)
    logits, _ = captioner(strip_train[idx], words_in[idx])
    loss = F.cross_entropy(logits.reshape(-1, len(KINDS)), caption_train[idx].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    caption_losses.append(loss.item())
caption_seconds = time.perf_counter() - started
said, caption_weights, regions, states = describe(captioner, strip_test)
print(f"Captioner, {n_params(captioner):,} parameters: 400 steps in {caption_seconds:.1f} s ({MACHINE})")
right = said == caption_test                                                     # (500, 3)
print(f"test: {right.float().mean():.1%} of the words and {right.all(dim=1).float().mean():.1%} of the captions "
      "right (greedy decoding, 500 new images)")

# %%
grid_w = caption_weights.reshape(-1, WORDS, STRIP_Y // 3, STRIP_X // 3).numpy()  # (500, 3, 4, 10)
column_centres = 3 * np.arange(STRIP_X // 3) + 1.0                                # pixel column of each region
looked_at = (grid_w.sum(axis=2) * column_centres).sum(axis=-1)                   # (500, 3): weighted column
shape_centres = strip_corners[:, :, 1] + (OBJ - 1) / 2                            # (500, 3)
for t in range(WORDS):
    print(f"word {t + 1}: attention centred {np.abs(looked_at[:, t] - shape_centres[:, t]).mean():.1f} pixels "
          f"from shape {t + 1}'s centre on average (shapes are 6 wide, the image 30)")

# the learner's caption_attention, fed the trained weights, reproduces the model's attention
p = {"W_f": captioner.W_f.weight.detach().numpy().T, "b": captioner.W_f.bias.detach().numpy(),
     "W_h": captioner.W_h.weight.detach().numpy().T, "w": captioner.w.weight.detach().numpy()[0],
     "w_beta": captioner.beta.weight.detach().numpy()[0], "b_beta": captioner.beta.bias.item()}
_, mine = caption_attention(regions.numpy(), states[1].numpy(), p)
print(f"your caption_attention vs the model at word 2: max difference "
      f"{np.abs(mine - caption_weights[:, 1].numpy()).max():.1e}")

fig = plt.figure(figsize=(16, 5.4), layout="constrained")
grid = fig.add_gridspec(3, WORDS + 1, width_ratios=[1.2] + [1.6] * WORDS)
ax = fig.add_subplot(grid[:, 0])
ax.plot(np.convolve(caption_losses, np.ones(10) / 10, mode="valid"))
ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats, 10-step mean)",
       title="captioner training loss")
for row in range(3):
    for t in range(WORDS):
        ax = fig.add_subplot(grid[row, t + 1])
        ax.imshow(strip_test[row, 0].numpy(), cmap="gray")
        overlay = ax.imshow(np.kron(grid_w[row, t], np.ones((3, 3))), cmap="magma", alpha=0.6, vmin=0)
        outline(ax, strip_corners[row, t], "cyan")
        ax.set(title=f"image {row}, word {t + 1}: '{KINDS[said[row, t]]}'", xlabel="x (pixel)", ylabel="y")
        ax.title.set_fontsize(9)
fig.colorbar(overlay, ax=fig.axes[-1], label="weight alpha_t\n(per 3 x 3 region)")
plt.show()

# %% [markdown]
# For each word the decoder looks at one shape, first the leftmost, then the next, then the last (cyan
# boxes mark the shape the word should name): it learned from the captions alone which region holds the
# $t$-th object, presumably with the region embeddings telling it what "left" means and its state
# $h_{t-1}$ telling it how far it has come. On average the weighted centre of each word's map lies about
# a pixel from its shape's centre (printed), on shapes 6 pixels wide. As in notebook 03, the weights are a
# soft, approximate alignment, and a region that gets weight is one the decoder read, not proof that it
# used it (notebook 09).

# %% [markdown] tags=["question:theory-27"]
# ### How does attention work in image captioning models?
#
# The image is encoded into a grid of region features, and at every word the decoder scores each region
# against its current state, takes a softmax over regions and reads their weighted average as a context
# for predicting the word (Xu et al. 2015). The attention moves across the image as the sentence unfolds.
#
# - **Shapes:** regions $a$ `(B, N, D_f)` ($14 \times 14 = 196$ VGG features in the paper), state
#   $h_{t-1}$ `(B, D_h)`, weights `(B, N)`, context `(B, D_f)`; the additive score of notebook 03.
# - **Soft vs hard:** soft is differentiable; hard samples one region and trains with REINFORCE.
# - **Extras:** a gate $\beta_t$ scales the context; a doubly stochastic penalty spreads attention over the
#   caption.
# - **Later:** attention over object-detector regions (Anderson et al. 2018), then Transformer decoders
#   cross-attending to patch or region tokens.
# - **Evidence:** above, each word's map sits on its shape.

# %% [markdown]
# ## 7. In your own words
#
# In 3-4 sentences: in section 3 the CNN needed far fewer images than the ViT. What does the convolution
# assume that the ViT has to discover from examples, and why does that assumption stop mattering as the
# data grows?

# %% [markdown] tags=["answer", "points:2"]
# A convolution hard-codes two priors about images: a pixel interacts first with its close neighbours, and
# a pattern means the same thing wherever it appears, because one small filter is reused at every place.
# The ViT starts with neither: any patch may attend to any other, and which patches are adjacent is only
# learned through its position vectors, so with 150 examples it can fit the training set through
# coincidences instead of the shapes. With thousands of examples those coincidences average out, and the
# data itself teaches locality and shift tolerance; a built-in prior is then no longer needed, and a
# flexible model may learn a better rule than the one a designer fixed in advance.

# %% [markdown]
# ## Summary
#
# - A ViT turns `(B, C, Y, X)` into `(B, N, P*P*C)` tokens (`patchify`, order $(p_1, p_2, c)$; a stride-$P$
#   convolution is the same map with weights stored $(c, p_1, p_2)$), adds a class token and learned
#   positions, and lets every patch attend to every other from the first layer.
# - Trained on 3,000 toy images, its class token attended to the shape, while its position embeddings
#   learned no grid. On 150 images a small CNN beat it: locality and weight sharing are knowledge the ViT
#   must learn from data (Dosovitskiy et al. 2021).
# - SE gates channels from their global averages; CBAM adds max pooling to the channel map and a spatial
#   map from a $k \times k$ convolution over channel-pooled maps. Both are sigmoid gates, not softmax
#   distributions; a gate can only attenuate.
# - Show, Attend and Tell: additive soft attention over image regions, one distribution per word, with a
#   gate on the context; our captioner learned to read three shapes in order.
#
# **Questions answered:** Vision Transformer—how is attention used? (qa-13) · Describe attention mechanisms
# in computer vision (theory-24) · What is spatial attention and channel attention? (theory-25) · Explain
# the Squeeze-and-Excitation (SE) attention module (theory-26) · How does attention work in image
# captioning models? (theory-27)
