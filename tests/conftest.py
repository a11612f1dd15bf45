"""Makes the pack importable as the package `turbovideo`, whatever folder it was cloned into.

ComfyUI imports the pack by its folder path, so inside the pack every import is relative. Unit
tests import the pure layers (samplers/, models/, kernels/) through this alias.
"""
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tools"))
from pack_import import import_pack_module  # noqa: E402  (needs the path above)

import_pack_module()
# test support packages (tiny_models, host) are imported by absolute name from tests/
sys.path.insert(0, str(PACK_ROOT / "tests"))


def _interpret_triton_without_cuda():
    # Triton kernels are checked on the CPU through the interpreter; the flag is read when the
    # kernels are decorated, so it must be set before any kernels module is imported.
    import os

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_triton_without_cuda()
