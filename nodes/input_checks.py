"""Checks of the tensors that enter the pack through IMAGE and LATENT inputs: layout, dtype, finite values.

Every error names the input, what it got and what to connect instead; a grey (1-channel) IMAGE is
widened to RGB and an alpha channel dropped, since the result is well defined.
"""
from __future__ import annotations

import torch

from ..models.checkpoint_files import all_finite, non_finite_count
from ..patches.families.ltx2 import VIDEO_ONLY_HINT


def _non_finite(tensor: torch.Tensor) -> tuple[int, int | None]:
    """(count, index along dim 0 of the first) of NaN / infinite values; a finite tensor costs one min/max scan."""
    if all_finite(tensor):
        return 0, None
    first = next(index for index in range(tensor.shape[0]) if not all_finite(tensor[index]))
    return non_finite_count(tensor), first


def check_image(images, input_name: str, min_side: int = 1, cell: str = "") -> torch.Tensor:
    """An IMAGE batch (frames, H, W, 3) float, or a ValueError naming `input_name`; min_side in pixels."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{input_name}: expected an IMAGE batch (frames, height, width, channels), got {shape}")
    frames, height, width, channels = images.shape
    if frames < 1:
        raise ValueError(f"{input_name}: the IMAGE batch has no frames; connect a video or image with at least 1 frame")
    if not images.is_floating_point():
        raise ValueError(f"{input_name}: IMAGE values must be floats in [0, 1], got {images.dtype}; connect the "
                         "output of an image loader or decoder")
    if channels not in (1, 3, 4):
        raise ValueError(f"{input_name}: {channels} channels; an IMAGE is grey (1), RGB (3) or RGBA (4)")
    if min(height, width) < min_side:
        raise ValueError(f"{input_name}: {width}x{height} px is smaller than {min_side}x{min_side} px{cell}; "
                         "upscale the frames first or use larger ones")
    count, first = _non_finite(images)
    if count:
        raise ValueError(f"{input_name}: {count} NaN or infinite pixel values (first in frame {first}); the node "
                         "that made these frames produced them: fix or replace those frames")
    return images.expand(-1, -1, -1, 3) if channels == 1 else images[..., :3]


def check_video_latent(samples, input_name: str) -> torch.Tensor:
    """A video latent [B, C, T, H, W] with finite float values, or a ValueError naming `input_name`."""
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"{input_name}: expected a LATENT holding a tensor, got {type(samples).__name__}")
    if samples.ndim == 4:
        raise ValueError(f"{input_name}: a 4-D latent {tuple(samples.shape)}: an image latent [B, C, H, W] or an LTX-2 "
                         "audio-only latent; this node takes video latents [B, C, T, H, W] (LTX-Video, LTX-2, Wan). "
                         f"Decode image latents with VAEDecode; for LTX-2 audio-video, {VIDEO_ONLY_HINT}")
    if samples.ndim != 5 or min(samples.shape) < 1:
        raise ValueError(f"{input_name}: expected a video latent [B, C, T, H, W] with every size >= 1, got "
                         f"{tuple(samples.shape)}")
    return check_latent_values(samples, input_name)


def check_latent_values(samples, input_name: str) -> torch.Tensor:
    """A latent tensor of any layout (a video or an audio stream) with finite float values, or a ValueError."""
    if not isinstance(samples, torch.Tensor) or samples.numel() == 0:
        raise ValueError(f"{input_name}: expected a latent tensor with values, got "
                         f"{tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__}")
    if not samples.is_floating_point():
        raise ValueError(f"{input_name}: latent values must be floats, got {samples.dtype}")
    count, first = _non_finite(samples)
    if count:
        raise ValueError(f"{input_name}: the latent holds {count} NaN or infinite values (batch item {first}); the "
                         "sampler or node that made it diverged: fix that step before decoding")
    return samples
