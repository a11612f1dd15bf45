"""Tiny SeedVR2 checkpoints: the 3B DiT (UNETLoader) and the video VAE (stock VAELoader), ComfyUI 0.29+ only.

Key names, block count and structure are those of the released files: the DiT has 32 blocks (core
detects the 3B model by `blocks.31.mlp.all.proj_in_gate.weight` and by the stored positive/negative
text embeddings), separate video/text weights (`.vid.` / `.txt.`) in blocks 0-9 and shared ones (`.all.`)
after; the VAE has four encoder and four decoder stages, the widths changing where the real ones change.
Only the widths are small.

Core's SeedVR2 detection takes no config: it fixes the widths (DiT 2560, VAE 128/256/512/512). For
the tiny files, `install_core_width_hooks()` lets core read the widths from the checkpoint's own tensors
during detection (as it does for Wan and LTX); files with the real widths load exactly as without it.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from .random_weights import random_state_dict, save

LATENT_CHANNELS = 16
CONDITION_CHANNELS = LATENT_CHANNELS + 1  # the LR latent and a mask channel (SeedVR2Conditioning)
TEXT_WIDTH = 5120  # the stored text embeddings: 58 positive, 64 negative tokens
POSITIVE_TOKENS, NEGATIVE_TOKENS = 58, 64
SINUSOIDAL = 256  # timestep embedding input
PATCH = (1, 2, 2)
BLOCKS, SEPARATE_BLOCKS = 32, 10  # the 3B layout
WIDTH, HEADS, HEAD_DIM, ROPE_FREQS = 32, 2, 16, 2  # real: 2560, 20, 128, 21
VAE_WIDTHS = (32, 64, 96, 96)  # real: 128, 256, 512, 512 (GroupNorm of 32 groups: multiples of 32)
DETECTION_KEY = f"blocks.{BLOCKS - 1}.mlp.all.proj_in_gate.weight"
VAE_DETECTION_KEY = "decoder.up_blocks.2.upsamplers.0.upscale_conv.weight"


def swiglu_hidden(width: int, expand: int = 4, multiple: int = 256) -> int:
    """The SwiGLU hidden width: 2/3 of expand x width, rounded up to a multiple of 256."""
    hidden = int(2 * width * expand / 3)
    return multiple * ((hidden + multiple - 1) // multiple)


def _linear(key, out_features, in_features, bias=True):
    layout = {f"{key}.weight": (out_features, in_features)}
    if bias:
        layout[f"{key}.bias"] = (out_features,)
    return layout


def _block(index: int, width: int, heads: int, head_dim: int, rope_freqs: int) -> dict:
    p = f"blocks.{index}"
    branches = ("vid", "txt") if index < SEPARATE_BLOCKS else ("all",)
    hidden = swiglu_hidden(width)
    layout = {f"{p}.attn.rope.rope.freqs": (rope_freqs,)}
    for b in branches:
        layout.update(_linear(f"{p}.attn.proj_qkv.{b}", 3 * heads * head_dim, width, bias=False))
        layout.update(_linear(f"{p}.attn.proj_out.{b}", width, heads * head_dim))
        layout[f"{p}.attn.norm_q.{b}.weight"] = (head_dim,)
        layout[f"{p}.attn.norm_k.{b}.weight"] = (head_dim,)
        layout.update(_linear(f"{p}.mlp.{b}.proj_in_gate", hidden, width, bias=False))
        layout.update(_linear(f"{p}.mlp.{b}.proj_in", hidden, width, bias=False))
        layout.update(_linear(f"{p}.mlp.{b}.proj_out", width, hidden, bias=False))
        for name in ("attn_shift", "attn_scale", "attn_gate", "mlp_shift", "mlp_scale", "mlp_gate"):
            layout[f"{p}.ada.{b}.{name}"] = (width,)
    return layout


def dit_layout(width=WIDTH, heads=HEADS, head_dim=HEAD_DIM, rope_freqs=ROPE_FREQS) -> dict:
    layout = {"positive_conditioning": (POSITIVE_TOKENS, TEXT_WIDTH),
              "negative_conditioning": (NEGATIVE_TOKENS, TEXT_WIDTH)}
    patch_cells = PATCH[0] * PATCH[1] * PATCH[2]
    layout.update(_linear("vid_in.proj", width, (LATENT_CHANNELS + CONDITION_CHANNELS) * patch_cells))
    layout.update(_linear("txt_in", width, TEXT_WIDTH))
    layout.update(_linear("emb_in.proj_in", width, SINUSOIDAL))
    layout.update(_linear("emb_in.proj_hid", width, width))
    layout.update(_linear("emb_in.proj_out", 6 * width, width))
    for index in range(BLOCKS):
        layout.update(_block(index, width, heads, head_dim, rope_freqs))
    layout.update(_linear("vid_out.proj", LATENT_CHANNELS * PATCH[0] * PATCH[1] * PATCH[2], width))
    layout["vid_out_norm.weight"] = (width,)
    layout["vid_out_ada.out_shift"] = (width,)
    layout["vid_out_ada.out_scale"] = (width,)
    return layout


def rope_frequencies(count: int) -> torch.Tensor:
    """RoPE 'lang' frequencies 10000^(-2i/d) for d = 2 x count per axis (what core stores in the buffer)."""
    dim = 2 * count
    return 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64)[:count] / dim))


def dit_state_dict(seed=21, dtype=torch.float32, width=WIDTH, heads=HEADS, head_dim=HEAD_DIM) -> dict:
    state_dict = random_state_dict(dit_layout(width, heads, head_dim), seed, dtype)
    generator = torch.Generator().manual_seed(seed + 1)
    for key in ("positive_conditioning", "negative_conditioning"):  # text embeddings of unit scale
        state_dict[key] = torch.randn(state_dict[key].shape, generator=generator).to(dtype)
    for key in state_dict:
        if key.endswith("rope.rope.freqs"):
            state_dict[key] = rope_frequencies(ROPE_FREQS).to(dtype)
    return state_dict


def write_dit(path, seed=21, dtype=torch.float32):
    return save(dit_state_dict(seed, dtype), path)


# ---- VAE -----------------------------------------------------------------------------------------------

def _conv3d(key, out_channels, in_channels, kernel=(3, 3, 3)):
    return {f"{key}.weight": (out_channels, in_channels, *kernel), f"{key}.bias": (out_channels,)}


def _group_norm(key, channels):
    return {f"{key}.weight": (channels,), f"{key}.bias": (channels,)}


def _resnet(key, in_channels, out_channels):
    layout = {**_group_norm(f"{key}.norm1", in_channels), **_group_norm(f"{key}.norm2", out_channels)}
    layout.update(_conv3d(f"{key}.conv1", out_channels, in_channels))  # time receptive field "full": 3x3x3
    layout.update(_conv3d(f"{key}.conv2", out_channels, out_channels))
    if in_channels != out_channels:
        layout.update(_conv3d(f"{key}.conv_shortcut", out_channels, in_channels, (1, 1, 1)))
    return layout


def _mid_block(key, channels):
    layout = {**_resnet(f"{key}.resnets.0", channels, channels), **_resnet(f"{key}.resnets.1", channels, channels)}
    attention = f"{key}.attentions.0"
    layout.update(_group_norm(f"{attention}.group_norm", channels))
    for name in ("to_q", "to_k", "to_v", "to_out.0"):
        layout.update(_linear(f"{attention}.{name}", channels, channels))
    return layout


def _encoder(widths):
    layout = _conv3d("encoder.conv_in", widths[0], 3)
    previous = widths[0]
    for stage, width in enumerate(widths):
        for index in range(2):
            layout.update(_resnet(f"encoder.down_blocks.{stage}.resnets.{index}", previous if index == 0 else width,
                                  width))
        previous = width
        if stage < len(widths) - 1:  # the last two downsamplers also halve time: kernel 3 in time
            kernel = (3 if stage >= len(widths) - 3 else 1, 3, 3)
            layout.update(_conv3d(f"encoder.down_blocks.{stage}.downsamplers.0.conv", width, width, kernel))
    layout.update(_mid_block("encoder.mid_block", widths[-1]))
    layout.update(_group_norm("encoder.conv_norm_out", widths[-1]))
    layout.update(_conv3d("encoder.conv_out", 2 * LATENT_CHANNELS, widths[-1]))  # mean and log-variance
    return layout


def _decoder(widths):
    reversed_widths = list(reversed(widths))
    layout = _conv3d("decoder.conv_in", reversed_widths[0], LATENT_CHANNELS)
    layout.update(_mid_block("decoder.mid_block", reversed_widths[0]))
    previous = reversed_widths[0]
    for stage, width in enumerate(reversed_widths):
        for index in range(3):
            layout.update(_resnet(f"decoder.up_blocks.{stage}.resnets.{index}", previous if index == 0 else width,
                                  width))
        previous = width
        if stage < len(widths) - 1:  # the first two upsamplers also double time: 2 x 2 x 2 = 8 sub-pixels
            ratio = 8 if stage < 2 else 4
            layout.update(_conv3d(f"decoder.up_blocks.{stage}.upsamplers.0.upscale_conv", width * ratio, width,
                                  (1, 1, 1)))
            layout.update(_conv3d(f"decoder.up_blocks.{stage}.upsamplers.0.conv", width, width))
    layout.update(_group_norm("decoder.conv_norm_out", widths[0]))
    layout.update(_conv3d("decoder.conv_out", 3, widths[0]))
    return layout


def vae_layout(widths=VAE_WIDTHS) -> dict:
    return {**_encoder(widths), **_decoder(widths)}


def vae_state_dict(seed=22) -> dict:
    state_dict = random_state_dict(vae_layout(), seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for key in state_dict:  # GroupNorm scales near one, as after training (norm1, norm2, group_norm, conv_norm_out)
        if key.endswith(".weight") and "norm" in key.split(".")[-2]:
            state_dict[key] = 1.0 + 0.1 * torch.randn(state_dict[key].shape, generator=generator)
    return state_dict


def write_vae(path, seed=22):
    return save(vae_state_dict(seed), path)


def host_has_seedvr2() -> bool:
    """Whether the ComfyUI on sys.path has SeedVR2 (0.29 and later)."""
    try:
        return importlib.util.find_spec("comfy.ldm.seedvr") is not None
    except ModuleNotFoundError:  # no comfy at all
        return False


# ---- letting core's detection read the widths ------------------------------------------------------------

def dit_widths(state_dict: dict, prefix: str = "") -> dict:
    """The NaDiT constructor arguments that the tensors fix (the rest is core's 3B detection)."""
    qkv = state_dict[f"{prefix}blocks.0.attn.proj_qkv.vid.weight"]
    head_dim = state_dict[f"{prefix}blocks.0.attn.norm_q.vid.weight"].shape[0]
    blocks = {int(k[len(prefix):].split(".")[1]) for k in state_dict if k.startswith(f"{prefix}blocks.")}
    separate = {int(k[len(prefix):].split(".")[1]) for k in state_dict
                if k.startswith(f"{prefix}blocks.") and ".vid." in k}
    return {"vid_dim": qkv.shape[1], "heads": qkv.shape[0] // 3 // head_dim, "head_dim": head_dim,
            "num_layers": len(blocks), "mm_layers": len(separate),
            "txt_in_dim": state_dict[f"{prefix}txt_in.weight"].shape[1],
            "rope_dim": 6 * state_dict[f"{prefix}blocks.0.attn.rope.rope.freqs"].shape[0]}


def vae_widths(state_dict: dict) -> tuple[int, ...]:
    return tuple(state_dict[f"encoder.down_blocks.{i}.resnets.1.conv2.weight"].shape[0] for i in range(4))


def install_core_width_hooks() -> None:
    """Core's SeedVR2 detection, with the widths read from the checkpoint's tensors. Idempotent."""
    import comfy.ldm.seedvr.vae
    import comfy.model_detection
    import comfy.sd

    detect = comfy.model_detection.detect_unet_config
    if getattr(detect, "seedvr2_widths", False):
        return

    @functools.wraps(detect)
    def detect_unet_config(state_dict, key_prefix, metadata=None):
        config = detect(state_dict, key_prefix, metadata=metadata)
        if config is not None and config.get("image_model") == "seedvr2" and \
                f"{key_prefix}blocks.0.attn.proj_qkv.vid.weight" in state_dict:
            config.update(dit_widths(state_dict, key_prefix))
        return config

    detect_unet_config.seedvr2_widths = True
    comfy.model_detection.detect_unet_config = detect_unet_config

    vae_init = comfy.sd.VAE.__init__

    @functools.wraps(vae_init)
    def vae_with_widths(self, sd=None, *args, **kwargs):
        if sd is None or VAE_DETECTION_KEY not in sd:
            return vae_init(self, sd, *args, **kwargs)
        real = comfy.ldm.seedvr.vae.BYTEDANCE_BLOCK_OUT_CHANNELS
        comfy.ldm.seedvr.vae.BYTEDANCE_BLOCK_OUT_CHANNELS = vae_widths(sd)
        try:
            return vae_init(self, sd, *args, **kwargs)
        finally:
            comfy.ldm.seedvr.vae.BYTEDANCE_BLOCK_OUT_CHANNELS = real

    comfy.sd.VAE.__init__ = vae_with_widths
