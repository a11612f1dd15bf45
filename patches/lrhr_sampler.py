"""TurboLRHRSampler's work: the LR pass, then the HR pass at `scale` x, in one call.

With a fusion adapter the HR model is guided by the LR pass's block features (patches/lr_features.py); without
one the training-free latent guidance (patches/latent_guidance.py) starts the HR pass from the upsampled,
re-noised LR latent. An LTX-2 audio-video latent (LTXVConcatAVLatent) runs both passes as audio-video: the LR
pass makes the audio, and the HR pass keeps that audio clean and fixed (a denoise mask of 0 on the audio, so the
model sees it at timestep 0, as core does for any masked latent) while it re-synthesises the video at HR,
attending to the audio through the audio-to-video cross-attention. Only the video stream is upsampled.
"""
from __future__ import annotations

import comfy.model_management
import torch

from ..models.fusion_blocks import FusionAdapter
from .latent_guidance import guide_latent
from .latent_streams import ZeroNoise, split_streams, with_fixed_streams
from .lr_features import apply_lr_features, check_video_latent, run_lr_pass, sample_with


def _cfg_guider(model, positive, negative, cfg):
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


def _empty_hr_video(lr_video: dict, spatial_scale: float) -> dict:
    b, c, t, h, w = lr_video["samples"].shape
    size = (b, c, t, round(h * spatial_scale), round(w * spatial_scale))
    return {"samples": torch.zeros(size, device=comfy.model_management.intermediate_device())}


def lrhr_sample(model, positive, negative, cfg, sampler, lr_sigmas, hr_sigmas, lr_latent: dict, seed: int,
                adapter: FusionAdapter | None, file_name: str, strength: float, spatial_scale: float,
                upscale_model=None, vae=None):
    """LR pass -> HR pass in one call: fusion adapter when given, else training-free latent guidance (with
    core's latent upscale model when given, e.g. LTX-2's spatial upscaler, else trilinear)."""
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    noise = Noise_RandomNoise(seed)
    lr_guider = _cfg_guider(model, positive, negative, cfg)
    if adapter is None:
        check_video_latent(model, lr_latent, "lr_latent")
        lr_out = sample_with(lr_guider, noise, sampler, lr_sigmas, lr_latent)
        start, _, sigmas = guide_latent(lr_out, hr_sigmas, seed, 0, spatial_scale, upscale_model=upscale_model,
                                        vae=vae)
        return sample_with(lr_guider, ZeroNoise(), sampler, sigmas, start), lr_out
    lr_out, features = run_lr_pass(noise, lr_guider, sampler, lr_sigmas, lr_latent, adapter.lr_blocks)
    hr_model = apply_lr_features(model, features, adapter, strength, file_name)
    lr_video, others = split_streams(lr_out)
    hr_latent = with_fixed_streams(_empty_hr_video(lr_video, spatial_scale), others)
    return sample_with(_cfg_guider(hr_model, positive, negative, cfg), noise, sampler, hr_sigmas, hr_latent), lr_out
