"""Limits and frontiers: decoding with a key/value cache, grouped-query attention, and two alternatives to
softmax attention that run as recurrences.

- ``KVCache``: the keys and values of every decoded position, so that each new token costs one projection.
- ``grouped_query_attention``: groups of query heads share one key/value head (MQA, Shazeer 2019; GQA,
  Ainslie et al. 2023), which divides the cache by H / H_kv.
- ``linear_attention_recurrent``: causal linear attention with elu(x) + 1 features (Katharopoulos et al.
  2020) as an RNN whose state has a fixed size, however long the sequence.
- ``diagonal_ssm``: a diagonal linear state-space recurrence, computed as a scan or as one long
  convolution (the two forms of S4-style models; Gu et al. 2022).

Taught in notebooks/12_limits_frontiers.ipynb.
"""
import math

import torch
import torch.nn.functional as F


class KVCache:
    """The keys and values of every position decoded so far, for one attention layer.

    An autoregressive decoder produces one token at a time. Its new query must attend to the keys and
    values of *all* earlier positions; recomputing them at every step costs O(S) projections per step
    and O(S^2) in total. A cache keeps them: each step appends the new positions' keys and values and
    attends over everything cached.

    Parameters
    ----------
    capacity : int, optional
        Initial number of positions the storage holds (default 16). It is *not* a maximum: when an
        append does not fit, the storage grows (its size doubles until it fits) and the cached
        positions are kept, so results never depend on `capacity`.

    Attributes
    ----------
    capacity : int
        Positions the storage holds now (>= len(cache)).

    Notes
    -----
    Shapes: k ``(B, H, T, D)``, v ``(B, H, T, D_v)``, q ``(B, H, T_q, D)``. The storage is allocated
    at the first `append`, with that call's B, H, D, D_v, dtype and device.

    `decode_step` treats its T_q queries as the *last* T_q cached positions (append their keys and
    values first), so with S = len(cache) query i may see key j when ``j <= i + (S - T_q)``: the
    course's end-aligned causal mask, which lets one new query see the whole cache. Scores are scaled
    by ``1 / sqrt(D)``.

    Memory: ``H * (D + D_v)`` numbers per cached position and sequence, in every layer. For Llama 2 7B
    (32 layers, 32 heads of width 128) in 16-bit numbers that is 512 KiB per token, 2 GiB for a
    4096-token context (computed in notebook 12).

    Examples
    --------
    >>> cache = KVCache(capacity=4)
    >>> cache.append(k_prompt, v_prompt)              # (B, H, 5, D), (B, H, 5, D_v): prefill
    >>> out = cache.decode_step(q_prompt[:, :, -1:])  # (B, H, 1, D_v)
    >>> cache.append(k_new, v_new); len(cache)        # one more position
    6
    """

    def __init__(self, capacity=16):
        ### BEGIN SOLUTION
        if int(capacity) < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.length = 0
        self.keys = None  # (B, H, capacity, D), allocated at the first append
        self.values = None  # (B, H, capacity, D_v)
        ### END SOLUTION

    def __len__(self):
        """Number of cached positions."""
        ### BEGIN SOLUTION
        return self.length
        ### END SOLUTION

    def append(self, k, v):
        """Add T positions: k of shape (B, H, T, D) and v of shape (B, H, T, D_v).

        Grows the storage (doubling) when they do not fit; cached positions are kept.
        """
        ### BEGIN HINTS
        # 1. First call: allocate self.keys / self.values as torch.zeros(B, H, capacity, D) (and D_v),
        #    with k's dtype and device.
        # 2. If length + T > capacity: double capacity until it fits, allocate new storage and copy the
        #    first `length` positions over (slicing along dim 2).
        # 3. Write k, v into positions [length, length + T) and advance length.
        ### END HINTS
        ### BEGIN SOLUTION
        B, H, T, D = k.shape
        if self.keys is None:
            self.keys = torch.zeros(B, H, self.capacity, D, dtype=k.dtype, device=k.device)
            self.values = torch.zeros(B, H, self.capacity, v.shape[-1], dtype=v.dtype, device=v.device)
        needed = self.length + T
        if needed > self.capacity:
            while self.capacity < needed:
                self.capacity *= 2
            keys = self.keys.new_zeros(B, H, self.capacity, D)
            values = self.values.new_zeros(B, H, self.capacity, self.values.shape[-1])
            keys[:, :, : self.length] = self.keys[:, :, : self.length]  # keep what is cached
            values[:, :, : self.length] = self.values[:, :, : self.length]
            self.keys, self.values = keys, values
        self.keys[:, :, self.length:needed] = k
        self.values[:, :, self.length:needed] = v
        self.length = needed
        ### END SOLUTION

    def decode_step(self, q):
        """Attention of the last T_q cached positions over every cached position.

        Parameters
        ----------
        q : Tensor, shape (B, H, T_q, D)
            Queries of the last T_q positions (their keys and values are already appended).

        Returns
        -------
        Tensor, shape (B, H, T_q, D_v)
            Same dtype as q.
        """
        ### BEGIN HINTS
        # 1. Only the first len(self) positions of the storage are real: k = self.keys[:, :, :S].
        # 2. scores = q @ k^T / sqrt(D): (B, H, T_q, S); query i may see key j when j <= i + (S - T_q).
        # 3. Masked scores -> -inf, softmax over the last axis, then @ v -> (B, H, T_q, D_v).
        ### END HINTS
        ### BEGIN SOLUTION
        S, T_q = self.length, q.shape[-2]
        k = self.keys[:, :, :S]  # (B, H, S, D)
        v = self.values[:, :, :S]  # (B, H, S, D_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T_q, S)
        query_pos = torch.arange(T_q, device=q.device)[:, None] + (S - T_q)  # absolute positions
        visible = torch.arange(S, device=q.device)[None, :] <= query_pos  # (T_q, S), end-aligned
        scores = scores.masked_fill(~visible, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v  # (B, H, T_q, D_v)
        ### END SOLUTION


def grouped_query_attention(q, k, v, mask=None):
    """Scaled dot-product attention in which groups of query heads share one key/value head.

    Parameters
    ----------
    q : Tensor, shape (B, H, L, D)
        Queries of H heads. Any number of leading batch dims (also none: ``(H, L, D)``).
    k : Tensor, shape (B, H_kv, S, D)
        Keys of H_kv heads; H_kv must divide H.
    v : Tensor, shape (B, H_kv, S, D_v)
        Values of the same H_kv heads.
    mask : Tensor of bool, shape broadcastable to (B, H, L, S), optional
        True where a query may attend to a key. It is indexed by *query* head: a mask of shape
        ``(B, H, L, S)`` can differ between heads of one group.

    Returns
    -------
    Tensor, shape (B, H, L, D_v)
        Same dtype as q. A query whose mask row is all False gets a zero output.

    Raises
    ------
    ValueError
        If H is not a multiple of H_kv.

    Notes
    -----
    With G = H / H_kv query heads per group, query head h reads key/value head ``h // G``: heads
    0 .. G-1 share head 0, heads G .. 2G-1 share head 1, and so on (the order of ``repeat_interleave``
    and of PyTorch's ``scaled_dot_product_attention(..., enable_gqa=True)``). Then, per query head,

    .. math:: \\mathrm{out}_h = \\mathrm{softmax}\\big(q_h k_{h//G}^\\top / \\sqrt{D}\\big)\\, v_{h//G}

    H_kv = H is multi-head attention, H_kv = 1 multi-query attention (Shazeer 2019); grouped-query
    attention (Ainslie et al. 2023) sits in between. Only the H_kv key/value heads are cached, so the
    KV cache shrinks by the factor G.

    Write it with matmuls and a softmax: PyTorch's own attention (F.scaled_dot_product_attention,
    nn.MultiheadAttention) is not allowed in this exercise.
    """
    ### BEGIN HINTS
    # 1. G = H // H_kv (ValueError when H % H_kv != 0). View q as (..., H_kv, G, L, D): group g, member i is
    #    query head g * G + i, so consecutive query heads share a key/value head.
    # 2. Give k and v a group axis of size 1, (..., H_kv, 1, S, D), so one matmul scores every member of a
    #    group against its shared keys: (..., H_kv, G, L, S). Broadcast the mask to (..., H, L, S) and view
    #    it the same way.
    # 3. Masked scores -> -inf, softmax over S, rows that see no key -> 0, @ v, then back to (..., H, L, D_v).
    ### END HINTS
    ### BEGIN SOLUTION
    *lead, H, L, D = q.shape
    H_kv, S = k.shape[-3], k.shape[-2]
    if H_kv < 1 or H % H_kv:
        raise ValueError(f"the number of query heads H = {H} must be a multiple of the key/value heads H_kv = {H_kv}")
    G = H // H_kv
    lead = list(torch.broadcast_shapes(tuple(lead), tuple(k.shape[:-3]), tuple(v.shape[:-3])))
    q_grouped = q.reshape(*q.shape[:-3], H_kv, G, L, D)  # (..., H_kv, G, L, D): no copy of the keys
    scores = q_grouped @ k.unsqueeze(-3).transpose(-1, -2) / math.sqrt(D)  # (..., H_kv, G, L, S)
    if mask is not None:
        keep = torch.broadcast_to(torch.as_tensor(mask, dtype=torch.bool, device=q.device), (*lead, H, L, S))
        keep = keep.reshape(*lead, H_kv, G, L, S)  # the same grouping as the queries
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # a row of -inf (sees no key) gives NaN: its weights are 0
    out = weights @ v.unsqueeze(-3)  # (..., H_kv, G, L, D_v)
    return out.reshape(*out.shape[:-4], H, L, v.shape[-1])  # (..., H, L, D_v)
    ### END SOLUTION


def linear_attention_recurrent(q, k, v, state=None, return_state=False):
    """Causal linear attention computed as an RNN: one fixed-size state, updated token by token.

    Parameters
    ----------
    q : Tensor, shape (..., L, D)
        Queries of L consecutive positions.
    k : Tensor, shape (..., L, D)
        Keys of the same positions (self-attention: one key per query).
    v : Tensor, shape (..., L, D_v)
        Values of the same positions.
    state : tuple (Tensor (..., D, D_v), Tensor (..., D)), optional
        ``(kv, z)`` left by an earlier call on the tokens before these: ``kv = sum_j phi(k_j) v_j^T`` and
        ``z = sum_j phi(k_j)``. Default: zeros (nothing before position 0).
    return_state : bool, optional
        Also return the state after the last token, to continue with the next chunk. Default False.

    Returns
    -------
    output : Tensor, shape (..., L, D_v)
        Same dtype as q.
    state : tuple (Tensor (..., D, D_v), Tensor (..., D))
        Only when `return_state` is True: ``(kv, z)`` including all L tokens.

    Notes
    -----
    The feature map is ``phi(x) = elu(x) + 1`` (x + 1 for x > 0, exp(x) otherwise; positive
    everywhere), applied feature by feature, with no 1/sqrt(D) scale: the feature map and normaliser of
    notebook 07's ``efficient.linear_attention`` (Katharopoulos et al. 2020). For t = 0 .. L-1:

    .. math::

        \\mathrm{kv}_t = \\mathrm{kv}_{t-1} + \\phi(k_t)\\, v_t^\\top, \\qquad
        z_t = z_{t-1} + \\phi(k_t), \\qquad
        o_t = \\frac{\\phi(q_t)^\\top \\mathrm{kv}_t}{\\phi(q_t)^\\top z_t}

    so token t sees itself and every earlier token, and the output equals causal linear attention
    computed in parallel, ``o_t = sum_{j<=t} phi(q_t).phi(k_j) v_j / sum_{j<=t} phi(q_t).phi(k_j)``.
    The state is ``(..., D, D_v)`` plus ``(..., D)`` whatever the length: memory per step is constant,
    where a KV cache grows by one key and one value per token.
    """
    ### BEGIN HINTS
    # 1. phi(x) = F.elu(x) + 1. Start from kv = zeros (..., D, D_v) and z = zeros (..., D), or from `state`.
    # 2. For each t: first add phi(k_t) v_t^T (an outer product, (..., D, D_v)) to kv and phi(k_t) to z,
    #    then read: o_t = phi(q_t) @ kv / (phi(q_t) . z)  -> (..., D_v).
    # 3. Stack the L outputs along axis -2; return (output, (kv, z)) when return_state.
    ### END HINTS
    ### BEGIN SOLUTION
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1  # (..., L, D), positive
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    D, D_v = q.shape[-1], v.shape[-1]
    if state is None:
        kv = torch.zeros(*lead, D, D_v, dtype=q.dtype, device=q.device)
        z = torch.zeros(*lead, D, dtype=q.dtype, device=q.device)
    else:
        kv, z = state
    outputs = []
    for t in range(q.shape[-2]):
        kv = kv + phi_k[..., t, :, None] * v[..., t, None, :]  # (..., D, D_v): write token t first
        z = z + phi_k[..., t, :]  # (..., D)
        numerator = (phi_q[..., t, None, :] @ kv).squeeze(-2)  # (..., D_v)
        denominator = (phi_q[..., t, :] * z).sum(-1, keepdim=True)  # (..., 1), > 0
        outputs.append(numerator / denominator)
    output = torch.stack(outputs, dim=-2).to(q.dtype)  # (..., L, D_v)
    return (output, (kv, z)) if return_state else output
    ### END SOLUTION


def diagonal_ssm(x, a, b, c, mode="scan"):
    """A diagonal linear state-space model, one independent SSM per channel, as a scan or a convolution.

    Parameters
    ----------
    x : Tensor, shape (..., L, C)
        Input sequence of L steps with C channels. Any number of leading batch dims (also none).
    a : Tensor, shape (C, N)
        Diagonal of the state matrix of each channel's N-dimensional state: any real numbers, 0,
        negative values and 1 included (|a| < 1 gives a stable, decaying memory).
    b : Tensor, shape (C, N)
        Input weights: how x_t enters each state entry.
    c : Tensor, shape (C, N)
        Output weights: how the state is read out.
    mode : {"scan", "conv"}, optional
        "scan" (default) runs the recurrence step by step; "conv" computes the kernel and convolves.
        Both give the same output.

    Returns
    -------
    Tensor, shape (..., L, C)
        Same dtype as x.

    Raises
    ------
    ValueError
        For a mode other than "scan" or "conv".

    Notes
    -----
    For each channel, with the state h_t of shape (..., C, N) and h_{-1} = 0 (products elementwise):

    .. math:: h_t = a \\odot h_{t-1} + b\\, x_t, \\qquad y_t = \\sum_n c_n h_{t,n}

    Unrolled, ``h_t = sum_{j=0}^{t} a^j b x_{t-j}``, so y is a causal convolution of x with the kernel

    .. math:: K_j = \\sum_n c_n a_n^j b_n, \\qquad y_t = \\sum_{j=0}^{t} K_j\\, x_{t-j}

    with K of shape (L, C).

    The first tap K_0 = c . b: x_t reaches y_t at once. The scan costs O(L C N) in L sequential steps;
    the convolution by FFT costs O(C L log L) after O(L C N) to build K, and is parallel over t. The
    convolution exists only because a, b and c do not depend on t (a linear time-invariant system, as in
    S4, Gu et al. 2022); Mamba (Gu & Dao 2023) makes them depend on the input and computes the
    recurrence with a parallel scan instead.
    """
    ### BEGIN HINTS
    # 1. Scan: h = zeros (..., C, N); for each t: h = a * h + b * x[..., t, :, None]; y_t = (c * h).sum(-1).
    # 2. Conv: K = (c * b * a ** j).sum(-1) for j = 0 .. L-1, built as a[None] ** arange(L)[:, None, None]
    #    (L, C, N) -> (L, C). Then y_t = sum_{j<=t} K_j x_{t-j} along axis -2.
    # 3. For the convolution, an FFT of length n >= 2L - 1 along the time axis (zero padding: no wrap-around):
    #    irfft(rfft(x, n) * rfft(K, n), n)[:L]. Any other mode: ValueError.
    ### END HINTS
    ### BEGIN SOLUTION
    if mode not in ("scan", "conv"):
        raise ValueError(f"mode must be 'scan' or 'conv', got {mode!r}")
    L = x.shape[-2]
    a, b, c = (t.to(x.dtype) for t in (a, b, c))
    if mode == "scan":
        h = torch.zeros(*x.shape[:-2], *a.shape, dtype=x.dtype, device=x.device)  # (..., C, N)
        ys = []
        for t in range(L):
            h = a * h + b * x[..., t, :, None]  # (..., C, N)
            ys.append((c * h).sum(-1))  # (..., C)
        return torch.stack(ys, dim=-2) if L else x.clone()  # (..., L, C)
    steps = torch.arange(L, dtype=x.dtype, device=x.device)[:, None, None]  # (L, 1, 1)
    kernel = (c * b * a ** steps).sum(-1)  # (L, C): K_j = sum_n c_n a_n^j b_n
    n = 2 * L  # >= 2L - 1: the linear convolution fits, nothing wraps around
    spectrum = torch.fft.rfft(x, n=n, dim=-2) * torch.fft.rfft(kernel, n=n, dim=0)  # (..., n // 2 + 1, C)
    return torch.fft.irfft(spectrum, n=n, dim=-2)[..., :L, :].to(x.dtype)  # (..., L, C)
    ### END SOLUTION
