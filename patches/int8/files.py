"""INT8 files: TurboSaveQuantized writes them, TurboLoadQuantized and TurboDiTLoader read them.

Written: models/int8_format's version 2 (per-channel layers in core's native INT8 layout, block layers
tagged so that every core loader refuses them), LoRA patches baked in, atomically (a temporary name in
the same folder, then a rename). Read: that format, native INT8 files of other tools (per-channel or
per-tensor scales), the pack's version-1 files and TurboDiffusion's -quant layout. On a core with
native INT8 and no block layers in the file, the MODEL is core's own load of it (native.py, with the
pack's GEMM where faster); otherwise the pack's Int8Linear layers (layer.py) through custom_operations.
"""
from __future__ import annotations

import os

import comfy.model_management
import comfy.sd
import comfy.utils
import torch

from ...models import int8_format
from . import native
from .layer import Int8Ops


def quantized_state_dict(model) -> dict:
    """The diffusion model's state dict (file format) with the INT8 layers and any LoRA patches applied."""
    comfy.model_management.load_models_gpu([model], force_patch_weights=True, force_full_load=True)
    state = model.model.diffusion_model.state_dict()
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


def save_atomic(state: dict, path: str, metadata: dict):
    """Write the safetensors file under a temporary name beside `path`, then rename it into place."""
    temporary = f"{path}.partial"
    try:
        comfy.utils.save_torch_file(state, temporary, metadata=metadata)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_quantized(model, path: str) -> int:
    """Write the MODEL's diffusion model as an INT8 file; returns the INT8 layer count."""
    state = quantized_state_dict(model)
    kinds = int8_format.layer_kinds(state)
    if not kinds:
        raise ValueError("model: has no INT8 layers; connect the MODEL from TurboQuantizeINT8")
    meta = int8_format.metadata(model.model.get_dtype(), int8_format.granularity(kinds))
    save_atomic(state, path, meta)
    return len(kinds)


def _load(state_dict: dict, options: dict, metadata: dict | None):
    model = comfy.sd.load_diffusion_model_state_dict(state_dict, model_options=options, metadata=metadata)
    if model is None:
        raise ValueError("the INT8 file's model type was not recognised (expected an LTX-Video or Wan DiT)")
    return model


def load_quantized(state_dict: dict, metadata: dict | None = None, dtype: torch.dtype | None = None,
                   backend: str = "auto"):
    """A MODEL from an INT8 state dict in any of the layouts above. dtype: the float dtype of the non-INT8
    weights (None: from the file's metadata, else the file's own float dtype; core decides on the native path)."""
    if int8_format.is_turbodiffusion_quant(state_dict):
        state_dict = int8_format.from_turbodiffusion_quant(state_dict)
    kinds = int8_format.layer_kinds(state_dict)
    if not kinds:
        raise ValueError("the file holds no INT8 layers (no '.weight_scale' entries); load it with the "
                         "core UNETLoader, or quantize it with TurboQuantizeINT8 and TurboSaveQuantized")
    if native.available() and int8_format.BLOCK128 not in kinds.values():
        options = {} if dtype is None else {"dtype": dtype}
        return native.accelerate(_load(int8_format.native_state(state_dict), options, metadata), backend)
    dtype = dtype or int8_format.compute_dtype(metadata) or int8_format.float_dtype(state_dict)
    options = {"custom_operations": Int8Ops, **({} if dtype is None else {"dtype": dtype})}
    return _load(int8_format.internal_state(state_dict), options, metadata)


def load_quantized_file(path: str):
    """A MODEL from an INT8 .safetensors file."""
    state, meta = comfy.utils.load_torch_file(path, safe_load=True, return_metadata=True)
    return load_quantized(state, meta)
