"""bench/gpu_suite.py without a GPU: --compile (CI set), the shared-memory check, --prepare, the wheel
logic and the goals arithmetic. The --smoke run itself is tests/host/test_gpu_suite_host.py.

--compile runs in a subprocess without TRITON_INTERPRET (tests/conftest.py sets it when there is no
CUDA, and the kernels must be real @triton.jit functions to compile)."""
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = PACK_ROOT / "bench" / "gpu_suite.py"
sys.path.insert(0, str(PACK_ROOT / "bench"))
triton = pytest.importorskip("triton")

from gpu_proof import aot_compile, goals, prepare  # noqa: E402  (bench/ on the path first)
from gpu_proof.common import Part  # noqa: E402

KERNELS = {"_quantize_rows_kernel", "_quantize_blocks_kernel", "_int8_gemm_kernel", "_quantize_kernel",
           "_sage_kernel", "_sparse_kernel", "_rms_norm_kernel", "_layer_norm_kernel"}


def _no_interpreter_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _jit_kernels() -> set:
    """Every launched @triton.jit function in kernels/ (helpers called from kernels excluded)."""
    code = ("import sys; sys.path.insert(0, 'bench'); from gpu_proof import launch_plan; "
            "from triton.runtime.jit import JITFunction; "
            "print(' '.join(sorted({n for m in launch_plan.kernel_modules() for n, f in vars(m).items() "
            "if isinstance(f, JITFunction) and n.endswith('_kernel')})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT, env=_no_interpreter_env(),
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.slow
def test_compile_ci_set_covers_every_kernel_and_target():
    done = subprocess.run([sys.executable, str(SUITE), "--compile", "--ci"], cwd=PACK_ROOT, env=_no_interpreter_env(),
                          capture_output=True, text=True, timeout=1800)
    summary = _last_json(done.stdout)
    assert done.returncode == 0, summary["notes"]
    assert {row["kernel"] for row in summary["configs"]} == KERNELS == _jit_kernels()
    for row in summary["configs"]:
        launched = [row[f"sm_{arch}"] for arch in (80, 89, 90, 100, 120) if row[f"sm_{arch}"] is not None]
        assert launched and all(isinstance(value, int) for value in launched), row
        assert row["ok"] is True
    sparse_fp32 = [r for r in summary["configs"] if r["kernel"] == "_sparse_kernel" and "PRECISION=ieee" in r["config"]]
    assert sparse_fp32, "the fp32 SLA path (ieee products) must be in the CI set"
    # SageSLA takes 64 / 128 blocks on sm_90 only (kernels/attention.py sla_blocks): compiled for sm_90 alone
    hopper = [r for r in summary["configs"] if "BLOCK_M=64 ROWS=64 BLOCK_N=128" in r["config"]]
    assert hopper and all(r["sm_90"] and r["sm_89"] is None for r in hopper)


@pytest.mark.slow
def test_compile_check_fails_a_config_over_the_shared_memory_limit():
    """A deliberately oversized pipeline (the sparse kernel at D 128 with 6 stages) must be reported."""
    code = """
import sys, torch
sys.path.insert(0, 'bench')
from gpu_proof import aot_compile, launch_plan
from gpu_proof.launch_capture import recording, request_key, compile_request
from triton.backends.compiler import GPUTarget
attention = launch_plan.pack_module('kernels.attention')
q, k, v = (torch.randn(1, 1, 4096, 128, dtype=torch.bfloat16) for _ in range(3))
with recording(launch_plan.kernel_modules()) as launches:
    attention.attention(q, k, v, 'sla', topk=0.1, implementation='triton')
launch = next(l for l in launches if l.kernel == '_sparse_kernel')
launch.kwargs['num_stages'] = 6
entry = (request_key(*compile_request(launch, GPUTarget('cuda', 89, 32))), ['oversized'], launch, [89])
results = aot_compile.compile_all([entry], workers=1)
part = aot_compile.Part('t', [])
aot_compile._row(part, entry, results, 0, strict=False)
print(results[(0, 89)][0], part.failures, part.rows[0]['ok'])
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT, env=_no_interpreter_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shared, failures, ok = done.stdout.strip().splitlines()[-1].split()  # after the part's own progress lines
    assert int(shared) > aot_compile.SHARED_LIMIT[89] and failures == "1" and ok == "False"


def test_prepare_writes_only_comfy_python_source(tmp_path):
    try:
        snapshot = prepare.find_snapshot()
    except FileNotFoundError:
        pytest.skip("no bundled ComfyUI snapshot above the pack")
    folder = tmp_path / "prepared"
    assert prepare.run(folder, snapshot, wheels=False) == 0
    source = folder / "comfyui"
    assert (source / "comfy" / "model_management.py").is_file() and (source / "node_helpers.py").is_file()
    files = [p for p in source.rglob("*") if p.is_file()]
    assert all(p.suffix == ".py" or p.name == "LICENSE" for p in files)
    assert prepare.folder_size(folder) < 16 * 2 ** 20
    manifest = (folder / "MANIFEST.txt").read_text()
    assert "bench/gpu_suite.py" in manifest and "COMFYUI_PATH=" in manifest


def test_wanted_wheels_are_the_missing_suite_requirements():
    requirements = {"comfy-kitchen": "==0.2.24", "comfy-aimdo": "==0.4.10", "torchsde": "", "torch": ""}
    have = prepare.image_packages()
    wanted = prepare.wanted_wheels(requirements, have)
    names = {w.split("==")[0] for w in wanted}
    assert names == {"comfy-kitchen", "comfy-aimdo", "torchsde"}
    assert "comfy-kitchen==0.2.24" in wanted and "comfy-aimdo==0.4.10" in wanted
    assert not prepare.wanted_wheels(requirements, have | {"comfy-kitchen", "comfy-aimdo", "torchsde"})


def test_wheel_requirements_skip_extras_and_foreign_markers(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    meta = "\n".join(["Name: demo", "Requires-Dist: numpy (>=1.19)", "Requires-Dist: Trampoline>=0.1.2",
                      'Requires-Dist: pytest>=7; extra == "dev"', 'Requires-Dist: pywin32; sys_platform == "win32"'])
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", meta)
    assert prepare.wheel_requirements(wheel) == ["numpy", "trampoline"]


def test_device_command_installs_wheels_then_runs_the_suite():
    command = prepare.device_command(".gpu_suite")
    assert command.index("pip install") < command.index("bench/gpu_suite.py")
    assert "--target /tmp/site .gpu_suite/wheels/*.whl" in command and "COMFYUI_PATH=$PWD/.gpu_suite/comfyui" in command
    assert len(command) < 2000  # the device tool's limit on one command


def _part(name: str, rows: list[dict]) -> Part:
    part = Part(name, [])
    part.rows.extend(rows)
    return part


def test_goals_read_the_ratios_of_the_rows():
    timings = _part("2. timings", [
        {"case": "int8 a", "variant": "per_channel", "speedup": 1.2, "gemm_speedup": 1.6},
        {"case": "int8 b", "variant": "per_channel", "speedup": 1.4, "gemm_speedup": 1.4},
        {"case": "int8 a", "variant": "block128", "speedup": 9.0, "gemm_speedup": 9.0},
        {"case": "att 64", "variant": "sage", "speedup": 2.0, "cos": 0.9995},
        {"case": "att 128", "variant": "sage", "speedup": 1.7, "cos": 0.9999},
        {"case": "att 128", "variant": "sla topk 0.1", "speedup": 6.0}])
    models = _part("3. models", [{"config": "TurboTiledModel, 1 tile", "speedup": 1 / 1.02},
                                 {"config": "TurboTiledModel, 1 tile", "speedup": 1 / 1.05}])
    reached = goals.all_goals({p.name: p for p in (timings, models)})
    assert reached["int8_gemm_vs_bf16"]["value"] == 1.5 and reached["int8_gemm_vs_bf16"]["met"]
    assert reached["int8_layer_vs_bf16"]["met"] is False
    assert reached["sage_vs_sdpa"]["value"] == 1.7 and reached["sage_vs_sdpa"]["met"] is False
    assert reached["sla_topk0.1_vs_sdpa"]["met"] is True
    slowdown = reached["tiled_1tile_slowdown"]
    assert slowdown["value"] == pytest.approx(0.05) and slowdown["met"] is False


def test_grouped_table_keeps_the_largest_shared_memory_per_launch_shape():
    def row(config, *shared):
        return {"kernel": "_k", "config": config, **{f"sm_{a}": s for a, s in zip(aot_compile.TARGETS, shared)}}

    rows = [row("HAS_BIAS=True D=128 v_ptr:fp32 div16(n) warps=8 stages=3", 9, 1, 5, 5, 1),
            row("HAS_BIAS=False D=128 v_ptr:fp16 div16(-) warps=8 stages=3", 2, 8, 5, 6, 1),
            row("HAS_BIAS=True D=64 v_ptr:fp16 div16(-) warps=4 stages=3", None, None, 3, None, None)]
    groups = {g["launch"]: g for g in aot_compile.grouped(rows).rows}
    assert set(groups) == {"D=128 warps=8 stages=3", "D=64 warps=4 stages=3"}
    big = groups["D=128 warps=8 stages=3"]
    assert big["variants"] == 2 and [big[f"sm_{a}"] for a in aot_compile.TARGETS] == [9, 8, 5, 6, 1]
    assert [groups["D=64 warps=4 stages=3"][f"sm_{a}"] for a in aot_compile.TARGETS] == [None, None, 3, None, None]


def test_prepare_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "keep.txt").write_text("someone's file")
    assert prepare.run(tmp_path, pathlib.Path("unused.tar.gz"), wheels=False) == 2
    assert (tmp_path / "keep.txt").read_text() == "someone's file"
