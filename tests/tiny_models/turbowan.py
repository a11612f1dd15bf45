"""Tiny TurboWan checkpoints in TurboDiffusion's released layouts (plain and -quant, .pth).

Same weights as a native tiny Wan DiT, so a test can compare against core's own loader: the native
Conv3d patch embedding becomes a Linear over (c, kt, kh, kw) patches, every block gets SLA's
proj_l, and the -quant variant stores every Linear inside `blocks` as int8 with 128x128 block
scales (scale = amax / 128, values saturating at 127) and a bf16 bias.
"""
import math

import torch

from . import wan
from .random_weights import random_state_dict

HEAD_DIM = 128
VARIANTS = {"t2v": 16, "i2v": 36}  # Wan2.1 T2V / Wan2.2 I2V A14B (high and low experts): in_dim
BLOCK = 128


def native_state_dict(variant="t2v", blocks=2, dim=128, ffn_dim=32, seed=11) -> dict:
    layout = wan.dit_layout(blocks, dim, ffn_dim, in_dim=VARIANTS[variant])
    return random_state_dict(layout, seed)


def proj_l_state_dict(blocks=2, seed=12, scale=0.05) -> dict:
    generator = torch.Generator().manual_seed(seed)
    sd = {}
    for index in range(blocks):
        prefix = f"blocks.{index}.self_attn.attn_op.local_attn.proj_l"
        sd[f"{prefix}.weight"] = scale * torch.randn(HEAD_DIM, HEAD_DIM, generator=generator)
        sd[f"{prefix}.bias"] = scale * torch.randn(HEAD_DIM, generator=generator)
    return sd


def to_turbowan(native: dict, proj_l: dict | None = None) -> dict:
    sd = dict(native)
    patch = sd["patch_embedding.weight"]
    sd["patch_embedding.weight"] = patch.reshape(patch.shape[0], -1)
    sd.update(proj_l or {})
    return sd


def block_linears(sd: dict) -> list[str]:
    return sorted(key[:-len(".weight")] for key in sd
                  if key.startswith("blocks.") and key.endswith(".weight") and sd[key].dim() == 2
                  and ".attn_op." not in key)


def quantize_blocks(sd: dict) -> dict:
    """TurboDiffusion's -quant layout: int8 weights + per-128x128-block scales inside `blocks`."""
    out = dict(sd)
    for name in block_linears(sd):
        weight = out.pop(f"{name}.weight").double()
        rows, cols = weight.shape
        scale = torch.empty(math.ceil(rows / BLOCK), math.ceil(cols / BLOCK), dtype=torch.float64)
        q = torch.empty(rows, cols, dtype=torch.int8)
        for i in range(scale.shape[0]):
            for j in range(scale.shape[1]):
                tile = weight[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
                amax = tile.abs().max().clamp_min(1e-8)
                scale[i, j] = amax / 128
                q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = \
                    torch.round(tile * 128 / amax).clamp(-128, 127).to(torch.int8)
        out[f"{name}.int8_weight"] = q
        out[f"{name}.scale"] = scale.float()
        out[f"{name}.bias"] = out[f"{name}.bias"].to(torch.bfloat16)
    return out


def dequantize_blocks(sd: dict) -> dict:
    """The weights a -quant file stands for, in native layout (what core would load)."""
    out = {k: v for k, v in sd.items() if not k.endswith((".int8_weight", ".scale"))}
    for key in [k for k in sd if k.endswith(".int8_weight")]:
        name = key[:-len(".int8_weight")]
        q, scale = sd[key].float(), sd[f"{name}.scale"]
        full = scale.repeat_interleave(BLOCK, 0)[:q.shape[0]].repeat_interleave(BLOCK, 1)[:, :q.shape[1]]
        out[f"{name}.weight"] = q * full
        out[f"{name}.bias"] = sd[f"{name}.bias"].float()
    return out


def write_pth(sd: dict, path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path.name
