"""LTX-2 / LTX-2.3 audio-video (comfy.model_base.LTXAV, comfy.ldm.lightricks.av_model.LTXAVModel).

Its video stream is LTX-Video's (128 channels, 32x32 spatial, 8x temporal, causal first frame); each block
also carries an audio stream. A block-replace patch gets args["img"] = (video tokens, audio tokens) and
returns out["img"] in the same form, so the pack's block patches read and replace the video part only.
"""
from __future__ import annotations

from .family import TILING, Family
from .ltxv import TURBO2K_FUSION_DEPTHS


def _video_tokens(img):
    return img[0]


def _replace_video_tokens(img, tokens):
    return (tokens, img[1])


FAMILY = Family(
    name="LTX-2",
    model_classes=("LTXAV",),
    config_classes=("LTXAV",),
    blocks="transformer_blocks",
    self_attention=("attn1", "audio_attn1"),
    head_dim="dim_head",
    width="inner_dim",
    time_embedding="diffusion_model.adaln_single.emb",
    capabilities=frozenset({TILING}),
    video_tokens=_video_tokens,
    replace_video_tokens=_replace_video_tokens,
    default_fusion_depths=TURBO2K_FUSION_DEPTHS,
)
