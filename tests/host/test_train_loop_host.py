"""training/loop.py with a toy objective (no ComfyUI needed): loss falls, EMA weights are what is saved,
checkpoints every N steps, and an interrupted run still leaves a complete adapter file."""
import types

import pytest
import torch
from safetensors.torch import load_file, save_file
from turbovideo.training import loop
from turbovideo.training.objective import Objective, flow_pair


class LinearFit(Objective):
    """Fits y = x @ w_true with a Linear layer; saves its weight."""
    name = "toy"

    def __init__(self, ema_decay=None):
        super().__init__(types.SimpleNamespace(device=torch.device("cpu")))
        self.ema_decay = ema_decay
        self.layer = torch.nn.Linear(4, 3, bias=False)

    def forward(self, batch):
        return torch.nn.functional.mse_loss(self.layer(batch["x"]), batch["y"])

    def save_adapter(self, path):
        save_file({"weight": self.layer.weight.detach().clone()}, str(path))


def toy_data(count=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    w_true = torch.randn(4, 3, generator=generator)
    xs = torch.randn(count, 4, generator=generator)
    return [{"x": x, "y": x @ w_true} for x in xs]


def test_train_loop_loss_falls_and_the_file_holds_the_final_weights(tmp_path):
    torch.manual_seed(0)
    objective, data = LinearFit(), toy_data()
    settings = loop.LoopSettings(steps=40, batch_size=4, lr=0.05, log_every=20, save_every=10)
    messages = []
    losses = loop.train(objective, data, tmp_path / "toy.safetensors", settings, log=messages.append)
    assert len(losses) == 40 and sum(losses[-5:]) < 0.2 * sum(losses[:5])
    assert torch.equal(load_file(str(tmp_path / "toy.safetensors"))["weight"], objective.layer.weight)
    assert [m.split()[1] for m in messages if m.startswith("step")] == ["20/40", "40/40"]
    assert not list(tmp_path.glob(".*partial*")), "scratch folder left behind"


def test_train_loop_saves_the_ema_weights(tmp_path):
    torch.manual_seed(0)
    objective = LinearFit(ema_decay=0.5)
    loop.train(objective, toy_data(), tmp_path / "ema.safetensors", loop.LoopSettings(steps=5, lr=0.1, log_every=5),
               log=lambda m: None)
    saved = load_file(str(tmp_path / "ema.safetensors"))["weight"]
    torch.testing.assert_close(saved, objective.ema["layer.weight"], rtol=0, atol=0)
    assert not torch.equal(saved, objective.layer.weight), "EMA with decay 0.5 must lag the raw weights"


def test_train_loop_interrupted_run_leaves_a_complete_checkpoint(tmp_path):
    torch.manual_seed(0)
    objective, seen = LinearFit(), []

    def interrupt(step, loss):
        seen.append(objective.layer.weight.detach().clone())
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.train(objective, toy_data(), tmp_path / "cut.safetensors", loop.LoopSettings(steps=50, lr=0.1),
                   log=lambda m: None, on_step=interrupt)
    assert torch.equal(load_file(str(tmp_path / "cut.safetensors"))["weight"], seen[-1])


def test_train_flow_pair_convention():
    generator = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(2, 5, generator=generator), torch.randn(2, 5, generator=generator)
    sigma = torch.tensor([0.25, 0.75])
    x, v = flow_pair(x0, noise, sigma)
    torch.testing.assert_close(x, (1 - sigma[:, None]) * x0 + sigma[:, None] * noise)
    torch.testing.assert_close(x - sigma[:, None] * v, x0)  # ComfyUI's CONST denoised = x - sigma * v
