"""LTX-Video keyframe guides (LTXVAddGuide) cropped per tiled window, in both hosts' guide formats.

LTXVAddGuide appends the guide's latent frames after the video frames of x and puts two extra conds on the
conditioning, both laid out over those guide tokens (guide frames x H x W cells, in order):
- `keyframe_idxs` [B, 3 (t, h, w), guide tokens, 2 (start, end)]: each guide token's pixel coordinates
  (0.8.0 and 0.29);
- `guide_attention_entries` (0.29): one dict per guide, in token order: `pre_filter_count` (its tokens, a whole
  number of H x W frames), `latent_shape` [frames, h, w] (before IC-LoRA dilation), `strength`, `pixel_mask`
  (1, 1, F, H_px, W_px) or None. Core checks that the counts add up to the guide tokens and turns strength and
  mask into per-token attention weights, downsampling the mask to `latent_shape` (area, per frame).

A window of rows x cols keeps, for every guide frame, its own cells: keyframe_idxs entries moved into the
window's coordinates like its other tokens (the model numbers a window's tokens from 0), each entry's counts
and grid cropped to the window, and its pixel mask replaced by the window's crop of the mask at latent
resolution, which core's own downsampling leaves as it is: the window's weights equal the crop of the
full-grid weights.
"""
from __future__ import annotations

import torch

from ..samplers.tiling import Window

KEYFRAME_INDICES = "keyframe_idxs"
GUIDE_ENTRIES = "guide_attention_entries"
GUIDE_CONDS = (KEYFRAME_INDICES, GUIDE_ENTRIES)  # every cond LTXVAddGuide sets that is laid out over guide tokens


def window_guides(conds: dict, x: torch.Tensor, windows: list[Window], scale) -> dict:
    """The guide conds present in `conds` (a model call's kwargs), for a batch of windows of x [B, C, T, H, W];
    scale: the VAE's (t, h, w) pixels per latent cell."""
    out = {}
    if conds.get(KEYFRAME_INDICES) is not None:
        _refuse_segments(x, windows)
        out[KEYFRAME_INDICES] = window_keyframes(conds[KEYFRAME_INDICES], x, windows, scale)
    if conds.get(GUIDE_ENTRIES):
        out[GUIDE_ENTRIES] = window_guide_entries(conds[GUIDE_ENTRIES], x, windows)
    return out


def _refuse_segments(x: torch.Tensor, windows: list[Window]) -> None:
    if any(window.frames[1] != x.shape[2] or window.frames[0] != 0 for window in windows):
        raise ValueError("model: TurboTiledModel with temporal segments cannot carry LTXVAddGuide keyframes "
                         "(they sit after the last frame); set segment_length to 0")


def _guide_frames(tokens: int, x: torch.Tensor, what: str) -> int:
    height, width = x.shape[3:]
    if tokens % (height * width):
        raise ValueError(f"model: {tokens} {what} tokens do not fill whole {height}x{width} latent frames; "
                         "TurboTiledModel tiles full-frame guides (LTXVAddGuide) only")
    return tokens // (height * width)


def window_keyframes(keyframes: torch.Tensor, x: torch.Tensor, windows: list[Window], scale) -> torch.Tensor:
    """keyframe_idxs for a batch of windows: each window's guide cells, in its token order, shifted by its
    spatial offset."""
    height, width = x.shape[3:]
    frames = _guide_frames(keyframes.shape[2], x, "keyframe")
    cells = torch.arange(keyframes.shape[2], device=keyframes.device).reshape(frames, height, width)
    batch = keyframes.expand(x.shape[0], *keyframes.shape[1:]) if keyframes.shape[0] == 1 else keyframes
    parts = []
    for window in windows:
        part = batch[:, :, cells[:, slice(*window.rows), slice(*window.cols)].reshape(-1)].clone()
        part[:, 1] -= window.rows[0] * scale[1]
        part[:, 2] -= window.cols[0] * scale[2]
        parts.append(part)
    return torch.cat(parts, dim=0)


def window_guide_entries(entries: list, x: torch.Tensor, windows: list[Window]) -> list:
    """guide_attention_entries for a batch of windows (one list for the whole batch: windows of one batch have
    one size, and core applies one mask to every batch item)."""
    window = windows[0]
    if any(entry.get("pixel_mask") is not None for entry in entries) and len(windows) > 1:
        raise ValueError("tile_batch: an LTXVAddGuide attention mask differs per window, and core applies one "
                         "mask to a whole batch; set tile_batch to 1")
    return [_window_entry(entry, x, window) for entry in entries]


def _window_entry(entry: dict, x: torch.Tensor, window: Window) -> dict:
    height, width = x.shape[3:]
    frames = _guide_frames(entry["pre_filter_count"], x, "guide")
    rows, cols = window.rows[1] - window.rows[0], window.cols[1] - window.cols[0]
    out = {**entry, "pre_filter_count": frames * rows * cols}
    shape = entry.get("latent_shape")
    full_grid = shape is not None and list(shape[1:]) == [height, width]
    if full_grid:
        out["latent_shape"] = [shape[0], rows, cols]
    if entry.get("pixel_mask") is not None:
        if not full_grid:
            raise ValueError("model: TurboTiledModel cannot tile an LTXVAddGuide attention mask on a downscaled "
                             "(IC-LoRA) guide; remove the tiling or the guide's attention_mask")
        out["pixel_mask"] = _window_mask(entry["pixel_mask"], (height, width), window)
    return out


def _window_mask(mask: torch.Tensor, grid: tuple[int, int], window: Window) -> torch.Tensor:
    """(B, 1, F, h, w) crop of `mask` (B, 1, F, H_px, W_px) area-downsampled per frame to the latent grid."""
    batch, _, frames = mask.shape[:3]
    latent = torch.nn.functional.interpolate(mask.reshape(batch * frames, 1, *mask.shape[3:]), size=grid,
                                             mode="area")
    latent = latent.reshape(batch, 1, frames, *grid)
    return latent[..., slice(*window.rows), slice(*window.cols)].contiguous()
