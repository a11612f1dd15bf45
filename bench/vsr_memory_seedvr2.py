"""`bench/vsr_memory.py --model seedvr2`: core's SeedVR2 (ComfyUI 0.29+) with the pack's flat-memory path
against core's own untiled path, on the tiny 3B-layout DiT (widened to 256) and VAE of the tests (the real
structure: 32 blocks, window attention, causal 3D VAE; small widths). Run with ComfyUI's Python and COMFYUI_PATH.

Each (case, path) runs in a fresh process: it boots ComfyUI on the CPU, builds the models with core's
loaders, encodes nothing (the LR latent is random, as VAEEncode would give) and conditions it with core's
SeedVR2Conditioning; then it resets the kernel's RSS high-water mark and runs one Euler step (core's
SeedVR2 graph) and the decode:
- turbo: TurboTiledModel (tiles of one attention window, 40 x 40 latent cells; segments of 3 latent
  frames) and the streaming decode into an MP4 (1 latent frame a chunk, tiles of 40 x 40 latent cells =
  320 x 320 px, each tile continuing its own causal cache);
- core: the untiled MODEL and VAEDecode (core decodes one latent frame at a time too, with one causal
  cache for the whole frame, and returns the whole video as one IMAGE batch).
Reported per phase (the high-water mark is reset between them), above the RSS before sampling:
peak_mb_dit, peak_mb_decode, and peak_mb = the larger. SeedVR2's causal cache (about two frames of decoder
features per convolution, for the whole frame area: one per tile) has to live until the next chunk, so it
grows with the area in both paths; the streaming decode parks it on the VAE's output device (host memory
on a GPU machine) between tiles, so the compute device holds one tile. On this CPU machine both are RSS:
parked_cache_mb (the tiles' parked caches at the end) and peak_mb_working = max(DiT, decode - parked) say
what the compute device would hold.
"""
from __future__ import annotations

import pathlib
import tempfile
import time

MIB = 1024 * 1024
CASES = {"base": (3, 40, 40), "4x_frames": (9, 40, 40), "4x_area": (3, 80, 80)}  # latent (T, H, W)
PATHS = ("turbo", "core")
TILING = dict(tile=(40, 40), overlap=0, segment=3, segment_overlap=2)
DIT = dict(width=256, heads=4, head_dim=64)  # wider than the tests' DiT, so its activations show in the RSS
VAE_CHUNKS = dict(frames=1, tile=40, overlap_tile=0)  # latent units: 1 latent frame of 320 x 320 px


def _status_kb(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _models():
    import comfy.sd
    from comfy_extras.nodes_seedvr import SeedVR2Conditioning
    from tiny_models import seedvr2 as tiny

    if not tiny.host_has_seedvr2():
        raise SystemExit("--model seedvr2 needs ComfyUI 0.29 or later (core SeedVR2); set COMFYUI_PATH to one")
    tiny.install_core_width_hooks()
    model = comfy.sd.load_diffusion_model_state_dict(tiny.dit_state_dict(**DIT))
    return model, comfy.sd.VAE(sd=tiny.vae_state_dict()), SeedVR2Conditioning


def _sample(path: str, model, lr, conditioning):
    import comfy.sample
    import torch
    from turbovideo.patches import tiled_model

    positive, negative = conditioning.execute(model, {"samples": lr}).args
    if path == "turbo":
        model = tiled_model.apply_tiling(model, tiled_model.TilingSettings(**TILING))
    noise = torch.randn(lr.shape, generator=torch.Generator().manual_seed(1))
    return comfy.sample.sample(model, noise, 1, 1.0, "euler", "simple", positive, negative, lr, denoise=1.0,
                               disable_pbar=True, seed=1)


def _count_parked(parked: dict) -> None:
    """Records, per tile cache, the bytes the streaming decode parks between tiles (core_compat._park)."""
    from turbovideo.patches import core_compat

    park = core_compat._park

    def counting(cache: dict, device) -> None:
        park(cache, device)
        parked[id(cache)] = sum(v.numel() * v.element_size() for v in cache.values() if hasattr(v, "numel"))

    core_compat._park = counting


def _decode(path: str, vae, samples, folder: str, parked: dict) -> int:
    from turbovideo.patches import chunked_vae, video_stream

    if path == "core":
        return vae.decode(samples).shape[1]
    _count_parked(parked)
    plan = chunked_vae.plan_decode(vae, samples.shape, chunked_vae.ChunkOptions(**VAE_CHUNKS))
    out = str(pathlib.Path(folder) / "seedvr2.mp4")
    video_stream.write_video(out, chunked_vae.decode_blocks(vae, samples, plan), 24.0, 19)
    return video_stream.video_from_file(out).get_frame_count()


def work(name: str, path: str) -> int:
    """Latent cells the DiT computes: every window's (tiled) or the latent's (untiled)."""
    frames, height, width = CASES[name]
    if path == "core":
        return frames * height * width
    from turbovideo.samplers.tiling import plan_windows

    windows = plan_windows(CASES[name], (1, 1), 0, 3, 2, unit=(1, 40, 40))
    return sum(w.shape[0] * w.shape[1] * w.shape[2] for w in windows)


def run_case(name: str, path: str) -> dict:
    import torch
    from vae_memory import _import_host  # the benches' one ComfyUI bootstrap (COMFYUI_PATH, CPU, the pack)

    _import_host()
    import turbovideo.patches.chunked_vae  # noqa: F401  imported before the measurement (PyAV, the pack)
    import turbovideo.patches.tiled_model  # noqa: F401
    import turbovideo.patches.video_stream  # noqa: F401
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        model, vae, conditioning = _models()
        frames, height, width = CASES[name]
        lr = torch.randn(1, 16, frames, height, width, generator=torch.Generator().manual_seed(0))
        pathlib.Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
        start_kb, start = _status_kb("VmRSS"), time.perf_counter()
        samples = _sample(path, model, lr, conditioning)
        dit_kb = _status_kb("VmHWM")
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        parked: dict = {}
        decoded = _decode(path, vae, samples, folder, parked)
        seconds, decode_kb = time.perf_counter() - start, _status_kb("VmHWM")
    if decoded != 1 + 4 * (frames - 1):
        raise RuntimeError(f"{name}/{path}: {decoded} frames decoded, {1 + 4 * (frames - 1)} expected")
    dit_mb, decode_mb = ((kb - start_kb) * 1024 / MIB for kb in (dit_kb, decode_kb))
    parked_mb = sum(parked.values()) / MIB
    return {"case": name, "path": path, "shape": [frames, height, width], "work": work(name, path),
            "seconds": seconds, "peak_mb": max(dit_mb, decode_mb), "peak_mb_dit": dit_mb,
            "peak_mb_decode": decode_mb, "parked_cache_mb": parked_mb,
            "peak_mb_working": max(dit_mb, decode_mb - parked_mb)}


def _table(turbo: list[dict], core: list[dict]) -> None:
    print(f"{'case':<10} {'latent T,H,W':<13} {'turbo MB: peak (DiT / decode)':>31} {'parked':>7} {'working':>8} "
          f"{'s':>6} {'core MB: peak (DiT / decode)':>30} {'s':>6}")
    for t, c in zip(turbo, core):
        cells = [f"{r['peak_mb']:>8.1f} ({r['peak_mb_dit']:.1f} / {r['peak_mb_decode']:.1f})" for r in (t, c)]
        print(f"{t['case']:<10} {','.join(map(str, t['shape'])):<13} {cells[0]:>31} {t['parked_cache_mb']:>7.1f} "
              f"{t['peak_mb_working']:>8.1f} {t['seconds']:>6.1f} {cells[1]:>30} {c['seconds']:>6.1f}")


def summarise(rows: list[dict]) -> dict:
    """Prints the table; returns the JSON summary (the local model's fields for the turbo path, + core's)."""
    turbo = [r for r in rows if r["path"] == "turbo"]
    core = [r for r in rows if r["path"] == "core"]
    _table(turbo, core)
    growth = lambda series, key="peak_mb": [round(r[key] / series[0][key], 3) for r in series]
    working = growth(turbo, "peak_mb_working")
    print(f"peak / base: turbo {growth(turbo)}, core {growth(core)}; turbo working (compute device) {working} "
          f"(<= 1.15 each: {max(working) <= 1.15})")
    rounded = lambda series, key: [round(r[key], 1) for r in series]
    return {"model": "seedvr2", "cases": [r["case"] for r in turbo], "peak_mb": rounded(turbo, "peak_mb"),
            "seconds": [round(r["seconds"], 3) for r in turbo], "work": [r["work"] for r in turbo],
            "peak_mb_dit": rounded(turbo, "peak_mb_dit"), "peak_mb_decode": rounded(turbo, "peak_mb_decode"),
            "parked_cache_mb": rounded(turbo, "parked_cache_mb"), "peak_mb_working": rounded(turbo, "peak_mb_working"),
            "peak_mb_core": rounded(core, "peak_mb"), "peak_mb_core_dit": rounded(core, "peak_mb_dit"),
            "peak_mb_core_decode": rounded(core, "peak_mb_decode"),
            "seconds_core": [round(r["seconds"], 3) for r in core]}
