"""What every training objective is: trainable adapter modules + a loss on a batch + a node-loadable file.

An Objective is an nn.Module whose submodules are exactly what is trained (the adapter, a projection
head, a student DiT); the frozen Base is kept out of the module tree (in __dict__), so DDP, the
optimizer, EMA and state_dict see only the trainable part. The loop (training/loop.py) drives it:

    objective = SomeObjective.from_args(base, args)     # same seed on every rank -> same init
    loss = objective(batch)                             # batch: dict of tensors from the DataLoader
    objective.save_adapter(path)                        # the file the node loads

Randomness inside forward (noise, sigmas, which samples bootstrap) comes from `self.generator`, seeded
by the loop per rank, so `evaluate(batch, seed)` can score the same draw before and after training.
EMA: an objective that sets `ema_decay` gets float32 shadow weights, updated after every optimizer step;
`ema_weights()` swaps them in (bootstrap targets, saving).
"""
from __future__ import annotations

import argparse
import contextlib

import torch
from torch import nn


class Objective(nn.Module):
    name: str = ""  # the CLI sub-command
    help: str = ""
    ema_decay: float | None = None

    def __init__(self, base):
        super().__init__()
        self.__dict__["base"] = base  # frozen, not a submodule
        self.__dict__["ema"] = None
        self.__dict__["generator"] = torch.Generator().manual_seed(0)  # CPU: the same draws on any device

    # --- command line -----------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds this objective's own options to its sub-command."""

    @classmethod
    def from_args(cls, base, args: argparse.Namespace) -> Objective:
        raise NotImplementedError

    # --- what subclasses implement ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def save_adapter(self, path) -> None:
        raise NotImplementedError

    # --- shared helpers -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.base.device

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def randn(self, shape, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=dtype).to(self.device)

    def rand(self, shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator).to(self.device)

    def sub_generator(self) -> torch.Generator:
        """A fresh CPU generator seeded from this one (for the pure draw functions of samplers/)."""
        return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))

    def latent(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's clean latent: a precomputed 'latent', else the VAE encoding of 'frames'."""
        if "latent" in batch:
            return batch["latent"].to(self.device, torch.float32)
        if "frames" in batch:
            return self.base.encode(batch["frames"])
        raise ValueError(f"batch has neither 'frames' nor 'latent' (keys: {sorted(batch)})")

    @torch.no_grad()
    def evaluate(self, batch: dict[str, torch.Tensor], seed: int = 0) -> float:
        """The loss on `batch` with a fixed random draw (noise, sigmas): comparable across training."""
        state = self.generator.get_state()
        self.reseed(seed)
        try:
            return float(self(batch))
        finally:
            self.generator.set_state(state)

    # --- EMA ----------------------------------------------------------------------------------------------
    def start_ema(self) -> None:
        if self.ema_decay is not None:
            self.__dict__["ema"] = {n: p.detach().float().clone() for n, p in self.named_parameters()}

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema is None:
            return
        for name, parameter in self.named_parameters():
            self.ema[name].lerp_(parameter.detach().float(), 1.0 - self.ema_decay)

    @contextlib.contextmanager
    def ema_weights(self):
        """Within the block the parameters hold the EMA weights (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        saved = {}
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                saved[name] = parameter.detach().clone()
                parameter.copy_(self.ema[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self.named_parameters():
                    parameter.copy_(saved[name])


def flow_pair(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_sigma, v): x_sigma = (1 - sigma) x0 + sigma noise and the flow velocity v = noise - x0."""
    s = sigma.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1.0 - s) * x0 + s * noise, noise - x0
