"""`bench/vsr_memory.py --model ltx2`: the tiled LTX-2 run of TurboVSRUpscale's denoise, on core's LTX-2 DiT.

Core's LTXAVModel, loaded by comfy.sd from a tiny random checkpoint in the 19B layout (1 block; video width 768,
so its activations per tile dominate as in the real model), video-only, tiled by TurboTiledModel's patch
(patches/tiled_model.py) at the local model's plan and sampled by ComfyUI's Euler sampler with one global noise
tensor and the family's "no prompt" conditioning, as TurboVSRUpscale's denoise does. Run with ComfyUI's
Python and COMFYUI_PATH.

Each case runs in a fresh process: it boots ComfyUI on the CPU, builds the model and the latent, resets the
kernel's RSS high-water mark, runs 4 Euler steps and reports VmHWM minus the RSS at the reset. glibc's mmap
threshold is fixed at 128 KiB first (mallopt), so every large tensor is mapped on its own and handed back when
freed: the RSS then follows the live tensors, not what the heap keeps (without it the base case's peak varied
from 374 to 480 MB between runs). Besides the tile's activations the peak holds ComfyUI's sampler state, about
ten copies of the whole latent (1.6 MB base, 6.4 MB in the 4x cases): the part that grows with the video.
"""
from __future__ import annotations

import ctypes
import json
import pathlib
import time

from vsr_memory import CASES, PLAN, STEPS, TILE_BATCH, _status_kb, summarise  # noqa: F401 (summarise: the API)

MIB = 1024 * 1024
CHANNELS = 128
PATHS = ("turbo",)
WIDTH = dict(num_layers=1, num_attention_heads=12, attention_head_dim=64, cross_attention_dim=768)
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _fixed_mmap_threshold() -> None:
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def _model():
    """Core's LTX-2 DiT from a tiny random 19B-layout state dict, loaded as UNETLoader does."""
    import comfy.sd
    from tiny_models import ltx2
    from tiny_models.random_weights import random_state_dict

    config = {**ltx2.TRANSFORMER_19B, **WIDTH}
    metadata = {"config": json.dumps({"transformer": config})}
    return comfy.sd.load_diffusion_model_state_dict(random_state_dict(ltx2.dit_layout(config), seed=0),
                                                    metadata=metadata)


def run_case(name: str, path: str = "turbo") -> dict:
    _fixed_mmap_threshold()
    from comfy_boot import boot_comfy

    boot_comfy()
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import torch
    from turbovideo.patches import families
    from turbovideo.patches.tiled_model import TilingSettings, apply_tiling

    torch.set_num_threads(1)
    base = _model()
    settings = TilingSettings(PLAN["tile"], PLAN["overlap"], PLAN["segment"], PLAN["segment_overlap"], PLAN["kind"],
                              TILE_BATCH)
    model = apply_tiling(base, settings)
    positive = families.require(base, families.VSR).neutral_conditioning(base)
    frames, height, width = CASES[name]
    latent = torch.randn(1, CHANNELS, frames, height, width, generator=torch.Generator().manual_seed(0))
    noise = comfy.sample.prepare_noise(latent, 0)
    sigmas = torch.linspace(1.0, 0.0, STEPS + 1)
    comfy.model_management.load_models_gpu([model])
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
    start_kb, start = _status_kb("VmRSS"), time.perf_counter()
    with torch.inference_mode():
        comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, positive,
                                   positive, latent, disable_pbar=True, seed=0)
    seconds = time.perf_counter() - start
    windows = settings.plan((frames, height, width))
    work = STEPS * sum(w.shape[0] * w.shape[1] * w.shape[2] for w in windows)
    return {"case": name, "shape": [frames, height, width], "windows": len(windows), "work": work,
            "seconds": seconds, "peak_mb": (_status_kb("VmHWM") - start_kb) * 1024 / MIB}
