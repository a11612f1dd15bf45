"""rCM few-step sampling (TurboDiffusion / NVlabs rCM) for rectified-flow denoisers.

rCM is a consistency-distilled model: at any noise level its x0 prediction is (ideally) the end
point of the probability-flow ODE, so 1 to 4 steps suffice. Its schedule is set in TrigFlow time
t (x_t = cos t x0 + sin t eps, sigma_trig = tan t): t = [atan(sigma_max), *mid_t[:steps-1], 0],
converted to rectified-flow sigma = sin t / (cos t + sin t) = tan t / (1 + tan t).

Sampler (ComfyUI "CONST" convention, x_s = (1 - s) x0 + s eps, the denoiser returns x0):
- SDE (default, what the reference does): x0 = D(x, s); x = (1 - s_next) x0 + s_next * fresh noise;
  no noise on the last step (s_next == 0). This is the flow-model form of ComfyUI's sample_lcm.
- ODE (the reference's --ode): Euler on the flow, x = x + (s_next - s) (x - x0) / s.
  With a consistency model's x0 this is exact for one step; for more steps it is not (its x0 is not
  the posterior mean the ODE velocity needs), which the reference calls "sharper, less robust".
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

RCM_MID_T_PRESETS = {"default": (1.5, 1.4, 1.0), "alternative": (1.3, 1.0, 0.6)}
RCM_MAX_STEPS = 4


def bfloat16_round(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float64).to(torch.bfloat16).double())


# Whole TrigFlow schedules of a released student, start time included (then 0). TurboT2AV (LTX-2 19B,
# run_av_inference_eval._student_sigmas): [pi/2, 1.5, 1.4, 1.0], built as a tensor in the run's dtype,
# bfloat16 under its mixed precision: the times it runs are these rounded to bfloat16 (pi/2 -> 1.5703125,
# 1.4 -> 1.3984375), so the first sigma is 0.99952, not 1. No shift, no CFG.
RCM_TIME_PRESETS = {"turbot2av": tuple(bfloat16_round(t) for t in (math.pi / 2, 1.5, 1.4, 1.0))}

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseLike = Callable[[torch.Tensor, int], torch.Tensor]


def trigflow_to_flow_sigma(t: float) -> float:
    """TrigFlow time t in [0, pi/2] -> rectified-flow sigma sin t / (cos t + sin t)."""
    return math.sin(t) / (math.cos(t) + math.sin(t))


def rcm_trigflow_times(steps: int, sigma_max: float, mid_t: Sequence[float]) -> list[float]:
    """[atan(sigma_max), *mid_t[:steps-1], 0], validated to be strictly decreasing."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= RCM_MAX_STEPS:
        raise ValueError(f"steps must be an integer from 1 to {RCM_MAX_STEPS} (rCM is trained for "
                         f"at most {RCM_MAX_STEPS} steps), got {steps!r}")
    if not (math.isfinite(sigma_max) and sigma_max > 0):
        raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    if len(mid_t) < steps - 1:
        raise ValueError(f"mid_t needs at least {steps - 1} times for steps={steps}, got {len(mid_t)}")
    times = [math.atan(sigma_max), *[float(t) for t in mid_t[: steps - 1]], 0.0]
    if times[1:-1] and times[0] <= times[1]:
        raise ValueError(f"sigma_max={sigma_max} gives TrigFlow time {times[0]:.4f}, not above "
                         f"mid_t[0]={times[1]}; raise sigma_max above tan({times[1]}) = "
                         f"{math.tan(times[1]):.4g} or use fewer steps")
    if any(not a > b for a, b in zip(times[1:-1], times[2:])):
        raise ValueError(f"mid_t must be strictly decreasing and > 0, got {tuple(mid_t)}")
    return times


def rcm_sigmas(
    steps: int,
    sigma_max: float = 80.0,
    mid_t: Sequence[float] = RCM_MID_T_PRESETS["default"],
) -> torch.Tensor:
    """rCM schedule as rectified-flow SIGMAS: float32, steps + 1 values, descending, ending at 0.

    steps=1 with sigma_max=80 gives [80/81, 0]. TurboDiffusion uses sigma_max 80 for T2V and 200
    for I2V.
    """
    times = rcm_trigflow_times(steps, sigma_max, mid_t)
    sigmas = [trigflow_to_flow_sigma(t) for t in times]
    return torch.tensor(sigmas, dtype=torch.float64).to(torch.float32)


def rcm_preset_sigmas(preset: str, steps: int) -> torch.Tensor:
    """A released student's own schedule (RCM_TIME_PRESETS) as rectified-flow SIGMAS, its first `steps` times."""
    if preset not in RCM_TIME_PRESETS:
        raise ValueError(f"preset must be one of {list(RCM_TIME_PRESETS)}, got {preset!r}")
    times = RCM_TIME_PRESETS[preset]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= len(times):
        raise ValueError(f"steps must be an integer from 1 to {len(times)} for {preset}, got {steps!r}")
    sigmas = [trigflow_to_flow_sigma(t) for t in (*times[:steps], 0.0)]
    return torch.tensor(sigmas, dtype=torch.float64).to(torch.float32)


def split_at_boundary(sigmas: torch.Tensor, boundary: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits a schedule between two experts (Wan2.2 A14B): steps starting at sigma >= boundary go to
    the high-noise model, the rest to the low-noise model. The halves share the switching sigma, so
    running one after the other covers every step once; a half with no steps has a single value.
    """
    levels = _sigma_levels(sigmas)
    switch = sum(1 for s in levels[:-1] if s >= boundary)
    return sigmas[:switch + 1], sigmas[switch:]


def _sigma_levels(sigmas: torch.Tensor) -> list[float]:
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D tensor with at least 2 values, got shape "
                         f"{tuple(sigmas.shape)}")
    levels = sigmas.tolist()
    if any(not s > 0 for s in levels[:-1]):
        raise ValueError("sigmas must be > 0 except for the last value")
    return levels


def rcm_step(x, x0, s, s_next, noise: torch.Tensor | None, ode: bool) -> torch.Tensor:
    """One rCM update from sigma s to s_next given the x0 prediction at s."""
    if ode:
        return x + (s_next - s) * (x - x0) / s
    if noise is None:
        return x0
    return (1.0 - s_next) * x0 + s_next * noise


def sample_rcm(
    denoise: Denoise,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    noise_like: NoiseLike,
    ode: bool = False,
    callback: Callable | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Run rCM sampling from x at sigmas[0] down the schedule; returns x at sigmas[-1].

    denoise(x, s) -> x0 prediction, s a 0-d tensor; noise_like(x, i) -> fresh standard normal noise
    like x for step i (SDE only, never called for a step ending at 0);
    callback(i, x, x0, s) after each step; check_interrupt() before each step.
    """
    levels = _sigma_levels(sigmas)
    for i in range(len(levels) - 1):
        if check_interrupt is not None:
            check_interrupt()
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoise(x, s)
        noise = noise_like(x, i) if not ode and levels[i + 1] > 0 else None
        x = rcm_step(x, x0, s, s_next, noise, ode)
        if callback is not None:
            callback(i, x, x0, s)
    return x
