"""INT8 checkpoint formats: TurboVideo's own and the reader for TurboDiffusion's `-quant` layout."""
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
    assert int8_format.compute_dtype(None) is None and not int8_format.is_turbovideo_int8({})
