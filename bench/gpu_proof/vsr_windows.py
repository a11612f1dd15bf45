"""Part 4: peak GPU memory of tiled VSR windows at 1080p and 4K (TurboTiledModel on core's LTX-Video 2B).

TurboVSR runs the LTX-Video DiT tile by tile in latent space (docs/tiling.md). Here one Euler step
of core's LTX-Video 2B (random weights, 121 frames = 16 latent frames) runs through the pack's
TurboTiledModel at a fixed tile plan (16 x 16 latent tiles = 512 x 512 px, overlap 4, one window
per call) over a 1080p and a 4K latent, next to the untiled 1080p call. Reported: windows, the
step's seconds, and peak allocated memory above what the weights hold: tiled, the peak should
follow the tile, not the frame (4K within a few percent of 1080p); untiled, it follows the frame.
"""
from __future__ import annotations

import dataclasses

import torch

from . import core_models
from .common import Context, Guard, Part

COLUMNS = [("case", "case", ""), ("latent", "latent C,T,H,W", ""), ("tile", "tile", ""), ("windows", "windows", ""),
           ("seconds", "step s", ".2f"), ("above_gb", "peak above weights GiB", ".2f"),
           ("peak_gb", "peak GiB", ".2f"), ("finite", "finite", "")]


def _cases(smoke: bool):
    """(label, latent, tile or None)."""
    if smoke:
        return [("untiled", (128, 2, 4, 8), None), ("tiled 4x4", (128, 2, 4, 8), (4, 4)),
                ("tiled 4x4", (128, 2, 8, 8), (4, 4))]
    return [("untiled 1080p", (128, 16, 34, 60), None), ("tiled 1080p, 16x16 tiles", (128, 16, 34, 60), (16, 16)),
            ("tiled 4K, 16x16 tiles", (128, 16, 68, 120), (16, 16))]


def _run_case(core, part: Part, base, spec, label: str, latent, tile, ctx: Context) -> None:
    tiled = core.patches.tiled_model
    case_spec = dataclasses.replace(spec, latent=latent)
    model, windows = base, 1
    if tile is not None:
        settings = tiled.TilingSettings(tile=tile, overlap=min(4, tile[0] // 4))
        model, windows = tiled.apply_tiling(base, settings), len(settings.plan(latent[1:]))
    timing = core_models.sample_steps(core, model, case_spec, 1, ctx.device)
    core_models.release(core)
    part.add(case=label, latent=",".join(map(str, latent)), tile="x".join(map(str, tile)) if tile else "-",
             windows=windows, seconds=timing.first_s, above_gb=timing.above_gb, peak_gb=timing.peak_gb,
             finite=timing.finite)


def _spread_note(part: Part) -> None:
    tiled = [row["above_gb"] for row in part.rows if row["tile"] != "-" and row["above_gb"] is not None]
    if len(tiled) >= 2:
        spread = max(tiled) / min(tiled)
        part.note(f"tiled peak above weights, 4K / 1080p: {spread:.3f} (the tile bounds memory when ~1)")
        part.rows[-1]["spread"] = spread


def run(ctx: Context, guard: Guard, core) -> Part:
    part = Part("4. tiled VSR windows: peak memory (TurboTiledModel on core LTX-Video 2B)", COLUMNS)
    spec = core_models.model_specs(ctx.smoke)[1]
    base = core_models.build(core, spec, ctx.device, torch.float32 if ctx.smoke else torch.bfloat16)
    for label, latent, tile in _cases(ctx.smoke):
        if not guard.allows():
            part.note(f"time guard: {label} and later cases not run", failure=True)
            break
        try:
            _run_case(core, part, base, spec, label, latent, tile, ctx)
        except Exception as error:  # e.g. out of memory for the untiled call: report, go on
            core_models.release(core)
            part.note(f"{label}: {type(error).__name__}: {error}", failure=True)
    if not ctx.cuda:
        part.note("CPU run: GPU memory is not measured (peak columns empty)")
    _spread_note(part)
    del base
    core_models.release(core)
    part.seconds = guard.elapsed()
    return part
