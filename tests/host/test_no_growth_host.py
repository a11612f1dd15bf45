"""No memory growth across runs: re-queuing a graph with a new seed (what an artist does) must not leave
tensors behind. Live torch tensors are counted with the garbage collector after each run; after a warm-up
run their number and bytes stay exactly the same. Graphs: the speed chain (Sage, fused norms, INT8 prepacked
weights, tiling; every patch node re-runs), TurboVSRUpscale (chunked VAE, factorized passes, tiles) and
LR -> HR with a fusion adapter on a tiled HR model."""
import gc
import warnings

import pytest
import torch

from host.test_attention_host import attention_node, prompt_for
from host.test_lrhr_host import adapters, hr_prompt  # noqa: F401  (adapters: the fixture writing fusion files)
from host.test_only_nodes import SOURCES
from host.test_vsr_host import lr_video

pytestmark = pytest.mark.host

RUNS = 4


def live_tensors() -> tuple[int, int]:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on some module proxies warns about deprecated attributes
        warnings.simplefilter("ignore")
        tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and not o.is_meta]
    return len(tensors), sum(t.numel() * t.element_size() for t in tensors if t.layout == torch.strided)


def speed_chain(tiny_models, run):
    # topk changes every run, so every patch node after it runs again, as when an artist edits the graph
    nodes = [attention_node("sage", topk=0.1 + 0.01 * run), ("TurboFusedNorms", {}),
             ("TurboQuantizeINT8", {"layers": "all", "granularity": "per_channel", "backend": "auto"}),
             ("TurboTiledModel", {"tile_size": 2, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
                                  "segment_overlap": 2, "weights": "cosine", "tile_batch": 1})]
    prompt = prompt_for(tiny_models, "ltxv", nodes)
    prompt["sample"]["inputs"]["seed"] = run
    return prompt


def vsr_upscale(tiny_models, run):
    SOURCES["no_growth_video"] = lr_video(9, 64, 64, seed=3)
    inputs = {"model": ["ckpt", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 2,
              "strength": 0.5, "seed": run, "resize_method": "bicubic", "color_correction": "wavelet",
              "factorized": True, "tile_size": 2, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
              "segment_overlap": 2, "weights": "cosine", "tile_batch": 1,
              "vsr_conditioner": "none (training-free SDEdit)", "cfg": 1.0}
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
            "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "no_growth_video"}},
            "vsr": {"class_type": "TurboVSRUpscale", "inputs": inputs},
            "cap": {"class_type": "TurboTestCapture", "inputs": {"value": ["vsr", 0], "key": "latent"}}}


def lr_to_hr_tiled(tiny_models, run, fusion_file):
    """LR pass capturing features -> TurboApplyLRFeatures (random adapter) -> TurboTiledModel -> HR pass."""
    prompt = hr_prompt(tiny_models, fusion_file)
    prompt["noise"]["inputs"]["noise_seed"] = run
    prompt["tiled"] = {"class_type": "TurboTiledModel", "inputs": {
        "model": ["apply", 0], "tile_size": 2, "memory_budget_mb": 0, "tile_overlap": 1, "segment_length": 0,
        "segment_overlap": 2, "weights": "cosine", "tile_batch": 1}}
    prompt["hr_guider"]["inputs"]["model"] = ["tiled", 0]
    return prompt


@pytest.mark.parametrize("graph", [speed_chain, vsr_upscale, lr_to_hr_tiled], ids=lambda g: g.__name__)
def test_requeued_graph_leaves_no_tensors_behind(comfy, tiny_models, captured, adapters, graph):  # noqa: F811
    counts = []
    for run in range(RUNS):
        prompt = graph(tiny_models, run, adapters["random"]) if graph is lr_to_hr_tiled else graph(tiny_models, run)
        result = comfy.run(prompt, keep_cache=True)
        assert result.ok, result.describe()
        captured.clear()
        counts.append(live_tensors())
    assert len(set(counts[1:])) == 1, f"(live tensors, bytes) after each run: {counts}"  # run 0 warms caches
