"""Limits and frontiers: decoding with a key/value cache.

Taught in notebooks/12_limits_frontiers.ipynb.
"""
import math

import torch


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
