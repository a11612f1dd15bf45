"""The largest spatial tile whose model call fits a memory budget (tile_size 0 = auto, docs/tiling.md).

Pure math: the caller measures the budget (free device memory, or the user's) and supplies `cost`,
the bytes one model call needs on a window of (frames, rows, columns) latent cells, e.g. ComfyUI's
own estimate `BaseModel.memory_required` for the batch that goes through the model at once. Only the
square tile side is chosen; the window's frames are the segment length (or the whole video).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TileChoice:
    side: int  # latent cells; >= max(height, width) means one window (untiled)
    fits: bool  # False: even the smallest allowed tile is over the budget (side is then that smallest)
    cost: float  # bytes of one model call at this side


def window_frames(frames: int, segment: int) -> int:
    """Latent frames in one window: the segment length, or the whole video when segment is 0 or longer."""
    return frames if segment == 0 or segment >= frames else segment


def largest_tile(shape: tuple[int, int, int], budget: float, cost: Callable[[int, int, int], float],
                 overlap: int, segment: int = 0) -> TileChoice:
    """The largest side s in [overlap + 1, max(height, width)] with cost(t, min(s, H), min(s, W)) <= budget.

    `shape` is the latent (frames, height, width); `cost` must not decrease as a size grows. When no
    side fits, the smallest one comes back with fits=False (the caller warns and tries anyway).
    """
    frames, height, width = shape
    if min(shape) < 1:
        raise ValueError(f"latent shape must be positive, got {shape}")
    if overlap < 0:
        raise ValueError(f"tile_overlap must be >= 0, got {overlap}")
    t = window_frames(frames, segment)
    at = lambda side: cost(t, min(side, height), min(side, width))
    low, high = min(overlap + 1, max(height, width)), max(height, width)
    if at(low) > budget:
        return TileChoice(low, False, at(low))
    while low < high:  # invariant: at(low) fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if at(middle) <= budget else (low, middle - 1)
    return TileChoice(low, True, at(low))


def model_call_cost(memory_required: Callable[[list[int]], float], batch: int, channels: int,
                    margin: float = 1.5) -> Callable[[int, int, int], float]:
    """cost(t, h, w) = margin x the model's own estimate for [batch, channels, t, h, w].

    margin 1.5 is the headroom ComfyUI's sampler itself asks for before it batches conds together.
    """
    return lambda t, h, w: margin * float(memory_required([batch, channels, t, h, w]))
