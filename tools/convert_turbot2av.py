"""Converts TurboT2AV's model.pth into one pickle-free .safetensors that core ComfyUI loads by itself.

Usage: `python tools/convert_turbot2av.py model.pth ltx-2-19b-dev.safetensors [out.safetensors] [--bf16]`
The output holds the student's LTX-2 DiT with the base checkpoint's two text connectors merged in and the
base's metadata `config`, so core's Load Diffusion Model (UNETLoader) builds the right LTX-2 19B DiT from it
(TurboT2AVLoader reads it too). The student is checked against the base first, with the loader's messages;
it is read memory-mapped and written one tensor at a time.
"""
import argparse
import pathlib
import sys

from pack_import import import_pack_module


def _as_bf16(tensors: dict) -> dict:
    import torch

    return {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()}


def convert_file(source: pathlib.Path, base: pathlib.Path, target: pathlib.Path | None = None,
                 bf16: bool = False) -> pathlib.Path:
    turbot2av = import_pack_module("models.turbot2av")
    stream = import_pack_module("models.safetensors_stream")
    target = target or source.with_name(f"turbot2av_{source.stem}.safetensors")
    student = turbot2av.read_student(source, source.name)
    if student.converted is not None:
        raise turbot2av.TurboT2AVError(f"student: '{source.name}' is already a converted TurboT2AV file")
    parts = turbot2av.read_base(base, base.name)
    turbot2av.check_fits(student, parts, source.name, base.name)
    state_dict, _ = turbot2av.merge(student, parts, with_connectors=True)
    metadata = turbot2av.converted_metadata(parts, source.name, base.name)
    return stream.write(target, _as_bf16(state_dict) if bf16 else state_dict, metadata)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=pathlib.Path, help="TurboT2AV model.pth")
    parser.add_argument("base", type=pathlib.Path, help="the LTX-2 19B checkpoint (ltx-2-19b-dev.safetensors)")
    parser.add_argument("target", type=pathlib.Path, nargs="?", help="output .safetensors (default: beside it)")
    parser.add_argument("--bf16", action="store_true", help="store float tensors as bfloat16 (TurboT2AV runs in it)")
    args = parser.parse_args(argv)
    for path in (args.source, args.base):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    try:
        target = convert_file(args.source, args.base, args.target, args.bf16)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
