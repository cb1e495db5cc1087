"""positions: the references agree with the published code they stand for, and the grader's claims hold.

- T5 buckets: the exact-integer reference equals T5's published bucketing (Hugging Face's transcription of
  the Mesh TensorFlow code, float32 logs, run in torch) over hundreds of configurations;
- ALiBi slopes: the reference equals the paper's closed form for powers of two and its worked example for 6;
- RoPE: the complex-number reference equals the rotate-half layout as Hugging Face's Llama code writes it
  (in torch), keeps norms, and gives scores that depend on m - n only;
- sinusoidal encodings: equal to the PyTorch tutorial's table, and shifted positions are a fixed rotation.
"""
import math

import numpy as np
import pytest

from autograde.graders import positions as grader
from autograde.references import positions as ref

torch = pytest.importorskip("torch")


def t5_published(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5Attention._relative_position_bucket from Hugging Face transformers, verbatim but for names."""
    relative_position = torch.as_tensor(relative_position)
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(relative_position_if_large,
                                           torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets.numpy()


def test_exact_bucket_reference_equals_t5s_published_code():
    rel = np.arange(-1500, 1501)
    configs = 0
    for bidirectional in (True, False):
        for num_buckets in (4, 6, 8, 10, 12, 16, 20, 24, 32, 64):
            for max_distance in (8, 16, 20, 24, 32, 40, 50, 64, 100, 128, 256, 1000):
                if max_distance <= (num_buckets // 2 if bidirectional else num_buckets) // 2:
                    continue  # log(max_distance / max_exact) <= 0: outside T5's domain
                want = t5_published(rel, bidirectional, num_buckets, max_distance)
                got = ref.relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
                np.testing.assert_array_equal(got, want, err_msg=f"{bidirectional}, {num_buckets}, {max_distance}")
                configs += 1
    assert configs > 200


def test_t5_defaults_worked_values():
    rel = np.array([-200, -64, -63, -32, -16, -8, -7, -1, 0, 1, 7, 8, 16, 32, 63, 64, 200])
    assert ref.relative_position_bucket(rel).tolist() == [15, 14, 13, 12, 10, 8, 7, 1, 0, 17, 23, 24, 26, 28, 29,
                                                          30, 31]
    assert ref.relative_position_bucket(rel, bidirectional=False).tolist() == [31, 26, 26, 21, 16, 8, 7, 1, 0, 0, 0,
                                                                               0, 0, 0, 0, 0, 0]


def test_the_folded_constant_mutant_is_one_bucket_low_exactly_where_t5_is_a_whole_number():
    mutant = next(m for m in grader.bucket.mutants if m.name == "constant folded first").func
    rel = np.arange(-300, 301)
    differ = rel[mutant(rel) != t5_published(rel)]
    assert differ.tolist() == [-64, 64]  # log(8) / log(16) * 8 = 6 exactly: T5 gives bucket 14, the mutant 13


def test_alibi_slopes_reference():
    for H in (1, 2, 4, 8, 16, 32):
        np.testing.assert_allclose(ref.alibi_slopes(H), 2.0 ** (-8.0 * np.arange(1, H + 1) / H), rtol=1e-13)
    np.testing.assert_array_equal(ref.alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])
    for H in range(1, 70):  # every slope distinct, in (0, 1)
        s = ref.alibi_slopes(H)
        assert s.shape == (H,) and len(set(s.tolist())) == H and (s > 0).all() and (s < 1).all()


def test_alibi_bias_reference_is_end_aligned():
    b = ref.alibi_bias(6, 3, 7)
    assert b.shape == (6, 3, 7)
    assert (b[:, -1, -1] == 0).all() and (b[:, 0, 4] == 0).all()  # query i sits at position i + 4
    np.testing.assert_allclose(b[:, 0, 0], -4 * ref.alibi_slopes(6))


def hf_rotate_half_rope(x, positions, base=10000.0):
    """Hugging Face Llama's rotary embedding (rotate_half, cat(freqs, freqs)), in torch float64."""
    x = torch.as_tensor(x, dtype=torch.float64)
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.as_tensor(positions, dtype=torch.float64)[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)

    def rotate_half(v):
        return torch.cat((-v[..., D // 2:], v[..., : D // 2]), dim=-1)

    return (x * emb.cos() + rotate_half(x) * emb.sin()).numpy()


def test_complex_rope_reference_equals_rotate_half_layout():
    rng = np.random.default_rng(0)
    for shape, positions, base in [((2, 3, 5, 8), np.arange(5), 10000.0), ((7, 6), np.arange(100, 107), 10000.0),
                                   ((2, 3, 5, 10), np.array([[[0, 0, 0, 1, 2]], [[0, 1, 2, 3, 4]]]), 10000.0),
                                   ((4, 12), np.array([0.0, 0.25, 3.5, 900.0]), 500.0)]:
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(ref.apply_rope(x, positions, base), hf_rotate_half_rope(x, positions, base),
                                   rtol=1e-12, atol=1e-12)


def test_rope_reference_keeps_norms_and_relative_scores():
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    m = np.array([5, 12, 300, 4000])
    rq, rk = ref.apply_rope(np.tile(q, (4, 1)), m), ref.apply_rope(np.tile(k, (4, 1)), m - 5)
    np.testing.assert_allclose(np.linalg.norm(rq, axis=-1), np.linalg.norm(q), rtol=1e-12)
    scores = (rq * rk).sum(-1)
    assert np.ptp(scores) < 1e-9
    assert abs(scores[0] - q @ ref.apply_rope(k[None], np.array([-5]))[0]) < 1e-9  # = q . rope(k, n - m)


def test_sinusoidal_reference_equals_the_pytorch_tutorial_table_and_shifts_by_a_rotation():
    L, E = 50, 16
    position = torch.arange(L, dtype=torch.float64)[:, None]
    div_term = torch.exp(torch.arange(0, E, 2, dtype=torch.float64) * (-math.log(10000.0) / E))
    pe = torch.zeros(L, E, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position * div_term), torch.cos(position * div_term)
    ours = ref.sinusoidal_positional_encoding(L, E)
    np.testing.assert_allclose(ours, pe.numpy(), atol=1e-12)
    k = 7  # pe[pos + k] = pe[pos] @ M_k, with M_k block-diagonal 2x2 rotations that do not depend on pos
    M = np.zeros((E, E))
    for i, w in enumerate(div_term.numpy()):
        c, s = np.cos(k * w), np.sin(k * w)
        M[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[c, -s], [s, c]]
    np.testing.assert_allclose(ours[:-k] @ M, ours[k:], atol=1e-10)


def test_grader_has_the_required_catalogue():
    for exercise in grader.EXERCISES:
        assert len(exercise.mutants) >= 6, exercise.id
        assert 2 <= len(exercise.alternatives) <= 3, exercise.id
        assert len(exercise.cases) >= 4, exercise.id
