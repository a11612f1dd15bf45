"""Model files (DiTs, INT8 files) read through core's own loader, with the pack's file checks around it.

Before: the safetensors header is opened by models/checkpoint_files (an empty, truncated or wrong-kind
file is named, with what the input needs). After: a TurboWan file is sent to TurboWanLoader, and every
weight must be a float (or int8 in the INT8 format) with finite values.
"""
from __future__ import annotations

import comfy.utils
import torch

from ..models import checkpoint_files as files
from ..models import turbowan

MODEL_DTYPES = (*files.FLOAT_DTYPES, torch.int8)
QUANTIZED_ROLE = files.FileRole("unet_name", "an INT8 diffusion model", "(a .safetensors written by "
                                "TurboSaveQuantized, docs/int8.md; TurboWan files load with TurboWanLoader)")


def check_model_weights(state: dict, at: str) -> None:
    """Every weight a float (or int8 in the INT8 format) with finite values; `at` names the file."""
    files.check_tensors(state, at, MODEL_DTYPES)


def load_model_file(path, role: files.FileRole, check_weights: bool = True) -> tuple[dict, dict]:
    """(state dict, metadata) of a diffusion-model .safetensors chosen in `role.input_name`, checked
    (check_weights=False: the caller checks the weights it uses, e.g. a bundle's DiT part)."""
    with files.open_safetensors(path, role):
        pass  # the header is whole: core's loader below reads a file that opens
    state, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    at = files.where(path, role.input_name)
    if turbowan.is_turbowan(state):
        raise files.CheckpointFileError(f"{at} is a TurboWan checkpoint (TurboDiffusion's layout, a Linear "
                                        f"patch_embedding); {role.input_name} needs {role.what}. Load it with "
                                        "TurboWanLoader")
    if check_weights:
        check_model_weights(state, at)
    return state, metadata or {}
