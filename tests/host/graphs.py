"""API-format prompts for the tiny models, built from small pieces so tests can swap one node."""

import math

import torch


def conditioning_node(seed=0, attention_mask=True):
    """TurboTestConditioning: 8 random T5-width tokens (with a mask for LTX-Video, none for Wan)."""
    return {"class_type": "TurboTestConditioning",
            "inputs": {"tokens": 8, "width": 4096, "seed": seed, "attention_mask": attention_mask}}


def ltxv_checkpoint_nodes(checkpoint, frames=9, size=64, text_seed=0):
    """Loader, test conditioning and an empty LTX latent: ids 'ckpt', 'pos', 'neg', 'latent'."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": conditioning_node(text_seed, True),
        "neg": conditioning_node(text_seed + 1, True),
        "latent": {"class_type": "EmptyLTXVLatentVideo",
                   "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
    }


def wan_nodes(dit, vae, frames=5, size=32, text_seed=0):
    """UNETLoader + VAELoader, test conditioning and an empty Wan latent."""
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": dit, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "pos": conditioning_node(text_seed, False),
        "neg": conditioning_node(text_seed + 1, False),
        "latent": {"class_type": "EmptyHunyuanLatentVideo",
                   "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
    }


def ksampler(model, latent, seed=7, steps=2, sampler="euler", scheduler="simple", cfg=1.0):
    return {"class_type": "KSampler", "inputs": {
        "model": model, "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
        "scheduler": scheduler, "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": latent, "denoise": 1.0}}


def custom_sampler_nodes(model, latent, sampler, sigmas, seed=7):
    """NOISE + GUIDER + the given SAMPLER/SIGMAS links into SamplerCustomAdvanced, id 'sample'."""
    return {
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "guider": {"class_type": "BasicGuider", "inputs": {"model": model, "conditioning": ["pos", 0]}},
        "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": sampler, "sigmas": sigmas,
            "latent_image": latent}},
    }


def decode_and_capture(vae, samples, key="images"):
    return {
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": vae}},
        "capture": {"class_type": "TurboTestCapture", "inputs": {"value": ["decode", 0], "key": key}},
    }


def capture(value, key, node_id=None):
    return {node_id or f"capture_{key}": {"class_type": "TurboTestCapture",
                                          "inputs": {"value": value, "key": key}}}


def ltx2_conditioning_node(seed=0, config=None, tokens=7, frame_rate=25.0):
    """TurboTestLTX2Conditioning for a tiny LTX-2 DiT config (default the 19B-layout one): the form this host's
    text encoder gives (0.29: unprocessed, caption width; 0.8.0: processed [video | audio] width)."""
    from tiny_models import ltx2

    config = config or ltx2.TRANSFORMER_19B
    return {"class_type": "TurboTestLTX2Conditioning", "inputs": {
        "tokens": tokens, "unprocessed_width": ltx2.unprocessed_context_width(config),
        "processed_width": ltx2.processed_context_width(config), "seed": seed, "frame_rate": frame_rate}}


LTX23_SKIP_REASON = ("core 0.8.0 has no LTX-2.3 (no gated attention, no cross-attention AdaLN, no dual_linear text "
                     "projection: ltx2_turbot2av.md 4.1); LTX-2.3 runs on core 0.29.0")


def core_has_ltx23() -> bool:
    import inspect

    import comfy.ldm.lightricks.av_model as av_model

    return "apply_gated_attention" in inspect.signature(av_model.LTXAVModel.__init__).parameters


def ltx2_config(family: str):
    """The tiny DiT config of an LTX-2 test family name ('ltx23...' = LTX-2.3, else 19B); skips 2.3 on 0.8.0."""
    import pytest
    from tiny_models import ltx2

    if family.startswith("ltx23"):
        if not core_has_ltx23():
            pytest.skip(LTX23_SKIP_REASON)
        return ltx2.TRANSFORMER_23
    return ltx2.TRANSFORMER_19B


def ltx2_audio_frames(frames, frame_rate=25.0):
    """Audio latent frames LTXVEmptyLatentAudio makes for `frames` video frames (25 audio latents a second)."""
    return math.ceil(frames / frame_rate * 25)


def ltx2_nodes(dit, frames=9, size=64, audio=False, text_seed=0, config=None, loader="unet"):
    """A tiny LTX-2 DiT (UNETLoader 'unet', or CheckpointLoaderSimple 'ckpt' with loader='ckpt'), test
    conditioning 'pos' / 'neg' and 'latent': an EmptyLTXVLatentVideo, or with audio=True that video latent
    joined by LTXVConcatAVLatent to an empty audio latent [1, 8, T_a, 16] (what LTXVEmptyLatentAudio gives)."""
    from host.test_only_nodes import SOURCES

    model = ({"class_type": "UNETLoader", "inputs": {"unet_name": dit, "weight_dtype": "default"}}
             if loader == "unet" else {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": dit}})
    video = {"class_type": "EmptyLTXVLatentVideo",
             "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}}
    prompt = {loader: model, "pos": ltx2_conditioning_node(text_seed, config),
              "neg": ltx2_conditioning_node(text_seed + 1, config), "latent": video}
    if audio:
        SOURCES["ltx2_audio"] = torch.zeros(1, 8, ltx2_audio_frames(frames), 16)
        prompt["video_latent"] = video
        prompt["audio_latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "ltx2_audio"}}
        prompt["latent"] = {"class_type": "LTXVConcatAVLatent", "inputs": {
            "video_latent": ["video_latent", 0], "audio_latent": ["audio_latent", 0]}}
    return prompt
