"""tools/quantize_int8.py and models/safetensors_stream.py, without ComfyUI: the offline INT8 converter
writes the format of models/int8_format, copies everything else bit for bit, keeps the metadata, and
streams (each group's tensors are written before the next group is read)."""
import json

import pytest
import quantize_int8
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import ltxv, wan
from turbovideo.kernels import int8 as int8_kernels
from turbovideo.models import int8_format, safetensors_stream


def _read(path):
    with safe_open(str(path), "pt") as file:
        return {k: file.get_tensor(k) for k in file.keys()}, file.metadata()


@pytest.mark.parametrize("granularity", ["per_channel", "block128"])
@pytest.mark.parametrize("family", ["wan", "ltxv"])
def test_quantizes_block_linears_and_copies_the_rest(tmp_path, family, granularity):
    source = tmp_path / "dit.safetensors"
    (wan if family == "wan" else ltxv).write_dit(source, dtype=torch.bfloat16)
    lines = []
    count = quantize_int8.quantize_file(source, tmp_path / "int8.safetensors", granularity, log=lines.append)
    original, (out, meta) = load_file(str(source)), _read(tmp_path / "int8.safetensors")
    kinds = int8_format.layer_kinds(out)
    blocks = "blocks." if family == "wan" else "transformer_blocks."
    expected = sorted(k[:-7] for k, v in original.items() if k.startswith(blocks) and k.endswith(".weight")
                      and v.dim() == 2)
    assert sorted(kinds) == expected and count == len(expected)
    assert set(kinds.values()) == {"per_channel" if granularity == "per_channel" else "block128"}
    for prefix in kinds:
        q, scale = int8_kernels.quantize(original[prefix + ".weight"].float(), granularity, backend="torch")
        assert torch.equal(out[prefix + ".weight"], q) and torch.equal(out[prefix + ".weight_scale"], scale)
    for key, value in original.items():
        if key[:-7] not in kinds:
            assert torch.equal(out[key], value) and out[key].dtype == value.dtype, key
    assert meta["turbovideo_dtype"] == "bfloat16" and meta["turbovideo_granularity"] == granularity
    assert len(lines) == 3 and lines[-1].startswith(f"[3/3] {blocks}1:")  # outside + 2 blocks


def test_native_tag_and_block_tag(tmp_path):
    source = tmp_path / "dit.safetensors"
    wan.write_dit(source)
    for granularity, fmt in (("per_channel", "int8_tensorwise"), ("block128", int8_format.BLOCK128_FORMAT)):
        quantize_int8.quantize_file(source, tmp_path / "out.safetensors", granularity, log=lambda line: None)
        tag = _read(tmp_path / "out.safetensors")[0]["blocks.0.ffn.0.comfy_quant"]
        assert json.loads(bytes(tag.tolist())) == {"format": fmt}


class _RecordingReader:
    """safe_open stand-in that logs every tensor read."""

    def __init__(self, reader, events):
        self.reader, self.events = reader, events

    def __enter__(self):
        self.inner = self.reader.__enter__()
        return self

    def __exit__(self, *exc):
        return self.reader.__exit__(*exc)

    def get_tensor(self, key):
        self.events.append(("read", key))
        return self.inner.get_tensor(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_streams_one_tensor_at_a_time(tmp_path, monkeypatch):
    import safetensors

    source = tmp_path / "dit.safetensors"
    wan.write_dit(source, blocks=3)
    events, original_open = [], safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: _RecordingReader(original_open(*a, **k), events))
    original_write = safetensors_stream.StreamWriter.write
    monkeypatch.setattr(safetensors_stream.StreamWriter, "write",
                        lambda self, name, tensor: events.append(("write", name)) or original_write(self, name, tensor))
    quantize_int8.quantize_file(source, tmp_path / "out.safetensors", "per_channel", log=lambda line: None)
    pending, most = set(), 0
    for kind, key in events:
        pending.add(key) if kind == "read" else pending.discard(key)
        most = max(most, len(pending))
    assert most == 1 and not pending and sum(kind == "read" for kind, _ in events) == len(load_file(str(source)))


def test_refuses_quantized_and_unknown_files(tmp_path):
    quantized = tmp_path / "q.safetensors"
    save_file({"blocks.0.ffn.0.weight": torch.zeros(4, 4, dtype=torch.int8),
               "blocks.0.ffn.0.weight_scale": torch.ones(4, 1)}, str(quantized))
    with pytest.raises(ValueError, match="already quantized"):
        quantize_int8.quantize_file(quantized, tmp_path / "out.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"double_blocks.0.img_mlp.0.weight": torch.randn(8, 8)}, str(other))
    with pytest.raises(ValueError, match="no Linear weights"):
        quantize_int8.quantize_file(other, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "out.safetensors.partial").exists()
    assert quantize_int8.main([str(tmp_path / "model.ckpt"), str(tmp_path / "out.safetensors")]) == 2


def test_stream_writer_matches_safetensors_and_checks_the_plan(tmp_path):
    gen = torch.Generator().manual_seed(7)
    tensors = {"a": torch.randn(3, 5, generator=gen).bfloat16(), "b": torch.randint(-128, 127, (4,), dtype=torch.int8),
               "c": torch.tensor(2.5), "d": torch.zeros(0, 3)}
    plan = [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    with safetensors_stream.StreamWriter(tmp_path / "s.safetensors", plan, {"k": "v"}) as out:
        for key, value in tensors.items():
            out.write(key, value)
    read, meta = _read(tmp_path / "s.safetensors")
    assert meta == {"k": "v"} and all(torch.equal(read[k], v) for k, v in tensors.items())
    with pytest.raises(ValueError, match="expected a"):
        with safetensors_stream.StreamWriter(tmp_path / "t.safetensors", plan) as out:
            out.write("b", tensors["b"])
    with pytest.raises(ValueError, match="never written"):
        with safetensors_stream.StreamWriter(tmp_path / "t.safetensors", plan) as out:
            out.write("a", tensors["a"])
    assert not list(tmp_path.glob("t.safetensors*"))
