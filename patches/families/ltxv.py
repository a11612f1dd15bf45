"""LTX-Video 0.9.x (comfy.model_base.LTXV, comfy.ldm.lightricks.model.LTXVModel)."""
from __future__ import annotations

import torch

from .family import ATTENTION, CHECKPOINTING, DIT_LOADER, INT8, LR_FEATURES, STEP_SIZE, TILING, VSR, Family, VAEFamily

TURBO2K_FUSION_DEPTHS = (0 / 28, 7 / 28, 14 / 28, 21 / 28)  # Turbo2K's fusion blocks 0, 7, 14, 21 of 28


def context_width(diffusion_model) -> int:
    """T5-XXL's width as the DiT's caption projection takes it (4096)."""
    projection = getattr(diffusion_model, "caption_projection", None)
    if projection is None:
        raise ValueError("model: this LTX-Video DiT has no caption projection; connect 'positive' conditioning")
    return int(projection.linear_1.weight.shape[1])


def neutral_conditioning(model) -> list:
    """'No prompt' for an LTX-Video DiT: one zero caption token with its attention mask."""
    width = context_width(model.model.diffusion_model)
    return [[torch.zeros(1, 1, width), {"attention_mask": torch.ones(1, 1, dtype=torch.long)}]]


FAMILY = Family(
    name="LTX-Video",
    model_classes=("LTXV",),
    config_classes=("LTXV",),
    blocks="transformer_blocks",
    self_attention=("attn1",),
    head_dim="dim_head",
    width="inner_dim",
    time_embedding="diffusion_model.adaln_single.emb",
    capabilities=frozenset({ATTENTION, INT8, STEP_SIZE, LR_FEATURES, VSR, DIT_LOADER, TILING, CHECKPOINTING}),
    neutral_conditioning=neutral_conditioning,
    default_fusion_depths=TURBO2K_FUSION_DEPTHS,
    context_width=context_width,
    attention_modules=("attn1", "attn2"),
    feed_forward_modules=("ff",),
)

# LTX-Video and LTX-2 share core's VideoVAE (comfy/ldm/lightricks/vae): causal convs that pad by repeating
# the first frame, so frame 0 gets its own latent and clips are 1 + 8k frames
VAE = VAEFamily(name="LTX", core_package="lightricks", causal_encoder=True, causal_decoder=None)
