"""TurboVSRUpscale (-> IMAGE) and TurboVSRUpscaleToVideo (-> VIDEO, streamed): tiled diffusion video
super-resolution with an LTX-Video MODEL (docs/vsr.md)."""
from comfy_api.latest import io

from ..models.dit_bundle import VSR
from ..models.vsr_conditioner import load_vsr_conditioner, read_vsr_conditioner_header
from ..patches import video_stream
from ..patches.dit_loader import FROM_MODEL, model_adapter
from ..patches.size_limits import check_output_size
from ..patches.vsr_upscale import (
    RESIZE_METHODS,
    UpscaleSettings,
    layout_image,
    target_size,
    to_images,
    upscale_latents,
    upscaled_blocks,
)
from ..samplers.color_correction import METHODS
from .input_checks import check_image
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path
from .schema_checks import require_schema
from .tiled_nodes import tiling_inputs, tiling_settings, validate_tiling

CATEGORY = "TurboVideo/upscale"
TRAINING_FREE = "none (training-free SDEdit)"


def _upscale_inputs():
    return [
        io.Model.Input("model", tooltip="An LTX-Video model (e.g. LTX-Video 0.9.8 from a checkpoint loader)."),
        io.Vae.Input("vae", tooltip="The LTX-Video VAE of that checkpoint."),
        io.Image.Input("images", tooltip="The low-resolution frames of ONE video, in order."),
        io.Float.Input("scale", default=2.0, min=1.0, max=8.0, step=0.25,
                       tooltip="Output size = input size x scale (rounded to whole pixels)."),
        io.Int.Input("steps", default=4, min=1, max=50, step=1, tooltip="Denoising steps."),
        io.Float.Input("strength", default=0.4, min=0.05, max=1.0, step=0.01,
                       tooltip="Noise level the resized video is noised to: low keeps the input, high "
                               "invents more detail (and drifts more). 1 = from pure noise."),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Seed of the one noise tensor shared by all tiles."),
        io.Combo.Input("resize_method", options=list(RESIZE_METHODS), default="lanczos",
                       tooltip="How the LR frames are resized before encoding."),
        io.Combo.Input("color_correction", options=list(METHODS), default="wavelet",
                       tooltip="wavelet: output detail on the resized input's colours (recommended); "
                               "adain: match each frame's mean/std; none."),
        io.Boolean.Input("factorized", default=True,
                         tooltip="TurboVSR factorized conditioning: upscale the first frame alone first, then the "
                                 "whole video with that HR first frame kept as clean conditioning (frozen). "
                                 "Applies from 2 frames on; off = one pass over the whole video."),
        *tiling_inputs(overlap_default=4),
        io.Combo.Input("vsr_conditioner", options=[TRAINING_FREE] + adapter_files() + [FROM_MODEL],
                       default=TRAINING_FREE,
                       tooltip=f"A TurboVSR conditioner (.safetensors in models/{ADAPTER_FOLDER}, "
                               "docs/vsr.md); none = the training-free mode; 'from model' = the one "
                               "TurboDiTLoader attached to the MODEL."),
        io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                       tooltip="Guidance scale; 1 = no negative pass (fastest)."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="Prompt (LTX-Video text encoder); without it the model gets no prompt."),
        io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt; used when cfg != 1."),
    ]


DESCRIPTION = ("Super-resolves a video (an IMAGE batch; one image = a 1-frame video) with an LTX-Video model: "
               "resize, chunked encode, noise to 'strength', few-step tiled denoising (first frame first when "
               "factorized), chunked decode, colour correction. Without a VSR conditioner this is the "
               "TRAINING-FREE mode (SDEdit: the model only refines the resized frames); with one, the LR latent "
               "also conditions every step.")
LAYOUT_TOOLTIP = ("The tile plan over the first resized frame: tiles tinted by their blend weights, white "
                  "borders; one band per temporal segment underneath (frames left to right, brightness = weight).")


def _validate(node_cls, tile_size, tile_overlap, segment_length, segment_overlap, vsr_conditioner):
    tiling = validate_tiling(node_cls, tile_size, tile_overlap, segment_length, segment_overlap)
    if tiling is not True or vsr_conditioner in (None, TRAINING_FREE, FROM_MODEL):
        return tiling
    if vsr_conditioner not in adapter_files():
        return f"vsr_conditioner: '{vsr_conditioner}' is not in models/{ADAPTER_FOLDER}; refresh the page"
    try:
        read_vsr_conditioner_header(adapter_path(vsr_conditioner), "vsr_conditioner")
    except ValueError as error:
        return str(error)
    return True


def _conditioner(model, vsr_conditioner: str):
    if vsr_conditioner == FROM_MODEL:
        return model_adapter(model, VSR, "vsr_conditioner")[0]
    if vsr_conditioner != TRAINING_FREE:
        return load_vsr_conditioner(adapter_path(vsr_conditioner), "vsr_conditioner")
    return None


def _settings(scale, steps, strength, seed, resize_method, color_correction, factorized, cfg,
              tiling) -> UpscaleSettings:
    return UpscaleSettings(scale, steps, strength, seed, resize_method, color_correction, cfg, tiling_settings(*tiling),
                           factorized)


def _checked_images(node_cls, images, streaming_node: str | None, **numbers):
    """The LR frames as RGB, refused before any work when a number is out of range (a linked value skips core's
    check) or the upscaled video would be over a size limit."""
    require_schema(node_cls, **numbers)
    scale = numbers["scale"]
    images = check_image(images, "images")
    check_output_size(images.shape[0], *target_size(images.shape[1], images.shape[2], scale), "scale",
                      streaming_node)
    return images


class TurboVSRUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVSRUpscale", display_name="Turbo VSR Upscale", category=CATEGORY, description=DESCRIPTION,
            inputs=_upscale_inputs(),
            outputs=[io.Image.Output(tooltip="The upscaled frames, as many as the input."),
                     io.Image.Output("tile_layout", tooltip=LAYOUT_TOOLTIP)],
        )

    @classmethod
    def validate_inputs(cls, tile_size=0, tile_overlap=4, segment_length=0, segment_overlap=2,
                        vsr_conditioner=TRAINING_FREE):
        return _validate(cls, tile_size, tile_overlap, segment_length, segment_overlap, vsr_conditioner)

    @classmethod
    def execute(cls, model, vae, images, scale, steps, strength, seed, resize_method, color_correction, factorized,
                tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights, tile_batch,
                vsr_conditioner, cfg, positive=None, negative=None) -> io.NodeOutput:
        images = _checked_images(cls, images, "TurboVSRUpscaleToVideo", scale=scale, steps=steps, strength=strength,
                                 cfg=cfg, tile_size=tile_size, memory_budget_mb=memory_budget_mb,
                                 tile_overlap=tile_overlap, segment_length=segment_length,
                                 segment_overlap=segment_overlap, tile_batch=tile_batch)
        settings = _settings(scale, steps, strength, seed, resize_method, color_correction, factorized, cfg,
                             (tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights,
                              tile_batch))
        conditioner = _conditioner(model, vsr_conditioner)
        upscaled = upscale_latents(model, vae, images, settings, positive, negative, conditioner)
        return io.NodeOutput(to_images(vae, upscaled, settings), layout_image(vae, upscaled))


class TurboVSRUpscaleToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVSRUpscaleToVideo", display_name="Turbo VSR Upscale to Video (streaming)",
            category=CATEGORY,
            description=DESCRIPTION + " The HR frames are decoded segment by segment straight into an H.264 MP4 "
                                      "(ComfyUI's temp folder), so a long upscale never holds the HR video in "
                                      "memory. Connect the VIDEO to Save Video to keep it.",
            inputs=[*_upscale_inputs(),
                    io.Float.Input("frame_rate", default=24.0, min=1.0, max=240.0, step=0.01,
                                   tooltip="Frames per second of the video file."),
                    io.Int.Input("crf", default=19, min=0, max=51, step=1,
                                 tooltip="H.264 quality: lower is better and bigger (0 lossless luma, 17-23 usual).")],
            outputs=[io.Video.Output(tooltip="The upscaled video (H.264 MP4)."),
                     io.Image.Output("tile_layout", tooltip=LAYOUT_TOOLTIP)],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, tile_size=0, tile_overlap=4, segment_length=0, segment_overlap=2,
                        vsr_conditioner=TRAINING_FREE):
        return _validate(cls, tile_size, tile_overlap, segment_length, segment_overlap, vsr_conditioner)

    @classmethod
    def execute(cls, model, vae, images, scale, steps, strength, seed, resize_method, color_correction, factorized,
                tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights, tile_batch,
                vsr_conditioner, cfg, frame_rate, crf, positive=None, negative=None) -> io.NodeOutput:
        images = _checked_images(cls, images, None, scale=scale, steps=steps, strength=strength, cfg=cfg,
                                 tile_size=tile_size, memory_budget_mb=memory_budget_mb, tile_overlap=tile_overlap,
                                 segment_length=segment_length, segment_overlap=segment_overlap,
                                 tile_batch=tile_batch, frame_rate=frame_rate, crf=crf)
        height, width = target_size(images.shape[1], images.shape[2], scale)
        if height % 2 or width % 2:
            raise ValueError(f"scale: the output would be {width}x{height} px, but H.264 needs even sides; pick a "
                             "scale that gives even sides, or use TurboVSRUpscale (IMAGE output)")
        settings = _settings(scale, steps, strength, seed, resize_method, color_correction, factorized, cfg,
                             (tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights,
                              tile_batch))
        conditioner = _conditioner(model, vsr_conditioner)
        upscaled = upscale_latents(model, vae, images, settings, positive, negative, conditioner)
        path, preview = video_stream.temp_video_path("turbo_vsr")
        video_stream.write_video(path, upscaled_blocks(vae, upscaled, settings), frame_rate, crf)
        return io.NodeOutput(video_stream.video_from_file(path), layout_image(vae, upscaled), ui=preview)


NODES = [TurboVSRUpscale, TurboVSRUpscaleToVideo]
