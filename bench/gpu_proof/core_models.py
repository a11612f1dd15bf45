"""Core ComfyUI models at real dimensions with random weights, and timed sampler steps through them.

A model is built the way comfy.sd builds one from a checkpoint, minus the file: core's
model_detection finds the supported-model config for a unet_config (the keys its detector would
read off a checkpoint), set_inference_dtype, get_model on the GPU, then every parameter is filled
with nn.Linear-like random values (uniform +-1/sqrt(fan_in); norm weights near 1) so activations
stay finite through all blocks. It is wrapped in a ModelPatcher whose offload device is the GPU
too (nothing moves to the host between configurations), and driven by core's own sampling path:
comfy.sample.sample_custom with the Euler KSAMPLER, cfg 1 (one model call per step) and the pack's
patches applied as ModelPatcher clones. A step's time is the interval between two sampler
callbacks (CUDA synchronised), so the first step, which compiles Triton kernels, is not counted.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
import time

import torch

TEXT_DIM = 4096  # umt5-xxl (Wan) and T5-XXL (LTX-Video) hidden size


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    unet_config: dict
    latent: tuple[int, int, int, int]  # channels, latent frames, latent height, latent width
    text_tokens: int
    params_b: float  # billions of parameters, for the memory check

    @property
    def tokens(self) -> int:
        channels, frames, height, width = self.latent
        patch = (1, 2, 2) if self.unet_config["image_model"].startswith("wan") else (1, 1, 1)
        return frames // patch[0] * (height // patch[1]) * (width // patch[2])


def _wan(dim, ffn, heads, layers) -> dict:
    return {"image_model": "wan2.1", "model_type": "t2v", "dim": dim, "ffn_dim": ffn, "num_heads": heads,
            "num_layers": layers, "in_dim": 16, "out_dim": 16, "patch_size": (1, 2, 2), "freq_dim": 256,
            "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}


def _ltxv(layers, head_dim, heads=32) -> dict:
    return {"image_model": "ltxv", "num_layers": layers, "attention_head_dim": head_dim, "num_attention_heads": heads,
            "cross_attention_dim": heads * head_dim}


def model_specs(smoke: bool) -> list[ModelSpec]:
    if smoke:
        return [ModelSpec("tiny Wan2.1 (2 x 128, D 128)", _wan(128, 256, 1, 2), (16, 3, 8, 8), 16, 0.001),
                ModelSpec("tiny LTX-Video (2 x 128, D 64)", _ltxv(2, 64, heads=2), (128, 2, 4, 4), 16, 0.001)]
    return [
        ModelSpec("Wan2.1-1.3B T2V, 480p x 81 frames", _wan(1536, 8960, 12, 30), (16, 21, 60, 104), 512, 1.4),
        ModelSpec("LTX-Video 2B, 1080p x 121-frame window", _ltxv(28, 64), (128, 16, 34, 60), 128, 2.0),
        ModelSpec("LTX-2 19B video transformer dims (48 x 4096, D 128; core LTXV class, no audio stream), "
                  "1080p x 121", _ltxv(48, 128), (128, 16, 34, 60), 128, 13.0),
    ]


def _fill_random(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() >= 2:
                bound = (param[0].numel()) ** -0.5
                param.uniform_(-bound, bound, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                param.normal_(1.0, 0.02, generator=gen)
            else:
                param.normal_(0.0, 0.02, generator=gen)


def build(core, spec: ModelSpec, device: torch.device, dtype: torch.dtype):
    """A ModelPatcher around core's model class for spec, random weights, loaded on `device`."""
    comfy = core.comfy
    config = comfy.model_detection.model_config_from_unet_config(dict(spec.unet_config))
    if config is None:
        raise ValueError(f"core found no supported model for {spec.unet_config}")
    config.set_inference_dtype(dtype, None)
    model = config.get_model({}, "", device=device)
    model.diffusion_model.to(device)
    _fill_random(model.diffusion_model, seed=len(spec.name))
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


@dataclasses.dataclass
class StepTiming:
    step_s: float | None  # median seconds per sampler step after the first
    first_s: float
    peak_gb: float | None  # peak allocated during sampling
    above_gb: float | None  # that peak minus what was allocated before (weights): the activations
    finite: bool


def sample_steps(core, patcher, spec: ModelSpec, steps: int, device: torch.device, seed: int = 0) -> StepTiming:
    """`steps` Euler steps (cfg 1: one model call each) through comfy.sample.sample_custom."""
    comfy = core.comfy
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, *spec.latent, generator=gen)
    context = torch.randn(1, spec.text_tokens, TEXT_DIM, generator=gen)
    # LTX-Video's T5 conditioning carries its token mask (core's LTX forward requires one)
    extra = {"attention_mask": torch.ones(1, spec.text_tokens)} if spec.unet_config["image_model"] == "ltxv" else {}
    positive = [[context, extra]]
    sigmas = torch.linspace(1.0, 0.6, steps + 1)
    stamps: list[float] = []

    def callback(step, x0, x, total):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    out = comfy.sample.sample_custom(patcher, noise, 1.0, comfy.samplers.ksampler("euler"), sigmas, positive,
                                     positive, torch.zeros_like(noise), callback=callback, disable_pbar=True, seed=seed)
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return StepTiming(statistics.median(intervals) if intervals else None, stamps[0] - began if stamps else 0.0,
                      peak, None if peak is None else peak - before / 2 ** 30, bool(torch.isfinite(out).all()))


def release(core) -> None:
    """Unpatch and drop whatever core still holds between configurations."""
    core.comfy.model_management.unload_all_models()
    gc.collect()
    core.comfy.model_management.soft_empty_cache()
