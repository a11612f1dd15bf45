"""Norm dispatcher: the fused Triton kernels on CUDA, the torch reference elsewhere.

backend="auto" picks Triton when x is on CUDA and triton imports (and the row fits one Triton
block), else the torch reference; "triton" and "torch" force one path. This module imports
without triton installed; asking for backend="triton" there raises a RuntimeError.
"""
import functools
import importlib
from types import ModuleType

import torch

from . import norms_reference

BACKENDS = ("auto", "triton", "torch")


@functools.lru_cache(maxsize=1)
def _triton_module() -> ModuleType | None:
    try:
        return importlib.import_module(".norms_triton", __package__)
    except ImportError:
        return None


def triton_available() -> bool:
    """True when triton is installed and the Triton norm kernels import."""
    return _triton_module() is not None


def _implementation(x: torch.Tensor, backend: str) -> ModuleType:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "torch":
        return norms_reference
    if backend == "triton":
        if not triton_available():
            raise RuntimeError(
                "backend='triton' was requested but triton is not installed (or failed to import); "
                "install triton or use backend='torch' / 'auto'"
            )
        return _triton_module()
    use_triton = x.is_cuda and x.dim() > 0 and triton_available() and x.shape[-1] <= _triton_module().MAX_N
    return _triton_module() if use_triton else norms_reference


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6, backend: str = "auto"
) -> torch.Tensor:
    """RMSNorm over the last dim, computed in float32, returned in x's dtype."""
    return _implementation(x, backend).rms_norm(x, weight, eps)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
    backend: str = "auto",
) -> torch.Tensor:
    """LayerNorm over the last dim (optional affine), computed in float32, returned in x's dtype."""
    return _implementation(x, backend).layer_norm(x, weight, bias, eps)
