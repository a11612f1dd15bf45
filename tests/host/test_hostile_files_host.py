"""Hostile model and adapter files (issue 18, findings 2 and 4) in the real ComfyUI, through every loader.

Each bad file ends in an error that names the input and says what the input needs (or where the file
goes instead), never a raw library error and never a success with NaN weights; a pickle that would run
code never runs it; the server serves a valid prompt after each.
"""
import os
import pathlib
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import turbowan as tiny_wan
from tiny_models.random_weights import randomised
from turbovideo.models.dit_bundle import save_dit_bundle
from turbovideo.models.fusion_blocks import FusionAdapter, save_fusion_adapter
from turbovideo.models.sla_weights import save_proj_l
from turbovideo.models.step_embedder import StepSizeEmbedder, save_step_embedder
from turbovideo.models.vsr_conditioner import VSRConditioner, save_vsr_conditioner

from host import graphs
from host.hostile import Case, assert_clear_error, assert_still_serving, lrhr_prompt, vsr_prompt

pytestmark = pytest.mark.host

SILENT, UNCLEAR = "silent wrong output", "unclear error"
TRAINED = [1.0, 0.5, 0.25]
MARKER = {}  # the path a malicious pickle would create


class RunsCode:
    """Pickles to a call of os.system: loading it with plain pickle would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def _poisoned(module_writer, path, key_part, value):
    """Writes a valid adapter with `value` put into the first element of the first tensor named like key_part."""
    module_writer(path)
    tensors, metadata = load_file(str(path)), _metadata(path)
    key = next(k for k in sorted(tensors) if key_part in k)
    tensors[key] = tensors[key].clone()
    if isinstance(value, torch.dtype):
        tensors[key] = tensors[key].to(value)
    else:
        tensors[key].view(-1)[0] = value
    save_file(tensors, str(path), metadata=metadata)


def _damaged(good: bytes, kind: str) -> bytes:
    return {"empty": b"", "truncated": good[: len(good) // 2], "header": good[:20],
            "gguf": b"GGUF" + bytes(60), "junk": b"this is a text file, not weights\n" * 4}[kind]


def _adapter_files(folder) -> None:
    step = lambda p: save_step_embedder(p, randomised(StepSizeEmbedder(64), 3), TRAINED)
    fusion = lambda p: save_fusion_adapter(p, randomised(FusionAdapter(64, 64, [0, 1], num_blocks=2), 4))
    vsr = lambda p: save_vsr_conditioner(p, randomised(VSRConditioner(64), 5))
    proj_l = lambda p: save_proj_l(p, {0: (torch.randn(2, 2), torch.randn(2)), 1: (torch.randn(2, 2), None)})
    for name, writer in (("step", step), ("fusion", fusion), ("vsr", vsr), ("projl", proj_l)):
        writer(folder / f"hostile_{name}_ok.safetensors")
        good = (folder / f"hostile_{name}_ok.safetensors").read_bytes()
        for kind in ("empty", "truncated", "header", "gguf", "junk"):
            (folder / f"hostile_{name}_{kind}.safetensors").write_bytes(_damaged(good, kind))
        _poisoned(writer, folder / f"hostile_{name}_nan.safetensors", "weight", float("nan"))
        _poisoned(writer, folder / f"hostile_{name}_inf.safetensors", "bias", float("inf"))
        _poisoned(writer, folder / f"hostile_{name}_int32.safetensors", "weight", torch.int32)
    torch.save({"x": torch.randn(3)}, str(folder / "hostile_step_pth.safetensors"))


def _dit_files(folder, adapters, dit_path) -> None:
    dit = load_file(str(dit_path))
    bad = dict(dit)
    bad["transformer_blocks.0.attn1.to_q.weight"] = bad["transformer_blocks.0.attn1.to_q.weight"].clone()
    bad["transformer_blocks.0.attn1.to_q.weight"][0, 0] = float("nan")
    save_file(bad, str(folder / "hostile_dit_nan.safetensors"))
    save_file({**dit, "proj_out.weight": dit["proj_out.weight"].to(torch.int32)},
              str(folder / "hostile_dit_int32.safetensors"))
    (folder / "hostile_dit_empty.safetensors").write_bytes(b"")
    (folder / "hostile_dit_truncated.safetensors").write_bytes(dit_path.read_bytes()[:4096])
    for kind, part in (("fusion", "fusion."), ("step", "step_embedder.")):
        path = folder / f"hostile_bundle_{kind}_nan.safetensors"
        save_dit_bundle(path, dit_path, [adapters / f"hostile_{kind}_ok.safetensors"])
        tensors, metadata = load_file(str(path)), _metadata(path)
        key = next(k for k in sorted(tensors) if k.startswith(part) and k.endswith("weight"))
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")
        save_file(tensors, str(path), metadata=metadata)


def _turbowan_files(folder) -> None:
    turbo = tiny_wan.to_turbowan(tiny_wan.native_state_dict(), tiny_wan.proj_l_state_dict())
    nan = dict(turbo)
    nan["blocks.0.ffn.0.weight"] = nan["blocks.0.ffn.0.weight"].clone()
    nan["blocks.0.ffn.0.weight"][1, 1] = float("nan")
    tiny_wan.write_pth(nan, folder / "hostile_wan_nan.pth")
    tiny_wan.write_pth({**turbo, "blocks.1.self_attn.q.weight": turbo["blocks.1.self_attn.q.weight"].to(torch.int32)},
                       folder / "hostile_wan_int32.pth")
    tiny_wan.write_pth(turbo, folder / "hostile_wan_ok.pth")
    good = (folder / "hostile_wan_ok.pth").read_bytes()
    (folder / "hostile_wan_empty.pth").write_bytes(b"")
    (folder / "hostile_wan_truncated.pth").write_bytes(good[: len(good) // 2])
    (folder / "hostile_wan_gguf.pth").write_bytes(b"GGUF" + bytes(60))
    save_file({k: v.contiguous() for k, v in turbo.items()}, str(folder / "hostile_wan_is_safetensors.pth"))
    torch.save({"weights": torch.randn(2), "payload": RunsCode(MARKER["path"])}, str(folder / "hostile_wan_code.pth"))
    with open(folder / "hostile_wan_legacy_code.pth", "wb") as handle:
        pickle.dump({"payload": RunsCode(MARKER["path"])}, handle, protocol=2)
    quant = tiny_wan.quantize_blocks(turbo)
    tiny_wan.write_pth(quant, folder / "hostile_wan-quant.pth")
    save_file({k: v.contiguous() for k, v in quant.items()}, str(folder / "hostile_wan-quant.safetensors"))


def _int8_file(folder, dit_path) -> None:
    dit = load_file(str(dit_path))
    key = "transformer_blocks.0.attn1.to_q"
    weight = dit.pop(f"{key}.weight")
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    dit[f"{key}.weight"] = torch.round(weight / scale).to(torch.int8)
    scale[0, 0] = float("nan")
    dit[f"{key}.weight_scale"] = scale
    save_file(dit, str(folder / "hostile_int8_nan.safetensors"),
              metadata={"turbovideo_format": "int8_w8a8", "turbovideo_version": "1", "turbovideo_dtype": "float32"})
    (folder / "hostile_int8_empty.safetensors").write_bytes(b"")


@pytest.fixture(scope="module")
def files(comfy, tiny_models, tmp_path_factory):
    import folder_paths

    adapters, models = tmp_path_factory.mktemp("hostile_adapters"), tmp_path_factory.mktemp("hostile_models")
    MARKER["path"] = str(tmp_path_factory.mktemp("hostile_marker") / "code_ran")
    dit_path = folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltxv_dit"])
    _adapter_files(adapters)
    _dit_files(models, adapters, pathlib.Path(dit_path))
    _turbowan_files(models)
    _int8_file(models, pathlib.Path(dit_path))
    comfy.add_model_folder("turbovideo", adapters)
    comfy.add_model_folder("diffusion_models", models)
    return tiny_models


# ---- prompts, one per loader ------------------------------------------------------------------------------

def _unet(tiny_models):
    return {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_models["ltxv_dit"], "weight_dtype": "default"}}


def _model_node(tiny_models, node: dict) -> dict:
    return {"unet": _unet(tiny_models), "node": node, **graphs.capture(["node", 0], "model")}


def shortcut(tiny_models, name):
    return _model_node(tiny_models, {"class_type": "TurboShortcutModel",
                                     "inputs": {"model": ["unet", 0], "adapter": name}})


def attention(tiny_models, name):
    return _model_node(tiny_models, {"class_type": "TurboAttention", "inputs": {
        "model": ["unet", 0], "backend": "sla", "topk": 0.5, "proj_l": name}})


def vsr(tiny_models, name):
    return vsr_prompt(tiny_models, vsr_conditioner=name)


def lrhr(tiny_models, name):
    return lrhr_prompt(tiny_models, adapter=name)


def dit_loader(tiny_models, name, **adapters):
    inputs = {"unet_name": name, "weight_dtype": "default", "int8": "off", "step_embedder": "embedded",
              "fusion_adapter": "embedded", "vsr_conditioner": "embedded", **adapters}
    return {"node": {"class_type": "TurboDiTLoader", "inputs": inputs}, **graphs.capture(["node", 0], "model")}


def turbowan(tiny_models, name):
    return {"node": {"class_type": "TurboWanLoader", "inputs": {"turbowan_name": name, "attention": "sdpa",
                                                                "topk": 0.1, "int8": False}},
            **graphs.capture(["node", 0], "model")}


def load_quantized(tiny_models, name):
    return {"node": {"class_type": "TurboLoadQuantized", "inputs": {"unet_name": name}},
            **graphs.capture(["node", 0], "model")}


KIND_WORDS = {"empty": "empty file", "truncated": "truncated or damaged safetensors", "header": "truncated or damaged",
              "gguf": "GGUF file", "junk": "not a model file", "nan": "NaN or infinite", "inf": "NaN or infinite",
              "int32": "int32, but weights must be"}
ADAPTERS = {  # prompt builder, input name, what the input needs
    "step": (shortcut, "adapter", "needs a step-size adapter"),
    "projl": (attention, "proj_l", "needs SLA proj_l weights"),
    "vsr": (vsr, "vsr_conditioner", "needs a VSR conditioner"),
    "fusion": (lrhr, "adapter", "needs a fusion adapter"),
}
ADAPTER_CASES = [Case(f"{adapter}-{kind}", SILENT if kind in ("nan", "inf", "int32") else UNCLEAR,
                      (ADAPTERS[adapter][1], KIND_WORDS[kind],
                       "use another copy" if kind in ("nan", "inf", "int32") else ADAPTERS[adapter][2]))
                 for adapter in ADAPTERS for kind in KIND_WORDS]


@pytest.mark.parametrize("case", ADAPTER_CASES, ids=str)
def test_bad_adapter_files_name_the_input_the_file_and_the_fix(comfy, files, case):
    adapter, kind = case.id.split("-")
    build = ADAPTERS[adapter][0]
    assert_clear_error(comfy, build(files, f"hostile_{adapter}_{kind}.safetensors"), case)


def test_a_pth_named_safetensors_is_named_for_what_it_is(comfy, files):
    case = Case("step-pth", UNCLEAR, ("adapter: 'hostile_step_pth.safetensors'", "PyTorch checkpoint",
                                      "needs a step-size adapter"))
    assert_clear_error(comfy, shortcut(files, "hostile_step_pth.safetensors"), case)


MODEL_CASES = [
    Case("dit-nan", SILENT, ("unet_name: 'hostile_dit_nan.safetensors'", "transformer_blocks.0.attn1.to_q.weight",
                             "NaN or infinite", "use another copy")),
    Case("dit-int32", SILENT, ("unet_name", "proj_out.weight", "int32, but weights must be")),
    Case("dit-empty", UNCLEAR, ("unet_name", "empty file", "needs an LTX-Video or LTX-2 DiT")),
    Case("dit-truncated", UNCLEAR, ("unet_name", "truncated or damaged safetensors",
                                    "needs an LTX-Video or LTX-2 DiT")),
    Case("bundle-fusion-nan", SILENT, ("fusion_adapter: the fusion adapter embedded in", "NaN or infinite")),
    Case("bundle-step-nan", SILENT, ("step_embedder: the step-size adapter embedded in", "NaN or infinite")),
    Case("dit-turbowan", UNCLEAR, ("unet_name", "is a TurboWan checkpoint", "TurboWanLoader")),
    Case("dit-step-file-nan", SILENT, ("step_embedder: 'hostile_step_nan.safetensors'", "NaN or infinite")),
    Case("wan-nan", SILENT, ("turbowan_name: 'hostile_wan_nan.pth'", "blocks.0.ffn.0.weight", "NaN or infinite",
                             "download it again")),
    Case("wan-int32", SILENT, ("turbowan_name", "blocks.1.self_attn.q.weight", "int32, but weights must be")),
    Case("wan-empty", UNCLEAR, ("turbowan_name", "empty file", "needs a TurboWan checkpoint")),
    Case("wan-truncated", UNCLEAR, ("turbowan_name", "truncated or damaged PyTorch checkpoint",
                                    "needs a TurboWan checkpoint")),
    Case("wan-gguf", UNCLEAR, ("turbowan_name", "GGUF file", "needs a TurboWan checkpoint")),
    Case("wan-is-safetensors", UNCLEAR, ("turbowan_name", "safetensors file named like a .pth", "rename it")),
    Case("wan-code", UNCLEAR, ("turbowan_name", "needs Python code to load, so it was refused and nothing in it ran",
                               "needs a TurboWan checkpoint")),
    Case("wan-legacy-code", UNCLEAR, ("turbowan_name", "refused and nothing in it ran")),
    Case("int8-turbowan-pth", UNCLEAR, ("unet_name", "load them with TurboWanLoader")),
    Case("int8-turbowan-safetensors", UNCLEAR, ("unet_name", "is a TurboWan checkpoint", "TurboWanLoader")),
    Case("int8-empty", UNCLEAR, ("unet_name", "empty file", "needs an INT8 diffusion model")),
    Case("int8-nan", SILENT, ("unet_name", "weight_scale", "NaN or infinite")),
]
MODEL_PROMPTS = {
    "dit-nan": (dit_loader, "hostile_dit_nan.safetensors"), "dit-int32": (dit_loader, "hostile_dit_int32.safetensors"),
    "dit-empty": (dit_loader, "hostile_dit_empty.safetensors"),
    "dit-truncated": (dit_loader, "hostile_dit_truncated.safetensors"),
    "bundle-fusion-nan": (dit_loader, "hostile_bundle_fusion_nan.safetensors"),
    "bundle-step-nan": (dit_loader, "hostile_bundle_step_nan.safetensors"),
    "dit-turbowan": (dit_loader, "hostile_wan-quant.safetensors"),
    "wan-nan": (turbowan, "hostile_wan_nan.pth"), "wan-int32": (turbowan, "hostile_wan_int32.pth"),
    "wan-empty": (turbowan, "hostile_wan_empty.pth"), "wan-truncated": (turbowan, "hostile_wan_truncated.pth"),
    "wan-gguf": (turbowan, "hostile_wan_gguf.pth"), "wan-is-safetensors": (turbowan, "hostile_wan_is_safetensors.pth"),
    "wan-code": (turbowan, "hostile_wan_code.pth"), "wan-legacy-code": (turbowan, "hostile_wan_legacy_code.pth"),
    "int8-turbowan-pth": (load_quantized, "hostile_wan-quant.pth"),
    "int8-turbowan-safetensors": (load_quantized, "hostile_wan-quant.safetensors"),
    "int8-empty": (load_quantized, "hostile_int8_empty.safetensors"),
    "int8-nan": (load_quantized, "hostile_int8_nan.safetensors"),
}


@pytest.mark.parametrize("case", MODEL_CASES, ids=str)
def test_bad_model_files_name_the_input_the_file_and_the_fix(comfy, files, case):
    if case.id == "dit-step-file-nan":
        prompt = dit_loader(files, files["ltxv_dit"], step_embedder="hostile_step_nan.safetensors")
    else:
        build, name = MODEL_PROMPTS[case.id]
        prompt = build(files, name)
    assert_clear_error(comfy, prompt, case)
    assert not os.path.exists(MARKER["path"]), "a pickle in a model file ran code"


def test_the_good_files_load(comfy, files, captured):
    """The same loaders with the undamaged files succeed: the cases above fail for the damage only."""
    for prompt in (shortcut(files, "hostile_step_ok.safetensors"), turbowan(files, "hostile_wan_ok.pth"),
                   dit_loader(files, files["ltxv_dit"], step_embedder="hostile_step_ok.safetensors")):
        captured.clear()
        result = comfy.run(prompt)
        assert result.ok, result.describe()
        assert captured["model"] is not None
    assert_still_serving(comfy)
