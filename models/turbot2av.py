"""TurboT2AV (thu-ml/TurboDiffusion, TurboT2AV/): the 4-step LTX-2 19B audio-video student, read, checked
and completed into the bare DiT state dict core's LTXAV loader takes.

The released `model.pth` holds the generator's LTX-2 velocity model (ltx-core LTXModel): the same key names
and shapes as core's LTXAVModel minus the two text connectors, which ltx-core keeps in its text encoder. It
has no safetensors metadata, so no `config`: without the 19B switches (split RoPE, float64 frequencies, ...)
core would build the DiT with its constructor defaults and sample wrong output without a word. Both missing
parts come from the base LTX-2 19B checkpoint the student was distilled from. Pure: reads, checks, merges.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import torch
from safetensors import safe_open

from . import turbot2av_file

# TurboT2AV's loader: ckpt.get("generator", ckpt.get("model", ckpt.get("state_dict", ckpt))), then its
# wrapper prefixes `model.` (trig wrapper: model.<k>; native-RF wrapper: model.velocity_model.<k>)
CONTAINER_KEYS = ("generator", "model", "state_dict")
PREFIXES = ("model.velocity_model.", "model.")
BASE_DIT_PREFIX = "model.diffusion_model."
VAE_PREFIX = "vae."
CONNECTOR_PREFIXES = ("video_embeddings_connector.", "audio_embeddings_connector.")
FULL_CHECKPOINT_PREFIXES = (BASE_DIT_PREFIX, "vae.", "audio_vae.", "vocoder.", "text_embedding_projection.")
LTX2_KEY = "audio_adaln_single.linear.weight"  # core's LTXAV detection key
LTXV_KEY = "adaln_single.linear.weight"
WAN_KEYS = ("head.modulation", "patch_embedding.weight", "blocks.0.self_attn.q.weight")
# only a model saved AFTER TurboDiffusion's acceleration has these (SLA proj_l, W8A8 layers, fused QKV)
ACCELERATION_PARTS = (".attention_function.", ".to_qkv.", ".to_kv.")
INT8_SUFFIX, FP_SUFFIX = ".int8_weight", ".fp_weight"
LTX23_SWITCHES = ("apply_gated_attention", "cross_attention_adaln", "caption_proj_before_connector")
FORMAT = "turbot2av"
STUDENT_FILE = "model.pth (luyu1021/TurboT2AV, checkpoints/turbot2av_main)"
BASE_FILE = "ltx-2-19b-dev*.safetensors (Lightricks/LTX-2)"


class TurboT2AVError(turbot2av_file.ModelFileError):
    """A file that cannot be used where it was given; the message says what to load instead."""


@dataclasses.dataclass
class Base:
    """What the student lacks, from the base LTX-2 19B checkpoint (read without loading its 40 GB)."""
    config: dict  # the safetensors metadata `config` (transformer, vae, audio_vae, vocoder, ...)
    connectors: dict  # bare connector keys -> tensors
    dit_shapes: dict  # bare DiT key -> shape, connectors included


@dataclasses.dataclass
class Student:
    weights: dict  # bare LTXAV keys (no connectors unless `converted`)
    prefix: str  # the key prefix the file used ("" for flat keys)
    dropped: list  # post-acceleration keys left out
    converted: dict | None = None  # metadata of a tools/convert_turbot2av.py file (has connectors + config)


def _shown(keys, limit=6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# --- the student file ---------------------------------------------------------------------------------

def state_dict_of(loaded, name: str) -> dict:
    """The tensors of a loaded .pth, unwrapped from TurboT2AV's containers."""
    if not isinstance(loaded, dict):
        raise TurboT2AVError(f"student: '{name}' holds a {type(loaded).__name__}, not a state dict; load "
                             f"TurboT2AV's {STUDENT_FILE}")
    for key in CONTAINER_KEYS:
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise TurboT2AVError(f"student: '{name}' holds no tensors (top-level keys: {_shown(map(str, loaded))}); "
                             f"load TurboT2AV's {STUDENT_FILE}")
    return tensors


def bare_key(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _file_prefix(keys) -> str:
    return next((p for p in PREFIXES if all(k.startswith(p) for k in keys)), "")


def check_not_another_model(sd: dict, name: str) -> None:
    """Refuses the files people pick by mistake, naming the loader they need."""
    if any(key.startswith(FULL_CHECKPOINT_PREFIXES) for key in sd):
        raise TurboT2AVError(
            f"student: '{name}' is a full LTX-2 checkpoint (DiT + VAEs), not the TurboT2AV student. Choose it as "
            f"base_checkpoint (it supplies the text connectors and config), and as student TurboT2AV's {STUDENT_FILE}")
    bare = {bare_key(k) for k in sd}
    if any(key in bare for key in WAN_KEYS) or any(k.startswith("blocks.") for k in bare):
        raise TurboT2AVError(f"student: '{name}' is a Wan / TurboWan model, not TurboT2AV (LTX-2); load it with "
                             "TurboWanLoader (TurboWan files) or the core Load Diffusion Model node")
    if LTXV_KEY in bare and LTX2_KEY not in bare:
        raise TurboT2AVError(f"student: '{name}' is an LTX-Video (0.9.x) DiT, video only; TurboT2AV is LTX-2 "
                             "audio-video. Load LTX-Video files with the core loaders or TurboDiTLoader")
    if any(k.startswith(CONNECTOR_PREFIXES) for k in bare):
        raise TurboT2AVError(
            f"student: '{name}' is an LTX-2 DiT that already has the text connectors (a base or converted-by-"
            "another-tool file), which core loads as it is: use the core Load Diffusion Model (UNETLoader) node. "
            f"TurboT2AVLoader completes TurboT2AV's {STUDENT_FILE}, which lacks them")


def drop_acceleration_keys(sd: dict) -> tuple[dict, list]:
    """The model as released, from a state dict saved after TurboDiffusion's acceleration, if that ever
    happens: SLA proj_l (zero, unused), W8A8 buffers and fused QKV/KV dropped; a bf16 `fp_weight` copy
    (TileLang W8A8 keeps one) becomes the layer's `weight` again."""
    quantized = {k[:-len(INT8_SUFFIX)] for k in sd if k.endswith(INT8_SUFFIX)}
    kept, dropped = {}, []
    for key, value in sd.items():
        layer = key.rsplit(".", 1)[0]
        if any(part in key for part in ACCELERATION_PARTS) or key.endswith(INT8_SUFFIX) or \
                (key.endswith(".scale") and layer in quantized):
            dropped.append(key)
        elif key.endswith(FP_SUFFIX):
            kept[f"{layer}.weight"] = value
        else:
            kept[key] = value
    return kept, dropped


def read_student(path, name: str) -> Student:
    """The student's bare LTXAV tensors from a TurboT2AV .pth (or a .safetensors copy of one)."""
    loaded, metadata = turbot2av_file.read(path, name, "student")
    if metadata.get("format") == FORMAT:
        return Student(dict(loaded), "", [], converted=metadata)
    sd = state_dict_of(loaded, name)
    check_not_another_model(sd, name)
    bare = {bare_key(k): v for k, v in sd.items()}
    weights, dropped = drop_acceleration_keys(bare)
    return Student(weights, _file_prefix(sd), dropped)


# --- the base checkpoint ------------------------------------------------------------------------------

def _config(metadata: dict, name: str) -> dict:
    try:
        config = json.loads(metadata.get("config") or "{}")
    except json.JSONDecodeError as error:
        raise TurboT2AVError(f"base_checkpoint: '{name}' has an unreadable metadata config ({error})") from None
    transformer = config.get("transformer")
    if not isinstance(transformer, dict):
        raise TurboT2AVError(f"base_checkpoint: '{name}' has no metadata config for the transformer, so it cannot "
                             f"say how to build the DiT; choose the original {BASE_FILE}")
    switched = [key for key in LTX23_SWITCHES if transformer.get(key)]
    if switched:
        raise TurboT2AVError(f"base_checkpoint: '{name}' is an LTX-2.3 checkpoint ({', '.join(switched)}); "
                             f"TurboT2AV was distilled from LTX-2 19B: choose {BASE_FILE}")
    return config


def _dit_keys(keys: list, name: str) -> dict:
    """bare DiT key -> key in the file (full checkpoints: model.diffusion_model.; a DiT alone: bare)."""
    prefixed = {k[len(BASE_DIT_PREFIX):]: k for k in keys if k.startswith(BASE_DIT_PREFIX)}
    dit = prefixed or {k: k for k in keys}
    if LTX2_KEY not in dit:
        raise TurboT2AVError(f"base_checkpoint: '{name}' is not an LTX-2 audio-video checkpoint (no {LTX2_KEY}); "
                             f"choose {BASE_FILE}")
    if not any(k.startswith(CONNECTOR_PREFIXES) for k in dit):
        raise TurboT2AVError(f"base_checkpoint: '{name}' has no text connectors ({CONNECTOR_PREFIXES[0]}*), which "
                             f"the student needs from it; choose the full {BASE_FILE}")
    return dit


def read_base(path, name: str) -> Base:
    """Config, connector tensors and DiT key shapes of the base checkpoint; other tensors stay on disk."""
    if pathlib.Path(path).suffix != ".safetensors":
        raise TurboT2AVError(f"base_checkpoint: '{name}' is not a .safetensors file; choose {BASE_FILE}")
    turbot2av_file.check_safetensors(path, name, "base_checkpoint")
    with safe_open(str(path), framework="pt") as file:
        config = _config(file.metadata() or {}, name)
        dit = _dit_keys(list(file.keys()), name)
        shapes = {bare: tuple(file.get_slice(key).get_shape()) for bare, key in dit.items()}
        connectors = {bare: file.get_tensor(key) for bare, key in dit.items() if bare.startswith(CONNECTOR_PREFIXES)}
    return Base(config, connectors, shapes)


def read_base_vae(path, name: str) -> tuple[dict, dict]:
    """(video VAE tensors, metadata) of the base checkpoint: its `vae.` keys without the prefix, as core's
    checkpoint loader hands them to comfy.sd.VAE (the metadata config says how to build it)."""
    turbot2av_file.check_safetensors(path, name, "base_checkpoint")
    with safe_open(str(path), framework="pt") as file:
        tensors = {k[len(VAE_PREFIX):]: file.get_tensor(k) for k in file.keys() if k.startswith(VAE_PREFIX)}
        metadata = file.metadata() or {}
    if not tensors:
        raise TurboT2AVError(f"base_checkpoint: '{name}' holds no video VAE ({VAE_PREFIX}* keys); choose the full "
                             f"{BASE_FILE}")
    return tensors, metadata


# --- student + base -----------------------------------------------------------------------------------

def check_fits(student: Student, base: Base, name: str, base_name: str) -> list:
    """Raises when the student is not a complete LTX-2 19B student of this base; returns unexpected keys."""
    expected = {k: s for k, s in base.dit_shapes.items() if not k.startswith(CONNECTOR_PREFIXES)}
    weights = student.weights
    if not set(expected) & set(weights):
        raise TurboT2AVError(f"student: '{name}' holds no LTX-2 DiT keys (found e.g. {_shown(weights, 4)}); load "
                             f"TurboT2AV's {STUDENT_FILE}")
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if wrong:
        key = wrong[0]
        raise TurboT2AVError(
            f"student: '{name}' does not fit base_checkpoint '{base_name}': {len(wrong)} tensors differ in shape "
            f"(e.g. {key}: {tuple(weights[key].shape)} in the student, {expected[key]} in the base). TurboT2AV was "
            f"distilled from LTX-2 19B: choose {BASE_FILE} as base_checkpoint")
    missing = set(expected) - set(weights)
    if missing:
        hint = (" It holds W8A8 int8 layers without their float weights (saved after TurboDiffusion's acceleration);"
                " use the released file." if any(k.endswith(INT8_SUFFIX) for k in student.dropped) else "")
        raise TurboT2AVError(f"student: '{name}' is incomplete: {len(missing)} of {len(expected)} DiT tensors are "
                             f"missing ({_shown(missing)}).{hint} A partial download or another model's file gives "
                             "this: re-download it")
    return sorted(set(weights) - set(expected))


def merge(student: Student, base: Base, with_connectors: bool = True) -> tuple[dict, dict]:
    """(bare LTXAV state dict, metadata) for core's loader: the student's tensors, the base's connectors
    (where core's DiT has them: 0.29; core 0.8.0 keeps them in the text encoder) and the base's config."""
    state_dict = {k: v for k, v in student.weights.items() if k in base.dit_shapes}
    if with_connectors:
        state_dict.update(base.connectors)
    return state_dict, {"config": json.dumps(base.config)}


def converted_parts(student: Student, with_connectors: bool = True) -> tuple[dict, dict]:
    """(state dict, metadata) of a tools/convert_turbot2av.py file, which already holds everything."""
    weights = student.weights
    if not with_connectors:
        weights = {k: v for k, v in weights.items() if not k.startswith(CONNECTOR_PREFIXES)}
    return weights, {"config": student.converted["config"]}


def converted_metadata(base: Base, student_name: str, base_name: str) -> dict:
    return {"config": json.dumps(base.config), "format": FORMAT, "student": student_name, "base": base_name}


# --- latent geometry TurboT2AV samples in (run_av_inference_eval._compute_latent_shapes) -------------------

FRAME_RATE = 24.0  # its video fps: positions and the audio length use it (ltx_wrapper VIDEO_FPS)
AUDIO_LATENTS_PER_SECOND = 16000 / 160 / 4  # audio sample rate / mel hop / latent downsampling = 25
VIDEO_CHANNELS, AUDIO_CHANNELS, AUDIO_MEL_BINS = 128, 8, 16  # core's [B, 8, T, 16] audio latent = its [B, T, 128]
TEMPORAL, SPATIAL = 8, 32


def audio_latent_length(frames: int, frame_rate: float = FRAME_RATE) -> int:
    """round(frames / fps * 25), Python's round as TurboT2AV has it: 126 for 121 frames at 24 fps, where core's
    LTXVEmptyLatentAudio takes the ceiling (127)."""
    return round(float(frames) / float(frame_rate) * AUDIO_LATENTS_PER_SECOND)


def latent_shapes(width: int, height: int, frames: int, batch: int = 1,
                  frame_rate: float = FRAME_RATE) -> tuple[tuple, tuple]:
    """(video [B, 128, F', H/32, W/32], audio [B, 8, T, 16]) latent shapes in core's layout."""
    if (frames - 1) % TEMPORAL:
        nearest = 1 + TEMPORAL * (frames // TEMPORAL)
        raise ValueError(f"length: {frames} frames; LTX-2 takes 1 + 8k frames (e.g. {nearest})")
    if width % SPATIAL or height % SPATIAL:
        raise ValueError(f"width / height: {width}x{height}; LTX-2 takes multiples of {SPATIAL}")
    video = (batch, VIDEO_CHANNELS, 1 + (frames - 1) // TEMPORAL, height // SPATIAL, width // SPATIAL)
    return video, (batch, AUDIO_CHANNELS, audio_latent_length(frames, frame_rate), AUDIO_MEL_BINS)
