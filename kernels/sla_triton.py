"""SLA's sparse branch in Triton: flash attention of each query block over only its selected key blocks.

The block map (pooled q against pooled mean-centred k, top-k per query block) and the linear branch
are a few small matmuls and stay in torch (attention_reference.py); the O(N^2) part is this kernel.
Float Q/K (SLA) or per-block int8 Q/K with smooth-K (SageSLA) share the online-softmax step with
sage_triton.py. Same signatures as the reference; imports triton (attention.py loads it lazily).
"""
import torch
import triton
import triton.language as tl

from . import attention_reference as reference
from .sage_triton import _attend_key_block, _check, pv_dtype, quantized_qk


@triton.jit
def _sparse_kernel(q_ptr, q_scale_ptr, k_ptr, k_scale_ptr, v_ptr, lut_ptr, o_ptr, q_len, k_len, q_blocks,
                   k_blocks, topk, qk_scale, QUANT: tl.constexpr, PV_DTYPE: tl.constexpr,
                   PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
                   D: tl.constexpr):
    # each program takes ROWS of the BLOCK_M query rows that share one LUT row (ROWS divides BLOCK_M)
    program, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    block = program // (BLOCK_M // ROWS)
    rows = block * BLOCK_M + (program % (BLOCK_M // ROWS)) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, D)
    q_offsets = bh * q_len * D + rows[:, None] * D + cols[None, :]
    q = tl.load(q_ptr + q_offsets, mask=rows[:, None] < q_len, other=0)
    if QUANT:
        q_scale = tl.load(q_scale_ptr + bh * q_blocks + block)
    else:
        q_scale = qk_scale
    m_i = tl.full([ROWS], float("-inf"), tl.float32)
    l_i = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    kv_base = bh * k_len * D
    lut_row = lut_ptr + (bh * q_blocks + block) * topk
    for t in range(0, topk):
        j = tl.load(lut_row + t)
        acc, m_i, l_i = _attend_key_block(acc, m_i, l_i, q, q_scale, k_ptr + kv_base, v_ptr + kv_base,
                                          k_scale_ptr + bh * k_blocks, j, k_len,
                                          QUANT, PV_DTYPE, PRECISION, BLOCK_N, D)
    tl.store(o_ptr + q_offsets, acc / l_i[:, None], mask=rows[:, None] < q_len)


def _operands(q, k, v, scale, quantized, block_q, block_k):
    """(q, q scales, k, k scales, v, qk_scale, P.V dtype, dot precision) as the kernel takes them."""
    if quantized:
        q8, q_scales, k8, k_scales = quantized_qk(q, k, scale, block_q, block_k)
        return q8, q_scales, k8, k_scales, v.contiguous(), 1.0, pv_dtype(v.dtype), "tf32"
    qk_scale = reference.softmax_scale(q, scale) * reference.LOG2E
    # fp32 inputs keep fp32 products (no tf32 rounding): the sparse branch must match exact attention.
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    dtype = tl.float32 if q.dtype == torch.float32 else pv_dtype(q.dtype)
    return q.contiguous(), q, k.contiguous(), q, v.contiguous(), qk_scale, dtype, precision


def _program_shape(quantized: bool, dtype: torch.dtype, block_q: int) -> tuple[int, int]:
    """(query rows per program, pipeline stages). fp32 "ieee" products stage Q, K and V as fp32 in
    shared memory: 128 rows x 3 stages need 128 KB (D 64) / 225 KB (D 128), over the 99 KB per block
    of sm_89 / sm_120 (and sm_80's 163 KB at D 128); 64 rows x 1 stage need 48 / 80 KB (bench/gpu_suite.py
    --compile prints every configuration). The bf16 / fp16 / int8 paths keep all rows and 3 stages."""
    return (min(64, block_q), 1) if not quantized and dtype == torch.float32 else (block_q, 3)


def block_attention(q, k, v, scale=None, lut=None, quantized=False,
                    block_q=reference.BLOCK_Q, block_k=reference.BLOCK_K):
    """attention_reference.block_attention in Triton (lut None: every key block); block sizes are powers
    of two >= 16 (128 / 64 by default; TurboDiffusion's SageSLA takes 64 / 128 on Hopper)."""
    _check(q, k, v)
    for size in (block_q, block_k):
        if size < 16 or size & (size - 1):
            raise ValueError(f"the Triton kernels take power-of-two blocks >= 16; got {block_q} and {block_k}")
    b, h, q_len, d = q.shape
    q_blocks, k_blocks = triton.cdiv(q_len, block_q), triton.cdiv(k.shape[2], block_k)
    if lut is None:
        lut = torch.arange(k_blocks, device=q.device).expand(b, h, q_blocks, k_blocks)
    lut = lut.to(torch.int32).contiguous()
    q_, q_s, k_, k_s, v_, qk_scale, dtype, precision = _operands(q, k, v, scale, quantized, block_q, block_k)
    out = torch.empty(b, h, q_len, d, dtype=torch.float32, device=q.device)
    rows, stages = _program_shape(quantized, q.dtype, block_q)
    _sparse_kernel[(q_blocks * (block_q // rows), b * h)](
        q_, q_s, k_, k_s, v_, lut, out, q_len, k.shape[2], q_blocks, k_blocks, lut.shape[-1], qk_scale,
        QUANT=quantized, PV_DTYPE=dtype, PRECISION=precision, BLOCK_M=block_q, ROWS=rows, BLOCK_N=block_k, D=d,
        num_warps=8 if d > 64 else 4, num_stages=stages,
    )
    return out


def sla_attention(q, k, v, topk=0.1, proj_l=None, quantized=False, scale=None, linear_keys="rest",
                  block_q=reference.BLOCK_Q, block_k=reference.BLOCK_K) -> torch.Tensor:
    """SLA (SageSLA when quantized): the Triton sparse branch plus the torch block map and linear branch."""
    return reference.sla_attention(q, k, v, topk, proj_l, quantized, scale, block_q, block_k,
                                   sparse=block_attention, linear_keys=linear_keys)
