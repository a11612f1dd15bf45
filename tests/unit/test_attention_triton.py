"""Triton attention kernels (Sage, SLA sparse branch, SageSLA) against the references and float64.

Without CUDA they run in the Triton interpreter (tests/conftest.py), so shapes stay small; lengths
are odd on purpose (partial query and key blocks). Tolerances: the float sparse branch within 1e-5
of float64; the int8 kernels within 1e-3 of the torch reference (same int8 values; the online
softmax rounds P to fp16 against a running rather than the final row max).
"""
import importlib
import sys

import pytest
import torch
import turbovideo.kernels as kernels_package
from turbovideo.kernels import attention, attention_torch
from turbovideo.kernels import attention_reference as ref
from unit.test_attention_cases import (
    block_sparse64,
    cos_and_rel,
    exact64,
    generator,
    qkv,
)

try:
    from turbovideo.kernels import sage_triton, sla_triton
except ImportError:
    sage_triton = sla_triton = None

pytestmark = pytest.mark.skipif(sage_triton is None, reason="triton is not installed")
INT8_TOL = 1e-3


@pytest.mark.parametrize("d", [64, 128])
def test_quantize_kernel_equals_reference(d):
    _, k, _ = qkv(generator("quant", d), 1, 150, d)
    mean = ref.key_mean(k)
    values, scales = sage_triton.quantize_per_block(k, 64, mean=mean, prescale=0.7)
    expected_values, expected_scales = ref.quantize_per_block(k, 64, mean=mean, prescale=0.7)
    assert torch.equal(values, expected_values)
    torch.testing.assert_close(scales, expected_scales, rtol=1e-6, atol=0)


@pytest.mark.parametrize("d,lengths", [(64, (200, 200)), (128, (77, 139))], ids=str)
def test_sage_kernel_matches_reference_and_exact(d, lengths):
    q, k, v = qkv(generator("sage", d, lengths), *lengths, d)
    k_before = k.clone()
    out = sage_triton.sage_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert (out - ref.sage_attention(q, k, v)).abs().max() <= INT8_TOL
    cos, rel = cos_and_rel(out, exact64(q, k, v))
    assert cos >= 0.999 and rel <= 3e-2
    assert torch.equal(k, k_before), "the caller's K was modified"


@pytest.mark.parametrize("d,lengths", [(64, (200, 203)), (128, (130, 70))], ids=str)
def test_sparse_kernel_equals_block_sparse_attention(d, lengths):
    q, k, v = qkv(generator("sparse", d, lengths), *lengths, d)
    lut = ref.sla_block_lut(q, k, 0.5)
    out = sla_triton.block_attention(q, k, v, lut=lut)
    mask = ref.lut_to_mask(lut, -(-lengths[1] // 64))
    assert (out.double() - block_sparse64(q, k, v, mask)).abs().max() <= 1e-5


def test_sparse_int8_kernel_matches_reference():
    q, k, v = qkv(generator("sparse-int8"), 200, 200, 64)
    lut = ref.sla_block_lut(q, k, 0.5)
    out = sla_triton.block_attention(q, k, v, lut=lut, quantized=True)
    assert (out - ref.block_attention(q, k, v, lut=lut, quantized=True)).abs().max() <= INT8_TOL


def test_sla_kernel_topk_one_zero_proj_l_is_exact():
    q, k, v = qkv(generator("sla-exact"), 150, 150, 64)
    out = sla_triton.sla_attention(q, k, v, topk=1.0, proj_l=(torch.zeros(64, 64), torch.zeros(64)))
    assert (out.double() - exact64(q, k, v)).abs().max() <= 1e-3


def test_sla_kernel_with_proj_l_matches_reference():
    gen = generator("sla-proj")
    q, k, v = qkv(gen, 200, 200, 64)
    proj_l = (0.3 * torch.randn(64, 64, generator=gen), torch.randn(64, generator=gen))
    out = sla_triton.sla_attention(q, k, v, topk=0.3, proj_l=proj_l)
    expected = ref.sla_attention(q, k, v, topk=0.3, proj_l=proj_l)
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


# Triton 3.8's interpreter multiplies bf16 tl.dot operands as raw bits (a 16x16 product is off by
# 1e10), so bf16 is checked only where the kernels are compiled.
BF16_ON_GPU_ONLY = pytest.mark.skipif(not torch.cuda.is_available(),
                                      reason="the Triton interpreter's bf16 tl.dot is wrong")


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_ON_GPU_ONLY)], ids=str)
def test_half_inputs(dtype):
    q, k, v = qkv(generator("half", str(dtype)), 130, 130, 64, dtype=dtype)
    for out in (sage_triton.sage_attention(q, k, v), sla_triton.sla_attention(q, k, v, topk=1.0)):
        assert out.dtype == dtype
        cos, rel = cos_and_rel(out, exact64(q, k, v))
        assert cos >= 0.999 and rel <= 3e-2, (cos, rel)


def _spy(monkeypatch, module, name) -> list:
    calls, original = [], getattr(module, name)

    def recording(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


@pytest.mark.parametrize("backend,name,fast", [("sage", "sage_attention", "exact"),
                                               ("sla", "sla_attention", "sla_attention")])
def test_dispatcher_runs_torch_off_cuda_and_triton_when_asked(monkeypatch, backend, name, fast):
    triton_calls = _spy(monkeypatch, sage_triton if backend == "sage" else sla_triton, name)
    torch_calls, reference_calls = _spy(monkeypatch, attention_torch, fast), _spy(monkeypatch, ref, name)
    q, k, v = qkv(generator("auto", backend), 64, 64, 64)
    attention.attention(q.cpu(), k.cpu(), v.cpu(), backend, topk=1.0)
    assert (len(triton_calls), len(torch_calls), len(reference_calls)) == (0, 1, 0)
    attention.attention(q, k, v, backend, topk=1.0, implementation="triton")
    assert len(triton_calls) == 1


@pytest.mark.parametrize("backend,name", [("sage", "sage_attention"), ("sagesla", "sla_attention")])
def test_auto_on_cuda_measures_triton_against_torch_once(monkeypatch, backend, name):
    monkeypatch.setattr(attention, "uses_triton", lambda q, implementation="auto": True)  # as on CUDA
    monkeypatch.setattr(attention, "FASTEST", attention.Fastest())
    triton_calls = _spy(monkeypatch, sage_triton if backend == "sage" else sla_triton, name)
    q, k, v = qkv(generator("measure", backend), 200, 200, 64)
    first = attention.attention(q, k, v, backend, topk=0.5)
    assert len(triton_calls) >= 2  # measured on the real input
    (chosen,) = attention.FASTEST._chosen.values()
    assert chosen in ("triton", "torch")
    triton_calls.clear()
    again = attention.attention(q, k, v, backend, topk=0.5)
    assert len(triton_calls) == (chosen == "triton") and torch.equal(first, again)


def test_dispatcher_imports_and_falls_back_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    for name in ("sage_triton", "sla_triton", "attention"):
        monkeypatch.delitem(sys.modules, f"turbovideo.kernels.{name}", raising=False)
    monkeypatch.setattr(kernels_package, "attention", attention)  # restored after the fresh import
    fresh = importlib.import_module("turbovideo.kernels.attention")
    assert fresh is not attention and not fresh.triton_available()
    q, k, v = qkv(generator("no-triton"), 70, 70, 64)
    assert cos_and_rel(fresh.attention(q.cpu(), k.cpu(), v.cpu(), "sage"), exact64(q, k, v).cpu())[0] >= 0.999
    with pytest.raises(RuntimeError, match="triton is not installed"):
        fresh.attention(q, k, v, "sla", implementation="triton")
