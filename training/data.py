"""Training clips from a folder of videos and images (pure: numpy, OpenCV, torch; no comfy).

`VideoFolder(root, frames, height, width, seed)` is a torch Dataset over every video (.mp4 .mov
.mkv .avi .webm, decoded with cv2.VideoCapture) and image (.png .jpg .jpeg .webp) under `root`,
recursively, in sorted path order (the same list on every rank). Item i is
{"frames": float32 (frames, height, width, 3) RGB in [0, 1]}:

- a random temporal window of `frames` consecutive frames;
- a random `height` x `width` crop, the same for all frames; a source whose side is shorter than
  the crop is first resized (bicubic, aspect kept) so that it covers the crop;
- a clip shorter than `frames` is played back and forth (0 1 2 1 0 1 ...) until long enough, so it
  has no jump cut; an image is a 1-frame clip and so becomes a still clip. One warning per file.

The window and crop are drawn from numpy's generator seeded with (seed, index, epoch): the same
item at the same epoch is the same clip on every run and rank; `set_epoch` changes it, like
DistributedSampler.set_epoch.
"""
from __future__ import annotations

import logging
import pathlib

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
log = logging.getLogger(__name__)


def check_clip_size(frames: int, height: int, width: int, time_factor: int = 8, space_factor: int = 32) -> None:
    """LTX-Video's VAE takes 1 + 8k frames and sides that are whole 32 px latent cells."""
    if frames < 1 or (frames - 1) % time_factor:
        below = max(0, (frames - 1) // time_factor) * time_factor + 1
        nearest = f"{below} or {below + time_factor}" if frames > 1 else f"1, {1 + time_factor}, {1 + 2 * time_factor}"
        raise ValueError(f"frames: the VAE needs 1 + {time_factor}k frames, got {frames}; use {nearest}")
    for name, side in (("height", height), ("width", width)):
        if side < space_factor or side % space_factor:
            raise ValueError(f"{name}: must be a positive multiple of {space_factor} px (one latent cell), got {side}")


def list_media(root) -> list[pathlib.Path]:
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder")
    suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in suffixes
                   and not path.name.startswith("."))
    if not files:
        raise ValueError(f"data folder {root} holds no videos ({' '.join(VIDEO_SUFFIXES)}) or images "
                         f"({' '.join(IMAGE_SUFFIXES)})")
    return files


def pingpong_indices(length: int, count: int, start: int) -> np.ndarray:
    """`count` frame indices from `start`, reflecting at both ends of a clip of `length` frames."""
    if length == 1:
        return np.zeros(count, dtype=np.int64)
    period = 2 * (length - 1)
    steps = (start + np.arange(count)) % period
    return np.where(steps < length, steps, period - steps)


def crop_box(height: int, width: int, crop: tuple[int, int], rng: np.random.Generator):
    """(scale, top, left): resize factor that makes the source cover `crop` (1 if it does) and the crop corner."""
    scale = max(1.0, crop[0] / height, crop[1] / width)
    scaled = (max(crop[0], round(height * scale)), max(crop[1], round(width * scale)))
    top = int(rng.integers(0, scaled[0] - crop[0] + 1))
    left = int(rng.integers(0, scaled[1] - crop[1] + 1))
    return scale, scaled, top, left


class VideoFolder(Dataset):
    def __init__(self, root, frames: int, height: int, width: int, seed: int = 0,
                 time_factor: int = 8, space_factor: int = 32):
        check_clip_size(frames, height, width, time_factor, space_factor)
        self.files = list_media(root)
        self.frames, self.size, self.seed, self.epoch = frames, (height, width), seed, 0
        self._lengths: dict[int, int] = {}
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, self.epoch])
        path = self.files[index]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            source = [_read_image(path)]
        else:
            source = self._read_window(index, path, rng)
        if len(source) < self.frames and index not in self._warned:
            self._warned.add(index)
            log.warning("%s: %d frame(s), fewer than frames=%d; played back and forth to fill the clip",
                        path, len(source), self.frames)
        start = int(rng.integers(0, 2 * max(len(source) - 1, 1))) if len(source) < self.frames else 0
        order = pingpong_indices(len(source), self.frames, start)
        scale, scaled, top, left = crop_box(*source[0].shape[:2], self.size, rng)
        clip = np.empty((self.frames, *self.size, 3), dtype=np.float32)
        cropped = [_crop(frame, scale, scaled, top, left, self.size) for frame in source]
        for slot, source_index in enumerate(order):
            clip[slot] = cropped[source_index]
        return {"frames": torch.from_numpy(clip)}

    def _read_window(self, index: int, path: pathlib.Path, rng: np.random.Generator) -> list[np.ndarray]:
        """The decoded frames of a random window of `frames` (all frames when the video is shorter)."""
        length = self._lengths.get(index)
        if length is None:
            length = self._lengths[index] = _count_frames(path)
        start = int(rng.integers(0, length - self.frames + 1)) if length > self.frames else 0
        frames = _read_frames(path, start, self.frames)
        if not frames and start > 0:  # the container over-reported its length
            frames = _read_frames(path, 0, self.frames)
        if not frames:
            raise ValueError(f"{path}: OpenCV decoded no frames; the file is damaged or its codec is not "
                             "supported by this OpenCV build (convert it to H.264 .mp4 or remove it)")
        return frames


def _read_image(path: pathlib.Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: OpenCV cannot read this image; the file is damaged or not a "
                         f"{path.suffix} image (remove it from the data folder)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _open(path: pathlib.Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video; the file is damaged or its container is not "
                         "supported by this OpenCV build (convert it to H.264 .mp4 or remove it)")
    return capture


def _count_frames(path: pathlib.Path) -> int:
    capture = _open(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # some containers do not store a count: decode to count
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    return max(count, 1)


def _read_frames(path: pathlib.Path, start: int, count: int) -> list[np.ndarray]:
    capture = _open(path)
    frames = []
    try:
        for _ in range(start):  # grab() skips exactly; seeking by position is not frame-exact for all codecs
            if not capture.grab():
                return []
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return frames


def _crop(frame: np.ndarray, scale: float, scaled: tuple[int, int], top: int, left: int,
          size: tuple[int, int]) -> np.ndarray:
    if scale > 1.0:
        frame = cv2.resize(frame, (scaled[1], scaled[0]), interpolation=cv2.INTER_CUBIC)
    window = frame[top:top + size[0], left:left + size[1]]
    return window.astype(np.float32) / 255.0
