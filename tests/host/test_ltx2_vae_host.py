"""The tiny LTX-2 / LTX-2.3 video VAEs in core's own loaders, and what core's LTX-2 decode noise means for chunks.

- Each tiny VAE file holds exactly the keys core's VideoVAE builds from its metadata config (no missing key,
  nothing unexpected but the per-channel statistics core 0.8.0 registers and 0.29 dropped), and has LTX-2's
  geometry (128 channels, 8x temporal, 32x32 spatial).
- Core's LTX-2 decode adds fresh noise at every call (tests/host/ltx2_vae_support.py). With that draw set to
  zero, a chunked or tiled decode equals the whole decode within LTX-Video's bound (mean abs 1e-2); with core's
  real noise, test_vae_nodes_host.py allows 1e-2 + the measured noise floor, shown here to be real (> 1e-3)
  for the timestep-conditioned LTX-2 decoder and exactly 0 for LTX-2.3's.
- An audio-video latent (LTXVConcatAVLatent) decodes as its video part.
"""
import json

import pytest
import torch
from safetensors import safe_open

from host import graphs
from host.ltx2_vae_support import NOISY_DECODE, noise_floor, repeatable_decode_noise, zero_decode_noise  # noqa: F401
from host.test_only_nodes import SOURCES
from host.test_vae_nodes_host import CASES, TOLERANCE, assert_healthy, decode_both, random_latent, run_ok, vae_nodes

pytestmark = pytest.mark.host

# core 0.8.0's latent statistics buffers that 0.29 no longer registers (its VideoVAE ignores them there)
LEGACY_STATISTICS = {f"per_channel_statistics.{n}" for n in ("mean-of-stds", "mean-of-stds_over_std-of-means",
                                                             "channel")}


@pytest.fixture(scope="module")
def host(comfy, tiny_models):
    return comfy


def file_keys(folder, name, prefix):
    import folder_paths

    with safe_open(folder_paths.get_full_path(folder, name), "pt") as f:
        metadata = json.loads(f.metadata()["config"])["vae"]
        shapes = {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}
    return shapes, metadata


@pytest.mark.parametrize("family", ["ltx2", "ltx2_base8", "ltx23"])
def test_tiny_vae_files_hold_exactly_the_keys_core_builds(host, captured, tiny_models, clean_load, family):
    prompt, vae = vae_nodes(tiny_models, family)
    prompt.update(graphs.capture(vae, "vae"))
    loaded = run_ok(host, captured, prompt)["vae"]
    folder, name, prefix = (("checkpoints", tiny_models["ltx2_checkpoint"], "vae.") if family == "ltx2" else
                            ("vae", tiny_models[f"{family}_vae"], ""))
    shapes, config = file_keys(folder, name, prefix)
    built = {k: tuple(v.shape) for k, v in loaded.first_stage_model.state_dict().items()}
    assert not set(built) - set(shapes), f"missing: {sorted(set(built) - set(shapes))}"
    assert set(shapes) - set(built) <= LEGACY_STATISTICS, f"unexpected: {sorted(set(shapes) - set(built))}"
    assert all(shapes[k] == s for k, s in built.items())
    assert (loaded.latent_channels, loaded.temporal_compression_decode(), loaded.spacial_compression_decode()) == (
        128, 8, 32)
    assert loaded.first_stage_model.timestep_conditioning == config["timestep_conditioning"]


@pytest.mark.parametrize("case", ["ltx2_temporal", "ltx2_spatial"])
@pytest.mark.usefixtures("zero_decode_noise")
def test_without_core_decode_noise_chunks_meet_the_ltx_video_bound(host, captured, tiny_models, case):
    family, frames, size, widgets = CASES[case]
    latent = random_latent(family, frames, size, seed=1)
    out = decode_both(host, captured, tiny_models, family, latent, **widgets)
    assert_healthy(out["core"])
    assert out["turbo"].shape == out["core"].shape == (frames, size, size, 3)
    assert noise_floor(out["vae"], latent, family) == 0.0
    difference = (out["turbo"] - out["core"]).abs().mean().item()
    assert difference <= TOLERANCE, difference


@pytest.mark.parametrize("family, noisy", [("ltx2", True), ("ltx2_base8", True), ("ltx23", False)])
def test_core_decode_noise_floor(host, captured, tiny_models, family, noisy):
    """Two whole decodes of one latent: different for the timestep-conditioned LTX-2 decoder, equal for 2.3's."""
    prompt, vae = vae_nodes(tiny_models, family)
    prompt.update(graphs.capture(vae, "vae"))
    loaded = run_ok(host, captured, prompt)["vae"]
    latent = random_latent(family, 17, 64, seed=2)
    with torch.inference_mode():
        measured = (loaded.decode(latent) - loaded.decode(latent)).abs().mean().item()
    assert (family in NOISY_DECODE) == noisy
    assert measured > 1e-3 if noisy else measured == 0.0, measured


@pytest.mark.usefixtures("repeatable_decode_noise")
def test_audio_video_latent_decodes_as_its_video(host, captured, tiny_models):
    SOURCES["video"] = random_latent("ltx2", 17, 64, seed=3)
    SOURCES["audio"] = torch.randn(1, 8, 18, 16, generator=torch.Generator().manual_seed(4))  # 8 ch x 16 mel bins
    prompt, vae = vae_nodes(tiny_models, "ltx2")
    for key in ("video", "audio"):
        prompt[key] = {"class_type": "TurboTestLatentSource", "inputs": {"key": key}}
    prompt["av"] = {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["video", 0],
                                                                   "audio_latent": ["audio", 0]}}
    for key in ("video", "av"):
        prompt[f"{key}_px"] = {"class_type": "TurboVAEDecode", "inputs": {
            "samples": [key, 0], "vae": vae, "memory_budget_mb": 0, "chunk_frames": 0, "chunk_overlap": 24,
            "tile_size": 0, "tile_overlap": 64}}
        prompt.update(graphs.capture([f"{key}_px", 0], key))
    out = run_ok(host, captured, prompt)
    assert out["av"].shape == (17, 64, 64, 3)
    assert_healthy(out["video"])
    assert torch.equal(out["av"], out["video"])


def test_a_seeded_decode_repeats_and_leaves_the_global_rng_alone(host, captured, tiny_models):
    """ChunkOptions.seed (TurboVSRUpscale passes its seed): each decode call runs with torch's RNG forked and
    seeded, so core's LTX-2 decode noise repeats; the caller's RNG state is untouched."""
    import dataclasses
    import sys

    chunked_vae = sys.modules[host.pack_module.__name__ + ".patches.chunked_vae"]
    prompt, vae = vae_nodes(tiny_models, "ltx2")
    prompt.update(graphs.capture(vae, "vae"))
    loaded = run_ok(host, captured, prompt)["vae"]
    latent = random_latent("ltx2", 33, 64, seed=5)
    options = chunked_vae.ChunkOptions(budget_bytes=1e15, frames=3, overlap_frames=1, seed=7)  # 5 latents: 2 chunks
    plan = chunked_vae.plan_decode(loaded, latent.shape, options)
    state = torch.get_rng_state()
    with torch.inference_mode():
        first, again = (chunked_vae.decode(loaded, latent, plan) for _ in range(2))
        other = chunked_vae.decode(loaded, latent, dataclasses.replace(plan, seed=8))
        assert torch.equal(torch.get_rng_state(), state)
        unseeded = chunked_vae.decode(loaded, latent, dataclasses.replace(plan, seed=None))
    assert len(plan.chunks) == 2 and torch.equal(first, again)
    assert (other - first).abs().mean() > 1e-3 and (unseeded - first).abs().mean() > 1e-3
