"""The pack's own model folder: ComfyUI/models/turbovideo holds adapters (step-size embedder,
fusion blocks, VSR conditioner) that load beside a standard LTX-Video or Wan checkpoint."""
import os

import folder_paths

ADAPTER_FOLDER = "turbovideo"
ADAPTER_EXTENSIONS = {".safetensors"}


def register_adapter_folder():
    if ADAPTER_FOLDER in folder_paths.folder_names_and_paths:
        return
    path = os.path.join(folder_paths.models_dir, ADAPTER_FOLDER)
    folder_paths.folder_names_and_paths[ADAPTER_FOLDER] = ([path], ADAPTER_EXTENSIONS)


def adapter_files():
    return folder_paths.get_filename_list(ADAPTER_FOLDER)


def adapter_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise(ADAPTER_FOLDER, name)
