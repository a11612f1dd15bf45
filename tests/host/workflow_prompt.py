"""A committed workflow as the end-to-end test runs it.

1. Converted as the frontend converts it: tools/workflow_format.to_api with this host's node info (the
   frontend test checks to_api against the real frontend's graphToPrompt on each host).
2. Text encoders swapped (workflow_files.py): each TEXT_ENCODE_NODES node becomes TurboTestConditioning under
   the same id (so every link to it still holds), seeded by its id, with the width of the encoder its loader
   names (for LTX-2's Gemma loader: TurboTestLTX2Conditioning with the widths of its checkpoint's config);
   the loaders are dropped. No other node or widget changes, except:
3. Sizes and frame counts, by one rule: every INT widget named width, height or length is divided by
   SIZE_DIVISOR and rounded down onto the widget's own grid (min + k * step, at least min): LTX-Video
   768x512x97 -> 128x96x17, 1280x704 -> 256x128 (still twice 640x352 -> 128x64), 257 frames -> 49; Wan
   832x480x81 -> 160x96x13.
"""
from __future__ import annotations

import re

from host.graphs import ltx2_conditioning_node
from host.workflow_files import (
    LTX2_CHECKPOINTS,
    LTXAV_TEXT_ENCODER_LOADERS,
    TEXT_ENCODE_NODES,
    TEXT_ENCODER_LOADERS,
    TEXT_ENCODERS,
)

SIZE_INPUTS = ("width", "height", "length")
SIZE_DIVISOR = 5
FILE_NAME = re.compile(r"\.(safetensors|pth|pt|ckpt|gguf|sft|bin|mp4|webm|mov|png|jpg|jpeg|webp)$", re.IGNORECASE)


def scaled_size(value: int, options: dict) -> int:
    low, step = int(options.get("min", 1)), int(options.get("step", 1))
    return max(low, low + int((value / SIZE_DIVISOR - low) // step) * step)


def _input_options(info: dict, name: str) -> dict:
    spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}.get(name)
    return spec[1] if spec and len(spec) > 1 and isinstance(spec[1], dict) else {}


def scale_sizes(prompt: dict, node_info: dict) -> dict:
    for node in prompt.values():
        for name in SIZE_INPUTS:
            value = node["inputs"].get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                node["inputs"][name] = scaled_size(value, _input_options(node_info[node["class_type"]], name))
    return prompt


def _stand_in(node_id: str, loader: dict) -> dict | None:
    """The test conditioning node for an encode node reading from `loader`, or None if none is known."""
    if loader["class_type"] in LTXAV_TEXT_ENCODER_LOADERS:
        config = LTX2_CHECKPOINTS.get(loader["inputs"].get(LTXAV_TEXT_ENCODER_LOADERS[loader["class_type"]]))
        return ltx2_conditioning_node(seed=int(node_id), config=config) if config else None
    encoder = TEXT_ENCODERS.get(loader["inputs"].get("type"))
    if loader["class_type"] not in TEXT_ENCODER_LOADERS or encoder is None:
        return None
    return {"class_type": "TurboTestConditioning", "inputs": {
        "tokens": 8, "width": encoder["width"], "seed": int(node_id), "attention_mask": encoder["attention_mask"]}}


def _loader_named(loader: dict) -> str:
    widget = LTXAV_TEXT_ENCODER_LOADERS.get(loader["class_type"], "type")
    return f"{loader['class_type']} of {widget} {loader['inputs'].get(widget)!r}"


def swap_text_encoders(prompt: dict) -> dict:
    for node_id, node in list(prompt.items()):
        clip_input = TEXT_ENCODE_NODES.get(node["class_type"])
        if clip_input is None:
            continue
        loader = prompt[node["inputs"][clip_input][0]]
        stand_in = _stand_in(node_id, loader)
        if stand_in is None:
            raise KeyError(f"node {node_id} ({node['class_type']}) reads a text encoder from a {_loader_named(loader)}"
                           f": add it to tests/host/workflow_files.py")
        prompt[node_id] = stand_in
    return {k: v for k, v in prompt.items() if v["class_type"] not in TEXT_ENCODER_LOADERS}


def named_files(prompt: dict) -> set[str]:
    """The file names a prompt's widgets hold (model files, input videos and images)."""
    return {value for node in prompt.values() for value in node["inputs"].values()
            if isinstance(value, str) and FILE_NAME.search(value)}


def e2e_prompt(ui: dict, node_info: dict) -> dict:
    """The API prompt the end-to-end test runs for a committed UI workflow (steps 1-3 above)."""
    import workflow_format

    return swap_text_encoders(scale_sizes(workflow_format.to_api(ui, node_info), node_info))
