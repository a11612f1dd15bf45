"""--prepare DIR: what a bare GPU machine (torch + triton, no ComfyUI, no network) lacks for the suite.

  DIR/comfyui/     ComfyUI's Python source from the bundled snapshot: comfy/**/*.py, node_helpers.py,
                   comfyui_version.py, LICENSE (the model parts import nothing else of it; no data files)
  DIR/wheels/      python 3.12 manylinux wheels of the ComfyUI requirements those imports reach that the
                   GPU image lacks (gpu_image_packages.txt), and of their own requirements, fetched with
                   `pip download --no-deps --only-binary=:all:` as the device notes describe
  DIR/MANIFEST.txt what is there, and the command
It refuses a folder over 64 MiB (what a device call carries) and prints the one command to run there
from the repository root, with DIR named in the call's `carry`.
"""
from __future__ import annotations

import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

from .common import PACK_ROOT

SNAPSHOT = "comfyui-0.29.0.tar.gz"
LIMIT = 64 * 2 ** 20
TOP_FILES = ("node_helpers.py", "comfyui_version.py", "LICENSE")
# ComfyUI requirements the suite's imports reach (comfy_boot.boot on 0.29.0: comfy.model_management,
# model_detection, model_patcher, sample, samplers and the pack's patches; tests/unit/test_gpu_suite.py
# checks this list against a real boot).
SUITE_REQUIREMENTS = ("comfy-aimdo", "comfy-kitchen", "einops", "filelock", "numpy", "pillow", "psutil", "pyyaml",
                      "safetensors", "scipy", "tokenizers", "torch", "torchsde", "torchvision", "tqdm", "transformers")
PIP_PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_24_x86_64", "--platform",
                "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_snapshot(explicit: pathlib.Path | None = None) -> pathlib.Path:
    if explicit is not None:
        return explicit
    for folder in PACK_ROOT.parents:
        candidate = folder / "shared" / "comfyui" / "snapshots" / SNAPSHOT
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {SNAPSHOT} found in a shared/comfyui/snapshots folder above the pack; "
                            "pass --snapshot PATH")


def _member_path(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def wanted_source(path: str) -> bool:
    return (path.startswith("comfy/") and path.endswith(".py")) or path in TOP_FILES


def extract_source(snapshot: pathlib.Path, dest: pathlib.Path) -> tuple[int, dict[str, str]]:
    """Writes the wanted source files; returns (file count, {requirement name: version spec})."""
    count, requirements = 0, {}
    with tarfile.open(snapshot) as tar:
        for member in tar.getmembers():
            path = _member_path(member.name)
            if path == "requirements.txt":
                requirements = parse_requirements(tar.extractfile(member).read().decode())
            if member.isfile() and wanted_source(path):
                target = dest / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                count += 1
    return count, requirements


def parse_requirements(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", line)
        if match:
            out[canonical(match.group(1))] = match.group(2).replace(" ", "")
    return out


def image_packages(have_file: pathlib.Path | None = None) -> set[str]:
    path = have_file or pathlib.Path(__file__).with_name("gpu_image_packages.txt")
    words = [w for line in path.read_text().splitlines() if not line.startswith("#") for w in line.split()]
    return {canonical(w) for w in words}


def pin(name: str, spec: str = "") -> str:
    """name==version: the requirement's own pin, else the version installed here, else the bare name."""
    if spec.startswith("=="):
        return f"{name}{spec}"
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def wanted_wheels(requirements: dict[str, str], have: set[str]) -> list[str]:
    missing = [name for name in SUITE_REQUIREMENTS if canonical(name) not in have]
    return [pin(name, requirements.get(canonical(name), "")) for name in missing]


def wheel_requirements(wheel: pathlib.Path) -> list[str]:
    """Requires-Dist names of a wheel that apply here (extras left out; markers evaluated for 3.12 Linux)."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    names = []
    for line in (ln[len("Requires-Dist:"):].strip() for ln in lines if ln.startswith("Requires-Dist:")):
        requirement, _, marker = line.partition(";")
        if "extra" in marker or not _marker_applies(marker.strip()):
            continue
        names.append(canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group(0)))
    return names


def _marker_applies(marker: str) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:
        return True
    return Marker(marker).evaluate({"python_version": "3.12", "python_full_version": "3.12.3",
                                    "sys_platform": "linux", "platform_machine": "x86_64", "os_name": "posix"})


def download(specs: list[str], dest: pathlib.Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *PIP_PLATFORM,
               "-d", str(dest), *specs]
    subprocess.run(command, check=True)


def fetch_wheels(requirements: dict[str, str], have: set[str], dest: pathlib.Path) -> list[str]:
    """Downloads the missing wheels and, round by round, their missing requirements."""
    dest.mkdir(parents=True, exist_ok=True)
    specs, fetched = wanted_wheels(requirements, have), set()
    while specs:
        download(specs, dest)
        fetched |= {canonical(re.split(r"[=<>!~]", s)[0]) for s in specs}
        needed = {n for wheel in dest.glob("*.whl") for n in wheel_requirements(wheel)}
        specs = [pin(n) for n in sorted(needed - have - fetched)]
    return sorted(fetched)


def folder_size(folder: pathlib.Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def device_command(folder: str) -> str:
    """The command for the GPU machine, run from the repository root; `folder` relative to it."""
    wheels = f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade " \
             f"--target /tmp/site {folder}/wheels/*.whl && "
    comfy = f"{folder}/comfyui" if folder.startswith("/") else f"$PWD/{folder}/comfyui"
    return (f"set -o pipefail; {wheels}export PYTHONPATH=/tmp/site COMFYUI_PATH={comfy} "
            f"PYTHONUNBUFFERED=1 && python3 bench/gpu_suite.py --json \"${{OUT:-.}}/gpu_suite.json\" 2>&1 "
            f"| tee \"${{OUT:-.}}/gpu_suite.log\"")


def run(folder: pathlib.Path, snapshot: pathlib.Path | None = None, have_file: pathlib.Path | None = None,
        wheels: bool = True) -> int:
    snapshot = find_snapshot(snapshot)
    if folder.exists() and any(folder.iterdir()) and not (folder / "MANIFEST.txt").is_file():
        print(f"--prepare {folder}: the folder holds files --prepare did not write (no MANIFEST.txt); "
              "name a new or empty folder")
        return 2
    shutil.rmtree(folder, ignore_errors=True)
    count, requirements = extract_source(snapshot, folder / "comfyui")
    have = image_packages(have_file)
    fetched = fetch_wheels(requirements, have, folder / "wheels") if wheels else []
    size = folder_size(folder)
    relative = folder.resolve().relative_to(PACK_ROOT) if folder.resolve().is_relative_to(PACK_ROOT) else folder
    command = device_command(str(relative))
    (folder / "MANIFEST.txt").write_text(
        f"ComfyUI source: {snapshot.name}, {count} files\nwheels: {', '.join(fetched) or '(none: --no-wheels)'}\n"
        f"size: {size} bytes\ncommand (device run, carry [{relative}]):\n{command}\n")
    print(f"prepared {folder}: ComfyUI {snapshot.name} ({count} files), wheels: {', '.join(fetched) or 'none'}; "
          f"{size / 2 ** 20:.1f} MiB (limit {LIMIT / 2 ** 20:.0f} MiB)")
    if size > LIMIT:
        print(f"FAIL: {folder} is {size / 2 ** 20:.1f} MiB, over the {LIMIT / 2 ** 20:.0f} MiB a device call carries")
        return 1
    print(f"run on the GPU machine from the repository root (carry [\"{relative}\"], timeout_s 590):\n{command}")
    return 0
