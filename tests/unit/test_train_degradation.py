"""training/degradation.py: RealESRGAN-style degradation.

The blur kernel and the blur are checked against float64 references (kernel moments within 1e-3 of
the requested covariance; blur within 1e-5 of a float64 correlation with reflected borders); each
stage moves a statistic in the expected direction by a margin far above its sampling noise; noise
variances within 5 % of theory (about 8 standard errors on 49k samples).
"""
import math

import numpy as np
import pytest
import torch
from turbovideo.training import degradation as dg

RNG = np.random.default_rng()
OFF = dg.OrderSettings(blur_prob=0.0, resize_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)


def _texture(height=64, width=64, cells=8) -> np.ndarray:
    """A smooth random RGB image in [0.1, 0.9] with fine detail on top (not flat, not white noise)."""
    import cv2

    coarse = RNG.uniform(0.1, 0.9, size=(cells, cells, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + 0.05 * RNG.standard_normal((height, width, 3)).astype(np.float32), 0.0, 1.0)


def _high_frequency_energy(image: np.ndarray) -> float:
    laplacian = 4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
    return float(np.mean(laplacian.astype(np.float64) ** 2))


def _only(**first) -> dg.DegradationSettings:
    from dataclasses import replace

    return dg.DegradationSettings(first=replace(OFF, **first), second=OFF, second_order_prob=0.0)


@pytest.mark.parametrize("sigma_x, sigma_y", [(1.5, 1.5), (2.5, 0.8)])
def test_train_kernel_matches_the_requested_covariance(sigma_x, sigma_y):
    theta = float(RNG.uniform(0, math.pi))
    kernel = dg.gaussian_kernel(41, sigma_x, sigma_y, theta).astype(np.float64)
    axis = np.arange(41) - 20.0
    x, y = np.meshgrid(axis, axis, indexing="xy")
    xy = np.sum(kernel * x * y)
    moments = np.array([[np.sum(kernel * x * x), xy], [xy, np.sum(kernel * y * y)]])
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    expected = rotation @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rotation.T
    assert abs(kernel.sum() - 1.0) < 1e-6
    np.testing.assert_allclose(moments, expected, atol=1e-3)


def test_train_blur_equals_float64_correlation_with_reflected_borders():
    image = _texture(24, 20)
    kernel = dg.gaussian_kernel(7, 1.3, 0.7, float(RNG.uniform(0, math.pi)))
    padded = np.pad(image.astype(np.float64), ((3, 3), (3, 3), (0, 0)), mode="reflect")
    expected = np.zeros(image.shape)
    for dy in range(7):
        for dx in range(7):
            expected += kernel[dy, dx].astype(np.float64) * padded[dy:dy + 24, dx:dx + 20]
    np.testing.assert_allclose(dg.blur(image, kernel), expected, atol=1e-5, rtol=0)


def test_train_blur_lowers_high_frequency_energy():
    image = _texture()
    out = dg.degrade(image[None], 1, RNG, _only(blur_prob=1.0, blur_sigma=(1.5, 2.5)))[0]
    assert _high_frequency_energy(out) < 0.3 * _high_frequency_energy(image)


@pytest.mark.parametrize("gaussian, gray", [(True, False), (True, True), (False, False)])
def test_train_noise_raises_the_variance_of_a_flat_patch(gaussian, gray):
    flat = np.full((128, 128, 3), 0.5, dtype=np.float32)
    level = 0.04 if gaussian else 2.0
    out = dg.add_noise(flat, dg.Noise(gaussian, level, gray), RNG).astype(np.float64)
    expected = level ** 2 if gaussian else level ** 2 * 127.5 / 255.0 ** 2  # Poisson variance = mean count
    assert abs(out.var() / expected - 1.0) < 0.05
    assert abs(out.mean() - 0.5) < 0.01
    channels_equal = np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert channels_equal == gray


def _blockiness(image: np.ndarray) -> float:
    """Mean |horizontal step| across 8 px block borders over the mean elsewhere (1 for no block structure)."""
    steps = np.abs(np.diff(image.astype(np.float64).mean(axis=2), axis=1))
    at_border = (np.arange(steps.shape[1]) % 8) == 7
    return float(steps[:, at_border].mean() / steps[:, ~at_border].mean())


def test_train_jpeg_creates_8x8_block_energy():
    image = _texture(128, 128, cells=12)
    out = dg.degrade(image[None], 1, RNG, _only(jpeg_prob=1.0, jpeg_quality=(8, 12)))[0]
    assert _blockiness(image) < 1.15
    assert _blockiness(out) > 1.5


def test_train_degrade_shapes_range_and_types():
    clip = np.stack([_texture(64, 96) for _ in range(3)])
    out = dg.degrade(clip, 4, RNG)
    assert out.shape == (3, 16, 24, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    tensor_out = dg.degrade(torch.from_numpy(clip), 2, RNG)
    assert isinstance(tensor_out, torch.Tensor) and tensor_out.shape == (3, 32, 48, 3)
    with pytest.raises(ValueError, match="scale"):
        dg.degrade(clip, 5, RNG)


def test_train_degrade_is_deterministic_per_seed():
    clip = np.stack([_texture() for _ in range(2)])
    seed = int(RNG.integers(1 << 30))
    one = dg.degrade(clip, 2, np.random.default_rng(seed))
    two = dg.degrade(clip, 2, np.random.default_rng(seed))
    other = dg.degrade(clip, 2, np.random.default_rng(seed + 1))
    assert np.array_equal(one, two)
    assert not np.allclose(one, other, atol=1e-3)


def test_train_all_frames_of_a_clip_share_the_parameters():
    """A still clip must stay still: with noise off every frame degrades identically, for many draws."""
    from dataclasses import replace

    quiet = dg.DegradationSettings(first=replace(dg.OrderSettings(), noise_prob=0.0),
                                   second=replace(dg.SECOND_ORDER, noise_prob=0.0))
    still = np.repeat(_texture(64, 64)[None], 4, axis=0)
    for _ in range(6):
        out = dg.degrade(still, 2, RNG, quiet)
        assert all(np.array_equal(out[0], frame) for frame in out[1:])
    noisy = dg.degrade(still, 2, np.random.default_rng(int(RNG.integers(1 << 30))))
    residual_std = [float(np.std(frame - noisy.mean(axis=0))) for frame in noisy]
    assert max(residual_std) < 1.5 * min(residual_std) + 1e-3
