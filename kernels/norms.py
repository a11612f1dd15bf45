"""Norm dispatcher: torch's own norms, or the fused Triton kernels where they measure faster.

backend="auto": on CUDA, when triton imports and the row fits one Triton block, the faster of the Triton
kernel and torch's F.rms_norm / F.layer_norm, measured once per (device, op, dtype, width, affine, rows to a power
of 2) on the real inputs (kernels/fastest.py); everywhere else torch's own norm, which is what ComfyUI core runs,
so "auto" is never slower than core's path. "triton" and "torch" force one. The float64-checkable
reference (norms_reference.py) is a test oracle, not a run-time path. Imports without triton; asking
for backend="triton" there raises a RuntimeError.
"""
import functools
import importlib
from types import ModuleType

import torch

from . import norms_torch
from .fastest import Fastest

BACKENDS = ("auto", "triton", "torch")
FASTEST = Fastest()


@functools.lru_cache(maxsize=1)
def _triton_module() -> ModuleType | None:
    try:
        return importlib.import_module(".norms_triton", __package__)
    except ImportError:
        return None


def triton_available() -> bool:
    """True when triton is installed and the Triton norm kernels import."""
    return _triton_module() is not None


def _check(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "triton" and not triton_available():
        raise RuntimeError("backend='triton' was requested but triton is not installed (or failed to import); "
                           "install triton or use backend='torch' / 'auto'")


def triton_candidate(x: torch.Tensor) -> bool:
    """True when "auto" measures the Triton kernel against torch's for this input."""
    return x.is_cuda and x.dim() > 0 and triton_available() and x.shape[-1] <= _triton_module().MAX_N


def _dispatch(name: str, x: torch.Tensor, backend: str, params: tuple, eps: float) -> torch.Tensor:
    _check(backend)
    if backend == "triton":
        return getattr(_triton_module(), name)(x, *params, eps)
    if backend == "torch" or not triton_candidate(x):
        return getattr(norms_torch, name)(x, *params, eps)
    key = (name, str(x.device), x.dtype, x.shape[-1], tuple(p is not None for p in params),
           (x.numel() // max(1, x.shape[-1])).bit_length())  # rows, in powers of two
    candidates = {impl: functools.partial(getattr(module, name), x, *params, eps)
                  for impl, module in (("triton", _triton_module()), ("torch", norms_torch))}
    return FASTEST.run(key, candidates, cuda=x.is_cuda, preferred="torch")


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6,
             backend: str = "auto") -> torch.Tensor:
    """RMSNorm over the last dim, accumulated in float32, returned in x's dtype."""
    return _dispatch("rms_norm", x, backend, (weight,), eps)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-6, backend: str = "auto") -> torch.Tensor:
    """LayerNorm over the last dim (optional affine), accumulated in float32, returned in x's dtype."""
    return _dispatch("layer_norm", x, backend, (weight, bias), eps)
