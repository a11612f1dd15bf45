"""W8A8 INT8 kernels: the float64 reference against its definition, the Triton kernels (under
TRITON_INTERPRET=1 without CUDA) against the reference, and the whole layer against fp32 F.linear.

Inputs are "realistic": nn.Linear-like weights (uniform in +-1/sqrt(K)) and normal activations.
Tolerances: the reference GEMM equals a float64 dequantized matmul to 1e-12; Triton's float32
epilogue to 1e-5 of the output's scale; Triton's quantizer equals the reference except for a
rounding tie flipped by float32 vs float64 division (at most one level, on < 0.1% of elements).
The layer: relative L2 error <= 1e-2 for per-token/per-channel (the issue's bar), <= 1.2e-2 for
128x128 blocks (coarser activation scales), and on CPUs without VNNI the oneDNN path <= 1.5e-2
(its weights keep +-64 levels so that int16 pair sums cannot saturate; docs/int8.md).
"""
import zlib

import pytest
import torch
import torch.nn.functional as F
from turbovideo.kernels import int8
from turbovideo.kernels import int8_reference as ref

try:
    from turbovideo.kernels import int8_triton
except ImportError:
    int8_triton = None

needs_triton = pytest.mark.skipif(int8_triton is None, reason="triton is not installed")
needs_onednn = pytest.mark.skipif(not int8.onednn_available(), reason="torch has no oneDNN INT8 ops here")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (M, K, N): K or N below, above and not a multiple of the 128 block; the tiny DiTs' widths 64/128.
SHAPES = [(5, 64, 64), (130, 200, 70), (3, 300, 129), (33, 128, 256)]
MIXED = [("per_channel", "per_channel"), ("block128", "block128"), ("per_channel", "block128"),
         ("block128", "per_channel")]


def _gen(*key) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _layer_inputs(m, k, n, gen):
    x = torch.randn(m, k, generator=gen)
    bound = 1 / k ** 0.5
    w = (torch.rand(n, k, generator=gen) * 2 - 1) * bound
    b = (torch.rand(n, generator=gen) * 2 - 1) * bound
    return x, w, b


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("granularity", ref.GRANULARITIES)
@pytest.mark.parametrize("shape", [(1, 5), (70, 37), (130, 257), (256, 128)], ids=str)
def test_reference_quantize_matches_definition(granularity, shape):
    gen = _gen("quant", granularity, shape)
    x = torch.randn(shape, generator=gen) * torch.rand(shape[0], 1, generator=gen) * 4
    q, scale = ref.quantize(x, granularity)
    full = ref.expand_block_scale(scale, *shape) if granularity == "block128" else scale.expand(shape)
    groups = full.unique()
    assert len(groups) == (shape[0] if granularity == "per_channel" else scale.numel())
    for value in groups:  # each group's largest magnitude is exactly +-127 (scale = amax / 127)
        assert q[full == value].abs().max() == ref.LEVELS
    assert (q.double() * full.double() - x.double()).abs().le(full.double() / 2 + 1e-12).all()


def test_reference_quantize_zero_rows_and_saturation():
    x = torch.randn(4, 10, generator=_gen("zero"))
    x[1] = 0
    q, scale = ref.quantize_rows(x)
    assert q[1].eq(0).all() and scale[1].item() > 0
    q64, s64 = ref.quantize_rows(x, levels=64)
    assert q64.abs().max() == 64 and torch.allclose(s64 * 64, scale * 127)


@pytest.mark.parametrize("granularities", MIXED, ids="-".join)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_gemm_is_the_dequantized_product(granularities, shape):
    m, k, n = shape
    x, w, b = _layer_inputs(m, k, n, _gen("gemm", granularities, shape))
    (qx, sx), (qw, sw) = ref.quantize(x, granularities[0]), ref.quantize(w, granularities[1])
    expected = ref.dequantize(qx, sx, torch.float64) @ ref.dequantize(qw, sw, torch.float64).T + b.double()
    out = ref.int8_gemm(qx, sx, qw, sw, b, torch.float64)
    assert _rel(out, expected) <= 1e-12


@needs_triton
@pytest.mark.parametrize("granularity", ref.GRANULARITIES)
@pytest.mark.parametrize("shape", [(70, 37), (130, 257), (3, 300)], ids=str)
def test_triton_quantize_matches_reference(granularity, shape):
    x = (torch.randn(shape, generator=_gen("tq", granularity, shape)) * 3).to(DEVICE)
    fn = int8_triton.quantize_rows if granularity == "per_channel" else int8_triton.quantize_blocks
    q, scale = fn(x)
    q_ref, scale_ref = ref.quantize(x.cpu(), granularity)
    assert torch.allclose(scale.cpu(), scale_ref, rtol=1e-6, atol=0)
    diff = (q.cpu().int() - q_ref.int()).abs()
    assert diff.max() <= 1 and diff.count_nonzero() <= 1e-3 * diff.numel()


@needs_triton
@pytest.mark.parametrize("granularities", MIXED, ids="-".join)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_triton_gemm_matches_reference(granularities, shape):
    m, k, n = shape
    x, w, b = _layer_inputs(m, k, n, _gen("tg", granularities, shape))
    (qx, sx), (qw, sw) = ref.quantize(x, granularities[0]), ref.quantize(w, granularities[1])
    expected = ref.int8_gemm(qx, sx, qw, sw, b, torch.float64)
    on = [t.to(DEVICE) for t in (qx, sx, qw, sw, b)]
    out = int8_triton.int8_gemm(*on, out_dtype=torch.float32).cpu()
    assert (out.double() - expected).abs().max() <= 1e-5 * expected.abs().max().clamp_min(1)


def _backends():
    return [pytest.param("torch"), pytest.param("triton", marks=needs_triton),
            pytest.param("onednn", marks=needs_onednn)]


def _layer_tolerance(backend, granularity):
    if backend == "onednn" and int8.cpu_weight_levels() != ref.LEVELS:
        return 1.5e-2
    return 1e-2 if granularity == "per_channel" or backend == "onednn" else 1.2e-2


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("granularity", ref.GRANULARITIES)
@pytest.mark.parametrize("shape", [(64, 64, 64), (96, 1536, 200), (40, 300, 129)], ids=str)
def test_layer_close_to_fp32_linear(backend, granularity, shape):
    m, k, n = shape
    if backend == "triton" and DEVICE == "cpu" and k > 300:
        pytest.skip("large K is slow in the Triton interpreter; covered by the smaller shapes")
    x, w, b = _layer_inputs(m, k, n, _gen("layer", backend, granularity, shape))
    qw, sw = ref.quantize(w, granularity)
    device = DEVICE if backend != "onednn" else "cpu"
    y = int8.linear(x.to(device).reshape(2, m // 2, k), qw.to(device), sw.to(device), b.to(device), backend)
    assert y.shape == (2, m // 2, n) and y.dtype == torch.float32
    assert _rel(y.reshape(m, n).cpu(), F.linear(x.double(), w.double(), b.double())) <= \
        _layer_tolerance(backend, granularity)


@needs_onednn
def test_onednn_full_range_weights_saturate_without_vnni():
    """Why CPU_SAFE_LEVELS exists: +-127 weights overflow the int16 pair sums on plain AVX2."""
    if int8.cpu_has_vnni():
        pytest.skip("this CPU has VNNI: full-range weights are exact here")
    x, w, b = _layer_inputs(64, 512, 256, _gen("saturate"))
    qw, sw = ref.quantize_rows(w)
    expected = F.linear(x.double(), w.double(), b.double())
    full = int8.linear(x, qw, sw, b, "onednn", int8.pack_cpu_weight(qw, sw, levels=ref.LEVELS))
    safe = int8.linear(x, qw, sw, b, "onednn", int8.pack_cpu_weight(qw, sw))
    assert _rel(full, expected) > 3e-2 and _rel(safe, expected) <= 1.5e-2


def test_layer_handles_empty_and_unknown_backend():
    qw, sw = ref.quantize_rows(torch.randn(8, 16, generator=_gen("empty")))
    assert int8.linear(torch.empty(0, 16), qw, sw, backend="torch").shape == (0, 8)
    with pytest.raises(ValueError, match="backend must be one of"):
        int8.linear(torch.randn(2, 16), qw, sw, backend="cuda")


def test_auto_backend_choice(monkeypatch):
    cpu = torch.randn(2, 4)
    assert int8.resolve_backend(cpu) == ("onednn" if int8.onednn_available() else "torch")
    monkeypatch.setattr(int8, "onednn_available", lambda: False)
    assert int8.resolve_backend(cpu) == "torch"
    with pytest.raises(RuntimeError, match="oneDNN"):
        int8.resolve_backend(cpu, "onednn")
    monkeypatch.setattr(int8, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        int8.resolve_backend(cpu, "triton")


def test_mismatched_scale_shape_is_named():
    q = torch.zeros(300, 200, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"\[300, 1\].*\[3, 2\]"):
        ref.dequantize(q, torch.ones(3, 1))
