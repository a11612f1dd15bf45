"""TurboWan checkpoints (thu-ml/TurboDiffusion) read and turned into ComfyUI's native Wan layout.

The released files are flat `torch.save(state_dict)` pickles. They differ from native Wan in three
ways: `patch_embedding` is a Linear over (c, kt, kh, kw)-ordered patches instead of a Conv3d, SLA
adds one `proj_l` Linear per block, and `-quant` files store every Linear inside `blocks` as an int8
weight with 128x128 block scales. This module is pure: it reads, checks and converts tensors.
"""
from __future__ import annotations

import dataclasses
import pathlib
import pickle

import torch
from safetensors import safe_open

from . import sla_weights

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


def read_state_dict(path: str | pathlib.Path) -> dict:
    """Tensors of a .pth (plain tensors only, never arbitrary pickles) or .safetensors file."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as file:
            return {key: file.get_tensor(key) for key in file.keys()}
    if path.suffix not in (".pth", ".pt", ".ckpt"):
        raise TurboWanError(f"'{path.name}': expected a .pth or .safetensors TurboWan checkpoint")
    try:
        loaded = _torch_load_tensors_only(path)
    except pickle.UnpicklingError as error:
        raise TurboWanError(
            f"'{path.name}' holds Python objects besides tensors, so it is not loaded (only plain state "
            f"dicts are, with torch.load(weights_only=True)); the released TurboWan files are plain. "
            f"Details: {str(error).splitlines()[0]}") from None
    return _flat_tensors(loaded, path.name)


def _torch_load_tensors_only(path: pathlib.Path):
    try:  # memory-mapped: a 14B file is not read into RAM before conversion
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) torch.save format cannot be memory-mapped
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _flat_tensors(loaded, name: str) -> dict:
    if isinstance(loaded, dict) and len(loaded) == 1 and isinstance(next(iter(loaded.values())), dict):
        loaded = next(iter(loaded.values()))  # {"state_dict": {...}} / {"model": {...}} wrappers
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise TurboWanError(f"'{name}' is not a state dict of tensors (found {type(loaded).__name__}); "
                            "TurboWanLoader expects a TurboWan .pth or .safetensors file")
    return loaded


def strip_prefix(state_dict: dict) -> dict:
    for prefix in PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def patch_linear_to_conv3d(weight: torch.Tensor, in_dim: int) -> torch.Tensor:
    """[dim, in_dim*1*2*2] Linear weight -> [dim, in_dim, 1, 2, 2] Conv3d weight (same patch order)."""
    return weight.reshape(weight.shape[0], in_dim, *PATCH)


def convert(state_dict: dict, name: str = "checkpoint") -> TurboWanCheckpoint:
    """Checks a TurboWan state dict and returns it in native Wan layout with proj_l split off."""
    sd = strip_prefix(state_dict)
    _check_wan(sd, name)
    patch = sd["patch_embedding.weight"]
    if patch.dim() == 5:
        raise TurboWanError(
            f"'{name}' is a native Wan checkpoint (Conv3d patch_embedding), not a TurboWan one: load it "
            "with the core 'Load Diffusion Model' (UNETLoader) node; TurboWanLoader is for TurboDiffusion's files")
    dim = sd["head.modulation"].shape[-1]
    in_dim = patch.shape[1] // (PATCH[0] * PATCH[1] * PATCH[2])
    proj_l_keys = {key for keys in sla_weights.proj_l_keys(sd).values() for key in keys.values()}
    proj_l = sla_weights.proj_l_from_state_dict(sd, name) if proj_l_keys else {}
    native = {key: value for key, value in sd.items() if key not in proj_l_keys}
    native["patch_embedding.weight"] = patch_linear_to_conv3d(patch, in_dim)
    layers = _count_blocks(native)
    _check_blocks(native, layers, name)
    quantized = any(key.endswith(".int8_weight") for key in native)
    return TurboWanCheckpoint(native, proj_l, quantized, dim, layers, in_dim)


def _check_wan(sd: dict, name: str):
    missing = [key for key in REQUIRED_KEYS if key not in sd]
    if missing:
        raise TurboWanError(f"'{name}' is not a Wan/TurboWan diffusion model (missing {missing}); "
                            "TurboWanLoader loads TurboWan2.1 T2V and TurboWan2.2 I2V checkpoints")


def _count_blocks(sd: dict) -> int:
    indices = {int(key.split(".")[1]) for key in sd if key.startswith("blocks.")}
    return max(indices) + 1 if indices else 0


def _block_linear_names(index: int) -> list[str]:
    attn = [f"blocks.{index}.{kind}.{proj}" for kind in ("self_attn", "cross_attn") for proj in "qkvo"]
    return attn + [f"blocks.{index}.ffn.0", f"blocks.{index}.ffn.2"]


def _check_blocks(sd: dict, layers: int, name: str):
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
        raise TurboWanError(f"'{name}' is incomplete: missing {shown}. Re-download the file; a partial "
                            "download or a file from another model family gives this")
