"""Chunked, tiled and streaming encode/decode through a ComfyUI video VAE (comfy.sd.VAE).

Every piece goes through the VAE's own public `decode` / `encode`, so loading, dtype, offloading and
the model-specific pre/post-processing stay ComfyUI's; this module only cuts the video into
temporal chunks that respect the causal first latent (samplers/video_chunks.py), cuts frames into
spatial tiles, and blends the pieces back with smooth weights. A VAE whose family carries its causal
state between calls (SeedVR2) is cut into consecutive chunks that continue that state, one per tile, so
its chunks add up to the whole call; only its spatial tiles are blended. Between pieces it honours the stop
button, releases cached device memory and advances one progress bar.

Decoding is a generator of finished pixel-frame blocks: a block is yielded as soon as no later
chunk contributes to it, so a consumer that writes blocks to a file holds about one chunk of frames.

Some VAEs draw random numbers when decoding (core's LTX-2 VideoVAE mixes fresh noise from torch's global
RNG into the latent at every call): with `ChunkOptions.seed` the k-th decode call of one decode runs with
torch's RNG forked and seeded to seed + k, so the same seed and plan give the same frames and the caller's
RNG state is left as it was; without it each call draws from ComfyUI's global RNG, as core's VAEDecode does.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import comfy.model_management
import comfy.utils
import torch

from ..models.checkpoint_files import all_finite
from ..samplers import video_chunks as vc
from . import families

MIB = 1024 * 1024
FRAMES_KEY = "turbovideo_frames"  # LATENT dict key: frames per item before 'pad' (decode cuts back to it)
FLOAT_BYTES = 4  # pieces come back as float32 on ComfyUI's intermediate device


@dataclass(frozen=True)
class ChunkOptions:
    """Sizes in latent units; None = chosen from the memory budget (None = what the device has free)."""
    budget_bytes: float | None = None
    frames: int | None = None
    tile: int | None = None
    overlap_frames: int = 2
    overlap_tile: int = 2
    seed: int | None = None  # decode only: the seed of the RNG each VAE call runs with (module docstring)


@dataclass(frozen=True)
class VideoVAE:
    time_factor: int
    space_factor: int
    channels: int
    causal_encoder: bool
    causal_decoder: bool
    carried: families.CarriedState | None = None  # continues its causal state from chunk to chunk
    pixel_multiple: int = 1
    name: str = "this VAE"


@dataclass(frozen=True)
class Plan:
    chunks: list  # vc.TemporalChunk
    tiles: list  # (latent-unit tile, pixel-unit tile) pairs, same grid
    sizes: vc.ChunkSizes
    seed: int | None = None

    @property
    def steps(self) -> int:
        return len(self.chunks) * len(self.tiles)


def video_vae(vae) -> VideoVAE:
    """Geometry of a video VAE, or a ValueError that names the input and the fix."""
    time_factor = vae.temporal_compression_decode() if getattr(vae, "latent_dim", 2) == 3 else None
    if not time_factor:
        raise ValueError("vae: this is not a video VAE (no temporal compression); connect an LTX-Video, Wan or "
                         "SeedVR2 VAE, or use the core VAEDecode / VAEEncode nodes for images")
    model = vae.first_stage_model
    family = families.vae_family(vae)  # None: a video VAE the pack has no rules for; read its decoder's flag
    causal_encoder = family is not None and family.causal_encoder
    causal_decoder = family.causal_decoder if family is not None else None
    if causal_decoder is None:
        causal_decoder = bool(getattr(getattr(model, "decoder", None), "causal", False))
    if family is None:
        return VideoVAE(time_factor, vae.spacial_compression_decode(), vae.latent_channels, causal_encoder,
                        causal_decoder)
    return VideoVAE(time_factor, vae.spacial_compression_decode(), vae.latent_channels, causal_encoder,
                    causal_decoder, family.carried, family.pixel_multiple, family.name)


def chunk_options(vae, budget_mb: int, chunk_frames: int, chunk_overlap: int, tile_size: int,
                  tile_overlap: int) -> ChunkOptions:
    """Node widgets (video frames, pixels, MiB; 0 = auto) -> ChunkOptions in latent units.

    chunk_frames rounds down to 1 + f k frames (k + 1 latent frames); overlaps round up to whole
    latent frames / latent pixels, so a non-zero overlap is never lost.
    """
    info = video_vae(vae)
    f, s = info.time_factor, info.space_factor
    frames = None if chunk_frames == 0 else 1 + (max(chunk_frames, 1) - 1) // f
    tile = None if tile_size == 0 else max(1, tile_size // s)
    overlap_frames, overlap_tile = math.ceil(chunk_overlap / f), math.ceil(tile_overlap / s)
    if info.carried is not None:  # chunks continue one another: no overlap to blend
        overlap_frames = 0
    if frames is not None and frames <= overlap_frames:
        raise ValueError(f"chunk_frames: {chunk_frames} frames ({frames} latent frames of {f}) must be longer than "
                         f"chunk_overlap ({chunk_overlap} frames = {overlap_frames} latent frames); raise chunk_frames "
                         f"to at least {1 + f * overlap_frames + f} or lower chunk_overlap")
    if tile is not None and tile <= overlap_tile:
        raise ValueError(f"tile_size: {tile_size} px ({tile} latent px of {s}) must be larger than tile_overlap "
                         f"({tile_overlap} px = {overlap_tile} latent px); raise tile_size to at least "
                         f"{s * (overlap_tile + 1)} or lower tile_overlap")
    budget = None if budget_mb == 0 else budget_mb * MIB
    return ChunkOptions(budget, frames, tile, overlap_frames, overlap_tile)


def fit_frame_count(pixels: torch.Tensor, factor: int, mode: str) -> tuple[torch.Tensor, int | None]:
    """Makes the frame count 1 + factor k: 'error' raises, 'pad' repeats the last frame (and returns
    the original count, so decoding can cut back to it), 'trim' drops frames past the last valid count."""
    frames = pixels.shape[0]
    if vc.is_valid_frame_count(frames, factor):
        return pixels, None
    below, above = vc.nearest_valid_frame_counts(frames, factor)
    if mode == "pad":
        return torch.cat([pixels, pixels[-1:].expand(above - frames, *pixels.shape[1:])]), frames
    if mode == "trim":
        return pixels[:below], None
    raise ValueError(f"pixels: {frames} frames, but this VAE encodes only 1 + {factor}k frames; the nearest valid "
                     f"counts are {below} and {above}. Cut or extend the video to one of them, or set frame_count "
                     f"to 'pad' (decodes back to exactly {frames} frames) or 'trim' (keeps the first {below})")


def _load_and_budget(vae, whole_call_bytes: float, options: ChunkOptions) -> float:
    """Loads the VAE as the plain call would, then returns the budget (default: free device memory)."""
    comfy.model_management.load_models_gpu([vae.patcher], memory_required=whole_call_bytes,
                                           force_full_load=vae.disable_offload)
    if options.budget_bytes is not None:
        return options.budget_bytes
    return comfy.model_management.get_free_memory(vae.device)


def _make_plan(shape, cost, budget, options: ChunkOptions, info: VideoVAE, causal: bool) -> Plan:
    frames, height, width = shape
    sizes = vc.choose_sizes(shape, budget, cost, min_frames=options.overlap_frames + 1,
                            min_tile=options.overlap_tile + 1, frames=options.frames, tile=options.tile)
    if cost(sizes.frames, sizes.height, sizes.width) > budget:
        logging.warning("TurboVideo VAE: even a chunk of %d latent frames and %dx%d latent tiles is estimated "
                        "at %.0f MiB, over the %.0f MiB budget; trying anyway", sizes.frames, sizes.height,
                        sizes.width, cost(sizes.frames, sizes.height, sizes.width) / MIB, budget / MIB)
    if info.carried is not None:
        chunks = vc.plan_carried(frames, sizes.frames, info.time_factor)
    else:
        chunks = vc.plan_temporal(frames, sizes.frames, options.overlap_frames, info.time_factor, causal)
    tile = (sizes.height, sizes.width)
    tiles = list(zip(vc.plan_tiles(height, width, tile, options.overlap_tile),
                     vc.plan_tiles(height, width, tile, options.overlap_tile, info.space_factor)))
    return Plan(chunks, tiles, sizes, options.seed)


def plan_decode(vae, samples_shape, options: ChunkOptions) -> Plan:
    info = video_vae(vae)
    channels, frames, height, width = samples_shape[1:]
    if channels != info.channels:
        raise ValueError(f"samples: {channels} latent channels but this VAE has {info.channels}; connect the VAE "
                         "that matches the model that made the latent")
    s, f = info.space_factor, info.time_factor

    def cost(t, h, w):
        pixels = vc.pixel_frame_count(t, f) * h * s * w * s * 3 * FLOAT_BYTES
        return vae.memory_used_decode((1, channels, t, h, w), vae.vae_dtype) + pixels

    budget = _load_and_budget(vae, cost(frames, height, width), options)
    return _make_plan((frames, height, width), cost, budget, options, info, info.causal_decoder)


def plan_encode(vae, pixels_shape, options: ChunkOptions) -> Plan:
    """`pixels_shape` is (frames, height, width, channels) with a valid frame count and cropped sides."""
    info = video_vae(vae)
    frames, height, width = pixels_shape[:3]
    s, f = info.space_factor, info.time_factor
    latent_shape = (vc.latent_frame_count(frames, f), height // s, width // s)

    def cost(t, h, w):
        shape = (1, 3, vc.pixel_frame_count(t, f), h * s, w * s)
        return vae.memory_used_encode(shape, vae.vae_dtype) + (2 * 3 * shape[2] * h * w * s * s +
                                                              info.channels * t * h * w) * FLOAT_BYTES

    budget = _load_and_budget(vae, cost(*latent_shape), options)
    return _make_plan(latent_shape, cost, budget, options, info, info.causal_encoder)


def _trim_host_heap():
    """Hands freed heap pages back to the OS (glibc): a chunk's freed intermediates would otherwise stay
    resident in the process and add up to tens of MB to every later chunk's peak."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


@contextlib.contextmanager
def _random_state(seed: int | None):
    """torch's RNG as it is (None), or forked, seeded to `seed` and restored afterwards (CPU and every GPU)."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _piece(progress: comfy.utils.ProgressBar, call, tensor: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """One VAE call between interrupt check, memory release and progress tick."""
    comfy.model_management.throw_exception_if_processing_interrupted()
    with _random_state(seed):
        out = call(tensor)
    comfy.model_management.soft_empty_cache()
    _trim_host_heap()
    progress.update(1)
    return out


def check_finite_result(result: torch.Tensor, given: torch.Tensor, what: str, span: tuple[int, int]) -> None:
    """Raises when a VAE call turned finite input into NaN / infinite output (or names the input when it was bad)."""
    if all_finite(result):
        return
    if not all_finite(given):
        raise ValueError(f"{what}: the input holds NaN or infinite values (frames {span[0]}..{span[1] - 1})")
    raise RuntimeError(f"vae: {what} frames {span[0]}..{span[1] - 1} gave NaN or infinite values from finite input: "
                       f"the VAE overflowed in {str(getattr(given, 'dtype', '')).replace('torch.', '')} or its "
                       "weights are damaged; run the VAE in float32 (start ComfyUI with --fp32-vae)")


def _tile_calls(vae, method: str):
    """call(tile index, piece) for one video: the VAE's own decode / encode, or, where its family carries the
    causal state from chunk to chunk, the family's continuing decode / encode with one state per tile."""
    carried = video_vae(vae).carried
    if carried is None:
        return lambda index, piece: getattr(vae, method)(piece)
    states: dict = {}
    step = getattr(carried, method)
    return lambda index, piece: step(vae, piece, states.setdefault(index, {}))


def _decode_chunk(call, latent: torch.Tensor, plan: Plan, progress, seeds: Iterator) -> torch.Tensor:
    """latent (1, C, t, h, w) -> float32 frames (n, H, W, 3), tiles blended; call(tile index, latent piece)."""
    if len(plan.tiles) == 1:
        return _piece(progress, lambda piece: call(0, piece), latent, next(seeds))[0]
    canvas = weight_sum = None
    for index, (lat, pix) in enumerate(plan.tiles):
        part = latent[..., slice(*lat.rows), slice(*lat.cols)]
        piece = _piece(progress, lambda tile, i=index: call(i, tile), part, next(seeds))[0]
        if canvas is None:
            frames, channels = piece.shape[0], piece.shape[-1]
            height, width = plan.tiles[-1][1].rows[1], plan.tiles[-1][1].cols[1]
            canvas = torch.zeros(frames, height, width, channels, dtype=piece.dtype, device=piece.device)
            weight_sum = torch.zeros(height, width, dtype=torch.float64)
        w = pix.weights
        canvas[:, slice(*pix.rows), slice(*pix.cols)] += piece * w.to(piece)[None, :, :, None]
        weight_sum[slice(*pix.rows), slice(*pix.cols)] += w
    return canvas.div_(weight_sum.to(canvas)[None, :, :, None])


def decode_blocks(vae, samples: torch.Tensor, plan: Plan, frames: int | None = None) -> Iterator[torch.Tensor]:
    """Float32 frame blocks (n, H, W, 3) in order, batch item after batch item, each item cut to
    its first `frames` frames (all when None)."""
    progress = comfy.utils.ProgressBar(plan.steps * samples.shape[0])
    seeds = itertools.repeat(None) if plan.seed is None else itertools.count(plan.seed)
    for item in samples.split(1):
        yield from _limit_frames(_item_blocks(vae, item, plan, progress, seeds), frames)


def _item_blocks(vae, item: torch.Tensor, plan: Plan, progress, seeds: Iterator) -> Iterator[torch.Tensor]:
    carry = carry_weight = None
    call = _tile_calls(vae, "decode")
    for index, chunk in enumerate(plan.chunks):
        pixels = _decode_chunk(call, item[:, :, slice(*chunk.latent)], plan, progress, seeds)
        check_finite_result(pixels, item[:, :, slice(*chunk.latent)], "decoding latent", chunk.latent)
        weight = chunk.pixel_weights.clone()
        pixels.mul_(weight.to(pixels)[:, None, None, None])
        if carry is not None:
            pixels[: len(carry)] += carry
            weight[: len(carry_weight)] += carry_weight
        last = index + 1 == len(plan.chunks)
        done = len(pixels) if last else plan.chunks[index + 1].pixel[0] - chunk.pixel[0]
        carry, carry_weight = pixels[done:].clone(), weight[done:]
        block = pixels[:done].div_(weight[:done].to(pixels)[:, None, None, None])
        del pixels
        yield block
        del block  # the chunk's storage must not outlive its block into the next decode


def _limit_frames(blocks: Iterator[torch.Tensor], count: int | None) -> Iterator[torch.Tensor]:
    remaining = count
    for block in blocks:
        if remaining is not None:
            block = block[:remaining]
            remaining -= len(block)
        if len(block):
            yield block
        del block  # see _item_blocks
        if remaining == 0:
            return


def output_frame_count(vae, samples_shape, frames: int | None = None) -> int:
    """Frames per batch item that decode_blocks yields."""
    per_item = vc.pixel_frame_count(samples_shape[2], video_vae(vae).time_factor)
    return per_item if frames is None else min(frames, per_item)


def decode(vae, samples: torch.Tensor, plan: Plan, frames: int | None = None) -> torch.Tensor:
    """The whole IMAGE batch (B * frames, H, W, 3), filled block by block without a second copy."""
    total = output_frame_count(vae, samples.shape, frames) * samples.shape[0]
    out, filled = None, 0
    for block in decode_blocks(vae, samples, plan, frames):
        if out is None:
            out = torch.empty((total,) + tuple(block.shape[1:]), dtype=block.dtype)
        out[filled: filled + len(block)] = block
        filled += len(block)
    return out


def _encode_chunk(call, pixels: torch.Tensor, plan: Plan, progress) -> torch.Tensor:
    """pixels (n, H, W, C) -> latent (1, C, t, h, w), tiles blended; call(tile index, pixel piece)."""
    if len(plan.tiles) == 1:
        return _piece(progress, lambda piece: call(0, piece), pixels)
    canvas = weight_sum = None
    for index, (lat, pix) in enumerate(plan.tiles):
        piece = _piece(progress, lambda part, i=index: call(i, part), pixels[:, slice(*pix.rows), slice(*pix.cols)])
        if canvas is None:
            height, width = plan.tiles[-1][0].rows[1], plan.tiles[-1][0].cols[1]
            canvas = torch.zeros(piece.shape[:3] + (height, width), dtype=piece.dtype, device=piece.device)
            weight_sum = torch.zeros(height, width, dtype=torch.float64)
        canvas[..., slice(*lat.rows), slice(*lat.cols)] += piece * lat.weights.to(piece)
        weight_sum[slice(*lat.rows), slice(*lat.cols)] += lat.weights
    return canvas.div_(weight_sum.to(canvas))


def encode(vae, pixels: torch.Tensor, plan: Plan) -> torch.Tensor:
    """pixels (frames, H, W, C), a valid frame count, already cropped -> latent (1, C, T, h, w)."""
    progress = comfy.utils.ProgressBar(plan.steps)
    out = weight_sum = None
    call = _tile_calls(vae, "encode")
    for chunk in plan.chunks:
        piece = pixels[slice(*chunk.pixel)]  # LRFrames (VSR) resizes on slicing: once
        latent = _encode_chunk(call, piece, plan, progress)
        check_finite_result(latent, piece, "encoding pixel", chunk.pixel)
        del piece
        if out is None:
            frames = plan.chunks[-1].latent[1]
            out = torch.zeros(latent.shape[:2] + (frames,) + latent.shape[3:], dtype=latent.dtype)
            weight_sum = torch.zeros(frames, dtype=torch.float64)
        w = chunk.latent_weights
        out[:, :, slice(*chunk.latent)] += latent * w.to(latent)[:, None, None]
        weight_sum[slice(*chunk.latent)] += w
    return out.div_(weight_sum.to(out)[:, None, None])


def one_video(pixels: torch.Tensor) -> torch.Tensor:
    """IMAGE frames (n, H, W, C); a 5-D IMAGE of one video (1, n, H, W, C: what SeedVR2Preprocess gives) as its
    frames."""
    if pixels.ndim == 5:
        if pixels.shape[0] != 1:
            raise ValueError(f"pixels: {pixels.shape[0]} videos in one 5-D IMAGE {tuple(pixels.shape)}; encode one "
                             "video at a time (split the batch first)")
        return pixels[0]
    if pixels.ndim != 4:
        raise ValueError(f"pixels: an IMAGE of shape {tuple(pixels.shape)}; connect video frames (n, H, W, C)")
    return pixels


def encode_video(vae, pixels: torch.Tensor, options: ChunkOptions, frame_count: str = "error"
                 ) -> tuple[torch.Tensor, int | None]:
    """IMAGE frames -> (latent, original frame count when padded). Sides are cropped as VAEEncode does."""
    info = video_vae(vae)
    pixels = vae.vae_encode_crop_pixels(one_video(pixels))
    height, width = pixels.shape[1:3]
    if height % info.pixel_multiple or width % info.pixel_multiple:
        raise ValueError(f"pixels: {width}x{height} px, but {info.name} encodes frames whose sides are multiples of "
                         f"{info.pixel_multiple} px; pad them first (for SeedVR2: Pre-Process SeedVR2 Input, "
                         f"SeedVR2Preprocess, before the encode)")
    pixels, original = fit_frame_count(pixels, info.time_factor, frame_count)
    return encode(vae, pixels, plan_encode(vae, pixels.shape, options)), original
