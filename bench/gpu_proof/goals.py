"""The issue's goals, each a ratio measured in the same run, read off the parts' rows.

- INT8 GEMM >= 1.5x bf16 F.linear at 32k tokens (per-channel; the GEMM alone and the whole layer,
  median over the block shapes; the whole layer is what a model runs)
- Sage >= 1.8x SDPA flash with cosine >= 0.999 to exact attention (worst case over head dims)
- SLA topk 0.1 >= 5x SDPA flash (worst case over head dims)
- TurboTiledModel with one tile <= 3% slower than the plain model (worst model)
"""
from __future__ import annotations

import statistics


def _rows(parts: dict, prefix: str) -> list[dict]:
    return [row for name, part in parts.items() if name.startswith(prefix) for row in part.rows]


def _goal(value, target: str, met) -> dict:
    return {"value": None if value is None else round(value, 4), "target": target,
            "met": None if value is None else bool(met)}


def int8_goals(rows: list[dict]) -> dict:
    per_channel = [r for r in rows if str(r.get("case", "")).startswith("int8") and r.get("variant") == "per_channel"]
    gemm = statistics.median(r["gemm_speedup"] for r in per_channel) if per_channel else None
    layer = statistics.median(r["speedup"] for r in per_channel) if per_channel else None
    return {"int8_gemm_vs_bf16": _goal(gemm, ">= 1.5", gemm is not None and gemm >= 1.5),
            "int8_layer_vs_bf16": _goal(layer, ">= 1.5 (whole W8A8 layer)", layer is not None and layer >= 1.5)}


def attention_goals(rows: list[dict]) -> dict:
    sage = [r for r in rows if r.get("variant") == "sage"]
    sla = [r for r in rows if r.get("variant") == "sla topk 0.1"]
    sage_x = min((r["speedup"] for r in sage), default=None)
    sage_cos = min((r["cos"] for r in sage if r.get("cos") is not None), default=None)
    sla_x = min((r["speedup"] for r in sla), default=None)
    met = sage_x is not None and sage_cos is not None and sage_x >= 1.8 and sage_cos >= 0.999
    return {"sage_vs_sdpa": _goal(sage_x, ">= 1.8 with cos >= 0.999", met),
            "sage_cos": _goal(sage_cos, ">= 0.999", sage_cos is not None and sage_cos >= 0.999),
            "sla_topk0.1_vs_sdpa": _goal(sla_x, ">= 5", sla_x is not None and sla_x >= 5)}


def tiling_goal(rows: list[dict]) -> dict:
    ratios = [1 / r["speedup"] - 1 for r in rows if r.get("config") == "TurboTiledModel, 1 tile" and r.get("speedup")]
    worst = max(ratios, default=None)
    return {"tiled_1tile_slowdown": _goal(worst, "<= 0.03", worst is not None and worst <= 0.03)}


def all_goals(parts: dict) -> dict:
    timing_rows = _rows(parts, "2.")
    return {**int8_goals(timing_rows), **attention_goals(timing_rows), **tiling_goal(_rows(parts, "3."))}
