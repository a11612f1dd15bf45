"""Colour correction of generated frames against reference frames (pure torch).

Frames are IMAGE-layout tensors (N, H, W, C); statistics are taken per frame and per channel, so a
reference that is temporally steady (the upscaled low-resolution input) keeps the output steady too.

- "adain": out <- (out - mean_out) * std_ref / std_out + mean_ref, per frame and channel over H, W
  (Huang & Belongie 2017). Moves the global colour and contrast of each frame onto the reference.
- "wavelet": the output's low-frequency band is replaced by the reference's. The band split is an
  a-trous pyramid: `levels` passes of a [1/4, 1/2, 1/4] separable blur whose taps are 2**i apart,
  with replicated borders; low = the last blur, high = x - low (so high + low == x exactly). Keeps
  the output's detail and takes the reference's colour at every place in the frame, not only on
  average (StableSR-style wavelet colour fix).

Both run in float32 at least (float64 stays float64) and return the output's dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

METHODS = ("none", "adain", "wavelet")
EPS = 1e-6
WAVELET_LEVELS = 5


def _checked(output: torch.Tensor, reference: torch.Tensor) -> None:
    if output.shape != reference.shape or output.ndim != 4:
        raise ValueError(f"colour correction needs output and reference of one shape (N, H, W, C); got "
                         f"{tuple(output.shape)} and {tuple(reference.shape)}")


def adain(output: torch.Tensor, reference: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per frame and channel: output's mean and std (over H, W) replaced by the reference's."""
    _checked(output, reference)
    dtype = torch.promote_types(output.dtype, torch.float32)
    out, ref = output.to(dtype), reference.to(dtype)
    mean_o, std_o = out.mean(dim=(1, 2), keepdim=True), out.std(dim=(1, 2), keepdim=True, correction=0)
    mean_r, std_r = ref.mean(dim=(1, 2), keepdim=True), ref.std(dim=(1, 2), keepdim=True, correction=0)
    return ((out - mean_o) * (std_r / (std_o + eps)) + mean_r).to(output.dtype)


def _blur(x: torch.Tensor, step: int) -> torch.Tensor:
    """[1/4, 1/2, 1/4] taps `step` apart along H then W; x is (N, C, H, W), borders replicated."""
    channels = x.shape[1]
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    rows = taps.view(1, 1, 3, 1).expand(channels, 1, 3, 1)
    cols = taps.view(1, 1, 1, 3).expand(channels, 1, 1, 3)
    x = F.conv2d(F.pad(x, (0, 0, step, step), mode="replicate"), rows, dilation=(step, 1), groups=channels)
    return F.conv2d(F.pad(x, (step, step, 0, 0), mode="replicate"), cols, dilation=(1, step), groups=channels)


def low_band(frames: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """The a-trous pyramid's coarsest band of (N, H, W, C) frames (same layout)."""
    x = frames.movedim(-1, 1)
    for level in range(levels):
        x = _blur(x, 2 ** level)
    return x.movedim(1, -1)


def wavelet(output: torch.Tensor, reference: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """output - low(output) + low(reference): the output's detail on the reference's colours."""
    _checked(output, reference)
    if levels < 1:
        raise ValueError(f"wavelet levels must be >= 1, got {levels}")
    dtype = torch.promote_types(output.dtype, torch.float32)
    out, ref = output.to(dtype), reference.to(dtype)
    return (out - low_band(out, levels) + low_band(ref, levels)).to(output.dtype)


def correct(output: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    if method not in METHODS:
        raise ValueError(f"color_correction must be one of {METHODS}, got {method!r}")
    if method == "adain":
        return adain(output, reference)
    if method == "wavelet":
        return wavelet(output, reference)
    _checked(output, reference)
    return output
