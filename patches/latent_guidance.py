"""Training-free LR -> HR guidance (LTX-Video multi-scale style) with ComfyUI's latent upscale model and noise.

The upscale model is core's LatentUpsampler (LatentUpscaleModelLoader; LTX-Video's and LTX-2's spatial x2
upscalers), run through core's own LTXVLatentUpsampler node logic on the un-normalised latent."""
from __future__ import annotations

import comfy.model_management
import comfy.sample
import torch

from ..samplers import latent_guidance as lg
from .families.ltx2 import VIDEO_ONLY_HINT
from .latent_streams import split_streams, with_fixed_streams


def _upsample(lr: dict, spatial_scale: float, upscale_model, vae) -> torch.Tensor:
    if upscale_model is None:
        return lg.upsample_latent(lr["samples"], spatial_scale)
    if vae is None:
        raise ValueError("vae: a latent upscale model works on un-normalised latents and needs the LTX-Video VAE "
                         "for the statistics; connect the VAE, or disconnect upscale_model to interpolate")
    from comfy_extras.nodes_lt_upsampler import LTXVLatentUpsampler  # core's own upsampler node logic

    return LTXVLatentUpsampler().upsample_latent({"samples": lr["samples"]}, upscale_model, vae)[0]["samples"]


def trimmed_sigmas(sigmas: torch.Tensor, start_step: int) -> torch.Tensor:
    if start_step >= len(sigmas) - 1:
        raise ValueError(f"start_step: {start_step} leaves no step of the {len(sigmas) - 1}-step schedule; "
                         f"pick 0..{len(sigmas) - 2}")
    return sigmas[start_step:].clone()


def _video_of(lr: dict) -> tuple[dict, list]:
    video, others = split_streams(lr)
    if video["samples"].ndim != 5:
        raise ValueError(f"lr_latent: latent guidance upsamples video latents [B, C, T, H, W]; got shape "
                         f"{tuple(video['samples'].shape)} (an audio-only latent?). For LTX-2: {VIDEO_ONLY_HINT}")
    return video, others


def guide_latent(lr: dict, sigmas: torch.Tensor, seed: int, start_step: int = 0, spatial_scale: float = 2.0,
                 adain_factor: float = 1.0, upscale_model=None, vae=None) -> tuple[dict, dict, torch.Tensor]:
    """-> (LATENT to sample with DisableNoise, the clean guide LATENT, the HR SIGMAS from start_step). An LTX-2
    audio-video latent: its video is guided, its audio kept as it is (denoise mask 0) in both LATENTs."""
    lr, others = _video_of(lr)
    hr_sigmas = trimmed_sigmas(sigmas, start_step)
    sigma = float(hr_sigmas[0])
    reference = lr["samples"]
    upsampled = _upsample(lr, spatial_scale, upscale_model, vae).to(reference.device)
    guide = lg.adain(upsampled, reference, adain_factor)
    noise = comfy.sample.prepare_noise(guide, seed, lr.get("batch_index"))
    start = lg.for_disabled_noise(lg.renoise(guide, noise, sigma), sigma)
    device = comfy.model_management.intermediate_device()
    base = {k: v for k, v in lr.items() if k not in ("samples", "noise_mask")}
    return (with_fixed_streams({**base, "samples": start.to(device)}, others),
            with_fixed_streams({**base, "samples": guide.to(device)}, others), hr_sigmas)
