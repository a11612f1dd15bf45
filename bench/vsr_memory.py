"""Tiled video inference: peak memory follows the tile, time follows the work (docs/tiling.md).

Three cases at one fixed tile plan (16 x 16 latent tiles, overlap 4; 4-latent segments, overlap 2;
4 tiles per model call): a base latent, 4x its frames and 4x its area. Each case runs in a fresh
process: it builds the model and the input latent, resets the kernel's RSS high-water mark
(`5` > /proc/self/clear_refs), runs 4 Euler steps, and reports VmHWM minus the RSS at the reset.

--model local (default): a pure-torch local model (per-token MLP 128 -> 4096 -> 128 in float32 plus a
depthwise 3x3x3 convolution, so its activations per tile dominate as in a real DiT), stepped through
samplers/tiling.tiled_apply; needs no ComfyUI.
--model ltx2: core's LTX-2 DiT (LTXAVModel loaded by comfy.sd from a tiny random checkpoint in the 19B
layout, 1 block of width 1024, video-only) tiled by TurboTiledModel's patch (patches/tiled_model.py) and
sampled by ComfyUI's Euler sampler with one global noise tensor and the family's "no prompt"
conditioning, as TurboVSRUpscale's denoise does. Needs COMFYUI_PATH.

Work = latent cells of all windows x steps (segments and tiles overlap, so it grows faster than the
video). Pass: max/min peak_mb <= 1.15 and every case's seconds / work within 0.75-1.35x of the base.
Linux only. Run: python bench/vsr_memory.py --quick [--model ltx2]   (the last line is the JSON summary)
"""
from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import subprocess
import sys
import time
import types

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
CHANNELS, HIDDEN, STEPS = 128, 4096, 4
PLAN = dict(tile=(16, 16), overlap=4, segment=4, segment_overlap=2, kind="cosine")
TILE_BATCH = 4
CASES = {"base": (4, 28, 28), "4x_frames": (16, 28, 28), "4x_area": (4, 28, 112)}  # latent (T, H, W)
# --model ltx2: the tiny 19B-layout DiT with a video stream wide enough for its activations to dominate
LTX2_WIDTH = dict(num_layers=1, num_attention_heads=16, attention_head_dim=64, cross_attention_dim=1024)


def _status_kb(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _tiling():
    """samplers/tiling.py without the pack's __init__ (which needs ComfyUI)."""
    package = types.ModuleType("turbovideo")
    package.__path__ = [str(PACK_ROOT)]
    sys.modules.setdefault("turbovideo", package)
    return importlib.import_module("turbovideo.samplers.tiling")


def _model(torch):
    class LocalDenoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Conv3d(CHANNELS, CHANNELS, 3, padding=1, groups=CHANNELS)
            self.up, self.down = torch.nn.Linear(CHANNELS, HIDDEN), torch.nn.Linear(HIDDEN, CHANNELS)

        def forward(self, x):
            h = self.mix(x).movedim(1, -1)
            return self.down(torch.nn.functional.gelu(self.up(h))).movedim(-1, 1)

    torch.manual_seed(0)
    return LocalDenoiser().eval()


def _local_steps(frames, height, width):
    """The local model's 4 Euler steps over tiled_apply, in place: a callable to time, and its windows."""
    import torch

    tiling = _tiling()
    model = _model(torch)
    windows = tiling.plan_windows((frames, height, width), **PLAN)
    x = torch.randn(1, CHANNELS, frames, height, width)
    sigmas = torch.linspace(1.0, 0.0, STEPS + 1).tolist()

    def run():
        with torch.inference_mode():
            for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
                denoised = tiling.tiled_apply(lambda crops, _, s=sigma: crops - s * model(crops), x, windows,
                                              TILE_BATCH)
                x.mul_(sigma_next / sigma).add_(denoised, alpha=1.0 - sigma_next / sigma)  # Euler, in place
                del denoised

    return run, windows


def _ltx2_model():
    """Core's LTX-2 DiT from a tiny random 19B-layout state dict, loaded as UNETLoader does."""
    import comfy.sd
    from tiny_models import ltx2
    from tiny_models.random_weights import random_state_dict

    config = {**ltx2.TRANSFORMER_19B, **LTX2_WIDTH}
    state_dict = random_state_dict(ltx2.dit_layout(config), seed=0)
    metadata = {"config": json.dumps({"transformer": config})}
    return comfy.sd.load_diffusion_model_state_dict(state_dict, metadata=metadata)


def _ltx2_steps(frames, height, width):
    """4 Euler steps of ComfyUI's sampler on core's LTX-2 DiT tiled by the pack: a callable, and its windows."""
    from comfy_boot import boot_comfy

    boot_comfy()
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import torch
    from turbovideo.patches import families
    from turbovideo.patches.tiled_model import TilingSettings, apply_tiling

    torch.set_num_threads(1)
    base = _ltx2_model()
    settings = TilingSettings(PLAN["tile"], PLAN["overlap"], PLAN["segment"], PLAN["segment_overlap"], PLAN["kind"],
                              TILE_BATCH)
    model = apply_tiling(base, settings)
    positive = families.require(base, families.VSR).neutral_conditioning(base)
    latent = torch.randn(1, CHANNELS, frames, height, width, generator=torch.Generator().manual_seed(0))
    noise = comfy.sample.prepare_noise(latent, 0)
    sigmas = torch.linspace(1.0, 0.0, STEPS + 1)
    comfy.model_management.load_models_gpu([model])

    def run():
        with torch.inference_mode():
            comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, positive,
                                       positive, latent, disable_pbar=True, seed=0)

    return run, settings.plan((frames, height, width))


MODELS = {"local": _local_steps, "ltx2": _ltx2_steps}


def run_case(name: str, model: str = "local") -> dict:
    frames, height, width = CASES[name]
    run, windows = MODELS[model](frames, height, width)
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
    start_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    work = STEPS * sum(w.shape[0] * w.shape[1] * w.shape[2] for w in windows)
    return {"case": name, "shape": [frames, height, width], "windows": len(windows), "work": work,
            "seconds": seconds, "peak_mb": (_status_kb("VmHWM") - start_kb) * 1024 / MIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the three acceptance cases (the only mode)")
    parser.add_argument("--model", choices=sorted(MODELS), default="local",
                        help="local: a pure-torch stand-in (default); ltx2: core's LTX-2 DiT through ComfyUI's sampler")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.model)))
        return
    rows = []
    for name in CASES:
        done = subprocess.run([sys.executable, __file__, "--case", name, "--model", args.model], capture_output=True,
                              text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"{'case':<10} {'latent T,H,W':<14} {'windows':>7} {'work x':>7} {'seconds':>8} {'time/work':>9} "
          f"{'peak MB':>8}")
    for row in rows:
        ratio = (row["seconds"] / base["seconds"]) / (row["work"] / base["work"])
        print(f"{row['case']:<10} {','.join(map(str, row['shape'])):<14} {row['windows']:>7} "
              f"{row['work'] / base['work']:>7.2f} {row['seconds']:>8.2f} {ratio:>9.2f} {row['peak_mb']:>8.1f}")
    peaks = [row["peak_mb"] for row in rows]
    ratios = [(r["seconds"] / base["seconds"]) / (r["work"] / base["work"]) for r in rows]
    spread_ok = max(peaks) / min(peaks) <= 1.15
    time_ok = all(0.75 <= r <= 1.35 for r in ratios)
    print(f"peak spread {max(peaks) / min(peaks):.3f} (<= 1.15: {spread_ok}); time/work "
          f"{min(ratios):.2f}-{max(ratios):.2f} (0.75-1.35: {time_ok})")
    print(json.dumps({"cases": [r["case"] for r in rows], "peak_mb": [round(p, 1) for p in peaks],
                      "seconds": [round(r["seconds"], 3) for r in rows], "work": [r["work"] for r in rows]}))


if __name__ == "__main__":
    main()
