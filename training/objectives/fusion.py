"""Turbo2K fusion-block training: L_diff of the HR model guided by the LR model's final-step features.

Per batch (a clip, or a precomputed HR latent):
1. LR latent: the clip area-downsampled by --lr-scale and VAE-encoded (a precomputed latent: average-pooled
   by --lr-scale in h and w instead).
2. LR features: the frozen base DiT runs ONCE on the LR latent noised to --lr-sigma, the sigma of the last
   LR denoising step, and the capture patch of patches/lr_features.py (the one TurboLRPass installs) keeps
   the outputs of the adapter's lr_blocks: the features TurboLRPass hands to TurboApplyLRFeatures.
3. L_diff: flow matching on the HR latent at a shifted random sigma, through the HR model carrying the fusion
   patches of patches/lr_features.py (the ones TurboApplyLRFeatures installs) fed by those features.
Only the FusionAdapter trains; the saved file (docs/lrhr.md format) loads in TurboApplyLRFeatures.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.fusion_blocks import FusionAdapter, save_fusion_adapter
from ...patches import core_compat
from ...patches import lr_features as lrf
from ...samplers.shortcut_targets import draw_flow_sigmas
from ..objective import Objective, flow_pair


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _blocks(text: str):
    return lrf.AUTO_BLOCKS if text.strip().lower() == lrf.AUTO_BLOCKS else _ints(text)


class FusionObjective(Objective):
    name = "fusion"
    help = "Turbo2K fusion blocks (TurboApplyLRFeatures): L_diff with the LR model's final-step features"

    def __init__(self, base, hr_blocks=lrf.AUTO_BLOCKS, lr_blocks=None, mlp_ratio: float = 1.0,
                 lr_sigma: float = 0.1, lr_scale: int = 2, shift: float = 3.0):
        super().__init__(base)
        family, model = lrf.lr_family(base.patcher, "--model")
        count, width = len(family.blocks_of(model)), family.width_of(model)
        hr_blocks = lrf.check_blocks(hr_blocks, count, "--hr-blocks", family)
        lr_blocks = None if lr_blocks is None else lrf.check_blocks(lr_blocks, count, "--lr-blocks", family)
        if not 0.0 < lr_sigma < 1.0 or lr_scale < 1:
            raise ValueError(f"--lr-sigma must be in (0, 1) and --lr-scale >= 1, got {lr_sigma}, {lr_scale}")
        self.lr_sigma, self.lr_scale, self.shift = float(lr_sigma), int(lr_scale), float(shift)
        self.adapter = FusionAdapter(width, width, hr_blocks, lr_blocks, count, mlp_ratio).to(base.device)
        self.__dict__["store"] = lrf.LRFeatures(width=width, num_blocks=count)
        self.__dict__["capture"] = lrf.capturing_model(base.patcher, self.adapter.lr_blocks, self.store)

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--hr-blocks", type=_blocks, default=lrf.AUTO_BLOCKS,
                            help="HR blocks that receive fused features, or 'auto' (default): Turbo2K's 0,7,14,21 "
                                 "of 28 at the model's depth (LTX-2's 48 blocks: 0,12,24,36)")
        parser.add_argument("--lr-blocks", type=_ints, default=None, help="LR blocks, paired (default: hr-blocks)")
        parser.add_argument("--mlp-ratio", type=float, default=1.0, help="fusion block MLP width ratio (0: none)")
        parser.add_argument("--lr-sigma", type=float, default=0.1, help="sigma of the LR pass's last step")
        parser.add_argument("--lr-scale", type=int, default=2, help="HR / LR size ratio")
        parser.add_argument("--shift", type=float, default=3.0, help="SD3 shift of the HR training sigmas")

    @classmethod
    def from_args(cls, base, args):
        return cls(base, args.hr_blocks, args.lr_blocks, args.mlp_ratio, args.lr_sigma, args.lr_scale, args.shift)

    def lr_latent(self, batch, hr_latent):
        if "frames" in batch:
            frames = batch["frames"].float()
            b, f, h, w, c = frames.shape
            small = F.interpolate(frames.reshape(b * f, h, w, c).permute(0, 3, 1, 2), scale_factor=1 / self.lr_scale,
                                  mode="area")
            return self.base.encode(small.permute(0, 2, 3, 1).reshape(b, f, *small.shape[2:], c))
        pooled = F.avg_pool3d(hr_latent, (1, self.lr_scale, self.lr_scale))
        return pooled

    @torch.no_grad()
    def lr_features(self, lr_x0: torch.Tensor) -> lrf.LRFeatures:
        self.store.features.clear()
        sigma = torch.full((lr_x0.shape[0],), self.lr_sigma, device=self.device)
        x, _ = flow_pair(lr_x0, self.randn(lr_x0.shape), sigma)
        last_step = {core_compat.SAMPLE_SIGMAS: torch.tensor([self.lr_sigma, 0.0])}
        self.base.velocity(self.capture, x, sigma, options=last_step)
        return lrf.LRFeatures(dict(self.store.features), self.store.grid, self.store.sigma, self.store.width,
                              self.store.num_blocks)

    def forward(self, batch):
        hr_x0 = self.latent(batch)
        features = self.lr_features(self.lr_latent(batch, hr_x0))
        fuse = lrf.apply_lr_features(self.base.patcher, features, self.adapter, 1.0, "training", live=True)
        generator = self.sub_generator()
        sigma = draw_flow_sigmas(hr_x0.shape[0], self.shift, generator).to(self.device, torch.float32)
        x, v = flow_pair(hr_x0, self.randn(hr_x0.shape), sigma)
        return F.mse_loss(self.base.velocity(fuse, x, sigma), v)

    def save_adapter(self, path) -> None:
        save_fusion_adapter(path, self.adapter)


OBJECTIVE = FusionObjective
