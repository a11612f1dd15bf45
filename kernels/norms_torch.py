"""Torch's own norms (F.rms_norm / F.layer_norm): what ComfyUI core runs, and the CPU's fastest path.

Same signatures as norms_reference.py and norms_triton.py. Like core's norm modules, the weight and bias
are cast to x's dtype; torch accumulates half-precision inputs in float32 and returns x's dtype.
"""
import torch
import torch.nn.functional as F


def _cast(param: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if param is None else param.to(device=x.device, dtype=x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), _cast(weight, x), eps)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-6) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), _cast(weight, x), _cast(bias, x), eps)
