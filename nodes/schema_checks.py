"""ComfyUI's own min / max / options checks for the inputs that a node's validate_inputs takes.

Core's execution.validate_inputs (0.8.0 and 0.29.0 alike) skips its schema checks for every input that
validate_inputs names as a parameter, and for all inputs when it takes **kwargs. So a pack node's
validate_inputs names only the inputs its cross-input checks need (never **kwargs) and runs them
through `schema_problem` first: the same limits, read from the same INPUT_TYPES, with a message that
names the input and the allowed range. A value that arrives through a link is None at validation
time (core passes None) and never checked by core at all: nodes whose numbers bound the work (scale,
steps, tile sizes, frame rate) check them again when they run (require_schema).
"""
from __future__ import annotations

COMBO = "COMBO"


def _declared(node_cls) -> dict:
    declared = node_cls.INPUT_TYPES()
    return {**declared.get("required", {}), **declared.get("optional", {})}


def _options(input_type, info: dict):
    if isinstance(input_type, list):
        return input_type
    return info.get("options") if input_type == COMBO else None


def _problem(name: str, value, input_type, info: dict) -> str | None:
    if "min" in info and value < info["min"]:
        return f"{name}: {value} is below the minimum {info['min']} (allowed {info['min']}..{info.get('max', '')})"
    if "max" in info and value > info["max"]:
        return f"{name}: {value} is above the maximum {info['max']} (allowed {info.get('min', '')}..{info['max']})"
    options = _options(input_type, info)
    if options is not None and value not in options:
        shown = options if len(options) <= 20 else f"{len(options)} choices"
        return f"{name}: '{value}' is not one of {shown}; pick one from the list (refresh the page for new files)"
    return None


def schema_problem(node_cls, **values) -> str | None:
    """The first schema violation among `values` (input name -> widget value), or None."""
    declared = _declared(node_cls)
    for name, value in values.items():
        if value is None or name not in declared:
            continue
        spec = declared[name]
        input_type, info = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
        problem = _problem(name, value, input_type, info)
        if problem:
            return problem
    return None


def require_schema(node_cls, **values) -> None:
    """schema_problem as a ValueError when the node runs: a value that reached the node through a link (a
    primitive node, an API client) was never range-checked by core's validation."""
    problem = schema_problem(node_cls, **values)
    if problem:
        raise ValueError(problem)
