"""Writes a .safetensors file one tensor at a time, so a 19B model converts with about one tensor in RAM.

The format: an 8-byte little-endian header length, a JSON header ({key: dtype, shape, data_offsets} and
`__metadata__`) padded with spaces to a multiple of 8, then the raw little-endian tensor bytes in header
order. Memory-mapped sources (torch.load(mmap=True)) are read page by page while they are written.
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


def _header(tensors: dict, metadata: dict | None) -> bytes:
    entries, offset = {}, 0
    if metadata:
        entries["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for key, tensor in tensors.items():
        if tensor.dtype not in DTYPES:
            raise ValueError(f"{key}: dtype {tensor.dtype} has no safetensors name")
        size = math.prod(tensor.shape) * tensor.element_size()
        entries[key] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    return header + b" " * (-len(header) % 8)


def _raw_bytes(tensor: torch.Tensor):
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else b""


def write(path, tensors: dict, metadata: dict | None = None) -> pathlib.Path:
    """Writes `tensors` (in their order) to `path` through a temporary file; a failed write leaves nothing."""
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    header = _header(tensors, metadata)
    try:
        with open(partial, "wb") as handle:
            handle.write(struct.pack("<Q", len(header)))
            handle.write(header)
            for tensor in tensors.values():
                handle.write(_raw_bytes(tensor))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
