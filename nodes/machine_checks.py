"""Options that cannot run on this machine, refused when the prompt is queued, with the option that can."""
from __future__ import annotations

import comfy.model_management

from ..kernels import int8 as int8_kernels
from ..patches import core_compat


def int8_backend_problem(backend: str | None, granularity: str | None = None) -> str | None:
    """Why TurboQuantizeINT8's `backend` cannot run on the device ComfyUI runs models on (or with
    `granularity`), or None."""
    if backend in (None, "auto", "torch"):
        return None
    if backend == "core" and core_compat.native_int8_layout() is None:
        return ("backend: 'core' runs ComfyUI's own INT8 GEMM, which this ComfyUI does not have (native INT8 layers "
                "came with ComfyUI 0.27); use auto")
    if backend == "core" and granularity not in (None, "per_channel"):
        return (f"backend: 'core' runs ComfyUI's own INT8 GEMM, which exists for per_channel layers only, not "
                f"{granularity}; use auto or granularity per_channel")
    if backend == "core":
        return None
    device = comfy.model_management.get_torch_device()
    if backend == "triton" and device.type != "cuda":
        return f"backend: triton needs a CUDA GPU and this ComfyUI runs models on {device}; use auto"
    if backend == "triton" and not int8_kernels.triton_available():
        return "backend: triton is not installed in ComfyUI's Python (pip install triton); use auto"
    if backend == "onednn" and device.type != "cpu":
        return f"backend: onednn runs on the CPU and this ComfyUI runs models on {device}; use auto"
    if backend == "onednn" and not int8_kernels.onednn_available():
        return "backend: onednn needs torch's oneDNN INT8 ops (an x86 CPU build of torch); use auto"
    return None
