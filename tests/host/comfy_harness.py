"""Boots a real ComfyUI in-process on the CPU with only this pack loaded, and runs API prompts.

ComfyUI is found from COMFYUI_PATH, or from the ComfyUI tree whose custom_nodes holds this pack.
Importing comfy costs several seconds, so one ComfyHost serves the whole test session.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import sys
import uuid


class HostNotFound(RuntimeError):
    pass


def find_comfyui_root(pack_root: pathlib.Path) -> pathlib.Path:
    env = os.environ.get("COMFYUI_PATH")
    candidates = [pathlib.Path(env)] if env else []
    if pack_root.parent.name == "custom_nodes":
        candidates.append(pack_root.parent.parent)
    for root in candidates:
        if (root / "main.py").is_file() and (root / "comfy").is_dir():
            return root.resolve()
    raise HostNotFound(
        "ComfyUI not found: set COMFYUI_PATH to a ComfyUI folder (the one with main.py), or run the "
        f"tests from a pack installed in ComfyUI/custom_nodes. Tried: {[str(c) for c in candidates]}"
    )


class _ServerStub:
    """What PromptExecutor needs of PromptServer: it records the messages sent to clients."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclasses.dataclass
class PromptResult:
    ok: bool
    error: dict | None
    node_errors: dict
    execution_error: dict | None
    ui_outputs: dict
    messages: list

    def describe(self) -> str:
        return f"error={self.error} node_errors={self.node_errors} execution_error={self.execution_error}"


class ComfyHost:
    def __init__(self, comfy_root: pathlib.Path, pack_root: pathlib.Path, work_dir: pathlib.Path):
        self.comfy_root = comfy_root
        self.pack_root = pack_root
        self.work_dir = work_dir
        self.pack_module = None
        self._boot()

    def _boot(self):
        sys.path.insert(0, str(self.comfy_root))
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        comfy.cli_args.args.base_directory = str(self.work_dir)
        import folder_paths
        import utils.extra_config  # noqa: F401  before nodes: nodes.py would shadow the utils package

        for kind in ("output", "temp", "input", "user"):
            (self.work_dir / kind).mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(self.work_dir / "output"))
        folder_paths.set_temp_directory(str(self.work_dir / "temp"))
        folder_paths.set_input_directory(str(self.work_dir / "input"))
        folder_paths.set_user_directory(str(self.work_dir / "user"))
        import execution
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.pack_module = self._load_pack(nodes)
        self.nodes = nodes
        self.execution = execution
        self.server = _ServerStub()
        self.executor = None

    def _load_pack(self, nodes):
        link_dir = self.work_dir / "custom_nodes"
        link_dir.mkdir(exist_ok=True)
        link = link_dir / "turbovideo"
        if not link.exists():
            link.symlink_to(self.pack_root, target_is_directory=True)
        before = set(nodes.NODE_CLASS_MAPPINGS)
        if not asyncio.run(nodes.load_custom_node(str(link))):
            raise RuntimeError("ComfyUI could not import the pack: see the log above")
        self.pack_node_ids = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
        return sys.modules[str(link).replace(".", "_x_")]

    def register_test_nodes(self, node_classes: dict):
        """Adds test-only nodes for this session (conditioning sources, capture sinks)."""
        self.nodes.NODE_CLASS_MAPPINGS.update(node_classes)

    def add_model_folder(self, kind: str, path: pathlib.Path):
        import folder_paths

        folder_paths.add_model_folder_path(kind, str(path), is_default=True)

    def run(self, prompt: dict, keep_cache: bool = False) -> PromptResult:
        """Validates and executes an API prompt; a fresh executor (no cached outputs) unless keep_cache."""
        if self.executor is None or not keep_cache:
            self.executor = self.execution.PromptExecutor(
                self.server, cache_type=self.execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(
            self.execution.validate_prompt(prompt_id, prompt, None)
        )
        if not valid:
            return PromptResult(False, error, node_errors, None, {}, [])
        self.server.messages = []
        # with a client id every message, progress included, reaches the stub exactly once
        self.executor.execute(prompt, prompt_id, extra_data={"client_id": "tests"}, execute_outputs=outputs)
        messages = list(self.executor.status_messages)
        failure = next((data for event, data in messages if event == "execution_error"), None)
        interrupted = next((data for event, data in messages if event == "execution_interrupted"), None)
        ui = self.executor.history_result.get("outputs", {})
        return PromptResult(
            self.executor.success and failure is None and interrupted is None,
            None,
            node_errors,
            failure or interrupted,
            ui,
            list(self.server.messages),
        )
