"""The example workflows: every node type exists in the real host, the committed files are what
tools/build_workflows.py builds, and they load in the real frontend of the host under test, which converts
them exactly as tools/workflow_format.to_api does (the end-to-end test, test_workflows_run.py, relies on it)."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.host

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
# Console errors of the frontends themselves in an offline test server, not caused by a workflow or the pack:
# 1.47's template/model fetches blocked by its own Content Security Policy, and its complaint about the load
# script polling window.app.graph before the app exists. Anything else on the page fails the test.
FRONTEND_NOISE = (
    re.compile(r"^console: (Connecting to '.*' violates|Fetch API cannot load) .*Content Security Policy"),
    re.compile(r"^console: ComfyApp graph accessed before initialization$"),
)


def _tools(name):
    sys.path.insert(0, str(PACK_ROOT / "tools"))
    import importlib

    return importlib.import_module(name)


def _supported(comfy) -> list:
    """The committed workflows whose core nodes this ComfyUI has (SeedVR2's: 0.29+)."""
    lacking = _tools("build_workflows").lacking
    return [p for p in WORKFLOWS if not lacking(p.name, comfy.nodes.NODE_CLASS_MAPPINGS)]


def skip_where_the_host_lacks_its_core_nodes(comfy, path):
    """A workflow built on core nodes that only newer hosts have (SeedVR2: 0.29+) is skipped on older ones."""
    missing = _tools("build_workflows").lacking(path.name, comfy.nodes.NODE_CLASS_MAPPINGS)
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


def _frontend_host(comfy):
    """(COMFYUI_HOST folder, its playwright folder) of the ComfyUI under test: `provision --ui` puts src/, venv/
    and pw/ side by side, and COMFYUI_PATH points at src/."""
    host = comfy.comfy_root.parent
    if not (host / "pw" / "node_modules" / "playwright-core").is_dir():
        pytest.skip(f"the frontend check needs a host provisioned with `provision --ui` (no {host}/pw beside "
                    f"COMFYUI_PATH={comfy.comfy_root})")
    return host


def _load_in_frontend(comfy, tmp_path) -> list:
    script = _comfy_host_script()
    if script is None or not shutil.which("chromium"):
        pytest.skip("needs comfy_host.py (COMFY_HOST_SCRIPT) and chromium: provision --ui")
    host = _frontend_host(comfy)
    command = [sys.executable, str(script), "--pack", str(PACK_ROOT), "--isolate", "--ui-no-run",
               *map(str, _supported(comfy)),
               "--comfy-dir", str(comfy.comfy_root), "--python", sys.executable, "--run-dir", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1500,
                         env={**os.environ, "COMFYUI_HOST": str(host)})
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [e for e in events if e.get("event") == "ui_load"]


def test_workflows_load_in_the_hosts_frontend_and_convert_as_to_api(comfy, tmp_path):
    """Every committed workflow (that this ComfyUI has the core nodes of) loads in the frontend of the ComfyUI
    under test with no missing node type, no dialog and no page error, and the frontend's own graphToPrompt
    gives the prompt to_api gives."""
    to_api, info = _tools("workflow_format").to_api, _tools("build_workflows").node_info(comfy)
    loads = _load_in_frontend(comfy, tmp_path)
    assert sorted(pathlib.Path(e["workflow"]).name for e in loads) == [p.name for p in _supported(comfy)]
    for event in loads:
        name = pathlib.Path(event["workflow"]).name
        assert event["ok"] and not event["missing_types"] and not event["dialogs"], event
        errors = [e for e in event["page_errors"] if not any(noise.match(e) for noise in FRONTEND_NOISE)]
        assert not errors, f"{name}: page errors {errors}"
        converted = json.loads(pathlib.Path(event["api_workflow"]).read_text())
        converted = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in converted.items()}
        assert to_api(json.loads((PACK_ROOT / "workflows" / name).read_text()), info) == converted, \
            f"{name}: the frontend converts it differently from tools/workflow_format.to_api"


LAYOUT = ("pos", "size")  # follows the nodes' widget counts, so it moves when a core node gains a widget


def _assert_compatible(committed: dict, built: dict, name: str):
    """A file built on the oldest ComfyUI, checked against the build on a newer one (rule: see below)."""
    assert committed["links"] == built["links"], f"{name}: links differ"
    assert len(committed["nodes"]) == len(built["nodes"]), f"{name}: node count differs"
    for old, new in zip(committed["nodes"], built["nodes"]):
        where = f"{name} node {old['id']} ({old['type']})"
        if old["type"].startswith("Turbo"):
            assert {k: v for k, v in old.items() if k not in LAYOUT} == \
                {k: v for k, v in new.items() if k not in LAYOUT}, f"{where}: differs from the build"
            continue
        for key in set(old) | set(new):
            if key in LAYOUT or key in ("widgets_values", "outputs"):
                continue
            assert old.get(key) == new.get(key), f"{where}: {key} differs from the build"
        for key in ("widgets_values", "outputs"):
            assert old[key] == new[key][:len(old[key])], (
                f"{where}: {key} {old[key]} are not the leading ones of this ComfyUI's {new[key]}: core renamed, "
                "removed or reordered them; rebuild on the oldest ComfyUI and check the file in both frontends")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_committed_workflow_matches_its_builder(comfy, path):
    """The committed files are what tools/build_workflows.py builds on the OLDEST supported ComfyUI
    (OLDEST_COMFYUI, 0.8.0, frontend 1.35.9); one set serves every supported ComfyUI. A workflow on core nodes
    the oldest lacks is built on the oldest ComfyUI that has them (build_workflows.BUILT_ON: SeedVR2's, 0.29.0).

    On the ComfyUI it is built on a file must equal the build exactly. On a newer one core nodes may have gained
    widgets or outputs since; the frontend puts a file's widget values onto a node's widgets in order and gives
    widgets without a value their default (test_workflows_load_in_the_hosts_frontend_and_convert_as_to_api shows
    it, and test_workflows_run.py runs the converted prompts). So there the build is compared node by node, layout
    (pos, size) aside: the same nodes, titles and links; Turbo nodes exactly; core nodes on every field, except
    that their committed widget values and outputs must be the LEADING ones of this ComfyUI's build, i.e. core
    only appended. A core node that renamed, removed or reordered a widget fails here."""
    skip_where_the_host_lacks_its_core_nodes(comfy, path)
    build_workflows = _tools("build_workflows")
    assert path.name in build_workflows.WORKFLOWS, f"{path.name} has no builder in tools/build_workflows.py"
    built = json.loads(json.dumps(build_workflows.WORKFLOWS[path.name](build_workflows.node_info(comfy)).to_ui()))
    committed = json.loads(path.read_text())
    if build_workflows.comfyui_version() == build_workflows.built_on(path.name):
        assert committed == built, f"{path.name} differs from the build: run tools/build_workflows.py"
    else:
        _assert_compatible(committed, built, path.name)


def test_the_oldest_comfyui_is_the_one_pyproject_requires():
    build_workflows = _tools("build_workflows")
    text = (PACK_ROOT / "pyproject.toml").read_text()
    match = re.search(r'^"?requires-comfyui"?\s*=\s*"([^"]*)"', text, re.MULTILINE)
    assert match, "pyproject.toml [tool.comfy] has no requires-comfyui"
    assert match.group(1).split(",")[0].strip() == f">={build_workflows.OLDEST_COMFYUI}", match.group(1)
