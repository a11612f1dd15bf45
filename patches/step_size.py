"""Step-size conditioning: a StepSizeEmbedder added to the time embedding of an LTX-Video or Wan MODEL.

How it is installed, without touching the shared diffusion_model:
- `m = model.clone()`, then an object patch replaces the time-embedding module (LTX-Video:
  diffusion_model.adaln_single.emb, whose (N, width) output feeds adaln_single.linear; Wan:
  diffusion_model.time_embedding, whose output e feeds time_projection) with StepSizeTimeEmbedding,
  which returns original(...) + embedder(log2(1/d)) broadcast over the last dim. ComfyUI swaps it in
  while m is loaded and restores the original module on unload.
- The step size d reaches the module through an APPLY_MODEL wrapper that reads
  transformer_options["turbo_step_size"] (set every step by TurboShortcutSampler) for the duration
  of one model call. Without it (any other sampler) nothing is added: the model behaves exactly as
  without the adapter.
- The wrapper re-registers the original module's children under their own names, so the weight
  keys of the time embedding (LoRA, weight patches, offloading) stay where ComfyUI looks for them.
- The embedder's Linear layers are submodules, so ComfyUI moves them with the model; they keep
  float32 weights and the sum is taken in the time embedding's own dtype and device.
"""
from __future__ import annotations

import comfy.patcher_extension
import torch
from torch import nn

from ..models.step_embedder import StepSizeEmbedder
from ..samplers.shortcut import step_size_to_dt_base
from . import core_compat, families, finite_guard
from .ksamplers import STEP_EMBEDDER_KEY, STEP_SIZE_KEY

WRAPPER_KEY = "turbovideo_step_size"
EMBEDDER_NAME = "turbo_step_embedder"  # the embedder's submodule name inside the wrapper module


class StepSizeTimeEmbedding(nn.Module):
    """original(...) + embedder(dt_base of the current step); adds nothing while step_size is None."""

    def __init__(self, original: nn.Module, embedder: StepSizeEmbedder):
        super().__init__()
        self.__dict__["original"] = original  # not a submodule: its children are registered below
        for name, child in original.named_children():
            self.add_module(name, child)
        self.add_module(EMBEDDER_NAME, embedder)
        self.step_size: float | None = None

    @property
    def embedder(self) -> StepSizeEmbedder:
        return self._modules[EMBEDDER_NAME]

    def forward(self, *args, **kwargs):
        out = self.original(*args, **kwargs)
        if self.step_size is None:
            return out
        dt_base = torch.tensor([step_size_to_dt_base(self.step_size)], dtype=torch.float32)
        step_embedding = self.embedder(dt_base)[0]
        return out + step_embedding.to(device=out.device, dtype=out.dtype)


def model_family(model) -> families.Family:
    return families.require(model, families.STEP_SIZE)


def model_width(model, family: families.Family) -> int:
    return family.width_of(model.get_model_object("diffusion_model"))


def _step_size_wrapper(module: StepSizeTimeEmbedding):
    def apply_model(executor, *args, **kwargs):
        options = core_compat.positional_options(args, kwargs, core_compat.APPLY_MODEL_OPTIONS_INDEX)
        module.step_size = options.get(STEP_SIZE_KEY)
        try:
            return executor(*args, **kwargs)
        finally:
            module.step_size = None

    return apply_model


def check_adapter_fits(model, width: int, file_name: str) -> families.Family:
    family = model_family(model)
    model_dim = model_width(model, family)
    if width != model_dim:
        raise ValueError(f"adapter: {file_name} is a step-size adapter for width {width}, but this "
                         f"{family.name} model has width {model_dim}; pick an adapter trained for this model")
    if STEP_EMBEDDER_KEY in model.model_options.get("transformer_options", {}):
        raise ValueError("model: already has a step-size adapter (TurboShortcutModel); connect the MODEL "
                         "from the loader instead of chaining a second TurboShortcutModel")
    return family


def apply_step_embedder(model, embedder: StepSizeEmbedder, trained_step_sizes, file_name: str):
    """A clone of `model` whose time embedding also embeds the current step size."""
    family = check_adapter_fits(model, embedder.width, file_name)
    patched = model.clone()
    module = StepSizeTimeEmbedding(patched.get_model_object(family.time_embedding), embedder)
    patched.add_object_patch(family.time_embedding, module)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                                 _step_size_wrapper(module))
    options = patched.model_options.setdefault("transformer_options", {})
    options[STEP_EMBEDDER_KEY] = {"trained_step_sizes": [float(s) for s in trained_step_sizes],
                                  "file": file_name}
    return finite_guard.guard(patched, f"the step-size adapter '{file_name}'")
