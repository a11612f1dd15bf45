"""Writes a .safetensors file one tensor at a time, so a 19B model converts with about one tensor in RAM.

The format: an 8-byte little-endian header length, a JSON header ({key: dtype, shape, data_offsets} and
`__metadata__`) padded with spaces to a multiple of 8, then the raw little-endian tensor bytes in header
order. Two ways in:
- write(path, tensors, metadata): the tensors exist (memory-mapped sources, torch.load(mmap=True), are
  read page by page while they are written);
- StreamWriter(path, plan, metadata): the tensors do not exist yet (a converter computes each one):
  the header is written from a plan of (key, dtype, shape), then each tensor is written as it is made,
  checked against the plan.
Either way the file appears under its name only when complete (a `.partial` name, then a rename).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import struct

import torch

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def _nbytes(dtype: torch.dtype, shape) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def header_bytes(plan: list[tuple[str, torch.dtype, tuple]], metadata: dict | None) -> bytes:
    """The length prefix and padded JSON header of a file holding the planned (key, dtype, shape) in order."""
    entries, offset = {}, 0
    if metadata:
        entries["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for key, dtype, shape in plan:
        if dtype not in DTYPES:
            raise ValueError(f"{key}: dtype {dtype} has no safetensors name")
        size = _nbytes(dtype, shape)
        entries[key] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def _raw_bytes(tensor: torch.Tensor):
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else b""


class StreamWriter:
    """with StreamWriter(path, plan, metadata) as out: out.write(key, tensor) for every planned tensor, in order."""

    def __init__(self, path, plan: list[tuple[str, torch.dtype, tuple]], metadata: dict | None = None):
        self.path, self.plan, self.metadata = pathlib.Path(path), list(plan), metadata
        self.partial, self._next, self._file = self.path.with_name(self.path.name + ".partial"), 0, None

    def __enter__(self):
        self._file = open(self.partial, "wb")
        self._file.write(header_bytes(self.plan, self.metadata))
        return self

    def write(self, key: str, tensor: torch.Tensor):
        if self._next >= len(self.plan):
            raise ValueError(f"{key}: more tensors than planned")
        planned, dtype, shape = self.plan[self._next]
        if key != planned or tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"expected {planned} {dtype} {list(shape)} next; got {key} {tensor.dtype} "
                             f"{list(tensor.shape)}")
        self._file.write(_raw_bytes(tensor))
        self._next += 1

    def __exit__(self, kind, error, traceback):
        self._file.close()
        try:
            if kind is None and self._next != len(self.plan):
                raise ValueError(f"{len(self.plan) - self._next} planned tensors were never written "
                                 f"(next: {self.plan[self._next][0]})")
            if kind is None:
                os.replace(self.partial, self.path)
        finally:
            self.partial.unlink(missing_ok=True)
        return False


def write(path, tensors: dict, metadata: dict | None = None) -> pathlib.Path:
    """Writes `tensors` (in their order) to `path` through a temporary file; a failed write leaves nothing."""
    plan = [(key, tensor.dtype, tuple(tensor.shape)) for key, tensor in tensors.items()]
    with StreamWriter(path, plan, metadata) as out:
        for key, tensor in tensors.items():
            out.write(key, tensor)
    return out.path
