"""Fusion blocks: identity at initialisation, token resizing against float64, a faithful file format."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models.random_weights import randomised
from turbovideo.models import fusion_blocks as fb


def _randomised(adapter, seed):
    return randomised(adapter, seed, scale=0.3)


def _linear_matrix(src, dst):
    """(dst, src) float64 weights of 1-D linear interpolation with half-pixel centres, edges clamped."""
    matrix = torch.zeros(dst, src, dtype=torch.float64)
    for i in range(dst):
        x = max((i + 0.5) * src / dst - 0.5, 0.0)
        lo = min(int(math.floor(x)), src - 1)
        hi = min(lo + 1, src - 1)
        matrix[i, lo] += 1.0 - (x - lo)
        matrix[i, hi] += x - lo
    return matrix


def _nearest_matrix(src, dst):
    matrix = torch.zeros(dst, src, dtype=torch.float64)
    for i in range(dst):
        matrix[i, min(int(math.floor((i + 0.5) * src / dst)), src - 1)] = 1.0
    return matrix


def _reference_resize(tokens, src, dst, make_matrix):
    volume = tokens.double().reshape(tokens.shape[0], *src, tokens.shape[-1])
    mt, mh, mw = (make_matrix(s, d) for s, d in zip(src, dst))
    out = torch.einsum("at,bh,cw,nthwd->nabcd", mt, mh, mw, volume)
    return out.reshape(tokens.shape[0], -1, tokens.shape[-1])


@pytest.mark.parametrize("src,dst", [((3, 4, 5), (3, 8, 10)), ((2, 3, 3), (4, 7, 5)), ((3, 6, 4), (2, 3, 4))])
@pytest.mark.parametrize("mode,make_matrix", [("trilinear", _linear_matrix), ("nearest", _nearest_matrix)])
def test_resize_tokens_matches_float64_reference(src, dst, mode, make_matrix):
    tokens = torch.randn(2, math.prod(src), 6)
    got = fb.resize_tokens(tokens, src, dst, mode)
    assert got.shape == (2, math.prod(dst), 6)
    torch.testing.assert_close(got.double(), _reference_resize(tokens, src, dst, make_matrix), rtol=1e-5, atol=1e-5)


def test_resize_refuses_tokens_that_do_not_fill_the_grid():
    with pytest.raises(ValueError, match=r"do not fill a \(2, 3, 3\)"):
        fb.resize_tokens(torch.randn(1, 17, 4), (2, 3, 3), (2, 6, 6))


def test_untrained_adapter_adds_exactly_zero():
    adapter = fb.FusionAdapter(lr_width=16, hr_width=24, hr_blocks=[0, 3], num_blocks=4, mlp_ratio=2.0)
    lr = torch.randn(2, 2 * 3 * 4, 16)
    for block in (0, 3):
        out = adapter(block, lr, (2, 3, 4), (2, 6, 8))
        assert out.shape == (2, 2 * 6 * 8, 24)
        assert torch.equal(out, torch.zeros_like(out))
    assert adapter.blocks["0"].proj_in.weight.abs().sum() > 0, "only proj_out starts at zero"


@pytest.mark.parametrize("mlp_ratio", [0.0, 1.5])
def test_trained_block_matches_float64_reference(mlp_ratio):
    adapter = _randomised(fb.FusionAdapter(8, 12, [1], num_blocks=2, mlp_ratio=mlp_ratio), seed=4)
    block = adapter.blocks["1"]
    lr = torch.randn(1, 2 * 2 * 3, 8)
    p = {k: v.double() for k, v in block.state_dict().items()}
    x = lr.double()
    h = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    h = (h * p["norm.weight"] + p["norm.bias"]) @ p["proj_in.weight"].T + p["proj_in.bias"]
    if mlp_ratio:
        gelu = torch.nn.functional.gelu(h @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"])
        gate = torch.sigmoid(h @ p["mlp.gate.weight"].T + p["mlp.gate.bias"])
        h = h + (gelu * gate) @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]
    h = h @ p["proj_out.weight"].T + p["proj_out.bias"]
    expected = _reference_resize(h, (2, 2, 3), (2, 4, 6), _linear_matrix)
    got = adapter(1, lr, (2, 2, 3), (2, 4, 6))
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
    assert got.abs().max() > 1e-2


def test_save_load_round_trip(tmp_path):
    adapter = _randomised(fb.FusionAdapter(8, 16, [0, 7, 14, 21], [0, 7, 14, 21], 28, 1.0, "nearest"), seed=9)
    path = tmp_path / "fusion.safetensors"
    fb.save_fusion_adapter(path, adapter)
    loaded = fb.load_fusion_adapter(path)
    assert (loaded.hr_blocks, loaded.lr_blocks, loaded.num_blocks) == ([0, 7, 14, 21], [0, 7, 14, 21], 28)
    assert (loaded.lr_width, loaded.hr_width, loaded.mlp_ratio, loaded.resize) == (8, 16, 1.0, "nearest")
    for key, value in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert set(load_file(str(path))) == {"fusion." + k for k in adapter.state_dict()}
    header = fb.read_fusion_header(path)
    assert header.hr_blocks == [0, 7, 14, 21] and header.hr_width == 16


def _rewrite(path, tensors=None, **metadata_changes):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    metadata.update(metadata_changes)
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata=metadata)


def test_load_errors_say_what_is_wrong(tmp_path):
    path = tmp_path / "a.safetensors"
    fb.save_fusion_adapter(path, fb.FusionAdapter(8, 16, [0, 1], num_blocks=2))
    _rewrite(path, hr_width="32")
    with pytest.raises(ValueError, match=r"fusion.blocks.0.proj_in.weight has shape \(16, 8\) but"):
        fb.load_fusion_adapter(path)
    _rewrite(path, hr_width="16", hr_blocks=json.dumps([0, 1, 2]))
    with pytest.raises(ValueError, match=r"lr_blocks \[0, 1\] and hr_blocks \[0, 1, 2\] must pair up"):
        fb.load_fusion_adapter(path)
    _rewrite(path, lr_blocks=json.dumps([0, 1, 2]), num_blocks="2")
    with pytest.raises(ValueError, match=r"more than 2 blocks, this one has 2"):
        fb.load_fusion_adapter(path)
    _rewrite(path, turbovideo_adapter="step_size_embedder")
    with pytest.raises(ValueError, match="is not a fusion adapter"):
        fb.read_fusion_header(path)
    save_file({"x": torch.randn(2)}, str(path))
    with pytest.raises(ValueError, match="no turbovideo_adapter metadata"):
        fb.load_fusion_adapter(path)


def test_missing_keys_are_named(tmp_path):
    path = tmp_path / "a.safetensors"
    fb.save_fusion_adapter(path, fb.FusionAdapter(8, 16, [0, 1], num_blocks=2))
    tensors = load_file(str(path))
    del tensors["fusion.blocks.1.proj_out.bias"]
    _rewrite(path, tensors=tensors)
    with pytest.raises(ValueError, match=r"missing \['fusion.blocks.1.proj_out.bias'\]"):
        fb.load_fusion_adapter(path)


def test_adapter_checks_model_block_count():
    adapter = fb.FusionAdapter(8, 8, [0, 7, 14, 21], num_blocks=28)
    adapter.check_blocks(28, 28, "model")
    with pytest.raises(ValueError, match=r"model: the fusion adapter's hr_blocks \[0, 7, 14, 21\] need a model "
                                         r"with more than 21 blocks, this one has 2"):
        adapter.check_blocks(2, 28, "model")
    with pytest.raises(ValueError, match="distinct block indices"):
        fb.FusionAdapter(8, 8, [0, 0])


@pytest.mark.parametrize("mode", ["trilinear", "nearest"])
def test_lrhr_window_resize_is_the_crop_of_the_full_grid_resize(mode):
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    for src, dst in (((2, 3, 5), (4, 6, 10)), ((3, 4, 4), (5, 9, 7)), ((2, 2, 2), (2, 2, 2))):
        tokens = torch.randn(2, src[0] * src[1] * src[2], 3, generator=generator, dtype=torch.float64)
        full = fb.resize_tokens(tokens, src, dst, mode).reshape(2, *dst, 3)
        for _ in range(4):
            window = [tuple(sorted(torch.randint(0, d + 1, (2,), generator=generator).tolist())) for d in dst]
            window = [(a, b) if b > a else (a - 1, a) if a else (0, 1) for a, b in window]
            expected = full[:, slice(*window[0]), slice(*window[1]), slice(*window[2])].reshape(2, -1, 3)
            got = fb.resize_tokens_window(tokens, src, dst, window, mode)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
