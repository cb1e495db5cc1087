"""transformer.TransformerBlock: the reference against PyTorch's nn.TransformerEncoderLayer, the oracle's weight
copy, the course rule on fully masked rows, and the ban on PyTorch's attention through the real sandbox."""
import dataclasses
import shutil
import textwrap

import numpy as np
import pytest

from autograde import registry
from autograde.backends import SandboxBackend
from autograde.references import transformer as ref
from autograde.runner import grade_exercise, grade_submission
from conftest import ROOT, solutions_package

torch = pytest.importorskip("torch")
nn = torch.nn

E, H, D_FF, B, L = 12, 3, 20, 2, 5


def _layer(norm_first, activation, seed=0):
    """A float64 nn.TransformerEncoderLayer with random (not default) weights, and the same weights under the
    exercise's state_dict names."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(E, H, D_FF, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    attn = layer.self_attn
    sd = {}
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = w.detach().clone(), b.detach().clone()
    for ours, theirs in (("out_proj", attn.out_proj), ("ff1", layer.linear1), ("ff2", layer.linear2),
                         ("norm1", layer.norm1), ("norm2", layer.norm2)):
        sd[f"{ours}.weight"], sd[f"{ours}.bias"] = theirs.weight.detach().clone(), theirs.bias.detach().clone()
    return layer.train(), sd


def _masks():
    rng = np.random.default_rng(7)
    random = rng.random((L, L)) < 0.5
    random[:, 0] = True
    dead = np.ones((L, L), bool)
    dead[:, 3:] = False
    dead[4] = False
    return {"none": None, "causal": np.tril(np.ones((L, L), bool)), "random": random, "dead row": dead}


MASKS = _masks()
SETTINGS = [(nf, act, m) for nf in (False, True) for act in ("relu", "gelu") for m in MASKS]


@pytest.mark.parametrize("norm_first,activation,mask_kind", SETTINGS)
def test_reference_matches_torch_encoder_layer(norm_first, activation, mask_kind):
    """Our NumPy block equals nn.TransformerEncoderLayer(src_mask=~mask) on every row that sees a key (and the
    oracle, which copies the weights by name, equals the layer itself)."""
    layer, sd = _layer(norm_first, activation)
    x = torch.randn(B, L, E, dtype=torch.float64)
    mask = None if MASKS[mask_kind] is None else torch.from_numpy(MASKS[mask_kind])
    with torch.no_grad():
        theirs = layer(x, src_mask=None if mask is None else ~mask)
    ours = torch.from_numpy(ref.encoder_block(sd, x, mask, H, norm_first, activation))
    seen = torch.ones(L, dtype=torch.bool) if mask is None else mask.any(dim=-1)
    torch.testing.assert_close(ours[:, seen], theirs[:, seen], rtol=1e-12, atol=1e-12)
    oracle = ref.torch_oracle(sd, x, mask, H, norm_first, activation)
    torch.testing.assert_close(oracle, theirs, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("norm_first", [False, True])
def test_dead_row_follows_the_course_rule(norm_first):
    """A query that sees no key: zero weights, so the attention sub-layer gives out_proj.bias (never NaN)."""
    _, sd = _layer(norm_first, "relu")
    x = torch.randn(B, L, E, dtype=torch.float64)
    mask = torch.from_numpy(MASKS["dead row"])
    out = ref.encoder_block(sd, x, mask, H, norm_first, "relu")
    assert np.isfinite(out).all()
    # a dead row's output is what the block gives a position whose heads output zero: the same position
    # alone, either fully masked or unmasked with v_proj zeroed (weights summing to 1 over zero values)
    p = {k: v.numpy() for k, v in sd.items()}
    x4 = x.numpy()[:, 4:5]
    dead_only = np.zeros((1, 1), bool)
    one_row = ref.encoder_block(p, x4, dead_only, H, norm_first, "relu")
    p_zero_v = dict(p, **{"v_proj.weight": 0 * p["v_proj.weight"], "v_proj.bias": 0 * p["v_proj.bias"]})
    np.testing.assert_allclose(one_row, ref.encoder_block(p_zero_v, x4, None, H, norm_first, "relu"), rtol=1e-13)
    np.testing.assert_allclose(out[:, 4:5], one_row, rtol=1e-13, atol=1e-13)


def test_solution_agrees_with_reference_in_float64():
    with solutions_package() as load:
        block = load("transformer").TransformerBlock(E, H, D_FF, norm_first=True, activation="gelu").double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(B, L, E, dtype=torch.float64)
        mask = torch.from_numpy(MASKS["dead row"])
        got = block(x, mask=mask)
    want = ref.encoder_block(block.state_dict(), x, mask, H, True, "gelu")
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_reference_stand_in_builds_the_documented_module():
    block = ref.TransformerBlock(E, H, D_FF)
    assert isinstance(block, nn.Module)
    assert [k for k in block.state_dict()] == [f"{n}.{p}" for n in ref.KEYS for p in ("weight", "bias")]


# ------------------------------------------------------------------------------- PyTorch's attention
MHA_SUBMISSION = '''
import torch
from torch import nn


class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, activation="relu"):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)

    def forward(self, x, mask=None):
        return self.attn(x, x, x, attn_mask=None if mask is None else ~mask, need_weights=False)[0]
'''

# Keeps the documented parameters and reaches PyTorch's attention only inside forward.
MHA_FORWARD_SUBMISSION = '''
import torch
import torch.nn.functional as F
from torch import nn


class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, activation="relu"):
        super().__init__()
        self.num_heads, self.norm_first, self.activation = num_heads, norm_first, activation
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.ff1, self.ff2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def attend(self, h, mask):
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        out, _ = F.multi_head_attention_forward(
            h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), h.shape[-1], self.num_heads, w, b,
            None, None, False, 0.0, self.out_proj.weight, self.out_proj.bias,
            attn_mask=None if mask is None else ~mask, need_weights=False)
        return out.transpose(0, 1)

    def forward(self, x, mask=None):
        act = F.relu if self.activation == "relu" else F.gelu
        if self.norm_first:
            x = x + self.attend(self.norm1(x), mask)
            return x + self.ff2(act(self.ff1(self.norm2(x))))
        x = self.norm1(x + self.attend(x, mask))
        return self.norm2(x + self.ff2(act(self.ff1(x))))
'''


def _submission(tmp_path, text):
    dest = tmp_path / "sub"
    shutil.copytree(ROOT / "solutions" / "attnlab", dest / "attnlab")
    (dest / "attnlab" / "transformer.py").write_text(textwrap.dedent(text))
    return dest


def test_multihead_attention_is_forbidden_through_the_sandbox(tmp_path):
    report = grade_submission(_submission(tmp_path, MHA_SUBMISSION), ["transformer.TransformerBlock"])
    entry = report["exercises"][0]
    assert entry["status"] == "forbidden" and entry["points"] == 0.0, entry
    assert "MultiheadAttention" in " ".join(t["message"] for t in entry["tests"])


@pytest.mark.parametrize("text", [MHA_SUBMISSION, MHA_FORWARD_SUBMISSION], ids=["nn.MultiheadAttention",
                                                                               "F.multi_head_attention_forward"])
def test_runtime_detection_catches_it_without_the_source_scan(tmp_path, text):
    """The worker's own line (profile hook and operator watch) catches the call even when the judge's source
    scan is switched off."""
    exercise = dataclasses.replace(registry.get("transformer.TransformerBlock"), scan_names=())
    sub = _submission(tmp_path, text)
    backend = SandboxBackend(sub, exercises=[exercise])
    try:
        entry = grade_exercise(exercise, backend)
    finally:
        backend.close()
    assert entry["status"] == "forbidden" and entry["points"] == 0.0, entry
    assert "calls torch." in " ".join(t["message"] for t in entry["tests"])  # the worker's line, not the scan
