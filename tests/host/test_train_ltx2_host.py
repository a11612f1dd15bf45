"""Training on an LTX-2 base model (the tiny 19B-layout checkpoint: DiT width 16 + the tiny LTX-2 video VAE): the
shortcut and VSR objectives' losses fall, and the files they save change their nodes' output on LTX-2.

The base model is driven as core's samplers drive it: the processed caption context of the family's width
(2 x caption_channels) and the `latent_shapes` cond (without it LTXAVModel would take batch item 0 for the video).
On core 0.29 the backward pass runs through core_compat.differentiable_core (comfy-kitchen's RoPE has no autograd).
"""
import math

import pytest
import torch
from safetensors.torch import save_file

from host.test_shortcut_model_host import run_latent, shortcut_prompt
from host.test_train_objectives_host import full_path, procedural_clip, train_and_score, training
from host.test_vsr_host import lr_video, upscale

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def base(comfy, tiny_models):
    return training("base_model").load_base(full_path("checkpoints", tiny_models["ltx2_checkpoint"]), device="cpu")


@pytest.fixture(scope="module")
def out_dir(comfy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained_ltx2")
    comfy.add_model_folder("turbovideo", folder)
    return folder


@pytest.fixture(scope="module")
def latents(base):
    """Four procedural clips encoded by the LTX-2 checkpoint's VAE: [128, 2, 2, 2] each."""
    return [{"latent": base.encode(procedural_clip(seed)[None])[0]} for seed in range(4)]


def test_ltx2_base_takes_the_processed_context_and_plain_video_latents(base):
    assert base.family.name == "LTX-2" and base.context_width == 24  # 2 x caption_channels 12
    x = torch.randn(2, 128, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v = base.velocity(base.patcher, x, torch.tensor([0.3, 0.8]))
        one = base.velocity(base.patcher, x[1:], torch.tensor([0.8]))
    assert v.shape == x.shape and torch.isfinite(v).all()
    torch.testing.assert_close(v[1:], one, rtol=1e-4, atol=1e-5)  # batch items are not mixed up


def test_ltx2_context_file_must_have_the_family_width(comfy, tiny_models, tmp_path):
    path = tmp_path / "context.safetensors"
    save_file({"context": torch.randn(5, 4096)}, str(path))
    with pytest.raises(ValueError, match=r"'context' must be \(L, 24\) for this base model, got \(5, 4096\)"):
        training("base_model").load_base(full_path("checkpoints", tiny_models["ltx2_checkpoint"]), device="cpu",
                                         context_path=path)


def test_ltx2_gradient_checkpointing_is_refused_with_the_reason(comfy, tiny_models):
    with pytest.raises(ValueError, match=r"--gradient-checkpointing: gradient checkpointing .* does not support "
                                         r"LTX-2; connect one of: LTX-Video"):
        training("base_model").load_base(full_path("diffusion_models", tiny_models["ltx2_dit"]), device="cpu",
                                         gradient_checkpointing=True)


def test_ltx2_train_shortcut_loss_falls_and_the_adapter_changes_turbo_shortcut_model(comfy, tiny_models, captured,
                                                                                    base, latents, out_dir):
    torch.manual_seed(0)
    objective = training("objectives.shortcut").ShortcutObjective(base, step_counts=[1, 2, 4], bootstrap_fraction=0.5,
                                                                  ema_decay=0.9)
    assert objective.embedder.width == 16
    before, after = train_and_score(objective, latents, out_dir / "train_shortcut_ltx2.safetensors")
    assert after < 0.9 * before, (before, after)
    for audio in (False, True):
        prompt = shortcut_prompt(tiny_models, "ltx2_av" if audio else "ltx2")
        prompt["unet"] = {"class_type": "CheckpointLoaderSimple",
                          "inputs": {"ckpt_name": tiny_models["ltx2_checkpoint"]}}
        plain = run_latent(comfy, captured, prompt)
        prompt["shortcut"] = {"class_type": "TurboShortcutModel",
                              "inputs": {"model": ["unet", 0], "adapter": "train_shortcut_ltx2.safetensors"}}
        prompt["guider"]["inputs"]["model"] = ["shortcut", 0]
        trained = run_latent(comfy, captured, prompt)
        assert float((trained - plain).norm() / plain.norm()) > 1e-3


def test_ltx2_train_vsr_loss_falls_and_the_conditioner_changes_turbo_vsr_upscale(comfy, tiny_models, captured,
                                                                                base, out_dir):
    torch.manual_seed(0)
    vsr = training("objectives.vsr").VSRObjective(base, scale=2.0)
    hr, lr = vsr.latents({"frames": torch.stack([procedural_clip(seed) for seed in range(4)])}, "video")
    data = [{"latent": h, "lr_latent": lo} for h, lo in zip(hr, lr)]
    batch = torch.utils.data.default_collate(data[:2])

    def score():
        return sum(vsr.evaluate(batch, seed) for seed in range(3)) / 3

    before = score()
    loop = training("loop")
    settings = loop.LoopSettings(steps=60, batch_size=2, lr=0.1, log_every=60, seed=1)
    losses = loop.train(vsr, data, out_dir / "train_vsr_ltx2.safetensors", settings, log=lambda message: None)
    assert all(math.isfinite(v) for v in losses)
    after = score()
    assert after < 0.9 * before
    models = {**tiny_models, "ltxv_checkpoint": tiny_models["ltx2_checkpoint"]}  # upscale() loads this checkpoint
    video = lr_video(9, 32, 32, seed=7)
    plain = upscale(comfy, captured, models, video, factorized=True)
    trained = upscale(comfy, captured, models, video, factorized=True, vsr_conditioner="train_vsr_ltx2.safetensors")
    assert float((trained - plain).abs().mean()) > 1e-3
