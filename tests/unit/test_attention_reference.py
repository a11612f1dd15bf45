"""Torch references of the attention backends against float64, and the dispatcher.

Tolerances: Sage vs exact attention cosine >= 0.999 and relative L2 <= 3e-2 (the INT8 Q/K budget);
float paths (SLA's sparse branch, linear branch, SLA at topk 1.0) within 1e-5 of float64, and
SLA at topk 1.0 with a zero proj_l within 1e-3 of exact attention (the acceptance bound).
"""
import pytest
import torch
from turbovideo.kernels import attention
from turbovideo.kernels import attention_reference as ref
from unit.test_attention_cases import (
    block_map64,
    block_sparse64,
    cos_and_rel,
    exact64,
    generator,
    linear_rest64,
    qkv,
)

FP32_TOL = 1e-5
LENGTHS = [(300, 300), (77, 203), (128, 64)]  # odd, cross-shaped, exact multiples of the blocks


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_sage_reference_close_to_exact(d, lengths):
    q, k, v = qkv(generator("sage", d, lengths), *lengths, d)
    k_before = k.clone()
    out = ref.sage_attention(q, k, v)
    assert out.dtype == q.dtype and out.shape == q.shape
    cos, rel = cos_and_rel(out, exact64(q, k, v))
    assert cos >= 0.999 and rel <= 3e-2, (cos, rel)
    assert torch.equal(k, k_before), "smooth-K must not modify the caller's K"


def test_sage_without_smoothing_would_fail_the_bound():
    """The per-channel K offset is large enough that smooth-K matters: the test data can fail."""
    q, k, v = qkv(generator("unsmoothed"), 300, 300, 64, k_offset=12.0)
    mean = ref.key_mean(k)
    smoothed = ref.sage_attention(q, k, v)
    original = ref.key_mean
    try:
        ref.key_mean = lambda x: torch.zeros_like(mean)
        unsmoothed = ref.sage_attention(q, k, v)
    finally:
        ref.key_mean = original
    expected = exact64(q, k, v)
    assert cos_and_rel(smoothed, expected)[1] <= 3e-2 < cos_and_rel(unsmoothed, expected)[1]


def test_quantize_per_block_round_trip():
    x = qkv(generator("quant"), 200, 200, 64)[1]
    mean = ref.key_mean(x)
    values, scales = ref.quantize_per_block(x, 64, mean=mean, prescale=0.5)
    assert values.dtype == torch.int8 and scales.shape == (1, 2, 4)
    assert values.abs().max() == 127
    restored = values.float() * ref._per_token(scales, 64, 200)[..., None]
    error = (restored - (x - mean) * 0.5).abs()
    assert torch.all(error <= ref._per_token(scales, 64, 200)[..., None] * 0.5 + 1e-6), "off by more than half a step"


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("quantized", [False, True])
def test_sla_topk_one_with_zero_proj_l_is_exact(d, quantized):
    q, k, v = qkv(generator("sla-dense", d, quantized), 301, 301, d)
    zero = (torch.zeros(d, d), torch.zeros(d))
    out = ref.sla_attention(q, k, v, topk=1.0, proj_l=zero, quantized=quantized)
    expected = exact64(q, k, v)
    if quantized:  # SageSLA at topk 1 is Sage
        cos, rel = cos_and_rel(out, expected)
        assert cos >= 0.999 and rel <= 3e-2
    else:
        assert (out.double() - expected).abs().max() <= 1e-3


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("topk", [0.2, 0.5])
def test_block_map_matches_pooled_scores(lengths, topk):
    q, k, _ = qkv(generator("map", lengths, topk), *lengths, 64)
    lut = ref.sla_block_lut(q, k, topk)
    mask = ref.lut_to_mask(lut, -(-lengths[1] // 64))
    assert torch.equal(mask, block_map64(q, k, topk))
    assert torch.all(lut[..., 1:] > lut[..., :-1]), "LUT rows must be ascending and distinct"


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_sparse_branch_matches_block_sparse_attention(lengths):
    q, k, v = qkv(generator("sparse", lengths), *lengths, 64)
    lut = ref.sla_block_lut(q, k, 0.5)
    out = ref.block_attention(q, k, v, lut=lut)
    expected = block_sparse64(q, k, v, ref.lut_to_mask(lut, -(-lengths[1] // 64)))
    assert (out.double() - expected).abs().max() <= FP32_TOL


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_linear_branch_covers_only_unselected_blocks(lengths):
    q, k, v = qkv(generator("linear", lengths), *lengths, 64)
    lut = ref.sla_block_lut(q, k, 0.3)
    out = ref.linear_branch(q, k, v, lut)
    expected = linear_rest64(q, k, v, ref.lut_to_mask(lut, -(-lengths[1] // 64)))
    assert (out.double() - expected).abs().max() <= FP32_TOL * expected.abs().max()


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_linear_branch_over_all_keys_is_turbodiffusions_convention(lengths):
    q, k, v = qkv(generator("linear-all", lengths), *lengths, 64)
    lut = ref.sla_block_lut(q, k, 0.3)
    out = ref.linear_branch(q, k, v, lut, keys="all")
    everything = torch.zeros(lut.shape[:-1] + (-(-lengths[1] // 64),), dtype=torch.bool)
    expected = linear_rest64(q, k, v, everything)  # "rest" of an empty selection = every key
    assert (out.double() - expected).abs().max() <= FP32_TOL * expected.abs().max()
    with pytest.raises(ValueError, match="keys must be one of"):
        ref.linear_branch(q, k, v, lut, keys="some")


def test_linear_branch_is_zero_when_every_block_is_selected():
    q, k, v = qkv(generator("linear-empty"), 200, 200, 64)
    lut = ref.sla_block_lut(q, k, 1.0)
    assert torch.equal(ref.linear_branch(q, k, v, lut), torch.zeros(1, 2, 200, 64))


def test_sla_adds_proj_l_of_the_linear_branch():
    gen = generator("proj_l")
    q, k, v = qkv(gen, 260, 260, 64)
    weight, bias = torch.randn(64, 64, generator=gen) * 0.3, torch.randn(64, generator=gen)
    out = ref.sla_attention(q, k, v, topk=0.3, proj_l=(weight, bias))
    mask = block_map64(q, k, 0.3)
    linear = linear_rest64(q, k, v, mask)
    expected = block_sparse64(q, k, v, mask) + linear @ weight.double().T + bias.double()
    assert (out.double() - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_flop_fraction_tracks_topk():
    for length in (8192, 32768):
        for topk in (0.1, 0.15):
            fraction = ref.sla_flops(length, length, 128, topk) / ref.dense_flops(length, length, 128)
            kept = ref.topk_blocks(topk, length // 64) / (length // 64)
            assert kept <= fraction <= kept + 0.05, (length, topk, fraction)


@pytest.mark.parametrize("implementation", ["torch", "reference"])
def test_dispatcher_runs_every_backend_on_the_torch_paths(implementation):
    q, k, v = qkv(generator("dispatch", implementation), 150, 150, 128)
    expected = exact64(q, k, v)
    for backend in attention.BACKENDS:
        out = attention.attention(q, k, v, backend, topk=1.0, implementation=implementation)
        assert out.shape == q.shape and cos_and_rel(out, expected)[0] >= 0.999, backend


def test_dispatcher_reports_what_cannot_run():
    q, k, v = qkv(generator("reasons"), 20, 20, 32)
    assert attention.unsupported_reason(q, k, v, "sdpa") is None
    assert "head dim 32" in attention.unsupported_reason(q, k, v, "sage")
    q64 = qkv(generator("reasons-64"), 20, 20, 64)
    assert "dtype" in attention.unsupported_reason(*(t.double() for t in q64), "sla")
    with pytest.raises(ValueError, match="cannot run: head dim 32"):
        attention.attention(q, k, v, "sla")
    with pytest.raises(ValueError, match="backend must be one of"):
        attention.unsupported_reason(q, k, v, "flash")
    q, k, v = qkv(generator("topk"), 20, 20, 64)
    with pytest.raises(ValueError, match="topk must be in"):
        attention.attention(q, k, v, "sla", topk=0.0)
