"""An empty LTX-2 audio-video latent with TurboT2AV's lengths, as core's LTXVConcatAVLatent builds one."""
from __future__ import annotations

import comfy.model_management
import comfy.nested_tensor
import torch

from ..models import turbot2av


def empty_av_latent(width: int, height: int, frames: int, batch: int, frame_rate: float) -> dict:
    """{"samples": NestedTensor((video zeros, audio zeros))}: what SamplerCustomAdvanced takes for LTXAV."""
    video_shape, audio_shape = turbot2av.latent_shapes(width, height, frames, batch, frame_rate)
    device = comfy.model_management.intermediate_device()
    video = torch.zeros(video_shape, device=device)
    audio = torch.zeros(audio_shape, device=device)
    return {"samples": comfy.nested_tensor.NestedTensor((video, audio))}
