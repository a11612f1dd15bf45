"""The frozen base model that adapters are trained on: ComfyUI's own LTX-Video model, driven directly.

`load_base` loads a DiT (UNETLoader's path, comfy.sd.load_diffusion_model) or a full checkpoint
(CheckpointLoaderSimple's path: DiT + VAE) into a ModelPatcher, freezes it and patches it onto the
training device. Adapters are installed with the SAME patch functions the nodes use (object patches,
block-replace patches, wrappers on a clone of `base.patcher`), so what is trained is what the nodes run.

`Base.velocity(patcher, x, sigma, context)` calls `patcher.model.apply_model` with the patcher's
transformer_options and wrappers (as ComfyUI's samplers merge them) and returns the model's raw output:
for LTX-Video (CONST / flow) that is the velocity v = noise - x0 of x_sigma = (1 - sigma) x0 + sigma noise,
taken before ComfyUI turns it into x0 (so no division by a small sigma). Gradients flow into whatever
adapter parameters the patches hold; the base weights have requires_grad False. Every model call (and every
gradient-checkpoint recompute) runs inside core_compat.differentiable_core(), for that call only: core's own
training switch (core 0.29 then takes differentiable torch ops instead of comfy-kitchen's, which have no autograd
formula), and tensors on the gradient path saved as copies (core's LTX blocks update them in place).

Object patches live on the ONE shared diffusion model, so only one patcher can be active at a time:
`velocity` swaps patchers (unpatch the previous, patch the new) when called with another one.
The model is patched with patch_model directly, not through comfy.model_management, so ComfyUI's
memory manager never evicts (and silently unpatches) it in the middle of training.
"""
from __future__ import annotations

import os
import pathlib
import sys
from dataclasses import dataclass, field

import torch

from ..patches import core_compat, families

CAPTION_CHANNELS = 4096  # T5-XXL width, LTX-Video's caption_channels (LTX-2: its family's context_width)
DEFAULT_CONTEXT_TOKENS = 8
RAW_OUTPUT_KEY = "turbovideo_training_raw_output"


@dataclass
class Base:
    patcher: object  # comfy.model_patcher.ModelPatcher, frozen
    vae: object | None  # comfy.sd.VAE or None (then batches must carry latents)
    device: torch.device
    dtype: torch.dtype
    context_tokens: torch.Tensor | None = None  # (L, 4096) precomputed caption embedding, or None -> zeros
    context_mask: torch.Tensor | None = None  # (L,) 1 = real token
    config_metadata: str | None = None  # the DiT file's "config" metadata (written back with a trained DiT)
    active: object = field(default=None, repr=False)

    @property
    def diffusion_model(self):
        return self.patcher.model.diffusion_model

    @property
    def family(self):
        return families.family_of(self.patcher)

    @property
    def context_width(self) -> int:
        """Width of the caption context the DiT's blocks take (LTX-Video: 4096; LTX-2: [video | audio] connector
        outputs, e.g. 2 x 3840), as core's samplers hand it to apply_model."""
        family = self.family
        if family is None or family.context_width is None:
            return CAPTION_CHANNELS
        return family.context_width(self.diffusion_model)

    def use(self, patcher) -> None:
        """Makes `patcher`'s object patches the ones applied to the shared model."""
        if patcher is self.active or (self.active is not None and _same_patches(patcher, self.active)):
            return
        if self.active is not None:
            self.active.unpatch_model()
        patcher.patch_model(device_to=self.device)
        self.active = patcher

    def context(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, context_width) caption embedding and its (B, L) mask: the --context file, else zeros (no mask)."""
        if self.context_tokens is None:
            zeros = torch.zeros(batch_size, DEFAULT_CONTEXT_TOKENS, self.context_width, device=self.device)
            return zeros.to(self.dtype), None
        tokens = self.context_tokens.to(self.device, self.dtype).expand(batch_size, -1, -1)
        mask = None if self.context_mask is None else self.context_mask.to(self.device).expand(batch_size, -1)
        return tokens, mask

    def transformer_options(self, patcher, **entries) -> dict:
        """The patcher's transformer_options with its wrappers merged in, as ComfyUI's samplers build them."""
        import comfy.patcher_extension as extension

        options = extension.copy_nested_dicts(patcher.model_options.get("transformer_options", {}))
        extension.merge_nested_dicts(options.setdefault("wrappers", {}), patcher.wrappers, copy_dict1=False)
        options.setdefault(core_compat.COND_OR_UNCOND, [0])
        options.update(entries)
        return options

    def velocity(self, patcher, x: torch.Tensor, sigma: torch.Tensor, context=None, context_mask=None,
                 options: dict | None = None, **extra_conds) -> torch.Tensor:
        """v for x (B, C, T, H, W) at per-sample sigma (B,); context (B, L, 4096) defaults to self.context."""
        import comfy.patcher_extension as extension

        self.use(patcher)
        sigma = sigma.to(self.device, torch.float32).reshape(-1)
        if context is None:
            context, context_mask = self.context(x.shape[0])
        extra_conds["attention_mask"] = context_mask  # LTX's forward takes it positionally, None is allowed
        extra_conds = {**self.family.direct_call_conds(x), **extra_conds}  # what core's sampler would add
        raw = []

        def keep_raw_output(executor, *args, **kwargs):
            out = executor(*args, **kwargs)
            raw.append(out)
            return out

        options = self.transformer_options(patcher, sigmas=sigma, **(options or {}))
        extension.add_wrapper_with_key(extension.WrappersMP.DIFFUSION_MODEL, RAW_OUTPUT_KEY, keep_raw_output, options)
        with core_compat.differentiable_core():
            self.patcher.model.apply_model(x.to(self.device), sigma, c_crossattn=context,
                                           transformer_options=options, **extra_conds)
        return raw[-1].float()

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, F, H, W, 3) in [0, 1] -> latent (B, 128, T, h, w) on self.device, clip by clip."""
        if self.vae is None:
            raise ValueError("no VAE: pass --vae (or a full checkpoint as --model) to train on frames, "
                             "or give the batches precomputed 'latent' tensors")
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, F, H, W, 3) in [0, 1], got shape {tuple(frames.shape)}")
        latents = [self.vae.encode(clip.float().cpu()) for clip in frames]
        return torch.cat(latents).to(self.device, torch.float32).clone()


def ensure_comfy() -> None:
    """Makes ComfyUI importable (COMFYUI_PATH, or the ComfyUI that holds this pack in custom_nodes) and boots
    comfy.model_management on the CPU when there is no GPU; under torchrun each rank takes its LOCAL_RANK GPU."""
    if "comfy.model_management" in sys.modules:
        return
    pack_root = pathlib.Path(__file__).resolve().parents[1]
    candidates = [pathlib.Path(os.environ["COMFYUI_PATH"])] if os.environ.get("COMFYUI_PATH") else []
    if pack_root.parent.name == "custom_nodes":
        candidates.append(pack_root.parent.parent)
    root = next((c for c in candidates if (c / "comfy").is_dir()), None)
    if root is None:
        tried = [str(c) for c in candidates]
        raise RuntimeError("ComfyUI not found: set COMFYUI_PATH to the ComfyUI folder (the one with main.py), "
                           f"or run from a pack installed in ComfyUI/custom_nodes (tried {tried})")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.cli_args

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    else:
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  reads args once, at import


def _same_patches(a, b) -> bool:
    """Clones that differ only in model_options (block patches, wrappers) need no re-patching."""
    same_objects = a.object_patches.keys() == b.object_patches.keys() and all(
        a.object_patches[k] is b.object_patches[k] for k in a.object_patches)
    return same_objects and a.patches_uuid == b.patches_uuid


def _freeze(patcher) -> None:
    for parameter in patcher.model.parameters():
        parameter.requires_grad_(False)


def _load_vae(path: str):
    import comfy.sd
    import comfy.utils

    state_dict, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
    return comfy.sd.VAE(sd=state_dict, metadata=metadata)


def _is_full_checkpoint(path: str) -> bool:
    from safetensors import safe_open

    if not path.endswith(".safetensors"):
        return False
    with safe_open(path, framework="pt") as handle:
        return any(key.startswith("model.diffusion_model.") for key in handle.keys())


def _config_metadata(path: str) -> str | None:
    from safetensors import safe_open

    if not path.endswith(".safetensors"):
        return None
    with safe_open(path, framework="pt") as handle:
        return (handle.metadata() or {}).get("config")


def read_context(path, width: int = CAPTION_CHANNELS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A --context file: safetensors with `context` (L, width) or (1, L, width), optional `attention_mask` (L,);
    width is the base model's context width (LTX-Video: T5's 4096; LTX-2: the processed [video | audio] context)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if "context" not in tensors:
        raise ValueError(f"--context {path}: no 'context' tensor; save the caption embedding (L, {width}) under "
                         "the key 'context' (docs/training.md)")
    context = tensors["context"].float()
    context = context[0] if context.ndim == 3 else context
    if context.ndim != 2 or context.shape[-1] != width:
        raise ValueError(f"--context {path}: 'context' must be (L, {width}) for this base model, got "
                         f"{tuple(context.shape)} (docs/training.md)")
    mask = tensors.get("attention_mask")
    return context, None if mask is None else mask.reshape(-1).long()


def _checkpointed_block(module):
    """A block-replace patch running `module` (one LTX block) under reentrant gradient checkpointing.

    The block is called directly, not through core's wrapper (core_compat.run_original_block says why): when the
    backward pass recomputes an earlier block, the wrapper would run the last one.
    """
    from torch.utils.checkpoint import checkpoint

    def patch(args, extra):
        # every input on a gradient path goes in explicitly, so its gradient comes out of the checkpoint
        names = [k for k, v in args.items() if k != "img" and torch.is_tensor(v) and v.requires_grad]
        on_path = args["img"].requires_grad or names or any(p.requires_grad for p in module.parameters())
        if not (torch.is_grad_enabled() and on_path):
            return core_compat.run_original_block(args, extra)  # nothing to differentiate: no graph is built

        def run(img, *tensors):
            inputs = {**args, **dict(zip(names, tensors))}
            # the block updates its input in place: it gets a copy (differentiable_core saves copies too)
            with core_compat.differentiable_core():
                return core_compat.run_ltx_block(module, img.clone(), inputs)

        return {"img": checkpoint(run, args["img"], *(args[k] for k in names), use_reentrant=True)}

    return patch


def checkpoint_blocks(patcher) -> None:
    """Gradient checkpointing of every DiT block, as block-replace patches set on `patcher` before any
    adapter patch (the pack's block patches chain to them). A block keeps only its inputs for the backward
    pass and runs again there: the activation memory of one block instead of all of them."""
    families.require(patcher, families.CHECKPOINTING, "--gradient-checkpointing")
    family = families.family_of(patcher)
    for index, module in enumerate(family.blocks_of(patcher.model.diffusion_model)):
        patcher.set_model_patch_replace(_checkpointed_block(module), *core_compat.BLOCK_PATCH, index)


def load_base(dit_path, vae_path=None, device=None, dtype=torch.float32, context_path=None,
              gradient_checkpointing: bool = False) -> Base:
    """A frozen LTX-Video or LTX-2 base on `device`; dit_path is a DiT file or a full checkpoint (then its VAE too)."""
    ensure_comfy()
    import comfy.model_management
    import comfy.sd

    dit_path = str(pathlib.Path(dit_path))
    device = torch.device(device) if device is not None else comfy.model_management.get_torch_device()
    vae = None
    if _is_full_checkpoint(dit_path):
        patcher, _, vae = comfy.sd.load_checkpoint_guess_config(
            dit_path, output_vae=vae_path is None, output_clip=False, model_options={"dtype": dtype})[:3]
    else:
        patcher = comfy.sd.load_diffusion_model(dit_path, model_options={"dtype": dtype})
    if vae_path is not None:
        vae = _load_vae(str(vae_path))
    _freeze(patcher)
    if families.family_of(patcher) is None:
        raise ValueError(f"{dit_path}: ComfyUI loaded a {type(patcher.model).__name__} model; training runs on "
                         f"{', '.join(f.name for f in families.FAMILIES)} base models")
    if gradient_checkpointing:
        checkpoint_blocks(patcher)
    base = Base(patcher, vae, device, dtype, None, None, _config_metadata(dit_path))
    if context_path is not None:
        base.context_tokens, base.context_mask = read_context(context_path, base.context_width)
    base.use(patcher)
    return base
