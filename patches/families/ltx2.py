"""LTX-2 / LTX-2.3 audio-video (comfy.model_base.LTXAV, comfy.ldm.lightricks.av_model.LTXAVModel).

Its video stream is LTX-Video's (128 channels, 32x32 spatial, 8x temporal, causal first frame); each block
also carries an audio stream (audio_attn1 / audio_attn2 / audio_ff) and two audio-video cross-attentions
(audio_to_video_attn: Q video, K/V audio; video_to_audio_attn). What the pack's patches need to know:

- A block-replace patch gets args["img"] = (video tokens, audio tokens) and returns out["img"] in the same
  form; the pack's block patches read and replace the video part only.
- Core's sampler flattens an audio-video latent (a NestedTensor from LTXVConcatAVLatent) into [B, 1, N] and
  passes `latent_shapes` as a cond; the diffusion model's forward then gets x as a list [video, audio]. A
  plain video latent runs video-only: x = [video], audio empty, and the blocks skip audio and both
  audio-video cross-attentions (av_model.py BasicAVTransformerBlock.forward: ax.numel() == 0).
- Training's gradient checkpointing is not offered: core 0.29 hands LTX-2 blocks their timesteps as
  CompressedTimestep objects, which a checkpointed block cannot take as gradient inputs (a step-size adapter's
  gradient would not reach it), so the capability is left out rather than train silently wrong.
- The caption context the DiT's blocks take is [video | audio] connector outputs (19B: 2 x caption_channels;
  2.3: cross_attention_dim + audio_cross_attention_dim). Core 0.29 runs the connectors inside the DiT for
  conditioning marked `unprocessed_ltxav_embeds` and takes an already-processed context as it is; core 0.8.0
  runs them in the text encoder, so the DiT only ever sees the processed width.
"""
from __future__ import annotations

import torch

from .family import ATTENTION, DIT_LOADER, INT8, LR_FEATURES, STEP_SIZE, TILING, VSR, Family
from .ltxv import TURBO2K_FUSION_DEPTHS


def _video_tokens(img):
    return img[0]


def _replace_video_tokens(img, tokens):
    return (tokens, img[1])


def _video_latent(x):
    return x[0] if isinstance(x, (list, tuple)) else x


def _direct_call_conds(x) -> dict:
    # what core's sampler adds (LTXAV.extra_conds): without it, forward would take x[0] (batch item 0) as video
    return {"latent_shapes": [x.shape]}


def context_width(diffusion_model) -> int:
    """Width of the processed caption context the blocks take: [video | audio] connector outputs (19B: 2 x
    caption_channels; 2.3, whose connectors emit the block widths: cross_attention_dim + audio's)."""
    if getattr(diffusion_model, "caption_proj_before_connector", False):
        return int(diffusion_model.cross_attention_dim + diffusion_model.audio_cross_attention_dim)
    return 2 * int(diffusion_model.caption_channels)


def neutral_conditioning(model) -> list:
    """'No prompt' for LTX-2: one zero token of processed context (both hosts take it as it is: core 0.29
    skips its text connectors for a context of this width, core 0.8.0 never runs them in the DiT). No
    attention mask, as core's Gemma encoder passes none; frame_rate is core's default (25)."""
    width = context_width(model.model.diffusion_model)
    return [[torch.zeros(1, 1, width), {}]]


VIDEO_ONLY_HINT = ("split an audio-video latent with LTXVSeparateAVLatent and give the sampler its video_latent "
                   "(LTX-2 then runs video-only, with empty audio); join the result back to the audio with "
                   "LTXVConcatAVLatent")

FAMILY = Family(
    name="LTX-2",
    model_classes=("LTXAV",),
    config_classes=("LTXAV",),
    blocks="transformer_blocks",
    self_attention=("attn1", "audio_attn1"),
    head_dim="dim_head",
    width="inner_dim",
    time_embedding="diffusion_model.adaln_single.emb",
    capabilities=frozenset({ATTENTION, INT8, STEP_SIZE, LR_FEATURES, VSR, DIT_LOADER, TILING}),
    video_tokens=_video_tokens,
    replace_video_tokens=_replace_video_tokens,
    neutral_conditioning=neutral_conditioning,
    default_fusion_depths=TURBO2K_FUSION_DEPTHS,
    context_width=context_width,
    video_latent=_video_latent,
    direct_call_conds=_direct_call_conds,
    video_only_hint=VIDEO_ONLY_HINT,
    attention_modules=("attn1", "audio_attn1", "attn2", "audio_attn2", "audio_to_video_attn",
                       "video_to_audio_attn"),
    feed_forward_modules=("ff", "audio_ff"),
)
