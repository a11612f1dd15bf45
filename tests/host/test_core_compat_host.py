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
