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

import logging
import math
from dataclasses import dataclass, replace

import comfy.model_management
import comfy.patcher_extension
import torch

from ..samplers.tile_budget import largest_tile, model_call_cost
from ..samplers.tiling import Window, check_plan_inputs, plan_windows, tiled_apply, to_units, unit_grid
from . import core_compat, families
from .tiled_guides import GUIDE_CONDS, window_guides

WRAPPER_KEY = "turbovideo_tiled_model"
# transformer_options entry {name: tensor laid out like x [B, C, T, H, W]}: cropped per window like x, so
# patches inside the model (e.g. the VSR conditioner's LR latent) see their window's part
CROPPED_OPTIONS_KEY = "turbovideo_cropped"
# transformer_options entry inside a window's call: (full latent (T, H, W), [(frames, rows, cols) per window])
WINDOWS_KEY = "turbovideo_windows"
APPLY_MODEL = comfy.patcher_extension.WrappersMP.APPLY_MODEL
AUTO = (0, 0)  # TilingSettings.tile: the largest square tile that fits the memory budget
MIB = 1024 * 1024


@dataclass(frozen=True)
class TilingSettings:
    tile: tuple[int, int]  # latent rows, latent columns per window
    overlap: int  # latent cells shared by neighbouring tiles
    segment: int = 0  # latent frames per segment; 0 = the whole video
    segment_overlap: int = 2  # latent frames shared by neighbouring segments
    weights: str = "cosine"
    tile_batch: int = 1
    budget_bytes: float | None = None  # auto tile only; None = the device's free memory at the first call

    @property
    def auto(self) -> bool:
        return self.tile == AUTO

    def plan(self, shape: tuple[int, int, int], unit: tuple[int, int, int] = (1, 1, 1)) -> list[Window]:
        """Windows over a (T, H, W) latent; `unit`: the cells a window must start on and be made of
        (window_unit: 1 x 1 x 1 unless the model's family says otherwise)."""
        sizes = to_units(shape, unit, self.tile, self.overlap, self.segment, self.segment_overlap)
        return plan_windows(shape, sizes.tile, sizes.overlap, sizes.segment, sizes.segment_overlap, self.weights,
                            unit=unit)


def window_unit(base_model, shape) -> tuple[int, int, int]:
    """Latent cells (frames, rows, cols) that windows are made of on this model (families.TilingRules)."""
    rules = families.tiling_rules(base_model)
    return (1, 1, 1) if rules is None else tuple(rules.unit(base_model, tuple(shape)))


def plan_for(settings: TilingSettings, base_model, shape) -> list[Window]:
    return settings.plan(tuple(shape), window_unit(base_model, shape))


def windows_per_call(settings: TilingSettings, base_model, batch: int) -> int:
    """tile_batch, or 1 where the family pairs batch halves and the sampler batches more than one item."""
    rules = families.tiling_rules(base_model)
    return 1 if rules is not None and rules.pairs_batch_halves and batch > 1 else settings.tile_batch


def _call_cost(base_model, batch: int, channels: int):
    rules = families.tiling_rules(base_model)
    if rules is not None and rules.call_cost is not None:
        return rules.call_cost(base_model, batch, channels)
    return model_call_cost(base_model.memory_required, batch, channels)


def resolve_tile(settings: TilingSettings, base_model, x_shape, budget: float) -> TilingSettings:
    """An auto tile made concrete: the largest square whose model call (x_shape[0] items per window) fits
    `budget` by the model's own memory estimate (BaseModel.memory_required, or the family's)."""
    shape = tuple(x_shape[2:])
    unit = window_unit(base_model, shape)
    side = math.sqrt(unit[1] * unit[2])  # cells per unit of tile side
    cost = _call_cost(base_model, x_shape[0] * windows_per_call(settings, base_model, x_shape[0]), x_shape[1])
    in_cells = lambda t, h, w: cost(*(min(n * u, limit) for n, u, limit in zip((t, h, w), unit, shape)))
    segment = to_units(shape, unit, (1, 1), 0, settings.segment, settings.segment_overlap).segment
    overlap = math.ceil(settings.overlap / side)
    choice = largest_tile(unit_grid(shape, unit), budget, in_cells, overlap, segment)
    if not choice.fits:
        logging.warning("TurboTiledModel: even a %dx%d latent tile is estimated at %.0f MiB, over the %.0f MiB "
                        "budget; trying anyway (lower segment_length or tile_batch)", min(choice.side * unit[1],
                        shape[1]), min(choice.side * unit[2], shape[2]), choice.cost / MIB, budget / MIB)
    # a side below overlap + 1 only comes back when it covers the whole frame: one window, no overlap
    overlap = settings.overlap if choice.side > overlap else math.floor((choice.side - 1) * side)
    tile = math.ceil(choice.side * side)
    return replace(settings, tile=(tile, tile), overlap=overlap)


def free_memory_for(model) -> float:
    """Free memory on the model's device once its weights are loaded (ModelPatcher)."""
    unloaded = max(0, model.model_size() - model.loaded_size())
    return comfy.model_management.get_free_memory(model.load_device) - unloaded


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


def _single_window_streams(concrete, base_model, x: torch.Tensor, kwargs: dict) -> bool:
    """True when x packs a video stream with others (LTX-2 audio) and the plan covers the video in one window:
    then the model runs on everything exactly as untiled (audio and audio-video cross-attention included)."""
    shapes = _stream_shapes(kwargs)
    if len(shapes) < 2 or len(shapes[0]) != 5:
        return False
    return len(plan_for(concrete(base_model, shapes[0], x.device), base_model, shapes[0][2:])) == 1


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


def _tiled_wrapper(settings: TilingSettings):
    resolved: dict = {}  # auto tile per x shape, fixed at its first call so every step uses one plan

    def concrete(base_model, shape: tuple, device) -> TilingSettings:
        if not settings.auto:
            return settings
        if tuple(shape) not in resolved:
            budget = settings.budget_bytes
            budget = comfy.model_management.get_free_memory(device) if budget is None else budget
            resolved[tuple(shape)] = resolve_tile(settings, base_model, shape, budget)
        return resolved[tuple(shape)]

    def apply_model(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                    **kwargs):
        transformer_options = {} if transformer_options is None else transformer_options
        if not _is_video_latent(executor.class_obj, x):  # packed streams (LTX-2 audio-video), or not a video
            if _single_window_streams(concrete, executor.class_obj, x, kwargs):
                return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
            raise ValueError(_not_a_video_latent(executor.class_obj, x, kwargs))
        active = concrete(executor.class_obj, tuple(x.shape), x.device)
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


def window_noise_shape(settings: TilingSettings, model, noise_shape) -> list[int]:
    """What one tiled model call holds: tile_batch windows of the largest window's size. ComfyUI sizes the
    model load from this (estimate_memory), so a big video does not push a tiled model into partial loading."""
    if len(noise_shape) != 5:
        return list(noise_shape)
    batch, channels, frames, height, width = noise_shape
    active = settings
    if settings.auto:
        budget = settings.budget_bytes if settings.budget_bytes is not None else free_memory_for(model)
        with_uncond = [2 * batch, *noise_shape[1:]]  # the estimate ComfyUI makes counts cond + uncond
        active = resolve_tile(settings, model.model, with_uncond, budget)
    windows = plan_for(active, model.model, (frames, height, width))
    largest = max(windows, key=lambda w: (w.frames[1] - w.frames[0]) * (w.rows[1] - w.rows[0]) *
                  (w.cols[1] - w.cols[0]))
    size = [b - a for a, b in (largest.frames, largest.rows, largest.cols)]
    return [batch * min(windows_per_call(active, model.model, batch), len(windows)), channels, *size]


def _prepare_sampling_wrapper(settings: TilingSettings):
    def prepare_sampling(executor, model, noise_shape, *args, **kwargs):
        return executor(model, window_noise_shape(settings, model, noise_shape), *args, **kwargs)

    return prepare_sampling


def is_tiled(model) -> bool:
    return bool(comfy.patcher_extension.get_wrappers_with_key(APPLY_MODEL, WRAPPER_KEY, model.model_options,
                                                              is_model_options=True))


def tiling_settings(model) -> TilingSettings | None:
    """The settings of a MODEL patched by apply_tiling, or None."""
    wrappers = comfy.patcher_extension.get_wrappers_with_key(APPLY_MODEL, WRAPPER_KEY, model.model_options,
                                                             is_model_options=True)
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
    patched.add_wrapper_with_key(APPLY_MODEL, WRAPPER_KEY, _tiled_wrapper(settings))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
                                 _prepare_sampling_wrapper(settings))
    return patched
