"""TurboVSRUpscale in the real ComfyUI on the tiny LTX-Video checkpoint (DiT width 64, tiny 32x VAE) and the
tiny LTX-2 checkpoint (audio-video DiT width 16, run video-only; the LTX-2 VAE, whose decode noise the seed
fixes).

Frame counts and sizes come back exactly (1 frame, 9 frames, 10 frames with odd sides); a seed gives
one output; the tile batch does not change it; one tile is the untiled model exactly; AdaIN moves
each frame's mean/std onto the resized input; a zero-scale VSR conditioner is the training-free mode
exactly and a random one changes the output, also when tiled.
"""
import importlib

import pytest
import torch

from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

STATE: dict = {}  # the adapter folder and the pack's conditioner module
FAMILIES = ["ltxv", "ltx2"]  # tiny_models[f"{family}_checkpoint"]
WIDTH = {"ltxv": 64, "ltx2": 16}  # the tiny DiTs' (video) widths: a VSR conditioner's width


@pytest.fixture(scope="module")
def host(comfy, tiny_models, tmp_path_factory):
    pack = comfy.pack_module.__name__
    folder = tmp_path_factory.mktemp("turbovideo_adapters")
    comfy.add_model_folder("turbovideo", folder)
    STATE["adapters"] = folder
    STATE["module"] = importlib.import_module(pack + ".models.vsr_conditioner")
    return comfy


def lr_video(frames, height, width, seed):
    """Smooth random frames in [0, 1] (far from constant)."""
    base = torch.rand(1, 3, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    video = torch.nn.functional.interpolate(base, size=(frames, height, width), mode="trilinear")
    return video[0].permute(1, 2, 3, 0).contiguous()


def upscale(host, captured, tiny_models, video, family="ltxv", **widgets):
    SOURCES["video"] = video
    inputs = {"model": ["ckpt", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 2,
              "strength": 0.5, "seed": 3, "resize_method": "bicubic", "color_correction": "none",
              "factorized": False, "tile_size": 0, "memory_budget_mb": 0, "tile_overlap": 2, "segment_length": 0,
              "segment_overlap": 2, "weights": "cosine",
              "tile_batch": 1, "vsr_conditioner": "none (training-free SDEdit)", "cfg": 1.0}
    inputs.update(widgets)
    checkpoint = tiny_models[f"{family}_checkpoint"]
    prompt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
              "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "video"}},
              "vsr": {"class_type": "TurboVSRUpscale", "inputs": inputs},
              "cap": {"class_type": "TurboTestCapture", "inputs": {"value": ["vsr", 0], "key": "out"}}}
    captured.pop("out", None)
    result = host.run(prompt)
    assert result.ok, result.describe()
    out = captured["out"]
    assert torch.isfinite(out).all() and out.std() > 1e-3
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("frames,height,width", [(1, 64, 64), (9, 64, 64), (10, 40, 48), (9, 32, 32)])
def test_frame_count_and_size_are_exact(host, captured, tiny_models, frames, height, width, family):
    out = upscale(host, captured, tiny_models, lr_video(frames, height, width, seed=frames), family)
    assert tuple(out.shape) == (frames, 2 * height, 2 * width, 3)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_seed_fixes_the_output(host, captured, tiny_models, family):
    video = lr_video(9, 64, 64, seed=1)
    first = upscale(host, captured, tiny_models, video, family, seed=5)
    again = upscale(host, captured, tiny_models, video, family, seed=5)
    other = upscale(host, captured, tiny_models, video, family, seed=6)
    assert torch.equal(first, again)
    assert (other - first).abs().mean() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_tiles_one_tile_and_tile_batch(host, captured, tiny_models, family):
    video = lr_video(9, 128, 128, seed=2)  # 8 x 8 latent cells at 256 px
    untiled = upscale(host, captured, tiny_models, video, family)
    one = upscale(host, captured, tiny_models, video, family, tile_size=8)
    assert torch.equal(one, untiled)
    nine = upscale(host, captured, tiny_models, video, family, tile_size=4, tile_overlap=2, tile_batch=1)
    batched = upscale(host, captured, tiny_models, video, family, tile_size=4, tile_overlap=2, tile_batch=4)
    torch.testing.assert_close(batched, nine, atol=1e-5, rtol=0)
    assert (nine - untiled).abs().mean() > 1e-4, "3 x 3 tiles must change a global model's output"


def reference_frames(video, scale=2):
    import comfy.utils

    size = (video.shape[1] * scale, video.shape[2] * scale)
    return comfy.utils.common_upscale(video.movedim(-1, 1), size[1], size[0], "bicubic",
                                      "disabled").movedim(1, -1).clamp(0, 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_adain_moves_mean_and_std_to_the_reference(host, captured, tiny_models, family):
    video = 0.25 + 0.5 * lr_video(9, 64, 64, seed=4)  # mid-range, so few corrected pixels reach the clamp
    ref = reference_frames(video)

    def stats_error(out):
        mean = (out.mean(dim=(1, 2)) - ref.mean(dim=(1, 2))).abs().max()
        std = (out.std(dim=(1, 2)) - ref.std(dim=(1, 2))).abs().max()
        return float(max(mean, std))

    plain = upscale(host, captured, tiny_models, video, family, color_correction="none", strength=0.9)
    fixed = upscale(host, captured, tiny_models, video, family, color_correction="adain", strength=0.9)
    assert stats_error(plain) > 0.05, stats_error(plain)
    assert stats_error(fixed) < 0.01, stats_error(fixed)  # exact before the clamp to [0, 1]


def write_conditioner(name, scale, seed, width=WIDTH["ltxv"]):
    module = STATE["module"]
    torch.manual_seed(seed)
    conditioner = module.VSRConditioner(width)
    with torch.no_grad():
        conditioner.scale.fill_(scale)
    module.save_vsr_conditioner(STATE["adapters"] / name, conditioner)
    return name


@pytest.mark.parametrize("family", FAMILIES)
def test_conditioner_zero_is_training_free_and_random_changes_it(host, captured, tiny_models, family):
    video = lr_video(9, 128, 128, seed=5)
    tiles = dict(tile_size=4, tile_overlap=2)
    plain = upscale(host, captured, tiny_models, video, family, **tiles)
    zero = write_conditioner(f"zero_{family}.safetensors", 0.0, 1, WIDTH[family])
    assert torch.equal(upscale(host, captured, tiny_models, video, family, vsr_conditioner=zero, **tiles), plain)
    name = write_conditioner(f"random_{family}.safetensors", 0.7, 2, WIDTH[family])
    cond = upscale(host, captured, tiny_models, video, family, vsr_conditioner=name, **tiles)
    assert (cond - plain).abs().mean() > 1e-3
    batched = upscale(host, captured, tiny_models, video, family, vsr_conditioner=name, tile_batch=9, **tiles)
    torch.testing.assert_close(batched, cond, atol=1e-5, rtol=0)


def test_bad_inputs_name_the_input(host, captured, tiny_models):
    SOURCES["video"] = lr_video(1, 64, 64, seed=0)
    prompt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
              "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "video"}},
              "vsr": {"class_type": "TurboVSRUpscale", "inputs": {
                  "model": ["ckpt", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 2,
                  "strength": 0.5, "seed": 0, "resize_method": "bicubic", "color_correction": "none",
                  "factorized": False, "tile_size": 4, "memory_budget_mb": 0, "tile_overlap": 4,
                  "segment_length": 0, "segment_overlap": 2,
                  "weights": "cosine", "tile_batch": 1, "vsr_conditioner": "none (training-free SDEdit)", "cfg": 1.0}},
              "cap": {"class_type": "TurboTestCapture", "inputs": {"value": ["vsr", 0], "key": "out"}}}
    result = host.run(prompt)
    assert not result.ok and "tile_overlap" in str(result.node_errors) + str(result.error)


def test_schedule_starts_at_strength(host):
    vsr_upscale = importlib.import_module(host.pack_module.__name__ + ".patches.vsr_upscale")
    for strength in (0.3, 0.75, 1.0):
        sigmas = vsr_upscale.vsr_sigmas(4, strength, tokens=2048)
        assert len(sigmas) == 5 and float(sigmas[0]) == pytest.approx(strength, abs=1e-7)
        assert float(sigmas[-1]) == 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())
        assert float(sigmas[2]) > strength / 2  # shifted toward noise (uniform would be exactly half)
