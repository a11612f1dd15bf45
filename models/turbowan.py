"""TurboWan checkpoints (thu-ml/TurboDiffusion) read and turned into ComfyUI's native Wan layout.

The released files are flat `torch.save(state_dict)` pickles. They differ from native Wan in three
ways: `patch_embedding` is a Linear over (c, kt, kh, kw)-ordered patches instead of a Conv3d, SLA
adds one `proj_l` Linear per block, and `-quant` files store every Linear inside `blocks` as an int8
weight with 128x128 block scales. This module is pure: it reads, checks and converts tensors.
"""
from __future__ import annotations

import dataclasses
import pathlib

import torch

from . import sla_weights
from .checkpoint_files import CheckpointFileError, FileRole, check_tensors, read_weights, where

PATCH = (1, 2, 2)
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "net.", "module.")
QUANT_SUFFIXES = (".int8_weight", ".scale")
REQUIRED_KEYS = ("head.modulation", "head.head.weight", "patch_embedding.weight", "blocks.0.self_attn.o.bias")
KNOWN_RELEASES = {  # (dim, layers, in_dim) -> name in the TurboDiffusion release
    (1536, 30, 16): "TurboWan2.1-T2V-1.3B",
    (5120, 40, 16): "TurboWan2.1-T2V-14B",
    (5120, 40, 36): "TurboWan2.2-I2V-A14B (high- or low-noise expert)",
}


class TurboWanError(ValueError):
    """A file that is not a loadable TurboWan checkpoint; the message says what to do instead."""


@dataclasses.dataclass
class TurboWanCheckpoint:
    native: dict  # native Wan keys; -quant linears still as `<layer>.int8_weight` / `<layer>.scale`
    proj_l: dict  # block index -> (weight [D, D], bias [D]) of SLA's linear-branch projection
    quantized: bool
    dim: int
    layers: int
    in_dim: int

    @property
    def release(self) -> str:
        return KNOWN_RELEASES.get((self.dim, self.layers, self.in_dim),
                                  f"Wan architecture (dim {self.dim}, {self.layers} blocks, in_dim {self.in_dim})")


def file_role(input_name: str = "turbowan_name") -> FileRole:
    return FileRole(input_name, "a TurboWan checkpoint", "(TurboDiffusion's .pth or .safetensors release file, "
                                                         "plain or -quant; docs/turbowan.md)")


def read_state_dict(path: str | pathlib.Path, input_name: str = "turbowan_name") -> dict:
    """Tensors of a .pth (torch.load weights_only=True: plain tensors only, code is never run) or .safetensors."""
    try:
        return read_weights(path, file_role(input_name))[0]
    except CheckpointFileError as error:
        raise TurboWanError(str(error)) from None


def strip_prefix(state_dict: dict) -> dict:
    for prefix in PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def patch_linear_to_conv3d(weight: torch.Tensor, in_dim: int) -> torch.Tensor:
    """[dim, in_dim*1*2*2] Linear weight -> [dim, in_dim, 1, 2, 2] Conv3d weight (same patch order)."""
    return weight.reshape(weight.shape[0], in_dim, *PATCH)


def convert(state_dict: dict, name: str = "checkpoint", input_name: str = "turbowan_name") -> TurboWanCheckpoint:
    """Checks a TurboWan state dict (keys, weight dtypes, finite values) and returns it in native Wan layout
    with proj_l split off."""
    sd = strip_prefix(state_dict)
    at = where(name, input_name)
    _check_wan(sd, at)
    try:
        check_tensors(sd, at, fix="the file is damaged or not a TurboWan release; download it again")
    except CheckpointFileError as error:
        raise TurboWanError(str(error)) from None
    patch = sd["patch_embedding.weight"]
    if patch.dim() == 5:
        raise TurboWanError(
            f"{at} is a native Wan checkpoint (Conv3d patch_embedding), not a TurboWan one: load it "
            "with the core 'Load Diffusion Model' (UNETLoader) node; TurboWanLoader is for TurboDiffusion's files")
    dim = sd["head.modulation"].shape[-1]
    in_dim = patch.shape[1] // (PATCH[0] * PATCH[1] * PATCH[2])
    proj_l_keys = {key for keys in sla_weights.proj_l_keys(sd).values() for key in keys.values()}
    proj_l = sla_weights.proj_l_from_state_dict(sd, at) if proj_l_keys else {}
    native = {key: value for key, value in sd.items() if key not in proj_l_keys}
    native["patch_embedding.weight"] = patch_linear_to_conv3d(patch, in_dim)
    layers = _count_blocks(native)
    _check_blocks(native, layers, at)
    quantized = any(key.endswith(".int8_weight") for key in native)
    return TurboWanCheckpoint(native, proj_l, quantized, dim, layers, in_dim)


def _check_wan(sd: dict, at: str):
    missing = [key for key in REQUIRED_KEYS if key not in sd]
    if missing:
        raise TurboWanError(f"{at} is not a Wan/TurboWan diffusion model (missing {missing}); "
                            "TurboWanLoader loads TurboWan2.1 T2V and TurboWan2.2 I2V checkpoints")


def _count_blocks(sd: dict) -> int:
    indices = {int(key.split(".")[1]) for key in sd if key.startswith("blocks.")}
    return max(indices) + 1 if indices else 0


def _block_linear_names(index: int) -> list[str]:
    attn = [f"blocks.{index}.{kind}.{proj}" for kind in ("self_attn", "cross_attn") for proj in "qkvo"]
    return attn + [f"blocks.{index}.ffn.0", f"blocks.{index}.ffn.2"]


def _check_blocks(sd: dict, layers: int, at: str):
    missing = []
    for index in range(layers):
        for linear in _block_linear_names(index):
            plain, quant = f"{linear}.weight" in sd, all(f"{linear}{s}" in sd for s in QUANT_SUFFIXES)
            if not (plain or quant):
                missing.append(f"{linear}.weight")
            if f"{linear}.bias" not in sd:
                missing.append(f"{linear}.bias")
        missing += [k for k in (f"blocks.{index}.modulation", f"blocks.{index}.norm3.weight") if k not in sd]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise TurboWanError(f"{at} is incomplete: missing {shown}. Re-download the file; a partial "
                            "download or a file from another model family gives this")


def is_turbowan(state_dict: dict) -> bool:
    """True for a state dict in TurboDiffusion's layout (a Linear patch_embedding), which only TurboWanLoader reads."""
    patch = strip_prefix({k: v for k, v in state_dict.items() if k.endswith("patch_embedding.weight")})
    weight = patch.get("patch_embedding.weight")
    return weight is not None and weight.dim() == 2 and "head.modulation" in strip_prefix(
        {k: v for k, v in state_dict.items() if k.endswith("head.modulation")})
