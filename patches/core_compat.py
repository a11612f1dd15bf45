"""The few places where the pack reaches into ComfyUI core internals, each named here and tested.

Everything else in the pack goes through core's public hooks (ModelPatcher wrappers and patches,
transformer_options, comfy.sd loaders). When core changes one of the things below, the test of that
reach (tests/host/test_core_compat_host.py) fails with CoreChanged naming what moved, instead of a
patch failing somewhere deep inside sampling.
"""
from __future__ import annotations

import inspect


class CoreChanged(RuntimeError):
    """ComfyUI core no longer looks the way one of the pack's named reaches expects."""


# --- positional arguments of the functions our wrappers sit around ------------------------------------

# comfy.model_base.BaseModel.apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
# the APPLY_MODEL wrapper's executor receives these positionally
APPLY_MODEL_OPTIONS_INDEX = 5
# comfy.ldm.lightricks.model.LTXBaseModel.forward(x, timestep, context, attention_mask, frame_rate,
# transformer_options, ...): the DIFFUSION_MODEL wrapper's executor receives these positionally
LTX_FORWARD_OPTIONS_INDEX = 5


def positional_options(args: tuple, kwargs: dict, index: int) -> dict:
    """transformer_options of a wrapped call, wherever the caller put it."""
    if len(args) > index:
        return args[index] or {}
    return kwargs.get("transformer_options") or {}


def with_positional_options(args: tuple, kwargs: dict, index: int, options: dict) -> tuple[tuple, dict]:
    """(args, kwargs) of a wrapped call with its transformer_options replaced."""
    if len(args) > index:
        return args[:index] + (options,) + args[index + 1:], kwargs
    return args, {**kwargs, "transformer_options": options}


def check_parameter(function, index: int, name: str, where: str) -> None:
    """Raises CoreChanged unless `function`'s positional parameter `index` (after self) is `name`."""
    names = [p.name for p in inspect.signature(function).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    if len(names) <= index or names[index] != name:
        raise CoreChanged(f"{where}: the pack expects positional parameter {index} to be '{name}', core now has "
                          f"{names}; update the index in patches/core_compat.py")


# --- which core family a module belongs to -------------------------------------------------------------

def core_package(obj) -> str | None:
    """'lightricks' for an object whose class core defines in comfy.ldm.lightricks.*, etc.; None outside comfy.ldm."""
    parts = type(obj).__module__.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["comfy", "ldm"] else None


def core_lineage(obj_or_class, core_module: str) -> list[str]:
    """Names of the classes in the MRO that `core_module` (e.g. 'comfy.model_base') defines, most derived first."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return [c.__name__ for c in cls.__mro__ if c.__module__ == core_module]


# --- core's block wrapper -----------------------------------------------------------------------------

def run_original_block(args: dict, extra: dict):
    """The block a block-replace patch stands in for. Core builds `extra["original_block"]` as a closure over
    its loop variable: call it during the patch only (a later call, e.g. a gradient-checkpoint recompute,
    would run the LAST block)."""
    return extra["original_block"](args)


# --- checkpoint detection -------------------------------------------------------------------------------

def detect_diffusion_config(state_dict: dict, metadata: dict | None):
    """The comfy.supported_models config core's UNETLoader would pick for a bare DiT state dict (or None),
    through the same two model_detection calls comfy.sd.load_diffusion_model_state_dict makes."""
    import comfy.model_detection

    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    prefix = prefix if any(key.startswith(prefix) for key in state_dict) else ""
    return comfy.model_detection.model_config_from_unet(state_dict, prefix, metadata=metadata)


# --- SeedVR2 (ComfyUI 0.29+: comfy.ldm.seedvr) ------------------------------------------------------------

def seedvr2_patch_size(diffusion_model) -> tuple[int, int, int]:
    """Latent cells (frames, rows, cols) per token of a SeedVR2 NaDiT: its patch embedder's patch size."""
    patch = getattr(getattr(diffusion_model, "vid_in", None), "patch_size", None)
    if patch is None or len(patch) != 3:
        raise CoreChanged("SeedVR2: the pack reads the patch size from NaDiT.vid_in.patch_size, which core no "
                          "longer has; update seedvr2_patch_size in patches/core_compat.py")
    return tuple(int(p) for p in patch)


def seedvr2_attention_window(diffusion_model, tokens: tuple[int, int, int]) -> tuple[int, int, int]:
    """Tokens (frames, rows, cols) of one full attention window that SeedVR2 uses on a (t, h, w) token grid.

    Core sizes the windows from the input (a fixed count over a 720p reference area), so this asks core's
    own window function for the unshifted windows of block 0 and measures the first one."""
    import comfy.ldm.seedvr.model as seedvr

    attention = getattr(diffusion_model.blocks[0], "attn", None)
    method, counts = getattr(attention, "window_method", None), getattr(attention, "window", None)
    if method is None or counts is None or not hasattr(seedvr, "get_window_op") or "swin" in method:
        raise CoreChanged(f"SeedVR2: block 0 no longer has unshifted window attention (window_method {method!r}, "
                          "window {counts!r}); update seedvr2_attention_window in patches/core_compat.py")
    first = seedvr.get_window_op(method)(tuple(tokens), counts)[0]
    return tuple(int(s.stop - s.start) for s in first)


def seedvr2_call_bytes(batch: int, frames: int, rows: int, cols: int) -> float:
    """Core's SeedVR2 activation law (what SeedVR2TemporalChunk's auto mode sizes chunks by): bytes of one
    sampler call on `batch` latents of (frames, rows, cols) cells, linear in latent frames x pixel area,
    plus its K-sigma margin. Model weights are not in it (the pack's budget is measured after loading)."""
    from comfy.ldm.seedvr import constants

    megapixels = batch * rows * cols * constants.BYTEDANCE_VAE_SPATIAL_DOWNSAMPLE ** 2 / 1e6
    gib = (constants.SEEDVR2_CHUNK_GIB_PER_MPX_FRAME * megapixels * frames
           + constants.SEEDVR2_CHUNK_SIGMA_K * constants.SEEDVR2_CHUNK_SIGMA_GIB)
    return gib * 1024 ** 3


def _seedvr2_parts():
    from comfy.ldm.seedvr import constants
    from comfy.ldm.seedvr import vae as seedvr_vae

    if not hasattr(seedvr_vae, "MemoryState") or not hasattr(seedvr_vae.VideoAutoencoderKL, "_decode"):
        raise CoreChanged("SeedVR2 VAE: the pack continues a video through VideoAutoencoderKL._decode/_encode with "
                          "a MemoryState cache, which core no longer has; update patches/core_compat.py")
    return constants, seedvr_vae


def _phase(seedvr_vae, state: dict):
    """INITIALIZING for a video's first part (the causal first frame), ACTIVE (continue the cache) after."""
    started = state.get("started", False)
    state["started"] = True
    return seedvr_vae.MemoryState.ACTIVE if started else seedvr_vae.MemoryState.INITIALIZING


def _park(cache: dict, device) -> None:
    """Keeps a part's frame cache off the compute device between parts (core moves it back when used)."""
    for key, value in cache.items():
        if hasattr(value, "to"):
            cache[key] = value.to(device)


def seedvr2_decode_part(vae, latent, state: dict):
    """The next latent frames (B, 16, t, h, w) of one video through core's SeedVR2 VAE -> IMAGE (B, T, H, W, 3).

    What core's VAEDecode does (unscale, decode, even sides, [0, 1]), continuing the decoder's causal frame
    cache kept in `state` (an empty dict starts a video); core itself decodes one latent frame at a time
    this way, so consecutive parts give the frames of one whole call."""
    constants, seedvr_vae = _seedvr2_parts()
    model = vae.first_stage_model
    z = latent.to(vae.device, vae.vae_dtype) / constants.BYTEDANCE_VAE_SCALING_FACTOR + \
        constants.BYTEDANCE_VAE_SHIFTING_FACTOR
    model.device = z.device
    cache = state.setdefault("cache", {})
    pixels = model._decode(z, memory_state=_phase(seedvr_vae, state), memory_cache=cache)
    _park(cache, vae.output_device)
    height, width = pixels.shape[-2:]
    pixels = pixels[..., :height - height % 2, :width - width % 2]
    out = pixels.to(device=vae.output_device, dtype=vae.vae_output_dtype(), copy=True)
    vae.process_output(out)
    return out.movedim(1, -1)


def seedvr2_encode_part(vae, pixels, state: dict):
    """The next frames (n, H, W, 3) of one video through core's SeedVR2 VAE -> latent (1, 16, t, h, w), as core's
    VAEEncode does, continuing the encoder's causal frame cache in `state`: the first part is 1 + 4k frames
    (frame 0 alone), later parts 4k frames."""
    constants, seedvr_vae = _seedvr2_parts()
    model = vae.first_stage_model
    x = vae.process_input(pixels.movedim(-1, 0).unsqueeze(0)).to(device=vae.device, dtype=vae.vae_dtype)
    model.device = x.device
    cache = state.setdefault("cache", {})
    moments = model._encode(x, memory_state=_phase(seedvr_vae, state), memory_cache=cache)
    _park(cache, vae.output_device)
    latent = seedvr_vae.DiagonalGaussianDistribution(moments).mode()
    return model.comfy_format_encoded(latent.to(device=vae.output_device, dtype=vae.vae_output_dtype()))
