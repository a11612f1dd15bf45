"""Tiled video inference: peak memory follows the tile, time follows the work (docs/tiling.md).

Three cases at one fixed tile plan (16 x 16 latent tiles, overlap 4; 4-latent segments, overlap 2;
4 tiles per model call): a base latent, 4x its frames and 4x its area. Each case runs in a fresh
process: it builds the model and the input latent, resets the kernel's RSS high-water mark
(`5` > /proc/self/clear_refs), runs 4 Euler steps through samplers/tiling.tiled_apply, and reports
VmHWM minus the RSS at the reset. The model is pure torch and local (per-token MLP 128 -> 4096 -> 128
in float32 plus a depthwise 3x3x3 convolution), so its activations per tile dominate as in a real DiT.

Work = latent cells of all windows x steps (segments and tiles overlap, so it grows faster than the
video). Pass: max/min peak_mb <= 1.15 and every case's seconds / work within 0.75-1.35x of the base.
Linux only. Run: python bench/vsr_memory.py --quick   (the last line is the JSON summary)

--model picks what runs: `local` (the default, above), `ltx2` (core's LTX-2 DiT through TurboTiledModel and
ComfyUI's sampler: bench/vsr_memory_ltx2.py; needs COMFYUI_PATH) or `seedvr2` (core's SeedVR2 DiT and VAE through
TurboTiledModel and the streaming decode against core's untiled path: bench/vsr_memory_seedvr2.py; needs
COMFYUI_PATH to a ComfyUI 0.29+). Each model module gives CASES, PATHS, run_case(name, path) and summarise(rows).
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


def run_case(name: str, path: str = "turbo") -> dict:
    import torch

    tiling = _tiling()
    model = _model(torch)
    frames, height, width = CASES[name]
    windows = tiling.plan_windows((frames, height, width), **PLAN)
    x = torch.randn(1, CHANNELS, frames, height, width)
    sigmas = torch.linspace(1.0, 0.0, STEPS + 1).tolist()
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
    start_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    with torch.inference_mode():
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            denoised = tiling.tiled_apply(lambda crops, _, s=sigma: crops - s * model(crops), x, windows, TILE_BATCH)
            x.mul_(sigma_next / sigma).add_(denoised, alpha=1.0 - sigma_next / sigma)  # Euler, in place
            del denoised
    seconds = time.perf_counter() - start
    work = STEPS * sum(w.shape[0] * w.shape[1] * w.shape[2] for w in windows)
    return {"case": name, "shape": [frames, height, width], "windows": len(windows), "work": work,
            "seconds": seconds, "peak_mb": (_status_kb("VmHWM") - start_kb) * 1024 / MIB}


PATHS = ("turbo",)


def summarise(rows: list[dict]) -> dict:
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
    return {"cases": [r["case"] for r in rows], "peak_mb": [round(p, 1) for p in peaks],
            "seconds": [round(r["seconds"], 3) for r in rows], "work": [r["work"] for r in rows]}


def _model_module(model: str):
    """The bench of one model: this file for `local`, bench/vsr_memory_<model>.py otherwise."""
    return sys.modules[__name__] if model == "local" else importlib.import_module(f"vsr_memory_{model}")


def _in_fresh_process(model: str, name: str, path: str) -> dict:
    command = [sys.executable, __file__, "--model", model, "--case", name, "--path", path]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{model} {name} {path} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the three acceptance cases (the only mode)")
    parser.add_argument("--model", choices=("local", "ltx2", "seedvr2"), default="local",
                        help="local: pure-torch local denoiser (default); ltx2: core's LTX-2 DiT; seedvr2: core "
                             "SeedVR2 DiT + VAE (ComfyUI 0.29+)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process
    parser.add_argument("--path", default="turbo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bench = _model_module(args.model)
    if args.case:
        print(json.dumps(bench.run_case(args.case, args.path)))
        return
    rows = []
    for name in bench.CASES:
        for path in bench.PATHS:
            rows.append(_in_fresh_process(args.model, name, path))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each case as it ends
    print(json.dumps(bench.summarise(rows)))


if __name__ == "__main__":
    main()
