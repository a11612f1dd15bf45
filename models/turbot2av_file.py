"""Opening a model file for TurboT2AVLoader: the pack's one way to open files (models/checkpoint_files.py).

`.pth` / `.pt` are read with torch.load(weights_only=True) only, memory-mapped where the file allows it
(a 19B student is not read into RAM first): a pickle that holds code or other Python objects is refused
and nothing in it runs. `.safetensors` open with their header checked. Errors name the input, the file,
what it is and what the input needs.
"""
from __future__ import annotations

import pathlib

from .checkpoint_files import (
    PICKLE_SUFFIXES,
    CheckpointFileError,
    FileRole,
    file_error,
    open_safetensors,
    read_pickle_weights,
)
from .checkpoint_files import read_safetensors as _read_safetensors

TORCH_SUFFIXES = PICKLE_SUFFIXES
WHAT = {"student": ("TurboT2AV's model.pth", "(the released file, or the .safetensors tools/convert_turbot2av.py "
                                             "makes of it; re-download it if it is damaged)"),
        "base_checkpoint": ("the LTX-2 19B checkpoint", "(ltx-2-19b-dev*.safetensors; re-download it if it is "
                                                        "damaged)")}


class ModelFileError(CheckpointFileError):
    """A file that cannot be opened as tensors; the message names the input and the fix."""


def role(input_name: str) -> FileRole:
    what, load_with = WHAT.get(input_name, ("a model file", "(re-download it if it is damaged)"))
    return FileRole(input_name, what, load_with)


def _as_model_error(call, *args):
    try:
        return call(*args)
    except CheckpointFileError as error:
        raise ModelFileError(str(error)) from None


def read_pickle(path: pathlib.Path, name: str, input_name: str):
    """torch.load(weights_only=True), memory-mapped when the file is a zip-format torch.save."""
    return _as_model_error(read_pickle_weights, path, role(input_name))


def check_safetensors(path, name: str, input_name: str) -> None:
    def check():
        with open_safetensors(path, role(input_name)):
            pass

    _as_model_error(check)


def read_safetensors(path, name: str, input_name: str) -> tuple[dict, dict]:
    return _as_model_error(_read_safetensors, path, role(input_name))


def read(path, name: str, input_name: str):
    """(loaded object, safetensors metadata or {}) of a .pth / .pt / .safetensors file."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, name, input_name)
    if path.suffix not in TORCH_SUFFIXES:
        raise ModelFileError(str(file_error(role(input_name), path, f"a '{path.suffix}' file, neither a .pth nor "
                                                                      "a .safetensors")))
    return read_pickle(path, name, input_name), {}
