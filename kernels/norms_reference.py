"""Torch references for the fused norms in norms_triton.py (same signatures, same numerics).

Both normalise over the last dimension, compute in float32 whatever the input dtype, and return
a tensor of x's dtype. They are the yardstick (test oracle) for the Triton kernels and torch's own norms,
not a run-time path.
"""
import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * weight, over the last dim."""
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """y = (x - mean) / sqrt(var + eps) * weight + bias, over the last dim (biased variance)."""
    x32 = x.float()
    centred = x32 - x32.mean(dim=-1, keepdim=True)
    variance = centred.square().mean(dim=-1, keepdim=True)
    y = centred * torch.rsqrt(variance + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
