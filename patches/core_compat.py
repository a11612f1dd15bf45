"""The few places where the pack reaches into ComfyUI core internals, each named here and tested.

Everything else in the pack goes through core's public hooks (ModelPatcher wrappers and patches,
transformer_options, comfy.sd loaders). When core changes one of the things below, the test of that
reach (tests/host/test_core_compat_host.py) fails with CoreChanged naming what moved, instead of a
patch failing somewhere deep inside sampling.
"""
from __future__ import annotations

import contextlib
import functools
import inspect

import torch


class CoreChanged(RuntimeError):
    """ComfyUI core no longer looks the way one of the pack's named reaches expects."""


# --- positional arguments of the functions our wrappers sit around ------------------------------------

# comfy.model_base.BaseModel.apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
# the APPLY_MODEL wrapper's executor receives these positionally
APPLY_MODEL_OPTIONS_INDEX = 5
# comfy.ldm.lightricks.model.LTXBaseModel.forward(x, timestep, context, attention_mask, frame_rate,
# transformer_options, ...): the DIFFUSION_MODEL wrapper's executor receives these positionally
LTX_FORWARD_OPTIONS_INDEX = 5


# the cond core's sampler adds for a nested (multi-stream) latent, e.g. LTX-2 audio-video: x reaches
# apply_model packed as [B, 1, N] (comfy.utils.pack_latents) and `latent_shapes` lists each stream's shape
LATENT_SHAPES_COND = "latent_shapes"


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


# --- transformer_options entries core's samplers put on every model call, which the pack reads -------------

SIGMAS = "sigmas"  # this call's sigma per batch item
SAMPLE_SIGMAS = "sample_sigmas"  # the sampling run's whole schedule
COND_OR_UNCOND = "cond_or_uncond"  # per batch chunk: 0 cond, 1 uncond


# --- core's block-replace patches and block wrapper ----------------------------------------------------------

# ModelPatcher.set_model_patch_replace(patch, "dit", "double_block", i) (a public call) keeps a DiT block's patch in
# model_options["transformer_options"]["patches_replace"]["dit"][("double_block", i)] (LTX-Video, LTX-2, Wan)
BLOCK_PATCH = ("dit", "double_block")
# LTX-Video's block-replace args -> BasicTransformerBlock.forward keywords, as core's own block wrapper maps them
# (args["img"] is the block's first positional input); 0.29 added the last two
LTX_BLOCK_KEYWORDS = {"txt": "context", "attention_mask": "attention_mask", "vec": "timestep", "pe": "pe",
                      "transformer_options": "transformer_options", "self_attention_mask": "self_attention_mask",
                      "prompt_timestep": "prompt_timestep"}


def block_patch(model_options: dict, index: int):
    """The block-replace patch already set on DiT block `index` (another pack's, the training's), or None: a new
    patch on that block chains to it."""
    group, kind = BLOCK_PATCH
    return model_options.get("transformer_options", {}).get("patches_replace", {}).get(group, {}).get((kind, index))


def run_original_block(args: dict, extra: dict):
    """The block a block-replace patch stands in for. Core builds `extra["original_block"]` as a closure over
    its loop variable: call it during the patch only (a later call, e.g. a gradient-checkpoint recompute,
    would run the LAST block)."""
    return extra["original_block"](args)


def run_ltx_block(block, img, args: dict):
    """An LTX-Video block called directly on `img` with the other inputs core gave a block-replace patch in `args`
    (what core's wrapper does, for a caller that must run one particular block later)."""
    return block(img, **{keyword: args[key] for key, keyword in LTX_BLOCK_KEYWORDS.items() if key in args})


# --- attributes of core's models that the pack reads --------------------------------------------------------

# comfy.ldm.lightricks.model.LTXVModel.vae_scale_factors: (t, h, w) pixels per latent cell, the unit of the pixel
# coordinates in LTXVAddGuide's keyframe_idxs (TurboTiledModel shifts them per window)
LTX_VAE_SCALE_FACTORS = "vae_scale_factors"


def ltx_vae_scale_factors(base_model) -> tuple[int, int, int]:
    """(t, h, w) pixels per latent cell of an LTX BaseModel's diffusion model."""
    scale = getattr(base_model.diffusion_model, LTX_VAE_SCALE_FACTORS, None)
    if scale is None or len(scale) != 3:
        raise CoreChanged(f"{type(base_model.diffusion_model).__name__}.{LTX_VAE_SCALE_FACTORS} is {scale!r}; the "
                          "pack expects (t, h, w) pixels per latent cell; update patches/core_compat.py")
    return tuple(int(v) for v in scale)


# --- checkpoint detection -------------------------------------------------------------------------------

def detect_diffusion_config(state_dict: dict, metadata: dict | None):
    """The comfy.supported_models config core's UNETLoader would pick for a bare DiT state dict (or None),
    through the same two model_detection calls comfy.sd.load_diffusion_model_state_dict makes."""
    import comfy.model_detection

    prefix = comfy.model_detection.unet_prefix_from_state_dict(state_dict)
    prefix = prefix if any(key.startswith(prefix) for key in state_dict) else ""
    return comfy.model_detection.model_config_from_unet(state_dict, prefix, metadata=metadata)


# --- where LTX-2's text connectors live -----------------------------------------------------------------

def ltxav_dit_has_text_connectors() -> bool:
    """True where core's LTXAV DiT runs the two text connectors itself (preprocess_text_embeds, core 0.15+:
    the checkpoint's model.diffusion_model.*_embeddings_connector.* keys load into the DiT); False where the
    LTX-2 text encoder owns them (core 0.8.0: the DiT would report those keys as unexpected)."""
    from comfy.ldm.lightricks.av_model import LTXAVModel

    return callable(getattr(LTXAVModel, "preprocess_text_embeds", None))


# --- core's training switch ------------------------------------------------------------------------------

# comfy.model_management.in_training (0.29 has it, 0.8.0 does not): while it is True, core's models take their
# differentiable torch paths instead of comfy-kitchen custom ops that have no autograd formula (LTX RoPE:
# comfy.quant_ops.ck.apply_rope*). Core's own training node sets it around its loop only. 0.8.0 has no
# switch and no such ops: its LTX forward is plain torch.
TRAINING_SWITCH = "in_training"


@contextlib.contextmanager
def differentiable_core():
    """Core's models run so that a backward pass through them works, inside this block only.

    - core's training switch on (TRAINING_SWITCH), restored on exit: a ComfyUI server's inference keeps core's
      fast ops. It is a module global: do not sample in another thread of this process during a training step;
    - tensors on the gradient path saved as copies: core's LTX blocks update hidden states in place (x.addcmul_,
      x +=) after autograd saved them ("modified by an inplace operation"); frozen weights are saved as they are.
    Entered by training/ around each model call and each gradient-checkpoint recompute."""
    with torch.autograd.graph.saved_tensors_hooks(_saved_copy, _as_saved), _training_switch():
        yield


@contextlib.contextmanager
def _training_switch():
    import comfy.model_management

    if not hasattr(comfy.model_management, TRAINING_SWITCH):
        yield
        return
    previous = getattr(comfy.model_management, TRAINING_SWITCH)
    setattr(comfy.model_management, TRAINING_SWITCH, True)
    try:
        yield
    finally:
        setattr(comfy.model_management, TRAINING_SWITCH, previous)


def _saved_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.clone() if tensor.requires_grad else tensor


def _as_saved(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


# --- how many conds core batches into one model call ---------------------------------------------------

def conds_per_model_call(guider) -> int:
    """The conds comfy.samplers.sampling_function sends through the model per step for this guider (a
    comfy.samplers.CFGGuider or subclass): its non-empty cond lists, less the negative at cfg 1 (core skips
    it unless model_options['disable_cfg1_optimization'])."""
    import math

    conds = getattr(guider, "conds", None) or getattr(guider, "original_conds", {}) or {}
    count = sum(1 for value in conds.values() if value)
    cfg = getattr(guider, "cfg", None)
    options = getattr(guider, "model_options", {}) or {}
    if conds.get("negative") and isinstance(cfg, (int, float)) and math.isclose(cfg, 1.0) \
            and not options.get("disable_cfg1_optimization", False):
        count -= 1
    return max(count, 1)


# --- core's native INT8 layers (comfy.quant_ops / comfy.ops.mixed_precision_ops, core 0.27+) -----------------

NATIVE_INT8_FORMAT = "int8_tensorwise"  # QUANT_ALGOS key; its layout runs comfy-kitchen's int8_linear


@functools.lru_cache(maxsize=1)
def native_int8_layout() -> str | None:
    """The layout name of core's native INT8 Linears, or None where core has none (0.8.0). Detected by what
    core offers (the format, its layout class, mixed_precision_ops), never by version number."""
    try:
        import comfy.ops
        import comfy.quant_ops
    except ImportError:
        return None
    config = getattr(comfy.quant_ops, "QUANT_ALGOS", {}).get(NATIVE_INT8_FORMAT)
    if config is None or not hasattr(comfy.ops, "mixed_precision_ops"):
        return None
    layout = config.get("comfy_tensor_layout")
    return layout if comfy.quant_ops.get_layout_class(layout) is not None else None


@functools.lru_cache(maxsize=8)
def _native_ops(compute_dtype):
    import comfy.ops

    return comfy.ops.mixed_precision_ops({"mixed_ops": True}, compute_dtype)


def native_int8_linear(state: dict, in_features: int, out_features: int, device, compute_dtype):
    """Core's own mixed-precision Linear, loaded by core's own code from `state` ({"weight", "weight_scale",
    "comfy_quant", "bias"} as a file holds them): a QuantizedTensor weight core's LoRA, offloading and
    requantization handle."""
    layer = _native_ops(compute_dtype).Linear(in_features, out_features, bias="bias" in state, device=device)
    layer.load_state_dict(state, strict=True)
    return layer


def is_native_int8(module) -> bool:
    """True for a Linear whose weight is a QuantizedTensor in core's native INT8 layout."""
    layout = native_int8_layout()
    if layout is None or getattr(module, "layout_type", None) != layout:
        return False
    import comfy.quant_ops

    return isinstance(getattr(module, "weight", None), comfy.quant_ops.QuantizedTensor)


def native_int8_operands(module, x):
    """(int8 weight [out, in], float32 scale (scalar or [out, 1])) when core would run its INT8 GEMM for this
    call of `module` on `x` and another INT8 GEMM may stand in for it; None when core must run the call itself
    (weight or bias functions, lowvram casting, streamed weights, forced float, rotated or transposed
    weights, training, an input on another device)."""
    if not is_native_int8(module) or getattr(module, "_full_precision_mm", False):
        return None
    if getattr(module, "comfy_force_cast_weights", False) or getattr(module, "comfy_cast_weights", False) or \
            module.weight_function or module.bias_function or hasattr(module, "_v"):
        return None
    weight = module.weight
    params = weight.params
    if getattr(params, "convrot", False) or getattr(params, "transposed", False):
        return None
    if x.requires_grad or isinstance(x, type(weight)) or weight.device != x.device:
        return None
    return weight.layout_cls.get_plain_tensors(weight)


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
