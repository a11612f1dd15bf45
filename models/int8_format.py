"""Checkpoint formats for W8A8 INT8 weights (pure: no ComfyUI imports).

TurboVideo's format (safetensors, docs/int8.md): a diffusion-model state dict in which every
quantized Linear at <prefix> is stored as
  <prefix>.weight        int8    [out, in]
  <prefix>.weight_scale  float32 [out, 1] (per output channel) or
                                 [ceil(out/128), ceil(in/128)] (128 x 128 blocks)
  <prefix>.bias          the model's float dtype (unchanged)
with weight = int8 * scale, and metadata {"turbovideo_format": "int8_w8a8", "turbovideo_version":
"1", "turbovideo_dtype": <float dtype of the other tensors>}. Everything else is unchanged.

TurboDiffusion's `-quant` .pth layout: <prefix>.int8_weight int8 [out, in], <prefix>.scale
float32 [ceil(out/128), ceil(in/128)] (scale = amax / 128, values saturate at 127: q * scale is
still the weight), <prefix>.bias bf16. from_turbodiffusion_quant renames it into the format above.
"""
import math

import torch

FORMAT = "int8_w8a8"
VERSION = "1"
SCALE_SUFFIX = ".weight_scale"
_TD_WEIGHT, _TD_SCALE = ".int8_weight", ".scale"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def quantized_prefixes(state_dict: dict) -> list[str]:
    """Prefixes of the Linears stored as int8 + weight_scale in TurboVideo's format."""
    return sorted(k[: -len(SCALE_SUFFIX)] for k in state_dict if k.endswith(SCALE_SUFFIX))


def check_scale_shape(prefix: str, weight: torch.Tensor, scale: torch.Tensor):
    out_features, in_features = weight.shape
    blocks = (math.ceil(out_features / 128), math.ceil(in_features / 128))
    if tuple(scale.shape) not in ((out_features, 1), blocks):
        raise ValueError(f"{prefix}: scale of shape {tuple(scale.shape)} fits neither per-channel "
                         f"[{out_features}, 1] nor 128x128 blocks [{blocks[0]}, {blocks[1]}]")


def validate(state_dict: dict) -> list[str]:
    """Check every quantized entry (int8 weight, float32 scale of a known shape); return prefixes."""
    prefixes = quantized_prefixes(state_dict)
    for prefix in prefixes:
        weight = state_dict.get(prefix + ".weight")
        if weight is None or weight.dtype != torch.int8 or weight.dim() != 2:
            raise ValueError(f"{prefix}.weight must be a 2-D int8 tensor beside {prefix}{SCALE_SUFFIX}")
        check_scale_shape(prefix, weight, state_dict[prefix + SCALE_SUFFIX])
    return prefixes


def metadata(dtype: torch.dtype, granularity: str) -> dict:
    names = {v: k for k, v in _DTYPES.items()}
    return {"turbovideo_format": FORMAT, "turbovideo_version": VERSION,
            "turbovideo_dtype": names.get(dtype, "float32"), "turbovideo_granularity": granularity}


def is_turbovideo_int8(file_metadata: dict | None) -> bool:
    return bool(file_metadata) and file_metadata.get("turbovideo_format") == FORMAT


def compute_dtype(file_metadata: dict | None) -> torch.dtype | None:
    """The float dtype the quantized file was made from, or None when it does not say."""
    return _DTYPES.get((file_metadata or {}).get("turbovideo_dtype", ""))


def is_turbodiffusion_quant(state_dict: dict) -> bool:
    return any(k.endswith(_TD_WEIGHT) for k in state_dict)


def from_turbodiffusion_quant(state_dict: dict) -> dict:
    """TurboDiffusion `-quant` layout -> TurboVideo's format (same key prefixes, renamed leaves).

    `.int8_weight` becomes `.weight`, its `.scale` becomes `.weight_scale` (float32); every other
    tensor, including the bf16 biases, is passed through untouched."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(_TD_WEIGHT):
            prefix = key[: -len(_TD_WEIGHT)]
            scale = state_dict.get(prefix + _TD_SCALE)
            if scale is None:
                raise ValueError(f"{key} has no {prefix}{_TD_SCALE} beside it; the file is not a complete "
                                 "TurboDiffusion -quant checkpoint")
            if value.dtype != torch.int8:
                raise ValueError(f"{key} must be int8; got {value.dtype}")
            check_scale_shape(prefix, value, scale)
            out[prefix + ".weight"] = value
            out[prefix + SCALE_SUFFIX] = scale.float()
        elif key.endswith(_TD_SCALE) and (key[: -len(_TD_SCALE)] + _TD_WEIGHT) in state_dict:
            continue
        else:
            out[key] = value
    return out
