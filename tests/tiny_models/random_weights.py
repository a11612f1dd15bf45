"""Random tensors for a key layout: scaled so that activations stay O(1) through a tiny network."""
import json
import math
import pathlib

import torch
from safetensors.torch import save_file

NORM_SUFFIXES = ("norm.weight", "norm_q.weight", "norm_k.weight", "q_norm.weight", "k_norm.weight",
                 ".gamma", "norm3.weight")


def random_tensor(key: str, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    if key.endswith(NORM_SUFFIXES):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    if key.endswith("bias") or len(shape) < 2:
        return 0.02 * torch.randn(shape, generator=generator)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in)


def random_state_dict(layout: dict, seed: int, dtype=torch.float32) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {key: random_tensor(key, shape, generator).to(dtype) for key, shape in layout.items()}


def save(state_dict: dict, path: pathlib.Path, config: dict | None = None) -> str:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"config": json.dumps(config)} if config is not None else None
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata)
    return path.name


def randomised(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """`module` with every parameter drawn N(0, scale^2) in place (an adapter "as after training")."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return module
