"""Stops sampling at the first model call that returns NaN or infinite values, naming the step and the cause.

Every MODEL the pack patches or loads carries one APPLY_MODEL wrapper (GUARD_KEY, added once) that checks
the output of each model call, and a list of the pack's patches on it (NOTES_KEY in transformer_options),
which the error names as the likely causes. The step comes from core's transformer_options: `sigmas`
(this call's sigma) within `sample_sigmas` (the run's schedule). One check per model call: one device
sync, nothing next to a DiT forward.
"""
from __future__ import annotations

import comfy.patcher_extension
import torch

from ..models.checkpoint_files import all_finite
from ..samplers.step_checks import NonFiniteModelOutput, describe_step
from . import core_compat

GUARD_KEY = "turbovideo_finite_guard"
NOTES_KEY = "turbovideo_patches"
APPLY_MODEL = comfy.patcher_extension.WrappersMP.APPLY_MODEL


def _step(options: dict) -> str:
    sigmas, schedule = options.get("sigmas"), options.get("sample_sigmas")
    if not isinstance(sigmas, torch.Tensor):
        return "a model call"
    sigma = float(sigmas.reshape(-1)[0])
    if not isinstance(schedule, torch.Tensor) or schedule.numel() < 2:
        return f"the model call at sigma {sigma:.4g}"
    index = int((schedule[:-1].float().cpu() - sigma).abs().argmin())
    return describe_step(index, schedule.numel() - 1, sigma)


def _message(x: torch.Tensor, options: dict) -> str:
    where = _step(options)
    if not all_finite(x):
        return (f"sampling stopped at {where}: the latent going into the model already held NaN or infinite "
                "values; the input latent (or the node that made it) is the cause, not the model")
    notes = list(options.get(NOTES_KEY, ()))
    patches = f"this MODEL carries {', '.join(notes)}; take them out one at a time to find it, " if notes else ""
    return (f"sampling stopped at {where}: the model returned NaN or infinite values from a finite latent. "
            f"Likely causes: {patches}fp16 overflow (load the model with weight_dtype default or bf16), a LoRA "
            "or adapter with damaged weights")


def _guard(executor, *args, **kwargs):
    out = executor(*args, **kwargs)
    if isinstance(out, torch.Tensor) and not all_finite(out):
        options = core_compat.positional_options(args, kwargs, core_compat.APPLY_MODEL_OPTIONS_INDEX)
        raise NonFiniteModelOutput(_message(args[0], options))
    return out


def guard(model, note: str | None = None):
    """`model` (a ModelPatcher the caller owns: a fresh clone) with the guard installed and `note` listed among
    its patches; returns it."""
    if not model.get_wrappers(APPLY_MODEL, GUARD_KEY):
        model.add_wrapper_with_key(APPLY_MODEL, GUARD_KEY, _guard)
    if note:
        options = model.model_options.setdefault("transformer_options", {})
        options[NOTES_KEY] = (*options.get(NOTES_KEY, ()), note)
    return model
