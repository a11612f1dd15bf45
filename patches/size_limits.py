"""Refuses a request whose output is too big before any work starts, naming the limit.

Two limits: frames x height x width of any output video at most MAX_OUTPUT_PIXELS (2^31, about 257 frames
of 3840x2160); and an output held whole as an IMAGE batch (float32, 12 bytes a pixel) must fit in the RAM
free now, else the streaming node (an MP4, a chunk at a time) is the way.
"""
from __future__ import annotations

import psutil

MAX_OUTPUT_PIXELS = 1 << 31
IMAGE_BYTES_PER_PIXEL = 3 * 4
GIB = 1 << 30


def check_output_size(frames: int, height: int, width: int, input_name: str, streaming_node: str | None = None
                      ) -> None:
    """ValueError naming `input_name` (what sets the size) when the output is over a limit; streaming_node:
    the node to use instead when the output would be an IMAGE batch (None: the output streams)."""
    pixels = frames * height * width
    if pixels > MAX_OUTPUT_PIXELS:
        raise ValueError(f"{input_name}: the output would be {frames} frames of {width}x{height} px = "
                         f"{pixels / 1e9:.2f} G pixels, over the limit of 2^31 = {MAX_OUTPUT_PIXELS / 1e9:.2f} G "
                         f"(about 257 frames of 3840x2160); lower {input_name} or split the video")
    if streaming_node is None:
        return
    needed, free = pixels * IMAGE_BYTES_PER_PIXEL, psutil.virtual_memory().available
    if needed > free:
        raise ValueError(f"{input_name}: the output IMAGE batch ({frames} frames of {width}x{height} px) needs "
                         f"{_size(needed)} of RAM, {_size(free)} are free; use {streaming_node} (writes an MP4 a "
                         f"chunk at a time) or lower {input_name}")


def _size(count: float) -> str:
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / (1 << 20):.0f} MiB"
