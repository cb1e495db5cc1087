"""The Transformer block: multi-head self-attention and a feed-forward network, each wrapped in a residual
connection and a layer norm.

Taught in notebooks/04_multihead_transformer.ipynb.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class TransformerBlock(nn.Module):
    """One Transformer encoder block, built from ``nn.Linear`` and ``nn.LayerNorm``.

    Parameters
    ----------
    d_model : int
        E, the model width (the last dim of x). Must be divisible by `num_heads`.
    num_heads : int
        H, the number of attention heads. Each head has width D = E / H.
    d_ff : int
        Hidden width of the feed-forward network (4 E in the original Transformer).
    norm_first : bool, optional
        False (default): Post-LN, as in the original Transformer (Vaswani et al. 2017).
        True: Pre-LN, as in GPT-2 and most models since. See Notes.
    activation : {"relu", "gelu"}, optional
        Non-linearity of the feed-forward network. "gelu" is the exact GELU, ``x * Phi(x)`` with Phi the
        standard normal CDF (the erf form, ``F.gelu``'s default), not its tanh approximation.

    Attributes
    ----------
    q_proj, k_proj, v_proj : nn.Linear(E, E), with bias
        Query, key and value projections of all heads at once: head h owns output features
        ``h * D : (h + 1) * D``.
    out_proj : nn.Linear(E, E), with bias
        Mixes the concatenated heads back into the model width.
    ff1 : nn.Linear(E, d_ff)
    ff2 : nn.Linear(d_ff, E)
        The feed-forward network, ``ff2(act(ff1(h)))``, applied to each position on its own.
    norm1 : nn.LayerNorm(E), eps 1e-5
        The attention sub-layer's layer norm.
    norm2 : nn.LayerNorm(E), eps 1e-5
        The feed-forward sub-layer's layer norm.

    These names are part of the exercise: weights are loaded by them, so ``state_dict()`` holds exactly
    the 16 keys ``q_proj.weight, q_proj.bias, k_proj.weight, k_proj.bias, v_proj.weight, v_proj.bias,
    out_proj.weight, out_proj.bias, ff1.weight, ff1.bias, ff2.weight, ff2.bias, norm1.weight,
    norm1.bias, norm2.weight, norm2.bias`` (register any buffer you add with ``persistent=False``).

    Notes
    -----
    Shapes: x ``(B, L, E)`` -> ``(B, L, E)``. Inside attention, per head: q, k, v ``(B, H, L, D)``,
    scores and weights ``(B, H, L, S)`` with S == L (self-attention: the keys are the same positions).

    Post-LN (``norm_first=False``) normalises *after* each residual addition::

        x = norm1(x + SelfAttention(x))
        x = norm2(x + FeedForward(x))

    Pre-LN (``norm_first=True``) normalises each sub-layer's *input* and leaves the residual stream
    un-normalised (so a Pre-LN stack usually ends with one more layer norm)::

        x = x + SelfAttention(norm1(x))
        x = x + FeedForward(norm2(x))

    with ``SelfAttention(h) = out_proj(concat_h softmax(q_h k_h^T / sqrt(D)) v_h)`` where q, k, v are
    q_proj(h), k_proj(h), v_proj(h) split into H heads, and ``FeedForward(h) = ff2(act(ff1(h)))``.

    **The mask convention.** ``mask[i, j]`` True means query i *may attend* to key j, as everywhere in this
    course and in ``F.scaled_dot_product_attention``'s boolean ``attn_mask``. PyTorch's
    ``nn.MultiheadAttention`` (``attn_mask``) and ``nn.TransformerEncoderLayer`` (``src_mask``) use the
    OPPOSITE boolean convention: True there means *masked out*. To compare with them, pass
    ``src_mask=~mask``. A query whose row has no True entry gets zero attention weights, so its heads output
    zeros and the attention sub-layer gives it ``out_proj.bias``, never NaN. (PyTorch's layer does the same
    since version 2.5 when it runs through ``F.scaled_dot_product_attention``, as in training mode; its
    inference fast path (``eval()`` under ``torch.no_grad()``), earlier versions, and ``nn.MultiheadAttention``
    when it returns its weights give NaN.)

    The block equals ``nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=0.0,
    activation=activation, batch_first=True, norm_first=norm_first)`` with ``self_attn.in_proj_weight =
    cat([q_proj.weight, k_proj.weight, v_proj.weight])`` (biases likewise), ``self_attn.out_proj = out_proj``,
    ``linear1 = ff1``, ``linear2 = ff2`` and the same norms. It has no dropout. ``nn.MultiheadAttention``,
    ``nn.TransformerEncoderLayer`` and ``F.scaled_dot_product_attention`` are not allowed in this module (the
    grader also looks for these names in its source: do not use them for your own classes either).

    Examples
    --------
    >>> block = TransformerBlock(d_model=12, num_heads=3, d_ff=48, norm_first=True, activation="gelu")
    >>> x = torch.randn(2, 5, 12)                           # (B, L, E)
    >>> causal = torch.ones(5, 5, dtype=torch.bool).tril()  # (L, L), True = may attend
    >>> block(x, mask=causal).shape
    torch.Size([2, 5, 12])
    """

    def __init__(self, d_model, num_heads, d_ff, norm_first=False, activation="relu"):
        super().__init__()
        ### BEGIN HINTS
        # 1. Raise ValueError unless d_model % num_heads == 0 and activation is "relu" or "gelu".
        # 2. Create the eight sub-modules with exactly the names in the docstring:
        #    q_proj = nn.Linear(d_model, d_model), ..., ff1 = nn.Linear(d_model, d_ff), norm1 = nn.LayerNorm(d_model).
        # 3. Keep num_heads, norm_first and activation on self: forward needs them.
        ### END HINTS
        ### BEGIN SOLUTION
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if activation not in ("relu", "gelu"):
            raise ValueError(f'activation must be "relu" or "gelu", got {activation!r}')
        self.num_heads = num_heads
        self.norm_first = bool(norm_first)
        self.activation = activation
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        ### END SOLUTION

    def self_attention(self, x, mask=None):
        """Multi-head scaled dot-product self-attention, output projection included.

        Parameters
        ----------
        x : Tensor, shape (B, L, E)
            The sub-layer's input (already normalised in a Pre-LN block).
        mask : Tensor of bool, shape (L, L), optional
            True where query i may attend to key j. A shape broadcastable to (B, H, L, L) works too,
            e.g. (B, 1, 1, L) for padding.

        Returns
        -------
        Tensor, shape (B, L, E)
            ``out_proj`` of the H heads' outputs placed side by side.
        """
        ### BEGIN HINTS
        # 1. q = self.q_proj(x).view(B, L, H, D).transpose(1, 2): (B, L, E) -> (B, H, L, D); same for k, v.
        # 2. scores = q @ k.transpose(-2, -1) / sqrt(D): (B, H, L, L). Masked scores -> -inf, softmax over
        #    the last axis, then zero the weights of fully masked rows (their softmax is NaN).
        # 3. (weights @ v).transpose(1, 2).reshape(B, L, E) puts the heads side by side; then out_proj.
        ### END HINTS
        ### BEGIN SOLUTION
        B, L, E = x.shape
        H = self.num_heads
        D = E // H

        def split_heads(t):
            return t.view(B, L, H, D).transpose(1, 2)  # (B, L, E) -> (B, H, L, D)

        q, k, v = split_heads(self.q_proj(x)), split_heads(self.k_proj(x)), split_heads(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (B, H, L, L)
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, H, L, L); NaN rows where a query sees no key
        if mask is not None:
            dead = ~mask.any(dim=-1, keepdim=True)  # (..., L, 1)
            weights = weights.masked_fill(dead, 0.0)
        heads = weights @ v  # (B, H, L, D)
        return self.out_proj(heads.transpose(1, 2).reshape(B, L, E))  # heads side by side: (B, L, E)
        ### END SOLUTION

    def forward(self, x, mask=None):
        """Apply the block.

        Parameters
        ----------
        x : Tensor, shape (B, L, E)
            A batch of sequences of E-dimensional vectors.
        mask : Tensor of bool, shape (L, L), optional
            True where query i may attend to key j (the OPPOSITE of ``nn.TransformerEncoderLayer``'s
            boolean ``src_mask``). None: every query sees every key.

        Returns
        -------
        Tensor, shape (B, L, E)
            Same dtype as x.
        """
        ### BEGIN HINTS
        # 1. Post-LN: x = norm1(x + self_attention(x, mask)), then x = norm2(x + ff(x)).
        # 2. Pre-LN: x = x + self_attention(norm1(x), mask), then x = x + ff(norm2(x)).
        # 3. ff(h) = ff2(act(ff1(h))): (B, L, E) -> (B, L, d_ff) -> (B, L, E), act F.relu or F.gelu (exact).
        ### END HINTS
        ### BEGIN SOLUTION
        act = F.relu if self.activation == "relu" else F.gelu

        def feed_forward(h):
            return self.ff2(act(self.ff1(h)))  # (B, L, E) -> (B, L, d_ff) -> (B, L, E)

        if self.norm_first:
            x = x + self.self_attention(self.norm1(x), mask)
            x = x + feed_forward(self.norm2(x))
        else:
            x = self.norm1(x + self.self_attention(x, mask))
            x = self.norm2(x + feed_forward(x))
        return x
        ### END SOLUTION
