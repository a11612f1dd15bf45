"""Checks the pack's sampler loops make at every step: a usable schedule, a finite model output.

Pure torch. A schedule of one value is "no step" (the latent comes back unchanged), as in core's own
samplers; that is what a TurboSplitSigmasAtBoundary half with no steps is.
"""
from __future__ import annotations

import torch


class NonFiniteModelOutput(RuntimeError):
    """The model returned NaN or infinite values; the message names the step and the likely cause."""


def schedule_levels(sigmas: torch.Tensor) -> list[float]:
    """The schedule as floats, or a ValueError naming the `sigmas` input; [s] (no step) is allowed."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 1:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas: expected a 1-D schedule of noise levels, got {shape}; connect a SIGMAS output "
                         "(a scheduler node, or one half of TurboSplitSigmasAtBoundary)")
    levels = sigmas.tolist()
    if any(not torch.isfinite(torch.tensor(level)) for level in levels):
        raise ValueError(f"sigmas: the schedule holds NaN or infinite values {levels}")
    return levels


def finite(tensor: torch.Tensor) -> bool:
    """No NaN / inf: min and max carry both (NaN propagates), far cheaper than isfinite().all()."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor.float() if tensor.element_size() == 1 else tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def describe_step(index: int, steps: int, sigma: float) -> str:
    return f"step {index + 1} of {steps} (sigma {sigma:.4g})"


def check_model_output(x: torch.Tensor, x0: torch.Tensor, index: int, steps: int, sigma: float) -> None:
    """Raises NonFiniteModelOutput when the prediction at this step is not finite, naming the likely cause."""
    if finite(x0):
        return
    where = describe_step(index, steps, sigma)
    if not finite(x):
        raise NonFiniteModelOutput(f"sampling stopped at {where}: the latent going in already held NaN or "
                                   "infinite values; the input latent (or the node that made it) is the cause")
    raise NonFiniteModelOutput(f"sampling stopped at {where}: the model returned NaN or infinite values from a "
                               "finite latent. Likely causes: fp16 overflow (load the model in bf16 or fp32), "
                               "or a patch on the MODEL (an adapter, LoRA, INT8 layers, an attention backend): "
                               "remove them one at a time to find it")
