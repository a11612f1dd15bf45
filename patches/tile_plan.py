"""The one auto-tile resolver of TurboTiledModel (tile_size 0), and the plan of the run in progress.

`auto_settings` is the only place an auto tile becomes concrete: the largest square tile whose model
call (latent batch x conds per call x tile_batch items) fits the memory budget by the model's own
estimate (BaseModel.memory_required). Everything that shows or sizes a plan asks it with the same
arguments: the sampler at the start of every run (RunPlan.outer_sample, conds per call from the guider),
ComfyUI's load-size estimate (PREPARE_SAMPLING), TurboTileLayoutPreview and the VSR nodes (conds per
call from their cfg). The budget is measured when asked, so every run sees the memory free then.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import comfy.model_management

from ..samplers.tile_budget import largest_tile, model_call_cost
from ..samplers.tiling import to_units, unit_grid
from . import core_compat, families

MIB = 1024 * 1024


def free_memory_for(model) -> float:
    """Free memory on the model's device once its weights are loaded (ModelPatcher)."""
    unloaded = max(0, model.model_size() - model.loaded_size())
    return comfy.model_management.get_free_memory(model.load_device) - unloaded


def window_unit(base_model, shape) -> tuple[int, int, int]:
    """Latent cells (frames, rows, cols) that windows are made of on this model (families.TilingRules)."""
    rules = families.tiling_rules(base_model)
    return (1, 1, 1) if rules is None else tuple(rules.unit(base_model, tuple(shape)))


def plan_for(settings, base_model, shape) -> list:
    """The windows of `settings` (concrete) over a (T, H, W) latent on this model."""
    return settings.plan(tuple(shape), window_unit(base_model, shape))


def windows_per_call(settings, base_model, batch: int) -> int:
    """tile_batch, or 1 where the family pairs batch halves and the sampler batches more than one item."""
    rules = families.tiling_rules(base_model)
    return 1 if rules is not None and rules.pairs_batch_halves and batch > 1 else settings.tile_batch


def _call_cost(base_model, batch: int, channels: int):
    rules = families.tiling_rules(base_model)
    if rules is not None and rules.call_cost is not None:
        return rules.call_cost(base_model, batch, channels)
    return model_call_cost(base_model.memory_required, batch, channels)


def resolve_tile(settings, base_model, call_shape, budget: float):
    """TilingSettings with the auto tile made concrete for model calls of `call_shape` [N, C, T, H, W] (N items
    per window: the windows per call multiply it): the largest square, in the family's window units, whose
    call fits `budget` by the model's own memory estimate (BaseModel.memory_required, or the family's)."""
    shape = tuple(call_shape[2:])
    unit = window_unit(base_model, shape)
    side = math.sqrt(unit[1] * unit[2])  # cells per unit of tile side
    cost = _call_cost(base_model, call_shape[0] * windows_per_call(settings, base_model, call_shape[0]),
                      call_shape[1])
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


def auto_settings(settings, model, latent_shape, conds_per_call: int, budget: float | None = None):
    """The settings a run over `latent_shape` [B, C, T, H, W] uses; `model` is the ModelPatcher. Only an auto
    tile changes; budget: the settings' own, else the free memory of the model's device once loaded."""
    if not settings.auto:
        return settings
    if budget is None:
        budget = settings.budget_bytes if settings.budget_bytes is not None else free_memory_for(model)
    call_shape = (latent_shape[0] * max(1, conds_per_call), *latent_shape[1:])
    return resolve_tile(settings, model.model, call_shape, budget)


def conds_for_cfg(cfg: float) -> int:
    """Conds per model call of a CFG sampler: core skips the negative at cfg 1 (comfy.samplers.sampling_function)."""
    return 1 if math.isclose(cfg, 1.0) else 2


class RunPlan:
    """The concrete settings of the sampling run in progress on one tiled MODEL (None between runs)."""

    def __init__(self, settings):
        self.settings = settings
        self.active = None

    def outer_sample(self, executor, *args, **kwargs):
        """OUTER_SAMPLE wrapper: resolves the plan once per run, before the model is loaded."""
        guider = executor.class_obj
        shape = _video_shape(args, kwargs)
        self.active = None
        if len(shape) == 5:
            self.active = auto_settings(self.settings, guider.model_patcher, shape,
                                        core_compat.conds_per_model_call(guider))
        try:
            return executor(*args, **kwargs)
        finally:
            self.active = None

    def for_call(self, base_model, shape: tuple, device):
        """The settings for one model call over a video latent of `shape` [B, C, T, H, W]: the run's plan, or (a
        call outside a sampler run) one resolved for this call's own batch against the budget or the free memory
        of `device` now."""
        if self.active is not None or not self.settings.auto:
            return self.active or self.settings
        budget = self.settings.budget_bytes
        budget = comfy.model_management.get_free_memory(device) if budget is None else budget
        return resolve_tile(self.settings, base_model, tuple(shape), budget)


def _video_shape(args: tuple, kwargs: dict) -> tuple:
    """The video latent's shape of a run: its first stream's when core packed several (LTX-2 audio-video: the
    `latent_shapes` argument of outer_sample), else the noise's."""
    streams = kwargs.get(core_compat.LATENT_SHAPES_COND)
    if streams:
        return tuple(streams[0])
    noise = args[0] if args else kwargs.get("noise")
    return tuple(getattr(noise, "shape", ()))
