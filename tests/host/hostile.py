"""Shared pieces of the hostile-input tests (issue 18): run a bad prompt, demand a clear error or a correct
result, and prove the server still serves a valid prompt afterwards.

A clear error names the input (its name appears in the message) and says the fix (one of the case's
`fix` words appears); a raw library error (SafetensorError, EOFError, 'not enough values to unpack', a
hint to set weights_only=False) is never clear.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys

import torch

RAW_ERRORS = ("SafetensorError", "EOFError", "not enough values to unpack", "weights_only=False",
              "weights_only` set to `False", "0 active drivers", "Expected weight to be", "header too small",
              "list index out of range", "NoneType", "add_safe_globals", "allowlist")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: `kind` is the issue's class ('silent wrong output', 'unclear error', 'out of range',
    'broke a valid graph', 'hung'); needles must all appear in the error."""
    id: str
    kind: str
    needles: tuple[str, ...]

    def __str__(self):
        return self.id


LOG_ENV = "TURBOVIDEO_HOSTILE_LOG"  # a path: every case tried is appended to it as one JSON line (for counting)


def record(case: Case, outcome: str) -> None:
    """Notes one case tried ('clear error' or 'correct result') in the file named by $TURBOVIDEO_HOSTILE_LOG."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    module = sys._getframe(1).f_globals.get("__name__", "?")
    module = sys._getframe(2).f_globals.get("__name__", module) if module.endswith("hostile") else module
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"module": module.rsplit(".", 1)[-1], "id": case.id, "kind": case.kind,
                                 "outcome": outcome}) + "\n")


def error_text(result) -> str:
    """What the user is shown: validation messages and details, or the exception type and message (never the
    traceback, which quotes source code)."""
    parts = []
    if isinstance(result.error, dict):
        parts += [str(result.error.get("message", "")), str(result.error.get("details", ""))]
    for node in (result.node_errors or {}).values():
        for error in node.get("errors", []):
            parts += [str(error.get("message", "")), str(error.get("details", ""))]
    failure = result.execution_error or {}
    parts += [str(failure.get("exception_type", "")), str(failure.get("exception_message", ""))]
    return " | ".join(part for part in parts if part)


def cheap_valid_prompt() -> dict:
    """A prompt through the whole queue and worker that needs no model (the pack's schedule node)."""
    return {"sig": {"class_type": "TurboRCMSigmas", "inputs": {"steps": 2, "sigma_max": 80.0,
                                                               "mid_timesteps": "default"}},
            "cap": {"class_type": "TurboTestCapture", "inputs": {"value": ["sig", 0], "key": "still_serving"}}}


def assert_still_serving(comfy) -> None:
    from host.test_only_nodes import CAPTURED

    CAPTURED.pop("still_serving", None)
    result = comfy.run(cheap_valid_prompt())
    assert result.ok, f"the server stopped serving after a bad input: {result.describe()}"
    assert CAPTURED["still_serving"].shape == (3,)


def assert_clear_error(comfy, prompt: dict, case: Case) -> str:
    """Runs `prompt`, which must fail with every needle of `case` in its message and no raw library error;
    then a valid prompt must run. Returns the error text."""
    result = comfy.run(prompt)
    text = error_text(result)
    # core runs the outputs that did validate: a node error with ok=True is still a refusal of that node
    assert not result.ok or result.node_errors, f"{case}: expected a clear error, the prompt succeeded"
    missing = [needle for needle in case.needles if not re.search(needle, text)]
    assert not missing, f"{case}: the error lacks {missing}: {text}"
    raw = [word for word in RAW_ERRORS if word in text]
    assert not raw, f"{case}: a raw library error reached the user ({raw}): {text}"
    assert_still_serving(comfy)
    record(case, "clear error")
    return text


def nan_patch(tensor: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    """A copy with one 2x2 patch of `value` in the middle of the first frame (an IMAGE (N, H, W, C))."""
    out = tensor.clone()
    h, w = out.shape[1] // 2, out.shape[2] // 2
    out[0, h:h + 2, w:w + 2] = value
    return out


def smooth_frames(frames: int, height: int, width: int, seed: int, channels: int = 3) -> torch.Tensor:
    """Smooth random frames in [0, 1] (far from constant)."""
    base = torch.rand(1, channels, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    video = torch.nn.functional.interpolate(base, size=(frames, height, width), mode="trilinear")
    return video[0].permute(1, 2, 3, 0).contiguous()


# ---- valid base prompts that a case changes one input of -------------------------------------------------

def vsr_prompt(tiny_models, node="TurboVSRUpscale", frames=None, **inputs) -> dict:
    """A valid VSR graph on the tiny LTX checkpoint (1 frame of 32x32, 1 step) with `inputs` changed."""
    from host import graphs
    from host.test_only_nodes import SOURCES

    SOURCES["hostile_lr"] = frames if frames is not None else smooth_frames(1, 32, 32, seed=2)
    widgets = {"model": ["ckpt", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 1,
               "strength": 0.5, "seed": 1, "resize_method": "bilinear", "color_correction": "none",
               "factorized": False, "tile_size": 0, "memory_budget_mb": 0, "tile_overlap": 2, "segment_length": 0,
               "segment_overlap": 2, "weights": "cosine", "tile_batch": 1,
               "vsr_conditioner": "none (training-free SDEdit)", "cfg": 1.0}
    if node == "TurboVSRUpscaleToVideo":
        widgets.update(frame_rate=24.0, crf=19)
    widgets.update(inputs)
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
            "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "hostile_lr"}},
            "vsr": {"class_type": node, "inputs": widgets},
            **graphs.capture(["vsr", 0], "out"), **graphs.capture(["vsr", 1], "layout")}


def lrhr_prompt(tiny_models, **inputs) -> dict:
    """TurboLRHRSampler on the tiny LTX checkpoint, 2 steps each pass, with `inputs` changed."""
    from host import graphs

    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=64)
    prompt["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["sigmas"] = {"class_type": "TurboShortcutSigmas", "inputs": {"steps": 2, "shift_mode": "manual",
                                                                         "shift": 1.0}}
    widgets = {"model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 1.0,
               "sampler": ["sampler", 0], "lr_sigmas": ["sigmas", 0], "hr_sigmas": ["sigmas", 0],
               "lr_latent": ["latent", 0], "noise_seed": 1, "adapter": "none (training-free latent guidance)",
               "strength": 1.0, "scale": 2.0}
    widgets.update(inputs)
    prompt["lrhr"] = {"class_type": "TurboLRHRSampler", "inputs": widgets}
    prompt.update(graphs.capture(["lrhr", 0], "hr"))
    return prompt
