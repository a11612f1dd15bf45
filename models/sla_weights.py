"""SLA proj_l weights: the per-block Linear(head_dim, head_dim) of SLA's linear branch.

File format (safetensors, float32, the key names of TurboDiffusion's SLA checkpoints):
    blocks.N.self_attn.attn_op.local_attn.proj_l.weight   (head_dim, head_dim)
    blocks.N.self_attn.attn_op.local_attn.proj_l.bias     (head_dim,)   optional
N is the index of the transformer block (Wan: blocks.N; LTX-Video: transformer_blocks.N). Other
keys are ignored, so a whole converted TurboWan checkpoint also works; the prefixes `net.`,
`model.`, `diffusion_model.` and `model.diffusion_model.` are accepted. Blocks without weights get a
zero proj_l (the linear branch then adds nothing), which is also SLA's initialisation.
"""
import re

import torch

from .checkpoint_files import FileRole, check_tensors, open_safetensors, save_safetensors, where

ROLE = FileRole("proj_l", "SLA proj_l weights", "(a .safetensors file in the format of docs/attention.md)")

KEY_FORMAT = "blocks.{}.self_attn.attn_op.local_attn.proj_l.{}"
_KEY = re.compile(r"^(?:net\.|model\.diffusion_model\.|diffusion_model\.|model\.)?"
                  r"blocks\.(\d+)\.self_attn\.attn_op\.local_attn\.proj_l\.(weight|bias)$")


def proj_l_keys(keys) -> dict:
    """{block: {"weight": key, "bias": key}} for the proj_l keys among `keys`."""
    found: dict = {}
    for key in keys:
        match = _KEY.match(key)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = key
    return found


def _describe_problem(name: str, found: dict, shapes: dict) -> str | None:
    if not found:
        return (f"{name} is not an SLA proj_l file: it has no keys like "
                f"{KEY_FORMAT.format(0, 'weight')} (docs/attention.md)")
    dims = set()
    for block, keys in sorted(found.items()):
        if "weight" not in keys:
            return f"{name}: block {block} has a proj_l bias but no weight"
        weight = shapes[keys["weight"]]
        if len(weight) != 2 or weight[0] != weight[1]:
            return f"{name}: block {block} proj_l.weight must be square (head_dim, head_dim); got {weight}"
        if "bias" in keys and tuple(shapes[keys["bias"]]) != (weight[0],):
            return f"{name}: block {block} proj_l.bias must have shape ({weight[0]},); got {shapes[keys['bias']]}"
        dims.add(weight[0])
    if len(dims) > 1:
        return f"{name}: proj_l weights of different head dims {sorted(dims)}; one file serves one model"
    return None


def read_proj_l_header(path, name: str | None = None) -> tuple[int, list[int]]:
    """(head_dim, block indices) from the file's header alone; ValueError if it holds no valid proj_l."""
    name = where(name or path, ROLE.input_name)
    with open_safetensors(path, ROLE) as handle:
        found = proj_l_keys(handle.keys())
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for keys in found.values() for key in keys.values()}
    problem = _describe_problem(name, found, shapes)
    if problem:
        raise ValueError(problem)
    first = found[min(found)]["weight"]
    return shapes[first][0], sorted(found)


def proj_l_from_state_dict(state_dict: dict, name: str = "state dict") -> dict:
    """{block: (weight float32, bias float32 or None)} from a state dict (e.g. a TurboDiffusion .pth)."""
    found = proj_l_keys(state_dict.keys())
    shapes = {key: tuple(state_dict[key].shape) for keys in found.values() for key in keys.values()}
    problem = _describe_problem(name, found, shapes)
    if problem:
        raise ValueError(problem)
    check_tensors({key: state_dict[key] for keys in found.values() for key in keys.values()}, name)
    weights = {}
    for block, keys in found.items():
        bias = state_dict[keys["bias"]].float() if "bias" in keys else None
        weights[block] = (state_dict[keys["weight"]].float(), bias)
    return weights


def load_proj_l(path, name: str | None = None) -> dict:
    """Reads only the proj_l tensors of a safetensors file (a full checkpoint is not loaded)."""
    read_proj_l_header(path, name)
    name = where(name or path, ROLE.input_name)
    with open_safetensors(path, ROLE) as handle:
        found = proj_l_keys(handle.keys())
        tensors = {key: handle.get_tensor(key) for keys in found.values() for key in keys.values()}
    return proj_l_from_state_dict(tensors, name)


def save_proj_l(path, weights: dict) -> None:
    """Writes {block: (weight, bias or None)} in the format above."""
    tensors = {}
    for block, (weight, bias) in weights.items():
        tensors[KEY_FORMAT.format(block, "weight")] = weight.detach().float().contiguous()
        if bias is not None:
            tensors[KEY_FORMAT.format(block, "bias")] = bias.detach().float().contiguous()
    save_safetensors(tensors, path, {"turbovideo_adapter": "sla_proj_l"})


def check_fits(weights_head_dim: int, blocks: list[int], head_dim: int, num_blocks: int, name: str) -> None:
    """ValueError naming the mismatch when proj_l weights do not fit a model."""
    if weights_head_dim != head_dim:
        raise ValueError(f"proj_l: {name} holds proj_l for head dim {weights_head_dim}, but this model's "
                         f"attention head dim is {head_dim}; pick the proj_l file trained for this model")
    extra = [b for b in blocks if b >= num_blocks]
    if extra:
        raise ValueError(f"proj_l: {name} has proj_l for blocks {extra[:5]} but this model has {num_blocks} "
                         "blocks; pick the proj_l file trained for this model")


def as_device(weights: tuple, device: torch.device) -> tuple:
    weight, bias = weights
    return weight.to(device), None if bias is None else bias.to(device)
