"""TurboShortcutModel in the real ComfyUI: the step size reaches the time embedding, the adapter changes
the output only when trained, and the shared model is left as it was.

Graph: UNETLoader -> TurboShortcutModel -> BasicGuider -> SamplerCustomAdvanced with
TurboShortcutSampler + TurboShortcutSigmas, on the tiny LTX-Video (width 64) and Wan (width 128) DiTs.
"""
import sys

import pytest
import torch
from tiny_models.random_weights import randomised
from turbovideo.models.step_embedder import StepSizeEmbedder, save_step_embedder
from turbovideo.samplers import shortcut

from host import graphs

pytestmark = pytest.mark.host

# Deliberately not the default powers of two, so the test also sees that the adapter's list is used.
TRAINED = [1.0, 0.6, 0.3, 0.15, 0.075]
STEPS, SHIFT = 3, 3.0
FAMILIES = {
    "ltxv": {"dit": "ltxv_dit", "width": 64, "mask": True, "time_embedding": "diffusion_model.adaln_single.emb",
             "latent": {"class_type": "EmptyLTXVLatentVideo",
                        "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}}},
    "wan": {"dit": "wan_dit", "width": 128, "mask": False, "time_embedding": "diffusion_model.time_embedding",
            "latent": {"class_type": "EmptyHunyuanLatentVideo",
                       "inputs": {"width": 32, "height": 32, "length": 5, "batch_size": 1}}},
    # LTX-2 (video width 16): the step size goes into the video stream's time embedding; video-only and with
    # an audio latent (LTXVConcatAVLatent)
    "ltx2": {"dit": "ltx2_dit", "width": 16, "audio": False, "time_embedding": "diffusion_model.adaln_single.emb"},
    "ltx2_av": {"dit": "ltx2_dit", "width": 16, "audio": True, "time_embedding": "diffusion_model.adaln_single.emb"},
}


def _random_embedder(width, seed):
    return randomised(StepSizeEmbedder(width), seed)


@pytest.fixture(scope="module")
def adapters(comfy, tmp_path_factory):
    """Step-size adapters for both families in a folder registered as models/turbovideo."""
    folder = tmp_path_factory.mktemp("turbovideo_adapters")
    names = {}
    for family, spec in FAMILIES.items():
        for kind, embedder in (("zero", StepSizeEmbedder(spec["width"])),
                               ("random", _random_embedder(spec["width"], seed=len(family)))):
            names[family, kind] = f"shortcut_{family}_{kind}.safetensors"
            save_step_embedder(folder / names[family, kind], embedder, TRAINED)
    from safetensors.torch import save_file

    save_file({"lora.weight": torch.randn(4, 4)}, str(folder / "shortcut_not_an_adapter.safetensors"))
    names["not_an_adapter"] = "shortcut_not_an_adapter.safetensors"
    comfy.add_model_folder("turbovideo", folder)
    return names


@pytest.fixture
def step_sizes_seen(comfy, monkeypatch):
    """Records, inside the patch, the step size the time-embedding wrapper holds at every call."""
    module = sys.modules[comfy.pack_module.__name__ + ".patches.step_size"]
    seen = []
    forward = module.StepSizeTimeEmbedding.forward

    def recording_forward(self, *args, **kwargs):
        seen.append(self.step_size)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(module.StepSizeTimeEmbedding, "forward", recording_forward)
    return seen


def shortcut_prompt(tiny_models, family, adapter=None, sampler="shortcut", seed=7, capture_model=False):
    spec = FAMILIES[family]
    if family.startswith("ltx2"):
        prompt = graphs.ltx2_nodes(tiny_models[spec["dit"]], audio=spec["audio"])
    else:
        prompt = {"unet": {"class_type": "UNETLoader",
                           "inputs": {"unet_name": tiny_models[spec["dit"]], "weight_dtype": "default"}},
                  "pos": graphs.conditioning_node(0, spec["mask"]), "latent": spec["latent"]}
    prompt.update({
        "sigmas": {"class_type": "TurboShortcutSigmas",
                   "inputs": {"steps": STEPS, "shift_mode": "manual", "shift": SHIFT}},
        "sampler": ({"class_type": "TurboShortcutSampler", "inputs": {}} if sampler == "shortcut" else
                    {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}),
    })
    model = ["unet", 0]
    if adapter is not None:
        prompt["shortcut"] = {"class_type": "TurboShortcutModel", "inputs": {"model": model, "adapter": adapter}}
        model = ["shortcut", 0]
    prompt.update(graphs.custom_sampler_nodes(model, ["latent", 0], ["sampler", 0], ["sigmas", 0], seed=seed))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    if capture_model:
        prompt.update(graphs.capture(["unet", 0], "model"))
    return prompt


def run_latent(comfy, captured, prompt, fresh=True):
    """Runs the prompt (by default with an empty node cache, so every node executes) -> latent."""
    captured.pop("latent", None)
    result = comfy.run(prompt, keep_cache=not fresh)
    assert result.ok, result.describe()
    latent = captured["latent"]["samples"]
    if getattr(latent, "is_nested", False):  # LTX-2 audio-video: video and audio in one vector
        latent = torch.cat([part.flatten() for part in latent.unbind()])
    assert torch.isfinite(latent).all() and latent.std() > 0
    return latent


def expected_step_sizes():
    levels = shortcut.shortcut_sigmas(STEPS, shift=SHIFT).tolist()
    return [shortcut.nearest_step_size(a - b, TRAINED) for a, b in zip(levels[:-1], levels[1:])]


@pytest.mark.parametrize("family", FAMILIES)
def test_shortcut_step_size_reaches_the_time_embedding(comfy, tiny_models, captured, adapters,
                                                       step_sizes_seen, family):
    run_latent(comfy, captured, shortcut_prompt(tiny_models, family, adapters[family, "random"]))
    expected = expected_step_sizes()
    default = [shortcut.nearest_step_size(d, shortcut.DEFAULT_TRAINED_STEP_SIZES)
               for d in (-torch.diff(shortcut.shortcut_sigmas(STEPS, shift=SHIFT))).tolist()]
    assert expected != default, "the schedule must tell the adapter's list from the default one"
    assert step_sizes_seen == pytest.approx(expected), "one call per step with the nearest trained size"


@pytest.mark.parametrize("family", FAMILIES)
def test_shortcut_zero_adapter_is_the_identity(comfy, tiny_models, captured, adapters, step_sizes_seen, family):
    plain = run_latent(comfy, captured, shortcut_prompt(tiny_models, family))
    assert step_sizes_seen == []
    zero = run_latent(comfy, captured, shortcut_prompt(tiny_models, family, adapters[family, "zero"]))
    assert len(step_sizes_seen) == STEPS, "the adapter was not in the model"
    assert torch.equal(zero, plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_shortcut_random_adapter_changes_the_output_deterministically(comfy, tiny_models, captured, adapters,
                                                                      family):
    plain = run_latent(comfy, captured, shortcut_prompt(tiny_models, family))
    prompt = shortcut_prompt(tiny_models, family, adapters[family, "random"])
    first = run_latent(comfy, captured, prompt)
    second = run_latent(comfy, captured, prompt)
    assert second is not first, "the second run came from the node cache"
    assert torch.equal(first, second), "same seed, same adapter: the output must repeat exactly"
    change = (first - plain).abs().max() / plain.abs().max()
    assert change > 1e-3, f"a non-zero adapter left the output unchanged (relative change {change:.2e})"


def test_shortcut_adapter_adds_nothing_with_another_sampler(comfy, tiny_models, captured, adapters,
                                                            step_sizes_seen):
    plain = run_latent(comfy, captured, shortcut_prompt(tiny_models, "wan", sampler="euler"))
    patched = run_latent(comfy, captured, shortcut_prompt(tiny_models, "wan", adapters["wan", "random"],
                                                          sampler="euler"))
    assert step_sizes_seen == [None] * STEPS, "euler passes no step size"
    assert torch.equal(patched, plain)


def test_shortcut_width_mismatch_is_a_node_error(comfy, tiny_models, captured, adapters):
    result = comfy.run(shortcut_prompt(tiny_models, "ltxv", adapters["wan", "random"]))
    assert not result.ok
    message = result.execution_error["exception_message"]
    assert result.execution_error["node_type"] == "TurboShortcutModel"
    for words in (adapters["wan", "random"], "width 128", "width 64", "pick an adapter trained for this model"):
        assert words in message, message


def test_shortcut_rejects_a_file_that_is_no_step_size_adapter(comfy, tiny_models, adapters):
    result = comfy.run(shortcut_prompt(tiny_models, "wan", adapters["not_an_adapter"]))
    assert not result.ok
    details = str(result.node_errors["shortcut"]["errors"])
    assert "is not a step-size adapter" in details and "no turbovideo_adapter metadata" in details, details


def test_shortcut_empty_adapter_folder_says_where_to_put_one(comfy, tiny_models, adapters, tmp_path,
                                                             monkeypatch):
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "turbovideo", ([str(tmp_path)], {".safetensors"}))
    result = comfy.run(shortcut_prompt(tiny_models, "wan", adapters["wan", "zero"]))
    assert not result.ok
    details = str(result.node_errors["shortcut"]["errors"])
    assert "models/turbovideo holds no adapter files" in details, details


@pytest.mark.parametrize("family", FAMILIES)
def test_shortcut_leaves_the_shared_model_unchanged(comfy, tiny_models, captured, adapters, family):
    import comfy.model_management as mm

    path = FAMILIES[family]["time_embedding"]
    plain_prompt = shortcut_prompt(tiny_models, family, capture_model=True)
    before = run_latent(comfy, captured, plain_prompt)
    unet = captured.pop("model")
    module = unet.get_model_object(path)
    weights = {k: v.clone() for k, v in unet.model.state_dict().items()}
    # the node cache keeps the loader's MODEL across these runs, so the adapter clone shares it
    patched_prompt = shortcut_prompt(tiny_models, family, adapters[family, "random"])
    patched_prompt.update(graphs.capture(["shortcut", 0], "patched_model"))
    run_latent(comfy, captured, patched_prompt, fresh=False)  # keeps the loader's cached MODEL
    assert captured["patched_model"].model is unet.model, "the adapter did not run on the shared model"
    after = run_latent(comfy, captured, plain_prompt, fresh=False)
    assert captured["model"] is unet and after is not before
    assert torch.equal(after, before), "the plain MODEL samples differently after the adapter ran"
    assert unet.get_model_object(path) is module
    mm.unload_all_models()
    assert unet.model.get_submodule(path) is module, "the time embedding was not restored"
    state = unet.model.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], v) for k, v in weights.items())


def test_shortcut_keeps_time_embedding_weight_keys_for_lora(comfy, tiny_models, captured, adapters):
    """A weight patch (what a LoRA adds) on the wrapped time embedding still finds its weight."""
    import comfy.model_management as mm  # binds mm only: `comfy` stays the host fixture
    import folder_paths
    from comfy.utils import get_attr

    pack = comfy.pack_module.__name__
    step_size = sys.modules[pack + ".patches.step_size"]
    load = sys.modules[pack + ".models.step_embedder"].load_step_embedder
    run_latent(comfy, captured, shortcut_prompt(tiny_models, "wan", capture_model=True))
    unet = captured["model"]
    embedder, sizes = load(folder_paths.get_full_path_or_raise("turbovideo", adapters["wan", "random"]))
    patched = step_size.apply_step_embedder(unet, embedder, sizes, adapters["wan", "random"])
    key = "diffusion_model.time_embedding.0.weight"
    original = get_attr(unet.model, key).detach().clone()
    delta = torch.randn(original.shape, generator=torch.Generator().manual_seed(4))
    patched.add_patches({key: (delta,)}, 1.0)
    mm.load_models_gpu([patched])
    try:
        assert isinstance(patched.model.diffusion_model.time_embedding, step_size.StepSizeTimeEmbedding)
        torch.testing.assert_close(get_attr(patched.model, key), original + delta)
    finally:
        mm.unload_all_models()
    assert torch.equal(get_attr(unet.model, key), original)
