"""Fast torch paths of the attention backends: what "auto" runs where no Triton kernel is faster.

- exact attention: torch SDPA in the inputs' dtype (what ComfyUI core runs);
- SLA's sparse branch: per query block, SDPA over only the key blocks its row of the block map lists
  (gathered, in chunks of query blocks), so its cost follows the kept share of blocks; softmax and
  accumulation are SDPA's (float32 inside, output in the inputs' dtype);
- SLA: that sparse branch plus proj_l of the linear branch. The block map and the linear branch are
  the same batched torch code the reference uses (attention_reference.sla_block_lut / linear_branch).
Sage's INT8 arithmetic exists only as the Triton kernel and as the reference (a test oracle): on a
device without the kernel, exact attention is both faster and closer to the truth, so "sage" runs
`exact` and "sagesla" runs float SLA (kernels/attention.py decides).
"""
import torch
import torch.nn.functional as F

from . import attention_reference as ref

_CHUNK_KEYS = 1 << 22  # gathered key tokens per chunk (x head_dim x bytes: ~2 GiB at D 128 fp32, worst case)


def exact(q, k, v, scale=None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=ref.softmax_scale(q, scale))


def _gather(x: torch.Tensor, lut: torch.Tensor, block: int) -> torch.Tensor:
    """x (B, H, L, D) -> (B * H, n, topk * block, D): the key blocks listed in lut (B, H, n, topk), copied
    whole (index_select of blocks; the short last block is padded with zeros, which the mask hides)."""
    b, h, n, topk = lut.shape
    blocks = -(-x.shape[2] // block)
    padded = F.pad(x, (0, 0, 0, blocks * block - x.shape[2])) if x.shape[2] % block else x
    flat = (lut + torch.arange(b * h, device=lut.device).view(b, h, 1, 1) * blocks).reshape(-1)
    chosen = padded.reshape(b * h * blocks, block, x.shape[-1]).index_select(0, flat)
    return chosen.view(b * h, n, topk * block, x.shape[-1])


def _padding_mask(lut: torch.Tensor, block: int, length: int) -> torch.Tensor | None:
    """(B, H, n, 1, topk * block) True where a gathered token exists; None when every block is whole."""
    if length % block == 0:
        return None
    tokens = lut[..., None] * block + torch.arange(block, device=lut.device)
    return (tokens < length).flatten(-2)[..., None, :]


def sparse_attention(q, k, v, lut, scale=None, block_q=ref.BLOCK_Q, block_k=ref.BLOCK_K) -> torch.Tensor:
    """Softmax attention of each query block over only its lut's key blocks, in q's dtype."""
    b, h, length, d = q.shape
    nq, topk = lut.shape[2], lut.shape[3]
    q_blocks = (F.pad(q, (0, 0, 0, nq * block_q - length)) if length % block_q else q).view(b * h, nq, block_q, d)
    per_chunk = max(1, _CHUNK_KEYS // max(1, b * h * topk * block_k))
    parts = []
    for first in range(0, nq, per_chunk):
        part = lut[:, :, first:first + per_chunk]
        mask = _padding_mask(part, block_k, k.shape[2])
        parts.append(F.scaled_dot_product_attention(
            q_blocks[:, first:first + part.shape[2]], _gather(k, part, block_k), _gather(v, part, block_k),
            attn_mask=None if mask is None else mask.flatten(0, 1), scale=ref.softmax_scale(q, scale)))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return out.view(b, h, nq * block_q, v.shape[-1])[:, :, :length]


def sla_attention(q, k, v, topk=0.1, proj_l=None, scale=None, linear_keys="rest",
                  block_q=ref.BLOCK_Q, block_k=ref.BLOCK_K) -> torch.Tensor:
    """SLA (float sparse branch + proj_l of the linear branch), in q's dtype."""
    lut = ref.sla_block_lut(q, k, topk, block_q, block_k)
    out = sparse_attention(q, k, v, lut, scale, block_q, block_k)
    if proj_l is None:
        return out
    linear = ref.linear_branch(q, k, v, lut, block_q, block_k, keys=linear_keys)
    return (out.float() + ref.apply_proj_l(linear, proj_l)).to(q.dtype)
