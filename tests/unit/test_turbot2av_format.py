"""TurboT2AV student files: containers and prefixes, completion from the base, wrong files refused with
messages that name the fix, nothing in a pickle ever runs, the converter's pickle-free output."""
import json
import pickle
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tiny_models import ltx2
from tiny_models import turbot2av as tiny
from tiny_models import turbowan as tiny_wan
from turbovideo.models import turbot2av


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    return folder / ltx2.write_checkpoint(folder / "ltx-2-19b-dev.safetensors", seed=41)


@pytest.fixture(scope="module")
def weights():
    return tiny.student_weights(seed=42)


def read(path):
    return turbot2av.read_student(path, path.name)


def expect_error(pattern, function, *args):
    with pytest.raises(ValueError) as error:
        function(*args)
    assert re.search(pattern, str(error.value)), str(error.value)
    return str(error.value)


@pytest.mark.parametrize("variant", list(tiny.VARIANTS))
def test_every_container_and_prefix_gives_the_bare_ltx2_keys(tmp_path, weights, variant):
    student = read(tmp_path / tiny.write_student(tmp_path / "model.pth", weights, variant))
    assert student.prefix == tiny.VARIANTS[variant][1] and not student.dropped
    assert set(student.weights) == set(weights)
    for key, value in weights.items():
        assert torch.equal(student.weights[key], value), key


def test_merge_completes_the_student_with_the_base_connectors_and_config(tmp_path, base, weights):
    student = read(tmp_path / tiny.write_student(tmp_path / "model.pth", weights))
    parts = turbot2av.read_base(base, base.name)
    assert turbot2av.check_fits(student, parts, "model.pth", base.name) == []
    state_dict, metadata = turbot2av.merge(student, parts)
    connectors = tiny.base_connectors(base)
    assert set(state_dict) == set(ltx2.dit_layout()) == set(weights) | set(connectors)
    assert len(connectors) == 30  # 2 connectors x (registers + 14 per layer); the 19B file: 2 x (1 + 2 x 14) = 58
    assert all(torch.equal(state_dict[k], v) for k, v in {**weights, **connectors}.items())
    assert json.loads(metadata["config"])["transformer"] == ltx2.TRANSFORMER_19B
    without, _ = turbot2av.merge(student, parts, with_connectors=False)
    assert set(without) == set(weights)


def test_keys_saved_after_acceleration_are_left_out_or_restored(tmp_path, base, weights):
    sd = {f"model.{k}": v for k, v in weights.items()}
    layer = "transformer_blocks.0.ff.net.2"
    sd[f"model.{layer}.fp_weight"] = sd.pop(f"model.{layer}.weight")  # TileLang W8A8 keeps a bf16 copy
    sd[f"model.{layer}.int8_weight"] = torch.zeros(3, 3, dtype=torch.int8)
    sd[f"model.{layer}.scale"] = torch.ones(3)
    sd["model.transformer_blocks.0.attn1.attention_function.local_attn.proj_l.weight"] = torch.zeros(8, 8)
    sd["model.transformer_blocks.0.attn1.to_qkv.int8_weight"] = torch.zeros(3, 3, dtype=torch.int8)
    torch.save({"generator": sd}, str(tmp_path / "accelerated.pth"))
    student = read(tmp_path / "accelerated.pth")
    assert len(student.dropped) == 4 and set(student.weights) == set(weights)
    assert torch.equal(student.weights[f"{layer}.weight"], weights[f"{layer}.weight"])
    assert turbot2av.check_fits(student, turbot2av.read_base(base, base.name), "a", "b") == []


def test_incomplete_and_mismatched_students_are_refused(tmp_path, base, weights):
    parts = turbot2av.read_base(base, base.name)
    partial = {k: v for k, v in weights.items() if not k.startswith("transformer_blocks.1.")}
    student = read(tmp_path / tiny.write_student(tmp_path / "partial.pth", partial))
    expect_error(r"incomplete: \d+ of 198 DiT tensors are missing \(transformer_blocks\.1\..*re-download",
                 turbot2av.check_fits, student, parts, "partial.pth", base.name)
    wider = tiny.student_weights({**ltx2.TRANSFORMER_19B, "attention_head_dim": 16, "cross_attention_dim": 32})
    student = read(tmp_path / tiny.write_student(tmp_path / "wider.pth", wider))
    expect_error(r"does not fit base_checkpoint.*differ in shape.*choose ltx-2-19b-dev",
                 turbot2av.check_fits, student, parts, "wider.pth", base.name)


def test_a_pickle_with_code_is_refused_and_nothing_in_it_runs(tmp_path, weights):
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"generator": {"model.x": torch.ones(1)}, "hook": Payload()}, str(tmp_path / "zip.pth"))
    with open(tmp_path / "raw.pth", "wb") as handle:  # a plain (legacy) pickle, not torch.save's zip
        pickle.dump({"generator": {"model.x": torch.ones(1)}, "hook": Payload()}, handle)
    for name in ("zip.pth", "raw.pth"):
        expect_error(r"holds Python objects or code.*refused and nothing in it was run", read, tmp_path / name)
    assert not marker.exists()
    Payload().__reduce__()[0](*Payload().__reduce__()[1]).close()  # the payload itself does make the marker
    assert marker.exists()


def test_truncated_empty_and_foreign_files_say_so(tmp_path, weights):
    tiny.write_student(tmp_path / "model.pth", weights)
    data = (tmp_path / "model.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    save_file({"a": torch.ones(4)}, str(tmp_path / "whole.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "whole.safetensors").read_bytes()[:-8])
    for name in ("truncated.pth", "empty.pth", "cut.safetensors"):
        expect_error(r"truncated or .*re-download it", read, tmp_path / name)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    expect_error("neither a .pth nor a .safetensors", read, tmp_path / "model.gguf")


def test_other_models_name_the_loader_to_use(tmp_path, base):
    wan = tiny_wan.to_turbowan(tiny_wan.native_state_dict())
    cases = {
        "TurboWan.pth": (wan, "Wan / TurboWan model.*TurboWanLoader"),
        "ltxv.pth": (ltxv_dit(), "LTX-Video.*video only.*TurboDiTLoader"),
        "ltx2_dit.pth": (ltx2_dit(), "already has the text connectors.*UNETLoader"),
        "junk.pth": ({"encoder.weight": torch.ones(2)}, "holds no LTX-2 DiT keys"),
    }
    for name, (sd, pattern) in cases.items():
        torch.save(sd, str(tmp_path / name))
        student = None
        try:
            student = read(tmp_path / name)
        except ValueError as error:
            assert re.search(pattern, str(error)), str(error)
            continue
        expect_error(pattern, turbot2av.check_fits, student, turbot2av.read_base(base, base.name), name, "base")
    expect_error("full LTX-2 checkpoint.*Choose it as base_checkpoint", read, base)


def ltxv_dit():
    return {k: torch.zeros(1) for k in ("adaln_single.linear.weight", "transformer_blocks.0.attn1.to_q.weight")}


def ltx2_dit():
    return {k: torch.zeros(1) for k in ltx2.dit_layout()}


def test_bad_bases_say_what_to_choose(tmp_path):
    config = dict(ltx2.TRANSFORMER_19B)
    dit = {f"model.diffusion_model.{k}": torch.zeros(1) for k in ltx2.dit_layout(config)}
    cases = {
        "ltx-2.3.safetensors": (dit, {"transformer": {**config, "apply_gated_attention": True}}, "LTX-2.3.*19B"),
        "no_config.safetensors": (dit, None, "no metadata config"),
        "no_connectors.safetensors": ({k: v for k, v in dit.items() if "connector" not in k},
                                      {"transformer": config}, "has no text connectors"),
        "ltxv.safetensors": ({"model.diffusion_model.adaln_single.linear.weight": torch.zeros(1)},
                             {"transformer": config}, "not an LTX-2 audio-video"),
    }
    for name, (sd, metadata, pattern) in cases.items():
        save_file(sd, str(tmp_path / name), {"config": json.dumps(metadata)} if metadata else None)
        expect_error(f"base_checkpoint: '{name}'.*{pattern}", turbot2av.read_base, tmp_path / name, name)
    torch.save({}, str(tmp_path / "base.pth"))
    expect_error("not a .safetensors", turbot2av.read_base, tmp_path / "base.pth", "base.pth")


def test_audio_latent_length_is_turbot2av_rounding_not_cores_ceiling():
    assert turbot2av.audio_latent_length(121) == 126  # core's LTXVEmptyLatentAudio: ceil(126.04) = 127
    for frames in range(1, 2000, 8):
        exact = frames * 25 / 24  # 16 kHz / hop 160 / 4 = 25 latents per second, 24 fps
        assert turbot2av.audio_latent_length(frames) == int(exact + 0.5) == round(exact)
    video, audio = turbot2av.latent_shapes(1792, 1024, 121)
    assert video == (1, 128, 16, 32, 56) and audio == (1, 8, 126, 16)  # TurboT2AV: [1,16,128,32,56], [1,126,128]
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        turbot2av.latent_shapes(64, 64, 120)


def test_converter_writes_a_complete_pickle_free_file(tmp_path, base, weights):
    import convert_turbot2av

    source = tmp_path / tiny.write_student(tmp_path / "model.pth", weights, "model-velocity")
    target = convert_turbot2av.convert_file(source, base)
    assert target.name == "turbot2av_model.safetensors"
    with safe_open(str(target), framework="pt") as file:
        keys, metadata = set(file.keys()), file.metadata()
        stored = {k: file.get_tensor(k) for k in keys}
    expected = {**weights, **tiny.base_connectors(base)}
    assert keys == set(expected) and all(torch.equal(stored[k], v) for k, v in expected.items())
    assert metadata["format"] == "turbot2av" and metadata["student"] == "model.pth"
    assert json.loads(metadata["config"])["transformer"] == ltx2.TRANSFORMER_19B
    assert read(target).converted is not None
    assert convert_turbot2av.main([str(source), str(base), str(tmp_path / "b.safetensors"), "--bf16"]) == 0
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as file:
        assert file.get_tensor("patchify_proj.weight").dtype == torch.bfloat16
    torch.save(tiny_wan.to_turbowan(tiny_wan.native_state_dict()), str(tmp_path / "wan.pth"))
    assert convert_turbot2av.main([str(tmp_path / "wan.pth"), str(base)]) == 2
    assert not (tmp_path / "turbot2av_wan.safetensors").exists()
