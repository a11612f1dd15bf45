"""TurboTiledModel on core's SeedVR2 (ComfyUI 0.29+): the tiny 3B-layout DiT from core's UNETLoader,
SeedVR2Conditioning and KSampler, as core's own SeedVR2 graph runs it (1 Euler step, cfg 1, denoise 1).

SeedVR2 attends within windows of about 400 tokens whatever the frame size (3 x 3 of them over a 720p
reference area, then more), and the pack cuts its tiles on that window grid; 2 x 2 tiles that share
one window therefore need 3 windows a side: 60 x 60 tokens = 120 x 120 latent cells (1 x 2 x 2 patches).
Bound of 2 x 2 tiles against the untiled run (stated in docs/tiling.md): mean |difference| <= 5e-4 of
the mean |untiled| and max |difference| <= 0.02 (measured about 1.6e-4 and 0.005); tiles cut off the
window grid are about 10x further.
"""
import importlib
import pathlib
import sys
import types

import pytest
import torch

from host import graphs
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

LATENT = (1, 16, 2, 120, 120)  # 2 latent frames (5 pixel frames) of 960 x 960 pixels
MEAN_BOUND, MAX_BOUND = 5e-4, 0.02


@pytest.fixture(scope="module")
def models(comfy, tiny_models):
    if "seedvr2_dit" not in tiny_models:
        pytest.skip("core SeedVR2 needs ComfyUI 0.29 or later; this host has no comfy.ldm.seedvr")
    return tiny_models


def pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.patches.{name}")


def tiling(tile=0, overlap=8, budget_mb=0, segment=0, segment_overlap=2, tile_batch=1, weights="cosine"):
    return {"tile_size": tile, "memory_budget_mb": budget_mb, "tile_overlap": overlap, "segment_length": segment,
            "segment_overlap": segment_overlap, "weights": weights, "tile_batch": tile_batch}


def seedvr2_prompt(models, tiled=None, cfg=1.0, negative="core"):
    """Core's SeedVR2 graph on the LR latent in SOURCES['lr'] (what VAEEncode of the resized video gives).

    negative "zero": the positive text zeroed (ConditioningZeroOut) instead of core's stored negative, whose
    64 tokens against the positive's 58 keep ComfyUI from batching cond with uncond."""
    prompt = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": models["seedvr2_dit"], "weight_dtype": "default"}},
        "lr": {"class_type": "TurboTestLatentSource", "inputs": {"key": "lr"}},
        "cond": {"class_type": "SeedVR2Conditioning", "inputs": {"model": ["unet", 0], "vae_conditioning": ["lr", 0]}},
    }
    model = ["unet", 0]
    if tiled is not None:
        prompt["tiled"] = {"class_type": "TurboTiledModel", "inputs": {"model": model, **tiled}}
        model = ["tiled", 0]
    prompt["zero"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["cond", 0]}}
    prompt["sample"] = {"class_type": "KSampler", "inputs": {
        "model": model, "seed": 3, "steps": 1, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple",
        "positive": ["cond", 0], "negative": ["zero", 0] if negative == "zero" else ["cond", 1],
        "latent_image": ["lr", 0], "denoise": 1.0}}
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def run(comfy, captured, prompt):
    captured.pop("latent", None)
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    assert torch.isfinite(latent).all() and latent.std() > 0.1
    return latent


@pytest.fixture
def calls(monkeypatch):
    """(x, condition, transformer_options) of every NaDiT call."""
    nadit = importlib.import_module("comfy.ldm.seedvr.model").NaDiT
    forward, seen = nadit.forward, []

    def spy(self, x, timestep, context, *args, **kwargs):
        seen.append((x.clone(), kwargs["condition"].clone(), kwargs.get("transformer_options", {})))
        return forward(self, x, timestep, context, *args, **kwargs)

    monkeypatch.setattr(nadit, "forward", spy)
    return seen


@pytest.fixture
def lr_latent():
    SOURCES["lr"] = torch.randn(LATENT, generator=torch.Generator().manual_seed(int(torch.randint(1 << 30, ()))))
    return SOURCES["lr"]


def differences(out, reference):
    difference = (out - reference).abs()
    return float(difference.mean() / reference.abs().mean()), float(difference.max())


def test_core_loaders_take_the_tiny_files_and_the_pack_knows_them(comfy, models, clean_load):
    families, core_compat = pack(comfy, "families"), pack(comfy, "core_compat")
    import comfy.sd
    import comfy.utils
    import folder_paths

    path = folder_paths.get_full_path_or_raise("diffusion_models", models["seedvr2_dit"])
    state_dict, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
    assert families.family_of_config(core_compat.detect_diffusion_config(state_dict, metadata)).name == "SeedVR2"
    model = comfy.sd.load_diffusion_model(path)
    assert families.family_of(model).name == "SeedVR2"
    vae_path = folder_paths.get_full_path_or_raise("vae", models["seedvr2_vae"])
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path))
    assert families.vae_family(vae).name == "SeedVR2"
    diffusion_model = model.get_model_object("diffusion_model")
    assert core_compat.seedvr2_patch_size(diffusion_model) == (1, 2, 2)
    # 60 x 60 tokens: 3 x 3 windows of 20 x 20 tokens (core's 720p reference area / 9); 20 x 80 tokens: windows
    # of 10 x 40 (the frame's aspect); time: 4 windows over up to 30 latent frames, so 8 frames from 30 on
    unit = families.tiling_rules(model).unit
    assert unit(model.model, LATENT[2:]) == (1, 40, 40)
    assert unit(model.model, (2, 40, 160)) == (1, 20, 80)
    assert unit(model.model, (9, 40, 40)) == (1, 40, 40)
    assert unit(model.model, (40, 40, 40)) == (8, 40, 40)


def test_a_moved_seedvr2_reach_is_reported_by_name(comfy, models):
    core_compat = pack(comfy, "core_compat")
    moved = types.SimpleNamespace(blocks=[types.SimpleNamespace(attn=types.SimpleNamespace(window=(4, 3, 3)))])
    with pytest.raises(core_compat.CoreChanged, match="seedvr2_attention_window"):
        core_compat.seedvr2_attention_window(moved, (2, 60, 60))
    with pytest.raises(core_compat.CoreChanged, match="seedvr2_patch_size"):
        core_compat.seedvr2_patch_size(moved)


def test_one_tile_is_cores_untiled_run(comfy, models, captured, lr_latent, calls):
    plain = run(comfy, captured, seedvr2_prompt(models))
    whole = run(comfy, captured, seedvr2_prompt(models, tiling(tile=120)))
    auto = run(comfy, captured, seedvr2_prompt(models, tiling(budget_mb=1 << 20)))
    torch.testing.assert_close(whole, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(auto, plain, atol=1e-5, rtol=0)
    assert [tuple(x.shape) for x, _, _ in calls] == [LATENT] * 3


def test_two_by_two_tiles_stay_within_the_stated_bound(comfy, models, captured, lr_latent, calls):
    plain = run(comfy, captured, seedvr2_prompt(models))
    calls.clear()
    tiled = run(comfy, captured, seedvr2_prompt(models, tiling(tile=80, overlap=40)))
    assert [tuple(x.shape) for x, _, _ in calls] == [(1, 16, 2, 80, 80)] * 4
    mean, largest = differences(tiled, plain)
    assert 0 < mean <= MEAN_BOUND and largest <= MAX_BOUND, (mean, largest)


def test_tiles_on_the_attention_window_grid_beat_tiles_off_it(comfy, models, captured, lr_latent, monkeypatch):
    """The same 2 x 2 tiling cut on the patch grid only (starts 18 tokens in): every window of the tile
    groups other tokens than the untiled run's windows, and the result is much further off."""
    plain = run(comfy, captured, seedvr2_prompt(models))
    aligned = differences(run(comfy, captured, seedvr2_prompt(models, tiling(tile=80, overlap=40))), plain)
    monkeypatch.setattr(pack(comfy, "tile_plan"), "window_unit", lambda base_model, shape: (1, 2, 2))
    patch_only = differences(run(comfy, captured, seedvr2_prompt(models, tiling(tile=84, overlap=48))), plain)
    assert patch_only[0] > 4 * aligned[0], (aligned, patch_only)


def test_the_condition_latent_is_cropped_into_each_window(comfy, models, captured, lr_latent, calls):
    run(comfy, captured, seedvr2_prompt(models, tiling(tile=80, overlap=40)))
    key = pack(comfy, "tiled_model").WINDOWS_KEY
    assert len(calls) == 4
    for x, condition, options in calls:
        shape, windows = options[key]
        (frames, rows, cols), = windows
        assert shape == LATENT[2:] and condition.shape == (1, 17, *x.shape[2:])
        torch.testing.assert_close(condition[:, :16], lr_latent[:, :, slice(*frames), slice(*rows), slice(*cols)],
                                   atol=0, rtol=0)
        assert bool((condition[:, 16] == 1).all())


def test_cond_and_uncond_stay_paired_in_batched_tiles(comfy, models, captured, lr_latent, calls, monkeypatch):
    """cfg > 1 with texts of one length batches cond and uncond (when ComfyUI thinks both fit: here it is told
    so); the NaDiT pairs the halves of its batch, so with tile_batch 4 each call still holds one window
    (tile_batch does not change the result)."""
    patcher = importlib.import_module("comfy.model_patcher").ModelPatcher
    monkeypatch.setattr(patcher, "get_free_memory", lambda self, device: float(1 << 40))
    prompt = lambda batch: seedvr2_prompt(models, tiling(tile=80, overlap=40, tile_batch=batch), 2.0, "zero")
    one = run(comfy, captured, prompt(1))
    calls.clear()
    four = run(comfy, captured, prompt(4))
    torch.testing.assert_close(four, one, atol=1e-5, rtol=1e-5)
    assert [x.shape[0] for x, _, _ in calls] == [2] * 4


@pytest.mark.parametrize("budget_gib, overlap, windows", [(2.5, 0, 9), (3.0, 8, 4), (3.3, 8, 1)])
def test_the_auto_tile_follows_cores_seedvr2_memory_law(comfy, models, captured, lr_latent, calls, budget_gib,
                                                        overlap, windows):
    """Core's law (SeedVR2TemporalChunk's auto mode): 0.55 GiB per latent frame and megapixel plus a 2.2 GiB
    margin: 1, 2 or 3 windows a side cost 2.31, 2.65 or 3.21 GiB on 2 latent frames. An overlap needs
    tiles of at least 2 windows."""
    core_compat = pack(comfy, "core_compat")
    costs = [core_compat.seedvr2_call_bytes(1, 2, 40 * n, 40 * n) / 2 ** 30 for n in (1, 2, 3)]
    assert [round(c, 2) for c in costs] == [2.31, 2.65, 3.21]
    run(comfy, captured, seedvr2_prompt(models, tiling(overlap=overlap, budget_mb=int(budget_gib * 1024))))
    assert len(calls) == windows


def test_temporal_segments_on_the_temporal_window_grid(comfy, models, captured, calls):
    """9 latent frames (shorter than core's longest temporal window): segments cut at any latent frame."""
    SOURCES["lr"] = torch.randn(1, 16, 9, 40, 40, generator=torch.Generator().manual_seed(5))
    plain = run(comfy, captured, seedvr2_prompt(models))
    calls.clear()
    split = run(comfy, captured, seedvr2_prompt(models, tiling(segment=6, segment_overlap=3)))
    windows = [options[pack(comfy, "tiled_model").WINDOWS_KEY][1][0][0] for _, _, options in calls]
    assert windows == [(0, 6), (3, 9)]
    mean, largest = differences(split, plain)
    assert 0 < mean <= 0.05, (mean, largest)


def test_a_stop_between_windows_ends_the_run_and_the_next_run_is_clean(comfy, models, captured, lr_latent, calls):
    management = importlib.import_module("comfy.model_management")
    prompt = seedvr2_prompt(models, tiling(tile=80, overlap=40))
    reference = run(comfy, captured, prompt)
    calls.clear()
    tiled_model = pack(comfy, "tiled_model")
    original = tiled_model.tiled_apply

    def stop_after_the_second_window(fn, x, windows, tile_batch=1, before_batch=None):
        def before(done, total):
            if done == 2:
                management.interrupt_current_processing(True)
            before_batch(done, total)
        return original(fn, x, windows, tile_batch, before)

    tiled_model.tiled_apply = stop_after_the_second_window
    try:
        result = comfy.run(prompt)
    finally:
        tiled_model.tiled_apply = original
        management.interrupt_current_processing(False)
    assert not result.ok
    assert any(event == "execution_interrupted" for event, _ in result.messages), result.describe()
    assert len(calls) == 2, "a window ran after the stop"
    torch.testing.assert_close(run(comfy, captured, prompt), reference, atol=0, rtol=0)


def test_the_workflows_colour_fix_keeps_tiles_closest_to_untiled(comfy, models, captured, lr_latent):
    """Which colour fix to put after tiled SeedVR2: the one under which the tiled result stays closest to the
    untiled result (both fixed the same way against the LR reference). Candidates: core's SeedVR2PostProcessing
    (lab, wavelet, adain, none) and the pack's colour correction (wavelet, adain); the workflow's choice must be
    as close as the best of them (measured: wavelet, adain and none within 0.1% of each other, the pack's the
    same, lab about 20% further). Checked on a 384 px crop across the tile seams (the tiny VAE is slow)."""
    host = comfy
    color = importlib.import_module(f"{host.pack_module.__name__}.samplers.color_correction")
    plain = run(host, captured, seedvr2_prompt(models))
    tiled = run(host, captured, seedvr2_prompt(models, tiling(tile=80, overlap=40)))
    import comfy.sd
    import comfy.utils
    import folder_paths
    from comfy_extras.nodes_seedvr import SeedVR2PostProcessing

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
    import build_workflows

    vae_path = folder_paths.get_full_path_or_raise("vae", models["seedvr2_vae"])
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path))
    crop = (..., slice(36, 84), slice(36, 84))  # the 40..80 overlap of the 2 x 2 tiles, and their inner parts
    with torch.inference_mode():
        pixels = {name: vae.decode(latent[:, :, :1][crop])[0] for name, latent in
                  (("plain", plain), ("tiled", tiled), ("reference", lr_latent))}
    fixes = {f"core {m}": (lambda out, ref, m=m: SeedVR2PostProcessing.execute(out, ref, m).args[0])
             for m in ("lab", "wavelet", "adain", "none")}
    fixes.update({f"pack {m}": getattr(color, m) for m in ("wavelet", "adain")})
    distance = {name: float((fix(pixels["tiled"], pixels["reference"]) - fix(pixels["plain"], pixels["reference"]))
                            .abs().mean()) for name, fix in fixes.items()}
    print("mean |tiled - untiled| after each colour fix:", {k: f"{v:.3e}" for k, v in distance.items()})
    chosen = f"core {build_workflows.SEEDVR2_COLOUR_FIX}"
    assert distance[chosen] <= 1.02 * min(distance.values()), distance  # as close as the best, to 2%
