"""Tiny LTX-2 (19B layout) checkpoints: the audio-video DiT for UNETLoader, and DiT + LTX-2 video VAE in one file.

Key layout and names as in the released ltx-2-19b files (bare keys after `model.diffusion_model.`), with the
19B config switches in the safetensors metadata `config` that core reads (split RoPE, float64 frequencies,
middle-index grid, causal temporal positions, AV timestep scale 1000). The text connectors are written as
the real files hold them: core 0.29 builds them inside the DiT, core 0.8.0 inside the text encoder (there
the DiT reports them as unexpected keys, see CONNECTOR_PREFIXES).
"""
import json

import torch

from . import ltx2_audio, ltx2_vae
from .random_weights import random_state_dict, save

LATENT_CHANNELS = 128
CONNECTOR_PREFIXES = ("video_embeddings_connector.", "audio_embeddings_connector.")

# widths: video D = 2 x 8, audio A = 2 x 4, caption (Gemma stand-in) 12 = connector 2 x 6
TRANSFORMER_19B = {
    "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16,
    "audio_num_attention_heads": 2, "audio_attention_head_dim": 4, "audio_cross_attention_dim": 8,
    "caption_channels": 12, "in_channels": LATENT_CHANNELS, "audio_in_channels": LATENT_CHANNELS,
    "connector_num_attention_heads": 2, "connector_attention_head_dim": 6, "connector_num_layers": 1,
    "rope_type": "split", "frequencies_precision": "float64", "use_middle_indices_grid": True,
    "causal_temporal_positioning": True, "av_ca_timestep_scale_multiplier": 1000.0,
    "positional_embedding_max_pos": [20, 2048, 2048], "audio_positional_embedding_max_pos": [20],
    "timestep_scale_multiplier": 1000,
}
# LTX-2.3 (22B) switches (ltx2_turbot2av.md 1.3 / 4.1; core 0.29 only): gated attention everywhere, cross-attention
# AdaLN (9-row tables, prompt AdaLN), no caption projection in the DiT, gated connectors of the block widths
TRANSFORMER_23 = {**TRANSFORMER_19B, "apply_gated_attention": True, "cross_attention_adaln": True,
                  "caption_proj_before_connector": True, "caption_projection_first_linear": False,
                  "connector_apply_gated_attention": True, "connector_num_attention_heads": 2,
                  "connector_attention_head_dim": 8, "audio_connector_num_attention_heads": 2,
                  "audio_connector_attention_head_dim": 4}
# the real 19B's head dims, which the fast attention kernels take: video 1 x 128, audio 1 x 64 (19B: 32 heads each)
TRANSFORMER_19B_D64 = {**TRANSFORMER_19B, "num_attention_heads": 1, "attention_head_dim": 128,
                       "cross_attention_dim": 128,
                       "audio_num_attention_heads": 1, "audio_attention_head_dim": 64,
                       "audio_cross_attention_dim": 64}
# core's LatentUpsampler (LatentUpscaleModelLoader reads this config from the metadata): x2 in space
UPSAMPLER_CONFIG = {"_class_name": "LatentUpsampler", "in_channels": LATENT_CHANNELS, "mid_channels": 32,
                    "num_blocks_per_stage": 1, "dims": 3, "spatial_upsample": True, "temporal_upsample": False,
                    "spatial_scale": 2.0, "rational_resampler": False}


def _linear(key, out_features, in_features, bias=True):
    layout = {f"{key}.weight": (out_features, in_features)}
    if bias:
        layout[f"{key}.bias"] = (out_features,)
    return layout


def _attention(key, query_dim, kv_dim, inner, out_dim, gate_heads=0):
    layout = {f"{key}.q_norm.weight": (inner,), f"{key}.k_norm.weight": (inner,)}
    if gate_heads:  # LTX-2.3 gated attention: per-head gate logits from the query input
        layout.update(_linear(f"{key}.to_gate_logits", gate_heads, query_dim))
    layout.update(_linear(f"{key}.to_q", inner, query_dim))
    layout.update(_linear(f"{key}.to_k", inner, kv_dim))
    layout.update(_linear(f"{key}.to_v", inner, kv_dim))
    layout.update(_linear(f"{key}.to_out.0", out_dim, inner))
    return layout


def _feed_forward(key, width):
    return {**_linear(f"{key}.net.0.proj", 4 * width, width), **_linear(f"{key}.net.2", width, 4 * width)}


def _adaln(key, width, rows):
    layout = _linear(f"{key}.emb.timestep_embedder.linear_1", width, 256)
    layout.update(_linear(f"{key}.emb.timestep_embedder.linear_2", width, width))
    layout.update(_linear(f"{key}.linear", rows * width, width))
    return layout


def _block(index, config):
    p = f"transformer_blocks.{index}"
    v, a, _ = widths(config)
    cv, ca, rows = config["cross_attention_dim"], config["audio_cross_attention_dim"], _adaln_rows(config)
    vh, ah = ((config["num_attention_heads"], config["audio_num_attention_heads"])
              if config.get("apply_gated_attention") else (0, 0))
    layout = {f"{p}.scale_shift_table": (rows, v), f"{p}.audio_scale_shift_table": (rows, a),
              f"{p}.scale_shift_table_a2v_ca_video": (5, v), f"{p}.scale_shift_table_a2v_ca_audio": (5, a)}
    if config.get("cross_attention_adaln"):
        layout.update({f"{p}.prompt_scale_shift_table": (2, v), f"{p}.audio_prompt_scale_shift_table": (2, a)})
    layout.update(_attention(f"{p}.attn1", v, v, v, v, vh))
    layout.update(_attention(f"{p}.audio_attn1", a, a, a, a, ah))
    layout.update(_attention(f"{p}.attn2", v, cv, v, v, vh))
    layout.update(_attention(f"{p}.audio_attn2", a, ca, a, a, ah))
    layout.update(_attention(f"{p}.audio_to_video_attn", v, a, a, v, ah))  # Q video, KV audio, audio heads
    layout.update(_attention(f"{p}.video_to_audio_attn", a, v, a, a, ah))
    layout.update(_feed_forward(f"{p}.ff", v))
    layout.update(_feed_forward(f"{p}.audio_ff", a))
    return layout


def _adaln_rows(config: dict) -> int:
    return 9 if config.get("cross_attention_adaln") else 6


def _connector(key, width, layers, gate_heads=0):
    layout = {f"{key}.learnable_registers": (128, width)}
    for index in range(layers):
        layout.update(_attention(f"{key}.transformer_1d_blocks.{index}.attn1", width, width, width, width,
                                 gate_heads))
        layout.update(_feed_forward(f"{key}.transformer_1d_blocks.{index}.ff", width))
    return layout


def widths(config: dict) -> tuple[int, int, int]:
    """(video width, audio width, connector width) of a transformer config."""
    return (config["num_attention_heads"] * config["attention_head_dim"],
            config["audio_num_attention_heads"] * config["audio_attention_head_dim"],
            config["connector_num_attention_heads"] * config["connector_attention_head_dim"])


def is_23(config: dict) -> bool:
    return bool(config.get("caption_proj_before_connector"))


def unprocessed_context_width(config: dict) -> int:
    """Width of the text encoder output core 0.29 feeds to the DiT's connectors: the projected Gemma states
    (19B: single_linear to caption_channels; 2.3: dual_linear to [video | audio] block widths)."""
    if is_23(config):
        return config["cross_attention_dim"] + config["audio_cross_attention_dim"]
    return config["caption_channels"]


def processed_context_width(config: dict) -> int:
    """Width of the connector outputs [video | audio] the blocks take (what core 0.8.0's encoder gives)."""
    if is_23(config):
        return config["cross_attention_dim"] + config["audio_cross_attention_dim"]
    return 2 * config["caption_channels"]


def _connectors(config: dict) -> dict:
    """19B: both connectors at the caption width; 2.3: gated, video at the video width, audio at the audio one."""
    layers, (_, _, c) = config["connector_num_layers"], widths(config)
    if not config.get("connector_apply_gated_attention"):
        return {**_connector("video_embeddings_connector", c, layers),
                **_connector("audio_embeddings_connector", c, layers)}
    heads, audio_heads = config["connector_num_attention_heads"], config["audio_connector_num_attention_heads"]
    audio = audio_heads * config["audio_connector_attention_head_dim"]
    return {**_connector("video_embeddings_connector", c, layers, heads),
            **_connector("audio_embeddings_connector", audio, layers, audio_heads)}


def _caption_projections(config: dict, v: int, a: int) -> dict:
    if is_23(config):  # caption_projection_first_linear False: the DiT projects nothing
        return {}
    caption = config["caption_channels"]
    layout = _linear("caption_projection.linear_1", v, caption)
    layout.update(_linear("caption_projection.linear_2", v, v))
    layout.update(_linear("audio_caption_projection.linear_1", a, caption))
    layout.update(_linear("audio_caption_projection.linear_2", a, a))
    return layout


def dit_layout(config: dict = TRANSFORMER_19B) -> dict:
    v, a, _ = widths(config)
    rows = _adaln_rows(config)
    layout = {"scale_shift_table": (2, v), "audio_scale_shift_table": (2, a)}
    layout.update(_linear("patchify_proj", v, LATENT_CHANNELS))
    layout.update(_linear("audio_patchify_proj", a, config["audio_in_channels"]))
    layout.update(_adaln("adaln_single", v, rows))
    layout.update(_adaln("audio_adaln_single", a, rows))
    if config.get("cross_attention_adaln"):
        layout.update(_adaln("prompt_adaln_single", v, 2))
        layout.update(_adaln("audio_prompt_adaln_single", a, 2))
    layout.update(_adaln("av_ca_video_scale_shift_adaln_single", v, 4))
    layout.update(_adaln("av_ca_a2v_gate_adaln_single", v, 1))
    layout.update(_adaln("av_ca_audio_scale_shift_adaln_single", a, 4))
    layout.update(_adaln("av_ca_v2a_gate_adaln_single", a, 1))
    layout.update(_caption_projections(config, v, a))
    layout.update(_connectors(config))
    layout.update(_linear("proj_out", LATENT_CHANNELS, v))
    layout.update(_linear("audio_proj_out", LATENT_CHANNELS, a))
    for index in range(config["num_layers"]):
        layout.update(_block(index, config))
    return layout


def write_dit(path, config: dict = TRANSFORMER_19B, seed=11, dtype=torch.float32):
    state_dict = random_state_dict(dit_layout(config), seed, dtype)
    return save(state_dict, path, {"transformer": config})


GEMMA_LAYERS = 49  # Gemma-3-12B: embeddings + 48 layers, all stacked into the text projection's input


def text_projection_layout(config: dict = TRANSFORMER_19B) -> dict:
    """`text_embedding_projection.*` (LTXAVTextEncoderLoader reads it from the checkpoint): the stacked hidden
    states of every Gemma layer to the DiT's context width. 19B: `aggregate_embed`, no bias (single_linear);
    2.3: video and audio `*_aggregate_embed` with bias (dual_linear). The Gemma width here is caption_channels
    (the tiny stand-in's), which core's encoder (fixed at 3840 x 49) does not take: the tests swap the text
    encoder (tests/host/workflow_files.py), this is the file's layout."""
    gemma = config["caption_channels"] * GEMMA_LAYERS
    if is_23(config):
        return {**_linear("text_embedding_projection.video_aggregate_embed", config["cross_attention_dim"], gemma),
                **_linear("text_embedding_projection.audio_aggregate_embed", config["audio_cross_attention_dim"],
                          gemma)}
    return _linear("text_embedding_projection.aggregate_embed", config["caption_channels"], gemma, bias=False)


def write_checkpoint(path, config: dict = TRANSFORMER_19B, seed=12):
    """The parts of ltx-2-19b-dev.safetensors, with its metadata config: the DiT under model.diffusion_model.,
    the LTX-2 video VAE under vae. (ltx2_vae.LTX2_VAE_CONFIG: loads on both hosts, through CheckpointLoaderSimple,
    which reads the metadata), the audio VAE and vocoder under audio_vae. / vocoder. (ltx2_audio; read by
    LTXVAudioVAELoader) and the text projection (read by LTXAVTextEncoderLoader)."""
    dit = random_state_dict(dit_layout(config), seed)
    vae = ltx2_vae.vae_state_dict(ltx2_vae.LTX2_VAE_CONFIG, seed + 1)
    state_dict = {f"model.diffusion_model.{k}": v for k, v in dit.items()}
    state_dict.update({f"vae.{k}": v for k, v in vae.items()})
    state_dict.update(ltx2_audio.audio_state_dict(seed + 2))
    state_dict.update(random_state_dict(text_projection_layout(config), seed + 4))
    return save(state_dict, path, {"transformer": config, "vae": ltx2_vae.LTX2_VAE_CONFIG,
                                   **ltx2_audio.metadata_config()})


def _conv3d(key, out_channels, in_channels, kernel=(3, 3, 3)):
    return {f"{key}.weight": (out_channels, in_channels, *kernel), f"{key}.bias": (out_channels,)}


def _group_norm(key, channels):
    return {f"{key}.weight": (channels,), f"{key}.bias": (channels,)}


def _res_block(key, channels):
    layout = {**_conv3d(f"{key}.conv1", channels, channels), **_group_norm(f"{key}.norm1", channels)}
    layout.update({**_conv3d(f"{key}.conv2", channels, channels), **_group_norm(f"{key}.norm2", channels)})
    return layout


def upsampler_layout(config: dict = UPSAMPLER_CONFIG) -> dict:
    c, mid = config["in_channels"], config["mid_channels"]
    layout = {**_conv3d("initial_conv", mid, c), **_group_norm("initial_norm", mid)}
    for index in range(config["num_blocks_per_stage"]):
        layout.update(_res_block(f"res_blocks.{index}", mid))
        layout.update(_res_block(f"post_upsample_res_blocks.{index}", mid))
    layout.update(_conv3d("upsampler.0", 4 * mid, mid, (3, 3)))  # Conv2d + pixel shuffle: x2 in space
    layout.update(_conv3d("final_conv", c, mid))
    return layout


def write_upsampler(path, config: dict = UPSAMPLER_CONFIG, seed=13):
    """The LTX-2 spatial latent upsampler layout (ltx-2-spatial-upscaler-x2) for LatentUpscaleModelLoader."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = random_state_dict(upsampler_layout(config), seed)
    save_file(state_dict, str(path), metadata={"config": json.dumps(config)})
    return path.name
