"""Checkpoint formats for W8A8 INT8 weights (pure: no ComfyUI imports); docs/int8.md has the tables.

What the pack writes (format version 2), for every quantized Linear at <p>:
- one scale per output channel: ComfyUI's native INT8 layout, which core (0.27 and later) loads with
  its own UNETLoader and runs through comfy-kitchen's INT8 GEMM:
    <p>.weight int8 [out, in], <p>.weight_scale float32 [out, 1],
    <p>.comfy_quant uint8 holding the JSON {"format": "int8_tensorwise"};
- 128 x 128 blocks (TurboDiffusion's granularity; core has no such layout): the same three keys with
  <p>.weight_scale float32 [ceil(out/128), ceil(in/128)] and the format BLOCK128_FORMAT, a name core does
  not know: every core loader that reads `.comfy_quant` (0.8 and 0.29 both do) raises a KeyError that
  shows the name, and the name says which loaders to use. No core version loads it silently.
<p>.bias and every other tensor stay as in the source model; metadata: turbovideo_format,
turbovideo_version "2", turbovideo_dtype (float dtype of the source), turbovideo_granularity.

Read as well: native INT8 files of other tools (one per-tensor scale: the same scale on every row),
the pack's version-1 files (no `.comfy_quant`; per-channel or block scales) and TurboDiffusion's
`-quant` layout (<p>.int8_weight int8, <p>.scale float32 blocks = amax / 128, values saturating at 127).
"""
import json
import math

import torch

FORMAT = "int8_w8a8"
VERSION = "2"
SCALE_SUFFIX = ".weight_scale"
QUANT_SUFFIX = ".comfy_quant"
NATIVE_FORMAT = "int8_tensorwise"
BLOCK128_FORMAT = ("turbovideo_int8_block128 -- load this file with TurboLoadQuantized or TurboDiTLoader "
                   "(TurboVideo): ComfyUI core cannot run 128x128-block INT8 weights")
PER_CHANNEL, PER_TENSOR, BLOCK128 = "per_channel", "per_tensor", "block128"
_TD_WEIGHT, _TD_SCALE = ".int8_weight", ".scale"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def comfy_quant(fmt: str) -> torch.Tensor:
    """The `.comfy_quant` tensor core reads: the layer's JSON config as uint8 bytes."""
    return torch.tensor(list(json.dumps({"format": fmt}).encode("utf-8")), dtype=torch.uint8)


def read_comfy_quant(prefix: str, tensor: torch.Tensor) -> dict:
    try:
        config = json.loads(bytes(tensor.to(torch.uint8).flatten().tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RuntimeError) as error:
        raise ValueError(f"{prefix}{QUANT_SUFFIX}: not a JSON layer config ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{prefix}{QUANT_SUFFIX}: expected a JSON object, got {config!r}")
    return config


def _blocks(weight: torch.Tensor) -> tuple[int, int]:
    return math.ceil(weight.shape[0] / 128), math.ceil(weight.shape[1] / 128)


def check_scale_shape(prefix: str, weight: torch.Tensor, scale: torch.Tensor):
    out_features = weight.shape[0]
    blocks = _blocks(weight)
    if tuple(scale.shape) not in ((out_features, 1), blocks):
        raise ValueError(f"{prefix}: scale of shape {tuple(scale.shape)} fits neither per-channel "
                         f"[{out_features}, 1] nor 128x128 blocks [{blocks[0]}, {blocks[1]}]")


def quantized_prefixes(state_dict: dict) -> list[str]:
    """Prefixes of the Linears stored quantized (a `.weight_scale` or a `.comfy_quant` beside `.weight`)."""
    return sorted({k[: -len(s)] for k in state_dict for s in (SCALE_SUFFIX, QUANT_SUFFIX) if k.endswith(s)})


def _weight_and_scale(state_dict: dict, prefix: str):
    weight, scale = state_dict.get(prefix + ".weight"), state_dict.get(prefix + SCALE_SUFFIX)
    if weight is None or weight.dtype != torch.int8 or weight.dim() != 2:
        found = "nothing" if weight is None else f"{weight.dtype} {list(weight.shape)}"
        raise ValueError(f"{prefix}.weight must be a 2-D int8 tensor beside {prefix}{SCALE_SUFFIX}; found {found}")
    if scale is None:
        raise ValueError(f"{prefix}{SCALE_SUFFIX} is missing: an INT8 layer needs its scales")
    return weight, scale


def _native_kind(prefix: str, config: dict, weight: torch.Tensor, scale: torch.Tensor) -> str:
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    if config.get("convrot", params.get("convrot", False)):
        raise ValueError(f"{prefix}: ConvRot-rotated INT8 (Hadamard-rotated weights) is run only by ComfyUI core's "
                         "own loader; load this file with UNETLoader on a ComfyUI that has native INT8 (0.27+)")
    if scale.numel() == 1:
        return PER_TENSOR
    if tuple(scale.shape) != (weight.shape[0], 1):
        raise ValueError(f"{prefix}: int8_tensorwise scale of shape {tuple(scale.shape)}; expected a scalar or "
                         f"[{weight.shape[0]}, 1]")
    return PER_CHANNEL


def layer_kind(state_dict: dict, prefix: str) -> str:
    """PER_CHANNEL, PER_TENSOR or BLOCK128 for one quantized Linear; a ValueError naming it otherwise."""
    quant = state_dict.get(prefix + QUANT_SUFFIX)
    config = None if quant is None else read_comfy_quant(prefix, quant)
    fmt = None if config is None else config.get("format")
    if config is not None and fmt not in (NATIVE_FORMAT, BLOCK128_FORMAT):
        raise ValueError(f"{prefix}: quantization format {fmt!r} is not INT8; load this file with UNETLoader "
                         "(ComfyUI's own loader reads its fp8 / fp4 formats)")
    weight, scale = _weight_and_scale(state_dict, prefix)
    if fmt == NATIVE_FORMAT:
        return _native_kind(prefix, config, weight, scale)
    check_scale_shape(prefix, weight, scale)
    blocks = tuple(scale.shape) == _blocks(weight)
    if fmt == BLOCK128_FORMAT:
        if not blocks:
            raise ValueError(f"{prefix}: tagged as 128x128 blocks but its scale is {tuple(scale.shape)}")
        return BLOCK128
    return BLOCK128 if blocks and tuple(scale.shape) != (weight.shape[0], 1) else PER_CHANNEL


def layer_kinds(state_dict: dict) -> dict[str, str]:
    """{prefix: kind} of every quantized Linear, each checked (dtype, shapes, format)."""
    return {prefix: layer_kind(state_dict, prefix) for prefix in quantized_prefixes(state_dict)}


def validate(state_dict: dict) -> list[str]:
    """Check every quantized entry; return their prefixes ([] for a float file)."""
    return list(layer_kinds(state_dict))


def file_entries(prefix: str, q: torch.Tensor, scale: torch.Tensor) -> dict:
    """The keys one quantized Linear takes in a file the pack writes (see the module docstring)."""
    check_scale_shape(prefix, q, scale)
    blocks = tuple(scale.shape) != (q.shape[0], 1)
    return {prefix + ".weight": q, prefix + SCALE_SUFFIX: scale.float(),
            prefix + QUANT_SUFFIX: comfy_quant(BLOCK128_FORMAT if blocks else NATIVE_FORMAT)}


def internal_state(state_dict: dict) -> dict:
    """The state dict in the pack's own layer layout: int8 weight + [out, 1] or block scales, no `.comfy_quant`
    (a per-tensor scale becomes the same scale on every row: the same weights)."""
    kinds = layer_kinds(state_dict)
    out = {k: v for k, v in state_dict.items() if not k.endswith(QUANT_SUFFIX)}
    for prefix, kind in kinds.items():
        if kind == PER_TENSOR:
            rows = state_dict[prefix + ".weight"].shape[0]
            out[prefix + SCALE_SUFFIX] = state_dict[prefix + SCALE_SUFFIX].float().reshape(1, 1).expand(rows, 1).clone()
    return out


def native_state(state_dict: dict) -> dict:
    """The state dict as core's native INT8 loader reads it: version-1 per-channel layers get `.comfy_quant`."""
    kinds = layer_kinds(state_dict)
    if BLOCK128 in kinds.values():
        raise ValueError("the file holds 128x128-block INT8 layers, which core's INT8 layout cannot represent")
    out = dict(state_dict)
    for prefix in kinds:
        out.setdefault(prefix + QUANT_SUFFIX, comfy_quant(NATIVE_FORMAT))
    return out


def granularity(kinds: dict[str, str]) -> str:
    found = {BLOCK128 if kind == BLOCK128 else PER_CHANNEL for kind in kinds.values()}
    return found.pop() if len(found) == 1 else "mixed"


def metadata(dtype: torch.dtype, granularity_name: str) -> dict:
    names = {v: k for k, v in _DTYPES.items()}
    return {"turbovideo_format": FORMAT, "turbovideo_version": VERSION,
            "turbovideo_dtype": names.get(dtype, "float32"), "turbovideo_granularity": granularity_name}


def is_turbovideo_int8(file_metadata: dict | None) -> bool:
    return bool(file_metadata) and file_metadata.get("turbovideo_format") == FORMAT


def compute_dtype(file_metadata: dict | None) -> torch.dtype | None:
    """The float dtype the quantized file was made from, or None when it does not say."""
    return _DTYPES.get((file_metadata or {}).get("turbovideo_dtype", ""))


def float_dtype(state_dict: dict) -> torch.dtype | None:
    """The floating dtype most of the file's float values have (biases, norms, embeddings), or None."""
    counts: dict[torch.dtype, int] = {}
    for value in state_dict.values():
        if value.is_floating_point() and value.dtype in _DTYPES.values():
            counts[value.dtype] = counts.get(value.dtype, 0) + value.numel()
    return max(counts, key=counts.get) if counts else None


def is_turbodiffusion_quant(state_dict: dict) -> bool:
    return any(k.endswith(_TD_WEIGHT) for k in state_dict)


def from_turbodiffusion_quant(state_dict: dict) -> dict:
    """TurboDiffusion `-quant` layout -> the pack's layer layout (same key prefixes, renamed leaves).

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
