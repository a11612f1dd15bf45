"""Plain and multi-stream LATENTs: an LTX-2 audio-video latent (LTXVConcatAVLatent) is a NestedTensor of
(video, audio). The pack's LR -> HR paths work on the video stream and keep the others as they are.
"""
from __future__ import annotations

import comfy.nested_tensor
import torch


class ZeroNoise:
    """Noise_EmptyNoise for plain and nested (audio-video) latents."""
    seed = 0

    def generate_noise(self, latent: dict):
        samples = latent["samples"]
        if getattr(samples, "is_nested", False):
            return comfy.nested_tensor.NestedTensor([torch.zeros_like(t, device="cpu") for t in samples.unbind()])
        return torch.zeros(samples.shape, dtype=samples.dtype, device="cpu")


def split_streams(latent: dict) -> tuple[dict, list]:
    """(the video LATENT, the other streams' tensors) of a plain or nested (LTX-2 audio-video) LATENT."""
    samples = latent["samples"]
    if not getattr(samples, "is_nested", False):
        return latent, []
    video, *others = samples.unbind()
    base = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
    return {**base, "samples": video}, others


def with_fixed_streams(video: dict, others: list) -> dict:
    """The HR LATENT: the video stream to sample, the other streams kept as they are (denoise mask 0)."""
    if not others:
        return video
    samples = [video["samples"], *others]
    masks = [torch.ones_like(video["samples"]), *(torch.zeros_like(t) for t in others)]
    return {**video, "samples": comfy.nested_tensor.NestedTensor(samples),
            "noise_mask": comfy.nested_tensor.NestedTensor(masks)}
