"""Fused norms on a MODEL: every RMSNorm / LayerNorm of the diffusion model calls kernels/norms.py.

How, without touching the shared diffusion_model: `m = model.clone()` and one object patch per
norm module, whose value is a *view* of the original module: an instance of a subclass of the
module's own class that shares the original's attribute dictionaries (parameters, buffers,
children). So weight keys, LoRA weight patches and isinstance checks see the same module; only
forward differs. While ComfyUI casts weights on the fly (offloading, lowvram LoRA) the view runs
the original forward, which does that casting. Norms computed outside modules (LTX-Video's
block norms are a function call) are not reached.
"""
import functools
import logging

import torch
from torch import nn

from ..kernels import norms
from . import finite_guard

NORM_TYPES = (nn.LayerNorm, nn.RMSNorm)


@functools.cache
def _view_class(mixin: type, base: type) -> type:
    return type(f"{mixin.__name__}{base.__name__}", (mixin, base), {"turbo_view_of": base})


def module_view(module: nn.Module, mixin: type) -> nn.Module:
    """A module of class (mixin, type(module)) sharing module's parameters, buffers and children."""
    base = type(module)
    while hasattr(base, "turbo_view_of"):  # a view of a view: take the plain class
        base = base.turbo_view_of
    view = object.__new__(_view_class(mixin, base))
    view.__dict__.update(module.__dict__)
    return view


def _casts_weights(module) -> bool:
    return bool(getattr(module, "comfy_cast_weights", False) or getattr(module, "weight_function", None)
                or getattr(module, "bias_function", None))


class FusedRMSNorm:
    def forward(self, x):
        if _casts_weights(self):
            return super().forward(x)
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        return norms.rms_norm(x, self.weight, eps)


class FusedLayerNorm:
    def forward(self, x):
        if _casts_weights(self):
            return super().forward(x)
        return norms.layer_norm(x, self.weight, self.bias, self.eps)


def _fusable(module) -> bool:
    return isinstance(module, NORM_TYPES) and len(module.normalized_shape) == 1


def fused_view(module: nn.Module) -> nn.Module:
    mixin = FusedRMSNorm if isinstance(module, nn.RMSNorm) else FusedLayerNorm
    return module_view(module, mixin)


def apply_fused_norms(model):
    """A clone of `model` whose RMSNorm / LayerNorm modules run the fused norm kernels."""
    patched = model.clone()
    diffusion_model = patched.get_model_object("diffusion_model")
    paths = [f"diffusion_model.{name}" for name, module in diffusion_model.named_modules() if _fusable(module)]
    if not paths:
        raise ValueError(f"model: {type(diffusion_model).__name__} has no RMSNorm or LayerNorm modules to fuse; "
                         "connect an LTX-Video or Wan model, or leave TurboFusedNorms out")
    for path in paths:
        current = patched.get_model_object(path)
        if not isinstance(current, (FusedRMSNorm, FusedLayerNorm)):
            patched.add_object_patch(path, fused_view(current))
    logging.info("TurboFusedNorms: %d norm modules use the fused kernels", len(paths))
    return finite_guard.guard(patched, "TurboFusedNorms")
