"""TurboDiTLoader's work: an LTX-Video or LTX-2 DiT file (optionally a bundle with adapters) -> core's MODEL.

The adapter tensors are split off (models/dit_bundle.py), the DiT goes through
comfy.sd.load_diffusion_model_state_dict with the file's metadata (core's own LTXV / LTXAV model: LoRA keys,
offloading, previews as for UNETLoader; LTX-2's config switches come from the 'config' metadata), INT8 through
patches/int8 (a file already in the INT8 format loads its int8 layers directly), the step-size embedder
through patches/step_size.apply_step_embedder. The fusion adapter and the VSR conditioner have no effect by
themselves: they ride on the MODEL as a ModelPatcher attachment (copied to every clone) for the nodes whose
adapter input says "from model".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.sd
import comfy.utils
import torch

from ..models import dit_bundle, int8_format
from ..models.dit_bundle import FUSION, LABELS, STEP, VSR
from . import core_compat, families
from .int8 import files as int8_files
from .int8 import quantize as int8_quantize
from .step_size import apply_step_embedder

ATTACHMENT_KEY = "turbovideo_dit_adapters"
WEIGHT_DTYPES = {"default": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                 "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
INT8_CHOICES = ("off", "per_channel", "block128")
EMBEDDED = "embedded"  # the adapter stored in the DiT file, if it has one
NONE = "none"
FROM_MODEL = "from model (TurboDiTLoader)"  # the option of the adapter-using nodes that reads the attachment
INPUT_NAMES = {STEP: "step_embedder", FUSION: "fusion_adapter", VSR: "vsr_conditioner"}


@dataclass(frozen=True)
class DiTAdapters:
    """The attachment: {kind: (module, label)} for the fusion adapter and the VSR conditioner."""
    modules: dict


@dataclass(frozen=True)
class AdapterSource:
    """Where one adapter comes from: EMBEDDED, NONE, or a file (path, name)."""
    choice: str
    path: str | None = None


def _check_dit_file(dit: dict, metadata: dict, name: str) -> None:
    config = core_compat.detect_diffusion_config(dit, metadata)
    family = families.family_of_config(config)
    if family is None or families.DIT_LOADER not in family.capabilities:
        found = "a model ComfyUI does not recognise" if config is None else type(config).__name__
        if family is not None:
            found = f"a {family.name} DiT ({found})"
        names = " or ".join(f.name for f in families.supporting(families.DIT_LOADER))
        raise ValueError(f"unet_name: '{name}' holds {found}, not an {names} DiT; TurboDiTLoader loads {names} "
                         "DiTs with TurboVideo adapters. Load this file with UNETLoader (Load Diffusion Model)")


def _load_model(bundle: dit_bundle.Bundle, name: str, weight_dtype: str, int8: str):
    dtype = WEIGHT_DTYPES[weight_dtype]
    quantized = bool(int8_format.quantized_prefixes(bundle.dit))
    if quantized:
        model = int8_files.load_quantized(bundle.dit, bundle.metadata, dtype)
    else:
        options = {} if dtype is None else {"dtype": dtype}
        model = comfy.sd.load_diffusion_model_state_dict(bundle.dit, model_options=options, metadata=bundle.metadata)
    family = families.family_of(model) if model is not None else None
    if family is None or families.DIT_LOADER not in family.capabilities:
        raise ValueError(f"unet_name: ComfyUI did not load '{name}' as a model TurboDiTLoader supports; load it "
                         "with UNETLoader")
    if quantized and int8 != "off":
        logging.info("TurboDiTLoader: '%s' is already INT8; int8=%s is not applied again", name, int8)
    elif int8 != "off":
        model = int8_quantize.quantize_model(model, "all", int8)
    return model


def _adapter(kind: str, source: AdapterSource, bundle: dit_bundle.Bundle, name: str):
    """(module or (embedder, sizes), label) or None."""
    if source.choice == NONE or (source.choice == EMBEDDED and kind not in bundle.adapters):
        return None
    if source.choice == EMBEDDED:
        label = f"{name} (embedded {LABELS[kind]})"
        return dit_bundle.build_adapter(kind, *bundle.adapters[kind], label), label
    return dit_bundle.LOADERS[kind](source.path), source.choice


def _check_width(kind: str, width: int, label: str, model_width: int, name: str) -> None:
    if width != model_width:
        raise ValueError(f"{INPUT_NAMES[kind]}: {label} is a {LABELS[kind]} for width {width}, but the DiT in "
                         f"'{name}' has width {model_width}; pick the {LABELS[kind]} made for this DiT or set "
                         f"{INPUT_NAMES[kind]} to '{NONE}'")


def _check_fits(loaded: dict, model, name: str) -> None:
    family, diffusion_model = families.family_of(model), model.get_model_object("diffusion_model")
    width = family.width_of(diffusion_model)
    if STEP in loaded:
        _check_width(STEP, loaded[STEP][0][0].width, loaded[STEP][1], width, name)
    if VSR in loaded:
        _check_width(VSR, loaded[VSR][0].width, loaded[VSR][1], width, name)
    if FUSION in loaded:
        adapter, label = loaded[FUSION]
        _check_width(FUSION, adapter.hr_width, label, width, name)
        count = len(family.blocks_of(diffusion_model))
        try:
            adapter.check_blocks(count, count, f"{INPUT_NAMES[FUSION]} ({label})")
        except ValueError as error:
            raise ValueError(f"{error}; pick the fusion adapter made for this DiT or set {INPUT_NAMES[FUSION]} "
                             f"to '{NONE}'") from None


def load_dit(path, name: str, weight_dtype: str = "default", int8: str = "off",
             sources: dict[str, AdapterSource] | None = None):
    """MODEL (+ attached adapters) from a DiT file of a family with the DIT_LOADER capability (LTX-Video, LTX-2);
    returns (model, {kind: label} of what is used). Adapter widths are checked against the (video) width."""
    if weight_dtype not in WEIGHT_DTYPES or int8 not in INT8_CHOICES:
        raise ValueError(f"weight_dtype must be one of {list(WEIGHT_DTYPES)} and int8 one of {INT8_CHOICES}")
    sources = {kind: (sources or {}).get(kind, AdapterSource(EMBEDDED)) for kind in INPUT_NAMES}
    state_dict, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    bundle = dit_bundle.split_bundle(state_dict, metadata, name)
    _check_dit_file(bundle.dit, bundle.metadata, name)
    loaded = {kind: found for kind in INPUT_NAMES if (found := _adapter(kind, sources[kind], bundle, name))}
    model = _load_model(bundle, name, weight_dtype, int8)
    _check_fits(loaded, model, name)
    if STEP in loaded:
        (embedder, sizes), label = loaded[STEP]
        model = apply_step_embedder(model, embedder, sizes, label)
    else:
        model = model.clone()
    attached = {kind: loaded[kind] for kind in (FUSION, VSR) if kind in loaded}
    model.set_attachments(ATTACHMENT_KEY, DiTAdapters(attached))
    return model, {kind: label for kind, (_, label) in loaded.items()}


def model_adapter(model, kind: str, input_name: str):
    """(module, label) of the adapter TurboDiTLoader attached to `model`, or a ValueError naming the fix."""
    attached = model.get_attachment(ATTACHMENT_KEY)
    if attached is None or kind not in attached.modules:
        source = "this MODEL did not come from TurboDiTLoader" if attached is None else \
            f"TurboDiTLoader attached no {LABELS[kind]} to it"
        raise ValueError(f"{input_name}: 'from model' needs a {LABELS[kind]} on the MODEL, but {source}; load the "
                         f"DiT with TurboDiTLoader and a {LABELS[kind]} (embedded in the file or chosen in its "
                         f"{INPUT_NAMES[kind]} input), or pick an adapter file here")
    return attached.modules[kind]
