"""Turbo2K-style fusion blocks: LR DiT features added to the HR DiT's hidden states (format: docs/lrhr.md).

Turbo2K fuses the features of LR blocks 0, 7, 14, 21 (taken at the last LR step) into the matching HR
blocks but does not publish the fusion block. TurboVideo's block, per fused HR block:

    f   = proj_out(mlp(proj_in(LayerNorm(lr_tokens))))   # on the LR token grid
    out = hr_hidden + strength * resize(f, lr_grid -> hr_grid)

mlp is `h + fc2(GELU(fc1(h)) * sigmoid(gate(h)))` (optional, mlp_ratio 0 drops it). proj_out starts at
zero, so an untrained adapter adds exactly nothing. Everything per token runs on the (4x smaller) LR
grid and only the result is resized: trilinear resizing is linear with weights summing to 1, so it
commutes with proj_out, and LR-grid work keeps the adapter cheap next to a 2K HR pass.

Pure torch: no ComfyUI imports. patches/lr_features.py installs it into an HR MODEL.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .adapter_metadata import check_adapter_metadata, open_adapter
from .checkpoint_files import check_tensors, save_safetensors, where

ADAPTER_KIND = "fusion_blocks"
FORMAT_VERSION = "1"
KEY_PREFIX = "fusion."
RESIZE_MODES = ("trilinear", "nearest")


def resize_tokens(tokens: torch.Tensor, src_grid: Sequence[int], dst_grid: Sequence[int],
                  mode: str = "trilinear") -> torch.Tensor:
    """[B, T*H*W, D] tokens on src_grid (T, H, W) -> [B, T'*H'*W', D] on dst_grid (half-pixel centres)."""
    src_grid, dst_grid = tuple(int(s) for s in src_grid), tuple(int(s) for s in dst_grid)
    batch, count, width = tokens.shape
    if count != src_grid[0] * src_grid[1] * src_grid[2]:
        raise ValueError(f"{count} tokens do not fill a {src_grid} (T, H, W) grid")
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if src_grid == dst_grid:
        return tokens
    volume = tokens.reshape(batch, *src_grid, width).permute(0, 4, 1, 2, 3)
    if mode == "trilinear":
        volume = F.interpolate(volume, size=dst_grid, mode="trilinear", align_corners=False)
    else:
        volume = F.interpolate(volume, size=dst_grid, mode="nearest-exact")
    return volume.permute(0, 2, 3, 4, 1).reshape(batch, -1, width)


def _axis_weights(src: int, dst: int, span: tuple[int, int], mode: str) -> torch.Tensor:
    """[stop - start, src] float64: output cells start..stop-1 of resizing src -> dst cells, as F.interpolate
    does it (trilinear with half-pixel centres, or nearest-exact), one axis at a time."""
    index = torch.arange(span[0], span[1], dtype=torch.float64)
    rows = torch.arange(len(index))
    weights = torch.zeros(len(index), src, dtype=torch.float64)
    scale = src / dst
    if mode == "nearest":
        weights[rows, torch.floor((index + 0.5) * scale).clamp(max=src - 1).long()] = 1.0
        return weights
    position = ((index + 0.5) * scale - 0.5).clamp(min=0.0)
    low = torch.floor(position).long().clamp(max=src - 1)
    fraction = position - low
    weights.index_put_((rows, low), 1.0 - fraction, accumulate=True)
    weights.index_put_((rows, (low + 1).clamp(max=src - 1)), fraction, accumulate=True)
    return weights


def resize_tokens_window(tokens: torch.Tensor, src_grid, dst_grid, window, mode: str = "trilinear") -> torch.Tensor:
    """The window ((t0, t1), (h0, h1), (w0, w1)) of resize_tokens(tokens, src_grid, dst_grid, mode), computed
    without the full dst grid: [B, T*H*W, D] on src_grid -> [B, window cells, D]."""
    batch, _, width = tokens.shape
    volume = tokens.reshape(batch, *src_grid, width)
    t, h, w = (_axis_weights(int(s), int(d), span, mode).to(tokens)
               for s, d, span in zip(src_grid, dst_grid, window))
    volume = torch.einsum("btyxd,it->biyxd", volume, t)
    volume = torch.einsum("biyxd,jy->bijxd", volume, h)
    return torch.einsum("bijxd,kx->bijkd", volume, w).reshape(batch, -1, width)


class GatedMLP(nn.Module):
    """h + fc2(GELU(fc1(h)) * sigmoid(gate(h)))."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.gate = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.gelu(self.fc1(h)) * torch.sigmoid(self.gate(h)))


class FusionBlock(nn.Module):
    """LR tokens [B, N_lr, lr_width] -> an addend [B, N_hr, hr_width] for one HR block's hidden states."""

    def __init__(self, lr_width: int, hr_width: int, mlp_ratio: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(lr_width, eps=1e-6)
        self.proj_in = nn.Linear(lr_width, hr_width)
        hidden = int(round(hr_width * mlp_ratio))
        self.mlp = GatedMLP(hr_width, hidden) if hidden > 0 else nn.Identity()
        self.proj_out = nn.Linear(hr_width, hr_width)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, lr_tokens, lr_grid, hr_grid, mode: str = "trilinear") -> torch.Tensor:
        dtype = self.proj_in.weight.dtype
        features = self.proj_out(self.mlp(self.proj_in(self.norm(lr_tokens.to(dtype)))))
        return resize_tokens(features, lr_grid, hr_grid, mode)


def _checked_blocks(blocks: Sequence[int], name: str) -> list[int]:
    try:
        blocks = [int(b) for b in blocks]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of block indices, got {blocks!r}") from None
    if not blocks or min(blocks) < 0 or len(set(blocks)) != len(blocks):
        raise ValueError(f"{name} must be a non-empty list of distinct block indices >= 0, got {blocks}")
    return blocks


class FusionAdapter(nn.Module):
    """One FusionBlock per fused HR block; hr_blocks[i] receives the features of lr_blocks[i]."""

    def __init__(self, lr_width: int, hr_width: int, hr_blocks: Sequence[int], lr_blocks: Sequence[int] | None = None,
                 num_blocks: int | None = None, mlp_ratio: float = 0.0, resize: str = "trilinear"):
        super().__init__()
        self.hr_blocks = _checked_blocks(hr_blocks, "hr_blocks")
        self.lr_blocks = _checked_blocks(self.hr_blocks if lr_blocks is None else lr_blocks, "lr_blocks")
        if len(self.lr_blocks) != len(self.hr_blocks):
            raise ValueError(f"lr_blocks {self.lr_blocks} and hr_blocks {self.hr_blocks} must pair up one to one")
        if min(lr_width, hr_width) < 1 or mlp_ratio < 0 or resize not in RESIZE_MODES:
            raise ValueError(f"bad fusion adapter settings: widths {lr_width}/{hr_width}, mlp_ratio {mlp_ratio}, "
                             f"resize {resize!r} (one of {RESIZE_MODES})")
        self.num_blocks = int(num_blocks) if num_blocks is not None else max(self.hr_blocks) + 1
        self.check_blocks(self.num_blocks, self.num_blocks, "num_blocks")
        self.lr_width, self.hr_width, self.mlp_ratio, self.resize = lr_width, hr_width, float(mlp_ratio), resize
        self.blocks = nn.ModuleDict({str(b): FusionBlock(lr_width, hr_width, mlp_ratio) for b in self.hr_blocks})

    def check_blocks(self, hr_count: int, lr_count: int, where: str) -> None:
        """Raises unless every fused block exists in models with hr_count / lr_count blocks."""
        for name, blocks, count in (("hr_blocks", self.hr_blocks, hr_count), ("lr_blocks", self.lr_blocks, lr_count)):
            if max(blocks) >= count:
                raise ValueError(f"{where}: the fusion adapter's {name} {blocks} need a model with more than "
                                 f"{max(blocks)} blocks, this one has {count}")

    def forward(self, hr_block: int, lr_tokens, lr_grid, hr_grid) -> torch.Tensor:
        return self.blocks[str(hr_block)](lr_tokens, lr_grid, hr_grid, self.resize)

    def metadata(self) -> dict[str, str]:
        return {"turbovideo_adapter": ADAPTER_KIND, "format_version": FORMAT_VERSION,
                "lr_width": str(self.lr_width), "hr_width": str(self.hr_width),
                "hr_blocks": json.dumps(self.hr_blocks), "lr_blocks": json.dumps(self.lr_blocks),
                "num_blocks": str(self.num_blocks), "mlp_ratio": repr(self.mlp_ratio), "resize": self.resize}


def save_fusion_adapter(path, adapter: FusionAdapter) -> None:
    """Writes the adapter as safetensors: float32 tensors under 'fusion.', the metadata of docs/lrhr.md."""
    tensors = {KEY_PREFIX + k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in adapter.state_dict().items()}
    save_safetensors(tensors, path, adapter.metadata())


def _open(path: str, input_name: str):
    return open_adapter(path, "fusion adapter", "save_fusion_adapter", "docs/lrhr.md", input_name)


def adapter_from_metadata(at: str, metadata: dict | None) -> FusionAdapter:
    metadata = check_adapter_metadata(at, metadata, ADAPTER_KIND, FORMAT_VERSION, "fusion adapter",
                                      "save_fusion_adapter", "docs/lrhr.md")
    try:
        return FusionAdapter(int(metadata["lr_width"]), int(metadata["hr_width"]), json.loads(metadata["hr_blocks"]),
                             json.loads(metadata["lr_blocks"]), int(metadata["num_blocks"]),
                             float(metadata["mlp_ratio"]), metadata["resize"])
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{at}: fusion adapter metadata is incomplete or malformed ({error}); it needs lr_width, "
                         "hr_width, hr_blocks, lr_blocks, num_blocks, mlp_ratio, resize (docs/lrhr.md)") from None


def read_fusion_header(path, input_name: str = "adapter") -> FusionAdapter:
    """An untrained adapter built from the file's metadata alone; raises if it is not a fusion adapter."""
    path = str(pathlib.Path(path))
    with _open(path, input_name) as handle:
        return adapter_from_metadata(where(path, input_name), handle.metadata())


def load_fusion_adapter(path, input_name: str = "adapter") -> FusionAdapter:
    """Reads an adapter file -> a float32 FusionAdapter on the CPU; every key, shape and value is checked."""
    path = str(pathlib.Path(path))
    at = where(path, input_name)
    with _open(path, input_name) as handle:
        adapter = adapter_from_metadata(at, handle.metadata())
        expected = {KEY_PREFIX + k: tuple(v.shape) for k, v in adapter.state_dict().items()}
        missing = sorted(set(expected) - set(handle.keys()))
        extra = sorted(set(handle.keys()) - set(expected))
        if missing or extra:
            raise ValueError(f"{at}: fusion adapter keys do not match its metadata (missing {missing[:6]}, "
                             f"unexpected {extra[:6]}); write it again with save_fusion_adapter")
        tensors = {key: handle.get_tensor(key) for key in expected}
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"{at}: {key} has shape {tuple(tensors[key].shape)} but the metadata "
                             f"(lr_width, hr_width, mlp_ratio) needs {shape}")
    check_tensors(tensors, at)
    adapter.load_state_dict({k[len(KEY_PREFIX):]: v.float() for k, v in tensors.items()})
    return adapter
