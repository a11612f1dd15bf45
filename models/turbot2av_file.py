"""Opening a model file for TurboT2AVLoader with errors that say what is wrong and what to do.

`.pth` / `.pt` are read with torch.load(weights_only=True) only, memory-mapped where the file allows it
(a 19B student is not read into RAM first): a pickle that holds code or other Python objects is refused
and nothing in it runs. `.safetensors` are read with safetensors. All opening goes through `read`, so a
shared model-file helper can take its place in one spot.
"""
from __future__ import annotations

import pathlib
import pickle

import torch
from safetensors import SafetensorError, safe_open

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
REFUSED = "Weights only load failed"


class ModelFileError(ValueError):
    """A file that cannot be opened as tensors; the message names the input and the fix."""


def _detail(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line or
             line.strip().startswith("Unsupported")]
    return (lines[-1] if lines else str(error).splitlines()[0] if str(error) else type(error).__name__)[:200]


def _torch_load(path: pathlib.Path, mmap: bool):
    return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def read_pickle(path: pathlib.Path, name: str, input_name: str):
    """torch.load(weights_only=True), memory-mapped when the file is a zip-format torch.save."""
    try:
        try:
            return _torch_load(path, mmap=True)
        except RuntimeError as error:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(error):
                raise
            return _torch_load(path, mmap=False)
    except pickle.UnpicklingError as error:
        if REFUSED not in str(error):
            raise ModelFileError(f"{input_name}: '{name}' is not a PyTorch checkpoint ({_detail(error)})") from None
        raise ModelFileError(
            f"{input_name}: '{name}' holds Python objects or code besides tensors, so it was refused and nothing in "
            f"it was run (only plain tensors are read, with torch.load(weights_only=True)). Use the original "
            f"released file. Details: {_detail(error)}") from None
    except (RuntimeError, EOFError) as error:
        raise ModelFileError(
            f"{input_name}: '{name}' is truncated or damaged ({_detail(error)}); re-download it") from None


def check_safetensors(path, name: str, input_name: str) -> None:
    try:
        with safe_open(str(path), framework="pt") as file:
            file.metadata()
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{input_name}: '{name}' is truncated or not a safetensors file ({error}); "
                             "re-download it") from None


def read_safetensors(path, name: str, input_name: str) -> tuple[dict, dict]:
    check_safetensors(path, name, input_name)
    with safe_open(str(path), framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, file.metadata() or {}


def read(path, name: str, input_name: str):
    """(loaded object, safetensors metadata or {}) of a .pth / .pt / .safetensors file."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, name, input_name)
    if path.suffix not in TORCH_SUFFIXES:
        raise ModelFileError(f"{input_name}: '{name}' is neither a .pth nor a .safetensors file")
    return read_pickle(path, name, input_name), {}
