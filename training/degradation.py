"""RealESRGAN-style degradation of a clip: HR frames -> LR frames (pure: numpy, OpenCV).

First order: blur (isotropic or anisotropic Gaussian kernel, random size, spread and angle) ->
random resize (up, down or kept; area / bilinear / bicubic) -> noise (Gaussian or Poisson, colour
or grey) -> JPEG (cv2.imencode at a random quality). Optional second order: the same chain with
milder ranges, ending with the resize to the target size and a final JPEG in random order.
Without it the first-order chain ends with the resize to the target size.

All random PARAMETERS are drawn once per clip (`sample_params`), so every frame gets the same blur
kernel, sizes, noise level and JPEG quality and the LR clip does not flicker; only the noise
realisation is drawn per frame (sensor noise is not frozen). Sinc (ringing) filters of the
original recipe are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


@dataclass(frozen=True)
class OrderSettings:
    """Ranges for one order of the chain; a probability of 0 switches a stage off."""
    blur_prob: float = 1.0
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    anisotropic_prob: float = 0.5
    resize_prob: float = 1.0
    resize_modes: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_prob: float = 0.5  # otherwise Poisson
    gaussian_sigma: tuple[float, float] = (1.0, 30.0)  # on the 0-255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_quality: tuple[int, int] = (30, 95)


SECOND_ORDER = OrderSettings(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_modes=(0.3, 0.4, 0.3),
                             resize_range=(0.3, 1.2), gaussian_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5))


@dataclass(frozen=True)
class DegradationSettings:
    first: OrderSettings = OrderSettings()
    second: OrderSettings = SECOND_ORDER
    second_order_prob: float = 1.0


@dataclass(frozen=True)
class Noise:
    gaussian: bool
    level: float  # Gaussian sigma on [0, 1] or Poisson scale
    gray: bool


@dataclass(frozen=True)
class OrderParams:
    kernel: np.ndarray | None
    resize: tuple[float, int] | None  # (factor, interpolation)
    noise: Noise | None
    jpeg: int | None


@dataclass(frozen=True)
class DegradationParams:
    first: OrderParams
    second: OrderParams | None
    final_interpolation: int
    jpeg_last: bool


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Normalised (size, size) Gaussian with spreads sigma_x, sigma_y along axes rotated by theta."""
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    covariance = rotation @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rotation.T
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    points = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)  # (row, col, [x, y])
    energy = np.einsum("...i,ij,...j->...", points, np.linalg.inv(covariance), points)
    kernel = np.exp(-0.5 * energy)
    return (kernel / kernel.sum()).astype(np.float32)


def _sample_kernel(rng: np.random.Generator, s: OrderSettings) -> np.ndarray | None:
    if rng.random() >= s.blur_prob:
        return None
    size = int(rng.choice(s.kernel_sizes))
    sigma_x = float(rng.uniform(*s.blur_sigma))
    if rng.random() < s.anisotropic_prob:
        return gaussian_kernel(size, sigma_x, float(rng.uniform(*s.blur_sigma)), float(rng.uniform(0, math.pi)))
    return gaussian_kernel(size, sigma_x, sigma_x, 0.0)


def _sample_resize(rng: np.random.Generator, s: OrderSettings) -> tuple[float, int] | None:
    if rng.random() >= s.resize_prob:
        return None
    mode = rng.choice(3, p=np.asarray(s.resize_modes) / sum(s.resize_modes))
    factor = (float(rng.uniform(1.0, s.resize_range[1])), float(rng.uniform(s.resize_range[0], 1.0)), 1.0)[mode]
    return factor, int(rng.choice(INTERPOLATIONS))


def _sample_noise(rng: np.random.Generator, s: OrderSettings) -> Noise | None:
    if rng.random() >= s.noise_prob:
        return None
    gaussian = bool(rng.random() < s.gaussian_prob)
    level = rng.uniform(*s.gaussian_sigma) / 255.0 if gaussian else rng.uniform(*s.poisson_scale)
    return Noise(gaussian, float(level), bool(rng.random() < s.gray_noise_prob))


def _sample_order(rng: np.random.Generator, s: OrderSettings) -> OrderParams:
    kernel, resize, noise = _sample_kernel(rng, s), _sample_resize(rng, s), _sample_noise(rng, s)
    jpeg = int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)) if rng.random() < s.jpeg_prob else None
    return OrderParams(kernel, resize, noise, jpeg)


def sample_params(rng: np.random.Generator, settings: DegradationSettings = DegradationSettings()) -> DegradationParams:
    """One draw of every random parameter; shared by all frames of a clip."""
    first = _sample_order(rng, settings.first)
    second = _sample_order(rng, settings.second) if rng.random() < settings.second_order_prob else None
    return DegradationParams(first, second, int(rng.choice(INTERPOLATIONS)), bool(rng.random() < 0.5))


def blur(frame: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def resize(frame: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    return cv2.resize(frame, (size[1], size[0]), interpolation=interpolation)


def add_noise(frame: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """Gaussian: + N(0, level^2). Poisson: + level * (Poisson(255 x) / 255 - x). Grey: one field for RGB."""
    shape = frame.shape[:2] + ((1,) if noise.gray else frame.shape[2:])
    if noise.gaussian:
        field = rng.standard_normal(shape) * noise.level
    else:
        base = frame.mean(axis=2, keepdims=True) if noise.gray else frame
        counts = np.clip(base, 0.0, 1.0) * 255.0
        field = noise.level * (rng.poisson(counts) - counts) / 255.0
    return np.clip(frame + field.astype(np.float32), 0.0, 1.0)


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """RGB float [0, 1] through an 8-bit JPEG round trip at `quality`."""
    pixels = cv2.cvtColor(np.rint(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a frame")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _apply_order(frame: np.ndarray, order: OrderParams, base: tuple[int, int], rng, final_jpeg: bool) -> np.ndarray:
    if order.kernel is not None:
        frame = blur(frame, order.kernel)
    if order.resize is not None:
        factor, interpolation = order.resize
        frame = resize(frame, (max(1, round(base[0] * factor)), max(1, round(base[1] * factor))), interpolation)
    if order.noise is not None:
        frame = add_noise(frame, order.noise, rng)
    if final_jpeg and order.jpeg is not None:
        frame = jpeg(frame, order.jpeg)
    return frame


def _to_size(frame: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    return frame if frame.shape[:2] == tuple(size) else resize(frame, size, interpolation)


def degrade_frame(frame: np.ndarray, params: DegradationParams, target: tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """One (H, W, 3) float32 frame -> (target, 3). First-order resize factors are relative to the
    HR size, second-order ones to the target size (as in RealESRGAN)."""
    frame = _apply_order(frame, params.first, frame.shape[:2], rng, final_jpeg=True)
    second = params.second
    if second is not None:
        frame = _apply_order(frame, second, target, rng, final_jpeg=False)
        if params.jpeg_last:
            frame = _to_size(frame, target, params.final_interpolation)
        if second.jpeg is not None:
            frame = jpeg(frame, second.jpeg)
    return np.clip(_to_size(frame, target, params.final_interpolation), 0.0, 1.0)


def lr_size(height: int, width: int, scale: float) -> tuple[int, int]:
    size = (round(height / scale), round(width / scale))
    if scale < 1 or min(size) < 1 or abs(size[0] * scale - height) > 1e-6 or abs(size[1] * scale - width) > 1e-6:
        raise ValueError(f"scale: {height}x{width} frames must divide by scale {scale} (>= 1) into whole pixels; "
                         "pick a crop size that is a multiple of the scale")
    return size


def degrade(frames, scale: float, rng: np.random.Generator,
            settings: DegradationSettings = DegradationSettings(), params: DegradationParams | None = None):
    """(F, H, W, 3) float in [0, 1] (numpy or torch) -> (F, H/scale, W/scale, 3) float32 of the same kind."""
    is_torch = isinstance(frames, torch.Tensor)
    array = frames.detach().cpu().float().numpy() if is_torch else np.asarray(frames, dtype=np.float32)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames: expected (frames, height, width, 3), got {tuple(array.shape)}")
    target = lr_size(array.shape[1], array.shape[2], scale)
    params = params if params is not None else sample_params(rng, settings)
    out = np.stack([degrade_frame(np.ascontiguousarray(frame), params, target, rng) for frame in array])
    return torch.from_numpy(out) if is_torch else out
