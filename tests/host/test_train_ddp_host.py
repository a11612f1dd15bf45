"""`torchrun --nproc_per_node 2` on the CPU (gloo): one step per objective through training/train.py, and both
ranks end with bit-identical adapter weights.

All objectives run in ONE torchrun launch (importing ComfyUI costs seconds per process): torchrun runs this
file, whose __main__ calls training/train.py's main once per JSON argv list it is given. Other objectives'
tests reuse `run_torchrun` and `assert_ranks_identical`.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
TORCHRUN = pathlib.Path(sys.executable).with_name("torchrun")

pytestmark = pytest.mark.host


def write_images(folder: pathlib.Path, count: int = 4, size: int = 96) -> pathlib.Path:
    """Procedural PNG images (each a 1-frame clip for training/data.py)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(count):
        channels = [127 + 100 * np.sin(x / (4 + i + k) + y / (6 + k)) for k in range(3)]
        cv2.imwrite(str(folder / f"pattern{i}.png"), np.stack(channels, -1).astype(np.uint8))
    return folder


def run_torchrun(runs: list[list[str]], cwd: pathlib.Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """One `torchrun --nproc_per_node 2` launch that runs training/train.py once per argv list, in order."""
    if not TORCHRUN.is_file() and shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PACK_ROOT / "tests")}
    command = [str(TORCHRUN if TORCHRUN.is_file() else shutil.which("torchrun")), "--standalone",
               "--nproc_per_node", "2", str(pathlib.Path(__file__)), json.dumps(runs)]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def assert_ranks_identical(output: pathlib.Path, initial: dict) -> None:
    """Both ranks' --save-every-rank files hold the same tensors, bit for bit, rank 0's equals <output>, and
    training moved them away from `initial` (key -> tensor before the step)."""
    from safetensors.torch import load_file

    files = [output.with_name(f"{output.stem}.rank{r}{output.suffix}") for r in (0, 1)]
    rank0, rank1, saved = (load_file(str(f)) for f in (*files, output))
    assert rank0.keys() == rank1.keys() == saved.keys() and rank0
    for key in rank0:
        assert rank0[key].equal(rank1[key]) and rank0[key].equal(saved[key]), key
    moved = [key for key, before in initial.items() if not torch.equal(rank0[key], before.expand_as(rank0[key]))]
    assert moved, f"{output.name}: the step changed none of {sorted(initial)[:4]}"


def common_args(model: pathlib.Path, data: pathlib.Path, output: pathlib.Path) -> list[str]:
    return ["--model", str(model), "--data", str(data), "--frames", "9", "--height", "64", "--width", "64",
            "--output", str(output), "--steps", "1", "--batch-size", "1", "--lr", "1e-2", "--log-every", "1",
            "--save-every-rank"]


@pytest.fixture(scope="module")
def ddp_files(tmp_path_factory):
    from tiny_models import ltxv

    root = tmp_path_factory.mktemp("ddp")
    models = {"student": ltxv.write_checkpoint(root / "tiny_ltxv.safetensors"),
              "teacher": ltxv.write_dit(root / "tiny_teacher.safetensors", head_dim=64, heads=2, seed=5)}
    return root, {k: root / pathlib.Path(v).name for k, v in models.items()}, write_images(root / "data")


def test_train_torchrun_two_ranks_step_every_objective_and_stay_identical(ddp_files):
    root, models, data = ddp_files
    outputs = {name: root / f"ddp_{name}.safetensors" for name in ("shortcut", "fusion", "distill")}
    runs = [["shortcut", *common_args(models["student"], data, outputs["shortcut"]), "--bootstrap-fraction", "1",
             "--step-counts", "1,2"],
            ["fusion", *common_args(models["student"], data, outputs["fusion"]), "--hr-blocks", "0,1",
             "--lr-scale", "2"],
            ["distill", *common_args(models["student"], data, outputs["distill"]), "--teacher", str(models["teacher"]),
             "--student-blocks", "0,1", "--head-hidden", "16"]]
    done = run_torchrun(runs, root)
    assert done.stdout.count("step 1/1 loss") == 3, done.stdout[-2000:]
    from safetensors.torch import load_file

    student = {k[len("model.diffusion_model."):]: v for k, v in load_file(str(models["student"])).items()
               if k.startswith("model.diffusion_model.")}
    zero_init = {"shortcut": ["step_embedder.linear_2.weight"], "fusion": ["fusion.blocks.0.proj_out.weight"]}
    for name, keys in zero_init.items():
        assert_ranks_identical(outputs[name], {key: torch.zeros(()) for key in keys})
    assert_ranks_identical(outputs["distill"], student)


def _main(runs_json: str) -> int:
    sys.path.insert(0, str(PACK_ROOT / "training"))
    import train

    for argv in json.loads(runs_json):
        code = train.load_cli().main(argv)
        if code:
            return code
    import torch.distributed

    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
