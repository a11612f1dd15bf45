"""Before the parts run on a GPU: the --compile plan's kernel configurations compiled for this GPU in
parallel CPU processes, which fills Triton's on-disk cache, so that the parts' first launches load
a cubin instead of compiling one kernel after another (about a second each) inside their time
guards. Only an optimisation: a launch the plan does not cover compiles as usual, and a Triton
without the internals --compile reads is skipped with a note."""
from __future__ import annotations

import os
import time

import torch

from .common import Part


def run(part: Part, seconds: float, workers: int | None = None) -> None:
    """Notes on `part` what was compiled (and any configuration that failed to compile here)."""
    began = time.perf_counter()
    try:
        from . import aot_compile

        major, minor = torch.cuda.get_device_capability()
        arch = major * 10 + minor
        work = aot_compile.unique_launches(full=True, archs=(arch,))
        results = aot_compile.compile_all(work, workers or os.cpu_count() or 1,
                                          timeout=max(5.0, seconds - (time.perf_counter() - began)))
    except Exception as error:  # e.g. a Triton whose JIT internals differ: the parts compile as usual
        part.note(f"Triton cache not warmed ({type(error).__name__}: {error}); kernels compile at first launch")
        return
    failed = [work[i][0] for (i, _), (_, error) in results.items() if error]
    part.note(f"warmed Triton's cache for sm_{arch}: {len(results) - len(failed)} of {len(work)} configurations "
              f"in {time.perf_counter() - began:.0f} s with {workers or os.cpu_count()} processes")
    for key in failed:
        part.note(f"does not compile for this GPU: {key}", failure=True)
