"""TurboVSR upscaling of an IMAGE batch (one video; one image = a 1-frame video) with an LTX-Video MODEL.

Pipeline (docs/vsr.md):
1. resize the LR frames to the target size (comfy.utils.common_upscale), pad the sides with
   replicated edges to whole latent cells and the frame count to 1 + 8k with repeated last frames,
   a chunk at a time as the encoder asks for frames (LRFrames: the HR-sized video never exists whole);
2. encode with the chunked VAE (patches/chunked_vae.py: memory bounded by chunk, not video);
3. training-free (SDEdit): noise the latent to sigma = `strength` with ONE global noise tensor drawn
   from the seed, denoise it with Euler on an LTX-shifted schedule that starts exactly at `strength`,
   the model tiled by patches/tiled_model.py; with a VSR conditioner the LR latent also conditions
   every step (patches/vsr_conditioning.py). Factorized (TurboVSR sec. 3.3): the first frame is
   upscaled first as a 1-frame video, then the whole video with that HR latent frozen in latent frame 0;
4. decode with the chunked VAE back to exactly the input frame count, block by block: crop the
   padding, correct the colours against the resized LR frames (samplers/color_correction.py), clamp.
   The seed also seeds the VAE's own decode noise (LTX-2's timestep-conditioned decoder draws some at
   every call), so one seed gives one output.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
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
from . import chunked_vae, families, tile_preview
from .tiled_model import TilingSettings, apply_tiling, free_memory_for, resolve_tile
from .vsr_conditioning import apply_vsr_conditioner, first_latent_mask

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
    tiling: TilingSettings | None = None  # None = untiled; an auto tile is resolved per latent shape
    factorized: bool = False  # first frame first, then the video with it frozen (needs > 1 latent frame)


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


class LRFrames:
    """The resized LR video padded to whole latent cells and 1 + time k frames, made a slice at a time.

    frames[a:b] (what chunked_vae.encode asks for) resizes only frames a..b-1: the last input frame
    repeats past the end and the bottom/right edges are replicated. reference(a, b) is the unpadded
    resized frames, the colour reference.
    """

    def __init__(self, images: torch.Tensor, size: tuple[int, int], method: str, space: int, time: int):
        if method not in RESIZE_METHODS:
            raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {method!r}")
        self.images, self.size, self.method, self.space, self.time = images, size, method, space, time
        count = vc.nearest_valid_frame_counts(images.shape[0], time)[1]
        self.shape = (count, size[0] + -size[0] % space, size[1] + -size[1] % space, images.shape[-1])

    def first(self) -> LRFrames:
        """The first frame alone as a 1-frame video."""
        return LRFrames(self.images[:1], self.size, self.method, self.space, self.time)

    def reference(self, start: int, stop: int) -> torch.Tensor:
        return resize_frames(self.images[start:stop], self.size, self.method)

    def __getitem__(self, index: slice) -> torch.Tensor:
        start, stop, _ = index.indices(self.shape[0])
        picked = torch.arange(start, stop).clamp(max=self.images.shape[0] - 1)
        frames = resize_frames(self.images[picked], self.size, self.method)
        pad_h, pad_w = self.shape[1] - self.size[0], self.shape[2] - self.size[1]
        if pad_h or pad_w:
            frames = F.pad(frames.movedim(-1, 1), (0, pad_w, 0, pad_h), mode="replicate").movedim(1, -1)
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
    """'No prompt' conditioning for the model's family (patches/families)."""
    family = families.family_of(model)
    if family is None or family.neutral_conditioning is None:
        raise ValueError(f"model: TurboVSRUpscale has no 'no prompt' conditioning for {families.describe(model)}; "
                         "connect 'positive' conditioning, or an LTX-Video MODEL")
    return family.neutral_conditioning(model)


@dataclass
class Upscaled:
    samples: torch.Tensor  # the HR latent (1, C, T, h, w)
    frames: LRFrames
    tiling: TilingSettings | None  # the concrete plan settings of the video pass (auto resolved)
    first: torch.Tensor | None = None  # pass 1's HR latent (1, C, 1, h, w) when factorized


def encode_frames(vae, frames: LRFrames) -> torch.Tensor:
    plan = chunked_vae.plan_encode(vae, frames.shape, chunked_vae.ChunkOptions())
    return chunked_vae.encode(vae, frames, plan)


def concrete_tiling(model, latent_shape, settings: UpscaleSettings) -> TilingSettings | None:
    """The tiling for this latent, an auto tile resolved against the budget (cond + uncond batched when cfg != 1)."""
    tiling = settings.tiling
    if tiling is None or not tiling.auto:
        return tiling
    budget = tiling.budget_bytes if tiling.budget_bytes is not None else free_memory_for(model)
    batch = latent_shape[0] * (1 if settings.cfg == 1.0 else 2)
    return resolve_tile(tiling, model.model, (batch, *latent_shape[1:]), budget)


def _denoise(model, latent: torch.Tensor, settings: UpscaleSettings, positive, negative, conditioner=None,
             lr_latent: torch.Tensor | None = None, noise_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Euler from `strength` to 0 on `latent`; lr_latent conditions the model when a conditioner is given."""
    if conditioner is not None:
        model = apply_vsr_conditioner(model, conditioner, latent if lr_latent is None else lr_latent)
    tiling = concrete_tiling(model, latent.shape, settings)
    if tiling is not None:
        model = apply_tiling(model, tiling)
    sigmas = vsr_sigmas(settings.steps, settings.strength, model_tokens(latent.shape, tiling))
    noise = comfy.sample.prepare_noise(latent, settings.seed)  # one global noise tensor
    sampler = comfy.samplers.sampler_object("euler")
    callback = latent_preview.prepare_callback(model, settings.steps)
    return comfy.sample.sample_custom(model, noise, settings.cfg, sampler, sigmas, positive, negative, latent,
                                      noise_mask=noise_mask, callback=callback, disable_pbar=True,
                                      seed=settings.seed)


def denoise_factorized(model, lr_latent: torch.Tensor, first: torch.Tensor, settings: UpscaleSettings, positive,
                       negative, conditioner=None) -> torch.Tensor:
    """Pass 2: the video latent with `first` (pass 1's HR latent) in latent frame 0, frozen by the
    denoise mask (per-token timestep 0 there); the conditioner still sees the LR latent. Frame 0 comes
    back equal to `first` up to Euler's rounding (upscale_latents then writes it back exactly)."""
    start = lr_latent.clone()
    start[:, :, :1] = first
    return _denoise(model, start, settings, positive, negative, conditioner, lr_latent,
                    noise_mask=first_latent_mask(start))


def upscale_latents(model, vae, images: torch.Tensor, settings: UpscaleSettings, positive=None, negative=None,
                    conditioner=None) -> Upscaled:
    """Steps 1-3 of the module docstring: IMAGE (N, h, w, C) -> the HR latent."""
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected an IMAGE batch (frames, height, width, channels), got "
                         f"{tuple(images.shape)}")
    info = chunked_vae.video_vae(vae)
    size = target_size(images.shape[1], images.shape[2], settings.scale)
    frames = LRFrames(images[..., :3], size, settings.resize_method, info.space_factor, info.time_factor)
    latent = encode_frames(vae, frames)
    comfy.model_management.throw_exception_if_processing_interrupted()
    positive = positive if positive is not None else neutral_conditioning(model)
    negative = negative if negative is not None else positive
    tiling = concrete_tiling(model, latent.shape, settings)
    if not settings.factorized or latent.shape[2] == 1:
        return Upscaled(_denoise(model, latent, settings, positive, negative, conditioner), frames, tiling)
    first_lr = encode_frames(vae, frames.first())
    first = _denoise(model, first_lr, settings, positive, negative, conditioner)
    comfy.model_management.throw_exception_if_processing_interrupted()
    samples = denoise_factorized(model, latent, first, settings, positive, negative, conditioner)
    samples[:, :, :1] = first
    return Upscaled(samples, frames, tiling, first)


def upscaled_blocks(vae, upscaled: Upscaled, settings: UpscaleSettings) -> Iterator[torch.Tensor]:
    """Step 4 as finished frame blocks (n, H, W, 3) in [0, 1], in order; interrupts checked between blocks."""
    frames, (height, width) = upscaled.frames, upscaled.frames.size
    # the seed also fixes the noise a timestep-conditioned decoder (LTX-2's VAE) mixes in at every call
    plan = chunked_vae.plan_decode(vae, upscaled.samples.shape, chunked_vae.ChunkOptions(seed=settings.seed))
    done = 0
    for block in chunked_vae.decode_blocks(vae, upscaled.samples, plan, frames=frames.images.shape[0]):
        comfy.model_management.throw_exception_if_processing_interrupted()
        block = block[:, :height, :width]
        reference = frames.reference(done, done + len(block))
        done += len(block)
        yield color_correction.correct(block, reference, settings.color_correction).clamp_(0.0, 1.0)
        del block, reference


def to_images(vae, upscaled: Upscaled, settings: UpscaleSettings) -> torch.Tensor:
    """The whole IMAGE batch, filled block by block without a second copy."""
    out, filled = None, 0
    for block in upscaled_blocks(vae, upscaled, settings):
        if out is None:
            out = torch.empty((upscaled.frames.images.shape[0], *block.shape[1:]), dtype=block.dtype)
        out[filled:filled + len(block)] = block
        filled += len(block)
    return out


def upscale(model, vae, images: torch.Tensor, settings: UpscaleSettings, positive=None, negative=None,
            conditioner=None) -> torch.Tensor:
    """IMAGE (N, h, w, C) -> IMAGE (N, round(h scale), round(w scale), C); see the module docstring."""
    upscaled = upscale_latents(model, vae, images, settings, positive, negative, conditioner)
    return to_images(vae, upscaled, settings)


def layout_image(vae, upscaled: Upscaled) -> torch.Tensor:
    """The tile plan of the video pass over the first resized frame (patches/tile_preview.py)."""
    info = chunked_vae.video_vae(vae)
    tiling = upscaled.tiling or TilingSettings((1 << 30, 1 << 30), 0)
    windows = tiling.plan(tuple(upscaled.samples.shape[2:]))
    return tile_preview.draw_layout(upscaled.frames.reference(0, 1)[0], windows, info.space_factor,
                                    info.time_factor, upscaled.frames.images.shape[0], upscaled.frames.size)
