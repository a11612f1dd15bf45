"""Colour correction (samplers/color_correction.py) against float64 references on fresh random frames."""
import pytest
import torch
from turbovideo.samplers import color_correction as cc


def frames(seed, shape=(3, 24, 20, 3), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)


def test_adain_moves_mean_and_std_to_the_reference():
    out, ref = frames(1) * 0.5 + 0.3, frames(2) * 0.8
    fixed = cc.adain(out, ref)
    torch.testing.assert_close(fixed.mean(dim=(1, 2)), ref.mean(dim=(1, 2)), atol=1e-12, rtol=0)
    std_o = out.std(dim=(1, 2), correction=0)
    expected_std = ref.std(dim=(1, 2), correction=0) * std_o / (std_o + cc.EPS)  # eps in the divisor
    torch.testing.assert_close(fixed.std(dim=(1, 2), correction=0), expected_std, atol=1e-12, rtol=0)
    # the shape of the signal is kept: per frame/channel an increasing affine map of the output
    flat_o, flat_f = out[0, ..., 1].flatten(), fixed[0, ..., 1].flatten()
    assert torch.equal(flat_o.argsort(), flat_f.argsort())


def test_adain_float32_matches_float64():
    out, ref = frames(3), frames(4)
    got = cc.adain(out.float(), ref.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), cc.adain(out, ref), atol=2e-6, rtol=0)


def reference_low_band(x, levels):
    """Loops over pixels: the a-trous blur written out with explicit clamped indices (float64)."""
    x = x.clone()
    n, h, w, c = x.shape
    for level in range(levels):
        step = 2 ** level
        for axis, size in ((1, h), (2, w)):
            idx = torch.arange(size)
            lo, hi = (idx - step).clamp(0, size - 1), (idx + step).clamp(0, size - 1)
            x = 0.25 * x.index_select(axis, lo) + 0.5 * x + 0.25 * x.index_select(axis, hi)
    return x


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_low_band_matches_the_written_out_pyramid(levels):
    x = frames(5)
    torch.testing.assert_close(cc.low_band(x, levels), reference_low_band(x, levels), atol=1e-12, rtol=0)


def test_wavelet_keeps_output_detail_and_takes_reference_colour():
    out, ref = frames(6) * 0.6 + torch.tensor([0.3, 0.0, 0.2], dtype=torch.float64), frames(7)
    fixed = cc.wavelet(out, ref, levels=4)
    expected = out - reference_low_band(out, 4) + reference_low_band(ref, 4)
    torch.testing.assert_close(fixed, expected, atol=1e-12, rtol=0)
    # a colour cast (constant per channel) on top of the reference is removed exactly
    cast = ref + torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    torch.testing.assert_close(cc.wavelet(cast, ref), ref, atol=1e-12, rtol=0)
    # and the mean per frame/channel moves to the reference's (replicated borders keep it only roughly)
    err_before = (out.mean(dim=(1, 2)) - ref.mean(dim=(1, 2))).abs().max()
    err_after = (fixed.mean(dim=(1, 2)) - ref.mean(dim=(1, 2))).abs().max()
    assert err_after < 0.2 * err_before


def test_correct_dispatch_and_errors():
    out, ref = frames(8), frames(9)
    assert torch.equal(cc.correct(out, ref, "none"), out)
    torch.testing.assert_close(cc.correct(out, ref, "adain"), cc.adain(out, ref))
    with pytest.raises(ValueError, match="color_correction"):
        cc.correct(out, ref, "histogram")
    with pytest.raises(ValueError, match="one shape"):
        cc.correct(out, ref[:, :-1], "adain")
