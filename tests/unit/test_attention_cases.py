"""Shared inputs and float64 yardsticks for the attention tests (no tests here; written apart from the kernels)."""
import zlib

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def generator(*key) -> torch.Generator:
    """Seeded from the test's parameters: different data per case, the same every run."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def qkv(gen, q_len, k_len, d, heads=2, batch=1, dtype=torch.float32, k_offset=3.0):
    """Unit-RMS q and k (what RMS-normed projections give) with a per-channel offset on K; zero-mean V
    (an offset on V would shrink relative errors by inflating the output)."""
    q = torch.randn(batch, heads, q_len, d, generator=gen)
    k = torch.randn(batch, heads, k_len, d, generator=gen) + k_offset * torch.randn(batch, heads, 1, d, generator=gen)
    v = torch.randn(batch, heads, k_len, d, generator=gen)
    return tuple(t.to(DEVICE, dtype) for t in (q, k, v))


def exact64(q, k, v, scale=None):
    q, k, v = q.double(), k.double(), v.double()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


def token_mask(block_mask, q_len, k_len, block_q, block_k):
    """(B, H, NQ, NK) block mask -> (B, H, q_len, k_len) token mask."""
    rows = torch.arange(q_len, device=block_mask.device) // block_q
    cols = torch.arange(k_len, device=block_mask.device) // block_k
    return block_mask[:, :, rows][:, :, :, cols]


def block_sparse64(q, k, v, block_mask, block_q=128, block_k=64):
    """Softmax restricted to the key blocks each query block keeps, in float64."""
    keep = token_mask(block_mask, q.shape[2], k.shape[2], block_q, block_k)
    logits = q.double() @ k.double().transpose(-1, -2) * q.shape[-1] ** -0.5
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1) @ v.double()


def linear_rest64(q, k, v, block_mask, block_q=128, block_k=64, eps=1e-5):
    """phi(q_i) sum_j phi(k_j) v_j / (eps + phi(q_i) sum_j phi(k_j)) over keys of unselected blocks."""
    rest = ~token_mask(block_mask, q.shape[2], k.shape[2], block_q, block_k)
    weights = (torch.softmax(q.double(), -1) @ torch.softmax(k.double(), -1).transpose(-1, -2)) * rest
    return (weights @ v.double()) / (eps + weights.sum(dim=-1, keepdim=True))


def block_map64(q, k, topk_ratio, block_q=128, block_k=64):
    """Block mask from mean-pooled q and mean-pooled mean-centred k, by explicit loops over blocks."""
    k = k.double() - k.double().mean(dim=2, keepdim=True)
    pooled_q = torch.stack([blk.mean(dim=2) for blk in q.double().split(block_q, dim=2)], dim=2)
    pooled_k = torch.stack([blk.mean(dim=2) for blk in k.split(block_k, dim=2)], dim=2)
    scores = pooled_q @ pooled_k.transpose(-1, -2)
    keep = max(1, int(topk_ratio * scores.shape[-1]))
    index = scores.topk(keep, dim=-1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, index, True)


def cos_and_rel(out, expected):
    out, expected = out.double().flatten(), expected.double().flatten()
    cos = torch.nn.functional.cosine_similarity(out, expected, dim=0).item()
    return cos, ((out - expected).norm() / expected.norm()).item()
