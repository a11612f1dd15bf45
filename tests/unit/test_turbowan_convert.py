"""TurboWan checkpoints -> native Wan layout: patch embedding, SLA proj_l, -quant keys, clear errors."""
import dataclasses

import einops
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tiny_models import turbowan as tiny
from turbovideo.models import turbowan


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_patch_linear_equals_native_conv3d(variant):
    in_dim = tiny.VARIANTS[variant]
    conv_weight = torch.randn(128, in_dim, 1, 2, 2, dtype=torch.float64)
    linear_weight = tiny.to_turbowan({"patch_embedding.weight": conv_weight})["patch_embedding.weight"]
    x = torch.randn(1, in_dim, 3, 6, 4, dtype=torch.float64)
    # TurboDiffusion's patchify: b c (t kt)(h kh)(w kw) -> b (t h w)(c kt kh kw), then the Linear
    patches = einops.rearrange(x, "b c (t kt) (h kh) (w kw) -> b (t h w) (c kt kh kw)", kt=1, kh=2, kw=2)
    expected = patches @ linear_weight.T
    converted = turbowan.patch_linear_to_conv3d(linear_weight, in_dim)
    got = F.conv3d(x, converted, stride=(1, 2, 2)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_convert_gives_native_layout_and_splits_proj_l(variant):
    native = tiny.native_state_dict(variant, blocks=3)
    proj_l = tiny.proj_l_state_dict(blocks=3)
    checkpoint = turbowan.convert(tiny.to_turbowan(native, proj_l))
    assert set(checkpoint.native) == set(native)
    for key, value in native.items():
        assert torch.equal(checkpoint.native[key], value), key
    assert sorted(checkpoint.proj_l) == [0, 1, 2]
    assert torch.equal(checkpoint.proj_l[2][0],
                       proj_l["blocks.2.self_attn.attn_op.local_attn.proj_l.weight"])
    assert (checkpoint.dim, checkpoint.layers, checkpoint.in_dim) == (128, 3, tiny.VARIANTS[variant])
    assert not checkpoint.quantized


def test_quant_layout_is_recognised_and_keeps_int8_keys():
    sd = tiny.quantize_blocks(tiny.to_turbowan(tiny.native_state_dict(), tiny.proj_l_state_dict()))
    checkpoint = turbowan.convert(sd)
    assert checkpoint.quantized
    assert checkpoint.native["blocks.1.ffn.0.int8_weight"].dtype == torch.int8
    assert checkpoint.native["blocks.1.ffn.0.scale"].shape == (1, 1)
    assert "blocks.1.ffn.0.weight" not in checkpoint.native
    assert checkpoint.native["text_embedding.0.weight"].dtype == torch.float32  # outside blocks: plain


def test_known_release_names():
    fake = turbowan.TurboWanCheckpoint({}, {}, False, 1536, 30, 16)
    assert fake.release == "TurboWan2.1-T2V-1.3B"
    assert "I2V-A14B" in turbowan.TurboWanCheckpoint({}, {}, True, 5120, 40, 36).release
    assert "dim 128" in turbowan.TurboWanCheckpoint({}, {}, False, 128, 2, 16).release


@pytest.mark.parametrize("prefix", ["net.", "model.diffusion_model.", "module."])
def test_prefixes_are_stripped(prefix):
    sd = tiny.to_turbowan(tiny.native_state_dict())
    checkpoint = turbowan.convert({prefix + k: v for k, v in sd.items()})
    assert "head.modulation" in checkpoint.native


def test_native_wan_checkpoint_is_refused_with_the_core_loader_named():
    with pytest.raises(turbowan.TurboWanError, match="native Wan checkpoint.*UNETLoader"):
        turbowan.convert(tiny.native_state_dict())


def test_not_a_wan_model_is_refused():
    with pytest.raises(turbowan.TurboWanError, match="not a Wan/TurboWan.*head.modulation"):
        turbowan.convert({"transformer_blocks.0.attn1.to_q.weight": torch.randn(4, 4)})


def test_missing_block_keys_are_named():
    sd = tiny.to_turbowan(tiny.native_state_dict())
    del sd["blocks.1.cross_attn.k.weight"], sd["blocks.0.ffn.2.bias"]
    with pytest.raises(turbowan.TurboWanError, match="blocks.0.ffn.2.bias.*blocks.1.cross_attn.k.weight"):
        turbowan.convert(sd)


def test_read_pth_and_safetensors(tmp_path):
    sd = tiny.to_turbowan(tiny.native_state_dict(), tiny.proj_l_state_dict())
    tiny.write_pth(sd, tmp_path / "a.pth")
    torch.save({"state_dict": sd}, str(tmp_path / "wrapped.pth"))
    save_file(sd, str(tmp_path / "a.safetensors"))
    for name in ("a.pth", "wrapped.pth", "a.safetensors"):
        loaded = turbowan.read_state_dict(tmp_path / name)
        assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd), name


@dataclasses.dataclass
class TrainingState:  # what a training script might pickle beside the weights
    step: int


def test_pickle_with_objects_is_refused(tmp_path):
    torch.save({"weights": torch.randn(2), "state": TrainingState(3)}, str(tmp_path / "evil.pth"))
    with pytest.raises(turbowan.TurboWanError, match="needs Python code to load, so it was refused and nothing in it"):
        turbowan.read_state_dict(tmp_path / "evil.pth")


def test_pickle_of_non_tensors_is_refused(tmp_path):
    torch.save([torch.randn(2)], str(tmp_path / "list.pth"))
    with pytest.raises(turbowan.TurboWanError, match="not a state dict of tensors"):
        turbowan.read_state_dict(tmp_path / "list.pth")


def test_wrong_file_kind_is_refused(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(turbowan.TurboWanError, match=r"'model.gguf' is a '\.gguf' file.*needs a TurboWan checkpoint"):
        turbowan.read_state_dict(tmp_path / "model.gguf")


def test_converter_tool_writes_the_same_tensors(tmp_path):
    import importlib.util
    import pathlib

    tool_path = pathlib.Path(__file__).resolve().parents[2] / "tools" / "convert_turbowan.py"
    spec = importlib.util.spec_from_file_location("convert_turbowan", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    sd = tiny.quantize_blocks(tiny.to_turbowan(tiny.native_state_dict("i2v"), tiny.proj_l_state_dict()))
    tiny.write_pth(sd, tmp_path / "TurboWan-tiny-quant.pth")
    assert tool.main([str(tmp_path / "TurboWan-tiny-quant.pth")]) == 0
    loaded = turbowan.read_state_dict(tmp_path / "TurboWan-tiny-quant.safetensors")
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert loaded["blocks.0.self_attn.q.int8_weight"].dtype == torch.int8
    tiny.write_pth(tiny.native_state_dict(), tmp_path / "native.pth")
    assert tool.main([str(tmp_path / "native.pth")]) == 2  # refused, with the loader's message
    assert not (tmp_path / "native.safetensors").exists()
