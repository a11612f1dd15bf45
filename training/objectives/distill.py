"""Turbo2K heterogeneous distillation: L_diff + lambda * L_dis on the student DiT (REPA-style alignment).

    L_dis = -mean over aligned block pairs and tokens of cos(h_phi(f_student), f_teacher)

f_student: the output of a student block (a block-replace patch keeps it, with its gradient); f_teacher:
the output of the paired teacher block at the SAME sigma (aligned timesteps, Turbo2K supplement), from a
second model run without gradient or from a precomputed file (precompute_teacher_features). Teacher
tokens are resized (trilinear, models/fusion_blocks.resize_tokens) onto the student's token grid, so the
teacher may live in another latent space and size. h_phi is a per-pair MLP (student width -> teacher
width). Trained: the whole student DiT and the heads. Saved: the student DiT in its own key layout (loads
in UNETLoader) and the heads beside it, `<name>.heads.safetensors` (not needed at inference).
"""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ...models.fusion_blocks import resize_tokens
from ...patches import core_compat
from ...patches.lr_features import check_blocks, lr_family
from ...samplers.shortcut_targets import draw_flow_sigmas
from ..objective import Objective, flow_pair

TEACHER_PREFIX = "teacher."


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _keeping_patch(store: dict, block: int, previous):
    def patch(args, extra):
        out = previous(args, extra) if previous is not None else core_compat.run_original_block(args, extra)
        store[block] = out["img"].clone()  # the next block updates its input in place
        return out

    return patch


def keeping_patcher(patcher, blocks, store: dict):
    """A clone of `patcher` that keeps the outputs of `blocks` (with their gradient) in `store` each call."""
    patched = patcher.clone()
    for block in blocks:  # chained to a patch already there (gradient checkpointing)
        patch = _keeping_patch(store, block, core_compat.block_patch(patched.model_options, block))
        patched.set_model_patch_replace(patch, "dit", "double_block", block)
    return patched


def _head(student_width: int, teacher_width: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(student_width, hidden), nn.SiLU(), nn.Linear(hidden, teacher_width))


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, student_grid, teacher_grid) -> torch.Tensor:
    """-mean token cosine between projected student tokens [B, N, D] and teacher tokens resized to them."""
    teacher = resize_tokens(teacher.to(student.dtype), teacher_grid, student_grid)
    return -F.cosine_similarity(student, teacher, dim=-1).mean()


class DistillObjective(Objective):
    name = "distill"
    help = "Turbo2K heterogeneous distillation: student DiT with L_diff + lambda * L_dis (teacher features)"

    def __init__(self, base, teacher=None, student_blocks=(0,), teacher_blocks=None, teacher_width=None,
                 weight: float = 0.5, head_hidden: int = 256, shift: float = 3.0):
        super().__init__(base)
        family, model = lr_family(base.patcher, "--model")
        self.student_blocks = check_blocks(student_blocks, len(family.blocks_of(model)), "--student-blocks")
        self.teacher_blocks = [int(b) for b in (teacher_blocks or self.student_blocks)]
        if len(self.teacher_blocks) != len(self.student_blocks):
            raise ValueError(f"--teacher-blocks {self.teacher_blocks} must pair up with --student-blocks "
                             f"{self.student_blocks}")
        self.__dict__["teacher"] = teacher
        if teacher is not None:
            teacher_family, teacher_model = lr_family(teacher.patcher, "--teacher")
            check_blocks(self.teacher_blocks, len(teacher_family.blocks_of(teacher_model)), "--teacher-blocks")
            teacher_width = teacher_family.width_of(teacher_model)
        if teacher_width is None:
            raise ValueError("give --teacher (a model) or the teacher width of the precomputed features")
        self.weight, self.shift, self.teacher_width = float(weight), float(shift), int(teacher_width)
        self.student = model.requires_grad_(True)
        self.heads = nn.ModuleDict({str(b): _head(family.width_of(model), self.teacher_width, head_hidden)
                                    for b in self.student_blocks}).to(base.device)
        self.__dict__["student_features"], self.__dict__["teacher_features"] = {}, {}
        self.__dict__["student_patcher"] = keeping_patcher(base.patcher, self.student_blocks, self.student_features)
        if teacher is not None:
            self.__dict__["teacher_patcher"] = keeping_patcher(teacher.patcher, self.teacher_blocks,
                                                               self.teacher_features)

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--teacher", help="teacher DiT or checkpoint (else --teacher-features)")
        parser.add_argument("--teacher-features", help="precomputed teacher features (docs/training.md)")
        parser.add_argument("--student-blocks", type=_ints, default=[0], help="student blocks to align")
        parser.add_argument("--teacher-blocks", type=_ints, default=None, help="paired teacher blocks")
        parser.add_argument("--distill-weight", type=float, default=0.5, help="lambda of L_dis")
        parser.add_argument("--head-hidden", type=int, default=256, help="hidden width of h_phi")
        parser.add_argument("--shift", type=float, default=3.0, help="SD3 shift of the training sigmas")

    @classmethod
    def from_args(cls, base, args):
        from ..base_model import load_base

        teacher, width = None, None
        if args.teacher:
            teacher = load_base(args.teacher, device=base.device, dtype=base.dtype)
        elif args.teacher_features:
            width = read_teacher_width(args.teacher_features)
        return cls(base, teacher, args.student_blocks, args.teacher_blocks, width, args.distill_weight,
                   args.head_hidden, args.shift)

    def draw(self, x0: torch.Tensor, batch):
        """(sigma, noise): the precomputed file's when it has them (the teacher saw that x_sigma)."""
        if "sigma" in batch and "noise" in batch:
            return batch["sigma"].to(self.device, torch.float32).reshape(-1), batch["noise"].to(self.device)
        generator = self.sub_generator()
        return draw_flow_sigmas(x0.shape[0], self.shift, generator).to(self.device, torch.float32), self.randn(x0.shape)

    @torch.no_grad()
    def teacher_tokens(self, batch, x, sigma) -> tuple[dict, tuple]:
        if TEACHER_PREFIX + str(self.teacher_blocks[0]) in batch:
            grid = tuple(int(v) for v in batch["teacher_grid"][0])
            return {b: batch[TEACHER_PREFIX + str(b)].to(self.device) for b in self.teacher_blocks}, grid
        if self.teacher is None:
            raise ValueError("batch has no precomputed teacher features and no --teacher model was given")
        self.teacher_features.clear()
        self.teacher.velocity(self.teacher_patcher, x, sigma)
        return dict(self.teacher_features), tuple(x.shape[2:])

    def forward(self, batch):
        x0 = self.latent(batch)
        sigma, noise = self.draw(x0, batch)
        x, v = flow_pair(x0, noise, sigma)
        teacher, teacher_grid = self.teacher_tokens(batch, x, sigma)
        self.student_features.clear()
        diffusion = F.mse_loss(self.base.velocity(self.student_patcher, x, sigma), v)
        pairs = zip(self.student_blocks, self.teacher_blocks)
        distill = torch.stack([alignment_loss(self.heads[str(s)](self.student_features[s]), teacher[t],
                                              tuple(x.shape[2:]), teacher_grid) for s, t in pairs]).mean()
        self.__dict__["last_terms"] = {"diffusion": float(diffusion.detach()), "distill": float(distill.detach())}
        return diffusion + self.weight * distill

    def save_adapter(self, path) -> None:
        """The student DiT (UNETLoader layout, with the base file's config) + `<name>.heads.safetensors`."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.student.state_dict().items()}
        config = getattr(self.base, "config_metadata", None)
        save_file(tensors, str(path), metadata={"config": config} if config else None)
        heads = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.heads.state_dict().items()}
        save_file(heads, heads_path(path), metadata={"student_blocks": json.dumps(self.student_blocks),
                                                     "teacher_blocks": json.dumps(self.teacher_blocks)})


def heads_path(path) -> str:
    path = str(path)
    return (path[:-len(".safetensors")] if path.endswith(".safetensors") else path) + ".heads.safetensors"


def read_teacher_width(path) -> int:
    with safe_open(str(path), framework="pt") as handle:
        key = next((k for k in handle.keys() if k.startswith(TEACHER_PREFIX)), None)
        if key is None:
            raise ValueError(f"--teacher-features {path}: no '{TEACHER_PREFIX}<block>' tensors (docs/training.md)")
        return int(handle.get_slice(key).get_shape()[-1])


class TeacherFeatureSet(torch.utils.data.Dataset):
    """Samples of a precomputed file: latent, noise, sigma, teacher_grid, teacher.<block> (dim 0 = sample)."""

    def __init__(self, path):
        from safetensors.torch import load_file

        self.tensors = load_file(str(path))
        missing = {"latent", "noise", "sigma", "teacher_grid"} - set(self.tensors)
        if missing:
            raise ValueError(f"--teacher-features {path}: missing {sorted(missing)} (docs/training.md)")

    def __len__(self):
        return int(self.tensors["latent"].shape[0])

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.tensors.items()}


@torch.no_grad()
def precompute_teacher_features(teacher, latents: torch.Tensor, blocks, path, seed: int = 0, shift: float = 3.0):
    """Runs the teacher once per latent at a drawn sigma and writes a --teacher-features file."""
    store: dict = {}
    patcher = keeping_patcher(teacher.patcher, blocks, store)
    generator = torch.Generator().manual_seed(seed)
    sigma = draw_flow_sigmas(latents.shape[0], shift, generator).float()
    noise = torch.randn(latents.shape, generator=generator)
    out = {"latent": latents.cpu().float(), "noise": noise, "sigma": sigma,
           "teacher_grid": torch.tensor([list(latents.shape[2:])] * latents.shape[0])}
    features = {b: [] for b in blocks}
    for i in range(latents.shape[0]):
        x, _ = flow_pair(latents[i:i + 1].to(teacher.device), noise[i:i + 1].to(teacher.device), sigma[i:i + 1])
        teacher.velocity(patcher, x, sigma[i:i + 1])
        for b in blocks:
            features[b].append(store[b].float().cpu())
    out.update({TEACHER_PREFIX + str(b): torch.cat(f) for b, f in features.items()})
    save_file(out, str(path))


OBJECTIVE = DistillObjective
