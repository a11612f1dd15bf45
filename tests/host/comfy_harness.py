"""Boots a real ComfyUI in-process on the CPU with only this pack loaded, and runs API prompts through
core's own prompt queue and worker (main.prompt_worker), as a ComfyUI server started by main.py does.

ComfyUI is found from COMFYUI_PATH, or from the ComfyUI tree whose custom_nodes holds this pack.
Importing comfy costs several seconds, so one ComfyHost serves the whole test session.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import pathlib
import sys
import threading
import time
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

        for kind in ("output", "temp", "input", "user", "custom_nodes"):
            (self.work_dir / kind).mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(self.work_dir / "output"))
        folder_paths.set_temp_directory(str(self.work_dir / "temp"))
        folder_paths.set_input_directory(str(self.work_dir / "input"))
        folder_paths.set_user_directory(str(self.work_dir / "user"))
        main = _import_core_main()
        import execution
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.pack_module = self._load_pack(nodes)
        self.nodes = nodes
        self.execution = execution
        self.server = _ServerStub()
        self._start_worker(main, execution)

    def _start_worker(self, main, execution):
        """Core's own prompt worker (main.prompt_worker) on core's PromptQueue, in a daemon thread, with the
        progress hook core's startup installs: prompts run exactly as a server started by main.py runs them."""
        main.hijack_progress(self.server)
        self.queue = execution.PromptQueue(self.server)
        self.worker = threading.Thread(target=main.prompt_worker, args=(self.queue, self.server), daemon=True,
                                       name="comfy-prompt-worker")
        self.worker.start()
        self._number = itertools.count()

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

    def _free_memory(self):
        """What POST /free {"free_memory": true} does: the worker unloads models and resets its caches.

        The worker reads flags only when its queue wait returns, and set_flag wakes only a worker already
        waiting: one still finishing the previous prompt would sleep through it for its whole wait (1000 s).
        So the waiting worker is woken again until it has taken the flag."""
        self.queue.set_flag("free_memory", True)

        def taken() -> bool:
            if not self.queue.get_flags(reset=False):
                return True
            with self.queue.mutex:
                self.queue.not_empty.notify()
            return False

        self._wait(taken, "the worker to take the free_memory flag")

    def _wait(self, done, what: str, timeout: float = 3600.0):
        deadline = time.monotonic() + timeout
        while not done():
            if not self.worker.is_alive():
                raise RuntimeError(f"core's prompt worker thread died while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.005)

    def run(self, prompt: dict, keep_cache: bool = False) -> PromptResult:
        """Validates and queues an API prompt as POST /prompt does; waits for core's worker to finish it.
        Without keep_cache the worker first frees memory and resets its caches (no cached outputs)."""
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(
            self.execution.validate_prompt(prompt_id, prompt, None)
        )
        if not valid:
            return PromptResult(False, error, node_errors, None, {}, [])
        if not keep_cache:
            self._free_memory()
        self.server.messages = []
        # with a client id every message, progress included, reaches the stub exactly once
        extra_data = {"client_id": "tests"}
        self.queue.put((next(self._number), prompt_id, prompt, extra_data, outputs, {}))
        self._wait(lambda: prompt_id in self.queue.history, f"prompt {prompt_id}")
        entry = self.queue.history[prompt_id]
        messages = list(entry["status"]["messages"])
        failure = next((data for event, data in messages if event == "execution_error"), None)
        interrupted = next((data for event, data in messages if event == "execution_interrupted"), None)
        return PromptResult(
            entry["status"]["completed"] and failure is None and interrupted is None,
            None,
            node_errors,
            failure or interrupted,
            entry.get("outputs", {}),
            list(self.server.messages),
        )


def _import_core_main():
    """Core's main.py, imported as its startup imports it (custom paths, prestartup scripts). Its logger set-up
    is skipped: it would take over sys.stdout/stderr and write a log file into the working directory, and
    pytest owns both (app.logger.setup_logger returns at once once its `logs` buffer exists)."""
    import collections
    import importlib.util

    import app.logger

    if not app.logger.logs:
        app.logger.logs = collections.deque(["tests: console owned by pytest"], maxlen=300)
    import folder_paths

    # by path: a folder on sys.path may hold another module named `main` (this pack's checkout, for one)
    path = pathlib.Path(folder_paths.__file__).with_name("main.py")
    spec = importlib.util.spec_from_file_location("comfyui_main", path)
    main = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = main
    spec.loader.exec_module(main)
    return main
