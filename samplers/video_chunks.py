"""Chunk and tile plans for video VAEs and tiled video models: integer spans plus blend weights.

Time. A causal video VAE with temporal factor f (LTX-Video 8, Wan 4) maps pixel frames to latent
frames as: latent 0 <- pixel frame 0 alone; latent t >= 1 <- pixel frames f(t-1)+1 .. ft. So T
latents decode to 1 + f(T-1) frames and only 1 + fk frames encode. A chunk of latents [a, b) is
decoded (or encoded) as a video of its own: its first latent plays the causal first frame and
stands for pixel frame fa, the last of latent a's group. Chunk [a, b) therefore covers pixel frames
[fa, f(b-1)+1), and neighbouring chunks that share latents share pixel frames.

Blending. Every chunk gets a weight per unit (pixel frame, latent frame or pixel column); inside an
overlap with a neighbour the weights ramp smoothly (sin^2 up, cos^2 down: the pair sums to one),
elsewhere they are 1, and the result is sum(w x) / sum(w). For a causal model (LTX encoder, Wan
encoder and decoder) the end of the earlier chunk is already exact and the start of the later one
lacks history, so `causal=True` gives the overlap entirely to the earlier chunk: the later chunk's
overlap is a warm-up that is computed and discarded.

A VAE that can carry its causal state (its convolutions' frame cache) from one call into the next decodes
a video in consecutive, non-overlapping chunks exactly as in one call: `plan_carried`.

Memory. `choose_sizes` picks the longest chunk, then the largest tile, whose estimated cost (a
callable over (frames, height, width) in latent units) fits a byte budget.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def is_valid_frame_count(frames: int, factor: int) -> bool:
    return frames >= 1 and (frames - 1) % factor == 0


def nearest_valid_frame_counts(frames: int, factor: int) -> tuple[int | None, int]:
    """The valid counts (1 + factor k) just below and just above `frames`; None below 1."""
    below = 1 + ((frames - 1) // factor) * factor if frames >= 1 else None
    above = 1 + math.ceil(max(frames - 1, 0) / factor) * factor
    return below, above


def pixel_frame_count(latent_frames: int, factor: int) -> int:
    return 1 + factor * (latent_frames - 1)


def latent_frame_count(pixel_frames: int, factor: int) -> int:
    if not is_valid_frame_count(pixel_frames, factor):
        raise ValueError(f"{pixel_frames} frames is not 1 + {factor}k")
    return 1 + (pixel_frames - 1) // factor


def pixel_span(start: int, stop: int, factor: int) -> tuple[int, int]:
    """Pixel frames [first, end) that the latent chunk [start, stop) decodes to or encodes from."""
    return factor * start, factor * (stop - 1) + 1


def plan_spans(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Covers [0, length) with the fewest spans of at most `size` that overlap by exactly `overlap`.

    Spans are balanced (their lengths differ by at most one), so no thin last span is left over.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if size >= length:
        return [(0, length)]
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size): size {size}, overlap {overlap}")
    count = math.ceil((length - overlap) / (size - overlap))
    body = length + (count - 1) * overlap  # sum of the span lengths
    base, extra = divmod(body, count)
    spans, start = [], 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        spans.append((start, stop))
        start = stop - overlap
    return spans


def ramp_up(length: int) -> torch.Tensor:
    """sin^2 over the centres of `length` cells; ramp_up(n) + ramp_up(n).flip(0) == 1."""
    x = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return torch.sin(0.5 * math.pi * x) ** 2


def overlap_ramp(length: int, margin: int) -> torch.Tensor:
    """Rising weights over an overlap of `length`: 0 for `margin` cells, a sin^2 ramp, then 1.

    With margin m neither chunk's outer m cells of the overlap (those nearest its own border, the
    least accurate) count at all. Where the ramp would be empty the cut is hard, at the middle.
    """
    margin = min(margin, length // 2)
    ramp = torch.zeros(length, dtype=torch.float64)
    ramp[margin: length - margin] = ramp_up(length - 2 * margin)
    ramp[length - margin:] = 1.0
    return ramp


def blend_weights(spans: list[tuple[int, int]], causal: bool = False, margin_fraction: float = 0.25
                  ) -> list[torch.Tensor]:
    """Float64 weights per span (sorted spans, each overlapping only its neighbours).

    Symmetric (default): each overlap of length L blends over its middle, `margin_fraction * L`
    cells excluded on each side. Causal: the earlier span keeps the whole overlap.
    """
    weights = []
    for index, (start, stop) in enumerate(spans):
        w = torch.ones(stop - start, dtype=torch.float64)
        if index > 0:
            front = max(0, min(spans[index - 1][1] - start, stop - start))
            w[:front] *= 0.0 if causal else overlap_ramp(front, int(margin_fraction * front))
        if index + 1 < len(spans) and not causal:
            back = max(0, min(stop - spans[index + 1][0], stop - start))
            w[stop - start - back:] *= 1.0 - overlap_ramp(back, int(margin_fraction * back))
        weights.append(w)
    return weights


@dataclass(frozen=True)
class TemporalChunk:
    latent: tuple[int, int]  # latent frames [start, stop)
    pixel: tuple[int, int]  # pixel frames [first, end)
    pixel_weights: torch.Tensor  # one per pixel frame of the chunk (decode blending)
    latent_weights: torch.Tensor  # one per latent frame of the chunk (encode blending)


def plan_temporal(latent_frames: int, chunk: int, overlap: int, factor: int, causal: bool = False,
                  margin_fraction: float = 0.25) -> list[TemporalChunk]:
    """Chunks of at most `chunk` latents sharing `overlap` latents, with both kinds of weights."""
    if chunk < latent_frames and overlap < 1:
        raise ValueError("temporal chunks need an overlap of at least 1 latent frame")
    spans = plan_spans(latent_frames, chunk, overlap)
    pixels = [pixel_span(a, b, factor) for a, b in spans]
    pixel_w = blend_weights(pixels, causal, margin_fraction)
    latent_w = blend_weights(spans, causal, margin_fraction)
    return [TemporalChunk(s, p, pw, lw) for s, p, pw, lw in zip(spans, pixels, pixel_w, latent_w)]


def plan_carried(latent_frames: int, chunk: int, factor: int) -> list[TemporalChunk]:
    """Chunks of at most `chunk` latents that do not overlap, for a causal VAE that carries its state from one
    chunk into the next (it decodes the video as one): chunk [a, b) covers pixel frames [f(a-1)+1, f(b-1)+1),
    the first one [0, f(b-1)+1). Every weight is 1."""
    spans = plan_spans(latent_frames, chunk, 0)
    pixels = [(0 if a == 0 else factor * (a - 1) + 1, factor * (b - 1) + 1) for a, b in spans]
    ones = lambda n: torch.ones(n, dtype=torch.float64)
    return [TemporalChunk(s, p, ones(p[1] - p[0]), ones(s[1] - s[0])) for s, p in zip(spans, pixels)]


@dataclass(frozen=True)
class Tile:
    rows: tuple[int, int]  # [start, stop) in the plan's unit
    cols: tuple[int, int]
    weights: torch.Tensor  # (rows, cols) float64

    def scaled(self, scale: int, weights: torch.Tensor) -> Tile:
        return Tile((self.rows[0] * scale, self.rows[1] * scale), (self.cols[0] * scale, self.cols[1] * scale),
                    weights)


def plan_tiles(height: int, width: int, tile: tuple[int, int], overlap: int, scale: int = 1,
               margin_fraction: float = 0.25) -> list[Tile]:
    """Tiles over a (height, width) latent grid; weights in units of `scale` (pixels per latent).

    With scale s a latent tile [a, b) covers pixels [sa, sb) and the ramps run over s * overlap pixels.
    """
    rows = plan_spans(height, tile[0], min(overlap, max(tile[0] - 1, 0)))
    cols = plan_spans(width, tile[1], min(overlap, max(tile[1] - 1, 0)))
    row_w = blend_weights([(a * scale, b * scale) for a, b in rows], margin_fraction=margin_fraction)
    col_w = blend_weights([(a * scale, b * scale) for a, b in cols], margin_fraction=margin_fraction)
    return [Tile((scale * r[0], scale * r[1]), (scale * c[0], scale * c[1]), rw[:, None] * cw[None, :])
            for r, rw in zip(rows, row_w) for c, cw in zip(cols, col_w)]


@dataclass(frozen=True)
class ChunkSizes:
    frames: int  # latent frames per chunk
    height: int  # latent rows per tile
    width: int  # latent columns per tile

    def covers(self, frames: int, height: int, width: int) -> bool:
        return self.frames >= frames and self.height >= height and self.width >= width


def choose_sizes(shape: tuple[int, int, int], budget: float, cost: Callable[[int, int, int], float],
                 min_frames: int, min_tile: int, frames: int | None = None, tile: int | None = None) -> ChunkSizes:
    """The longest chunk at full size whose cost fits `budget`; if none, the largest square-ish tile.

    `shape` is (frames, height, width) in latent units and `cost` (bytes of one call on a chunk of
    that size) must grow with each argument. `frames` / `tile` fix that size (manual overrides) and
    the other is chosen under it. When nothing fits, the smallest sizes are returned.
    """
    total, height, width = shape
    min_frames, min_tile = min(min_frames, total), min(min_tile, height, width)
    square = lambda side: (min(side, height), min(side, width))
    fits = lambda t, side: cost(t, *square(side)) <= budget
    full = max(height, width)
    if frames is not None and tile is not None:
        return ChunkSizes(min(frames, total), *square(tile))
    if frames is not None:
        frames = min(frames, total)
        return ChunkSizes(frames, *square(_largest(min_tile, full, lambda s: fits(frames, s))))
    if tile is not None:
        return ChunkSizes(_largest(min_frames, total, lambda t: fits(t, tile)), *square(tile))
    if fits(min_frames, full):
        return ChunkSizes(_largest(min_frames, total, lambda t: fits(t, full)), height, width)
    return ChunkSizes(min_frames, *square(_largest(min_tile, full, lambda s: fits(min_frames, s))))


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """Largest n in [low, high] with ok(n) for a monotone ok (low is returned when none is ok)."""
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low
