"""Which Linears of a transformer get INT8 weights, by path (pure: no ComfyUI imports, so the offline
tool uses it too). The transformer blocks' attribute comes from the model's family (patches/families)."""
from __future__ import annotations

import re

LAYER_CHOICES = ("all", "attention", "feed_forward")


def wanted(path: str, layers: str, attention_modules: tuple[str, ...] | None = None,
           feed_forward_modules: tuple[str, ...] | None = None) -> bool:
    """Whether a Linear at `path` inside a block ('<submodule>....') belongs to the `layers` choice. A family's
    role names (patches/families) decide when given; the offline tool, which knows no family, goes by name."""
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}; got {layers!r}")
    submodule = path.split(".")[0]
    if layers == "attention":
        return submodule in attention_modules if attention_modules is not None else "attn" in submodule
    if layers == "feed_forward":
        return (submodule in feed_forward_modules if feed_forward_modules is not None
                else submodule in ("ff", "ffn", "audio_ff"))
    return True


def block_linear(key: str, shape, blocks: tuple[str, ...], layers: str = "all") -> str | None:
    """The Linear's prefix when a file key is a 2-D `.weight` inside `<block attribute>.<N>.`, else None.
    Keys may carry a checkpoint prefix (model.diffusion_model.)."""
    if len(shape) != 2 or not key.endswith(".weight"):
        return None
    prefix = key[: -len(".weight")]
    pattern = r"(?:^|\.)(?:" + "|".join(map(re.escape, blocks)) + r")\.\d+\.(.+)$"
    match = re.search(pattern, prefix)
    return prefix if match and wanted(match.group(1), layers) else None
