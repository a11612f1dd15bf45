"""W8A8 INT8 in Triton: activation quantization and an INT8 GEMM with the scales in the epilogue.

Same signatures and numerics as int8_reference.py (the reference runs in float64; here scales and
epilogue are float32, integer partial sums exact in int32). Two scale layouts, told apart by the
scale's shape: per row ([R, 1]: per-token activations, per-channel weights) and 128 x 128 blocks
([ceil(R/128), ceil(C/128)], TurboDiffusion). The GEMM walks K in tiles of exactly 128, so a block
scale is constant over a tile: block-scaled operands scale each tile's int32 sum; row scales are
applied once, after the K loop. Any M, N, K works: tails are masked and read as 0 (TurboDiffusion's
CUTLASS kernel silently leaves zeros when K % 128 != 0). This module imports triton.
"""
import torch
import triton
import triton.language as tl

from .int8_reference import AMAX_FLOOR, BLOCK, LEVELS, is_block_scale

_ROWS = 16  # rows per program in the per-row quantizer
_QUANT_K = 128  # columns per step of the per-row quantizer's K loop


@triton.jit
def _round_half_away(v):
    return tl.where(v >= 0, tl.floor(v + 0.5), tl.ceil(v - 0.5))


@triton.jit
def _quantize_rows_kernel(x_ptr, q_ptr, s_ptr, n_rows, n_cols, levels, amax_floor,
                          ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    base = rows.to(tl.int64)[:, None] * n_cols
    amax = tl.zeros((ROWS,), dtype=tl.float32)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        mask = row_ok[:, None] & (cols[None, :] < n_cols)
        x = tl.load(x_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.max(tl.abs(x), axis=1))
    scale = tl.maximum(amax, amax_floor) / levels
    tl.store(s_ptr + rows, scale, mask=row_ok)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        mask = row_ok[:, None] & (cols[None, :] < n_cols)
        x = tl.load(x_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        q = tl.minimum(tl.maximum(_round_half_away(x / scale[:, None]), -levels), levels)
        tl.store(q_ptr + base + cols[None, :], q.to(tl.int8), mask=mask)


@triton.jit
def _quantize_blocks_kernel(x_ptr, q_ptr, s_ptr, n_rows, n_cols, n_col_blocks, levels, amax_floor,
                            BLOCK_SIZE: tl.constexpr):
    row_block, col_block = tl.program_id(0), tl.program_id(1)
    rows = row_block * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    cols = col_block * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scale = tl.maximum(tl.max(tl.max(tl.abs(x), axis=1), axis=0), amax_floor) / levels
    tl.store(s_ptr + row_block * n_col_blocks + col_block, scale)
    q = tl.minimum(tl.maximum(_round_half_away(x / scale), -levels), levels)
    tl.store(q_ptr + offsets, q.to(tl.int8), mask=mask)


@triton.jit
def _int8_gemm_kernel(
    qx_ptr, sx_ptr, qw_ptr, sw_ptr, bias_ptr, out_ptr, M, N, K, k_blocks,
    X_BLOCKS: tl.constexpr, W_BLOCKS: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok, col_ok = rows < M, cols < N
    ks = tl.arange(0, BLOCK_K)
    x_rows = qx_ptr + rows.to(tl.int64)[:, None] * K
    w_cols = qw_ptr + cols.to(tl.int64)[None, :] * K
    exact = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)  # sums that no block scale interrupts
    scaled = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, k_blocks):
        k = kb * BLOCK_K + ks
        a = tl.load(x_rows + k[None, :], mask=row_ok[:, None] & (k[None, :] < K), other=0)
        b = tl.load(w_cols + k[:, None], mask=(k[:, None] < K) & col_ok[None, :], other=0)
        part = tl.dot(a, b, out_dtype=tl.int32)
        if X_BLOCKS or W_BLOCKS:
            factor = tl.full((BLOCK_M, BLOCK_N), 1.0, tl.float32)
            if X_BLOCKS:
                sx = tl.load(sx_ptr + (rows // BLOCK_K) * k_blocks + kb, mask=row_ok, other=0.0)
                factor = factor * sx[:, None]
            if W_BLOCKS:
                sw = tl.load(sw_ptr + (cols // BLOCK_K) * k_blocks + kb, mask=col_ok, other=0.0)
                factor = factor * sw[None, :]
            scaled += part.to(tl.float32) * factor
        else:
            exact += part
    out = scaled if (X_BLOCKS or W_BLOCKS) else exact.to(tl.float32)
    if not X_BLOCKS:
        out = out * tl.load(sx_ptr + rows, mask=row_ok, other=0.0)[:, None]
    if not W_BLOCKS:
        out = out * tl.load(sw_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if HAS_BIAS:
        out = out + tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def _check_2d(name: str, t: torch.Tensor, dtype=None):
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D; got shape {tuple(t.shape)}")
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}; got {t.dtype}")


def quantize_rows(x: torch.Tensor, levels: int = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric quantization: (q int8 [R, C], scale float32 [R, 1])."""
    _check_2d("x", x)
    x = x.contiguous()
    q = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    scale = torch.empty(x.shape[0], 1, dtype=torch.float32, device=x.device)
    if x.shape[0]:
        grid = (triton.cdiv(x.shape[0], _ROWS),)
        _quantize_rows_kernel[grid](x, q, scale, x.shape[0], x.shape[1], float(levels), AMAX_FLOOR,
                                    ROWS=_ROWS, BLOCK_K=_QUANT_K)
    return q, scale


def quantize_blocks(x: torch.Tensor, levels: int = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """128 x 128 block quantization: (q int8 [R, C], scale float32 [ceil(R/128), ceil(C/128)])."""
    _check_2d("x", x)
    x = x.contiguous()
    grid = (triton.cdiv(x.shape[0], BLOCK), triton.cdiv(x.shape[1], BLOCK))
    q = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    scale = torch.empty(grid, dtype=torch.float32, device=x.device)
    if x.numel():
        _quantize_blocks_kernel[grid](x, q, scale, x.shape[0], x.shape[1], grid[1], float(levels),
                                      AMAX_FLOOR, BLOCK_SIZE=BLOCK)
    return q, scale


def _tile_sizes(device: torch.device) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages); the interpreter is fastest on small tiles."""
    if device.type == "cuda":
        return 128, 128, 8, 3
    return 32, 32, 4, 1


def int8_gemm(qx, sx, qw, sw, bias=None, out_dtype=torch.float32) -> torch.Tensor:
    """out [M, N] = sum_k qx[m, k] qw[n, k] * scales + bias, scales per row or per 128-block."""
    _check_2d("qx", qx, torch.int8)
    _check_2d("qw", qw, torch.int8)
    (m, k), (n, k_w) = qx.shape, qw.shape
    if k != k_w:
        raise ValueError(f"qx has K={k} but qw has K={k_w}")
    x_blocks, w_blocks = is_block_scale(qx, sx), is_block_scale(qw, sw)
    out = torch.empty(m, n, dtype=out_dtype, device=qx.device)
    if out.numel() == 0:
        return out
    block_m, block_n, num_warps, num_stages = _tile_sizes(qx.device)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    sx, sw = sx.float().contiguous(), sw.float().contiguous()
    _int8_gemm_kernel[grid](
        qx.contiguous(), sx, qw.contiguous(), sw, sw if bias is None else bias.contiguous(), out,
        m, n, k, triton.cdiv(k, BLOCK), X_BLOCKS=x_blocks, W_BLOCKS=w_blocks, HAS_BIAS=bias is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=BLOCK, num_warps=num_warps, num_stages=num_stages,
    )
    return out
