"""Converts a TurboWan .pth (TurboDiffusion release) into a pickle-free .safetensors file.

Usage: `python tools/convert_turbowan.py TurboWan2.1-T2V-1.3B-480P.pth [out.safetensors]`
The keys stay in TurboDiffusion's layout (TurboWanLoader reads both); the file is checked first, so
a native Wan or incomplete checkpoint is refused with the same message the loader gives. The output is
written under a temporary name and renamed when complete.
"""
import argparse
import pathlib
import sys

from pack_import import import_pack_module


def convert_file(source: pathlib.Path, target: pathlib.Path | None = None) -> pathlib.Path:
    turbowan = import_pack_module("models.turbowan")
    files = import_pack_module("models.checkpoint_files")
    target = target or source.with_suffix(".safetensors")
    state_dict = turbowan.read_state_dict(source, "source")
    checkpoint = turbowan.convert(state_dict, source.name, "source")
    metadata = {"format": "turbowan", "release": checkpoint.release, "source": source.name}
    files.save_safetensors({k: v.contiguous() for k, v in state_dict.items()}, target, metadata)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=pathlib.Path, help="TurboWan .pth file")
    parser.add_argument("target", type=pathlib.Path, nargs="?", help="output .safetensors (default: beside it)")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    try:
        target = convert_file(args.source, args.target)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
