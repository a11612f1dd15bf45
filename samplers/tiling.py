"""Tiled inference over a video latent [B, C, T, H, W]: windows, blend weights and the blended apply.

A plan covers the latent with windows = temporal segments x spatial rows x spatial columns (spans
from video_chunks.plan_spans: balanced, fixed overlap). Each window carries one weight vector per
axis; the weight of a cell is their outer product, normalised per axis so that the weights of all
windows sum to one at every cell. `tiled_apply` then computes out = sum_w weight_w * f(crop_w(x)).

Weights per axis:
- "cosine": video_chunks.blend_weights (sin^2 ramps over the middle of each overlap).
- "gaussian": exp(-(u - 1/2)^2 / (2 var)) over the window, u in (0, 1) (DiffBIR / CCSR / TurboVSR,
  var 0.01). Both kinds give zero weight to the outer `margin_fraction` of every inner overlap, the
  cells nearest a window's own cut, where a model sees the least context.

Units. A model may only be cut on a coarser grid (SeedVR2: whole attention windows of its patched
tokens). With `unit` = (frames, rows, cols) cells per unit, spans are planned in units (so sizes and
overlaps are whole units and every window starts on a unit boundary), then turned back into cells,
the last span ending at the latent's edge; weights are always per cell. `to_units` turns sizes asked
for in cells into units: a square tile of side s becomes n x n units with n = floor(s / sqrt(rows x
cols)) (the same area), overlaps round up.

Time: an LTX-Video segment starts with the causal single-frame latent, which in a later segment does
not stand for what it stands for in the whole video. With `drop_first_latent` the first latent of
every later segment gets weight 0 (TurboVSR sec. 3.5), so segments must overlap by at least 2
latents (1 + 8 pixel frames for LTX) and only the remaining overlap is blended.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .video_chunks import blend_weights, plan_spans

WEIGHT_KINDS = ("gaussian", "cosine")
GAUSSIAN_VARIANCE = 0.01


@dataclass(frozen=True)
class Window:
    frames: tuple[int, int]  # latent frames [start, stop)
    rows: tuple[int, int]
    cols: tuple[int, int]
    frame_weights: torch.Tensor  # float64, already normalised across windows
    row_weights: torch.Tensor
    col_weights: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.frames[1] - self.frames[0], self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])

    @property
    def index(self) -> tuple[slice, ...]:
        """Indexes [B, C, T, H, W] down to this window."""
        return (slice(None), slice(None), slice(*self.frames), slice(*self.rows), slice(*self.cols))

    def weight(self, dtype: torch.dtype, device) -> torch.Tensor:
        """(t, h, w) weights, the float64 outer product cast to `dtype`."""
        w = self.frame_weights[:, None, None] * self.row_weights[None, :, None] * self.col_weights[None, None, :]
        return w.to(device=device, dtype=dtype)


def _gaussian(length: int, variance: float) -> torch.Tensor:
    u = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return torch.exp(-((u - 0.5) ** 2) / (2.0 * variance))


def _inner_margins(spans: list[tuple[int, int]], margin_fraction: float) -> list[torch.Tensor]:
    """1 everywhere except the outer margin_fraction of each inner overlap (0 there)."""
    masks = []
    for index, (start, stop) in enumerate(spans):
        mask = torch.ones(stop - start, dtype=torch.float64)
        if index > 0:
            front = max(0, min(spans[index - 1][1] - start, stop - start))
            mask[:int(margin_fraction * front)] = 0.0
        if index + 1 < len(spans):
            back = max(0, min(stop - spans[index + 1][0], stop - start))
            mask[stop - start - int(margin_fraction * back):] = 0.0
        masks.append(mask)
    return masks


def axis_weights(spans: list[tuple[int, int]], kind: str = "cosine", margin_fraction: float = 0.25,
                 drop_first: bool = False) -> list[torch.Tensor]:
    """Float64 weights per span, normalised so that they sum to one at every covered cell.

    drop_first: every span but the first gives its first cell weight 0 (the causal first latent).
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {WEIGHT_KINDS}, got {kind!r}")
    shift = [1 if drop_first and index > 0 else 0 for index in range(len(spans))]
    inner = [(a + s, b) for (a, b), s in zip(spans, shift)]
    if kind == "cosine":
        core = blend_weights(inner, margin_fraction=margin_fraction)
    else:
        masks = _inner_margins(inner, margin_fraction)
        core = [_gaussian(b - a, GAUSSIAN_VARIANCE) * m for (a, b), m in zip(inner, masks)]
    weights = [torch.cat([torch.zeros(s, dtype=torch.float64), w]) for s, w in zip(shift, core)]
    total = torch.zeros(spans[-1][1], dtype=torch.float64)
    for (a, b), w in zip(spans, weights):
        total[a:b] += w
    if bool((total <= 0).any()):
        raise ValueError("some cells get no weight: make the overlap larger")
    return [w / total[a:b] for (a, b), w in zip(spans, weights)]


def check_plan_inputs(tile: tuple[int, int], overlap: int, segment: int, segment_overlap: int,
                      drop_first_latent: bool, frame_unit: int = 1) -> None:
    """Sizes in units (cells when units are 1); a segment overlap must hold 2 latents when drop_first_latent."""
    if min(tile) < 1:
        raise ValueError(f"tile_size must be >= 1 latent, got {tile}")
    if not 0 <= overlap < min(tile):
        raise ValueError(f"tile_overlap must be in [0, tile_size): tile {tile}, overlap {overlap}")
    if segment < 0:
        raise ValueError(f"segment_length must be >= 0 (0 = whole video), got {segment}")
    least = 2 if drop_first_latent else 1
    if segment > 0 and not (least <= segment_overlap * frame_unit and segment_overlap < segment):
        raise ValueError(f"segment_overlap must be in [{least}, segment_length) latents "
                         f"(segment {segment}, overlap {segment_overlap})"
                         + ("; the first latent of each later segment is dropped" if drop_first_latent else ""))


@dataclass(frozen=True)
class UnitSizes:
    """Plan sizes in units: tile (rows, cols), tile overlap, segment and segment overlap (0 = one segment)."""
    tile: tuple[int, int]
    overlap: int
    segment: int
    segment_overlap: int


def unit_grid(shape: tuple[int, int, int], unit: tuple[int, int, int]) -> tuple[int, int, int]:
    """Units that cover a (frames, height, width) latent (the last one may be partial)."""
    return tuple(-(-n // u) for n, u in zip(shape, unit))


def to_units(shape: tuple[int, int, int], unit: tuple[int, int, int], tile: tuple[int, int], overlap: int,
             segment: int, segment_overlap: int, drop_first_latent: bool = True) -> UnitSizes:
    """Sizes asked for in cells -> a valid plan in units (the sizes themselves when every unit is one cell).

    The tile is clipped to the latent and the overlap to tile - 1; a segment keeps at least one unit
    more than its overlap, which holds at least 2 latents with drop_first_latent."""
    grid, side = unit_grid(shape, unit), math.sqrt(unit[1] * unit[2])
    tile_units = tuple(min(max(1, int(t / side)), n) for t, n in zip(tile, grid[1:]))
    overlap_units = min(math.ceil(overlap / side), max(min(tile_units) - 1, 0))
    if segment == 0:
        return UnitSizes(tile_units, overlap_units, 0, segment_overlap)
    least = math.ceil((2 if drop_first_latent else 1) / unit[0])
    segment_overlap_units = max(math.ceil(segment_overlap / unit[0]), least)
    segment_units = max(round(segment / unit[0]), segment_overlap_units + 1)
    return UnitSizes(tile_units, overlap_units, segment_units, segment_overlap_units)


def _in_cells(spans: list[tuple[int, int]], unit: int, length: int) -> list[tuple[int, int]]:
    return [(a * unit, min(b * unit, length)) for a, b in spans]


def plan_windows(shape: tuple[int, int, int], tile: tuple[int, int], overlap: int, segment: int = 0,
                 segment_overlap: int = 2, kind: str = "cosine", margin_fraction: float = 0.25,
                 drop_first_latent: bool = True, unit: tuple[int, int, int] = (1, 1, 1)) -> list[Window]:
    """Windows over a (frames, height, width) latent; segment 0 (or >= frames) = one segment.

    Sizes count units (cells unless `unit` says otherwise); windows start on unit boundaries."""
    check_plan_inputs(tile, overlap, segment, segment_overlap, drop_first_latent, unit[0])
    frames, height, width = unit_grid(shape, unit)
    if segment == 0 or segment >= frames:
        segments = [(0, frames)]
    else:
        segments = plan_spans(frames, segment, segment_overlap)
    rows = plan_spans(height, tile[0], overlap)
    cols = plan_spans(width, tile[1], overlap)
    segments, rows, cols = (_in_cells(spans, u, n) for spans, u, n in zip((segments, rows, cols), unit, shape))
    fw = axis_weights(segments, kind, margin_fraction, drop_first=drop_first_latent)
    rw = axis_weights(rows, kind, margin_fraction)
    cw = axis_weights(cols, kind, margin_fraction)
    return [Window(s, r, c, sw, rwi, cwi) for s, sw in zip(segments, fw) for r, rwi in zip(rows, rw)
            for c, cwi in zip(cols, cw)]


def batches(windows: list[Window], tile_batch: int) -> list[list[Window]]:
    """Windows of equal shape grouped into batches of at most `tile_batch` (shape order, then plan order)."""
    groups: dict[tuple[int, int, int], list[Window]] = {}
    for window in windows:
        groups.setdefault(window.shape, []).append(window)
    return [group[i:i + tile_batch] for group in groups.values() for i in range(0, len(group), tile_batch)]


def tiled_apply(fn: Callable[[torch.Tensor, list[Window]], torch.Tensor], x: torch.Tensor,
                windows: list[Window], tile_batch: int = 1,
                before_batch: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """sum_w weight_w * fn(crop_w(x)) for x [B, C, T, H, W].

    fn gets k crops stacked along the batch axis (window 0's B items, then window 1's, ...) and the k
    windows; it returns [k * B, C_out, t, h, w]. before_batch(done, total) runs before each call
    (interrupts, progress). Accumulation is in float32 at least; the result has x's dtype.
    """
    if x.ndim != 5:
        raise ValueError(f"tiled inference needs a video latent [B, C, T, H, W], got shape {tuple(x.shape)}")
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
    out, done, plan = None, 0, batches(windows, tile_batch)
    acc_dtype = torch.promote_types(x.dtype, torch.float32)
    for group in plan:
        if before_batch is not None:
            before_batch(done, len(windows))
        crops = torch.cat([x[w.index] for w in group], dim=0)
        pieces = fn(crops, group).split(x.shape[0], dim=0)
        if out is None:
            out = torch.zeros((x.shape[0], pieces[0].shape[1], *x.shape[2:]), dtype=acc_dtype, device=x.device)
        for window, piece in zip(group, pieces):
            out[window.index] += piece.to(acc_dtype) * window.weight(acc_dtype, x.device)
        done += len(group)
    return out.to(x.dtype)

