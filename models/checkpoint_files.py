"""The one way the pack opens model and adapter files, checks the tensors in them, and writes files.

Reading. A file is first identified by its first bytes (sniff): empty, safetensors, a PyTorch zip or
legacy pickle, GGUF, or something else. Safetensors files open with their header checked (an empty,
truncated or damaged file is named as such); .pth/.pt/.ckpt/.bin files load only through
torch.load(weights_only=True), so a pickle that needs Python code to load is refused and nothing in it
runs. Every error names the input, the file, what the file is, and what the input needs (FileRole).

Checking. check_tensors refuses non-float weights (int32 weights, say) and NaN / infinite values,
naming the tensor; it scans big tensors in slices so it never doubles their memory.

Writing. atomic_target / save_safetensors write to a hidden temporary name beside the target and
rename it into place once complete, so a crash or a full disk never leaves a truncated file under the
final name.

Pure: torch and safetensors only, no ComfyUI.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import pickle
import re
import uuid
from dataclasses import dataclass

import safetensors
import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                *(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name)))
SCAN_ELEMENTS = 1 << 24  # elements per slice of the finite-value scan


class CheckpointFileError(ValueError):
    """A file the pack cannot use; the message names the input, the file, what it is and the fix."""


@dataclass(frozen=True)
class FileRole:
    input_name: str  # the node input (or CLI argument) the file was chosen in
    what: str  # what the input needs, with an article: "a VSR conditioner"
    load_with: str  # what a right file is / comes from: "written by save_vsr_conditioner (docs/vsr.md)"


def sniff(path) -> str:
    """'missing', 'empty', 'safetensors', 'torch-zip', 'pickle', 'gguf' or 'unknown', from the first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return "missing"
    if not head:
        return "empty"
    if len(head) >= 9 and head[8:9] == b"{":  # little-endian header length, then the JSON header
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        return "pickle"
    return "unknown"


def _kind_words(kind: str, path) -> str:
    size = os.path.getsize(path) if kind != "missing" else 0
    return {
        "missing": "not there (no such file)",
        "empty": "an empty file (0 bytes: an interrupted download or save)",
        "safetensors": "a damaged safetensors file",
        "torch-zip": "a PyTorch checkpoint (torch.save zip)",
        "pickle": "a legacy PyTorch/Python pickle",
        "gguf": "a GGUF file (load it with a GGUF loader node)",
        "unknown": f"not a model file ({size} bytes that are neither safetensors nor a PyTorch checkpoint)",
    }[kind]


def where(path, input_name: str | None = None) -> str:
    """How errors name a file: "input: 'name'" when the input is known, else the path."""
    return f"{input_name}: '{pathlib.Path(path).name}'" if input_name else str(path)


def file_error(role: FileRole, path, found: str) -> CheckpointFileError:
    return CheckpointFileError(f"{where(path, role.input_name)} is {found}; {role.input_name} needs {role.what} "
                               f"{role.load_with}")


def _first_line_about(message: str, words: tuple[str, ...]) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return next((line for line in lines if any(word in line for word in words)), lines[-1] if lines else "")


@contextlib.contextmanager
def open_safetensors(path, role: FileRole):
    """safe_open of a safetensors file on the CPU, or a CheckpointFileError saying what the file is."""
    kind = sniff(path)
    if kind == "missing":
        raise FileNotFoundError(f"{where(path, role.input_name)}: no such file ({path}); refresh the node list")
    if kind != "safetensors":
        raise file_error(role, path, _kind_words(kind, path))
    try:
        handle = safetensors.safe_open(str(path), framework="pt", device="cpu")  # looked up per call: tools wrap it
    except Exception as error:  # safetensors' own SafetensorError: header too small, file not fully covered
        detail = _first_line_about(str(error), ("header", "covered", "metadata"))
        raise file_error(role, path, f"a truncated or damaged safetensors file ({detail})") from None
    with handle:
        yield handle


def read_safetensors(path, role: FileRole, keys=None) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file; `keys` limits which tensors are read."""
    with open_safetensors(path, role) as handle:
        names = list(handle.keys()) if keys is None else list(keys)
        return {key: handle.get_tensor(key) for key in names}, dict(handle.metadata() or {})


def _torch_load(path):
    try:  # memory-mapped: a 14B file is not read into RAM at once
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format


def _check_pickle_kind(path, role: FileRole) -> None:
    """Raises unless the first bytes are a PyTorch zip or pickle (what a .pth/.pt/.ckpt/.bin must be)."""
    kind = sniff(path)
    if kind in ("torch-zip", "pickle"):
        return
    if kind == "missing":
        raise FileNotFoundError(f"{where(path, role.input_name)}: no such file ({path}); refresh the node list")
    found = "a safetensors file named like a .pth (rename it to .safetensors)" if kind == "safetensors" else \
        _kind_words(kind, path)
    raise file_error(role, path, found)


def read_pickle_weights(path, role: FileRole):
    """What torch.load(weights_only=True) gives for a .pth; code in the pickle is refused, never run."""
    _check_pickle_kind(path, role)
    try:
        return _torch_load(path)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL [\w.]+", str(error))
        detail = f"it calls {found.group(0)[7:]}" if found else "it holds instructions a tensor file never has"
        raise file_error(role, path, "a pickle that needs Python code to load, so it was refused and nothing in it "
                                     f"ran ({detail}); only plain tensor files are read") from None
    except (EOFError, RuntimeError, OSError, ValueError) as error:
        detail = _first_line_about(str(error), ("zip", "archive", "read", "EOF")) or type(error).__name__
        raise file_error(role, path, f"a truncated or damaged PyTorch checkpoint ({detail})") from None


def read_weights(path, role: FileRole) -> tuple[dict, dict]:
    """(tensors, metadata) of a .safetensors/.sft or a weights-only .pth/.pt/.ckpt/.bin file."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return read_safetensors(path, role)
    if suffix not in PICKLE_SUFFIXES:
        raise file_error(role, path, f"a '{suffix}' file, which the pack does not read")
    loaded = read_pickle_weights(path, role)
    if isinstance(loaded, dict) and len(loaded) == 1 and isinstance(next(iter(loaded.values())), dict):
        loaded = next(iter(loaded.values()))  # {"state_dict": {...}} / {"model": {...}} wrappers
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise file_error(role, path, f"a PyTorch file holding {type(loaded).__name__}, not a state dict of tensors")
    return loaded, {}


def unreadable(path, role: FileRole) -> str | None:
    """Why the file cannot be read at all, from its first bytes or safetensors header (what a validation step
    can afford before the run), or None."""
    try:
        if pathlib.Path(path).suffix.lower() in SAFETENSORS_SUFFIXES:
            with open_safetensors(path, role):
                return None
        _check_pickle_kind(path, role)
        return None
    except (CheckpointFileError, FileNotFoundError) as error:
        return str(error)


def _slices(tensor: torch.Tensor):
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), SCAN_ELEMENTS):
        part = flat[start:start + SCAN_ELEMENTS]
        yield part.to(torch.float16) if part.element_size() == 1 else part  # float8: no kernels for it everywhere


def all_finite(tensor: torch.Tensor) -> bool:
    """True when a tensor holds no NaN or infinite value. The fast path is min/max per slice (NaN propagates
    through both, +-inf shows in one): about 30x faster than isfinite().all() on the CPU, no full-size temporary."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    for part in _slices(tensor):
        low, high = torch.aminmax(part)
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            return False
    return True


def non_finite_count(tensor: torch.Tensor) -> int:
    """NaN and infinite values in a float tensor (0 at the speed of all_finite; counted only when there are any)."""
    if all_finite(tensor):
        return 0
    return sum(int(part.numel() - torch.isfinite(part).sum()) for part in _slices(tensor))


def check_tensors(tensors: dict, at: str, weight_dtypes=FLOAT_DTYPES, fix: str = "") -> None:
    """Raises CheckpointFileError for a weight/bias of a dtype outside `weight_dtypes` or any non-finite value.

    `at` names the file (see `where`); `fix` is appended (what to do about it)."""
    fix = f"; {fix}" if fix else "; the file is damaged or was saved from a run that diverged: use another copy"
    for key, tensor in tensors.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("weight", "bias", "scale") and tensor.dtype not in weight_dtypes:
            allowed = ", ".join(str(d).replace("torch.", "") for d in weight_dtypes)
            raise CheckpointFileError(f"{at}: tensor '{key}' is {str(tensor.dtype).replace('torch.', '')}, but weights "
                                      f"must be one of {allowed}{fix}")
        bad = non_finite_count(tensor)
        if bad:
            raise CheckpointFileError(f"{at}: tensor '{key}' holds {bad} NaN or infinite value(s) of "
                                      f"{tensor.numel()}{fix}")


@contextlib.contextmanager
def atomic_target(path):
    """A hidden temporary path beside `path`: renamed onto `path` when the block ends without an error,
    removed when it raises. Readers never see a partly written file under the final name."""
    path = pathlib.Path(path)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def save_safetensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """safetensors.torch.save_file, written to a temporary name and renamed into place."""
    from safetensors.torch import save_file

    with atomic_target(path) as temp:
        save_file(tensors, str(temp), metadata=metadata)
