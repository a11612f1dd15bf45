"""Peak memory of decoding an LTX-Video latent: ComfyUI's plain VAEDecode vs TurboVAEDecodeToVideo.

Run with the Python that runs ComfyUI, from the pack folder:

    COMFYUI_PATH=/path/to/ComfyUI python bench/vae_memory.py --quick

The VAE is the tiny random LTX VAE of the tests (real 32x32 spatial / 8x temporal compression, 128
channels, 49 MiB), built in memory. Each measurement runs in a fresh process forked from a parent
that has only imported ComfyUI (imports cost ~8 s). The two methods run side by side, one torch
thread each (a peak is per process, so the pair does not mix). The child builds the VAE and a
unit-normal latent, reads its resident memory, resets the kernel's high-water mark
(`5` > /proc/self/clear_refs), decodes, and reports VmHWM minus that starting point.

- comfy: `vae.decode(latent)` reshaped to frames, exactly what the core VAEDecode node runs.
- turbo: `TurboVAEDecodeToVideo.execute` (H.264 into a temp folder) with memory_budget_mb (default
  1536: chunks of 3 latent frames under ComfyUI's own estimate for this VAE) and chunk_overlap 8 frames.

Prints a table, then as its LAST line {"frames": [...], "peak_mb_comfy": [...], "peak_mb_turbo": [...]}.
Linux only (clear_refs, VmHWM).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
import time

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _import_host():
    root = os.environ.get("COMFYUI_PATH") or str(PACK_ROOT.parent.parent)
    if not (pathlib.Path(root) / "comfy").is_dir():
        sys.exit("set COMFYUI_PATH to the ComfyUI folder (the one with main.py)")
    sys.path.insert(0, root)
    sys.path.insert(0, str(PACK_ROOT / "tests"))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.sd  # noqa: F401
    import folder_paths  # noqa: F401

    spec = importlib.util.spec_from_file_location("turbovideo", PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["turbovideo"] = package
    spec.loader.exec_module(package)
    import turbovideo.nodes.vae_nodes  # noqa: F401


def _tiny_ltx_vae():
    import comfy.sd
    from tiny_models import ltxv
    from tiny_models.random_weights import random_state_dict

    state_dict = random_state_dict(ltxv.vae_layout(), seed=3)
    state_dict.update(ltxv.vae_statistics(seed=4))
    return comfy.sd.VAE(sd=state_dict, metadata={"config": json.dumps({"vae": ltxv.TINY_VAE_CONFIG})})


def _decode(method: str, vae, latent, budget_mb: int, folder: str):
    if method == "comfy":
        images = vae.decode(latent)
        return images.reshape(-1, *images.shape[-3:]).shape[0]
    import folder_paths
    from turbovideo.nodes.vae_nodes import TurboVAEDecodeToVideo

    folder_paths.set_temp_directory(folder)
    out = TurboVAEDecodeToVideo.execute({"samples": latent}, vae, frame_rate=24.0, crf=19,
                                        memory_budget_mb=budget_mb, chunk_frames=0, chunk_overlap=8,
                                        tile_size=0, tile_overlap=64)
    return out.args[0].get_frame_count()


def _measure(method: str, frames: int, size: int, budget_mb: int) -> dict:
    import torch

    torch.set_num_threads(1)  # the two methods run side by side on their own cores
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        vae = _tiny_ltx_vae()
        latent = torch.randn(1, 128, 1 + (frames - 1) // 8, size // 32, size // 32,
                             generator=torch.Generator().manual_seed(frames))
        before_kb = _status_kb("VmRSS")
        pathlib.Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
        start = time.perf_counter()
        decoded = _decode(method, vae, latent, budget_mb, folder)
        seconds = time.perf_counter() - start
        peak_kb = _status_kb("VmHWM")
    return {"peak_mb": (peak_kb - before_kb) / 1024, "seconds": seconds, "decoded_frames": decoded}


def _start_fresh_process(*args):
    """Forks a child that measures and sends one JSON object back; returns (pid, pipe)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: leave without running the parent's cleanups
        os.close(read)
        try:
            result = _measure(*args)
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            result = {"error": repr(error)}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    return pid, os.fdopen(read)


def _collect(started, args) -> dict:
    pid, pipe = started
    with pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(payload)
    if "error" in result:
        raise RuntimeError(f"{args}: {result['error']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="17, 33, 65, 129 frames at 512x512 (the default set)")
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33, 65, 129])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--budget-mb", type=int, default=1536, help="TurboVAEDecodeToVideo memory_budget_mb")
    args = parser.parse_args()
    _import_host()
    rows = []
    for frames in args.frames:  # both methods at once, each in its own process: peaks are per process
        jobs = [(method, frames, args.size, args.budget_mb) for method in ("comfy", "turbo")]
        started = [_start_fresh_process(*job) for job in jobs]
        comfy, turbo = (_collect(process, job) for process, job in zip(started, jobs))
        for result in (comfy, turbo):
            if result["decoded_frames"] != frames:
                raise RuntimeError(f"{frames} frames expected, {result['decoded_frames']} decoded")
        rows.append((frames, comfy, turbo))
    print(f"LTX tiny VAE decode, {args.size}x{args.size}, CPU; peak MiB above the pre-decode RSS")
    print(f"{'frames':>6} | {'VAEDecode MiB':>13} {'s':>6} | {'Turbo->video MiB':>16} {'s':>6} | ratio")
    for frames, comfy, turbo in rows:
        print(f"{frames:>6} | {comfy['peak_mb']:>13.0f} {comfy['seconds']:>6.1f} | {turbo['peak_mb']:>16.0f} "
              f"{turbo['seconds']:>6.1f} | {comfy['peak_mb'] / max(turbo['peak_mb'], 1e-9):.2f}x")
    growth = lambda key: rows[-1][key]["peak_mb"] / rows[0][key]["peak_mb"] - 1
    print(f"growth {args.frames[0]} -> {args.frames[-1]} frames: VAEDecode {growth(1):+.0%}, turbo {growth(2):+.0%}")
    print(json.dumps({"frames": [r[0] for r in rows], "peak_mb_comfy": [round(r[1]["peak_mb"], 1) for r in rows],
                      "peak_mb_turbo": [round(r[2]["peak_mb"], 1) for r in rows]}))


if __name__ == "__main__":
    main()
