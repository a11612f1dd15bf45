"""Samplers checked on a Gaussian data set where every quantity is closed-form.

Data x0 ~ N(mu, diag(var)) in a few anisotropic dims with mu != 0. Under x_s = (1 - s) x0 + s eps
the marginal at s is N(m(s), std(s)^2) per dimension with m(s) = (1 - s) mu and
std(s)^2 = (1 - s)^2 var + s^2. From that, in float64:
- posterior mean E[x0 | x_s] = mu + (1 - s) var / std(s)^2 (x - m(s))  (what a diffusion model learns);
- exact ODE flow map s -> s': x' = m(s') + std(s') / std(s) (x - m(s)) (1-D monotone transport);
- consistency function (rCM's ideal x0) = the flow map to s' = 0;
- step-consistent shortcut x0 for step size d: the x0 whose Euler step of size d lands on the flow
  map at s - d, i.e. x0 = x - s (x - flow_map(x, s, s - d)) / d.

Statistical tolerances: sample means within 5 standard errors sqrt(var / n); sample variances within
5 standard errors var * sqrt(2 / (n - 1)) plus, where stated, a known deterministic bias.
Every test draws its own problem and noise from its own fixed seed.
"""
import math
from dataclasses import dataclass

import pytest
import torch
from turbovideo.samplers import flow_shift, rcm, shortcut

F64 = torch.float64
N_SAMPLES = 100_000
N_SE = 5.0


@dataclass
class GaussianFlow:
    mu: torch.Tensor
    var: torch.Tensor

    def mean_at(self, s):
        return (1 - torch.as_tensor(s, dtype=F64)) * self.mu

    def std_at(self, s):
        s = torch.as_tensor(s, dtype=F64)
        return torch.sqrt((1 - s) ** 2 * self.var + s**2)

    def sample_marginal(self, s, n, gen):
        z = torch.randn(n, self.mu.numel(), generator=gen, dtype=F64)
        return self.mean_at(s) + self.std_at(s) * z

    def posterior_mean(self, x, s):
        gain = (1 - torch.as_tensor(s, dtype=F64)) * self.var / self.std_at(s) ** 2
        return self.mu + gain * (x - self.mean_at(s))

    def flow_map(self, x, s, s_to):
        return self.mean_at(s_to) + self.std_at(s_to) / self.std_at(s) * (x - self.mean_at(s))

    def consistency(self, x, s):
        return self.flow_map(x, s, 0.0)

    def shortcut_x0(self, x, s, d):
        s = torch.as_tensor(s, dtype=F64)
        return x - s * (x - self.flow_map(x, s, s - d)) / d


def make_problem(gen, dims=6):
    mu = 1.5 * torch.randn(dims, generator=gen, dtype=F64)
    var = torch.exp(torch.empty(dims, dtype=F64).uniform_(math.log(0.3), math.log(4.0), generator=gen))
    return GaussianFlow(mu, var)


def noise_source(gen):
    return lambda x, i: torch.randn(x.shape, generator=gen, dtype=x.dtype)


def assert_stats(samples, mean, var, var_bias=0.0, what=""):
    """Per-dim sample mean/variance against expected values within N_SE standard errors."""
    n = samples.shape[0]
    mean_err = (samples.mean(0) - mean).abs() / torch.sqrt(var / n)
    var_tol = N_SE * var * math.sqrt(2.0 / (n - 1)) + var_bias * var
    var_err = (samples.var(0) - var).abs()
    assert bool((mean_err <= N_SE).all()), f"{what}: mean off by {mean_err.max():.2f} standard errors"
    assert bool((var_err <= var_tol).all()), (
        f"{what}: variance off by {(var_err / var).max():.4f} relative, tolerance "
        f"{(var_tol / var).min():.4f}")


def euler_gain(sigmas, predictor_gain):
    """float64 reference for Euler steps with an affine x0 predictor x0 = mu + k(s) (x - m(s)).

    Each step maps x - m(s) to (1 + (s_next / s - 1) (1 - k(s))) (x - m(s)) and the mean exactly to
    m(s_next); returns the product of those per-dim factors over the schedule.
    """
    gain = 1.0
    levels = sigmas.tolist()
    for s, s_next in zip(levels[:-1], levels[1:]):
        gain = gain * (1 + (s_next / s - 1) * (1 - predictor_gain(s)))
    return gain


# ---- Euler with the posterior-mean denoiser (a plain diffusion model) --------------------------

def test_euler_with_posterior_mean_reproduces_data():
    gen = torch.Generator().manual_seed(91_604)
    data = make_problem(gen, dims=4)
    sigmas = shortcut.shortcut_sigmas(200).to(F64)
    x1 = data.sample_marginal(1.0, 20_000, gen)
    out = shortcut.sample_shortcut(lambda x, s, d: data.posterior_mean(x, s), x1, sigmas)
    gain = euler_gain(sigmas, lambda s: (1 - s) * data.var / data.std_at(s) ** 2)
    # Sample by sample against the float64 reference of the same Euler chain (std(1) = 1, m(1) = 0).
    torch.testing.assert_close(out, data.mu + gain * x1, rtol=0, atol=1e-10)
    # Euler's O(1/steps) bias on the variance: -1.28% .. -1.47% at 200 steps for var in [0.3, 4].
    rel_bias = (gain**2 - data.var) / data.var
    assert bool((rel_bias < 0).all()) and bool((rel_bias > -0.02).all()), rel_bias
    assert_stats(out, data.mu, data.var, var_bias=0.02, what="Euler 200 steps")


def test_rcm_ode_mode_is_plain_euler():
    gen = torch.Generator().manual_seed(55_217)
    data = make_problem(gen, dims=4)
    sigmas = shortcut.shortcut_sigmas(30, shift=2.0).to(F64)
    x1 = data.sample_marginal(1.0, 1000, gen)
    a = rcm.sample_rcm(data.posterior_mean, x1, sigmas, noise_source(gen), ode=True)
    b = shortcut.sample_shortcut(lambda x, s, d: data.posterior_mean(x, s), x1, sigmas)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ---- rCM with the exact consistency function ---------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_rcm_sde_with_consistency_function_reproduces_data(steps):
    gen = torch.Generator().manual_seed(30_011 + 97 * steps)
    data = make_problem(gen)
    sigmas = rcm.rcm_sigmas(steps).to(F64)
    x = data.sample_marginal(sigmas[0], N_SAMPLES, gen)
    out = rcm.sample_rcm(data.consistency, x, sigmas, noise_source(gen))
    assert_stats(out, data.mu, data.var, what=f"rCM SDE {steps} steps")


def test_rcm_one_step_is_the_consistency_map_in_both_modes():
    gen = torch.Generator().manual_seed(71_882)
    data = make_problem(gen)
    sigmas = rcm.rcm_sigmas(1, sigma_max=200.0).to(F64)
    x = data.sample_marginal(sigmas[0], 5000, gen)
    expected = data.consistency(x, sigmas[0])
    for ode in (False, True):
        out = rcm.sample_rcm(data.consistency, x, sigmas, noise_source(gen), ode=ode)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [2, 3, 4])
def test_rcm_ode_with_consistency_function_keeps_mean_and_inflates_variance(steps):
    # Euler with a consistency model's x0 is not the probability-flow ODE (whose velocity needs
    # the posterior mean): the mean stays exact, the variance grows by a closed-form factor.
    gen = torch.Generator().manual_seed(12_345 + 31 * steps)
    data = make_problem(gen)
    sigmas = rcm.rcm_sigmas(steps).to(F64)
    x = data.sample_marginal(sigmas[0], N_SAMPLES, gen)
    out = rcm.sample_rcm(data.consistency, x, sigmas, noise_source(gen), ode=True)
    gain = euler_gain(sigmas, lambda s: data.var.sqrt() / data.std_at(s))
    predicted_var = (gain * data.std_at(sigmas[0])) ** 2
    assert float((predicted_var / data.var).min()) > 1.03  # the bias is real, not a rounding
    assert_stats(out, data.mu, predicted_var, what=f"rCM ODE {steps} steps")


def test_rcm_callback_and_interrupt():
    gen = torch.Generator().manual_seed(4_242)
    data = make_problem(gen, dims=3)
    sigmas = rcm.rcm_sigmas(4).to(F64)
    seen = []
    rcm.sample_rcm(data.consistency, data.sample_marginal(sigmas[0], 8, gen), sigmas, noise_source(gen),
                   callback=lambda i, x, x0, s: seen.append((i, float(s))))
    assert seen == [(i, float(sigmas[i])) for i in range(4)]

    class Stop(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        rcm.sample_rcm(data.consistency, data.sample_marginal(sigmas[0], 8, gen), sigmas,
                       noise_source(gen), check_interrupt=interrupt,
                       callback=lambda i, *a: seen.append(i))
    assert seen[4:] == [0, 1]


# ---- shortcut model -----------------------------------------------------------------------------

def step_sizes_of(*schedules):
    return tuple(sorted({d for sig in schedules for d in (sig[:-1] - sig[1:]).tolist()}))


@pytest.mark.parametrize("steps, shift", [(4, 1.0), (3, 3.0)])
def test_shortcut_consistent_model_same_samples_with_n_and_2n_steps(steps, shift):
    gen = torch.Generator().manual_seed(8_191 + steps)
    data = make_problem(gen)
    coarse = shortcut.shortcut_sigmas(steps, shift).to(F64)
    fine = shortcut.shortcut_sigmas(2 * steps, shift).to(F64)
    sizes = shortcut.DEFAULT_TRAINED_STEP_SIZES if shift == 1.0 else step_sizes_of(coarse, fine)
    x1 = data.sample_marginal(1.0, 20_000, gen)
    a = shortcut.sample_shortcut(data.shortcut_x0, x1, coarse, sizes)
    b = shortcut.sample_shortcut(data.shortcut_x0, x1, fine, sizes)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, data.flow_map(x1, 1.0, 0.0), rtol=0, atol=1e-12)
    assert_stats(a, data.mu, data.var, what=f"shortcut {steps} steps")


def test_shortcut_model_told_wrong_step_size_differs():
    gen = torch.Generator().manual_seed(60_493)
    data = make_problem(gen)
    sigmas = shortcut.shortcut_sigmas(4).to(F64)
    x1 = data.sample_marginal(1.0, 20_000, gen)
    right = shortcut.sample_shortcut(data.shortcut_x0, x1, sigmas)
    wrong = shortcut.sample_shortcut(data.shortcut_x0, x1, sigmas, trained_step_sizes=(1 / 128,))
    assert float((right - wrong).abs().max()) > 0.05
    rel_var_gap = ((wrong.var(0) - data.var) / data.var).abs().max()
    assert float(rel_var_gap) > 0.1


def test_nearest_step_size_in_log_space():
    sizes = shortcut.DEFAULT_TRAINED_STEP_SIZES
    assert sizes == tuple(2.0**-k for k in range(8))
    assert shortcut.nearest_step_size(0.72, sizes) == 1.0  # linearly nearer 0.5, dt_base nearer 1
    assert shortcut.nearest_step_size(0.70, sizes) == 0.5
    assert shortcut.nearest_step_size(0.3, sizes) == 0.25
    assert shortcut.nearest_step_size(1 / 128, sizes) == 1 / 128
    assert shortcut.nearest_step_size(1e-4, sizes) == 1 / 128
    assert shortcut.nearest_step_size(5.0, sizes) == 1.0
    assert shortcut.nearest_step_size(0.5, (1.0, 0.25)) == 0.25  # exact tie -> the smaller size
    assert shortcut.nearest_step_size(0.2, (0.1, 0.3)) == 0.3
    assert shortcut.step_size_to_dt_base(1 / 8) == 3.0
    with pytest.raises(ValueError, match="step size"):
        shortcut.nearest_step_size(0.0, sizes)
    with pytest.raises(ValueError, match="trained_step_sizes"):
        shortcut.nearest_step_size(0.5, ())


def test_shortcut_sigmas_shift_toward_noise():
    plain = shortcut.shortcut_sigmas(5)
    torch.testing.assert_close(plain, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.0]), rtol=0, atol=1e-7)
    shifted = shortcut.shortcut_sigmas(4, shift=3.0)  # 3 s / (1 + 2 s)
    torch.testing.assert_close(shifted, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="steps"):
        shortcut.shortcut_sigmas(0)


# ---- schedules ----------------------------------------------------------------------------------

def test_rcm_sigmas_hand_values():
    # tan t / (1 + tan t), evaluated independently with bc -l as s(t) / (c(t) + s(t)).
    t15, t14, t10 = 0.933781061416858, 0.852895394823775, 0.608979049230431
    t13, t06 = 0.782708009805052, 0.406224010396956
    cases = {
        (1, 80.0, "default"): [80 / 81, 0.0],
        (2, 80.0, "default"): [80 / 81, t15, 0.0],
        (3, 80.0, "default"): [80 / 81, t15, t14, 0.0],
        (4, 80.0, "default"): [80 / 81, t15, t14, t10, 0.0],
        (1, 200.0, "default"): [200 / 201, 0.0],
        (4, 1600.0, "alternative"): [1600 / 1601, t13, t10, t06, 0.0],
    }
    for (steps, sigma_max, preset), expected in cases.items():
        got = rcm.rcm_sigmas(steps, sigma_max, rcm.RCM_MID_T_PRESETS[preset])
        assert got.dtype == torch.float32 and got.shape == (steps + 1,)
        torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-7)


@pytest.mark.parametrize("bad", [0, 5, -1, 2.0, True])
def test_rcm_sigmas_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="steps"):
        rcm.rcm_sigmas(bad)


def test_rcm_sigmas_rejects_bad_sigma_max():
    for bad in (0.0, -3.0, float("inf")):
        with pytest.raises(ValueError, match="sigma_max"):
            rcm.rcm_sigmas(1, sigma_max=bad)
    # atan(10) = 1.471 is below mid_t[0] = 1.5: the schedule would go up.
    with pytest.raises(ValueError, match="sigma_max"):
        rcm.rcm_sigmas(2, sigma_max=10.0)


def test_shift_sigmas_keeps_ends_and_order():
    gen = torch.Generator().manual_seed(2_718)
    s = torch.sort(torch.rand(50, generator=gen, dtype=F64), descending=True).values
    s = torch.cat([torch.ones(1, dtype=F64), s, torch.zeros(1, dtype=F64)])
    for shift in (0.1, 0.7, 1.0, 3.0, 17.0):
        out = flow_shift.shift_sigmas(s, shift)
        assert out[0] == 1.0 and out[-1] == 0.0
        assert bool((out[:-1] > out[1:]).all())
        torch.testing.assert_close(out, shift * s / (1 + (shift - 1) * s), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="shift"):
        flow_shift.shift_sigmas(s, 0.0)


def test_ltx_token_shift_mu_is_linear():
    assert flow_shift.ltx_token_shift_mu(1024) == pytest.approx(0.95, abs=1e-12)
    assert flow_shift.ltx_token_shift_mu(4096) == pytest.approx(2.05, abs=1e-12)
    assert flow_shift.ltx_token_shift_mu(2560) == pytest.approx(1.5, abs=1e-12)
    assert flow_shift.ltx_token_shift_mu(7168) == pytest.approx(3.15, abs=1e-12)  # not clamped, as in ComfyUI


@pytest.mark.parametrize("steps, tokens", [(4, 4096), (8, 1152), (30, 6144), (20, 30000), (2, 256)])
def test_ltx_shift_sigmas_properties(steps, tokens):
    terminal = 0.1
    out = flow_shift.ltx_shift_sigmas(steps, tokens, terminal=terminal)
    raw = flow_shift.ltx_shift_sigmas(steps, tokens, stretch=False)
    assert out.dtype == torch.float32 and out.shape == (steps + 1,)
    assert out[0] == 1.0 and out[-1] == 0.0 and raw[0] == 1.0 and raw[-1] == 0.0
    assert bool((out[:-1] > out[1:]).all()) and bool((raw[:-1] > raw[1:]).all())
    assert float(out[-2]) == pytest.approx(terminal, abs=1e-7)
    e_mu = math.exp(flow_shift.ltx_token_shift_mu(tokens))
    t = torch.linspace(1, 0, steps + 1, dtype=F64)[:-1]
    ref = e_mu / (e_mu + (1 / t - 1))
    torch.testing.assert_close(raw[:-1].double(), ref, rtol=0, atol=6e-8)
    one_minus = 1 - ref
    torch.testing.assert_close(out[:-1].double(), 1 - one_minus * (1 - terminal) / one_minus[-1],
                               rtol=0, atol=6e-8)


def test_ltx_shift_sigmas_match_comfyui_ltxvscheduler_numbers():
    # Printed by ComfyUI's LTXVScheduler (float32) for steps=4, defaults, no latent (4096 tokens),
    # and for steps=8, stretch off, a [1,128,3,16,24] latent (1152 tokens).
    comfy_4 = [0.9999998211860657, 0.8670830726623535, 0.6315688490867615, 0.10000002384185791, 0.0]
    comfy_8 = [1.0, 0.949871838092804, 0.8903621435165405, 0.8185656070709229, 0.7302385568618774,
               0.6189296841621399, 0.47432786226272583, 0.2788693606853485, 0.0]
    ours_4 = flow_shift.ltx_shift_sigmas(4, 4096)
    ours_8 = flow_shift.ltx_shift_sigmas(8, 1152, stretch=False)
    torch.testing.assert_close(ours_4.double(), torch.tensor(comfy_4, dtype=F64), rtol=0, atol=5e-7)
    torch.testing.assert_close(ours_8.double(), torch.tensor(comfy_8, dtype=F64), rtol=0, atol=1e-7)


def test_ltx_shift_sigmas_edge_cases():
    torch.testing.assert_close(flow_shift.ltx_shift_sigmas(1, 4096), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="terminal"):
        flow_shift.ltx_shift_sigmas(4, 4096, terminal=0.0)
    with pytest.raises(ValueError, match="steps"):
        flow_shift.ltx_shift_sigmas(0, 4096)
    with pytest.raises(ValueError, match="tokens"):
        flow_shift.ltx_shift_sigmas(4, 0)


def test_split_at_boundary_gives_the_high_noise_steps_to_the_high_expert():
    sigmas = rcm.rcm_sigmas(4, 200.0)  # [0.995, 0.934, 0.853, 0.609, 0]
    high, low = rcm.split_at_boundary(sigmas, 0.9)
    assert torch.equal(high, sigmas[:3]) and torch.equal(low, sigmas[2:])
    high, low = rcm.split_at_boundary(sigmas, 0.999)  # no step that noisy: the high half is empty
    assert high.tolist() == sigmas[:1].tolist() and torch.equal(low, sigmas)
    high, low = rcm.split_at_boundary(sigmas, 0.0)
    assert torch.equal(high, sigmas) and low.tolist() == [0.0]


def test_two_experts_on_split_sigmas_equal_one_run_with_a_switching_model():
    gen = torch.Generator().manual_seed(5)
    high_model, low_model = make_problem(gen), make_problem(gen)
    sigmas = rcm.rcm_sigmas(4, 200.0).double()
    boundary = 0.9
    noises = {round(float(s), 6): torch.randn(64, 6, generator=gen, dtype=F64) for s in sigmas[1:-1]}

    def noise_like(levels):
        return lambda x, i: noises[round(float(levels[i + 1]), 6)]

    def expert(model):
        return lambda x, s: model.consistency(x, s)

    def switching(x, s):
        return (high_model if s >= boundary else low_model).consistency(x, s)

    x_start = torch.randn(64, 6, generator=gen, dtype=F64)
    whole = rcm.sample_rcm(switching, x_start, sigmas, noise_like(sigmas))
    high, low = rcm.split_at_boundary(sigmas, boundary)
    halfway = rcm.sample_rcm(expert(high_model), x_start, high, noise_like(high))
    split = rcm.sample_rcm(expert(low_model), halfway, low, noise_like(low))
    torch.testing.assert_close(split, whole, rtol=0, atol=0)
    other = rcm.sample_rcm(expert(low_model), x_start, sigmas, noise_like(sigmas))
    assert not torch.allclose(other, whole)  # the experts really differ
