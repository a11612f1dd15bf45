"""Queue-time checks of the INT8 file nodes (issue 18), apart from int8_nodes.py: the save prefix and the
files TurboLoadQuantized lists and opens."""
from __future__ import annotations

import folder_paths

from ..models.checkpoint_files import SAFETENSORS_SUFFIXES, unreadable
from ..patches.model_files import QUANTIZED_ROLE

MODEL_FOLDER = "diffusion_models"


def quantized_files() -> list[str]:
    """The .safetensors files of models/diffusion_models (INT8 files are safetensors; .pth are TurboWan's)."""
    names = folder_paths.get_filename_list(MODEL_FOLDER)
    return [name for name in names if name.lower().endswith(SAFETENSORS_SUFFIXES)]


def check_quantized_file(unet_name: str | None) -> str | None:
    if unet_name is None:
        return None
    if unet_name not in quantized_files():
        extra = " (.pth files are TurboWan checkpoints: load them with TurboWanLoader)" \
            if unet_name.lower().endswith((".pth", ".pt")) else ""
        return (f"unet_name: '{unet_name}' is not a .safetensors file in models/{MODEL_FOLDER}{extra}; put the INT8 "
                "file there and refresh")
    return unreadable(folder_paths.get_full_path_or_raise(MODEL_FOLDER, unet_name), QUANTIZED_ROLE)


def check_save_prefix(prefix: str | None, raise_error: bool = False) -> str | None:
    """An empty prefix, or one whose file name part is empty or hidden, is refused (a hidden or nameless file)."""
    if prefix is None:
        return None
    name = prefix.replace("\\", "/").rstrip().split("/")[-1]
    problem = None
    if not name.strip():
        problem = (f"filename_prefix: '{prefix}' has no file name; give one, e.g. "
                   "'diffusion_models/turbo_int8'")
    elif name.startswith("."):
        problem = f"filename_prefix: '{prefix}' would write a hidden file; drop the leading '.' of '{name}'"
    if problem and raise_error:
        raise ValueError(problem)
    return problem
