"""Attention backends on a MODEL through transformer_options["optimized_attention_override"].

ComfyUI routes every attention call of LTX-Video, LTX-2 and Wan through the override; it cannot tell self-
from cross-attention, and LTX-Video sets no block index. So each self-attention module that the model's family
names (patches/families: LTX-Video transformer_blocks.N.attn1, LTX-2 also transformer_blocks.N.audio_attn1,
Wan blocks.N.self_attn) is object-patched with a view of itself (same parameters and children, see
fused_norms.module_view) whose forward adds {SITE_KEY: N} to the transformer_options it passes down. The
override runs the chosen backend only for calls carrying that key; cross-attention and anything else runs
exactly as before (the host's own function, or an override that was installed earlier): LTX-2's text cross-
attention (attn2, audio_attn2) and audio-video cross-attention (audio_to_video_attn, video_to_audio_attn) stay
exact. An SLA proj_l file is made for one head dim; on LTX-2 it applies to the video self-attention (head dim
128), the audio self-attention (64) runs SLA without it (TurboT2AV's sparse-only path). A self-attention call
the backend cannot take (head dim, dtype, a mask) or a Triton failure falls back to exact attention with one
warning.
"""
from __future__ import annotations

import logging

import torch

from ..kernels import attention as attention_kernels
from ..models import sla_weights
from . import families
from .fused_norms import module_view

OVERRIDE_KEY = "optimized_attention_override"
SITE_KEY = "turbovideo_self_attention_block"
BACKENDS = attention_kernels.BACKENDS



class SelfAttentionSite:
    """Mixin for the self-attention view: tags the call so the override knows where it runs."""

    def forward(self, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        kwargs["transformer_options"] = {**options, SITE_KEY: self.turbo_block_index}
        return super().forward(*args, **kwargs)


def _to_heads(x, heads, skip_reshape):
    return x if skip_reshape else x.unflatten(-1, (heads, -1)).transpose(1, 2)


class TurboAttentionOverride:
    """The override callable. Shared, not copied, by model clones (its state is the warn-once set)."""

    def __init__(self, backend: str, topk: float, proj_l: dict | None, previous=None, linear_keys="rest"):
        self.backend, self.topk, self.previous, self.linear_keys = backend, topk, previous, linear_keys
        self.proj_l = proj_l or {}
        self._on_device: dict = {}
        self._warned: set = set()

    def __deepcopy__(self, memo):
        return self

    def _exact(self, func, q, k, v, heads, **kwargs):
        if self.previous is not None:
            return self.previous(func, q, k, v, heads, **kwargs)
        return func(q, k, v, heads, **kwargs)

    def _warn_once(self, key: str, message: str):
        if key not in self._warned:
            self._warned.add(key)
            logging.warning("TurboAttention: %s; using exact attention (sdpa) for these calls instead", message)

    def _proj_l(self, block: int, head_dim: int, device: torch.device):
        """The block's proj_l for a self-attention of this head dim; a family with two streams (LTX-2: video
        attn1 head dim 128, audio_attn1 64) gets it only where it fits (apply_attention_backend checked the first)."""
        if block not in self.proj_l or self.backend not in ("sla", "sagesla"):
            return None
        if self.proj_l[block][0].shape[0] != head_dim:
            return None
        key = (block, str(device))
        if key not in self._on_device:
            self._on_device[key] = sla_weights.as_device(self.proj_l[block], device)
        return self._on_device[key]

    def __call__(self, func, q, k, v, heads=None, mask=None, skip_reshape=False, skip_output_reshape=False,
                 **kwargs):
        kwargs.update(mask=mask, skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape)
        block = (kwargs.get("transformer_options") or {}).get(SITE_KEY)
        if block is None or "triton" in self._warned:
            return self._exact(func, q, k, v, heads, **kwargs)
        qh, kh, vh = (_to_heads(t, heads, skip_reshape) for t in (q, k, v))
        reason = attention_kernels.unsupported_reason(qh, kh, vh, self.backend)
        if mask is not None:
            reason = "self-attention with a mask"
        if reason is not None:
            self._warn_once(reason, f"backend {self.backend!r} cannot run here ({reason})")
            return self._exact(func, q, k, v, heads, **kwargs)
        try:
            proj_l = self._proj_l(block, qh.shape[-1], qh.device)
            out = attention_kernels.attention(qh, kh, vh, self.backend, topk=self.topk, proj_l=proj_l,
                                              linear_keys=self.linear_keys)
        except Exception as error:  # a GPU the Triton kernels do not compile for; the torch path re-raises
            if not attention_kernels.uses_triton(qh):
                raise
            self._warn_once("triton", f"the Triton {self.backend!r} kernel failed on {qh.device} ({error})")
            return self._exact(func, q, k, v, heads, **kwargs)
        return out if skip_output_reshape else out.transpose(1, 2).flatten(2)


def self_attention_sites(model, family: families.Family) -> list[tuple[str, int]]:
    """(object-patch path, block index) of every self-attention module the family names."""
    blocks = family.blocks_of(model.get_model_object("diffusion_model"))
    return [(f"diffusion_model.{family.blocks}.{i}.{name}", i) for i in range(len(blocks))
            for name in family.self_attention]


def head_dim(model, family: families.Family) -> int:
    path = self_attention_sites(model, family)[0][0]
    return int(getattr(model.get_model_object(path), family.head_dim))


def apply_attention_backend(model, backend: str, topk: float = 0.1, proj_l: dict | None = None,
                            proj_l_name: str = "proj_l", linear_keys: str = "rest"):
    """A clone of `model` whose self-attention runs `backend`; proj_l {block: (weight, bias)} for SLA."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {BACKENDS}; got {backend!r}")
    family = families.require(model, families.ATTENTION)
    sites = self_attention_sites(model, family)
    if proj_l:
        dims = {weight.shape[0] for weight, _ in proj_l.values()}
        blocks = len(family.blocks_of(model.get_model_object("diffusion_model")))
        sla_weights.check_fits(max(dims), sorted(proj_l), head_dim(model, family), blocks, proj_l_name)
    patched = model.clone()
    for path, index in sites:
        view = module_view(patched.get_model_object(path), SelfAttentionSite)
        view.turbo_block_index = index
        patched.add_object_patch(path, view)
    options = patched.model_options.setdefault("transformer_options", {})
    previous = options.get(OVERRIDE_KEY)
    if isinstance(previous, TurboAttentionOverride):  # a second TurboAttention replaces the first
        previous = previous.previous
    options[OVERRIDE_KEY] = TurboAttentionOverride(backend, topk, proj_l, previous, linear_keys)
    return patched
