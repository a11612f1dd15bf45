"""Chunked, tiled and streaming VAE encode/decode for LTX-Video, Wan and SeedVR2 VAEs (docs/vae.md)."""
import os
import uuid

import folder_paths
from comfy_api.latest import io, ui

from ..patches import chunked_vae, video_stream

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


def _latent(samples):
    latent = samples["samples"]
    return latent.unbind()[0] if latent.is_nested else latent


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
        latent, original_frames = chunked_vae.encode_video(vae, pixels, options, frame_count)
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
        options = _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)
        latent = _latent(samples)
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
        options = _options(vae, memory_budget_mb, chunk_frames, chunk_overlap, tile_size, tile_overlap)
        latent = _latent(samples)
        plan = chunked_vae.plan_decode(vae, latent.shape, options)
        folder = os.path.join(folder_paths.get_temp_directory(), "turbovideo")
        os.makedirs(folder, exist_ok=True)
        name = f"turbo_decode_{uuid.uuid4().hex[:12]}.mp4"
        blocks = chunked_vae.decode_blocks(vae, latent, plan, samples.get(FRAMES_KEY))
        video_stream.write_video(os.path.join(folder, name), blocks, frame_rate, crf, audio)
        preview = ui.PreviewVideo([ui.SavedResult(name, "turbovideo", io.FolderType.temp)])
        return io.NodeOutput(video_stream.video_from_file(os.path.join(folder, name)), ui=preview)


NODES = [TurboVAEEncode, TurboVAEDecode, TurboVAEDecodeToVideo]
