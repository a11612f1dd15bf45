"""VSR conditioner training (training/objectives/vsr.py) in the real ComfyUI on the tiny LTX checkpoint.

- The training patch (live conditioner) gives the model the same velocity as the node's patch
  (patches/vsr_conditioning.apply_vsr_conditioner) for the same weights, to 1e-6.
- Factorized tasks: the image step feeds a 1-frame latent, the video step a clean HR latent frame 0
  under a zero denoise mask (per-token timestep 0, like TurboVSRUpscale's factorized pass 2) and scores
  only the other frames; steps alternate image, video; evaluation averages both.
- The LR latent is the VAE encoding of the LR frames resized to the HR size by comfy.utils (the
  node's step 1-2), to 1e-6.
- Loss falls over 30 steps (on the trained clips and on held-out ones); the saved file loads in
  TurboVSRUpscale and changes its output.
- torchrun --nproc_per_node 2 (gloo): one step through training/train.py, both ranks' files equal.
"""
import importlib
import math
import pathlib

import numpy as np
import pytest
import torch

from host.test_train_ddp_host import assert_ranks_identical, common_args, run_torchrun
from host.test_train_objectives_host import full_path, procedural_clip, training
from host.test_vsr_host import lr_video, upscale

pytestmark = pytest.mark.host

SCALE = 2.0


@pytest.fixture(scope="module")
def adapters(comfy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained_vsr")
    comfy.add_model_folder("turbovideo", folder)
    return folder


@pytest.fixture(scope="module")
def base(comfy, tiny_models):
    return training("base_model").load_base(full_path("checkpoints", tiny_models["ltxv_checkpoint"]), device="cpu")


def objective(base, **options):
    torch.manual_seed(0)
    return training("objectives.vsr").VSRObjective(base, scale=SCALE, **options)


def clips(seeds):
    return {"frames": torch.stack([procedural_clip(seed) for seed in seeds])}


def test_train_vsr_training_patch_equals_the_node_patch(base):
    vsr, conditioning = objective(base), training("objectives.vsr").vc
    with torch.no_grad():
        vsr.conditioner.scale.fill_(0.7)
    x, lr = torch.randn(2, 128, 2, 2, 2), torch.randn(2, 128, 2, 2, 2)
    sigma = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        trained = base.velocity(vsr.conditioned_model(lr), x, sigma)
        node = base.velocity(conditioning.apply_vsr_conditioner(base.patcher, vsr.conditioner, lr), x, sigma)
        plain = base.velocity(base.patcher, x, sigma)
    torch.testing.assert_close(trained, node, atol=1e-6, rtol=0)
    assert (trained - plain).abs().max() > 1e-3


def test_train_vsr_tasks_feed_the_model_what_factorized_inference_does(base, monkeypatch):
    vsr = objective(base)
    hr, lr = torch.randn(2, 128, 3, 2, 2), torch.randn(2, 128, 3, 2, 2)
    calls = []

    def spy(patcher, x, sigma, **extra):
        calls.append((x.clone(), sigma.clone(), extra.get("denoise_mask")))
        return (x * 0.5).requires_grad_()

    monkeypatch.setattr(base, "velocity", spy)
    batch = {"latent": hr, "lr_latent": lr}
    vsr.reseed(11)
    image_loss, video_loss = vsr(batch), vsr(batch)
    (x_image, _, mask_image), (x_video, sigma, mask_video) = calls
    assert x_image.shape[2] == 1 and mask_image is None
    assert torch.equal(x_video[:, :, 0], hr[:, :, 0])
    assert bool((mask_video[:, :, 0] == 0).all()) and bool((mask_video[:, :, 1:] == 1).all())
    vsr.reseed(11)
    vsr.rand((2,)), vsr.randn(hr[:, :, :1].shape)  # the image step's draws
    vsr.rand((2,))  # the video step's sigma
    noise = vsr.randn(hr.shape)
    s = sigma.view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_video[:, :, 1:], ((1 - s) * hr + s * noise)[:, :, 1:], atol=1e-6, rtol=0)
    expected = ((0.5 * x_video - (noise - hr))[:, :, 1:] ** 2).mean()
    torch.testing.assert_close(video_loss, expected, atol=1e-6, rtol=1e-6)
    assert math.isfinite(float(image_loss.detach()))
    with torch.no_grad():
        vsr(batch)
    assert [c[0].shape[2] for c in calls[2:]] == [1, 3], "evaluation must score both tasks"


def test_train_vsr_lr_latent_is_the_resized_then_encoded_lr_clip(base):
    import comfy.utils

    vsr = objective(base)
    hr = clips([1])["frames"]
    lr = torch.nn.functional.avg_pool2d(hr[0].movedim(-1, 1), 2).movedim(1, -1)[None]
    got_hr, got_lr = vsr.latents({"frames": hr, "lr_frames": lr}, "video")
    resized = comfy.utils.common_upscale(lr[0].movedim(-1, 1), 64, 64, "bicubic", "disabled").movedim(1, -1)
    torch.testing.assert_close(got_lr, base.vae.encode(resized.clamp(0, 1)).float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(got_hr, base.vae.encode(hr[0]).float(), atol=1e-6, rtol=0)
    first_hr, first_lr = vsr.latents({"frames": hr, "lr_frames": lr}, "image")
    assert first_hr.shape[2] == first_lr.shape[2] == 1
    torch.testing.assert_close(first_lr, base.vae.encode(resized[:1].clamp(0, 1)).float(), atol=1e-6, rtol=0)
    degraded = vsr.lr_frames(clips([1, 2]))
    assert degraded.shape == (2, 9, 32, 32, 3) and 0.0 <= float(degraded.min()) and float(degraded.max()) <= 1.0


def _latent_batches(vsr, seeds):
    """Precomputed (HR, LR) latents through the full degrade -> resize -> encode path, one dict per clip."""
    hr, lr = vsr.latents(clips(seeds), "video")
    return [{"latent": h, "lr_latent": lo} for h, lo in zip(hr, lr)]


def test_train_vsr_loss_falls_and_the_conditioner_changes_turbo_vsr_upscale(comfy, tiny_models, captured, base,
                                                                              adapters):
    vsr = objective(base)
    data, held_out = _latent_batches(vsr, range(4)), _latent_batches(vsr, range(10, 12))
    batches = [torch.utils.data.default_collate(part) for part in (data[:2], held_out)]

    def score(batch):
        return sum(vsr.evaluate(batch, seed) for seed in range(3)) / 3

    before = [score(batch) for batch in batches]
    loop = training("loop")
    settings = loop.LoopSettings(steps=30, batch_size=2, lr=0.1, log_every=30, seed=1)
    losses = loop.train(vsr, data, adapters / "train_vsr.safetensors", settings, log=lambda message: None)
    after = [score(batch) for batch in batches]
    assert all(math.isfinite(v) for v in losses)
    assert after[0] < 0.9 * before[0] and after[1] < 0.95 * before[1], (before, after)
    saved = importlib.import_module("turbovideo.models.vsr_conditioner").load_vsr_conditioner(
        adapters / "train_vsr.safetensors")
    for key, value in vsr.conditioner.state_dict().items():
        assert torch.equal(saved.state_dict()[key], value)
    video = lr_video(9, 32, 32, seed=7)
    untiled = dict(factorized=True, tile_size=16)  # a tile larger than the frame: untiled
    plain = upscale(comfy, captured, tiny_models, video, **untiled)
    trained = upscale(comfy, captured, tiny_models, video, **untiled, vsr_conditioner="train_vsr.safetensors")
    assert float((trained - plain).abs().mean()) > 1e-3


def test_train_vsr_refuses_bad_options(base):
    with pytest.raises(ValueError, match="init-scale"):
        objective(base, init_scale=0.0)
    with pytest.raises(ValueError, match="resize-method"):
        objective(base, resize_method="sinc")


def _write_data(folder: pathlib.Path) -> None:
    import cv2

    folder.mkdir()
    for seed in range(3):
        clip = (procedural_clip(seed).numpy() * 255).round().astype(np.uint8)
        writer = cv2.VideoWriter(str(folder / f"clip{seed}.mkv"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (64, 64))
        for frame in clip:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


def test_train_vsr_torchrun_two_ranks_end_with_identical_weights(tiny_models, tmp_path):
    """Two steps (image, then video) under DDP through training/train.py (test_train_ddp_host's launcher)."""
    _write_data(tmp_path / "data")
    output = tmp_path / "vsr.safetensors"
    args = common_args(full_path("checkpoints", tiny_models["ltxv_checkpoint"]), tmp_path / "data", output)
    args[args.index("--steps") + 1] = "2"
    done = run_torchrun([["vsr", *args, "--scale", "2"]], tmp_path)
    assert done.stdout.count("loss") == 2, done.stdout[-2000:]
    assert_ranks_identical(output, {"scale": torch.tensor(0.01)})


def test_train_vsr_conditioner_patch_keeps_a_block_patch_already_there(base):
    """Another pack's (or the training's) block-0 patch keeps running under the conditioner's patch."""
    vsr, conditioning = objective(base), training("objectives.vsr").vc
    with torch.no_grad():
        vsr.conditioner.scale.fill_(0.7)
    calls = []

    def recording(args, extra):
        calls.append(args["img"].shape)
        return extra["original_block"](args)

    earlier = base.patcher.clone()
    earlier.set_model_patch_replace(recording, "dit", "double_block", 0)
    x, lr, sigma = torch.randn(1, 128, 2, 2, 2), torch.randn(1, 128, 2, 2, 2), torch.tensor([0.4])
    with torch.no_grad():
        chained = base.velocity(conditioning.apply_vsr_conditioner(earlier, vsr.conditioner, lr), x, sigma)
        alone = base.velocity(conditioning.apply_vsr_conditioner(base.patcher, vsr.conditioner, lr), x, sigma)
    assert len(calls) == 1
    torch.testing.assert_close(chained, alone, rtol=0, atol=1e-6)
