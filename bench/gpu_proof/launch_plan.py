"""The dispatcher calls whose Triton launches --compile builds: every kernel of kernels/, reached
through its public dispatcher (kernels.int8.linear, kernels.attention.attention, kernels.norms),
with the dtypes, head dims, granularities, optional operands and sizes a model hands it.

full=True is the whole set. full=False (the CI test) keeps every kernel and every code path that
changes its tiles or shared memory, at one dtype where the dtype only changes loads and stores:
both GEMM granularities, both head dims of every attention kernel in bf16 plus the fp32 paths
(fp32 V tiles in Sage, fp32 "ieee" products in SLA), the largest and the 32-row norm blocks.
Sizes: real model shapes (Wan2.1 480p x 81: 32760 tokens, LTX 1080p window: 32640) so that the
ints Triton specialises on (multiples of 16, or 1) take the values real calls give them, plus a
shape whose K / N / row width is not a multiple of 16 (the tests' odd shapes).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import types
from collections.abc import Callable, Iterator
from unittest import mock

import torch

from .common import pack_module

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HEAD_DIMS = (64, 128)
NORM_VARIANTS = (("rms", False, False), ("rms", True, False), ("layer", False, False), ("layer", True, False),
                 ("layer", True, True))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _int8_scale(rows: int, cols: int, granularity: str) -> torch.Tensor:
    if granularity == "per_channel":
        return torch.rand(rows, 1)
    return torch.rand(-(-rows // 128), -(-cols // 128))


def int8_calls(full: bool) -> Iterator[tuple[str, Callable]]:
    int8 = pack_module("kernels.int8")
    shapes = [(4096, 1536, 8960), (4095, 1000, 1500)] if full else [(4096, 1536, 8960)]
    dtypes, biases = (DTYPES, (True, False)) if full else ((torch.bfloat16,), (True,))
    for dtype, granularity, bias, (m, k, n) in itertools.product(dtypes, ("per_channel", "block128"), biases,
                                                                 shapes):
        x = torch.randn(m, k, dtype=dtype)
        qw = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        b = torch.randn(n, dtype=dtype) if bias else None
        label = f"int8.linear {_name(dtype)} {granularity} {'bias' if bias else 'no-bias'} MxKxN {m}x{k}x{n}"
        yield label, functools.partial(int8.linear, x, qw, _int8_scale(n, k, granularity), b, backend="triton")


def attention_calls(full: bool) -> Iterator[tuple[str, Callable]]:
    attention = pack_module("kernels.attention")
    lengths = (32760, 32640) if full else (32640,)
    dtypes = DTYPES if full else (torch.bfloat16, torch.float32)
    for dtype, d, backend, length in itertools.product(dtypes, HEAD_DIMS, ("sage", "sla", "sagesla"), lengths):
        q, k, v = (torch.randn(1, 1, length, d).to(dtype) for _ in range(3))
        label = f"attention {backend} {_name(dtype)} D{d} L{length}"
        yield label, functools.partial(attention.attention, q, k, v, backend, topk=0.1, implementation="triton")


def _norm_call(norms, kind: str, x: torch.Tensor, weight, bias):
    if kind == "rms":
        return norms.rms_norm(x, weight, 1e-6, backend="triton")
    return norms.layer_norm(x, weight, bias, 1e-6, backend="triton")


def norm_calls(full: bool) -> Iterator[tuple[str, Callable]]:
    norms = pack_module("kernels.norms")
    limit = pack_module("kernels.norms_triton").MAX_N
    widths = [2 ** i for i in range(limit.bit_length())] + [1000, 3000] if full else [512, limit]
    variants = NORM_VARIANTS if full else (("rms", True, False), ("layer", True, True))
    for dtype, n, (kind, weight, bias) in itertools.product(DTYPES if full else (torch.bfloat16,), widths, variants):
        x = torch.randn(64, n, dtype=dtype)
        w = torch.randn(n, dtype=dtype) if weight else None
        b = torch.randn(n, dtype=dtype) if bias else None
        label = f"norms.{kind}_norm {_name(dtype)} N{n}{' weight' if weight else ''}{' bias' if bias else ''}"
        yield label, functools.partial(_norm_call, norms, kind, x, w, b)


def all_calls(full: bool) -> list[tuple[str, Callable]]:
    return [*int8_calls(full), *attention_calls(full), *norm_calls(full)]


@contextlib.contextmanager
def cuda_branches(arch: int):
    """The calls run on CPU tensors; where a dispatcher picks launch sizes by device, take the branch
    it takes on a CUDA GPU of compute capability `arch`: int8_triton's GEMM tiles (small ones for the
    CPU interpreter) and attention.sla_blocks (SageSLA's blocks on sm_90), each asked itself."""
    int8_triton, attention = pack_module("kernels.int8_triton"), pack_module("kernels.attention")
    tiles, blocks = int8_triton._tile_sizes, attention.sla_blocks
    capability = (arch // 10, arch % 10)
    on_cuda = types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))

    def sla_blocks(q, backend):
        with mock.patch.object(torch.cuda, "get_device_capability", lambda device=None: capability):
            return blocks(on_cuda, backend)

    int8_triton._tile_sizes = lambda device: tiles(torch.device("cuda"))
    attention.sla_blocks = sla_blocks
    try:
        yield
    finally:
        int8_triton._tile_sizes, attention.sla_blocks = tiles, blocks


def kernel_modules() -> list:
    """The modules whose @triton.jit functions the calls launch."""
    return [pack_module(f"kernels.{name}") for name in ("int8_triton", "sage_triton", "sla_triton", "norms_triton")]
