"""TurboVSR conditioner: the LR latent injected into an LTX DiT after block 0 (docs/vsr.md; pure torch).

ControlNeXt-style cross normalisation (TurboVSR sec. 3.1). For hidden states x (B, N, D) after block
0 and the LR latent as tokens l (B, N, 128), laid out like the DiT's tokens:

    c   = proj(l)                                          Linear(128 -> D)
    c_n = (c - mean(c)) * std(x) / (std(c) + eps)          per sample, over all tokens and channels
    out = mean(x) + (x - mean(x) + scale * c_n) / sqrt(1 + scale^2)

c_n has x's spread, so for uncorrelated x and c the sum keeps x's mean and variance (the division
by sqrt(1 + scale^2)). `scale` is a learned scalar that starts at 0: a fresh conditioner returns x
unchanged (exactly: the scale-0 case returns its input), so training starts from the base model.
"""
from __future__ import annotations

import torch
from torch import nn

from .adapter_metadata import check_adapter_metadata, open_adapter
from .checkpoint_files import check_tensors, save_safetensors, where

ADAPTER_KIND = "vsr_conditioner"
FORMAT_VERSION = "1"
LATENT_CHANNELS = 128
EPS = 1e-6


class VSRConditioner(nn.Module):
    def __init__(self, width: int, latent_channels: int = LATENT_CHANNELS, device=None, dtype=None):
        super().__init__()
        self.width, self.latent_channels = width, latent_channels
        self.proj = nn.Linear(latent_channels, width, device=device, dtype=dtype)
        self.scale = nn.Parameter(torch.zeros((), device=device, dtype=dtype))

    def forward(self, hidden: torch.Tensor, lr_tokens: torch.Tensor) -> torch.Tensor:
        if hidden.ndim != 3 or lr_tokens.shape[:2] != hidden.shape[:2] or lr_tokens.shape[2] != self.latent_channels:
            raise ValueError(f"VSR conditioner: hidden {tuple(hidden.shape)} needs LR tokens (B, N, "
                             f"{self.latent_channels}) of the same B and N, got {tuple(lr_tokens.shape)}")
        if float(self.scale.detach()) == 0.0 and not (torch.is_grad_enabled() and self.scale.requires_grad):
            return hidden  # exactly the identity; while training at 0 the graph is kept for the gradient
        c = self.proj(lr_tokens.to(self.proj.weight.dtype)).to(hidden.dtype)
        mean_x = hidden.mean(dim=(1, 2), keepdim=True)
        std_x = hidden.std(dim=(1, 2), keepdim=True, correction=0)
        mean_c = c.mean(dim=(1, 2), keepdim=True)
        std_c = c.std(dim=(1, 2), keepdim=True, correction=0)
        scale = self.scale.to(hidden.dtype)
        c_n = (c - mean_c) * (std_x / (std_c + EPS))
        return mean_x + (hidden - mean_x + scale * c_n) / torch.sqrt(1.0 + scale * scale)


def latent_tokens(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T H W, C): the LTX patchifier's token order for patch size 1."""
    return latent.flatten(2).transpose(1, 2)


def expected_shapes(width: int, latent_channels: int = LATENT_CHANNELS) -> dict[str, tuple[int, ...]]:
    return {"proj.weight": (width, latent_channels), "proj.bias": (width,), "scale": ()}


def save_vsr_conditioner(path, conditioner: VSRConditioner) -> None:
    """Writes the conditioner as safetensors (float32 tensors, the metadata of docs/vsr.md)."""
    tensors = {key: value.detach().float().contiguous().cpu() for key, value in conditioner.state_dict().items()}
    metadata = {"turbovideo_adapter": ADAPTER_KIND, "format_version": FORMAT_VERSION,
                "width": str(conditioner.width), "latent_channels": str(conditioner.latent_channels),
                "block": "0"}
    save_safetensors(tensors, path, metadata)


def read_metadata(at: str, metadata: dict | None) -> tuple[int, int]:
    metadata = check_adapter_metadata(at, metadata, ADAPTER_KIND, FORMAT_VERSION, "VSR conditioner",
                                      "save_vsr_conditioner", "docs/vsr.md")
    try:
        width, channels = int(metadata["width"]), int(metadata["latent_channels"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{at}: VSR conditioner metadata needs integer 'width' and 'latent_channels' "
                         f"({error!r}); re-save it with save_vsr_conditioner") from None
    if metadata.get("block", "0") != "0":
        raise ValueError(f"{at}: VSR conditioner for block {metadata['block']}; this TurboVideo injects after "
                         "block 0 only")
    return width, channels


def _open(path, input_name: str):
    return open_adapter(path, "VSR conditioner", "save_vsr_conditioner", "docs/vsr.md", input_name)


def read_vsr_conditioner_header(path, input_name: str = "vsr_conditioner") -> tuple[int, int]:
    """(width, latent channels) from the metadata alone; raises if the file is not a VSR conditioner."""
    with _open(path, input_name) as handle:
        return read_metadata(where(path, input_name), handle.metadata())


def load_vsr_conditioner(path, input_name: str = "vsr_conditioner") -> VSRConditioner:
    """Reads a conditioner file -> a float32 VSRConditioner on the CPU; every key, shape and value is checked."""
    at = where(path, input_name)
    with _open(path, input_name) as handle:
        width, channels = read_metadata(at, handle.metadata())
        expected = expected_shapes(width, channels)
        keys = set(handle.keys())
        if keys != set(expected):
            raise ValueError(f"{at}: VSR conditioner keys {sorted(keys)} differ from {sorted(expected)}")
        tensors = {key: handle.get_tensor(key) for key in expected}
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"{at}: '{key}' has shape {tuple(tensors[key].shape)}, expected {shape} for width "
                             f"{width}; the file's tensors do not match its metadata")
    check_tensors(tensors, at)
    conditioner = VSRConditioner(width, channels)
    conditioner.load_state_dict({key: value.float() for key, value in tensors.items()})
    return conditioner.requires_grad_(False)
