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
    width: str  # attribute of diffusion_model holding the (video) hidden width
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
    notes: dict = field(default_factory=dict)

    def blocks_of(self, diffusion_model) -> torch.nn.ModuleList:
        return getattr(diffusion_model, self.blocks)

    def width_of(self, diffusion_model) -> int:
        return int(getattr(diffusion_model, self.width))

    def default_fusion_blocks(self, num_blocks: int) -> list[int]:
        """Turbo2K's fusion block indices scaled to this model's depth (0, 7, 14, 21 of 28)."""
        return sorted({min(num_blocks - 1, round(d * num_blocks)) for d in self.default_fusion_depths})


@dataclass(frozen=True)
class VAEFamily:
    """Rules of a video VAE that chunked encode/decode needs beyond what comfy.sd.VAE reports."""
    name: str
    core_package: str  # comfy.ldm.<package> that defines the first-stage model
    causal_encoder: bool  # the first latent frame encodes pixel frame 0 alone (1 + f k frames)
    causal_decoder: bool | None  # None: read the decoder's own `causal` flag
