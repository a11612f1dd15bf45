"""Training targets of a non-uniform shortcut model (Frans et al. 2024; TurboVSR sec. 3.4). Pure torch.

Conventions as in samplers/shortcut.py: sigma 1 = noise, x_s = (1 - s) x0 + s eps, a step of size d
goes from s to s - d, and the model u(x, s, d) is the average velocity over that step:
x_{s-d} = x_s - d u. Flow matching is the limit of small steps: u -> v = eps - x0.

Self-consistency (bootstrap): one step of size d equals two steps of size d/2, so the target of
u(x_s, s, d) is (u1 + u2) / 2 with u1 = u(x_s, s, d/2), u2 = u(x_s - (d/2) u1, s - d/2, d/2): exactly the
velocity that lands where the two half steps land. The model is told the NEAREST trained step size
(log2 space) for every step, as TurboShortcutSampler tells it at inference.

Non-uniform paths: training draws the steps the sampler will take. A step count N is drawn from
`step_counts`, then a step i of the SD3-shifted grid shortcut_sigmas(N, shift) (the schedule
TurboShortcutSigmas makes): s = grid[i], d = grid[i] - grid[i + 1]. With shift > 1 the steps near noise are
short and those near data long, so the trained set needs more than powers of two (--trained-step-sizes).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .flow_shift import shift_sigmas
from .shortcut import nearest_step_size

ShortcutVelocity = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def bootstrap_target(velocity: ShortcutVelocity, x: torch.Tensor, sigma: torch.Tensor, step: torch.Tensor,
                     half_size: float, clip: float | None = None) -> torch.Tensor:
    """(u1 + u2) / 2 for a step of size `step` (B,) from `sigma` (B,), each half told `half_size`.

    velocity(x, sigma, step_size) -> u; clip bounds u1 and u2 to [-clip, clip] (Frans et al. use 4).
    """
    half = _per_sample(step, x) / 2
    u1 = velocity(x, sigma, half_size)
    if clip is not None:
        u1 = u1.clamp(-clip, clip)
    u2 = velocity(x - half * u1, sigma - step / 2, half_size)
    if clip is not None:
        u2 = u2.clamp(-clip, clip)
    return (u1 + u2) / 2


def draw_shortcut_steps(count: int, step_counts: Sequence[int], shift: float,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma, step) float64 (count,): a random step of a random N-step shifted shortcut schedule each."""
    if not step_counts or any(int(n) < 1 for n in step_counts):
        raise ValueError(f"step_counts must be a non-empty list of integers >= 1, got {list(step_counts)}")
    picks = torch.randint(len(step_counts), (count,), generator=generator)
    uniforms = torch.rand(count, generator=generator, dtype=torch.float64)
    sigma, step = torch.empty(count, dtype=torch.float64), torch.empty(count, dtype=torch.float64)
    for k in range(count):
        steps = int(step_counts[int(picks[k])])
        grid = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)
        i = min(int(uniforms[k] * steps), steps - 1)
        sigma[k], step[k] = grid[i], grid[i] - grid[i + 1]
    return sigma, step


def draw_flow_sigmas(count: int, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flow-matching sigmas float64 (count,): uniform in (0, 1], then the same SD3 shift toward noise."""
    uniforms = 1.0 - torch.rand(count, generator=generator, dtype=torch.float64)
    return shift_sigmas(uniforms, shift)


def told_step_sizes(steps: torch.Tensor, trained_step_sizes: Sequence[float]) -> list[float]:
    """The trained step size the model is told for each step (nearest in log2 space)."""
    return [nearest_step_size(float(d), trained_step_sizes) for d in steps]

