"""TurboDiTLoader on LTX-2 student bundles: the tiny LTX-2 DiT (19B layout, width 16, 2 blocks, its config metadata)
with zero / random fusion, step-size and VSR adapters in one file loads into core's LTXAV MODEL; the embedded
adapters are the ones used, video-only and with an audio latent; adapters of another width are refused.
"""
import pytest
import torch
from tiny_models.random_weights import randomised as _random
from turbovideo.models.dit_bundle import save_dit_bundle
from turbovideo.models.fusion_blocks import FusionAdapter, save_fusion_adapter
from turbovideo.models.step_embedder import StepSizeEmbedder, save_step_embedder
from turbovideo.models.vsr_conditioner import VSRConditioner, save_vsr_conditioner

from host import graphs
from host.test_lrhr_dit_loader_host import FROM_MODEL, TRAINED, loader, pack, unet_loader

pytestmark = pytest.mark.host

WIDTH = 16


@pytest.fixture(scope="module")
def files(comfy, tiny_models, tmp_path_factory):
    import folder_paths

    adapters, dits = tmp_path_factory.mktemp("ltx2_bundle_adapters"), tmp_path_factory.mktemp("ltx2_bundles")
    writers = {
        "fusion_zero": lambda p: save_fusion_adapter(p, FusionAdapter(WIDTH, WIDTH, [0, 1], num_blocks=2)),
        "fusion_random": lambda p: save_fusion_adapter(p, _random(FusionAdapter(WIDTH, WIDTH, [0, 1], num_blocks=2,
                                                                                mlp_ratio=1.0), 5)),
        "fusion_ltxv": lambda p: save_fusion_adapter(p, FusionAdapter(64, 64, [0, 1], num_blocks=2)),
        "step_zero": lambda p: save_step_embedder(p, StepSizeEmbedder(WIDTH), TRAINED),
        "step_random": lambda p: save_step_embedder(p, _random(StepSizeEmbedder(WIDTH), 6), TRAINED),
        "vsr_random": lambda p: save_vsr_conditioner(p, _random(VSRConditioner(WIDTH), 7)),
    }
    names = {}
    for name, write in writers.items():
        names[name] = f"ltx2_bundle_{name}.safetensors"
        write(adapters / names[name])
    dit = folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltx2_dit"])
    for bundle, parts in {"zero": ["fusion_zero", "step_zero"], "random": ["fusion_random", "step_random",
                                                                            "vsr_random"],
                          "ltxv_fusion": ["fusion_ltxv"]}.items():
        names[f"bundle_{bundle}"] = f"ltx2_bundle_{bundle}_dit.safetensors"
        save_dit_bundle(dits / names[f"bundle_{bundle}"], dit, [adapters / names[p] for p in parts])
    comfy.add_model_folder("turbovideo", adapters)
    comfy.add_model_folder("diffusion_models", dits)
    return {**names, "dit": tiny_models["ltx2_dit"]}


def sample_prompt(model_loader, audio=False, shortcut=False):
    """KSampler (cfg 2), or with shortcut=True the shortcut sampler, on the tiny LTX-2 model."""
    prompt = graphs.ltx2_nodes(None, audio=audio)
    prompt["unet"] = model_loader
    if shortcut:
        prompt["sigmas"] = {"class_type": "TurboShortcutSigmas",
                            "inputs": {"steps": 3, "shift_mode": "manual", "shift": 3.0}}
        prompt["sampler"] = {"class_type": "TurboShortcutSampler", "inputs": {}}
        prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    else:
        prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0], cfg=2.0)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.capture(["unet", 0], "model"))
    return prompt


def lrhr_prompt(model_loader, adapter, audio=True):
    prompt = sample_prompt(model_loader, audio)
    del prompt["sample"]
    prompt["sigmas"] = {"class_type": "BasicScheduler",
                        "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 2, "denoise": 1.0}}
    prompt["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["sample"] = {"class_type": "TurboLRHRSampler", "inputs": {
        "model": ["unet", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 2.0, "sampler": ["sampler", 0],
        "lr_sigmas": ["sigmas", 0], "hr_sigmas": ["sigmas", 0], "lr_latent": ["latent", 0], "noise_seed": 3,
        "adapter": adapter, "strength": 1.0, "scale": 2.0}}
    return prompt


def run(comfy, captured, prompt):
    """The sampled latent; an audio-video one with video and audio in one vector."""
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    if getattr(latent, "is_nested", False):
        latent = torch.cat([part.flatten() for part in latent.unbind()])
    assert torch.isfinite(latent).all() and latent.std() > 0
    return latent


@pytest.mark.parametrize("audio", [False, True])
def test_ltx2_bundle_samples_like_unetloader(comfy, files, captured, clean_load, audio):
    plain = run(comfy, captured, sample_prompt(unet_loader(files["dit"]), audio))
    bundled = run(comfy, captured, sample_prompt(loader(files["bundle_zero"]), audio))
    assert type(captured["model"].model).__name__ == "LTXAV"
    torch.testing.assert_close(bundled, plain, rtol=0, atol=1e-6)


def test_ltx2_bundle_embedded_step_embedder_is_the_one_used(comfy, files, captured):
    plain = run(comfy, captured, sample_prompt(unet_loader(files["dit"]), shortcut=True))
    prompt = sample_prompt(unet_loader(files["dit"]), shortcut=True)
    prompt["shortcut"] = {"class_type": "TurboShortcutModel",
                          "inputs": {"model": ["unet", 0], "adapter": files["step_random"]}}
    prompt["guider"]["inputs"]["model"] = ["shortcut", 0]
    from_file = run(comfy, captured, prompt)
    embedded = run(comfy, captured, sample_prompt(loader(files["bundle_random"]), shortcut=True))
    assert float((from_file - plain).norm() / plain.norm()) > 1e-3
    torch.testing.assert_close(embedded, from_file, rtol=0, atol=1e-6)


def test_ltx2_bundle_embedded_fusion_drives_the_lrhr_sampler(comfy, files, captured):
    from_file = run(comfy, captured, lrhr_prompt(unet_loader(files["dit"]), files["fusion_random"]))
    zero = run(comfy, captured, lrhr_prompt(unet_loader(files["dit"]), files["fusion_zero"]))
    embedded = run(comfy, captured, lrhr_prompt(loader(files["bundle_random"]), FROM_MODEL))
    assert float((from_file - zero).norm() / zero.norm()) > 1e-2
    torch.testing.assert_close(embedded, from_file, rtol=0, atol=1e-6)


def test_ltx2_bundle_attaches_the_vsr_conditioner_and_int8_option(comfy, files, captured):
    plain = run(comfy, captured, sample_prompt(unet_loader(files["dit"]), audio=True))
    quantized = run(comfy, captured, sample_prompt(loader(files["bundle_random"], int8="per_channel"), audio=True))
    model, int8_quantize = captured["model"], pack(comfy, "patches.int8.quantize")
    for path in ("transformer_blocks.1.audio_ff.net.2", "transformer_blocks.0.video_to_audio_attn.to_q"):
        assert int8_quantize.is_quantized(model.get_model_object(f"diffusion_model.{path}")), path
    assert 0 < float((quantized - plain).norm() / plain.norm()) < 3e-2
    conditioner, label = pack(comfy, "patches.dit_loader").model_adapter(model, "vsr_conditioner", "vsr_conditioner")
    assert conditioner.width == WIDTH and label.startswith(files["bundle_random"])


@pytest.mark.parametrize("case,message", [
    ("ltxv_fusion", "fusion_adapter: ltx2_bundle_ltxv_fusion_dit.safetensors (embedded fusion adapter) is a fusion "
                    "adapter for width 64, but the DiT in 'ltx2_bundle_ltxv_fusion_dit.safetensors' has width 16; "
                    "pick the fusion adapter made for this DiT or set fusion_adapter to 'none'"),
    ("wan", "unet_name: 'tiny_wan21_t2v.safetensors' holds a Wan DiT (WAN21_T2V), not an LTX-Video or LTX-2 DiT"),
])
def test_ltx2_bundle_errors_name_the_input(comfy, tiny_models, files, captured, case, message):
    name = tiny_models["wan_dit"] if case == "wan" else files["bundle_ltxv_fusion"]
    result = comfy.run(sample_prompt(loader(name)))
    assert not result.ok
    assert message in result.execution_error["exception_message"], result.describe()
