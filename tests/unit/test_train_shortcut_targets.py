"""Shortcut training targets (samplers/shortcut_targets.py) against float64 references."""
import math

import pytest
import torch
from turbovideo.samplers import shortcut_targets as targets
from turbovideo.samplers.shortcut import DEFAULT_TRAINED_STEP_SIZES, nearest_step_size, shortcut_sigmas


def _field(seed):
    """A nonlinear velocity u(x, s, d) in float64 that depends on all three arguments."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(6, 6, generator=generator, dtype=torch.float64) / 3
    calls = []

    def velocity(x, sigma, step_size):
        calls.append((x.clone(), sigma.clone(), step_size))
        s = sigma.reshape(-1, 1)
        return torch.tanh(x @ weight) * (1 + s) + math.log2(1 / step_size) * 0.1 - s * x

    return velocity, calls


def test_train_bootstrap_target_is_the_average_of_two_half_steps():
    velocity, calls = _field(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    sigma = 0.3 + 0.7 * torch.rand(5, generator=generator, dtype=torch.float64)
    step = sigma * torch.rand(5, generator=generator, dtype=torch.float64)
    target = targets.bootstrap_target(velocity, x, sigma, step, half_size=0.25)
    # reference: two Euler half steps taken one after the other, then one step of the full size
    u1 = velocity(x, sigma, 0.25)
    middle = x - (step / 2)[:, None] * u1
    end = middle - (step / 2)[:, None] * velocity(middle, sigma - step / 2, 0.25)
    torch.testing.assert_close(x - step[:, None] * target, end, rtol=0, atol=1e-12)
    assert [c[2] for c in calls[:2]] == [0.25, 0.25]  # both halves told the half step size
    torch.testing.assert_close(calls[1][1], sigma - step / 2, rtol=0, atol=0)


def test_train_bootstrap_target_of_the_exact_flow_is_that_flow():
    """For a single data point x0 the flow is straight, u = (x - x0) / s for every step: a fixed point."""
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 8, generator=generator, dtype=torch.float64)
    sigma = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    x = (1 - sigma[:, None]) * x0 + sigma[:, None] * torch.randn(3, 8, generator=generator, dtype=torch.float64)

    def exact(x, s, step_size):
        return (x - x0) / s.reshape(-1, 1)

    step = torch.tensor([0.9, 0.25, 0.2], dtype=torch.float64)
    target = targets.bootstrap_target(exact, x, sigma, step, half_size=0.125)
    torch.testing.assert_close(target, exact(x, sigma, 1.0), rtol=0, atol=1e-12)


def test_train_bootstrap_target_clips_both_halves():
    def loud(x, s, step_size):
        return torch.full_like(x, 10.0)

    x = torch.randn(2, 3, dtype=torch.float64)
    out = targets.bootstrap_target(loud, x, torch.tensor([0.8, 0.6]), torch.tensor([0.5, 0.5]), 0.25, clip=4.0)
    assert torch.equal(out, torch.full_like(x, 4.0))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_train_drawn_steps_are_steps_of_the_shifted_sampling_schedules(shift):
    counts = [1, 2, 4, 8]
    sigma, step = targets.draw_shortcut_steps(400, counts, shift, torch.Generator().manual_seed(3))
    grids = {n: shortcut_sigmas(n, shift).double() for n in counts}
    for s, d in zip(sigma.tolist(), step.tolist()):
        matches = [n for n, g in grids.items() for i in range(n)
                   if abs(g[i] - s) < 1e-6 and abs(g[i] - g[i + 1] - d) < 1e-6]
        assert matches, (s, d)
    assert (sigma - step >= -1e-12).all() and (step > 0).all()
    assert {round(float(d), 6) for d in step} >= {1.0}  # one-step schedules are drawn


def test_train_shift_makes_steps_near_noise_shorter():
    sigma, step = targets.draw_shortcut_steps(400, [4], 3.0, torch.Generator().manual_seed(4))
    high, low = step[sigma > 0.9].mean(), step[sigma < 0.6].mean()
    assert high < low


def test_train_flow_sigmas_follow_the_shift():
    plain = targets.draw_flow_sigmas(4000, 1.0, torch.Generator().manual_seed(5))
    shifted = targets.draw_flow_sigmas(4000, 3.0, torch.Generator().manual_seed(5))
    assert 0 < float(plain.min()) and float(plain.max()) <= 1
    assert abs(float(plain.mean()) - 0.5) < 0.03
    u = plain
    torch.testing.assert_close(shifted, 3 * u / (1 + 2 * u), rtol=0, atol=1e-12)


def test_train_told_step_sizes_are_the_nearest_trained():
    steps = torch.tensor([0.75, 0.3, 0.01, 1.0], dtype=torch.float64)
    told = targets.told_step_sizes(steps, DEFAULT_TRAINED_STEP_SIZES)
    assert told == [nearest_step_size(float(d)) for d in steps] == [1.0, 0.25, 0.0078125, 1.0]


def test_train_step_counts_are_validated():
    with pytest.raises(ValueError, match="step_counts"):
        targets.draw_shortcut_steps(2, [0, 2], 1.0)
