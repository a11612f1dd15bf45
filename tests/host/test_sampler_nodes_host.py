"""rCM, shortcut and LTX token-shift nodes inside SamplerCustomAdvanced on the tiny LTX and Wan models."""
import math
import sys

import pytest
import torch

from host import graphs

pytestmark = pytest.mark.host


def _ltxv_graph(models, sampler_node, sigmas_node, seed=7, frames=9):
    prompt = graphs.ltxv_checkpoint_nodes(models["ltxv_checkpoint"], frames=frames, size=64)
    prompt["unet"] = {"class_type": "UNETLoader",
                      "inputs": {"unet_name": models["ltxv_dit"], "weight_dtype": "default"}}
    prompt["sampler"], prompt["sigmas"] = sampler_node, sigmas_node
    prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0], seed))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    prompt.update(graphs.capture(["sigmas", 0], "sigmas"))
    return prompt


def _wan_graph(models, sampler_node, sigmas_node, seed=7):
    prompt = graphs.wan_nodes(models["wan_dit"], models["wan_vae"], frames=5, size=32)
    prompt["sampler"], prompt["sigmas"] = sampler_node, sigmas_node
    prompt.update(graphs.custom_sampler_nodes(["unet", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0], seed))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


RCM_SIGMAS = {"class_type": "TurboRCMSigmas", "inputs": {"steps": 4, "sigma_max": 80.0, "mid_timesteps": "default"}}
SHORTCUT_SIGMAS = {"class_type": "TurboShortcutSigmas", "inputs": {"steps": 4, "shift_mode": "manual", "shift": 3.0}}
SAMPLERS = {
    "rcm_sde": ({"class_type": "TurboRCMSampler", "inputs": {"mode": "sde"}}, RCM_SIGMAS),
    "rcm_ode": ({"class_type": "TurboRCMSampler", "inputs": {"mode": "ode"}}, RCM_SIGMAS),
    "shortcut": ({"class_type": "TurboShortcutSampler", "inputs": {}}, SHORTCUT_SIGMAS),
}


def _sample(comfy, captured, prompt):
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return captured["latent"]["samples"].clone()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("family", ["ltxv", "wan"])
def test_sampler_runs_and_same_seed_gives_same_output(comfy, tiny_models, captured, family, name):
    sampler, sigmas = SAMPLERS[name]
    build = _ltxv_graph if family == "ltxv" else _wan_graph
    first = _sample(comfy, captured, build(tiny_models, sampler, sigmas, seed=11))
    again = _sample(comfy, captured, build(tiny_models, sampler, sigmas, seed=11))
    other = _sample(comfy, captured, build(tiny_models, sampler, sigmas, seed=12))
    assert torch.isfinite(first).all() and first.std() > 0
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_rcm_sde_noise_differs_from_ode(comfy, tiny_models, captured):
    sde = _sample(comfy, captured, _ltxv_graph(tiny_models, *SAMPLERS["rcm_sde"]))
    ode = _sample(comfy, captured, _ltxv_graph(tiny_models, *SAMPLERS["rcm_ode"]))
    assert not torch.allclose(sde, ode)


def test_rcm_sigmas_node_gives_turbodiffusion_schedule(comfy, tiny_models, captured):
    _sample(comfy, captured, _ltxv_graph(tiny_models, *SAMPLERS["rcm_sde"]))
    expected = [80 / 81] + [math.tan(t) / (1 + math.tan(t)) for t in (1.5, 1.4, 1.0)] + [0.0]
    assert torch.allclose(captured["sigmas"].double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_ltx_shift_sigmas_match_core_ltxv_scheduler(comfy, tiny_models, captured):
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=17, size=64)
    shift = {"base_shift": 0.95, "max_shift": 2.05, "stretch": True, "terminal": 0.1}
    prompt["turbo"] = {"class_type": "TurboLTXShiftSigmas", "inputs": {"latent": ["latent", 0], "steps": 8, **shift}}
    prompt["core"] = {"class_type": "LTXVScheduler", "inputs": {"latent": ["latent", 0], "steps": 8, **shift}}
    prompt.update(graphs.capture(["turbo", 0], "turbo"))
    prompt.update(graphs.capture(["core", 0], "core"))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    assert captured["turbo"].shape == captured["core"].shape == (9,)
    assert torch.allclose(captured["turbo"], captured["core"].float(), atol=1e-6)


def test_shortcut_sigmas_from_latent_size_requires_latent(comfy, tiny_models, captured):
    inputs = {"steps": 4, "shift_mode": "from latent size", "shift": 1.0}
    sigmas = {"class_type": "TurboShortcutSigmas", "inputs": inputs}
    prompt = {"sigmas": sigmas, **graphs.capture(["sigmas", 0], "sigmas")}
    result = comfy.run(prompt)
    assert not result.ok
    assert "latent" in result.execution_error["exception_message"]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_interrupt_stops_sampling_before_the_next_step(comfy, tiny_models, captured, name):
    from host.test_only_nodes import TurboTestInterruptAfter

    sampler, sigmas = SAMPLERS[name]
    prompt = _ltxv_graph(tiny_models, sampler, sigmas)
    prompt["interrupt"] = {"class_type": "TurboTestInterruptAfter", "inputs": {"model": ["unet", 0], "calls": 2}}
    prompt["guider"]["inputs"]["model"] = ["interrupt", 0]
    result = comfy.run(prompt)
    assert not result.ok
    assert any(event == "execution_interrupted" for event, _ in result.messages), result.describe()
    assert TurboTestInterruptAfter.calls_seen == 2, "sampling went on after the interrupt"
    assert "latent" not in captured


def test_shortcut_sampler_without_adapter_warns_once(comfy, tiny_models, captured, host_warnings):
    ksamplers = sys.modules[comfy.pack_module.__name__ + ".patches.ksamplers"]
    ksamplers._warned_no_adapter.clear()
    host_warnings.records.clear()
    for seed in (1, 2):
        _sample(comfy, captured, _ltxv_graph(tiny_models, *SAMPLERS["shortcut"], seed=seed))
    warnings = [m for m in host_warnings.records if "no step-size adapter" in m]
    assert len(warnings) == 1, host_warnings.records
