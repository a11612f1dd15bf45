"""Training-free LR -> HR latent guidance, as in LTX-Video's multi-scale pipeline (pure torch).

upsample the LR latent -> AdaIN it to the LR latent's per-channel statistics -> re-noise it to the
first HR sigma. The HR pass then starts from there instead of from pure noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def upsample_latent(latent: torch.Tensor, spatial_scale: float, temporal_scale: float = 1.0) -> torch.Tensor:
    """[B, C, T, H, W] -> trilinearly resized (half-pixel centres) to round(T*ts), round(H*s), round(W*s)."""
    if latent.ndim != 5:
        raise ValueError(f"latent: expected a video latent [B, C, T, H, W], got shape {tuple(latent.shape)}")
    t, h, w = latent.shape[2:]
    size = (max(1, round(t * temporal_scale)), max(1, round(h * spatial_scale)), max(1, round(w * spatial_scale)))
    return F.interpolate(latent.float(), size=size, mode="trilinear", align_corners=False).to(latent.dtype)


def adain(latent: torch.Tensor, reference: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """Gives each (batch, channel) of `latent` the mean and std of `reference` over (T, H, W); blends by factor."""
    if latent.shape[:2] != reference.shape[:2]:
        raise ValueError(f"AdaIN needs the same batch and channels, got {tuple(latent.shape[:2])} and "
                         f"{tuple(reference.shape[:2])}")
    x, ref = latent.float(), reference.float()
    dims = tuple(range(2, x.ndim))
    mean, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    ref_mean, ref_std = ref.mean(dims, keepdim=True), ref.std(dims, keepdim=True)
    normalised = (x - mean) / (std + EPS) * ref_std + ref_mean
    return torch.lerp(x, normalised, float(factor)).to(latent.dtype)


def renoise(latent: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Flow-matching (CONST) noising: sigma * noise + (1 - sigma) * latent."""
    return sigma * noise.to(latent.dtype) + (1.0 - sigma) * latent


def for_disabled_noise(noised: torch.Tensor, sigma: float, sigmas_input: str = "sigmas",
                       trim_input: str | None = "start_step") -> torch.Tensor:
    """The LATENT a sampler with DisableNoise must get to start exactly at `noised`.

    ComfyUI's KSAMPLER always starts from sigma * noise + (1 - sigma) * latent; with zero noise that is
    (1 - sigma) * latent, so the latent handed over is noised / (1 - sigma). Errors name `sigmas_input` and,
    where the node has one, the input that trims the schedule.
    """
    if not 0.0 <= sigma < 1.0:
        trim = f"trim the schedule ({trim_input}) or use" if trim_input else "use"
        raise ValueError(f"{sigmas_input}: the HR pass must start below sigma 1 to keep the LR content, got "
                         f"{sigma:.4g}; {trim} a schedule like 0.9094, 0.725, 0.4219, 0.0")
    return noised / (1.0 - sigma)
