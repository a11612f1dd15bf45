"""Each named reach into core (patches/core_compat.py) and the family map (patches/families) against the
real host: when core moves one of these, the failure names what moved."""
import pytest
import torch

from host import graphs

pytestmark = pytest.mark.host


def _pack(host, name):
    import importlib

    return importlib.import_module(f"{host.pack_module.__name__}.patches.{name}")


def test_apply_model_passes_transformer_options_at_the_named_index(comfy):
    host = comfy
    import comfy.model_base

    core_compat = _pack(host, "core_compat")
    core_compat.check_parameter(comfy.model_base.BaseModel.apply_model, core_compat.APPLY_MODEL_OPTIONS_INDEX,
                                "transformer_options", "BaseModel.apply_model")


def test_ltx_forward_passes_transformer_options_at_the_named_index(comfy):
    import comfy.ldm.lightricks.model as ltx

    core_compat = _pack(comfy, "core_compat")
    forward = ltx.LTXBaseModel.forward if hasattr(ltx, "LTXBaseModel") else ltx.LTXVModel.forward
    core_compat.check_parameter(forward, core_compat.LTX_FORWARD_OPTIONS_INDEX, "transformer_options",
                                "LTX forward")


def test_a_moved_parameter_is_reported_by_name(comfy):
    core_compat = _pack(comfy, "core_compat")

    class Moved:
        def apply_model(self, x, t, c_concat=None, c_crossattn=None, transformer_options=None, control=None):
            pass

    with pytest.raises(core_compat.CoreChanged, match="positional parameter 5 to be 'transformer_options'"):
        core_compat.check_parameter(Moved.apply_model, core_compat.APPLY_MODEL_OPTIONS_INDEX, "transformer_options",
                                    "BaseModel.apply_model")


def test_positional_options_round_trip(comfy):
    core_compat = _pack(comfy, "core_compat")
    args, kwargs = ("x", "t", None, None, None, {"a": 1}, "extra"), {}
    assert core_compat.positional_options(args, kwargs, 5) == {"a": 1}
    new_args, new_kwargs = core_compat.with_positional_options(args, kwargs, 5, {"b": 2})
    assert new_args == ("x", "t", None, None, None, {"b": 2}, "extra") and new_kwargs == {}
    new_args, new_kwargs = core_compat.with_positional_options(("x",), {"transformer_options": {}}, 5, {"c": 3})
    assert new_args == ("x",) and new_kwargs == {"transformer_options": {"c": 3}}


def _load_dit(name):
    import comfy.sd
    import folder_paths

    return comfy.sd.load_diffusion_model(folder_paths.get_full_path_or_raise("diffusion_models", name))


@pytest.mark.parametrize("model_key, family_name", [("ltxv_dit", "LTX-Video"), ("ltx2_dit", "LTX-2"),
                                                    ("wan_dit", "Wan")])
def test_family_of_each_tiny_model(comfy, tiny_models, model_key, family_name):
    families = _pack(comfy, "families")
    model = _load_dit(tiny_models[model_key])
    family = families.family_of(model)
    assert family is not None and family.name == family_name
    diffusion_model = model.get_model_object("diffusion_model")
    blocks = family.blocks_of(diffusion_model)
    assert len(blocks) >= 1
    for name in family.self_attention:
        assert isinstance(getattr(blocks[0], name), torch.nn.Module), f"{family.name}: no {name} in block 0"
        assert int(getattr(getattr(blocks[0], name), family.head_dim)) > 0
    assert family.width_of(diffusion_model) > 0
    assert isinstance(model.get_model_object(family.time_embedding), torch.nn.Module)


@pytest.mark.parametrize("model_key, family_name", [("ltxv_dit", "LTX-Video"), ("ltx2_dit", "LTX-2"),
                                                    ("wan_dit", "Wan")])
def test_checkpoint_detection_names_the_family(comfy, tiny_models, model_key, family_name):
    host = comfy
    import comfy.utils
    import folder_paths

    core_compat, families = _pack(host, "core_compat"), _pack(host, "families")
    path = folder_paths.get_full_path_or_raise("diffusion_models", tiny_models[model_key])
    state_dict, metadata = comfy.utils.load_torch_file(path, safe_load=True, return_metadata=True)
    config = core_compat.detect_diffusion_config(state_dict, metadata)
    assert families.family_of_config(config).name == family_name


def test_require_names_the_capability_and_the_families_that_have_it(comfy, tiny_models):
    families = _pack(comfy, "families")
    model = _load_dit(tiny_models["wan_dit"])
    assert families.require(model, families.ATTENTION).name == "Wan"
    with pytest.raises(ValueError, match=r"guider: LR -> HR .* does not support Wan; connect one of: LTX-Video"):
        families.require(model, families.LR_FEATURES, "guider")


def test_vae_families_come_from_cores_packages(comfy, tiny_models):
    host = comfy
    import comfy.sd
    import comfy.utils
    import folder_paths

    families = _pack(host, "families")
    wan_vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(
        folder_paths.get_full_path_or_raise("vae", tiny_models["wan_vae"])))
    assert families.vae_family(wan_vae).name == "Wan"
    _, _, ltx_vae = comfy.sd.load_checkpoint_guess_config(
        folder_paths.get_full_path_or_raise("checkpoints", tiny_models["ltxv_checkpoint"]), output_clip=False)[:3]
    assert families.vae_family(ltx_vae).name == "LTX"


def test_block_replace_patches_get_cores_original_block(comfy, tiny_models, captured):
    """core_compat.run_original_block relies on extra['original_block']; a tiny sampling run shows core passes it."""
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=64)
    prompt["probe"] = {"class_type": "TurboTestBlockProbe", "inputs": {"model": ["ckpt", 0]}}
    prompt["sample"] = graphs.ksampler(["probe", 0], ["latent", 0], steps=1)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    assert captured.get("block_probe_extra_keys") and "original_block" in captured["block_probe_extra_keys"]
    core_compat = _pack(comfy, "core_compat")
    passed = set(captured["block_probe_args_keys"]) - {"img"}
    unmapped = sorted(passed - set(core_compat.LTX_BLOCK_KEYWORDS))
    assert not unmapped, (f"core's LTX block-replace args gained {unmapped}: map them to the block's keywords in "
                          "core_compat.LTX_BLOCK_KEYWORDS (core_compat.run_ltx_block would drop them)")
    read = {core_compat.SIGMAS, core_compat.SAMPLE_SIGMAS, core_compat.COND_OR_UNCOND}
    gone = sorted(read - set(captured["block_probe_options_keys"]))
    assert not gone, f"core's samplers no longer put {gone} in transformer_options; update patches/core_compat.py"


def test_block_patch_finds_the_patch_set_through_cores_public_call(comfy, tiny_models):
    core_compat = _pack(comfy, "core_compat")
    model = _load_dit(tiny_models["ltxv_dit"]).clone()

    def patch(args, extra):
        return core_compat.run_original_block(args, extra)

    model.set_model_patch_replace(patch, *core_compat.BLOCK_PATCH, 1)
    assert core_compat.block_patch(model.model_options, 0) is None
    assert core_compat.block_patch(model.model_options, 1) is patch, (
        "core keeps block-replace patches somewhere else now (set_model_patch_replace); update core_compat.block_patch")


def test_run_ltx_block_is_cores_own_block_call(comfy, tiny_models):
    """A block-replace patch that runs its block through run_ltx_block gives core's output exactly, and every
    keyword it passes is one the block takes."""
    import inspect

    core_compat = _pack(comfy, "core_compat")
    model = _load_dit(tiny_models["ltxv_dit"])
    diffusion_model = model.model.diffusion_model
    taken = set(inspect.signature(type(diffusion_model.transformer_blocks[0]).forward).parameters)
    x, timestep, context, _ = _ltx_block_inputs(diffusion_model, seed=int(torch.randint(0, 2**20, ())))
    calls = []

    def direct(index):
        def patch(args, extra):
            passed = {k: core_compat.LTX_BLOCK_KEYWORDS[k] for k in args if k in core_compat.LTX_BLOCK_KEYWORDS}
            assert set(passed.values()) <= taken, f"the LTX block takes no {sorted(set(passed.values()) - taken)}"
            calls.append(index)
            return {"img": core_compat.run_ltx_block(diffusion_model.transformer_blocks[index], args["img"], args)}
        return patch

    blocks = range(len(diffusion_model.transformer_blocks))
    options = {"patches_replace": {"dit": {("double_block", i): direct(i) for i in blocks}}}
    with torch.no_grad():
        expected = diffusion_model(x, timestep, context, None)
        got = diffusion_model(x, timestep, context, None, transformer_options=options)
    assert calls == list(blocks)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_ltx_vae_scale_factors_are_pixels_per_latent_cell(comfy, tiny_models):
    core_compat = _pack(comfy, "core_compat")
    assert core_compat.ltx_vae_scale_factors(_load_dit(tiny_models["ltxv_dit"]).model) == (8, 32, 32)


def _ltx_block_inputs(diffusion_model, seed):
    """(x, timestep, context, pe of block 0): a random LTX input and the RoPE tables core builds for it,
    taken through core's block-replace hook."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 128, 2, 3, 4, generator=generator)
    timestep, context = torch.rand(1, generator=generator), torch.randn(1, 5, 4096, generator=generator)
    seen = {}

    def capture(args, extra):
        seen["pe"] = args["pe"]
        return extra["original_block"](args)

    options = {"patches_replace": {"dit": {("double_block", 0): capture}}}
    with torch.no_grad():
        diffusion_model(x, timestep, context, None, transformer_options=options)
    return x, timestep, context, seen["pe"]


def _not_differentiable(core_compat, what: str, error) -> str:
    return (f"{what} inside core_compat.differentiable_core() (comfy.model_management.{core_compat.TRAINING_SWITCH}): "
            f"{str(error).rstrip('.')}. Core changed how its models pick differentiable ops for training; update "
            "patches/core_compat.differentiable_core")


def test_training_switch_makes_cores_ltx_forward_differentiable_with_the_same_output(comfy, tiny_models):
    host = comfy
    import comfy.model_management

    core_compat = _pack(host, "core_compat")
    diffusion_model = _load_dit(tiny_models["ltxv_dit"]).model.diffusion_model
    x, timestep, context, _ = _ltx_block_inputs(diffusion_model, seed=int(torch.randint(0, 2**20, ())))
    with torch.no_grad():
        inference = diffusion_model(x, timestep, context, None)  # core's own ops (comfy-kitchen on 0.29)
    x = x.clone().requires_grad_(True)
    with core_compat.differentiable_core():
        if hasattr(comfy.model_management, core_compat.TRAINING_SWITCH):
            assert getattr(comfy.model_management, core_compat.TRAINING_SWITCH) is True
        training = diffusion_model(x, timestep, context, None)
        try:
            training.square().mean().backward()
        except RuntimeError as error:
            pytest.fail(_not_differentiable(core_compat, "core's LTX forward has no backward pass", error))
    assert not getattr(comfy.model_management, core_compat.TRAINING_SWITCH, False), "the switch stayed on"
    torch.testing.assert_close(training.detach(), inference, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().max()) > 0


def test_training_rope_equals_cores_inference_rope_against_float64(comfy, tiny_models):
    """Core's LTX RoPE inside the switch (torch) and outside it (comfy-kitchen's op on 0.29) both match the
    switch's path run in float64 on the same tables."""
    import comfy.ldm.lightricks.model as ltx

    core_compat = _pack(comfy, "core_compat")
    diffusion_model = _load_dit(tiny_models["ltxv_dit"]).model.diffusion_model
    seed = int(torch.randint(0, 2**20, ()))
    _, _, _, pe = _ltx_block_inputs(diffusion_model, seed)
    tokens, width = 2 * 3 * 4, diffusion_model.transformer_blocks[0].attn1.to_q.weight.shape[0]
    q = torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed + 1))
    as64 = tuple(part.double() if torch.is_tensor(part) else part for part in pe)
    inference = ltx.apply_rotary_emb(q, pe)
    with core_compat.differentiable_core():
        training = ltx.apply_rotary_emb(q, pe)
        try:  # comfy-kitchen's op takes no float64: only core's torch path runs here
            reference = ltx.apply_rotary_emb(q.double(), as64)
        except Exception as error:  # noqa: BLE001  (comfy-kitchen raises its own error types)
            pytest.fail(_not_differentiable(core_compat, "core's LTX RoPE is not its torch path", error))
    assert not torch.equal(reference.float(), q), "RoPE did nothing: the check cannot fail"
    for name, value in (("inference (core's op)", inference), ("training (torch)", training)):
        error = float((value.double() - reference).abs().max())
        assert error <= 1e-5 * float(reference.abs().max()), f"{name} RoPE is {error:.2e} from float64"


def _native_layer(core_compat, generator):
    import json

    weight = torch.randn(48, 40, generator=generator)
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    state = {"weight": torch.round(weight / scale).to(torch.int8), "weight_scale": scale,
             "comfy_quant": torch.tensor(list(json.dumps({"format": "int8_tensorwise"}).encode()), dtype=torch.uint8),
             "bias": torch.randn(48, generator=generator)}
    return core_compat.native_int8_linear(state, 40, 48, None, torch.float32), state


def test_native_int8_is_detected_by_what_core_offers(comfy):
    core_compat = _pack(comfy, "core_compat")
    import comfy.ops
    import comfy.quant_ops

    offered = "int8_tensorwise" in getattr(comfy.quant_ops, "QUANT_ALGOS", {}) and hasattr(comfy.ops,
                                                                                          "mixed_precision_ops")
    assert (core_compat.native_int8_layout() is not None) == offered
    if not offered:
        assert not core_compat.is_native_int8(torch.nn.Linear(4, 4))
        return
    layer, state = _native_layer(core_compat, torch.Generator().manual_seed(3))
    assert core_compat.is_native_int8(layer) and isinstance(layer.weight, comfy.quant_ops.QuantizedTensor)
    x = torch.randn(5, 40)
    q, scale = core_compat.native_int8_operands(layer, x)
    assert torch.equal(q, state["weight"]) and torch.equal(scale, state["weight_scale"])
    expected = torch.nn.functional.linear(x, state["weight"].float() * state["weight_scale"], state["bias"])
    assert ((layer(x) - expected).norm() / expected.norm()).item() <= 1e-2  # core's own INT8 GEMM


@pytest.mark.parametrize("change", ["weight_function", "comfy_cast_weights", "force_cast", "requires_grad"])
def test_native_int8_operands_leave_core_its_own_cases(comfy, change):
    core_compat = _pack(comfy, "core_compat")
    if core_compat.native_int8_layout() is None:
        pytest.skip("no native INT8 in this ComfyUI")
    layer, _ = _native_layer(core_compat, torch.Generator().manual_seed(4))
    x = torch.randn(5, 40)
    assert core_compat.native_int8_operands(layer, x) is not None
    if change == "weight_function":
        layer.weight_function = [lambda w: w]
    elif change == "comfy_cast_weights":
        layer.comfy_cast_weights = True
    elif change == "force_cast":
        layer.comfy_force_cast_weights = True
    else:
        x.requires_grad_(True)
    assert core_compat.native_int8_operands(layer, x) is None
