"""SageAttention-style attention in Triton; same signatures and arithmetic as attention_reference.py.

Two kernels: per-block int8 quantisation (smooth-K mean subtracted and sm_scale * log2(e) folded in
on the fly, so the caller's tensors are only read), and a flash-style attention over int8 Q/K
blocks with an exp2 online softmax, P rounded to fp16 (bf16 for bf16 inputs) and P.V accumulated
in fp32. `_attend_key_block` is shared with the block-sparse SLA kernel in sla_triton.py, which
also runs it on float Q/K. This module imports triton: the dispatcher in attention.py imports it
lazily. Head dims must be powers of two (64 and 128 are the supported ones).
"""
import torch
import triton
import triton.language as tl

from . import attention_reference as reference

BLOCK_M = reference.BLOCK_Q
BLOCK_N = reference.BLOCK_K
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


@triton.jit
def _quantize_kernel(x_ptr, mean_ptr, out_ptr, scale_ptr, length, n_blocks, prescale,
                     HAS_MEAN: tl.constexpr, BLOCK: tl.constexpr, D: tl.constexpr):
    block, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = block * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, D)
    mask = rows[:, None] < length
    offsets = bh * length * D + rows[:, None] * D + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_MEAN:
        x = x - tl.load(mean_ptr + bh * D + cols)[None, :]
    x = tl.where(mask, x * prescale, 0.0)
    scale = tl.max(tl.max(tl.abs(x), axis=1), axis=0) / 127.0
    safe = tl.where(scale > 0, scale, 1.0)
    y = x / safe
    y = tl.where(y >= 0, tl.floor(y + 0.5), tl.ceil(y - 0.5))
    y = tl.minimum(tl.maximum(y, -127.0), 127.0)
    tl.store(out_ptr + offsets, y.to(tl.int8), mask=mask)
    tl.store(scale_ptr + bh * n_blocks + block, scale)


@triton.jit
def _attend_key_block(acc, m_i, l_i, q, q_scale, k_base, v_base, k_scale_ptr, block, k_len,
                      QUANT: tl.constexpr, PV_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
                      BLOCK_N: tl.constexpr, D: tl.constexpr):
    """One online-softmax step of a query block over key block `block` (log2-domain logits)."""
    keys = block * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, D)
    valid = keys < k_len
    k = tl.load(k_base + keys[:, None] * D + cols[None, :], mask=valid[:, None], other=0)
    if QUANT:
        s = tl.dot(q, tl.trans(k)).to(tl.float32) * (q_scale * tl.load(k_scale_ptr + block))
    else:
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * q_scale
    s = tl.where(valid[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))  # finite: every key block holds a valid key
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    v = tl.load(v_base + keys[:, None] * D + cols[None, :], mask=valid[:, None], other=0.0)
    pv = tl.dot(p.to(PV_DTYPE), v.to(PV_DTYPE), input_precision=PRECISION)
    return acc * alpha[:, None] + pv, m_new, l_i


@triton.jit
def _sage_kernel(q_ptr, q_scale_ptr, k_ptr, k_scale_ptr, v_ptr, o_ptr, q_len, k_len, q_blocks, k_blocks,
                 PV_DTYPE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr):
    block, bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, D)
    q_offsets = bh * q_len * D + rows[:, None] * D + cols[None, :]
    q = tl.load(q_ptr + q_offsets, mask=rows[:, None] < q_len, other=0)
    q_scale = tl.load(q_scale_ptr + bh * q_blocks + block)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    kv_base = bh * k_len * D
    for j in range(0, k_blocks):
        acc, m_i, l_i = _attend_key_block(acc, m_i, l_i, q, q_scale, k_ptr + kv_base, v_ptr + kv_base,
                                          k_scale_ptr + bh * k_blocks, j, k_len,
                                          True, PV_DTYPE, "tf32", BLOCK_N, D)
    tl.store(o_ptr + q_offsets, acc / l_i[:, None], mask=rows[:, None] < q_len)


def _check(q, k, v):
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k, v must be (batch, heads, tokens, head_dim) with matching batch, heads and "
                         f"head_dim; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    d = q.shape[-1]
    if d < 16 or d & (d - 1):
        raise ValueError(f"the Triton attention kernels take power-of-two head dims >= 16; got {d}")
    if q.dtype not in _TL_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one of {list(_TL_DTYPES)}; got {q.dtype}, {k.dtype}, {v.dtype}")


def quantize_per_block(x, block, mean=None, prescale=1.0):
    """Same as attention_reference.quantize_per_block, in one Triton kernel."""
    x = x.contiguous()
    b, h, length, d = x.shape
    n_blocks = triton.cdiv(length, block)
    values = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    scales = torch.empty(b, h, n_blocks, dtype=torch.float32, device=x.device)
    mean_arg = x if mean is None else mean.float().expand(b, h, 1, d).contiguous()
    _quantize_kernel[(n_blocks, b * h)](x, mean_arg, values, scales, length, n_blocks, float(prescale),
                                        HAS_MEAN=mean is not None, BLOCK=block, D=d)
    return values, scales


def quantized_qk(q, k, scale=None, block_q=BLOCK_M, block_k=BLOCK_N):
    """(q int8, q scales, k int8, k scales): Q with sm_scale * log2(e) folded in, K smoothed; one scale per
    block of block_q query / block_k key tokens."""
    qk_scale = reference.softmax_scale(q, scale) * reference.LOG2E
    q8, q_scales = quantize_per_block(q, block_q, prescale=qk_scale)
    k8, k_scales = quantize_per_block(k, block_k, mean=reference.key_mean(k))
    return q8, q_scales, k8, k_scales


def pv_dtype(dtype):
    return _TL_DTYPES[reference.pv_dtype(dtype)]


def sage_attention(q, k, v, scale=None) -> torch.Tensor:
    """SageAttention-style INT8 QK / fp16 PV attention, in q's dtype; q, k, v are only read."""
    _check(q, k, v)
    q8, q_scales, k8, k_scales = quantized_qk(q, k, scale)
    v = v.contiguous()
    b, h, q_len, d = q.shape
    out = torch.empty(b, h, q_len, d, dtype=torch.float32, device=q.device)
    grid = (q_scales.shape[-1], b * h)
    _sage_kernel[grid](q8, q_scales, k8, k_scales, v, out, q_len, k.shape[2], q_scales.shape[-1],
                       k_scales.shape[-1], PV_DTYPE=pv_dtype(v.dtype), BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, D=d,
                       num_warps=8 if d > 64 else 4)
    return out.to(q.dtype)
