"""bench/gpu_suite.py --smoke with the real ComfyUI on the CPU: the same code paths as the GPU run
(Triton kernels under the interpreter, core's model classes, the pack's patches, TurboTiledModel)
at tiny sizes, so the suite cannot rot while no GPU is lent; and without ComfyUI the model parts
are skipped with a line that says why, instead of the suite crashing."""
import json
import os
import pathlib
import resource
import subprocess
import sys

from host.comfy_harness import find_comfyui_root

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = PACK_ROOT / "bench" / "gpu_suite.py"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(env: dict, *args: str) -> tuple[int, dict, str]:
    """(exit status, the JSON summary with the run's CPU seconds added, the end of the output)."""
    cpu = _cpu_seconds()
    done = subprocess.run([sys.executable, str(SUITE), "--smoke", *args], cwd=PACK_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    summary["cpu_seconds"] = _cpu_seconds() - cpu
    return done.returncode, summary, done.stdout[-6000:] + done.stderr[-3000:]


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
    # CPU time, not wall time: the CI machine is shared; alone on 2 cores the wall time is about the same
    assert summary["cpu_seconds"] < 60, f"--smoke used {summary['cpu_seconds']:.0f} s of CPU"


def test_smoke_without_comfyui_skips_the_model_parts_and_says_why(tmp_path):
    env = dict(os.environ, COMFYUI_PATH=str(tmp_path))
    code, summary, log = _run(env, "--parts", "models,vsr")
    assert code == 0, log
    notes = [note for part in summary["parts"].values() for note in part["notes"] if "ComfyUI" in note]
    assert len(notes) == 2 and all("skipped, ComfyUI is not importable" in note for note in notes), notes
    assert summary["comfyui"] is None


CLOSURE = """
import importlib.metadata, json, sys
sys.path.insert(0, "bench")
before = set(sys.modules)
from gpu_proof import comfy_boot, prepare
core = comfy_boot.boot(cpu=True)
dists = importlib.metadata.packages_distributions()
tops = {name.split(".")[0] for name in set(sys.modules) - before}
imported = {prepare.canonical(d) for top in tops for d in dists.get(top, [])}
requirements = set(prepare.parse_requirements((core.root / "requirements.txt").read_text()))
print(json.dumps(sorted(imported & requirements)))
"""


def test_prepare_knows_every_comfyui_requirement_the_suite_imports():
    """--prepare carries wheels only for prepare.SUITE_REQUIREMENTS: a core update that makes the
    model parts import another ComfyUI requirement must show up here, not on the GPU machine."""
    env = dict(os.environ, COMFYUI_PATH=str(find_comfyui_root(PACK_ROOT)))
    done = subprocess.run([sys.executable, "-c", CLOSURE], cwd=PACK_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    sys.path.insert(0, str(PACK_ROOT / "bench"))
    from gpu_proof import prepare

    assert {"torch", "comfy-kitchen"} <= imported
    assert imported <= set(prepare.SUITE_REQUIREMENTS), imported - set(prepare.SUITE_REQUIREMENTS)
