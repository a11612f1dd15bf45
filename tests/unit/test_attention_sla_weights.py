"""SLA proj_l weight files: TurboDiffusion key names, prefixes, header checks, fitting a model."""
import pytest
import torch
from safetensors.torch import save_file
from turbovideo.models import sla_weights
from unit.test_attention_cases import generator


def _weights(blocks, d, gen, bias=True):
    return {b: (torch.randn(d, d, generator=gen), torch.randn(d, generator=gen) if bias else None) for b in blocks}


def test_round_trip_keeps_blocks_and_values(tmp_path):
    weights = _weights([0, 3], 128, generator("round-trip"))
    weights[5] = (torch.randn(128, 128), None)
    sla_weights.save_proj_l(tmp_path / "p.safetensors", weights)
    assert sla_weights.read_proj_l_header(tmp_path / "p.safetensors") == (128, [0, 3, 5])
    loaded = sla_weights.load_proj_l(tmp_path / "p.safetensors")
    assert sorted(loaded) == [0, 3, 5] and loaded[5][1] is None
    for block, (weight, bias) in weights.items():
        assert torch.equal(loaded[block][0], weight)
        assert bias is None or torch.equal(loaded[block][1], bias)


@pytest.mark.parametrize("prefix", ["", "net.", "model.diffusion_model."])
def test_turbodiffusion_keys_with_prefixes_and_other_keys(tmp_path, prefix):
    gen = generator("prefix", prefix)
    tensors = {f"{prefix}blocks.2.self_attn.attn_op.local_attn.proj_l.weight": torch.randn(64, 64, generator=gen),
               f"{prefix}blocks.2.self_attn.attn_op.local_attn.proj_l.bias": torch.randn(64, generator=gen).half(),
               f"{prefix}blocks.2.self_attn.q.weight": torch.randn(64, 64, generator=gen)}
    save_file(tensors, str(tmp_path / "full.safetensors"))
    loaded = sla_weights.load_proj_l(tmp_path / "full.safetensors")
    assert list(loaded) == [2] and loaded[2][1].dtype == torch.float32
    assert torch.equal(loaded[2][0], tensors[f"{prefix}blocks.2.self_attn.attn_op.local_attn.proj_l.weight"])


@pytest.mark.parametrize("tensors,message", [
    ({"lora.weight": torch.ones(4, 4)}, "is not an SLA proj_l file"),
    ({"blocks.0.self_attn.attn_op.local_attn.proj_l.weight": torch.ones(64, 32)}, "must be square"),
    ({"blocks.0.self_attn.attn_op.local_attn.proj_l.weight": torch.ones(64, 64),
      "blocks.0.self_attn.attn_op.local_attn.proj_l.bias": torch.ones(32)}, r"must have shape \(64,\)"),
    ({"blocks.1.self_attn.attn_op.local_attn.proj_l.bias": torch.ones(64)}, "bias but no weight"),
    ({"blocks.0.self_attn.attn_op.local_attn.proj_l.weight": torch.ones(64, 64),
      "blocks.1.self_attn.attn_op.local_attn.proj_l.weight": torch.ones(128, 128)}, "different head dims"),
])
def test_bad_files_are_named_with_the_problem(tmp_path, tensors, message):
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=message):
        sla_weights.read_proj_l_header(tmp_path / "bad.safetensors", "bad.safetensors")


def test_check_fits_names_head_dim_and_blocks():
    sla_weights.check_fits(128, [0, 1], 128, 2, "p.safetensors")
    with pytest.raises(ValueError, match="head dim 64, but this model's attention head dim is 128"):
        sla_weights.check_fits(64, [0], 128, 2, "p.safetensors")
    with pytest.raises(ValueError, match=r"blocks \[2\] but this model has 2 blocks"):
        sla_weights.check_fits(128, [0, 2], 128, 2, "p.safetensors")
