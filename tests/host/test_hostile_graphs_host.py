"""Valid graphs that must work and the 'Also' items of issue 18, in the real ComfyUI.

- TurboTileLayoutPreview on a TurboTiledModel (finding 1) draws exactly the plan the sampler then runs,
  fixed or auto; the auto tile is worked out again at every run from the memory free then; chaining two
  TurboTiledModel nodes is refused.
- TurboSplitSigmasAtBoundary at its limits 0 and 1: the two halves run one after the other equal the
  whole schedule, with the rCM sampler and core's euler.
- TurboLRHRSampler names its own inputs (hr_sigmas), never a start_step it does not have.
- TurboVSRUpscale with cfg != 1 and no negative prompt is refused instead of doubling the work.
"""
import importlib

import pytest
import torch

from host import graphs
from host.hostile import Case, assert_clear_error, assert_still_serving, lrhr_prompt, record, smooth_frames, vsr_prompt
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

BROKE, UNCLEAR, SILENT = "broke a valid graph", "unclear error", "silent wrong output"


def pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.{name}")


FRAMES = smooth_frames(9, 256, 256, seed=7)


def tiled_graph(tiny_models, tile=2, overlap=1, budget_mb=0, sample=True, chain=False, run=0):
    """Tiny LTX checkpoint -> TurboTiledModel -> (KSampler over a 256 px, 9-frame latent) + the layout preview.
    `run` changes only the frames' source key and the seed, so a cached graph runs its sampler and preview again."""
    SOURCES[f"hostile_frames_{run}"] = FRAMES
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=256)
    prompt["tiled"] = {"class_type": "TurboTiledModel", "inputs": {
        "model": ["ckpt", 0], "tile_size": tile, "memory_budget_mb": budget_mb, "tile_overlap": overlap,
        "segment_length": 0, "segment_overlap": 2, "weights": "cosine", "tile_batch": 1}}
    model = ["tiled", 0]
    if chain:
        prompt["tiled2"] = {"class_type": "TurboTiledModel", "inputs": {**prompt["tiled"]["inputs"], "model": model}}
        model = ["tiled2", 0]
    prompt["frames"] = {"class_type": "TurboTestImageSource", "inputs": {"key": f"hostile_frames_{run}"}}
    prompt["preview"] = {"class_type": "TurboTileLayoutPreview", "inputs": {
        "model": model, "vae": ["ckpt", 2], "images": ["frames", 0]}}
    prompt.update(graphs.capture(["preview", 0], "layout"))
    if sample:
        prompt["sample"] = graphs.ksampler(model, ["latent", 0], seed=run, steps=1)
        prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


@pytest.fixture
def plans(comfy, monkeypatch):
    """The concrete tile of every tiled model call, as the sampler ran it."""
    tile_plan = pack(comfy, "patches.tile_plan")
    seen = []
    original = tile_plan.RunPlan.for_call

    def recording(self, *args):
        settings = original(self, *args)
        seen.append(settings.tile)
        return settings

    monkeypatch.setattr(tile_plan.RunPlan, "for_call", recording)
    return seen


def expected_layout(comfy, frames, tile, overlap):
    """The picture of the plan (tile, overlap) over an 8 x 8 x 2 latent, drawn by the pack's own drawing."""
    tiled_model, preview = pack(comfy, "patches.tiled_model"), pack(comfy, "patches.tile_preview")
    settings = tiled_model.TilingSettings((tile, tile), overlap)
    return preview.draw_layout(frames[0], settings.plan((2, 8, 8)), 32, 8, 9, (256, 256))


def test_the_preview_draws_the_plan_of_a_tiled_model(comfy, tiny_models, captured, plans):
    result = comfy.run(tiled_graph(tiny_models, tile=3, overlap=1))
    assert result.ok, result.describe()
    assert set(plans) == {(3, 3)}
    torch.testing.assert_close(captured["layout"], expected_layout(comfy, FRAMES, 3, 1))
    assert captured["layout"].shape == (1, 256 + 12, 256, 3)
    record(Case("preview-on-tiled-model", BROKE, ()), "correct result")


def test_the_auto_tile_is_the_one_the_sampler_uses_and_is_measured_every_run(comfy, tiny_models, captured, plans,
                                                                               monkeypatch):
    tile_plan = pack(comfy, "patches.tile_plan")
    mib = 1024 * 1024
    cost = lambda side: tile_plan.model_call_cost(captured["model"].model.memory_required, 1, 128)(2, side, side)
    prompt = tiled_graph(tiny_models, tile=0, overlap=1, sample=False)
    prompt.update(graphs.capture(["tiled", 0], "model"))
    assert comfy.run(prompt).ok
    budgets = [(cost(5) + cost(6)) / 2, 2 * cost(8)]  # side 5 fits the first, the whole 8 x 8 frame the second
    free = {}
    monkeypatch.setattr(tile_plan, "free_memory_for", lambda model: free["now"])
    for run, (budget, side) in enumerate(zip(budgets, (5, 8)), start=1):
        free["now"] = budget
        plans.clear()
        captured.clear()
        result = comfy.run(tiled_graph(tiny_models, tile=0, overlap=1, run=run), keep_cache=True)  # one MODEL object
        assert result.ok, result.describe()
        assert set(plans) == {(side, side)}, (budget / mib, plans)
        torch.testing.assert_close(captured["layout"], expected_layout(comfy, FRAMES, side, 1))
        record(Case(f"auto-tile-run-{run}-budget-{budget / mib:.1f}MiB", SILENT, ()), "correct result")


def test_chaining_two_tiled_models_and_previewing_an_untiled_one_are_refused(comfy, tiny_models):
    case = Case("tiled-chain", BROKE, ("model: already tiled by TurboTiledModel", "instead of chaining two"))
    assert_clear_error(comfy, tiled_graph(tiny_models, chain=True, sample=False), case)
    prompt = tiled_graph(tiny_models, sample=False)
    prompt["preview"]["inputs"]["model"] = ["ckpt", 0]
    case = Case("preview-untiled", UNCLEAR, ("model: not tiled", "connect the MODEL output of TurboTiledModel"))
    assert_clear_error(comfy, prompt, case)


# ---- TurboSplitSigmasAtBoundary at 0 and 1 ---------------------------------------------------------------

def split_graph(tiny_models, sampler, boundary=None):
    """rCM sigmas (4 steps) sampled whole (boundary None) or as the high then the low half."""
    prompt = graphs.ltxv_checkpoint_nodes(tiny_models["ltxv_checkpoint"], frames=9, size=64)
    prompt["sigmas"] = {"class_type": "TurboRCMSigmas", "inputs": {"steps": 4, "sigma_max": 80.0,
                                                                   "mid_timesteps": "default"}}
    prompt["sampler"] = ({"class_type": "TurboRCMSampler", "inputs": {"mode": "ode"}} if sampler == "rcm" else
                         {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}})
    prompt["guider"] = {"class_type": "BasicGuider", "inputs": {"model": ["ckpt", 0], "conditioning": ["pos", 0]}}
    prompt["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}}
    prompt["quiet"] = {"class_type": "DisableNoise", "inputs": {}}

    def run(node, noise, sigmas, latent):
        prompt[node] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": noise, "guider": ["guider", 0], "sampler": ["sampler", 0], "sigmas": sigmas,
            "latent_image": latent}}

    if boundary is None:
        run("last", ["noise", 0], ["sigmas", 0], ["latent", 0])
    else:
        prompt["split"] = {"class_type": "TurboSplitSigmasAtBoundary", "inputs": {"sigmas": ["sigmas", 0],
                                                                                  "boundary": boundary}}
        run("high", ["noise", 0], ["split", 0], ["latent", 0])
        run("last", ["quiet", 0], ["split", 1], ["high", 0])
    prompt.update(graphs.capture(["last", 0], "latent"))
    return prompt


@pytest.mark.parametrize("sampler", ["rcm", "euler"])
def test_split_at_the_limits_runs_every_step_once(comfy, tiny_models, captured, sampler):
    out = {}
    for boundary in (None, 0.0, 1.0):
        captured.clear()
        result = comfy.run(split_graph(tiny_models, sampler, boundary))
        assert result.ok, f"boundary {boundary}: {result.describe()}"
        out[boundary] = captured["latent"]["samples"]
    assert torch.isfinite(out[None]).all() and out[None].std() > 0
    torch.testing.assert_close(out[0.0], out[None], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1.0], out[None], atol=1e-5, rtol=1e-5)
    for boundary in (0.0, 1.0):
        record(Case(f"split-{sampler}-boundary-{boundary}", UNCLEAR, ()), "correct result")


# ---- error texts name the node's own inputs --------------------------------------------------------------

def test_lrhr_errors_name_hr_sigmas_not_a_start_step(comfy, tiny_models):
    case = Case("lrhr-hr-sigmas-from-1", UNCLEAR, ("hr_sigmas: the HR pass must start below sigma 1",
                                                   "use a schedule like"))
    text = assert_clear_error(comfy, lrhr_prompt(tiny_models), case)  # TurboShortcutSigmas start at 1
    assert "start_step" not in text, text
    prompt = lrhr_prompt(tiny_models, hr_sigmas=["split", 1])  # the low half at boundary 0: [0.0]
    prompt["split"] = {"class_type": "TurboSplitSigmasAtBoundary", "inputs": {"sigmas": ["sigmas", 0],
                                                                              "boundary": 0.0}}
    case = Case("lrhr-hr-sigmas-one-value", UNCLEAR, ("hr_sigmas: the HR pass needs a schedule of at least one step",))
    text = assert_clear_error(comfy, prompt, case)
    assert "start_step" not in text, text


def test_vsr_cfg_without_a_negative_prompt_is_refused(comfy, tiny_models, captured):
    case = Case("vsr-cfg-3-no-negative", SILENT, ("negative: cfg 3 runs a negative pass", "connect 'negative' or "
                                                                                          "set cfg to 1"))
    assert_clear_error(comfy, vsr_prompt(tiny_models, cfg=3.0), case)
    prompt = vsr_prompt(tiny_models, cfg=3.0, positive=["pos", 0], negative=["neg", 0])
    prompt["pos"], prompt["neg"] = graphs.conditioning_node(0, True), graphs.conditioning_node(1, True)
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    assert captured["out"].shape == (1, 64, 64, 3) and torch.isfinite(captured["out"]).all()
    assert_still_serving(comfy)
