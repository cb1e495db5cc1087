"""Our NumPy references against PyTorch's built-ins (the independent oracle), and the solutions against both."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from autograde.references import attention as ref_attention  # noqa: E402
from autograde.references import masks as ref_masks  # noqa: E402
from autograde.references import scoring as ref_scoring  # noqa: E402
from autograde.references import softmax as ref_softmax  # noqa: E402
from conftest import solutions_package  # noqa: E402

RNG = np.random.default_rng(1234)


@pytest.mark.parametrize("shape,axis", [((7,), -1), ((2, 3, 5, 7), -1), ((4, 6, 3), 0), ((4, 6, 3), 1)])
def test_softmax_matches_torch(shape, axis):
    x = RNG.standard_normal(shape) * 30
    np.testing.assert_allclose(ref_softmax.softmax(x, axis), torch.softmax(torch.from_numpy(x), axis).numpy(),
                               rtol=1e-12, atol=1e-15)


def test_masked_softmax_matches_torch_and_zeroes_dead_rows():
    x = RNG.standard_normal((2, 5, 7))
    mask = RNG.random((2, 5, 7)) < 0.5
    mask[0, 1] = False
    expected = torch.softmax(torch.from_numpy(x).masked_fill(~torch.from_numpy(mask), float("-inf")), -1)
    expected = torch.nan_to_num(expected, nan=0.0).numpy()
    np.testing.assert_allclose(ref_softmax.masked_softmax(x, mask), expected, rtol=1e-12, atol=1e-15)
    assert not ref_softmax.masked_softmax(x, mask)[0, 1].any()


def test_scoring_matches_torch():
    q, k = RNG.standard_normal((2, 3, 5, 4)), RNG.standard_normal((2, 3, 7, 4))
    tq, tk = torch.from_numpy(q), torch.from_numpy(k)
    np.testing.assert_allclose(ref_scoring.dot_scores(q, k), (tq @ tk.transpose(-1, -2)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ref_scoring.scaled_dot_scores(q, k), (tq @ tk.transpose(-1, -2) / 2.0).numpy(),
                               rtol=1e-12)
    W = RNG.standard_normal((4, 3))
    k3 = RNG.standard_normal((2, 3, 7, 3))
    np.testing.assert_allclose(ref_scoring.general_scores(q, k3, W),
                               (tq @ torch.from_numpy(W) @ torch.from_numpy(k3).transpose(-1, -2)).numpy(), rtol=1e-12)
    W_q, W_k, w_v = RNG.standard_normal((4, 6)), RNG.standard_normal((3, 6)), RNG.standard_normal(6)
    hidden = torch.tanh((tq @ torch.from_numpy(W_q)).unsqueeze(-2) + (torch.from_numpy(k3) @ torch.from_numpy(W_k)).unsqueeze(-3))
    np.testing.assert_allclose(ref_scoring.additive_scores(q, k3, W_q, W_k, w_v), (hidden @ torch.from_numpy(w_v)).numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize("L,S", [(5, 5), (3, 7), (6, 2)])
def test_causal_mask_matches_an_end_aligned_torch_tril(L, S):
    expected = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L).numpy()
    np.testing.assert_array_equal(ref_masks.causal_mask(L, S), expected)


def test_causal_mask_equals_torch_is_causal_only_when_square():
    q, k, v = (torch.from_numpy(RNG.standard_normal(s)) for s in ((3, 4), (7, 4), (7, 6)))
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(ref_masks.causal_mask(3, 7)))
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.allclose(ours, theirs)
    q5 = torch.from_numpy(RNG.standard_normal((5, 4)))
    k5, v5 = k[:5], v[:5]
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q5, k5, v5, attn_mask=torch.from_numpy(ref_masks.causal_mask(5))),
        F.scaled_dot_product_attention(q5, k5, v5, is_causal=True))


@pytest.mark.parametrize("mask_kind", [None, "causal", "padding", "dead rows"])
def test_attention_reference_matches_torch_sdpa(mask_kind):
    q, k, v = RNG.standard_normal((2, 3, 5, 4)), RNG.standard_normal((2, 3, 7, 4)), RNG.standard_normal((2, 3, 7, 6))
    mask = {None: None, "causal": ref_masks.causal_mask(5, 7),
            "padding": ref_masks.padding_mask(np.array([3, 7]), 7)[:, None, None, :],
            "dead rows": np.concatenate([np.zeros((2, 7), bool), np.ones((3, 7), bool)])}[mask_kind]
    out, weights = ref_attention.scaled_dot_product_attention(q, k, v, mask)
    t_out, t_weights = ref_attention.torch_oracle(q, k, v, mask)
    np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights, t_weights, rtol=1e-10, atol=1e-12)


def test_solutions_agree_with_references():
    with solutions_package() as load:
        attention, softmax = load("attention"), load("softmax")
        q, k, v = RNG.standard_normal((2, 5, 4)), RNG.standard_normal((2, 7, 4)), RNG.standard_normal((2, 7, 6))
        np.testing.assert_allclose(attention.scaled_dot_product_attention(q, k, v)[0],
                                   ref_attention.scaled_dot_product_attention(q, k, v)[0], rtol=1e-12)
        x = RNG.standard_normal((3, 9)) * 1e3
        np.testing.assert_allclose(softmax.softmax(x), ref_softmax.softmax(x), rtol=1e-12, atol=1e-300)


def test_forbidden_specs_name_the_real_torch_objects():
    """The worker recognises a built-in by its own __module__/__qualname__: aliases cannot rename it."""
    from autograde.graders.attention import FORBID_TORCH_ATTENTION

    sdpa = F.scaled_dot_product_attention
    module = sdpa.__module__
    assert any(module == p or module.startswith(p + ".") for p, name in FORBID_TORCH_ATTENTION
               if name in sdpa.__qualname__)
    for func in (torch.softmax, F.softmax, torch.special.softmax, torch.Tensor.softmax, F.log_softmax):
        qualname = getattr(func, "__qualname__", func.__name__)
        assert any(name in qualname for p, name in FORBID_TORCH_ATTENTION), qualname
