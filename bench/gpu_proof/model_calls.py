"""Part 3: whole model calls through core ComfyUI's own model classes, plain and with the pack's patches.

Per model (core_models.model_specs), each configuration is a ModelPatcher clone made by the pack's
own patch functions (what the nodes call), sampled for a few Euler steps through core's sampler:
  plain (core's attention: SDPA)         TurboTiledModel with one tile covering the latent
  sage                                   sagesla topk 0.1
  sagesla + INT8 (per-channel W8A8)      sagesla + INT8 + fused norms
The 1-tile run follows the plain one directly, so their ratio is the tiling overhead. Speedups are
against the plain step. A model whose weights would not fit next to its activations and an INT8
copy is skipped with a line saying so; so is every configuration once the part's time is spent.
"""
from __future__ import annotations

import torch

from . import core_models
from .common import Context, Guard, Part

COLUMNS = [("model", "model", ""), ("tokens", "tokens", ""), ("config", "configuration", ""),
           ("step_s", "s / step", ".3f"), ("speedup", "x plain", ".3f"), ("first_s", "first step s", ".1f"),
           ("peak_gb", "peak GiB", ".1f"), ("finite", "finite", "")]


def _configs(patches, spec: core_models.ModelSpec):
    attention, int8, norms, tiled = patches.attention, patches.int8, patches.fused_norms, patches.tiled_model
    _, _, height, width = spec.latent
    one_tile = tiled.TilingSettings(tile=(height, width), overlap=min(4, min(height, width) - 1))

    def sagesla(m):
        return attention.apply_attention_backend(m, "sagesla", topk=0.1)

    return [
        ("plain (core SDPA)", lambda m: m),
        ("TurboTiledModel, 1 tile", lambda m: tiled.apply_tiling(m, one_tile)),
        ("sage", lambda m: attention.apply_attention_backend(m, "sage")),
        ("sagesla topk 0.1", sagesla),
        ("sagesla + INT8", lambda m: int8.quantize_model(sagesla(m), "all", "per_channel")),
        ("sagesla + INT8 + fused norms",
         lambda m: norms.apply_fused_norms(int8.quantize_model(sagesla(m), "all", "per_channel"))),
    ]


def _fits(ctx: Context, spec: core_models.ModelSpec) -> str | None:
    """None when weights (bf16) + an INT8 copy + ~16 GiB of activations fit the free GPU memory."""
    if not ctx.cuda:
        return None
    free, _ = torch.cuda.mem_get_info(ctx.device)
    need = spec.params_b * 1e9 * 3 + 16 * 2 ** 30
    return None if free > need else f"needs ~{need / 2 ** 30:.0f} GiB, {free / 2 ** 30:.0f} GiB free"


def _run_config(core, part: Part, spec, base, name: str, make, plain_step: float | None, steps: int, ctx: Context):
    patched = make(base)
    timing = core_models.sample_steps(core, patched, spec, steps, ctx.device)
    del patched
    core_models.release(core)
    speedup = plain_step / timing.step_s if plain_step and timing.step_s else None
    part.add(model=spec.name, tokens=spec.tokens, config=name, step_s=timing.step_s, speedup=speedup,
             first_s=timing.first_s, peak_gb=timing.peak_gb, finite=timing.finite)
    if not timing.finite:
        part.note(f"{spec.name} / {name}: the output holds inf or NaN", failure=True)
    return timing


def _run_model(core, part: Part, spec, ctx: Context, guard: Guard, steps: int, dtype) -> None:
    base = core_models.build(core, spec, ctx.device, dtype)
    plain_step = None
    for name, make in _configs(core.patches, spec):
        if not guard.allows():
            part.note(f"time guard: {spec.name} / {name} and later configurations not run", failure=True)
            break
        try:
            timing = _run_config(core, part, spec, base, name, make, plain_step, steps, ctx)
            plain_step = timing.step_s if name.startswith("plain") else plain_step
        except Exception as error:  # one configuration failing must not hide the others
            core_models.release(core)
            part.note(f"{spec.name} / {name}: {type(error).__name__}: {error}", failure=True)
    del base
    core_models.release(core)


def run(ctx: Context, guard: Guard, core) -> Part:
    part = Part(f"3. model steps through core ComfyUI {core.version} (random weights, Euler, cfg 1)", COLUMNS)
    steps, dtype = (2, torch.float32) if ctx.smoke else (3, torch.bfloat16)
    for spec in core_models.model_specs(ctx.smoke):
        reason = _fits(ctx, spec)
        if reason is not None:
            part.note(f"{spec.name}: skipped, {reason}")
            continue
        if not guard.allows():
            part.note(f"time guard: {spec.name} not run", failure=True)
            continue
        try:
            _run_model(core, part, spec, ctx, guard, steps, dtype)
        except Exception as error:  # building the model failed: say so, go on with the next
            core_models.release(core)
            part.note(f"{spec.name}: {type(error).__name__}: {error}", failure=True)
    part.seconds = guard.elapsed()
    return part
