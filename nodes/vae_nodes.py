"""Chunked, tiled and streaming VAE encode/decode for LTX-Video, Wan and SeedVR2 VAEs (docs/vae.md)."""
import torch
from comfy_api.latest import io

from ..patches import chunked_vae, video_stream
from ..patches.size_limits import check_output_size
from .input_checks import check_image, check_video_latent
from .schema_checks import require_schema

CATEGORY = "TurboVideo/vae"
FRAMES_KEY = chunked_vae.FRAMES_KEY
MAX_RESOLUTION = 16384


def _chunk_inputs():
    return [
        io.Int.Input("memory_budget_mb", default=0, min=0, max=1 << 20, step=256,
                     tooltip="Memory one chunk may use, in MiB, as estimated by ComfyUI for this VAE. 0 = what "
                             "the device has free once the VAE is loaded. Chunk and tile sizes left at 0 are "
                             "chosen to fit it: longest chunks first, tiles only when a full frame does not fit."),
        io.Int.Input("chunk_frames", default=0, min=0, max=8193, step=1,
                     tooltip="Frames per temporal chunk; 0 = from the memory budget. Rounded down to 1 + 8k "
                             "(LTX-Video) or 1 + 4k (Wan, SeedVR2)."),
        io.Int.Input("chunk_overlap", default=24, min=0, max=1024, step=1,
                     tooltip="Frames shared by neighbouring chunks, rounded up to whole latent frames (8 frames "
                             "for LTX-Video, 4 for Wan). Raise it if chunk borders show. SeedVR2 needs none (ignored): "
                             "its chunks carry the VAE's frame cache and add up to the whole call."),
        io.Int.Input("tile_size", default=0, min=0, max=MAX_RESOLUTION, step=32,
                     tooltip="Spatial tile side in pixels; 0 = from the memory budget (whole frames when they fit)."),
        io.Int.Input("tile_overlap", default=64, min=0, max=4096, step=8,
                     tooltip="Pixels shared by neighbouring tiles, rounded up to whole latent pixels."),
    ]


def _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap):
    return chunked_vae.chunk_options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)


def _latent(samples, vae, streaming_node: str | None):
    """The checked video latent of a LATENT; refused before decoding when its video is over a size limit."""
    latent = samples.get("samples") if isinstance(samples, dict) else None
    if getattr(latent, "is_nested", False):
        latent = latent.unbind()[0]
    latent = check_video_latent(latent, "samples")
    info = chunked_vae.video_vae(vae)
    frames = chunked_vae.output_frame_count(vae, latent.shape, samples.get(FRAMES_KEY)) * latent.shape[0]
    check_output_size(frames, latent.shape[3] * info.space_factor, latent.shape[4] * info.space_factor, "samples",
                      streaming_node)
    return latent


def _pixels(pixels, vae):
    factor = chunked_vae.video_vae(vae).space_factor
    if isinstance(pixels, torch.Tensor) and pixels.ndim == 5:  # one video as SeedVR2Preprocess gives it
        pixels = chunked_vae.one_video(pixels)
    return check_image(pixels, "pixels", factor, f" (one latent cell of this VAE: sides are cropped to multiples of "
                                                 f"{factor} px)")


class TurboVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVAEEncode", display_name="Turbo VAE Encode (chunked)", category=CATEGORY,
            description="Encodes a video with an LTX-Video, Wan or SeedVR2 VAE in temporal chunks and spatial tiles, "
                        "so long and large videos fit in memory. Frame counts must be 1 + 8k (LTX) or 1 + 4k (Wan, "
                        "SeedVR2).",
            inputs=[
                io.Image.Input("pixels", tooltip="The video frames (an IMAGE batch)."),
                io.Vae.Input("vae", tooltip="An LTX-Video, Wan or SeedVR2 VAE."),
                io.Combo.Input("frame_count", options=["error", "pad", "trim"], default="error",
                               tooltip="When the frame count is not 1 + 8k (1 + 4k for Wan, SeedVR2): 'error' stops "
                                       "with the "
                                       "nearest valid counts; 'pad' repeats the last frame and TurboVAEDecode cuts "
                                       "back to exactly these frames; 'trim' drops the extra frames."),
                *_chunk_inputs(),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, pixels, vae, frame_count, memory_budget_mb, chunk_frames, chunk_overlap, tile_size,
                tile_overlap) -> io.NodeOutput:
        options = _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)
        latent, original_frames = chunked_vae.encode_video(vae, _pixels(pixels, vae), options, frame_count)
        out = {"samples": latent}
        if original_frames is not None:
            out[FRAMES_KEY] = original_frames
        return io.NodeOutput(out)


class TurboVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVAEDecode", display_name="Turbo VAE Decode (chunked)", category=CATEGORY,
            description="Decodes an LTX-Video, Wan or SeedVR2 latent in temporal chunks and spatial tiles blended "
                        "without seams. A latent from TurboVAEEncode with frame_count 'pad' comes back at its original "
                        "frame count.",
            inputs=[
                io.Latent.Input("samples", tooltip="A video latent."),
                io.Vae.Input("vae", tooltip="The VAE that matches the model that made the latent."),
                *_chunk_inputs(),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples, vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size,
                tile_overlap) -> io.NodeOutput:
        latent = _latent(samples, vae, "TurboVAEDecodeToVideo")
        options = _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)
        plan = chunked_vae.plan_decode(vae, latent.shape, options)
        return io.NodeOutput(chunked_vae.decode(vae, latent, plan, samples.get(FRAMES_KEY)))


class TurboVAEDecodeToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVAEDecodeToVideo", display_name="Turbo VAE Decode to Video (streaming)",
            category=CATEGORY,
            description="Decodes chunk by chunk straight into an H.264 MP4 (in ComfyUI's temp folder), so a long "
                        "2K video never sits in memory as float frames. Connect the VIDEO to Save Video to keep it.",
            inputs=[
                io.Latent.Input("samples", tooltip="A video latent."),
                io.Vae.Input("vae", tooltip="The VAE that matches the model that made the latent."),
                io.Float.Input("frame_rate", default=24.0, min=1.0, max=240.0, step=0.01,
                               tooltip="Frames per second of the video file."),
                io.Int.Input("crf", default=19, min=0, max=51, step=1,
                             tooltip="H.264 quality: lower is better and bigger (0 lossless luma, 17-23 usual)."),
                *_chunk_inputs(),
                io.Audio.Input("audio", optional=True,
                               tooltip="A soundtrack for the file (e.g. LTX-2's, from LTXV Audio VAE Decode), cut "
                                       "to the video's length."),
            ],
            outputs=[io.Video.Output()],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples, vae, frame_rate, crf, memory_budget_mb, chunk_frames, chunk_overlap, tile_size,
                tile_overlap, audio=None) -> io.NodeOutput:
        require_schema(cls, frame_rate=frame_rate, crf=crf)  # a linked value skips core's range check
        latent = _latent(samples, vae, None)
        options = _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)
        plan = chunked_vae.plan_decode(vae, latent.shape, options)
        path, preview = video_stream.temp_video_path("turbo_decode")
        blocks = chunked_vae.decode_blocks(vae, latent, plan, samples.get(FRAMES_KEY))
        video_stream.write_video(path, blocks, frame_rate, crf, audio)
        return io.NodeOutput(video_stream.video_from_file(path), ui=preview)


NODES = [TurboVAEEncode, TurboVAEDecode, TurboVAEDecodeToVideo]
