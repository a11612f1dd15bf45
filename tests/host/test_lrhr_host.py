"""Turbo2K LR -> HR in the real ComfyUI on the tiny LTX-Video DiT (2 blocks, width 64, blocks [0, 1]).

Graph: TurboLRPass (CFGGuider, euler) -> TurboApplyLRFeatures -> CFGGuider -> SamplerCustomAdvanced at 2x,
and the training-free TurboLRLatentGuidance -> SamplerCustomAdvanced with DisableNoise.
"""
import importlib

import pytest
import torch
from tiny_models.random_weights import randomised as _random
from turbovideo.models.fusion_blocks import FusionAdapter, save_fusion_adapter

from host import graphs

pytestmark = pytest.mark.host

LR_SIZE, HR_SIZE, FRAMES, CFG = 64, 128, 9, 2.0  # latents [1, 128, 2, 2, 2] and [1, 128, 2, 4, 4]
# LTX-Video (width 64); LTX-2 (width 16) video-only and with an audio latent (LTXVConcatAVLatent)
FAMILIES = {"ltxv": {"dit": "ltxv_dit", "width": 64}, "ltx2": {"dit": "ltx2_dit", "width": 16, "audio": False},
            "ltx2_av": {"dit": "ltx2_dit", "width": 16, "audio": True},
            "ltx23_av": {"dit": "ltx23_dit", "width": 16, "audio": True}}  # LTX-2.3: skipped on core 0.8.0


@pytest.fixture(scope="module")
def adapters(comfy, tiny_models, tmp_path_factory):
    """Fusion adapters; the LTX-2 ones (width 16) under the same names with the prefix 'ltx2_'."""
    folder = tmp_path_factory.mktemp("lrhr_adapters")
    files = {}
    for prefix, width in (("", 64), ("ltx2_", 16)):
        files.update({f"{prefix}zero": FusionAdapter(width, width, [0, 1], num_blocks=2, mlp_ratio=1.0),
                      f"{prefix}random": _random(FusionAdapter(width, width, [0, 1], num_blocks=2, mlp_ratio=1.0),
                                                 seed=3),
                      f"{prefix}wide": FusionAdapter(width, 2 * width, [0, 1], num_blocks=2),
                      f"{prefix}turbo2k": FusionAdapter(width, width, [0, 7, 14, 21], num_blocks=28)})
    for name, adapter in files.items():
        save_fusion_adapter(folder / f"lrhr_{name}.safetensors", adapter)
    comfy.add_model_folder("turbovideo", folder)
    return {name: f"lrhr_{name}.safetensors" for name in files}


def named(adapters, family, name):
    return adapters[name if family == "ltxv" else f"ltx2_{name}"]


def _empty_latent(size):
    return {"class_type": "EmptyLTXVLatentVideo",
            "inputs": {"width": size, "height": size, "length": FRAMES, "batch_size": 1}}


def _conditioning_and_latents(family):
    """pos / neg and the LR and HR latents of a family; ltx2_av joins each video latent to an empty audio one."""
    if family == "ltxv":
        return {"pos": graphs.conditioning_node(0, True), "neg": graphs.conditioning_node(1, True),
                "lr_latent": _empty_latent(LR_SIZE), "hr_latent": _empty_latent(HR_SIZE)}
    nodes = graphs.ltx2_nodes(None, frames=FRAMES, size=LR_SIZE, audio=FAMILIES[family]["audio"],
                              config=graphs.ltx2_config(family))
    nodes = {k: v for k, v in nodes.items() if k != "unet"}
    if not FAMILIES[family]["audio"]:
        return {**nodes, "lr_latent": nodes.pop("latent"), "hr_latent": _empty_latent(HR_SIZE)}
    nodes["lr_latent"], nodes["lr_video"] = nodes.pop("latent"), nodes.pop("video_latent")
    nodes["lr_latent"]["inputs"]["video_latent"] = ["lr_video", 0]
    nodes["hr_video"] = _empty_latent(HR_SIZE)
    nodes["hr_latent"] = {"class_type": "LTXVConcatAVLatent", "inputs": {
        "video_latent": ["hr_video", 0], "audio_latent": ["audio_latent", 0]}}
    return nodes


def base_nodes(model_loader, seed=7, family="ltxv"):
    return {
        "unet": model_loader,
        **_conditioning_and_latents(family),
        "sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "sigmas": {"class_type": "BasicScheduler",
                   "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "lr_guider": guider(["unet", 0]),
        "lr_pass": {"class_type": "TurboLRPass", "inputs": {
            "noise": ["noise", 0], "guider": ["lr_guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["lr_latent", 0], "blocks": "0, 1"}},
    }


def guider(model):
    return {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["pos", 0], "negative": ["neg", 0],
                                                  "cfg": CFG}}


def dit_loader(tiny_models, family="ltxv"):
    return {"class_type": "UNETLoader",
            "inputs": {"unet_name": tiny_models[FAMILIES[family]["dit"]], "weight_dtype": "default"}}


def hr_prompt(tiny_models, adapter=None, model_loader=None, family="ltxv"):
    prompt = base_nodes(model_loader or dit_loader(tiny_models, family), family=family)
    model = ["unet", 0]
    if adapter is not None:
        prompt["apply"] = {"class_type": "TurboApplyLRFeatures", "inputs": {
            "model": model, "lr_features": ["lr_pass", 1], "adapter": adapter, "strength": 1.0}}
        model = ["apply", 0]
    prompt["hr_guider"] = guider(model)
    prompt["hr"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["noise", 0], "guider": ["hr_guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
        "latent_image": ["hr_latent", 0]}}
    prompt.update(graphs.capture(["hr", 0], "hr"))
    return prompt


def run(comfy, captured, prompt, key="hr", streams=1):
    """The captured latent; an audio-video one (`streams` 2) as its (video, audio) tensors."""
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured[key]["samples"]
    parts = tuple(latent.unbind()) if getattr(latent, "is_nested", False) else (latent,)
    assert len(parts) == streams and all(torch.isfinite(p).all() and p.std() > 0 for p in parts)
    return parts if streams > 1 else latent


def streams(family):
    return 2 if FAMILIES[family].get("audio") else 1


def video_of(latent):
    return latent[0] if isinstance(latent, tuple) else latent


@pytest.mark.parametrize("family", FAMILIES)
def test_lrhr_zero_adapter_is_plain_hr_sampling_and_random_adapter_is_not(comfy, tiny_models, captured, adapters,
                                                                          family, clean_load):
    plain = run(comfy, captured, hr_prompt(tiny_models, family=family), streams=streams(family))
    assert video_of(plain).shape == (1, 128, 2, 4, 4)
    zero = run(comfy, captured, hr_prompt(tiny_models, named(adapters, family, "zero"), family=family),
               streams=streams(family))
    torch.testing.assert_close(zero, plain, rtol=0, atol=1e-6)
    guided = run(comfy, captured, hr_prompt(tiny_models, named(adapters, family, "random"), family=family),
                 streams=streams(family))
    assert float((video_of(guided) - video_of(plain)).norm() / video_of(plain).norm()) > 1e-2


@pytest.fixture
def block_outputs(comfy, monkeypatch):
    """Every LTX-Video / LTX-2 block's video output with the call's sigma and cond/uncond order, in call order."""
    blocks = (importlib.import_module("comfy.ldm.lightricks.model").BasicTransformerBlock,
              importlib.import_module("comfy.ldm.lightricks.av_model").BasicAVTransformerBlock)
    seen = []
    for block in blocks:
        def recording(self, x, *args, transformer_options, _forward=block.forward, **kwargs):
            out = _forward(self, x, *args, transformer_options=transformer_options, **kwargs)
            video = out[0] if isinstance(out, tuple) else out  # LTX-2: (video, audio)
            seen.append((float(transformer_options["sigmas"][0]), list(transformer_options["cond_or_uncond"]),
                         video.detach().clone()))
            return out

        monkeypatch.setattr(block, "forward", recording)
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_lrhr_features_come_from_the_final_lr_step(comfy, tiny_models, captured, adapters, block_outputs, family):
    """The captured features are the video tokens of the last LR step's cond entries (LTX-2: not its audio)."""
    prompt = base_nodes(dit_loader(tiny_models, family), family=family)
    prompt.update(graphs.capture(["lr_pass", 1], "features"))
    prompt.update(graphs.capture(["sigmas", 0], "sigmas"))
    run(comfy, captured, {**prompt, **graphs.capture(["lr_pass", 0], "lr")}, key="lr", streams=streams(family))
    features, sigmas, width = captured["features"], captured["sigmas"], FAMILIES[family]["width"]
    assert features.grid == (2, 2, 2) and (features.width, features.num_blocks) == (width, 2)
    assert sorted(features.features) == [0, 1]
    assert features.sigma == pytest.approx(float(sigmas[-2])) and float(sigmas[-2]) > 0
    last_sigma, order, _ = block_outputs[-1]
    assert last_sigma == pytest.approx(float(sigmas[-2]))
    for block, (_, _, out) in zip((0, 1), block_outputs[-2:]):
        chunk = out.shape[0] // len(order)
        cond = out[order.index(0) * chunk:(order.index(0) + 1) * chunk]
        assert features.features[block].shape == (1, 8, width)
        torch.testing.assert_close(features.features[block], cond, rtol=0, atol=0)
    earlier = [out for sigma, _, out in block_outputs if sigma != last_sigma]
    assert earlier and all(not torch.allclose(out[:1], features.features[1]) for out in earlier[1::2])


def test_lrhr_no_vae_work_between_the_passes(comfy, tiny_models, captured, adapters, monkeypatch):
    vae_class = importlib.import_module("comfy.sd").VAE
    calls = []
    for name in ("encode", "decode", "encode_tiled", "decode_tiled"):
        original = getattr(vae_class, name)
        monkeypatch.setattr(vae_class, name, lambda self, *a, _n=name, _f=original, **k: (calls.append(_n),
                                                                                             _f(self, *a, **k))[1])
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}}
    prompt = hr_prompt(tiny_models, adapters["random"], model_loader=loader)
    prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["hr", 0], "vae": ["unet", 2]}}
    prompt.update(graphs.capture(["decode", 0], "images"))
    run(comfy, captured, prompt)
    assert calls == ["decode"], f"only the final HR decode may touch the VAE, saw {calls}"
    assert captured["images"].shape == (FRAMES, HR_SIZE, HR_SIZE, 3)  # VAEDecode flattens batch x frames


def training_free_prompt(tiny_models, seed=11):
    prompt = base_nodes(dit_loader(tiny_models))
    prompt["hr_sigmas"] = {"class_type": "ManualSigmas", "inputs": {"sigmas": "1.0, 0.9094, 0.725, 0.4219, 0.0"}}
    prompt["guide"] = {"class_type": "TurboLRLatentGuidance", "inputs": {
        "lr_latent": ["lr_pass", 0], "sigmas": ["hr_sigmas", 0], "noise_seed": seed, "start_step": 1,
        "scale": 2.0, "adain_factor": 1.0}}
    prompt["hr_guider"] = guider(["unet", 0])
    prompt["no_noise"] = {"class_type": "DisableNoise", "inputs": {}}
    prompt["hr"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["no_noise", 0], "guider": ["hr_guider", 0], "sampler": ["sampler", 0], "sigmas": ["guide", 2],
        "latent_image": ["guide", 0]}}
    prompt.update(graphs.capture(["hr", 0], "hr"))
    return prompt


def test_lrhr_training_free_mode_is_the_sampler_renoising_the_guide(comfy, tiny_models, captured, adapters):
    prompt = training_free_prompt(tiny_models)
    prompt.update(graphs.capture(["guide", 2], "sigmas"))
    hr = run(comfy, captured, prompt)
    assert hr.shape == (1, 128, 2, 4, 4)
    assert captured["sigmas"].tolist() == pytest.approx([0.9094, 0.725, 0.4219, 0.0])
    # The same start reached the ComfyUI way: the clean guide latent noised by RandomNoise(seed) in the sampler.
    prompt["seeded"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}}
    prompt["hr"]["inputs"].update(noise=["seeded", 0], latent_image=["guide", 1])
    torch.testing.assert_close(run(comfy, captured, prompt), hr, rtol=1e-5, atol=1e-5)


def lrhr_node(adapter, hr_sigmas=("sigmas", 0)):
    return {"class_type": "TurboLRHRSampler", "inputs": {
        "model": ["unet", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": CFG, "sampler": ["sampler", 0],
        "lr_sigmas": ["sigmas", 0], "hr_sigmas": list(hr_sigmas), "lr_latent": ["lr_latent", 0], "noise_seed": 7,
        "adapter": adapter, "strength": 1.0, "scale": 2.0}}


def test_lrhr_sampler_node_equals_the_building_blocks(comfy, tiny_models, captured, adapters):
    expected = run(comfy, captured, hr_prompt(tiny_models, adapters["random"]))
    prompt = base_nodes(dit_loader(tiny_models))
    prompt["lrhr"] = {"class_type": "TurboLRHRSampler", "inputs": {
        "model": ["unet", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": CFG, "sampler": ["sampler", 0],
        "lr_sigmas": ["sigmas", 0], "hr_sigmas": ["sigmas", 0], "lr_latent": ["lr_latent", 0], "noise_seed": 7,
        "adapter": adapters["random"], "strength": 1.0, "scale": 2.0}}
    prompt.update(graphs.capture(["lrhr", 0], "hr"))
    torch.testing.assert_close(run(comfy, captured, prompt), expected, rtol=1e-6, atol=1e-6)
    prompt["lrhr"]["inputs"]["adapter"] = "none (training-free latent guidance)"
    prompt["tf_sigmas"] = {"class_type": "ManualSigmas", "inputs": {"sigmas": "0.9094, 0.725, 0.4219, 0.0"}}
    prompt["lrhr"]["inputs"]["hr_sigmas"] = ["tf_sigmas", 0]
    assert run(comfy, captured, prompt).shape == (1, 128, 2, 4, 4)


def test_lrhr_sampler_node_on_ltx2_audio_video_keeps_the_lr_audio(comfy, tiny_models, captured, adapters):
    """TurboLRHRSampler on an LTX-2 audio-video latent: the LR pass makes the audio, the HR pass keeps it exactly
    (denoise mask 0) and re-synthesises only the video at 2x; a zero adapter is the plain HR pass, a random one
    changes it; the training-free mode keeps the audio too."""
    prompt = base_nodes(dit_loader(tiny_models, "ltx2_av"), family="ltx2_av")
    results = {}
    for name in ("zero", "random"):
        prompt["lrhr"] = lrhr_node(named(adapters, "ltx2_av", name))
        prompt.update(graphs.capture(["lrhr", 0], "hr"))
        prompt.update(graphs.capture(["lrhr", 1], "lr"))
        results[name] = run(comfy, captured, prompt, streams=2)
        lr_video, lr_audio = captured["lr"]["samples"].unbind()
        video, audio = results[name]
        assert video.shape == (1, 128, 2, 4, 4) and lr_video.shape == (1, 128, 2, 2, 2)
        torch.testing.assert_close(audio, lr_audio, rtol=0, atol=1e-6)  # the sampler's mask blend rounds
    change = (results["random"][0] - results["zero"][0]).norm() / results["zero"][0].norm()
    assert float(change) > 1e-2
    prompt["tf_sigmas"] = {"class_type": "ManualSigmas", "inputs": {"sigmas": "0.9094, 0.725, 0.4219, 0.0"}}
    prompt["lrhr"] = lrhr_node("none (training-free latent guidance)", ("tf_sigmas", 0))
    video, audio = run(comfy, captured, prompt, streams=2)
    assert video.shape == (1, 128, 2, 4, 4)
    torch.testing.assert_close(audio, captured["lr"]["samples"].unbind()[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["ltxv", "ltx2"])
@pytest.mark.parametrize("case,message", [
    ("blocks", "blocks: blocks [0, 5] must be distinct indices 0..1"),
    ("wide", "HR model width {width}"),
    ("turbo2k", "hr_blocks [0, 7, 14, 21] need a model with more than 21 blocks, this one has 2"),
])
def test_lrhr_errors_name_the_input(comfy, tiny_models, captured, adapters, case, message, family):
    prompt = hr_prompt(tiny_models, named(adapters, family, "zero" if case == "blocks" else case), family=family)
    if case == "blocks":
        prompt["lr_pass"]["inputs"]["blocks"] = "0, 5"
    captured.clear()
    result = comfy.run(prompt)
    assert not result.ok
    message = message.format(width=FAMILIES[family]["width"])
    assert message in result.execution_error["exception_message"], result.describe()


def test_lrhr_wan_model_is_refused_with_the_families_that_work(comfy, tiny_models, captured, adapters):
    prompt = hr_prompt(tiny_models, adapters["zero"])
    prompt["unet"] = {"class_type": "UNETLoader",
                      "inputs": {"unet_name": tiny_models["wan_dit"], "weight_dtype": "default"}}
    result = comfy.run(prompt)
    assert not result.ok
    message = result.execution_error["exception_message"]
    assert message.startswith("guider: LR -> HR") and "does not support Wan" in message, message
    assert "connect one of: LTX-Video, LTX-2" in message, message


def test_lrhr_ltx2_audio_only_latent_is_refused_with_the_fix(comfy, tiny_models, captured, adapters):
    from host.test_only_nodes import SOURCES

    SOURCES["lrhr_audio_only"] = torch.randn(1, 8, 9, 16, generator=torch.Generator().manual_seed(2))
    prompt = hr_prompt(tiny_models, adapters["ltx2_zero"], family="ltx2")
    prompt["lr_latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "lrhr_audio_only"}}
    result = comfy.run(prompt)
    assert not result.ok
    message = result.execution_error["exception_message"]
    assert message.startswith("latent_image: LR -> HR works on video latents [B, 128, T, H, W]"), message
    assert "LTXVSeparateAVLatent" in message, message


def test_lrhr_auto_blocks_are_turbo2k_depths(comfy, tiny_models, captured, adapters):
    """blocks 'auto': Turbo2K's 0, 7, 14, 21 of 28 at the model's depth (the tiny DiTs' 2 blocks: 0, 1)."""
    families = _pack(comfy, "patches.families")
    assert families.ltx2.FAMILY.default_fusion_blocks(48) == [0, 12, 24, 36]
    assert families.ltxv.FAMILY.default_fusion_blocks(28) == [0, 7, 14, 21]
    prompt = hr_prompt(tiny_models, adapters["ltx2_random"], family="ltx2")
    expected = run(comfy, captured, prompt)
    prompt["lr_pass"]["inputs"]["blocks"] = "auto"
    torch.testing.assert_close(run(comfy, captured, prompt), expected, rtol=0, atol=0)


def test_lrhr_ltx2_latent_upsampler_upsamples_the_lr_latent(comfy, tiny_models, captured):
    """Training-free guidance with core's LTX-2 latent upsampler (LatentUpscaleModelLoader): with adain_factor 0
    the guide is core's LTXVLatentUpsampler output, exactly."""
    prompt = base_nodes({"class_type": "CheckpointLoaderSimple",
                         "inputs": {"ckpt_name": tiny_models["ltx2_checkpoint"]}}, family="ltx2")
    prompt["upsampler"] = {"class_type": "LatentUpscaleModelLoader",
                           "inputs": {"model_name": tiny_models["ltx2_upsampler"]}}
    prompt["hr_sigmas"] = {"class_type": "ManualSigmas", "inputs": {"sigmas": "0.9094, 0.725, 0.4219, 0.0"}}
    prompt["guide"] = {"class_type": "TurboLRLatentGuidance", "inputs": {
        "lr_latent": ["lr_pass", 0], "sigmas": ["hr_sigmas", 0], "noise_seed": 3, "start_step": 0, "scale": 2.0,
        "adain_factor": 0.0, "upscale_model": ["upsampler", 0], "vae": ["unet", 2]}}
    prompt["core"] = {"class_type": "LTXVLatentUpsampler", "inputs": {
        "samples": ["lr_pass", 0], "upscale_model": ["upsampler", 0], "vae": ["unet", 2]}}
    prompt.update(graphs.capture(["core", 0], "core"))
    guide = run(comfy, captured, {**prompt, **graphs.capture(["guide", 1], "hr")})
    assert guide.shape == (1, 128, 2, 4, 4)
    torch.testing.assert_close(guide, captured["core"]["samples"], rtol=0, atol=0)
    prompt["lrhr"] = {**lrhr_node("none (training-free latent guidance)", ("hr_sigmas", 0))}
    prompt["lrhr"]["inputs"].update(upscale_model=["upsampler", 0], vae=["unet", 2])
    hr = run(comfy, captured, {**prompt, **graphs.capture(["lrhr", 0], "hr")})
    assert hr.shape == (1, 128, 2, 4, 4)


def _pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.{name}")


def tiled_prompt(comfy, tiny_models, adapter, tile_size):
    """hr_prompt with TurboTiledModel between TurboApplyLRFeatures and the HR guider (other inputs: defaults)."""
    prompt = hr_prompt(tiny_models, adapter)
    required = comfy.nodes.NODE_CLASS_MAPPINGS["TurboTiledModel"].INPUT_TYPES()["required"]
    inputs = {name: spec[1]["default"] for name, spec in required.items() if name != "model"}
    inputs.update(model=prompt["hr_guider"]["inputs"]["model"], tile_size=tile_size, tile_overlap=1,
                  segment_length=0, tile_batch=1)
    prompt["tiled"] = {"class_type": "TurboTiledModel", "inputs": inputs}
    prompt["hr_guider"]["inputs"]["model"] = ["tiled", 0]
    return prompt


@pytest.fixture
def window_addends(comfy, monkeypatch):
    """Every window_addends call of the fusion patch: (inputs, outputs)."""
    lr_features = _pack(comfy, "patches.lr_features")
    calls, original = [], lr_features.window_addends

    def recording(*args):
        out = original(*args)
        calls.append((args, out))
        return out

    monkeypatch.setattr(lr_features, "window_addends", recording)
    return calls


def test_lrhr_tiled_hr_model_with_one_tile_is_the_untiled_model(comfy, tiny_models, captured, adapters,
                                                                 window_addends):
    untiled = run(comfy, captured, hr_prompt(tiny_models, adapters["random"]))
    tiled = run(comfy, captured, tiled_prompt(comfy, tiny_models, adapters["random"], tile_size=4))
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-6)
    assert window_addends == []


def test_lrhr_tiled_windows_fuse_the_crop_of_the_full_grid_features(comfy, tiny_models, captured, adapters,
                                                                     window_addends):
    plain = run(comfy, captured, tiled_prompt(comfy, tiny_models, adapters["zero"], tile_size=2))
    window_addends.clear()
    prompt = tiled_prompt(comfy, tiny_models, adapters["random"], tile_size=2)
    guided = run(comfy, captured, {**prompt, **graphs.capture(["lr_pass", 1], "features")})
    assert float((guided - plain).norm() / plain.norm()) > 1e-2
    spans = ((0, 2), (1, 3), (2, 4))
    expected_windows = {((0, 2), rows, cols) for rows in spans for cols in spans}
    assert len(window_addends) == 3 * 2 * len(expected_windows)  # steps x fused blocks x windows
    assert {window for (*_, windows, _), _ in window_addends for window in windows} == expected_windows
    import folder_paths

    adapter = _pack(comfy, "models.fusion_blocks").load_fusion_adapter(
        folder_paths.get_full_path_or_raise("turbovideo", adapters["random"]))
    lr = captured["features"]
    for (_, hr_block, lr_block, full_grid, windows, _), parts in window_addends:
        assert (lr.grid, tuple(full_grid), hr_block) == ((2, 2, 2), (2, 4, 4), lr_block)
        with torch.inference_mode():  # independent of the patch: the adapter file on the captured features
            full = adapter(hr_block, lr.features[lr_block], lr.grid, full_grid).reshape(1, *full_grid, -1)
        for window, part in zip(windows, parts):
            crop = full[:, slice(*window[0]), slice(*window[1]), slice(*window[2])].reshape(part.shape)
            assert float((part - crop).abs().max()) <= 1e-6 * float(crop.abs().max())
            assert float(crop.abs().max()) > 1e-3
