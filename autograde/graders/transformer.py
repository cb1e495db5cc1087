"""Grader for attnlab.transformer (notebook 04): TransformerBlock, a PyTorch nn.Module driven by handle.

Oracle: PyTorch's nn.TransformerEncoderLayer (batch_first, dropout 0) in float64 with the judge's weights
copied in: in_proj = cat(q, k, v), src_mask = ~mask, since PyTorch's boolean masks mean *masked out*
(references.transformer.torch_oracle). The rows of a query that sees no key come from our float64 NumPy
reference instead (the course rule: zero weights, so the attention sub-layer gives out_proj.bias), whatever
the installed PyTorch does there (NaN before 2.5). The result is rounded once to x's dtype.

Each case creates the learner's block in the worker (`t.new`), checks its state_dict keys and shapes
against the documented names, loads judge-generated weights with `load_state_dict` and calls it.

Tolerance: a correct float32 block commits rounding errors of a few float32 eps in every matmul (sums of
E and d_ff products), the softmax and the layer norms; a layer norm divides by its row's standard deviation,
which is about 1 for these inputs and weights (x ~ N(0, 1), weights ~ N(0, 1/fan_in), norm gains 1 +- 0.2)
but not bounded below. Measured over seeds 0..39 and every case, the solution and the three alternatives
stay within |err| <= 1.1e-6 (1 + |expected|) of the float64 oracle (1.2e-6 absolute at most). The table's
float32 allowance, |err| <= 1e-5 + 1e-5 |expected|, leaves a margin of about 9x and still catches the
smallest mistake in the catalogue by 10x: GELU's tanh approximation is off by at least 1.0e-4 (1 + |expected|)
in every GELU case at every seed. float64 uses the table as is (measured: 1.3e-15 (1 + |expected|)).
"""
import functools
from collections import OrderedDict

import numpy as np

from ..framework import Exercise
from ..references import transformer as ref
from .inputs import as_dtype, causal, keep_mask, normal

FORBID_TORCH_TRANSFORMER = (
    ("torch", "scaled_dot_product"),         # F.scaled_dot_product_attention, aten._scaled_dot_product_*
    ("torch", "multi_head_attention"),       # F.multi_head_attention_forward, aten._native_multi_head_attention
    ("torch", "MultiheadAttention"),         # nn.MultiheadAttention
    ("torch", "TransformerEncoderLayer"),    # nn.TransformerEncoderLayer
    ("torch", "transformer_encoder_layer"),  # its fused kernel, aten._transformer_encoder_layer_fwd
)
SCAN_NAMES = ("scaled_dot_product_attention", "multi_head_attention_forward", "MultiheadAttention",
              "TransformerEncoderLayer", "transformer_encoder_layer_fwd")

block = Exercise("transformer.TransformerBlock", points=4, reference=ref.TransformerBlock, profile="torch",
                 forbidden=FORBID_TORCH_TRANSFORMER, scan_names=SCAN_NAMES)

NAMES_HINT = ("create the sub-modules q_proj, k_proj, v_proj, out_proj = nn.Linear(d_model, d_model), "
              "ff1 = nn.Linear(d_model, d_ff), ff2 = nn.Linear(d_ff, d_model), norm1, norm2 = nn.LayerNorm(d_model), "
              "with exactly these names (register any buffer with persistent=False)")


# --------------------------------------------------------------------------------------- inputs
def _shapes(E, d_ff):
    """The documented state_dict: key -> shape."""
    shapes = OrderedDict()
    for name, (out, inp) in (("q_proj", (E, E)), ("k_proj", (E, E)), ("v_proj", (E, E)), ("out_proj", (E, E)),
                             ("ff1", (d_ff, E)), ("ff2", (E, d_ff))):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inp), (out,)
    for name in ("norm1", "norm2"):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (E,), (E,)
    return shapes


def _weights(rng, E, d_ff, dtype="float32"):
    """Judge-made weights (torch tensors): linear weights ~ N(0, 1/fan_in) so activations stay O(1), small
    biases, norm gains 1 +- 0.2 and shifts +- 0.2 (not 1 and 0, so swapped or skipped norms show)."""
    sd = OrderedDict()
    for key, shape in _shapes(E, d_ff).items():
        if key.startswith("norm"):
            base = 1.0 if key.endswith("weight") else 0.0
            sd[key] = as_dtype(base + 0.2 * rng.standard_normal(shape), dtype, torch=True)
        elif key.endswith("weight"):
            sd[key] = normal(rng, shape, dtype, scale=shape[1] ** -0.5, torch=True)
        else:
            sd[key] = normal(rng, shape, dtype, scale=0.2, torch=True)
    return sd


def _mask(array):
    import torch

    return torch.from_numpy(array.copy()).to(torch.bool)


def _expected(sd, x, mask, H, norm_first, activation):
    """The oracle (see the module docstring), rounded once to x's dtype."""
    out = ref.torch_oracle(sd, x, mask, H, norm_first, activation)
    if mask is not None:
        dead = ~mask.any(dim=-1)  # (L,): queries that see no key
        if dead.any():
            import torch

            ours = torch.from_numpy(ref.encoder_block(sd, x, mask, H, norm_first, activation))
            out[:, dead] = ours[:, dead]
    return out.to(x.dtype)


def _check_state_dict(t, obj, E, d_ff):
    got = obj.call("state_dict")
    t.require(isinstance(got, dict), f"state_dict() returned {type(got).__name__}, expected an OrderedDict of "
              "tensors", "subclass nn.Module and call super().__init__() first in __init__")
    want = _shapes(E, d_ff)
    missing, extra = [k for k in want if k not in got], [k for k in got if k not in want]
    t.require(not missing and not extra, f"state_dict() keys: missing {missing}, unexpected {extra}; expected "
              f"exactly {list(want)}", NAMES_HINT)
    for key, shape in want.items():
        have = tuple(getattr(got[key], "shape", ()))
        t.require(have == shape, f"state_dict()[{key!r}] has shape {have}, expected {shape} (d_model={E}, "
                  f"d_ff={d_ff}; nn.Linear(in, out) stores its weight as (out, in))", NAMES_HINT)


def _block(t, E, H, d_ff, norm_first=False, activation="relu"):
    """The learner's block with judge-made float32 weights loaded; returns (block, weights)."""
    obj = t.new(E, H, d_ff, norm_first=norm_first, activation=activation)
    _check_state_dict(t, obj, E, d_ff)
    sd = _weights(t.rng, E, d_ff)
    obj.call("load_state_dict", sd)
    obj.call("eval")
    return obj, sd


def _run(t, E=12, H=3, d_ff=20, B=2, L=5, norm_first=False, activation="relu", mask=None, pass_mask=True):
    """Build, call on x ~ N(0, 1) of shape (B, L, E), compare with the oracle; returns (block, weights, x, out)."""
    obj, sd = _block(t, E, H, d_ff, norm_first, activation)
    x = normal(t.rng, (B, L, E), "float32", torch=True)
    got = obj(x, mask=mask) if pass_mask else obj(x)
    t.expect(got, _expected(sd, x, mask, H, norm_first, activation), what="output (B, L, E)")
    return obj, sd, x, got


# ---------------------------------------------------------------------------------------- cases
@block.case("Post-LN, relu, block(x)", "the original Post-LN block (norm_first=False, relu), called without a mask, "
            "equals nn.TransformerEncoderLayer with the same weights (B=2, L=5, E=12, H=3, d_ff=20)")
def _(t):
    _run(t, pass_mask=False)


@block.case("Pre-LN, gelu, mask=None", "the Pre-LN block (norm_first=True) with the exact GELU and mask=None equals "
            "nn.TransformerEncoderLayer(norm_first=True, activation='gelu')")
def _(t):
    _run(t, norm_first=True, activation="gelu")


@block.case("causal mask (5, 5), Post-LN", "a causal (L, L) mask, True = may attend: the output equals PyTorch's "
            "with src_mask = ~mask, and changing later positions leaves earlier outputs unchanged")
def _(t):
    import torch

    mask = _mask(causal(5))
    obj, sd, x, first = _run(t, mask=mask)
    later = x.clone()
    later[:, 3:] += torch.from_numpy(t.rng.standard_normal((2, 2, 12))).to(x.dtype)
    second = obj(later, mask=mask)
    t.expect(second[:, :3], first[:, :3], what="outputs at positions 0-2 after changing positions 3-4",
             hint="query i may attend to key j only where mask[i, j] is True: later positions must not reach "
                  "earlier outputs")


@block.case("random mask (5, 5), Pre-LN relu", "a random may-attend mask that is not symmetric (rows are queries, "
            "columns keys; every query keeps at least one key), in a Pre-LN block")
def _(t):
    _run(t, norm_first=True, mask=_mask(keep_mask(t.rng, (5, 5), p_keep=0.5)))


@block.case("padding + a fully masked query, Post-LN gelu", "keys 3-4 are padding and query 4 sees no key: rows "
            "that see a key equal PyTorch's, the dead row gets zero attention weights (out_proj.bias), never NaN")
def _(t):
    mask = np.ones((5, 5), dtype=bool)
    mask[:, 3:] = False
    mask[4, :] = False
    _run(t, activation="gelu", mask=_mask(mask))


@block.case("state_dict, d_ff < d_model", "state_dict() holds exactly the documented keys with their shapes "
            "(E=8, H=2, d_ff=6), so weights load by name")
def _(t):
    obj = t.new(8, 2, 6)
    _check_state_dict(t, obj, 8, 6)
    obj = t.new(8, 2, 6, norm_first=True, activation="gelu")
    _check_state_dict(t, obj, 8, 6)


@block.case("eval and double return self; float64", "block.eval() and block.double() return the block itself "
            "(nn.Module's chaining), and a float64 block on float64 x returns float64 (B=3, L=4, E=10, H=5, d_ff=7)")
def _(t):
    obj = t.new(10, 5, 7, norm_first=True, activation="gelu")
    _check_state_dict(t, obj, 10, 7)
    t.require(obj.call("eval") == obj, "block.eval() did not return the block itself",
              "do not override eval(); nn.Module.eval() returns self")
    t.require(obj.call("double") == obj, "block.double() did not return the block itself",
              "do not override double(); nn.Module.double() returns self")
    sd = _weights(t.rng, 10, 7, dtype="float64")
    obj.call("load_state_dict", sd)
    x = normal(t.rng, (3, 4, 10), "float64", torch=True)
    mask = _mask(causal(4))
    t.expect(obj(x, mask=mask), _expected(sd, x, mask, 5, True, "gelu"), what="float64 output (B, L, E)")


@block.case("num_heads=1", "one head of width D = E (B=2, L=7, E=6, d_ff=9), causal mask")
def _(t):
    _run(t, E=6, H=1, d_ff=9, L=7, mask=_mask(causal(7)))


@block.case("num_heads=d_model", "E heads of width D = 1 (B=2, L=6, E=4, H=4, d_ff=10), Pre-LN gelu, random mask")
def _(t):
    _run(t, E=4, H=4, d_ff=10, L=6, norm_first=True, activation="gelu",
         mask=_mask(keep_mask(t.rng, (6, 6), p_keep=0.5)))


# ------------------------------------------------------------------------- mutants, alternatives
@functools.cache
def _knobbed_class():
    """A block whose knobs switch on one mistake (mutants) or another correct formulation (alternatives)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Knobbed(nn.Module):
        def __init__(self, d_model, num_heads, d_ff, norm_first=False, activation="relu", knobs=None):
            super().__init__()
            self.knobs = dict(knobs or {})
            self.num_heads, self.norm_first, self.activation = num_heads, norm_first, activation
            self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.ff1, self.ff2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
            self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

        def norm(self, name, h):
            if self.knobs.get("swap_norms"):
                name = {"norm1": "norm2", "norm2": "norm1"}[name]
            module = getattr(self, name)
            if self.knobs.get("manual_norm"):
                centred = h - h.mean(dim=-1, keepdim=True)
                var = (centred * centred).mean(dim=-1, keepdim=True)
                return centred * torch.rsqrt(var + module.eps) * module.weight + module.bias
            return module(h)

        def weights(self, scores, mask):
            """(..., L, S) scores, already scaled -> weights."""
            k = self.knobs
            dim = -2 if k.get("softmax_over_queries") else -1
            if mask is None or k.get("ignore_mask"):
                return torch.softmax(scores, dim=dim)
            keep = ~mask if k.get("invert_mask") else mask
            if k.get("mask_after_softmax"):
                return torch.softmax(scores, dim=dim) * keep
            if k.get("large_negative_fill"):
                return torch.softmax(scores.masked_fill(~keep, -1e9), dim=dim)
            if k.get("additive_mask"):
                bias = torch.zeros(keep.shape, dtype=scores.dtype).masked_fill(~keep, float("-inf"))
                return torch.nan_to_num(torch.softmax(scores + bias, dim=dim), nan=0.0)
            w = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=dim)
            return w if k.get("nan_rows") else w.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)

        def attend(self, h, mask):
            k = self.knobs
            B, L, E = h.shape
            H = self.num_heads
            D = E // H
            scale = 1.0 if k.get("no_scale") else (E if k.get("scale_by_d_model") else D) ** -0.5
            if k.get("fused_projection"):
                w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3E, E)
                b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
                q, key, v = F.linear(h, w, b).chunk(3, dim=-1)
            else:
                q, key, v = self.q_proj(h), self.k_proj(h), self.v_proj(h)
            if k.get("heads") == "loop":
                outs = []
                for i in range(H):
                    part = slice(i * D, (i + 1) * D)
                    scores = q[..., part] @ key[..., part].transpose(-2, -1) * scale  # (B, L, L)
                    outs.append(self.weights(scores, mask) @ v[..., part])
                merged = torch.cat(outs, dim=-1)
            elif k.get("heads") == "einsum":
                qh, kh, vh = (t.reshape(B, L, H, D) for t in (q, key, v))
                scores = torch.einsum("blhd,bshd->bhls", qh, kh) * scale
                merged = torch.einsum("bhls,bshd->blhd", self.weights(scores, mask), vh).reshape(B, L, E)
            else:
                if k.get("split_without_transpose"):
                    qh, kh, vh = (t.reshape(B, H, L, D) for t in (q, key, v))
                else:
                    qh, kh, vh = (t.reshape(B, L, H, D).transpose(1, 2) for t in (q, key, v))
                heads = self.weights(qh @ kh.transpose(-2, -1) * scale, mask) @ vh  # (B, H, L, D)
                merged = heads.reshape(B, L, E) if k.get("merge_without_transpose") else \
                    heads.transpose(1, 2).reshape(B, L, E)
            return self.out_proj(merged)

        def feed_forward(self, h):
            k = self.knobs
            a = self.ff1(h)
            if self.activation == "relu" or k.get("always_relu"):
                a = F.relu(a)
            else:
                a = F.gelu(a, approximate="tanh" if k.get("gelu_tanh") else "none")
            return self.ff2(a)

        def forward(self, x, mask=None):
            k = self.knobs
            if self.norm_first and not k.get("always_post_ln"):
                h = self.norm("norm1", x)
                x = (h if k.get("residual_adds_normalised") else x) + self.attend(h, mask)
                h = self.norm("norm2", x)
                return (h if k.get("residual_adds_normalised") else x) + self.feed_forward(h)
            a = self.attend(x, mask)
            x = self.norm("norm1", a if k.get("no_attention_residual") else x + a)
            f = self.feed_forward(x)
            return self.norm("norm2", f if k.get("no_feed_forward_residual") else x + f)

    return Knobbed


class _Knobbed:
    """A stand-in class for one setting of the knobs: instantiating it builds the nn.Module (torch is
    imported then, not when the graders load)."""
    knobs = {}

    def __new__(cls, *args, **kwargs):
        return _knobbed_class()(*args, knobs=cls.knobs, **kwargs)


def _variant(name, **knobs):
    return type(f"Knobbed_{name.replace(' ', '_')}", (_Knobbed,), {"knobs": knobs})


MUTANTS = (  # (name, hint, knobs)
    ("inverted mask", "mask[i, j] True means query i MAY attend to key j (the opposite of PyTorch's boolean "
     "src_mask): fill the scores with -inf where the mask is False", {"invert_mask": True}),
    ("mask ignored", "apply the mask: set the scores to -inf where mask is False before the softmax",
     {"ignore_mask": True}),
    ("mask after the softmax", "mask the scores before the softmax (-inf where mask is False): zeroing weights after "
     "it leaves rows that no longer sum to 1", {"mask_after_softmax": True}),
    ("fully masked row is NaN", "a query that may attend to no key gets zero weights: zero the weights of fully "
     "masked rows after the softmax (the softmax of a row of -inf is NaN)", {"nan_rows": True}),
    ("fully masked row is uniform", "a query that may attend to no key gets zero weights: filling with a large "
     "negative number instead of -inf spreads its weight evenly over all keys", {"large_negative_fill": True}),
    ("softmax over queries", "take the softmax over the key axis (-1): each query's weights sum to 1",
     {"softmax_over_queries": True}),
    ("no 1/sqrt(D)", "scale the scores by 1/sqrt(D), with D = d_model // num_heads the head width",
     {"no_scale": True}),
    ("1/sqrt(d_model)", "the scale is 1/sqrt(D) with D = d_model // num_heads (one head's width), not "
     "1/sqrt(d_model)", {"scale_by_d_model": True}),
    ("heads split without transpose", "split the heads with .view(B, L, H, D).transpose(1, 2): viewing (B, L, E) "
     "directly as (B, H, L, D) mixes positions and features", {"split_without_transpose": True}),
    ("heads merged without transpose", "merge the heads with .transpose(1, 2).reshape(B, L, E): reshaping "
     "(B, H, L, D) directly to (B, L, E) mixes heads and positions", {"merge_without_transpose": True}),
    ("norm_first ignored", "norm_first=True is Pre-LN: x = x + self_attention(norm1(x), mask), then "
     "x = x + ff(norm2(x)); the norms apply to each sub-layer's input, not after the addition",
     {"always_post_ln": True}),
    ("Pre-LN residual adds norm1(x)", "in Pre-LN the residual carries the un-normalised x: "
     "x = x + self_attention(norm1(x), mask), not norm1(x) + self_attention(norm1(x), mask)",
     {"residual_adds_normalised": True}),
    ("no residual around attention", "add the residual around attention: Post-LN x = norm1(x + self_attention(x, "
     "mask))", {"no_attention_residual": True}),
    ("no residual around the feed-forward", "add the residual around the feed-forward: Post-LN "
     "x = norm2(x + ff(x))", {"no_feed_forward_residual": True}),
    ("norms swapped", "norm1 is the attention sub-layer's layer norm, norm2 the feed-forward's",
     {"swap_norms": True}),
    ("activation ignored", "use the activation asked for: activation='gelu' means F.gelu, not ReLU",
     {"always_relu": True}),
    ("tanh GELU", "activation='gelu' is the exact GELU, x * Phi(x) (F.gelu's default, erf), not "
     "approximate='tanh'", {"gelu_tanh": True}),
)

for _name, _hint, _knobs in MUTANTS:
    block.mutant(_name, _hint)(_variant(_name, **_knobs))

ALTERNATIVES = (  # (name, knobs): correct blocks written another way
    ("einsum heads, additive -inf mask and nan_to_num", {"heads": "einsum", "additive_mask": True}),
    ("a loop over heads slicing the projections, layer norm by hand", {"heads": "loop", "manual_norm": True}),
    ("fused q/k/v projection concatenated at forward time", {"fused_projection": True}),
)

for _name, _knobs in ALTERNATIVES:
    block.alternative(_name)(_variant(_name, **_knobs))

EXERCISES = [block]
