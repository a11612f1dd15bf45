"""--compile: every Triton kernel configuration the pack's dispatchers launch, compiled ahead of time
to cubin for five GPUs with Triton's bundled ptxas (no GPU needed), and checked against the
smallest per-block shared memory of those GPUs, so no card meets "out of resources" at run time.

Limits: maximum shared memory per thread block with the opt-in attribute Triton sets, from NVIDIA's
CUDA C++ Programming Guide, table "Technical Specifications per Compute Capability" (and the
Ampere, Ada, Hopper and Blackwell tuning guides): 8.0 (A100) 163 KB, 8.9 (RTX 4090) 99 KB,
9.0 (H100) 227 KB, 10.0 (B200) 227 KB, 12.0 (RTX 5090) 99 KB; 1 KB = 1024 bytes. A configuration
fails when it does not compile for a target, or when its cubin for a target needs more than that
target's limit (which for the consumer cards, sm_89 and sm_120, is the 99 KB of the issue). Triton
compiles per device, so an sm_90 cubin only ever meets an sm_90 limit: Hopper's larger software
pipelines may legitimately use more than 99 KB there. strict=True (--strict-shared) instead holds
every target's cubin to the smallest limit.
"""
from __future__ import annotations

import multiprocessing
import os
import time

import triton
from triton.backends.compiler import GPUTarget

from .common import Part
from .launch_capture import compile_request, labelled, recording, request_key
from .launch_plan import all_calls, cuda_branches, kernel_modules

TARGETS = (80, 89, 90, 100, 120)
SHARED_LIMIT = {80: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024, 100: 227 * 1024, 120: 99 * 1024}
BUDGET = min(SHARED_LIMIT.values())
_WORK: list = []  # unique_launches' entries; read by the forked workers


def capture(full: bool, arch: int) -> list:
    """The launches of the plan's dispatcher calls as they would be on a GPU of capability `arch`."""
    with recording(kernel_modules()) as launches, cuda_branches(arch):
        for label, call in all_calls(full):
            with labelled(label):
                call()
    return launches


def unique_launches(full: bool, archs=TARGETS) -> list[tuple[str, list[str], object, list[int]]]:
    """(request key, the dispatcher calls that made it, one launch, the targets that launch it) per
    distinct compile request; a dispatcher that picks other blocks on some GPUs (SageSLA on sm_90)
    gives configurations that only those targets compile."""
    seen: dict[str, tuple[list[str], object, list[int]]] = {}
    for arch in archs:
        for launch in capture(full, arch):
            key = request_key(*compile_request(launch, GPUTarget("cuda", arch, 32)))
            labels, _, where = seen.setdefault(key, ([], launch, []))
            labels.append(launch.label)
            if arch not in where:
                where.append(arch)
    return sorted(((key, labels, launch, where) for key, (labels, launch, where) in seen.items()),
                  key=lambda w: w[0])


def _compile_one(item: tuple[int, int]) -> tuple[int, int, int | None, str | None]:
    index, arch = item
    try:
        source, options = compile_request(_WORK[index][2], GPUTarget("cuda", arch, 32))
        kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
        return index, arch, int(kernel.metadata.shared), None
    except Exception as error:  # a compile error is a result here, reported per configuration
        return index, arch, None, f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"


def compile_all(work: list, workers: int, timeout: float | None = None) -> dict[tuple[int, int], tuple]:
    """{(work index, arch): (shared bytes or None, error or None)} for each entry's targets; forked
    workers compile (no GPU is touched in them). With a timeout, what is not done by then is left out."""
    _WORK[:] = work
    items = [(index, arch) for index, entry in enumerate(work) for arch in entry[3]]
    if workers <= 1 and timeout is None:
        return {(i, a): (shared, error) for i, a, shared, error in map(_compile_one, items)}
    results = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending = pool.imap_unordered(_compile_one, items, chunksize=1)
        began = time.perf_counter()
        try:
            for _ in items:
                wait = None if timeout is None else max(0.1, timeout - (time.perf_counter() - began))
                results.append(pending.next(wait))
        except multiprocessing.TimeoutError:
            pool.terminate()
    return {(i, a): (shared, error) for i, a, shared, error in results}


def _over(shared: dict, strict: bool) -> list[str]:
    limits = {arch: BUDGET if strict else SHARED_LIMIT[arch] for arch in TARGETS}
    return [f"sm_{arch} {value} B > {limits[arch]} B" for arch, value in shared.items()
            if value is not None and value > limits[arch]]


def _row(part: Part, entry: tuple, results: dict, index: int, strict: bool) -> None:
    key, labels, _, archs = entry
    missing = (None, "not compiled (the time limit ran out)")
    done = {arch: results.get((index, arch), missing) for arch in archs}
    shared = {arch: done[arch][0] if arch in done else None for arch in TARGETS}
    errors = [f"sm_{arch}: {error}" for arch, (_, error) in done.items() if error]
    over = _over(shared, strict)
    kernel, config = key.split("|", 1)
    part.add(kernel=kernel, config=config, **{f"sm_{a}": shared[a] for a in TARGETS}, calls=len(labels),
             ok=not errors and not over)
    for error in errors:
        part.note(f"{kernel} [{config}] does not compile: {error} (from: {labels[0]})", failure=True)
    if over:
        part.note(f"{kernel} [{config}] needs more shared memory per block than the GPU has: {', '.join(over)} "
                  f"(from: {labels[0]})", failure=True)


def grouped(rows: list[dict]) -> Part:
    """Per kernel and launch shape (its constexprs but the HAS_* switches of optional operands, warps,
    stages): the largest shared memory per target over the dtype, alignment and operand variants."""
    columns = [("kernel", "kernel", ""), ("launch", "launch shape", ""), ("variants", "variants", "")]
    part = Part("largest shared memory (bytes) per kernel and launch shape", columns +
                [(f"sm_{a}", f"sm_{a}", "") for a in TARGETS])
    groups: dict[tuple[str, str], dict] = {}
    for row in rows:
        launch = " ".join(t for t in row["config"].split() if "=" in t and not t.startswith("HAS_"))
        group = groups.setdefault((row["kernel"], launch), {"kernel": row["kernel"], "launch": launch,
                                                             "variants": 0, **{f"sm_{a}": None for a in TARGETS}})
        group["variants"] += 1
        for arch in TARGETS:  # None: no variant of this shape is launched on that target
            values = [v for v in (group[f"sm_{arch}"], row[f"sm_{arch}"]) if v is not None]
            group[f"sm_{arch}"] = max(values) if values else None
    part.rows.extend(groups.values())
    return part


def run(full: bool = True, workers: int | None = None, strict: bool = False) -> Part:
    """Compile every configuration for every target; the Part's rows are the per-kernel table."""
    began = time.perf_counter()
    columns = [("kernel", "kernel", ""), ("config", "configuration", "")]
    columns += [(f"sm_{a}", f"sm_{a} B", "") for a in TARGETS] + [("calls", "calls", ""), ("ok", "ok", "")]
    rule = f"every target <= {BUDGET} B" if strict else \
        "each target <= its limit (" + ", ".join(f"sm_{a} {v} B" for a, v in SHARED_LIMIT.items()) + ")"
    part = Part(f"ahead-of-time compile, triton {triton.__version__}, shared memory per block: {rule}", columns)
    work = unique_launches(full)
    print(f"  {len(work)} distinct kernel configurations, {sum(len(w[3]) for w in work)} compiles", flush=True)
    results = compile_all(work, workers or os.cpu_count() or 1)
    for index, entry in enumerate(work):
        _row(part, entry, results, index, strict)
    part.seconds = time.perf_counter() - began
    return part
