"""INT8 checkpoint formats: TurboVideo's own and the reader for TurboDiffusion's `-quant` layout."""
import json
import zlib

import pytest
import torch
from turbovideo.kernels import int8_reference as ref
from turbovideo.models import int8_format


def _gen(*key):
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _turbodiffusion_quantize(w: torch.Tensor):
    """TurboDiffusion's convention: scale = amax / 128 per 128x128 block, values saturate at 127."""
    _, scale127 = ref.quantize_blocks(w)
    scale = scale127 * 127 / 128
    q = torch.round(w.double() / ref.expand_block_scale(scale.double(), *w.shape)).clamp(-128, 127)
    return q.clamp_(max=127).to(torch.int8), scale


def _turbodiffusion_state_dict(gen):
    state = {"head.head.weight": torch.randn(64, 128, generator=gen), "blocks.0.modulation": torch.randn(1, 6, 128)}
    for name, shape in (("self_attn.q", (128, 128)), ("ffn.0", (300, 128)), ("ffn.2", (128, 300))):
        w = torch.randn(shape, generator=gen) / shape[1] ** 0.5
        q, scale = _turbodiffusion_quantize(w)
        state[f"blocks.0.{name}.int8_weight"] = q
        state[f"blocks.0.{name}.scale"] = scale
        state[f"blocks.0.{name}.bias"] = torch.randn(shape[0], generator=gen).bfloat16()
        state[f"_float.{name}"] = w
    return state


def test_reads_turbodiffusion_quant_layout():
    state = _turbodiffusion_state_dict(_gen("td"))
    floats = {k: state.pop(k) for k in [k for k in state if k.startswith("_float.")]}
    assert int8_format.is_turbodiffusion_quant(state)
    out = int8_format.from_turbodiffusion_quant(state)
    assert int8_format.validate(out) == ["blocks.0.ffn.0", "blocks.0.ffn.2", "blocks.0.self_attn.q"]
    assert not any(k.endswith((".int8_weight", ".scale")) for k in out)
    for name in ("self_attn.q", "ffn.0", "ffn.2"):
        prefix = f"blocks.0.{name}"
        assert out[prefix + ".weight"] is state[prefix + ".int8_weight"]
        assert out[prefix + ".bias"].dtype == torch.bfloat16
        weight = ref.dequantize(out[prefix + ".weight"], out[prefix + ".weight_scale"], torch.float64)
        w = floats[f"_float.{name}"].double()
        step = w.abs().max() / 128  # saturation at 127 costs at most one step at each block's max
        assert (weight - w).abs().max() <= step
    assert torch.equal(out["head.head.weight"], state["head.head.weight"])


def test_turbodiffusion_missing_scale_is_named():
    state = {"blocks.0.ffn.0.int8_weight": torch.zeros(4, 4, dtype=torch.int8)}
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.0\.scale"):
        int8_format.from_turbodiffusion_quant(state)


def test_turbodiffusion_bad_scale_shape_is_named():
    state = {"b.int8_weight": torch.zeros(300, 130, dtype=torch.int8), "b.scale": torch.ones(2, 2)}
    with pytest.raises(ValueError, match=r"b: scale of shape \(2, 2\).*\[3, 2\]"):
        int8_format.from_turbodiffusion_quant(state)


def test_validate_own_format_and_metadata():
    q, scale = ref.quantize_rows(torch.randn(6, 10, generator=_gen("own")))
    state = {"a.weight": q, "a.weight_scale": scale, "a.bias": torch.zeros(6), "c.weight": torch.ones(2)}
    assert int8_format.validate(state) == ["a"]
    state["a.weight"] = q.float()
    with pytest.raises(ValueError, match="a.weight must be a 2-D int8"):
        int8_format.validate(state)
    meta = int8_format.metadata(torch.bfloat16, "per_channel")
    assert int8_format.is_turbovideo_int8(meta) and int8_format.compute_dtype(meta) == torch.bfloat16
    assert meta["turbovideo_version"] == "2"
    assert int8_format.compute_dtype(None) is None and not int8_format.is_turbovideo_int8({})


def _entries(prefix, shape, granularity, gen):
    q, scale = ref.quantize(torch.randn(shape, generator=gen), granularity)
    return int8_format.file_entries(prefix, q, scale)


def test_file_entries_are_core_native_per_channel_and_tagged_blocks():
    gen = _gen("entries")
    rows = _entries("blocks.0.ffn.0", (300, 200), "per_channel", gen)
    assert rows["blocks.0.ffn.0.weight"].dtype == torch.int8 and rows["blocks.0.ffn.0.weight_scale"].shape == (300, 1)
    tag = rows["blocks.0.ffn.0.comfy_quant"]
    assert tag.dtype == torch.uint8 and json.loads(bytes(tag.tolist())) == {"format": "int8_tensorwise"}
    blocks = _entries("b", (300, 200), "block128", gen)
    assert blocks["b.weight_scale"].shape == (3, 2)
    assert json.loads(bytes(blocks["b.comfy_quant"].tolist()))["format"] == int8_format.BLOCK128_FORMAT
    assert "TurboLoadQuantized" in int8_format.BLOCK128_FORMAT  # what core's KeyError will show
    assert int8_format.layer_kinds({**rows, **blocks}) == {"b": "block128", "blocks.0.ffn.0": "per_channel"}


def test_reads_native_files_of_other_tools_and_version_1():
    gen = _gen("other tools")
    w = torch.randn(70, 40, generator=gen)
    scale = w.abs().max() / 127
    native = {"l.weight": torch.round(w / scale).to(torch.int8), "l.weight_scale": scale.float(),
              "l.comfy_quant": int8_format.comfy_quant("int8_tensorwise"), "l.bias": torch.zeros(70)}
    assert int8_format.layer_kinds(native) == {"l": "per_tensor"}
    internal = int8_format.internal_state(native)
    assert "l.comfy_quant" not in internal and internal["l.weight_scale"].shape == (70, 1)
    assert torch.equal(ref.dequantize(internal["l.weight"], internal["l.weight_scale"]),
                       native["l.weight"].float() * scale)
    q, rows = ref.quantize_rows(w)
    version1 = {"l.weight": q, "l.weight_scale": rows}
    assert int8_format.layer_kinds(version1) == {"l": "per_channel"}
    native = int8_format.native_state(version1)
    assert json.loads(bytes(native["l.comfy_quant"].tolist())) == {"format": "int8_tensorwise"}
    with pytest.raises(ValueError, match="128x128-block"):
        int8_format.native_state(_entries("b", (300, 200), "block128", gen))


@pytest.mark.parametrize("config,message", [
    ({"format": "int8_tensorwise", "convrot": True}, "ConvRot"),
    ({"format": "int8_tensorwise", "params": {"convrot": True}}, "ConvRot"),
    ({"format": "float8_e4m3fn"}, "'float8_e4m3fn' is not INT8; load this file with UNETLoader"),
])
def test_formats_the_pack_cannot_run_are_named(config, message):
    q, scale = ref.quantize_rows(torch.randn(8, 8, generator=_gen(repr(config))))
    tag = torch.tensor(list(json.dumps(config).encode()), dtype=torch.uint8)
    with pytest.raises(ValueError, match=message):
        int8_format.layer_kinds({"x.weight": q, "x.weight_scale": scale, "x.comfy_quant": tag})


def test_wrong_shapes_and_tags_are_named():
    gen = _gen("bad")
    rows = _entries("a", (300, 200), "per_channel", gen)
    rows["a.comfy_quant"] = int8_format.comfy_quant(int8_format.BLOCK128_FORMAT)
    with pytest.raises(ValueError, match="tagged as 128x128 blocks"):
        int8_format.layer_kinds(rows)
    blocks = _entries("a", (300, 200), "block128", gen)
    blocks["a.comfy_quant"] = int8_format.comfy_quant("int8_tensorwise")
    with pytest.raises(ValueError, match=r"int8_tensorwise scale of shape \(3, 2\)"):
        int8_format.layer_kinds(blocks)
    with pytest.raises(ValueError, match="not a JSON"):
        int8_format.layer_kinds({**rows, "a.comfy_quant": torch.tensor([255, 0], dtype=torch.uint8)})
    with pytest.raises(ValueError, match="weight_scale is missing"):
        tag = int8_format.comfy_quant("int8_tensorwise")
        int8_format.layer_kinds({"a.weight": rows["a.weight"], "a.comfy_quant": tag})


def test_float_dtype_counts_values():
    state = {"a": torch.zeros(10, dtype=torch.bfloat16), "b": torch.zeros(3), "q": torch.zeros(100, dtype=torch.int8)}
    assert int8_format.float_dtype(state) == torch.bfloat16 and int8_format.float_dtype({}) is None
