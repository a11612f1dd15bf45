"""Tiny LTX-2 / LTX-2.3 video VAEs in the released block layouts, with the `vae` config core reads.

Core builds its VideoVAE (comfy/ldm/lightricks/vae) from the safetensors metadata `config["vae"]` and
hard-codes the LTX ratios (8x temporal, 32x32 spatial, 128 latent channels), so a tiny VAE keeps the
released block sequence with one layer per `res_x` and a small width:

- LTX-2 (19B): the "version 2" layout (encoder `compress_space_res`, `compress_time_res`,
  `compress_all_res` x2; decoder `compress_all` x3 with residual, timestep conditioning).
  LTX2_VAE_CONFIG keeps every multiplier at 1 and the width at core's fixed 128: core 0.8.0 reads no
  `encoder_/decoder_base_channels`, so this one loads on both hosts. LTX2_VAE_BASE8_CONFIG is the
  released channel growth (multipliers 2) at base width 8: core 0.29 only.
- LTX-2.3: the new decoder (`compress_space` / `compress_time` / `compress_all` with channel
  multipliers, no timestep conditioning) and the 2,2,2,1 encoder, at base width 8: core 0.29 only
  (0.8.0's decoder has no multipliers on `compress_space` / `compress_time`).

`vae_layout(config)` walks the block lists the way core's Encoder / Decoder do (the decoder runs its list
reversed), so the file holds exactly the keys core's module has.
"""
import math

import torch

from .random_weights import random_state_dict, save

LATENT_CHANNELS = 128
PATCH = 4
STRIDES = {"compress_all": (2, 2, 2), "compress_space": (1, 2, 2), "compress_time": (2, 1, 1)}
# core 0.8.0's processor registers three more buffers than 0.29's (removed upstream); files carry all five
STATISTICS_BOTH = ("std-of-means", "mean-of-means")
OUTPUT_GAIN = 0.5  # decoded pixels mostly inside [-1, 1], so comparisons are not flattened by core's clamp
STATISTICS_LEGACY = ("mean-of-stds", "mean-of-stds_over_std-of-means", "channel")


def _res(count, **extra):
    return ["res_x", {"num_layers": count, **extra}]


def _blocks(kinds_and_multipliers, res_between, **res_extra):
    """[res_x, kind_1, res_x, kind_2, ...] (or without the res_x stages not in `res_between`)."""
    blocks = [_res(1, **res_extra)] if 0 in res_between else []
    for index, (kind, params) in enumerate(kinds_and_multipliers, start=1):
        blocks.append([kind, params])
        if index in res_between:
            blocks.append(_res(1, **res_extra))
    return blocks


def _encoder(multipliers, res_between):
    kinds = ("compress_space_res", "compress_time_res", "compress_all_res", "compress_all_res")
    return _blocks([(k, {"multiplier": m}) for k, m in zip(kinds, multipliers)], res_between)


def _ltx2_decoder(multiplier, res_between):
    up = ("compress_all", {"residual": True, "multiplier": multiplier})
    return _blocks([up, up, up], res_between, inject_noise=False)


COMMON = {"dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": LATENT_CHANNELS, "patch_size": PATCH,
          "norm_layer": "pixel_norm", "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False}
# both hosts: width 128 throughout, the res_x stages at full and half resolution left out (on a CPU they are
# most of the cost and add no new kind of key); the decoder's up_blocks.0 is a res_x, as core's detection reads
LTX2_VAE_CONFIG = {**COMMON, "timestep_conditioning": True, "encoder_blocks": _encoder((1, 1, 1, 1), (3, 4)),
                   "decoder_blocks": _ltx2_decoder(1, (2, 3))}
# core 0.29 only: every stage of the released layout, with its channel growth, at base width 8
LTX2_VAE_BASE8_CONFIG = {**COMMON, "timestep_conditioning": True, "encoder_base_channels": 8,
                         "decoder_base_channels": 8, "encoder_blocks": _encoder((2, 2, 2, 2), range(5)),
                         "decoder_blocks": _ltx2_decoder(2, range(4))}
LTX23_VAE_CONFIG = {
    **COMMON, "timestep_conditioning": False, "spatial_padding_mode": "zeros", "encoder_base_channels": 8,
    "decoder_base_channels": 8, "encoder_blocks": _encoder((2, 2, 2, 1), range(5)),
    "decoder_blocks": _blocks([("compress_space", {"multiplier": 2}), ("compress_time", {"multiplier": 2}),
                               ("compress_all", {"multiplier": 1}), ("compress_all", {"multiplier": 2})], range(5)),
}


def _conv(key, out_channels, in_channels):
    return {f"{key}.conv.weight": (out_channels, in_channels, 3, 3, 3), f"{key}.conv.bias": (out_channels,)}


def _linear(key, out_features, in_features):
    return {f"{key}.weight": (out_features, in_features), f"{key}.bias": (out_features,)}


def _time_embedder(key, width):
    return {**_linear(f"{key}.timestep_embedder.linear_1", width, 256),
            **_linear(f"{key}.timestep_embedder.linear_2", width, width)}


def _res_blocks(key, width, layers, timestep):
    layout = _time_embedder(f"{key}.time_embedder", 4 * width) if timestep else {}
    for index in range(layers):
        layout.update(_conv(f"{key}.res_blocks.{index}.conv1", width, width))
        layout.update(_conv(f"{key}.res_blocks.{index}.conv2", width, width))
        if timestep:
            layout[f"{key}.res_blocks.{index}.scale_shift_table"] = (4, width)
    return layout


def _encoder_layout(config):
    width = config.get("encoder_base_channels", 128)
    layout = _conv("encoder.conv_in", width, 3 * PATCH * PATCH)
    for index, (name, params) in enumerate(config["encoder_blocks"]):
        key = f"encoder.down_blocks.{index}"
        if name == "res_x":
            layout.update(_res_blocks(key, width, params["num_layers"], False))
            continue
        out = width * params["multiplier"]
        layout.update(_conv(f"{key}.conv", out // math.prod(STRIDES[name[:-len("_res")]]), width))
        width = out
    layout.update(_conv("encoder.conv_out", LATENT_CHANNELS + 1, width))  # + one uniform log-variance
    return layout


def _decoder_layout(config):
    timestep = config["timestep_conditioning"]
    width = config.get("decoder_base_channels", 128)
    width *= math.prod(p.get("multiplier", 1) for name, p in config["decoder_blocks"] if name in STRIDES)
    layout = _conv("decoder.conv_in", width, LATENT_CHANNELS)
    for index, (name, params) in enumerate(reversed(config["decoder_blocks"])):
        key = f"decoder.up_blocks.{index}"
        if name == "res_x":
            layout.update(_res_blocks(key, width, params["num_layers"], timestep))
            continue
        layout.update(_conv(f"{key}.conv", math.prod(STRIDES[name]) * width // params["multiplier"], width))
        width //= params["multiplier"]
    layout.update(_conv("decoder.conv_out", 3 * PATCH * PATCH, width))
    if timestep:
        layout["decoder.timestep_scale_multiplier"] = ()
        layout["decoder.last_scale_shift_table"] = (2, width)
        layout.update(_time_embedder("decoder.last_time_embedder", 2 * width))
    return layout


def vae_layout(config) -> dict:
    return {**_encoder_layout(config), **_decoder_layout(config)}


def statistics(seed, names=STATISTICS_BOTH + STATISTICS_LEGACY) -> dict:
    """Per-channel latent statistics: std in [0.5, 1.5], small means (core (un)normalizes with them)."""
    generator = torch.Generator().manual_seed(seed)
    std = 0.5 + torch.rand(LATENT_CHANNELS, generator=generator)
    values = {"std-of-means": std, "mean-of-means": 0.1 * torch.randn(LATENT_CHANNELS, generator=generator),
              "mean-of-stds": torch.ones(LATENT_CHANNELS), "mean-of-stds_over_std-of-means": 1.0 / std,
              "channel": torch.arange(LATENT_CHANNELS).float()}
    return {f"per_channel_statistics.{name}": values[name] for name in names}


def vae_state_dict(config, seed, statistics_names=STATISTICS_BOTH + STATISTICS_LEGACY) -> dict:
    state_dict = random_state_dict(vae_layout(config), seed)
    state_dict["decoder.conv_out.conv.weight"] *= OUTPUT_GAIN
    if config["timestep_conditioning"]:
        state_dict["decoder.timestep_scale_multiplier"] = torch.tensor(1000.0)  # as released
    state_dict.update(statistics(seed + 1, statistics_names))
    return state_dict


def write_vae(path, config, seed=21):
    """A VAE-only file (VAELoader): core 0.29 reads its metadata config; 0.8.0's VAELoader does not."""
    return save(vae_state_dict(config, seed, STATISTICS_BOTH), path, {"vae": config})
