"""VSR conditioning of an LTX-Video MODEL: the conditioner after DiT block 0, and the factorized mask.

The VSR conditioner (models/vsr_conditioner.py) goes on a MODEL clone, after DiT block 0.

A `dit` / (`double_block`, 0) block replace runs block 0 unchanged and adds the conditioned LR latent
to its output. The LR latent rides in transformer_options[CROPPED_OPTIONS_KEY], laid out like the
sampler's x [B, 128, T, H, W] (in the model's latent space, i.e. after latent_format.process_in), so
TurboTiledModel crops it per window exactly as it crops x; untiled, the whole latent is used.

Factorized conditioning (TurboVSR sec. 3.3) freezes latent frame 0 with ComfyUI's own mechanism:
a denoise (noise) mask that is 0 there. The sampler then hands the model the clean latent at those
cells and keeps them in its output (KSamplerX0Inpaint), and LTXV.process_timestep turns the mask into
per-token timesteps (0 = clean conditioning tokens). The mask is laid out like x, so TurboTiledModel
crops it per window.
"""
from __future__ import annotations

import torch

from ..models.vsr_conditioner import VSRConditioner, latent_tokens
from . import core_compat, families
from .tiled_model import CROPPED_OPTIONS_KEY

LR_LATENT = "vsr_lr_latent"
PATCH_KEY = "turbovideo_vsr_conditioner"


def first_latent_mask(latent: torch.Tensor) -> torch.Tensor:
    """Denoise mask [B, 1, T, H, W]: 0 on latent frame 0 (kept clean), 1 elsewhere (denoised)."""
    mask = torch.ones((latent.shape[0], 1, *latent.shape[2:]), dtype=torch.float32)
    mask[:, :, 0] = 0.0
    return mask


def _block_patch(conditioner: VSRConditioner, family: families.Family, live: bool, previous=None):
    """Block 0, then the conditioner. Sampling runs a frozen copy in the model's device and dtype; `live`
    (training) calls `conditioner` itself, so gradients reach its parameters."""
    copies: dict = {}

    def on(device, dtype) -> VSRConditioner:
        key = (device, dtype)
        if live:
            return conditioner
        if key not in copies:
            copies.clear()
            copies[key] = VSRConditioner(conditioner.width, conditioner.latent_channels, device=device,
                                         dtype=dtype).requires_grad_(False)
            copies[key].load_state_dict(conditioner.state_dict())
        return copies[key]

    def patch(args: dict, extra: dict) -> dict:
        out = previous(args, extra) if previous is not None else core_compat.run_original_block(args, extra)
        hidden = family.video_tokens(out["img"])
        lr = args["transformer_options"].get(CROPPED_OPTIONS_KEY, {}).get(LR_LATENT)
        if lr is None:
            return out
        tokens = latent_tokens(lr.to(device=hidden.device, dtype=hidden.dtype))
        if tokens.shape[0] == 1 and hidden.shape[0] > 1:
            tokens = tokens.expand(hidden.shape[0], -1, -1)
        if tokens.shape[:2] != hidden.shape[:2]:
            raise ValueError(f"vsr_conditioner: the LR latent gives {tuple(tokens.shape[:2])} (batch, tokens) but "
                             f"the model has {tuple(hidden.shape[:2])}; keyframe/guide conditioning that adds "
                             "tokens cannot be combined with the VSR conditioner")
        return {**out, "img": family.replace_video_tokens(out["img"], on(hidden.device, hidden.dtype)(hidden, tokens))}

    return patch


def _check_model(model, conditioner: VSRConditioner) -> families.Family:
    family = families.require(model, families.VSR)
    width = family.width_of(model.model.diffusion_model)
    if width != conditioner.width:
        raise ValueError(f"vsr_conditioner: made for model width {conditioner.width}, but this model's width is "
                         f"{width}; pick the conditioner trained for this checkpoint")
    return family


def apply_vsr_conditioner(model, conditioner: VSRConditioner, lr_latent: torch.Tensor, live: bool = False):
    """A clone of `model` whose block 0 output is conditioned on `lr_latent` (raw VAE latent [B, C, T, H, W])."""
    family = _check_model(model, conditioner)
    if lr_latent.ndim != 5 or lr_latent.shape[1] != conditioner.latent_channels:
        raise ValueError(f"vsr_conditioner: the LR latent must be [B, {conditioner.latent_channels}, T, H, W], "
                         f"got {tuple(lr_latent.shape)}")
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    if PATCH_KEY in options:
        raise ValueError("model: already has a VSR conditioner; connect the MODEL from before it")
    options[PATCH_KEY] = True
    processed = patched.model.latent_format.process_in(lr_latent.float())
    options[CROPPED_OPTIONS_KEY] = {**options.get(CROPPED_OPTIONS_KEY, {}), LR_LATENT: processed}
    previous = core_compat.block_patch(patched.model_options, 0)  # another pack's or the training's keeps running
    patched.set_model_patch_replace(_block_patch(conditioner, family, live, previous), "dit", "double_block", 0)
    return patched
