"""--gradient-checkpointing: every objective's gradients equal those of the plain backward pass, and the
DiT blocks really run again during backward (only their inputs were kept)."""
import importlib

import pytest
import torch

from host.test_train_objectives_host import clips, full_path, latents, training  # noqa: F401  (fixtures)

pytestmark = pytest.mark.host


def builders(tiny_models):
    teacher = full_path("diffusion_models", tiny_models["ltxv_dit_d64"])
    return {
        "shortcut": lambda base: training("objectives.shortcut").ShortcutObjective(base, bootstrap_fraction=0.5),
        "fusion": lambda base: training("objectives.fusion").FusionObjective(base, hr_blocks=[0, 1]),
        "vsr": lambda base: training("objectives.vsr").VSRObjective(base, scale=2.0),
        "distill": lambda base: training("objectives.distill").DistillObjective(
            base, training("base_model").load_base(teacher, device="cpu"), student_blocks=[0, 1], head_hidden=16),
    }


def gradients(objective, batch) -> dict:
    objective.reseed(5)
    objective.zero_grad(set_to_none=True)
    objective(batch).backward()
    return {name: p.grad.clone() for name, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["shortcut", "fusion", "vsr", "distill"])
def test_train_gradient_checkpointing_keeps_the_gradients(comfy, tiny_models, clips, latents, monkeypatch,  # noqa: F811
                                                          name):
    checkpoint = full_path("checkpoints", tiny_models["ltxv_checkpoint"])
    load = training("base_model").load_base
    made = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        made.append(builders(tiny_models)[name](load(checkpoint, device="cpu", gradient_checkpointing=checkpointing)))
    plain, checkpointed = made
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random trainable weights: zero-initialised outputs would hide most gradients
        for p, q in zip(plain.parameters(), checkpointed.parameters()):
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
            q.copy_(p)
    batch = torch.utils.data.default_collate((clips if name == "vsr" else latents)[:2])

    block_class = importlib.import_module("comfy.ldm.lightricks.model").BasicTransformerBlock
    original, calls = block_class.forward, []
    monkeypatch.setattr(block_class, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    expected = gradients(plain, batch)
    plain_calls, calls[:] = len(calls), []
    got = gradients(checkpointed, batch)
    assert len(calls) > plain_calls, "no block ran again in the backward pass"
    assert expected.keys() == got.keys() and any(float(g.abs().max()) > 0 for g in expected.values())
    for key, value in expected.items():
        scale = float(value.abs().max())
        assert float((got[key] - value).abs().max()) <= 1e-5 * scale + 1e-9, key
