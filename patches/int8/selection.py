"""Which Linears of a transformer get INT8 weights, by path (pure: no ComfyUI imports, so the offline
tool uses it too). The transformer blocks' attribute comes from the model's family (patches/families)."""
from __future__ import annotations

import re

LAYER_CHOICES = ("all", "attention", "feed_forward")


def wanted(path: str, layers: str) -> bool:
    """Whether a Linear at `path` inside a block belongs to the `layers` choice."""
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}; got {layers!r}")
    parts = path.split(".")
    if layers == "attention":
        return any("attn" in p for p in parts)
    if layers == "feed_forward":
        return any(p in ("ff", "ffn") for p in parts)
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
