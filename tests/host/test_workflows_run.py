"""Every committed workflow runs end to end on the host under test: converted as the frontend converts it,
on tiny stand-ins for every file it names, text encoders swapped for TurboTestConditioning, sizes and frame
counts scaled by one rule (host/workflow_prompt.py), every other node and widget as committed; it passes the
host's validation and runs to each of its output nodes."""
import json
import pathlib

import pytest
import torch

from host.workflow_files import INPUT_FILES, MODEL_FILES, write_input_files, write_model_files
from host.workflow_prompt import e2e_prompt, named_files

pytestmark = pytest.mark.host

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
FILE_OUTPUTS = ("images", "videos", "video", "animated", "files")


@pytest.fixture(scope="module")
def node_info(comfy):
    import build_workflows

    return build_workflows.node_info(comfy)


@pytest.fixture(scope="module")
def workflow_root(comfy, tmp_path_factory):
    return tmp_path_factory.mktemp("workflow_models")


def _provide_files(comfy, prompt, root, name):
    import folder_paths

    names = named_files(prompt)
    missing = sorted(names - set(MODEL_FILES) - set(INPUT_FILES))
    assert not missing, f"{name} names {missing}: give each a tiny stand-in in tests/host/workflow_files.py"
    seed = int(torch.randint(0, 2**20, ()))
    for folder, path in write_model_files(names & set(MODEL_FILES), root, seed).items():
        if str(path) not in folder_paths.get_folder_paths(folder):
            comfy.add_model_folder(folder, path)
    write_input_files(names & set(INPUT_FILES), pathlib.Path(folder_paths.get_input_directory()), seed)


def _output_nodes(comfy, prompt):
    return {node_id for node_id, node in prompt.items()
            if getattr(comfy.nodes.NODE_CLASS_MAPPINGS[node["class_type"]], "OUTPUT_NODE", False)}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_committed_workflow_runs_end_to_end(comfy, node_info, workflow_root, path):
    prompt = e2e_prompt(json.loads(path.read_text()), node_info)
    _provide_files(comfy, prompt, workflow_root, path.name)
    before = set((comfy.work_dir / "output").rglob("*"))
    result = comfy.run(prompt)
    assert result.ok, f"{path.name}: {result.describe()}"
    written = {p.relative_to(comfy.work_dir / "output").as_posix() for p in
               set((comfy.work_dir / "output").rglob("*")) - before if p.is_file()}
    for node_id in _output_nodes(comfy, prompt):
        _assert_wrote_its_files(comfy, path.name, node_id, prompt[node_id], result.ui_outputs.get(node_id, {}),
                                written)


def _assert_wrote_its_files(comfy, name, node_id, node, outputs, written):
    """An output node shows files that exist, or (a saver without a preview) wrote files under its prefix."""
    where = f"{name}: output node {node_id} ({node['class_type']})"
    shown = [item for key in FILE_OUTPUTS for item in outputs.get(key, []) if isinstance(item, dict)]
    for item in shown:
        folder = comfy.work_dir / item.get("type", "output")
        assert (folder / item.get("subfolder", "") / item["filename"]).is_file(), f"{where}: no file {item}"
    prefix = node["inputs"].get("filename_prefix")
    if not shown:
        assert prefix and any(file.startswith(prefix) for file in written), f"{where} wrote no file: {outputs}"
