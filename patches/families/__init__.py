"""Model-family knowledge in one place: every patch asks here instead of testing classes itself.

family_of(model) -> Family of a MODEL (ModelPatcher); family_of_config(config) -> Family of a detected
checkpoint config; require(model, capability, input_name) -> Family or a clear ValueError;
vae_family(vae) -> VAEFamily of a comfy.sd.VAE. Adding a family = one module here + one line below.
"""
from __future__ import annotations

from .. import core_compat
from . import ltx2, ltxv, seedvr2, wan
from .family import (  # noqa: F401
    ATTENTION,
    CHECKPOINTING,
    DIT_LOADER,
    INT8,
    LR_FEATURES,
    STEP_SIZE,
    TILING,
    VSR,
    Family,
    TilingRules,
    VAEFamily,
)

FAMILIES: tuple[Family, ...] = (ltxv.FAMILY, ltx2.FAMILY, wan.FAMILY, seedvr2.FAMILY)
VAE_FAMILIES: tuple[VAEFamily, ...] = (ltxv.VAE, wan.VAE, seedvr2.VAE)


def _by_lineage(lineage: list[str], attribute: str) -> Family | None:
    for name in lineage:  # most derived first: LTXAV's config subclasses LTXV's
        for family in FAMILIES:
            if name in getattr(family, attribute):
                return family
    return None


def family_of(model) -> Family | None:
    """The Family of a MODEL (ModelPatcher) or of a BaseModel, None when the pack does not know it."""
    base_model = getattr(model, "model", model)
    return _by_lineage(core_compat.core_lineage(base_model, "comfy.model_base"), "model_classes")


def family_of_config(config) -> Family | None:
    """The Family of a comfy.supported_models config (what model_detection made of a checkpoint)."""
    if config is None:
        return None
    return _by_lineage(core_compat.core_lineage(config, "comfy.supported_models"), "config_classes")


def supporting(capability: str) -> list[Family]:
    return [family for family in FAMILIES if capability in family.capabilities]


def describe(model) -> str:
    family = family_of(model)
    base_model = getattr(model, "model", model)
    return family.name if family is not None else f"a {type(base_model).__name__} model"


def require(model, capability: str, input_name: str = "model") -> Family:
    """The model's Family if the pack's `capability` supports it, else a ValueError naming the fix."""
    family = family_of(model)
    if family is not None and capability in family.capabilities:
        return family
    names = ", ".join(f.name for f in supporting(capability))
    raise ValueError(f"{input_name}: {capability} does not support {describe(model)}; connect one of: {names}")


def tiling_rules(model) -> TilingRules | None:
    """What TurboTiledModel must respect on this MODEL's family (None: any latent cell will do)."""
    family = family_of(model)
    return family.tiling if family is not None else None


def vae_family(vae) -> VAEFamily | None:
    """The VAEFamily of a comfy.sd.VAE's first-stage model, None when the pack has no rules for it."""
    package = core_compat.core_package(vae.first_stage_model)
    return next((f for f in VAE_FAMILIES if f.core_package == package), None)
