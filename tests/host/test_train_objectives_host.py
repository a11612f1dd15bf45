"""Training at toy scale in the real ComfyUI: each objective's loss falls, and the file it saves loads in its
node and changes that node's output. Tiny LTX-Video models, procedural clips, a few dozen AdamW steps.
"""
import importlib
import math
import pathlib

import pytest
import torch

from host.test_lrhr_host import hr_prompt
from host.test_lrhr_host import run as run_lrhr
from host.test_shortcut_model_host import run_latent, shortcut_prompt

pytestmark = pytest.mark.host

STEPS = 16


def procedural_clip(seed, frames=9, size=64):
    """A moving, rotating colour grating: (F, H, W, 3) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    angle, speed, freq = (torch.rand(3, generator=generator) * torch.tensor([math.pi, 3.0, 0.3]) + 0.1).tolist()
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    out = []
    for t in range(frames):
        phase = freq * (x * math.cos(angle + 0.05 * t) + y * math.sin(angle)) + speed * t
        out.append(torch.stack([0.5 + 0.4 * torch.sin(phase + k) for k in range(3)], dim=-1))
    return torch.stack(out)


def full_path(kind, name):
    import folder_paths

    return folder_paths.get_full_path_or_raise(kind, name)


def training(module):
    """turbovideo.training.<module>, imported once the host has booted (it imports comfy)."""
    return importlib.import_module(f"turbovideo.training.{module}")


def load_base(path):
    return training("base_model").load_base(path, device="cpu")


@pytest.fixture(scope="module")
def out_dir(comfy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    for kind in ("turbovideo", "diffusion_models"):
        comfy.add_model_folder(kind, folder)
    return folder


@pytest.fixture(scope="module")
def clips():
    return [{"frames": procedural_clip(seed)} for seed in range(4)]


@pytest.fixture(scope="module")
def latents(comfy, tiny_models, clips):
    """The clips encoded by the tiny checkpoint's VAE: [1, 128, 2, 2, 2] each."""
    base = load_base(full_path("checkpoints", tiny_models["ltxv_checkpoint"]))
    return [{"latent": base.encode(c["frames"][None])[0]} for c in clips]


def train_and_score(objective, data, output):
    """Loss on fixed draws before and after STEPS steps of training (the mean over 4 draws of 2 samples)."""
    batch = torch.utils.data.default_collate(data[:2])

    def score():
        return sum(objective.evaluate(batch, seed) for seed in range(4)) / 4

    before = score()
    settings = training("loop").LoopSettings(steps=STEPS, batch_size=2, lr=3e-3, log_every=STEPS, seed=1)
    losses = training("loop").train(objective, data, output, settings, log=lambda message: None)
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    return before, score()


def test_train_shortcut_loss_falls_and_the_adapter_changes_turbo_shortcut_model(comfy, tiny_models, captured,
                                                                                   latents, out_dir):
    torch.manual_seed(0)
    base = load_base(full_path("checkpoints", tiny_models["ltxv_checkpoint"]))
    objective = training("objectives.shortcut").ShortcutObjective(base, step_counts=[1, 2, 4], bootstrap_fraction=0.5,
                                                                  ema_decay=0.9)
    before, after = train_and_score(objective, latents, out_dir / "train_shortcut.safetensors")
    assert after < 0.9 * before, (before, after)
    prompt = shortcut_prompt(tiny_models, "ltxv")
    prompt["unet"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}}
    plain = run_latent(comfy, captured, prompt)
    prompt["shortcut"] = {"class_type": "TurboShortcutModel",
                          "inputs": {"model": ["unet", 0], "adapter": "train_shortcut.safetensors"}}
    prompt["guider"]["inputs"]["model"] = ["shortcut", 0]
    trained = run_latent(comfy, captured, prompt)
    assert float((trained - plain).norm() / plain.norm()) > 1e-3


def test_train_fusion_loss_falls_and_the_adapter_changes_turbo_apply_lr_features(comfy, tiny_models, captured,
                                                                                   latents, out_dir):
    torch.manual_seed(0)
    base = load_base(full_path("diffusion_models", tiny_models["ltxv_dit"]))
    objective = training("objectives.fusion").FusionObjective(base, hr_blocks=[0, 1], mlp_ratio=1.0, lr_sigma=0.3)
    before, after = train_and_score(objective, latents, out_dir / "train_fusion.safetensors")
    assert after < 0.9 * before, (before, after)
    plain = run_lrhr(comfy, captured, hr_prompt(tiny_models))
    fused = run_lrhr(comfy, captured, hr_prompt(tiny_models, "train_fusion.safetensors"))
    assert float((fused - plain).norm() / plain.norm()) > 1e-3


def test_train_distill_loss_falls_and_the_student_loads_in_unet_loader(comfy, tiny_models, captured, latents,
                                                                         out_dir, clean_load):
    torch.manual_seed(0)
    student = load_base(full_path("diffusion_models", tiny_models["ltxv_dit"]))
    teacher = load_base(full_path("diffusion_models", tiny_models["ltxv_dit_d64"]))
    objective = training("objectives.distill").DistillObjective(student, teacher, student_blocks=[0, 1], head_hidden=32)
    assert objective.teacher_width == 128 and not any(p.requires_grad for p in teacher.patcher.model.parameters())
    batch = torch.utils.data.default_collate(latents[:2])
    objective.evaluate(batch, 0)
    aligned_before = objective.last_terms["distill"]  # -cos: 0 for unrelated features, -1 for aligned
    before, after = train_and_score(objective, latents, out_dir / "train_student.safetensors")
    assert after < before - 0.05, (before, after)
    objective.evaluate(batch, 0)
    assert objective.last_terms["distill"] < aligned_before - 0.1, (aligned_before, objective.last_terms)
    assert (out_dir / "train_student.safetensors").is_file()
    assert pathlib.Path(training("objectives.distill").heads_path(out_dir / "train_student.safetensors")).is_file()
    loader = {"class_type": "UNETLoader",
              "inputs": {"unet_name": "train_student.safetensors", "weight_dtype": "default"}}
    plain = run_lrhr(comfy, captured, hr_prompt(tiny_models))
    distilled = run_lrhr(comfy, captured, hr_prompt(tiny_models, model_loader=loader))
    assert float((distilled - plain).norm() / plain.norm()) > 1e-3
