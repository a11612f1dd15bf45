"""Peak memory of decoding an LTX latent: ComfyUI's plain VAEDecode vs TurboVAEDecodeToVideo.

Run with the Python that runs ComfyUI, from the pack folder:

    COMFYUI_PATH=/path/to/ComfyUI python bench/vae_memory.py --quick [--model ltx2]

The VAE is a tiny random VAE of the tests, built in memory, with the real 32x32 spatial / 8x temporal
compression and 128 channels: `--model ltxv` (default) the LTX-Video one (patch 16, 49 MiB), `--model
ltx2` the LTX-2 one (tests/tiny_models/ltx2_vae.py: patch 4, timestep-conditioned decoder, 64 MiB;
256x256 by default, as its full-resolution stages are slow on a CPU).

Each measurement runs in a fresh process forked from a parent that has only imported ComfyUI (imports
cost ~8 s). The two methods run side by side, one torch thread each (a peak is per process, so the pair
does not mix). The child builds the VAE and a unit-normal latent, reads its resident memory, resets the
kernel's high-water mark (`5` > /proc/self/clear_refs), decodes, and reports VmHWM minus that starting
point.

- comfy: `vae.decode(latent)` reshaped to frames, exactly what the core VAEDecode node runs.
- turbo: `TurboVAEDecodeToVideo.execute` (H.264 into a temp folder) with memory_budget_mb (default
  1536 for ltxv at 512 px, 512 for ltx2 at 256 px: chunks of 3 latent frames under ComfyUI's own estimate
  for these VAEs) and chunk_overlap 8 frames.

Prints a table, then as its LAST line {"frames": [...], "peak_mb_comfy": [...], "peak_mb_turbo": [...]}.
Linux only (clear_refs, VmHWM).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
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
    from comfy_boot import boot_comfy

    boot_comfy()
    import turbovideo.nodes.vae_nodes  # noqa: F401


def _tiny_ltxv_vae():
    import comfy.sd
    from tiny_models import ltxv
    from tiny_models.random_weights import random_state_dict

    state_dict = random_state_dict(ltxv.vae_layout(), seed=3)
    state_dict.update(ltxv.vae_statistics(seed=4))
    return comfy.sd.VAE(sd=state_dict, metadata={"config": json.dumps({"vae": ltxv.TINY_VAE_CONFIG})})


def _tiny_ltx2_vae():
    import comfy.sd
    from tiny_models import ltx2_vae

    config = ltx2_vae.LTX2_VAE_CONFIG
    return comfy.sd.VAE(sd=ltx2_vae.vae_state_dict(config, seed=3), metadata={"config": json.dumps({"vae": config})})


# --model: (VAE builder, default frame side in px, default memory_budget_mb, table title)
MODELS = {"ltxv": (_tiny_ltxv_vae, 512, 1536, "LTX-Video tiny VAE"),
          "ltx2": (_tiny_ltx2_vae, 256, 512, "LTX-2 tiny VAE")}


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


def _measure(model: str, method: str, frames: int, size: int, budget_mb: int) -> dict:
    import torch

    torch.set_num_threads(1)  # the two methods run side by side on their own cores
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        vae = MODELS[model][0]()
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
    parser.add_argument("--quick", action="store_true", help="17, 33, 65, 129 frames (the default set)")
    parser.add_argument("--model", choices=sorted(MODELS), default="ltxv", help="which tiny VAE (default ltxv)")
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33, 65, 129])
    parser.add_argument("--size", type=int, default=None, help="frame side in px (default: 512 ltxv, 256 ltx2)")
    parser.add_argument("--budget-mb", type=int, default=None,
                        help="TurboVAEDecodeToVideo memory_budget_mb (default: 1536 ltxv, 512 ltx2)")
    args = parser.parse_args()
    _, default_size, default_budget, title = MODELS[args.model]
    size = args.size or default_size
    budget_mb = args.budget_mb or default_budget
    _import_host()
    rows = []
    for frames in args.frames:  # both methods at once, each in its own process: peaks are per process
        jobs = [(args.model, method, frames, size, budget_mb) for method in ("comfy", "turbo")]
        started = [_start_fresh_process(*job) for job in jobs]
        comfy, turbo = (_collect(process, job) for process, job in zip(started, jobs))
        for result in (comfy, turbo):
            if result["decoded_frames"] != frames:
                raise RuntimeError(f"{frames} frames expected, {result['decoded_frames']} decoded")
        rows.append((frames, comfy, turbo))
    print(f"{title} decode, {size}x{size}, CPU; peak MiB above the pre-decode RSS")
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
