"""models/dit_bundle.py: a DiT and its adapters in one safetensors file, split back apart exactly."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from turbovideo.models import dit_bundle
from turbovideo.models.fusion_blocks import FusionAdapter, load_fusion_adapter, save_fusion_adapter
from turbovideo.models.step_embedder import StepSizeEmbedder, load_step_embedder, save_step_embedder
from turbovideo.models.vsr_conditioner import VSRConditioner, load_vsr_conditioner, save_vsr_conditioner

WIDTH, SIZES = 16, [1.0, 0.5, 0.25]


def _randomised(module, generator):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return module


@pytest.fixture
def files(tmp_path):
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    dit = {"transformer_blocks.0.attn1.to_q.weight": torch.randn(WIDTH, WIDTH, generator=generator),
           "patchify_proj.weight": torch.randn(WIDTH, 128, generator=generator).to(torch.bfloat16),
           "scale_shift_table": torch.randn(2, WIDTH, generator=generator)}
    save_file(dit, str(tmp_path / "dit.safetensors"), metadata={"config": '{"transformer": {}}'})
    paths = {"fusion": tmp_path / "fusion.safetensors", "step": tmp_path / "step.safetensors",
             "vsr": tmp_path / "vsr.safetensors"}
    save_fusion_adapter(paths["fusion"], _randomised(FusionAdapter(8, WIDTH, [0, 1], num_blocks=2, mlp_ratio=1.0),
                                                     generator))
    save_step_embedder(paths["step"], _randomised(StepSizeEmbedder(WIDTH), generator), SIZES)
    save_vsr_conditioner(paths["vsr"], _randomised(VSRConditioner(WIDTH), generator))
    return dit, paths, tmp_path


def _split(path):
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    return dit_bundle.split_bundle(load_file(str(path)), metadata, path.name)


def _assert_same_modules(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


def test_lrhr_bundle_round_trip_keeps_dit_and_adapters_exactly(files):
    dit, paths, folder = files
    kinds = dit_bundle.save_dit_bundle(folder / "bundle.safetensors", folder / "dit.safetensors",
                                       [paths["vsr"], paths["fusion"], paths["step"]])
    assert sorted(kinds) == sorted(dit_bundle.KINDS)
    bundle = _split(folder / "bundle.safetensors")
    assert bundle.dit.keys() == dit.keys() and bundle.metadata == {"config": '{"transformer": {}}'}
    for key, value in dit.items():
        assert bundle.dit[key].dtype == value.dtype and torch.equal(bundle.dit[key], value)
    where = "bundle.safetensors"
    fusion = dit_bundle.build_adapter(dit_bundle.FUSION, *bundle.adapters[dit_bundle.FUSION], where)
    _assert_same_modules(fusion, load_fusion_adapter(paths["fusion"]))
    assert (fusion.hr_blocks, fusion.lr_width, fusion.mlp_ratio) == ([0, 1], 8, 1.0)
    embedder, sizes = dit_bundle.build_adapter(dit_bundle.STEP, *bundle.adapters[dit_bundle.STEP], where)
    _assert_same_modules(embedder, load_step_embedder(paths["step"])[0])
    assert sizes == SIZES
    conditioner = dit_bundle.build_adapter(dit_bundle.VSR, *bundle.adapters[dit_bundle.VSR], where)
    _assert_same_modules(conditioner, load_vsr_conditioner(paths["vsr"]))
    assert float(conditioner.scale) != 0.0


def test_lrhr_bundle_without_adapters_is_the_plain_dit(files):
    dit, _, folder = files
    assert dit_bundle.save_dit_bundle(folder / "plain.safetensors", dit, []) == []
    bundle = _split(folder / "plain.safetensors")
    assert bundle.adapters == {} and bundle.dit.keys() == dit.keys()
    assert _split(folder / "dit.safetensors").adapters == {}  # a file never bundled: no adapters, no error


def _rewrite(path, change_tensors=None, change_metadata=None):
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    if change_metadata:
        change_metadata(metadata)
    save_file(tensors, str(path), metadata=metadata)


def _set_entry(metadata, change):
    entry = json.loads(metadata[dit_bundle.BUNDLE_KEY])
    change(entry)
    metadata[dit_bundle.BUNDLE_KEY] = json.dumps(entry)


@pytest.mark.parametrize("case,message", [
    ("orphan_tensors", "holds vsr_conditioner.* tensors but no turbovideo_bundle metadata for a VSR conditioner"),
    ("missing_tensors", "lists a step-size adapter but the file holds no step_embedder.* tensors"),
    ("version", "bundle format_version '9' is not supported"),
    ("unknown_kind", "unknown adapter kinds ['lora']"),
    ("shape", "fusion adapter tensor fusion.blocks.1.proj_out.weight has shape (16, 15), its metadata needs (16, 16)"),
    ("nan", "step-size adapter: tensor 'step_embedder.linear_2.bias' holds 1 NaN"),
])
def test_lrhr_bundle_errors_name_the_problem(files, case, message):
    _, paths, folder = files
    path = folder / "bundle.safetensors"
    dit_bundle.save_dit_bundle(path, folder / "dit.safetensors", [paths["fusion"], paths["step"]])
    tensors_change, metadata_change = {
        "orphan_tensors": (lambda t: t.__setitem__("vsr_conditioner.scale", torch.ones(())), None),
        "missing_tensors": (lambda t: [t.pop(k) for k in list(t) if k.startswith("step_embedder.")], None),
        "version": (None, lambda m: _set_entry(m, lambda e: e.__setitem__("format_version", "9"))),
        "unknown_kind": (None, lambda m: _set_entry(m, lambda e: e["adapters"].__setitem__("lora", {}))),
        "shape": (lambda t: t.__setitem__("fusion.blocks.1.proj_out.weight", torch.randn(16, 15)), None),
        "nan": (lambda t: t["step_embedder.linear_2.bias"].__setitem__(3, float("nan")), None),
    }[case]
    _rewrite(path, tensors_change, metadata_change)
    with pytest.raises(ValueError) as error:
        bundle = _split(path)
        for kind, (tensors, metadata) in bundle.adapters.items():
            dit_bundle.build_adapter(kind, tensors, metadata, path.name)
    assert message in str(error.value)


def test_lrhr_bundle_writer_refuses_bad_inputs(files):
    dit, paths, folder = files
    out = folder / "out.safetensors"
    with pytest.raises(ValueError, match="a second fusion adapter; a bundle holds one adapter of each kind"):
        dit_bundle.save_dit_bundle(out, dit, [paths["fusion"], paths["fusion"]])
    with pytest.raises(ValueError, match="is not a TurboVideo adapter file"):
        dit_bundle.save_dit_bundle(out, dit, [folder / "dit.safetensors"])
    with pytest.raises(ValueError, match=r"keys \['fusion.x'\] already use an adapter prefix"):
        dit_bundle.save_dit_bundle(out, {**dit, "fusion.x": torch.randn(2)}, [])
    _rewrite(paths["step"], lambda t: t.__setitem__("step_embedder.linear_1.bias", torch.randn(3)))
    with pytest.raises(ValueError, match="step_embedder.linear_1.bias has shape"):
        dit_bundle.save_dit_bundle(out, dit, [paths["step"]])  # checked by the adapter's own loader
    assert not out.exists()
