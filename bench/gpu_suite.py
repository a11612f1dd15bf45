"""GPU proof: one command that checks and times every kernel and model path of the pack on a GPU.

    python bench/gpu_suite.py                      # on one CUDA GPU: the four parts, < 8 min on an H100
    python bench/gpu_suite.py --smoke              # the same code paths at tiny sizes on the CPU, < 1 min
    python bench/gpu_suite.py --compile [--ci]     # every Triton kernel configuration to cubin, no GPU needed
    python bench/gpu_suite.py --prepare .gpu_suite # what a bare GPU machine lacks; prints the command to run

Parts: 1. kernels vs float64 (bench/gpu_proof/kernel_checks.py), 2. kernel timings at 32k tokens against
what a user would otherwise run (kernel_timings.py), 3. model steps through core ComfyUI's model
classes with and without the pack's patches (model_calls.py), 4. peak memory of tiled VSR windows
(vsr_windows.py). Each part has a time guard (a share of --budget plus what earlier parts left);
parts 3 and 4 need ComfyUI (COMFYUI_PATH, or the folder --prepare wrote) and say so when it is
absent. On a GPU, Triton's cache is first warmed in parallel (warm_cache.py, at most WARM_S), and
the pack's kernel unit tests run on CUDA at the end in whatever is left of END_S. The tables print
as each part ends; the LAST line is JSON with the device, the rows, the goals
(bench/gpu_proof/goals.py) and the failures. Exit status 1 when anything failed. docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

SHARES = {"kernels": 0.24, "timings": 0.22, "models": 0.40, "vsr": 0.14}
WARM_S = 45.0  # the parallel Triton compile before the parts (GPU only)
END_S = 470.0  # the unit tests at the end get what is left of this (GPU only)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (Triton interpreted)")
    mode.add_argument("--compile", action="store_true", help="ahead-of-time compile of every kernel config")
    mode.add_argument("--prepare", type=pathlib.Path, metavar="DIR", help="write what the GPU machine lacks")
    parser.add_argument("--ci", action="store_true", help="--compile: the representative per-kernel set")
    parser.add_argument("--workers", type=int, default=None, help="--compile: parallel compiles (default: CPUs)")
    parser.add_argument("--strict-shared", action="store_true",
                        help="--compile: hold every target to the smallest per-block limit (99 KB)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the four parts (GPU 400, smoke 600)")
    parser.add_argument("--parts", default="kernels,timings,models,vsr", help="comma-separated subset of the parts")
    parser.add_argument("--snapshot", type=pathlib.Path, help="--prepare: the ComfyUI snapshot .tar.gz")
    parser.add_argument("--have", type=pathlib.Path, help="--prepare: the GPU machine's package list")
    parser.add_argument("--no-wheels", action="store_true", help="--prepare: the ComfyUI source only")
    parser.add_argument("--json", type=pathlib.Path, help="also write the JSON summary here")
    return parser.parse_args()


def _finish(summary: dict, args, failures: int) -> int:
    summary["failures"] = failures
    line = json.dumps(summary, default=str)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    print(line)
    return 1 if failures else 0


def run_compile(args) -> int:
    os.environ.pop("TRITON_INTERPRET", None)  # compile the real kernels, not the interpreter's stand-ins
    from gpu_proof import aot_compile
    from gpu_proof.common import print_table

    began = time.perf_counter()
    part = aot_compile.run(full=not args.ci, workers=args.workers, strict=args.strict_shared)
    print_table(part)
    groups = aot_compile.grouped(part.rows)
    print_table(groups)
    summary = {"suite": "gpu_suite", "mode": "compile-ci" if args.ci else "compile", "targets": aot_compile.TARGETS,
               "shared_limit_bytes": aot_compile.SHARED_LIMIT, "rule": part.name, "configs": part.rows,
               "grouped": groups.rows, "notes": part.notes, "seconds": round(time.perf_counter() - began, 1)}
    return _finish(summary, args, part.failures)


def _context(args):
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated: before they import
    import torch
    from gpu_proof.common import Context

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_suite: torch sees no CUDA device here; run --smoke (CPU) or --compile instead")
    return Context(smoke=args.smoke, device=torch.device("cpu" if args.smoke else "cuda"))


def _boot(ctx):
    from gpu_proof import comfy_boot

    try:
        return comfy_boot.boot(cpu=not ctx.cuda), None
    except comfy_boot.ComfyMissing as missing:
        return None, str(missing)


def _run_parts(ctx, args, core, why_not) -> dict:
    from gpu_proof import kernel_checks, kernel_timings, model_calls, vsr_windows
    from gpu_proof.common import Guard, Part, print_table

    runners = {"kernels": lambda g: kernel_checks.run(ctx, g), "timings": lambda g: kernel_timings.run(ctx, g),
               "models": lambda g: model_calls.run(ctx, g, core), "vsr": lambda g: vsr_windows.run(ctx, g, core)}
    wanted = [name for name in SHARES if name in args.parts.split(",")]
    total = args.budget or (600.0 if ctx.smoke else 400.0)  # smoke: run every path, whatever the machine's load
    began, parts = time.perf_counter(), {}
    for index, name in enumerate(wanted):
        left_for_rest = sum(SHARES[n] for n in wanted[index:])
        seconds = (total - (time.perf_counter() - began)) * SHARES[name] / left_for_rest
        print(f"\n-- part {name}: time guard {seconds:.0f} s", flush=True)
        if name in ("models", "vsr") and core is None:
            part = Part(f"{name}: skipped", [])
            part.note(f"skipped, ComfyUI is not importable: {why_not}")
        else:
            part = runners[name](Guard(seconds))
        parts[part.name] = part
        print_table(part)
    return parts


def _warm(ctx) -> dict:
    from gpu_proof import warm_cache
    from gpu_proof.common import Part

    part = Part("0. Triton cache", [])
    if ctx.cuda:
        warm_cache.run(part, WARM_S)
    return {part.name: part} if part.notes else {}


def _unit_tests(ctx, began: float) -> dict:
    from gpu_proof import kernel_checks
    from gpu_proof.common import Part, print_table

    part = Part("5. the pack's kernel unit tests on CUDA", [])
    left = END_S - (time.perf_counter() - began)
    if not ctx.cuda:
        part.note("not rerun here: CI runs them (on the CPU, Triton interpreted)")
    elif left < 30:
        part.note(f"not run: {left:.0f} s left of the suite's {END_S:.0f} s")
    else:
        kernel_checks.run_unit_tests(part, left)
    print_table(part)
    return {part.name: part}


def run_suite(args) -> int:
    began = time.perf_counter()
    ctx = _context(args)
    import torch
    import triton
    from gpu_proof import goals
    from gpu_proof.common import device_name

    warmed = _warm(ctx)  # before anything else: its workers are forked
    core, why_not = _boot(ctx)
    print(f"device: {device_name(ctx.device)}; torch {torch.__version__}, triton {triton.__version__}; ComfyUI "
          f"{core.version + ' at ' + str(core.root) if core else 'absent (' + why_not + ')'}", flush=True)
    parts = {**warmed, **_run_parts(ctx, args, core, why_not), **_unit_tests(ctx, began)}
    reached = goals.all_goals(parts)
    print("\n== goals" + (" (smoke run: code paths only, not measurements)" if ctx.smoke else ""))
    for name, goal in reached.items():
        print(f"  {name}: {goal['value']} (target {goal['target']}): {goal['met']}")
    summary = {"suite": "gpu_suite", "mode": "smoke" if ctx.smoke else "gpu", "device": device_name(ctx.device),
               "torch": torch.__version__, "triton": triton.__version__, "comfyui": core.version if core else None,
               "parts": {name: part.summary() for name, part in parts.items()}, "goals": reached,
               "seconds": round(time.perf_counter() - began, 1)}
    return _finish(summary, args, sum(part.failures for part in parts.values()))


def main() -> int:
    args = _arguments()
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    if args.prepare:
        from gpu_proof import prepare

        return prepare.run(args.prepare, args.snapshot, args.have, wheels=not args.no_wheels)
    if args.compile:
        return run_compile(args)
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
