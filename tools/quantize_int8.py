"""Quantize a diffusion-model .safetensors file to W8A8 INT8 offline, one layer group at a time.

Usage: `python tools/quantize_int8.py IN.safetensors OUT.safetensors --granularity per_channel|block128
[--layers all|attention|feed_forward]`

The Linears inside the transformer blocks (`transformer_blocks.N.` for LTX-Video, `blocks.N.` for Wan:
the INT8 families of patches/families; a `model.diffusion_model.` checkpoint prefix is fine) become
INT8 in the file format of models/int8_format: per_channel in ComfyUI's native INT8 layout (core's own
UNETLoader loads it on ComfyUI 0.27+; TurboLoadQuantized everywhere), block128 tagged so that only
TurboLoadQuantized / TurboDiTLoader load it. Every other tensor and the file's metadata are copied.
Pickle-free (safetensors in and out) and streaming: the input is read lazily, the output header is
planned from the input's shapes and the tensors are written group by group (models/safetensors_stream),
so memory holds one block, not the model. A progress line is printed per layer group.
"""
import argparse
import pathlib
import re
import sys
import time

import torch
from pack_import import import_pack_module

GRANULARITIES = ("per_channel", "block128")
OUTSIDE = "(outside the blocks)"
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def _modules():
    names = ("patches.families", "patches.int8.selection", "models.int8_format", "models.safetensors_stream",
             "kernels.int8")
    return [import_pack_module(name) for name in names]


def block_attributes() -> tuple[str, ...]:
    families = import_pack_module("patches.families")
    return tuple(sorted({family.blocks for family in families.supporting(families.INT8)}))


def group_of(key: str, blocks: tuple[str, ...]) -> tuple:
    """Sort key and name of a tensor's layer group: its block (in block order), or OUTSIDE."""
    match = re.search(r"(?:^|\.)(" + "|".join(map(re.escape, blocks)) + r")\.(\d+)\.", key)
    return (1, match.group(1), int(match.group(2))) if match else (0, OUTSIDE, 0)


def group_name(group: tuple) -> str:
    return OUTSIDE if group[0] == 0 else f"{group[1]}.{group[2]}"


def _scale_shape(shape, granularity: str) -> tuple:
    return (shape[0], 1) if granularity == "per_channel" else (-(-shape[0] // 128), -(-shape[1] // 128))


def plan_file(reader, layers: str, granularity: str):
    """(groups {group: [(key, linear prefix or None)]} in write order, output plan [(name, dtype, shape)])."""
    _, selection, int8_format, _, _ = _modules()
    blocks, groups, plan = block_attributes(), {}, []
    for key in sorted(reader.keys(), key=lambda k: (group_of(k, blocks), k)):
        tensor = reader.get_slice(key)
        shape, dtype = tuple(tensor.get_shape()), _DTYPES[tensor.get_dtype()]
        if key.endswith(int8_format.QUANT_SUFFIX) or key.endswith(int8_format.SCALE_SUFFIX):
            raise ValueError(f"{key}: the file is already quantized; give the float model")
        prefix = selection.block_linear(key, shape, blocks, layers) if dtype.is_floating_point else None
        groups.setdefault(group_of(key, blocks), []).append((key, prefix))
        if prefix is None:
            plan.append((key, dtype, shape))
            continue
        tag = int8_format.comfy_quant(int8_format.NATIVE_FORMAT if granularity == "per_channel"
                                      else int8_format.BLOCK128_FORMAT)
        plan += [(key, torch.int8, shape), (prefix + int8_format.SCALE_SUFFIX, torch.float32,
                                            _scale_shape(shape, granularity)),
                 (prefix + int8_format.QUANT_SUFFIX, torch.uint8, tuple(tag.shape))]
    return groups, plan


def _write_group(reader, out, entries, granularity: str) -> int:
    _, _, int8_format, _, int8_kernels = _modules()
    count = 0
    for key, prefix in entries:
        tensor = reader.get_tensor(key)
        if prefix is None:
            out.write(key, tensor)
            continue
        q, scale = int8_kernels.quantize(tensor.float(), granularity, backend="torch")
        for name, value in int8_format.file_entries(prefix, q, scale).items():
            out.write(name, value)
        count += 1
    return count


def _source_dtype(reader, groups) -> torch.dtype:
    dtypes = [_DTYPES[reader.get_slice(key).get_dtype()] for entries in groups.values()
              for key, prefix in entries if prefix is not None]
    return max(set(dtypes), key=dtypes.count)


def quantize_file(source, target, granularity: str = "per_channel", layers: str = "all", log=print) -> int:
    """Write `target`; returns the number of INT8 Linears."""
    from safetensors import safe_open

    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
    _, _, int8_format, stream, _ = _modules()
    with safe_open(str(source), "pt") as reader:
        groups, plan = plan_file(reader, layers, granularity)
        linears = sum(prefix is not None for entries in groups.values() for _, prefix in entries)
        if not linears:
            raise ValueError(f"{source}: no Linear weights ({layers}) inside transformer blocks "
                             f"({', '.join(b + '.N' for b in block_attributes())}); not an LTX-Video or Wan DiT?")
        metadata = {**(reader.metadata() or {}), **int8_format.metadata(_source_dtype(reader, groups), granularity)}
        start, done = time.perf_counter(), 0
        with stream.StreamWriter(target, plan, metadata) as out:
            for index, (group, entries) in enumerate(groups.items(), 1):
                count = _write_group(reader, out, entries, granularity)
                done += count
                log(f"[{index}/{len(groups)}] {group_name(group)}: {count} Linear -> int8, "
                    f"{len(entries) - count} copied ({done}/{linears} Linears, {time.perf_counter() - start:.1f} s)")
    return linears


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=pathlib.Path, help="float diffusion model .safetensors")
    parser.add_argument("target", type=pathlib.Path, help="INT8 .safetensors to write")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="per_channel")
    parser.add_argument("--layers", choices=("all", "attention", "feed_forward"), default="all")
    args = parser.parse_args(argv)
    if args.source.suffix.lower() not in (".safetensors", ".sft") or not args.source.is_file():
        print(f"error: {args.source} is not a .safetensors file (pickle files are not read; convert them first)",
              file=sys.stderr)
        return 2
    if args.target.resolve() == args.source.resolve():
        print("error: the target must not be the source file", file=sys.stderr)
        return 2
    try:
        count = quantize_file(args.source, args.target, args.granularity, args.layers)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.target}: {count} INT8 Linears ({args.granularity})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
