"""Torch references for W8A8 INT8: quantize, dequantize and the scaled INT8 GEMM.

Symmetric quantization: q = clamp(round(x / scale), -levels, levels) with scale = amax / levels,
rounding half away from zero (the Triton kernels round the same way). Granularities:
- per row (per-token activations [M, K] -> scale [M, 1]; per-channel weights [N, K] -> scale [N, 1]);
- per block of 128 x 128 (TurboDiffusion) -> scale [ceil(R/128), ceil(C/128)].
An all-zero row or block gets scale AMAX_FLOOR / levels, so its q is 0 and nothing divides by 0.

The GEMM computes out[m, n] = sum_k qx[m, k] qw[n, k] * sx * sw + bias. Per-row scales factor out
of the sum (applied once, in the epilogue); block scales change every 128 columns of K, so each
128-wide K slice is summed exactly and scaled on its own. Everything here runs in float64, where
every integer partial sum is exact: the yardstick for the Triton kernels and the CPU path.
"""
import math

import torch

BLOCK = 128
LEVELS = 127
AMAX_FLOOR = 1e-8
GRANULARITIES = ("per_channel", "block128")


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def _blocks(size: int, block: int) -> int:
    return math.ceil(size / block) if size else 0


def expand_block_scale(scale: torch.Tensor, rows: int, cols: int, block: int = BLOCK) -> torch.Tensor:
    """[ceil(R/b), ceil(C/b)] block scales -> one scale per element [R, C]."""
    return scale.repeat_interleave(block, 0)[:rows].repeat_interleave(block, 1)[:, :cols]


def quantize_rows(x: torch.Tensor, levels: int = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (per-token / per-output-channel) symmetric quantization of a 2-D tensor."""
    x64 = x.double()
    amax = x64.abs().amax(dim=1, keepdim=True) if x.shape[1] else x64.new_zeros(x.shape[0], 1)
    scale = amax.clamp_min(AMAX_FLOOR) / levels
    q = round_half_away(x64 / scale).clamp_(-levels, levels)
    return q.to(torch.int8), scale.float()


def quantize_blocks(
    x: torch.Tensor, levels: int = LEVELS, block: int = BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block symmetric quantization of a 2-D tensor; the last blocks may be partial."""
    rows, cols = x.shape
    x64 = x.double()
    padded = x64.new_zeros(_blocks(rows, block) * block, _blocks(cols, block) * block)
    padded[:rows, :cols] = x64.abs()
    tiles = padded.view(padded.shape[0] // block, block, padded.shape[1] // block, block)
    scale = tiles.amax(dim=(1, 3)).clamp_min(AMAX_FLOOR) / levels
    q = round_half_away(x64 / expand_block_scale(scale, rows, cols, block)).clamp_(-levels, levels)
    return q.to(torch.int8), scale.float()


def quantize(x: torch.Tensor, granularity: str, levels: int = LEVELS):
    """(q int8, scale float32) of a 2-D tensor at the given granularity."""
    if granularity == "per_channel":
        return quantize_rows(x, levels)
    if granularity == "block128":
        return quantize_blocks(x, levels)
    raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")


def is_block_scale(q: torch.Tensor, scale: torch.Tensor) -> bool:
    """True for [ceil(R/128), ceil(C/128)] block scales, False for [R, 1] row scales."""
    rows, cols = q.shape
    if tuple(scale.shape) == (rows, 1):  # also a single row of <= 128 columns: the same thing
        return False
    if tuple(scale.shape) == (_blocks(rows, BLOCK), _blocks(cols, BLOCK)):
        return True
    raise ValueError(f"scale of shape {tuple(scale.shape)} fits neither per-row [{rows}, 1] nor "
                     f"128x128 blocks [{_blocks(rows, BLOCK)}, {_blocks(cols, BLOCK)}] of a {rows}x{cols} tensor")


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """q * scale with row or block scales (told apart by the scale's shape)."""
    if is_block_scale(q, scale):
        scale = expand_block_scale(scale.double(), *q.shape)
    return (q.double() * scale.double()).to(dtype)


def int8_gemm(
    qx: torch.Tensor, sx: torch.Tensor, qw: torch.Tensor, sw: torch.Tensor,
    bias: torch.Tensor | None = None, out_dtype=torch.float32,
) -> torch.Tensor:
    """out [M, N] = (qx [M, K] @ qw[N, K].T) scaled by sx and sw, + bias, in float64."""
    (m, k), (n, k_w) = qx.shape, qw.shape
    if k != k_w:
        raise ValueError(f"qx has K={k} but qw has K={k_w}")
    x_blocks, w_blocks = is_block_scale(qx, sx), is_block_scale(qw, sw)
    out = qx.new_zeros((m, n), dtype=torch.float64)
    slices = range(0, k, BLOCK) if (x_blocks or w_blocks) else [0]
    for start in slices:
        width = BLOCK if (x_blocks or w_blocks) else k
        part = qx[:, start:start + width].double() @ qw[:, start:start + width].double().T
        kb = start // BLOCK
        row = sx.double()[:, kb:kb + 1].repeat_interleave(BLOCK, 0)[:m] if x_blocks else sx.double()
        col = sw.double()[:, kb:kb + 1].repeat_interleave(BLOCK, 0)[:n] if w_blocks else sw.double()
        out += part * row * col.T
    if bias is not None:
        out += bias.double()
    return out.to(out_dtype)


def int8_linear(x: torch.Tensor, qw: torch.Tensor, sw: torch.Tensor, bias=None,
                activation: str = "per_channel") -> torch.Tensor:
    """The whole W8A8 layer in float64: quantize x (per token or per block), GEMM, epilogue."""
    rows = x.reshape(-1, x.shape[-1])
    qx, sx = quantize(rows, activation)
    out = int8_gemm(qx, sx, qw, sw, bias, torch.float64)
    return out.reshape(*x.shape[:-1], qw.shape[0]).to(x.dtype)
