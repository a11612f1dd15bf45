"""TurboQuantizeINT8's work: which Linears of a MODEL (asked of patches/families), and their INT8 copies.

Per-channel INT8 on a core with the native INT8 layout becomes core's own INT8 Linear (native.py: LoRA,
lowvram and requantization are core's, the GEMM the faster of core's and the pack's); on ComfyUI 0.8, and
for 128x128 blocks everywhere, the pack's Int8Linear (layer.py). Each is an object patch on a clone: the
loader's float model is never modified.
"""
from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch

from ...kernels import int8 as int8_kernels
from ...kernels.int8_reference import GRANULARITIES
from .. import core_compat, families
from . import native
from .layer import Int8Linear
from .selection import LAYER_CHOICES, wanted

BACKENDS = native.BACKENDS


def select_linears(model, layers: str = "all") -> list[str]:
    """Object-patch paths (diffusion_model.<blocks>.N....) of the Linears to quantize."""
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}; got {layers!r}")
    family = families.require(model, families.INT8)
    root = model.get_model_object(f"diffusion_model.{family.blocks}")
    return [f"diffusion_model.{family.blocks}.{name}" for name, module in root.named_modules()
            if (isinstance(module, torch.nn.Linear) or is_quantized(module))
            and wanted(name.partition(".")[2], layers, family.attention_modules, family.feed_forward_modules)]


def is_quantized(module) -> bool:
    return (isinstance(module, Int8Linear) and module.is_int8) or core_compat.is_native_int8(module)


def _compute_dtype(model, linear) -> torch.dtype:
    dtype = model.model.manual_cast_dtype or linear.weight.dtype
    return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float32


def int8_copy(model, linear, granularity: str, backend: str):
    """The INT8 layer that stands in for `linear` (see the module docstring)."""
    if granularity == "per_channel" and native.available():
        return native.view(native.native_linear(linear, _compute_dtype(model, linear)), backend)
    if backend == "core":
        raise ValueError("backend: 'core' runs ComfyUI's own INT8 GEMM, which exists for per_channel layers on "
                         "a ComfyUI with native INT8 (0.27+); pick auto or one of " + str(int8_kernels.BACKENDS))
    return Int8Linear.from_linear(linear, granularity, backend)


def quantize_model(model, layers: str = "all", granularity: str = "per_channel", backend: str = "auto"):
    """A clone of `model` whose chosen block Linears are INT8 object patches."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    paths = select_linears(model, layers)
    if not paths:
        raise ValueError(f"model: no Linear layers ({layers}) in its transformer blocks to quantize")
    patched = model.clone()
    progress = comfy.utils.ProgressBar(len(paths))
    for path in paths:
        comfy.model_management.throw_exception_if_processing_interrupted()
        linear = patched.get_model_object(path)
        if is_quantized(linear):
            raise ValueError(f"model: {path} is already INT8; connect the MODEL from the loader "
                             "instead of quantizing twice")
        patched.add_object_patch(path, int8_copy(model, linear, granularity, backend))
        progress.update(1)
    return patched
