"""Train TurboVideo adapters: `python training/train.py <objective> [options]` (docs/training.md).

Several GPUs: `torchrun --nproc_per_node N training/train.py <objective> [options]`. ComfyUI must be
importable: set COMFYUI_PATH, or run from a pack installed in ComfyUI/custom_nodes.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
from pack_import import import_pack_module  # noqa: E402  (needs the path above)


def load_cli():
    """The pack's training.cli, with the pack imported as package `turbovideo` whatever its folder is called."""
    return import_pack_module("training.cli")


def main(argv=None) -> int:
    import torch.distributed

    try:
        return load_cli().main(argv)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
