"""SageSLA as TurboDiffusion runs it (TurboT2AV, TurboWan): block sizes per GPU generation (64 / 128 on sm90,
128 / 64 elsewhere), the effective-topk floor, sparse-only with a zero proj_l."""
import types

import pytest
import torch
from turbovideo.kernels import attention, attention_torch
from turbovideo.kernels import attention_reference as ref
from unit.test_attention_cases import block_sparse64, exact64, generator, qkv

try:
    from turbovideo.kernels import sla_triton
except ImportError:
    sla_triton = None

INT8_TOL = 1e-3
NEEDS_TRITON = pytest.mark.skipif(sla_triton is None, reason="triton is not installed")


def fake_cuda_tensor():
    return types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))


@pytest.mark.parametrize("capability, blocks", [((9, 0), (64, 128)), ((8, 0), (128, 64)), ((8, 9), (128, 64)),
                                                ((10, 0), (128, 64)), ((12, 0), (128, 64))], ids=str)
def test_sagesla_blocks_follow_the_gpu_generation(monkeypatch, capability, blocks):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert attention.sla_blocks(fake_cuda_tensor(), "sagesla") == blocks
    assert attention.sla_blocks(fake_cuda_tensor(), "sla") == (128, 64)  # TurboT2AV's --sla_block_q/k
    assert attention.sla_blocks(torch.zeros(1), "sagesla") == (128, 64)


@pytest.mark.parametrize("implementation,module", [("reference", ref), ("torch", attention_torch)])
def test_the_dispatcher_runs_the_chosen_blocks(monkeypatch, implementation, module):
    seen = []
    original = module.sla_attention

    def recording(*args, **kwargs):
        seen.append((kwargs["block_q"], kwargs["block_k"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "sla_attention", recording)
    q, k, v = qkv(generator("blocks-dispatch", implementation), 150, 150, 64)
    attention.attention(q, k, v, "sagesla", topk=0.3, implementation=implementation)
    monkeypatch.setattr(attention, "sla_blocks", lambda q, backend: (64, 128))
    attention.attention(q, k, v, "sagesla", topk=0.3, implementation=implementation)
    attention.attention(q, k, v, "sagesla", topk=0.3, implementation=implementation, blocks=(32, 32))
    assert seen == [(128, 64), (64, 128), (32, 32)]


def test_effective_topk_floor_keeps_at_least_one_key_block():
    """TurboT2AV: effective topk = max(topk, 1 / key_blocks), then int(topk * key_blocks) blocks are kept."""
    for key_blocks in range(1, 4097):
        turbot2av = min(key_blocks, int(max(0.3, 1.0 / key_blocks) * key_blocks))
        assert ref.topk_blocks(0.3, key_blocks) == turbot2av, key_blocks
    assert ref.topk_blocks(0.3, 224) == 67  # 1024x1792x121 video on sm90: 28,672 tokens / 128 (notes 3.6)


def test_audio_shorter_than_one_key_block_is_dense():
    """126 audio tokens (121 frames) are one 128-token key block on sm90: the floor keeps it, so exact."""
    q, k, v = qkv(generator("audio-one-block"), 126, 126, 64)
    out = attention.attention(q, k, v, "sla", topk=0.3, implementation="torch", blocks=(64, 128))
    assert (out.double() - exact64(q, k, v)).abs().max() <= 1e-5


@NEEDS_TRITON
@pytest.mark.parametrize("quantized", [False, True])
def test_hopper_blocks_in_triton_equal_the_reference(quantized):
    q, k, v = qkv(generator("hopper-blocks", quantized), 200, 300, 64)
    lut = ref.sla_block_lut(q, k, 0.3, 64, 128)
    assert lut.shape == (1, 2, 4, 1)  # 4 query blocks of 64, int(0.3 * 3) -> at least 1 key block of 128
    out = sla_triton.block_attention(q, k, v, lut=lut, quantized=quantized, block_q=64, block_k=128)
    if quantized:
        expected = ref.block_attention(q, k, v, lut=lut, quantized=True, block_q=64, block_k=128)
        assert (out - expected).abs().max() <= INT8_TOL
    else:
        mask = ref.lut_to_mask(lut, 3)
        assert (out.double() - block_sparse64(q, k, v, mask, 64, 128)).abs().max() <= 1e-5


@NEEDS_TRITON
def test_sagesla_sparse_only_with_hopper_blocks_matches_the_reference():
    q, k, v = qkv(generator("sagesla-hopper"), 257, 257, 128)
    out = attention.attention(q, k, v, "sagesla", topk=0.3, implementation="triton", blocks=(64, 128))
    expected = ref.sla_attention(q, k, v, 0.3, None, quantized=True, block_q=64, block_k=128)
    assert (out - expected).abs().max() <= INT8_TOL
    other = ref.sla_attention(q, k, v, 0.3, None, quantized=True)  # 128 / 64 blocks select differently
    assert (other - expected).abs().max() > 10 * INT8_TOL
