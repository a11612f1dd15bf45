"""Norms: the dispatcher's "auto" path (what TurboFusedNorms runs) against core's own F.rms_norm / F.layer_norm.

Core's path is what ComfyUI's norm modules run: torch's F.rms_norm / F.layer_norm with the weight cast to
the input's dtype. "auto" is kernels.norms with backend="auto" (torch's own norm off CUDA; on CUDA the
faster of the Triton kernel and torch's, measured on the first call). Repeats (3 calls each) are
interleaved (core, auto, auto, core, ...) in one run; speedup = best core time / best auto time over the
repeats (the samples other processes disturbed least), the per-repeat ratios' range as the spread.
max_err: largest |auto - float64| over the output's magnitude (>= 1).
The LAST line printed is JSON: {"cases": [...], "speedup_vs_core": [...], "max_err": [...], ...}.

  python bench/norms.py --quick                 # CPU, about 10-20 s
  python bench/norms.py --device cuda
"""
import argparse
import json
import os
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
from pack_import import import_pack_module  # noqa: E402

norms = import_pack_module("kernels.norms")
reference = import_pack_module("kernels.norms_reference")

# (label, kind, width, affine): LTX-Video 2B / Wan 2.1 1.3B norms (q/k RMSNorm over the width, block LayerNorms)
SHAPES = [("LTX-2B q/k rms", "rms", 2048, True), ("LTX-2B layer", "layer", 2048, False),
          ("Wan-1.3B q/k rms", "rms", 1536, True), ("Wan-1.3B layer affine", "layer", 1536, True)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
EPS = 1e-6


def make_case(kind, width, affine, tokens, device, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed + width)
    x = (torch.randn(1, tokens, width, generator=gen) * 2 + 0.5).to(device, dtype)
    weight = (1 + 0.1 * torch.randn(width, generator=gen)).to(device, dtype) if affine else None
    bias = (0.1 * torch.randn(width, generator=gen)).to(device, dtype) if affine and kind == "layer" else None
    return x, weight, bias


def runners(kind, x, weight, bias):
    """(core's path, the auto path) for one case."""
    if kind == "rms":
        return (lambda: F.rms_norm(x, (x.shape[-1],), weight, EPS)), (lambda: norms.rms_norm(x, weight, EPS))
    return ((lambda: F.layer_norm(x, (x.shape[-1],), weight, bias, EPS)),
            (lambda: norms.layer_norm(x, weight, bias, EPS)))


def _max_err(kind, x, weight, bias, out):
    params = (weight,) if kind == "rms" else (weight, bias)
    exact = getattr(reference, f"{kind}_norm")(x.double(), *[None if p is None else p.double() for p in params], EPS)
    return ((out.double() - exact).abs().max() / exact.abs().max().clamp_min(1.0)).item()


def _seconds(fn, cuda, inner=3):
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(core, auto, repeats, cuda):
    """(speedup, min, max): speedup = best core time / best auto time (the best of `repeats` samples is the
    one other processes disturbed least); min and max of the per-repeat ratios show the spread. The order
    alternates every repeat."""
    core(), auto(), auto()  # warm-up; auto's first call may measure its candidates
    core_times, auto_times = [], []
    for repeat in range(repeats):
        if repeat % 2:
            auto_times.append(_seconds(auto, cuda))
            core_times.append(_seconds(core, cuda))
        else:
            core_times.append(_seconds(core, cuda))
            auto_times.append(_seconds(auto, cuda))
    ratios = [c / a for c, a in zip(core_times, auto_times)]
    return min(core_times) / min(auto_times), min(ratios), max(ratios)


def run(args):
    cuda = args.device == "cuda"
    result = {"cases": [], "speedup_vs_core": [], "spread": [], "max_err": []}
    print(f"{'case':34}{'tokens':>7}{'speedup':>9}{'min-max':>14}{'max err':>10}")
    for label, kind, width, affine in SHAPES:
        for dtype_name, dtype in DTYPES.items():
            x, weight, bias = make_case(kind, width, affine, args.tokens, args.device, dtype)
            core, auto = runners(kind, x, weight, bias)
            median, low, high = measure(core, auto, args.repeats, cuda)
            err = _max_err(kind, x, weight, bias, auto())
            name = f"{label} {dtype_name}"
            print(f"{name:34}{args.tokens:7d}{median:8.2f}x{f'{low:.2f}-{high:.2f}':>14}{err:10.1e}")
            for key, value in (("cases", name), ("speedup_vs_core", round(median, 3)),
                               ("spread", [round(low, 3), round(high, 3)]), ("max_err", float(f"{err:.2e}"))):
                result[key].append(value)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="4096 tokens, 25 repeats")
    parser.add_argument("--tokens", type=int, default=None, help="default 4096 (--quick) or 16384")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; run with --device cpu")
    args.tokens = args.tokens or (4096 if args.quick else 16384)
    args.repeats = args.repeats or (25 if args.quick else 41)
    load = os.getloadavg()[0]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; load average {load:.2f}; core = F.rms_norm / F.layer_norm; speedup = core / auto")
    result = run(args)
    result.update(device=device, tokens=args.tokens, repeats=args.repeats,
                  load_average=[round(load, 2), round(os.getloadavg()[0], 2)])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
