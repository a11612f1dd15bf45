"""The step-size embedder: identity at initialisation, a faithful file format, errors that say why."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models.random_weights import randomised
from turbovideo.models import step_embedder as se

SIZES = [1.0 / 2**k for k in range(8)]


def _randomised(width, seed):
    """An embedder whose last layer is non-zero, as after training."""
    return randomised(se.StepSizeEmbedder(width), seed)


def _reference_embedding(embedder, dt_base):
    """The documented formula, in float64 from the module's weights."""
    half = se.EMBEDDING_CHANNELS // 2
    freqs = [10000.0 ** (-i / half) for i in range(half)]
    angles = torch.tensor([se.DT_BASE_SCALE * dt_base * f for f in freqs], dtype=torch.float64)
    features = torch.cat([torch.cos(angles), torch.sin(angles)])
    w1, b1 = embedder.linear_1.weight.double(), embedder.linear_1.bias.double()
    w2, b2 = embedder.linear_2.weight.double(), embedder.linear_2.bias.double()
    hidden = torch.nn.functional.silu(w1 @ features + b1)
    return w2 @ hidden + b2


def test_untrained_embedder_adds_exactly_zero():
    torch.manual_seed(11)
    embedder = se.StepSizeEmbedder(48)
    assert embedder.linear_1.weight.abs().sum() > 0, "first layer keeps its random init"
    dt_base = torch.rand(5) * 7
    out = embedder(dt_base)
    assert out.shape == (5, 48)
    assert torch.equal(out, torch.zeros_like(out))


def test_embedding_matches_float64_reference():
    embedder = _randomised(24, seed=3)
    for dt_base in torch.rand(4, generator=torch.Generator().manual_seed(5)).mul(7).tolist():
        got = embedder(torch.tensor([dt_base]))[0].double()
        torch.testing.assert_close(got, _reference_embedding(embedder, dt_base), rtol=1e-4, atol=1e-4)


def test_trained_step_sizes_get_distinct_embeddings():
    embedder = _randomised(32, seed=7)
    dt_bases = torch.tensor([math.log2(1 / d) for d in SIZES])
    out = embedder(dt_bases)
    gaps = torch.cdist(out, out) + torch.eye(len(SIZES)) * 1e9
    assert gaps.min() > 1e-2 * out.norm(dim=1).mean(), "two trained step sizes embed (almost) alike"


def test_scaled_features_separate_dt_base_0_to_7():
    """The stretch by DT_BASE_SCALE is what makes neighbouring dt_base values distinguishable."""
    features = se.sinusoidal_embedding(torch.arange(8.0) * se.DT_BASE_SCALE)
    unit = features / features.norm(dim=1, keepdim=True)
    cosine = unit @ unit.T - 2 * torch.eye(8)
    assert cosine.max() < 0.5, f"features of dt_base 0..7 are nearly collinear: max cosine {cosine.max():.3f}"


def test_round_trip_keeps_weights_sizes_and_outputs(tmp_path):
    embedder = _randomised(40, seed=13)
    sizes = [1.0, 0.5, 0.3, 0.125]
    path = tmp_path / "adapter.safetensors"
    se.save_step_embedder(path, embedder, sizes)
    loaded, loaded_sizes = se.load_step_embedder(path)
    assert loaded_sizes == sizes and loaded.width == 40
    for key, value in embedder.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    dt_base = torch.rand(3, generator=torch.Generator().manual_seed(2)) * 7
    assert torch.equal(loaded(dt_base), embedder(dt_base))
    assert se.read_step_embedder_header(path) == (40, sizes)


def test_file_layout_is_the_documented_one(tmp_path):
    path = tmp_path / "adapter.safetensors"
    se.save_step_embedder(path, _randomised(16, seed=1), SIZES)
    tensors = load_file(str(path))
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "step_embedder.linear_1.weight": (16, 256), "step_embedder.linear_1.bias": (16,),
        "step_embedder.linear_2.weight": (16, 16), "step_embedder.linear_2.bias": (16,)}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["turbovideo_adapter"] == "step_size_embedder"
    assert metadata["format_version"] == "1" and metadata["width"] == "16"
    assert json.loads(metadata["trained_step_sizes"]) == SIZES


def _write(path, tensors, metadata):
    save_file(tensors, str(path), metadata=metadata)
    return path


def _valid_parts(width=8):
    tensors = {k: torch.randn(shape) for k, shape in se.expected_shapes(width).items()}
    metadata = {"turbovideo_adapter": "step_size_embedder", "format_version": "1", "width": str(width),
                "trained_step_sizes": json.dumps(SIZES)}
    return tensors, metadata


@pytest.mark.parametrize("metadata", [None, {"turbovideo_adapter": "fusion_block"}, {"other": "x"}])
def test_not_a_step_size_adapter(tmp_path, metadata):
    tensors, _ = _valid_parts()
    path = _write(tmp_path / "lora.safetensors", tensors, metadata)
    with pytest.raises(ValueError, match="adapter: 'lora.safetensors' is not a step-size adapter"):
        se.load_step_embedder(path)
    with pytest.raises(ValueError, match="is not a step-size adapter"):
        se.read_step_embedder_header(path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ValueError, match="adapter: 'junk.safetensors' is not a model file.*needs a step-size adapter"):
        se.load_step_embedder(path)


def test_missing_keys_are_named(tmp_path):
    tensors, metadata = _valid_parts()
    del tensors["step_embedder.linear_2.bias"]
    path = _write(tmp_path / "cut.safetensors", tensors, metadata)
    with pytest.raises(ValueError, match=r"missing keys \['step_embedder.linear_2.bias'\]"):
        se.load_step_embedder(path)


def test_shape_mismatch_is_named(tmp_path):
    tensors, metadata = _valid_parts(width=8)
    tensors["step_embedder.linear_2.weight"] = torch.randn(8, 6)
    path = _write(tmp_path / "bent.safetensors", tensors, metadata)
    with pytest.raises(ValueError, match=r"linear_2.weight has shape \(8, 6\) but width 8 needs \(8, 8\)"):
        se.load_step_embedder(path)


@pytest.mark.parametrize("field, value, words", [
    ("format_version", "2", "format_version '2' is not supported"),
    ("width", "wide", "metadata is incomplete or malformed"),
    ("trained_step_sizes", "[0.5, 2.0]", "step sizes in \\(0, 1\\]"),
    ("trained_step_sizes", "{}", "must be a JSON list"),
])
def test_bad_metadata_is_named(tmp_path, field, value, words):
    tensors, metadata = _valid_parts()
    metadata[field] = value
    path = _write(tmp_path / "meta.safetensors", tensors, metadata)
    with pytest.raises(ValueError, match=words):
        se.load_step_embedder(path)


def test_save_refuses_bad_step_sizes(tmp_path):
    with pytest.raises(ValueError, match="trained_step_sizes"):
        se.save_step_embedder(tmp_path / "x.safetensors", se.StepSizeEmbedder(4), [])
