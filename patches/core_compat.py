"""The few places where the pack reaches into ComfyUI core internals, each named here and tested.

Everything else in the pack goes through core's public hooks (ModelPatcher wrappers and patches,
transformer_options, comfy.sd loaders). When core changes one of the things below, the test of that
reach (tests/host/test_core_compat_host.py) fails with CoreChanged naming what moved, instead of a
patch failing somewhere deep inside sampling.
"""
from __future__ import annotations

import inspect


class CoreChanged(RuntimeError):
    """ComfyUI core no longer looks the way one of the pack's named reaches expects."""


# --- positional arguments of the functions our wrappers sit around ------------------------------------

# comfy.model_base.BaseModel.apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
# the APPLY_MODEL wrapper's executor receives these positionally
APPLY_MODEL_OPTIONS_INDEX = 5
# comfy.ldm.lightricks.model.LTXBaseModel.forward(x, timestep, context, attention_mask, frame_rate,
# transformer_options, ...): the DIFFUSION_MODEL wrapper's executor receives these positionally
LTX_FORWARD_OPTIONS_INDEX = 5


# the cond core's sampler adds for a nested (multi-stream) latent, e.g. LTX-2 audio-video: x reaches
# apply_model packed as [B, 1, N] (comfy.utils.pack_latents) and `latent_shapes` lists each stream's shape
LATENT_SHAPES_COND = "latent_shapes"


def positional_options(args: tuple, kwargs: dict, index: int) -> dict:
    """transformer_options of a wrapped call, wherever the caller put it."""
    if len(args) > index:
        return args[index] or {}
    return kwargs.get("transformer_options") or {}


def with_positional_options(args: tuple, kwargs: dict, index: int, options: dict) -> tuple[tuple, dict]:
    """(args, kwargs) of a wrapped call with its transformer_options replaced."""
    if len(args) > index:
        return args[:index] + (options,) + args[index + 1:], kwargs
    return args, {**kwargs, "transformer_options": options}


def check_parameter(function, index: int, name: str, where: str) -> None:
    """Raises CoreChanged unless `function`'s positional parameter `index` (after self) is `name`."""
    names = [p.name for p in inspect.signature(function).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    if len(names) <= index or names[index] != name:
        raise CoreChanged(f"{where}: the pack expects positional parameter {index} to be '{name}', core now has "
                          f"{names}; update the index in patches/core_compat.py")


# --- which core family a module belongs to -------------------------------------------------------------

def core_package(obj) -> str | None:
    """'lightricks' for an object whose class core defines in comfy.ldm.lightricks.*, etc.; None outside comfy.ldm."""
    parts = type(obj).__module__.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["comfy", "ldm"] else None


def core_lineage(obj_or_class, core_module: str) -> list[str]:
    """Names of the classes in the MRO that `core_module` (e.g. 'comfy.model_base') defines, most derived first."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return [c.__name__ for c in cls.__mro__ if c.__module__ == core_module]


# --- core's block wrapper -----------------------------------------------------------------------------

def run_original_block(args: dict, extra: dict):
    """The block a block-replace patch stands in for. Core builds `extra["original_block"]` as a closure over
    its loop variable: call it during the patch only (a later call, e.g. a gradient-checkpoint recompute,
    would run the LAST block)."""
    return extra["original_block"](args)


# --- checkpoint detection -------------------------------------------------------------------------------

def detect_diffusion_config(state_dict: dict, metadata: dict | None):
    """The comfy.supported_models config core's UNETLoader would pick for a bare DiT state dict (or None),
    through the same two model_detection calls comfy.sd.load_diffusion_model_state_dict makes."""
    import comfy.model_detection

    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    prefix = prefix if any(key.startswith(prefix) for key in state_dict) else ""
    return comfy.model_detection.model_config_from_unet(state_dict, prefix, metadata=metadata)


# --- where LTX-2's text connectors live -----------------------------------------------------------------

def ltxav_dit_has_text_connectors() -> bool:
    """True where core's LTXAV DiT runs the two text connectors itself (preprocess_text_embeds, core 0.15+:
    the checkpoint's model.diffusion_model.*_embeddings_connector.* keys load into the DiT); False where the
    LTX-2 text encoder owns them (core 0.8.0: the DiT would report those keys as unexpected)."""
    from comfy.ldm.lightricks.av_model import LTXAVModel

    return callable(getattr(LTXAVModel, "preprocess_text_embeds", None))
