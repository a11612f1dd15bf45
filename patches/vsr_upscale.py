"""TurboVSR upscaling of an IMAGE batch (one video; one image = a 1-frame video) with an LTX-Video MODEL.

Pipeline (docs/vsr.md):
1. resize the LR frames to the target size (comfy.utils.common_upscale), pad the sides with
   replicated edges to whole latent cells and the frame count to 1 + 8k with repeated last frames;
2. encode with the chunked VAE (patches/chunked_vae.py: memory bounded by chunk, not video);
3. training-free (SDEdit): noise the latent to sigma = `strength` with ONE global noise tensor drawn
   from the seed, denoise it with Euler on an LTX-shifted schedule that starts exactly at `strength`,
   the model tiled by patches/tiled_model.py; with a VSR conditioner the LR latent also conditions
   every step (patches/vsr_conditioning.py);
4. decode with the chunked VAE back to exactly the input frame count, crop the padding, correct the
   colours against the resized LR frames (samplers/color_correction.py), clamp to [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
import torch.nn.functional as F

from ..samplers import color_correction, flow_shift
from ..samplers import video_chunks as vc
from . import chunked_vae
from .tiled_model import TilingSettings, apply_tiling

RESIZE_METHODS = ("lanczos", "bicubic", "bilinear", "area", "nearest-exact")
RESIZE_BLOCK = 16  # frames resized per common_upscale call


@dataclass(frozen=True)
class UpscaleSettings:
    scale: float
    steps: int
    strength: float  # sigma the LR latent is noised to; 1 = from pure noise
    seed: int
    resize_method: str = "lanczos"
    color_correction: str = "wavelet"
    cfg: float = 1.0
    tiling: TilingSettings | None = None


def target_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_frames(images: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """(N, h, w, C) -> (N, H, W, C) float32, RESIZE_BLOCK frames per call, clamped to [0, 1]."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {method!r}")
    out = torch.empty((images.shape[0], *size, images.shape[-1]), dtype=torch.float32)
    for start in range(0, images.shape[0], RESIZE_BLOCK):
        block = images[start:start + RESIZE_BLOCK].movedim(-1, 1).float()
        resized = comfy.utils.common_upscale(block, size[1], size[0], method, "disabled")
        out[start:start + RESIZE_BLOCK] = resized.movedim(1, -1).clamp(0.0, 1.0)
    return out


def pad_frames(frames: torch.Tensor, space: int, time: int) -> torch.Tensor:
    """Replicated bottom/right edges up to multiples of `space`; last frame repeated up to 1 + time k."""
    height, width = frames.shape[1:3]
    pad_h, pad_w = -height % space, -width % space
    if pad_h or pad_w:
        frames = F.pad(frames.movedim(-1, 1), (0, pad_w, 0, pad_h), mode="replicate").movedim(1, -1)
    count = vc.nearest_valid_frame_counts(frames.shape[0], time)[1]
    if count > frames.shape[0]:
        frames = torch.cat([frames, frames[-1:].expand(count - frames.shape[0], *frames.shape[1:])])
    return frames


def inverse_shift(sigma: float, shift: float) -> float:
    """The t with shift_sigmas(t, shift) == sigma."""
    return sigma / (shift - (shift - 1.0) * sigma)


def vsr_sigmas(steps: int, strength: float, tokens: int) -> torch.Tensor:
    """`steps` Euler steps from sigma = strength to 0, spaced like LTX-Video's token-shifted schedule."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    shift = math.exp(flow_shift.ltx_token_shift_mu(tokens))
    times = torch.linspace(inverse_shift(strength, shift), 0.0, steps + 1, dtype=torch.float64)
    sigmas = flow_shift.shift_sigmas(times, shift)
    sigmas[0] = strength
    return sigmas.float()


def model_tokens(latent_shape, tiling: TilingSettings | None) -> int:
    """Tokens in one model call: one window's when tiled (each window is denoised as its own video)."""
    frames, height, width = latent_shape[2:]
    if tiling is not None:
        height, width = min(height, tiling.tile[0]), min(width, tiling.tile[1])
        frames = frames if tiling.segment == 0 else min(frames, tiling.segment)
    return frames * height * width


def neutral_conditioning(model) -> list:
    """'No prompt' for an LTX DiT: one zero caption token with its attention mask."""
    projection = getattr(model.model.diffusion_model, "caption_projection", None)
    if projection is None:
        raise ValueError("model: not an LTX-Video DiT (no caption projection); TurboVSRUpscale needs an LTX-Video "
                         "MODEL, or connect 'positive' conditioning")
    width = projection.linear_1.weight.shape[1]
    return [[torch.zeros(1, 1, width), {"attention_mask": torch.ones(1, 1, dtype=torch.long)}]]


def _encode(vae, frames: torch.Tensor) -> torch.Tensor:
    plan = chunked_vae.plan_encode(vae, frames.shape, chunked_vae.ChunkOptions())
    return chunked_vae.encode(vae, frames, plan)


def _denoise(model, latent: torch.Tensor, settings: UpscaleSettings, positive, negative) -> torch.Tensor:
    if settings.tiling is not None:
        model = apply_tiling(model, settings.tiling)
    sigmas = vsr_sigmas(settings.steps, settings.strength, model_tokens(latent.shape, settings.tiling))
    noise = comfy.sample.prepare_noise(latent, settings.seed)  # one global noise tensor
    sampler = comfy.samplers.sampler_object("euler")
    callback = latent_preview.prepare_callback(model, settings.steps)
    return comfy.sample.sample_custom(model, noise, settings.cfg, sampler, sigmas, positive, negative, latent,
                                      callback=callback, disable_pbar=True, seed=settings.seed)


def upscale(model, vae, images: torch.Tensor, settings: UpscaleSettings, positive=None, negative=None,
            conditioner=None) -> torch.Tensor:
    """IMAGE (N, h, w, C) -> IMAGE (N, round(h scale), round(w scale), C); see the module docstring."""
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected an IMAGE batch (frames, height, width, channels), got "
                         f"{tuple(images.shape)}")
    images = images[..., :3]
    info = chunked_vae.video_vae(vae)
    size = target_size(images.shape[1], images.shape[2], settings.scale)
    reference = resize_frames(images, size, settings.resize_method)
    latent = _encode(vae, pad_frames(reference, info.space_factor, info.time_factor))
    comfy.model_management.throw_exception_if_processing_interrupted()
    positive = positive if positive is not None else neutral_conditioning(model)
    negative = negative if negative is not None else positive
    if conditioner is not None:
        from .vsr_conditioning import apply_vsr_conditioner

        model = apply_vsr_conditioner(model, conditioner, latent)
    samples = _denoise(model, latent, settings, positive, negative)
    plan = chunked_vae.plan_decode(vae, samples.shape, chunked_vae.ChunkOptions())
    out = chunked_vae.decode(vae, samples, plan, frames=images.shape[0])[:, :size[0], :size[1]]
    return color_correction.correct(out, reference, settings.color_correction).clamp_(0.0, 1.0)
