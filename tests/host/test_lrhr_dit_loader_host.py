"""TurboDiTLoader in the real ComfyUI on the tiny LTX-Video DiT (width 64, 2 blocks).

Bundles (save_dit_bundle) of the tiny DiT with zero / random fusion, step-size and VSR adapters load into
core's LTXV MODEL; core KSampler and SamplerCustomAdvanced drive it; the embedded adapters are the ones used.
"""
import importlib

import pytest
import torch
from tiny_models.random_weights import randomised as _random
from turbovideo.models.dit_bundle import save_dit_bundle
from turbovideo.models.fusion_blocks import FusionAdapter, save_fusion_adapter
from turbovideo.models.step_embedder import StepSizeEmbedder, save_step_embedder
from turbovideo.models.vsr_conditioner import VSRConditioner, save_vsr_conditioner

from host import graphs
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

FROM_MODEL = "from model (TurboDiTLoader)"
TRAINED = [1.0, 0.5, 0.25, 0.125]


def pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.{name}")


def _adapter_files(folder, seed):
    """name -> written file: zero and random adapters of each kind for width 64, and mismatched ones."""
    writers = {
        "fusion_zero": lambda p: save_fusion_adapter(p, FusionAdapter(64, 64, [0, 1], num_blocks=2, mlp_ratio=1.0)),
        "fusion_random": lambda p: save_fusion_adapter(p, _random(FusionAdapter(64, 64, [0, 1], num_blocks=2,
                                                                                mlp_ratio=1.0), seed)),
        "fusion_wide": lambda p: save_fusion_adapter(p, FusionAdapter(64, 128, [0, 1], num_blocks=2)),
        "step_zero": lambda p: save_step_embedder(p, StepSizeEmbedder(64), TRAINED),
        "step_random": lambda p: save_step_embedder(p, _random(StepSizeEmbedder(64), seed + 1), TRAINED),
        "step_wide": lambda p: save_step_embedder(p, StepSizeEmbedder(128), TRAINED),
        "vsr_zero": lambda p: save_vsr_conditioner(p, VSRConditioner(64)),
        "vsr_random": lambda p: save_vsr_conditioner(p, _random(VSRConditioner(64), seed + 2)),
    }
    names = {}
    for name, write in writers.items():
        names[name] = f"ditloader_{name}.safetensors"
        write(folder / names[name])
    return names


@pytest.fixture(scope="module")
def files(comfy, tiny_models, tmp_path_factory):
    adapter_folder, dit_folder = tmp_path_factory.mktemp("ditloader_adapters"), tmp_path_factory.mktemp("ditloader")
    names = _adapter_files(adapter_folder, seed=int(torch.randint(0, 2**20, ())))
    import folder_paths

    dit = folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltxv_dit"])
    bundles = {"zero": ["fusion_zero", "step_zero", "vsr_zero"], "random": ["fusion_random", "step_random",
                                                                             "vsr_random"],
               "wide_fusion": ["fusion_wide"]}
    for bundle, parts in bundles.items():
        names[f"bundle_{bundle}"] = f"ditloader_bundle_{bundle}.safetensors"
        save_dit_bundle(dit_folder / names[f"bundle_{bundle}"], dit, [adapter_folder / names[p] for p in parts])
    comfy.add_model_folder("turbovideo", adapter_folder)
    comfy.add_model_folder("diffusion_models", dit_folder)
    names.update(dit=tiny_models["ltxv_dit"], dit_folder=dit_folder, adapter_folder=adapter_folder)
    return names


def loader(name, weight_dtype="default", int8="off", step="embedded", fusion="embedded", vsr="embedded"):
    return {"class_type": "TurboDiTLoader", "inputs": {
        "unet_name": name, "weight_dtype": weight_dtype, "int8": int8, "step_embedder": step,
        "fusion_adapter": fusion, "vsr_conditioner": vsr}}


def unet_loader(name):
    return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}


def ksampler_prompt(model_loader):
    prompt = graphs.ltxv_checkpoint_nodes(None)
    del prompt["ckpt"]
    prompt["unet"] = model_loader
    prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0], cfg=2.0)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.capture(["unet", 0], "model"))
    return prompt


def shortcut_prompt(model_loader, step_file=None):
    prompt = ksampler_prompt(model_loader)
    del prompt["sample"]
    model = ["unet", 0]
    if step_file is not None:
        prompt["shortcut"] = {"class_type": "TurboShortcutModel", "inputs": {"model": model, "adapter": step_file}}
        model = ["shortcut", 0]
    prompt["sigmas"] = {"class_type": "TurboShortcutSigmas", "inputs": {"steps": 3, "shift_mode": "manual",
                                                                         "shift": 3.0}}
    prompt["sampler"] = {"class_type": "TurboShortcutSampler", "inputs": {}}
    prompt.update(graphs.custom_sampler_nodes(model, ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    return prompt


def run(comfy, captured, prompt):
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    assert torch.isfinite(latent).all() and latent.std() > 0
    return latent


def test_lrhr_dit_loader_zero_bundle_samples_like_unetloader(comfy, files, captured, clean_load):
    plain = run(comfy, captured, ksampler_prompt(unet_loader(files["dit"])))
    bundled = run(comfy, captured, ksampler_prompt(loader(files["bundle_zero"])))
    assert type(captured["model"].model).__name__ == "LTXV"
    torch.testing.assert_close(bundled, plain, rtol=0, atol=1e-6)
    plain = run(comfy, captured, shortcut_prompt(unet_loader(files["dit"])))
    torch.testing.assert_close(run(comfy, captured, shortcut_prompt(loader(files["bundle_zero"]))), plain,
                               rtol=0, atol=1e-6)


def test_lrhr_dit_loader_embedded_step_embedder_is_the_one_used(comfy, files, captured):
    plain = run(comfy, captured, shortcut_prompt(unet_loader(files["dit"])))
    from_file = run(comfy, captured, shortcut_prompt(unet_loader(files["dit"]), files["step_random"]))
    embedded = run(comfy, captured, shortcut_prompt(loader(files["bundle_random"])))
    assert float((from_file - plain).norm() / plain.norm()) > 1e-3
    torch.testing.assert_close(embedded, from_file, rtol=0, atol=1e-6)
    ignored = run(comfy, captured, shortcut_prompt(loader(files["bundle_random"], step="none")))
    torch.testing.assert_close(ignored, plain, rtol=0, atol=1e-6)
    chosen = run(comfy, captured, shortcut_prompt(loader(files["bundle_zero"], step=files["step_random"])))
    torch.testing.assert_close(chosen, from_file, rtol=0, atol=1e-6)


def lrhr_prompt(model_loader, adapter):
    """LR pass (features of blocks 0, 1) -> TurboApplyLRFeatures -> SamplerCustomAdvanced at 2x."""
    prompt = ksampler_prompt(model_loader)
    del prompt["sample"]
    prompt["hr_latent"] = {"class_type": "EmptyLTXVLatentVideo",
                           "inputs": {"width": 128, "height": 128, "length": 9, "batch_size": 1}}
    prompt["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["sigmas"] = {"class_type": "BasicScheduler",
                        "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}}
    prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    prompt["lr_pass"] = {"class_type": "TurboLRPass", "inputs": {**prompt.pop("sample")["inputs"], "blocks": "0, 1"}}
    prompt["apply"] = {"class_type": "TurboApplyLRFeatures", "inputs": {
        "model": ["unet", 0], "lr_features": ["lr_pass", 1], "adapter": adapter, "strength": 1.0}}
    prompt["hr_guider"] = {"class_type": "BasicGuider", "inputs": {"model": ["apply", 0], "conditioning": ["pos", 0]}}
    prompt["hr"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["noise", 0], "guider": ["hr_guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
        "latent_image": ["hr_latent", 0]}}
    prompt.update(graphs.capture(["hr", 0], "latent"))
    return prompt


def test_lrhr_dit_loader_embedded_fusion_acts_like_the_same_file(comfy, files, captured):
    from_file = run(comfy, captured, lrhr_prompt(unet_loader(files["dit"]), files["fusion_random"]))
    zero = run(comfy, captured, lrhr_prompt(unet_loader(files["dit"]), files["fusion_zero"]))
    assert float((from_file - zero).norm() / zero.norm()) > 1e-2
    embedded = run(comfy, captured, lrhr_prompt(loader(files["bundle_random"]), FROM_MODEL))
    torch.testing.assert_close(embedded, from_file, rtol=0, atol=1e-6)
    chosen = run(comfy, captured, lrhr_prompt(loader(files["bundle_zero"], fusion=files["fusion_random"]),
                                              FROM_MODEL))
    torch.testing.assert_close(chosen, from_file, rtol=0, atol=1e-6)


def test_lrhr_dit_loader_attaches_the_vsr_conditioner(comfy, files, captured):
    prompt = ksampler_prompt(loader(files["bundle_random"]))
    prompt["shifted"] = {"class_type": "ModelSamplingLTXV", "inputs": {
        "model": ["unet", 0], "max_shift": 2.05, "base_shift": 0.95}}
    prompt.update(graphs.capture(["shifted", 0], "shifted"))
    run(comfy, captured, prompt)
    dit_loader = pack(comfy, "patches.dit_loader")
    expected = pack(comfy, "models.vsr_conditioner").load_vsr_conditioner(files["adapter_folder"] /
                                                                          files["vsr_random"])
    for key in ("model", "shifted"):  # the attachment survives clones made by later nodes
        conditioner, label = dit_loader.model_adapter(captured[key], "vsr_conditioner", "vsr_conditioner")
        assert label == f"{files['bundle_random']} (embedded VSR conditioner)"
        for name, value in expected.state_dict().items():
            torch.testing.assert_close(conditioner.state_dict()[name], value, rtol=0, atol=0)
    assert float(conditioner.scale) != 0.0


@pytest.mark.parametrize("weight_dtype,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16),
                                                ("fp32", torch.float32)])
def test_lrhr_dit_loader_weight_dtype_sets_the_parameter_dtype(comfy, files, captured, weight_dtype, dtype):
    latent = run(comfy, captured, ksampler_prompt(loader(files["bundle_random"], weight_dtype=weight_dtype)))
    diffusion_model = captured["model"].model.diffusion_model
    for name in ("patchify_proj", "transformer_blocks.0.attn1.to_q", "transformer_blocks.1.ff.net.2"):
        assert diffusion_model.get_submodule(name).weight.dtype == dtype, name
    assert latent.shape == (1, 128, 2, 2, 2)


def test_lrhr_dit_loader_int8_option_and_int8_file(comfy, files, captured):
    int8_files, is_int8 = pack(comfy, "patches.int8.files"), pack(comfy, "patches.int8.quantize").is_quantized
    plain = run(comfy, captured, ksampler_prompt(unet_loader(files["dit"])))
    quantized = run(comfy, captured, ksampler_prompt(loader(files["bundle_random"], int8="per_channel")))
    model = captured["model"]
    layer = model.get_model_object("diffusion_model.transformer_blocks.1.attn2.to_out.0")
    assert is_int8(layer) and layer.state_dict()["weight_scale"].shape == (64, 1)
    error = float((quantized - plain).norm() / plain.norm())
    assert 0 < error < 3e-2
    int8_name = "ditloader_int8_bundle.safetensors"
    int8_files.save_quantized(model, str(files["dit_folder"] / "ditloader_int8_plain.safetensors"))
    save_dit_bundle(files["dit_folder"] / int8_name, files["dit_folder"] / "ditloader_int8_plain.safetensors",
                    [files["adapter_folder"] / files["fusion_random"]])
    from_file = run(comfy, captured, ksampler_prompt(loader(int8_name)))
    layer = captured["model"].model.diffusion_model.transformer_blocks[1].attn2.to_out[0]
    assert is_int8(layer)  # loaded as INT8
    torch.testing.assert_close(from_file, quantized, rtol=0, atol=1e-5)
    dit_loader = pack(comfy, "patches.dit_loader")
    assert dit_loader.model_adapter(captured["model"], "fusion_blocks", "adapter")[1].startswith(int8_name)


@pytest.mark.parametrize("case,message", [
    ("wan", "unet_name: 'tiny_wan21_t2v.safetensors' holds a Wan DiT (WAN21_T2V), not an LTX-Video or LTX-2 DiT; "
            "TurboDiTLoader loads LTX-Video or LTX-2 DiTs with TurboVideo adapters. Load this file with UNETLoader"),
    ("wide_fusion", "fusion_adapter: ditloader_bundle_wide_fusion.safetensors (embedded fusion adapter) is a fusion "
                    "adapter for width 128, but the DiT in 'ditloader_bundle_wide_fusion.safetensors' has width 64; "
                    "pick the fusion adapter made for this DiT or set fusion_adapter to 'none'"),
    ("wide_step", "step_embedder: ditloader_step_wide.safetensors is a step-size adapter for width 128, but the DiT "
                  "in 'tiny_ltxv_dit.safetensors' has width 64"),
    ("not_from_loader", "adapter: 'from model' needs a fusion adapter on the MODEL, but this MODEL did not come from "
                        "TurboDiTLoader"),
    ("no_fusion", "adapter: 'from model' needs a fusion adapter on the MODEL, but TurboDiTLoader attached no fusion "
                  "adapter to it"),
    ("chained_shortcut", "model: already has a step-size adapter (TurboShortcutModel)"),
])
def test_lrhr_dit_loader_errors_name_the_input_and_the_fix(comfy, tiny_models, files, captured, case, message):
    prompts = {
        "wan": lambda: ksampler_prompt(loader(tiny_models["wan_dit"])),
        "wide_fusion": lambda: ksampler_prompt(loader(files["bundle_wide_fusion"])),
        "wide_step": lambda: ksampler_prompt(loader(files["dit"], step=files["step_wide"])),
        "not_from_loader": lambda: lrhr_prompt(unet_loader(files["dit"]), FROM_MODEL),
        "no_fusion": lambda: lrhr_prompt(loader(files["bundle_random"], fusion="none"), FROM_MODEL),
        "chained_shortcut": lambda: shortcut_prompt(loader(files["bundle_random"]), files["step_zero"]),
    }
    result = comfy.run(prompts[case]())
    assert not result.ok
    assert message in result.execution_error["exception_message"], result.describe()


def test_lrhr_dit_loader_refuses_a_wrong_adapter_file_at_queue_time(comfy, files):
    result = comfy.run(ksampler_prompt(loader(files["dit"], vsr=files["fusion_random"])))
    assert not result.ok and result.execution_error is None
    assert "vsr_conditioner: " in str(result.node_errors) and "is not a VSR conditioner" in str(result.node_errors)


def test_lrhr_dit_loader_fusion_from_model_in_the_one_node_sampler(comfy, files, captured):
    def prompt(model_loader, adapter):
        built = ksampler_prompt(model_loader)
        del built["sample"]
        built["sigmas"] = {"class_type": "BasicScheduler",
                           "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 2, "denoise": 1.0}}
        built["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
        built["lrhr"] = {"class_type": "TurboLRHRSampler", "inputs": {
            "model": ["unet", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 2.0,
            "sampler": ["sampler", 0], "lr_sigmas": ["sigmas", 0], "hr_sigmas": ["sigmas", 0],
            "lr_latent": ["latent", 0], "noise_seed": 3, "adapter": adapter, "strength": 1.0, "scale": 2.0}}
        built.update(graphs.capture(["lrhr", 0], "latent"))
        return built

    from_file = run(comfy, captured, prompt(unet_loader(files["dit"]), files["fusion_random"]))
    embedded = run(comfy, captured, prompt(loader(files["bundle_random"]), FROM_MODEL))
    assert embedded.shape == (1, 128, 2, 4, 4)
    torch.testing.assert_close(embedded, from_file, rtol=0, atol=1e-6)


def vsr_prompt(tiny_models, model_loader, conditioner):
    video = torch.rand(1, 3, 3, 4, 4, generator=torch.Generator().manual_seed(11))
    SOURCES["dit_loader_video"] = torch.nn.functional.interpolate(video, size=(9, 64, 64), mode="trilinear")[0] \
        .permute(1, 2, 3, 0).contiguous()
    inputs = {"model": ["unet", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 2,
              "strength": 0.5, "seed": 3, "resize_method": "bicubic", "color_correction": "none",
              "factorized": True, "tile_size": 2, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
              "segment_overlap": 2, "weights": "cosine", "tile_batch": 1, "vsr_conditioner": conditioner, "cfg": 1.0}
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
            "unet": model_loader,
            "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "dit_loader_video"}},
            "vsr": {"class_type": "TurboVSRUpscale", "inputs": inputs},
            "cap": {"class_type": "TurboTestCapture", "inputs": {"value": ["vsr", 0], "key": "frames"}}}


def test_lrhr_dit_loader_vsr_upscale_uses_the_embedded_conditioner(comfy, files, captured, tiny_models):
    def frames(prompt):
        captured.clear()
        result = comfy.run(prompt)
        assert result.ok, result.describe()
        return captured["frames"]

    embedded = frames(vsr_prompt(tiny_models, loader(files["bundle_random"]), FROM_MODEL))
    as_file = frames(vsr_prompt(tiny_models, loader(files["bundle_random"], vsr="none"), files["vsr_random"]))
    training_free = frames(vsr_prompt(tiny_models, loader(files["bundle_random"]), "none (training-free SDEdit)"))
    torch.testing.assert_close(embedded, as_file, rtol=0, atol=1e-6)
    assert (embedded - training_free).abs().max() > 1e-3
    result = comfy.run(vsr_prompt(tiny_models, loader(files["bundle_random"], vsr="none"), FROM_MODEL))
    assert not result.ok and "vsr_conditioner: 'from model' needs a VSR conditioner" in result.describe()
