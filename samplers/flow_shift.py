"""Time shifts for rectified-flow sigma schedules (SD3 resolution shift, LTX-Video token shift).

Convention: sigma in [0, 1], x_sigma = (1 - sigma) x0 + sigma * eps, sigma = 1 is pure noise.

The SD3 shift `sigma' = shift * s / (1 + (shift - 1) * s)` moves every interior sigma toward the
noise end when shift > 1 (bigger images/videos need more of the schedule at high noise). LTX-Video
writes the same map with shift = e^mu as `sigma' = e^mu / (e^mu + (1/s - 1))` and picks mu linearly
in the number of latent tokens (0.95 at 1024 tokens, 2.05 at 4096), then optionally stretches the
schedule so that its last non-zero sigma is `terminal`.

`ltx_shift_sigmas` gives the same numbers as ComfyUI's `LTXVScheduler` node for the same inputs,
with these deliberate differences:
- the math runs in float64 and is rounded to float32 once at the end, so the result is within
  float32 rounding (3e-8) of the exact formula. The node works in float32: up to ~6000 tokens the
  two agree to 4.2e-7 (checked for steps 2..50, terminal 0.05/0.1/0.5, stretch on and off); for
  large token counts (mu is not clamped: 30000 tokens gives mu = 11.3, all sigmas crowd near 1)
  the node's stretch loses up to 9e-4 to cancellation in 1 - s, this version does not;
- steps=1 with stretch: the only non-zero sigma is 1 and the stretch is 0/0 (the node returns NaN,
  or [terminal, 0] where float32 rounding leaves the shifted 1 just below 1); here the schedule is
  returned unstretched, [1, 0];
- stretch with terminal=0 would turn the last non-zero sigma into a second 0 (a zero-length step
  that divides by zero in Euler samplers); here it is rejected: terminal must be in (0, 1).
Like the node, mu is NOT clamped outside 1024..4096 tokens (linear extrapolation).
"""
from __future__ import annotations

import math

import torch


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 / flow time shift `shift * s / (1 + (shift - 1) * s)`; 0 and 1 are kept exactly."""
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got {shift!r}")
    s = sigmas.to(torch.float64)
    shifted = shift * s / (1.0 + (shift - 1.0) * s)
    # The formula maps 0 -> 0 and 1 -> 1 in exact arithmetic but not always in floating point.
    shifted = torch.where((s == 0.0) | (s == 1.0), s, shifted)
    return shifted.to(sigmas.dtype)


def ltx_token_shift_mu(
    tokens: float,
    base_shift: float = 0.95,
    max_shift: float = 2.05,
    min_tokens: float = 1024,
    max_tokens: float = 4096,
) -> float:
    """LTX-Video's mu: linear in the token count, base_shift at min_tokens, max_shift at max_tokens."""
    if max_tokens == min_tokens:
        raise ValueError("max_tokens must differ from min_tokens")
    slope = (max_shift - base_shift) / (max_tokens - min_tokens)
    return base_shift + slope * (tokens - min_tokens)


def stretch_to_terminal(sigmas: torch.Tensor, terminal: float) -> torch.Tensor:
    """Rescale the non-zero sigmas as `1 - (1 - s) / scale` so the last non-zero one is `terminal`.

    scale = (1 - last) / (1 - terminal). The map is affine and increasing in s, so order is kept,
    1 stays 1 and zeros stay zero. If the last non-zero sigma is 1 there is nothing to stretch.
    """
    if not 0.0 < terminal < 1.0:
        raise ValueError(f"terminal must be in (0, 1) when stretching, got {terminal!r}; "
                         "use stretch=False to keep the unstretched schedule")
    nonzero = sigmas != 0
    one_minus = 1.0 - sigmas[nonzero]
    if one_minus.numel() == 0 or float(one_minus[-1]) == 0.0:
        return sigmas.clone()
    scale = one_minus[-1] / (1.0 - terminal)
    out = sigmas.clone()
    out[nonzero] = 1.0 - one_minus / scale
    return out


def ltx_shift_sigmas(
    steps: int,
    tokens: float,
    base_shift: float = 0.95,
    max_shift: float = 2.05,
    stretch: bool = True,
    terminal: float = 0.1,
) -> torch.Tensor:
    """LTX-Video schedule: linspace(1, 0, steps + 1) shifted by e^mu(tokens), optionally stretched."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not tokens > 0:
        raise ValueError(f"tokens must be > 0, got {tokens!r}")
    mu = ltx_token_shift_mu(tokens, base_shift, max_shift)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    sigmas = shift_sigmas(grid, math.exp(mu))
    if stretch:
        sigmas = stretch_to_terminal(sigmas, terminal)
    return sigmas.to(torch.float32)
