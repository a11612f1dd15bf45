"""Part 1: every Triton kernel, through its dispatcher, against float64 in fp32, fp16 and bf16.

Two yardsticks per case: the float64 reference of the same arithmetic (kernels/*_reference.py run
in float64 where the arithmetic allows; the Sage/SLA references keep their fp16/bf16 rounding of
P, which is part of the algorithm) with a tight tolerance, and exact float64 math (F.linear,
softmax attention, the norm) whose error is reported and, where the pack promises a bound, checked.
GPU shapes are real: DiT widths (K, N 1536 / 2048 / 8192 / 8960 and 1000 x 1500, not multiples of
128), 4095 tokens per GEMM, 32760-token attention (Wan2.1 480p x 81) at head dims 64 and 128
compared on a 1024-row slice of whole query blocks (each query block is computed independently,
so the slice equals the full run's rows), norms over 32760 rows. --smoke: tiny shapes under the
Triton interpreter, bf16 attention left out (the interpreter's bf16 tl.dot is wrong).
"""
from __future__ import annotations

import subprocess
import sys
import zlib

import torch
import torch.nn.functional as F

from .common import PACK_ROOT, Context, Guard, Part, bench_module, cosine, pack_module, rel_l2

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# rel L2 against the same arithmetic in float64: what output rounding to the dtype leaves
SAME_TOL = {torch.float32: 2e-5, torch.float16: 1.5e-3, torch.bfloat16: 8e-3}
ATTENTION_TOL = {torch.float32: 2e-3, torch.float16: 3e-3, torch.bfloat16: 1e-2}
SLA_FP32_TOL = 1e-5  # fp32 SLA keeps fp32 ("ieee") products: only summation order differs
INT8_EXACT_TOL = {"per_channel": 1.1e-2, "block128": 1.3e-2}  # the pack's W8A8 bar (docs/int8.md), + rounding
UNIT_TEST_FILES = ("tests/unit/test_int8_kernels.py", "tests/unit/test_attention_triton.py", "tests/unit/test_norms.py")
COLUMNS = [("kernel", "kernel", ""), ("dtype", "dtype", ""), ("shape", "shape", ""),
           ("rel_same", "rel L2 vs same math f64", ".2e"), ("tol", "tol", ".0e"),
           ("rel_exact", "rel L2 vs exact f64", ".2e"), ("cos_exact", "cos vs exact", ".6f"), ("ok", "ok", "")]


def _gen(*key) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _dname(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def int8_case(ctx: Context, part: Part, dtype, granularity: str, shape: tuple[int, int, int]) -> None:
    int8, ref = pack_module("kernels.int8"), pack_module("kernels.int8_reference")
    m, k, n = shape
    gen = _gen("int8", granularity, shape, str(dtype))
    bound = k ** -0.5
    x = torch.randn(m, k, generator=gen).to(ctx.device, dtype)
    w = ((torch.rand(n, k, generator=gen) * 2 - 1) * bound).to(ctx.device)
    b = ((torch.rand(n, generator=gen) * 2 - 1) * bound).to(ctx.device, dtype)
    qw, sw = ref.quantize(w, granularity)
    out = int8.linear(x, qw, sw, b, backend="triton")
    qx, sx = ref.quantize(x.double(), granularity)
    same = ref.int8_gemm(qx, sx, qw, sw, b, torch.float64)
    exact = F.linear(x.double(), w.double(), b.double())
    rel_same, rel_exact = rel_l2(out, same), rel_l2(out, exact)
    ok = rel_same <= SAME_TOL[dtype] and rel_exact <= INT8_EXACT_TOL[granularity]
    part.add(kernel=f"int8 {granularity}", dtype=_dname(dtype), shape=f"{m}x{k}->{n}", rel_same=rel_same,
             tol=SAME_TOL[dtype], rel_exact=rel_exact, cos_exact=cosine(out, exact), ok=ok)


def _attention_inputs(ctx: Context, tokens: int, d: int, heads: int, dtype):
    """Video-like q, k, v (bench/attention.py): attention concentrated near each token, K offset."""
    video_qkv = bench_module("attention").video_qkv
    return video_qkv(tokens, d, heads, ctx.device, dtype, seed=zlib.crc32(repr((tokens, d, str(dtype))).encode()))


def attention_case(ctx: Context, part: Part, backend: str, dtype, d: int, sizes: dict) -> None:
    attention, ref = pack_module("kernels.attention"), pack_module("kernels.attention_reference")
    tokens, rows, heads, topk = sizes["tokens"], sizes["rows"], sizes["heads"], 0.1
    q, k, v = _attention_inputs(ctx, tokens, d, heads, dtype)
    start = min(tokens // 2 // ref.BLOCK_Q * ref.BLOCK_Q, max(0, tokens - rows) // ref.BLOCK_Q * ref.BLOCK_Q)
    out = attention.attention(q, k, v, backend, topk=topk, implementation="triton")[:, :, start:start + rows]
    q_rows = q[:, :, start:start + rows]
    if backend == "sage":
        same = ref.sage_attention(q_rows, k, v)
    else:  # the blocks the dispatcher picks on this device (SageSLA: 64 / 128 on sm_90)
        block_q, block_k = attention.sla_blocks(q, backend)
        same = ref.sla_attention(q_rows, k, v, topk, None, backend == "sagesla", None, block_q, block_k)
    exact = torch.softmax(q_rows.double() @ k.double().transpose(-1, -2) * d ** -0.5, dim=-1) @ v.double()
    rel_same, cos = rel_l2(out, same), cosine(out, exact)
    tol = SLA_FP32_TOL if (backend, dtype) == ("sla", torch.float32) else ATTENTION_TOL[dtype]
    ok = rel_same <= tol and (backend != "sage" or cos >= 0.999)
    label = backend if backend == "sage" else f"{backend} topk {topk}"
    part.add(kernel=label, dtype=_dname(dtype), shape=f"{heads}x{tokens} D{d} rows {rows}", rel_same=rel_same,
             tol=tol, rel_exact=rel_l2(out, exact), cos_exact=cos, ok=ok)


def norm_case(ctx: Context, part: Part, kind: str, dtype, rows: int, width: int) -> None:
    norms, ref = pack_module("kernels.norms"), pack_module("kernels.norms_reference")
    gen = _gen("norm", kind, width, str(dtype))
    x = (torch.randn(rows, width, generator=gen) * 3 + 0.5).to(ctx.device, dtype)
    w = (1 + 0.1 * torch.randn(width, generator=gen)).to(ctx.device, dtype)
    b = (0.1 * torch.randn(width, generator=gen)).to(ctx.device, dtype)
    if kind == "rms":
        out, exact = norms.rms_norm(x, w, 1e-6, backend="triton"), ref.rms_norm(x.double(), w.double(), 1e-6)
    else:
        out = norms.layer_norm(x, w, b, 1e-6, backend="triton")
        exact = ref.layer_norm(x.double(), w.double(), b.double(), 1e-6)
    rel = rel_l2(out, exact)
    part.add(kernel=f"{kind}_norm", dtype=_dname(dtype), shape=f"{rows}x{width}", rel_same=rel, tol=SAME_TOL[dtype],
             rel_exact=rel, cos_exact=cosine(out, exact), ok=rel <= SAME_TOL[dtype])


def _sizes(ctx: Context) -> dict:
    """GPU: real shapes, every dtype. Smoke: each case once at tiny sizes (the interpreter is slow),
    attention and GEMM in fp32 and fp16 only (the interpreter's bf16 tl.dot is wrong)."""
    if ctx.smoke:
        return {"gemm": [(33, 200, 70)], "attention": {"tokens": 130, "rows": 128, "heads": 1}, "norm_rows": 7,
                "widths": (1000,), "dot_dtypes": (torch.float32, torch.float16), "head_dims": (64,)}
    return {"gemm": [(4095, 1536, 8960), (4095, 8960, 1536), (4095, 2048, 8192), (4095, 1000, 1500)],
            "attention": {"tokens": 32760, "rows": 1024, "heads": 2}, "norm_rows": 32760,
            "widths": (1536, 2048, 4096, 5120), "dot_dtypes": DTYPES, "head_dims": (64, 128)}


def _cases(ctx: Context):
    sizes = _sizes(ctx)
    for dtype in DTYPES:
        for granularity in ("per_channel", "block128"):
            for shape in sizes["gemm"] if dtype in sizes["dot_dtypes"] else ():
                yield f"int8 {granularity} {shape} {_dname(dtype)}", int8_case, (dtype, granularity, shape)
        for backend in ("sage", "sla", "sagesla"):
            for d in sizes["head_dims"] if dtype in sizes["dot_dtypes"] else ():
                yield f"{backend} D{d} {_dname(dtype)}", attention_case, (backend, dtype, d, sizes["attention"])
        for kind in ("rms", "layer"):
            for width in sizes["widths"]:
                yield f"{kind}_norm {width} {_dname(dtype)}", norm_case, (kind, dtype, sizes["norm_rows"], width)


def run_unit_tests(part: Part, seconds: float) -> None:
    """The pack's own kernel tests (tests/unit), which run on CUDA when it is there, in what time the
    suite has left; cut short, they are reported as not finished rather than failed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TEST_FILES]
    try:
        done = subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired as stopped:
        tail = (stopped.stdout or b"").decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        part.note(f"unit kernel tests on CUDA: not finished in the {seconds:.0f} s left (last line: {tail[0]})")
        return
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    part.note(f"unit kernel tests on CUDA ({', '.join(UNIT_TEST_FILES)}): {last}", failure=done.returncode != 0)


def run(ctx: Context, guard: Guard) -> Part:
    part = Part("1. kernels vs float64 (through the dispatchers, Triton forced)", COLUMNS)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # fp32 references in fp32, never TF32
    try:
        _run_cases(ctx, guard, part)
    finally:
        torch.set_float32_matmul_precision(precision)
    part.failures += sum(1 for row in part.rows if row["ok"] is False)
    part.seconds = guard.elapsed()
    return part


def _run_cases(ctx: Context, guard: Guard, part: Part) -> None:
    for name, case, args in _cases(ctx):
        if not guard.allows():
            part.note(f"time guard: {name} and later cases not run", failure=True)
            break
        try:
            case(ctx, part, *args)
        except Exception as error:  # one broken case must not hide the others
            part.note(f"{name}: {type(error).__name__}: {error}", failure=True)
