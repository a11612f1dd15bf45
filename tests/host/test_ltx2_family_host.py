"""LTX-2's conditioning on both hosts: the test conditioning node gives each host's text-encoder form, and the
family's "no prompt" conditioning (what TurboVSRUpscale uses without a prompt) reaches the DiT's blocks as one
zero token of the processed [video | audio] width on core 0.29 (its connectors skipped) and on 0.8.0.
"""
import importlib

import pytest
from tiny_models import ltx2

from host import graphs
from host.test_only_nodes import core_runs_ltx2_connectors

pytestmark = pytest.mark.host


@pytest.fixture
def contexts(comfy, monkeypatch):
    """The context tensor of every LTXAVModel forward (what reaches _prepare_context), in call order."""
    model_class = importlib.import_module("comfy.ldm.lightricks.av_model").LTXAVModel
    original, seen = model_class.forward, []

    def spy(self, x, timestep, context, *args, **kwargs):
        seen.append(context.detach().clone())
        return original(self, x, timestep, context, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", spy)
    return seen


def sample(comfy, captured, prompt):
    prompt["sample"] = graphs.ksampler(["unet", 0], ["latent", 0], steps=1)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return captured.pop("latent")["samples"]


DITS = {"ltx2": "ltx2_dit", "ltx23": "ltx23_dit"}  # 19B layout; LTX-2.3 (skipped on core 0.8.0)


@pytest.mark.parametrize("family", DITS)
def test_test_conditioning_is_the_hosts_text_encoder_form(comfy, tiny_models, captured, contexts, clean_load, family):
    """0.29: projected Gemma states marked unprocessed, run through the DiT's connectors (7 tokens padded with
    learnable registers to 1024); 0.8.0: the connector output itself. Either way the blocks get width 24."""
    config = graphs.ltx2_config(family)
    sample(comfy, captured, graphs.ltx2_nodes(tiny_models[DITS[family]], config=config))
    processed = ltx2.processed_context_width(config)
    tokens = 1024 if core_runs_ltx2_connectors() else 7
    assert contexts and all(c.shape == (1, tokens, processed) for c in contexts), [c.shape for c in contexts]


@pytest.mark.parametrize("family,audio", [("ltx2", False), ("ltx2", True), ("ltx23", True)])
def test_neutral_conditioning_reaches_the_blocks_unchanged(comfy, tiny_models, captured, contexts, family, audio):
    from comfy.sd import load_diffusion_model
    from folder_paths import get_full_path_or_raise

    families = importlib.import_module(f"{comfy.pack_module.__name__}.patches.families")
    config = graphs.ltx2_config(family)
    model = load_diffusion_model(get_full_path_or_raise("diffusion_models", tiny_models[DITS[family]]))
    (cond, extra), = families.family_of(model).neutral_conditioning(model)
    assert cond.shape == (1, 1, 24) and not cond.any() and extra == {}
    prompt = graphs.ltx2_nodes(tiny_models[DITS[family]], audio=audio, config=config)
    prompt["pos"] = prompt["neg"] = {"class_type": "TurboTestNeutralConditioning", "inputs": {"model": ["unet", 0]}}
    latent = sample(comfy, captured, prompt)
    assert getattr(latent, "is_nested", False) == audio
    assert contexts and all(c.shape == (1, 1, 24) and not c.any() for c in contexts)


def test_clean_load_allows_only_the_connector_keys_on_core_0_8():
    """The clean_load allowance (conftest.py): 'unet unexpected' with connector keys only, nothing else."""
    from host.conftest import _ltx2_connectors_in_the_text_encoder as allowed

    connectors = ["video_embeddings_connector.learnable_registers",
                  "audio_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.weight"]
    assert allowed(f"unet unexpected: {connectors}")
    assert not allowed(f"unet unexpected: {connectors + ['transformer_blocks.0.attn1.to_q.weight']}")
    assert not allowed(f"unet missing: {connectors}") and not allowed("unet unexpected: []")
