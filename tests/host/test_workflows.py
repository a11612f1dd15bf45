"""The example workflows: every node type exists in the real host, and they load in the real frontend."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.host

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
sys.path.insert(0, str(PACK_ROOT / "tools"))
import build_workflows  # noqa: E402  (tools/ on the path above)


def skip_where_the_host_lacks_its_core_nodes(comfy, path):
    """A workflow built on core nodes that only newer hosts have (SeedVR2: 0.29+) is skipped on older ones."""
    missing = build_workflows.lacking(path.name, comfy.nodes.NODE_CLASS_MAPPINGS)
    if missing:
        pytest.skip(f"{path.name} needs core nodes {missing}, which this ComfyUI does not have (SeedVR2: 0.29+)")


def _comfy_host_script():
    candidates = [os.environ.get("COMFY_HOST_SCRIPT"), PACK_ROOT.parent / "shared" / "comfyui" / "comfy_host.py"]
    return next((pathlib.Path(c) for c in candidates if c and pathlib.Path(c).is_file()), None)


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 2


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_node_types_are_registered(comfy, path):
    skip_where_the_host_lacks_its_core_nodes(comfy, path)
    workflow = json.loads(path.read_text())
    types = {node["type"] for node in workflow["nodes"]}
    missing = sorted(t for t in types if t not in comfy.nodes.NODE_CLASS_MAPPINGS)
    assert not missing, f"{path.name} uses unknown node types {missing}"
    assert {t for t in types if t.startswith("Turbo")} <= set(comfy.pack_node_ids)


def test_workflows_load_in_real_frontend(comfy, tmp_path):
    """In the frontend of the host the tests run on (COMFYUI_HOST = that host), every workflow it has nodes for."""
    script = _comfy_host_script()
    if script is None or not shutil.which("chromium"):
        pytest.skip("needs comfy_host.py (COMFY_HOST_SCRIPT) and chromium: provision --ui")
    env = dict(os.environ)
    if (comfy.comfy_root.parent / "venv").is_dir():
        env.setdefault("COMFYUI_HOST", str(comfy.comfy_root.parent))
    supported = [p for p in WORKFLOWS if not build_workflows.lacking(p.name, comfy.nodes.NODE_CLASS_MAPPINGS)]
    run = subprocess.run([sys.executable, str(script), "--pack", str(PACK_ROOT), "--isolate", "--ui-no-run",
                          *map(str, supported)], capture_output=True, text=True, timeout=600, env=env)
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    loads = [e for e in events if e.get("event") == "ui_load"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(loads) == len(supported)
    for event in loads:
        assert event["ok"] and not event["missing_types"] and not event["dialogs"], event


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_committed_workflow_matches_its_builder(comfy, path):
    """Widget values follow the live host's input order: a renamed or reordered input shows up here."""
    skip_where_the_host_lacks_its_core_nodes(comfy, path)
    assert path.name in build_workflows.WORKFLOWS, f"{path.name} has no builder in tools/build_workflows.py"
    built = build_workflows.WORKFLOWS[path.name](build_workflows.node_info(comfy)).to_ui()
    assert json.loads(path.read_text()) == json.loads(json.dumps(built))
