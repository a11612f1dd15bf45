"""training/data.py: VideoFolder over procedural videos and images written to a temporary folder.

Sources are lossless (FFV1 .mkv, PNG) so a returned clip must equal a window and crop of the source
exactly; each source pixel encodes its frame (R), column (G) and row (B), so the window and crop are
read back from the clip itself. One lossy .mp4 checks the decoder path with a tolerance of 8/255.
"""
import logging

import cv2
import numpy as np
import pytest
import torch
from turbovideo.training import data

RNG = np.random.default_rng()


def _coded_video(frames: int, height: int, width: int) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB: R = 7 + 9 f, G = column, B = row (+ a random constant per video)."""
    offset = int(RNG.integers(0, 20))
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[..., 0] = (7 + 9 * np.arange(frames))[:, None, None]
    video[..., 1] = (np.arange(width) + offset)[None, None, :]
    video[..., 2] = (np.arange(height) + offset)[None, :, None]
    return video


def _write_video(path, video: np.ndarray, codec: str = "FFV1") -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 25, (video.shape[2], video.shape[1]))
    assert writer.isOpened(), f"OpenCV cannot write {codec} here"
    for frame in video:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _window_of(clip: torch.Tensor, video: np.ndarray) -> tuple[int, int, int]:
    """(first frame, top, left) of the clip in the coded video, read from the clip's first pixel."""
    pixel = np.rint(clip[0, 0, 0].numpy() * 255).astype(int)
    return (pixel[0] - 7) // 9, pixel[2] - int(video[0, 0, 0, 2]), pixel[1] - int(video[0, 0, 0, 1])


def test_train_video_clip_is_an_exact_window_and_crop(tmp_path):
    video = _coded_video(30, 90, 120)
    _write_video(tmp_path / "a.mkv", video)
    dataset = data.VideoFolder(tmp_path, frames=9, height=64, width=96, seed=int(RNG.integers(1 << 30)))
    clip = dataset[0]["frames"]
    assert clip.dtype == torch.float32 and clip.shape == (9, 64, 96, 3)
    first, top, left = _window_of(clip, video)
    expected = video[first:first + 9, top:top + 64, left:left + 96].astype(np.float32) / 255.0
    assert expected.shape == clip.shape
    torch.testing.assert_close(clip, torch.from_numpy(expected), rtol=0, atol=1e-7)


def test_train_windows_and_crops_are_deterministic_per_seed_index_epoch(tmp_path):
    video = _coded_video(40, 70, 100)
    _write_video(tmp_path / "a.mkv", video)
    seed = int(RNG.integers(1 << 30))
    one = data.VideoFolder(tmp_path, 9, 64, 64, seed=seed)
    two = data.VideoFolder(tmp_path, 9, 64, 64, seed=seed)
    assert torch.equal(one[0]["frames"], two[0]["frames"])
    windows = set()
    for epoch in range(8):
        one.set_epoch(epoch)
        windows.add(_window_of(one[0]["frames"], video))
    assert len(windows) >= 4, f"8 epochs gave only {len(windows)} distinct windows"


def test_train_mp4_is_decoded_within_codec_error(tmp_path):
    video = _coded_video(12, 64, 64)
    _write_video(tmp_path / "a.mp4", video, codec="mp4v")
    clip = data.VideoFolder(tmp_path, 9, 64, 64, seed=1)[0]["frames"]
    first = int(round((clip[0].mean(dim=(0, 1))[0].item() * 255 - 7) / 9))
    expected = torch.from_numpy(video[first:first + 9].astype(np.float32) / 255.0)
    assert (clip - expected).abs().mean() < 8 / 255


def test_train_short_video_plays_back_and_forth_with_a_warning(tmp_path, caplog):
    video = _coded_video(4, 64, 64)
    _write_video(tmp_path / "short.mkv", video)
    with caplog.at_level(logging.WARNING):
        clip = data.VideoFolder(tmp_path, 17, 64, 64, seed=int(RNG.integers(1 << 30)))[0]["frames"]
    assert "short.mkv" in caplog.text and "4 frame(s)" in caplog.text
    order = np.rint((clip[:, 0, 0, 0].numpy() * 255 - 7) / 9).astype(int)
    assert set(order) == {0, 1, 2, 3}
    assert np.all(np.abs(np.diff(order)) == 1), f"jump in the looped clip: {order}"


def test_train_image_is_resized_to_cover_the_crop_and_held_still(tmp_path):
    image = RNG.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "small.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    clip = data.VideoFolder(tmp_path, 9, 64, 64, seed=3)[0]["frames"]
    assert clip.shape == (9, 64, 64, 3)
    assert all(torch.equal(clip[0], frame) for frame in clip[1:])
    covered = cv2.resize(image, (80, 64), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    matches = [left for left in range(17) if np.array_equal(covered[:, left:left + 64], clip[0].numpy())]
    assert len(matches) == 1


def test_train_folder_lists_media_recursively_and_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.png", "a.jpg", "c.webp", "notes.txt", ".hidden.png"):
        path = tmp_path / name
        if path.suffix == ".txt":
            path.write_text("not media")
        else:
            cv2.imwrite(str(path), RNG.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))
    names = [path.relative_to(tmp_path).as_posix() for path in data.list_media(tmp_path)]
    assert names == ["a.jpg", "c.webp", "sub/b.png"]
    batch = next(iter(torch.utils.data.DataLoader(data.VideoFolder(tmp_path, 1, 32, 32), batch_size=3)))
    assert batch["frames"].shape == (3, 1, 32, 32, 3)


@pytest.mark.parametrize("frames, height, width, message", [
    (10, 64, 64, "use 9 or 17"), (0, 64, 64, r"got 0; use 1, 9, 17"), (9, 48, 64, "height"), (9, 64, 0, "width")])
def test_train_clip_sizes_are_validated(tmp_path, frames, height, width, message):
    with pytest.raises(ValueError, match=message):
        data.VideoFolder(tmp_path, frames, height, width)


def test_train_empty_or_missing_folder_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no media here")
    with pytest.raises(ValueError, match="holds no videos"):
        data.VideoFolder(tmp_path, 9, 64, 64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.VideoFolder(tmp_path / "missing", 9, 64, 64)


@pytest.mark.parametrize("name", ["broken.mp4", "broken.png"])
def test_train_unreadable_file_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(RNG.integers(0, 256, size=300, dtype=np.uint8).tobytes())
    dataset = data.VideoFolder(tmp_path, 9, 64, 64)
    with pytest.raises(ValueError, match=name):
        dataset[0]
