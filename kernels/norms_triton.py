"""Fused RMSNorm and LayerNorm in Triton; same signatures as norms_reference.py.

Each program loads ROWS whole rows into one [ROWS, BLOCK_N] block (BLOCK_N is the next power of
two >= N, the tail masked), reduces in float32 and writes the rows back in x's dtype. Short rows
(N <= 512) are packed 32 to a program so that each program still has enough work; longer rows get
one program each. This module imports triton: import it only where triton is installed (the
dispatcher in norms.py does so lazily).
"""
import torch
import triton
import triton.language as tl

# A row must fit one block; Triton caps a block at 2**20 elements, and far below that the row
# spills out of registers. Longer rows are left to the torch reference (see norms.py).
MAX_N = 65536
_SMALL_N = 512
_ROWS_PER_PROGRAM_SMALL_N = 32


@triton.jit
def _row_block(x_ptr, n_rows, n_cols, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    return x, cols, mask, offsets


@triton.jit
def _rms_norm_kernel(
    x_ptr, w_ptr, y_ptr, n_rows, n_cols, eps,
    HAS_WEIGHT: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):
    x, cols, mask, offsets = _row_block(x_ptr, n_rows, n_cols, ROWS, BLOCK_N)
    mean_square = tl.sum(x * x, axis=1) / n_cols
    y = x * tl.rsqrt(mean_square + eps)[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _layer_norm_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, n_rows, n_cols, eps,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):
    x, cols, mask, offsets = _row_block(x_ptr, n_rows, n_cols, ROWS, BLOCK_N)
    mean = tl.sum(x, axis=1) / n_cols
    # The masked tail must not contribute (0 - mean)^2 to the variance.
    centred = tl.where(mask, x - mean[:, None], 0.0)
    variance = tl.sum(centred * centred, axis=1) / n_cols
    y = centred * tl.rsqrt(variance + eps)[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


def _launch_config(n_cols: int) -> tuple[int, int, int]:
    """(BLOCK_N, ROWS per program, num_warps) for rows of n_cols elements."""
    block_n = triton.next_power_of_2(n_cols)
    rows = 1 if n_cols > _SMALL_N else _ROWS_PER_PROGRAM_SMALL_N
    elements = block_n * rows
    num_warps = 4 if elements <= 2048 else 8 if elements <= 8192 else 16
    return block_n, rows, num_warps


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension to normalise over; got a scalar")
    if x.shape[-1] > MAX_N:
        raise ValueError(
            f"the Triton norms take rows of at most {MAX_N} elements; x's last dim is {x.shape[-1]}. "
            "Use backend='torch' (or 'auto') for longer rows."
        )
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16; got {x.dtype}")
    return x.contiguous().view(-1, x.shape[-1])


def _as_param(name: str, param: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if param is None:
        return None
    if tuple(param.shape) != (x.shape[-1],):
        raise ValueError(
            f"{name} must have shape ({x.shape[-1]},) to match x's last dim; got {tuple(param.shape)}"
        )
    if param.device != x.device:
        raise ValueError(f"{name} is on {param.device} but x is on {x.device}; move them together")
    return param.contiguous()


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * weight, over the last dim, fused in one kernel."""
    rows = _as_rows(x)
    weight = _as_param("weight", weight, x)
    out = torch.empty_like(rows)
    if rows.numel() == 0:
        return out.view(x.shape)
    block_n, rows_per_program, num_warps = _launch_config(rows.shape[1])
    grid = (triton.cdiv(rows.shape[0], rows_per_program),)
    # A missing weight still needs some pointer argument; x stands in and is never read.
    _rms_norm_kernel[grid](
        rows, rows if weight is None else weight, out, rows.shape[0], rows.shape[1], eps,
        HAS_WEIGHT=weight is not None, ROWS=rows_per_program, BLOCK_N=block_n, num_warps=num_warps,
    )
    return out.view(x.shape)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """y = (x - mean) / sqrt(var + eps) * weight + bias, over the last dim, fused in one kernel."""
    rows = _as_rows(x)
    weight = _as_param("weight", weight, x)
    bias = _as_param("bias", bias, x)
    out = torch.empty_like(rows)
    if rows.numel() == 0:
        return out.view(x.shape)
    block_n, rows_per_program, num_warps = _launch_config(rows.shape[1])
    grid = (triton.cdiv(rows.shape[0], rows_per_program),)
    _layer_norm_kernel[grid](
        rows, rows if weight is None else weight, rows if bias is None else bias, out,
        rows.shape[0], rows.shape[1], eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
        ROWS=rows_per_program, BLOCK_N=block_n, num_warps=num_warps,
    )
    return out.view(x.shape)
