"""Turbo2K LR -> HR: capture LR DiT block features at the last LR step, fuse them into an HR MODEL.

Capture (run_lr_pass): the LR pass runs through the GUIDER it was given, with a copy of that guider
whose model options carry block-replace patches ("dit", "double_block", i) on the chosen LTX-Video
blocks. A patch runs the block and, only when the call's sigma (transformer_options["sigmas"]) is the
last step's sigma (transformer_options["sample_sigmas"][-2]: the final step goes from [-2] to [-1]),
keeps a copy of the block's OUTPUT hidden states of the conditional batch entries. Outputs, because
Turbo2K's multi-level features are what each block produced; and a copy, because the next LTX block
updates its input in place. The token grid (T, H, W) comes from a DIFFUSION_MODEL wrapper that puts the
latent's shape into transformer_options (LTX-Video patchifies with patch size 1: one token a voxel).

Apply (apply_lr_features): a clone of the HR MODEL whose patches add
strength * adapter(block, LR features) to the chosen blocks' outputs (cond and uncond entries alike),
so any sampler drives the HR pass. Nothing is decoded or encoded between the passes. Under
TurboTiledModel each window adds its crop of the addend on the FULL HR grid (models/fusion_blocks.resize_tokens_window).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sample
import comfy.utils
import latent_preview
import torch

from ..models.fusion_blocks import FusionAdapter, resize_tokens_window
from . import core_compat, families
from .tiled_model import WINDOWS_KEY

GRID_KEY = "turbo_token_grid"
APPLIED_KEY = "turbo_lr_features"
WRAPPER_KEY = "turbovideo_lr_features"
AUTO_BLOCKS = "auto"  # the family's default fusion blocks (Turbo2K's relative depths)


@dataclass
class LRFeatures:
    """What travels on a TURBO_LR_FEATURES socket: block index -> [B, T*h*w, width] hidden states."""
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int, int] | None = None
    sigma: float | None = None  # the sigma of the model call they were taken at (the last step's)
    width: int = 0
    num_blocks: int = 0


def lr_family(model, input_name: str) -> tuple[families.Family, object]:
    """(family, diffusion_model) of a MODEL that LR -> HR feature guidance supports, else a clear ValueError."""
    family = families.require(model, families.LR_FEATURES, input_name)
    return family, model.get_model_object("diffusion_model")


def check_blocks(blocks, num_blocks: int, input_name: str, family: families.Family | None = None) -> list[int]:
    """Block indices, or AUTO_BLOCKS: the family's Turbo2K depths (0, 7, 14, 21 of 28) scaled to num_blocks."""
    family = family or families.FAMILIES[0]
    if blocks == AUTO_BLOCKS:
        return family.default_fusion_blocks(num_blocks)
    blocks = [int(b) for b in blocks]
    if not blocks or len(set(blocks)) != len(blocks) or min(blocks) < 0 or max(blocks) >= num_blocks:
        scaled = ", ".join(map(str, family.default_fusion_blocks(num_blocks)))
        raise ValueError(f"{input_name}: blocks {blocks} must be distinct indices 0..{num_blocks - 1} (this "
                         f"{family.name} model has {num_blocks} blocks; Turbo2K's 0, 7, 14, 21 of 28 are {scaled} "
                         f"at its depth, which '{AUTO_BLOCKS}' picks)")
    return blocks


def _grid_wrapper(family: families.Family):
    """DIFFUSION_MODEL wrapper: the video latent's (T, H, W) into transformer_options (LTX-2: x[0] of the streams)."""
    def wrapper(executor, *args, **kwargs):
        x = family.video_latent(args[0])
        if not torch.is_tensor(x) or x.ndim != 5:
            raise ValueError(f"LR -> HR feature guidance needs a video latent [B, C, T, H, W]; "
                             f"{family.video_only_hint or 'connect one'}")
        index = core_compat.LTX_FORWARD_OPTIONS_INDEX
        options = dict(core_compat.positional_options(args, kwargs, index))
        options[GRID_KEY] = tuple(int(s) for s in x.shape[2:])
        args, kwargs = core_compat.with_positional_options(args, kwargs, index, options)
        return executor(*args, **kwargs)

    return wrapper


def check_video_latent(model, latent: dict, input_name: str) -> None:
    """A LATENT whose (first) stream is this model's video latent: not an audio-only LTX-2 latent."""
    family = families.family_of(model)
    samples = latent["samples"]
    video = samples.unbind()[0] if getattr(samples, "is_nested", False) else samples
    channels = model.get_model_object("latent_format").latent_channels
    if video.ndim == 5 and video.shape[1] == channels:
        return
    hint = family.video_only_hint if family is not None and family.video_only_hint else "connect a video latent"
    raise ValueError(f"{input_name}: LR -> HR works on video latents [B, {channels}, T, H, W]; this latent's "
                     f"{'first stream' if video is not samples else 'samples'} has shape {tuple(video.shape)} (an "
                     f"audio-only latent?); {hint}")


def _run_block(previous, args, extra):
    return previous(args, extra) if previous is not None else core_compat.run_original_block(args, extra)


def _grid_tokens(img: torch.Tensor, options: dict) -> tuple[int, int, int]:
    grid = options.get(GRID_KEY)
    if grid is None or grid[0] * grid[1] * grid[2] != img.shape[1]:
        raise ValueError(f"LR -> HR feature guidance: {img.shape[1]} tokens do not fill the latent grid {grid}; "
                         "keyframe guides (LTXVAddGuide) that drop tokens are not supported here")
    return grid


def _is_last_step(options: dict) -> tuple[bool, float]:
    sigmas, schedule = options.get(core_compat.SIGMAS), options.get(core_compat.SAMPLE_SIGMAS)
    if sigmas is None or schedule is None or len(schedule) < 2:
        return False, 0.0
    sigma = float(sigmas.reshape(-1)[0])
    last = float(schedule[-2])
    return abs(sigma - last) <= 1e-5 * max(1.0, abs(last)), sigma


def _capture_patch(store: LRFeatures, family: families.Family, block: int, previous):
    def patch(args, extra):
        out = _run_block(previous, args, extra)
        options = args["transformer_options"]
        last, sigma = _is_last_step(options)
        order = list(options.get(core_compat.COND_OR_UNCOND, [0]))
        if last and 0 in order:
            img = family.video_tokens(out["img"])
            chunk = img.shape[0] // len(order)
            start = order.index(0) * chunk
            device = comfy.model_management.intermediate_device()
            store.features[block] = img[start:start + chunk].detach().to(device, copy=True)
            store.grid, store.sigma = _grid_tokens(img, options), sigma
        return out

    return patch


def capturing_guider(guider, blocks, store: LRFeatures):
    """A copy of `guider` whose model keeps the chosen blocks' outputs at the last step in `store`."""
    model = guider.model_patcher
    family, diffusion_model = lr_family(model, "guider")
    store.num_blocks = len(family.blocks_of(diffusion_model))
    store.width = family.width_of(diffusion_model)
    blocks = check_blocks(blocks, store.num_blocks, "blocks", family)
    patched = copy.copy(guider)
    patched.model_patcher = model.clone()
    patched.model_patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                                               _grid_wrapper(family))
    options = comfy.model_patcher.create_model_options_clone(guider.model_options)
    for block in blocks:
        patch = _capture_patch(store, family, block, core_compat.block_patch(options, block))
        comfy.model_patcher.set_model_options_patch_replace(options, patch, "dit", "double_block", block)
    patched.model_options = options
    return patched


def capturing_model(model, blocks, store: LRFeatures):
    """A clone of `model` that keeps the chosen blocks' outputs at the last step in `store` (training: a
    call whose transformer_options hold sample_sigmas [sigma, 0] is a last step at sigma)."""
    family, diffusion_model = lr_family(model, "model")
    store.num_blocks, store.width = len(family.blocks_of(diffusion_model)), family.width_of(diffusion_model)
    patched = model.clone()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                                 _grid_wrapper(family))
    for block in check_blocks(blocks, store.num_blocks, "blocks", family):
        patch = _capture_patch(store, family, block, core_compat.block_patch(patched.model_options, block))
        patched.set_model_patch_replace(patch, "dit", "double_block", block)
    return patched


def run_lr_pass(noise, guider, sampler, sigmas, latent: dict, blocks) -> tuple[dict, LRFeatures]:
    """Samples the LR latent as SamplerCustomAdvanced does and returns (latent, captured features)."""
    store = LRFeatures()
    capturing = capturing_guider(guider, blocks, store)  # refuses a model family it does not know first
    check_video_latent(guider.model_patcher, latent, "latent_image")
    result = sample_with(capturing, noise, sampler, sigmas, latent)
    family = families.family_of(guider.model_patcher)
    missing = sorted(set(check_blocks(blocks, store.num_blocks, "blocks", family)) - set(store.features))
    if missing:
        raise ValueError(f"sampler: no model call ran at the last step's sigma {float(sigmas[-2]):.6g}, so LR "
                         f"features of blocks {missing} were not captured; use a sampler that evaluates the "
                         "model at every scheduled sigma (euler, res_multistep, dpmpp_2m, ...)")
    return result, store


class _ApplyState:
    """Sampling runs a copy of the adapter on the model's device, kept for one run; `live` (training) runs
    the adapter itself and keeps nothing, so gradients reach its parameters."""

    def __init__(self, adapter: FusionAdapter, features: LRFeatures, strength: float, live: bool = False):
        self.adapter, self.features, self.strength, self.live = adapter, features, strength, live
        self.cache: dict = {}  # device -> (adapter, {block: tokens}) for one sampling run
        self.projected: dict = {}  # (device, hr block) -> fusion features on the LR grid, tiled runs only

    def on(self, device):
        if self.live:
            return self.adapter, {b: t.to(device) for b, t in self.features.features.items()}
        if device not in self.cache:
            lr = {b: t.to(device) for b, t in self.features.features.items()}
            self.cache[device] = (copy.deepcopy(self.adapter).to(device), lr)
        return self.cache[device]

    def lr_grid_features(self, hr_block: int, lr_block: int, device) -> torch.Tensor:
        """The fusion block's output before the resize; constant over a run, so kept for every window."""
        if self.live or (device, hr_block) not in self.projected:
            adapter, lr = self.on(device)
            grid = self.features.grid
            projected = adapter(hr_block, lr[lr_block], grid, grid)  # same grid: no resize
            if self.live:
                return projected
            self.projected[device, hr_block] = projected
        return self.projected[device, hr_block]

    def outer_sample(self, executor, *args, **kwargs):
        try:
            return executor(*args, **kwargs)
        finally:
            self.cache.clear()
            self.projected.clear()


def window_addends(state: _ApplyState, hr_block: int, lr_block: int, full_grid, windows, device) -> list:
    """Per TurboTiledModel window: the fusion addend on the FULL HR grid, cropped to the window."""
    features = state.lr_grid_features(hr_block, lr_block, device)
    return [resize_tokens_window(features, state.features.grid, full_grid, window, state.adapter.resize)
            for window in windows]


def _over_batch(addend: torch.Tensor, batch: int) -> torch.Tensor:
    if batch % addend.shape[0]:
        raise ValueError(f"lr_features: batch {addend.shape[0]} of the LR pass does not divide the HR "
                         f"batch {batch}; use the same batch size for both passes")
    return addend.repeat(batch // addend.shape[0], 1, 1)


def _addend(state: _ApplyState, hr_block: int, lr_block: int, img: torch.Tensor, options: dict) -> torch.Tensor:
    grid = _grid_tokens(img, options)
    if WINDOWS_KEY not in options:
        adapter, lr = state.on(img.device)
        return _over_batch(adapter(hr_block, lr[lr_block], state.features.grid, grid), img.shape[0])
    full_grid, windows = options[WINDOWS_KEY]
    if any(tuple(b - a for a, b in window) != grid for window in windows):
        raise ValueError(f"lr_features: TurboTiledModel windows {windows} do not match the {grid} token grid of "
                         "this call; put TurboTiledModel directly on the MODEL from TurboApplyLRFeatures")
    parts = window_addends(state, hr_block, lr_block, full_grid, windows, img.device)
    return torch.cat([_over_batch(part, img.shape[0] // len(windows)) for part in parts])


def _fusion_patch(state: _ApplyState, family: families.Family, hr_block: int, lr_block: int, previous):
    def patch(args, extra):
        out = _run_block(previous, args, extra)
        img = family.video_tokens(out["img"])
        addend = _addend(state, hr_block, lr_block, img, args["transformer_options"])
        return {**out, "img": family.replace_video_tokens(out["img"], img + state.strength * addend.to(img.dtype))}

    return patch


def check_fits(model, features: LRFeatures, adapter: FusionAdapter, file_name: str) -> families.Family:
    family, diffusion_model = lr_family(model, "model")
    width = family.width_of(diffusion_model)
    if adapter.hr_width != width or adapter.lr_width != features.width:
        raise ValueError(f"adapter: {file_name} fuses width {adapter.lr_width} LR features into width "
                         f"{adapter.hr_width} HR blocks, but the LR model has width {features.width} and the HR "
                         f"model width {width}; pick an adapter made for these models")
    adapter.check_blocks(len(family.blocks_of(diffusion_model)), features.num_blocks, f"adapter ({file_name})")
    missing = sorted(set(adapter.lr_blocks) - set(features.features))
    if missing:
        raise ValueError(f"lr_features: the adapter needs LR blocks {adapter.lr_blocks} but blocks {missing} were "
                         f"not captured (TurboLRPass captured {sorted(features.features)}); set its blocks to "
                         f"{', '.join(map(str, adapter.lr_blocks))}")
    if APPLIED_KEY in model.model_options.get("transformer_options", {}):
        raise ValueError("model: already carries LR features (TurboApplyLRFeatures); connect the MODEL from "
                         "the loader instead of chaining a second one")
    return family


def apply_lr_features(model, features: LRFeatures, adapter: FusionAdapter, strength: float, file_name: str,
                      live: bool = False):
    """A clone of the HR `model` that adds strength * fusion(LR features) to the adapter's HR blocks."""
    family = check_fits(model, features, adapter, file_name)
    patched = model.clone()
    state = _ApplyState(adapter, features, float(strength), live)
    for hr_block, lr_block in zip(adapter.hr_blocks, adapter.lr_blocks):
        previous = core_compat.block_patch(patched.model_options, hr_block)
        patch = _fusion_patch(state, family, hr_block, lr_block, previous)
        patched.set_model_patch_replace(patch, "dit", "double_block", hr_block)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                                 _grid_wrapper(family))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, state.outer_sample)
    patched.model_options["transformer_options"][APPLIED_KEY] = {"file": file_name, "sigma": features.sigma}
    return patched


def sample_with(guider, noise, sampler, sigmas, latent: dict) -> dict:
    """What SamplerCustomAdvanced does with a LATENT (its noise_mask included) -> the sampled LATENT."""
    samples = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
    callback = latent_preview.prepare_callback(guider.model_patcher, sigmas.shape[-1] - 1, {})
    out = guider.sample(noise.generate_noise({**latent, "samples": samples}), samples, sampler, sigmas,
                        denoise_mask=latent.get("noise_mask"), callback=callback,
                        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=noise.seed)
    return {**latent, "samples": out.to(comfy.model_management.intermediate_device())}
