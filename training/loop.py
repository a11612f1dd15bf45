"""The generic training loop: AdamW, gradient clipping, EMA, logging, checkpoints, torch.distributed DDP.

Under torchrun (WORLD_SIZE > 1) every rank joins the default process group (gloo on the CPU, nccl on
CUDA), the objective is wrapped in DistributedDataParallel (gradients all-reduced every step) and the
data are split by a DistributedSampler. Every rank builds the objective after the same torch.manual_seed,
and DDP broadcasts rank 0's parameters at wrap time, so all ranks start and stay identical. Random draws
inside the objective (noise, sigmas) are seeded per rank. Rank 0 alone writes checkpoints: the adapter
file (EMA weights when the objective keeps them) every --save-every steps, at the end, and when the run
is interrupted (Ctrl-C / SIGTERM), written to a temporary name and renamed so a file is never half-written.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler


@dataclasses.dataclass
class LoopSettings:
    steps: int = 100
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    save_every: int = 0  # 0: only at the end
    seed: int = 0
    workers: int = 0
    save_every_rank: bool = False  # also write <output>.rank<r>.safetensors on every rank (checks DDP sync)


def distributed_setup() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def save_checkpoint(objective, path) -> None:
    """The adapter file(s) written in a scratch folder beside `path`, then renamed into place."""
    path = pathlib.Path(path)
    scratch = path.parent / f".{path.name}.partial"
    scratch.mkdir(parents=True, exist_ok=True)
    with objective.ema_weights():
        objective.save_adapter(scratch / path.name)
    for written in scratch.iterdir():
        os.replace(written, path.parent / written.name)
    scratch.rmdir()


def rank_path(path, rank: int) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _batches(dataset, settings: LoopSettings, rank: int, world: int):
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=settings.seed) if world > 1 else None
    generator = torch.Generator().manual_seed(settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=generator, num_workers=settings.workers,
                        drop_last=len(dataset) >= settings.batch_size)
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)  # fresh crops and windows every epoch (training/data.py)
        yield from loader
        epoch += 1


class _Stop:
    """SIGTERM (a scheduler's preemption) ends the run at the next step boundary, with a checkpoint."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self._handle) if _main_thread() else None

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _step(model, objective, optimizer, batch, settings) -> float:
    loss = model(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad], settings.grad_clip)
    optimizer.step()
    objective.update_ema()
    return float(loss.detach())


def train(objective, dataset, output, settings: LoopSettings, log=print, on_step=None) -> list[float]:
    """Trains `objective` on `dataset` for settings.steps steps; returns this rank's loss per step."""
    rank, world = distributed_setup()
    objective.reseed(settings.seed * 1000 + rank + 1)
    objective.start_ema()
    trainable = [p for p in objective.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"objective {objective.name!r} has no trainable parameters")
    model = DistributedDataParallel(objective) if world > 1 else objective
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    losses, stop, started = [], _Stop(), time.perf_counter()
    try:
        for step, batch in zip(range(1, settings.steps + 1), _batches(dataset, settings, rank, world)):
            losses.append(_step(model, objective, optimizer, batch, settings))
            if on_step is not None:
                on_step(step, losses[-1])
            if rank == 0 and (step % settings.log_every == 0 or step == settings.steps):
                log(f"step {step}/{settings.steps} loss {losses[-1]:.5f} ({time.perf_counter() - started:.1f} s)")
            if rank == 0 and settings.save_every and step % settings.save_every == 0:
                save_checkpoint(objective, output)
            if stop.requested:
                break
    finally:
        stop.restore()
        if rank == 0:
            save_checkpoint(objective, output)
            log(f"saved {output}")
        if settings.save_every_rank:
            save_checkpoint(objective, rank_path(output, rank))
    if world > 1:
        dist.barrier()  # no rank exits (and tears the group down) before rank 0 has written the file
    return losses
