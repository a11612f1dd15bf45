"""The step-size embedding of a shortcut model and its adapter file (format: docs/adapters.md).

A shortcut model is told the step size d it takes. As in Frans et al. (2024) the network never sees
d itself but dt_base = log2(1/d) (0 for one step over the whole range, 7 for d = 1/128), embedded
like a timestep (sinusoids -> MLP) and ADDED to the model's own time embedding, so the sum drives
adaLN in every block. The last layer starts at zero: an untrained adapter adds exactly nothing.

Pure torch: no ComfyUI imports. patches/step_size.py installs it into a MODEL.
"""
from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Sequence

import torch
from torch import nn

from .adapter_metadata import check_adapter_metadata, open_adapter
from .checkpoint_files import check_tensors, save_safetensors, where

EMBEDDING_CHANNELS = 256  # 128 frequencies, cos and sin
MAX_PERIOD = 10000.0
# Timestep embeddings are tuned for t in 0..1000; dt_base lives in 0..7, so it is stretched by 125
# (dt_base 7 -> 875). Unscaled, neighbouring dt_base values would differ only in the few fastest
# frequencies and the embeddings of 0..7 would be nearly collinear.
DT_BASE_SCALE = 125.0

ADAPTER_KIND = "step_size_embedder"
FORMAT_VERSION = "1"
KEY_PREFIX = "step_embedder."


def sinusoidal_embedding(values: torch.Tensor, channels: int = EMBEDDING_CHANNELS) -> torch.Tensor:
    """(N,) -> (N, channels) float32: [cos(v f_i), sin(v f_i)] with f_i = MAX_PERIOD^(-i / half)."""
    half = channels // 2
    exponents = torch.arange(half, dtype=torch.float32, device=values.device) / half
    freqs = torch.exp(-math.log(MAX_PERIOD) * exponents)
    angles = values.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class StepSizeEmbedder(nn.Module):
    """dt_base -> (N, width): sinusoids of DT_BASE_SCALE * dt_base -> Linear -> SiLU -> Linear (zero init)."""

    def __init__(self, width: int, device=None, dtype=None):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width = width
        self.linear_1 = nn.Linear(EMBEDDING_CHANNELS, width, device=device, dtype=dtype)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(width, width, device=device, dtype=dtype)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, dt_base: torch.Tensor) -> torch.Tensor:
        dt_base = torch.as_tensor(dt_base, device=self.linear_1.weight.device).reshape(-1)
        features = sinusoidal_embedding(dt_base * DT_BASE_SCALE).to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(features)))


def expected_shapes(width: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{KEY_PREFIX}linear_1.weight": (width, EMBEDDING_CHANNELS),
        f"{KEY_PREFIX}linear_1.bias": (width,),
        f"{KEY_PREFIX}linear_2.weight": (width, width),
        f"{KEY_PREFIX}linear_2.bias": (width,),
    }


def _checked_step_sizes(sizes: Sequence[float], where: str) -> list[float]:
    try:
        sizes = [float(s) for s in sizes]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: trained_step_sizes must be a list of numbers ({error})") from None
    if not sizes or any(not 0.0 < s <= 1.0 for s in sizes):
        raise ValueError(f"{where}: trained_step_sizes must be a non-empty list of step sizes in (0, 1], "
                         f"got {sizes}")
    return sizes


def save_step_embedder(path, embedder: StepSizeEmbedder, trained_step_sizes: Sequence[float]) -> None:
    """Writes the adapter as safetensors (float32 tensors, the metadata of docs/adapters.md)."""
    sizes = _checked_step_sizes(trained_step_sizes, str(path))
    tensors = {KEY_PREFIX + k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in embedder.state_dict().items()}
    metadata = {"turbovideo_adapter": ADAPTER_KIND, "format_version": FORMAT_VERSION,
                "width": str(embedder.width), "trained_step_sizes": json.dumps(sizes)}
    save_safetensors(tensors, path, metadata)


def read_metadata(at: str, metadata: dict | None) -> tuple[int, list[float]]:
    metadata = check_adapter_metadata(at, metadata, ADAPTER_KIND, FORMAT_VERSION, "step-size adapter",
                                      "save_step_embedder", "docs/adapters.md")
    try:
        width = int(metadata["width"])
        sizes = json.loads(metadata["trained_step_sizes"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{at}: step-size adapter metadata is incomplete or malformed ({error!r}); it needs "
                         "'width' (an integer) and 'trained_step_sizes' (a JSON list)") from None
    if not isinstance(sizes, list):
        raise ValueError(f"{at}: trained_step_sizes must be a JSON list, got {sizes!r}")
    return width, _checked_step_sizes(sizes, at)


def _read_tensors(at: str, handle, width: int) -> dict[str, torch.Tensor]:
    shapes = expected_shapes(width)
    missing = sorted(set(shapes) - set(handle.keys()))
    if missing:
        raise ValueError(f"{at}: step-size adapter is missing keys {missing}; the file is incomplete, "
                         "write it again with save_step_embedder")
    tensors = {key: handle.get_tensor(key) for key in shapes}
    for key, shape in shapes.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"{at}: {key} has shape {tuple(tensors[key].shape)} but width {width} needs "
                             f"{shape}; the file's tensors do not match its 'width' metadata")
    check_tensors(tensors, at)
    return tensors


def _open(path: str, input_name: str):
    return open_adapter(path, "step-size adapter", "save_step_embedder", "docs/adapters.md", input_name)


def read_step_embedder_header(path, input_name: str = "adapter") -> tuple[int, list[float]]:
    """(width, trained step sizes) from the file's metadata alone; raises if it is not a step-size adapter."""
    path = str(pathlib.Path(path))
    with _open(path, input_name) as handle:
        return read_metadata(where(path, input_name), handle.metadata())


def load_step_embedder(path, input_name: str = "adapter") -> tuple[StepSizeEmbedder, list[float]]:
    """Reads an adapter file -> (float32 embedder on the CPU, its trained step sizes); every key, shape and
    value is checked."""
    path = str(pathlib.Path(path))
    with _open(path, input_name) as handle:
        at = where(path, input_name)
        width, sizes = read_metadata(at, handle.metadata())
        tensors = _read_tensors(at, handle, width)
    embedder = StepSizeEmbedder(width)
    embedder.load_state_dict({k[len(KEY_PREFIX):]: v for k, v in tensors.items()})
    return embedder, sizes
