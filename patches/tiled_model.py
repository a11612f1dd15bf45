"""Tiled inference as a MODEL patch: an APPLY_MODEL wrapper that runs the model window by window.

Why APPLY_MODEL (not DIFFUSION_MODEL): BaseModel.apply_model still sees the sampler's own x, the
sigma per batch item, c_concat and the extra conds before they are scaled, concatenated and turned
into per-token timesteps, so cropping them is well defined and _apply_model (calculate_input,
process_timestep, calculate_denoised) runs per window unchanged. The blended result is a denoised
latent; since every window sees the same x and sigma, blending denoised equals blending the noise
prediction.

One global noise tensor: ComfyUI samplers draw the noise for the whole latent before sampling and
every step hands the model a crop of the same x, so overlapping windows share noise by construction;
any sampler (KSampler, SamplerCustomAdvanced, the pack's samplers) drives the tiled model.

What is cropped per window: x; c_concat; every extra cond tensor whose last three dims equal x's
(T, H, W) (LTX denoise_mask, concat latents). Repeated per window when tiles are batched: sigma,
c_crossattn, other tensors whose first dim is the batch, transformer_options' sigmas /
cond_or_uncond / uuids; tensors under transformer_options[CROPPED_OPTIONS_KEY] are cropped like x.
Not supported: ControlNet / T2I control (computed on the whole latent
before apply_model: refused) and conds laid out per token or per latent frame only (LTX keyframe
indices, Wan reference latents, guide frames): those pass through uncropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.patcher_extension
import torch

from ..samplers.tiling import Window, check_plan_inputs, plan_windows, tiled_apply

WRAPPER_KEY = "turbovideo_tiled_model"
# transformer_options entry {name: tensor laid out like x [B, C, T, H, W]}: cropped per window like x, so
# patches inside the model (e.g. the VSR conditioner's LR latent) see their window's part
CROPPED_OPTIONS_KEY = "turbovideo_cropped"
APPLY_MODEL = comfy.patcher_extension.WrappersMP.APPLY_MODEL


@dataclass(frozen=True)
class TilingSettings:
    tile: tuple[int, int]  # latent rows, latent columns per window
    overlap: int  # latent cells shared by neighbouring tiles
    segment: int = 0  # latent frames per segment; 0 = the whole video
    segment_overlap: int = 2  # latent frames shared by neighbouring segments
    weights: str = "cosine"
    tile_batch: int = 1

    def plan(self, shape: tuple[int, int, int]) -> list[Window]:
        tile = (min(self.tile[0], shape[1]), min(self.tile[1], shape[2]))
        overlap = min(self.overlap, max(min(tile) - 1, 0))
        return plan_windows(shape, tile, overlap, self.segment, self.segment_overlap, self.weights)


def _crop_or_repeat(value, x: torch.Tensor, windows: list[Window]):
    """A per-call input for a batch of windows: cropped if laid out like x, repeated if per batch item."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    if value.ndim == x.ndim and value.shape[2:] == x.shape[2:]:
        return torch.cat([_expand_batch(value, x.shape[0])[w.index] for w in windows], dim=0)
    if value.shape[0] == x.shape[0]:
        return torch.cat([value] * len(windows), dim=0)
    return value


def _expand_batch(value: torch.Tensor, batch: int) -> torch.Tensor:
    return value.expand(batch, *value.shape[1:]) if value.shape[0] == 1 and batch > 1 else value


def _window_options(options: dict, windows: list[Window], x: torch.Tensor) -> dict:
    out = dict(options)
    for key in ("cond_or_uncond", "uuids"):
        if isinstance(out.get(key), list):
            out[key] = out[key] * len(windows)
    if isinstance(out.get("sigmas"), torch.Tensor):
        out["sigmas"] = _crop_or_repeat(out["sigmas"], x, windows)
    if isinstance(out.get(CROPPED_OPTIONS_KEY), dict):
        out[CROPPED_OPTIONS_KEY] = {name: _crop_or_repeat(value, x, windows)
                                    for name, value in out[CROPPED_OPTIONS_KEY].items()}
    return out


def _tiled_wrapper(settings: TilingSettings):
    def apply_model(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                    **kwargs):
        transformer_options = {} if transformer_options is None else transformer_options
        if x.ndim != 5:
            raise ValueError(f"model: TurboTiledModel tiles video latents [B, C, T, H, W]; this model got "
                             f"shape {tuple(x.shape)}. Use it with a video model (LTX-Video, Wan)")
        windows = settings.plan(tuple(x.shape[2:]))
        if len(windows) == 1:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if control is not None:
            raise ValueError("model: TurboTiledModel cannot tile a ControlNet's output; "
                             "remove the ControlNet or the tiling")

        def run(crops: torch.Tensor, group: list[Window]) -> torch.Tensor:
            per = lambda value: _crop_or_repeat(value, x, group)
            return executor(crops, per(t), per(c_concat), per(c_crossattn), None,
                            _window_options(transformer_options, group, x),
                            **{name: per(value) for name, value in kwargs.items()})

        def between(done: int, total: int) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()

        return tiled_apply(run, x, windows, settings.tile_batch, before_batch=between)

    return apply_model


def is_tiled(model) -> bool:
    return bool(comfy.patcher_extension.get_wrappers_with_key(APPLY_MODEL, WRAPPER_KEY, model.model_options,
                                                              is_model_options=True))


def apply_tiling(model, settings: TilingSettings):
    """A clone of `model` whose every model call runs window by window and blends the results."""
    check_plan_inputs(settings.tile, settings.overlap, settings.segment, settings.segment_overlap, True)
    if settings.tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {settings.tile_batch}")
    if is_tiled(model):
        raise ValueError("model: already tiled by TurboTiledModel; connect the MODEL from before the "
                         "first TurboTiledModel instead of chaining two")
    patched = model.clone()
    patched.add_wrapper_with_key(APPLY_MODEL, WRAPPER_KEY, _tiled_wrapper(settings))
    return patched
