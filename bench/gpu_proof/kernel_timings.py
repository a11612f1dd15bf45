"""Part 2: each kernel at 32k tokens against what a user would otherwise run, timed in one run.

- INT8 linear (bench/int8_linear.py's Wan2.1-1.3B and LTX-2B block shapes), per-channel and
  128-block weights: the whole W8A8 layer (activation quantization + GEMM + epilogue) and the GEMM
  alone, against bf16 F.linear (cuBLAS) and, for per-channel weights, comfy-kitchen's
  `int8_linear` with the backend it picks under core's policy (comfy.quant_ops decides which
  backends are on when ComfyUI is importable); kitchen takes no 128-block scales.
- Attention on video-like q, k, v (bench/attention.py): Sage, SLA topk 0.1 / 0.3 and SageSLA 0.1
  against torch SDPA restricted to flash attention; Wan at D 128 (SLA with a random proj_l, as
  TurboWan's checkpoints carry one), LTX-2B at D 64 (no proj_l). Sage's cosine to exact float64
  attention on a 512-row slice is reported beside its speed.
- Fused RMSNorm / LayerNorm against F.rms_norm / F.layer_norm at DiT widths.
Ratios are base time / pack time (> 1: the pack is faster). --smoke: the same calls at tiny sizes
on the CPU (fp32 baselines, Triton under the interpreter), for the code paths only.
"""
from __future__ import annotations

import contextlib
import zlib

import torch
import torch.nn.functional as F

from .common import Context, Guard, Part, bench_module, cosine, pack_module, time_ms

COLUMNS = [("case", "case", ""), ("variant", "variant", ""), ("base", "baseline", ""),
           ("base_ms", "base ms", ".3f"), ("ms", "pack ms", ".3f"), ("speedup", "x base", ".2f"),
           ("extra", "also", ""), ("cos", "cos vs exact", ".5f")]


def _sizes(ctx: Context) -> dict:
    if ctx.smoke:
        return {"tokens": 48, "linear": [("tiny", 64, 96)], "repeats": 1, "dtype": torch.float32,
                "attention": [("tiny video", 128, 1, 64, True)], "norm_widths": (64,)}
    return {"tokens": 32768, "linear": bench_module("int8_linear").SHAPES, "repeats": 7, "dtype": torch.bfloat16,
            "attention": [("Wan2.1-1.3B 480p x 81", 32760, 12, 128, True), ("LTX-2B 1080p window", 32640, 32, 64,
                                                                              False)],
            "norm_widths": (1536, 2048, 4096, 5120)}


def kitchen_int8_linear(example: dict):
    """(callable or None, backend name or the reason it is absent)."""
    try:
        with contextlib.suppress(ImportError):
            import comfy.quant_ops  # noqa: F401  core's policy: which kitchen backends are on
        import comfy_kitchen as ck
    except ImportError as error:
        return None, f"comfy-kitchen does not import ({error})"
    try:
        backend = ck.registry.get_capable_backend("int8_linear", example)
    except Exception as error:  # NoCapableBackendError and friends
        return None, f"comfy-kitchen has no backend for this int8_linear call ({error})"
    return ck.int8_linear, backend


def _linear_case(ctx: Context, part: Part, sizes: dict, label: str, k: int, n: int, granularity: str) -> None:
    int8, int8_triton = pack_module("kernels.int8"), pack_module("kernels.int8_triton")
    gen = torch.Generator().manual_seed(k * 7 + n)
    dtype, bound = sizes["dtype"], k ** -0.5
    x = torch.randn(sizes["tokens"], k, generator=gen).to(ctx.device, dtype)
    w = ((torch.rand(n, k, generator=gen) * 2 - 1) * bound).to(ctx.device, dtype)
    b = ((torch.rand(n, generator=gen) * 2 - 1) * bound).to(ctx.device, dtype)
    qw, sw = int8.quantize(w.float(), granularity, backend="torch")
    qx, sx = int8.quantize(x, granularity, backend="triton")
    fns = {"base": lambda: F.linear(x, w, b), "layer": lambda: int8.linear(x, qw, sw, b, backend="triton"),
           "gemm": lambda: int8_triton.int8_gemm(qx, sx, qw, sw, b, out_dtype=dtype)}
    kitchen, backend = (None, "kitchen takes no 128-block scales") if granularity == "block128" else \
        kitchen_int8_linear({"x": x, "weight": qw, "weight_scale": sw, "bias": b, "out_dtype": dtype})
    if kitchen is not None:
        fns["kitchen"] = lambda: kitchen(x, qw, sw, b, out_dtype=dtype)
    ms = time_ms(fns, ctx, sizes["repeats"])
    extra = f"gemm {ms['gemm']:.3f} ms (x{ms['base'] / ms['gemm']:.2f})"
    extra += f"; kitchen[{backend}] {ms['kitchen']:.3f} ms (pack x{ms['kitchen'] / ms['layer']:.2f})" \
        if kitchen is not None else f"; kitchen: {backend}"
    part.add(case=f"int8 {label} {k}->{n} @{sizes['tokens']}", variant=granularity, base=f"{_dn(dtype)} F.linear",
             base_ms=ms["base"], ms=ms["layer"], speedup=ms["base"] / ms["layer"], extra=extra, cos=None,
             gemm_speedup=ms["base"] / ms["gemm"], kitchen_ms=ms.get("kitchen"), kitchen_backend=backend)


def _dn(dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]


def _sdpa(q, k, v):
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return F.scaled_dot_product_attention(q, k, v)
    backends = [SDPBackend.FLASH_ATTENTION] if q.is_cuda else [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION]
    with sdpa_kernel(backends):
        return F.scaled_dot_product_attention(q, k, v)


def _sage_cosine(q, k, v, out, rows: int = 512) -> float:
    start = q.shape[2] // 2 // 128 * 128
    start = min(start, max(0, q.shape[2] - rows) // 128 * 128)
    q_rows = q[:, :, start:start + rows].double()
    exact = torch.softmax(q_rows @ k.double().transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1) @ v.double()
    return cosine(out[:, :, start:start + rows], exact)


def _attention_case(ctx: Context, part: Part, sizes: dict, label: str, tokens: int, heads: int, d: int,
                    with_proj_l: bool) -> None:
    attention = pack_module("kernels.attention")
    dtype = sizes["dtype"]
    q, k, v = bench_module("attention").video_qkv(tokens, d, heads, ctx.device, dtype,
                                                  seed=zlib.crc32(label.encode()))
    gen = torch.Generator().manual_seed(d)
    proj_l = (0.05 * torch.randn(d, d, generator=gen).to(ctx.device), torch.zeros(d, device=ctx.device)) \
        if with_proj_l else None
    run = lambda backend, topk=0.1: attention.attention(q, k, v, backend, topk=topk, proj_l=proj_l,  # noqa: E731
                                                        implementation="triton")
    fns = {"sdpa": lambda: _sdpa(q, k, v), "sage": lambda: run("sage"), "sla 0.1": lambda: run("sla", 0.1),
           "sla 0.3": lambda: run("sla", 0.3), "sagesla 0.1": lambda: run("sagesla", 0.1)}
    ms = time_ms(fns, ctx, sizes["repeats"])
    sage_cos = _sage_cosine(q, k, v, run("sage"))
    for name in ("sage", "sla 0.1", "sla 0.3", "sagesla 0.1"):
        variant = name if name == "sage" else f"{name.split()[0]} topk {name.split()[1]}"
        part.add(case=f"attention {label} {heads}x{tokens} D{d}", variant=variant, base="SDPA flash",
                 base_ms=ms["sdpa"], ms=ms[name], speedup=ms["sdpa"] / ms[name],
                 extra="proj_l" if with_proj_l and name != "sage" else "", cos=sage_cos if name == "sage" else None)


def _norm_case(ctx: Context, part: Part, sizes: dict, kind: str, width: int) -> None:
    norms = pack_module("kernels.norms")
    gen = torch.Generator().manual_seed(width)
    dtype = sizes["dtype"]
    x = torch.randn(sizes["tokens"], width, generator=gen).to(ctx.device, dtype)
    w, b = (torch.randn(width, generator=gen).to(ctx.device, dtype) for _ in range(2))
    if kind == "rms":
        fns = {"base": lambda: F.rms_norm(x, (width,), w, 1e-6), "fused": lambda: norms.rms_norm(x, w, 1e-6, "triton")}
    else:
        fns = {"base": lambda: F.layer_norm(x, (width,), w, b, 1e-6),
               "fused": lambda: norms.layer_norm(x, w, b, 1e-6, "triton")}
    ms = time_ms(fns, ctx, sizes["repeats"])
    part.add(case=f"{kind}_norm {sizes['tokens']}x{width}", variant=_dn(dtype), base=f"F.{kind}_norm",
             base_ms=ms["base"], ms=ms["fused"], speedup=ms["base"] / ms["fused"], extra="", cos=None)


def _cases(sizes: dict):
    for label, k, n in sizes["linear"]:
        for granularity in ("per_channel", "block128"):
            yield f"int8 {label} {granularity}", _linear_case, (label, k, n, granularity)
    for spec in sizes["attention"]:
        yield f"attention {spec[0]}", _attention_case, spec
    for kind in ("rms", "layer"):
        for width in sizes["norm_widths"]:
            yield f"{kind}_norm {width}", _norm_case, (kind, width)


def run(ctx: Context, guard: Guard) -> Part:
    part = Part("2. kernel timings (one run, interleaved repeats, median)", COLUMNS)
    sizes = _sizes(ctx)
    for name, case, args in _cases(sizes):
        if not guard.allows():
            part.note(f"time guard: {name} and later cases not timed", failure=True)
            break
        try:
            case(ctx, part, sizes, *args)
        except Exception as error:  # one broken case must not hide the others
            part.note(f"{name}: {type(error).__name__}: {error}", failure=True)
        if ctx.cuda:
            torch.cuda.empty_cache()
    part.seconds = guard.elapsed()
    return part
