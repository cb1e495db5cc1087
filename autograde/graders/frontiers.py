"""Grader for attnlab.frontiers (notebook 12): KVCache, a PyTorch class driven by handle.

Oracle: PyTorch's F.scaled_dot_product_attention in float64 over the whole sequence with the course's
end-aligned causal mask (autograde.references.oracles), rounded once to the query's dtype. The learner's
cache is created in the worker (`t.new`), filled with `append` and read with `decode_step` and `len`.
"""
import math

import numpy as np

from ..framework import Exercise
from ..references import frontiers as ref
from ..references import oracles
from .inputs import as_dtype

kv_cache = Exercise("frontiers.KVCache", points=3, reference=ref.KVCache, profile="torch")

SEQ_HINT = "decode_step's queries are the last T_q cached positions: query i sees key j when j <= i + (S - T_q)"


def _sequence(rng, N, B=2, H=3, D=4, D_v=6, dtype="float32"):
    """q, k, v for a whole sequence of N positions, as torch tensors."""
    draw = lambda d: as_dtype(rng.standard_normal((B, H, N, d)), dtype, torch=True)  # noqa: E731
    return draw(D), draw(D), draw(D_v)


def _full(q, k, v, upto, rows):
    """Rows `rows` (a slice) of full causal attention over the first `upto` positions."""
    out, _ = oracles.attention(q[:, :, :upto], k[:, :, :upto], v[:, :, :upto], causal=True)
    return out[:, :, rows].to(q.dtype)


@kv_cache.case("prefill 5, then 6 tokens one by one", "appending then decoding token by token equals full "
               "causal attention over the same sequence (B=2, H=3, D=4, D_v=6)")
def _(t):
    q, k, v = _sequence(t.rng, 11)
    cache = t.new(capacity=16)
    cache.call("append", k[:, :, :5], v[:, :, :5])
    got = cache.call("decode_step", q[:, :, 2:5])
    t.expect(got, _full(q, k, v, 5, slice(2, 5)), what="prefill: the last 3 of 5 positions")
    for pos in range(5, 11):
        cache.call("append", k[:, :, pos:pos + 1], v[:, :, pos:pos + 1])
        got = cache.call("decode_step", q[:, :, pos:pos + 1])
        t.expect(got, _full(q, k, v, pos + 1, slice(pos, pos + 1)), what=f"step at position {pos}")


@kv_cache.case("len", "len(cache) counts cached positions (0 when empty; appends of T add T)")
def _(t):
    q, k, v = _sequence(t.rng, 9)
    cache = t.new(capacity=16)
    t.require(cache.call("__len__") == 0, f"len of an empty cache is {cache.call('__len__')!r}, expected 0")
    cache.call("append", k[:, :, :4], v[:, :, :4])
    cache.call("append", k[:, :, 4:5], v[:, :, 4:5])
    n = cache.call("__len__")
    t.require(n == 5, f"after appending 4 then 1 positions len is {n!r}, expected 5",
              "count positions (the T axis of k), not calls to append")


@kv_cache.case("growth past capacity=2", "appends of 3, 1 and 5 positions into a capacity-2 cache keep every "
               "position: capacity is where the storage starts, not a maximum")
def _(t):
    q, k, v = _sequence(t.rng, 9, B=1, H=2, D=5, D_v=3)
    cache = t.new(capacity=2)
    for a, b in ((0, 3), (3, 4), (4, 9)):
        cache.call("append", k[:, :, a:b], v[:, :, a:b])
    t.require(cache.call("__len__") == 9, f"len after 9 positions is {cache.call('__len__')!r}, expected 9")
    t.expect(cache.call("decode_step", q[:, :, 5:9]), _full(q, k, v, 9, slice(5, 9)), what="last 4 positions")
    capacity = cache.get("capacity")
    t.require(isinstance(capacity, int) and capacity >= 9,
              f"the capacity attribute is {capacity!r} after caching 9 positions, expected an int >= 9")


@kv_cache.case("T_q = 1 over 37 positions", "one query sees the whole cache (default capacity, several growths)")
def _(t):
    q, k, v = _sequence(t.rng, 37, B=2, H=1, D=8, D_v=7)
    cache = t.new()
    cache.call("append", k, v)
    t.expect(cache.call("decode_step", q[:, :, 36:]), _full(q, k, v, 37, slice(36, 37)))


@kv_cache.case("float64, capacity larger than the sequence", "only cached positions are attended to (not the "
               "unused storage), and float64 stays float64")
def _(t):
    q, k, v = _sequence(t.rng, 6, D=3, D_v=5, dtype="float64")
    cache = t.new(capacity=64)
    cache.call("append", k, v)
    t.expect(cache.call("decode_step", q[:, :, 2:]), _full(q, k, v, 6, slice(2, 6)))


@kv_cache.case("two caches", "two caches are independent (no storage shared between instances)")
def _(t):
    q, k, v = _sequence(t.rng, 7)
    first, second = t.new(capacity=4), t.new(capacity=4)
    first.call("append", k[:, :, :7], v[:, :, :7])
    second.call("append", k[:, :, :3], v[:, :, :3])
    t.require(second.call("__len__") == 3, f"the second cache has len {second.call('__len__')!r} after 3 positions, "
              "expected 3", "keep the storage on the instance (self.keys = ... in __init__ or append), not on the "
              "class")
    t.expect(second.call("decode_step", q[:, :, 2:3]), _full(q, k, v, 3, slice(2, 3)), what="second cache")
    t.expect(first.call("decode_step", q[:, :, 6:7]), _full(q, k, v, 7, slice(6, 7)), what="first cache")


# ------------------------------------------------------------------------------------- mutants
class _Mutant:
    """A cache with switchable mistakes (each subclass flips one)."""
    scale_by_sqrt_d = True
    end_aligned = True
    causal = True
    keep_on_growth = True
    only_cached = True

    def __init__(self, capacity=16):
        self.capacity, self.length, self.keys, self.values = int(capacity), 0, None, None

    def __len__(self):
        return self.length

    def append(self, k, v):
        import torch

        B, H, T, D = k.shape
        if self.keys is None:
            self.keys = torch.zeros(B, H, self.capacity, D, dtype=k.dtype)
            self.values = torch.zeros(B, H, self.capacity, v.shape[-1], dtype=v.dtype)
        if self.length + T > self.capacity:
            while self.capacity < self.length + T:
                self.capacity *= 2
            keys = self.keys.new_zeros(B, H, self.capacity, D)
            values = self.values.new_zeros(B, H, self.capacity, self.values.shape[-1])
            if self.keep_on_growth:
                keys[:, :, : self.length] = self.keys[:, :, : self.length]
                values[:, :, : self.length] = self.values[:, :, : self.length]
            self.keys, self.values = keys, values
        self.keys[:, :, self.length:self.length + T] = k
        self.values[:, :, self.length:self.length + T] = v
        self.length += T

    def decode_step(self, q):
        import torch

        S = self.length if self.only_cached else self.capacity
        T_q = q.shape[-2]
        k, v = self.keys[:, :, :S], self.values[:, :, :S]
        scores = q @ k.transpose(-1, -2)
        if self.scale_by_sqrt_d:
            scores = scores / math.sqrt(q.shape[-1])
        if self.causal:
            offset = (S - T_q) if self.end_aligned else 0
            visible = torch.arange(S)[None, :] <= torch.arange(T_q)[:, None] + offset
            scores = scores.masked_fill(~visible, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v


@kv_cache.mutant("no 1/sqrt(D)", "scale the scores by 1/sqrt(D), as in scaled dot-product attention")
class _(_Mutant):
    scale_by_sqrt_d = False


@kv_cache.mutant("start-aligned causal", SEQ_HINT + " (a lower triangle from the top-left corner, or "
                 "is_causal=True, aligns to the start)")
class _(_Mutant):
    end_aligned = False


@kv_cache.mutant("no mask among new queries", "when T_q > 1 the earlier new queries must not see the later new "
                 "positions: apply the end-aligned causal mask")
class _(_Mutant):
    causal = False


@kv_cache.mutant("growth drops the cache", "when the storage grows, copy the cached positions into the new "
                 "storage (capacity is where it starts, not a maximum)")
class _(_Mutant):
    keep_on_growth = False


@kv_cache.mutant("attends to unused storage", "attend only over the first len(cache) positions of the storage: "
                 "the rest is empty (zeros), not keys")
class _(_Mutant):
    only_cached = False


@kv_cache.mutant("len counts appends", "count positions (the T axis of k), not calls to append")
class _(_Mutant):
    def __init__(self, capacity=16):
        super().__init__(capacity)
        self.appends = 0

    def append(self, k, v):
        super().append(k, v)
        self.appends += 1

    def __len__(self):
        return self.appends


@kv_cache.mutant("storage on the class", "keep the storage on the instance (self.keys = ... in __init__ or "
                 "append), not on the class")
class _:
    shared_k, shared_v = [], []

    def __init__(self, capacity=16):
        self.capacity = capacity

    def __len__(self):
        return sum(k.shape[-2] for k in self.shared_k)

    def append(self, k, v):
        self.shared_k.append(k)
        self.shared_v.append(v)

    def decode_step(self, q):
        import torch

        k, v = torch.cat(self.shared_k, dim=-2), torch.cat(self.shared_v, dim=-2)
        out, _ = oracles.attention(q, k, v, causal=True)
        return out.to(q.dtype)


@kv_cache.alternative("concatenation and F.scaled_dot_product_attention with an explicit mask")
class _:
    def __init__(self, capacity=16):
        self.capacity, self.k, self.v = capacity, None, None

    def __len__(self):
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k, v):
        import torch

        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        while self.capacity < len(self):
            self.capacity *= 2

    def decode_step(self, q):
        import torch
        import torch.nn.functional as F

        S, T_q = len(self), q.shape[-2]
        mask = torch.ones(T_q, S, dtype=torch.bool).tril(diagonal=S - T_q)
        return F.scaled_dot_product_attention(q, self.k, self.v, attn_mask=mask)


EXERCISES = [kv_cache]
