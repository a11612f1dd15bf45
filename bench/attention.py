"""Attention backends: accuracy against exact attention, SLA's compute share, and speed against core's SDPA.

    python bench/attention.py --quick                 # CPU, < 2 min
    python bench/attention.py --device cuda --json docs/attention_bench.json

Inputs are video-like: tokens on a frames x height x width grid whose q and k carry smooth
positional features (so attention is concentrated near each token, as in video DiTs) plus noise,
and k a per-channel offset (what smooth-K removes). Accuracy is measured on a slice of whole query
blocks against all keys; every backend treats query blocks independently, so the slice's output
equals the full run's. flop_fraction = SLA's multiply-adds (block map, sparse branch, linear
branch, proj_l) over dense attention's, at that case's topk. On CUDA the speed table times the
Triton kernels against torch SDPA (flash) on the same bf16 inputs and names the device.
Accuracy runs the reference arithmetic of each backend (implementation="reference") on the CPU.

Speed against core (every device): what TurboAttention's "auto" path runs for each backend
(kernels.attention, implementation="auto") against the exact SDPA core would run on the same inputs,
repeats interleaved (core, auto, auto, core, ...); speedup = best core time / best auto time.
The LAST line printed is JSON: {"cases": [...], "speedup_vs_core": [...], "spread": [...], "accuracy":
{"cases", "cos_sim", "rel_l2", "flop_fraction"}, "device", ...}.
"""
import argparse
import importlib.util
import json
import math
import os
import pathlib
import sys
import time

import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _import_kernels():
    if "turbovideo" not in sys.modules:
        spec = importlib.util.spec_from_file_location("turbovideo", PACK_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(PACK_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["turbovideo"] = module
        spec.loader.exec_module(module)
    from turbovideo.kernels import attention, attention_reference

    return attention, attention_reference


attention, reference = _import_kernels()


def random_qkv(tokens, head_dim, heads, device, dtype, seed=0):
    """Unit-RMS random q, k (flat attention: the hard case for sparsity) with a per-channel K offset."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, tokens, head_dim, generator=gen) for _ in range(3))
    k = k + 1.5 * torch.randn(1, heads, 1, head_dim, generator=gen)
    return tuple(tensor.to(device, dtype) for tensor in (q, k, v))


def video_qkv(tokens, head_dim, heads, device, dtype, seed=0):
    """q, k, v (1, heads, tokens, head_dim) for a video of 8-token-high, 16-token-wide frames."""
    gen = torch.Generator().manual_seed(seed)
    frames = math.ceil(tokens / 128)
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(8), torch.arange(16), indexing="ij")
    grid = torch.stack([t.flatten() / 4.0, y.flatten() / 3.0, x.flatten() / 3.0], dim=-1)[:tokens]
    freqs = torch.randn(3, head_dim, generator=gen)
    phase = torch.rand(head_dim, generator=gen) * 6.28
    features = torch.cos(grid @ freqs + phase)
    noise = lambda: torch.randn(1, heads, tokens, head_dim, generator=gen)  # noqa: E731
    q = 2.0 * features + 0.7 * noise()
    k = 2.0 * features + 0.7 * noise() + 1.5 * torch.randn(1, heads, 1, head_dim, generator=gen)
    v = noise()
    return tuple(tensor.to(device, dtype) for tensor in (q, k, v))


def _compare(out, expected):
    out, expected = out.double().flatten(), expected.double().flatten()
    cos = torch.nn.functional.cosine_similarity(out, expected, dim=0).item()
    return cos, ((out - expected).norm() / expected.norm()).item()


def accuracy_case(backend, tokens, head_dim, topk, rows, heads, device, dtype, data="video"):
    q, k, v = (video_qkv if data == "video" else random_qkv)(tokens, head_dim, heads, device, dtype)
    start = (tokens // 2) // reference.BLOCK_Q * reference.BLOCK_Q  # whole query blocks mid-video
    q_slice = q[:, :, start:start + rows]
    expected = reference.exact_attention(q_slice.float(), k.float(), v.float())
    implementation = "reference" if q.device.type == "cpu" else "auto"
    out = attention.attention(q_slice, k, v, backend, topk=topk, implementation=implementation)
    cos, rel = _compare(out, expected)
    fraction = None
    if backend in ("sla", "sagesla"):
        fraction = reference.sla_flops(tokens, tokens, head_dim, topk) / reference.dense_flops(tokens, tokens, head_dim)
    return cos, rel, fraction


def _cuda_ms(fn, repeats=10):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def speed_case(backend, tokens, head_dim, topk, heads):
    q, k, v = video_qkv(tokens, head_dim, heads, "cuda", torch.bfloat16)
    baseline = _cuda_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    ms = _cuda_ms(lambda: attention.attention(q, k, v, backend, topk=topk, implementation="triton"))
    return baseline, ms


def plan(quick):
    """(name, backend, tokens, head_dim, topk, query rows checked, data)."""
    rows = 256 if quick else 1024
    cases = [(f"sage_d{d}_8k_{data}", "sage", 8192, d, 1.0, rows, data) for data in ("video", "random")
             for d in (64, 128)]
    for tokens, label in ((8192, "8k"), (32768, "32k")):
        for topk in (0.1, 0.15):
            cases.append((f"sla_topk{topk}_d128_{label}_video", "sla", tokens, 128, topk, rows, "video"))
    cases += [(f"sla_topk{topk}_d128_8k_random", "sla", 8192, 128, topk, rows, "random") for topk in (0.1, 0.15)]
    cases.append(("sagesla_topk0.15_d128_32k_video", "sagesla", 32768, 128, 0.15, rows, "video"))
    return cases


def run(args):
    """The accuracy table (and on CUDA the Triton speed table)."""
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results = {"cases": [], "cos_sim": [], "rel_l2": [], "flop_fraction": [], "device": _device_name(device)}
    print(f"{'case':36} {'tokens':>7} {'D':>4} {'cos_sim':>9} {'rel_l2':>8} {'flop_fraction':>13}")
    for name, backend, tokens, head_dim, topk, rows, data in plan(args.quick):
        cos, rel, fraction = accuracy_case(backend, tokens, head_dim, topk, rows, args.heads, device, dtype, data)
        shown = "-" if fraction is None else f"{fraction:.4f}"
        print(f"{name:36} {tokens:7d} {head_dim:4d} {cos:9.5f} {rel:8.4f} {shown:>13}")
        for key, value in (("cases", name), ("cos_sim", round(cos, 6)), ("rel_l2", round(rel, 6)),
                           ("flop_fraction", None if fraction is None else round(fraction, 5))):
            results[key].append(value)
    if device.type == "cuda":
        results["speed"] = speed_table(args.heads_speed)
    return results


def core_plan(quick):
    """(name, backend, heads, tokens, head_dim, topk, dtype) of the speed-against-core cases."""
    sizes = [(4, 1024, 128), (4, 2048, 64)] if quick else [(4, 4096, 128), (8, 8192, 64)]
    cases = []
    for heads, tokens, d in sizes:
        for backend, topk in (("sdpa", 1.0), ("sage", 1.0), ("sla", 0.1), ("sla", 0.15), ("sagesla", 0.15)):
            label = backend if backend in ("sdpa", "sage") else f"{backend}_topk{topk}"
            cases.append((f"{label}_1x{heads}x{tokens}x{d}_fp32", backend, heads, tokens, d, topk, torch.float32))
    heads, tokens, d = sizes[0]
    cases += [(f"{b}_1x{heads}x{tokens}x{d}_bf16", b, heads, tokens, d, t, torch.bfloat16)
              for b, t in (("sage", 1.0), ("sla", 0.1))]
    return cases


def _seconds(fn, cuda):
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def core_ratio(core, auto, repeats, cuda):
    """(speedup, min, max): speedup = best core time / best auto time over the repeats (the samples other
    processes disturbed least); min and max of the per-repeat ratios show the spread. The order alternates."""
    core(), auto(), auto()  # warm-up; auto's first call may measure its candidates
    core_times, auto_times = [], []
    for repeat in range(repeats):
        for fn, times in ((auto, auto_times), (core, core_times)) if repeat % 2 else \
                ((core, core_times), (auto, auto_times)):
            times.append(_seconds(fn, cuda))
    ratios = [c / a for c, a in zip(core_times, auto_times)]
    return min(core_times) / min(auto_times), min(ratios), max(ratios)


def core_speed_table(args):
    device, cuda = torch.device(args.device), args.device == "cuda"
    table = {"cases": [], "speedup_vs_core": [], "spread": []}
    print(f"\nspeed against core's exact SDPA on {_device_name(device)} (ratio = SDPA time / auto time)")
    for name, backend, heads, tokens, d, topk, dtype in core_plan(args.quick):
        q, k, v = video_qkv(tokens, d, heads, device, dtype)
        core = lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
        auto = lambda q=q, k=k, v=v, backend=backend, topk=topk: attention.attention(q, k, v, backend, topk=topk)  # noqa: E731
        median, low, high = core_ratio(core, auto, args.repeats, cuda)
        print(f"{name:36} x{median:5.2f}  (min {low:.2f}, max {high:.2f})")
        for key, value in (("cases", name), ("speedup_vs_core", round(median, 3)),
                           ("spread", [round(low, 3), round(high, 3)])):
            table[key].append(value)
    return table


def speed_table(heads):
    rows = []
    print(f"\nspeed on {torch.cuda.get_device_name()} (bf16, 1 x {heads} heads; ratio = SDPA time / backend time)")
    for tokens in (8192, 32768):
        for head_dim in (64, 128):
            for backend, topk in (("sage", 1.0), ("sla", 0.1), ("sagesla", 0.1)):
                baseline, ms = speed_case(backend, tokens, head_dim, topk, heads)
                rows.append({"backend": backend, "topk": topk, "tokens": tokens, "head_dim": head_dim,
                             "sdpa_ms": round(baseline, 3), "ms": round(ms, 3), "speedup": round(baseline / ms, 3)})
                print(f"{backend:8} topk {topk:4} {tokens:6d} tokens D {head_dim:3d}: sdpa {baseline:8.3f} ms, "
                      f"{ms:8.3f} ms, x{baseline / ms:.2f}")
    return rows


def _device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer query rows checked, smaller speed cases")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--heads", type=int, default=1, help="heads in the accuracy cases")
    parser.add_argument("--heads-speed", type=int, default=16, help="heads in the CUDA Triton speed cases")
    parser.add_argument("--repeats", type=int, default=None, help="speed-against-core repeats (15 quick, 21)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; run with --device cpu")
    args.repeats = args.repeats or (15 if args.quick else 21)
    began, load = time.perf_counter(), os.getloadavg()[0]
    accuracy = run(args)
    results = core_speed_table(args)
    results["accuracy"] = {k: accuracy[k] for k in ("cases", "cos_sim", "rel_l2", "flop_fraction")}
    if "speed" in accuracy:
        results["triton_speed"] = accuracy["speed"]
    results.update(device=accuracy["device"], seconds=round(time.perf_counter() - began, 1),
                   load_average=[round(load, 2), round(os.getloadavg()[0], 2)])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "triton_speed"}))


if __name__ == "__main__":
    main()
