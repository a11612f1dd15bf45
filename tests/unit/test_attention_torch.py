"""The fast torch attention paths (kernels/attention_torch.py) against float64 and the reference.

Tolerances: float32 within 1e-5 (relative L2) of float64 block-sparse / exact attention; bfloat16 within
1e-2 (bf16 inputs and output: rounding alone is ~4e-3); SLA with proj_l within 1e-5 of the reference's
float SLA, which has its own float64 checks (test_attention_reference.py).
"""
import pytest
import torch
from turbovideo.kernels import attention, attention_torch
from turbovideo.kernels import attention_reference as ref
from unit.test_attention_cases import block_map64, block_sparse64, cos_and_rel, exact64, generator, qkv

LENGTHS = [(300, 300), (77, 203), (256, 128), (1000, 1000)]  # odd, cross-shaped, whole blocks, many blocks


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("topk", [0.2, 0.5])
def test_sparse_branch_matches_float64_block_sparse_attention(lengths, topk):
    q, k, v = qkv(generator("sparse", lengths, topk), *lengths, 64)
    mask = block_map64(q, k, topk)
    lut = ref.sla_block_lut(q, k, topk)
    assert torch.equal(ref.lut_to_mask(lut, mask.shape[-1]), mask)
    out = attention_torch.sparse_attention(q, k, v, lut)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert cos_and_rel(out, block_sparse64(q, k, v, mask))[1] <= 1e-5


def test_sparse_branch_in_chunks_equals_one_pass(monkeypatch):
    q, k, v = qkv(generator("chunks"), 1000, 1000, 64)
    lut = ref.sla_block_lut(q, k, 0.3)
    whole = attention_torch.sparse_attention(q, k, v, lut)
    monkeypatch.setattr(attention_torch, "_CHUNK_KEYS", 1)  # one query block per chunk
    assert cos_and_rel(attention_torch.sparse_attention(q, k, v, lut), whole)[1] <= 1e-6


def test_bfloat16_stays_in_bfloat16_and_close():
    q, k, v = qkv(generator("bf16"), 300, 300, 128, dtype=torch.bfloat16)
    lut = ref.sla_block_lut(q, k, 0.5)
    out = attention_torch.sparse_attention(q, k, v, lut)
    mask = ref.lut_to_mask(lut, 5)
    assert out.dtype == torch.bfloat16 and cos_and_rel(out, block_sparse64(q, k, v, mask))[1] <= 1e-2


@pytest.mark.parametrize("linear_keys", ["rest", "all"])
def test_sla_with_proj_l_matches_the_reference(linear_keys):
    gen = generator("sla", linear_keys)
    q, k, v = qkv(gen, 400, 400, 64)
    proj_l = (torch.randn(64, 64, generator=gen).to(q.device) * 0.3, torch.randn(64, generator=gen).to(q.device))
    out = attention_torch.sla_attention(q, k, v, 0.3, proj_l, linear_keys=linear_keys)
    expected = ref.sla_attention(q, k, v, 0.3, proj_l, linear_keys=linear_keys)
    assert cos_and_rel(out, expected)[1] <= 1e-5
    assert cos_and_rel(out, attention_torch.sla_attention(q, k, v, 0.3))[1] > 1e-2  # proj_l mattered


def test_inputs_are_not_modified():
    q, k, v = qkv(generator("untouched"), 300, 300, 64)
    before = [t.clone() for t in (q, k, v)]
    attention_torch.sla_attention(q, k, v, 0.3, (torch.eye(64, device=q.device), None))
    attention_torch.exact(q, k, v)
    assert all(torch.equal(a, b) for a, b in zip((q, k, v), before))


def test_sage_on_the_torch_path_is_exact_attention():
    q, k, v = qkv(generator("sage-exact"), 300, 300, 128)
    out = attention.attention(q, k, v, "sage", implementation="torch")
    assert cos_and_rel(out, exact64(q, k, v))[1] <= 1e-5
    reference = attention.attention(q, k, v, "sage", implementation="reference")
    assert 1e-3 < cos_and_rel(reference, exact64(q, k, v))[1] <= 3e-2  # the INT8 arithmetic, not exact
