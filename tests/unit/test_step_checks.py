"""The pack's sampler loops: one sigma is no step (as in core); a NaN prediction stops at its step, naming it
and whether the latent going in was already bad."""
import pytest
import torch
from turbovideo.samplers import rcm, shortcut
from turbovideo.samplers.step_checks import NonFiniteModelOutput


def _noise(x, i):
    return torch.randn_like(x)


@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_one_sigma_is_no_step(sigma):
    x = torch.randn(1, 4, 2, 3, 3)
    calls = []
    denoise = lambda x, s, *rest: calls.append(s) or torch.zeros_like(x)
    assert torch.equal(rcm.sample_rcm(denoise, x, torch.tensor([sigma]), _noise), x)
    assert torch.equal(shortcut.sample_shortcut(denoise, x, torch.tensor([sigma])), x)
    assert not calls


@pytest.mark.parametrize("sampler", ["rcm", "shortcut"])
@pytest.mark.parametrize("bad_step", [0, 2])
def test_a_non_finite_prediction_stops_at_its_step(sampler, bad_step):
    x = torch.randn(1, 4, 2, 3, 3)
    sigmas = torch.tensor([1.0, 0.75, 0.5, 0.0])
    seen = []

    def denoise(x, s, *rest):
        seen.append(float(s))
        out = x * 0.5
        return torch.full_like(x, float("nan")) if len(seen) == bad_step + 1 else out

    with pytest.raises(NonFiniteModelOutput, match=f"sampling stopped at step {bad_step + 1} of 3 "
                                                   f"\\(sigma {float(sigmas[bad_step]):.4g}\\).*from a finite latent"):
        if sampler == "rcm":
            rcm.sample_rcm(denoise, x, sigmas, _noise, ode=True)
        else:
            shortcut.sample_shortcut(denoise, x, sigmas)
    assert len(seen) == bad_step + 1


def test_a_bad_latent_going_in_is_named_as_the_cause():
    x = torch.randn(1, 4, 2, 3, 3)
    x[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteModelOutput, match="step 1 of 2.*latent going in already held NaN"):
        rcm.sample_rcm(lambda x, s: x * 0.5, x, torch.tensor([1.0, 0.5, 0.0]), _noise)


@pytest.mark.parametrize("sigmas,words", [(torch.tensor([]), "expected a 1-D schedule"),
                                          (torch.ones(2, 2), "expected a 1-D schedule"),
                                          (torch.tensor([1.0, float("nan"), 0.0]), "NaN or infinite")])
def test_unusable_schedules_name_the_sigmas_input(sigmas, words):
    with pytest.raises(ValueError, match=f"sigmas: .*{words}"):
        rcm.sample_rcm(lambda x, s: x, torch.randn(2), sigmas, _noise)


@pytest.mark.parametrize("boundary", [0.0, 1.0])
def test_split_at_the_limits_leaves_one_half_without_steps(boundary):
    sigmas = rcm.rcm_sigmas(4)
    high, low = rcm.split_at_boundary(sigmas, boundary)
    empty, whole = (low, high) if boundary == 0.0 else (high, low)
    assert torch.equal(whole, sigmas) and empty.numel() == 1
    x = torch.randn(1, 4, 2, 3, 3)
    assert torch.equal(rcm.sample_rcm(lambda x, s: x * 0.5, x, empty, _noise), x)
