"""TurboVSR conditioner training with factorized conditioning (TurboVSR sec. 3.1 and 3.3).

Per batch of HR clips (B, F, H, W, 3) from training/data.py:
1. LR frames: training/degradation.py (RealESRGAN-style, one parameter draw per clip) down by --scale,
   or the batch's own 'lr_frames' (real LR/HR pairs); then resized back to H x W with the same
   comfy.utils resize TurboVSRUpscale uses (patches/vsr_upscale.resize_frames, --resize-method) and
   VAE-encoded: the LR latent, exactly what the node conditions on.
2. Factorized tasks, alternating by training step (even: image, odd: video):
   - image SR: the first frame alone as a 1-frame clip; flow matching on its HR latent;
   - video SR: the whole clip; latent frame 0 is the CLEAN HR latent with denoise mask 0 (per-token
     timestep 0, as TurboVSRUpscale's factorized pass 2 gives the model), the other frames are noised;
     the loss covers only the noised frames.
   Without gradients (evaluate) the loss is the mean of both tasks, so it is comparable across steps.
3. Loss: MSE between the model's velocity and v = noise - x0 at sigma drawn uniform in (0, 1] and
   shifted toward noise by --shift, through the base model carrying the conditioner after block 0
   (patches/vsr_conditioning.apply_vsr_conditioner, the nodes' function, with live=True so the
   trained module itself runs instead of the frozen copy sampling uses).
Only the conditioner trains (Linear(128 -> D) and its scale). The file (docs/vsr.md format) loads in
TurboVSRUpscale.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...models.vsr_conditioner import VSRConditioner, save_vsr_conditioner
from ...patches import families
from ...patches import vsr_conditioning as vc
from ...patches.vsr_upscale import RESIZE_METHODS, resize_frames
from ...samplers.flow_shift import shift_sigmas
from .. import degradation
from ..objective import Objective, flow_pair

TASKS = ("image", "video")


class VSRObjective(Objective):
    name = "vsr"
    help = "TurboVSR conditioner (TurboVSRUpscale): factorized image/video SR on degraded clips"

    def __init__(self, base, scale: float = 4.0, shift: float = 3.0, init_scale: float = 0.01,
                 resize_method: str = "bicubic", lr_noise: float = 0.0, second_order: float = 1.0):
        super().__init__(base)
        family = families.require(base.patcher, families.VSR, "--model")
        if scale < 1 or resize_method not in RESIZE_METHODS or not 0.0 <= lr_noise < 1.0 or init_scale == 0.0:
            raise ValueError(f"--scale must be >= 1, --resize-method one of {RESIZE_METHODS}, --lr-noise in [0, 1) "
                             f"and --init-scale != 0 (0 is the exact-identity path, which has no gradient); got "
                             f"{scale}, {resize_method!r}, {lr_noise}, {init_scale}")
        self.scale, self.shift, self.resize_method, self.lr_noise = float(scale), float(shift), resize_method, lr_noise
        self.settings = degradation.DegradationSettings(second_order_prob=float(second_order))
        self.conditioner = VSRConditioner(family.width_of(base.diffusion_model)).to(base.device)
        with torch.no_grad():
            self.conditioner.scale.fill_(init_scale)
        self.__dict__["steps"] = 0

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--scale", type=float, default=4.0, help="HR / LR size ratio of the degradation")
        parser.add_argument("--shift", type=float, default=3.0, help="SD3 shift of the training sigmas toward noise")
        parser.add_argument("--init-scale", type=float, default=0.01,
                            help="starting conditioner scale (0 would be the identity with no gradient)")
        parser.add_argument("--resize-method", choices=RESIZE_METHODS, default="bicubic",
                            help="LR -> HR resize before encoding; use the one you will pick in TurboVSRUpscale")
        parser.add_argument("--lr-noise", type=float, default=0.0,
                            help="LR latents noised to a sigma uniform in [0, this) (TurboVSR supplement: robustness)")
        parser.add_argument("--second-order", type=float, default=1.0,
                            help="probability of the second-order degradation")

    @classmethod
    def from_args(cls, base, args):
        degradation.lr_size(args.height, args.width, args.scale)  # refuse a crop the scale does not divide, now
        return cls(base, args.scale, args.shift, args.init_scale, args.resize_method, args.lr_noise, args.second_order)

    # --- data -------------------------------------------------------------------------------------------
    def lr_frames(self, batch: dict) -> torch.Tensor:
        """(B, F, h, w, 3) LR frames: the batch's own, else each clip degraded with its own parameter draw."""
        if "lr_frames" in batch:
            return batch["lr_frames"].float().cpu()
        frames = batch["frames"].float().cpu()
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator, device=self.device)))
        return torch.stack([degradation.degrade(clip, self.scale, rng, self.settings) for clip in frames])

    def lr_latent(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """LR frames resized to the HR size as TurboVSRUpscale does, then encoded."""
        resized = torch.stack([resize_frames(clip, size, self.resize_method) for clip in lr])
        latent = self.base.encode(resized)
        if self.lr_noise > 0:
            sigma = self.rand((latent.shape[0],)) * self.lr_noise
            latent, _ = flow_pair(latent, self.randn(latent.shape), sigma)
        return latent

    def latents(self, batch: dict, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(HR latent, LR latent) for `task`; precomputed 'latent' + 'lr_latent' are used as they are."""
        if "latent" in batch and "lr_latent" in batch:
            hr, lr = batch["latent"], batch["lr_latent"]
            hr, lr = hr.to(self.device, torch.float32), lr.to(self.device, torch.float32)
            return (hr[:, :, :1], lr[:, :, :1]) if task == "image" else (hr, lr)
        frames = batch["frames"]
        lr = self.lr_frames(batch)
        if task == "image":
            frames, lr = frames[:, :1], lr[:, :1]
        return self.base.encode(frames), self.lr_latent(lr, tuple(frames.shape[2:4]))

    # --- loss -------------------------------------------------------------------------------------------
    def conditioned_model(self, lr_latent: torch.Tensor):
        return vc.apply_vsr_conditioner(self.base.patcher, self.conditioner, lr_latent, live=True)

    def task_loss(self, batch: dict, task: str) -> torch.Tensor:
        hr, lr = self.latents(batch, task)
        video = task == "video" and hr.shape[2] > 1
        sigma = shift_sigmas(1.0 - self.rand((hr.shape[0],)).double(), self.shift).float()
        x, v = flow_pair(hr, self.randn(hr.shape), sigma)
        extra = {}
        if video:
            x = torch.cat([hr[:, :, :1], x[:, :, 1:]], dim=2)  # clean HR first latent frame
            extra["denoise_mask"] = vc.first_latent_mask(hr).to(self.device)
        pred = self.base.velocity(self.conditioned_model(lr), x, sigma, **extra)
        return F.mse_loss(pred[:, :, 1:], v[:, :, 1:]) if video else F.mse_loss(pred, v)

    def forward(self, batch: dict) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return sum(self.task_loss(batch, task) for task in TASKS) / len(TASKS)
        task = TASKS[self.steps % 2]
        self.__dict__["steps"] = self.steps + 1
        return self.task_loss(batch, task)

    def save_adapter(self, path) -> None:
        save_vsr_conditioner(path, self.conditioner)


OBJECTIVE = VSRObjective
