"""Grader for attnlab.frontiers (notebook 12), four PyTorch exercises.

KVCache, a class driven by handle. Oracle: PyTorch's F.scaled_dot_product_attention in float64 over the
whole sequence with the course's end-aligned causal mask (autograde.references.oracles), rounded once to
the query's dtype. The learner's cache is created in the worker (`t.new`), filled with `append` and read
with `decode_step` and `len`.

grouped_query_attention: see the section of that name below (oracle: F.scaled_dot_product_attention(...,
enable_gqa=True) in float64). linear_attention_recurrent: oracle the parallel (quadratic) form of causal
linear attention in float64. diagonal_ssm: oracle the dense causal transfer matrix in float64, the same for
mode="scan" and mode="conv".
"""
import math

import numpy as np

from ..framework import DTYPE_HINT, Exercise
from ..references import frontiers as ref
from ..references import oracles
from ..tolerances import EPS, exp_rtol, tolerance
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



# ====================================================================================== grouped_query_attention
# Oracle: F.scaled_dot_product_attention(..., enable_gqa=True) in float64 (repeat_interleave where PyTorch is
# older than 2.5), fully masked rows set to 0 (autograde.references.frontiers.gqa_oracle), rounded once to q's
# dtype. Tolerance: autograde.tolerances' exp_rtol for the magnitude of the scores, as for every softmax.
# PyTorch's own attention is off limits here (it would do the grouping for the learner); the notebook shows
# it as the fast path next to the learner's version.
FORBID_TORCH_ATTENTION = (
    ("torch", "scaled_dot_product"),      # F.scaled_dot_product_attention, aten._scaled_dot_product_*
    ("torch", "multi_head_attention"),    # F.multi_head_attention_forward
    ("torch", "MultiheadAttention"),      # nn.MultiheadAttention.forward
)
GQA_SCAN_NAMES = ("scaled_dot_product", "multi_head_attention", "MultiheadAttention")

GROUP_HINT = ("query head h reads key/value head h // G with G = H / H_kv: consecutive query heads share one "
              "head (repeat_interleave along the head axis, or q viewed as (..., H_kv, G, L, D)); "
              "k.repeat(...) tiles the heads, so head h would read h % H_kv")
ONE_HEAD_HINT = "each group reads its own key/value head (h // G): not head 0 for every query head"
GQA_SCALE_HINT = "scale the scores by 1/sqrt(D), as in scaled dot-product attention"
GQA_NAN_HINT = ("a query whose mask row is all False must get a zero output, never NaN: the softmax of a row of "
                "-inf is 0/0; set those rows' weights to 0 (torch.nan_to_num or torch.where on mask.any(-1))")
GQA_UNIFORM_HINT = ("a query that sees no key must output zeros: filling masked scores with a large negative number "
                    "(-1e9) gives its row uniform weights, the mean of all the values; use -inf and zero those rows")
GQA_INVERT_HINT = "mask is True where a query MAY attend: keep the scores where mask is True (masked_fill(~mask, -inf))"
GQA_AXIS_HINT = "take the softmax over the keys (the last axis, S), not over the queries"
GQA_DIVIDE_HINT = ("raise ValueError when H is not a multiple of H_kv (H % H_kv != 0): heads cannot be split into "
                   "equal groups")

gqa = Exercise("frontiers.grouped_query_attention", points=3, reference=ref.grouped_query_attention,
               profile="torch", forbidden=FORBID_TORCH_ATTENTION, scan_names=GQA_SCAN_NAMES)


def _heads(rng, lead, H, H_kv, L, S, D, D_v, dtype="float32", q_scale=1.0):
    """q (*lead, H, L, D), k (*lead, H_kv, S, D), v (*lead, H_kv, S, D_v) as torch tensors."""
    lead = tuple(lead)
    draw = lambda shape, s=1.0: as_dtype(rng.standard_normal(lead + shape) * s, dtype, torch=True)  # noqa: E731
    return draw((H, L, D), q_scale), draw((H_kv, S, D)), draw((H_kv, S, D_v))


def _check_gqa(t, q, k, v, mask=None, what=None):
    """Call the learner and compare with the float64 oracle, rounded once to q's dtype."""
    got = t.call(q, k, v) if mask is None else t.call(q, k, v, mask=mask)
    expected = ref.gqa_oracle(q, k, v, mask).to(q.dtype)
    magnitude = float(q.double().abs().amax() * k.double().abs().amax()) * q.shape[-1] ** 0.5
    t.expect(got, expected, what=what or "output (B, H, L, D_v)", rtol=exp_rtol(q.dtype, magnitude))


@gqa.case("H=6, H_kv=2, float32", "groups of G = 3 query heads share a key/value head: query head h reads head "
          "h // 3 (B=2, L=5, S=7, D=4, D_v=3)")
def _(t):
    _check_gqa(t, *_heads(t.rng, (2,), H=6, H_kv=2, L=5, S=7, D=4, D_v=3))


@gqa.case("MQA: H_kv=1, float64", "multi-query attention: all 4 query heads share one key/value head, and float64 "
          "stays float64 (B=3, L=2, S=9, D=5, D_v=6)")
def _(t):
    _check_gqa(t, *_heads(t.rng, (3,), H=4, H_kv=1, L=2, S=9, D=5, D_v=6, dtype="float64"))


@gqa.case("MHA: H_kv=H=3", "with as many key/value heads as query heads it is ordinary multi-head attention "
          "(G = 1; B=2, L=6, S=4, D=7, D_v=2)")
def _(t):
    _check_gqa(t, *_heads(t.rng, (2,), H=3, H_kv=3, L=6, S=4, D=7, D_v=2))


@gqa.case("causal (L, S) mask, L=3 < S=8", "decoding 3 new tokens over an 8-position cache: the course's "
          "end-aligned causal mask (L, S) broadcast over B and H (H=8, H_kv=2)")
def _(t):
    import torch

    q, k, v = _heads(t.rng, (2,), H=8, H_kv=2, L=3, S=8, D=4, D_v=5)
    _check_gqa(t, q, k, v, mask=oracles.end_aligned_causal(3, 8))


@gqa.case("per-head mask (B, H, L, S) with dead rows", "the mask is indexed by query head (it may differ "
          "inside a group), and a query whose row is all False gets zeros (H=6, H_kv=3, float64)")
def _(t):
    import torch

    q, k, v = _heads(t.rng, (2,), H=6, H_kv=3, L=5, S=7, D=4, D_v=3, dtype="float64")
    keep = t.rng.random((2, 6, 5, 7)) < 0.6
    keep[..., 0] = True
    keep[0, 1, 2] = False  # head 1 of group 0, query 2: sees no key
    keep[1, 5, :] = False  # the last head of sequence 1 sees nothing at all
    _check_gqa(t, q, k, v, mask=torch.from_numpy(keep))


@gqa.case("padding mask (B, 1, 1, S)", "padded keys, different per sequence, broadcast over heads and queries "
          "(H=4, H_kv=2, L=S=6)")
def _(t):
    import torch

    q, k, v = _heads(t.rng, (3,), H=4, H_kv=2, L=6, S=6, D=3, D_v=4)
    lengths = torch.tensor([6, 4, 1])
    keep = (torch.arange(6)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    _check_gqa(t, q, k, v, mask=keep)


@gqa.case("no batch dim: (H, L, D)", "3-D inputs (H=4, H_kv=2, L=5, S=3) work too: leading batch dims are "
          "optional")
def _(t):
    q, k, v = _heads(t.rng, (), H=4, H_kv=2, L=5, S=3, D=6, D_v=2)
    _check_gqa(t, q, k, v)


@gqa.case("bfloat16, H=8, H_kv=2", "bfloat16 inputs give a bfloat16 output close to the float64 oracle "
          "(B=2, L=6, S=10, D=16, D_v=8)")
def _(t):
    import torch

    q, k, v = _heads(t.rng, (2,), H=8, H_kv=2, L=6, S=10, D=16, D_v=8, dtype="float64", q_scale=0.5)
    _check_gqa(t, q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16))


@gqa.case("H=6, H_kv=4", "6 query heads cannot be split into groups over 4 key/value heads: ValueError")
def _(t):
    q, k, v = _heads(t.rng, (2,), H=6, H_kv=4, L=3, S=5, D=4, D_v=2)
    t.raises("ValueError", q, k, v, hint=GQA_DIVIDE_HINT)


# ------------------------------------------------------------------------------------- mutants
def _gqa_kernel(q, k, v, mask=None, *, tile=False, one_head=False, scale=True, dead="zero", invert=False,
                dim=-1, work64=False, check=True):
    """The solution's computation with one switch per known mistake."""
    import torch

    H, H_kv = q.shape[-3], k.shape[-3]
    if check and H % H_kv:
        raise ValueError(f"H = {H} is not a multiple of H_kv = {H_kv}")
    G = H // H_kv
    if work64:
        q, k, v = q.double(), k.double(), v.double()
    if one_head:
        k, v = k[..., :1, :, :], v[..., :1, :, :]
    if tile:  # head h gets key/value head h % H_kv
        k, v = (x.repeat(*([1] * (x.dim() - 3)), G, 1, 1) for x in (k, v))
    elif not one_head:
        k, v = k.repeat_interleave(G, dim=-3), v.repeat_interleave(G, dim=-3)
    scores = q @ k.transpose(-1, -2)
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    if mask is not None:
        keep = torch.as_tensor(mask).to(torch.bool)
        if invert:
            keep = ~keep
        scores = scores.masked_fill(~keep, -1e9 if dead == "uniform" else float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    if dead == "zero":
        weights = torch.nan_to_num(weights, nan=0.0)
    return weights @ v


def _gqa_mutant(name, hint, **switch):
    gqa.mutant(name, hint)(lambda q, k, v, mask=None: _gqa_kernel(q, k, v, mask, **switch))


_gqa_mutant("tiled heads (repeat, not repeat_interleave)", GROUP_HINT, tile=True)
_gqa_mutant("key/value head 0 for every group", ONE_HEAD_HINT, one_head=True)
_gqa_mutant("no 1/sqrt(D)", GQA_SCALE_HINT, scale=False)
_gqa_mutant("NaN on fully masked rows", GQA_NAN_HINT, dead="nan")
_gqa_mutant("-1e9 fill: fully masked rows average the values", GQA_UNIFORM_HINT, dead="uniform")
_gqa_mutant("mask inverted", GQA_INVERT_HINT, invert=True)
_gqa_mutant("softmax over the queries", GQA_AXIS_HINT, dim=-2)
_gqa_mutant("float64 output", DTYPE_HINT, work64=True)
_gqa_mutant("no ValueError for H % H_kv != 0", GQA_DIVIDE_HINT, check=False)


# ---------------------------------------------------------------------------------- alternatives
@gqa.alternative("repeat_interleave the keys and values, then attention with torch.where for dead rows")
def _(q, k, v, mask=None):
    import torch

    H, H_kv = q.shape[-3], k.shape[-3]
    if H % H_kv:
        raise ValueError("H must be a multiple of H_kv")
    k, v = k.repeat_interleave(H // H_kv, dim=-3), v.repeat_interleave(H // H_kv, dim=-3)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is None:
        return torch.softmax(scores, dim=-1) @ v
    keep = torch.as_tensor(mask).to(torch.bool)
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    weights = torch.where(keep.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))
    return weights @ v


@gqa.alternative("one query head at a time, log-sum-exp normalisation")
def _(q, k, v, mask=None):
    import torch

    H, H_kv = q.shape[-3], k.shape[-3]
    if H_kv == 0 or H % H_kv != 0:
        raise ValueError("heads do not split into equal groups")
    keep = None if mask is None else torch.as_tensor(mask).to(torch.bool)
    outs = []
    for h in range(H):
        kv_head = h // (H // H_kv)
        s = torch.einsum("...ld,...sd->...ls", q[..., h, :, :], k[..., kv_head, :, :]) / math.sqrt(q.shape[-1])
        if keep is not None:
            s = s.masked_fill(~keep.expand(*keep.shape[:-3], H, *keep.shape[-2:])[..., h, :, :]
                              if keep.dim() >= 3 else ~keep, float("-inf"))
        lse = torch.logsumexp(s, dim=-1, keepdim=True)
        w = torch.nan_to_num(torch.exp(s - lse), nan=0.0)
        outs.append(w @ v[..., kv_head, :, :])
    return torch.stack(outs, dim=-3)


@gqa.alternative("einsum over a (H_kv, G) view of the query heads")
def _(q, k, v, mask=None):
    import torch

    *lead, H, L, D = q.shape
    H_kv, S = k.shape[-3], k.shape[-2]
    if H % H_kv:
        raise ValueError(f"{H} % {H_kv} != 0")
    qg = q.view(*lead, H_kv, H // H_kv, L, D)
    s = torch.einsum("...kgld,...ksd->...kgls", qg, k) / math.sqrt(D)
    s = s.reshape(*s.shape[:-4], H, L, S)
    if mask is not None:
        s = s.masked_fill(~torch.as_tensor(mask).to(torch.bool), float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    e = torch.exp(s - torch.where(torch.isinf(m), torch.zeros_like(m), m))
    w = e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
    w = w.view(*w.shape[:-3], H_kv, H // H_kv, L, S)
    return torch.einsum("...kgls,...ksv->...kglv", w, v).reshape(*w.shape[:-4], H, L, v.shape[-1])


# ====================================================================================== linear_attention_recurrent
# Oracle: causal linear attention in its parallel form, the (L, L) matrix phi(Q) phi(K)^T masked to j <= i,
# in float64 (autograde.references.frontiers.causal_linear_oracle), rounded once to q's dtype. Every output is
# a weighted mean of values with positive weights, summed over up to L tokens: a correct float32 program is
# off by a few eps per token of max|v|, hence an absolute allowance that grows with L (and the state's, with
# the size of its sums).
READ_FIRST_HINT = ("add token t to the state before reading it: o_t = phi(q_t) kv_t / (phi(q_t) . z_t) with "
                   "kv_t = kv_{t-1} + phi(k_t) v_t^T, so each token sees itself (reading first leaves token 0 with "
                   "0/0 and shifts every output by one)")
NO_NORM_HINT = ("divide by the normaliser phi(q_t) . z_t, z_t = sum_{j<=t} phi(k_j): without it the output is a "
                "weighted sum, not a weighted mean, of the values")
ELU_ONLY_HINT = ("the feature map is elu(x) + 1, not elu(x): without the + 1 features can be negative and the "
                 "normaliser can vanish or change sign")
EXP_HINT = ("the feature map is elu(x) + 1 (x + 1 for x > 0, exp(x) otherwise): exp(x) everywhere is a different "
            "kernel")
LIN_SCALE_HINT = ("linear attention has no 1/sqrt(D): apply phi to q and k as they are (the feature map of "
                  "notebook 07's linear_attention)")
NONCAUSAL_HINT = ("the state at step t holds tokens j <= t only: update it token by token (or with cumulative "
                  "sums), not with the sum over the whole sequence")
Z_STEP_HINT = ("accumulate the normaliser too: z_t = z_{t-1} + phi(k_t), the sum over every token so far, not "
               "phi(k_t) alone")
STATE_IGNORED_HINT = ("start from the state passed in, (kv, z), instead of zeros: it holds the tokens before this "
                      "chunk")
STATE_LAYOUT_HINT = ("return the state as (kv, z) with kv = sum_j phi(k_j) v_j^T of shape (..., D, D_v), keys "
                     "first, and z = sum_j phi(k_j) of shape (..., D)")

linear_rnn = Exercise("frontiers.linear_attention_recurrent", points=3, reference=ref.linear_attention_recurrent,
                      profile="torch")


def _lin_inputs(rng, lead, L, D, D_v, dtype="float32"):
    lead = tuple(lead)
    return tuple(as_dtype(rng.standard_normal(lead + shape), dtype, torch=True)
                 for shape in ((L, D), (L, D), (L, D_v)))


def _lin_atol(dtype, L, magnitude):
    """An absolute allowance of 4 eps per summed token, relative to the size of the terms."""
    name = str(dtype).replace("torch.", "")
    return tolerance(name)[1] + 4.0 * EPS[name] * max(L, 1) * float(magnitude)


def _check_lin(t, got, q, k, v, kv0=None, z0=None, rows=None, what="output (..., L, D_v)"):
    """Compare an output with the oracle over the whole sequence (q, k, v), on `rows` (a slice) if given."""
    expected = ref.causal_linear_oracle(q, k, v, kv0, z0)
    if rows is not None:
        expected = expected[..., rows, :]
    magnitude = float(v.double().abs().amax())
    t.expect(got, expected.to(q.dtype), what=what, atol=_lin_atol(q.dtype, q.shape[-2], magnitude))


def _check_state(t, got, k, v, kv0=None, z0=None, dtype=None):
    import torch

    kv, z = t.expect_tuple(got, 2)
    kv_want, z_want = ref.linear_state_oracle(k, v, kv0, z0)
    dtype = dtype or k.dtype
    phi_k = ref._phi(k.double())
    size = float((phi_k.abs().sum(-2).amax() * v.double().abs().amax()))
    if kv0 is not None:
        size += float(torch.as_tensor(kv0).double().abs().amax() + torch.as_tensor(z0).double().abs().amax())
    t.expect(kv, kv_want.to(dtype), what="state kv = sum_j phi(k_j) v_j^T (..., D, D_v)",
             atol=_lin_atol(dtype, k.shape[-2], size))
    t.expect(z, z_want.to(dtype), what="state z = sum_j phi(k_j) (..., D)", atol=_lin_atol(dtype, k.shape[-2], size))


@linear_rnn.case("float64 (2, 3), L=9", "the recurrence equals causal linear attention computed in parallel "
                 "(B=2, H=3, L=9, D=4, D_v=6)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (2, 3), L=9, D=4, D_v=6, dtype="float64")
    _check_lin(t, t.call(q, k, v), q, k, v)


@linear_rnn.case("float32 (5,), L=40", "a longer float32 sequence with one batch dim (L=40, D=8, D_v=5)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (5,), L=40, D=8, D_v=5)
    _check_lin(t, t.call(q, k, v), q, k, v)


@linear_rnn.case("L=1", "a single token sees only itself: its output is its own value (B=3, D=2, D_v=7)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (3,), L=1, D=2, D_v=7)
    _check_lin(t, t.call(q, k, v), q, k, v)


@linear_rnn.case("no batch dims (L, D)", "2-D inputs (L=6, D=3, D_v=2) work too")
def _(t):
    q, k, v = _lin_inputs(t.rng, (), L=6, D=3, D_v=2, dtype="float64")
    _check_lin(t, t.call(q, k, v), q, k, v)


@linear_rnn.case("return_state=True", "returns (output, (kv, z)) with the state after the last token: kv = "
                 "phi(K)^T V (..., D, D_v) and z = phi(K)^T 1 (..., D) (float64, B=2, L=7, D=3, D_v=5)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (2,), L=7, D=3, D_v=5, dtype="float64")
    out, state = t.expect_tuple(t.call(q, k, v, return_state=True), 2)
    _check_lin(t, out, q, k, v)
    _check_state(t, state, k, v)


@linear_rnn.case("continue from a given state", "a chunk started from the state (kv, z) of the 6 tokens before it "
                 "equals rows 6..10 of the whole sequence (float32, B=2, H=2, D=4, D_v=3)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (2, 2), L=11, D=4, D_v=3)
    kv0, z0 = (s.to(q.dtype) for s in ref.linear_state_oracle(k[..., :6, :], v[..., :6, :]))
    got = t.call(q[..., 6:, :], k[..., 6:, :], v[..., 6:, :], state=(kv0, z0))
    _check_lin(t, got, q, k, v, rows=slice(6, 11), what="chunk output")


@linear_rnn.case("two chunks, own state", "the state returned by one call, passed to the next, continues the "
                 "sequence: chunks of 4 and 5 tokens equal the 9 tokens at once (float64)")
def _(t):
    q, k, v = _lin_inputs(t.rng, (3,), L=9, D=5, D_v=2, dtype="float64")
    first, state = t.expect_tuple(t.call(q[..., :4, :], k[..., :4, :], v[..., :4, :], return_state=True), 2)
    _check_lin(t, first, q, k, v, rows=slice(0, 4), what="first chunk")
    second = t.call(q[..., 4:, :], k[..., 4:, :], v[..., 4:, :], state=state)
    _check_lin(t, second, q, k, v, rows=slice(4, 9), what="second chunk, started from the returned state")


# ------------------------------------------------------------------------------------- mutants
def _lin_kernel(q, k, v, state=None, return_state=False, *, read_first=False, normalise=True, phi="elu+1",
                scale=False, causal=True, accumulate_z=True, use_state=True, layout="kv", work64=False):
    import torch
    import torch.nn.functional as F

    if work64:
        q, k, v = q.double(), k.double(), v.double()
    if scale:
        q, k = q / math.sqrt(q.shape[-1]), k / math.sqrt(k.shape[-1])
    feature = {"elu+1": lambda x: F.elu(x) + 1, "elu": F.elu, "exp": torch.exp}[phi]
    pq, pk = feature(q), feature(k)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if state is not None and use_state:
        kv, z = (s.to(q.dtype) for s in state)
    else:
        kv = torch.zeros(*lead, q.shape[-1], v.shape[-1], dtype=q.dtype)
        z = torch.zeros(*lead, q.shape[-1], dtype=q.dtype)
    if not causal:
        kv = kv + pk.transpose(-1, -2) @ v
        z = z + pk.sum(-2)
    outs = []
    for i in range(q.shape[-2]):
        step_kv, step_z = pk[..., i, :, None] * v[..., i, None, :], pk[..., i, :]
        if causal and not read_first:
            kv, z = kv + step_kv, (z + step_z if accumulate_z else step_z)
        num = (pq[..., i, None, :] @ kv).squeeze(-2)
        den = (pq[..., i, :] * z).sum(-1, keepdim=True)
        outs.append(num / den if normalise else num)
        if causal and read_first:
            kv, z = kv + step_kv, z + step_z
    out = torch.stack(outs, dim=-2)
    if not return_state:
        return out
    return out, ((kv.transpose(-1, -2) if layout == "vk" else kv), z)


def _lin_mutant(name, hint, **switch):
    linear_rnn.mutant(name, hint)(lambda q, k, v, state=None, return_state=False:
                                  _lin_kernel(q, k, v, state, return_state, **switch))


_lin_mutant("reads the state before adding token t", READ_FIRST_HINT, read_first=True)
_lin_mutant("no normaliser", NO_NORM_HINT, normalise=False)
_lin_mutant("elu(x) without + 1", ELU_ONLY_HINT, phi="elu")
_lin_mutant("exp(x) features", EXP_HINT, phi="exp")
_lin_mutant("1/sqrt(D) inside the feature map", LIN_SCALE_HINT, scale=True)
_lin_mutant("whole-sequence state (not causal)", NONCAUSAL_HINT, causal=False)
_lin_mutant("normaliser not accumulated", Z_STEP_HINT, accumulate_z=False)
_lin_mutant("state argument ignored", STATE_IGNORED_HINT, use_state=False)
_lin_mutant("state returned as (D_v, D)", STATE_LAYOUT_HINT, layout="vk")
_lin_mutant("float64 output", DTYPE_HINT, work64=True)


# ---------------------------------------------------------------------------------- alternatives
@linear_rnn.alternative("parallel form: the causal (L, L) matrix phi(Q) phi(K)^T, plus the state's share")
def _(q, k, v, state=None, return_state=False):
    import torch
    import torch.nn.functional as F

    pq, pk = F.elu(q) + 1, F.elu(k) + 1
    L = q.shape[-2]
    A = torch.tril(pq @ pk.transpose(-1, -2))  # (..., L, L), keys j <= i
    num, den = A @ v, A.sum(-1, keepdim=True)
    kv, z = pk.transpose(-1, -2) @ v, pk.sum(-2)
    if state is not None:
        num, den = num + pq @ state[0], den + pq @ state[1][..., None]
        kv, z = kv + state[0], z + state[1]
    out = num / den
    return (out, (kv, z)) if return_state else out


@linear_rnn.alternative("cumulative sums over time, state kept as (D_v, D) inside")
def _(q, k, v, state=None, return_state=False):
    import torch

    def phi(x):
        return torch.where(x > 0, x + 1, torch.exp(torch.clamp(x, max=0)))

    pq, pk = phi(q), phi(k)
    vk = torch.cumsum(v[..., :, :, None] * pk[..., :, None, :], dim=-3)  # (..., L, D_v, D)
    z = torch.cumsum(pk, dim=-2)
    if state is not None:
        vk = vk + state[0].transpose(-1, -2)[..., None, :, :]
        z = z + state[1][..., None, :]
    out = torch.einsum("...lvd,...ld->...lv", vk, pq) / (pq * z).sum(-1, keepdim=True)
    if not return_state:
        return out
    return out, (vk[..., -1, :, :].transpose(-1, -2), z[..., -1, :])


@linear_rnn.alternative("an RNN cell called once per token, einsum outer products")
def _(q, k, v, state=None, return_state=False):
    import torch
    import torch.nn.functional as F

    def cell(carry, qt, kt, vt):
        kv, z = carry
        fk = F.elu(kt) + 1
        kv = kv + torch.einsum("...d,...e->...de", fk, vt)
        z = z + fk
        fq = F.elu(qt) + 1
        return (kv, z), torch.einsum("...d,...de->...e", fq, kv) / torch.einsum("...d,...d->...", fq, z)[..., None]

    if state is None:
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        state = (q.new_zeros(*lead, q.shape[-1], v.shape[-1]), q.new_zeros(*lead, q.shape[-1]))
    outs = []
    for i in range(q.shape[-2]):
        state, o = cell(state, q[..., i, :], k[..., i, :], v[..., i, :])
        outs.append(o)
    out = torch.stack(outs, dim=-2)
    return (out, state) if return_state else out


# ====================================================================================== diagonal_ssm
# Oracle: the dense causal transfer matrix T[t, s] = sum_n c b a^(t - s) of each channel, applied in float64
# (autograde.references.frontiers.ssm_oracle), rounded once to x's dtype: the same oracle for mode="scan" and
# mode="conv". A correct float32 program (a scan of L steps, or an FFT of length >= 2L) is off by a few eps of
# the largest partial sum it forms, bounded by M = max_t sum_j sum_n |c b| |a|^j |x_{t-j}| (the oracle applied
# to absolute values), hence an absolute allowance of 16 eps M.
DELAY_HINT = ("update the state first, then read it: y_t = c . h_t with h_t = a h_{t-1} + b x_t, so x_t reaches "
              "y_t at once (the kernel's first tap is K_0 = c . b, not 0)")
POWER_HINT = ("the kernel is K_j = sum_n c_n a_n^j b_n for j = 0, 1, ..., L-1: the first tap is c . b (a^0 = 1); "
              "in the scan, a multiplies the previous state only, not the new input")
CIRCULAR_HINT = ("zero-pad to at least 2L - 1 before the FFT: an FFT of length L is a circular convolution, so the "
                 "end of the sequence leaks into its start")
CORRELATE_HINT = ("F.conv1d computes a cross-correlation: flip the kernel (y_t = sum_j K_j x_{t-j}) and pad L - 1 "
                  "zeros on the left only, so that y_t sees no future input")
NO_B_HINT = "the input enters the state through b: h_t = a * h_{t-1} + b * x_t"
CHANNEL_SUM_HINT = ("each channel has its own state and output: sum c * h over the state axis N only, keeping the C "
                    "channels (output (..., L, C))")
MODE_HINT = "raise ValueError for a mode other than 'scan' or 'conv'"

ssm = Exercise("frontiers.diagonal_ssm", points=3, reference=ref.diagonal_ssm, profile="torch")


def _ssm_inputs(rng, lead, L, C, N, dtype="float32", a_low=-0.9, a_high=0.95):
    """x (*lead, L, C); a (C, N) uniform in [a_low, a_high); b, c (C, N) standard normal."""
    x = as_dtype(rng.standard_normal(tuple(lead) + (L, C)), dtype, torch=True)
    a = as_dtype(rng.uniform(a_low, a_high, (C, N)), dtype, torch=True)
    b, c = (as_dtype(rng.standard_normal((C, N)), dtype, torch=True) for _ in range(2))
    return x, a, b, c


def _check_ssm(t, x, a, b, c, what=None, **kwargs):
    got = t.call(x, a, b, c, **kwargs)
    expected = ref.ssm_oracle(x, a, b, c).to(x.dtype)
    bound = float(ref.ssm_oracle(x.abs(), a.abs(), b.abs(), c.abs()).abs().amax())  # M: the largest partial sum
    name = str(x.dtype).replace("torch.", "")
    mode = kwargs.get("mode", "scan (default)")
    t.expect(got, expected, what=what or f"y (..., L, C), mode={mode}",
             atol=tolerance(name)[1] + 16.0 * EPS[name] * bound)


for _mode in ("scan", "conv"):
    @ssm.case(f"{_mode}: float32 (2,), L=11, C=3, N=4", f"mode={_mode!r} equals the recurrence h_t = a h_(t-1) + "
              "b x_t, y_t = c . h_t (every dimension distinct; a in [-0.9, 0.95))")
    def _(t, mode=_mode):
        _check_ssm(t, *_ssm_inputs(t.rng, (2,), L=11, C=3, N=4), mode=mode)

    @ssm.case(f"{_mode}: long memory, L=300", f"mode={_mode!r} with a close to 1 (0.97..0.995): the kernel is "
              "still large at lag 299, so every lag counts and nothing may wrap around (float32, (2, 2) batch)")
    def _(t, mode=_mode):
        _check_ssm(t, *_ssm_inputs(t.rng, (2, 2), L=300, C=2, N=3, a_low=0.97, a_high=0.995), mode=mode)

    @ssm.case(f"{_mode}: no batch dim, a = 0 and a = 1", f"mode={_mode!r} on a 2-D input (L=8, C=4, N=2), with a "
              "memoryless state entry (a = 0: only x_t) and a running sum (a = 1: every x_j, j <= t)")
    def _(t, mode=_mode):
        x, a, b, c = _ssm_inputs(t.rng, (), L=8, C=4, N=2, dtype="float64")
        a[0, 0], a[1, :], a[2, 1] = 0.0, 1.0, -1.0
        _check_ssm(t, x, a, b, c, mode=mode)

    @ssm.case(f"{_mode}: impulse response", f"mode={_mode!r} on a unit impulse x = (1, 0, 0, ...) returns the "
              "kernel itself, K_j = sum_n c_n a_n^j b_n (float64, L=12, C=5, N=3)")
    def _(t, mode=_mode):
        import torch

        _, a, b, c = _ssm_inputs(t.rng, (), L=12, C=5, N=3, dtype="float64")
        x = torch.zeros(12, 5, dtype=torch.float64)
        x[0] = 1.0
        _check_ssm(t, x, a, b, c, what=f"impulse response (L, C), mode={mode}", mode=mode)


@ssm.case("default mode, float32 (2, 3)", "without a mode argument the scan runs (B=2, H=3 batch dims, L=7, C=2, "
          "N=5)")
def _(t):
    _check_ssm(t, *_ssm_inputs(t.rng, (2, 3), L=7, C=2, N=5))


@ssm.case("unknown mode", "mode='fft' is neither 'scan' nor 'conv': ValueError")
def _(t):
    x, a, b, c = _ssm_inputs(t.rng, (2,), L=5, C=3, N=2)
    t.raises("ValueError", x, a, b, c, mode="fft", hint=MODE_HINT)


# ------------------------------------------------------------------------------------- mutants
def _ssm_kernel(x, a, b, c, mode="scan", *, delay=False, power_from_one=False, circular=False, correlate=False,
                use_b=True, sum_channels=False, check=True, work64=False):
    """The solution's two forms with one switch per known mistake (the conv-only mistakes leave the scan right)."""
    import torch
    import torch.nn.functional as F

    if check and mode not in ("scan", "conv"):
        raise ValueError(f"bad mode {mode!r}")
    if work64:
        x, a, b, c = x.double(), a.double(), b.double(), c.double()
    b = b if use_b else torch.ones_like(b)
    L = x.shape[-2]
    if mode != "conv":
        h = torch.zeros(*x.shape[:-2], *a.shape, dtype=x.dtype)
        ys = []
        for i in range(L):
            if delay:
                ys.append(c * h)
            h = a * (h + b * x[..., i, :, None]) if power_from_one else a * h + b * x[..., i, :, None]
            if not delay:
                ys.append(c * h)
        y = torch.stack(ys, dim=-3)  # (..., L, C, N)
        return y.sum((-2, -1))[..., None] if sum_channels else y.sum(-1)
    j = torch.arange(L, dtype=x.dtype)[:, None, None] + (1 if power_from_one else 0)
    kernel = (c * b * a ** j).sum(-1)  # (L, C)
    if delay:
        kernel = torch.cat([torch.zeros_like(kernel[:1]), kernel[:-1]])
    if correlate:  # F.conv1d as is: sum_j K_j x_{t+j}
        xs = x.reshape(-1, L, x.shape[-1]).transpose(1, 2)  # (batch, C, L)
        y = F.conv1d(F.pad(xs, (0, L - 1)), kernel.T[:, None, :], groups=x.shape[-1])
        return y.transpose(1, 2).reshape(x.shape)
    n = L if circular else 2 * L
    y = torch.fft.irfft(torch.fft.rfft(x, n=n, dim=-2) * torch.fft.rfft(kernel, n=n, dim=0), n=n, dim=-2)[..., :L, :]
    return y.sum(-1, keepdim=True) if sum_channels else y


def _ssm_mutant(name, hint, **switch):
    ssm.mutant(name, hint)(lambda x, a, b, c, mode="scan": _ssm_kernel(x, a, b, c, mode, **switch))


_ssm_mutant("reads the state before the update", DELAY_HINT, delay=True)
_ssm_mutant("kernel powers start at a^1", POWER_HINT, power_from_one=True)
_ssm_mutant("circular FFT (no zero padding)", CIRCULAR_HINT, circular=True)
_ssm_mutant("F.conv1d without flipping the kernel", CORRELATE_HINT, correlate=True)
_ssm_mutant("b forgotten", NO_B_HINT, use_b=False)
_ssm_mutant("summed over the channels", CHANNEL_SUM_HINT, sum_channels=True)
_ssm_mutant("unknown mode not rejected", MODE_HINT, check=False)
_ssm_mutant("float64 output", DTYPE_HINT, work64=True)


# ---------------------------------------------------------------------------------- alternatives
@ssm.alternative("F.conv1d with the flipped kernel; scan with the state laid out (N, C)")
def _(x, a, b, c, mode="scan"):
    import torch
    import torch.nn.functional as F

    if mode not in ("scan", "conv"):
        raise ValueError(mode)
    L, C = x.shape[-2], x.shape[-1]
    if mode == "scan":
        h = x.new_zeros(*x.shape[:-2], a.shape[1], C)  # (..., N, C)
        out = x.new_empty(x.shape)
        for i in range(L):
            h = a.T * h + b.T * x[..., i, None, :]
            out[..., i, :] = torch.einsum("...nc,nc->...c", h, c.T)
        return out
    powers = a[None] ** torch.arange(L, dtype=x.dtype)[:, None, None]  # (L, C, N)
    kernel = torch.einsum("lcn,cn->cl", powers, b * c)  # (C, L)
    xs = x.reshape(-1, L, C).transpose(1, 2)  # (batch, C, L)
    y = F.conv1d(F.pad(xs, (L - 1, 0)), kernel.flip(-1)[:, None, :], groups=C)  # (batch, C, L)
    return y.transpose(1, 2).reshape(x.shape)


@ssm.alternative("dense causal Toeplitz matrix for both modes")
def _(x, a, b, c, mode="scan"):
    import torch

    if mode not in {"scan", "conv"}:
        raise ValueError("mode")
    L = x.shape[-2]
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    K = ((b * c)[None] * a[None] ** torch.arange(L, dtype=x.dtype)[:, None, None]).sum(-1)  # (L, C)
    T = torch.where((lag >= 0)[:, :, None], K[lag.clamp(min=0)], torch.zeros((), dtype=x.dtype))  # (L, L, C)
    return torch.einsum("tsc,...sc->...tc", T, x)


@ssm.alternative("a direct convolution, one lag at a time, for 'scan'; an FFT of a power-of-two length for 'conv'")
def _(x, a, b, c, mode="scan"):
    import torch

    if mode not in ("scan", "conv"):
        raise ValueError(f"mode {mode}")
    L = x.shape[-2]
    K = (c * b * a ** torch.arange(L, dtype=x.dtype)[:, None, None]).sum(-1)  # (L, C)
    if mode == "scan":  # direct causal convolution, one lag at a time
        y = torch.zeros_like(x)
        for j in range(L):
            y[..., j:, :] += K[j] * x[..., : L - j, :]
        return y
    n = 1 << (2 * L - 1).bit_length()
    return torch.fft.irfft(torch.fft.rfft(x, n=n, dim=-2) * torch.fft.rfft(K, n=n, dim=0), n=n, dim=-2)[..., :L, :]


EXERCISES = [kv_cache, gqa, linear_rnn, ssm]
