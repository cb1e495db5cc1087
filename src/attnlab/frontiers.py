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
        raise NotImplementedError(
            "frontiers.__init__ is not implemented yet: see notebooks/12_limits_frontiers.ipynb"
        )

    def __len__(self):
        """Number of cached positions."""
        raise NotImplementedError(
            "frontiers.__len__ is not implemented yet: see notebooks/12_limits_frontiers.ipynb"
        )

    def append(self, k, v):
        """Add T positions: k of shape (B, H, T, D) and v of shape (B, H, T, D_v).

        Grows the storage (doubling) when they do not fit; cached positions are kept.
        """
        # 1. First call: allocate self.keys / self.values as torch.zeros(B, H, capacity, D) (and D_v),
        #    with k's dtype and device.
        # 2. If length + T > capacity: double capacity until it fits, allocate new storage and copy the
        #    first `length` positions over (slicing along dim 2).
        # 3. Write k, v into positions [length, length + T) and advance length.
        raise NotImplementedError(
            "frontiers.append is not implemented yet: see notebooks/12_limits_frontiers.ipynb"
        )

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
        # 1. Only the first len(self) positions of the storage are real: k = self.keys[:, :, :S].
        # 2. scores = q @ k^T / sqrt(D): (B, H, T_q, S); query i may see key j when j <= i + (S - T_q).
        # 3. Masked scores -> -inf, softmax over the last axis, then @ v -> (B, H, T_q, D_v).
        raise NotImplementedError(
            "frontiers.decode_step is not implemented yet: see notebooks/12_limits_frontiers.ipynb"
        )
