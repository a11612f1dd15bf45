"""bench/gpu_suite.py --smoke with the real ComfyUI on the CPU: the same code paths as the GPU run
(Triton kernels under the interpreter, core's model classes, the pack's patches, TurboTiledModel)
at tiny sizes, so the suite cannot rot while no GPU is lent; and without ComfyUI the model parts
are skipped with a line that says why, instead of the suite crashing."""
import json
import os
import pathlib
import subprocess
import sys

from host.comfy_harness import find_comfyui_root

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = PACK_ROOT / "bench" / "gpu_suite.py"


def _run(env: dict, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, str(SUITE), "--smoke", *args], cwd=PACK_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stdout[-6000:] + done.stderr[-3000:]


def _parts(summary: dict, number: str) -> dict:
    return next(part for name, part in summary["parts"].items() if name.startswith(number))


def test_smoke_runs_every_part_through_core_comfyui():
    env = dict(os.environ, COMFYUI_PATH=str(find_comfyui_root(PACK_ROOT)))
    code, summary, log = _run(env)
    assert code == 0 and summary["failures"] == 0, log
    assert summary["mode"] == "smoke" and summary["device"].startswith("CPU") and summary["comfyui"]
    kernels = _parts(summary, "1.")["rows"]
    assert {row["kernel"].split()[0] for row in kernels} >= {"int8", "sage", "sla", "sagesla", "rms_norm", "layer_norm"}
    assert all(row["ok"] for row in kernels)
    timings = _parts(summary, "2.")["rows"]
    assert {row["variant"] for row in timings} >= {"per_channel", "block128", "sage", "sla topk 0.1", "sla topk 0.3"}
    models = _parts(summary, "3.")["rows"]
    assert len(models) == 12 and all(row["finite"] and row["step_s"] > 0 for row in models)
    assert {row["config"] for row in models} == {"plain (core SDPA)", "TurboTiledModel, 1 tile", "sage",
                                                 "sagesla topk 0.1", "sagesla + INT8", "sagesla + INT8 + fused norms"}
    windows = _parts(summary, "4.")["rows"]
    assert [row["windows"] for row in windows][0] == 1 and min(row["windows"] for row in windows[1:]) > 1
    assert summary["seconds"] < 180, f"--smoke took {summary['seconds']} s"


def test_smoke_without_comfyui_skips_the_model_parts_and_says_why(tmp_path):
    env = dict(os.environ, COMFYUI_PATH=str(tmp_path))
    code, summary, log = _run(env, "--parts", "models,vsr")
    assert code == 0, log
    notes = [note for part in summary["parts"].values() for note in part["notes"]]
    assert len(notes) == 2 and all("skipped, ComfyUI is not importable" in note for note in notes), notes
    assert summary["comfyui"] is None
