"""What every part of the GPU suite shares: the pack import, the run context, time guards, timing
and the result rows that become the printed table and the JSON summary."""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]


def pack_module(name: str):
    """turbovideo.<name>, the pack imported by its path (tools/pack_import.py) whatever its folder."""
    tools = str(PACK_ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from pack_import import import_pack_module

    return import_pack_module(name)


def bench_module(name: str):
    """bench/<name>.py as a module (imported once, under a name no other module takes)."""
    key = f"turbovideo_bench_{name}"
    if key not in sys.modules:
        pack_module("")  # bench scripts import the pack as `turbovideo`
        spec = importlib.util.spec_from_file_location(key, PACK_ROOT / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return f"CPU {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return f"CPU ({torch.get_num_threads()} threads)"


@dataclasses.dataclass(frozen=True)
class Context:
    """smoke: tiny sizes on the CPU (same code paths); device: where tensors live."""
    smoke: bool
    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


class Guard:
    """A part's time budget: a case asks allows(estimate) before it starts; one that would not
    finish in time is skipped and the part says so, so the suite as a whole ends on time."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, estimate: float = 0.0) -> bool:
        return self.left() > estimate


@dataclasses.dataclass
class Part:
    """One part's rows (dicts; `columns` says which keys the table shows) and notes (skips, failures)."""
    name: str
    columns: list[tuple[str, str, str]]  # (row key, header, format spec)
    rows: list[dict] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0

    def add(self, **row) -> dict:
        self.rows.append(row)
        print(f"  [{self.name}] " + ", ".join(f"{k}={_cell(v, '')}" for k, v in row.items()), flush=True)
        return row

    def note(self, line: str, failure: bool = False) -> None:
        self.notes.append(("FAIL: " if failure else "") + line)
        self.failures += int(failure)
        print(f"  [{self.name}] {self.notes[-1]}", flush=True)

    def summary(self) -> dict:
        return {"rows": self.rows, "notes": self.notes, "seconds": round(self.seconds, 1), "failures": self.failures}


def _cell(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ok" if value else "FAIL"
    if isinstance(value, float):
        return format(value, spec or ".4g")
    return str(value)


def print_table(part: Part) -> None:
    print(f"\n== {part.name} ({part.seconds:.1f} s)")
    if part.rows:
        cells = [[_cell(row.get(key), spec) for key, _, spec in part.columns] for row in part.rows]
        widths = [max(len(header), *(len(c[i]) for c in cells)) for i, (_, header, _) in enumerate(part.columns)]
        print("  ".join(header.ljust(w) for (_, header, _), w in zip(part.columns, widths)))
        for c in cells:
            print("  ".join(value.ljust(w) for value, w in zip(c, widths)))
    for line in part.notes:
        print(f"  note: {line}")


def _once_ms(fn: Callable, ctx: Context, inner: int) -> float:
    if ctx.cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / inner
    began = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - began) * 1e3 / inner


def time_ms(fns: dict[str, Callable], ctx: Context, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each callable. One warm-up call each (Triton compiles there),
    then `repeats` rounds that run every callable once in turn (A, B, A, B, ...) so clock and
    thermal drift hit all alike; calls under ~2 ms are looped inside one measurement."""
    inner = {}
    for name, fn in fns.items():
        fn()
        ctx.sync()
        inner[name] = max(1, min(50, int(2.0 / max(_once_ms(fn, ctx, 1), 1e-3))))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_once_ms(fn, ctx, inner[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def rel_l2(out: torch.Tensor, expected: torch.Tensor) -> float:
    out, expected = out.double(), expected.double()
    return ((out - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def cosine(out: torch.Tensor, expected: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(out.double().flatten(), expected.double().flatten(), dim=0).item()
