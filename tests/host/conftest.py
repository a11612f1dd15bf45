"""Session fixtures for host tests: one real ComfyUI, in-process on the CPU, with only this pack.

The tiny checkpoints are written once per session into a temporary models folder that ComfyUI's own
loaders list (diffusion_models, checkpoints, vae).
"""
import ast
import logging
import pathlib

import pytest

from host.comfy_harness import ComfyHost, find_comfyui_root
from host.test_only_nodes import CAPTURED, TEST_NODES

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Words ComfyUI logs when a checkpoint's keys do not match its module; loading itself does not fail.
LOAD_PROBLEM_WORDS = ("missing", "unexpected", "leftover", "not load", "error loading")


def _ltx2_connectors_in_the_text_encoder(message: str) -> bool:
    """Core 0.8.0 builds LTX-2's text connectors in the text encoder, not the DiT, so loading a real (or the tiny)
    LTX-2 DiT logs its connector keys as 'unet unexpected'; 0.29 builds them in the DiT and loads them. Exactly
    that message, with only connector keys in it, is allowed; any other unexpected key still fails."""
    from tiny_models.ltx2 import CONNECTOR_PREFIXES

    prefix = "unet unexpected: "
    if not message.startswith(prefix):
        return False
    try:
        keys = ast.literal_eval(message[len(prefix):])
    except (SyntaxError, ValueError):
        return False
    return bool(keys) and all(str(key).startswith(CONNECTOR_PREFIXES) for key in keys)


class _WarningLog(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def load_problems(self):
        return [m for m in self.records if any(w in m.lower() for w in LOAD_PROBLEM_WORDS)
                and not _ltx2_connectors_in_the_text_encoder(m)]


@pytest.fixture(scope="session")
def host_warnings():
    handler = _WarningLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, host_warnings):
    root = find_comfyui_root(PACK_ROOT)
    host = ComfyHost(root, PACK_ROOT, tmp_path_factory.mktemp("comfy_host"))
    host.register_test_nodes(TEST_NODES)
    return host


@pytest.fixture(scope="session")
def tiny_models(comfy, tmp_path_factory):
    """Writes every tiny checkpoint once and points ComfyUI's model folders at them."""
    from tiny_models import write_all

    models_dir = tmp_path_factory.mktemp("models")
    written = write_all(models_dir)
    for kind in ("diffusion_models", "checkpoints", "vae", "latent_upscale_models"):
        comfy.add_model_folder(kind, models_dir / kind)
    return written


@pytest.fixture
def captured():
    CAPTURED.clear()
    return CAPTURED


@pytest.fixture
def clean_load(host_warnings):
    """Fails the test when ComfyUI logged a key mismatch while it ran (loaders only warn)."""
    host_warnings.records.clear()
    yield
    problems = host_warnings.load_problems()
    assert not problems, f"ComfyUI reported checkpoint problems: {problems}"
