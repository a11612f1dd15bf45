"""A picture of a tile plan: tiles and their blend weights over the first frame, segments underneath.

- Frame: 1/2 the frame + 1/2 a tint. Each spatial tile has a palette colour; the tint of a pixel is
  the mix of the colours of the tiles that cover it, weighted by their normalised blend weights, so
  overlaps show the blend and a pixel that one tile owns shows that tile's colour.
- Tile borders: white lines (the tint never reaches white: every palette colour has a channel < 1).
- Under the frame, one band of STRIP_PX rows per temporal segment: pixel frames run left to right,
  a segment's frames in its colour scaled by their blend weight (a dropped causal first latent is
  black); the rest of the band is black.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..samplers import video_chunks as vc
from ..samplers.tiling import Window
from . import chunked_vae
from .tile_plan import auto_settings, conds_for_cfg, plan_for
from .tiled_model import tiling_settings

STRIP_PX = 12
PALETTE = torch.tensor([[0.90, 0.20, 0.20], [0.20, 0.75, 0.25], [0.25, 0.40, 0.95], [0.95, 0.80, 0.15],
                        [0.70, 0.25, 0.85], [0.15, 0.80, 0.85], [0.95, 0.50, 0.15], [0.55, 0.55, 0.55]])
WHITE = 1.0


def line_width(height: int, width: int) -> int:
    return max(1, min(height, width) // 256)


def _spatial_tiles(windows: list[Window]) -> list[Window]:
    seen, out = set(), []
    for window in windows:
        if (window.rows, window.cols) not in seen:
            seen.add((window.rows, window.cols))
            out.append(window)
    return out


def _tint(tiles: list[Window], shape: tuple[int, int], cell: int) -> torch.Tensor:
    """(H, W, 3) weighted mix of tile colours at pixel resolution (weights repeated per latent cell)."""
    tint = torch.zeros(shape[0] // cell, shape[1] // cell, 3, dtype=torch.float64)
    for index, tile in enumerate(tiles):
        weight = tile.row_weights[:, None] * tile.col_weights[None, :]
        colour = PALETTE[index % len(PALETTE)].double()
        tint[slice(*tile.rows), slice(*tile.cols)] += weight[..., None] * colour
    return tint.repeat_interleave(cell, 0).repeat_interleave(cell, 1).float()


def _borders(canvas: torch.Tensor, tiles: list[Window], cell: int, thickness: int) -> None:
    for tile in tiles:
        top, bottom = tile.rows[0] * cell, tile.rows[1] * cell
        left, right = tile.cols[0] * cell, tile.cols[1] * cell
        canvas[top:top + thickness, left:right] = WHITE
        canvas[bottom - thickness:bottom, left:right] = WHITE
        canvas[top:bottom, left:left + thickness] = WHITE
        canvas[top:bottom, right - thickness:right] = WHITE


def _segment_bands(windows: list[Window], frames: int, width: int, time_factor: int) -> torch.Tensor:
    segments = {}
    for window in windows:
        segments.setdefault(window.frames, window.frame_weights)
    latent_of_frame = torch.tensor([0] + [(f - 1) // time_factor + 1 for f in range(1, frames)])
    column_frame = (torch.arange(width) * frames) // width
    bands = torch.zeros(STRIP_PX * len(segments), width, 3)
    for index, ((start, stop), weights) in enumerate(segments.items()):
        latent = latent_of_frame[column_frame]
        inside = (latent >= start) & (latent < stop)
        level = torch.zeros(width, dtype=torch.float64)
        level[inside] = weights[latent[inside] - start]
        colour = PALETTE[index % len(PALETTE)]
        bands[index * STRIP_PX:(index + 1) * STRIP_PX] = level.float()[None, :, None] * colour
    return bands


def draw_layout(frame: torch.Tensor, windows: list[Window], cell: int, time_factor: int, frames: int,
                size: tuple[int, int] | None = None) -> torch.Tensor:
    """IMAGE (1, H + STRIP_PX x segments, W, 3) of the plan `windows` (latent cells of `cell` px).

    frame: (h, w, 3) in [0, 1]; it is resized to `size` (H, W), the pixels the plan covers (default:
    the whole latent grid), and the grid's padding past it is cut off. frames: pixel frames of the video.
    """
    grid = (max(w.rows[1] for w in windows) * cell, max(w.cols[1] for w in windows) * cell)
    height, width = size if size is not None else grid
    base = F.interpolate(frame[..., :3].float().movedim(-1, 0)[None], size=(height, width), mode="bilinear",
                         align_corners=False)
    base = F.pad(base, (0, grid[1] - width, 0, grid[0] - height), mode="replicate")[0].movedim(0, -1)
    tiles = _spatial_tiles(windows)
    canvas = 0.5 * base.clamp(0.0, 1.0) + 0.5 * _tint(tiles, grid, cell)
    _borders(canvas, tiles, cell, line_width(*grid))
    bands = _segment_bands(windows, frames, width, time_factor)
    return torch.cat([canvas[:height, :width], bands], dim=0)[None].clamp(0.0, 1.0)


def layout_for_model(model, vae, images: torch.Tensor, cfg: float = 1.0) -> torch.Tensor:
    """The plan a TurboTiledModel MODEL will use on the latent of `images` (frames at the model's size).

    An auto tile is resolved by the sampler's own resolver (tile_plan.auto_settings) for the conds per
    call of a sampler at `cfg`, against the budget or the device's free memory now, once the model's
    weights are in (a run measures again when it starts).
    """
    settings = tiling_settings(model)
    if settings is None:
        raise ValueError("model: not tiled; connect the MODEL output of TurboTiledModel")
    info = chunked_vae.video_vae(vae)
    frames = vc.nearest_valid_frame_counts(images.shape[0], info.time_factor)[1]
    cells = (-(-images.shape[1] // info.space_factor), -(-images.shape[2] // info.space_factor))
    shape = (vc.latent_frame_count(frames, info.time_factor), *cells)
    settings = auto_settings(settings, model, (1, info.channels, *shape), conds_for_cfg(cfg))
    return draw_layout(images[0], plan_for(settings, model.model, shape), info.space_factor, info.time_factor,
                       images.shape[0], tuple(images.shape[1:3]))
