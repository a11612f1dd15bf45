"""What the pack needs to know about one model family, as data: where core keeps its parts.

A Family is matched against core's MODEL by the class name of `model.model` (comfy.model_base) and
against a detected checkpoint config by the class name in comfy.supported_models; classes a host does
not have (SeedVR2 on 0.8.0) simply never match. Capabilities say which of the pack's patches know the
family; a patch asks families.require(model, capability, input_name) and gets either the Family or a
ValueError that names the input, the model and the families that would work.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# capabilities
ATTENTION = "TurboAttention"
INT8 = "TurboQuantizeINT8"
STEP_SIZE = "step-size conditioning (TurboShortcutModel)"
LR_FEATURES = "LR -> HR feature guidance (TurboLRPass / TurboApplyLRFeatures)"
VSR = "video super-resolution (TurboVSRUpscale)"
DIT_LOADER = "TurboDiTLoader"
TILING = "TurboTiledModel"
CHECKPOINTING = "gradient checkpointing (training --gradient-checkpointing)"


@dataclass(frozen=True)
class TilingRules:
    """What TurboTiledModel must respect on a family beyond "any latent cell will do".

    unit(base_model, (T, H, W)) -> latent cells (frames, rows, cols) of one window unit: windows start on
    multiples of it and are whole units long (the last one ends at the edge); tile_size and overlaps are
    rounded to units, a square tile becoming n x n units. call_cost(base_model, batch, channels) ->
    cost(t, h, w): bytes of one model call on a window, for the auto tile (None: core's
    BaseModel.memory_required with the sampler's 1.5 headroom). pairs_batch_halves: the model matches the
    first and second half of its batch by position (cond with uncond), so a call may hold one window only
    when the sampler's batch has more than one item.
    """
    unit: Callable
    call_cost: Callable | None = None
    pairs_batch_halves: bool = False


def _plain_tokens(img):
    return img


def _replace_plain(img, tokens):
    return tokens


def _plain_latent(x):
    return x


def _no_conds(x) -> dict:
    return {}


@dataclass(frozen=True)
class Family:
    name: str
    model_classes: tuple[str, ...]  # comfy.model_base class names (exact type, subclasses listed too)
    config_classes: tuple[str, ...]  # comfy.supported_models class names
    blocks: str  # attribute of diffusion_model holding the transformer blocks
    self_attention: tuple[str, ...]  # attributes of a block holding its self-attention modules
    head_dim: str  # attribute of an attention module holding its head dim
    width: str | None  # attribute of diffusion_model holding the (video) hidden width; None: not stored
    time_embedding: str | None = None  # object-patch path of the time-embedding module
    capabilities: frozenset = frozenset()
    # a block-replace patch's args["img"] / returned out["img"]: the video tokens [B, N, width] in it
    video_tokens: Callable = _plain_tokens
    replace_video_tokens: Callable = _replace_plain
    # LTX-style caption embedding for "no prompt" (model -> conditioning list), where the family has one
    neutral_conditioning: Callable | None = None
    default_fusion_depths: tuple[float, ...] = ()  # relative block depths of Turbo2K's fusion blocks
    # width of the (already text-encoded) caption context a DiT call takes, for "no prompt" and training
    context_width: Callable | None = None  # diffusion_model -> int
    # the video latent [B, C, T, H, W] inside what the diffusion model's forward gets as x
    video_latent: Callable = _plain_latent
    # extra conds an apply_model call made outside core's samplers must pass (x -> dict): training uses it
    direct_call_conds: Callable = _no_conds
    # how to give this family's model a plain video latent, for patches that need one (tiling, LR features)
    video_only_hint: str = ""
    # a block's submodules by role, for TurboQuantizeINT8's `layers` choice
    attention_modules: tuple[str, ...] = ()
    feed_forward_modules: tuple[str, ...] = ()
    tiling: TilingRules | None = None  # None: TurboTiledModel may cut at any latent cell
    notes: dict = field(default_factory=dict)

    def blocks_of(self, diffusion_model) -> torch.nn.ModuleList:
        return getattr(diffusion_model, self.blocks)

    def width_of(self, diffusion_model) -> int:
        if self.width is None:
            raise ValueError(f"model: the pack does not know where {self.name} keeps its hidden width")
        return int(getattr(diffusion_model, self.width))

    def default_fusion_blocks(self, num_blocks: int) -> list[int]:
        """Turbo2K's fusion block indices scaled to this model's depth (0, 7, 14, 21 of 28)."""
        return sorted({min(num_blocks - 1, round(d * num_blocks)) for d in self.default_fusion_depths})


@dataclass(frozen=True)
class CarriedState:
    """A VAE that continues a video from the state the previous part left (its causal frame cache):
    decode(vae, latent, state) -> IMAGE frames (B, T, H, W, C), encode(vae, pixels, state) -> latent, each
    starting a video when `state` is an empty dict and filling it for the next part."""
    decode: Callable
    encode: Callable


@dataclass(frozen=True)
class VAEFamily:
    """Rules of a video VAE that chunked encode/decode needs beyond what comfy.sd.VAE reports."""
    name: str
    core_package: str  # comfy.ldm.<package> that defines the first-stage model
    causal_encoder: bool  # the first latent frame encodes pixel frame 0 alone (1 + f k frames)
    causal_decoder: bool | None  # None: read the decoder's own `causal` flag
    carried: CarriedState | None = None  # None: chunks are separate videos (overlapped, blended)
    pixel_multiple: int = 1  # frame sides must be multiples of this (1: core crops them itself)
