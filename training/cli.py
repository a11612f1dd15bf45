"""`python training/train.py <objective> [options]`: one entry point for every adapter (docs/training.md).

Objectives are modules under training/objectives/ that expose `OBJECTIVE` (an Objective subclass); each
adds its own options. Common options pick the base model, the data and the loop settings.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

import torch

from .base_model import ensure_comfy, load_base
from .loop import LoopSettings, distributed_setup, train

OBJECTIVE_MODULES = ("shortcut", "fusion", "distill", "vsr")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def objectives() -> dict[str, type]:
    """name -> Objective class, for every objective module present under training/objectives/."""
    found = {}
    for module_name in OBJECTIVE_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.objectives.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__package__}.objectives.{module_name}":
                raise
            continue
        found[module.OBJECTIVE.name] = module.OBJECTIVE
    return found


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="LTX-Video DiT (.safetensors) or full checkpoint (DiT + VAE)")
    parser.add_argument("--vae", help="VAE file, when --model is a DiT alone (needed to train on videos)")
    parser.add_argument("--context", help="caption embedding: safetensors with 'context' (L, 4096); default zeros")
    parser.add_argument("--data", help="folder of videos and images (training/data.py)")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip, 8k + 1")
    parser.add_argument("--height", type=int, default=256, help="clip height, a multiple of 32")
    parser.add_argument("--width", type=int, default=256, help="clip width, a multiple of 32")
    parser.add_argument("--output", required=True, help="adapter file to write (.safetensors)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1, help="clips per step and per GPU")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: at the end only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--save-every-rank", action="store_true",
                        help="also write <output>.rank<r>.safetensors on every rank (to check DDP sync)")
    parser.add_argument("--device", help="torch device (default: ComfyUI's; under torchrun the rank's GPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the frozen base weights")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute each DiT block in the backward pass: activation memory of one block")


def build_parser(available: dict[str, type]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description="Train TurboVideo adapters (docs/training.md).")
    commands = parser.add_subparsers(dest="objective", required=True)
    for name, objective in available.items():
        sub = commands.add_parser(name, help=objective.help, description=objective.help)
        _common_arguments(sub)
        objective.add_arguments(sub)
    return parser


def dataset_for(args, objective_class):
    if getattr(args, "teacher_features", None):
        from .objectives.distill import TeacherFeatureSet

        return TeacherFeatureSet(args.teacher_features)
    if not args.data:
        raise ValueError(f"{objective_class.name}: --data is required (a folder of videos and images)")
    from .data import VideoFolder

    return VideoFolder(args.data, args.frames, args.height, args.width, seed=args.seed)


def settings_from(args) -> LoopSettings:
    return LoopSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                        grad_clip=args.grad_clip, log_every=args.log_every, save_every=args.save_every,
                        seed=args.seed, workers=args.workers,
                        save_every_rank=args.save_every_rank)


def run(args, objective_class) -> list[float]:
    distributed_setup()
    base = load_base(args.model, args.vae, args.device, DTYPES[args.dtype], args.context,
                     args.gradient_checkpointing)
    torch.manual_seed(args.seed)  # identical initial adapter weights on every rank
    objective = objective_class.from_args(base, args)
    return train(objective, dataset_for(args, objective_class), args.output, settings_from(args))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ensure_comfy()
    available = objectives()
    args = build_parser(available).parse_args(argv)
    try:
        run(args, available[args.objective])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
