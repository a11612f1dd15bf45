"""Norms: Triton kernels, torch's own norms and the reference against float64, plus the dispatcher.

Without CUDA the Triton kernels run in the interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1). Tolerances: float32 output within 1e-5 of float64, scaled by the output's
magnitude when that exceeds 1; float16/bfloat16 output within one unit in the last place of the
float64 value (rounding alone costs half of one) plus 1e-5.
"""
import importlib
import sys
import zlib

import pytest
import torch
import torch.nn.functional as F
import turbovideo.kernels as kernels_package
from turbovideo.kernels import norms, norms_reference, norms_torch

try:
    from turbovideo.kernels import norms_triton
except ImportError:
    norms_triton = None

needs_triton = pytest.mark.skipif(norms_triton is None, reason="triton is not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-6
FP32_TOL = 1e-5
SHAPES = [(37,), (70, 37), (3, 130), (2, 3, 1000), (4, 64), (2, 5, 128), (3, 768)]
# (kind, has_weight, has_bias); RMSNorm takes no bias.
VARIANTS = [
    ("rms", False, False),
    ("rms", True, False),
    ("layer", False, False),
    ("layer", True, False),
    ("layer", True, True),
]


def _generator(*key) -> torch.Generator:
    """A generator seeded from the test's parameters: different data per case, same every run."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _rows(shape, gen, dtype=torch.float32) -> torch.Tensor:
    """Random rows whose mean and scale differ row to row, so mixed-up rows show."""
    offset = torch.empty(*shape[:-1], 1).uniform_(-4.0, 4.0, generator=gen)
    scale = torch.empty(*shape[:-1], 1).uniform_(0.5, 3.0, generator=gen)
    return (offset + scale * torch.randn(shape, generator=gen)).to(DEVICE, dtype)


def _params(n, has_weight, has_bias, gen, dtype=torch.float32):
    weight = (1.0 + 0.5 * torch.randn(n, generator=gen)).to(DEVICE, dtype) if has_weight else None
    bias = (0.3 + 0.5 * torch.randn(n, generator=gen)).to(DEVICE, dtype) if has_bias else None
    return weight, bias


def _float64_norm(kind, x, weight, bias, eps=EPS) -> torch.Tensor:
    x = x.double()
    if kind == "layer":
        x = x - x.mean(dim=-1, keepdim=True)
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    y = y if weight is None else y * weight.double()
    return y if bias is None else y + bias.double()


def _call(module, kind, x, weight, bias, eps=EPS, **kwargs):
    if kind == "rms":
        return module.rms_norm(x, weight, eps, **kwargs)
    return module.layer_norm(x, weight, bias, eps, **kwargs)


def _scaled_error(y, expected) -> float:
    return ((y.double() - expected).abs().max() / expected.abs().max().clamp_min(1.0)).item()


def _implementations():
    return [
        pytest.param(norms_reference, id="reference"),
        pytest.param(norms_torch, id="torch"),
        pytest.param(norms_triton, id="triton", marks=needs_triton),
    ]


@pytest.mark.parametrize("module", _implementations())
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_matches_float64(module, variant, shape):
    kind, has_weight, has_bias = variant
    gen = _generator(kind, has_weight, has_bias, shape)
    x = _rows(shape, gen)
    weight, bias = _params(shape[-1], has_weight, has_bias, gen)
    y = _call(module, kind, x, weight, bias)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert _scaled_error(y, _float64_norm(kind, x, weight, bias)) <= FP32_TOL


@pytest.mark.parametrize("module", _implementations())
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
@pytest.mark.parametrize("view", ["strided", "transposed"])
def test_non_contiguous_input(module, variant, view):
    kind, has_weight, has_bias = variant
    gen = _generator("view", view, kind, has_weight, has_bias)
    base = _rows((6, 2 * 130), gen) if view == "strided" else _rows((37, 4, 3), gen)
    x = base[:, ::2] if view == "strided" else base.transpose(0, 2)
    assert not x.is_contiguous()
    weight, bias = _params(x.shape[-1], has_weight, has_bias, gen)
    y = _call(module, kind, x, weight, bias)
    assert y.shape == x.shape
    assert _scaled_error(y, _float64_norm(kind, x, weight, bias)) <= FP32_TOL


@pytest.mark.parametrize("module", _implementations())
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_eps_is_honoured(module, kind):
    # With unit-scale rows an eps of 1e-6 moves the output by ~1e-7, below FP32_TOL; rows of
    # scale ~0.1 and a large eps make a dropped or misplaced eps show.
    gen = _generator("eps", kind)
    x = 0.1 * _rows((70, 37), gen)
    y = _call(module, kind, x, None, None, eps=0.05)
    assert _scaled_error(y, _float64_norm(kind, x, None, None, eps=0.05)) <= FP32_TOL


@pytest.mark.parametrize("module", _implementations())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["rms", "layer"])
@pytest.mark.parametrize("shape", [(70, 37), (2, 1000)], ids=str)
def test_half_precision_within_one_ulp(module, dtype, kind, shape):
    gen = _generator("half", str(dtype), kind, shape)
    x = _rows(shape, gen, dtype)
    weight, bias = _params(shape[-1], True, kind == "layer", gen, dtype)
    y = _call(module, kind, x, weight, bias)
    assert y.dtype == dtype and y.shape == x.shape
    expected = _float64_norm(kind, x, weight, bias)
    bound = torch.finfo(dtype).eps * expected.abs() + FP32_TOL
    assert torch.all((y.double() - expected).abs() <= bound)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_reference_matches_torch_functional(variant):
    kind, has_weight, has_bias = variant
    gen = _generator("functional", kind, has_weight, has_bias)
    x = _rows((3, 5, 130), gen)
    weight, bias = _params(130, has_weight, has_bias, gen)
    y = _call(norms_reference, kind, x, weight, bias)
    if kind == "rms":
        expected = F.rms_norm(x, (130,), weight, EPS)
    else:
        expected = F.layer_norm(x, (130,), weight, bias, EPS)
    assert _scaled_error(y, expected.double()) <= FP32_TOL


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_input_is_not_modified(backend, kind):
    gen = _generator("untouched", backend, kind)
    base = _rows((4, 2 * 64), gen)
    snapshot = base.clone()
    weight, bias = _params(64, True, kind == "layer", gen)
    weight_snapshot = weight.clone()
    _call(norms, kind, base[:, ::2], weight, bias, backend=backend)
    _call(norms, kind, base, None, None, backend=backend)
    assert torch.equal(base, snapshot) and torch.equal(weight, weight_snapshot)


def _spy(monkeypatch, module, name) -> list:
    calls = []
    original = getattr(module, name)

    def recording(*args, **kwargs):
        calls.append(module.__name__)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_auto_runs_torchs_own_norm_off_cuda(monkeypatch, kind):
    name = f"{kind}_norm"
    torch_calls, reference_calls = _spy(monkeypatch, norms_torch, name), _spy(monkeypatch, norms_reference, name)
    x = _rows((3, 64), _generator("auto", kind)).cpu()
    _call(norms, kind, x, None, None)
    assert (len(torch_calls), len(reference_calls)) == (1, 0)  # the reference is an oracle, never run


@needs_triton
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_auto_measures_triton_against_torch_once_per_key(monkeypatch, kind):
    name = f"{kind}_norm"
    monkeypatch.setattr(norms, "triton_candidate", lambda x: True)  # as on CUDA, on CPU tensors
    monkeypatch.setattr(norms, "FASTEST", norms.Fastest())
    calls = {"torch": _spy(monkeypatch, norms_torch, name), "triton": _spy(monkeypatch, norms_triton, name)}
    gen = _generator("measure", kind)
    x = _rows((4, 3, 130), gen).cpu()
    weight, bias = _params(130, True, kind == "layer", gen)
    first = _call(norms, kind, x, weight.cpu(), None if bias is None else bias.cpu())
    assert all(len(c) >= 2 for c in calls.values())  # both measured on the real input
    (key, chosen), = norms.FASTEST._chosen.items()
    for c in calls.values():
        c.clear()
    again = _call(norms, kind, x, weight.cpu(), None if bias is None else bias.cpu())
    assert len(calls[chosen]) == 1 and sum(map(len, calls.values())) == 1
    assert torch.equal(first, again) and _scaled_error(first, _float64_norm(kind, x, weight, bias)) <= FP32_TOL


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_explicit_backend_is_used(monkeypatch, backend, kind):
    name = f"{kind}_norm"
    calls = {"torch": _spy(monkeypatch, norms_torch, name), "reference": _spy(monkeypatch, norms_reference, name)}
    if norms_triton is not None:
        calls["triton"] = _spy(monkeypatch, norms_triton, name)
    gen = _generator("explicit", backend, kind)
    x = _rows((2, 3, 130), gen)
    weight, bias = _params(130, True, kind == "layer", gen)
    y = _call(norms, kind, x, weight, bias, backend=backend)
    assert len(calls[backend]) == 1 and sum(map(len, calls.values())) == 1
    assert _scaled_error(y, _float64_norm(kind, x, weight, bias)) <= FP32_TOL


class _FakeCudaTensor:
    is_cuda = True

    def __init__(self, n):
        self.shape = (2, n)

    def dim(self):
        return len(self.shape)


@needs_triton
def test_triton_is_a_candidate_on_cuda_unless_row_too_long():
    assert norms.triton_candidate(_FakeCudaTensor(768))
    assert not norms.triton_candidate(_FakeCudaTensor(norms_triton.MAX_N + 1))


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        norms.rms_norm(torch.ones(2, 8), backend="cuda")


def test_dispatcher_imports_and_falls_back_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "turbovideo.kernels.norms_triton", raising=False)
    monkeypatch.delitem(sys.modules, "turbovideo.kernels.norms")
    monkeypatch.setattr(kernels_package, "norms", norms)  # restored after the fresh import below
    fresh = importlib.import_module("turbovideo.kernels.norms")
    assert fresh is not norms and not fresh.triton_available()
    x = _rows((3, 37), _generator("no-triton")).cpu()
    expected = _float64_norm("rms", x, None, None)
    assert _scaled_error(fresh.rms_norm(x), expected) <= FP32_TOL
    with pytest.raises(RuntimeError, match="triton is not installed"):
        fresh.layer_norm(x, backend="triton")


@needs_triton
def test_triton_rejects_mismatched_weight():
    x = _rows((2, 37), _generator("bad-weight"))
    with pytest.raises(ValueError, match=r"weight must have shape \(37,\)"):
        norms_triton.rms_norm(x, torch.ones(36, device=DEVICE))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_empty_input_gives_empty_output(backend):
    x = torch.empty(0, 64, device=DEVICE)
    assert norms.layer_norm(x, backend=backend).shape == (0, 64)
