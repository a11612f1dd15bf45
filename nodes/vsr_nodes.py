"""TurboVSRUpscale: tiled diffusion video super-resolution with an LTX-Video MODEL (docs/vsr.md)."""
from comfy_api.latest import io

from ..models.vsr_conditioner import load_vsr_conditioner, read_vsr_conditioner_header
from ..patches.tiled_model import TilingSettings
from ..patches.vsr_upscale import RESIZE_METHODS, UpscaleSettings, upscale
from ..samplers.color_correction import METHODS
from ..samplers.tiling import WEIGHT_KINDS
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path

CATEGORY = "TurboVideo/upscale"
TRAINING_FREE = "none (training-free SDEdit)"


def _tile_inputs():
    return [
        io.Int.Input("tile_size", default=16, min=0, max=1024, step=1,
                     tooltip="Tile height and width in latent cells (LTX: 16 = 512 px). Memory follows the tile; "
                             "0 = no tiling (the whole frame in one model call)."),
        io.Int.Input("tile_overlap", default=4, min=0, max=1023, step=1,
                     tooltip="Latent cells shared by neighbouring tiles (< tile_size); blended, no seams."),
        io.Int.Input("segment_length", default=0, min=0, max=4096, step=1,
                     tooltip="Latent frames per temporal segment (8 = 57 frames); 0 = the whole video at once."),
        io.Int.Input("segment_overlap", default=2, min=2, max=4095, step=1,
                     tooltip="Latent frames shared by neighbouring segments (>= 2 = 1 + 8 frames)."),
        io.Combo.Input("weights", options=list(WEIGHT_KINDS), default="cosine",
                       tooltip="Tile blend weights: cosine (smoothest) or gaussian (TurboVSR)."),
        io.Int.Input("tile_batch", default=1, min=1, max=64, step=1,
                     tooltip="Tiles per model call; faster on a big GPU, more memory, same result."),
    ]


class TurboVSRUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboVSRUpscale", display_name="Turbo VSR Upscale", category=CATEGORY,
            description="Super-resolves a video (an IMAGE batch; one image = a 1-frame video) with an LTX-Video "
                        "model: resize, chunked encode, noise to 'strength', few-step tiled denoising, chunked "
                        "decode, colour correction. Without a VSR conditioner this is the TRAINING-FREE mode "
                        "(SDEdit: the model only refines the resized frames); with one, the LR latent also "
                        "conditions every step.",
            inputs=[
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
                *_tile_inputs(),
                io.Combo.Input("vsr_conditioner", options=[TRAINING_FREE] + adapter_files(), default=TRAINING_FREE,
                               tooltip=f"A TurboVSR conditioner (.safetensors in models/{ADAPTER_FOLDER}, "
                                       "docs/vsr.md); none = the training-free mode."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Guidance scale; 1 = no negative pass (fastest)."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="Prompt (LTX-Video text encoder); without it the model gets no prompt."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt; used when cfg != 1."),
            ],
            outputs=[io.Image.Output(tooltip="The upscaled frames, as many as the input.")],
        )

    @classmethod
    def validate_inputs(cls, tile_size=16, tile_overlap=4, segment_length=0, segment_overlap=2,
                        vsr_conditioner=TRAINING_FREE, **_):
        if tile_size and tile_overlap >= tile_size:
            return f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size})"
        if segment_length and segment_overlap >= segment_length:
            return (f"segment_overlap ({segment_overlap}) must be smaller than segment_length "
                    f"({segment_length}), or set segment_length to 0")
        if vsr_conditioner != TRAINING_FREE:
            if vsr_conditioner not in adapter_files():
                return f"vsr_conditioner: '{vsr_conditioner}' is not in models/{ADAPTER_FOLDER}; refresh the page"
            try:
                read_vsr_conditioner_header(adapter_path(vsr_conditioner))
            except ValueError as error:
                return f"vsr_conditioner: {error}"
        return True

    @classmethod
    def execute(cls, model, vae, images, scale, steps, strength, seed, resize_method, color_correction,
                tile_size, tile_overlap, segment_length, segment_overlap, weights, tile_batch,
                vsr_conditioner, cfg, positive=None, negative=None) -> io.NodeOutput:
        tiling = None
        if tile_size:
            tiling = TilingSettings((tile_size, tile_size), tile_overlap, segment_length, segment_overlap,
                                    weights, tile_batch)
        settings = UpscaleSettings(scale, steps, strength, seed, resize_method, color_correction, cfg, tiling)
        conditioner = None
        if vsr_conditioner != TRAINING_FREE:
            conditioner = load_vsr_conditioner(adapter_path(vsr_conditioner))
        return io.NodeOutput(upscale(model, vae, images, settings, positive, negative, conditioner))


NODES = [TurboVSRUpscale]
