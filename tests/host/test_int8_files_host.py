"""Every INT8 file kind x every loader, in the real ComfyUI (run on both hosts): no file the pack writes
loads silently wrong anywhere.

File kinds, all of the tiny LTX-Video DiT (width 64): written by TurboSaveQuantized after
TurboQuantizeINT8 and by tools/quantize_int8.py, each per_channel and block128; and, read by the pack's
loaders only, a ComfyUI-native INT8 file another tool would write (one per-tensor scale per layer) and the
pack's version-1 format. Loaders: core's UNETLoader and CheckpointLoaderSimple (which falls back to
loading a bare DiT), TurboLoadQuantized, TurboDiTLoader. Each load either samples within 3e-2 (relative
L2) of the float model with INT8 layers in the model, or fails with an exception: block128 files name
TurboLoadQuantized on every core, per_channel files run core's INT8 GEMM where core has native INT8 and
fail with core's KeyError 'int8_tensorwise' where it has not (0.8.0).
"""
import pathlib
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from host import graphs

pytestmark = pytest.mark.host

PACK_WRITTEN = ("save_per_channel", "save_block128", "tool_per_channel", "tool_block128")
READ_ONLY = ("native_per_tensor", "version1_per_channel")
CORE_LOADERS = ("UNETLoader", "CheckpointLoaderSimple")
PACK_LOADERS = ("TurboLoadQuantized", "TurboDiTLoader")
LINEARS = 20  # the tiny LTX-Video DiT: 2 blocks x (attn1 4, attn2 4, ff 2)
LATENT = {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}}


def _pack(comfy, name):
    return sys.modules[f"{comfy.pack_module.__name__}.{name}"]


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _loader_node(loader: str, name: str) -> dict:
    if loader == "UNETLoader":
        return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}
    if loader == "CheckpointLoaderSimple":
        return {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}}
    if loader == "TurboLoadQuantized":
        return {"class_type": "TurboLoadQuantized", "inputs": {"unet_name": name}}
    return {"class_type": "TurboDiTLoader", "inputs": {
        "unet_name": name, "weight_dtype": "default", "int8": "off", "step_embedder": "none",
        "fusion_adapter": "none", "vsr_conditioner": "none"}}


def _prompt(loader_node: dict, extra: dict | None = None) -> dict:
    prompt = {"unet": loader_node, "latent": LATENT, "pos": graphs.conditioning_node(0, True),
              "neg": graphs.conditioning_node(1, True)}
    prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0], steps=2)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.capture(["unet", 0], "model", "capture_model"))
    prompt.update(extra or {})
    return prompt


def _other_tool_native(state: dict) -> dict:
    """What another tool writes in core's native INT8 layout: one scale per tensor (amax / 127)."""
    fmt = sys.modules["turbovideo.models.int8_format"]
    out = dict(state)
    for key, value in state.items():
        if key.startswith("transformer_blocks.") and key.endswith(".weight") and value.dim() == 2:
            prefix, scale = key[:-7], (value.abs().max() / 127).float()
            out[key] = torch.round(value / scale).clamp(-127, 127).to(torch.int8)
            out[prefix + ".weight_scale"] = scale
            out[prefix + ".comfy_quant"] = fmt.comfy_quant("int8_tensorwise")
    return out


def _version1(state: dict) -> dict:
    """The pack's version-1 format: int8 + [out, 1] scales, no .comfy_quant."""
    ref = sys.modules["turbovideo.kernels.int8_reference"]
    out = dict(state)
    for key, value in state.items():
        if key.startswith("transformer_blocks.") and key.endswith(".weight") and value.dim() == 2:
            out[key], out[key[:-7] + ".weight_scale"] = ref.quantize_rows(value)
    return out


def _saved_file(comfy, captured, float_name, granularity, folder) -> pathlib.Path:
    import folder_paths

    prompt = _prompt(_loader_node("UNETLoader", float_name))
    prompt["quant"] = {"class_type": "TurboQuantizeINT8", "inputs": {
        "model": ["unet", 0], "layers": "all", "granularity": granularity, "backend": "auto"}}
    prompt["save"] = {"class_type": "TurboSaveQuantized", "inputs": {
        "model": ["quant", 0], "filename_prefix": f"int8_matrix/save_{granularity}"}}
    prompt["sample"]["inputs"]["model"] = ["quant", 0]
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    written = sorted((pathlib.Path(folder_paths.get_output_directory()) / "int8_matrix").glob(f"save_{granularity}_*"))
    target = folder / f"save_{granularity}.safetensors"
    shutil.copy(written[-1], target)
    return target


@pytest.fixture(scope="module")
def int8_files(comfy, tiny_models, tmp_path_factory):
    """{kind: file name} in a folder that is both a diffusion_models and a checkpoints folder."""
    import folder_paths
    import quantize_int8

    from host.test_only_nodes import CAPTURED

    folder = tmp_path_factory.mktemp("int8_matrix")
    float_path = pathlib.Path(folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltxv_dit"]))
    for granularity in ("per_channel", "block128"):
        _saved_file(comfy, CAPTURED, tiny_models["ltxv_dit"], granularity, folder)
        quantize_int8.quantize_file(float_path, folder / f"tool_{granularity}.safetensors", granularity,
                                    log=lambda line: None)
    state = load_file(str(float_path))
    save_file(_other_tool_native(state), str(folder / "native_per_tensor.safetensors"))
    save_file(_version1(state), str(folder / "version1_per_channel.safetensors"),
              metadata={"turbovideo_format": "int8_w8a8", "turbovideo_version": "1", "turbovideo_dtype": "float32"})
    for kind in ("diffusion_models", "checkpoints"):
        comfy.add_model_folder(kind, folder)
    return {kind: f"{kind}.safetensors" for kind in PACK_WRITTEN + READ_ONLY}


@pytest.fixture(scope="module")
def float_state(tiny_models):
    import folder_paths

    return load_file(folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltxv_dit"]))


@pytest.fixture(scope="module")
def float_latent(comfy, tiny_models):
    from host.test_only_nodes import CAPTURED

    CAPTURED.clear()
    result = comfy.run(_prompt(_loader_node("UNETLoader", tiny_models["ltxv_dit"])))
    assert result.ok, result.describe()
    return CAPTURED["latent"]["samples"].clone()


def _int8_layers(comfy, model) -> int:
    is_quantized = _pack(comfy, "patches.int8.quantize").is_quantized
    return sum(is_quantized(m) for m in model.model.diffusion_model.modules())


def _expected_failure(comfy, kind: str, loader: str) -> str | None:
    """The text core's exception must show, or None when the load must work."""
    if loader in PACK_LOADERS:
        return None
    if kind.endswith("block128"):
        return "TurboLoadQuantized"
    native = _pack(comfy, "patches.core_compat").native_int8_layout() is not None
    return None if native else "int8_tensorwise"


def _forwards(comfy, layer) -> list:
    """The layer, and for core's native layers seen through PackGemm both GEMMs it may pick, forced."""
    native = _pack(comfy, "patches.int8.native")
    if not isinstance(layer, native.PackGemm):
        return [layer]
    pack = "onednn" if _pack(comfy, "kernels.int8").onednn_available() else "torch"
    return [layer, native.view(layer, "core"), native.view(layer, pack)]


def _layer_errors(comfy, model, float_state) -> dict:
    """{(layer, variant): relative L2 error of its forward against F.linear with the float file's weights}, on
    random inputs: the GEMM the model runs, and on core's native layers both GEMMs 'auto' chooses from."""
    is_quantized = _pack(comfy, "patches.int8.quantize").is_quantized
    generator, errors = torch.Generator().manual_seed(len(float_state)), {}
    for name, module in list(model.model.diffusion_model.named_modules()):
        layer = model.get_model_object(f"diffusion_model.{name}") if name else module
        if not is_quantized(layer):
            continue
        weight, bias = float_state[f"{name}.weight"], float_state.get(f"{name}.bias")
        x = torch.randn(2, 24, weight.shape[1], generator=generator)
        expected = torch.nn.functional.linear(x, weight, bias)
        for variant, forward in enumerate(_forwards(comfy, layer)):
            with torch.inference_mode():
                errors[name, variant] = _rel(forward(x), expected)
    return errors


def _check_load(comfy, captured, kind, loader, name, float_latent, float_state):
    result = comfy.run(_prompt(_loader_node(loader, name)))
    failure = _expected_failure(comfy, kind, loader)
    if failure is not None:
        assert not result.ok and result.execution_error, result.describe()
        message = f"{result.execution_error['exception_type']}: {result.execution_error['exception_message']}"
        assert failure in message, message
        print(f"{kind} x {loader}: {message}")
        return
    assert result.ok, result.describe()
    assert _int8_layers(comfy, captured["model"]) == LINEARS, "the model must hold the file's INT8 Linears"
    assert 0 < _rel(captured["latent"]["samples"], float_latent) <= 3e-2
    errors = _layer_errors(comfy, captured["model"], float_state)
    bound = 4e-2 if kind == "native_per_tensor" else 2.5e-2  # one scale per tensor is coarser than per row
    assert len({name for name, _ in errors}) == LINEARS and max(errors.values()) <= bound, errors


@pytest.mark.parametrize("loader", CORE_LOADERS + PACK_LOADERS)
@pytest.mark.parametrize("kind", PACK_WRITTEN)
def test_every_file_the_pack_writes_loads_right_or_is_refused(comfy, captured, int8_files, float_latent, float_state,
                                                               kind, loader):
    _check_load(comfy, captured, kind, loader, int8_files[kind], float_latent, float_state)


@pytest.mark.parametrize("loader", PACK_LOADERS)
@pytest.mark.parametrize("kind", READ_ONLY)
def test_pack_loaders_read_other_tools_and_version_1(comfy, captured, int8_files, float_latent, float_state, kind,
                                                    loader):
    _check_load(comfy, captured, kind, loader, int8_files[kind], float_latent, float_state)


@pytest.mark.parametrize("loader", CORE_LOADERS)
def test_native_files_of_other_tools_in_core(comfy, captured, int8_files, float_latent, float_state, loader):
    _check_load(comfy, captured, "native_per_tensor", loader, int8_files["native_per_tensor"], float_latent,
                float_state)


def test_core_runs_its_int8_gemm_on_the_pack_per_channel_file(comfy, captured, int8_files, monkeypatch):
    """On a core with native INT8, UNETLoader's model of a pack file runs comfy-kitchen's int8_linear."""
    if _pack(comfy, "patches.core_compat").native_int8_layout() is None:
        pytest.skip("this ComfyUI has no native INT8 (0.8.0): the file is refused, see the matrix")
    calls = []
    kitchen = torch.ops.comfy_kitchen
    original = kitchen.int8_linear
    monkeypatch.setattr(kitchen, "int8_linear", lambda *a, **k: calls.append(a[1].shape) or original(*a, **k))
    result = comfy.run(_prompt(_loader_node("UNETLoader", int8_files["save_per_channel"])))
    assert result.ok, result.describe()
    assert len(calls) == 2 * LINEARS  # 2 steps (cfg 1: no uncond pass) x the block Linears
