"""W8A8 INT8 dispatcher: Triton on CUDA, oneDNN's prepacked INT8 GEMM on x86 CPUs, torch elsewhere.

backend="auto" picks "triton" for CUDA inputs when triton imports, "onednn" for CPU inputs when
torch has the oneDNN quantized linear ops (x86 builds), else "torch"; any of the three can be
forced. This module imports without triton.

- "triton": activations quantized like the weights (per token for per-channel weights, 128x128
  blocks for block weights), INT8 GEMM with the scales in its epilogue (int8_triton.py).
- "onednn": per-token activations (one pass for the abs-max, one fused scale+shift+round to
  uint8 with zero point 128), torch.ops.onednn.qlinear_pointwise with per-channel weight scales
  applied inside oneDNN, then one in-place pass for token scale and bias. The weight is prepacked
  once (pack_cpu_weight); block-scaled weights are re-quantized per channel for this. On CPUs
  without VNNI the u8 x s8 products are summed in pairs into int16, which saturates for full-range
  weights (relative error ~1e-1), so there the packed weights use +-64 levels (CPU_SAFE_LEVELS).
- "torch": dequantize weight and quantized activations, F.linear (mathematically the same sum).
"""
import functools
import importlib
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F

from . import int8_reference
from .int8_reference import AMAX_FLOOR, LEVELS, is_block_scale

BACKENDS = ("auto", "triton", "onednn", "torch")
CPU_SAFE_LEVELS = 64  # 255 * 64 * 2 < 2**15: a pair of u8 x s8 products cannot saturate int16
_ZERO_POINT = 128
_CHUNK_BYTES = 8 << 20
_HALF_ZERO_POINT = torch.tensor(_ZERO_POINT + 0.5)


@functools.lru_cache(maxsize=1)
def _triton_module() -> ModuleType | None:
    try:
        return importlib.import_module(".int8_triton", __package__)
    except ImportError:
        return None


def triton_available() -> bool:
    return _triton_module() is not None


def onednn_available() -> bool:
    """True when torch has oneDNN's INT8 linear ops (x86 CPU builds)."""
    ops = getattr(torch.ops, "onednn", None)
    try:
        return hasattr(ops, "qlinear_pointwise") and hasattr(ops, "qlinear_prepack")
    except RuntimeError:
        return False


def cpu_has_vnni() -> bool:
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(probe()) if probe is not None else False


def cpu_weight_levels() -> int:
    """Weight levels for the oneDNN path: full int8 with VNNI, +-64 without (see module doc)."""
    return LEVELS if cpu_has_vnni() else CPU_SAFE_LEVELS


def resolve_backend(x: torch.Tensor, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "triton" and not triton_available():
        raise RuntimeError("backend='triton' was requested but triton is not installed (or failed to "
                           "import); install triton or use backend='auto'")
    if backend == "onednn" and not onednn_available():
        raise RuntimeError("backend='onednn' needs torch's oneDNN INT8 ops (an x86 CPU build of torch); "
                           "use backend='auto' or 'torch'")
    if backend != "auto":
        return backend
    if x.is_cuda and triton_available():
        return "triton"
    if x.device.type == "cpu" and onednn_available():
        return "onednn"
    return "torch"


def quantize(x: torch.Tensor, granularity: str, backend: str = "auto"):
    """(q int8, scale float32) of a 2-D tensor: 'per_channel' (per row) or 'block128'."""
    if resolve_backend(x, backend) == "triton":
        module = _triton_module()
        fn = module.quantize_rows if granularity == "per_channel" else module.quantize_blocks
        if granularity not in int8_reference.GRANULARITIES:
            raise ValueError(f"granularity must be one of {int8_reference.GRANULARITIES}; got {granularity!r}")
        return fn(x)
    return _quantize_torch(x, granularity)


def _quantize_torch(x: torch.Tensor, granularity: str, levels: int = LEVELS):
    if granularity == "per_channel" and x.shape[1]:
        x32 = x.float()
        scale = x32.abs().amax(dim=1, keepdim=True).clamp_min_(AMAX_FLOOR).div_(levels)
        q = int8_reference.round_half_away(x32 / scale).clamp_(-levels, levels)
        return q.to(torch.int8), scale
    return int8_reference.quantize(x, granularity, levels)


@dataclass(frozen=True)
class CpuWeight:
    """A weight prepacked for oneDNN: packed int8, per-channel float32 scales, zero points."""
    packed: torch.Tensor
    scale: torch.Tensor
    zero_points: torch.Tensor
    levels: int


def pack_cpu_weight(qw: torch.Tensor, sw: torch.Tensor, levels: int | None = None) -> CpuWeight:
    """Prepack a quantized weight [N, K] for the oneDNN path (re-quantized per channel if needed)."""
    levels = cpu_weight_levels() if levels is None else levels
    if is_block_scale(qw, sw) or levels != LEVELS:
        qw, sw = _quantize_torch(qw.float() * _expand(qw, sw, torch.float32), "per_channel", levels)
    scale = sw.float().reshape(-1).contiguous()
    zero_points = torch.zeros(qw.shape[0], dtype=torch.long)
    packed = torch.ops.onednn.qlinear_prepack(qw.cpu().contiguous(), None)
    return CpuWeight(packed, scale.cpu(), zero_points, levels)


def _quantize_tokens_u8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token uint8 (zero point 128) and scales, in row chunks whose float temporary (~8 MB)
    stays in cache: 3-4x faster than whole-tensor passes for K = 8960 on a 2-core CPU."""
    q = torch.empty(x.shape, dtype=torch.uint8)
    scale = torch.empty(x.shape[0], 1)
    rows = max(16, _CHUNK_BYTES // (4 * x.shape[1]))
    work = torch.empty(min(rows, x.shape[0]), x.shape[1])
    for start in range(0, x.shape[0], rows):
        chunk = x[start:start + rows]
        temp = work[: chunk.shape[0]]
        amax = torch.abs(chunk, out=temp).amax(dim=1, keepdim=True).clamp_min_(AMAX_FLOOR)
        torch.div(amax, LEVELS, out=scale[start:start + rows])
        # floor(x / s + 128.5) is round(x / s) + 128; the uint8 copy truncates.
        torch.addcmul(_HALF_ZERO_POINT, chunk, amax.reciprocal_().mul_(LEVELS), out=temp)
        q[start:start + rows].copy_(temp)
    return q, scale


def _onednn_linear(x: torch.Tensor, weight: CpuWeight, bias: torch.Tensor | None) -> torch.Tensor:
    q, token_scale = _quantize_tokens_u8(x.float().contiguous())
    y = torch.ops.onednn.qlinear_pointwise(q, 1.0, _ZERO_POINT, weight.packed, weight.scale,
                                           weight.zero_points, None, 1.0, 0, torch.float32, "none", [], "")
    if bias is None:
        return y.mul_(token_scale)
    return torch.addcmul(bias.float(), y, token_scale, out=y)


def _torch_linear(x, qw, sw, bias, granularity):
    qx, sx = _quantize_torch(x, granularity)
    dtype = torch.float32 if x.device.type == "cpu" else x.dtype
    weight = qw.to(dtype) * _expand(qw, sw, dtype)
    activations = qx.to(dtype) * _expand(qx, sx, dtype)
    return F.linear(activations, weight, None if bias is None else bias.to(dtype))


def _expand(q: torch.Tensor, scale: torch.Tensor, dtype) -> torch.Tensor:
    if is_block_scale(q, scale):
        return int8_reference.expand_block_scale(scale, *q.shape).to(dtype)
    return scale.to(dtype)


def linear(x: torch.Tensor, qw: torch.Tensor, sw: torch.Tensor, bias: torch.Tensor | None = None,
           backend: str = "auto", cpu_weight: CpuWeight | None = None) -> torch.Tensor:
    """y = x @ dequant(qw).T + bias with x quantized on the fly; x [..., K], qw int8 [N, K].

    Activations follow the weight's granularity (per token / 128 blocks), except on "onednn"
    (always per token; pass a cpu_weight from pack_cpu_weight to avoid repacking every call)."""
    rows = x.reshape(-1, x.shape[-1])
    granularity = "block128" if is_block_scale(qw, sw) else "per_channel"
    chosen = resolve_backend(x, backend)
    if rows.shape[0] == 0:
        out = rows.new_empty(0, qw.shape[0])
    elif chosen == "triton":
        qx, sx = quantize(rows, granularity, "triton")
        out = _triton_module().int8_gemm(qx, sx, qw, sw, bias, out_dtype=x.dtype)
    elif chosen == "onednn":
        out = _onednn_linear(rows, cpu_weight or pack_cpu_weight(qw, sw), bias)
    else:
        out = _torch_linear(rows, qw, sw, bias, granularity)
    return out.to(x.dtype).reshape(*x.shape[:-1], qw.shape[0])
