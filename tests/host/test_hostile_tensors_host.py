"""Hostile tensors (issue 18, finding 2 and the VAE 'Also' items): NaN / Inf / wrong-dtype / wrong-layout IMAGE
and LATENT inputs are refused at the node naming the input; a model that starts returning NaN stops the
sampling at that step, naming it and the likely cause; a NaN never reaches an MP4 (no file is left)."""
import pytest
import torch

from host import graphs, hostile_nodes
from host.hostile import Case, assert_clear_error, nan_patch, record, smooth_frames, vsr_prompt
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

SILENT, UNCLEAR = "silent wrong output", "unclear error"


@pytest.fixture(scope="module")
def host(comfy, tiny_models):
    comfy.register_test_nodes(hostile_nodes.NODES)
    return comfy


def _ckpt(tiny_models):
    return {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}}


def _image_source():
    return {"class_type": "TurboTestImageSource", "inputs": {"key": "hostile_pixels"}}


def chunk_widgets():
    return {"memory_budget_mb": 0, "chunk_frames": 0, "chunk_overlap": 24, "tile_size": 0, "tile_overlap": 64}


def encode(tiny_models, pixels):
    SOURCES["hostile_pixels"] = pixels
    return {"ckpt": _ckpt(tiny_models), "src": _image_source(),
            "node": {"class_type": "TurboVAEEncode", "inputs": {"pixels": ["src", 0], "vae": ["ckpt", 2],
                                                                "frame_count": "pad", **chunk_widgets()}},
            **graphs.capture(["node", 0], "latent")}


def decode(tiny_models, latent, node="TurboVAEDecode"):
    SOURCES["hostile_latent"] = latent
    inputs = {"samples": ["lat", 0], "vae": ["ckpt", 2], **chunk_widgets()}
    if node == "TurboVAEDecodeToVideo":
        inputs.update(frame_rate=24.0, crf=19)
    prompt = {"ckpt": _ckpt(tiny_models), "node": {"class_type": node, "inputs": inputs},
              "lat": {"class_type": "TurboTestLatentSource", "inputs": {"key": "hostile_latent"}}}
    if node == "TurboVAEDecode":
        prompt.update(graphs.capture(["node", 0], "images"))
    return prompt


def preview(tiny_models, images):
    SOURCES["hostile_pixels"] = images
    return {"ckpt": _ckpt(tiny_models), "src": _image_source(),
            "tiled": {"class_type": "TurboTiledModel", "inputs": {
                "model": ["ckpt", 0], "tile_size": 2, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
                "segment_overlap": 2, "weights": "cosine", "tile_batch": 1}},
            "node": {"class_type": "TurboTileLayoutPreview", "inputs": {"model": ["tiled", 0], "vae": ["ckpt", 2],
                                                                        "images": ["src", 0]}},
            **graphs.capture(["node", 0], "layout")}


def guidance(tiny_models, latent):
    SOURCES["hostile_latent"] = latent
    return {"lat": {"class_type": "TurboTestLatentSource", "inputs": {"key": "hostile_latent"}},
            "sig": {"class_type": "TurboShortcutSigmas", "inputs": {"steps": 2, "shift_mode": "manual", "shift": 1.0}},
            "node": {"class_type": "TurboLRLatentGuidance", "inputs": {
                "lr_latent": ["lat", 0], "sigmas": ["sig", 0], "noise_seed": 0, "start_step": 1, "scale": 2.0,
                "adain_factor": 1.0}},
            **graphs.capture(["node", 0], "latent")}


VIDEO = smooth_frames(9, 64, 64, seed=3)
LATENT = torch.randn(1, 128, 2, 2, 2)
INPUT_CASES = [  # (case, prompt builder, tensor)
    (Case("encode-nan-2x2", SILENT, ("pixels", "NaN or infinite pixel values", "frame 0")), encode, nan_patch(VIDEO)),
    (Case("encode-inf-2x2", SILENT, ("pixels", "NaN or infinite")), encode, nan_patch(VIDEO, float("inf"))),
    (Case("encode-0-frames", UNCLEAR, ("pixels", "has no frames")), encode, VIDEO[:0]),
    (Case("encode-1x1-px", UNCLEAR, ("pixels", "1x1 px is smaller than 32x32 px", "one latent cell")), encode,
     VIDEO[:, :1, :1]),
    (Case("encode-2-channels", UNCLEAR, ("pixels", "2 channels", "RGB")), encode, VIDEO[..., :2]),
    (Case("encode-uint8", SILENT, ("pixels", "must be floats in \\[0, 1\\]", "torch.uint8")), encode,
     (VIDEO * 255).to(torch.uint8)),
    (Case("vsr-nan-2x2", SILENT, ("images", "NaN or infinite pixel values")), None,
     nan_patch(smooth_frames(1, 32, 32, 4))),
    (Case("vsr-0-frames", UNCLEAR, ("images", "has no frames")), None, smooth_frames(1, 32, 32, 4)[:0]),
    (Case("vsr-2-channels", UNCLEAR, ("images", "2 channels")), None, smooth_frames(1, 32, 32, 4)[..., :2]),
    (Case("decode-nan", SILENT, ("samples", "NaN or infinite", "before decoding")), decode,
     LATENT.clone().index_fill_(2, torch.tensor([1]), float("nan"))),
    (Case("decode-image-latent", UNCLEAR, ("samples", "an image latent", "VAEDecode")), decode, LATENT[:, :, 0]),
    (Case("decode-0-frames", UNCLEAR, ("samples", "every size >= 1")), decode, LATENT[:, :, :0]),
    (Case("decode-int-latent", SILENT, ("samples", "must be floats")), decode, LATENT.to(torch.int32)),
    (Case("decode-wrong-channels", UNCLEAR, ("samples", "16 latent channels but this VAE has 128")), decode,
     torch.randn(1, 16, 2, 2, 2)),
    (Case("preview-nan", SILENT, ("images", "NaN or infinite")), preview, nan_patch(smooth_frames(9, 64, 64, 5))),
    (Case("guidance-image-latent", UNCLEAR, ("lr_latent", "an image latent")), guidance, LATENT[:, :, 0]),
]


@pytest.mark.parametrize("index", range(len(INPUT_CASES)), ids=[case.id for case, _, _ in INPUT_CASES])
def test_bad_image_and_latent_inputs_are_refused_naming_the_input(host, tiny_models, index):
    case, build, tensor = INPUT_CASES[index]
    prompt = vsr_prompt(tiny_models, frames=tensor) if build is None else build(tiny_models, tensor)
    assert_clear_error(host, prompt, case)


def test_an_audio_video_latent_with_a_nan_audio_stream_is_refused_naming_the_stream(host, tiny_models):
    """An LTX-2 audio-video LATENT (a NestedTensor of video, audio): every stream's values are checked."""
    from comfy.nested_tensor import NestedTensor

    audio = torch.randn(1, 8, 2, 16)
    audio[0, 3, 1, 5] = float("nan")
    case = Case("guidance-av-nan-audio", SILENT, ("lr_latent \\(stream 1, audio\\)", "NaN or infinite"))
    assert_clear_error(host, guidance(tiny_models, NestedTensor([LATENT.clone(), audio])), case)


def _mp4s(comfy) -> set:
    return set((comfy.work_dir / "temp").rglob("*.mp4")) | set((comfy.work_dir / "temp").rglob("*.partial"))


def test_a_nan_latent_never_reaches_an_mp4(host, tiny_models):
    before = _mp4s(host)
    latent = LATENT.clone()
    latent[0, 5, 1, 0, 1] = float("nan")
    case = Case("decode-to-video-nan", SILENT, ("samples", "NaN or infinite"))
    assert_clear_error(host, decode(tiny_models, latent, "TurboVAEDecodeToVideo"), case)
    case = Case("decode-to-video-image-latent", UNCLEAR, ("samples", "an image latent"))
    assert_clear_error(host, decode(tiny_models, LATENT[:, :, 0], "TurboVAEDecodeToVideo"), case)
    assert _mp4s(host) == before, "a failed decode left a video file"


def test_grey_frames_encode_as_their_rgb(host, tiny_models, captured):
    """A 1-channel IMAGE has one meaning (grey): the result equals the RGB encode of the same frames."""
    grey = VIDEO[..., :1].contiguous()
    out = {}
    for name, pixels in (("grey", grey), ("rgb", grey.expand(-1, -1, -1, 3).contiguous())):
        captured.clear()
        result = host.run(encode(tiny_models, pixels))
        assert result.ok, result.describe()
        out[name] = captured["latent"]["samples"]
    assert torch.isfinite(out["rgb"]).all() and out["rgb"].std() > 0
    torch.testing.assert_close(out["grey"], out["rgb"], atol=0, rtol=0)
    record(Case("encode-1-channel", UNCLEAR, ()), "correct result")


# ---- a model that starts returning NaN ----------------------------------------------------------------

def sampling(tiny_models, sampler, patch=None, from_call=2, decode_to=None, nan_latent=False):
    """Tiny LTX DiT -> TurboHostileNaNModel -> [a pack patch] -> `sampler` over 3 steps."""
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=64)
    prompt["nan"] = {"class_type": "TurboHostileNaNModel", "inputs": {"model": ["ckpt", 0], "from_call": from_call}}
    model = ["nan", 0]
    if patch == "tiled":
        prompt["patch"] = {"class_type": "TurboTiledModel", "inputs": {
            "model": model, "tile_size": 8, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
            "segment_overlap": 2, "weights": "cosine", "tile_batch": 1}}
        model = ["patch", 0]
    elif patch == "attention":
        prompt["patch"] = {"class_type": "TurboAttention", "inputs": {"model": model, "backend": "sage", "topk": 0.1}}
        model = ["patch", 0]
    if nan_latent:
        SOURCES["hostile_latent"] = torch.full((1, 128, 2, 2, 2), float("nan"))
        prompt["latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "hostile_latent"}}
    if sampler == "ksampler":
        prompt["sample"] = graphs.ksampler(model, ["latent", 0], steps=3)
    else:
        prompt["sampler"] = ({"class_type": "TurboRCMSampler", "inputs": {"mode": "ode"}} if sampler == "rcm" else
                             {"class_type": "TurboShortcutSampler", "inputs": {}})
        prompt["sigmas"] = {"class_type": "TurboShortcutSigmas", "inputs": {"steps": 3, "shift_mode": "manual",
                                                                             "shift": 1.0}}
        prompt.update(graphs.custom_sampler_nodes(model, ["latent", 0], ["sampler", 0], ["sigmas", 0]))
    if decode_to is not None:
        prompt["decode"] = {"class_type": decode_to, "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2],
                                                                "frame_rate": 24.0, "crf": 19, **chunk_widgets()}}
    else:
        prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


STEP_CASES = [
    (Case("guard-tiled-ksampler", SILENT, ("sampling stopped at step 2 of 3", "NaN or infinite values from a finite "
                                                                              "latent", "fp16 overflow")),
     dict(sampler="ksampler", patch="tiled")),
    (Case("guard-attention-ksampler", SILENT, ("sampling stopped at step 1 of 3", "TurboAttention 'sage'")),
     dict(sampler="ksampler", patch="attention", from_call=1)),
    (Case("guard-input-latent-nan", SILENT, ("sampling stopped at step 1 of 3", "latent going into the model already "
                                                                                "held NaN")),
     dict(sampler="ksampler", patch="tiled", from_call=100, nan_latent=True)),
    (Case("rcm-sampler-plain-model", SILENT, ("sampling stopped at step 2 of 3", "from a finite latent")),
     dict(sampler="rcm")),
    (Case("shortcut-sampler-plain-model", SILENT, ("sampling stopped at step 3 of 3",)),
     dict(sampler="shortcut", from_call=3)),
    (Case("plain-ksampler-then-decode-to-video", SILENT, ("samples", "NaN or infinite", "diverged")),
     dict(sampler="ksampler", decode_to="TurboVAEDecodeToVideo")),
]


@pytest.mark.parametrize("index", range(len(STEP_CASES)), ids=[case.id for case, _ in STEP_CASES])
def test_sampling_stops_at_the_first_non_finite_model_output(host, tiny_models, index):
    case, options = STEP_CASES[index]
    before = _mp4s(host)
    assert_clear_error(host, sampling(tiny_models, **options), case)
    assert _mp4s(host) == before
