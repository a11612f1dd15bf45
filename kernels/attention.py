"""Attention dispatcher: exact SDPA, SageAttention-style INT8, SLA and SageSLA.

`attention(q, k, v, backend)` takes (batch, heads, tokens, head_dim) tensors. Implementations:
- "triton": the Triton kernels (sage_triton.py, sla_triton.py);
- "torch": the fast torch paths (attention_torch.py): exact SDPA for "sdpa" and "sage" (exact attention
  is what Sage approximates, and without its kernel it is faster too), float SLA for "sla" and "sagesla";
- "reference": the torch reference of the exact arithmetic (attention_reference.py), a test oracle;
- "auto": on CUDA with triton, the faster of "triton" and "torch", measured once per (backend, device,
  dtype, shapes, topk) on the real inputs (kernels/fastest.py); elsewhere "torch". So "auto" is never
  slower than the exact SDPA it replaces where that is also a correct answer (sage), and SLA runs its
  sparse branch over only the kept key blocks.
The quantised and sparse backends take head dims 64 and 128, any sequence lengths, and float16 /
bfloat16 / float32 inputs; `unsupported_reason` says why a call cannot run (callers fall back to exact
attention). Importable without triton.
"""
import functools
import importlib
from types import ModuleType

import torch

from . import attention_reference, attention_torch
from .fastest import Fastest

BACKENDS = ("sdpa", "sage", "sla", "sagesla")
IMPLEMENTATIONS = ("auto", "triton", "torch", "reference")
FASTEST = Fastest()
HEAD_DIMS = (64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.lru_cache(maxsize=2)
def _triton_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f".{name}", __package__)
    except ImportError:
        return None


def triton_available() -> bool:
    """True when triton is installed and the Sage and SLA kernels import."""
    return _triton_module("sage_triton") is not None and _triton_module("sla_triton") is not None


def _check_implementation(implementation: str):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}; got {implementation!r}")
    if implementation == "triton" and not triton_available():
        raise RuntimeError("implementation='triton' was requested but triton is not installed (or failed "
                           "to import); install triton or use implementation='torch' / 'auto'")


def uses_triton(q: torch.Tensor, implementation: str = "auto") -> bool:
    """True when the Triton kernels may run for q ("triton", or "auto" on CUDA with triton)."""
    _check_implementation(implementation)
    return implementation == "triton" or (implementation == "auto" and q.is_cuda and triton_available())


def unsupported_reason(q, k, v, backend: str) -> str | None:
    """None when `backend` can run on these tensors, else a sentence saying why not."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        return f"q, k, v must be (batch, heads, tokens, head_dim); got {q.dim()}-D, {k.dim()}-D, {v.dim()}-D"
    if backend == "sdpa":
        return None
    if q.shape[-1] not in HEAD_DIMS or k.shape[-1] != q.shape[-1] or v.shape[-1] != q.shape[-1]:
        return f"head dim {q.shape[-1]} (q), {k.shape[-1]} (k), {v.shape[-1]} (v); {backend} takes {HEAD_DIMS}"
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        return f"dtype {q.dtype}; {backend} takes one of float16, bfloat16, float32 for all of q, k, v"
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
        return f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not match"
    return None


# (query block, key block) of the block map, the quantisation and the sparse kernel. TurboDiffusion's SageSLA
# (SLA/core.py SageSparseLinearAttention, used by TurboWan and TurboT2AV alike) picks them per GPU: 64 / 128 on
# sm90 (H100, H20), 128 / 64 elsewhere; its plain SLA takes 128 / 64 (BLKQ / BLKK, TurboT2AV --sla_block_q/k).
SLA_BLOCKS = (attention_reference.BLOCK_Q, attention_reference.BLOCK_K)
SAGESLA_SM90_BLOCKS = (64, 128)


def sla_blocks(q: torch.Tensor, backend: str) -> tuple[int, int]:
    """The (query, key) block sizes TurboDiffusion runs `backend` with on q's device."""
    if backend == "sagesla" and q.is_cuda and torch.cuda.get_device_capability(q.device) == (9, 0):
        return SAGESLA_SM90_BLOCKS
    return SLA_BLOCKS


def _triton(q, k, v, backend, topk, proj_l, scale, linear_keys, blocks):
    if backend == "sage":
        return _triton_module("sage_triton").sage_attention(q, k, v, scale)
    return _triton_module("sla_triton").sla_attention(q, k, v, topk, proj_l, quantized=backend == "sagesla",
                                                      scale=scale, linear_keys=linear_keys, block_q=blocks[0],
                                                      block_k=blocks[1])


def _torch(q, k, v, backend, topk, proj_l, scale, linear_keys, blocks):
    if backend == "sage":
        return attention_torch.exact(q, k, v, scale)
    return attention_torch.sla_attention(q, k, v, topk, proj_l, scale, linear_keys, block_q=blocks[0],
                                         block_k=blocks[1])


def _reference(q, k, v, backend, topk, proj_l, scale, linear_keys, blocks):
    if backend == "sage":
        return attention_reference.sage_attention(q, k, v, scale)
    return attention_reference.sla_attention(q, k, v, topk, proj_l, quantized=backend == "sagesla", scale=scale,
                                             linear_keys=linear_keys, block_q=blocks[0], block_k=blocks[1])


def _auto(q, k, v, *args):
    backend, topk, proj_l, blocks = args[0], args[1], args[2], args[5]
    key = (backend, str(q.device), q.dtype, tuple(q.shape), tuple(k.shape), topk, proj_l is not None, blocks)
    candidates = {"triton": lambda: _triton(q, k, v, *args), "torch": lambda: _torch(q, k, v, *args)}
    return FASTEST.run(key, candidates, cuda=q.is_cuda, preferred="triton")


def attention(q, k, v, backend: str = "sdpa", *, topk: float = 0.1, proj_l=None, scale=None, linear_keys="rest",
              implementation: str = "auto", blocks: tuple[int, int] | None = None) -> torch.Tensor:
    """Attention of q over k, v in q's dtype; the caller's tensors are never modified.

    topk: share of key blocks each query block keeps (sla, sagesla), at least one. proj_l: (weight (D, D),
    bias (D,) or None) of SLA's linear-branch projection, None for a zero projection (sparse branch only).
    blocks: (query, key) block sizes of sla / sagesla, None for sla_blocks(q, backend).
    """
    reason = unsupported_reason(q, k, v, backend)
    if reason is not None:
        raise ValueError(f"attention backend {backend!r} cannot run: {reason}")
    _check_implementation(implementation)
    if backend == "sdpa":
        return attention_torch.exact(q, k, v, scale)
    if not 0.0 < topk <= 1.0:
        raise ValueError(f"topk must be in (0, 1]; got {topk}")
    args = (backend, topk, proj_l, scale, linear_keys, tuple(blocks or sla_blocks(q, backend)))
    if implementation == "reference":
        return _reference(q, k, v, *args)
    if implementation == "torch" or not uses_triton(q, implementation):
        return _torch(q, k, v, *args)
    if implementation == "triton":
        return _triton(q, k, v, *args)
    return _auto(q, k, v, *args)
