"""TurboVSR's non-uniform shortcut sampling: Euler steps where the model knows its step size.

A shortcut model (Frans et al. 2024) is conditioned on the step size d it is asked to take and
learns to jump straight to where the flow ODE would be after that step, so few large steps land
where many small ones would. TurboVSR's variant shifts the timesteps toward noise (SD3 resolution
shift) and, because shifted steps are not powers of two, tells the model the NEAREST step size it
was trained on.

Conventions: ComfyUI flow sigma (1 = noise), x_s = (1 - s) x0 + s eps, the denoiser returns x0 and
the flow velocity is (x - x0) / s. Step sizes are in sigma units (d = s - s_next, 1 = whole range).

Why "nearest" is measured in log2 space: the network never sees d itself but
dt_base = log2(1/d) (0 for d = 1, 7 for d = 1/128) through a timestep-style embedding, so two step
sizes are as far apart as their dt_base values. Linear distance would be biased toward the smaller
size: d = 0.72 is linearly nearer 0.5 but in dt_base (0.47) nearer 1.0 (dt_base 0) than 0.5 (1).
Ties (d exactly at a geometric midpoint) go to the smaller trained size.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .flow_shift import shift_sigmas
from .step_checks import check_model_output, schedule_levels

# d = 1/2^k for k = 0..7: the step sizes of the original shortcut recipe, 1 step .. 128 steps
# (dt_base 0..7). A model trained with extra base step sizes passes its own list instead.
DEFAULT_TRAINED_STEP_SIZES: tuple[float, ...] = tuple(1.0 / 2**k for k in range(8))

ShortcutDenoise = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def shortcut_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """Uniform grid 1 -> 0 in `steps` steps, then the SD3 shift toward noise; float32, steps + 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_sigmas(grid, shift).to(torch.float32)


def step_size_to_dt_base(d: float) -> float:
    """The value the network is conditioned on: log2(1/d) (0 for d = 1, 7 for d = 1/128)."""
    if not d > 0:
        raise ValueError(f"step size must be > 0, got {d!r}")
    return math.log2(1.0 / d)


def nearest_step_size(d: float, trained_step_sizes: Sequence[float] = DEFAULT_TRAINED_STEP_SIZES) -> float:
    """The trained step size nearest to d in log2 space (i.e. nearest dt_base)."""
    if not trained_step_sizes:
        raise ValueError("trained_step_sizes must not be empty")
    target = step_size_to_dt_base(d)
    best, best_gap = None, math.inf
    for size in sorted(trained_step_sizes):
        gap = abs(step_size_to_dt_base(size) - target)
        if gap < best_gap:
            best, best_gap = size, gap
    return best


def _sigma_levels(sigmas: torch.Tensor) -> list[float]:
    levels = schedule_levels(sigmas)
    if any(not a > b for a, b in zip(levels[:-1], levels[1:])) or levels[-1] < 0:
        raise ValueError(f"sigmas: must be strictly decreasing and >= 0, got {levels}")
    return levels


def sample_shortcut(
    denoise: ShortcutDenoise,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    trained_step_sizes: Sequence[float] = DEFAULT_TRAINED_STEP_SIZES,
    callback: Callable | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Euler over the flow; at each step the model is told the (nearest trained) step it takes.

    denoise(x, s, step_size) -> x0, s a 0-d tensor, step_size a float from trained_step_sizes;
    callback(i, x, x0, s) after each step; check_interrupt() before each step. One sigma = no step; a
    non-finite prediction stops at its step (step_checks.NonFiniteModelOutput).
    """
    levels = _sigma_levels(sigmas)
    for i in range(len(levels) - 1):
        if check_interrupt is not None:
            check_interrupt()
        s, s_next = sigmas[i], sigmas[i + 1]
        step_size = nearest_step_size(levels[i] - levels[i + 1], trained_step_sizes)
        x0 = denoise(x, s, step_size)
        check_model_output(x, x0, i, len(levels) - 1, levels[i])
        x = x + (s_next - s) * (x - x0) / s
        if callback is not None:
            callback(i, x, x0, s)
    return x
