"""Tiled inference: TurboTiledModel makes any sampler run a video MODEL tile by tile (docs/tiling.md)."""
from comfy_api.latest import io

from ..patches.tiled_model import TilingSettings, apply_tiling
from ..samplers.tiling import WEIGHT_KINDS

CATEGORY = "TurboVideo/tiling"


class TurboTiledModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboTiledModel", display_name="Turbo Tiled Model", category=CATEGORY,
            description="Runs the model on overlapping tiles of the latent (and optionally overlapping "
                        "temporal segments) at every step and blends them with smooth weights, so peak "
                        "memory follows the tile, not the video. Works with any sampler; the sampler's "
                        "one noise tensor is shared by all tiles. Sizes are in LATENT cells (LTX-Video: "
                        "1 cell = 32 px, 1 frame = 8 px frames; Wan: 8 px, 4 frames).",
            inputs=[
                io.Model.Input("model", tooltip="A video model (LTX-Video, Wan) from a loader."),
                io.Int.Input("tile_size", default=32, min=4, max=1024, step=1,
                             tooltip="Tile height and width in latent cells (LTX: 32 = 1024 px)."),
                io.Int.Input("tile_overlap", default=8, min=0, max=1023, step=1,
                             tooltip="Latent cells shared by neighbouring tiles; must be < tile_size. "
                                     "The outer quarter of each overlap is ignored, the middle blended."),
                io.Int.Input("segment_length", default=0, min=0, max=4096, step=1,
                             tooltip="Latent frames per temporal segment (LTX: 8 = 57 px frames); "
                                     "0 = no temporal segmentation."),
                io.Int.Input("segment_overlap", default=2, min=2, max=4095, step=1,
                             tooltip="Latent frames shared by neighbouring segments (>= 2, i.e. 1 + 8 px "
                                     "frames for LTX); each later segment's first (causal) latent is dropped."),
                io.Combo.Input("weights", options=list(WEIGHT_KINDS), default="cosine",
                               tooltip="Blend weights: gaussian (TurboVSR / DiffBIR kernel, var 0.01: a "
                                       "sharp blend) or cosine (sin^2 ramp over the overlap: the smoothest)."),
                io.Int.Input("tile_batch", default=1, min=1, max=64, step=1,
                             tooltip="Tiles per model call; more is faster on a big GPU and needs more "
                                     "memory. Does not change the result."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, tile_size, tile_overlap, segment_length, segment_overlap, **_):
        if tile_overlap >= tile_size:
            return f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size})"
        if segment_length and segment_overlap >= segment_length:
            return (f"segment_overlap ({segment_overlap}) must be smaller than segment_length "
                    f"({segment_length}), or set segment_length to 0")
        return True

    @classmethod
    def execute(cls, model, tile_size, tile_overlap, segment_length, segment_overlap, weights,
                tile_batch) -> io.NodeOutput:
        settings = TilingSettings((tile_size, tile_size), tile_overlap, segment_length, segment_overlap,
                                  weights, tile_batch)
        return io.NodeOutput(apply_tiling(model, settings))


NODES = [TurboTiledModel]
