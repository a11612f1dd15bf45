"""W8A8 INT8 linears vs the float F.linear a user would otherwise run, on DiT block shapes.

Columns, measured in one run on the same inputs and weights:
- pack: the pack's whole layer (kernels.int8.linear, "auto" backend): activation quantization + INT8
  GEMM + dequantization epilogue + bias, the weight quantized per channel and prepacked beforehand as a
  loaded model has it;
- kitchen: comfy-kitchen's int8_linear (ComfyUI 0.27+'s native INT8 GEMM, per-channel scales) where
  comfy_kitchen imports, with the backend its registry picks (on a CPU: torch._int_mm). It is so slow on
  CPUs without INT8 matrix units that it is timed on the first KITCHEN_ROWS rows only (against fp32 on
  the same rows; `rows` in the JSON); on CUDA on all rows;
- dynamic: torch's dynamic-quantized INT8 linear (torch.ops.quantized.linear_dynamic, per-channel int8
  weights, activations quantized per tensor with reduce_range) where torch has it (x86 / ARM CPUs).
Baseline: fp32 F.linear on the CPU, bf16 F.linear on CUDA. Repeats are interleaved (baseline, pack,
dynamic, baseline, ...); each speedup is the median of the per-repeat ratios to the neighbouring
baseline. rel err: L2 error of the output against float64 on the first rows. Inputs: nn.Linear-like
uniform weights and normal activations. The last line printed is JSON: {"shapes": [...],
"speedup_vs_fp32": [...], "rel_err": [...], "kitchen": {...}, "dynamic": {...}, ...}.

  python bench/int8_linear.py --quick               # CPU, 4096 tokens, about 1-2 min
  python bench/int8_linear.py --device cuda         # CUDA, 32k tokens, bf16 baseline
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F

SHAPES = [("Wan2.1-1.3B qkvo", 1536, 1536), ("Wan2.1-1.3B ffn.0", 1536, 8960),
          ("Wan2.1-1.3B ffn.2", 8960, 1536), ("LTX-2B attn", 2048, 2048), ("LTX-2B ff.0", 2048, 8192)]
ERROR_ROWS = 256
KITCHEN_ROWS = {"cpu": 64, "cuda": None}


def _import_kernels():
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tools"))
    from pack_import import import_pack_module

    return import_pack_module("kernels.int8"), import_pack_module("kernels.int8_reference")


def _kitchen():
    try:
        import comfy_kitchen
    except ImportError:
        return None
    return comfy_kitchen if hasattr(comfy_kitchen, "int8_linear") else None


def _dynamic_weight(weight, bias):
    """torch's prepacked per-channel int8 weight for linear_dynamic, or None where torch has none."""
    if not hasattr(torch.ops.quantized, "linear_dynamic") or weight.device.type != "cpu":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scales = (weight.abs().amax(dim=1) / 127).double().clamp_min(1e-12)
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(quantized, bias)


def _setup(k, n, tokens, device, dtype, int8, reference):
    generator = torch.Generator().manual_seed(k * 7 + n)
    bound = 1 / k ** 0.5
    weight = (torch.rand(n, k, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(n, generator=generator) * 2 - 1) * bound
    x = torch.randn(tokens, k, generator=generator)
    qw, sw = reference.quantize_rows(weight)
    backend = int8.resolve_backend(x.to(device))
    cpu_weight = int8.pack_cpu_weight(qw, sw) if backend == "onednn" else None
    on = lambda t: t.to(device)  # noqa: E731
    return {"x": on(x).to(dtype), "weight": on(weight).to(dtype), "bias": on(bias).to(dtype),
            "qw": on(qw), "sw": on(sw), "backend": backend, "cpu_weight": cpu_weight,
            "dynamic": _dynamic_weight(weight, bias) if device == "cpu" else None,
            "float": (x[:ERROR_ROWS].double(), weight.double(), bias.double())}


def _runners(case, int8, rows=None):
    """{column: zero-argument callable} on the case's first `rows` rows (all when None)."""
    x = case["x"] if rows is None else case["x"][:rows]
    runners = {"baseline": lambda: F.linear(x, case["weight"], case["bias"]),
               "pack": lambda: int8.linear(x, case["qw"], case["sw"], case["bias"], case["backend"],
                                           case["cpu_weight"])}
    kitchen = _kitchen()
    if kitchen is not None:
        runners["kitchen"] = lambda: kitchen.int8_linear(x, case["qw"], case["sw"], case["bias"], out_dtype=x.dtype)
    if case["dynamic"] is not None:
        runners["dynamic"] = lambda: torch.ops.quantized.linear_dynamic(x, case["dynamic"], True)
    return runners


def _time(fn, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _rel_err(case, output) -> float:
    x, weight, bias = case["float"]
    expected = F.linear(x, weight, bias)
    rows = min(ERROR_ROWS, output.shape[0])
    return ((output[:rows].double().cpu() - expected[:rows]).norm() / expected[:rows].norm()).item()


def _interleaved(runners: dict, names: list[str], device, repeats: int) -> dict:
    """{name: [seconds per repeat]}; each repeat runs the names in order."""
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            times[name].append(_time(runners[name], device))
    return times


def _ratios(times: dict, name: str) -> list[float]:
    return [b / t for b, t in zip(times["baseline"], times[name])]


def measure_case(case, int8, args) -> dict:
    """Speedups and errors of every column for one shape."""
    runners = _runners(case, int8)
    main = [name for name in ("baseline", "pack", "dynamic") if name in runners]
    result = {name: {"rel_err": _rel_err(case, runners[name]())} for name in main[1:]}  # also warms up
    runners["baseline"]()
    times = _interleaved(runners, main, args.device, args.repeats)
    for name in main[1:]:
        ratios = _ratios(times, name)
        result[name].update(speedup=statistics.median(ratios), spread=(min(ratios), max(ratios)),
                            ms=statistics.median(times[name]) * 1e3)
    result["baseline_ms"] = statistics.median(times["baseline"]) * 1e3
    if "kitchen" in runners:
        rows = KITCHEN_ROWS.get(args.device)
        sliced = _runners(case, int8, rows)
        kitchen = {"rel_err": _rel_err(case, sliced["kitchen"]()), "rows": rows or args.tokens}
        times = _interleaved(sliced, ["baseline", "kitchen"], args.device, max(2, args.repeats // 3))
        kitchen["speedup"] = statistics.median(_ratios(times, "kitchen"))
        result["kitchen"] = kitchen
    return result


def _print_row(label, k, n, row):
    cells = [f"{label:<20}{f'{k}->{n}':>12}{row['baseline_ms']:>9.1f}"]
    for name in ("pack", "kitchen", "dynamic"):
        column = row.get(name)
        cells.append(f"{'-':>20}" if column is None else f"{column['speedup']:>10.2f}x {column['rel_err']:>8.1e}")
    print("".join(cells))


def _json(cases, rows, args, name, load) -> dict:
    result = {"shapes": [f"{k}->{n}" for _, k, n in SHAPES],
              "speedup_vs_fp32": [round(r["pack"]["speedup"], 3) for r in rows],
              "spread": [[round(v, 3) for v in r["pack"]["spread"]] for r in rows],
              "rel_err": [float(f"{r['pack']['rel_err']:.3e}") for r in rows], "device": name,
              "baseline": "bf16" if args.device == "cuda" else "fp32", "tokens": args.tokens,
              "backend": cases[0]["backend"], "repeats": args.repeats, "load_average": load}
    for column in ("kitchen", "dynamic"):
        if column in rows[0]:
            result[column] = {"speedup_vs_fp32": [round(r[column]["speedup"], 3) for r in rows],
                              "rel_err": [float(f"{r[column]['rel_err']:.3e}") for r in rows]}
    if "kitchen" in rows[0]:
        result["kitchen"]["rows"] = rows[0]["kitchen"]["rows"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 1-2 min on a 2-core CPU)")
    parser.add_argument("--tokens", type=int, default=None, help="default 4096 on CPU, 32768 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (--quick) or 11")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    args.tokens = args.tokens or (32768 if args.device == "cuda" else 4096)
    args.repeats = args.repeats or (5 if args.quick else 11)
    int8, reference = _import_kernels()
    load_before = os.getloadavg()[0]
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    cases = [_setup(k, n, args.tokens, args.device, dtype, int8, reference) for _, k, n in SHAPES]
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; tokens {args.tokens}; pack backend {cases[0]['backend']}"
          f"{'' if args.device == 'cuda' else f', weight levels +-{int8.cpu_weight_levels()}'}; "
          f"kitchen rows {KITCHEN_ROWS.get(args.device) or args.tokens}; load average {load_before:.2f}")
    print(f"{'shape':<20}{'K->N':>12}{'base ms':>9}{'pack':>20}{'kitchen':>20}{'torch dynamic':>20}")
    rows = []
    for (label, k, n), case in zip(SHAPES, cases):
        rows.append(measure_case(case, int8, args))
        _print_row(label, k, n, rows[-1])
    result = _json(cases, rows, args, name, [round(load_before, 2), round(os.getloadavg()[0], 2)])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
