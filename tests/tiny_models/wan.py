"""Tiny Wan2.1 checkpoints: the T2V DiT (UNETLoader) and the 16-channel VAE (stock VAELoader).

ComfyUI detects both from their keys alone: heads = dim // 128, so the DiT width is 128. The VAE is
built by ComfyUI with temporal downsampling in the last two stages (the Wan2.1 release); its
width `dim` may be as small as 1 while keeping the real 4x8x8 compression and 16 latent channels.
"""
import torch

from .random_weights import random_state_dict, save

TEXT_DIM = 4096
FREQ_DIM = 256
LATENT_CHANNELS = 16


def _linear(key, out_features, in_features):
    return {f"{key}.weight": (out_features, in_features), f"{key}.bias": (out_features,)}


def _attention(prefix, dim):
    layout = {}
    for proj in ("q", "k", "v", "o"):
        layout.update(_linear(f"{prefix}.{proj}", dim, dim))
    layout[f"{prefix}.norm_q.weight"] = (dim,)
    layout[f"{prefix}.norm_k.weight"] = (dim,)
    return layout


def dit_layout(blocks=2, dim=128, ffn_dim=32, in_dim=LATENT_CHANNELS, out_dim=LATENT_CHANNELS):
    layout = {"patch_embedding.weight": (dim, in_dim, 1, 2, 2), "patch_embedding.bias": (dim,)}
    layout.update(_linear("text_embedding.0", dim, TEXT_DIM))
    layout.update(_linear("text_embedding.2", dim, dim))
    layout.update(_linear("time_embedding.0", dim, FREQ_DIM))
    layout.update(_linear("time_embedding.2", dim, dim))
    layout.update(_linear("time_projection.1", 6 * dim, dim))
    layout["head.modulation"] = (1, 2, dim)
    layout.update(_linear("head.head", out_dim * 4, dim))
    for index in range(blocks):
        prefix = f"blocks.{index}"
        layout[f"{prefix}.modulation"] = (1, 6, dim)
        layout.update(_attention(f"{prefix}.self_attn", dim))
        layout.update(_attention(f"{prefix}.cross_attn", dim))
        layout[f"{prefix}.norm3.weight"] = (dim,)
        layout[f"{prefix}.norm3.bias"] = (dim,)
        layout.update(_linear(f"{prefix}.ffn.0", ffn_dim, dim))
        layout.update(_linear(f"{prefix}.ffn.2", dim, ffn_dim))
    return layout


def _conv3d(key, out_channels, in_channels, kernel=(3, 3, 3)):
    return {f"{key}.weight": (out_channels, in_channels, *kernel), f"{key}.bias": (out_channels,)}


def _residual(prefix, in_dim, out_dim):
    layout = {f"{prefix}.residual.0.gamma": (in_dim, 1, 1, 1), f"{prefix}.residual.3.gamma": (out_dim, 1, 1, 1)}
    layout.update(_conv3d(f"{prefix}.residual.2", out_dim, in_dim))
    layout.update(_conv3d(f"{prefix}.residual.6", out_dim, out_dim))
    if in_dim != out_dim:
        layout.update(_conv3d(f"{prefix}.shortcut", out_dim, in_dim, (1, 1, 1)))
    return layout


def _middle(prefix, dim):
    layout = _residual(f"{prefix}.0", dim, dim)
    layout[f"{prefix}.1.norm.gamma"] = (dim, 1, 1)
    layout.update({f"{prefix}.1.to_qkv.weight": (3 * dim, dim, 1, 1), f"{prefix}.1.to_qkv.bias": (3 * dim,)})
    layout.update({f"{prefix}.1.proj.weight": (dim, dim, 1, 1), f"{prefix}.1.proj.bias": (dim,)})
    layout.update(_residual(f"{prefix}.2", dim, dim))
    return layout


def _resample(prefix, out_dim, in_dim, time_conv_out=None):
    layout = {f"{prefix}.resample.1.weight": (out_dim, in_dim, 3, 3), f"{prefix}.resample.1.bias": (out_dim,)}
    if time_conv_out is not None:
        layout.update(_conv3d(f"{prefix}.time_conv", time_conv_out, in_dim, (3, 1, 1)))
    return layout


def _encoder(dim, mult=(1, 2, 4, 4), temporal=(False, True, True)):
    dims = [dim * m for m in (1, *mult)]
    layout, index = _conv3d("encoder.conv1", dims[0], 3), 0
    for stage in range(len(mult)):
        in_dim, out_dim = dims[stage], dims[stage + 1]
        for _ in range(2):
            layout.update(_residual(f"encoder.downsamples.{index}", in_dim, out_dim))
            in_dim, index = out_dim, index + 1
        if stage < len(mult) - 1:
            time_out = out_dim if temporal[stage] else None
            layout.update(_resample(f"encoder.downsamples.{index}", out_dim, out_dim, time_out))
            index += 1
    layout.update(_middle("encoder.middle", dims[-1]))
    layout["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    layout.update(_conv3d("encoder.head.2", 2 * LATENT_CHANNELS, dims[-1]))  # mean and log-variance
    return layout


def _decoder(dim, mult=(1, 2, 4, 4), temporal=(True, True, False)):
    dims = [dim * m for m in (mult[-1], *reversed(mult))]
    layout = _conv3d("decoder.conv1", dims[0], LATENT_CHANNELS)
    layout.update(_middle("decoder.middle", dims[0]))
    index = 0
    for stage in range(len(mult)):
        in_dim, out_dim = dims[stage] // (2 if stage > 0 else 1), dims[stage + 1]
        for _ in range(3):
            layout.update(_residual(f"decoder.upsamples.{index}", in_dim, out_dim))
            in_dim, index = out_dim, index + 1
        if stage < len(mult) - 1:
            time_out = 2 * out_dim if temporal[stage] else None
            layout.update(_resample(f"decoder.upsamples.{index}", out_dim // 2, out_dim, time_out))
            index += 1
    layout["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    layout.update(_conv3d("decoder.head.2", 3, dims[-1]))
    return layout


def vae_layout(dim=1):
    layout = _encoder(dim)
    layout.update(_conv3d("conv1", 2 * LATENT_CHANNELS, 2 * LATENT_CHANNELS, (1, 1, 1)))
    layout.update(_conv3d("conv2", LATENT_CHANNELS, LATENT_CHANNELS, (1, 1, 1)))
    layout.update(_decoder(dim))
    return layout


def write_dit(path, blocks=2, dim=128, ffn_dim=32, seed=3, dtype=torch.float32):
    return save(random_state_dict(dit_layout(blocks, dim, ffn_dim), seed, dtype), path)


def write_vae(path, dim=1, seed=4):
    return save(random_state_dict(vae_layout(dim), seed), path)
