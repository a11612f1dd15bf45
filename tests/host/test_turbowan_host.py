"""TurboWanLoader on tiny checkpoints in TurboDiffusion's released layouts (plain and -quant, T2V and
I2V A14B high/low), driven by the rCM graphs of the example workflows."""
import pytest
import torch
from safetensors.torch import save_file
from tiny_models import turbowan as tiny

from host import graphs

pytestmark = pytest.mark.host

T2V_SIGMAS = {"class_type": "TurboRCMSigmas", "inputs": {"steps": 4, "sigma_max": 80.0, "mid_timesteps": "default"}}
I2V_SIGMAS = {"class_type": "TurboRCMSigmas", "inputs": {"steps": 4, "sigma_max": 200.0, "mid_timesteps": "default"}}
RCM = {"class_type": "TurboRCMSampler", "inputs": {"mode": "sde"}}


@pytest.fixture(scope="session")
def turbowan_files(comfy, tiny_models, tmp_path_factory):
    """The released variants as tiny .pth files, plus what core loads for the same weights."""
    folder = tmp_path_factory.mktemp("turbowan") / "diffusion_models"
    files, native_t2v = {}, None
    for variant, seeds in (("t2v", {"": 21}), ("i2v", {"high": 22, "low": 23})):
        for expert, seed in seeds.items():
            name = f"tiny-TurboWan-{variant}{'-' + expert if expert else ''}"
            native = tiny.native_state_dict(variant, seed=seed)
            if variant == "t2v":
                native_t2v = native
            turbo = tiny.to_turbowan(native, tiny.proj_l_state_dict(seed=seed + 100))
            quant = tiny.quantize_blocks(turbo)
            files[name] = tiny.write_pth(turbo, folder / f"{name}.pth")
            files[name + "-quant"] = tiny.write_pth(quant, folder / f"{name}-quant.pth")
            save_file(native, str(folder / f"{name}-native.safetensors"))
            files[name + "-native"] = f"{name}-native.safetensors"
            dequantized = tiny.dequantize_blocks(quant)
            dequantized["patch_embedding.weight"] = native["patch_embedding.weight"]
            dequantized = {k: v for k, v in dequantized.items() if ".attn_op." not in k}
            save_file(dequantized, str(folder / f"{name}-quant-native.safetensors"))
            files[name + "-quant-native"] = f"{name}-quant-native.safetensors"
    weights_only_proj_l = {k: v for k, v in tiny.proj_l_state_dict(seed=130).items() if k.endswith("weight")}
    files["no-bias"] = tiny.write_pth(tiny.to_turbowan(native_t2v, weights_only_proj_l), folder / "no-bias.pth")
    comfy.add_model_folder("diffusion_models", folder)
    return files


def loader(name, attention="sagesla", topk=0.1, int8=False):
    return {"class_type": "TurboWanLoader",
            "inputs": {"turbowan_name": name, "attention": attention, "topk": topk, "int8": int8}}


def t2v_graph(tiny_models, model_node, seed=5):
    prompt = graphs.wan_nodes("unused", tiny_models["wan_vae"], frames=9, size=32)
    prompt["unet"] = model_node
    prompt["sampler"], prompt["sigmas"] = RCM, T2V_SIGMAS
    prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0], seed))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def i2v_graph(tiny_models, high_node, low_node, seed=5):
    """The I2V A14B workflow's graph: WanImageToVideo conditioning, high expert while sigma >= 0.9."""
    prompt = graphs.wan_nodes("unused", tiny_models["wan_vae"], frames=9, size=32)
    del prompt["unet"], prompt["latent"]
    prompt.update({
        "high": high_node, "low": low_node, "sampler": RCM, "sigmas": I2V_SIGMAS,
        "image": {"class_type": "EmptyImage",
                  "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x3366AA}},
        "i2v": {"class_type": "WanImageToVideo", "inputs": {
            "positive": ["pos", 0], "negative": ["neg", 0], "vae": ["vae", 0], "width": 32, "height": 32,
            "length": 9, "batch_size": 1, "start_image": ["image", 0]}},
        "split": {"class_type": "TurboSplitSigmasAtBoundary", "inputs": {"sigmas": ["sigmas", 0], "boundary": 0.9}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "no_noise": {"class_type": "DisableNoise", "inputs": {}},
        "guide_high": {"class_type": "BasicGuider", "inputs": {"model": ["high", 0], "conditioning": ["i2v", 0]}},
        "guide_low": {"class_type": "BasicGuider", "inputs": {"model": ["low", 0], "conditioning": ["i2v", 0]}},
        "sample_high": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guide_high", 0], "sampler": ["sampler", 0],
            "sigmas": ["split", 0], "latent_image": ["i2v", 2]}},
        "sample_low": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["no_noise", 0], "guider": ["guide_low", 0], "sampler": ["sampler", 0],
            "sigmas": ["split", 1], "latent_image": ["sample_high", 0]}},
    })
    prompt.update(graphs.capture(["sample_low", 0], "latent"))
    prompt.update(graphs.capture(["split", 0], "high_sigmas"))
    return prompt


def run_latent(comfy, captured, prompt):
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return captured["latent"]["samples"].clone()


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("quant", ["", "-quant"])
@pytest.mark.parametrize("attention", ["sagesla", "sdpa"])
def test_t2v_loads_and_samples_4_rcm_steps(comfy, tiny_models, turbowan_files, captured, clean_load, quant,
                                           attention):
    model = loader(turbowan_files["tiny-TurboWan-t2v" + quant], attention)
    latent = run_latent(comfy, captured, t2v_graph(tiny_models, model))
    assert latent.shape == (1, 16, 3, 4, 4)
    assert torch.isfinite(latent).all() and latent.std() > 0.1


@pytest.mark.parametrize("quant", ["", "-quant"])
def test_i2v_a14b_high_then_low_expert(comfy, tiny_models, turbowan_files, captured, clean_load, quant):
    high = loader(turbowan_files["tiny-TurboWan-i2v-high" + quant])
    low = loader(turbowan_files["tiny-TurboWan-i2v-low" + quant])
    latent = run_latent(comfy, captured, i2v_graph(tiny_models, high, low))
    assert captured["high_sigmas"].numel() == 3  # two of the four steps start at sigma >= 0.9
    assert latent.shape == (1, 16, 3, 4, 4) and torch.isfinite(latent).all() and latent.std() > 0.1
    swapped = run_latent(comfy, captured, i2v_graph(tiny_models, low, high))
    assert relative(swapped, latent) > 1e-2  # each expert really runs its own half


def test_turbowan_equals_the_same_weights_loaded_natively_by_core(comfy, tiny_models, turbowan_files, captured):
    turbo = run_latent(comfy, captured, t2v_graph(tiny_models, loader(turbowan_files["tiny-TurboWan-t2v"], "sdpa")))
    native = {"class_type": "UNETLoader",
              "inputs": {"unet_name": turbowan_files["tiny-TurboWan-t2v-native"], "weight_dtype": "default"}}
    core = run_latent(comfy, captured, t2v_graph(tiny_models, native))
    torch.testing.assert_close(turbo, core, rtol=0, atol=1e-6)


def test_quant_file_is_within_quantization_error_of_the_plain_file(comfy, tiny_models, turbowan_files, captured):
    plain = run_latent(comfy, captured, t2v_graph(tiny_models, loader(turbowan_files["tiny-TurboWan-t2v"], "sdpa")))
    quant = run_latent(comfy, captured,
                       t2v_graph(tiny_models, loader(turbowan_files["tiny-TurboWan-t2v-quant"], "sdpa")))
    plain_int8 = run_latent(comfy, captured, t2v_graph(
        tiny_models, loader(turbowan_files["tiny-TurboWan-t2v"], "sdpa", int8=True)))
    error = relative(quant, plain)
    assert 0 < error <= 3e-2, error
    assert relative(plain_int8, plain) <= 3e-2
    # the -quant file's int8 weights are what it stands for: core on the dequantized weights agrees
    native = {"class_type": "UNETLoader",
              "inputs": {"unet_name": turbowan_files["tiny-TurboWan-t2v-quant-native"], "weight_dtype": "default"}}
    dequantized = run_latent(comfy, captured, t2v_graph(tiny_models, native))
    assert relative(quant, dequantized) < error


def test_sla_uses_the_files_proj_l_over_all_keys(comfy, tiny_models, turbowan_files, captured):
    """topk 1.0 makes the sparse branch exact and leaves no unselected key block, so only a linear
    branch over ALL keys (TurboDiffusion's convention) can make a bias-free proj_l change the output."""
    name = turbowan_files["no-bias"]
    sla = run_latent(comfy, captured, t2v_graph(tiny_models, loader(name, "sla", topk=1.0)))
    exact = run_latent(comfy, captured, t2v_graph(tiny_models, loader(name, "sdpa")))
    assert relative(sla, exact) > 1e-3


@pytest.mark.parametrize("kind, message", [
    ("native", "native Wan checkpoint.*UNETLoader"),
    ("objects", "needs Python code to load, so it was refused and nothing in it ran"),
    ("not_wan", "not a Wan/TurboWan diffusion model"),
    ("incomplete", "is incomplete: missing blocks.1.ffn.0.weight"),
])
def test_bad_files_give_errors_that_say_what_to_do(comfy, tiny_models, turbowan_files, tmp_path_factory, kind, message):
    import re

    folder = tmp_path_factory.mktemp(f"bad_{kind}") / "diffusion_models"
    native = tiny.native_state_dict()
    contents = {
        "native": native,
        "objects": {"weights": native["head.head.weight"], "optimizer": torch.optim.SGD},
        "not_wan": {"transformer_blocks.0.attn1.to_q.weight": torch.randn(4, 4)},
        "incomplete": {k: v for k, v in tiny.to_turbowan(native).items() if k != "blocks.1.ffn.0.weight"},
    }[kind]
    folder.mkdir(parents=True)
    torch.save(contents, str(folder / f"bad-{kind}.pth"))
    comfy.add_model_folder("diffusion_models", folder)
    result = comfy.run(t2v_graph(tiny_models, loader(f"bad-{kind}.pth")))
    assert not result.ok
    assert re.search(message, result.describe()), result.describe()


def test_missing_file_is_a_validation_error(comfy, tiny_models, turbowan_files):
    result = comfy.run(t2v_graph(tiny_models, loader("nope.pth")))
    assert not result.ok and "turbowan_name" in result.describe()
