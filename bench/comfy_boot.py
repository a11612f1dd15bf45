"""Makes ComfyUI (on the CPU), this pack (as `turbovideo`) and the tests' tiny models importable for a benchmark.

ComfyUI is found from COMFYUI_PATH, or as the ComfyUI whose custom_nodes holds this pack.
"""
from __future__ import annotations

import os
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def boot_comfy() -> None:
    root = os.environ.get("COMFYUI_PATH") or str(PACK_ROOT.parent.parent)
    if not (pathlib.Path(root) / "comfy").is_dir():
        sys.exit("set COMFYUI_PATH to the ComfyUI folder (the one with main.py)")
    for path in (root, str(PACK_ROOT / "tests"), str(PACK_ROOT / "tools")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.sd  # noqa: F401
    import folder_paths  # noqa: F401
    from pack_import import import_pack_module

    import_pack_module()
