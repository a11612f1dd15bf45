"""Training-free latent guidance math: AdaIN, upsampling and re-noising against float64 formulas."""
import pytest
import torch
from turbovideo.samplers import latent_guidance as lg


def test_adain_matches_float64_reference_and_blends():
    latent, reference = torch.randn(2, 5, 2, 6, 6) * 3 + 1, torch.randn(2, 5, 2, 3, 3) * 0.5 - 2
    x, r = latent.double(), reference.double()
    dims = (2, 3, 4)
    full = (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + lg.EPS) * r.std(dims, keepdim=True) \
        + r.mean(dims, keepdim=True)
    torch.testing.assert_close(lg.adain(latent, reference).double(), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg.adain(latent, reference, 0.25).double(), 0.75 * x + 0.25 * full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg.adain(latent, reference, 0.0), latent)


def _double_1d(x, dim):
    """Half-pixel 2x linear upsampling along dim, edges clamped:
    out[2i] = x[i-1]/4 + 3x[i]/4, out[2i+1] = 3x[i]/4 + x[i+1]/4."""
    n = x.shape[dim]
    prev = x.index_select(dim, torch.tensor([max(i - 1, 0) for i in range(n)]))
    nxt = x.index_select(dim, torch.tensor([min(i + 1, n - 1) for i in range(n)]))
    even, odd = 0.25 * prev + 0.75 * x, 0.75 * x + 0.25 * nxt
    return torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)


def test_upsample_matches_float64_reference_and_keeps_frames():
    latent = torch.randn(1, 4, 3, 5, 7)
    out = lg.upsample_latent(latent, 2.0)
    assert out.shape == (1, 4, 3, 10, 14)
    expected = _double_1d(_double_1d(latent.double(), 3), 4)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_renoise_for_a_sampler_with_disabled_noise():
    latent, noise, sigma = torch.randn(1, 3, 2, 4, 4), torch.randn(1, 3, 2, 4, 4), 0.9094
    noised = lg.renoise(latent, noise, sigma)
    torch.testing.assert_close(noised.double(), sigma * noise.double() + (1 - sigma) * latent.double())
    handed = lg.for_disabled_noise(noised, sigma)
    torch.testing.assert_close((1 - sigma) * handed, noised)  # what KSAMPLER starts from with zero noise
    with pytest.raises(ValueError, match="must start below sigma 1"):
        lg.for_disabled_noise(noised, 1.0)
