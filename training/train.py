"""Train TurboVideo adapters: `python training/train.py <objective> [options]` (docs/training.md).

Several GPUs: `torchrun --nproc_per_node N training/train.py <objective> [options]`. ComfyUI must be
importable: set COMFYUI_PATH, or run from a pack installed in ComfyUI/custom_nodes.
"""
import importlib
import importlib.util
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_cli():
    """The pack's training.cli, with the pack imported as package `turbovideo` whatever its folder is called."""
    if "turbovideo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "turbovideo", PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["turbovideo"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("turbovideo.training.cli")


def main(argv=None) -> int:
    import torch.distributed

    try:
        return load_cli().main(argv)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
