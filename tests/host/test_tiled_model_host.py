"""TurboTiledModel in the real ComfyUI: KSampler and SamplerCustomAdvanced drive the tiled tiny Wan and
LTX-Video DiTs; one tile is the untiled model exactly; tiles do not change with the tile batch; the
run stops between tiles when interrupted.

The tiny DiTs attend globally, so tiled and untiled only agree loosely (the exact no-seam property is
tested with a local denoiser in tests/unit/test_tiling.py).
"""
import importlib

import pytest
import torch

from host import graphs
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

WAN_LATENT = {"class_type": "EmptyHunyuanLatentVideo",  # 8 x 8 latent cells, 2 latent frames
              "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}}
LTX_LATENT = {"class_type": "EmptyLTXVLatentVideo",  # 8 x 8 latent cells, 5 latent frames
              "inputs": {"width": 256, "height": 256, "length": 33, "batch_size": 1}}


def tiled(model, tile, overlap=4, segment=0, segment_overlap=2, weights="cosine", tile_batch=1,
          budget_mb=0):
    return {"class_type": "TurboTiledModel", "inputs": {
        "model": model, "tile_size": tile, "memory_budget_mb": budget_mb, "tile_overlap": overlap,
        "segment_length": segment, "segment_overlap": segment_overlap, "weights": weights, "tile_batch": tile_batch}}


def wan_prompt(tiny_models, tiling=None, sampler="ksampler"):
    prompt = graphs.wan_nodes(tiny_models["wan_dit"], tiny_models["wan_vae"])
    prompt["latent"] = WAN_LATENT
    model = ["unet", 0]
    if tiling is not None:
        prompt["tiled"] = tiled(model, **tiling)
        model = ["tiled", 0]
    if sampler == "ksampler":
        prompt["sample"] = graphs.ksampler(model, ["latent", 0], steps=3, cfg=2.0)
    else:
        prompt["sigmas"] = {"class_type": "BasicScheduler",
                            "inputs": {"model": model, "scheduler": "simple", "steps": 3, "denoise": 1.0}}
        prompt["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
        prompt.update(graphs.custom_sampler_nodes(model, ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def ltx_prompt(tiny_models, tiling=None, family="ltxv", audio=False):
    """LTX-Video, or LTX-2 video-only / with an audio latent (LTXVConcatAVLatent), on an 8 x 8 x 5 latent."""
    if family == "ltxv":
        prompt = {"unet": {"class_type": "UNETLoader",
                           "inputs": {"unet_name": tiny_models["ltxv_dit"], "weight_dtype": "default"}},
                  "pos": graphs.conditioning_node(0, True), "latent": LTX_LATENT}
    else:  # 'ltx2' (19B layout) or 'ltx23' (LTX-2.3 switches; skipped on core 0.8.0)
        dit = tiny_models["ltx23_dit" if family == "ltx23" else "ltx2_dit"]
        prompt = graphs.ltx2_nodes(dit, frames=33, size=256, audio=audio, config=graphs.ltx2_config(family))
    prompt.update({"sigmas": {"class_type": "LTXVScheduler", "inputs": {
                       "steps": 3, "max_shift": 2.05, "base_shift": 0.95, "stretch": True, "terminal": 0.1,
                       "latent": ["latent", 0]}},
                   "sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}})
    model = ["unet", 0]
    if tiling is not None:
        prompt["tiled"] = tiled(model, **tiling)
        model = ["tiled", 0]
    prompt.update(graphs.custom_sampler_nodes(model, ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def run_latent(comfy, captured, prompt, streams=1):
    """The sampled latent; an audio-video one (`streams` 2) as its (video, audio) tensors."""
    captured.pop("latent", None)
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    if streams > 1:
        assert getattr(latent, "is_nested", False), "an audio-video latent comes back nested"
        parts = latent.unbind()
        assert len(parts) == streams and all(torch.isfinite(p).all() and p.std() > 0 for p in parts)
        return parts
    assert not getattr(latent, "is_nested", False)
    assert torch.isfinite(latent).all() and latent.std() > 0
    return latent


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("sampler", ["ksampler", "custom"])
def test_wan_one_tile_is_untiled_and_tiles_are_close(comfy, tiny_models, captured, sampler):
    plain = run_latent(comfy, captured, wan_prompt(tiny_models, sampler=sampler))
    one = run_latent(comfy, captured, wan_prompt(tiny_models, dict(tile=8), sampler=sampler))
    assert torch.equal(one, plain)
    four = run_latent(comfy, captured, wan_prompt(tiny_models, dict(tile=6, overlap=4), sampler=sampler))
    assert not torch.equal(four, plain), "2 x 2 tiles must change a global model's output"
    assert relative_error(four, plain) < 0.5


def test_wan_tile_batch_does_not_change_the_result(comfy, tiny_models, captured):
    base = dict(tile=6, overlap=4, weights="gaussian")
    one = run_latent(comfy, captured, wan_prompt(tiny_models, dict(base, tile_batch=1)))
    three = run_latent(comfy, captured, wan_prompt(tiny_models, dict(base, tile_batch=3)))
    torch.testing.assert_close(three, one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["ltxv", "ltx2", "ltx23"])
def test_ltx_tiles_and_segments_stay_close(comfy, tiny_models, captured, clean_load, family):
    """LTX-Video, and LTX-2 / LTX-2.3 video-only (a plain latent: empty audio)."""
    plain = run_latent(comfy, captured, ltx_prompt(tiny_models, family=family))
    one = run_latent(comfy, captured, ltx_prompt(tiny_models, dict(tile=8), family=family))
    torch.testing.assert_close(one, plain, rtol=0, atol=1e-5)
    split = run_latent(comfy, captured, ltx_prompt(tiny_models, dict(tile=6, overlap=4, segment=4, segment_overlap=2,
                                                                     tile_batch=2), family=family))
    assert not torch.equal(split, plain)
    assert relative_error(split, plain) < 0.5


def test_ltx2_windows_see_only_their_video_tokens(comfy, tiny_models, captured, monkeypatch):
    """Under tiling every LTX-2 call gets its window's video latent and an empty audio stream."""
    model_class = importlib.import_module("comfy.ldm.lightricks.av_model").LTXAVModel
    original, seen = model_class.forward, []

    def spy(self, x, *args, **kwargs):
        seen.append([tuple(part.shape) for part in x])
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", spy)
    run_latent(comfy, captured, ltx_prompt(tiny_models, dict(tile=6, overlap=4), family="ltx2"))
    assert len(seen) == 3 * 4  # 3 steps x 2 x 2 windows
    assert all(shapes == [(1, 128, 5, 6, 6)] for shapes in seen), seen


@pytest.mark.parametrize("family", ["ltx2", "ltx23"])
def test_ltx2_with_audio_one_window_is_untiled_and_more_are_refused(comfy, tiny_models, captured, family):
    """An audio-video latent: one window runs the model untiled (audio and audio-video cross-attention exact);
    more windows cannot keep the audio exact, and the error says how to run video-only."""
    plain_video, plain_audio = run_latent(comfy, captured, ltx_prompt(tiny_models, family=family, audio=True), 2)
    video, audio = run_latent(comfy, captured, ltx_prompt(tiny_models, dict(tile=8), family=family, audio=True), 2)
    torch.testing.assert_close(video, plain_video, rtol=0, atol=1e-5)
    torch.testing.assert_close(audio, plain_audio, rtol=0, atol=1e-5)
    video_only = run_latent(comfy, captured, ltx_prompt(tiny_models, family=family))
    assert relative_error(video_only, plain_video) > 1e-3, "audio must reach the video through a2v cross-attention"
    result = comfy.run(ltx_prompt(tiny_models, dict(tile=6, overlap=4), family=family, audio=True))
    assert not result.ok
    message = result.describe()
    assert "latent: TurboTiledModel tiles the video stream only" in message
    assert "LTXVSeparateAVLatent" in message and "LTXVConcatAVLatent" in message, message


def test_ltx2_audio_only_latent_is_refused_with_the_fix(comfy, tiny_models, captured):
    from host.test_only_nodes import SOURCES

    prompt = ltx_prompt(tiny_models, dict(tile=6, overlap=4), family="ltx2")
    # a non-empty audio latent (LTXVAudioVAEEncode's); core turns an all-zero latent into an empty video latent
    SOURCES["ltx2_audio_only"] = torch.randn(1, 8, 33, 16, generator=torch.Generator().manual_seed(3))
    prompt["latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "ltx2_audio_only"}}
    prompt["sigmas"] = {"class_type": "BasicScheduler",
                        "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 2, "denoise": 1.0}}
    result = comfy.run(prompt)
    assert not result.ok
    message = result.describe()
    assert "latent: TurboTiledModel tiles video latents" in message and "(1, 8, 1, 33, 16)" in message, message
    assert "LTXVSeparateAVLatent" in message, message


def test_interrupt_stops_between_tiles(comfy, tiny_models, captured, monkeypatch):
    wan = importlib.import_module("comfy.ldm.wan.model")
    management = importlib.import_module("comfy.model_management")
    calls = []
    forward = wan.WanModel.forward

    def counting_forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            management.interrupt_current_processing(True)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(wan.WanModel, "forward", counting_forward)
    try:
        result = comfy.run(wan_prompt(tiny_models, dict(tile=6, overlap=4), sampler="custom"))
    finally:
        management.interrupt_current_processing(False)
    assert not result.ok
    assert any(event == "execution_interrupted" for event, _ in result.messages) or \
        "interrupt" in str(result.execution_error).lower(), result.describe()
    assert len(calls) == 2, "the second tile of the first step was the last model call"


def test_bad_settings_name_the_input(comfy, tiny_models, captured):
    result = comfy.run(wan_prompt(tiny_models, dict(tile=6, overlap=6)))
    assert not result.ok and "tile_overlap" in str(result.node_errors) + str(result.error)


@pytest.mark.parametrize("tiling,expected", [
    (None, [1, 128, 5, 8, 8]),  # untiled: ComfyUI's own estimate, the whole latent
    ({"tile": 4, "overlap": 2}, [1, 128, 5, 4, 4]),
    ({"tile": 4, "overlap": 2, "tile_batch": 3}, [3, 128, 5, 4, 4]),
    ({"tile": 4, "overlap": 2, "segment": 3, "segment_overlap": 2}, [1, 128, 3, 4, 4]),
    ({"tile": 0, "overlap": 2, "budget_mb": 1 << 20}, [1, 128, 5, 8, 8]),  # auto, everything fits: one window
])
def test_the_model_load_is_sized_for_one_window(comfy, tiny_models, captured, monkeypatch, tiling, expected):
    """ComfyUI decides how much of the model to load from estimate_memory(noise_shape); tiled, that is the
    shape one model call holds, so a long or large video does not push the weights into partial loading."""
    helpers = importlib.import_module("comfy.sampler_helpers")
    shapes = []
    original = helpers.estimate_memory

    def spy(model, noise_shape, conds):
        shapes.append(list(noise_shape))
        return original(model, noise_shape, conds)

    monkeypatch.setattr(helpers, "estimate_memory", spy)
    run_latent(comfy, captured, ltx_prompt(tiny_models, tiling))
    assert shapes == [expected]


def guide_prompt(tiny_models, tiling, strength=1.0, mask=None):
    """LTXVAddGuide (an image guide at frame 0, optionally with an attention mask) -> KSampler on the tiny LTX
    checkpoint, optionally tiled."""
    SOURCES["tiled_guide"] = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(4))
    prompt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
              "pos": graphs.conditioning_node(0, True),
              "latent": {"class_type": "EmptyLTXVLatentVideo",
                         "inputs": {"width": 128, "height": 128, "length": 17, "batch_size": 1}},
              "image": {"class_type": "TurboTestImageSource", "inputs": {"key": "tiled_guide"}},
              "guide": {"class_type": "LTXVAddGuide", "inputs": {
                  "positive": ["pos", 0], "negative": ["pos", 0], "vae": ["ckpt", 2], "latent": ["latent", 0],
                  "image": ["image", 0], "frame_idx": 0, "strength": strength}}}
    if mask is not None:
        SOURCES["tiled_guide_mask"] = mask
        prompt["mask"] = {"class_type": "TurboTestMaskSource", "inputs": {"key": "tiled_guide_mask"}}
        prompt["guide"]["inputs"]["attention_mask"] = ["mask", 0]
    model = ["ckpt", 0]
    if tiling is not None:
        prompt["tiled"] = tiled(model, **tiling)
        model = ["tiled", 0]
    prompt["sample"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["guide", 0], "negative": ["guide", 1], "latent_image": ["guide", 2],
        "seed": 1, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


@pytest.fixture
def model_calls(monkeypatch):
    """What every LTX model call receives, after core's keyframe step: its latent grid, the pixel coordinates
    [B, 3, tokens, 2], the guide_attention_entries (core 0.29; None on 0.8.0) and the tiled window (rows, cols)."""
    model_class = importlib.import_module("comfy.ldm.lightricks.model").LTXVModel
    original, seen = model_class._process_input, []

    def spy(self, x, keyframe_idxs, denoise_mask, **kwargs):
        out = original(self, x, keyframe_idxs, denoise_mask, **kwargs)
        windows = kwargs.get("turbovideo_windows")
        seen.append({"grid": tuple(x.shape[2:]), "coords": out[1].clone(),
                     "entries": kwargs.get("guide_attention_entries"),
                     "window": windows[1][0][1:] if windows else None})
        return out

    monkeypatch.setattr(model_class, "_process_input", spy)
    return seen


def test_keyframe_guides_are_cropped_into_each_window(comfy, tiny_models, captured, model_calls):
    """Each window's model call gets the guide tokens of its own cells: coordinates in the window's frame (the
    same (h, w) as the window's first regular frame, the untiled guide's time coordinates) and, in core 0.29's
    format, guide_attention_entries counting the window's guide tokens on the window's grid."""
    run_latent(comfy, captured, guide_prompt(tiny_models, None))
    (untiled,) = model_calls[:1]
    frames, height, width = untiled["grid"]  # latent (T + 1 guide frame, 4, 4)
    guide_time = untiled["coords"][0, 0, -height * width:]
    entries_format = untiled["entries"] is not None
    if entries_format:
        assert [(e["pre_filter_count"], list(e["latent_shape"])) for e in untiled["entries"]] == \
            [(height * width, [1, height, width])]
    model_calls.clear()
    run_latent(comfy, captured, guide_prompt(tiny_models, {"tile": 2, "overlap": 1}))
    assert len(model_calls) == 2 * 9  # 2 steps x 3 x 3 windows of 2 x 2
    assert {call["window"] for call in model_calls} == {((r, r + 2), (c, c + 2)) for r in range(3) for c in range(3)}
    for call in model_calls:
        assert call["grid"] == (frames, 2, 2)
        cells, coords = 2 * 2, call["coords"]
        guide, first = coords[:, :, -cells:], coords[:, :, :cells]
        torch.testing.assert_close(guide[:, 1:], first[:, 1:], rtol=0, atol=0)
        torch.testing.assert_close(guide[0, 0], guide_time[:cells], rtol=0, atol=0)
        assert not torch.equal(coords[:, 0, -2 * cells:-cells], guide[:, 0])  # the last regular frame is left alone
        assert (call["entries"] is not None) == entries_format
        if entries_format:
            assert [(e["pre_filter_count"], list(e["latent_shape"])) for e in call["entries"]] == [(cells, [1, 2, 2])]


@pytest.fixture
def guide_weights(monkeypatch):
    """The per-token log attention weights of the guide tokens, per LTX model call (core 0.29's guide mask)."""
    model_class = importlib.import_module("comfy.ldm.lightricks.model").LTXVModel
    if not hasattr(model_class, "_build_guide_self_attention_mask"):
        pytest.skip("this ComfyUI has no per-guide attention mask (LTXVAddGuide attention_mask: core 0.29)")
    original, seen = model_class._build_guide_self_attention_mask, []

    def spy(self, x, transformer_options, merged_args):
        mask = original(self, x, transformer_options, merged_args)
        start, count = mask.guide_start, mask.tracked_count
        windows = merged_args.get("turbovideo_windows")
        seen.append({"log_weights": mask.noisy_mask[0, 0, 0, start:start + count].clone(),
                     "window": windows[1][0][1:] if windows else None})
        return mask

    monkeypatch.setattr(model_class, "_build_guide_self_attention_mask", spy)
    return seen


def test_keyframe_guide_attention_mask_is_cropped_into_each_window(comfy, tiny_models, captured, guide_weights):
    """A guide with strength < 1 and a pixel attention mask: each window's guide-token weights are the crop of
    the untiled weights (exactly: the window gets the mask at latent resolution, which core leaves as it is)."""
    mask = torch.rand(1, 100, 92, generator=torch.Generator().manual_seed(int(torch.randint(0, 2**20, ()))))
    run_latent(comfy, captured, guide_prompt(tiny_models, None, strength=0.7, mask=mask))
    full = guide_weights[0]["log_weights"].reshape(4, 4)
    assert float(full.std()) > 0, "the mask gave every guide token one weight: the crop check cannot fail"
    guide_weights.clear()
    run_latent(comfy, captured, guide_prompt(tiny_models, {"tile": 2, "overlap": 1}, strength=0.7, mask=mask))
    assert len(guide_weights) == 2 * 9
    for call in guide_weights:
        (rows, cols) = call["window"]
        torch.testing.assert_close(call["log_weights"], full[slice(*rows), slice(*cols)].reshape(-1),
                                   rtol=1e-6, atol=1e-6)


def test_keyframe_guide_attention_mask_refuses_batched_windows(comfy, tiny_models, captured, guide_weights):
    mask = torch.rand(1, 128, 128, generator=torch.Generator().manual_seed(3))
    result = comfy.run(guide_prompt(tiny_models, {"tile": 2, "overlap": 1, "tile_batch": 3}, strength=0.7, mask=mask))
    assert not result.ok and "set tile_batch to 1" in result.describe()


def test_keyframe_guides_with_temporal_segments_are_refused(comfy, tiny_models, captured):
    result = comfy.run(guide_prompt(tiny_models, {"tile": 2, "overlap": 1, "segment": 3, "segment_overlap": 2}))
    assert not result.ok and "cannot carry LTXVAddGuide keyframes" in result.describe()
    assert "set segment_length to 0" in result.describe()
