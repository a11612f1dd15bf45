"""Tiny LTX-2 (19B layout) checkpoints: the audio-video DiT for UNETLoader, and DiT + LTX-2 video VAE in one file.

Key layout and names as in the released ltx-2-19b files (bare keys after `model.diffusion_model.`), with the
19B config switches in the safetensors metadata `config` that core reads (split RoPE, float64 frequencies,
middle-index grid, causal temporal positions, AV timestep scale 1000). The text connectors are written as
the real files hold them: core 0.29 builds them inside the DiT, core 0.8.0 inside the text encoder (there
the DiT reports them as unexpected keys, see CONNECTOR_PREFIXES).
"""
import torch

from . import ltx2_vae
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


def _linear(key, out_features, in_features, bias=True):
    layout = {f"{key}.weight": (out_features, in_features)}
    if bias:
        layout[f"{key}.bias"] = (out_features,)
    return layout


def _attention(key, query_dim, kv_dim, inner, out_dim):
    layout = {f"{key}.q_norm.weight": (inner,), f"{key}.k_norm.weight": (inner,)}
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


def _block(index, v, a, cv, ca):
    p = f"transformer_blocks.{index}"
    layout = {f"{p}.scale_shift_table": (6, v), f"{p}.audio_scale_shift_table": (6, a),
              f"{p}.scale_shift_table_a2v_ca_video": (5, v), f"{p}.scale_shift_table_a2v_ca_audio": (5, a)}
    layout.update(_attention(f"{p}.attn1", v, v, v, v))
    layout.update(_attention(f"{p}.audio_attn1", a, a, a, a))
    layout.update(_attention(f"{p}.attn2", v, cv, v, v))
    layout.update(_attention(f"{p}.audio_attn2", a, ca, a, a))
    layout.update(_attention(f"{p}.audio_to_video_attn", v, a, a, v))  # Q video, KV audio, audio heads
    layout.update(_attention(f"{p}.video_to_audio_attn", a, v, a, a))
    layout.update(_feed_forward(f"{p}.ff", v))
    layout.update(_feed_forward(f"{p}.audio_ff", a))
    return layout


def _connector(key, width, layers):
    layout = {f"{key}.learnable_registers": (128, width)}
    for index in range(layers):
        layout.update(_attention(f"{key}.transformer_1d_blocks.{index}.attn1", width, width, width, width))
        layout.update(_feed_forward(f"{key}.transformer_1d_blocks.{index}.ff", width))
    return layout


def widths(config: dict) -> tuple[int, int, int]:
    """(video width, audio width, connector width) of a transformer config."""
    return (config["num_attention_heads"] * config["attention_head_dim"],
            config["audio_num_attention_heads"] * config["audio_attention_head_dim"],
            config["connector_num_attention_heads"] * config["connector_attention_head_dim"])


def dit_layout(config: dict = TRANSFORMER_19B) -> dict:
    v, a, c = widths(config)
    caption = config["caption_channels"]
    layout = {"scale_shift_table": (2, v), "audio_scale_shift_table": (2, a)}
    layout.update(_linear("patchify_proj", v, LATENT_CHANNELS))
    layout.update(_linear("audio_patchify_proj", a, config["audio_in_channels"]))
    layout.update(_adaln("adaln_single", v, 6))
    layout.update(_adaln("audio_adaln_single", a, 6))
    layout.update(_adaln("av_ca_video_scale_shift_adaln_single", v, 4))
    layout.update(_adaln("av_ca_a2v_gate_adaln_single", v, 1))
    layout.update(_adaln("av_ca_audio_scale_shift_adaln_single", a, 4))
    layout.update(_adaln("av_ca_v2a_gate_adaln_single", a, 1))
    layout.update(_linear("caption_projection.linear_1", v, caption))
    layout.update(_linear("caption_projection.linear_2", v, v))
    layout.update(_linear("audio_caption_projection.linear_1", a, caption))
    layout.update(_linear("audio_caption_projection.linear_2", a, a))
    layout.update(_connector("video_embeddings_connector", c, config["connector_num_layers"]))
    layout.update(_connector("audio_embeddings_connector", c, config["connector_num_layers"]))
    layout.update(_linear("proj_out", LATENT_CHANNELS, v))
    layout.update(_linear("audio_proj_out", LATENT_CHANNELS, a))
    for index in range(config["num_layers"]):
        layout.update(_block(index, v, a, config["cross_attention_dim"], config["audio_cross_attention_dim"]))
    return layout


def write_dit(path, config: dict = TRANSFORMER_19B, seed=11, dtype=torch.float32):
    state_dict = random_state_dict(dit_layout(config), seed, dtype)
    return save(state_dict, path, {"transformer": config})


def write_checkpoint(path, config: dict = TRANSFORMER_19B, seed=12):
    """DiT under model.diffusion_model. and the LTX-2 video VAE under vae., as ltx-2-19b-dev.safetensors holds
    them (ltx2_vae.LTX2_VAE_CONFIG: loads on both hosts, through CheckpointLoaderSimple, which reads the metadata)."""
    dit = random_state_dict(dit_layout(config), seed)
    vae = ltx2_vae.vae_state_dict(ltx2_vae.LTX2_VAE_CONFIG, seed + 1)
    state_dict = {f"model.diffusion_model.{k}": v for k, v in dit.items()}
    state_dict.update({f"vae.{k}": v for k, v in vae.items()})
    return save(state_dict, path, {"transformer": config, "vae": ltx2_vae.LTX2_VAE_CONFIG})
