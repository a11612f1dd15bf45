"""models/checkpoint_files: every kind of bad file is named for what it is, with the input and what it needs;
code in a pickle never runs; non-finite and non-float weights are found (also past a scan slice); a write
that fails leaves the previous file (or none) under the final name."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from turbovideo.models import checkpoint_files as cf

ROLE = cf.FileRole("adapter", "a step-size adapter", "(written by save_step_embedder)")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    save_file({"a.weight": torch.randn(64, 64), "a.bias": torch.randn(64)}, str(path), metadata={"k": "v"})
    return path


@pytest.mark.parametrize("kind,content,words", [
    ("empty", lambda good: b"", "is an empty file"),
    ("truncated", lambda good: good[: len(good) // 2], "is a truncated or damaged safetensors file"),
    ("header", lambda good: good[:12], "truncated or damaged safetensors"),
    ("gguf", lambda good: b"GGUF" + bytes(40), "is a GGUF file"),
    ("text", lambda good: b"hello, not weights" * 3, "is not a model file"),
])
def test_bad_safetensors_are_named_for_what_they_are(tmp_path, good, kind, content, words):
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(content(good.read_bytes()))
    with pytest.raises(cf.CheckpointFileError) as error:
        cf.read_safetensors(path, ROLE)
    message = str(error.value)
    assert message.startswith(f"adapter: '{kind}.safetensors' ") and words in message, message
    assert "adapter needs a step-size adapter (written by save_step_embedder)" in message
    assert cf.unreadable(path, ROLE) == message


def test_a_pytorch_file_named_safetensors_and_the_reverse(tmp_path, good):
    torch.save({"w": torch.randn(3)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(cf.CheckpointFileError, match="is a PyTorch checkpoint"):
        cf.read_weights(tmp_path / "x.safetensors", ROLE)
    (tmp_path / "y.pth").write_bytes(good.read_bytes())
    with pytest.raises(cf.CheckpointFileError, match="safetensors file named like a .pth"):
        cf.read_weights(tmp_path / "y.pth", ROLE)


@pytest.mark.parametrize("legacy", [False, True])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    if legacy:
        path.write_bytes(pickle.dumps({"x": RunsCode(marker)}, protocol=2))
    else:
        torch.save({"w": torch.randn(2), "x": RunsCode(marker)}, str(path))
    with pytest.raises(cf.CheckpointFileError) as error:
        cf.read_weights(path, ROLE)
    message = str(error.value)
    assert "refused and nothing in it ran" in message and "weights_only" not in message, message
    assert "allowlist" not in message and "add_safe_globals" not in message
    assert not marker.exists()


@pytest.mark.parametrize("content,words", [(b"", "empty file"), (None, "truncated or damaged PyTorch checkpoint")])
def test_empty_and_truncated_pth(tmp_path, content, words):
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.randn(100, 100)}, str(whole))
    path = tmp_path / "bad.pth"
    path.write_bytes(whole.read_bytes()[:2000] if content is None else content)
    with pytest.raises(cf.CheckpointFileError, match=words):
        cf.read_weights(path, ROLE)


def test_plain_pth_and_safetensors_load(tmp_path, good):
    sd = {"w": torch.randn(5, 3)}
    torch.save({"state_dict": sd}, str(tmp_path / "wrapped.pth"))
    loaded, metadata = cf.read_weights(tmp_path / "wrapped.pth", ROLE)
    assert torch.equal(loaded["w"], sd["w"]) and metadata == {}
    tensors, metadata = cf.read_weights(good, ROLE)
    assert set(tensors) == {"a.weight", "a.bias"} and metadata == {"k": "v"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_found_past_a_scan_slice(monkeypatch, value):
    monkeypatch.setattr(cf, "SCAN_ELEMENTS", 7)
    tensor = torch.randn(10, 10, dtype=torch.bfloat16)
    tensor[9, 8] = value
    assert cf.non_finite_count(tensor) == 1
    with pytest.raises(cf.CheckpointFileError, match=r"at: tensor .b.weight. holds 1 NaN or infinite value"):
        cf.check_tensors({"a.weight": torch.randn(4), "b.weight": tensor}, "at")


def test_float8_and_integer_weights(monkeypatch):
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("no float8 in this torch")
    fp8 = torch.randn(8).to(torch.float8_e4m3fn)
    cf.check_tensors({"w.weight": fp8}, "at")
    with pytest.raises(cf.CheckpointFileError, match="'w.weight' is int32, but weights must be one of float32"):
        cf.check_tensors({"w.weight": torch.ones(3, dtype=torch.int32)}, "at")
    cf.check_tensors({"position_ids": torch.arange(3)}, "at")  # not a weight: any dtype


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with cf.atomic_target(path) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]
    cf.save_safetensors({"w": torch.randn(2)}, path, {"m": "1"})
    tensors, metadata = cf.read_safetensors(path, ROLE)
    assert metadata == {"m": "1"} and sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]
