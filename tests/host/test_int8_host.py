"""W8A8 INT8 in the real ComfyUI: TurboQuantizeINT8 on the tiny LTX-Video (width 64) and Wan (width
128) DiTs, LoRA on the quantized MODEL, lowvram/offload, save -> load, and TurboDiffusion's layout.

Where core has native INT8 layouts (0.27+), per_channel layers are core's own QuantizedTensor Linears:
a LoRA through core's LoraLoaderModelOnly is requantized by core and every block Linear call still
runs an INT8 GEMM (counted at the GEMMs: the pack's kernels.int8.linear and comfy-kitchen's
int8_linear). On 0.8.0 they are the pack's Int8Linear, with the same checks.

Tolerances: a quantized tiny model's sampled latent within 3e-2 (relative L2) of the float one; a
LoRA's effect (LoRA output minus plain output) on the quantized model within 0.1 of its effect on
the float model, for a LoRA that moves the output by well over 10x the quantization error.
"""
import pathlib
import sys

import pytest
import torch
from safetensors.torch import save_file

from host import graphs

pytestmark = pytest.mark.host

FAMILIES = {
    "ltxv": {"dit": "ltxv_dit", "mask": True, "lora_layers": ["transformer_blocks.0.attn1.to_q",
                                                             "transformer_blocks.0.ff.net.2"],
             "latent": {"class_type": "EmptyLTXVLatentVideo",
                        "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}}},
    "wan": {"dit": "wan_dit", "mask": False, "lora_layers": ["blocks.0.self_attn.q", "blocks.0.ffn.0"],
            "latent": {"class_type": "EmptyHunyuanLatentVideo",
                       "inputs": {"width": 32, "height": 32, "length": 5, "batch_size": 1}}},
    # LTX-2 video-only and with an audio latent; its LoRA touches the video and the audio stream
    "ltx2": {"dit": "ltx2_dit", "audio": False, "lora_layers": ["transformer_blocks.0.attn1.to_q",
                                                                "transformer_blocks.0.ff.net.2"]},
    "ltx2_av": {"dit": "ltx2_dit", "audio": True, "lora_layers": ["transformer_blocks.0.audio_attn1.to_q",
                                                                  "transformer_blocks.0.audio_ff.net.2",
                                                                  "transformer_blocks.1.ff.net.2"]},
}
# block Linears of each tiny DiT (2 blocks), and how many of them one model call runs: LTX-Video and Wan 10 per
# block; LTX-2 28 (video and audio: 4 attentions x q, k, v, out + ff; the two audio<->video attentions: 8), of
# which a video-only call (empty audio) runs the video stream's 10
BLOCK_LINEARS = {"ltxv": 20, "wan": 20, "ltx2": 56, "ltx2_av": 56}
LINEARS_PER_CALL = {"ltxv": 20, "wan": 20, "ltx2": 20, "ltx2_av": 56}


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _pack(comfy, name):
    return sys.modules[f"{comfy.pack_module.__name__}.{name}"]


def _native(comfy) -> bool:
    return _pack(comfy, "patches.core_compat").native_int8_layout() is not None


def _prompt(tiny_models, family, quantize=None, lora=None, loader=None):
    spec = FAMILIES[family]
    if family.startswith("ltx2"):
        prompt = graphs.ltx2_nodes(tiny_models[spec["dit"]], audio=spec["audio"])
    else:
        prompt = {"unet": {"class_type": "UNETLoader",
                           "inputs": {"unet_name": tiny_models[spec["dit"]], "weight_dtype": "default"}},
                  "latent": spec["latent"]}
        for node in ("pos", "neg"):
            prompt[node] = graphs.conditioning_node(int(node == "neg"), spec["mask"])
    prompt["unet"] = loader or prompt["unet"]
    model = ["unet", 0]
    if quantize:
        prompt["quant"] = {"class_type": "TurboQuantizeINT8", "inputs": {"model": model, **quantize}}
        model = ["quant", 0]
    if lora:
        prompt["lora"] = {"class_type": "LoraLoaderModelOnly",
                          "inputs": {"model": model, "lora_name": lora, "strength_model": 1.0}}
        model = ["lora", 0]
    prompt["sample"] = graphs.ksampler(model, ["latent", 0], steps=2)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.capture(model, "model", "capture_model"))
    return prompt


def _sample(comfy, captured, prompt):
    """The sampled latent; an audio-video one as video and audio flattened into one vector."""
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    if getattr(latent, "is_nested", False):
        return torch.cat([part.flatten() for part in latent.unbind()])
    return latent.clone()


ALL = {"layers": "all", "granularity": "per_channel", "backend": "auto"}


@pytest.mark.parametrize("granularity", ["per_channel", "block128"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_quantized_model_samples_close_to_float(comfy, tiny_models, captured, clean_load, family, granularity):
    plain = _sample(comfy, captured, _prompt(tiny_models, family))
    quantized = _sample(comfy, captured, _prompt(tiny_models, family, {**ALL, "granularity": granularity}))
    assert 0 < _rel(quantized, plain) <= 3e-2
    layers = [m for m in captured["model"].model.diffusion_model.modules()
              if _pack(comfy, "patches.int8.quantize").is_quantized(m)]
    native = _pack(comfy, "patches.int8.native")
    assert len(layers) == BLOCK_LINEARS[family]
    expect_native = granularity == "per_channel" and _native(comfy)
    assert all(isinstance(m, native.PackGemm) == expect_native for m in layers)


def _write_lora(folder, name, model_state, layers, seed):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for layer in layers:
        out_features, in_features = model_state[f"{layer}.weight"].shape
        state[f"diffusion_model.{layer}.lora_down.weight"] = torch.randn(4, in_features, generator=generator)
        state[f"diffusion_model.{layer}.lora_up.weight"] = torch.randn(out_features, 4, generator=generator) * 0.3
        state[f"diffusion_model.{layer}.alpha"] = torch.tensor(4.0)
    save_file(state, str(folder / name))
    return name


@pytest.fixture(scope="module")
def lora_files(comfy, tiny_models, tmp_path_factory):
    import folder_paths
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("loras")
    comfy.add_model_folder("loras", folder)
    names = {}
    for family, spec in FAMILIES.items():
        model_state = load_file(folder_paths.get_full_path_or_raise("diffusion_models", tiny_models[spec["dit"]]))
        names[family] = _write_lora(folder, f"int8_test_{family}.safetensors", model_state,
                                    spec["lora_layers"], seed=len(family))
    return names


def _pack_backend(comfy) -> str:
    return "onednn" if _pack(comfy, "kernels.int8").onednn_available() else "torch"


@pytest.fixture
def gemm_calls(comfy, monkeypatch):
    """{"pack": n, "core": n}: calls of the pack's INT8 GEMM and of comfy-kitchen's int8_linear."""
    calls = {"pack": 0, "core": 0}
    kernels = _pack(comfy, "kernels.int8")
    pack = kernels.linear
    monkeypatch.setattr(kernels, "linear",
                        lambda *a, **k: calls.__setitem__("pack", calls["pack"] + 1) or pack(*a, **k))
    if _native(comfy):
        kitchen = torch.ops.comfy_kitchen
        core = kitchen.int8_linear
        monkeypatch.setattr(kitchen, "int8_linear",
                            lambda *a, **k: calls.__setitem__("core", calls["core"] + 1) or core(*a, **k))
    return calls


@pytest.mark.parametrize("backend", ["auto", "pack", "core"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_lora_changes_quantized_model_like_float_model(comfy, tiny_models, captured, lora_files, gemm_calls,
                                                       family, backend):
    if backend == "core" and not _native(comfy):
        pytest.skip("backend 'core' needs a ComfyUI with native INT8 (0.27+)")
    quantize = {**ALL, "backend": _pack_backend(comfy) if backend == "pack" else backend}
    lora = lora_files[family]
    plain = _sample(comfy, captured, _prompt(tiny_models, family))
    plain_lora = _sample(comfy, captured, _prompt(tiny_models, family, lora=lora))
    quant = _sample(comfy, captured, _prompt(tiny_models, family, quantize))
    gemm_calls.update(pack=0, core=0)
    quant_lora = _sample(comfy, captured, _prompt(tiny_models, family, quantize, lora=lora))
    effect, quant_effect = plain_lora - plain, quant_lora - quant
    assert _rel(plain_lora, plain) > 10 * _rel(quant, plain)  # the LoRA matters far beyond quantization
    assert _rel(quant_effect, effect) <= 0.1
    assert _rel(quant_lora, plain_lora) <= 3e-2
    steps_x_linears = 2 * LINEARS_PER_CALL[family]  # every block Linear call of both steps ran an INT8 GEMM
    if backend == "auto":  # the shapes were measured in the run before: no trial calls here
        assert gemm_calls["pack"] + gemm_calls["core"] == steps_x_linears
    else:
        assert gemm_calls == {"pack": steps_x_linears if backend == "pack" else 0,
                              "core": steps_x_linears if backend == "core" else 0}


def test_core_backend_needs_native_per_channel(comfy, tiny_models, captured):
    granularity = "per_channel" if not _native(comfy) else "block128"
    result = comfy.run(_prompt(tiny_models, "wan", {**ALL, "granularity": granularity, "backend": "core"}))
    assert not result.ok and "backend: 'core' runs ComfyUI's own INT8 GEMM" in result.describe()


def test_layer_choices_follow_the_family_roles(comfy, tiny_models):
    """LTX-2: 'attention' is the six attentions of a block (video/audio self, text cross, audio<->video),
    'feed_forward' is ff and audio_ff; together they are every Linear of the blocks."""
    module = _pack(comfy, "patches.int8.quantize")
    model = _load_float(tiny_models, "ltx2_dit")
    everything = module.select_linears(model, "all")
    attention, feed_forward = (module.select_linears(model, layers) for layers in ("attention", "feed_forward"))
    roles = {path.split(".")[3] for path in attention}
    assert roles == {"attn1", "audio_attn1", "attn2", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn"}
    assert {path.split(".")[3] for path in feed_forward} == {"ff", "audio_ff"}
    assert sorted(attention + feed_forward) == sorted(everything) and not set(attention) & set(feed_forward)
    assert len(everything) == 2 * (6 * 4 + 2 * 2)  # 2 blocks: 6 attentions x q, k, v, out; 2 FFNs x 2


def _load_float(tiny_models, name):
    import comfy.sd
    import folder_paths

    return comfy.sd.load_diffusion_model(folder_paths.get_full_path_or_raise("diffusion_models", tiny_models[name]))


def _wan_forward(patcher, seed=3):
    """One denoiser call of the Wan model, loaded the way ComfyUI loads it for sampling."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 2, 8, 8, generator=generator)
    context = torch.randn(1, 8, 4096, generator=generator)
    with torch.inference_mode():
        return patcher.model.apply_model(x, torch.tensor([0.6]), c_crossattn=context).float()


def _int8_layers(comfy, patcher):
    is_quantized = _pack(comfy, "patches.int8.quantize").is_quantized
    return [m for m in patcher.model.diffusion_model.modules() if is_quantized(m)]


def _lowvram_forward(host, patcher):
    """Forward with ModelPatcher's lowvram load: every layer casts its weights per call."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    patcher.patch_model(lowvram_model_memory=1)
    try:
        layers = _int8_layers(host, patcher)
        assert layers and all(layer.comfy_cast_weights for layer in layers)
        return _wan_forward(patcher), layers
    finally:
        patcher.unpatch_model()


@pytest.mark.parametrize("backend", ["auto", "pack"])
@pytest.mark.parametrize("granularity", ["per_channel", "block128"])
def test_lowvram_offload_with_lora(comfy, tiny_models, granularity, backend):
    quantize = _pack(comfy, "patches.int8.quantize")
    backend = _pack_backend(comfy) if backend == "pack" else backend  # "auto" may pick core's GEMM on tiny layers
    quantized = quantize.quantize_model(_load_float(tiny_models, "wan_dit"), "all", granularity, backend)
    full = _wan_forward_full(quantized)
    low, _ = _lowvram_forward(comfy, quantized)
    assert _rel(low, full) <= 3e-2  # float activations there: only the activation rounding differs

    lora = quantized.clone()
    key = "diffusion_model.blocks.0.ffn.0.weight"
    generator = torch.Generator().manual_seed(11)
    out_features, in_features = lora.model.state_dict()[key].shape
    delta = torch.randn(out_features, 4, generator=generator) @ torch.randn(4, in_features, generator=generator)
    lora.add_patches({key: ("diff", (delta * 0.3,))}, 1.0)
    full_lora = _wan_forward_full(lora)
    low_lora, layers = _lowvram_forward(comfy, lora)
    assert _rel(full_lora, full) > 0.1
    assert _rel(low_lora - low, full_lora - full) <= 0.1
    assert not any(layer.comfy_cast_weights or layer.weight_function for layer in layers)  # restored


def _wan_forward_full(patcher):
    import comfy.model_management

    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    return _wan_forward(patcher)


@pytest.mark.parametrize("granularity,scale_shape", [("per_channel", (64, 1)), ("block128", (1, 2))])
def test_save_then_load_round_trips(comfy, tiny_models, captured, clean_load, granularity, scale_shape):
    import folder_paths
    from safetensors import safe_open

    prompt = _prompt(tiny_models, "ltxv", {**ALL, "granularity": granularity})
    prompt["save"] = {"class_type": "TurboSaveQuantized",
                      "inputs": {"model": ["quant", 0], "filename_prefix": f"int8_roundtrip/ltxv_{granularity}"}}
    expected = _sample(comfy, captured, prompt)
    folder = pathlib.Path(folder_paths.get_output_directory()) / "int8_roundtrip"
    saved = sorted(folder.glob(f"ltxv_{granularity}_*.safetensors"))
    assert len(saved) >= 1 and not list(folder.glob("*.partial"))
    comfy.add_model_folder("diffusion_models", folder)
    loader = {"class_type": "TurboLoadQuantized", "inputs": {"unet_name": saved[-1].name}}
    loaded = _sample(comfy, captured, _prompt(tiny_models, "ltxv", loader=loader))
    assert _rel(loaded, expected) <= 1e-5
    fmt = _pack(comfy, "models.int8_format")
    with safe_open(str(saved[-1]), "pt") as file:
        assert file.metadata()["turbovideo_format"] == "int8_w8a8"
        assert file.metadata()["turbovideo_granularity"] == granularity
        assert file.get_tensor("transformer_blocks.0.ff.net.2.weight").dtype == torch.int8
        assert file.get_tensor("transformer_blocks.0.ff.net.2.weight_scale").shape == scale_shape
        tag = fmt.read_comfy_quant("ff", file.get_tensor("transformer_blocks.0.ff.net.2.comfy_quant"))
    assert tag == {"format": "int8_tensorwise" if granularity == "per_channel" else fmt.BLOCK128_FORMAT}


def _turbodiffusion_quant(state: dict) -> dict:
    """The tiny Wan DiT as TurboDiffusion's -quant file would hold it: block Linears as int8 + scale
    (amax / 128 per 128x128 block, saturating at 127) + bf16 bias; everything else as it was."""
    linears = {k[: -len(".weight")] for k, v in state.items()
               if k.startswith("blocks.") and k.endswith(".weight") and v.dim() == 2}
    out = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] not in linears}
    for prefix in linears:
        weight = state[prefix + ".weight"].double()
        rows, cols = weight.shape
        padded = torch.nn.functional.pad(weight.abs(), (0, -cols % 128, 0, -rows % 128))
        scale = padded.view(padded.shape[0] // 128, 128, -1, 128).amax(dim=(1, 3)) / 128
        full = scale.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
        out[prefix + ".int8_weight"] = torch.round(weight / full).clamp(-128, 127).to(torch.int8)
        out[prefix + ".scale"] = scale.float()
        out[prefix + ".bias"] = state[prefix + ".bias"].bfloat16()
    return out


def test_turbodiffusion_quant_layout_loads_into_int8_layers(comfy, tiny_models, clean_load):
    import folder_paths
    from safetensors.torch import load_file

    module, files = _pack(comfy, "patches.int8.layer"), _pack(comfy, "patches.int8.files")
    state = load_file(folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["wan_dit"]))
    quant = _turbodiffusion_quant(state)
    loaded = files.load_quantized(dict(quant), dtype=torch.float32)
    layers = dict((name, m) for name, m in loaded.model.diffusion_model.named_modules()
                  if isinstance(m, module.Int8Linear) and m.is_int8)
    assert sorted(layers) == sorted(k[: -len(".int8_weight")] for k in quant if k.endswith(".int8_weight"))
    for name, layer in layers.items():
        assert torch.equal(layer.weight, quant[name + ".int8_weight"])
        assert torch.equal(layer.weight_scale, quant[name + ".scale"])
        assert torch.equal(layer.bias.bfloat16(), quant[name + ".bias"])
    assert _rel(_wan_forward_full(loaded), _wan_forward_full(_load_float(tiny_models, "wan_dit"))) <= 3e-2


@pytest.mark.parametrize("backend", ["torch", "onednn"])
def test_set_weight_scale_follows_the_weight_through_restore(comfy, backend):
    if backend == "onednn" and not _pack(comfy, "kernels.int8").onednn_available():
        pytest.skip("no oneDNN INT8 ops in this torch")
    module = _pack(comfy, "patches.int8.layer")
    generator = torch.Generator().manual_seed(5)
    linear = torch.nn.Linear(200, 70)
    layer = module.Int8Linear.from_linear(linear, "per_channel", backend=backend)
    x = torch.randn(6, 200, generator=generator)
    before, original = layer(x), layer.weight
    float_weight = layer.convert_weight(layer.weight.float())
    assert _rel(float_weight, linear.weight.detach()) <= 1e-2
    layer.set_weight(float_weight * 3)  # as ModelPatcher does after adding a LoRA delta
    assert _rel(layer(x) - linear.bias, 3 * (before - linear.bias)) <= 1e-2
    layer.weight = torch.nn.Parameter(original, requires_grad=False)  # ModelPatcher's restore
    assert torch.equal(layer(x), before)
    layer.comfy_cast_weights = True  # lowvram: float path from the same int8 weight
    assert _rel(layer(x), before) <= (1.5e-2 if backend == "onednn" else 1e-2)  # oneDNN's AVX2 bound: docs/int8.md


def test_quantizing_twice_is_refused(comfy, tiny_models, captured):
    prompt = _prompt(tiny_models, "wan", ALL)
    prompt["again"] = {"class_type": "TurboQuantizeINT8", "inputs": {"model": ["quant", 0], **ALL}}
    prompt["sample"]["inputs"]["model"] = ["again", 0]
    result = comfy.run(prompt)
    assert not result.ok and "already INT8" in result.describe()


def test_auto_gemm_is_measured_once_on_a_slice_and_both_paths_agree(comfy, monkeypatch):
    native = _pack(comfy, "patches.int8.native")
    if not native.available():
        pytest.skip("no native INT8 in this ComfyUI: the pack's Int8Linear runs its own GEMM")
    monkeypatch.setattr(native, "FASTEST", native.Fastest())
    generator = torch.Generator().manual_seed(8)
    linear = torch.nn.Linear(200, 96)
    layer = native.native_linear(linear, torch.float32)
    x = torch.randn(3, 40, 200, generator=generator)
    seen = []
    pack_linear = native.PackGemm._pack_linear
    monkeypatch.setattr(native.PackGemm, "_pack_linear", lambda self, x, *a: seen.append(x.numel() // x.shape[-1]) or
                        pack_linear(self, x, *a))
    auto = native.view(layer)(x)
    (key, times), = native.FASTEST.timings.items()
    assert set(times) == {"pack", "core"} and all(t > 0 for t in times.values())
    assert min(seen) == native.TRIAL_ROWS["cpu"] < 120  # the measurement ran on a slice of the rows
    seen.clear()
    again = native.view(layer)(x)
    assert torch.equal(auto, again) and len(seen) == (native.FASTEST.chosen(key) == "pack")
    expected = linear(x).detach()
    core, pack = native.view(layer, "core")(x), native.view(layer, _pack_backend(comfy))(x)
    assert _rel(core, expected) <= 1.5e-2 and _rel(pack, expected) <= 1.5e-2 and _rel(auto, expected) <= 1.5e-2
