"""Tiled inference: TurboTiledModel makes any sampler run a video MODEL tile by tile; TurboTileLayoutPreview
draws its plan (docs/tiling.md)."""
from comfy_api.latest import io

from ..patches.tile_preview import layout_for_model
from ..patches.tiled_model import AUTO, MIB, TilingSettings, apply_tiling
from ..samplers.tiling import WEIGHT_KINDS
from .input_checks import check_image
from .schema_checks import require_schema, schema_problem

CATEGORY = "TurboVideo/tiling"


def tiling_inputs(overlap_default: int) -> list:
    """The tiling widgets, shared by TurboTiledModel and the VSR nodes (same names, same order)."""
    return [
        io.Int.Input("tile_size", default=0, min=0, max=1024, step=1,
                     tooltip="Tile height and width in latent cells (LTX: 16 = 512 px); memory follows the tile. "
                             "0 = auto: the largest tile whose model call fits memory_budget_mb, chosen at the "
                             "start of every run from the memory free then (the whole frame when it fits). A "
                             "size >= the frame = no tiling."),
        io.Int.Input("memory_budget_mb", default=0, min=0, max=1 << 20, step=256,
                     tooltip="For tile_size 0: memory one model call may use, in MiB, by ComfyUI's estimate for "
                             "this model. 0 = what the device has free once the model is loaded."),
        io.Int.Input("tile_overlap", default=overlap_default, min=0, max=1023, step=1,
                     tooltip="Latent cells shared by neighbouring tiles; must be < tile_size. The outer quarter "
                             "of each overlap is ignored, the middle blended: no seams."),
        io.Int.Input("segment_length", default=0, min=0, max=4096, step=1,
                     tooltip="Latent frames per temporal segment (LTX: 8 = 57 frames); 0 = the whole video at "
                             "once."),
        io.Int.Input("segment_overlap", default=2, min=2, max=4095, step=1,
                     tooltip="Latent frames shared by neighbouring segments (>= 2, i.e. 1 + 8 frames for LTX); "
                             "each later segment's first (causal) latent is dropped."),
        io.Combo.Input("weights", options=list(WEIGHT_KINDS), default="cosine",
                       tooltip="Blend weights: cosine (sin^2 ramp over the overlap: the smoothest) or gaussian "
                               "(TurboVSR / DiffBIR kernel, var 0.01: a sharper blend)."),
        io.Int.Input("tile_batch", default=1, min=1, max=64, step=1,
                     tooltip="Tiles per model call; more is faster on a big GPU and needs more memory. Does not "
                             "change the result."),
    ]


def validate_tiling(node_cls, tile_size: int, tile_overlap: int, segment_length: int, segment_overlap: int):
    """The cross-input checks of the tiling widgets, after the schema's own (core skips those for the inputs
    validate_inputs names: nodes/schema_checks.py). A linked value (None here) is checked when the node runs."""
    problem = schema_problem(node_cls, tile_size=tile_size, tile_overlap=tile_overlap, segment_length=segment_length,
                             segment_overlap=segment_overlap)
    if problem:
        return problem
    if None in (tile_size, tile_overlap, segment_length, segment_overlap):
        return True
    if tile_size and tile_overlap >= tile_size:
        return f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size})"
    if segment_length and segment_overlap >= segment_length:
        return (f"segment_overlap ({segment_overlap}) must be smaller than segment_length "
                f"({segment_length}), or set segment_length to 0")
    return True


def tiling_settings(tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights,
                    tile_batch) -> TilingSettings:
    tile = (tile_size, tile_size) if tile_size else AUTO
    budget = memory_budget_mb * MIB if memory_budget_mb else None
    return TilingSettings(tile, tile_overlap, segment_length, segment_overlap, weights, tile_batch, budget)


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
                io.Model.Input("model", tooltip="A video model (LTX-Video, LTX-2, Wan, SeedVR2) from a loader. "
                                                "SeedVR2 is cut on its attention-window grid: tile sizes and "
                                                "overlaps round to whole windows (docs/tiling.md)."),
                *tiling_inputs(overlap_default=8),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, tile_size=0, tile_overlap=8, segment_length=0, segment_overlap=2):
        return validate_tiling(cls, tile_size, tile_overlap, segment_length, segment_overlap)

    @classmethod
    def execute(cls, model, tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap, weights,
                tile_batch) -> io.NodeOutput:
        require_schema(cls, tile_size=tile_size, memory_budget_mb=memory_budget_mb, tile_overlap=tile_overlap,
                       segment_length=segment_length, segment_overlap=segment_overlap, tile_batch=tile_batch)
        settings = tiling_settings(tile_size, memory_budget_mb, tile_overlap, segment_length, segment_overlap,
                                   weights, tile_batch)
        return io.NodeOutput(apply_tiling(model, settings))


class TurboTileLayoutPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboTileLayoutPreview", display_name="Turbo Tile Layout Preview", category=CATEGORY,
            description="Draws the windows a TurboTiledModel MODEL will use on a video of these frames: tiles "
                        "tinted by their blend weights with white borders over the first frame, and one band per "
                        "temporal segment underneath (frames left to right, brightness = blend weight). An auto "
                        "tile is worked out by the sampler's own resolver, from the memory free now (a run measures "
                        "again when it starts).",
            inputs=[
                io.Model.Input("model", tooltip="The MODEL output of TurboTiledModel."),
                io.Vae.Input("vae", tooltip="The video VAE of that model (sets the latent cell size)."),
                io.Image.Input("images", tooltip="Frames at the size the model will generate or refine."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, optional=True,
                               tooltip="The sampler's cfg: at 1 one cond goes through the model per call, otherwise "
                                       "cond and uncond together (an auto tile is sized for that)."),
            ],
            outputs=[io.Image.Output(tooltip="The layout (frame height + 12 px per segment, frame width).")],
        )

    @classmethod
    def execute(cls, model, vae, images, cfg=1.0) -> io.NodeOutput:
        return io.NodeOutput(layout_for_model(model, vae, check_image(images, "images"), cfg))


NODES = [TurboTiledModel, TurboTileLayoutPreview]
