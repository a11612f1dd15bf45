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
LTX-Video keyframe guides (LTXVAddGuide: guide latent frames appended to x, with conds laid out over
their tokens): each window keeps its own guide cells (patches/tiled_guides.py); with temporal segments
they are refused.
LTX-2 (patches/families/ltx2.py): a plain video latent runs video-only and tiles like LTX-Video. An audio-video
latent reaches apply_model packed ([B, 1, N] + the `latent_shapes` cond); its audio stream and the audio-video
cross-attention attend to the WHOLE video, which no window sees, so they cannot stay exact under tiling: a plan
of one window runs the model untiled (exact), more windows are refused with an error that says how to run
video-only. Not supported: ControlNet / T2I control (computed on the whole latent before apply_model: refused)
and other conds laid out per token or per latent frame only (Wan reference latents): those pass
through uncropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.patcher_extension
import torch

from ..samplers.tiling import Window, check_plan_inputs, plan_windows, tiled_apply, to_units
from . import core_compat, families, finite_guard
from .tile_plan import MIB, RunPlan, auto_settings, plan_for, windows_per_call  # noqa: F401 (MIB: re-exported)
from .tiled_guides import GUIDE_CONDS, window_guides

WRAPPER_KEY = "turbovideo_tiled_model"
# transformer_options entry {name: tensor laid out like x [B, C, T, H, W]}: cropped per window like x, so
# patches inside the model (e.g. the VSR conditioner's LR latent) see their window's part
CROPPED_OPTIONS_KEY = "turbovideo_cropped"
# transformer_options entry inside a window's call: (full latent (T, H, W), [(frames, rows, cols) per window])
WINDOWS_KEY = "turbovideo_windows"
APPLY_MODEL = comfy.patcher_extension.WrappersMP.APPLY_MODEL
AUTO = (0, 0)  # TilingSettings.tile: the largest square tile that fits the memory budget


@dataclass(frozen=True)
class TilingSettings:
    tile: tuple[int, int]  # latent rows, latent columns per window
    overlap: int  # latent cells shared by neighbouring tiles
    segment: int = 0  # latent frames per segment; 0 = the whole video
    segment_overlap: int = 2  # latent frames shared by neighbouring segments
    weights: str = "cosine"
    tile_batch: int = 1
    budget_bytes: float | None = None  # auto tile only; None = the device's free memory at the start of each run

    @property
    def auto(self) -> bool:
        return self.tile == AUTO

    def plan(self, shape: tuple[int, int, int], unit: tuple[int, int, int] = (1, 1, 1)) -> list[Window]:
        """Windows over a (T, H, W) latent; `unit`: the cells a window must start on and be made of
        (window_unit: 1 x 1 x 1 unless the model's family says otherwise)."""
        sizes = to_units(shape, unit, self.tile, self.overlap, self.segment, self.segment_overlap)
        return plan_windows(shape, sizes.tile, sizes.overlap, sizes.segment, sizes.segment_overlap, self.weights,
                            unit=unit)


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
    out[WINDOWS_KEY] = (tuple(x.shape[2:]), [(w.frames, w.rows, w.cols) for w in windows])
    for key in (core_compat.COND_OR_UNCOND, "uuids"):
        if isinstance(out.get(key), list):
            out[key] = out[key] * len(windows)
    if isinstance(out.get(core_compat.SIGMAS), torch.Tensor):
        out[core_compat.SIGMAS] = _crop_or_repeat(out[core_compat.SIGMAS], x, windows)
    if isinstance(out.get(CROPPED_OPTIONS_KEY), dict):
        out[CROPPED_OPTIONS_KEY] = {name: _crop_or_repeat(value, x, windows)
                                    for name, value in out[CROPPED_OPTIONS_KEY].items()}
    return out


def _stream_shapes(kwargs: dict) -> list:
    """The per-stream latent shapes core packed into x (cond `latent_shapes`), [] for a plain latent."""
    return [tuple(shape) for shape in kwargs.get(core_compat.LATENT_SHAPES_COND) or ()]


def _single_window_streams(run_plan: RunPlan, base_model, x: torch.Tensor, kwargs: dict) -> bool:
    """True when x packs a video stream with others (LTX-2 audio) and the plan covers the video in one window:
    then the model runs on everything exactly as untiled (audio and audio-video cross-attention included)."""
    shapes = _stream_shapes(kwargs)
    if len(shapes) < 2 or len(shapes[0]) != 5:
        return False
    return len(plan_for(run_plan.for_call(base_model, shapes[0], x.device), base_model, shapes[0][2:])) == 1


def _is_video_latent(base_model, x: torch.Tensor) -> bool:
    """[B, C, T, H, W] with the model's latent channels (core turns a 4-D latent into 1 frame of it first)."""
    channels = getattr(getattr(base_model, "latent_format", None), "latent_channels", None)
    return x.ndim == 5 and (channels is None or x.shape[1] == channels)


def _not_a_video_latent(base_model, x: torch.Tensor, kwargs: dict) -> str:
    shapes = _stream_shapes(kwargs) or [tuple(x.shape)]
    family = families.family_of(base_model)
    hint = family.video_only_hint if family is not None and family.video_only_hint else \
        "connect a video latent [B, C, T, H, W]"
    if len(shapes) > 1 and len(shapes[0]) == 5:
        return (f"latent: TurboTiledModel tiles the video stream only, and this latent also holds "
                f"{len(shapes) - 1} other stream(s) {shapes[1:]} (audio) that attend to the WHOLE video, so tiles "
                f"cannot keep them exact; {hint}, or make tile_size cover the {shapes[0][3]}x{shapes[0][4]} latent "
                "(one window runs everything untiled)")
    channels = getattr(getattr(base_model, "latent_format", None), "latent_channels", "its")
    return (f"latent: TurboTiledModel tiles video latents [B, {channels}, T, H, W]; the sampler's latent has shape "
            f"{shapes[0]} (an audio-only latent has no video to tile); {hint}, or sample it with the MODEL from "
            "before TurboTiledModel")


def _tiled_wrapper(settings: TilingSettings, run_plan: RunPlan):
    def apply_model(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                    **kwargs):
        transformer_options = {} if transformer_options is None else transformer_options
        if not _is_video_latent(executor.class_obj, x):  # packed streams (LTX-2 audio-video), or not a video
            if _single_window_streams(run_plan, executor.class_obj, x, kwargs):
                return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
            raise ValueError(_not_a_video_latent(executor.class_obj, x, kwargs))
        # the run's plan (tile_plan.RunPlan): one plan per run, measured when the run starts
        active = run_plan.for_call(executor.class_obj, tuple(x.shape), x.device)
        windows = plan_for(active, executor.class_obj, x.shape[2:])
        if len(windows) == 1:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if control is not None:
            raise ValueError("model: TurboTiledModel cannot tile a ControlNet's output; "
                             "remove the ControlNet or the tiling")

        def run(crops: torch.Tensor, group: list[Window]) -> torch.Tensor:
            per = lambda value: _crop_or_repeat(value, x, group)
            extra = {name: per(value) for name, value in kwargs.items()}
            if kwargs.get(core_compat.LATENT_SHAPES_COND) is not None:  # one stream (a plain LTX-2 video latent)
                extra[core_compat.LATENT_SHAPES_COND] = [crops.shape]
            if any(kwargs.get(name) is not None for name in GUIDE_CONDS):
                scale = core_compat.ltx_vae_scale_factors(executor.class_obj)
                extra.update(window_guides(kwargs, x, group, scale))
            return executor(crops, per(t), per(c_concat), per(c_crossattn), None,
                            _window_options(transformer_options, group, x), **extra)

        def between(done: int, total: int) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()

        per_call = windows_per_call(active, executor.class_obj, x.shape[0])
        return tiled_apply(run, x, windows, per_call, before_batch=between)

    apply_model.settings = settings  # read by the layout preview
    return apply_model


def window_noise_shape(settings: TilingSettings, model, noise_shape, active: TilingSettings | None = None
                       ) -> list[int]:
    """What one tiled model call holds: tile_batch windows of the largest window's size. ComfyUI sizes the
    model load from this (estimate_memory), so a big video does not push a tiled model into partial loading.
    `active`: the run's plan; without one, the plan for cond + uncond (what ComfyUI's estimate counts)."""
    if len(noise_shape) != 5:
        return list(noise_shape)
    batch, channels, frames, height, width = noise_shape
    active = active or auto_settings(settings, model, noise_shape, conds_per_call=2)
    windows = plan_for(active, model.model, (frames, height, width))
    largest = max(windows, key=lambda w: (w.frames[1] - w.frames[0]) * (w.rows[1] - w.rows[0]) *
                  (w.cols[1] - w.cols[0]))
    size = [b - a for a, b in (largest.frames, largest.rows, largest.cols)]
    return [batch * min(windows_per_call(active, model.model, batch), len(windows)), channels, *size]


def _prepare_sampling_wrapper(settings: TilingSettings, run: RunPlan):
    def prepare_sampling(executor, model, noise_shape, *args, **kwargs):
        return executor(model, window_noise_shape(settings, model, noise_shape, run.active), *args, **kwargs)

    return prepare_sampling


def _tiling_wrappers(model) -> list:
    # apply_tiling registers with ModelPatcher.add_wrapper_with_key, which keeps wrappers on the patcher
    # (ModelPatcher.wrappers), not in model_options: ask the patcher
    return list(model.get_wrappers(APPLY_MODEL, WRAPPER_KEY))


def is_tiled(model) -> bool:
    return bool(_tiling_wrappers(model))


def tiling_settings(model) -> TilingSettings | None:
    """The settings of a MODEL patched by apply_tiling, or None."""
    wrappers = _tiling_wrappers(model)
    return getattr(wrappers[0], "settings", None) if wrappers else None


def apply_tiling(model, settings: TilingSettings):
    """A clone of `model` whose every model call runs window by window and blends the results."""
    tile = (1 + settings.overlap,) * 2 if settings.auto else settings.tile  # auto: any valid tile, checked later
    check_plan_inputs(tile, settings.overlap, settings.segment, settings.segment_overlap, True)
    if settings.tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {settings.tile_batch}")
    if is_tiled(model):
        raise ValueError("model: already tiled by TurboTiledModel; connect the MODEL from before the "
                         "first TurboTiledModel instead of chaining two")
    patched = model.clone()
    run = RunPlan(settings)
    patched.add_wrapper_with_key(APPLY_MODEL, WRAPPER_KEY, _tiled_wrapper(settings, run))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
                                 _prepare_sampling_wrapper(settings, run))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, run.outer_sample)
    return finite_guard.guard(patched)
