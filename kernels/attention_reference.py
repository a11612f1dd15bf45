"""Torch references for the attention backends: exact, SageAttention-style INT8, SLA (sparse + linear).

Tensors are (batch, heads, tokens, head_dim). Logits live in the log2 domain (scale * log2(e) is
folded into q), as in the Triton kernels, so exp2 replaces exp. Query blocks of BLOCK_Q tokens and
key blocks of BLOCK_K tokens are the unit of quantisation (one scale per block over all head dims)
and of SLA's block selection; the last block of either may be short (any sequence length).

Sage: K is smoothed (its mean over tokens subtracted, which adds one constant per query row to the
logits and so leaves softmax unchanged), Q and K are quantised per block to int8 with scale
max|x| / 127, QK^T is an exact integer product times the two scales, P is rounded to fp16 (bf16
for bf16 inputs) before P.V, and P.V accumulates in fp32. The caller's K is never modified.

SLA: a block map from mean-pooled q and mean-centred k picks, per query block, the top-k key
blocks; the sparse branch is exact softmax attention over those blocks only; the linear branch
phi(q) (sum phi(k)^T v) / (eps + phi(q) . sum phi(k)), phi = softmax over head_dim, runs over the
blocks NOT selected; the output is o_sparse + proj_l(o_linear) with proj_l a Linear(D, D).
"""
import math

import torch
import torch.nn.functional as F

LOG2E = 1.4426950408889634
BLOCK_Q = 128
BLOCK_K = 64
INT8_MAX = 127.0
LINEAR_EPS = 1e-5
# Bounds one chunk of logits (batch * heads * rows * keys float32 values) to about 256 MiB.
_CHUNK_ELEMENTS = 64 * 1024 * 1024


def softmax_scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def exact_attention(q, k, v, scale=None) -> torch.Tensor:
    """Plain softmax attention (torch SDPA), the baseline every backend is measured against."""
    return F.scaled_dot_product_attention(q, k, v, scale=softmax_scale(q, scale))


def pv_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision P and V take in the P.V product: bf16 for bf16 inputs (range), else fp16."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float16


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (what the Triton kernel does, bit for bit)."""
    return torch.where(x >= 0, torch.floor(x + 0.5), torch.ceil(x - 0.5))


def _pad_tokens(x: torch.Tensor, block: int) -> torch.Tensor:
    pad = -x.shape[-2] % block
    return F.pad(x, (0, 0, 0, pad)) if pad else x


def quantize_per_block(x, block, mean=None, prescale=1.0):
    """int8 values (B, H, L, D) and float32 scales (B, H, ceil(L / block)) of (x - mean) * prescale."""
    x32 = x.float()
    if mean is not None:
        x32 = x32 - mean
    x32 = _pad_tokens(x32 * prescale, block)
    b, h, length, d = x32.shape
    blocks = x32.view(b, h, length // block, block, d)
    scales = blocks.abs().amax(dim=(-1, -2)) / INT8_MAX
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    values = round_half_away(blocks / safe[..., None, None]).clamp_(-INT8_MAX, INT8_MAX)
    return values.view(b, h, length, d)[:, :, : x.shape[-2]].to(torch.int8), scales


def key_mean(k: torch.Tensor) -> torch.Tensor:
    """Mean of k over tokens, (B, H, 1, D) float32: what smooth-K subtracts (without touching k)."""
    return k.float().mean(dim=-2, keepdim=True)


def _per_token(scales: torch.Tensor, block: int, length: int) -> torch.Tensor:
    return scales.repeat_interleave(block, dim=-1)[..., :length]


def _prepared(q, k, v, scale, quantized, block_q, block_k):
    """(q values, q token scales, k values, k token scales, v values, P rounding dtype) in float32."""
    qk_scale = softmax_scale(q, scale) * LOG2E
    if not quantized:
        return q.float() * qk_scale, None, k.float(), None, v.float(), None
    q8, q_scales = quantize_per_block(q, block_q, prescale=qk_scale)
    k8, k_scales = quantize_per_block(k, block_k, mean=key_mean(k))
    rounding = pv_dtype(v.dtype)
    return (q8.float(), _per_token(q_scales, block_q, q.shape[-2]), k8.float(),
            _per_token(k_scales, block_k, k.shape[-2]), v.to(rounding).float(), rounding)


def _softmax_pv(logits, v, rounding):
    """exp2-softmax of log2-domain logits times v; P rounded to `rounding` first when given."""
    p = torch.exp2(logits - logits.amax(dim=-1, keepdim=True))
    total = p.sum(dim=-1, keepdim=True)
    if rounding is not None:
        p = p.to(rounding).float()
    return (p @ v) / total


def _dense(q, q_s, k, k_s, v, rounding, rows):
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[-2], rows):
        logits = q[:, :, start:start + rows] @ k.transpose(-1, -2)
        if q_s is not None:
            logits = logits * q_s[:, :, start:start + rows, None] * k_s[:, :, None, :]
        out[:, :, start:start + rows] = _softmax_pv(logits, v, rounding)
    return out


def _gather_blocks(x, lut, block):
    """x (B, H, L, ...) -> (B, H, n, topk * block, ...) tokens of the key blocks listed in lut."""
    b, h, n, topk = lut.shape
    tokens = (lut[..., None] * block + torch.arange(block, device=lut.device)).view(b, h, n * topk * block)
    valid = tokens < x.shape[2]
    index = tokens.clamp(max=x.shape[2] - 1)
    index = index.view(b, h, -1, *([1] * (x.dim() - 3))).expand(b, h, -1, *x.shape[3:])
    gathered = torch.gather(x, 2, index)
    return gathered.view(b, h, n, topk * block, *x.shape[3:]), valid.view(b, h, n, topk * block)


def _sparse(q, q_s, k, k_s, v, rounding, lut, block_q, block_k, rows):
    """Softmax over only the key blocks in lut, per query block (gathered: cost ~ topk share)."""
    b, h, length, d = q.shape
    out = torch.empty(b, h, length, v.shape[-1], dtype=torch.float32, device=q.device)
    per_chunk = max(1, rows // block_q)
    for first in range(0, lut.shape[2], per_chunk):
        part = lut[:, :, first:first + per_chunk]
        start, stop = first * block_q, min(length, (first + part.shape[2]) * block_q)
        q_blocks = _pad_tokens(q[:, :, start:stop], block_q).view(b, h, part.shape[2], block_q, d)
        k_sel, valid = _gather_blocks(k, part, block_k)
        logits = q_blocks @ k_sel.transpose(-1, -2)
        if q_s is not None:
            qs = _pad_tokens(q_s[:, :, start:stop, None], block_q).view(b, h, part.shape[2], block_q, 1)
            logits = logits * qs * _gather_blocks(k_s[..., None], part, block_k)[0].transpose(-1, -2)
        logits = logits.masked_fill(~valid[:, :, :, None, :], float("-inf"))
        o = _softmax_pv(logits, _gather_blocks(v, part, block_k)[0], rounding)
        out[:, :, start:stop] = o.reshape(b, h, -1, v.shape[-1])[:, :, : stop - start]
    return out


def _chunk_rows(q, k, block_q):
    per_row = max(1, q.shape[0] * q.shape[1] * k.shape[-2])
    return max(block_q, _CHUNK_ELEMENTS // per_row // block_q * block_q)


def block_attention(q, k, v, scale=None, lut=None, quantized=False, block_q=BLOCK_Q, block_k=BLOCK_K):
    """Softmax attention (float32 out) over all keys, or over the key blocks in lut (B, H, NQ, topk).

    quantized=True is the Sage arithmetic (smooth K, per-block int8 Q/K, P rounded before P.V).
    """
    q_, q_s, k_, k_s, v_, rounding = _prepared(q, k, v, scale, quantized, block_q, block_k)
    rows = _chunk_rows(q, k, block_q)
    if lut is None:
        return _dense(q_, q_s, k_, k_s, v_, rounding, rows)
    return _sparse(q_, q_s, k_, k_s, v_, rounding, lut, block_q, block_k, rows)


def sage_attention(q, k, v, scale=None) -> torch.Tensor:
    """SageAttention-style INT8 QK / fp16 PV attention, in q's dtype."""
    return block_attention(q, k, v, scale, quantized=True).to(q.dtype)


def _block_counts(length: int, block: int, device) -> torch.Tensor:
    """Tokens in each block of `block` tokens (the last block may be short), float32 (NB, 1)."""
    counts = torch.full((-(-length // block), 1), float(block), device=device)
    counts[-1] = length - block * (counts.shape[0] - 1)
    return counts


def pool_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean over each block of `block` tokens (the short last block: over its own tokens)."""
    sums = _pad_tokens(x.float(), block).unflatten(-2, (-1, block)).sum(dim=-2)
    return sums / _block_counts(x.shape[-2], block, x.device)


def topk_blocks(topk_ratio: float, key_blocks: int) -> int:
    """How many key blocks every query block keeps: int(ratio * blocks), at least 1."""
    return min(key_blocks, max(1, int(topk_ratio * key_blocks)))


def sla_block_lut(q, k, topk_ratio, block_q=BLOCK_Q, block_k=BLOCK_K) -> torch.Tensor:
    """(B, H, NQ, topk) int64 key-block indices, ascending, with the highest pooled scores.

    Pooling is linear, so the pooled mean-centred k is the pooled k minus k's mean (itself the
    count-weighted mean of the pooled blocks): one pass over k instead of three."""
    pooled_k = pool_blocks(k, block_k)
    counts = _block_counts(k.shape[-2], block_k, k.device)
    mean = (pooled_k * counts).sum(dim=-2, keepdim=True) / k.shape[-2]
    scores = pool_blocks(q, block_q) @ (pooled_k - mean).transpose(-1, -2)
    topk = topk_blocks(topk_ratio, scores.shape[-1])
    return scores.topk(topk, dim=-1).indices.sort(dim=-1).values


def lut_to_mask(lut: torch.Tensor, key_blocks: int) -> torch.Tensor:
    mask = torch.zeros(*lut.shape[:-1], key_blocks, dtype=torch.bool, device=lut.device)
    return mask.scatter_(-1, lut, True)


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi of the linear branch: softmax over head_dim, in float32."""
    return torch.softmax(x.float(), dim=-1)


LINEAR_KEYS = ("rest", "all")


def linear_branch(q, k, v, lut, block_q=BLOCK_Q, block_k=BLOCK_K, eps=LINEAR_EPS, keys="rest") -> torch.Tensor:
    """Linear attention of each query block over the key blocks NOT in its lut row (float32).

    keys="all" covers every key block instead: TurboDiffusion's convention, which its released
    proj_l weights were trained with (the SLA paper's kernel covers only the rest).
    """
    b, h, length, d = q.shape
    key_blocks = -(-k.shape[-2] // block_k)
    valid = (torch.arange(key_blocks * block_k, device=k.device) < k.shape[-2]).float()[:, None]
    phi_k = _pad_tokens(feature_map(k), block_k) * valid  # padded tokens must add nothing
    v_pad = _pad_tokens(v.float(), block_k)
    states = phi_k.unflatten(-2, (key_blocks, block_k)).transpose(-1, -2) @ v_pad.unflatten(-2, (key_blocks, block_k))
    sums = phi_k.unflatten(-2, (key_blocks, block_k)).sum(dim=-2)
    if keys not in LINEAR_KEYS:
        raise ValueError(f"keys must be one of {LINEAR_KEYS}; got {keys!r}")
    rest = (~lut_to_mask(lut, key_blocks)).float()  # (B, H, NQ, NK); summed directly, never total - selected
    if keys == "all":
        rest = torch.ones_like(rest)
    state_rest = (rest @ states.flatten(-2)).unflatten(-1, (d, v.shape[-1]))
    sum_rest = rest @ sums
    phi_q = _pad_tokens(feature_map(q), block_q).unflatten(-2, (lut.shape[2], block_q))
    out = (phi_q @ state_rest) / (eps + (phi_q * sum_rest[..., None, :]).sum(dim=-1, keepdim=True))
    return out.flatten(2, 3)[:, :, :length]


def apply_proj_l(o_linear: torch.Tensor, proj_l) -> torch.Tensor:
    weight, bias = proj_l
    return F.linear(o_linear, weight.float(), None if bias is None else bias.float())


def sla_attention(q, k, v, topk=0.1, proj_l=None, quantized=False, scale=None,
                  block_q=BLOCK_Q, block_k=BLOCK_K, sparse=None, linear_keys="rest") -> torch.Tensor:
    """SLA: block-sparse softmax + proj_l(linear attention over the rest), in q's dtype.

    proj_l is (weight (D, D), bias (D,) or None); None means a zero proj_l, so the linear branch is
    skipped. quantized=True runs the sparse branch with Sage arithmetic (SageSLA). `sparse` lets
    the Triton module supply its own sparse-branch function with block_attention's signature.
    linear_keys: which key blocks the linear branch covers (see linear_branch).
    """
    lut = sla_block_lut(q, k, topk, block_q, block_k)
    out = (sparse or block_attention)(q, k, v, scale, lut=lut, quantized=quantized, block_q=block_q, block_k=block_k)
    if proj_l is not None:
        linear = linear_branch(q, k, v, lut, block_q, block_k, keys=linear_keys)
        out = out + apply_proj_l(linear, proj_l)
    return out.to(q.dtype)


def sla_flops(q_len, k_len, head_dim, topk_ratio, block_q=BLOCK_Q, block_k=BLOCK_K, with_linear=True) -> float:
    """Multiply-adds x 2 of SLA per (batch, head): block map + sparse branch (+ linear + proj_l)."""
    nq, nk = math.ceil(q_len / block_q), math.ceil(k_len / block_k)
    topk = topk_blocks(topk_ratio, nk)
    flops = 2.0 * nq * nk * head_dim + (q_len + k_len) * head_dim  # pooled scores + pooling
    flops += 4.0 * q_len * min(k_len, topk * block_k) * head_dim  # QK^T and P.V over kept blocks
    if with_linear:
        d2 = head_dim * head_dim
        flops += 2.0 * k_len * d2 + 2.0 * nq * nk * d2  # phi(k)^T v states, per-row sums of the rest
        flops += 4.0 * q_len * d2 + 2.0 * q_len * head_dim  # phi(q) . state, normaliser, proj_l
    return flops


def dense_flops(q_len, k_len, head_dim) -> float:
    return 4.0 * q_len * k_len * head_dim
