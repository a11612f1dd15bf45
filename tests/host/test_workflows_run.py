"""Every committed workflow runs end to end on the host under test: converted as the frontend converts it,
on tiny stand-ins for every file it names, text encoders swapped for TurboTestConditioning, sizes and frame
counts scaled by one rule (host/workflow_prompt.py), every other node and widget as committed; it passes the
host's validation and runs to each of its output nodes. A workflow that decodes audio (LTXVAudioVAEDecode) writes
MP4s whose soundtrack is that audio: stereo at the audio VAE's rate, as long as the decoded audio cut to the video."""
import json
import math
import pathlib

import pytest
import torch
from tiny_models import ltx2_audio

from host.workflow_files import (
    INPUT_FILES,
    LTX2_CHECKPOINTS,
    MODEL_FILES,
    TURBOT2AV_BASE,
    write_input_files,
    write_model_files,
)
from host.workflow_prompt import e2e_prompt, named_files

pytestmark = pytest.mark.host

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
FILE_OUTPUTS = ("images", "videos", "video", "animated", "files")
AUDIO_DECODERS = {"LTXVAudioVAEDecode"}
# audio latent steps of the latent nodes an audio-video workflow starts from (TurboT2AV rounds, core rounds up:
# ltx2_turbot2av.md 1.9 / 3), 25 latents per second
AUDIO_STEPS = {"TurboT2AVEmptyLatent": lambda inputs: round(inputs["length"] / inputs["frame_rate"] * 25),
               "LTXVEmptyLatentAudio": lambda inputs: math.ceil(inputs["frames_number"] / inputs["frame_rate"] * 25)}
AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder puts before the sound; the MP4's track duration counts them


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
    import build_workflows

    missing = build_workflows.lacking(path.name, comfy.nodes.NODE_CLASS_MAPPINGS)
    if missing:
        pytest.skip(f"{path.name} needs core nodes {missing}, which this ComfyUI does not have (SeedVR2: 0.29+)")
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
    if any(node["class_type"] in AUDIO_DECODERS for node in prompt.values()):
        videos = sorted(name for name in written if name.endswith(".mp4"))
        assert videos, f"{path.name} decodes audio but wrote no MP4: {sorted(written)}"
        for name in videos:
            _assert_soundtrack(comfy.work_dir / "output" / name, _audio_steps(prompt, path.name))


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


def test_turbot2av_stand_in_is_a_student_of_the_base_stand_in(tmp_path):
    """TurboT2AV.pth's stand-in is the base stand-in's DiT less the text connectors (same keys and shapes, under
    `generator` / `model.`), and the base holds the config it is written with."""
    import json

    from safetensors import safe_open
    from tiny_models import ltx2

    student_folder, write_student = MODEL_FILES["TurboT2AV.pth"]
    base_folder, write_base = MODEL_FILES[TURBOT2AV_BASE]
    assert (student_folder, base_folder) == ("diffusion_models", "checkpoints")
    write_student(tmp_path / "TurboT2AV.pth", 3)
    write_base(tmp_path / TURBOT2AV_BASE, 4)
    student = torch.load(tmp_path / "TurboT2AV.pth", weights_only=True)["generator"]
    prefix = "model.diffusion_model."
    with safe_open(str(tmp_path / TURBOT2AV_BASE), "pt") as base:
        config = json.loads(base.metadata()["config"])["transformer"]
        dit = {k[len(prefix):]: tuple(base.get_slice(k).get_shape()) for k in base.keys() if k.startswith(prefix)}
    assert config == LTX2_CHECKPOINTS[TURBOT2AV_BASE]
    expected = {k: s for k, s in dit.items() if not k.startswith(ltx2.CONNECTOR_PREFIXES)}
    assert len(expected) < len(dit)
    assert {k: tuple(v.shape) for k, v in student.items()} == {f"model.{k}": s for k, s in expected.items()}


def _audio_steps(prompt, name):
    steps = [AUDIO_STEPS[node["class_type"]](node["inputs"]) for node in prompt.values()
             if node["class_type"] in AUDIO_STEPS]
    assert len(steps) == 1, f"{name}: expected one audio latent node of {sorted(AUDIO_STEPS)}, found {len(steps)}"
    return steps[0]


def _assert_soundtrack(path, audio_steps):
    """The MP4 has the decoded audio as its soundtrack: one stereo AAC stream at the tiny audio VAE's output rate,
    holding the waveform LTXVAudioVAEDecode gives for `audio_steps` latents, cut to the video's length."""
    import av

    rate = ltx2_audio.output_sample_rate()
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 1, f"{path.name}: {len(container.streams.audio)} audio streams"
        stream, fps = container.streams.audio[0], container.streams.video[0].average_rate
        assert (stream.rate, stream.channels) == (rate, 2), f"{path.name}: {stream.rate} Hz, {stream.channels} ch"
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        sound = torch.cat([torch.from_numpy(f.to_ndarray()).reshape(2, -1) for f in container.decode(audio=0)], 1)
        samples = int(stream.duration * stream.time_base * rate) - AAC_PRIMING
    expected = min(ltx2_audio.waveform_samples(audio_steps), math.ceil(rate * frames / fps))
    assert samples == expected, (f"{path.name}: a soundtrack of {samples} samples, expected {expected} "
                                 f"({audio_steps} audio latents, {frames} frames at {fps} fps)")
    assert sound.shape[1] >= samples and torch.isfinite(sound).all() and sound.std() > 0, (
        f"{path.name}: the soundtrack decodes to {sound.shape[1]} samples, std {sound.std():.3g}")
