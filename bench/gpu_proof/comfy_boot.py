"""Finds ComfyUI and imports the few core modules the model parts need, on the GPU or (--smoke) the CPU.

Where: COMFYUI_PATH when set (and only there), else the folder `--prepare` writes by default
(.gpu_suite/comfyui), else the ComfyUI tree whose custom_nodes holds the pack.
What: comfy.cli_args (cpu set before anything reads it), comfy.model_management,
comfy.model_detection (+ supported_models, model_base), comfy.sample / comfy.samplers, and the
pack's patches, which import comfy themselves. No server, no nodes.py, no folder_paths: the model
parts build core's model classes directly.
"""
from __future__ import annotations

import os
import pathlib
import sys
from types import SimpleNamespace

from .common import PACK_ROOT, pack_module

PREPARED = PACK_ROOT / ".gpu_suite" / "comfyui"


class ComfyMissing(RuntimeError):
    pass


def find_root() -> pathlib.Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        candidates = [pathlib.Path(env)]
    else:
        candidates = [PREPARED, PACK_ROOT.parent.parent] if PACK_ROOT.parent.name == "custom_nodes" else [PREPARED]
    for root in candidates:
        if (root / "comfy" / "model_management.py").is_file():
            return root.resolve()
    raise ComfyMissing("ComfyUI not found (set COMFYUI_PATH to a ComfyUI folder, or run "
                       f"`python bench/gpu_suite.py --prepare .gpu_suite`); tried {[str(c) for c in candidates]}")


def boot(cpu: bool) -> SimpleNamespace:
    """The core modules and the pack's patches, imported once; ComfyMissing names why not."""
    root = find_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = cpu or comfy.cli_args.args.cpu
        import comfy.model_detection
        import comfy.model_management
        import comfy.model_patcher
        import comfy.sample
        import comfy.samplers
    except ImportError as error:
        raise ComfyMissing(f"ComfyUI at {root} does not import ({type(error).__name__}: {error}); "
                           "on the GPU machine install the wheels --prepare wrote (see its command)") from error
    modules = {"attention": "attention", "int8": "int8.quantize", "fused_norms": "fused_norms",
               "tiled_model": "tiled_model"}
    patches = SimpleNamespace(**{name: pack_module(f"patches.{path}") for name, path in modules.items()})
    return SimpleNamespace(root=root, comfy=comfy, patches=patches, version=_version(root))


def _version(root: pathlib.Path) -> str:
    version_file = root / "comfyui_version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"
