"""Tiny stand-ins for the files the committed workflows name, and what replaces their text encoders.

The end-to-end workflow test (test_workflows_run.py) runs every committed workflow as the frontend converts
it, with the files below written under the names the workflow uses. A new workflow that names another file
needs one entry here (the test names the file that has none):

    MODEL_FILES["<file name>"] = ("<ComfyUI model folder>", writer)   # writer(path, seed) writes the file
    INPUT_FILES["<file name>"] = writer                               # files in ComfyUI's input folder

Every writer makes a tiny random file in the real key layout (tests/tiny_models) or in the documented
adapter format (docs/adapters.md). LTX-Video files have the 2B model's 28 blocks (width 64), so block
indices in a workflow (Turbo2K's fusion blocks 0, 7, 14, 21) exist.

Text encoders have no tiny stand-in: TEXT_ENCODER_LOADERS are dropped, and every node in TEXT_ENCODE_NODES
becomes TurboTestConditioning with the width (and attention mask) of the encoder its loader names
(TEXT_ENCODERS, by the loader's `type` widget). LTX-2's Gemma loader (LTXAV_TEXT_ENCODER_LOADERS) has no `type`:
its encode nodes become TurboTestLTX2Conditioning in the form this host's Gemma encoder gives, with the widths
of the transformer config in the checkpoint its widget names (LTX2_CHECKPOINTS, the config that file's tiny
stand-in is written with).
"""
from __future__ import annotations

import pathlib

import torch
from tiny_models import ltx2, ltxv, seedvr2, turbot2av, turbowan, wan
from tiny_models.random_weights import randomised
from turbovideo.models.dit_bundle import save_dit_bundle
from turbovideo.models.fusion_blocks import FusionAdapter, save_fusion_adapter
from turbovideo.models.step_embedder import StepSizeEmbedder, save_step_embedder
from turbovideo.models.vsr_conditioner import VSRConditioner, save_vsr_conditioner

LTXV_BLOCKS, LTXV_WIDTH = 28, 64  # ltxv.HEADS x head_dim 2
TURBO2K_FUSION_BLOCKS = [0, 7, 14, 21]
TRAINED_STEP_SIZES = [1.0, 0.5, 0.25, 0.125]

# text-encoder loader `type` -> what TurboTestConditioning stands in for (T5-XXL for LTX-Video, umt5-xxl for Wan)
TEXT_ENCODERS = {"ltxv": {"width": 4096, "attention_mask": True}, "wan": {"width": 4096, "attention_mask": False}}
# LTX-2 checkpoint -> the transformer config of its tiny stand-in (its DiT, and the text widths it is read with)
LTX2_CHECKPOINTS = {"ltx-2-19b-dev.safetensors": ltx2.TRANSFORMER_19B}
# loaders of LTX-2's Gemma encoder -> the widget naming the checkpoint whose text projection they read
LTXAV_TEXT_ENCODER_LOADERS = {"LTXAVTextEncoderLoader": "ckpt_name"}
TEXT_ENCODER_LOADERS = {"CLIPLoader", *LTXAV_TEXT_ENCODER_LOADERS}
TEXT_ENCODE_NODES = {"CLIPTextEncode": "clip"}  # node type -> its input from the loader


def _ltxv_checkpoint(path, seed):
    return ltxv.write_checkpoint(path, blocks=LTXV_BLOCKS, seed=seed)


def _fusion(path, seed):
    adapter = FusionAdapter(LTXV_WIDTH, LTXV_WIDTH, TURBO2K_FUSION_BLOCKS, num_blocks=LTXV_BLOCKS, mlp_ratio=1.0)
    save_fusion_adapter(path, randomised(adapter, seed, scale=0.05))


def _step_embedder(path, seed):
    save_step_embedder(path, randomised(StepSizeEmbedder(LTXV_WIDTH), seed, scale=0.05), TRAINED_STEP_SIZES)


def _vsr_conditioner(path, seed):
    save_vsr_conditioner(path, randomised(VSRConditioner(LTXV_WIDTH), seed, scale=0.05))


def _student_bundle(path, seed):
    """A Turbo2K student DiT bundle: the DiT and its fusion, step-size and VSR adapters in one file."""
    parts = path.parent / f".{path.stem}_parts"
    parts.mkdir(exist_ok=True)
    ltxv.write_dit(parts / "dit.safetensors", blocks=LTXV_BLOCKS, seed=seed)
    writers = {"fusion": _fusion, "step": _step_embedder, "vsr": _vsr_conditioner}
    for offset, (name, write) in enumerate(writers.items()):
        write(parts / f"{name}.safetensors", seed + 1 + offset)
    save_dit_bundle(path, parts / "dit.safetensors", [parts / f"{name}.safetensors" for name in writers])


def _turbowan(variant, quantized):
    def write(path, seed):
        state_dict = turbowan.to_turbowan(turbowan.native_state_dict(variant, seed=seed),
                                          turbowan.proj_l_state_dict(seed=seed + 100))
        turbowan.write_pth(turbowan.quantize_blocks(state_dict) if quantized else state_dict, path)

    return write


def _ltx2_checkpoint(name):
    def write(path, seed):
        return ltx2.write_checkpoint(path, LTX2_CHECKPOINTS[name], seed=seed)

    return write


TURBOT2AV_BASE = "ltx-2-19b-dev.safetensors"  # what the student was distilled from: its DiT config


def _turbot2av_student(path, seed):
    """TurboT2AV's model.pth: the base's DiT without its text connectors, under `generator` / `model.`."""
    return turbot2av.write_student(path, turbot2av.student_weights(LTX2_CHECKPOINTS[TURBOT2AV_BASE], seed=seed))


def _seedvr2(write):
    """A tiny SeedVR2 file (ComfyUI 0.29+), with core's detection reading its widths (tiny_models/seedvr2.py)."""
    def write_file(path, seed):
        seedvr2.install_core_width_hooks()
        return write(path, seed=seed)

    return write_file


MODEL_FILES = {
    "ltxv-2b-0.9.8-distilled.safetensors": ("checkpoints", _ltxv_checkpoint),
    "ltxv_2b_step_size_embedder.safetensors": ("turbovideo", _step_embedder),
    "ltxv_2b_fusion_blocks.safetensors": ("turbovideo", _fusion),
    "ltxv_2b_vsr_conditioner.safetensors": ("turbovideo", _vsr_conditioner),
    "turbo2k_student_ltxv_2b_bundle.safetensors": ("diffusion_models", _student_bundle),
    "wan_2.1_vae.safetensors": ("vae", lambda path, seed: wan.write_vae(path, seed=seed)),
    # the LTX-2 DiT (19B layout), video VAE (tiny_models/ltx2_vae.py), audio VAE + vocoder (ltx2_audio.py)
    "ltx-2-19b-dev.safetensors": ("checkpoints", _ltx2_checkpoint("ltx-2-19b-dev.safetensors")),
    "TurboT2AV.pth": ("diffusion_models", _turbot2av_student),
    "ltx-2-spatial-upscaler-x2-1.0.safetensors": ("latent_upscale_models",
                                                  lambda path, seed: ltx2.write_upsampler(path, seed=seed)),
    "TurboWan2.1-T2V-1.3B-480P.pth": ("diffusion_models", _turbowan("t2v", quantized=False)),
    "TurboWan2.2-I2V-A14B-high-720P-quant.pth": ("diffusion_models", _turbowan("i2v", quantized=True)),
    "TurboWan2.2-I2V-A14B-low-720P-quant.pth": ("diffusion_models", _turbowan("i2v", quantized=True)),
    "seedvr2_3b_int8_convrot.safetensors": ("diffusion_models", _seedvr2(seedvr2.write_dit)),
    "seedvr2_ema_vae_fp16.safetensors": ("vae", _seedvr2(seedvr2.write_vae)),
}


def _video(path, seed, frames=9, size=(64, 64), fps=24):
    """A short random H.264 clip (what a user's low-resolution video would be)."""
    import av

    generator = torch.Generator().manual_seed(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for _ in range(frames):
            rgb = (torch.rand(*size, 3, generator=generator) * 255).to(torch.uint8).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def _image(path, seed, size=(64, 64)):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    Image.fromarray((torch.rand(*size, 3, generator=generator) * 255).to(torch.uint8).numpy()).save(path)


INPUT_FILES = {"low_res.mp4": _video, "example.png": _image}


def write_model_files(names, root: pathlib.Path, seed: int) -> dict[str, pathlib.Path]:
    """Writes MODEL_FILES[name] for each name under root/<folder>/; returns {folder: path} to register."""
    folders = {}
    for offset, name in enumerate(sorted(names)):
        folder, write = MODEL_FILES[name]
        folders[folder] = root / folder
        folders[folder].mkdir(parents=True, exist_ok=True)
        if not (folders[folder] / name).exists():
            write(folders[folder] / name, seed + 10 * offset)
    return folders


def write_input_files(names, input_dir: pathlib.Path, seed: int) -> None:
    for offset, name in enumerate(sorted(names)):
        INPUT_FILES[name](input_dir / name, seed + offset)
