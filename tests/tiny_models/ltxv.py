"""Tiny LTX-Video checkpoints: the DiT (UNETLoader) and DiT + VAE in one file (CheckpointLoaderSimple).

The stock VAELoader reads no safetensors metadata, so it would build the full-size LTX VAE; the
tiny VAE's config travels in the checkpoint metadata that CheckpointLoaderSimple passes on.
"""
import torch

from .random_weights import random_state_dict, save

LATENT_CHANNELS = 128
CAPTION_CHANNELS = 4096
HEADS = 32  # ComfyUI's default; width = 32 x head_dim unless metadata says otherwise

# Keeps the real compression (32x32 spatial, 8x temporal, 128 channels) with few, cheap layers.
TINY_VAE_CONFIG = {
    "dims": 3, "latent_channels": LATENT_CHANNELS, "patch_size": 16, "norm_layer": "pixel_norm",
    "latent_log_var": "uniform", "spatial_padding_mode": "zeros",
    "encoder_blocks": [["compress_all_res", {"multiplier": 1}], ["compress_time_res", {"multiplier": 1}],
                       ["compress_time_res", {"multiplier": 1}]],
    "decoder_blocks": [["compress_all", {}], ["compress_time", {}], ["compress_time", {}],
                       ["res_x", {"num_layers": 1}]],
}


def _linear(key, out_features, in_features):
    return {f"{key}.weight": (out_features, in_features), f"{key}.bias": (out_features,)}


def _block_layout(index, width):
    prefix = f"transformer_blocks.{index}"
    layout = {f"{prefix}.scale_shift_table": (6, width)}
    for attn in ("attn1", "attn2"):
        layout[f"{prefix}.{attn}.q_norm.weight"] = (width,)
        layout[f"{prefix}.{attn}.k_norm.weight"] = (width,)
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            layout.update(_linear(f"{prefix}.{attn}.{proj}", width, width))
    layout.update(_linear(f"{prefix}.ff.net.0.proj", 4 * width, width))
    layout.update(_linear(f"{prefix}.ff.net.2", width, 4 * width))
    return layout


def dit_layout(blocks=2, head_dim=2, heads=HEADS):
    width = heads * head_dim
    layout = {"scale_shift_table": (2, width)}
    layout.update(_linear("patchify_proj", width, LATENT_CHANNELS))
    layout.update(_linear("adaln_single.emb.timestep_embedder.linear_1", width, 256))
    layout.update(_linear("adaln_single.emb.timestep_embedder.linear_2", width, width))
    layout.update(_linear("adaln_single.linear", 6 * width, width))
    layout.update(_linear("caption_projection.linear_1", width, CAPTION_CHANNELS))
    layout.update(_linear("caption_projection.linear_2", width, width))
    layout.update(_linear("proj_out", LATENT_CHANNELS, width))
    for index in range(blocks):
        layout.update(_block_layout(index, width))
    return layout


def _conv(key, out_channels, in_channels):
    return {f"{key}.conv.weight": (out_channels, in_channels, 3, 3, 3), f"{key}.conv.bias": (out_channels,)}


def vae_layout():
    """The key layout of TINY_VAE_CONFIG (conv width 128 is fixed in ComfyUI's VideoVAE)."""
    c, patch_pixels = 128, 3 * 16 * 16
    layout = {}
    layout.update(_conv("encoder.conv_in", c, patch_pixels))
    layout.update(_conv("encoder.down_blocks.0.conv", c // 8, c))  # space+time to depth 2x2x2
    layout.update(_conv("encoder.down_blocks.1.conv", c // 2, c))  # time to depth 2
    layout.update(_conv("encoder.down_blocks.2.conv", c // 2, c))
    layout.update(_conv("encoder.conv_out", LATENT_CHANNELS + 1, c))  # + one uniform log-variance
    layout.update(_conv("decoder.conv_in", c, LATENT_CHANNELS))
    layout.update(_conv("decoder.up_blocks.0.res_blocks.0.conv1", c, c))
    layout.update(_conv("decoder.up_blocks.0.res_blocks.0.conv2", c, c))
    layout.update(_conv("decoder.up_blocks.1.conv", 2 * c, c))
    layout.update(_conv("decoder.up_blocks.2.conv", 2 * c, c))
    layout.update(_conv("decoder.up_blocks.3.conv", 8 * c, c))
    layout.update(_conv("decoder.conv_out", patch_pixels, c))
    return layout


def vae_statistics(seed):
    generator = torch.Generator().manual_seed(seed)
    std = 0.5 + torch.rand(LATENT_CHANNELS, generator=generator)
    mean = 0.1 * torch.randn(LATENT_CHANNELS, generator=generator)
    stats = {"std-of-means": std, "mean-of-means": mean, "mean-of-stds": torch.ones(LATENT_CHANNELS),
             "mean-of-stds_over_std-of-means": 1.0 / std, "channel": torch.arange(LATENT_CHANNELS).float()}
    return {f"per_channel_statistics.{name}": value for name, value in stats.items()}


def dit_config(head_dim=2, heads=HEADS):
    return {"transformer": {"num_attention_heads": heads, "attention_head_dim": head_dim}}


def write_dit(path, blocks=2, head_dim=2, seed=1, dtype=torch.float32, heads=HEADS):
    """heads x head_dim is the width; head_dim 64 (heads 2) is a head dim the fast attention kernels take."""
    state_dict = random_state_dict(dit_layout(blocks, head_dim, heads), seed, dtype)
    return save(state_dict, path, dit_config(head_dim, heads))


def write_checkpoint(path, blocks=2, head_dim=2, seed=2):
    """DiT under model.diffusion_model. and VAE under vae., as full LTX-Video checkpoints are."""
    dit = random_state_dict(dit_layout(blocks, head_dim), seed)
    vae = random_state_dict(vae_layout(), seed + 1)
    vae.update(vae_statistics(seed + 2))
    state_dict = {f"model.diffusion_model.{k}": v for k, v in dit.items()}
    state_dict.update({f"vae.{k}": v for k, v in vae.items()})
    config = {**dit_config(head_dim), "vae": TINY_VAE_CONFIG}
    return save(state_dict, path, config)
