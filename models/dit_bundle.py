"""One safetensors file holding an LTX-Video DiT and TurboVideo adapters (format: docs/adapters.md).

A bundle is the DiT's own state dict and metadata (e.g. 'config') plus, per embedded adapter, the
tensors of its adapter file under the adapter's prefix and that file's metadata in one JSON entry:

    fusion.*            a fusion adapter file's tensors (already named fusion.*)
    step_embedder.*     a step-size adapter file's tensors (already named step_embedder.*)
    vsr_conditioner.*   a VSR conditioner file's tensors (proj.weight -> vsr_conditioner.proj.weight)
    metadata["turbovideo_bundle"] = {"format_version": "1", "adapters": {kind: that file's metadata}}

Pure torch: no ComfyUI imports. patches/dit_loader.py loads bundles into a ComfyUI MODEL.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from . import fusion_blocks, step_embedder, vsr_conditioner
from .adapter_metadata import KIND_KEY
from .checkpoint_files import FileRole, check_tensors, read_safetensors, save_safetensors

BUNDLE_KEY = "turbovideo_bundle"
BUNDLE_VERSION = "1"
FUSION, STEP, VSR = fusion_blocks.ADAPTER_KIND, step_embedder.ADAPTER_KIND, vsr_conditioner.ADAPTER_KIND
KINDS = (FUSION, STEP, VSR)
PREFIXES = {FUSION: "fusion.", STEP: "step_embedder.", VSR: "vsr_conditioner."}
LABELS = {FUSION: "fusion adapter", STEP: "step-size adapter", VSR: "VSR conditioner"}
# adapter files whose tensor names already start with the bundle prefix
FILE_KEYS_PREFIXED = {FUSION: True, STEP: True, VSR: False}
LOADERS = {FUSION: fusion_blocks.load_fusion_adapter, STEP: step_embedder.load_step_embedder,
           VSR: vsr_conditioner.load_vsr_conditioner}


@dataclass
class Bundle:
    dit: dict[str, torch.Tensor]
    metadata: dict[str, str]  # the DiT's own metadata (the bundle entry removed)
    adapters: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = field(default_factory=dict)


def _kind_of(key: str) -> str | None:
    return next((kind for kind, prefix in PREFIXES.items() if key.startswith(prefix)), None)


def _bundle_entries(metadata: dict, name: str) -> dict[str, dict]:
    if BUNDLE_KEY not in metadata:
        return {}
    try:
        entry = json.loads(metadata[BUNDLE_KEY])
        version, adapters = entry["format_version"], entry["adapters"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{name}: the {BUNDLE_KEY} metadata is malformed ({error}); write the file again "
                         "with save_dit_bundle (docs/adapters.md)") from None
    if version != BUNDLE_VERSION:
        raise ValueError(f"{name}: bundle format_version {version!r} is not supported (this TurboVideo reads "
                         f"version {BUNDLE_VERSION}); update TurboVideo")
    unknown = sorted(set(adapters) - set(KINDS))
    if unknown:
        raise ValueError(f"{name}: the bundle lists unknown adapter kinds {unknown} (known: {list(KINDS)}); "
                         "update TurboVideo")
    return adapters


def split_bundle(state_dict: dict, metadata: dict | None, name: str) -> Bundle:
    """DiT tensors and metadata apart from each embedded adapter's tensors (file layout) and metadata."""
    metadata = dict(metadata or {})
    entries = _bundle_entries(metadata, name)
    metadata.pop(BUNDLE_KEY, None)
    bundle = Bundle({}, metadata)
    tensors: dict[str, dict] = {kind: {} for kind in KINDS}
    for key, value in state_dict.items():
        kind = _kind_of(key)
        if kind is None:
            bundle.dit[key] = value
        else:
            tensors[kind][key if FILE_KEYS_PREFIXED[kind] else key[len(PREFIXES[kind]):]] = value
    for kind in KINDS:
        if tensors[kind] and kind not in entries:
            raise ValueError(f"{name} holds {PREFIXES[kind]}* tensors but no {BUNDLE_KEY} metadata for a "
                             f"{LABELS[kind]}; write the file with save_dit_bundle (docs/adapters.md)")
        if kind in entries and not tensors[kind]:
            raise ValueError(f"{name}: its {BUNDLE_KEY} metadata lists a {LABELS[kind]} but the file holds no "
                             f"{PREFIXES[kind]}* tensors; write the file again with save_dit_bundle")
        if kind in entries:
            bundle.adapters[kind] = (tensors[kind], {str(k): str(v) for k, v in entries[kind].items()})
    return bundle


def _checked_tensors(tensors: dict, expected: dict, where: str, label: str) -> dict:
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"{where}: {label} tensors do not match its metadata (missing {missing[:6]}, unexpected "
                         f"{extra[:6]}); write the bundle again with save_dit_bundle")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != tuple(shape):
            raise ValueError(f"{where}: {label} tensor {key} has shape {tuple(tensors[key].shape)}, its metadata "
                             f"needs {tuple(shape)}")
    check_tensors({key: tensors[key] for key in expected}, f"{where}: {label}")
    return {key: tensors[key].float() for key in expected}


def build_adapter(kind: str, tensors: dict, metadata: dict, where: str):
    """The float32 module of one embedded adapter; (embedder, trained step sizes) for the step-size kind."""
    label = LABELS[kind]
    if kind == FUSION:
        adapter = fusion_blocks.adapter_from_metadata(where, metadata)
        expected = {PREFIXES[FUSION] + k: v.shape for k, v in adapter.state_dict().items()}
        checked = _checked_tensors(tensors, expected, where, label)
        adapter.load_state_dict({k[len(PREFIXES[FUSION]):]: v for k, v in checked.items()})
        return adapter.requires_grad_(False)
    if kind == STEP:
        width, sizes = step_embedder.read_metadata(where, metadata)
        checked = _checked_tensors(tensors, step_embedder.expected_shapes(width), where, label)
        embedder = step_embedder.StepSizeEmbedder(width)
        embedder.load_state_dict({k[len(PREFIXES[STEP]):]: v for k, v in checked.items()})
        return embedder.requires_grad_(False), sizes
    width, channels = vsr_conditioner.read_metadata(where, metadata)
    checked = _checked_tensors(tensors, vsr_conditioner.expected_shapes(width, channels), where, label)
    conditioner = vsr_conditioner.VSRConditioner(width, channels)
    conditioner.load_state_dict(checked)
    return conditioner.requires_grad_(False)


ADAPTER_FILE = FileRole("adapter_files", "a TurboVideo adapter", "(written by save_fusion_adapter, "
                                                                  "save_step_embedder or save_vsr_conditioner)")
DIT_FILE = FileRole("dit", "an LTX-Video or LTX-2 DiT", "(a .safetensors state dict, as UNETLoader reads)")


def _read_adapter_file(path: str) -> tuple[str, dict, dict]:
    tensors, metadata = read_safetensors(path, ADAPTER_FILE)
    kind = metadata.get(KIND_KEY)
    if kind not in KINDS:
        raise ValueError(f"{path} is not a TurboVideo adapter file ({KIND_KEY}={kind!r}); bundle files "
                         f"written by save_fusion_adapter, save_step_embedder or save_vsr_conditioner")
    LOADERS[kind](path, "adapter_files")  # the kind's own loader checks every key, shape and value
    return kind, tensors, metadata


def save_dit_bundle(path, dit, adapter_files: Sequence, dit_metadata: dict | None = None) -> list[str]:
    """Writes DiT + adapters into one safetensors; `dit` is a safetensors path (its metadata is kept) or a
    state dict. Returns the embedded adapter kinds. Each adapter file is checked by its own loader."""
    if isinstance(dit, (str, pathlib.Path)):
        dit, file_metadata = read_safetensors(dit, DIT_FILE)
        dit_metadata = {**file_metadata, **(dit_metadata or {})}
    tensors = {key: value.contiguous() for key, value in dit.items()}
    clashing = sorted(key for key in tensors if _kind_of(key) is not None or key == BUNDLE_KEY)
    if clashing:
        raise ValueError(f"dit: keys {clashing[:6]} already use an adapter prefix; pass the plain DiT")
    entries = {}
    for adapter_path in adapter_files:
        kind, adapter_tensors, metadata = _read_adapter_file(str(adapter_path))
        if kind in entries:
            raise ValueError(f"{adapter_path}: a second {LABELS[kind]}; a bundle holds one adapter of each kind")
        prefix = "" if FILE_KEYS_PREFIXED[kind] else PREFIXES[kind]
        tensors.update({prefix + key: value.contiguous() for key, value in adapter_tensors.items()})
        entries[kind] = metadata
    metadata = {**(dit_metadata or {}), BUNDLE_KEY: json.dumps({"format_version": BUNDLE_VERSION,
                                                                "adapters": entries})}
    save_safetensors(tensors, path, metadata)
    return list(entries)
