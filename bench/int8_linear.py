"""W8A8 INT8 linear vs the float F.linear a user would otherwise run, on DiT block shapes.

The INT8 side is the whole layer (kernels.int8.linear): activation quantization + INT8 GEMM +
dequantization epilogue + bias, with the weight quantized and prepacked beforehand as a loaded
model has it. Baseline: fp32 F.linear on the CPU, bf16 F.linear on CUDA. Repeats are interleaved
(baseline, INT8, baseline, ...) in one run; the speedup is the median of the per-repeat ratios;
relative error is the L2 error of the INT8 output against float64 on the first rows. Inputs:
nn.Linear-like uniform weights and normal activations. The last line printed is JSON:
{"shapes": [...], "speedup_vs_fp32": [...], "rel_err": [...], ...}.

  python bench/int8_linear.py --quick               # CPU, 4096 tokens, about 40-60 s
  python bench/int8_linear.py --device cuda         # CUDA, 32k tokens, bf16 baseline
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [("Wan2.1-1.3B qkvo", 1536, 1536), ("Wan2.1-1.3B ffn.0", 1536, 8960),
          ("Wan2.1-1.3B ffn.2", 8960, 1536), ("LTX-2B attn", 2048, 2048), ("LTX-2B ff.0", 2048, 8192)]
ERROR_ROWS = 256


def _import_kernels():
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    import conftest  # noqa: F401  registers the pack as `turbovideo`
    from turbovideo.kernels import int8, int8_reference

    return int8, int8_reference


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
            "float": (x[:ERROR_ROWS].double(), weight.double(), bias.double())}


def _runners(case, int8):
    def baseline():
        return F.linear(case["x"], case["weight"], case["bias"])

    def quantized():
        return int8.linear(case["x"], case["qw"], case["sw"], case["bias"], case["backend"], case["cpu_weight"])

    return baseline, quantized


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
    return ((output[:ERROR_ROWS].double().cpu() - expected).norm() / expected.norm()).item()


def run(args, int8, reference):
    device, dtype = args.device, (torch.bfloat16 if args.device == "cuda" else torch.float32)
    cases = [_setup(k, n, args.tokens, device, dtype, int8, reference) for _, k, n in SHAPES]
    runners = [_runners(case, int8) for case in cases]
    errors = [_rel_err(case, quantized()) for case, (_, quantized) in zip(cases, runners)]  # also warms up
    for baseline, _ in runners:
        baseline()
    times = [([], []) for _ in cases]
    start = time.perf_counter()
    for repeat in range(args.max_repeats):
        if repeat >= args.min_repeats and time.perf_counter() - start > args.budget_s:
            break
        for (baseline, quantized), (base_times, int8_times) in zip(runners, times):
            base_times.append(_time(baseline, device))
            int8_times.append(_time(quantized, device))
    return cases, errors, times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="a time budget that finishes within 60 s")
    parser.add_argument("--tokens", type=int, default=None, help="default 4096 on CPU, 32768 on CUDA")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    args.tokens = args.tokens or (32768 if args.device == "cuda" else 4096)
    args.min_repeats, args.max_repeats, args.budget_s = (3, 9, 30.0) if args.quick else (5, 25, 240.0)
    int8, reference = _import_kernels()
    load_before = os.getloadavg()[0]
    cases, errors, times = run(args, int8, reference)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    baseline_name = "bf16" if args.device == "cuda" else "fp32"
    print(f"device: {name}; tokens {args.tokens}; INT8 backend {cases[0]['backend']}"
          f"{'' if args.device == 'cuda' else f', weight levels +-{int8.cpu_weight_levels()}'}; "
          f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; repeats {len(times[0][0])}")
    print(f"{'shape':<20}{'K->N':>12}{baseline_name + ' ms':>10}{'int8 ms':>10}{'speedup':>9}{'rel err':>10}")
    speedups = []
    for (label, k, n), (base, quant), error in zip(SHAPES, times, errors):
        base_ms, int8_ms = statistics.median(base) * 1e3, statistics.median(quant) * 1e3
        # each ratio pairs two neighbouring timings, so load from other processes mostly cancels
        speedups.append(round(statistics.median(b / q for b, q in zip(base, quant)), 3))
        print(f"{label:<20}{f'{k}->{n}':>12}{base_ms:>10.1f}{int8_ms:>10.1f}{speedups[-1]:>8.2f}x{error:>10.2e}")
    result = {"shapes": [f"{k}->{n}" for _, k, n in SHAPES], "speedup_vs_fp32": speedups,
              "rel_err": [float(f"{e:.3e}") for e in errors], "device": name, "baseline": baseline_name,
              "tokens": args.tokens, "backend": cases[0]["backend"]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
