"""Each model family runs a full core graph on its tiny checkpoint inside the real ComfyUI."""
import pytest
import torch

from host import graphs

pytestmark = pytest.mark.host


def _assert_video(images, frames, size):
    assert images.shape == (frames, size, size, 3), images.shape
    assert torch.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 1e-4, "decoded frames are constant: weights were not loaded"


def test_ltxv_checkpoint_ksampler_decode(comfy, tiny_models, captured, clean_load):
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=64)
    prompt["sample"] = graphs.ksampler(["ckpt", 0], ["latent", 0])
    prompt.update(graphs.decode_and_capture(["ckpt", 2], ["sample", 0]))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    _assert_video(captured["images"], frames=9, size=64)


def test_ltxv_unet_loader_sampler_custom_advanced(comfy, tiny_models, captured, clean_load):
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=17, size=64)
    prompt["unet"] = {"class_type": "UNETLoader",
                      "inputs": {"unet_name": tiny_models["ltxv_dit"], "weight_dtype": "default"}}
    prompt["select"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["sched"] = {"class_type": "BasicScheduler",
                       "inputs": {"model": ["unet", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}}
    prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["select", 0], ["sched", 0]))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.decode_and_capture(["ckpt", 2], ["sample", 0]))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    assert latent.shape == (1, 128, 3, 2, 2)
    assert torch.isfinite(latent).all()
    _assert_video(captured["images"], frames=17, size=64)


def test_wan_unet_vae_loaders_ksampler_decode(comfy, tiny_models, captured, clean_load):
    prompt = graphs.wan_nodes(tiny_models["wan_dit"], tiny_models["wan_vae"], frames=5, size=32)
    prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0], steps=2)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.decode_and_capture(["vae", 0], ["sample", 0]))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    assert latent.shape == (1, 16, 2, 4, 4)
    assert torch.isfinite(latent).all() and latent.std() > 0
    _assert_video(captured["images"], frames=5, size=32)


def test_validation_errors_are_reported(comfy, tiny_models):
    prompt = graphs.wan_nodes("no_such_model.safetensors", tiny_models["wan_vae"])
    prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0])
    prompt.update(graphs.capture(["sample", 0], "latent"))
    result = comfy.run(prompt)
    assert not result.ok
    assert "unet" in result.node_errors, result.describe()
