"""Out-of-range and wrong-choice widget values (issue 18, findings 3 and 5) refused by ComfyUI's own validation
on both hosts, naming the input: also on the nodes whose validate_inputs does cross-input checks (core skips
its schema checks for the inputs validate_inputs names: nodes/schema_checks.py puts them back), for values
that arrive through a link (checked when the node runs), and for options this machine cannot run.
"""
import importlib

import pytest
import torch

from host import graphs
from host.hostile import Case, assert_clear_error, lrhr_prompt, vsr_prompt
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

RANGE = "out of range"
BAD_CHOICE = "not one of|not in"


def _unet(tiny_models):
    return {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_models["ltxv_dit"], "weight_dtype": "default"}}


def tiled(tiny_models, **inputs):
    widgets = {"model": ["unet", 0], "tile_size": 4, "memory_budget_mb": 0, "tile_overlap": 2, "segment_length": 0,
               "segment_overlap": 2, "weights": "cosine", "tile_batch": 1, **inputs}
    return {"unet": _unet(tiny_models), "node": {"class_type": "TurboTiledModel", "inputs": widgets},
            **graphs.capture(["node", 0], "model")}


def attention(tiny_models, **inputs):
    widgets = {"model": ["unet", 0], "backend": "sage", "topk": 0.1, **inputs}
    return {"unet": _unet(tiny_models), "node": {"class_type": "TurboAttention", "inputs": widgets},
            **graphs.capture(["node", 0], "model")}


def quantize(tiny_models, **inputs):
    widgets = {"model": ["unet", 0], "layers": "all", "granularity": "per_channel", "backend": "auto", **inputs}
    return {"unet": _unet(tiny_models), "node": {"class_type": "TurboQuantizeINT8", "inputs": widgets},
            **graphs.capture(["node", 0], "model")}


def dit_loader(tiny_models, **inputs):
    widgets = {"unet_name": tiny_models["ltxv_dit"], "weight_dtype": "default", "int8": "off",
               "step_embedder": "embedded", "fusion_adapter": "embedded", "vsr_conditioner": "embedded", **inputs}
    return {"node": {"class_type": "TurboDiTLoader", "inputs": widgets}, **graphs.capture(["node", 0], "model")}


def decode_to_video(tiny_models, **inputs):
    SOURCES["hostile_latent"] = torch.randn(1, 128, 2, 2, 2)
    widgets = {"samples": ["lat", 0], "vae": ["ckpt", 2], "frame_rate": 24.0, "crf": 19, "memory_budget_mb": 0,
               "chunk_frames": 0, "chunk_overlap": 24, "tile_size": 0, "tile_overlap": 64, **inputs}
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
            "lat": {"class_type": "TurboTestLatentSource", "inputs": {"key": "hostile_latent"}},
            "node": {"class_type": "TurboVAEDecodeToVideo", "inputs": widgets}}


def encode(tiny_models, **inputs):
    SOURCES["hostile_pixels"] = torch.rand(9, 64, 64, 3)
    widgets = {"pixels": ["src", 0], "vae": ["ckpt", 2], "frame_count": "error", "memory_budget_mb": 0,
               "chunk_frames": 0, "chunk_overlap": 24, "tile_size": 0, "tile_overlap": 64, **inputs}
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
            "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "hostile_pixels"}},
            "node": {"class_type": "TurboVAEEncode", "inputs": widgets}, **graphs.capture(["node", 0], "latent")}


def rcm_sigmas(tiny_models, **inputs):
    widgets = {"steps": 4, "sigma_max": 80.0, "mid_timesteps": "default", **inputs}
    return {"node": {"class_type": "TurboRCMSigmas", "inputs": widgets}, **graphs.capture(["node", 0], "sigmas")}


def save_quantized(tiny_models, **inputs):
    prompt = quantize(tiny_models)
    del prompt["capture_model"]
    prompt["save"] = {"class_type": "TurboSaveQuantized", "inputs": {"model": ["node", 0],
                                                                      "filename_prefix": "hostile/int8", **inputs}}
    return prompt


def vsr_video(tiny_models, **inputs):
    return vsr_prompt(tiny_models, node="TurboVSRUpscaleToVideo", **inputs)


# (builder, input, value, words the error must hold besides the input name)
CASES = [
    (vsr_prompt, "scale", 100.0, "bigger than max|above the maximum"), (vsr_prompt, "scale", 0.0, "smaller than min"),
    (vsr_prompt, "cfg", -5.0, "smaller than min"), (vsr_prompt, "memory_budget_mb", -256, "smaller than min"),
    (vsr_prompt, "tile_batch", 0, "smaller than min"), (vsr_prompt, "weights", "bogus", BAD_CHOICE),
    (vsr_prompt, "steps", 0, "smaller than min"), (vsr_prompt, "strength", 0.0, "smaller than min"),
    (vsr_prompt, "resize_method", "cubic", BAD_CHOICE), (vsr_prompt, "color_correction", "magic", BAD_CHOICE),
    (vsr_prompt, "segment_overlap", 1, "below the minimum 2"), (vsr_prompt, "tile_size", -1, "below the minimum 0"),
    (vsr_prompt, "tile_overlap", 2000, "above the maximum 1023"),
    (vsr_video, "frame_rate", 0.0, "smaller than min"), (vsr_video, "crf", 99, "bigger than max"),
    (vsr_video, "scale", 100.0, "bigger than max"),
    (tiled, "weights", "bogus", BAD_CHOICE), (tiled, "tile_batch", 0, "smaller than min"),
    (tiled, "memory_budget_mb", -256, "smaller than min"), (tiled, "tile_size", 2000, "above the maximum 1024"),
    (tiled, "segment_overlap", 1, "below the minimum 2"), (tiled, "tile_overlap", -1, "below the minimum 0"),
    (dit_loader, "weight_dtype", "fp4", BAD_CHOICE), (dit_loader, "int8", "yes", BAD_CHOICE),
    (attention, "topk", 5.0, "bigger than max"), (attention, "topk", 0.0, "smaller than min"),
    (attention, "backend", "flash", BAD_CHOICE), (quantize, "backend", "cuda", BAD_CHOICE),
    (quantize, "granularity", "per_tensor", BAD_CHOICE),
    (decode_to_video, "frame_rate", 0.0, "smaller than min"), (decode_to_video, "crf", 99, "bigger than max"),
    (decode_to_video, "memory_budget_mb", -1, "smaller than min"),
    (encode, "frame_count", "stretch", BAD_CHOICE), (encode, "chunk_frames", -1, "smaller than min"),
    (rcm_sigmas, "steps", 9, "bigger than max"), (rcm_sigmas, "sigma_max", 0.0, "smaller than min"),
    (lrhr_prompt, "scale", 10.0, "bigger than max"), (lrhr_prompt, "cfg", -1.0, "smaller than min"),
]
RANGE_CASES = [Case(f"{build.__name__}-{name}={value}", RANGE, (name, words)) for build, name, value, words in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.id for case in RANGE_CASES])
def test_out_of_range_values_are_refused_at_validation_naming_the_input(comfy, tiny_models, index):
    build, name, value, _ = CASES[index]
    text = assert_clear_error(comfy, build(tiny_models, **{name: value}), RANGE_CASES[index])
    assert "Prompt outputs failed validation" in text or "validation" in text.lower(), text


CROSS_CASES = [
    (Case("tiled-overlap-not-below-tile", RANGE, ("tile_overlap", "must be smaller than tile_size")),
     tiled, {"tile_size": 4, "tile_overlap": 4}),
    (Case("tiled-segment-overlap-not-below-length", RANGE, ("segment_overlap", "smaller than segment_length")),
     tiled, {"segment_length": 3, "segment_overlap": 3}),
    (Case("vsr-overlap-not-below-tile", RANGE, ("tile_overlap", "must be smaller than tile_size")),
     vsr_prompt, {"tile_size": 2, "tile_overlap": 2}),
    (Case("attention-proj_l-without-sla", RANGE, ("proj_l", "only the sla and sagesla backends")),
     attention, {"backend": "sage", "proj_l": "missing.safetensors"}),
    (Case("int8-triton-without-cuda", RANGE, ("backend", "triton needs a CUDA GPU", "use auto")),
     quantize, {"backend": "triton"}),
    (Case("save-empty-prefix", RANGE, ("filename_prefix", "has no file name")), save_quantized,
     {"filename_prefix": ""}),
    (Case("save-folder-only-prefix", RANGE, ("filename_prefix", "has no file name")), save_quantized,
     {"filename_prefix": "diffusion_models/"}),
    (Case("save-hidden-prefix", RANGE, ("filename_prefix", "hidden file")), save_quantized,
     {"filename_prefix": "diffusion_models/.int8"}),
    (Case("dit-loader-missing-file", RANGE, ("unet_name", "put the DiT there and refresh")), dit_loader,
     {"unet_name": "nope.safetensors"}),
]


@pytest.mark.parametrize("index", range(len(CROSS_CASES)), ids=[case.id for case, _, _ in CROSS_CASES])
def test_checks_the_schema_cannot_express_are_validation_errors(comfy, tiny_models, index):
    case, build, inputs = CROSS_CASES[index]
    management = importlib.import_module("comfy.model_management")
    if case.id == "int8-triton-without-cuda" and management.get_torch_device().type == "cuda":
        pytest.skip("this ComfyUI runs models on CUDA: triton is a valid choice here")
    assert_clear_error(comfy, build(tiny_models, **inputs), case)


def test_a_linked_value_out_of_range_is_refused_when_the_node_runs(comfy, tiny_models):
    """A value through a link is None to core's validation; the node checks it before any work."""
    prompt = vsr_prompt(tiny_models, scale=["big", 0])
    prompt["big"] = {"class_type": "PrimitiveFloat", "inputs": {"value": 100.0}}
    case = Case("vsr-linked-scale=100", RANGE, ("scale: 100.0 is above the maximum 8.0",))
    assert_clear_error(comfy, prompt, case)
    prompt = tiled(tiny_models, tile_batch=["zero", 0])
    prompt["zero"] = {"class_type": "PrimitiveInt", "inputs": {"value": 0}}
    assert_clear_error(comfy, prompt, Case("tiled-linked-tile_batch=0", RANGE, ("tile_batch: 0 is below",)))
