"""FlashAttention's forward pass as a Triton kernel: the course's GPU kernel, timed by `attnlab bench`.

The same algorithm as ``tiled_attention`` (notebook 08), written one level lower. Each Triton *program* owns
one query block of one (batch, head) pair, the parallelisation of FlashAttention-2 (Dao 2023): the grid is
(query blocks, B * H). A program loads its queries once, then walks the key blocks with the online softmax,
keeping the running max ``m``, the running sum ``l`` and the accumulator in registers; only the output and
the log-sum-exp are written back. Scores are in base-2 units (q k^T times ``scale * log2 e``) so ``exp2`` is
the exponential, as in FlashAttention-2's CUDA code. Causal programs stop at the last key block they can see.

Forward only (no autograd). Inputs: float32 (products in full float32 precision, ``input_precision="ieee"``;
no TF32), float16 or bfloat16 (products on tensor cores, accumulated in float32). Shapes as
``tiled_attention``: q (..., L, D), k (..., S, D), v (..., S, D_v), leading dims broadcast, L != S allowed,
end-aligned causal rule (query i sees keys j <= i + S - L); a query that sees no key gets output 0 and lse
-inf. Returns (output in q's dtype, lse in float32).

It needs the ``triton`` package and a CUDA GPU. On a machine without one, Triton's interpreter runs the same
kernel on CPU tensors, slowly, when the environment has ``TRITON_INTERPRET=1`` before ``triton`` is first
imported: that is how the tests check it on CPU-only machines (tests/test_triton_flash.py).
"""
import functools
import math
import os

LOG2E = 1.4426950408889634  # log2(e)
BLOCKS = ((64, 64), (128, 64))  # (block_q, block_k) candidates for `attnlab bench`


def interpreting():
    """True when Triton's interpreter is on (TRITON_INTERPRET=1): kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def status():
    """(usable, reason): whether ``triton_attention`` can run here, and why not when it cannot."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return False, f"triton is not installed ({exc}; pip install triton, Linux only)"
    if interpreting():
        return True, "Triton interpreter (TRITON_INTERPRET=1), CPU tensors"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU (torch.cuda.is_available() is False) and TRITON_INTERPRET is not set"
    return True, f"CUDA: {torch.cuda.get_device_name()}"


@functools.cache
def _kernel():
    """(triton, the @triton.jit kernel), built once, on first use (so triton is imported only then)."""
    import triton
    import triton.language as tl

    @triton.jit
    def attention_forward(Q, K, V, O, LSE, L, S, D, D_V, offset, qk_scale,
                          CAUSAL: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, PRECISION: tl.constexpr):
        # this program: query block `block` of the flattened (batch, head) pair `pair`
        block = tl.program_id(0)
        pair = tl.program_id(1).to(tl.int64)
        rows = block * BLOCK_Q + tl.arange(0, BLOCK_Q)  # (BLOCK_Q,) query indices
        d = tl.arange(0, BLOCK_D)  # D padded to a power of two >= 16; the padding loads zeros
        dv = tl.arange(0, BLOCK_DV)
        q = tl.load(Q + pair * L * D + rows[:, None] * D + d[None, :],
                    mask=(rows[:, None] < L) & (d[None, :] < D), other=0.0)  # (BLOCK_Q, BLOCK_D)
        m = tl.full([BLOCK_Q], float("-inf"), tl.float32)  # running max, base-2 units
        l = tl.zeros([BLOCK_Q], tl.float32)  # running sum of 2^(s - m)
        acc = tl.zeros([BLOCK_Q, BLOCK_DV], tl.float32)  # running sum of 2^(s - m) v
        end = S
        if CAUSAL:  # the block's last query sees keys up to (block + 1) * BLOCK_Q - 1 + offset
            end = tl.minimum(S, (block + 1) * BLOCK_Q + offset)
        for start in range(0, end, BLOCK_K):
            cols = start + tl.arange(0, BLOCK_K)  # (BLOCK_K,) key indices
            kt = tl.load(K + pair * S * D + cols[None, :] * D + d[:, None],
                         mask=(cols[None, :] < S) & (d[:, None] < D), other=0.0)  # (BLOCK_D, BLOCK_K): k^T
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_Q, BLOCK_K), base-2 units
            visible = cols[None, :] < S
            if CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None] + offset)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing yet: 0
            c = tl.exp2(m - shift)  # rescales the old state; 0 when m was -inf
            p = tl.exp2(s - shift[:, None])
            l = l * c + tl.sum(p, 1)
            v = tl.load(V + pair * S * D_V + cols[:, None] * D_V + dv[None, :],
                        mask=(cols[:, None] < S) & (dv[None, :] < D_V), other=0.0)  # (BLOCK_K, BLOCK_DV)
            acc = acc * c[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m = m_new
        seen = l > 0
        safe_l = tl.where(seen, l, 1.0)
        out = (acc / safe_l[:, None]).to(O.dtype.element_ty)
        tl.store(O + pair * L * D_V + rows[:, None] * D_V + dv[None, :], out,
                 mask=(rows[:, None] < L) & (dv[None, :] < D_V))
        lse = tl.where(seen, (m + tl.log2(safe_l)) * 0.6931471805599453, float("-inf"))  # times ln 2: natural log
        tl.store(LSE + pair * L + rows, lse, mask=rows < L)

    return triton, attention_forward


def triton_attention(q, k, v, block_q=64, block_k=64, causal=False, scale=None):
    """Attention by FlashAttention's forward pass in one Triton kernel (see the module docstring).

    Parameters
    ----------
    q, k, v : Tensor, shapes (..., L, D), (..., S, D), (..., S, D_v); float32, float16 or bfloat16, on a CUDA
        device (or the CPU under TRITON_INTERPRET=1).
    block_q, block_k : int
        Queries per program and keys per step: powers of two >= 16 (``tl.dot`` needs at least 16).
    causal : bool
        End-aligned causal rule: query i sees keys j <= i + S - L.
    scale : float, optional
        Multiplies q k^T; default 1 / sqrt(D).

    Returns
    -------
    output : Tensor (..., L, D_v), q's dtype
    lse : Tensor (..., L), float32 (natural log; -inf for a query that sees no key)
    """
    import torch

    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"triton_attention takes float32, float16 or bfloat16 q, k, v of one dtype; got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if q.device.type != "cuda" and not interpreting():
        raise ValueError(f"triton_attention runs on a CUDA GPU; got tensors on {q.device} (on a CPU, set "
                         "TRITON_INTERPRET=1 before importing triton to run Triton's interpreter)")
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if size < 16 or size & (size - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {size}")
    triton, kernel = _kernel()
    L, S, D, D_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if k.shape[-1] != D or v.shape[-2] != S:
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    n = math.prod(lead)
    if n > 65535:  # CUDA's limit on the grid's second axis, which holds the (batch, head) pairs
        raise ValueError(f"triton_attention takes at most 65535 (batch, head) pairs, got {n}")
    qf, kf, vf = (x.detach().expand(lead + x.shape[-2:]).reshape(n, *x.shape[-2:]).contiguous() for x in (q, k, v))
    output = torch.empty(n, L, D_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(n, L, dtype=torch.float32, device=q.device)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if n and L:
        kernel[(triton.cdiv(L, block_q), n)](
            qf, kf, vf, output, lse, L, S, D, D_v, S - L, scale * LOG2E, CAUSAL=bool(causal),
            BLOCK_Q=block_q, BLOCK_K=block_k, BLOCK_D=max(16, triton.next_power_of_2(D)),
            BLOCK_DV=max(16, triton.next_power_of_2(D_v)), PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return output.reshape(lead + (L, D_v)), lse.reshape(lead + (L,))
