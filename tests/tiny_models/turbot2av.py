"""Tiny TurboT2AV students in the released layout, and what core loads natively for the same weights.

The student is tiny_models/ltx2.py's LTX-2 19B-layout DiT minus the two text connectors (ltx-core keeps
them in its text encoder), keys under `model.` (the trig wrapper's velocity model), inside {"generator": ...},
written by torch.save; the variants are the other containers and prefixes TurboT2AV's own loader accepts.
The native file is the same tensors plus the base checkpoint's connectors and config, as one UNETLoader file.
"""
import pathlib

import torch
from safetensors import safe_open

from . import ltx2
from .random_weights import random_state_dict, save

# variant -> (container key or None, key prefix)
VARIANTS = {
    "generator": ("generator", "model."),  # what the released model.pth is believed to be
    "model-velocity": ("model", "model.velocity_model."),  # the native-RF wrapper's keys
    "state_dict-flat": ("state_dict", ""),
    "flat": (None, ""),
    "generator-flat": ("generator", ""),
}


def student_weights(config: dict = ltx2.TRANSFORMER_19B, seed: int = 31) -> dict:
    layout = {k: s for k, s in ltx2.dit_layout(config).items() if not k.startswith(ltx2.CONNECTOR_PREFIXES)}
    return random_state_dict(layout, seed)


def packed(weights: dict, variant: str = "generator") -> dict:
    container, prefix = VARIANTS[variant]
    sd = {f"{prefix}{k}": v for k, v in weights.items()}
    return {container: sd} if container else sd


def write_student(path, weights: dict, variant: str = "generator") -> str:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(packed(weights, variant), str(path))
    return path.name


def base_connectors(base_path) -> dict:
    """The text connectors of a tiny LTX-2 checkpoint (ltx2.write_checkpoint), as bare DiT keys."""
    prefix = "model.diffusion_model."
    with safe_open(str(base_path), framework="pt") as file:
        return {k[len(prefix):]: file.get_tensor(k) for k in file.keys()
                if k.startswith(prefix) and k[len(prefix):].startswith(ltx2.CONNECTOR_PREFIXES)}


def write_native(path, weights: dict, base_path, config: dict = ltx2.TRANSFORMER_19B) -> str:
    """The student's tensors + the base's connectors + the 19B config: one file core's UNETLoader loads."""
    return save({**weights, **base_connectors(base_path)}, path, {"transformer": config})


# head dim 64 everywhere (video, audio, text connectors), the smallest the INT8 / sparse attention kernels take,
# so a test sees which attention calls a backend really runs; video 2 x 64, audio 2 x 64, caption 2 x 64
TRANSFORMER_D64 = {**ltx2.TRANSFORMER_19B, "attention_head_dim": 64, "cross_attention_dim": 128,
                   "audio_attention_head_dim": 64, "audio_cross_attention_dim": 128, "caption_channels": 128,
                   "connector_attention_head_dim": 64}
