"""Wan 2.1 / 2.2 (comfy.model_base.WAN21 and its subclasses, comfy.ldm.wan.model.WanModel)."""
from __future__ import annotations

from .family import ATTENTION, INT8, STEP_SIZE, TILING, Family, VAEFamily

FAMILY = Family(
    name="Wan",
    model_classes=("WAN21",),  # every Wan variant in core subclasses WAN21
    config_classes=("WAN21_T2V",),
    blocks="blocks",
    self_attention=("self_attn",),
    head_dim="head_dim",
    width="dim",
    time_embedding="diffusion_model.time_embedding",
    capabilities=frozenset({ATTENTION, INT8, STEP_SIZE, TILING}),
    attention_modules=("self_attn", "cross_attn"),
    feed_forward_modules=("ffn",),
)

# Wan's VAE runs causal 3D convs with a frame cache in both directions: clips are 1 + 4k frames
VAE = VAEFamily(name="Wan", core_package="wan", causal_encoder=True, causal_decoder=True)
