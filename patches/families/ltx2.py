"""LTX-2 / LTX-2.3 audio-video (comfy.model_base.LTXAV, comfy.ldm.lightricks.av_model.LTXAVModel).

Its video stream is LTX-Video's (128 channels, 32x32 spatial, 8x temporal, causal first frame); each block
also carries an audio stream. A block-replace patch gets args["img"] = (video tokens, audio tokens) and
returns out["img"] in the same form, so the pack's block patches read and replace the video part only.
"""
from __future__ import annotations

import torch

from .family import TILING, VSR, Family
from .ltxv import TURBO2K_FUSION_DEPTHS


def _video_tokens(img):
    return img[0]


def _replace_video_tokens(img, tokens):
    return (tokens, img[1])


def context_width(diffusion_model) -> int:
    """Width of the processed caption context the blocks take: [video | audio] connector outputs (19B: 2 x
    caption_channels; 2.3, whose connectors emit the block widths: cross_attention_dim + audio's)."""
    if getattr(diffusion_model, "caption_proj_before_connector", False):
        return int(diffusion_model.cross_attention_dim + diffusion_model.audio_cross_attention_dim)
    return 2 * int(diffusion_model.caption_channels)


def neutral_conditioning(model) -> list:
    """'No prompt' for LTX-2: one zero token of processed context. Core 0.29 runs its text connectors only on
    conditioning marked `unprocessed_ltxav_embeds` and takes a processed context as it is; core 0.8.0 runs them
    in the text encoder, so its DiT only ever sees the processed width. No attention mask (core's Gemma encoder
    passes none); frame_rate is core's default."""
    return [[torch.zeros(1, 1, context_width(model.model.diffusion_model)), {}]]


FAMILY = Family(
    name="LTX-2",
    model_classes=("LTXAV",),
    config_classes=("LTXAV",),
    blocks="transformer_blocks",
    self_attention=("attn1", "audio_attn1"),
    head_dim="dim_head",
    width="inner_dim",
    time_embedding="diffusion_model.adaln_single.emb",
    capabilities=frozenset({TILING, VSR}),
    video_tokens=_video_tokens,
    replace_video_tokens=_replace_video_tokens,
    neutral_conditioning=neutral_conditioning,
    default_fusion_depths=TURBO2K_FUSION_DEPTHS,
)
