"""Frame blocks streamed into an H.264 MP4 with PyAV, handed on as ComfyUI's VIDEO type.

Each block is converted to 8-bit and encoded as it arrives, so the file grows while the float32
frames never exist all at once. An AUDIO input becomes the file's AAC soundtrack, cut to the video's
length. The result is a VideoFromFile: core SaveVideo copies its packets into the output folder without
re-encoding (same container, same codec).
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from fractions import Fraction

import av
import torch
from comfy_api.latest import InputImpl

CODEC = "libx264"  # what ComfyUI's own VideoFromComponents writes (as 'h264'), so players agree
# No look-ahead or B-frame queue (zerolatency): the encoder holds ~10 MB instead of ~30-60 MB of queued
# frames at 512x512, and veryfast is ~3x faster than the default preset; files are somewhat bigger at
# the same crf, which sets the quality.
X264_OPTIONS = {"preset": "veryfast", "tune": "zerolatency"}
AUDIO_CODEC = "aac"  # what core's video writer muxes
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}


class VideoFileWriter:
    """Context manager; write() takes float frames (n, H, W, 3) in [0, 1]. A failed write removes the file."""

    def __init__(self, path: str, frame_rate: float, crf: int = 19, audio: dict | None = None):
        self.path = path
        self.frame_rate = Fraction(round(frame_rate * 1000), 1000)
        self.crf = crf
        self.frames = 0
        self.audio = audio  # ComfyUI AUDIO {"waveform": [B, channels, samples], "sample_rate"}: muxed as AAC
        self._container = None
        self._stream = None
        self._audio_stream = None

    def __enter__(self):
        self._container = av.open(self.path, mode="w")
        return self

    def _open_stream(self, height: int, width: int):
        if height % 2 or width % 2:
            raise ValueError(f"H.264 (yuv420p) needs an even frame size, got {width}x{height}")
        options = {**X264_OPTIONS, "crf": str(self.crf)}
        self._stream = self._container.add_stream(CODEC, rate=self.frame_rate, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        if self.audio is not None:  # every stream exists before the first packet is muxed
            rate = int(self.audio["sample_rate"])
            self._audio_stream = self._container.add_stream(AUDIO_CODEC, rate=rate, layout=_layout(self.audio))

    def _mux_audio(self):
        """The soundtrack, cut to the video's length (as core's video writer does), after the last frame."""
        rate = int(self.audio["sample_rate"])
        samples = math.ceil(rate * self.frames / self.frame_rate)
        waveform = self.audio["waveform"][0, :, :samples].float().contiguous().cpu().numpy()
        frame = av.AudioFrame.from_ndarray(waveform, format="fltp", layout=_layout(self.audio))
        frame.sample_rate = rate
        self._container.mux(self._audio_stream.encode(frame))
        self._container.mux(self._audio_stream.encode(None))

    def write(self, frames: torch.Tensor):
        if self._stream is None:
            self._open_stream(frames.shape[1], frames.shape[2])
        for image in frames:  # one frame at a time: no 8-bit copy of the whole block
            rgb = image[..., :3].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        self.frames += len(frames)

    def __exit__(self, kind, error, traceback):
        try:
            if error is None and self._stream is not None:
                self._container.mux(self._stream.encode(None))  # flush delayed frames
                if self._audio_stream is not None:
                    self._mux_audio()
        finally:
            self._container.close()
        if error is not None or self._stream is None:
            # a partial or empty file is no video; PyAV creates the file only on the first write
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            if error is None:
                raise ValueError("no frames were written to the video file")
        return False


def _layout(audio: dict) -> str:
    channels = audio["waveform"].shape[1]
    if channels not in AUDIO_LAYOUTS:
        raise ValueError(f"audio: {channels} channels; the MP4 soundtrack takes mono or stereo")
    return AUDIO_LAYOUTS[channels]


def write_video(path: str, blocks: Iterable[torch.Tensor], frame_rate: float, crf: int = 19,
                audio: dict | None = None) -> int:
    """Encodes every block in order into `path` (with `audio` as its soundtrack); returns the frames written."""
    blocks = iter(blocks)
    with VideoFileWriter(path, frame_rate, crf, audio) as writer:
        while (block := next(blocks, None)) is not None:
            writer.write(block)
            del block  # released before the producer computes the next block
    return writer.frames


def video_from_file(path: str):
    return InputImpl.VideoFromFile(path)
