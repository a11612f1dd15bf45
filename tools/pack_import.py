"""Imports the pack as the package `turbovideo`, whatever folder it was cloned into.

ComfyUI imports the pack by its folder path, so inside the pack every import is relative; scripts
(tools/, training/train.py) and the tests reach it through this alias. This file imports nothing of the
pack itself, so it can run first.
"""
import importlib
import importlib.util
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE_NAME = "turbovideo"


def import_pack_module(name: str = ""):
    """turbovideo.<name> (the package itself for ""), registering the package on first use."""
    if PACKAGE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE_NAME, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_NAME] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE_NAME}.{name}" if name else PACKAGE_NAME)
